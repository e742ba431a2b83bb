// SPDX-License-Identifier: MPL-2.0
//! Failover that loses nothing (docs/protocol.md §3): live pipelines against a receiver that resets,
//! stalls, restarts and refuses, checked on the receiver's deduplicated timeline.

mod common;

use std::time::{Duration, Instant};

use common::{RunResult, audio_source, run_pipeline, spawn_pipeline, video_source};
use fmp4ingest_receiver::{Behaviour, Fault, FaultKind, Receiver, StreamView};

/// Video + audio through isofmp4mux (2 s fragments) into the sink, with extra sink properties.
fn pipeline(url: &str, seconds: u32, props: &str) -> String {
    format!(
        "isofmp4mux name=mux fragment-duration=2000000000 ! fmp4ingestsink name=sink location=\"{url}\" {props} \
         {} ! queue ! mux. {} ! queue ! mux.",
        video_source(seconds, 60),
        audio_source(seconds)
    )
}

fn ok(r: &RunResult) {
    assert!(r.eos && r.errors.is_empty(), "{:?} {:?}", r.errors, r.warnings);
}

/// Zero gaps on every track, and at least `min` fragments per track.
fn gapless(view: &StreamView, min: usize) {
    let tracks = view.track_ids();
    assert_eq!(tracks.len(), 2, "{tracks:?}");
    for t in tracks {
        assert!(view.gaps(t).is_empty(), "track {t}: gaps {:?}", view.gaps(t));
        assert!(view.timeline(t).len() >= min, "track {t}: {} fragments", view.timeline(t).len());
    }
    let violations = view.violations();
    assert!(violations.iter().all(|v| v.contains("body: ")), "{violations:#?}");
}

fn u32_field(s: &gst::StructureRef, f: &str) -> u32 {
    s.get::<u32>(f).unwrap_or_else(|e| panic!("{f}: {e} in {s}"))
}

fn u64_array(s: &gst::StructureRef, f: &str) -> Vec<u64> {
    s.get::<gst::Array>(f).unwrap().iter().map(|v| v.get::<u64>().unwrap()).collect()
}

fn u32_array(s: &gst::StructureRef, f: &str) -> Vec<u32> {
    s.get::<gst::Array>(f).unwrap().iter().map(|v| v.get::<u32>().unwrap()).collect()
}

#[test]
fn abort_storm_loses_nothing_and_every_reconnect_resends_the_header_and_last_two_per_track() {
    let rx = Receiver::start().unwrap();
    rx.inject(Fault::new(FaultKind::Abort { min: 3, max: 4, reset: true }, Duration::from_secs(300)));
    let r = run_pipeline(&pipeline(&rx.url("live", "storm"), 60, ""), Duration::from_secs(150));
    ok(&r);
    let view = rx.stream("storm");
    gapless(&view, 29);
    let media = view.media_posts();
    assert!(media.len() >= 10, "{} POSTs", media.len());
    assert!(media.iter().filter(|p| p.ended_by_receiver.as_deref() == Some("abort-reset")).count() >= 9);
    // Byte-identical header boxes on every connection.
    let header = &media[0].header_bytes;
    assert!(!header.is_empty());
    assert!(media.iter().all(|p| &p.header_bytes == header));
    // Each reconnect announced what it resent, and the next POST starts with exactly that:
    // at least the last two fragments of each track.
    let resent = r.messages_named("fmp4ingestsink-resent");
    assert_eq!(resent.len(), media.len() - 1);
    for (k, m) in resent.iter().enumerate() {
        let ids = u32_array(m, "track-ids");
        let times = u64_array(m, "times");
        assert_eq!(u32_field(m, "count") as usize, ids.len());
        for t in [1, 2] {
            assert!(ids.iter().filter(|i| **i == t).count() >= 2, "resend {k}: {ids:?}");
        }
        let post = media[k + 1];
        let first: Vec<(u32, u64)> =
            post.fragments.iter().take(ids.len()).map(|f| (f.track_id, f.time().unwrap())).collect();
        let announced: Vec<(u32, u64)> = ids.into_iter().zip(times).collect();
        assert_eq!(first, announced, "POST #{}", post.index);
    }
    let stats = r.final_stats.unwrap();
    assert!(stats.get::<u64>("reconnects").unwrap() >= 9, "{stats}");
    assert_eq!(stats.get::<u64>("fragments-dropped").unwrap(), 0);
}

#[test]
fn a_server_down_for_20_s_leaves_no_gap_and_never_stalls_the_pipeline() {
    let rx = Receiver::start().unwrap();
    let run = spawn_pipeline(&pipeline(&rx.url("live", "down"), 42, ""), Duration::from_secs(150));
    assert!(rx.wait_until(Duration::from_secs(30), |p| p.iter().map(|p| p.fragments.len()).sum::<usize>() >= 8));
    rx.restart(Duration::from_secs(20));
    let r = run.join().unwrap();
    ok(&r);
    let view = rx.stream("down");
    gapless(&view, 19);
    // The pipeline kept flowing through the outage: fragments reach the sink every ~2 s.
    assert!(r.max_buffer_gap < Duration::from_millis(3500), "the sink blocked for {:?}", r.max_buffer_gap);
    assert!(!r.messages_named("fmp4ingestsink-disconnected").is_empty());
    assert!(r.messages_named("fmp4ingestsink-reconnecting").len() >= 3);
    assert!(r.messages_named("fmp4ingestsink-connected").len() >= 2);
    let stats = r.final_stats.unwrap();
    assert_eq!(stats.get::<u64>("fragments-dropped").unwrap(), 0, "{stats}");
    check_stats_fields(&stats);
    // The backlog went out no faster than twice real time: in the POST after the outage, past
    // the fragments sent again (they go at once, and so does the first new one of each track),
    // a fragment starting m seconds into the backlog arrived no earlier than m / 2 seconds after
    // the first new one (plus one fragment, which may go as soon as it starts within the limit).
    let posts = view.media_posts();
    let at = posts.iter().position(|p| p.ended_by_receiver.is_none() && p.fragments.len() > 10).unwrap();
    let after = posts[at];
    let sent_before: Vec<(u32, u64)> =
        posts[..at].iter().flat_map(|p| p.fragments.iter().map(|f| (f.track_id, f.time().unwrap()))).collect();
    let video: Vec<_> =
        after.fragments.iter().filter(|f| f.track_id == 1 && !sent_before.contains(&(1, f.time().unwrap()))).collect();
    let (t0, a0) = (video[0].time().unwrap(), video[0].arrived.unwrap());
    let mut ahead_of_live = 0.0f64;
    for f in &video {
        let media = (f.time().unwrap() - t0) as f64 / 3000.0;
        let wall = (f.arrived.unwrap() - a0).as_secs_f64();
        assert!(media <= 2.0 * wall + 2.5, "media {media:.2} s went out {wall:.2} s after the backlog's start");
        ahead_of_live = f64::max(ahead_of_live, media - wall);
    }
    // There was a backlog to pace: at some point the media sent ran ahead of wall time.
    assert!(ahead_of_live > 5.0, "{ahead_of_live}");
}

/// The stats structure has the stream's figures and, per track, the heartbeat's fields.
fn check_stats_fields(stats: &gst::Structure) {
    for f in [
        "connections",
        "reconnects",
        "bytes-sent",
        "fragments-sent",
        "fragments-resent",
        "queue-fragments",
        "queue-bytes",
        "queue-duration",
    ] {
        assert!(stats.get::<u64>(f).is_ok(), "{f} in {stats}");
    }
    assert!(stats.get::<u64>("bytes-sent").unwrap() > 1_000_000);
    // The send latency: every fragment sent was measured once; those that waited out the
    // outage make the maximum.
    let (count, p50, p99, max) = (
        stats.get::<u64>("latency-count").unwrap(),
        stats.get::<u64>("latency-p50").unwrap(),
        stats.get::<u64>("latency-p99").unwrap(),
        stats.get::<u64>("latency-max").unwrap(),
    );
    assert!(count >= 10 && count <= stats.get::<u64>("fragments-sent").unwrap(), "{stats}");
    assert!(p50 <= p99 && p99 <= max && max > 1_000_000_000, "{stats}");
    let tracks = stats.get::<gst::Array>("tracks").unwrap();
    assert_eq!(tracks.len(), 2);
    for t in tracks.iter() {
        let t = t.get::<gst::Structure>().unwrap();
        let kind = t.get::<String>("trackType").unwrap();
        assert!(kind == "video" || kind == "audio", "{t}");
        assert_eq!(t.get::<String>("trackName").unwrap(), kind);
        assert!(t.get::<u64>("bitrate").unwrap() > 0);
        assert!(t.get::<u64>("incomingBitrate").unwrap() > 0, "{t}");
        assert!(t.get::<u64>("lastTimestamp").unwrap() > 0);
        assert!(t.get::<u32>("timescale").unwrap() > 0);
        let arrival = t.get::<String>("lastFragmentArrivalTime").unwrap();
        assert!(arrival.len() == 24 && arrival.ends_with('Z') && arrival.as_bytes()[10] == b'T', "{arrival}");
        for c in ["discontinuityCount", "overlapCount", "nonincreasingCount"] {
            assert_eq!(t.get::<u64>(c).unwrap(), 0, "{c} in {t}");
        }
        assert!(t.get::<String>("state").is_ok());
        assert!(t.get::<bool>("healthy").is_ok());
    }
}

/// The receiver stops reading after 4 fragments until the sender opens a new POST; what its
/// socket buffers held is still read (`discard` false) or lost with a reset (`discard` true).
/// Its receive buffer is a fixed 16 KiB (32 KiB once Linux doubles it), so that how long the sender's bytes keep moving after
/// the stall does not depend on the kernel's autotuning.
fn stall(discard: bool, id: &str) -> RunResult {
    stall_with(discard, id, 16 * 1024, Duration::ZERO)
}

/// `hidden`: how much longer the stall may take to show, from a receive buffer big enough to
/// take fragments unread without its window shrinking (see the session's `Link::window`).
fn stall_with(discard: bool, id: &str, recv_buffer: u32, hidden: Duration) -> RunResult {
    let rx = Receiver::start_with(Behaviour { recv_buffer: Some(recv_buffer), ..Behaviour::default() }, "127.0.0.1:0")
        .unwrap();
    let stall = FaultKind::Stall { fragments: 4, duration: Duration::from_secs(40), until_new_post: true, discard };
    rx.inject(Fault::new(stall, Duration::from_secs(300)).once());
    let r = run_pipeline(&pipeline(&rx.url("live", id), 24, ""), Duration::from_secs(120));
    ok(&r);
    let view = rx.stream(id);
    gapless(&view, 11);
    let media = view.media_posts();
    let stalled = media.iter().position(|p| p.ended_by_receiver.as_deref() == Some("stall")).expect("a stalled POST");
    let next = media.get(stalled + 1).expect("a POST after the stall");
    // The sender gave up on the stalled connection by its send timeout (1.5 x 2 s), counted
    // from when its bytes stopped moving: the next fragment comes within 2 s of the stall,
    // fills the small socket buffer at once, and 3 s later the connection is abandoned.
    let reasons: Vec<String> =
        r.messages_named("fmp4ingestsink-disconnected").iter().map(|m| m.get::<String>("reason").unwrap()).collect();
    assert_eq!(reasons, ["send-timeout"]);
    let waited = next.started - media[stalled].fault_at.unwrap();
    assert!(waited < Duration::from_millis(6500) + hidden, "reconnected {waited:?} after the stall began");
    // The new POST starts at or before the first fragment the receiver did not read, on
    // every track: whatever the stalled connection sent after that (in flight, in socket
    // buffers, read by no one) is in the new POST, not merely somewhere in the timeline.
    for t in view.track_ids() {
        let last_read = media[stalled].fragments.iter().filter(|f| f.track_id == t).filter_map(|f| f.time()).max();
        let first_unread = view.timeline(t).into_iter().map(|(time, _)| time).find(|time| Some(*time) > last_read);
        let first_again = next.fragments.iter().find(|f| f.track_id == t).and_then(|f| f.time());
        assert!(
            first_again.is_some() && first_again <= first_unread,
            "track {t}: resent from {first_again:?}, read up to {last_read:?}, first unread {first_unread:?}"
        );
    }
    r
}

/// Resent fragments per track, from the `resent` message of the one reconnect.
fn resent_per_track(r: &RunResult) -> std::collections::BTreeMap<u32, usize> {
    let resent = r.messages_named("fmp4ingestsink-resent");
    assert_eq!(resent.len(), 1, "{resent:?}");
    let ids = resent[0].get::<gst::Array>("track-ids").unwrap();
    let mut per_track = std::collections::BTreeMap::new();
    for id in ids.iter() {
        *per_track.entry(id.get::<u32>().unwrap()).or_insert(0) += 1;
    }
    per_track
}

#[test]
fn a_stalled_receiver_is_abandoned_within_the_send_timeout_and_nothing_is_lost() {
    stall(false, "stall");
}

#[test]
fn a_stalled_receiver_that_loses_its_socket_buffers_still_gets_a_gapless_timeline() {
    let r = stall(true, "stall-lost");
    // At least the last two fully written fragments of each track go again (and everything
    // the receiver never read: see stall_with).
    let per_track = resent_per_track(&r);
    assert!(per_track.values().all(|n| *n >= 2), "{per_track:?}");
}

#[test]
fn data_the_receivers_kernel_acknowledged_but_never_read_is_resent() {
    // A 1 MiB receive buffer: once the receiver stops reading, its kernel still takes (and
    // acknowledges) several fragments, which the reset then throws away. The window the
    // receiver advertises shows most of what it never read, and a share of its largest window
    // stands for the rest; the sink resends them, so the timeline has no gap (gapless is
    // checked in stall_with). Its window keeps growing for a while after
    // the receiver stops (one or two fragments here), and only then shows the stall: the send
    // timeout counts from there.
    let r = stall_with(true, "acked-unread", 1 << 20, Duration::from_secs(4));
    let per_track = resent_per_track(&r);
    assert!(per_track.values().all(|n| *n >= 2), "{per_track:?}");
}

#[test]
fn probes_refused_with_500_503_429_are_retried_with_backoff_and_reported() {
    // What a retry may mend (a refusal for good, 403 or 404, is an error: errors.rs).
    let rx = Receiver::start().unwrap();
    for status in [500, 503, 429] {
        rx.inject(Fault::new(FaultKind::ProbeStatus(status), Duration::from_secs(300)).once());
    }
    let r = run_pipeline(&pipeline(&rx.url("live", "refused"), 12, ""), Duration::from_secs(90));
    ok(&r);
    let view = rx.stream("refused");
    gapless(&view, 5);
    assert_eq!(
        view.probes().iter().map(|p| p.status).collect::<Vec<_>>()[..4],
        [Some(500), Some(503), Some(429), Some(200)]
    );
    let down = r.messages_named("fmp4ingestsink-disconnected");
    let seen: Vec<(String, u32)> =
        down.iter().map(|m| (m.get::<String>("reason").unwrap(), u32_field(m, "status"))).collect();
    assert_eq!(
        seen,
        [("probe-refused".to_string(), 500), ("probe-refused".to_string(), 503), ("probe-refused".to_string(), 429)]
    );
    let retries: Vec<(u32, u64)> = r
        .messages_named("fmp4ingestsink-reconnecting")
        .iter()
        .map(|m| (u32_field(m, "attempt"), m.get::<u64>("delay").unwrap()))
        .collect();
    assert_eq!(retries.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(retries[0].1, 0);
    assert!((375_000_000..=625_000_000).contains(&retries[1].1), "{retries:?}");
    assert!((750_000_000..=1_250_000_000).contains(&retries[2].1), "{retries:?}");
}

#[test]
fn a_server_that_never_returns_gives_a_clear_error_at_the_retry_limit() {
    // Bound but not listening: every connection is refused.
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("http://127.0.0.1:{}/live.isml/Streams(gone)", held.local_addr().unwrap().port());
    let start = Instant::now();
    let r = run_pipeline(&pipeline(&url, 30, "max-retries=3 retry-delay=100000000"), Duration::from_secs(60));
    assert!(!r.eos);
    let error = r.errors.join("\n");
    assert!(error.contains("Could not connect to the ingest server") && error.contains("gave up after"), "{error}");
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
    assert_eq!(r.messages_named("fmp4ingestsink-reconnecting").len(), 3);
    drop(held);
}

#[test]
fn a_retry_time_limit_also_ends_in_a_clear_error() {
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("http://127.0.0.1:{}/live.isml/Streams(gone)", held.local_addr().unwrap().port());
    let r = run_pipeline(&pipeline(&url, 30, "retry-timeout=3000000000"), Duration::from_secs(60));
    assert!(!r.eos);
    assert!(r.errors.join("\n").contains("gave up after"), "{:?}", r.errors);
    assert!(r.elapsed < Duration::from_secs(8), "took {:?}", r.elapsed);
    drop(held);
}

#[test]
fn eos_during_an_outage_is_delivered_when_the_server_returns() {
    let rx = Receiver::start().unwrap();
    let run = spawn_pipeline(&pipeline(&rx.url("live", "eos"), 12, ""), Duration::from_secs(120));
    assert!(rx.wait_until(Duration::from_secs(30), |p| p.iter().map(|p| p.fragments.len()).sum::<usize>() >= 4));
    // Down across the end of the stream; back 15 s later, within the default eos-timeout.
    rx.restart(Duration::from_secs(15));
    let r = run.join().unwrap();
    ok(&r);
    let view = rx.stream("eos");
    gapless(&view, 6);
    let last = view.media_posts().last().cloned().unwrap();
    assert!(last.complete && last.status == Some(200), "the last POST ended gracefully");
    assert!(r.elapsed >= Duration::from_secs(15));
}

#[test]
fn eos_during_an_outage_says_what_it_could_not_deliver_at_the_eos_timeout() {
    let rx = Receiver::start().unwrap();
    let run =
        spawn_pipeline(&pipeline(&rx.url("live", "eos-lost"), 12, "eos-timeout=2000000000"), Duration::from_secs(90));
    assert!(rx.wait_until(Duration::from_secs(30), |p| p.iter().map(|p| p.fragments.len()).sum::<usize>() >= 4));
    rx.restart(Duration::from_secs(120));
    let r = run.join().unwrap();
    assert!(r.eos && r.errors.is_empty(), "EOS still goes through: {:?}", r.errors);
    assert!(r.warnings.iter().any(|w| w.contains("could not be delivered")), "{:?}", r.warnings);
    let lost = r.messages_named("fmp4ingestsink-dropped");
    assert_eq!(lost.len(), 1);
    assert!(u32_field(lost[0], "count") >= 2);
    assert!(r.elapsed < Duration::from_secs(30), "took {:?}", r.elapsed);
}

#[test]
fn an_error_answer_mid_stream_and_a_plain_close_are_retried_without_loss() {
    let rx = Receiver::start().unwrap();
    rx.inject(Fault::new(FaultKind::Abort { min: 3, max: 3, reset: false }, Duration::from_secs(300)).once());
    let run = spawn_pipeline(&pipeline(&rx.url("live", "errors"), 24, ""), Duration::from_secs(120));
    let fired = |how: &'static str| {
        move |p: &[fmp4ingest_receiver::PostRecord]| p.iter().any(|p| p.ended_by_receiver.as_deref() == Some(how))
    };
    assert!(rx.wait_until(Duration::from_secs(30), fired("abort-fin")));
    rx.inject(Fault::new(FaultKind::ErrorStatus { fragments: 3, status: 503 }, Duration::from_secs(300)).once());
    assert!(rx.wait_until(Duration::from_secs(30), fired("error-status")));
    let r = run.join().unwrap();
    ok(&r);
    gapless(&rx.stream("errors"), 11);
    let reasons: Vec<(String, u32)> = r
        .messages_named("fmp4ingestsink-disconnected")
        .iter()
        .map(|m| (m.get::<String>("reason").unwrap(), u32_field(m, "status")))
        .collect();
    assert_eq!(reasons, [("transport".to_string(), 0), ("server-abort".to_string(), 503)]);
}

#[test]
fn a_reader_slower_than_the_stream_fills_the_forward_buffer_and_the_oldest_are_dropped() {
    let rx = Receiver::start().unwrap();
    // The stream is about 90 kB/s; the receiver takes 30 kB/s.
    rx.inject(Fault::new(FaultKind::SlowRead { bytes_per_second: 30_000 }, Duration::from_secs(300)));
    let props = "forward-buffer-duration=6000000000 send-buffer-size=65536 eos-timeout=1000000000";
    let r = run_pipeline(&pipeline(&rx.url("live", "slow"), 30, props), Duration::from_secs(120));
    assert!(r.eos && r.errors.is_empty(), "{:?}", r.errors);
    // The pipeline never waited for the network.
    assert!(r.max_buffer_gap < Duration::from_millis(3500), "the sink blocked for {:?}", r.max_buffer_gap);
    assert!(r.warnings.iter().any(|w| w.contains("forward buffer is full")), "{:?}", r.warnings);
    let dropped: u32 = r.messages_named("fmp4ingestsink-dropped").iter().map(|m| u32_field(m, "count")).sum();
    // How many depends on how often the sink gives up on the slow connection (on loopback the
    // reader's window reopens only once 64 KiB are free, 2 s at this rate) and resends: the
    // fragments it resends are kept, never dropped.
    assert!(dropped >= 3, "{dropped}");
    let stats = r.final_stats.unwrap();
    assert!(stats.get::<u64>("fragments-dropped").unwrap() >= 2, "{stats}");
    // What waits never exceeded the bound: at most 6 s of media, plus what was in flight.
    assert!(stats.get::<u64>("queue-duration").unwrap() <= 6_000_000_000, "{stats}");
    // Each drop is a hole in its own track's timeline (which track loses the oldest fragment
    // depends on which one was in flight at the time), and a track with a hole is not healthy.
    let tracks = stats.get::<gst::Array>("tracks").unwrap();
    let mut holes = 0;
    for t in tracks.iter() {
        let t = t.get::<gst::Structure>().unwrap();
        let n = t.get::<u64>("discontinuityCount").unwrap();
        holes += n;
        assert!(n == 0 || !t.get::<bool>("healthy").unwrap(), "{t}");
    }
    assert!(holes >= stats.get::<u64>("fragments-dropped").unwrap(), "{stats}");
    // What arrived is well-formed; the drops themselves lie beyond what the slow reader got to.
    let view = rx.stream("slow");
    assert!(!view.fragments().is_empty());
    let violations = view.violations();
    assert!(violations.iter().all(|v| v.contains("body: ")), "{violations:#?}");
}

#[test]
fn a_non_live_source_waits_for_room_instead_of_dropping() {
    let rx = Receiver::start().unwrap();
    rx.inject(Fault::new(FaultKind::SlowRead { bytes_per_second: 200_000 }, Duration::from_secs(300)));
    // 20 s of media produced as fast as the encoder goes, into a 4 s forward buffer.
    let d = format!(
        "isofmp4mux name=mux fragment-duration=2000000000 ! fmp4ingestsink name=sink location=\"{}\" \
         forward-buffer-duration=4000000000 \
         videotestsrc num-buffers=600 ! video/x-raw,width=320,height=240,framerate=30/1 ! \
         x264enc key-int-max=60 speed-preset=ultrafast bitrate=600 ! h264parse ! queue ! mux. \
         audiotestsrc num-buffers=938 samplesperbuffer=1024 ! audio/x-raw,rate=48000,channels=2 ! \
         avenc_aac ! aacparse ! queue ! mux.",
        rx.url("live", "file")
    );
    let r = run_pipeline(&d, Duration::from_secs(120));
    ok(&r);
    assert!(r.messages_named("fmp4ingestsink-dropped").is_empty());
    let view = rx.stream("file");
    gapless(&view, 9);
    let stats = r.final_stats.unwrap();
    assert_eq!(stats.get::<u64>("fragments-dropped").unwrap(), 0, "{stats}");
}

#[test]
fn a_dead_server_stalls_neither_its_pipeline_nor_another_sink_in_the_process() {
    let rx = Receiver::start().unwrap();
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let dead = format!("http://127.0.0.1:{}/live.isml/Streams(dead)", held.local_addr().unwrap().port());
    let to_dead = spawn_pipeline(&pipeline(&dead, 16, "eos-timeout=1000000000"), Duration::from_secs(90));
    let to_live = spawn_pipeline(&pipeline(&rx.url("live", "alive"), 16, ""), Duration::from_secs(90));
    let (dead_run, live_run) = (to_dead.join().unwrap(), to_live.join().unwrap());
    ok(&live_run);
    gapless(&rx.stream("alive"), 7);
    // Neither pipeline ever waited on the network.
    for r in [&dead_run, &live_run] {
        assert!(r.max_buffer_gap < Duration::from_millis(3500), "blocked for {:?}", r.max_buffer_gap);
    }
    assert!(dead_run.eos, "the dead server's pipeline ends too: {:?}", dead_run.errors);
    assert!(dead_run.messages_named("fmp4ingestsink-reconnecting").len() >= 5);
    drop(held);
}

#[test]
fn a_receiver_that_cuts_every_post_right_after_the_resend_still_gets_every_fragment() {
    // Every POST is reset once 4 complete fragments arrived on it (with A/V: exactly the resend
    // of the last two per track) and it has been quiet for 200 ms. Default properties.
    let rx = Receiver::start().unwrap();
    let cut = FaultKind::CutWhenQuiet { fragments: 4, quiet: Duration::from_millis(200) };
    rx.inject(Fault::new(cut, Duration::from_secs(300)));
    let r = run_pipeline(&pipeline(&rx.url("live", "cut"), 40, ""), Duration::from_secs(120));
    ok(&r);
    // Everything before the pipeline ended: no wait for the eos-timeout, nothing given up.
    assert!(r.elapsed < Duration::from_secs(50), "ended after {:?}: {:?}", r.elapsed, r.warnings);
    assert!(r.messages_named("fmp4ingestsink-dropped").is_empty(), "{:?}", r.warnings);
    let view = rx.stream("cut");
    // Every fragment arrived before the pipeline ended: 20 per track, no gap.
    gapless(&view, 20);
    let media = view.media_posts();
    assert!(media.len() >= 10, "{} POSTs", media.len());
    // Every reconnect resent the last two fragments of each track, however many came before.
    let resent = r.messages_named("fmp4ingestsink-resent");
    assert!(resent.len() >= media.len() - 2, "{} resends for {} POSTs", resent.len(), media.len());
    for (k, m) in resent.iter().enumerate() {
        let ids = u32_array(m, "track-ids");
        for t in [1, 2] {
            assert!(ids.iter().filter(|i| **i == t).count() >= 2, "resend {k}: {ids:?}");
        }
    }
    // The stream never starved: each fragment first arrived within a fragment or so of the one
    // before it on its track (a new fragment follows the resend at once, unpaced).
    for t in view.track_ids() {
        let mut first: std::collections::BTreeMap<u64, Instant> = std::collections::BTreeMap::new();
        for f in view.fragments().into_iter().filter(|f| f.track_id == t) {
            let at = f.arrived.unwrap();
            first.entry(f.time().unwrap()).and_modify(|a| *a = (*a).min(at)).or_insert(at);
        }
        let arrivals: Vec<Instant> = first.into_values().collect();
        let worst = arrivals.windows(2).map(|w| w[1].saturating_duration_since(w[0])).max().unwrap();
        assert!(worst < Duration::from_millis(4500), "track {t}: {worst:?} between two fragments");
    }
    assert_eq!(r.final_stats.unwrap().get::<u64>("fragments-dropped").unwrap(), 0);
}

#[test]
fn an_abandoned_connection_is_reset_and_nothing_of_it_arrives_after_the_new_post() {
    // The receiver stops reading after 3 fragments for 7 s, then reads on. The sender abandons
    // the connection by its send timeout (3 s); nothing of it may reach the server after that:
    // with a graceful close its kernel would go on sending what it still held.
    let rx = Receiver::start_with(Behaviour { recv_buffer: Some(64 * 1024), ..Behaviour::default() }, "127.0.0.1:0")
        .unwrap();
    let stall =
        FaultKind::Stall { fragments: 3, duration: Duration::from_secs(7), until_new_post: false, discard: false };
    rx.inject(Fault::new(stall, Duration::from_secs(300)).once());
    let r = run_pipeline(&pipeline(&rx.url("live", "stale"), 24, ""), Duration::from_secs(120));
    ok(&r);
    let view = rx.stream("stale");
    gapless(&view, 11);
    let media = view.media_posts();
    let stalled = media.iter().position(|p| p.ended_by_receiver.as_deref() == Some("stall")).expect("a stalled POST");
    let old = media[stalled];
    let next = media.get(stalled + 1).expect("a POST after the stall");
    let resumed_at = old.fault_at.unwrap() + Duration::from_secs(7);
    assert!(next.first_byte_at.unwrap() < resumed_at, "the new POST came before the stall ended");
    let held = old.held_at_resume.expect("the receiver read on after the stall");
    assert!(
        old.read_after_resume <= held,
        "{} bytes of the abandoned POST arrived after the new POST's first byte ({} were held before)",
        old.read_after_resume - held,
        held
    );
}

/// A fixed pseudo-random sequence (xorshift), so that a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next_in(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + self.0 % (hi - lo + 1)
    }
}

#[test]
fn a_fault_storm_of_three_minutes_loses_nothing_and_breaks_no_rule() {
    // Every 6-14 s the current POST is reset (a server restart, down for 0 or 2 s), and the
    // next one meets a fault: a reset, a close, 500, 503, a stall that ends, a stall abandoned
    // for good, a slow reader. Default properties.
    let rx = Receiver::start_with(Behaviour { recv_buffer: Some(256 * 1024), ..Behaviour::default() }, "127.0.0.1:0")
        .unwrap();
    let seconds = 180;
    let run = spawn_pipeline(&pipeline(&rx.url("live", "storm3"), seconds, ""), Duration::from_secs(300));
    let faults = [
        FaultKind::Abort { min: 1, max: 3, reset: true },
        FaultKind::Abort { min: 1, max: 3, reset: false },
        FaultKind::ErrorStatus { fragments: 2, status: 500 },
        FaultKind::ErrorStatus { fragments: 1, status: 503 },
        FaultKind::Stall { fragments: 2, duration: Duration::from_secs(4), until_new_post: false, discard: false },
        FaultKind::Stall { fragments: 2, duration: Duration::from_secs(60), until_new_post: true, discard: true },
        FaultKind::SlowRead { bytes_per_second: 120_000 },
    ];
    let mut rng = Lcg(0x5eed_f00d_1234_5678);
    let start = Instant::now();
    let mut k = 0;
    while start.elapsed() < Duration::from_secs(u64::from(seconds) - 14) {
        std::thread::sleep(Duration::from_secs(rng.next_in(6, 14)));
        rx.inject(Fault::new(faults[k % faults.len()].clone(), Duration::from_secs(30)).for_stream("storm3").once());
        rx.restart(if k % 4 == 3 { Duration::from_secs(2) } else { Duration::ZERO });
        k += 1;
    }
    let r = run.join().unwrap();
    ok(&r);
    assert!(k >= 12, "{k} faults");
    let view = rx.stream("storm3");
    // Every 2 s fragment of both tracks, no gap, no overlap; no rule broken (the receiver's own
    // cuts leave their POST's body unfinished, nothing else).
    gapless(&view, seconds as usize / 2);
    for t in view.track_ids() {
        let timeline = view.timeline(t);
        assert!(timeline.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0), "track {t}: not contiguous");
    }
    assert!(r.warnings.iter().all(|w| !w.contains("dropped")), "{:?}", r.warnings);
    assert_eq!(r.final_stats.unwrap().get::<u64>("fragments-dropped").unwrap(), 0);
    let media = view.media_posts();
    eprintln!("fault storm: {k} faults, {} POSTs, {} probes", media.len(), view.probes().len());
}
