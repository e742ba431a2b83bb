// SPDX-License-Identifier: MPL-2.0
//! The checks of a conformant CMAF ingest track (docs/protocol.md §6) on what the receiver
//! recorded, and decoding a recorded track through qtdemux.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fmp4ingest_receiver::Receiver;
use fmp4ingest_receiver::cmaf::{CmafRequestKind, CmafTrack};
use gst::prelude::*;

use super::{audio_source, init, video_source};

/// `seconds` of live video (and audio) through `muxer` (its properties included, named `mux`)
/// into a sink named `sink` in CMAF mode with extra properties.
pub fn pipeline(muxer: &str, pp: &str, props: &str, seconds: u32, audio: bool) -> String {
    let mut d = format!(
        "{muxer} name=mux ! fmp4ingestsink name=sink protocol=cmaf location=\"{pp}\" {props} {} ! queue ! mux.",
        video_source(seconds, 60)
    );
    if audio {
        d.push_str(&format!(" {} ! queue ! mux.", audio_source(seconds)));
    }
    d
}

/// What is wrong with a track as the receiver got it: the receiver's own checks (brands,
/// prft in every media segment, one segment per request, mfhd +1, contiguous tfdt, the same
/// header every time, the header on each connection before its segments), no gap, `lmsg` at
/// the end, and per connection: the empty probe, then the header, then segments, with
/// User-Agent, DASH-IF-Ingest and the Content-Type of the track's kind.
pub fn problems(rx: &Receiver, t: &CmafTrack) -> Vec<String> {
    let mut p: Vec<String> = t.violations.clone();
    if !t.gaps().is_empty() {
        p.push(format!("{}: gaps {:?}", t.name, t.gaps()));
    }
    if !t.ended() {
        p.push(format!("{}: the last segment has no lmsg", t.name));
    }
    let content_type = match t.extension() {
        "cmfv" => "video/mp4",
        "cmfa" => "audio/mp4",
        _ => "application/mp4",
    };
    let requests: Vec<_> = rx.cmaf_requests().into_iter().filter(|r| r.track == t.path).collect();
    let mut connections: Vec<u64> = requests.iter().map(|r| r.connection).collect();
    connections.dedup();
    for c in connections {
        let on: Vec<_> = requests.iter().filter(|r| r.connection == c).collect();
        let kinds: Vec<_> = on.iter().map(|r| r.kind).collect();
        if kinds.first() != Some(&Some(CmafRequestKind::Probe)) {
            p.push(format!("{}: connection {c} does not start with the probe: {kinds:?}", t.name));
        }
        if on.len() > 1 && kinds.get(1) != Some(&Some(CmafRequestKind::Header)) {
            p.push(format!("{}: connection {c}: the header does not follow the probe: {kinds:?}", t.name));
        }
        for r in &on {
            if !r.header("user-agent").is_some_and(|ua| ua.starts_with("fmp4ingestsink/")) {
                p.push(format!("{}: request {} without our User-Agent", t.name, r.index));
            }
            if r.header("dash-if-ingest") != Some("1.1") {
                p.push(format!("{}: request {} without DASH-IF-Ingest: 1.1", t.name, r.index));
            }
            if r.header("content-type") != Some(content_type) {
                p.push(format!("{}: request {} Content-Type {:?}", t.name, r.index, r.header("content-type")));
            }
        }
    }
    p
}

/// The problems of every track; panics naming them.
pub fn assert_conformant(rx: &Receiver) {
    let problems: Vec<String> = rx.cmaf_tracks().iter().flat_map(|t| problems(rx, t)).collect();
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Frames a recorded track decodes to through qtdemux (video: avdec_h264; audio: avdec_aac).
pub fn decoded_frames(t: &CmafTrack) -> usize {
    init();
    let path =
        std::env::temp_dir().join(format!("fmp4ingest-cmaf-{}-{}-{}", std::process::id(), t.name, rand_suffix()));
    std::fs::write(&path, t.file()).unwrap();
    let decoder = match t.extension() {
        "cmfv" => "h264parse ! avdec_h264",
        _ => "aacparse ! avdec_aac",
    };
    let d = format!("filesrc location={} ! qtdemux ! {decoder} ! fakesink name=out", path.display());
    let pipeline = gst::parse::launch(&d).unwrap().downcast::<gst::Pipeline>().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let out = pipeline.by_name("out").unwrap();
    out.static_pad("sink").unwrap().add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        c.fetch_add(1, Ordering::SeqCst);
        gst::PadProbeReturn::Ok
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    let msg = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(60), &[gst::MessageType::Eos, gst::MessageType::Error]);
    pipeline.set_state(gst::State::Null).unwrap();
    let _ = std::fs::remove_file(&path);
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => {}
        other => panic!("{}: decoding failed: {other:?}", t.name),
    }
    count.load(Ordering::SeqCst)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
}

/// Samples of every segment received (each once).
pub fn samples(t: &CmafTrack) -> usize {
    t.unique_segments().iter().map(|s| s.segment.sample_count as usize).sum()
}

/// Waits until every track the receiver knows ended (lmsg), at most `limit`.
pub fn wait_ended(rx: &Receiver, tracks: usize, limit: Duration) -> bool {
    rx.wait_cmaf(limit, |ts| ts.len() >= tracks && ts.iter().all(|t| t.ended()))
}
