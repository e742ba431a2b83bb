// SPDX-License-Identifier: MPL-2.0
//! Bad pipeline input (README, Errors): what a broken or unusual upstream hands the sink. Each case
//! gives an element error or warning that names the problem, and everything accepted before
//! it still reaches the server, in a POST that ends properly.
//!
//! The input is real isofmp4mux output, captured once and then cut and spliced at box
//! boundaries, pushed from an appsrc; the sink keeps the muxer's fragments as they are
//! (`fragment-duration=0`), so that what must arrive is exactly the fragments before the fault.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::RunResult;
use fmp4ingest_receiver::{Receiver, StreamView};
use gst::prelude::*;

/// One top-level box of a captured stream.
#[derive(Clone)]
struct Mp4Box {
    kind: [u8; 4],
    bytes: Vec<u8>,
}

/// A muxer's output, as boxes: the init segment and the fragments (moof + mdat).
struct Capture {
    ftyp: Vec<u8>,
    moov: Vec<u8>,
    fragments: Vec<Vec<u8>>,
}

impl Capture {
    fn header(&self) -> Vec<u8> {
        [self.ftyp.clone(), self.moov.clone()].concat()
    }
}

fn boxes(data: &[u8]) -> Vec<Mp4Box> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 8 <= data.len() {
        let size = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        assert!(size >= 8 && pos + size <= data.len(), "the capture is whole");
        out.push(Mp4Box { kind: data[pos + 4..pos + 8].try_into().unwrap(), bytes: data[pos..pos + size].to_vec() });
        pos += size;
    }
    out
}

/// Runs the `branches` (each ending in `mux.`) into isofmp4mux (1 s fragments) and an appsink,
/// to the end, and splits what the muxer wrote.
fn capture(branches: &str) -> Capture {
    common::init();
    let d = format!("isofmp4mux name=mux fragment-duration=1000000000 ! appsink name=out sync=false {branches}");
    let p = gst::parse::launch(&d).unwrap();
    let p = p.downcast::<gst::Pipeline>().unwrap();
    let sink = p.by_name("out").unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let mut data = Vec::new();
    // appsink's action signal: a sample until EOS, then none.
    while let Some(sample) = sink.emit_by_name::<Option<gst::Sample>>("pull-sample", &[]) {
        data.extend_from_slice(&sample.buffer().unwrap().map_readable().unwrap());
    }
    p.set_state(gst::State::Null).unwrap();
    let all = boxes(&data);
    let find = |k: &[u8; 4]| all.iter().find(|b| &b.kind == k).map(|b| b.bytes.clone()).expect("ftyp and moov");
    let mut fragments = Vec::new();
    for pair in all.windows(2) {
        if &pair[0].kind == b"moof" && &pair[1].kind == b"mdat" {
            fragments.push([pair[0].bytes.clone(), pair[1].bytes.clone()].concat());
        }
    }
    assert!(fragments.len() >= 4, "{} fragments", fragments.len());
    Capture { ftyp: find(b"ftyp"), moov: find(b"moov"), fragments }
}

/// 8 s of live-like video and audio in 1 s fragments (isofmp4mux: one moof per fragment with a
/// traf per track).
fn av() -> &'static Capture {
    static C: OnceLock<Capture> = OnceLock::new();
    C.get_or_init(|| {
        capture(&format!("{} ! queue ! mux. {} ! queue ! mux.", common::video_source(8, 30), common::audio_source(8)))
    })
}

/// Pushes `chunks` (each one buffer) from an appsrc into the sink, then EOS.
fn push(rx: &Receiver, id: &str, chunks: Vec<Vec<u8>>) -> RunResult {
    common::init();
    let d = format!(
        "appsrc name=src caps=video/quicktime,variant=iso-fragmented format=bytes ! \
         fmp4ingestsink name=sink location=\"{}\" fragment-duration=0 max-retries=2 retry-delay=100000000",
        rx.url("live", id)
    );
    let p = gst::parse::launch(&d).unwrap().downcast::<gst::Pipeline>().unwrap();
    // appsrc's action signals; it queues what it is given until the pipeline runs.
    let src = p.by_name("src").unwrap();
    for c in chunks {
        let flow = src.emit_by_name::<gst::FlowReturn>("push-buffer", &[&gst::Buffer::from_slice(c)]);
        assert_eq!(flow, gst::FlowReturn::Ok);
    }
    assert_eq!(src.emit_by_name::<gst::FlowReturn>("end-of-stream", &[]), gst::FlowReturn::Ok);
    common::run(&p, Duration::from_secs(60))
}

/// What the server got: one POST, ended properly, with `fragments` muxer fragments of two
/// tracks (each split in two Smooth fragments).
fn delivered(view: &StreamView, fragments: usize) {
    let posts = view.media_posts();
    assert_eq!(posts.len(), 1, "{} POSTs", posts.len());
    let post = posts[0];
    assert!(post.complete && post.status == Some(200), "the POST ended properly: {post:?}");
    assert_eq!(post.header_boxes, ["ftyp", "lsm", "moov"]);
    assert_eq!(post.fragments.len(), 2 * fragments, "every fragment accepted before the fault");
    for t in view.track_ids() {
        assert!(view.gaps(t).is_empty(), "track {t}: {:?}", view.gaps(t));
    }
}

fn one_error(r: &RunResult) -> &str {
    assert_eq!(r.errors.len(), 1, "{:?} {:?}", r.errors, r.warnings);
    &r.errors[0]
}

#[test]
fn bytes_that_are_not_mp4_are_an_error_that_says_so() {
    let rx = Receiver::start().unwrap();
    // MPEG-TS packets, as from a muxer mixed up in a pipeline.
    let mut ts = vec![0u8; 188 * 20];
    for p in ts.chunks_mut(188) {
        p[..4].copy_from_slice(&[0x47, 0x40, 0x00, 0x10]);
    }
    let r = push(&rx, "ts", vec![ts]);
    let e = one_error(&r);
    assert!(e.contains("Invalid input from the muxer") && e.contains("not"), "{e}");
    assert!(e.contains("isofmp4mux"), "says what to use: {e}");
    assert!(rx.stream("ts").media_posts().is_empty(), "no header, no POST");
}

#[test]
fn a_box_cut_short_at_the_end_is_a_warning_and_the_rest_goes() {
    let c = av();
    let rx = Receiver::start().unwrap();
    let half = c.fragments[3][..c.fragments[3].len() / 2].to_vec();
    let chunks = vec![c.header(), c.fragments[0].clone(), c.fragments[1].clone(), c.fragments[2].clone(), half];
    let r = push(&rx, "cut", chunks);
    assert!(r.eos && r.errors.is_empty(), "{:?}", r.errors);
    assert!(r.warnings.iter().any(|w| w.contains("ended in the middle of a box")), "{:?}", r.warnings);
    delivered(&rx.stream("cut"), 3);
}

#[test]
fn a_moof_without_its_mdat_is_an_error_after_what_came_before() {
    let c = av();
    let rx = Receiver::start().unwrap();
    let moof_only = boxes(&c.fragments[2])[0].bytes.clone();
    let chunks = vec![c.header(), c.fragments[0].clone(), c.fragments[1].clone(), moof_only, c.fragments[3].clone()];
    let r = push(&rx, "nomdat", chunks);
    let e = one_error(&r);
    assert!(e.contains("moof") && e.contains("mdat"), "{e}");
    assert!(e.contains("every fragment accepted before it was delivered"), "{e}");
    delivered(&rx.stream("nomdat"), 2);
}

#[test]
fn a_moov_without_tracks_is_an_error() {
    let c = av();
    let rx = Receiver::start().unwrap();
    // The moov with its mvhd only.
    let mvhd = boxes(&c.moov[8..]).into_iter().find(|b| &b.kind == b"mvhd").unwrap().bytes;
    let moov = [((8 + mvhd.len()) as u32).to_be_bytes().to_vec(), b"moov".to_vec(), mvhd].concat();
    let r = push(&rx, "notracks", vec![c.ftyp.clone(), moov, c.fragments[0].clone()]);
    let e = one_error(&r);
    assert!(e.contains("no audio or video track"), "{e}");
    assert!(rx.stream("notracks").media_posts().is_empty());
}

#[test]
fn an_unsupported_codec_is_an_error_that_names_it() {
    // Opus, which isofmp4mux writes and Smooth ingest cannot describe.
    let opus = capture("audiotestsrc num-buffers=200 ! audio/x-raw,rate=48000,channels=2 ! opusenc ! queue ! mux.");
    let rx = Receiver::start().unwrap();
    let r = push(&rx, "opus", vec![opus.header(), opus.fragments[0].clone()]);
    let e = one_error(&r);
    assert!(e.contains("Opus"), "names the sample entry: {e}");
    assert!(rx.stream("opus").media_posts().is_empty());
}

#[test]
fn the_same_header_again_mid_stream_is_a_warning_and_the_stream_goes_on() {
    let c = av();
    let rx = Receiver::start().unwrap();
    let chunks = vec![c.header(), c.fragments[0].clone(), c.fragments[1].clone(), c.header(), c.fragments[2].clone()];
    let r = push(&rx, "again", chunks);
    assert!(r.eos && r.errors.is_empty(), "{:?}", r.errors);
    assert!(r.warnings.iter().any(|w| w.contains("header") && w.contains("again")), "{:?}", r.warnings);
    delivered(&rx.stream("again"), 3);
}

#[test]
fn renegotiation_to_another_track_set_is_an_error_after_what_came_before() {
    let c = av();
    // Video only: the same first track, the audio track gone.
    let video = capture(&format!("{} ! queue ! mux.", common::video_source(5, 30)));
    let rx = Receiver::start().unwrap();
    let chunks =
        vec![c.header(), c.fragments[0].clone(), c.fragments[1].clone(), video.header(), video.fragments[0].clone()];
    let r = push(&rx, "reneg", chunks);
    let e = one_error(&r);
    assert!(e.contains("different set of tracks"), "{e}");
    assert!(e.contains("every fragment accepted before it was delivered"), "{e}");
    delivered(&rx.stream("reneg"), 2);
}
