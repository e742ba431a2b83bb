// SPDX-License-Identifier: MPL-2.0
//! Records what a muxer pushes, for the element tests (`tests/e2e/harness.rs`):
//!
//! ```sh
//! cargo run -p fmp4ingest-examples --bin fmp4ingest-record-muxer -- tests/data/isofmp4mux-av.rec
//! ```
//!
//! Six seconds of 160x120 H.264 (2 s GOP, B-frames off) and AAC through isofmp4mux with 2 s
//! fragments, as the live tests push, taken at the muxer's source pad.

use gst::prelude::*;

use fmp4ingest_receiver::recording::{RecordedBuffer, Recording};

const PIPELINE: &str = "isofmp4mux name=mux fragment-duration=2000000000 ! appsink name=out sync=false \
     videotestsrc is-live=true num-buffers=180 pattern=ball ! video/x-raw,width=160,height=120,framerate=30/1 ! \
     x264enc key-int-max=60 speed-preset=ultrafast bitrate=120 ! h264parse ! queue ! mux. \
     audiotestsrc is-live=true num-buffers=282 samplesperbuffer=1024 wave=sine ! \
     audio/x-raw,rate=48000,channels=2 ! avenc_aac bitrate=48000 ! aacparse ! queue ! mux.";

fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| "tests/data/isofmp4mux-av.rec".into());
    gst::init().expect("GStreamer");
    gstfmp4::plugin_register_static().expect("the fmp4 plugin");
    let pipeline = gst::parse::launch(PIPELINE).expect("pipeline").downcast::<gst::Pipeline>().expect("a pipeline");
    let sink = pipeline.by_name("out").expect("appsink");
    pipeline.set_state(gst::State::Playing).expect("playing");
    let mut recording = Recording { caps: String::new(), buffers: Vec::new() };
    while let Some(sample) = sink.emit_by_name::<Option<gst::Sample>>("pull-sample", &[]) {
        if recording.caps.is_empty() {
            recording.caps = sample.caps().map(|c| c.to_string()).unwrap_or_default();
        }
        let Some(b) = sample.buffer() else { continue };
        let map = b.map_readable().expect("readable");
        recording.buffers.push(RecordedBuffer {
            pts: b.pts().map(|t| t.nseconds()),
            dts: b.dts().map(|t| t.nseconds()),
            duration: b.duration().map(|t| t.nseconds()),
            flags: b.flags().bits(),
            data: map.as_slice().to_vec(),
        });
    }
    pipeline.set_state(gst::State::Null).expect("null");
    let mut out = std::fs::File::create(&path).expect("output file");
    recording.write(&mut out).expect("written");
    eprintln!("{}: {} buffers, caps {}", path, recording.buffers.len(), recording.caps);
}
