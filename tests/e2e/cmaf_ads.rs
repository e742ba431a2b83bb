// SPDX-License-Identifier: MPL-2.0
//! Ad signals in CMAF ingest (docs/protocol.md §6.5): the `fmp4ingest-splice`,
//! `fmp4ingest-scte35` and tsdemux events become `emsg` v1 events of the timed metadata track
//! `Streams(<metadata-track>.cmfm)`, whose segments mirror the video's, each event in time for
//! the receiver and the key frame at the splice as `splice-mode` says.

mod common;

use std::time::Duration;

use common::cmaf::problems;
use common::{RunResult, mpegts, realtime_pipeline, run_with};
use fmp4ingest_core::scte35::{self, SpliceCommand, SpliceInsert};
use fmp4ingest_receiver::Receiver;
use fmp4ingest_receiver::cmaf::CmafTrack;
use fmp4ingest_receiver::cmaf_mp4::Emsg;
use gst::prelude::*;

const SEC: u64 = 1_000_000_000;

fn ok(r: &RunResult) {
    assert!(r.eos && r.errors.is_empty(), "{:?} {:?}", r.errors, r.warnings);
}

fn ticks(ns: u64, timescale: u32) -> u64 {
    (u128::from(ns) * u128::from(timescale) / u128::from(SEC)) as u64
}

/// Live A/V through isofmp4mux (no key frames of its own) into the sink in UTC mode with a
/// metadata track `scte35`.
fn description(url: &str, seconds: u32, props: &str) -> String {
    format!(
        "isofmp4mux name=mux fragment-duration=2000000000 send-force-keyunit=false ! fmp4ingestsink name=sink \
         protocol=cmaf location=\"{url}\" timestamp-mode=utc metadata-track=scte35 {props} {} ! queue ! mux. {} ! \
         queue ! mux.",
        common::video_source(seconds, 600),
        common::audio_source(seconds)
    )
}

fn track(rx: &Receiver, name: &str) -> CmafTrack {
    rx.cmaf_track(name).unwrap_or_else(|| panic!("no track {name}"))
}

/// Every event of the metadata track with its first carrying segment's (sequence, arrival).
fn events(t: &CmafTrack) -> Vec<(Emsg, u32, std::time::Instant)> {
    let mut out: Vec<(Emsg, u32, std::time::Instant)> = Vec::new();
    for s in t.unique_segments() {
        for e in &s.segment.events {
            if !out.iter().any(|(x, _, _)| x.id == e.id) {
                out.push((e.clone(), s.segment.sequence, s.arrived));
            }
        }
    }
    out
}

/// The video segment holding `at` (ticks).
fn holding(t: &CmafTrack, at: u64) -> fmp4ingest_receiver::cmaf::SegmentRecord {
    t.unique_segments()
        .into_iter()
        .find(|s| s.segment.tfdt <= at && at < s.segment.tfdt + s.segment.duration)
        .expect("a segment holds the splice")
        .clone()
}

/// The metadata track is a conformant CMAF track whose segments mirror the video's.
fn mirrors_the_video(rx: &Receiver) -> (CmafTrack, CmafTrack) {
    let (meta, video) = (track(rx, "scte35.cmfm"), track(rx, "video.cmfv"));
    for t in rx.cmaf_tracks() {
        assert!(problems(rx, &t).is_empty(), "{:#?}", problems(rx, &t));
    }
    let info = meta.header_info.as_ref().unwrap();
    assert_eq!(info.track.handler, "meta");
    assert_eq!(info.uri.as_deref(), Some("urn:mpeg:dash:event:2012"));
    assert_eq!(info.track.timescale, video.header_info.as_ref().unwrap().track.timescale);
    assert_eq!(meta.sequences(), video.sequences());
    assert_eq!(meta.timeline(), video.timeline());
    (meta, video)
}

#[test]
fn splice_events_become_emsg_events_of_the_metadata_track_in_time() {
    let rx = Receiver::start().unwrap();
    let p = realtime_pipeline(&description(&rx.publishing_point("live"), 20, ""));
    let at = std::sync::Arc::new(std::sync::Mutex::new(0u64));
    let shared = at.clone();
    let r = run_with(&p, Duration::from_secs(60), move |p, base| {
        std::thread::sleep(Duration::from_millis(500));
        // 1.3 s after a boundary of the UTC grid, about 10 s in; a section 2 s later.
        let utc = (base + 8 * SEC).div_ceil(2 * SEC) * 2 * SEC + 1_300_000_000;
        *shared.lock().unwrap() = utc;
        let pad = p.by_name("sink").unwrap().static_pad("sink").unwrap();
        let e = gst::Structure::builder("fmp4ingest-splice")
            .field("running-time", utc - base)
            .field("id", 5u32)
            .field("duration", 30 * SEC)
            .build();
        assert!(pad.send_event(gst::event::CustomDownstream::new(e)));
        let section = scte35::build_splice_insert(&SpliceInsert::program(7, true, None, None));
        let e = gst::Structure::builder("fmp4ingest-scte35")
            .field("section", gst::Buffer::from_slice(section))
            .field("running-time", utc + 2 * SEC - base)
            .build();
        assert!(p.by_name("sink").unwrap().send_event(gst::event::CustomDownstream::new(e)));
    });
    ok(&r);
    assert_eq!(r.messages_named("fmp4ingestsink-signal-accepted").len(), 2, "{:?}", r.messages);
    let utc = *at.lock().unwrap();
    let (meta, video) = mirrors_the_video(&rx);
    let ts = video.header_info.as_ref().unwrap().track.timescale;
    let evs = events(&meta);
    assert_eq!(evs.iter().map(|(e, _, _)| e.id).collect::<Vec<_>>(), [5, 7]);
    for (e, _, _) in &evs {
        assert_eq!((e.version, e.scheme.as_str(), e.timescale), (1, "urn:scte:scte35:2013:bin", ts));
    }
    // The splice is the event's presentation time, on the tracks' common timeline.
    let (five, seq, arrived) = &evs[0];
    assert_eq!(five.presentation_time, ticks(utc, ts));
    assert_eq!(u64::from(five.duration), ticks(utc + 30 * SEC, ts) - ticks(utc, ts));
    let info = scte35::parse_section(&five.message).expect("a whole section");
    let SpliceCommand::Insert(i) = info.command else { panic!("{info:?}") };
    assert!(i.out_of_network && i.event_id == 5);
    assert_eq!(i.pts_time, Some((u128::from(ticks(utc, ts)) * 90_000 / u128::from(ts)) as u64 & scte35::PTS_MASK));
    assert_eq!(evs[1].0.presentation_time, ticks(utc + 2 * SEC, ts));
    // The receiver had it at least 4 s before the video segment of the splice started coming.
    let media = holding(&video, ticks(utc, ts));
    let media_started = rx.cmaf_requests()[media.request].started;
    assert!(*seq < media.segment.sequence);
    assert!(media_started.duration_since(*arrived) >= Duration::from_secs(4), "{:?}", media_started - *arrived);
    // splice-mode=keyframe: a key frame at the splice, inside its segment.
    let frame = u64::from(ts) / 30;
    let offset = ticks(utc, ts) - media.segment.tfdt;
    assert!(offset > frame);
    assert!(media.segment.sync_offsets.iter().any(|o| o.abs_diff(offset) <= frame), "{:?}", media.segment.sync_offsets);
    // The event stays active in the samples after its splice for its duration: the segments
    // after it carry it again (to the end of this short stream).
    assert!(meta.unique_segments().last().unwrap().segment.events.iter().any(|e| e.id == 5));
}

#[test]
fn segment_mode_starts_a_segment_with_a_key_frame_at_the_splice_on_every_track() {
    let rx = Receiver::start().unwrap();
    let p = realtime_pipeline(&description(&rx.publishing_point("live"), 16, "splice-mode=segment"));
    let at = std::sync::Arc::new(std::sync::Mutex::new(0u64));
    let shared = at.clone();
    let r = run_with(&p, Duration::from_secs(60), move |p, base| {
        std::thread::sleep(Duration::from_millis(500));
        let utc = (base + 7 * SEC).div_ceil(2 * SEC) * 2 * SEC + 900_000_000;
        *shared.lock().unwrap() = utc;
        let e =
            gst::Structure::builder("fmp4ingest-splice").field("running-time", utc - base).field("id", 9u32).build();
        assert!(p.by_name("sink").unwrap().send_event(gst::event::CustomDownstream::new(e)));
    });
    ok(&r);
    let utc = *at.lock().unwrap();
    let (meta, video) = mirrors_the_video(&rx);
    let ts = video.header_info.as_ref().unwrap().track.timescale;
    let s = video
        .unique_segments()
        .into_iter()
        .find(|s| s.segment.tfdt == ticks(utc, ts))
        .expect("a segment at the splice");
    assert!(s.segment.first_sample_sync);
    assert!(meta.timeline().iter().any(|(t, _)| *t == ticks(utc, ts)));
    let a = track(&rx, "audio.cmfa");
    let ats = a.header_info.as_ref().unwrap().track.timescale;
    // The audio segment there starts at the first frame at or after the splice.
    assert!(a.timeline().iter().any(|(t, _)| t.abs_diff(ticks(utc, ats)) < 1024), "{:?}", a.timeline());
    assert_eq!(events(&meta).len(), 1);
}

#[test]
fn scte35_from_an_mpeg_ts_input_reaches_the_metadata_track() {
    let rx = Receiver::start().unwrap();
    let d = format!(
        "videotestsrc is-live=true num-buffers=420 ! video/x-raw,width=320,height=240,framerate=30/1 ! \
         x264enc key-int-max=600 speed-preset=ultrafast bitrate=600 ! h264parse ! \
         mpegtsmux name=ts scte-35-pid=500 ! tsdemux name=demux send-scte35-events=true ! h264parse ! queue ! \
         isofmp4mux fragment-duration=2000000000 ! fmp4ingestsink name=sink protocol=cmaf location=\"{}\" \
         metadata-track=ads splice-mode=none",
        rx.publishing_point("live")
    );
    let (r, rt) = mpegts::run_with_a_splice(&d);
    ok(&r);
    assert!(r.messages_named("fmp4ingestsink-signal-refused").is_empty(), "{:?}", r.messages);
    let rt = rt.expect("tsdemux sent the section");
    let meta = track(&rx, "ads.cmfm");
    assert!(problems(&rx, &meta).is_empty(), "{:?}", problems(&rx, &meta));
    let ts = meta.header_info.as_ref().unwrap().track.timescale;
    let evs = events(&meta);
    assert_eq!(evs.len(), 1, "{evs:?}");
    let e = &evs[0].0;
    // Pipeline mode: the timeline is the running time.
    assert_eq!((e.id, e.presentation_time), (7, ticks(rt, ts)));
    let info = scte35::parse_section(&e.message).expect("a valid section, as mpegtsmux wrote it");
    let SpliceCommand::Insert(i) = info.command else { panic!("{info:?}") };
    assert!(i.out_of_network && i.event_id == 7);
}

#[test]
fn without_a_metadata_track_ad_events_get_a_warning() {
    let rx = Receiver::start().unwrap();
    let d = description(&rx.publishing_point("live"), 4, "").replace("metadata-track=scte35", "");
    let p = realtime_pipeline(&d);
    let r = run_with(&p, Duration::from_secs(60), |p, _| {
        let e = gst::Structure::builder("fmp4ingest-splice").field("running-time", 20 * SEC).field("id", 1u32).build();
        assert!(!p.by_name("sink").unwrap().send_event(gst::event::CustomDownstream::new(e)));
    });
    ok(&r);
    assert!(
        r.warnings.iter().any(|w| w.contains("Ad signal ignored") && w.contains("metadata-track")),
        "{:?}",
        r.warnings
    );
    assert!(rx.cmaf_tracks().iter().all(|t| t.extension() != "cmfm"));
}
