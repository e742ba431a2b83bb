// SPDX-License-Identifier: MPL-2.0
//! GStreamer's own players, counting what they decode: an adaptive demuxer over HTTP, the
//! decoders behind it, and a fakesink per decoded stream that records every video frame's and
//! audio buffer's timestamp.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

/// The frames up to the first one whose timestamp does not go forward.
pub fn first_pass(pts: &[u64]) -> &[u64] {
    let end = pts.windows(2).position(|w| w[1] <= w[0]).map_or(pts.len(), |i| i + 1);
    &pts[..end]
}

/// What a player decoded.
#[derive(Debug, Default)]
pub struct Played {
    /// Video frames' PTS (ns), in order.
    pub video_pts: Vec<u64>,
    /// Audio buffers' PTS (ns): one buffer per AAC frame from the decoder.
    pub audio_pts: Vec<u64>,
    pub eos: bool,
    pub errors: Vec<String>,
    /// When the first video frame was decoded.
    pub first_frame_at: Option<Instant>,
}

impl Played {
    /// Whether the player went back and decoded frames it had decoded before.
    pub fn repeats(&self) -> bool {
        first_pass(&self.video_pts).len() < self.video_pts.len()
            || first_pass(&self.audio_pts).len() < self.audio_pts.len()
    }
}

/// A counting fakesink for a decoded pad.
fn counting_sink(pipeline: &gst::Pipeline, pad: &gst::Pad, played: Arc<Mutex<Played>>) {
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let s = caps.structure(0).unwrap();
    let video = s.name().starts_with("video/");
    let sink = gst::ElementFactory::make("fakesink").property("sync", false).property("async", false).build().unwrap();
    pipeline.add(&sink).unwrap();
    sink.sync_state_with_parent().unwrap();
    sink.static_pad("sink").unwrap().add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(b) = info.buffer() else { return gst::PadProbeReturn::Ok };
        let mut p = played.lock().unwrap();
        if video {
            p.video_pts.push(b.pts().map_or(u64::MAX, |t| t.nseconds()));
            p.first_frame_at.get_or_insert_with(Instant::now);
        } else {
            p.audio_pts.push(b.pts().map_or(u64::MAX, |t| t.nseconds()));
        }
        gst::PadProbeReturn::Ok
    });
    let _ = pad.link(&sink.static_pad("sink").unwrap());
}

/// When a player stops without an end of stream: a time set by the test, or a limit.
#[derive(Clone)]
pub struct StopAt(Arc<Mutex<Option<Instant>>>);

impl StopAt {
    pub fn after(limit: Duration) -> Self {
        StopAt(Arc::new(Mutex::new(Some(Instant::now() + limit))))
    }

    pub fn set(&self, at: Instant) {
        *self.0.lock().unwrap() = Some(at);
    }

    pub fn reached(&self) -> bool {
        self.0.lock().unwrap().is_some_and(|t| Instant::now() >= t)
    }
}

/// Plays `uri` through `demuxer` until EOS, an error or `stop`. The first generation of
/// adaptive demuxers runs behind souphttpsrc with a decodebin per pad; the adaptivedemux2
/// ones (`...2`) need a streams-aware parent, and run inside uridecodebin3, which plugs them
/// by rank (they outrank the first generation) — the test checks which one it plugged.
///
/// A player stopped without an end of stream still holds a frame or two in its parsers and
/// decoders (frame threading): they are drained with an EOS sent into the ISO BMFF demuxer
/// (qtdemux) before it stops, so that what it was given is counted whole.
pub fn play(uri: &str, demuxer: &str, stop: StopAt) -> Played {
    super::init();
    let pipeline = gst::Pipeline::new();
    let demuxers = Arc::new(Mutex::new(Vec::<gst::Element>::new()));
    let d = demuxers.clone();
    pipeline.connect_deep_element_added(move |_, _, e| {
        if e.factory().is_some_and(|f| f.name() == "qtdemux") {
            d.lock().unwrap().push(e.clone());
        }
    });
    let played = Arc::new(Mutex::new(Played::default()));
    let plugged = Arc::new(Mutex::new(Vec::<String>::new()));
    if demuxer.ends_with('2') {
        let bin = gst::ElementFactory::make("uridecodebin3").property("uri", uri).build().unwrap();
        pipeline.add(&bin).unwrap();
        let names = plugged.clone();
        bin.downcast_ref::<gst::Bin>().unwrap().connect_deep_element_added(move |_, _, e| {
            if let Some(f) = e.factory() {
                names.lock().unwrap().push(f.name().to_string());
            }
        });
        let (pl, pd) = (pipeline.downgrade(), played.clone());
        bin.connect_pad_added(move |_, pad| {
            if let Some(p) = pl.upgrade() {
                counting_sink(&p, pad, pd.clone());
            }
        });
    } else {
        let src = gst::ElementFactory::make("souphttpsrc").property("location", uri).build().unwrap();
        let demux = gst::ElementFactory::make(demuxer).build().unwrap_or_else(|_| panic!("no {demuxer}"));
        pipeline.add_many([&src, &demux]).unwrap();
        src.link(&demux).unwrap();
        plugged.lock().unwrap().push(demuxer.to_string());
        let (pl, pd) = (pipeline.downgrade(), played.clone());
        demux.connect_pad_added(move |_, pad| {
            let Some(p) = pl.upgrade() else { return };
            let dec = gst::ElementFactory::make("decodebin").build().unwrap();
            p.add(&dec).unwrap();
            dec.sync_state_with_parent().unwrap();
            let (pl, pd) = (p.downgrade(), pd.clone());
            dec.connect_pad_added(move |_, dpad| {
                if let Some(p) = pl.upgrade() {
                    counting_sink(&p, dpad, pd.clone());
                }
            });
            pad.link(&dec.static_pad("sink").unwrap()).unwrap();
        });
    }
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let (mut eos, mut errors) = (false, Vec::new());
    while !stop.reached() {
        let Some(m) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else { continue };
        match m.view() {
            gst::MessageView::Eos(_) => {
                eos = true;
                break;
            }
            gst::MessageView::Error(e) => {
                errors.push(format!("{} ({:?})", e.error(), e.debug()));
                break;
            }
            _ => {}
        }
    }
    if !eos && errors.is_empty() {
        // The ISO BMFF demuxers behind the adaptive one: an EOS there drains the parsers and
        // decoders after it.
        for d in demuxers.lock().unwrap().iter() {
            if let Some(pad) = d.static_pad("sink") {
                pad.send_event(gst::event::Eos::new());
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    pipeline.set_state(gst::State::Null).unwrap();
    let mut p = std::mem::take(&mut *played.lock().unwrap());
    p.eos = eos;
    p.errors = errors;
    if !plugged.lock().unwrap().iter().any(|n| n == demuxer) {
        p.errors.push(format!("{demuxer} was not plugged: {:?}", plugged.lock().unwrap()));
    }
    p
}
