// SPDX-License-Identifier: MPL-2.0
//! Ingest: requests that bring media, and how what they bring reaches the store.
//!
//! Both protocols come to `/<name>.isml/Streams(<id>)` on the same port, told apart by the
//! request ([`ingest`]): a path `Streams(<track>.cmfv|cmfa|cmfm)` or a `PUT` is CMAF ingest;
//! otherwise the body says it — Smooth ingest's starts with `ftyp` and the Live Server
//! Manifest (a `uuid` box), a CMAF header with `ftyp` and `moov`, a CMAF segment with `styp`,
//! `prft` or `moof`. An empty request is the probe of either, answered 200.
//!
//! The protocol side reads a request body into declared tracks and fragments ([`smooth`]
//! for Smooth ingest, through the incremental [`boxes`] reader and the [`lsm`] parser;
//! [`cmaf`] for CMAF ingest). The store side is the same for any protocol: [`declare`] puts a
//! source's tracks on the point's per-name timelines, [`place`] adds a fragment, trims to the
//! window, hands the archive its writes and prunes, and lets running programs record it.

pub mod boxes;
pub mod cmaf;
pub mod lsm;
pub mod mpd;
pub mod smooth;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};

use crate::archive::Op;
use crate::endpoint::{MAX_POINTS, MAX_STREAMS, Shared};
use crate::media::init::SampleDefaults;
use crate::media::meta::{Kind, TrackMeta};
use crate::programs::ProgramState;
use crate::server::{Body, empty, refusal};
use crate::store::{Arrival, Point, Track};
use cmaf::{CmafBody, Extension, Refusal, Request as CmafRequest};
use fmp4ingest_core::bmff::BoxHeader;
use fmp4ingest_core::bmff::fourcc::codes;
use smooth::{Event, SmoothBody};

/// A track an ingest request declares (Smooth: the Live Server Manifest and the moov; CMAF:
/// a header of one track).
#[derive(Debug, Clone)]
pub struct DeclaredTrack {
    /// track_ID in the moov and the fragments.
    pub track_id: u32,
    pub meta: TrackMeta,
    /// ftyp + moov of this track alone, for DASH and HLS (None for a sparse track).
    pub init: Option<Bytes>,
    pub defaults: SampleDefaults,
}

/// A fragment of an ingest request, checked and timed.
#[derive(Debug, Clone)]
pub struct Fragment {
    pub track_id: u32,
    pub time: u64,
    pub duration: u64,
    pub samples: u32,
    /// moof + mdat as ingested.
    pub bytes: Bytes,
    pub moof_len: usize,
}

/// Log lines a single request may add about its content (the rest are counted).
const NOTES_PER_REQUEST: usize = 20;

/// A source declared its tracks: they join the point's timelines (and the archive).
pub fn declare(shared: &Shared, point: &str, source: &str, tracks: &[DeclaredTrack], peer: &str) {
    let p = shared.point(point);
    let notes = {
        let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
        let notes = p.declare(source, tracks, SystemTime::now());
        if let Some(a) = &shared.archive {
            for t in tracks {
                if let Some(track) = p.tracks.get(&t.meta.name) {
                    let meta = (*track.meta).clone();
                    a.send(Op::Track { point: point.to_string(), meta, init: track.init.clone() });
                }
            }
        }
        notes
    };
    for n in notes {
        shared.log(format!("{peer}: /{point}.isml/Streams({source}): {n}"));
    }
}

/// Adds a fragment of a source to its point; how it fitted, or why it has no place.
pub fn place(shared: &Shared, point: &str, source: &str, f: &Fragment) -> Result<Arrival, String> {
    let (now, wall) = (Instant::now(), SystemTime::now());
    let cfg = &shared.config;
    let p = shared.point(point);
    let (name, how, meta, init) = {
        let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
        let (name, how) = p.add(source, f, now, wall)?;
        let track = p.tracks.get_mut(&name).expect("placed on this track");
        if !how.kept() {
            return Ok(how);
        }
        if let Some(a) = &shared.archive {
            if let Arrival::Longer { replaced } = how {
                a.send(Op::Remove { point: point.to_string(), track: name.clone(), time: f.time, duration: replaced });
            }
            let op = Op::Fragment {
                point: point.to_string(),
                track: name.clone(),
                time: f.time,
                duration: f.duration,
                bytes: f.bytes.clone(),
            };
            if a.send(op)
                && let Some(e) = track.timeline.entries.get_mut(&f.time)
            {
                e.archived = true;
            }
        }
        let removed = track.trim(cfg.archive_window, cfg.max_track_bytes, shared.archive.is_some());
        if let Some(a) = &shared.archive {
            for (time, duration) in removed {
                a.send(Op::Remove { point: point.to_string(), track: name.clone(), time, duration });
            }
        }
        (name.clone(), how, track.meta.clone(), track.init.clone())
    };
    // Running programs of this channel record the fragment too.
    let mut programs = shared.programs.lock().unwrap_or_else(|e| e.into_inner());
    for prog in programs.by_id.values_mut() {
        if prog.channel == point && prog.state(now) == ProgramState::Running {
            let window = prog.window;
            let copy = prog.archive.entry(name.clone()).or_insert_with(|| Track::new((*meta).clone(), init.clone()));
            copy.add(f.time, f.duration, f.bytes.clone(), f.moof_len, now, wall);
            copy.trim(window, cfg.max_track_bytes, false);
        }
    }
    Ok(how)
}

/// The point, registered, unless it would be one more than the endpoint takes.
fn admit_point(shared: &Shared, point: &str) -> Option<Arc<Mutex<Point>>> {
    let mut points = shared.points.lock().unwrap_or_else(|e| e.into_inner());
    if !points.contains_key(point) && points.len() >= MAX_POINTS {
        return None;
    }
    Some(points.entry(point.to_string()).or_default().clone())
}

/// Whether the point (and the stream in it) can be taken; registers both.
fn admit(shared: &Shared, point: &str, stream: &str) -> bool {
    let Some(p) = admit_point(shared, point) else { return false };
    let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
    if !p.sources.contains_key(stream) && p.sources.len() >= MAX_STREAMS {
        return false;
    }
    p.source_mut(stream);
    true
}

/// An ingest request's body as it arrives: what was read to tell its protocol first, then
/// the rest, each piece within the body timeout.
pub struct IngestBody {
    early: VecDeque<Bytes>,
    body: Incoming,
    timeout: Duration,
}

impl IngestBody {
    fn new(body: Incoming, timeout: Duration) -> Self {
        IngestBody { early: VecDeque::new(), body, timeout }
    }

    /// The next bytes; `None` at the end; an error status and reason when the body broke off
    /// or went silent.
    async fn next(&mut self) -> Result<Option<Bytes>, (u16, String)> {
        if let Some(b) = self.early.pop_front() {
            return Ok(Some(b));
        }
        loop {
            match tokio::time::timeout(self.timeout, self.body.frame()).await {
                Ok(Some(Ok(frame))) => match frame.into_data() {
                    Ok(d) if !d.is_empty() => return Ok(Some(d)),
                    _ => continue,
                },
                Ok(Some(Err(e))) => return Err((400, format!("the body broke off: {e}"))),
                Ok(None) => return Ok(None),
                Err(_) => return Err((408, format!("nothing received for {:?}", self.timeout))),
            }
        }
    }

    /// Reads the body's first boxes until it shows its protocol: whether it is Smooth ingest
    /// (the Live Server Manifest after `ftyp`) rather than CMAF ingest.
    async fn is_smooth(&mut self) -> Result<bool, (u16, String)> {
        let mut seen = Vec::new();
        loop {
            if let Some(smooth) = smooth_shaped(&seen) {
                return Ok(smooth);
            }
            match tokio::time::timeout(self.timeout, self.body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(d) = frame.into_data() {
                        seen.extend_from_slice(&d);
                        self.early.push_back(d);
                    }
                }
                Ok(Some(Err(e))) => return Err((400, format!("the body broke off: {e}"))),
                // Too short to tell: the Smooth reader says what is missing.
                Ok(None) => return Ok(true),
                Err(_) => return Err((408, format!("nothing received for {:?}", self.timeout))),
            }
        }
    }
}

/// Whether a body starting with these bytes is Smooth ingest (`ftyp`, then the `uuid` of the
/// Live Server Manifest); `None` until its first two box headers are there. Anything not
/// starting with `ftyp` is a CMAF segment (or nothing either protocol reads).
pub fn smooth_shaped(start: &[u8]) -> Option<bool> {
    let first = match BoxHeader::parse(start) {
        Ok(Some(h)) => h,
        Ok(None) => return None,
        Err(_) => return Some(true),
    };
    if first.box_type != codes::FTYP {
        return Some(false);
    }
    // An ftyp of more than 64 KiB is no one's: let the Smooth reader refuse it.
    let size = usize::try_from(first.size).ok().filter(|s| *s <= 1 << 16)?;
    match BoxHeader::parse(start.get(size..)?) {
        Ok(Some(second)) => Some(second.box_type == codes::UUID),
        Ok(None) => None,
        Err(_) => Some(true),
    }
}

/// A POST or PUT to `/<point>.isml/Streams(<stream>)`: the probe of either protocol, Smooth
/// ingest, or a request of a CMAF ingest track (see the module's doc).
pub async fn ingest(
    req: Request<Incoming>,
    point: &str,
    stream: &str,
    peer: &str,
    shared: Arc<Shared>,
) -> Response<Body> {
    let method = req.method().as_str().to_string();
    let what = format!("{method} /{point}.isml/Streams({stream})");
    if !admit(&shared, point, stream) {
        let why = format!("at most {MAX_POINTS} publishing points of {MAX_STREAMS} streams");
        return refusal(&shared, peer, &what, 503, &why);
    }
    let headers = req.headers();
    let chunked =
        headers.get(hyper::header::TRANSFER_ENCODING).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    let length: Option<u64> = headers.get(hyper::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    let cmaf_path = Extension::of(stream).is_some() || method == "PUT";
    if !chunked && length.unwrap_or(0) == 0 {
        // The probe: an empty request (Azure fragmented MP4 live ingest §2.2, rule 2; DASH-IF
        // Live Media Ingest, "General Protocol, Manifest and Track Format Requirements" 1).
        if cmaf_path {
            let p = shared.point(point);
            p.lock().unwrap_or_else(|e| e.into_inner()).source_mut(stream).cmaf.probes += 1;
        }
        return empty(200);
    }
    let mut body = IngestBody::new(req.into_body(), shared.config.body_timeout);
    let smooth = if cmaf_path {
        false
    } else {
        match body.is_smooth().await {
            Ok(s) => s,
            Err((status, why)) => return refusal(&shared, peer, &what, status, &why),
        }
    };
    if smooth {
        smooth_post(body, &what, point, stream, peer, shared).await
    } else {
        cmaf_request(body, &what, point, stream, peer, shared).await
    }
}

/// A Smooth ingest POST with a body: a long chunked one, or a short one with a Content-Length
/// (a sparse stream's message).
async fn smooth_post(
    mut body: IngestBody,
    what: &str,
    point: &str,
    stream: &str,
    peer: &str,
    shared: Arc<Shared>,
) -> Response<Body> {
    {
        let p = shared.point(point);
        let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
        let s = p.source_mut(stream);
        s.requests += 1;
        s.open += 1;
    }
    shared.log(format!("{peer}: {what} started"));
    let mut reader = SmoothBody::new(shared.config.box_limits);
    let (mut notes, mut fragments) = (0usize, 0u64);
    let outcome: Result<(), (u16, String)> = loop {
        let data = match body.next().await {
            Ok(Some(d)) => d,
            Ok(None) => break reader.finish().map_err(|e| (400, e)),
            Err(e) => break Err(e),
        };
        if let Err(e) = reader.push(&data) {
            break Err((400, e));
        }
        while let Some(ev) = reader.next_event() {
            match ev {
                Event::Header { tracks, .. } => declare(&shared, point, stream, &tracks, peer),
                Event::Fragment(f) => match place(&shared, point, stream, &f) {
                    Ok(_) => fragments += 1,
                    Err(e) => note(&shared, peer, what, &mut notes, format!("fragment refused: {e}")),
                },
                Event::Note(n) => note(&shared, peer, what, &mut notes, n),
            }
        }
    };
    if notes > NOTES_PER_REQUEST {
        shared.log(format!("{peer}: {what}: {} more problems not logged", notes - NOTES_PER_REQUEST));
    }
    {
        let p = shared.point(point);
        let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
        let s = p.source_mut(stream);
        s.open = s.open.saturating_sub(1);
    }
    match outcome {
        Ok(()) => {
            shared.log(format!("{peer}: {what} ended ({fragments} fragments)"));
            empty(200)
        }
        Err((status, why)) => refusal(&shared, peer, what, status, &format!("{why} (after {fragments} fragments)")),
    }
}

/// A request of a CMAF ingest track with a body: its header or one segment, read whole, then
/// taken or refused (DASH-IF Live Media Ingest, "Failure Behaviors" 5).
async fn cmaf_request(
    mut body: IngestBody,
    what: &str,
    point: &str,
    stream: &str,
    peer: &str,
    shared: Arc<Shared>,
) -> Response<Body> {
    let (name, ext) = match Extension::of(stream) {
        Some((n, e)) => (n, Some(e)),
        None => (stream, None),
    };
    let p = shared.point(point);
    {
        let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
        let s = p.source_mut(stream);
        s.requests += 1;
        s.open += 1;
    }
    let mut reader = CmafBody::new(shared.config.box_limits);
    let read: Result<CmafRequest, Refusal> = loop {
        match body.next().await {
            Ok(Some(d)) => {
                if let Err(r) = reader.push(&d) {
                    break Err(r);
                }
            }
            Ok(None) => break reader.finish(),
            Err((status, reason)) => break Err(Refusal { status, reason }),
        }
    };
    let outcome = if name.is_empty() {
        Err(Refusal { status: 400, reason: format!("no track name before the extension of {stream}") })
    } else {
        match read {
            Ok(CmafRequest::Header(items)) => take_header(&shared, point, stream, name, ext, items, peer, what),
            Ok(CmafRequest::Segment(items)) => take_segment(&shared, point, stream, name, items, peer, what),
            Err(r) => Err(r),
        }
    };
    {
        let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
        let s = p.source_mut(stream);
        s.open = s.open.saturating_sub(1);
        match outcome.as_ref().map_err(|r| r.status) {
            Err(412) => s.cmaf.precondition_failed += 1,
            Err(400 | 415) => s.cmaf.refused += 1,
            _ => {}
        }
    }
    match outcome {
        Ok(()) => empty(200),
        Err(r) => refusal(&shared, peer, what, r.status, &r.reason),
    }
}

/// A CMAF header: checked, kept for the path, and its track declared on the point when it is
/// new or changed. A track of the point's name but of another kind or timescale is refused
/// with 415: its segments could not join that timeline.
#[allow(clippy::too_many_arguments)]
fn take_header(
    shared: &Shared,
    point: &str,
    stream: &str,
    name: &str,
    ext: Option<Extension>,
    items: Vec<boxes::Item>,
    peer: &str,
    what: &str,
) -> Result<(), Refusal> {
    let h = cmaf::read_header(items, name, ext)?;
    let m = &h.track.meta;
    let changed = {
        let p = shared.point(point);
        let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = p.tracks.get(name).filter(|t| t.meta.kind != m.kind || t.meta.timescale != m.timescale) {
            return Err(Refusal {
                status: 415,
                reason: format!(
                    "track {name} of this point is {} at timescale {}; this header's is {} at {}",
                    t.meta.kind.as_str(),
                    t.meta.timescale,
                    m.kind.as_str(),
                    m.timescale
                ),
            });
        }
        let s = p.source_mut(stream);
        s.cmaf.headers += 1;
        let before = s.cmaf.header.replace(h.clone());
        match before {
            None => Some("header"),
            Some(b) if b.bytes != h.bytes => Some("a new header, unlike the one before"),
            Some(_) => None,
        }
    };
    if let Some(which) = changed {
        let codecs = if m.codecs.is_empty() { String::new() } else { format!(" {},", m.codecs) };
        shared.log(format!("{peer}: {what}: {which}: {} track,{codecs} timescale {}", m.kind.as_str(), m.timescale));
        declare(shared, point, stream, std::slice::from_ref(&h.track), peer);
    }
    Ok(())
}

/// A CMAF segment: 412 without a header for the path; else checked and placed (for the
/// timed metadata track, each new SCTE-35 event it carries).
fn take_segment(
    shared: &Shared,
    point: &str,
    stream: &str,
    name: &str,
    items: Vec<boxes::Item>,
    peer: &str,
    what: &str,
) -> Result<(), Refusal> {
    let p = shared.point(point);
    let header = p.lock().unwrap_or_else(|e| e.into_inner()).source_mut(stream).cmaf.header.clone();
    let Some(header) = header else {
        return Err(Refusal {
            status: 412,
            reason: "no CMAF header for this track since the endpoint started: the header goes first".into(),
        });
    };
    let segment = cmaf::read_segment(items, &header)?;
    let mut notes = 0;
    for n in &segment.notes {
        note(shared, peer, what, &mut notes, n.clone());
    }
    let refused = |e: String| Refusal { status: 412, reason: format!("the segment has no place on the point ({e})") };
    if header.track.meta.kind == Kind::Text {
        let (events, event_notes) = cmaf::events(&segment, &header)?;
        for n in event_notes {
            note(shared, peer, what, &mut notes, n);
        }
        for e in events {
            let known = {
                let p = p.lock().unwrap_or_else(|e| e.into_inner());
                p.tracks.get(name).is_some_and(|t| t.timeline.entries.contains_key(&e.presentation_time))
            };
            if !known {
                place(shared, point, stream, &cmaf::sparse_fragment(&e, header.track.track_id)).map_err(refused)?;
            }
        }
        // The metadata track's own arrival: it keeps its source's count, not the point live.
        p.lock().unwrap_or_else(|e| e.into_inner()).source_mut(stream).last_arrival = Some(Instant::now());
    } else {
        place(shared, point, stream, &segment.fragment).map_err(refused)?;
    }
    let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
    let s = p.source_mut(stream);
    s.cmaf.segments += 1;
    let ended_before = std::mem::replace(&mut s.cmaf.ended, segment.lmsg);
    if segment.lmsg && !ended_before {
        drop(p);
        shared.log(format!("{peer}: {what}: the track ended (lmsg in segment {})", segment.sequence));
    }
    Ok(())
}

/// An MPD posted to a point (see [`mpd`]): checked, then kept under its file name, the
/// newest copy replacing the one before. The log line, or the refusal's status and reason.
pub fn store_mpd(shared: &Shared, point: &str, file: &str, body: Bytes) -> Result<String, (u16, String)> {
    let summary = mpd::check(&body).map_err(|e| (400, e))?;
    let p = admit_point(shared, point).ok_or_else(|| (503, format!("at most {MAX_POINTS} publishing points")))?;
    let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
    if !p.mpds.contains_key(file) && p.mpds.len() >= mpd::MAX_MPDS {
        return Err((503, format!("at most {} MPD files per publishing point", mpd::MAX_MPDS)));
    }
    let replaced = p.mpds.insert(file.to_string(), body.clone()).is_some();
    Ok(format!(
        "MPD {file} {} ({} bytes, {}, {} Representations)",
        if replaced { "replaced" } else { "stored" },
        body.len(),
        summary.kind,
        summary.representations
    ))
}

fn note(shared: &Shared, peer: &str, what: &str, count: &mut usize, line: String) {
    *count += 1;
    if *count <= NOTES_PER_REQUEST {
        shared.log(format!("{peer}: {what}: {line}"));
    }
}
