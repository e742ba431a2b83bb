// SPDX-License-Identifier: MPL-2.0
//! Redundant encoders (docs/protocol.md §4): UTC timestamps locked to the epoch and fragments on a fixed
//! grid, so that encoders started apart, killed, or restarted produce fragments a server can
//! deduplicate: same times, durations and indexes.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{RunResult, check_media_post, run_pipeline, spawn_pipeline};
use fmp4ingest_receiver::{FragmentInfo, PostRecord, Receiver, StreamView};

/// A live test pattern (30 fps unless `fps` says otherwise) and a 48 kHz AAC tone through
/// isofmp4mux into the sink in UTC mode with tfxd v2.
fn pipeline(url: &str, seconds: u32, fps: &str, props: &str) -> String {
    let (num, den): (u32, u32) = match fps.split_once('/') {
        Some((n, d)) => (n.parse().unwrap(), d.parse().unwrap()),
        None => (fps.parse().unwrap(), 1),
    };
    let frames = seconds * num / den;
    format!(
        "isofmp4mux name=mux fragment-duration=2000000000 ! fmp4ingestsink name=sink location=\"{url}\" \
         timestamp-mode=utc tfxd-version=2 {props} \
         videotestsrc is-live=true num-buffers={frames} pattern=ball ! video/x-raw,width=320,height=240,framerate={fps} ! \
         x264enc speed-preset=ultrafast bitrate=600 key-int-max=600 ! h264parse ! queue ! mux. \
         audiotestsrc is-live=true num-buffers={} samplesperbuffer=1024 ! audio/x-raw,rate=48000,channels=2 ! \
         avenc_aac ! aacparse ! queue ! mux.",
        seconds * 48000 / 1024 + 1
    )
}

fn ok(r: &RunResult) {
    assert!(r.eos && r.errors.is_empty(), "{:?} {:?}", r.errors, r.warnings);
}

/// Per track, the fragments by time: (index, time, duration, mfhd sequence, samples).
fn fragments(view: &StreamView) -> BTreeMap<u32, BTreeMap<u64, FragmentInfo>> {
    let mut m: BTreeMap<u32, BTreeMap<u64, FragmentInfo>> = BTreeMap::new();
    for f in view.fragments() {
        m.entry(f.track_id).or_default().entry(f.time().unwrap()).or_insert_with(|| f.clone());
    }
    m
}

/// Every fragment is on the grid: time = index x 2 s, duration 2 s, index in tfxd v2, and mfhd
/// sequence = index x tracks + the track's position in the moov + 1; but the last of each track
/// in each POST, which the end of a stream cuts.
fn on_the_grid(view: &StreamView, timescales: &BTreeMap<u32, u32>) {
    for post in view.media_posts() {
        let tracks = post.moov_tracks.len() as u64;
        for (&track, &ts) in timescales {
            let position = post.moov_tracks.iter().position(|t| t.track_id == track).expect("a moov track") as u64;
            let d = 2 * u64::from(ts);
            let frags: Vec<&FragmentInfo> = post.fragments.iter().filter(|f| f.track_id == track).collect();
            for (i, f) in frags.iter().enumerate() {
                let index = f.tfxd_index.expect("tfxd v2");
                assert_eq!(f.time().unwrap(), index * d, "track {track}: {f:?}");
                assert_eq!(f.sequence, (index * tracks + position + 1) as u32, "mfhd sequence, track {track}");
                if i + 1 < frags.len() {
                    assert_eq!(f.duration().unwrap(), d, "track {track}: {f:?}");
                }
            }
        }
    }
}

/// No gap on any track of a stream.
fn gapless(view: &StreamView) {
    for t in view.track_ids() {
        assert!(view.gaps(t).is_empty(), "track {t}: {:?}", view.gaps(t));
    }
}

fn timescales(view: &StreamView) -> BTreeMap<u32, u32> {
    view.media_posts()[0].moov_tracks.iter().map(|t| (t.track_id, t.timescale)).collect()
}

#[test]
fn two_encoders_started_3_3_s_apart_write_identical_fragments() {
    let rx = Receiver::start().unwrap();
    let a = spawn_pipeline(&pipeline(&rx.url("live", "enc-a"), 16, "30/1", ""), Duration::from_secs(90));
    std::thread::sleep(Duration::from_millis(3300));
    let b = spawn_pipeline(&pipeline(&rx.url("live", "enc-b"), 16, "30/1", ""), Duration::from_secs(90));
    let (ra, rb) = (a.join().unwrap(), b.join().unwrap());
    ok(&ra);
    ok(&rb);
    let (va, vb) = (rx.stream("enc-a"), rx.stream("enc-b"));
    let ts = timescales(&va);
    on_the_grid(&va, &ts);
    on_the_grid(&vb, &ts);
    gapless(&va);
    gapless(&vb);
    for post in va.media_posts().into_iter().chain(vb.media_posts()) {
        assert!(check_media_post(post).is_empty(), "{:?}", check_media_post(post));
    }
    let (fa, fb) = (fragments(&va), fragments(&vb));
    for (track, a_frags) in &fa {
        let b_frags = &fb[track];
        // B joined 3.3 s later: on the common timeline its first fragment is later (which
        // running times, both starting at 0, would not give).
        let (a_first, b_first) = (a_frags.values().next().unwrap(), b_frags.values().next().unwrap());
        assert!(
            b_first.tfxd_index.unwrap() > a_first.tfxd_index.unwrap(),
            "track {track}: B starts at index {:?}, A at {:?}",
            b_first.tfxd_index,
            a_first.tfxd_index
        );
        // Both have it, and neither's is the last one (cut by the end of its stream).
        let last_a = *a_frags.keys().last().unwrap();
        let common: Vec<u64> = b_frags.keys().copied().filter(|t| a_frags.contains_key(t) && *t != last_a).collect();
        assert!(common.len() >= 4, "track {track}: only {} fragments in common", common.len());
        for t in &common {
            let (x, y) = (&a_frags[t], &b_frags[t]);
            assert_eq!((x.tfxd, x.tfxd_index, x.sequence), (y.tfxd, y.tfxd_index, y.sequence), "track {track} at {t}");
        }
    }
}

#[test]
fn a_send_delay_holds_every_fragment_back() {
    let rx = Receiver::start().unwrap();
    // One muxer feeding two sinks: the same fragments at the same moments, one sink delayed.
    let d = format!(
        "isofmp4mux name=mux fragment-duration=2000000000 ! tee name=t \
         t. ! queue ! fmp4ingestsink name=sink location=\"{}\" timestamp-mode=utc \
         t. ! queue ! fmp4ingestsink location=\"{}\" timestamp-mode=utc send-delay=1000000000 \
         videotestsrc is-live=true num-buffers=300 ! video/x-raw,width=320,height=240,framerate=30/1 ! \
         x264enc speed-preset=ultrafast bitrate=600 ! h264parse ! queue ! mux.",
        rx.url("live", "now"),
        rx.url("live", "later")
    );
    ok(&run_pipeline(&d, Duration::from_secs(60)));
    let (now, later) = (fragments(&rx.stream("now")), fragments(&rx.stream("later")));
    let mut lag: Vec<f64> = now[&1]
        .iter()
        .filter_map(|(t, f)| Some(later[&1].get(t)?.arrived?.saturating_duration_since(f.arrived?).as_secs_f64()))
        .collect();
    lag.sort_by(f64::total_cmp);
    assert!(lag.len() >= 3, "{lag:?}");
    assert!(lag.iter().all(|l| (0.9..1.3).contains(l)), "lag {lag:?}");
}

#[test]
fn killing_the_primary_of_two_encoders_on_the_same_stream_id_leaves_no_gap() {
    let rx = Receiver::start().unwrap();
    let url = rx.url("live", "shared");
    // The primary pushes first; the secondary joins 1.7 s later with a send delay, as the README
    // advises, so that its copies arrive second. The primary dies without EOS after 11 s.
    common::init();
    use gst::prelude::*;
    let primary = gst::parse::launch(&pipeline(&url, 60, "30/1", "")).unwrap();
    primary.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(1700));
    let secondary = spawn_pipeline(&pipeline(&url, 20, "30/1", "send-delay=500000000"), Duration::from_secs(90));
    std::thread::sleep(Duration::from_millis(9300));
    primary.set_state(gst::State::Null).unwrap();
    let r = secondary.join().unwrap();
    ok(&r);
    let view = rx.stream("shared");
    let posts = view.media_posts();
    assert_eq!(posts.len(), 2, "one POST per encoder");
    let (first, second) = (posts[0], posts[1]);
    assert!(!first.complete, "the primary died mid-stream");
    assert!(check_media_post(second).is_empty(), "{:?}", check_media_post(second));
    let ts = timescales(&view);
    on_the_grid(&view, &ts);
    gapless(&view);
    for t in view.track_ids() {
        let timeline = view.timeline(t);
        assert!(timeline.len() >= 7, "track {t}: {} fragments", timeline.len());
        let by_time = |p: &PostRecord| -> BTreeMap<u64, FragmentInfo> {
            p.fragments.iter().filter(|f| f.track_id == t).map(|f| (f.time().unwrap(), f.clone())).collect()
        };
        let (a, b) = (by_time(first), by_time(second));
        // The primary's copies come first; the secondary's fill the place it left.
        assert_eq!(timeline.first().map(|f| f.0), a.keys().next().copied(), "track {t}");
        let primary_end = *a.keys().last().unwrap();
        assert!(timeline.last().unwrap().0 > primary_end, "track {t}: the secondary took over");
        let both: Vec<u64> = a.keys().filter(|k| b.contains_key(k)).copied().collect();
        assert!(both.len() >= 2, "track {t}: the encoders overlapped by {} fragments", both.len());
        for k in both {
            let (x, y) = (&a[&k], &b[&k]);
            assert_eq!((x.tfxd, x.tfxd_index, x.sequence), (y.tfxd, y.tfxd_index, y.sequence), "track {t} at {k}");
        }
    }
}

#[test]
fn utc_times_are_the_wall_clock_and_the_offset_moves_them() {
    let rx = Receiver::start().unwrap();
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let before = now();
    let plain = spawn_pipeline(&pipeline(&rx.url("live", "utc"), 6, "30/1", ""), Duration::from_secs(60));
    let hour = spawn_pipeline(
        &pipeline(&rx.url("live", "utc-1h"), 6, "30/1", "timestamp-offset=3600000000000"),
        Duration::from_secs(60),
    );
    ok(&plain.join().unwrap());
    ok(&hour.join().unwrap());
    let after = now();
    for (id, offset) in [("utc", 0.0), ("utc-1h", 3600.0)] {
        let view = rx.stream(id);
        let ts = timescales(&view);
        on_the_grid(&view, &ts);
        for (track, timescale) in &ts {
            let first = view.timeline(*track)[0].0 as f64 / f64::from(*timescale);
            // The first fragment starts at the first boundary after the pipeline started.
            assert!(
                first >= before + offset - 0.5 && first <= after + offset,
                "{id} track {track}: starts at {first} s since the epoch, not within [{before}, {after}] + {offset}"
            );
        }
    }
}

#[test]
fn a_restarted_encoder_continues_the_timeline_without_overlap() {
    let rx = Receiver::start().unwrap();
    let url = rx.url("live", "restart");
    ok(&run_pipeline(&pipeline(&url, 7, "30/1", ""), Duration::from_secs(60)));
    let first: BTreeMap<u32, (u64, u64)> = fragments(&rx.stream("restart"))
        .into_iter()
        .map(|(t, f)| {
            let last = f.values().last().unwrap();
            (t, (last.time().unwrap() + last.duration().unwrap(), last.tfxd_index.unwrap()))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1300));
    let before = rx.posts().len();
    ok(&run_pipeline(&pipeline(&url, 7, "30/1", ""), Duration::from_secs(60)));
    let view = rx.stream("restart");
    let ts = timescales(&view);
    on_the_grid(&view, &ts);
    let restarted: Vec<_> = rx.posts().into_iter().skip(before).filter(|p| !p.is_probe()).collect();
    assert_eq!(restarted.len(), 1);
    for post in &restarted {
        for (track, (end, index)) in &first {
            let f = post.fragments.iter().find(|f| f.track_id == *track).unwrap_or_else(|| {
                panic!(
                    "track {track} in {:?}",
                    post.fragments.iter().map(|f| (f.track_id, f.time())).collect::<Vec<_>>()
                )
            });
            assert!(f.time().unwrap() >= *end, "track {track}: restarted at {} before {end}", f.time().unwrap());
            assert!(f.tfxd_index.unwrap() > *index);
        }
    }
}

#[test]
fn ntsc_video_and_48_khz_aac_keep_exact_2_s_fragments() {
    let rx = Receiver::start().unwrap();
    let run = run_pipeline(&pipeline(&rx.url("live", "ntsc"), 21, "30000/1001", ""), Duration::from_secs(90));
    ok(&run);
    let view = rx.stream("ntsc");
    let ts = timescales(&view);
    on_the_grid(&view, &ts);
    gapless(&view);
    // tfxd durations are the sums of the sample durations, among the rest; one POST, whole.
    let post = view.media_posts()[0];
    assert!(check_media_post(post).is_empty(), "{:?}; the sink warned {:?}", check_media_post(post), run.warnings);
    let tracks = &view.media_posts()[0].moov_tracks;
    let video = tracks.iter().find(|t| t.handler == "vide").unwrap().track_id;
    let audio = tracks.iter().find(|t| t.handler == "soun").unwrap().track_id;
    let frags = fragments(&view);
    let count = |t: u32| -> Vec<u32> {
        let f: Vec<u32> = frags[&t].values().map(|f| f.sample_count).collect();
        f[1..f.len() - 1].to_vec()
    };
    // 29.97 fps: 59.94 frames per 2 s, so 60-frame fragments with a 59 now and then.
    assert!(count(video).iter().all(|c| *c == 59 || *c == 60), "{:?}", count(video));
    assert!(frags[&video].values().all(|f| f.first_sample_sync));
    // 48 kHz AAC: 93.75 frames per 2 s, so 93 and 94 alternate.
    let a = count(audio);
    assert!(a.iter().all(|c| *c == 93 || *c == 94), "{a:?}");
    assert!(a.contains(&93) && a.contains(&94));
}

#[test]
fn a_key_frame_asked_for_as_the_encoder_starts_is_not_lost() {
    // The first boundary is 1.02 s after running time 0 and the lead is 1 s, so the first
    // request is due as the pipeline starts, before x264enc has put out a frame. GStreamer
    // 1.22's encoder would match it against a frame 1000 hours ahead and then ignore every
    // later request; the sink holds it until the encoder has started.
    let rx = Receiver::start().unwrap();
    let d = format!(
        "videotestsrc is-live=true num-buffers=330 ! video/x-raw,width=320,height=240,framerate=30/1 ! \
         x264enc speed-preset=ultrafast bitrate=600 key-int-max=600 ! h264parse ! queue ! \
         isofmp4mux fragment-duration=2000000000 send-force-keyunit=false ! \
         fmp4ingestsink location=\"{}\" timestamp-offset=980000000 tfxd-version=2",
        rx.url("live", "early")
    );
    ok(&run_pipeline(&d, Duration::from_secs(60)));
    let view = rx.stream("early");
    let ts = timescales(&view);
    on_the_grid(&view, &ts);
    gapless(&view);
    let frags: Vec<FragmentInfo> = fragments(&view)[&1].values().cloned().collect();
    // 11 s of video from target time 0.98 s: boundaries at 2, 4, 6, 8, 10 s.
    assert!(frags.len() >= 5, "{} fragments: {frags:?}", frags.len());
    for f in &frags[1..] {
        assert!(f.first_sample_sync, "a fragment without a key frame: {f:?}");
    }
}
