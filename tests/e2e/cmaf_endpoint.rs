// SPDX-License-Identifier: MPL-2.0
//! The local endpoint takes CMAF ingest (DASH-IF Live Media Ingest, Interface-1) from
//! fmp4ingestsink with `protocol=cmaf`, on the port of Smooth ingest, and serves it as it
//! serves Smooth ingest: one deduplicated timeline per track, heartbeats, Smooth, DASH and HLS,
//! with the timed metadata track's SCTE-35 as ad breaks in each.
//!
//! - A push plays back through dashdemux, hlsdemux2 and mssdemux frame for frame against what
//!   was ingested, as the test receiver read the same segments from a second sink; its splice
//!   events are in the MPD and the HLS playlist at their times, live and recorded.
//! - A redundant pair of encoders on the UTC grid pushing to one publishing point make one
//!   timeline: every second copy of a segment dropped, no gap where one of them stops.
//! - Behind a relay that keeps the encoder's connections (as a load balancer does), the
//!   endpoint restarted between the header and the segments answers 412; the encoder sends
//!   the header again and the segment after it, and nothing is lost: the restarted endpoint
//!   reads back its archive and the timeline goes on without a gap, every frame served.
//! - On the wire: the probe, the header and segments with a Content-Length or chunked, PUT,
//!   keep-alive; 412, 415 and 400 with a one-line reason each.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::client::{Client, get};
use common::player::{Ingested, plays_recorded};
use common::relay::Relay;
use common::{RunResult, realtime_pipeline, run, run_with};
use fmp4ingest_core::scte35::{SpliceInsert, build_splice_insert};
use fmp4ingest_endpoint::{Endpoint, EndpointConfig, TrackStatus};
use fmp4ingest_receiver::Receiver;
use gst::prelude::*;

const SEC: u64 = 1_000_000_000;

fn endpoint(config: EndpointConfig) -> Endpoint {
    Endpoint::start(EndpointConfig { bind: "127.0.0.1:0".parse().unwrap(), ..config }).unwrap()
}

fn ok(r: &RunResult) {
    assert!(r.eos && r.errors.is_empty(), "{:?} {:?}", r.errors, r.warnings);
}

fn status(ep: &Endpoint, point: &str, track: &str) -> Option<TrackStatus> {
    ep.status().into_iter().find(|s| s.point == point && s.track == track)
}

fn wait_for(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < limit, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the point turned recorded (its last fragment `idle`, 10 s, old).
fn wait_recorded(ep: &Endpoint, point: &str) {
    wait_for(&format!("{point} turns recorded"), Duration::from_secs(30), || {
        ep.status().iter().all(|s| s.point != point || !s.live)
    });
}

/// Video frames and AAC frames the encoders made, counted at the parsers' outputs.
fn count_frames(p: &gst::Pipeline) -> (Arc<AtomicU64>, Arc<AtomicU64>) {
    (common::count_buffers(p, "vparse"), common::count_buffers(p, "aparse"))
}

/// Milliseconds since 1970 of a `YYYY-MM-DDTHH:MM:SS.mmmZ` date-time.
fn millis(t: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| t[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from 1970-01-01 of a proleptic Gregorian date (H. Hinnant, "chrono-compatible
    // low-level date algorithms").
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    ((days * 24 + n(11..13)) * 60 + n(14..16)) * 60_000 + n(17..19) * 1000 + n(20..23)
}

/// The value of `name="..."` in an XML start tag or an HLS attribute list.
fn attr<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let at = text.find(&format!("{name}=\""))? + name.len() + 2;
    Some(&text[at..at + text[at..].find('"')?])
}

/// An `EXT-X-DATERANGE` attribute that is not quoted.
fn bare<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!(",{name}="))? + name.len() + 2;
    Some(line[at..].split(',').next().unwrap())
}

/// The events of the MPD, as a player reads its EventStream: (presentationTime, duration, id),
/// and the stream's timescale.
fn mpd_events(mpd: &str) -> (u32, Vec<(u64, Option<u64>, u32)>) {
    let Some(at) = mpd.find("<EventStream ") else { return (0, Vec::new()) };
    let stream = &mpd[at..mpd[at..].find("</EventStream>").map_or(mpd.len(), |e| at + e)];
    assert_eq!(attr(stream, "schemeIdUri"), Some("urn:scte:scte35:2014:xml+bin"), "{stream}");
    let ts = attr(stream, "timescale").unwrap().parse().unwrap();
    let events = stream
        .split("<Event ")
        .skip(1)
        .map(|e| {
            assert!(e.contains("<scte35:Signal><scte35:Binary>"), "{e}");
            (
                attr(e, "presentationTime").unwrap().parse().unwrap(),
                attr(e, "duration").map(|d| d.parse().unwrap()),
                attr(e, "id").unwrap().parse().unwrap(),
            )
        })
        .collect();
    (ts, events)
}

/// Checks that the ad break (out at `out_s`, `len_s` long; back in at `out_s + len_s`) is in
/// the MPD and the video playlist at its time; `live` says which MPD to expect.
fn check_ad_break(ep: &Endpoint, point: &str, out_s: f64, len_s: f64, live: bool) {
    let mpd = get(&ep.mpd_url(point)).text();
    assert_eq!(mpd.contains("type=\"dynamic\""), live, "{mpd}");
    let (ts, events) = mpd_events(&mpd);
    // The Period starts at media time 0 while live, at the first segment once recorded: the
    // video's presentationTimeOffset (its timescale is the metadata track's).
    let video = &mpd[mpd.find("contentType=\"video\"").unwrap()..];
    let pto: u64 = attr(video, "presentationTimeOffset").unwrap().parse().unwrap();
    assert_eq!(attr(video, "timescale").unwrap().parse::<u32>().unwrap(), ts, "{mpd}");
    let tick = |s: f64| (s * f64::from(ts)).round() as u64;
    assert_eq!(events.len(), 2, "{mpd}");
    let (out, back) = (events[0], events[1]);
    assert!(out.0.abs_diff(tick(out_s) - pto) <= 1 && out.1 == Some(tick(len_s)) && out.2 == 5, "{out:?} in {mpd}");
    assert!(back.0.abs_diff(tick(out_s + len_s) - pto) <= 1 && back.1.is_none() && back.2 == 6, "{back:?}");
    // HLS: the out and in of one date range, at the splice's wall-clock time, measured from
    // the first segment's EXT-X-PROGRAM-DATE-TIME.
    let hls = get(&format!("{}/video.m3u8", ep.publishing_point_url(point))).text();
    let ranges: Vec<&str> = hls.lines().filter(|l| l.starts_with("#EXT-X-DATERANGE:")).collect();
    assert_eq!(ranges.len(), 2, "{hls}");
    let pdt = hls.lines().find_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:")).unwrap();
    let first: u64 =
        hls.lines().find_map(|l| l.strip_prefix("cmaf/video/")?.strip_suffix(".m4s")).unwrap().parse().unwrap();
    let start = attr(ranges[0], "START-DATE").unwrap();
    let expected_ms = ((tick(out_s) as f64 - first as f64) / f64::from(ts) * 1000.0).round() as i64;
    assert!((millis(start) - millis(pdt) - expected_ms).abs() <= 1, "{start} vs {pdt} + {expected_ms} ms: {hls}");
    assert!(ranges[0].contains("SCTE35-OUT=0xFC") && bare(ranges[0], "PLANNED-DURATION") == Some("4.000"), "{hls}");
    assert!(ranges[1].contains("SCTE35-IN=0xFC") && bare(ranges[1], "DURATION") == Some("4.000"), "{hls}");
    assert_eq!((attr(ranges[0], "ID"), attr(ranges[1], "START-DATE")), (attr(ranges[1], "ID"), Some(start)));
    // Smooth: the sparse track's messages at their times.
    let smooth = get(&ep.manifest_url(point)).text();
    let text = &smooth[smooth.find("Type=\"text\"").expect("a text StreamIndex")..];
    assert!(text.contains(&format!("<c t=\"{}\"><f>", events[0].0 + pto)), "{smooth}");
}

#[test]
fn a_cmaf_push_plays_back_frame_for_frame_with_its_ad_breaks() {
    let ep = endpoint(EndpointConfig::default());
    let rx = Receiver::start().unwrap();
    let seconds = 18;
    let sinks = format!(
        "tee name=t t. ! queue ! fmp4ingestsink name=sink protocol=cmaf location=\"{}\" metadata-track=scte35 \
         t. ! queue ! fmp4ingestsink name=copy protocol=cmaf location=\"{}\" metadata-track=scte35",
        ep.publishing_point_url("tv"),
        rx.publishing_point("tv")
    );
    let p = common::init_pipeline(&common::av_into(&sinks, seconds));
    let (video, audio) = count_frames(&p);
    let pusher = std::thread::spawn(move || {
        run_with(&p, Duration::from_secs(90), |p, _| {
            std::thread::sleep(Duration::from_millis(500));
            // A break out of the network at 10.3 s for 4 s, and back in at 14.3 s: the out
            // built by the sink, the in a section of the application's.
            let out = gst::Structure::builder("fmp4ingest-splice")
                .field("running-time", 10_300_000_000u64)
                .field("id", 5u32)
                .field("duration", 4 * SEC)
                .build();
            let section = build_splice_insert(&SpliceInsert::program(5, false, None, None));
            let back = gst::Structure::builder("fmp4ingest-scte35")
                .field("section", gst::Buffer::from_slice(section))
                .field("running-time", 14_300_000_000u64)
                .field("id", 6u32)
                .build();
            for sink in ["sink", "copy"] {
                for e in [&out, &back] {
                    assert!(p.by_name(sink).unwrap().send_event(gst::event::CustomDownstream::new(e.clone())));
                }
            }
        })
    });
    // Live: both events are carried long before their splices.
    wait_for("both events at the endpoint", Duration::from_secs(30), || {
        status(&ep, "tv", "scte35").is_some_and(|s| s.fragments == 2)
    });
    assert!(status(&ep, "tv", "video").unwrap().live);
    check_ad_break(&ep, "tv", 10.3, 4.0, true);
    let hb = ep.heartbeats("tv");
    let names: Vec<&str> =
        hb["value"].as_array().unwrap().iter().map(|e| e["data"]["trackName"].as_str().unwrap()).collect();
    assert!(names.contains(&"video") && names.contains(&"audio") && !names.contains(&"scte35"), "{hb}");
    let r = pusher.join().unwrap();
    ok(&r);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    wait_recorded(&ep, "tv");
    check_ad_break(&ep, "tv", 10.3, 4.0, false);
    for track in ["video", "audio", "scte35"] {
        let s = status(&ep, "tv", track).unwrap();
        // One header, every segment in a request of its own, nothing refused or lost.
        assert_eq!(
            (s.headers, s.precondition_failed, s.refused, s.discontinuities, s.overlaps),
            (1, 0, 0, 0, 0),
            "{s:?}"
        );
        assert!(s.requests >= 9, "{s:?}");
    }
    // Every player decodes what was ingested, frame for frame.
    let ing = Ingested::cmaf(&rx);
    let (video, audio) = (video.load(Ordering::Relaxed), audio.load(Ordering::Relaxed));
    assert_eq!((ing.video_pts.len() as u64, ing.audio_frames.iter().sum::<u64>()), (video, audio));
    let players =
        [("dashdemux", ep.mpd_url("tv")), ("hlsdemux2", ep.hls_url("tv")), ("mssdemux", ep.manifest_url("tv"))];
    let failures: Vec<String> =
        players.iter().filter_map(|(d, url)| plays_recorded(d, url, &ing, video, audio).err()).collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

/// What the README's redundant pair sets: UTC, declared bitrates (a measured one differs).
const PAIR: &str = "protocol=cmaf timestamp-mode=utc video-bitrate=600000 audio-bitrate=128000";

#[test]
fn a_redundant_pair_deduplicates_to_one_timeline() {
    let ep = endpoint(EndpointConfig::default());
    let encoder = |seconds| {
        let sink = format!("fmp4ingestsink name=sink location=\"{}\" {PAIR}", ep.publishing_point_url("pair"));
        realtime_pipeline(&common::av_into(&sink, seconds))
    };
    // A starts, B joins 3.3 s later; A stops first, in the middle of a segment, which B sends whole.
    let (a, b) = (encoder(12), encoder(14));
    let ta = std::thread::spawn(move || run(&a, Duration::from_secs(60)));
    std::thread::sleep(Duration::from_millis(3300));
    let rb = run(&b, Duration::from_secs(60));
    ok(&ta.join().unwrap());
    ok(&rb);
    for track in ["video", "audio"] {
        let s = status(&ep, "pair", track).unwrap();
        assert_eq!(s.streams, [format!("{track}.{}", if track == "video" { "cmfv" } else { "cmfa" })]);
        // One timeline: each second copy dropped (B's first ones, A's last ones), the whole
        // segment replacing the cut one, nothing overlapping, no gap, nothing out of order.
        assert!(s.duplicates >= 3, "{s:?}");
        assert_eq!((s.overlaps, s.discontinuities, s.past), (0, 0, 0), "{s:?}");
        assert!(s.kept_seconds > 13.0, "{s:?}");
        assert!(s.headers >= 2 && (s.precondition_failed, s.refused) == (0, 0), "{s:?}");
    }
    for e in ep.heartbeats("pair")["value"].as_array().unwrap() {
        let d = &e["data"];
        assert_eq!((d["overlapCount"].as_u64(), d["discontinuityCount"].as_u64()), (Some(0), Some(0)), "{d}");
        assert_eq!(d["nonincreasingCount"].as_u64(), Some(0), "{d}");
    }
    // The playlist lists each segment once, end to end.
    let hls = get(&format!("{}/video.m3u8", ep.publishing_point_url("pair"))).text();
    let listed: f64 =
        hls.lines().filter_map(|l| l.strip_prefix("#EXTINF:")?.strip_suffix(',')?.parse::<f64>().ok()).sum();
    let kept = status(&ep, "pair", "video").unwrap().kept_seconds;
    assert!((listed - kept).abs() < 0.01, "{listed} s listed, {kept} s kept: {hls}");
    assert_eq!(hls.matches("#EXT-X-PROGRAM-DATE-TIME").count(), 1, "one run, no gap: {hls}");
}

#[test]
fn an_endpoint_restarted_between_header_and_segments_answers_412_and_loses_nothing() {
    let dir = std::env::temp_dir().join(format!("fmp4ingest-cmaf-412-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = || EndpointConfig { archive_dir: Some(dir.clone()), ..EndpointConfig::default() };
    let first = endpoint(config());
    let relay = Relay::start(first.addr());
    let pp = format!("http://{}/live.isml", relay.addr());
    let sink = format!("fmp4ingestsink name=sink protocol=cmaf location=\"{pp}\" metadata-track=scte35");
    let p = common::init_pipeline(&common::av_into(&sink, 16));
    let (video, _) = count_frames(&p);
    let pusher = std::thread::spawn(move || run(&p, Duration::from_secs(90)));
    // Once a few segments are in, just after one arrived (every track's requests of a
    // boundary are done within a few ms; the next come 2 s later): the endpoint goes, with
    // everything it archived, and a new one takes its place behind the relay.
    let fragments = |ep: &Endpoint| status(ep, "live", "video").map_or(0, |s| s.fragments);
    wait_for("three segments", Duration::from_secs(30), || fragments(&first) >= 3);
    let n = fragments(&first);
    wait_for("the next segment", Duration::from_secs(10), || fragments(&first) > n);
    std::thread::sleep(Duration::from_millis(600));
    relay.pause();
    let placed: usize = first.status().iter().map(|s| s.fragments).sum();
    wait_for("the archive written", Duration::from_secs(10), || {
        first.archive_counts().is_some_and(|(written, ..)| written as usize >= placed)
    });
    drop(first);
    let second = endpoint(config());
    assert!(second.status().iter().any(|s| s.track == "video" && s.fragments >= 4 && !s.live), "{:?}", second.status());
    relay.resume(second.addr());
    let r = pusher.join().unwrap();
    ok(&r);
    // Each track's next segment found no header: 412, the header again on the same
    // connection, then the segment — nothing resent beyond it, skipped or dropped.
    assert!(r.messages_named("fmp4ingestsink-cmaf-header-requested").len() >= 3, "{:?}", r.messages);
    for gone in ["fmp4ingestsink-cmaf-skipped", "fmp4ingestsink-cmaf-rejected", "fmp4ingestsink-dropped"] {
        assert!(r.messages_named(gone).is_empty(), "{gone}: {:?}", r.messages);
    }
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let log = second.log_lines();
    for track in ["video.cmfv", "audio.cmfa", "scte35.cmfm"] {
        assert!(log.iter().any(|l| l.contains(&format!("Streams({track}): 412"))), "{track}: {log:#?}");
    }
    for track in ["video", "audio"] {
        let s = status(&second, "live", track).unwrap();
        assert_eq!(s.precondition_failed, 1, "{s:?}");
        assert_eq!((s.overlaps, s.discontinuities, s.past), (0, 0, 0), "no gap where the endpoint restarted: {s:?}");
    }
    // Every frame the encoder made is in a segment the new endpoint serves: the ones it read
    // back from the archive and the ones it took since.
    wait_recorded(&second, "live");
    let hls = get(&format!("{}/video.m3u8", second.publishing_point_url("live"))).text();
    let base = second.publishing_point_url("live");
    let mut frames = 0u64;
    for seg in hls.lines().filter(|l| l.starts_with("cmaf/")) {
        let body = get(&format!("{base}/{seg}")).body;
        let mut v = Vec::new();
        let s = fmp4ingest_receiver::cmaf_mp4::read_segment(&body, false, false, &mut v).expect("a segment");
        frames += u64::from(s.sample_count);
    }
    assert_eq!(frames, video.load(Ordering::Relaxed), "{hls}");
    drop(second);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Real CMAF ingest of fmp4ingestsink (1 s segments of 64x48 H.264, mono AAC, a metadata
/// track with one splice event), per track the header and then every segment.
fn fixture(name: &str) -> Vec<Vec<u8>> {
    let file = std::fs::read(format!("{}/../endpoint/tests/data/cmaf/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut at = 0;
    while at + 8 <= file.len() {
        let size = u32::from_be_bytes(file[at..at + 4].try_into().unwrap()) as usize;
        if at == 0 || (&file[at + 4..at + 8] == b"styp" && &file[at + 8..at + 12] == b"cmfs") {
            out.push(Vec::new());
        }
        out.last_mut().unwrap().extend_from_slice(&file[at..at + size]);
        at += size;
    }
    out
}

#[test]
fn cmaf_requests_are_answered_as_a_receiver_of_the_spec() {
    let ep = endpoint(EndpointConfig::default());
    let (video, audio, meta) = (fixture("video.cmfv"), fixture("audio.cmfa"), fixture("scte35.cmfm"));
    let mut c = Client::connect(ep.addr());
    let path = |t: &str| format!("/ch.isml/Streams({t})");
    let mut call = |method: &str, p: &str, body: &[u8]| {
        c.send(method, p, &[], body);
        c.read(false).unwrap()
    };
    // The probe, POST or PUT; then a segment before any header: 412 with its reason.
    assert_eq!(call("POST", &path("video.cmfv"), b"").status, 200);
    assert_eq!(call("PUT", &path("video.cmfv"), b"").status, 200);
    let r = call("POST", &path("video.cmfv"), &video[1]);
    assert_eq!(r.status, 412, "{}", r.text());
    assert!(r.text().contains("header") && r.text().trim_end().lines().count() == 1, "{}", r.text());
    // The header, then segments on the same connection: POST and PUT, Content-Length, chunked.
    assert_eq!(call("POST", &path("video.cmfv"), &video[0]).status, 200);
    assert_eq!(call("PUT", &path("video.cmfv"), &video[1]).status, 200);
    let mut chunked =
        format!("POST {} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n", path("video.cmfv")).into_bytes();
    for piece in video[2].chunks(1000) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    c.raw(&chunked).unwrap();
    assert_eq!(c.read(false).unwrap().status, 200);
    // The same segment again: taken (200), and counted a duplicate.
    let mut call = |method: &str, p: &str, body: &[u8]| {
        c.send(method, p, &[], body);
        c.read(false).unwrap()
    };
    assert_eq!(call("POST", &path("video.cmfv"), &video[2]).status, 200);
    for s in &video[3..] {
        assert_eq!(call("POST", &path("video.cmfv"), s).status, 200);
    }
    // Malformed: 400; a track of a kind it cannot carry: 415; each with its one-line reason.
    let r = call("POST", &path("video.cmfv"), &video[1][..video[1].len() - 100]);
    assert_eq!(r.status, 400, "{}", r.text());
    let mut c = Client::connect(ep.addr());
    let mut subtitles = video[0].clone();
    let at = subtitles.windows(4).position(|w| w == b"vide").unwrap();
    subtitles[at..at + 4].copy_from_slice(b"subt");
    c.send("POST", &path("subs.cmfv"), &[], &subtitles);
    let r = c.read(false).unwrap();
    assert_eq!(r.status, 415, "{}", r.text());
    assert!(r.text().contains("'subt'") && r.text().trim_end().lines().count() == 1, "{}", r.text());
    c.send("POST", &path("audio.cmfv"), &[], &audio[0]);
    let r = c.read(false).unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("audio track sent to a .cmfv path"), "{}", r.text());
    // Without an extension, a CMAF header and segments are told from Smooth ingest by their
    // boxes; the metadata track's events become the sparse track's messages.
    for (p, bodies) in [(path("audio"), &audio), (path("scte35.cmfm"), &meta)] {
        let mut c = Client::connect(ep.addr());
        for b in bodies.iter() {
            c.send("POST", &p, &[], b);
            assert_eq!(c.read(false).unwrap().status, 200, "{p}");
        }
    }
    let s = |t: &str| status(&ep, "ch", t).unwrap();
    let v = s("video");
    assert_eq!((v.headers, v.precondition_failed, v.refused, v.duplicates), (1, 1, 1, 1), "{v:?}");
    assert_eq!(v.fragments, video.len() - 1);
    assert_eq!((s("audio").fragments, s("audio").streams.clone()), (audio.len() - 1, vec!["audio".to_string()]));
    assert_eq!(s("scte35").fragments, 1, "one event, carried in every segment");
    let mpd = get(&ep.mpd_url("ch")).text();
    assert_eq!(mpd.matches("<Event ").count(), 1, "{mpd}");
    let log = ep.log_lines();
    for needle in [": 412 (", ": 415 (", ": 400 ("] {
        assert!(log.iter().any(|l| l.contains(needle)), "{needle}: {log:#?}");
    }
    // An MPD posted to the point (by file name or as Streams(<file>.mpd)) is stored and served
    // back as it came, the newest copy of a name replacing the one before; what is not an MPD
    // is refused; the point's own MPD is not one to write.
    let posted = |reps: usize| {
        let r = "<AdaptationSet><Representation id=\"video\"/></AdaptationSet>".repeat(reps);
        format!(
            "<?xml version=\"1.0\"?><MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" type=\"dynamic\" \
             availabilityStartTime=\"1970-01-01T00:00:00Z\"><Period start=\"PT0S\">{r}</Period></MPD>"
        )
    };
    let mut c = Client::connect(ep.addr());
    c.send("PUT", "/ch.isml/channel1.mpd", &[], posted(1).as_bytes());
    assert_eq!(c.read(false).unwrap().status, 200);
    c.send("POST", &path("channel1.mpd"), &[], posted(2).as_bytes());
    assert_eq!(c.read(false).unwrap().status, 200);
    c.send("POST", "/ch.isml/other.mpd", &[], b"<smil/>");
    let r = c.read(false).unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("root element is not <MPD") && r.text().trim_end().lines().count() == 1);
    c.send("PUT", "/ch.isml/.mpd", &[], posted(1).as_bytes());
    assert_eq!(c.read(false).unwrap().status, 405);
    let back = get(&format!("http://{}/ch.isml/channel1.mpd", ep.addr()));
    assert_eq!(back.text(), posted(2));
    assert_eq!(get(&format!("http://{}/ch.isml/other.mpd", ep.addr())).status, 404);
    // The point's timelines and its own MPD are those of the tracks, not of what was posted.
    let reps = |m: &str| m.matches("<Representation ").count();
    assert_eq!(reps(&get(&ep.mpd_url("ch")).text()), reps(&mpd), "{mpd}");
    let log = ep.log_lines();
    assert!(log.iter().any(|l| l.contains("MPD channel1.mpd stored (") && l.contains(", dynamic, 1 Representations)")));
    assert!(log.iter().any(|l| l.contains("MPD channel1.mpd replaced (") && l.contains("2 Representations)")));
}
