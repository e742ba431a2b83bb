// SPDX-License-Identifier: MPL-2.0
//! GStreamer's own players, counting what they decode: an adaptive demuxer over HTTP, the
//! decoders behind it, and a fakesink per decoded stream that records every video frame's and
//! audio buffer's timestamp; and what they must decode: what was ingested, as the test
//! receiver read it ([`Ingested`]), and the frame-for-frame comparison ([`matches_from`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fmp4ingest_receiver::Receiver;
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

/// What was ingested, from the test receiver's own reading of the stream (independent of the
/// endpoint): what a player must decode.
pub struct Ingested {
    /// Every video frame's presentation time (ns), in decode order.
    pub video_pts: Vec<u64>,
    /// Where each video fragment starts in `video_pts`.
    pub video_fragment_starts: Vec<usize>,
    /// AAC frames per audio fragment, in time order.
    pub audio_frames: Vec<u64>,
}

impl Ingested {
    /// From video fragments (time, presentation offsets of their samples) and audio fragments'
    /// sample counts, each once, by time.
    fn of(
        timescale: u32,
        video: impl IntoIterator<Item = (u64, Vec<i64>)>,
        audio: impl IntoIterator<Item = (u64, u64)>,
    ) -> Ingested {
        let mut out = Ingested { video_pts: Vec::new(), video_fragment_starts: Vec::new(), audio_frames: Vec::new() };
        let ts = i128::from(timescale);
        // Each fragment once (a resend after a reconnect is the same fragment), by time.
        let mut once = BTreeMap::new();
        for (t, v) in video {
            once.entry(t).or_insert(v);
        }
        let video = once;
        for (time, offsets) in video {
            out.video_fragment_starts.push(out.video_pts.len());
            for o in offsets {
                out.video_pts.push(((i128::from(time) + i128::from(o)) * 1_000_000_000 / ts) as u64);
            }
        }
        let mut audio_once = BTreeMap::new();
        for (t, n) in audio {
            audio_once.entry(t).or_insert(n);
        }
        let audio = audio_once;
        out.audio_frames = audio.into_values().collect();
        out
    }

    /// A Smooth ingest stream `stream` (its tfxd times and samples' presentation offsets).
    pub fn smooth(rx: &Receiver, stream: &str) -> Ingested {
        let view = rx.stream(stream);
        let post = view.media_posts().into_iter().find(|p| !p.moov_tracks.is_empty()).expect("a media POST");
        let track = |handler: &str| post.moov_tracks.iter().find(|t| t.handler == handler).expect(handler).clone();
        let (video, audio) = (track("vide"), track("soun"));
        let frags = view.fragments();
        let of = |id: u32| frags.iter().filter(move |f| f.track_id == id);
        Ingested::of(
            video.timescale,
            of(video.track_id).map(|f| (f.time().expect("tfxd"), f.sample_offsets.clone())),
            of(audio.track_id).map(|f| (f.time().expect("tfxd"), u64::from(f.sample_count))),
        )
    }

    /// The CMAF ingest tracks `video.cmfv` and `audio.cmfa` (each segment's tfdt, and its
    /// samples' decode times plus composition offsets).
    pub fn cmaf(rx: &Receiver) -> Ingested {
        let track = |name: &str| rx.cmaf_track(name).unwrap_or_else(|| panic!("no track {name}"));
        let (video, audio) = (track("video.cmfv"), track("audio.cmfa"));
        let timescale = video.header_info.as_ref().expect("a header").track.timescale;
        let offsets = |s: &fmp4ingest_receiver::cmaf_mp4::Segment| {
            let mut at = 0i64;
            s.durations
                .iter()
                .zip(&s.ctos)
                .map(|(d, c)| {
                    let o = at + c;
                    at += i64::from(*d);
                    o
                })
                .collect::<Vec<i64>>()
        };
        Ingested::of(
            timescale,
            video.unique_segments().into_iter().map(|s| (s.segment.tfdt, offsets(&s.segment))),
            audio.unique_segments().into_iter().map(|s| (s.segment.tfdt, u64::from(s.segment.sample_count))),
        )
    }
}

/// Whether a player's frames are the ingested ones from the start of fragment `k` on, each at
/// its ingested time (timestamps compared from the first frame, within 1 ms), and its AAC
/// frames those from the start of an audio fragment on; the `k`, or why not. Frames after a
/// backward jump (a player replaying what it played) are not counted: see [`Played::repeats`].
pub fn matches_from(played: &Played, ing: &Ingested) -> Result<usize, String> {
    let video = first_pass(&played.video_pts);
    let n = video.len();
    let k = ing.video_fragment_starts.iter().position(|&s| ing.video_pts.len() - s == n).ok_or_else(|| {
        format!("{n} frames: not the frames from a fragment start to the end ({} ingested)", ing.video_pts.len())
    })?;
    let expected = &ing.video_pts[ing.video_fragment_starts[k]..];
    let (e0, p0) = (expected[0] as i128, video[0] as i128);
    for (i, (e, p)) in expected.iter().zip(video).enumerate() {
        let (de, dp) = (*e as i128 - e0, *p as i128 - p0);
        if (de - dp).abs() > 1_000_000 {
            return Err(format!("frame {i} of fragment {k} on: at {dp} ns, ingested at {de} ns"));
        }
    }
    let audio = first_pass(&played.audio_pts).len() as u64;
    let suffix = |i: usize| ing.audio_frames[i..].iter().sum::<u64>();
    if !(0..ing.audio_frames.len()).any(|i| suffix(i) == audio) {
        return Err(format!("{audio} AAC frames decoded: not the frames from an audio fragment start to the end"));
    }
    Ok(k)
}

/// Plays a recorded stream at `url` through `demuxer`: a line saying what it decoded of the
/// `video` and `audio` frames encoded, `Ok` when it decoded every frame of `ing` at its time,
/// each once, and reached the end without an error.
pub fn plays_recorded(demuxer: &str, url: &str, ing: &Ingested, video: u64, audio: u64) -> Result<String, String> {
    let played = play(url, demuxer, StopAt::after(Duration::from_secs(60)));
    let verdict = matches_from(&played, ing);
    let line = format!(
        "{demuxer}: eos {} errors {:?}, {}/{video} video frames, {}/{audio} AAC frames: {verdict:?}",
        played.eos,
        played.errors,
        played.video_pts.len(),
        played.audio_pts.len()
    );
    println!("{line}");
    if played.eos && played.errors.is_empty() && verdict == Ok(0) && !played.repeats() { Ok(line) } else { Err(line) }
}
