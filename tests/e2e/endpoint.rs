// SPDX-License-Identifier: MPL-2.0
//! The local ingest endpoint, end to end: real pipelines push to it through fmp4ingestsink;
//! its heartbeats, archive (window, disk, read back by a new endpoint), programs and sparse
//! tracks answer as Azure Media Services' do; its HTTP server keeps connections alive,
//! pipelines, answers HEAD, and refuses what it must with a status and a one-line reason.
//! Playback through every GStreamer player is in playback.rs.

mod common;

use std::time::{Duration, Instant};

use common::client::{Client, call, get};
use common::player::{StopAt, play};
use fmp4ingest_endpoint::{Endpoint, EndpointConfig};
use fmp4ingest_receiver::Receiver;
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

fn ok(r: &common::RunResult) {
    assert!(r.eos && r.errors.is_empty(), "{:?} {:?}", r.errors, r.warnings);
}

/// The path of a URL of the endpoint.
fn path(url: &str) -> &str {
    let rest = url.strip_prefix("http://").unwrap();
    &rest[rest.find('/').unwrap()..]
}

/// Waits until the point turned recorded (its last fragment `idle`, 10 s, old).
fn wait_recorded(ep: &Endpoint, point: &str) {
    let t = Instant::now();
    while ep.status().iter().any(|s| s.point == point && s.live) {
        assert!(t.elapsed() < Duration::from_secs(30), "{point} is still live");
        std::thread::sleep(Duration::from_millis(100));
    }
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

fn wait_for(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < limit, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn heartbeats_have_the_services_shape() {
    let ep = endpoint(EndpointConfig::default());
    let pusher = common::spawn_pipeline(&push_description(&ep.ingest_url("hb", "av"), 12, ""), Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(8));
    let r = call(ep.addr(), "POST", path(&ep.heartbeats_url("hb")), b"");
    ok(&pusher.join().unwrap());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    let events = v["value"].as_array().unwrap();
    assert!(events.len() >= 2, "{v}");
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
    // An unknown live event: 404 with the service's error body, and a log line.
    let r = call(ep.addr(), "POST", path(&ep.heartbeats_url("nope")), b"");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("NotFound"), "{}", r.text());
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
    let manifest = get(&ep.manifest_url("dup")).text();
    assert!(manifest.contains("Chunks=\"3\"") || manifest.contains("Chunks=\"4\""), "{manifest}");
    // The on-disk archive holds exactly what the window kept: the writer is off the request
    // path, so give it a moment.
    for s in &status {
        wait_for("the archive writer", Duration::from_secs(10), || {
            archived(&dir, "dup", &s.track).len() == s.fragments
        });
        let files = archived(&dir, "dup", &s.track);
        assert_eq!(files.last().copied(), s.last_time, "{}", s.track);
    }
    let (written, removed, failed, dropped) = ep.archive_counts().unwrap();
    assert!(written >= 14 && removed >= 8 && failed == 0 && dropped == 0, "{written} {removed} {failed} {dropped}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_archive_serves_from_disk_and_a_new_endpoint_reads_it_back() {
    let dir = std::env::temp_dir().join(format!("fmp4ingest-restore-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // 100 kB of fragments per track in memory: most of the video is read back from disk.
    let config =
        EndpointConfig { archive_dir: Some(dir.clone()), max_track_bytes: 100_000, ..EndpointConfig::default() };
    let ep = endpoint(config.clone());
    ok(&common::run_pipeline(&push_description(&ep.ingest_url("disk", "av"), 10, ""), Duration::from_secs(60)));
    wait_recorded(&ep, "disk");
    let before = ep.status();
    let played = play(&ep.mpd_url("disk"), "dashdemux", StopAt::after(Duration::from_secs(60)));
    assert!(played.eos && played.errors.is_empty(), "{:?}", played.errors);
    assert_eq!(played.video_pts.len(), 300, "every frame, most of them from disk");
    drop(ep);
    // A new endpoint on the same directory: the same timelines, recorded, playable.
    let ep = endpoint(config);
    let after = ep.status();
    assert_eq!(after.len(), 2, "{after:?}");
    for (a, b) in before.iter().zip(&after) {
        assert_eq!((a.track.as_str(), a.fragments, a.last_time), (b.track.as_str(), b.fragments, b.last_time));
        assert!(!b.live);
    }
    assert!(ep.log_lines().iter().any(|l| l.contains("2 tracks read back")), "{:?}", ep.log_lines());
    let played = play(&ep.hls_url("disk"), "hlsdemux", StopAt::after(Duration::from_secs(60)));
    assert!(played.eos && played.errors.is_empty(), "{:?}", played.errors);
    assert_eq!(played.video_pts.len(), 300);
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
    wait_recorded(&ep, "ads");
    let manifest = get(&ep.manifest_url("ads")).text();
    let text = manifest.split("<StreamIndex Type=\"text\"").nth(1).unwrap_or_else(|| panic!("{manifest}"));
    assert!(text.contains("Name=\"scte35\"") && text.contains("ParentStreamIndex=\"video\""), "{text}");
    assert!(text.contains("ManifestOutput=\"TRUE\"") && text.contains("<f>"), "{text}");
    // DASH and HLS carry the messages as events at the splice (the fragment's time is the
    // message's arrival, the splice `splice-lead` after it), not as a track.
    let mpd = get(&ep.mpd_url("ads")).text();
    assert!(!mpd.contains("contentType=\"text\"") && mpd.matches("<Event ").count() == 1, "{mpd}");
    let stream = &mpd[mpd.find("<EventStream schemeIdUri=\"urn:scte:scte35:2014:xml+bin\" timescale=\"").unwrap()..];
    let ts: u64 = stream[stream.find("timescale=\"").unwrap() + 11..].split('"').next().unwrap().parse().unwrap();
    let pto: u64 =
        mpd[mpd.find("presentationTimeOffset=\"").unwrap() + 24..].split('"').next().unwrap().parse().unwrap();
    assert!(stream.contains(&format!("<Event presentationTime=\"{}\" id=\"77\">", 5 * ts - pto)), "{mpd}");
    let hls = get(&format!("{}/video.m3u8", ep.publishing_point_url("ads"))).text();
    assert!(hls.contains("#EXT-X-DATERANGE:ID=\"splice-4D-") && hls.contains(",SCTE35-OUT=0xFC"), "{hls}");
    // The recorded stream still plays (the text index does not disturb mssdemux).
    let played = play(&ep.manifest_url("ads"), "mssdemux", StopAt::after(Duration::from_secs(60)));
    assert!(played.eos && played.video_pts.len() == 300, "{} frames {:?}", played.video_pts.len(), played.errors);
}

#[test]
fn a_program_records_its_channel_within_its_window_and_serves_it() {
    let ep = endpoint(EndpointConfig::default());
    let api = "/api/Programs";
    let body = r#"{"Name":"evening news","ChannelId":"news","ArchiveWindowLength":"PT5M","ManifestName":"evening"}"#;
    let created = call(ep.addr(), "POST", api, body.as_bytes());
    assert_eq!(created.status, 202, "{}", created.text());
    let id = serde_json::from_slice::<Value>(&created.body).unwrap()["Id"].as_str().unwrap().to_string();
    let one = format!("{api}('{id}')");
    // The channel does not run yet: it cannot start.
    assert_eq!(call(ep.addr(), "POST", &format!("{one}/Start"), b"").status, 409);
    let pusher =
        common::spawn_pipeline(&push_description(&ep.ingest_url("news", "av"), 14, ""), Duration::from_secs(60));
    // Video fragments (60 frames each) the channel held just before and just after Start:
    // the program holds what came after, so between 420 minus those frames.
    let video_fragments =
        || ep.status().iter().filter(|s| s.point == "news" && s.kind == "video").map(|s| s.fragments).sum::<usize>();
    // Wait for video: audio alone arriving first would leave nothing of the video out.
    wait_for("video", Duration::from_secs(20), || video_fragments() > 0);
    let before = video_fragments();
    assert_eq!(call(ep.addr(), "POST", &format!("{one}/Start"), b"").status, 202);
    let after = video_fragments();
    assert_eq!(call(ep.addr(), "PATCH", &one, br#"{"Description":"late"}"#).status, 409, "only while stopped");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(serde_json::from_slice::<Value>(&call(ep.addr(), "GET", &one, b"").body).unwrap()["State"], "Running");
    ok(&pusher.join().unwrap());
    wait_recorded(&ep, "news");
    // It recorded what came after it started, and serves it under its manifest name in every
    // format.
    let base = format!("http://{}/evening.ism", ep.addr());
    for (what, ct) in
        [("Manifest", "text/xml"), (".mpd", "application/dash+xml"), (".m3u8", "application/vnd.apple.mpegurl")]
    {
        let r = get(&format!("{base}/{what}"));
        assert_eq!(r.status, 200, "{what}: {}", r.text());
        assert!(r.header("content-type").unwrap().starts_with(ct), "{what}");
    }
    let (least, most) = (420 - 60 * after, 420 - 60 * before);
    for (uri, demuxer) in [(format!("{base}/.mpd"), "dashdemux"), (format!("{base}/Manifest"), "mssdemux")] {
        let p = play(&uri, demuxer, StopAt::after(Duration::from_secs(60)));
        assert!(p.eos && p.errors.is_empty(), "{demuxer}: {:?}", p.errors);
        let n = p.video_pts.len();
        assert!(
            n >= least && n <= most,
            "{demuxer}: {n} frames, expected {least}..={most} ({before}/{after} fragments before/after Start)"
        );
    }
    assert_eq!(call(ep.addr(), "DELETE", &one, b"").status, 409, "running");
    assert_eq!(call(ep.addr(), "POST", &format!("{one}/Stop"), b"").status, 202);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(call(ep.addr(), "DELETE", &one, b"").status, 204);
    assert_eq!(call(ep.addr(), "GET", &one, b"").status, 404);
    let r = call(ep.addr(), "POST", api, br#"{"Name":"x","ChannelId":"news","ArchiveWindowLength":"PT1M"}"#);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("odata.error") && r.text().contains("PT5M"), "{}", r.text());
}

#[test]
fn one_connection_carries_many_requests_pipelined_and_head() {
    let ep = endpoint(EndpointConfig::default());
    ok(&common::run_pipeline(&push_description(&ep.ingest_url("ka", "av"), 4, ""), Duration::from_secs(60)));
    let mut c = Client::connect(ep.addr());
    // Three requests written at once: three answers, in order, on the same connection.
    for p in ["/ka.isml/Manifest", "/ka.isml/.mpd", "/ka.isml/.m3u8"] {
        c.send("GET", p, &[], b"");
    }
    let types: Vec<String> =
        (0..3).map(|_| c.read(false).unwrap().header("content-type").unwrap().to_string()).collect();
    assert_eq!(types, ["text/xml; charset=utf-8", "application/dash+xml", "application/vnd.apple.mpegurl"]);
    // HEAD: the same head, with the length of the body it does not send.
    let full = c.call("GET", "/ka.isml/cmaf/video/init.mp4", b"");
    let head = c.call("HEAD", "/ka.isml/cmaf/video/init.mp4", b"");
    assert_eq!((full.status, head.status), (200, 200));
    assert_eq!(head.header("content-length").unwrap().parse::<usize>().unwrap(), full.body.len());
    assert!(head.body.is_empty());
    // A refused request does not close the connection either.
    assert_eq!(c.call("GET", "/ka.isml/nothing-here", b"").status, 404);
    let m = c.call("GET", "/ka.isml/Manifest", b"");
    assert_eq!(m.status, 200);
    assert_eq!(m.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn refused_requests_get_their_status_and_a_one_line_reason() {
    let ep = endpoint(EndpointConfig::default());
    ok(&common::run_pipeline(&push_description(&ep.ingest_url("r", "av"), 4, ""), Duration::from_secs(60)));
    for (method, p, status, why) in [
        ("GET", "/etc/passwd", 404, "not a publishing point"),
        ("DELETE", "/r.isml/Manifest", 405, "only GET, HEAD"),
        ("GET", "/r.isml/Streams(av)", 405, "only POST"),
        ("GET", "/none.isml/Manifest", 404, "no publishing point none"),
        ("GET", "/r.isml/cmaf/video/12.m4s", 404, "no fragment at 12"),
        ("GET", "/r.isml/cmaf/nope/init.mp4", 404, "no track nope"),
        ("GET", "/r.isml/cmaf/video/x.m4s", 400, "not a number"),
        ("GET", "/%ff.isml/Manifest", 400, "UTF-8"),
        ("POST", "/api/Programs('x')/Start", 404, "no program x"),
    ] {
        let r = call(ep.addr(), method, p, b"");
        assert_eq!(r.status, status, "{method} {p}: {}", r.text());
        assert!(r.text().contains(why), "{method} {p}: {}", r.text());
        assert_eq!(r.text().trim_end().lines().count(), 1, "{method} {p}: one line");
    }
    assert_eq!(call(ep.addr(), "DELETE", "/r.isml/Manifest", b"").header("allow"), Some("GET, HEAD"));
    // An API body over 64 KiB: 413.
    let big = vec![b' '; 70 * 1024];
    let r = call(ep.addr(), "POST", "/api/Programs", &big);
    assert_eq!(r.status, 413, "{}", r.text());
    // Request heads over the caps: hyper answers 431 and closes.
    for head in [
        format!("GET /r.isml/Manifest HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(100_000)),
        format!(
            "GET /r.isml/Manifest HTTP/1.1\r\n{}\r\n",
            (0..150).map(|i| format!("X-{i}: 1\r\n")).collect::<String>()
        ),
    ] {
        let mut c = Client::connect(ep.addr());
        let _ = c.raw(head.as_bytes());
        assert_eq!(c.read(false).unwrap().status, 431);
        assert!(c.closed_within(Duration::from_secs(5)));
    }
    let log = ep.log_lines();
    for needle in ["/etc/passwd: 404", "DELETE /r.isml/Manifest: 405", "POST /api/Programs: 413", "431"] {
        assert!(log.iter().any(|l| l.contains(needle)), "{needle} in {log:?}");
    }
}

#[test]
fn silent_clients_are_cut_off() {
    let ep = endpoint(EndpointConfig {
        body_timeout: Duration::from_secs(1),
        head_timeout: Duration::from_secs(1),
        ..EndpointConfig::default()
    });
    // An ingest POST that stops sending: 408 with the reason, and the connection closes.
    let mut c = Client::connect(ep.addr());
    c.raw(b"POST /quiet.isml/Streams(s) HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n")
        .unwrap();
    let r = c.read(false).unwrap();
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(r.text().contains("nothing received for 1s"), "{}", r.text());
    // A request head that never ends: closed without an answer.
    let mut c = Client::connect(ep.addr());
    c.raw(b"GET /quiet.isml/Manifest HTTP/1.1\r\nHost: t\r\n").unwrap();
    assert!(c.closed_within(Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(200));
    let log = ep.log_lines();
    assert!(log.iter().any(|l| l.contains("Streams(s): 408")), "{log:?}");
    assert!(log.iter().any(|l| l.contains("no complete request head within 1s")), "{log:?}");
}

#[test]
fn a_broken_ingest_stream_is_refused_alone() {
    // The header of a real stream, as the test receiver saw it.
    let rx = Receiver::start().unwrap();
    ok(&common::run_pipeline(&push_description(&rx.url("x", "av"), 2, ""), Duration::from_secs(60)));
    let header = rx.stream("av").media_posts()[0].header_bytes.clone();
    assert!(header.len() > 500);
    let ep = endpoint(EndpointConfig::default());
    let pusher =
        common::spawn_pipeline(&push_description(&ep.ingest_url("news", "good"), 8, ""), Duration::from_secs(60));
    wait_for("the good stream", Duration::from_secs(20), || ep.status().iter().any(|s| s.fragments > 0));
    let post = |stream: &str, body: &[u8]| {
        let mut c = Client::connect(ep.addr());
        c.send("POST", &format!("/news.isml/Streams({stream})"), &[], body);
        c.read(false).unwrap()
    };
    // Bytes that are not boxes; media before any header; a manifest that is not XML; a box
    // larger than any the endpoint takes.
    let mut not_xml = header.clone();
    let at = not_xml.windows(5).position(|w| w == b"<smil").unwrap();
    not_xml[at + 1] = b'!';
    let mut huge = header.clone();
    huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xf0, b'm', b'd', b'a', b't']);
    for (stream, body, why) in [
        ("garbage", b"\0\0\0\x02abcdefgh".to_vec(), "broken box header"),
        ("notxml", not_xml, "Live Server Manifest"),
        ("huge", huge, "larger than"),
    ] {
        let r = post(stream, &body);
        assert_eq!(r.status, 400, "{stream}: {}", r.text());
        assert!(r.text().contains(why), "{stream}: {}", r.text());
    }
    // Media without a header: not Smooth ingest (whose body starts with ftyp), so a CMAF
    // segment, whose track header the endpoint lacks (DASH-IF Live Media Ingest, "Failure
    // Behaviors" 5c).
    let headless = [0, 0, 0, 8, b'm', b'o', b'o', b'f', 0, 0, 0, 8, b'm', b'd', b'a', b't'];
    let r = post("headless", &headless);
    assert_eq!(r.status, 412, "{}", r.text());
    assert!(r.text().contains("no CMAF header"), "{}", r.text());
    // A good header and a fragment of a track it does not declare: the fragment is refused
    // and logged, the request is not.
    let mut alien = header.clone();
    alien.extend_from_slice(&[0, 0, 0, 8, b'm', b'o', b'o', b'f', 0, 0, 0, 8, b'm', b'd', b'a', b't']);
    assert_eq!(post("alien", &alien).status, 200);
    ok(&pusher.join().unwrap());
    let good: Vec<_> = ep.status().into_iter().filter(|s| s.streams.contains(&"good".to_string())).collect();
    assert_eq!(good.len(), 2, "the good stream's tracks are untouched");
    for s in &good {
        assert_eq!((s.discontinuities, s.overlaps, s.past), (0, 0, 0), "{s:?}");
        assert!(s.fragments >= 4, "{s:?}");
    }
    let log = ep.log_lines();
    for needle in ["Streams(garbage): 400", "Streams(headless): 412", "Streams(notxml): 400", "Streams(huge): 400"] {
        assert!(log.iter().any(|l| l.contains(needle)), "{needle} in {log:?}");
    }
    assert!(log.iter().any(|l| l.contains("Streams(alien)") && l.contains("fragment refused")), "{log:?}");
}

#[test]
fn points_streams_and_programs_are_capped() {
    let ep = endpoint(EndpointConfig::default());
    // At most 64 streams in a publishing point: the next probe is refused.
    for i in 0..64 {
        assert_eq!(call(ep.addr(), "POST", &format!("/many.isml/Streams(s{i})"), b"").status, 200);
    }
    let r = call(ep.addr(), "POST", "/many.isml/Streams(one-too-many)", b"");
    assert_eq!(r.status, 503);
    assert!(r.text().contains("64 streams"), "{}", r.text());
    // At most 256 programs: the next one is refused with an OData error body.
    let mut c = Client::connect(ep.addr());
    for i in 0..256 {
        let body = format!(r#"{{"Name":"p{i}","ChannelId":"many","ArchiveWindowLength":"PT5M"}}"#);
        assert_eq!(c.call("POST", "/api/Programs", body.as_bytes()).status, 202, "program {i}");
    }
    let r = c.call("POST", "/api/Programs", br#"{"Name":"extra","ChannelId":"many","ArchiveWindowLength":"PT5M"}"#);
    assert_eq!(r.status, 409);
    assert!(r.text().contains("at most 256 programs"), "{}", r.text());
    let log = ep.log_lines();
    assert!(log.iter().any(|l| l.contains("one-too-many") && l.contains("503")), "{log:?}");
}
