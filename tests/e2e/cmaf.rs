// SPDX-License-Identifier: MPL-2.0
//! CMAF ingest (docs/protocol.md §6) with real pipelines against the receiver: every muxer,
//! A/V and video-only, with default properties but `protocol` and `location`; each track is
//! conformant on the wire and its recording (header and every segment once) decodes frame for
//! frame through qtdemux. Then the knobs: PUT, chunked, Content-Length, low latency.

mod common;

use std::time::Duration;

use common::cmaf::{assert_conformant, decoded_frames, pipeline, samples};
use common::run_pipeline;
use fmp4ingest_receiver::Receiver;
use fmp4ingest_receiver::cmaf::CmafRequestKind;

const SECONDS: u32 = 8;

/// Pushes `SECONDS` through `muxer` with defaults; checks every track and decodes it.
fn push(muxer: &str, audio: bool) -> Receiver {
    let rx = Receiver::start().unwrap();
    let r = run_pipeline(&pipeline(muxer, &rx.publishing_point("live"), "", SECONDS, audio), Duration::from_secs(60));
    assert!(r.eos && r.errors.is_empty(), "{muxer}: {r:?}");
    assert!(r.warnings.is_empty(), "{muxer}: {:?}", r.warnings);
    assert_conformant(&rx);
    let names: Vec<String> = rx.cmaf_tracks().iter().map(|t| t.name.clone()).collect();
    let want: &[&str] = if audio { &["audio.cmfa", "video.cmfv"] } else { &["video.cmfv"] };
    assert_eq!(names, want, "{muxer}");
    for t in rx.cmaf_tracks() {
        // One segment per 2 s interval (the last one shorter), each in a request of its own.
        assert!(t.unique_segments().len() >= 4, "{muxer} {}: {} segments", t.name, t.unique_segments().len());
        let frames = decoded_frames(&t);
        assert_eq!(frames, samples(&t), "{muxer} {}: decoded frames vs samples sent", t.name);
        if t.extension() == "cmfv" {
            // Every frame the source made, no more, no less.
            assert_eq!(frames, (SECONDS * 30) as usize, "{muxer}: video frames");
            let info = t.header_info.as_ref().unwrap();
            assert!(info.brands.contains(&"cmfc".to_string()), "{:?}", info.brands);
            assert!(info.btrt.is_some_and(|(_, max, avg)| avg > 0 && max >= avg), "{:?}", info.btrt);
        } else {
            // The AAC frames of 8 s at 48 kHz (1024 samples each), give or take the encoder's.
            assert!(frames.abs_diff(8 * 48_000 / 1024) <= 3, "{muxer}: {frames} audio frames");
        }
        // The first request on the track is the probe; one connection for all of it.
        let reqs: Vec<_> = rx.cmaf_requests().into_iter().filter(|r| r.track == t.path).collect();
        assert_eq!(reqs[0].kind, Some(CmafRequestKind::Probe));
        assert!(reqs.iter().all(|r| r.connection == reqs[0].connection && r.method == "POST" && r.status == Some(200)));
        // Whole segments go with a Content-Length.
        assert!(reqs.iter().all(|r| !r.chunked && r.content_length == Some(r.bytes)), "{muxer}");
    }
    assert!(rx.rejected().is_empty(), "{:?}", rx.rejected());
    rx
}

#[test]
fn mp4mux_video_and_audio() {
    push("mp4mux fragment-duration=2000 streamable=true", true);
}

#[test]
fn isofmp4mux_video_and_audio() {
    push("isofmp4mux fragment-duration=2000000000", true);
}

#[test]
fn isofmp4mux_video_only() {
    push("isofmp4mux fragment-duration=2000000000", false);
}

#[test]
fn cmafmux_video_only() {
    push("cmafmux fragment-duration=2000000000", false);
}

#[test]
fn ismlmux_video_and_audio() {
    push("ismlmux fragment-duration=2000", true);
}

#[test]
fn qtmux_video_and_audio() {
    push("qtmux fragment-duration=2000 streamable=true", true);
}

#[test]
fn put_and_chunked_transfer_as_asked() {
    let rx = Receiver::start().unwrap();
    let d = pipeline(
        "isofmp4mux fragment-duration=2000000000",
        &rx.publishing_point("live"),
        "http-method=put transfer=chunked",
        6,
        true,
    );
    let r = run_pipeline(&d, Duration::from_secs(60));
    assert!(r.eos && r.errors.is_empty(), "{r:?}");
    assert_conformant(&rx);
    let reqs = rx.cmaf_requests();
    assert!(reqs.iter().all(|r| r.method == "PUT"), "{reqs:?}");
    // The probe and the header have their length; segments go chunked.
    for r in &reqs {
        match r.kind {
            Some(CmafRequestKind::Segment) => assert!(r.chunked && r.complete, "{r:?}"),
            _ => assert!(!r.chunked && r.content_length == Some(r.bytes), "{r:?}"),
        }
    }
}

#[test]
fn low_latency_sends_each_segment_in_chunks_while_it_is_produced() {
    let rx = Receiver::start().unwrap();
    // mp4mux hands over a fragment every 500 ms: a 2 s segment goes in four CMAF chunks, each
    // as it comes. With a declared bitrate the header needs no segment to measure it on, so
    // that the first segment goes in chunks too.
    let props = "low-latency=true video-bitrate=600000";
    let d = pipeline("mp4mux fragment-duration=500 streamable=true", &rx.publishing_point("live"), props, 8, false);
    let r = run_pipeline(&d, Duration::from_secs(60));
    assert!(r.eos && r.errors.is_empty(), "{r:?}");
    assert_conformant(&rx);
    let t = rx.cmaf_track("video.cmfv").unwrap();
    let reqs = rx.cmaf_requests();
    let mut early = 0;
    for s in t.unique_segments().iter().filter(|s| !s.segment.lmsg) {
        // Several CMAF chunks, the later ones `cmfl`, in one chunked request.
        assert!(s.segment.chunks > 1, "segment {}: {} chunks", s.segment.sequence, s.segment.chunks);
        assert!(s.segment.chunk_brands.iter().all(|b| b.contains(&"cmfl".to_string())), "{:?}", s.segment.chunk_brands);
        let req = &reqs[s.request];
        assert!(req.chunked, "{req:?}");
        // The request started well before its segment ended (about 2 s of media).
        let took = req.ended.unwrap() - req.started;
        if took > Duration::from_millis(1200) {
            early += 1;
        }
    }
    assert!(early >= 2, "no segment went out while it was produced");
}

#[test]
fn a_location_that_is_not_a_publishing_point_is_refused_at_start() {
    common::init();
    use gst::prelude::*;
    for bad in
        ["http://127.0.0.1:9/live.isml/Streams(video)", "rtmp://127.0.0.1/live", "http://127.0.0.1:9/live.isml?x=1"]
    {
        let sink = gst::ElementFactory::make("fmp4ingestsink")
            .property_from_str("protocol", "cmaf")
            .property("location", bad)
            .build()
            .unwrap();
        let bus = gst::Bus::new();
        sink.set_bus(Some(&bus));
        assert!(sink.set_state(gst::State::Ready).is_err(), "{bad}");
        let msg = bus.pop_filtered(&[gst::MessageType::Error]).expect("an error message");
        let gst::MessageView::Error(e) = msg.view() else { unreachable!() };
        assert!(e.error().to_string().contains("protocol=cmaf"), "{}", e.error());
        assert!(format!("{:?}", e.debug()).contains("publishing point URL"), "{:?}", e.debug());
        let _ = sink.set_state(gst::State::Null);
    }
}

/// The README's CMAF gst-launch lines, exactly as documented (variables expanded), each
/// against the receiver: every one must give conformant tracks.
#[test]
fn the_readme_cmaf_lines_push_conformant_tracks() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let var = |block: &str, name: &str| -> String {
        let line = block.lines().find(|l| l.starts_with(&format!("{name}="))).unwrap();
        line[name.len() + 1..].trim_matches('"').to_string()
    };
    let smooth = readme.split("## Trying it with gst-launch").nth(1).unwrap();
    let smooth_block = smooth.split("```sh").nth(2).unwrap().split("```").next().unwrap();
    let (v, a) = (var(smooth_block, "V"), var(smooth_block, "A"));
    let section = readme.split("## CMAF ingest").nth(1).unwrap();
    let block = section.split("```sh").nth(1).unwrap().split("```").next().unwrap();
    let lines: Vec<&str> = block.lines().filter(|l| l.starts_with("gst-launch-1.0 -e ")).collect();
    assert_eq!(lines.len(), 3, "{block}");
    for (i, line) in lines.iter().enumerate() {
        let rx = Receiver::start().unwrap();
        let pp = rx.publishing_point(&format!("channel{i}"));
        let d = line["gst-launch-1.0 -e ".len()..].replace("$V", &v).replace("$A", &a).replace("\"$PP\"", &pp);
        let r = run_pipeline(&d, Duration::from_secs(90));
        assert!(r.eos && r.errors.is_empty(), "{line}: {r:?}");
        assert!(!rx.cmaf_tracks().is_empty(), "{line}");
        assert_conformant(&rx);
    }
}
