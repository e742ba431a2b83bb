// SPDX-License-Identifier: MPL-2.0
//! Ad signalling (docs/protocol.md §5): a sparse SCTE-35 stream fed by custom events, POSTed next to the
//! media stream, checked byte by byte on the receiver.

mod common;

use std::time::Duration;

use common::{RunResult, check_stream, mpegts, realtime_pipeline as pipeline, run_with, running_now};
use fmp4ingest_core::scte35::{self, SpliceCommand};
use fmp4ingest_receiver::{Fault, FaultKind, FragmentInfo, PostRecord, Receiver, StreamView};
use gst::prelude::*;

const SEC: u64 = 1_000_000_000;

/// The splice_insert of docs/protocol.md A.4 (event id 1002, CRC F20D5E37).
const SPEC_SECTION: [u8; 40] = [
    0xFC, 0x30, 0x25, 0x00, 0x00, 0x00, 0x00, 0x05, 0xDD, 0x00, 0xFF, 0xF0, 0x14, 0x05, 0x00, 0x00, 0x03, 0xEA, 0x7F,
    0xEF, 0xFE, 0x01, 0x64, 0x61, 0xB8, 0xFE, 0x00, 0x52, 0x63, 0x63, 0x00, 0x01, 0x01, 0x01, 0x00, 0x00, 0xF2, 0x0D,
    0x5E, 0x37,
];

/// Live video and audio through isofmp4mux into the sink (named `sink`) in UTC mode, with a
/// sparse stream `ads`; `seconds` long.
fn description(url: &str, seconds: u32, props: &str) -> String {
    format!(
        "isofmp4mux name=mux fragment-duration=2000000000 ! fmp4ingestsink name=sink location=\"{url}\" \
         timestamp-mode=utc sparse-stream-id=ads {props} {} ! queue ! mux. {} ! queue ! mux.",
        common::video_source(seconds, 600),
        common::audio_source(seconds)
    )
}

fn splice(rt: u64, id: u32) -> gst::structure::Builder {
    gst::Structure::builder("fmp4ingest-splice").field("running-time", rt).field("id", id)
}

fn scte35(section: &[u8], rt: u64) -> gst::structure::Builder {
    gst::Structure::builder("fmp4ingest-scte35")
        .field("section", gst::Buffer::from_slice(section.to_vec()))
        .field("running-time", rt)
}

fn sink_pad(p: &gst::Pipeline) -> gst::Pad {
    p.by_name("sink").unwrap().static_pad("sink").unwrap()
}

fn ticks(ns: u64, timescale: u32) -> u64 {
    (u128::from(ns) * u128::from(timescale) / u128::from(SEC)) as u64
}

fn video_timescale(view: &StreamView) -> u32 {
    view.media_posts()[0].moov_tracks.iter().find(|t| t.handler == "vide").unwrap().timescale
}

/// The sparse stream's requests that carried a body: the header POST, then the messages.
fn sparse_posts(rx: &Receiver) -> Vec<PostRecord> {
    rx.stream("ads").media_posts().into_iter().cloned().collect()
}

fn message(p: &PostRecord) -> &FragmentInfo {
    assert_eq!(p.fragments.len(), 1, "one message per POST: {p:?}");
    &p.fragments[0]
}

fn ok(r: &RunResult) {
    assert!(r.eos && r.errors.is_empty(), "{:?} {:?}", r.errors, r.warnings);
}

#[test]
fn both_event_kinds_both_ways_become_timed_sparse_messages() {
    let rx = Receiver::start().unwrap();
    let p = pipeline(&description(&rx.url("live", "av"), 16, ""));
    let sent = std::sync::Arc::new(std::sync::Mutex::new(None::<(u64, std::time::Instant)>));
    let base_seen = sent.clone();
    let r = run_with(&p, Duration::from_secs(60), move |p, base| {
        // Where running time 0 is, on this process's monotonic clock.
        let zero = std::time::Instant::now() - Duration::from_nanos(running_now(p));
        *base_seen.lock().unwrap() = Some((base, zero));
        std::thread::sleep(Duration::from_millis(800));
        assert!(running_now(p) < 2 * SEC);
        let pad = sink_pad(p);
        let sink = p.by_name("sink").unwrap();
        // 1. A splice, serialized on the sink pad.
        let e = splice(7 * SEC, 101).field("duration", 30 * SEC).build();
        assert!(pad.send_event(gst::event::CustomDownstream::new(e)));
        // 2. A section, given to the element.
        assert!(sink.send_event(gst::event::CustomDownstream::new(scte35(&SPEC_SECTION, 9 * SEC).build())));
        // 3. A splice (back to the network), given to the element.
        let e = splice(11 * SEC, 103).field("out-of-network", false).build();
        assert!(sink.send_event(gst::event::CustomDownstream::new(e)));
        // 4. A section with its own id and duration, out of band on the sink pad.
        let e = scte35(&SPEC_SECTION, 13 * SEC).field("id", 104u32).field("duration", 5 * SEC).build();
        assert!(pad.send_event(gst::event::CustomDownstreamOob::new(e)));
    });
    ok(&r);
    let (base, zero) = sent.lock().unwrap().unwrap();
    let media = rx.stream("av");
    assert!(check_stream(&media, 2.0).is_empty(), "{:?}", check_stream(&media, 2.0));
    let ts = video_timescale(&media);
    let posts = sparse_posts(&rx);
    assert_eq!(posts.len(), 5, "the header POST and four messages: {posts:#?}");
    // The header POST registers the track: header boxes only.
    assert!(posts[0].fragments.is_empty());
    for p in &posts {
        assert!(p.violations.is_empty(), "{:?}", p.violations);
        assert_eq!(p.header_boxes, ["ftyp", "lsm", "moov"]);
        assert_eq!(p.header_bytes, posts[0].header_bytes, "the same header boxes on every POST");
        assert!(!p.chunked && p.content_length == Some(p.bytes), "a Content-Length POST");
        assert_eq!(p.status, Some(200));
        let closed = p.client_closed_after.expect("the client closed the connection");
        assert!(closed < Duration::from_secs(1), "{closed:?}");
    }
    let t = &posts[0].smil_tracks[0];
    assert_eq!((t.element.as_str(), t.attr("systemBitrate")), ("textstream", Some("0")));
    let ts_text = ts.to_string();
    for (n, v) in [
        ("trackName", "scte35"),
        ("Subtype", "DATA"),
        ("Scheme", "urn:scte:scte35:2013:bin"),
        ("parentTrackName", "video"),
        ("manifestOutput", "true"),
        ("timescale", ts_text.as_str()),
    ] {
        assert_eq!(t.param(n), Some(v), "{n}");
    }
    assert_eq!(posts[0].moov_tracks[0].handler, "meta");
    assert_eq!(posts[0].moov_tracks[0].entry, "scte");

    // Each message is sent 4 s before its splice, at that instant exactly on the video
    // track's UTC timeline, with the 4 s as presentation_time_delta.
    let expect = [
        (101u32, 7 * SEC, 30 * SEC),
        (1002, 9 * SEC, 0x52_6363 * SEC / 90_000),
        (103, 11 * SEC, 0),
        (104, 13 * SEC, 5 * SEC),
    ];
    for (post, (id, at, duration)) in posts[1..].iter().zip(expect) {
        let f = message(post);
        let m = f.sparse.as_ref().unwrap();
        let arrival = ticks(base + at - 4 * SEC, ts);
        let splice_ticks = ticks(base + at, ts);
        assert_eq!(m.id, id);
        assert_eq!(f.time(), Some(arrival), "message {id}");
        assert_eq!(u64::from(m.delta), splice_ticks - arrival, "message {id}");
        assert_eq!(f.duration(), Some(ticks(base + at + duration, ts) - splice_ticks), "message {id}");
        assert_eq!(m.version, 1);
        let info = scte35::parse_section(&m.message).expect("a valid section");
        match id {
            1002 | 104 => assert_eq!(m.message, SPEC_SECTION, "the section as given"),
            _ => {
                let SpliceCommand::Insert(i) = info.command else { panic!("{info:?}") };
                assert_eq!(i.event_id, id);
                assert_eq!(i.out_of_network, id == 101);
                // pts_time: the splice on the video timeline at 90 kHz, modulo 2^33.
                assert_eq!(
                    i.pts_time,
                    Some((u128::from(splice_ticks) * 90_000 / u128::from(ts)) as u64 & scte35::PTS_MASK)
                );
                assert_eq!(i.break_duration.map(|(_, d)| d), (duration > 0).then(|| duration * 90_000 / SEC));
            }
        }
        // The message was held until the media reached its send time.
        let due = zero + Duration::from_nanos(at - 4 * SEC);
        assert!(post.started + Duration::from_millis(100) >= due, "message {id} went out too early");
    }
    let accepted = r.messages_named("fmp4ingestsink-signal-accepted");
    assert_eq!(accepted.len(), 4);
    assert!(accepted.iter().all(|m| !m.get::<bool>("short-lead").unwrap() && m.get::<bool>("key-unit").unwrap()));
    assert_eq!(r.messages_named("fmp4ingestsink-sparse-delivered").len(), 5);
}

#[test]
fn segment_mode_starts_a_fragment_with_a_key_frame_at_the_splice() {
    let rx = Receiver::start().unwrap();
    let p = pipeline(&description(&rx.url("live", "av"), 14, "splice-mode=segment"));
    let at = std::sync::Arc::new(std::sync::Mutex::new((0u64, 0u64)));
    let shared = at.clone();
    let r = run_with(&p, Duration::from_secs(60), move |p, base| {
        std::thread::sleep(Duration::from_millis(500));
        // A splice 1.3 s after a 2 s boundary of the UTC grid, about 7 s into the stream.
        let utc = (base + 6 * SEC).div_ceil(2 * SEC) * 2 * SEC + 1_300_000_000;
        let rt = utc - base;
        *shared.lock().unwrap() = (base, rt);
        assert!(sink_pad(p).send_event(gst::event::CustomDownstream::new(splice(rt, 7).build())));
    });
    ok(&r);
    let (base, rt) = *at.lock().unwrap();
    let media = rx.stream("av");
    let post = media.media_posts()[0];
    assert!(post.violations.is_empty(), "{:?}", post.violations);
    for t in &post.moov_tracks {
        let cut = ticks(base + rt, t.timescale);
        let d = ticks(2 * SEC, t.timescale);
        let frags: Vec<&FragmentInfo> = post.fragments.iter().filter(|f| f.track_id == t.track_id).collect();
        let at_cut = frags.iter().position(|f| f.time() == Some(cut)).unwrap_or_else(|| {
            panic!(
                "{}: no fragment at the splice {cut}: {:?}",
                t.handler,
                frags.iter().map(|f| f.time()).collect::<Vec<_>>()
            )
        });
        let f = frags[at_cut];
        assert!(f.first_sample_sync, "{}: the fragment at the splice starts with a key frame", t.handler);
        // It ends on the grid, and the one before it starts on the grid: only the split
        // fragment breaks the constant duration.
        assert_eq!((cut + f.duration().unwrap()) % d, 0, "{}", t.handler);
        let before = frags[at_cut - 1];
        assert_eq!(before.time().unwrap() % d, 0);
        assert_eq!(before.time().unwrap() + before.duration().unwrap(), cut);
        for g in frags.iter().filter(|g| g.time() != Some(cut)) {
            assert_eq!(g.time().unwrap() % d, 0, "{}: {g:?}", t.handler);
        }
        assert!(media.gaps(t.track_id).is_empty());
    }
    let accepted = r.messages_named("fmp4ingestsink-signal-accepted");
    assert!(accepted[0].get::<bool>("new-fragment").unwrap());
    // And the message itself went out.
    assert_eq!(sparse_posts(&rx).len(), 2);
}

#[test]
fn a_failing_sparse_post_is_retried_with_the_same_bytes_and_the_media_goes_on() {
    let rx = Receiver::start().unwrap();
    let p = pipeline(&description(&rx.url("live", "av"), 12, ""));
    let rx2 = std::sync::Arc::new(rx);
    let rx3 = rx2.clone();
    let r = run_with(&p, Duration::from_secs(60), move |p, _| {
        // Once the track is registered, the next two sparse POSTs are refused.
        assert!(rx3.wait_until(Duration::from_secs(10), |posts| {
            posts.iter().any(|p| p.stream_id == "ads" && p.status == Some(200))
        }));
        for _ in 0..2 {
            rx3.inject(Fault::new(FaultKind::PostStatus(503), Duration::from_secs(60)).for_stream("ads").once());
        }
        let rt = running_now(p) + 5 * SEC;
        assert!(sink_pad(p).send_event(gst::event::CustomDownstream::new(splice(rt, 9).build())));
    });
    ok(&r);
    let posts = sparse_posts(&rx2);
    assert_eq!(posts.len(), 4, "header, then the message three times");
    let statuses: Vec<_> = posts.iter().map(|p| p.status).collect();
    assert_eq!(statuses, [Some(200), Some(503), Some(503), Some(200)]);
    let m: Vec<_> = posts[1..].iter().map(|p| (p.header_bytes.clone(), message(p).hash)).collect();
    assert!(m.windows(2).all(|w| w[0] == w[1]), "every attempt sends the same bytes");
    let retries = r.messages_named("fmp4ingestsink-sparse-retrying");
    assert_eq!(retries.len(), 2);
    assert_eq!(retries[0].get::<u32>("status").unwrap(), 503);
    assert_eq!(retries[0].get::<u32>("id").unwrap(), 9);
    // The media stream did not notice: one POST, no gap, no reconnect.
    let media = rx2.stream("av");
    let downs: Vec<String> = r.messages_named("fmp4ingestsink-disconnected").iter().map(|m| m.to_string()).collect();
    let problems = check_stream(&media, 2.0);
    assert!(problems.is_empty(), "{problems:?}; disconnections: {downs:?}");
    assert!(downs.is_empty(), "{downs:?}");
}

#[test]
fn bad_messages_are_refused_and_change_nothing() {
    let rx = Receiver::start().unwrap();
    let p = pipeline(&description(&rx.url("live", "av"), 10, ""));
    let r = run_with(&p, Duration::from_secs(60), move |p, _| {
        let pad = sink_pad(p);
        let send = |s: gst::Structure| pad.send_event(gst::event::CustomDownstream::new(s));
        // Wait for some media, so that "the past" exists.
        std::thread::sleep(Duration::from_millis(4500));
        let later = running_now(p) + 5 * SEC;
        let mut bad_crc = SPEC_SECTION;
        bad_crc[39] ^= 0xFF;
        assert!(!send(scte35(&bad_crc, later).build()));
        assert!(!send(scte35(&SPEC_SECTION[..30], later).build()));
        let mut unknown = SPEC_SECTION;
        unknown[13] = 0x42;
        let crc = scte35::crc32_mpeg2(&unknown[..36]);
        unknown[36..].copy_from_slice(&crc.to_be_bytes());
        assert!(!send(scte35(&unknown, later).build()));
        assert!(!send(splice(SEC, 5).build()), "a splice in the past");
        assert!(!send(gst::Structure::builder("fmp4ingest-splice").field("running-time", later).build()));
        // A good one afterwards still works.
        assert!(send(splice(later, 6).build()));
        // One with too little lead is taken, sent at once, and reported.
        assert!(send(splice(running_now(p) + SEC / 2, 8).build()));
    });
    ok(&r);
    let reasons: Vec<String> =
        r.messages_named("fmp4ingestsink-signal-refused").iter().map(|m| m.get::<String>("reason").unwrap()).collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    assert!(reasons[0].contains("CRC_32 mismatch"), "{reasons:?}");
    assert!(reasons[1].contains("truncated"), "{reasons:?}");
    assert!(reasons[2].contains("splice_command_type 0x42"), "{reasons:?}");
    assert!(reasons[3].contains("in the past"), "{reasons:?}");
    assert!(reasons[4].contains("'id'") && reasons[4].contains("missing"), "{reasons:?}");
    assert_eq!(r.warnings.iter().filter(|w| w.contains("Ad signal refused")).count(), 5, "{:?}", r.warnings);
    // Only the good ones reached the server; the media is untouched.
    let posts = sparse_posts(&rx);
    assert_eq!(posts.len(), 3);
    // The short one went first, at once, with the lead it had.
    let short = message(&posts[1]).sparse.as_ref().unwrap();
    assert_eq!(short.id, 8);
    let ts = video_timescale(&rx.stream("av"));
    assert!(short.delta > 0 && u64::from(short.delta) < ticks(4 * SEC, ts), "{short:?}");
    assert_eq!(message(&posts[2]).sparse.as_ref().unwrap().id, 6);
    assert_eq!(u64::from(message(&posts[2]).sparse.as_ref().unwrap().delta), ticks(4 * SEC, ts));
    assert!(r.warnings.iter().any(|w| w.contains("Ad signal 8 has less than 4 s of lead")), "{:?}", r.warnings);
    let accepted = r.messages_named("fmp4ingestsink-signal-accepted");
    assert_eq!(accepted.iter().map(|m| m.get::<bool>("short-lead").unwrap()).collect::<Vec<_>>(), [false, true]);
    let media = rx.stream("av");
    assert!(check_stream(&media, 2.0).is_empty(), "{:?}", check_stream(&media, 2.0));
}

#[test]
fn without_a_sparse_stream_ad_events_get_a_warning() {
    let rx = Receiver::start().unwrap();
    let d = format!(
        "isofmp4mux name=mux fragment-duration=2000000000 ! fmp4ingestsink name=sink location=\"{}\" {} ! queue ! mux.",
        rx.url("live", "av"),
        common::video_source(4, 600)
    );
    let p = pipeline(&d);
    let r = run_with(&p, Duration::from_secs(30), |p, _| {
        assert!(!sink_pad(p).send_event(gst::event::CustomDownstream::new(splice(30 * SEC, 1).build())));
    });
    ok(&r);
    assert!(
        r.warnings.iter().any(|w| w.contains("Ad signal ignored") && w.contains("sparse-stream-id")),
        "{:?}",
        r.warnings
    );
    assert!(rx.stream("ads").posts.is_empty());
}

#[test]
fn redundant_encoders_given_the_same_event_send_identical_sparse_fragments() {
    let rx = Receiver::start().unwrap();
    // Two encoders of the same channel, started 1.7 s apart, each with its sparse stream.
    let mk = |id: &str| {
        let d = description(&rx.url("live", id), 14, "")
            .replace("sparse-stream-id=ads", &format!("sparse-stream-id=ads-{id}"));
        pipeline(&d)
    };
    let a = mk("a");
    let b = mk("b");
    // The splice instant, in UTC, and each encoder's running time for it.
    let utc_splice = std::sync::Arc::new(std::sync::Mutex::new(None::<u64>));
    let send = |p: &gst::Pipeline, base: u64, utc_splice: &std::sync::Mutex<Option<u64>>| {
        let utc = *utc_splice.lock().unwrap().get_or_insert(base + 11 * SEC);
        let e = splice(utc - base, 77).field("duration", 60 * SEC).build();
        assert!(sink_pad(p).send_event(gst::event::CustomDownstream::new(e)));
    };
    let (u1, u2) = (utc_splice.clone(), utc_splice.clone());
    let ta = {
        let a = a.clone();
        std::thread::spawn(move || run_with(&a, Duration::from_secs(60), move |p, base| send(p, base, &u1)))
    };
    std::thread::sleep(Duration::from_millis(1700));
    let rb = run_with(&b, Duration::from_secs(60), move |p, base| send(p, base, &u2));
    let ra = ta.join().unwrap();
    ok(&ra);
    ok(&rb);
    let msg = |id: &str| {
        let posts: Vec<PostRecord> = rx.stream(id).media_posts().into_iter().cloned().collect();
        assert_eq!(posts.len(), 2, "{id}");
        (posts[1].header_bytes.clone(), message(&posts[1]).clone())
    };
    let (ha, fa) = msg("ads-a");
    let (hb, fb) = msg("ads-b");
    assert_eq!(fa.hash, fb.hash, "byte-identical sparse fragments: {fa:?} {fb:?}");
    assert_eq!(fa.sparse, fb.sparse);
    // The header boxes differ only in the Streams() id each names.
    assert_eq!(String::from_utf8_lossy(&ha).replace("ads-a", "ads-b"), String::from_utf8_lossy(&hb));
}

#[test]
fn scte35_from_an_mpeg_ts_input_reaches_the_sparse_stream() {
    let rx = Receiver::start().unwrap();
    let d = format!(
        "videotestsrc is-live=true num-buffers=420 ! video/x-raw,width=320,height=240,framerate=30/1 ! \
         x264enc key-int-max=600 speed-preset=ultrafast bitrate=600 ! h264parse ! \
         mpegtsmux name=ts scte-35-pid=500 ! tsdemux name=demux send-scte35-events=true ! h264parse ! queue ! \
         isofmp4mux fragment-duration=2000000000 ! fmp4ingestsink name=sink location=\"{}\" sparse-stream-id=ads \
         splice-mode=none",
        rx.url("live", "ts")
    );
    let (r, rt) = mpegts::run_with_a_splice(&d);
    ok(&r);
    assert!(r.messages_named("fmp4ingestsink-signal-refused").is_empty(), "{:?}", r.messages);
    let rt = rt.expect("tsdemux sent the section");
    assert!(rt.abs_diff(8 * SEC) < SEC / 2, "tsdemux placed the splice at {rt}");
    let ts = video_timescale(&rx.stream("ts"));
    let posts = sparse_posts(&rx);
    assert_eq!(posts.len(), 2, "the header and one message");
    let f = message(&posts[1]);
    let m = f.sparse.as_ref().unwrap();
    // On the parent's (pipeline) timeline: sent 4 s ahead of the splice tsdemux mapped.
    assert_eq!(f.time(), Some(ticks(rt - 4 * SEC, ts)));
    assert_eq!(f.time().unwrap() + u64::from(m.delta), ticks(rt, ts));
    assert_eq!(f.duration(), Some(ticks(rt + 10 * SEC, ts) - ticks(rt, ts)));
    assert_eq!(m.id, 7);
    let info = scte35::parse_section(&m.message).expect("a valid section, as mpegtsmux wrote it");
    let SpliceCommand::Insert(i) = info.command else { panic!("{info:?}") };
    assert!(i.out_of_network && i.event_id == 7);
    assert_eq!(i.break_duration.map(|(_, d)| d), Some(900_000));
}

/// Runs 12 s with one splice 1.3 s after a boundary of the UTC grid, about 7 s in; returns the
/// media stream, the sparse stream's POSTs and the splice's UTC instant.
fn splice_run(mode: &str, props: &str) -> (StreamView, Vec<PostRecord>, u64) {
    let rx = Receiver::start().unwrap();
    // The muxer asks for no key frames of its own, so that only the sink's requests place them.
    let d = format!(
        "isofmp4mux name=mux fragment-duration=2000000000 send-force-keyunit=false ! fmp4ingestsink name=sink \
         location=\"{}\" timestamp-mode=utc sparse-stream-id=ads splice-mode={mode} {props} {} ! queue ! mux. \
         {} ! queue ! mux.",
        rx.url("live", "av"),
        common::video_source(12, 600),
        common::audio_source(12)
    );
    let p = pipeline(&d);
    let at = std::sync::Arc::new(std::sync::Mutex::new(0u64));
    let shared = at.clone();
    let r = run_with(&p, Duration::from_secs(60), move |p, base| {
        std::thread::sleep(Duration::from_millis(500));
        let utc = (base + 6 * SEC).div_ceil(2 * SEC) * 2 * SEC + 1_300_000_000;
        *shared.lock().unwrap() = utc;
        assert!(sink_pad(p).send_event(gst::event::CustomDownstream::new(splice(utc - base, 5).build())));
    });
    ok(&r);
    let accepted = r.messages_named("fmp4ingestsink-signal-accepted");
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].get::<bool>("key-unit").unwrap(), mode == "keyframe");
    assert!(!accepted[0].get::<bool>("new-fragment").unwrap());
    let utc = *at.lock().unwrap();
    (rx.stream("av"), sparse_posts(&rx), utc)
}

/// Whether a video fragment has a key frame within one frame of `at` (ticks), inside it.
fn key_frame_near(view: &StreamView, at: u64) -> bool {
    let video = view.media_posts()[0].moov_tracks.iter().find(|t| t.handler == "vide").unwrap().clone();
    let frame = u64::from(video.timescale) / 30;
    let f = view
        .fragments()
        .into_iter()
        .find(|f| {
            f.track_id == video.track_id && f.time().unwrap() <= at && at < f.time().unwrap() + f.duration().unwrap()
        })
        .expect("a video fragment holds the splice")
        .clone();
    assert!(at - f.time().unwrap() > frame, "the splice is inside the fragment, not at its start");
    f.sync_offsets.iter().any(|o| (f.time().unwrap() + o).abs_diff(at) <= frame)
}

#[test]
fn keyframe_mode_puts_a_key_frame_at_the_splice_and_none_does_not() {
    // keyframe (the default), with the sparse track's names set and the audio track as parent.
    let props = "sparse-track-name=ad-cues sparse-scheme=urn:example:cues sparse-parent-track=audio";
    let (media, posts, utc) = splice_run("keyframe", props);
    let video_ts = video_timescale(&media);
    assert!(key_frame_near(&media, ticks(utc, video_ts)), "a key frame at the splice");
    assert!(check_stream(&media, 2.0).is_empty(), "{:?}", check_stream(&media, 2.0));
    let audio = media.media_posts()[0].moov_tracks.iter().find(|t| t.handler == "soun").unwrap().clone();
    let t = &posts[0].smil_tracks[0];
    let ts_text = audio.timescale.to_string();
    for (n, v) in [
        ("trackName", "ad-cues"),
        ("Scheme", "urn:example:cues"),
        ("parentTrackName", "audio"),
        ("timescale", ts_text.as_str()),
    ] {
        assert_eq!(t.param(n), Some(v), "{n}");
    }
    // The message is timed on the audio track's timeline.
    let m = message(&posts[1]);
    assert_eq!(m.time().unwrap() + u64::from(m.sparse.as_ref().unwrap().delta), ticks(utc, audio.timescale));
    // none: no key frame is asked for, and none comes (key-int-max is 20 s).
    let (media, _, utc) = splice_run("none", "");
    assert!(!key_frame_near(&media, ticks(utc, video_timescale(&media))), "no key frame at the splice");
}
