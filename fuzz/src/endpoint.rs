// SPDX-License-Identifier: MPL-2.0
//! The local endpoint's parsers of what comes over HTTP: the request router, the Programs
//! JSON API, the Smooth ingest body reader (its box reader, the Live Server Manifest as XML,
//! the moov, every fragment) and the CMAF ingest request reader (headers, segments, CMAF
//! chunks joined, the metadata track's events), with what must hold for any input.

use std::time::Instant;

use fmp4ingest_endpoint::ingest::boxes::Limits;
use fmp4ingest_endpoint::ingest::cmaf::{
    CmafBody, Extension, Header, Refusal, Request as CmafRequest, events, read_header, read_segment, sparse_fragment,
};
use fmp4ingest_endpoint::ingest::smooth::{Event, SmoothBody};
use fmp4ingest_endpoint::ingest::smooth_shaped;
use fmp4ingest_endpoint::media::fragment::{Wrap, read, rewrap};
use fmp4ingest_endpoint::media::meta::Kind;
use fmp4ingest_endpoint::output::url_part;
use fmp4ingest_endpoint::programs::{MAX_PROGRAMS, Programs};
use fmp4ingest_endpoint::route::{Resource, Route, Source, route};
use fmp4ingest_endpoint::store::{Listing, TrackListing};

const METHODS: [&str; 8] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "MERGE", "OPTIONS"];

/// The URL of a route, as the endpoint's outputs write it.
fn url_of(r: &Route) -> String {
    match r {
        Route::Ingest { point, stream } => format!("/{}.isml/Streams({})", url_part(point), url_part(stream)),
        Route::MpdUpload { point, file } => format!("/{}.isml/{}", url_part(point), url_part(file)),
        Route::Heartbeats { point } => format!(
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Media/mediaservices/a/liveEvents/{}/\
             getTrackIngestHeartbeats",
            url_part(point)
        ),
        Route::Programs => "/api/Programs".into(),
        Route::Get { source, resource } => {
            let base = match source {
                Source::Point(n) => format!("/{}.isml", url_part(n)),
                Source::Program(n) => format!("/{}.ism", url_part(n)),
            };
            let rest = match resource {
                Resource::Smooth => "Manifest".into(),
                Resource::SmoothFragment { track, time } => {
                    format!("QualityLevels(1)/Fragments({}={time})", url_part(track))
                }
                Resource::Mpd => ".mpd".into(),
                Resource::HlsMain => ".m3u8".into(),
                Resource::HlsMedia(t) => format!("{}.m3u8", url_part(t)),
                Resource::Init(t) => format!("cmaf/{}/init.mp4", url_part(t)),
                Resource::Segment { track, time } => format!("cmaf/{}/{time}.m4s", url_part(track)),
                Resource::PostedMpd(file) => url_part(file),
            };
            format!("{base}/{rest}")
        }
    }
}

/// The router: the first byte picks the method, the rest is the request target. A refusal has
/// an error status and a one-line reason (an `Allow` for a 405 only); what it routes, written
/// back as the outputs write URLs, routes to the same.
pub fn endpoint_route(data: &[u8]) {
    let Some((&m, rest)) = data.split_first() else { return };
    let method = METHODS[usize::from(m) % METHODS.len()];
    let target = String::from_utf8_lossy(rest);
    match route(method, &target) {
        Err(r) => {
            assert!((400..600).contains(&r.status), "{r:?}");
            assert!(!r.reason.contains(['\n', '\r']), "{r:?}");
            assert_eq!(r.allow.is_some(), r.status == 405, "{r:?}");
        }
        Ok(r) => {
            let url = url_of(&r);
            assert_eq!(route(method, &url).as_ref(), Ok(&r), "{url}");
        }
    }
}

/// The Programs API: operations separated by 0xFF bytes, each a method byte, a path byte (the
/// collection, the program, its Start or Stop, or the rest as a path) and a JSON body, on an
/// API holding one valid program. Every answer is one of the API's statuses, an error has the
/// OData error body, and the number of programs stays within its cap.
pub fn endpoint_programs(data: &[u8]) {
    let mut p = Programs::default();
    let now = Instant::now();
    let running = |c: &str| c == "live";
    let body = br#"{"Name":"p","ChannelId":"live","ArchiveWindowLength":"PT1H"}"#;
    let created = p.handle("POST", "/api/Programs", body, now, &running, "http://h");
    let id = created.body.as_ref().and_then(|b| b["Id"].as_str().map(str::to_string)).expect("a program");
    for op in data.split(|b| *b == 0xff).take(64) {
        let (Some(&m), Some(&which)) = (op.first(), op.get(1)) else { continue };
        let body = &op[2..];
        let method = METHODS[usize::from(m) % METHODS.len()];
        let path = match which % 5 {
            0 => "/api/Programs".to_string(),
            1 => format!("/api/Programs('{id}')"),
            2 => format!("/api/Programs('{id}')/Start"),
            3 => format!("/api/Programs('{id}')/Stop"),
            _ => String::from_utf8_lossy(body).into_owned(),
        };
        let a = p.handle(method, &path, body, now, &running, "http://h");
        assert!(matches!(a.status, 200 | 202 | 204 | 400 | 404 | 405 | 409), "{} {path}: {}", method, a.status);
        if a.status >= 400 {
            let message = a.body.as_ref().map(|b| b["odata.error"]["message"]["value"].is_string());
            assert_eq!(message, Some(true), "{method} {path}: {:?}", a.body);
        }
        assert!(p.by_id.len() <= MAX_PROGRAMS);
    }
}

/// A real Smooth ingest body (2 s of video and audio as fmp4ingestsink sent them).
pub const REAL_BODY: &[u8] = include_bytes!("../../endpoint/tests/data/smooth-ingest-2s.bin");

/// The header of [`REAL_BODY`]: its boxes up to the first moof.
fn real_header() -> &'static [u8] {
    let mut at = 0;
    while at + 8 <= REAL_BODY.len() && &REAL_BODY[at + 4..at + 8] != b"moof" {
        at += u32::from_be_bytes(REAL_BODY[at..at + 4].try_into().unwrap()) as usize;
    }
    &REAL_BODY[..at]
}

/// The Smooth ingest body reader, fed in chunks whose size comes from the first byte (whose
/// top bit puts a real header first). Every fragment it accepts is served both ways (DASH/HLS
/// and Smooth) and the served bytes read back with the same samples. Returns the fragments.
pub fn endpoint_ingest(data: &[u8]) -> usize {
    let Some((&first, rest)) = data.split_first() else { return 0 };
    let chunk = usize::from(first & 0x3f) * 64 + 1;
    let input = if first & 0x80 != 0 { [real_header(), rest].concat() } else { rest.to_vec() };
    let mut body = SmoothBody::new(Limits { max_box: 1 << 20, max_mdat: 4 << 20 });
    let mut fragments = Vec::new();
    let mut tracks = Vec::new();
    for c in input.chunks(chunk) {
        let pushed = body.push(c);
        while let Some(e) = body.next_event() {
            match e {
                Event::Header { tracks: t, .. } => tracks = t,
                Event::Fragment(f) => fragments.push(f),
                Event::Note(n) => assert!(!n.contains('\n')),
            }
        }
        if pushed.is_err() {
            break;
        }
    }
    let _ = body.finish();
    let defaults = |id: u32| tracks.iter().find(|t| t.track_id == id).map(|t| t.defaults);
    for f in &fragments {
        for wrap in [Wrap::Cmaf, Wrap::Smooth { lookahead: &[(f.time + f.duration, f.duration)] }] {
            let (head, payload) =
                rewrap(&f.bytes, f.moof_len, f.time, f.duration, wrap).expect("an accepted fragment is served");
            let all = [&head[..], &payload[..]].concat();
            let mdat_header =
                if head.len() >= 16 && &head[head.len() - 12..head.len() - 8] == b"mdat" { 16 } else { 8 };
            let info = read(&all, head.len() - mdat_header, &defaults).expect("a served fragment reads back");
            assert_eq!(info.samples, f.samples);
        }
    }
    fragments.len()
}

/// Real CMAF ingest of fmp4ingestsink, per track: the header, then every segment.
const CMAF_TRACKS: [(&str, &[u8]); 4] = [
    ("video.cmfv", include_bytes!("../../endpoint/tests/data/cmaf/video.cmfv")),
    ("audio.cmfa", include_bytes!("../../endpoint/tests/data/cmaf/audio.cmfa")),
    ("scte35.cmfm", include_bytes!("../../endpoint/tests/data/cmaf/scte35.cmfm")),
    ("video.cmfv", include_bytes!("../../endpoint/tests/data/cmaf/chunked-video.cmfv")),
];

/// The boxes of a CMAF request body, checked: refusals are 400, 412 or 415 with a one-line
/// reason.
fn cmaf_request(body: &[u8], chunk: usize) -> Result<CmafRequest, Refusal> {
    let mut reader = CmafBody::new(Limits { max_box: 1 << 20, max_mdat: 4 << 20 });
    for c in body.chunks(chunk) {
        reader.push(c)?;
    }
    reader.finish()
}

/// The CMAF ingest request reader: the first byte picks the chunk size (its low six bits) and
/// the track whose header the endpoint holds (its top two bits: video, audio, metadata, video
/// again); the rest is one request's body, read in those chunks. A header it takes declares a
/// track of the path's kind, with its init segment for audio and video. A segment it takes
/// reads back as one fragment of the header's track with the segment's time, duration and
/// samples, and is served as DASH/HLS and as Smooth with the same samples; a metadata
/// segment's events become sparse fragments at their times, and the outputs' events read
/// them. Whether the body is told Smooth or CMAF ingest is asked too. Returns what it took.
pub fn endpoint_cmaf(data: &[u8]) -> usize {
    let Some((&first, body)) = data.split_first() else { return 0 };
    let chunk = usize::from(first & 0x3f) * 64 + 1;
    let (name, file) = CMAF_TRACKS[usize::from(first >> 6)];
    let (track, ext) = Extension::of(name).expect("a track path");
    let _ = smooth_shaped(body);
    let header_len: usize =
        fmp4ingest_core::bmff::Boxes::new(file).take(2).map(|b| b.expect("a real header").bytes.len()).sum();
    let Ok(CmafRequest::Header(items)) = cmaf_request(&file[..header_len], 4096) else { panic!("the real header") };
    let header = read_header(items, track, Some(ext)).expect("the real header is taken");
    let defaults = |_| Some(header.track.defaults);
    let outcome = cmaf_request(body, chunk).and_then(|request| match request {
        CmafRequest::Header(items) => {
            let h = read_header(items, track, Some(ext))?;
            assert_eq!(h.track.meta.kind, header.track.meta.kind);
            assert_eq!(h.track.init.is_some(), h.track.meta.kind != Kind::Text);
            Ok(1)
        }
        CmafRequest::Segment(items) => {
            let s = read_segment(items, &header)?;
            let f = &s.fragment;
            let info = read(&f.bytes, f.moof_len, &defaults).expect("a segment taken reads back");
            assert_eq!(
                (info.track_id, info.tfdt, info.duration, info.samples),
                (header.track.track_id, Some(f.time), f.duration, f.samples)
            );
            for wrap in [Wrap::Cmaf, Wrap::Smooth { lookahead: &[(f.time + f.duration, f.duration)] }] {
                let (head, payload) = rewrap(&f.bytes, f.moof_len, f.time, f.duration, wrap).expect("served");
                let all = [&head[..], &payload[..]].concat();
                let mdat_header =
                    if head.len() >= 16 && &head[head.len() - 12..head.len() - 8] == b"mdat" { 16 } else { 8 };
                let back = read(&all, head.len() - mdat_header, &defaults).expect("a served segment reads back");
                assert_eq!(back.samples, f.samples);
            }
            if header.track.meta.kind != Kind::Text {
                return Ok(1);
            }
            let (evs, _) = events(&s, &header)?;
            let mut listing = listing_of(&header);
            for e in &evs {
                let sparse = sparse_fragment(e, header.track.track_id);
                let info = read(&sparse.bytes, sparse.moof_len, &|_| Some(Default::default())).expect("sparse");
                assert_eq!(info.tfxd, Some((e.presentation_time, e.duration.unwrap_or(0))));
                let t = &mut listing.tracks[0];
                t.entries.push((sparse.time, sparse.duration));
                t.messages.push(sparse.bytes.slice(sparse.moof_len + 8..));
            }
            let found = fmp4ingest_endpoint::output::events::scte35(&listing);
            assert_eq!(found.first().map_or(0, |(_, v)| v.len()), evs.len());
            let _ = fmp4ingest_endpoint::output::events::dash_event_streams(&listing, 0.0, 0.0);
            let _ = fmp4ingest_endpoint::output::events::hls_date_ranges(&listing, std::time::UNIX_EPOCH, 0.0);
            Ok(1 + evs.len())
        }
    });
    match outcome {
        Ok(n) => n,
        Err(r) => {
            assert!(matches!(r.status, 400 | 412 | 415), "{r:?}");
            assert!(!r.reason.contains(['\n', '\r']), "{r:?}");
            0
        }
    }
}

/// A listing of the metadata track alone, without messages yet.
fn listing_of(header: &Header) -> Listing {
    Listing {
        live: true,
        window: std::time::Duration::from_secs(60),
        anchor: std::time::UNIX_EPOCH,
        published: std::time::UNIX_EPOCH,
        tracks: vec![TrackListing {
            meta: std::sync::Arc::new(header.track.meta.clone()),
            entries: Vec::new(),
            first_sequence: 0,
            messages: Vec::new(),
            cache: Default::default(),
        }],
    }
}
