// SPDX-License-Identifier: MPL-2.0
//! Redundant encoders and restarts in CMAF ingest (docs/protocol.md §6.4; DASH-IF Live Media
//! Ingest "Requirements for Ingest Source Synchronization", "Requirements for Failovers"):
//! `timestamp-mode=utc` puts every segment on the epoch's grid, so that two encoders write the
//! same header and the same segments (tfdt, duration, sequence number — and, given the same
//! input, the same bytes), and a restarted one continues the numbering.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::cmaf::problems;
use common::{RunResult, realtime_pipeline, run};
use fmp4ingest_receiver::Receiver;
use fmp4ingest_receiver::cmaf::CmafTrack;

/// What the README's redundant pair sets: UTC, declared bitrates (a measured one differs).
const PAIR: &str = "protocol=cmaf timestamp-mode=utc video-bitrate=600000 audio-bitrate=128000";

fn ok(r: &RunResult) {
    assert!(r.eos && r.errors.is_empty(), "{:?} {:?}", r.errors, r.warnings);
}

/// `seconds` of live A/V through isofmp4mux into the sink at publishing point `pp`.
fn encoder(rx: &Receiver, pp: &str, seconds: u32) -> String {
    format!(
        "isofmp4mux name=mux fragment-duration=2000000000 send-force-keyunit=false ! fmp4ingestsink name=sink \
         location=\"{}\" {PAIR} {} ! queue ! mux. {} ! queue ! mux.",
        rx.publishing_point(pp),
        common::video_source(seconds, 600),
        common::audio_source(seconds)
    )
}

/// The tracks of publishing point `pp`, by name.
fn tracks(rx: &Receiver, pp: &str) -> BTreeMap<String, CmafTrack> {
    let prefix = format!("/{pp}.isml/");
    rx.cmaf_tracks().into_iter().filter(|t| t.path.starts_with(&prefix)).map(|t| (t.name.clone(), t)).collect()
}

/// Every segment of a track is on the grid: tfdt = index x 2 s, sequence = index + 1, and 2 s
/// long (but the last of a run, which the end of the stream cuts).
fn on_the_grid(t: &CmafTrack) {
    let ts = u64::from(t.header_info.as_ref().unwrap().track.timescale);
    let segs = t.unique_segments();
    for (i, s) in segs.iter().enumerate() {
        assert_eq!(s.segment.tfdt % (2 * ts), 0, "{}: {:?}", t.name, s.segment.tfdt);
        assert_eq!(u64::from(s.segment.sequence), s.segment.tfdt / (2 * ts) + 1, "{}", t.name);
        let end = s.segment.tfdt + s.segment.duration;
        if segs.get(i + 1).is_some_and(|n| n.segment.tfdt == end) {
            assert_eq!(s.segment.duration, 2 * ts, "{}: segment {}", t.name, s.segment.sequence);
        }
    }
}

#[test]
fn a_redundant_pair_given_the_same_input_writes_identical_headers_and_segments() {
    let rx = Receiver::start().unwrap();
    // One input, two encoders' sinks: each must make the same bytes of it.
    let d = format!(
        "isofmp4mux name=mux fragment-duration=2000000000 send-force-keyunit=false ! tee name=t \
         t. ! queue ! fmp4ingestsink name=sink location=\"{}\" {PAIR} \
         t. ! queue ! fmp4ingestsink name=b location=\"{}\" {PAIR} \
         {} ! queue ! mux. {} ! queue ! mux.",
        rx.publishing_point("primary"),
        rx.publishing_point("backup"),
        common::video_source(12, 600),
        common::audio_source(12)
    );
    let r = run(&realtime_pipeline(&d), Duration::from_secs(60));
    ok(&r);
    let (a, b) = (tracks(&rx, "primary"), tracks(&rx, "backup"));
    assert_eq!(a.keys().collect::<Vec<_>>(), ["audio.cmfa", "video.cmfv"]);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, ta) in &a {
        let tb = &b[name];
        assert!(problems(&rx, ta).is_empty() && problems(&rx, tb).is_empty(), "{:?}", problems(&rx, ta));
        on_the_grid(ta);
        assert_eq!(ta.header, tb.header, "{name}: headers");
        let (sa, sb) = (ta.unique_segments(), tb.unique_segments());
        assert!(sa.len() >= 5, "{name}: {} segments", sa.len());
        assert_eq!(sa.len(), sb.len(), "{name}");
        for (x, y) in sa.iter().zip(&sb) {
            // Byte for byte, prft included (its time is the UTC timeline's).
            assert_eq!(x.bytes, y.bytes, "{name}: segment {}", x.segment.sequence);
            assert_eq!(x.segment.prft.unwrap().flags & 24, 24, "prft from the UTC timeline");
        }
    }
}

#[test]
fn two_encoders_started_apart_write_the_same_header_and_segment_timing() {
    let rx = Receiver::start().unwrap();
    let pa = realtime_pipeline(&encoder(&rx, "a", 14));
    let pb = realtime_pipeline(&encoder(&rx, "b", 14));
    let ta = std::thread::spawn(move || run(&pa, Duration::from_secs(60)));
    std::thread::sleep(Duration::from_millis(3300));
    let rb = run(&pb, Duration::from_secs(60));
    ok(&ta.join().unwrap());
    ok(&rb);
    let (a, b) = (tracks(&rx, "a"), tracks(&rx, "b"));
    for (name, ta) in &a {
        let tb = &b[name];
        assert!(problems(&rx, ta).is_empty() && problems(&rx, tb).is_empty(), "{:?}", problems(&rx, tb));
        on_the_grid(ta);
        on_the_grid(tb);
        assert_eq!(ta.header, tb.header, "{name}: the same header from both");
        // B joined later, at a later boundary; where both have a segment (not the last,
        // which the end of a stream cuts), it is the same one.
        let first = |t: &CmafTrack| t.unique_segments()[0].segment.sequence;
        assert!(first(tb) > first(ta), "{name}");
        let timing = |t: &CmafTrack| -> BTreeMap<u32, (u64, u64)> {
            let segs = t.unique_segments();
            segs[..segs.len() - 1].iter().map(|s| (s.segment.sequence, (s.segment.tfdt, s.segment.duration))).collect()
        };
        let (ma, mb) = (timing(ta), timing(tb));
        let common: Vec<&u32> = mb.keys().filter(|k| ma.contains_key(k)).collect();
        assert!(common.len() >= 3, "{name}: {} in common", common.len());
        for k in common {
            assert_eq!(ma[k], mb[k], "{name}: segment {k}");
        }
    }
}

#[test]
fn a_restarted_encoder_continues_the_numbering_with_the_same_header() {
    let rx = Receiver::start().unwrap();
    ok(&run(&realtime_pipeline(&encoder(&rx, "live", 8)), Duration::from_secs(60)));
    let before = tracks(&rx, "live");
    std::thread::sleep(Duration::from_secs(1));
    ok(&run(&realtime_pipeline(&encoder(&rx, "live", 8)), Duration::from_secs(60)));
    for (name, t) in tracks(&rx, "live") {
        on_the_grid(&t);
        let last_before = before[&name].sequences().last().copied().unwrap();
        let seqs = t.sequences();
        let after: Vec<u32> = seqs.iter().copied().filter(|s| *s > last_before).collect();
        assert!(after.len() >= 3, "{name}: {seqs:?}");
        // Nothing goes back: the second run starts after the first one's last segment.
        assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{name}: {seqs:?}");
        // The same header on both runs' connections.
        assert!(t.header_connections.len() >= 2);
        assert!(!t.violations.iter().any(|v| v.contains("header changed")), "{:?}", t.violations);
        // What a strict receiver notes is the pause between the runs, nothing else.
        let other: Vec<&String> = t
            .violations
            .iter()
            .filter(|v| {
                !(v.contains("after the last one (lmsg)") || v.contains("not +1") || v.contains("not continuous"))
            })
            .collect();
        assert!(other.is_empty(), "{name}: {other:?}");
    }
}
