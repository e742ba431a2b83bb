//! The local ingest endpoint, end to end: real pipelines push to it through
//! fmp4ingestsink; GStreamer's playbin (souphttpsrc, mssdemux, decoders) plays what it serves,
//! recorded and live; its heartbeats, archive window and programs answer as Azure Media
//! Services' do.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fmp4ingest_endpoint::{Endpoint, EndpointConfig};
use gst::prelude::*;
use serde_json::Value;

fn endpoint(config: EndpointConfig) -> Endpoint {
    Endpoint::start(EndpointConfig { bind: "127.0.0.1:0".parse().unwrap(), ..config }).unwrap()
}

/// `seconds` of live video (30 fps, 2 s GOP) and audio through isofmp4mux into the sink.
fn push_description(url: &str, seconds: u32, props: &str) -> String {
    format!(
        "isofmp4mux name=mux fragment-duration=2000000000 ! fmp4ingestsink name=sink location=\"{url}\" {props} \
         {} ! queue ! mux. {} ! queue ! mux.",
        common::video_source(seconds, 60),
        common::audio_source(seconds)
    )
}

/// What a playback decoded.
struct Played {
    video_frames: u64,
    audio_buffers: u64,
    /// The latest video PTS (ns) decoded.
    last_video_pts: u64,
    eos: bool,
    errors: Vec<String>,
}

/// Plays `uri` with playbin into counting fakesinks, until EOS, an error or `limit`.
fn play(uri: &str, limit: Duration) -> Played {
    common::init();
    let counter = |n: Arc<AtomicU64>, last: Option<Arc<AtomicU64>>| {
        let sink = gst::ElementFactory::make("fakesink").property("sync", false).build().unwrap();
        sink.static_pad("sink").unwrap().add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            n.fetch_add(1, Ordering::Relaxed);
            if let (Some(l), Some(b)) = (&last, info.buffer()) {
                if let Some(pts) = b.pts() {
                    l.fetch_max(pts.nseconds(), Ordering::Relaxed);
                }
            }
            gst::PadProbeReturn::Ok
        });
        sink
    };
    let (v, a, last) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let playbin = gst::ElementFactory::make("playbin")
        .property("uri", uri)
        .property("video-sink", counter(v.clone(), Some(last.clone())))
        .property("audio-sink", counter(a.clone(), None))
        .build()
        .unwrap();
    let bus = playbin.bus().unwrap();
    playbin.set_state(gst::State::Playing).unwrap();
    let start = Instant::now();
    let mut eos = false;
    let mut errors = Vec::new();
    while let Some(left) = limit.checked_sub(start.elapsed()) {
        let Some(m) = bus.timed_pop(gst::ClockTime::from_nseconds(left.as_nanos() as u64)) else { break };
        match m.view() {
            gst::MessageView::Eos(_) => {
                eos = true;
                break;
            }
            gst::MessageView::Error(e) => {
                errors.push(format!("{} ({:?})", e.error(), e.debug()));
                break;
            }
            _ => {}
        }
    }
    playbin.set_state(gst::State::Null).unwrap();
    Played {
        video_frames: v.load(Ordering::Relaxed),
        audio_buffers: a.load(Ordering::Relaxed),
        last_video_pts: last.load(Ordering::Relaxed),
        eos,
        errors,
    }
}

fn http(method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    // A bare HTTP/1.1 client: the endpoint answers with Content-Length and closes.
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(host).unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// The times of a track's fragment files in the archive, sorted.
fn archived(dir: &std::path::Path, point: &str, track: &str) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(fmp4ingest_endpoint::archive::track_dir(dir, point, track))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".m4s")?.split_once('_')?.0.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

fn ok(r: &common::RunResult) {
    assert!(r.eos && r.errors.is_empty(), "{:?} {:?}", r.errors, r.warnings);
}

#[test]
fn a_recorded_stream_plays_through_mssdemux_frame_for_frame() {
    let ep = endpoint(EndpointConfig::default());
    ok(&common::run_pipeline(&push_description(&ep.ingest_url("rec", "av"), 10, ""), Duration::from_secs(60)));
    let status = ep.status();
    let video = status.iter().find(|s| s.kind == "video").unwrap();
    assert!(!video.live, "the POST ended: a recorded stream");
    let (code, manifest) = http("GET", &ep.manifest_url("rec"), None);
    assert_eq!(code, 200);
    assert!(manifest.contains("<SmoothStreamingMedia") && !manifest.contains("IsLive=\"TRUE\""), "{manifest}");
    assert!(manifest.contains("FourCC=\"H264\"") && manifest.contains("FourCC=\"AACL\""), "{manifest}");
    let p = play(&ep.manifest_url("rec"), Duration::from_secs(60));
    assert!(p.eos && p.errors.is_empty(), "{:?}", p.errors);
    // 10 s at 30 fps went in: every frame comes out.
    assert_eq!(p.video_frames, 300, "decoded {} video frames", p.video_frames);
    assert!(p.audio_buffers >= 400, "{} audio buffers", p.audio_buffers);
}

#[test]
fn a_live_stream_plays_live_on_tfrf_lookahead() {
    let ep = endpoint(EndpointConfig::default());
    let pusher = common::spawn_pipeline(&push_description(&ep.ingest_url("tv", "av"), 30, ""), Duration::from_secs(90));
    // Wait for a few fragments, then play while the encoder goes on.
    let start = Instant::now();
    while ep.status().iter().find(|s| s.kind == "video").is_none_or(|s| s.fragments < 4) {
        assert!(start.elapsed() < Duration::from_secs(30), "no fragments");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, manifest) = http("GET", &ep.manifest_url("tv"), None);
    assert!(manifest.contains("IsLive=\"TRUE\"") && manifest.contains("LookAheadFragmentCount=\"2\""), "{manifest}");
    // The newest time the live manifest lists, in ns: anything decoded later came from tfrf.
    let video_index =
        manifest.split("<StreamIndex Type=\"video\"").nth(1).unwrap().split("</StreamIndex>").next().unwrap();
    let listed_end = {
        let mut t = 0u64;
        for c in video_index.split("<c ").skip(1) {
            let attr =
                |n: &str| c.split(&format!("{n}=\"")).nth(1).and_then(|r| r.split('"').next()?.parse::<u64>().ok());
            if let Some(start) = attr("t") {
                t = start;
            }
            t += attr("d").unwrap_or(0);
        }
        t * 1_000_000_000 / 3000
    };
    let p = play(&ep.manifest_url("tv"), Duration::from_secs(14));
    let r = pusher.join().unwrap();
    ok(&r);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert!(p.video_frames >= 150, "only {} frames decoded while live", p.video_frames);
    assert!(
        p.last_video_pts > listed_end + 4_000_000_000,
        "played up to {} ns, the manifest listed up to {listed_end} ns: not live",
        p.last_video_pts
    );
}

#[test]
fn heartbeats_have_the_services_shape() {
    let ep = endpoint(EndpointConfig::default());
    let pusher = common::spawn_pipeline(&push_description(&ep.ingest_url("hb", "av"), 12, ""), Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(8));
    let (code, body) = http("POST", &ep.heartbeats_url("hb"), Some(""));
    ok(&pusher.join().unwrap());
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let events = v["value"].as_array().unwrap();
    assert!(events.len() >= 2, "{body}");
    let kinds: Vec<&str> = events.iter().map(|e| e["data"]["trackType"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"video") && kinds.contains(&"audio"));
    for e in events {
        assert_eq!(e["eventType"], "TrackEvent/IngestHeartbeat");
        assert!(e["eventTime"].as_str().unwrap().ends_with('Z'));
        let d = &e["data"];
        for (field, check) in [
            ("trackName", Value::is_string as fn(&Value) -> bool),
            ("trackType", Value::is_string),
            ("bitrate", Value::is_u64),
            ("incomingBitrate", Value::is_u64),
            ("lastTimestamp", Value::is_string),
            ("timescale", Value::is_string),
            ("overlapCount", Value::is_u64),
            ("discontinuityCount", Value::is_u64),
            ("nonincreasingCount", Value::is_u64),
            ("state", Value::is_string),
            ("lastFragmentArrivalTime", Value::is_string),
            ("ingestDriftValue", Value::is_string),
            ("transcriptionState", Value::is_string),
            ("transcriptionLanguage", Value::is_string),
        ] {
            assert!(check(&d[field]), "{field} in {d}");
        }
        assert!(d["unexpectedBitrate"].is_boolean() || d["unexpectedBitrate"].is_null());
        assert!(d["healthy"].is_boolean() || d["healthy"].is_null());
        assert_eq!(d.as_object().unwrap().len(), 16, "exactly the service's fields: {d}");
    }
    // The newest window of the video track: running, healthy, about the declared rate.
    let video = events.iter().rev().find(|e| e["data"]["trackType"] == "video").unwrap();
    let d = &video["data"];
    assert_eq!(d["state"], "Running");
    assert_eq!(d["timescale"], "3000");
    assert_eq!((d["overlapCount"].as_u64(), d["discontinuityCount"].as_u64()), (Some(0), Some(0)));
    assert!(d["lastTimestamp"].as_str().unwrap().parse::<u64>().unwrap() > 0);
    // The declared bitrate is measured on the first fragment (an IDR and a still picture);
    // the flag and the health follow the documented rule (within half to twice).
    let (declared, incoming) = (d["bitrate"].as_u64().unwrap(), d["incomingBitrate"].as_u64().unwrap());
    assert!(declared > 0 && incoming > 50_000, "{declared} declared, {incoming} incoming");
    let expected = incoming * 2 >= declared && incoming <= declared * 2;
    assert_eq!(d["unexpectedBitrate"].is_null(), expected, "{d}");
    assert_eq!(d["healthy"], expected, "{d}");
    // An unknown live event: 404 and a log line.
    let (code, _) = http("POST", &ep.heartbeats_url("nope"), Some(""));
    assert_eq!(code, 404);
    assert!(ep.log_lines().iter().any(|l| l.contains("nope") && l.contains("404")), "{:?}", ep.log_lines());
}

#[test]
fn duplicates_are_dropped_and_the_archive_window_holds() {
    // A window of 6 s (the command line allows PT5M and up; the library takes any).
    let dir = std::env::temp_dir().join(format!("fmp4ingest-archive-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ep = endpoint(EndpointConfig {
        archive_window: Duration::from_secs(6),
        archive_dir: Some(dir.clone()),
        ..EndpointConfig::default()
    });
    // One muxer, two sinks on the same stream id (a redundant pair): every fragment arrives
    // twice, the second copy is dropped.
    let url = ep.ingest_url("dup", "av");
    let d = format!(
        "isofmp4mux name=mux fragment-duration=2000000000 ! tee name=t \
         t. ! queue ! fmp4ingestsink name=sink location=\"{url}\" t. ! queue ! fmp4ingestsink location=\"{url}\" \
         {} ! queue ! mux. {} ! queue ! mux.",
        common::video_source(16, 60),
        common::audio_source(16)
    );
    ok(&common::run_pipeline(&d, Duration::from_secs(60)));
    let status = ep.status();
    for s in &status {
        assert!(s.duplicates >= 7, "{}: {} duplicates", s.track, s.duplicates);
        assert_eq!((s.overlaps, s.discontinuities), (0, 0), "{}", s.track);
        // 16 s went in; about 6 s (plus one fragment) are kept.
        assert!(s.kept_seconds <= 8.5 && s.kept_seconds >= 4.0, "{}: {} s kept", s.track, s.kept_seconds);
    }
    let (_, manifest) = http("GET", &ep.manifest_url("dup"), None);
    assert!(manifest.contains("Chunks=\"3\"") || manifest.contains("Chunks=\"4\""), "{manifest}");
    // The on-disk archive holds exactly what the window kept.
    for s in &status {
        let files = archived(&dir, "dup", &s.track);
        assert_eq!(files.len(), s.fragments, "{}: {files:?}", s.track);
        assert_eq!(files.last().copied(), s.last_time, "{}", s.track);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sparse_tracks_are_text_stream_indexes_with_their_messages() {
    let ep = endpoint(EndpointConfig::default());
    let d = push_description(&ep.ingest_url("ads", "av"), 10, "sparse-stream-id=cues");
    let p = common::init_pipeline(&d);
    let p2 = p.clone();
    let sender = std::thread::spawn(move || {
        while p2.current_state() != gst::State::Playing {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(500));
        let s = gst::Structure::builder("fmp4ingest-splice")
            .field("running-time", 5_000_000_000u64)
            .field("id", 77u32)
            .build();
        assert!(p2.by_name("sink").unwrap().send_event(gst::event::CustomDownstream::new(s)));
    });
    ok(&common::run(&p, Duration::from_secs(60)));
    sender.join().unwrap();
    let (_, manifest) = http("GET", &ep.manifest_url("ads"), None);
    let text = manifest.split("<StreamIndex Type=\"text\"").nth(1).unwrap_or_else(|| panic!("{manifest}"));
    assert!(text.contains("Name=\"scte35\"") && text.contains("ParentStreamIndex=\"video\""), "{text}");
    assert!(text.contains("ManifestOutput=\"TRUE\"") && text.contains("<f>"), "{text}");
    // The recorded stream still plays (the text index does not disturb mssdemux).
    let played = play(&ep.manifest_url("ads"), Duration::from_secs(60));
    assert!(played.eos && played.video_frames == 300, "{} frames {:?}", played.video_frames, played.errors);
}

#[test]
fn a_program_records_its_channel_within_its_window_and_serves_it() {
    let ep = endpoint(EndpointConfig::default());
    let api = format!("http://{}/api/Programs", ep.addr());
    let body = r#"{"Name":"evening news","ChannelId":"news","ArchiveWindowLength":"PT5M","ManifestName":"evening"}"#;
    let (code, created) = http("POST", &api, Some(body));
    assert_eq!(code, 202, "{created}");
    let id = serde_json::from_str::<Value>(&created).unwrap()["Id"].as_str().unwrap().to_string();
    let one = format!("{api}('{id}')");
    // The channel does not run yet: it cannot start.
    assert_eq!(http("POST", &format!("{one}/Start"), Some("")).0, 409);
    let pusher =
        common::spawn_pipeline(&push_description(&ep.ingest_url("news", "av"), 14, ""), Duration::from_secs(60));
    // Video fragments (60 frames each) the channel held just before and just after Start:
    // the program holds what came after, so between 420 minus those frames.
    let video_fragments =
        || ep.status().iter().filter(|s| s.point == "news" && s.kind == "video").map(|s| s.fragments).sum::<usize>();
    let t = Instant::now();
    // Wait for video: audio alone arriving first would leave nothing of the video out.
    while video_fragments() == 0 {
        assert!(t.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = video_fragments();
    assert_eq!(http("POST", &format!("{one}/Start"), Some("")).0, 202);
    let after = video_fragments();
    assert_eq!(http("PATCH", &one, Some(r#"{"Description":"late"}"#)).0, 409, "only while stopped");
    std::thread::sleep(Duration::from_secs(1));
    let (_, e) = http("GET", &one, None);
    assert_eq!(serde_json::from_str::<Value>(&e).unwrap()["State"], "Running");
    ok(&pusher.join().unwrap());
    // It recorded what came after it started, and serves it under its manifest name.
    let url = format!("http://{}/evening.ism/Manifest", ep.addr());
    let (code, manifest) = http("GET", &url, None);
    assert_eq!(code, 200, "{manifest}");
    let p = play(&url, Duration::from_secs(60));
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    let (least, most) = (420 - 60 * after as u64, 420 - 60 * before as u64);
    assert!(
        p.video_frames >= least && p.video_frames <= most,
        "{} frames, expected {least}..={most} ({before}/{after} fragments before/after Start)",
        p.video_frames
    );
    assert_eq!(http("DELETE", &one, None).0, 409, "running");
    assert_eq!(http("POST", &format!("{one}/Stop"), Some("")).0, 202);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(http("DELETE", &one, None).0, 204);
    assert_eq!(http("GET", &one, None).0, 404);
    let (code, err) = http("POST", &api, Some(r#"{"Name":"x","ChannelId":"news","ArchiveWindowLength":"PT1M"}"#));
    assert_eq!(code, 400);
    assert!(err.contains("odata.error") && err.contains("PT5M"), "{err}");
}

#[test]
fn hostile_requests_are_refused_with_a_log_line() {
    let ep = endpoint(EndpointConfig::default());
    assert_eq!(http("GET", &format!("http://{}/etc/passwd", ep.addr()), None).0, 404);
    assert_eq!(http("DELETE", &ep.manifest_url("x"), None).0, 405);
    assert_eq!(http("GET", &ep.manifest_url("none"), None).0, 404);
    // A request head larger than the cap.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(ep.addr()).unwrap();
    let _ = write!(s, "GET /x.isml/Manifest HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(100_000));
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    // At most 64 streams in a publishing point: the next probe is refused.
    for i in 0..64 {
        assert_eq!(http("POST", &ep.ingest_url("many", &format!("s{i}")), Some("")).0, 200);
    }
    assert_eq!(http("POST", &ep.ingest_url("many", "one-too-many"), Some("")).0, 503);
    // At most 256 programs: the next one is refused with an OData error body.
    let api = format!("http://{}/api/Programs", ep.addr());
    for i in 0..256 {
        let body = format!(r#"{{"Name":"p{i}","ChannelId":"many","ArchiveWindowLength":"PT5M"}}"#);
        assert_eq!(http("POST", &api, Some(&body)).0, 202, "program {i}");
    }
    let (status, body) =
        http("POST", &api, Some(r#"{"Name":"extra","ChannelId":"many","ArchiveWindowLength":"PT5M"}"#));
    assert_eq!(status, 409);
    assert!(body.contains("at most 256 programs"), "{body}");
    let log = ep.log_lines();
    assert!(log.iter().any(|l| l.contains("one-too-many") && l.contains("503")), "{log:?}");
    assert!(log.len() >= 4, "{log:?}");
    assert!(log.iter().any(|l| l.contains("/etc/passwd") && l.contains("404")));
    assert!(log.iter().any(|l| l.contains("request head over") && l.contains("431")), "{log:?}");
}
