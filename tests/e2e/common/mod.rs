// SPDX-License-Identifier: MPL-2.0
//! What every end-to-end test needs: GStreamer with our plugin and gst-plugin-fmp4 registered,
//! live pipelines run to EOS, and the checks of a conformant ingest stream.

#![allow(dead_code)]

pub mod client;
pub mod cmaf;
pub mod mpegts;
pub mod player;
pub mod relay;

use std::sync::Once;
use std::time::Duration;

use fmp4ingest_receiver::{PostRecord, StreamView};
use gst::prelude::*;

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("gstreamer init");
        gstfmp4ingest::plugin_register_static().expect("register fmp4ingest");
        gstfmp4::plugin_register_static().expect("register fmp4 (isofmp4mux, cmafmux)");
    });
}

/// How a pipeline run ended.
#[derive(Debug, Default)]
pub struct RunResult {
    pub eos: bool,
    pub errors: Vec<String>,
    /// The resource error code of the first error, when it is one, and when it came.
    pub error_code: Option<gst::ResourceError>,
    pub error_at: Option<Duration>,
    pub warnings: Vec<String>,
    /// Element messages of the sink, in order.
    pub messages: Vec<gst::Structure>,
    pub elapsed: Duration,
    /// Longest wall-clock pause between two buffers reaching the element named `sink`.
    pub max_buffer_gap: Duration,
    /// The sink's `stats` just before the pipeline stopped.
    pub final_stats: Option<gst::Structure>,
}

impl RunResult {
    /// Element messages with this name.
    pub fn messages_named(&self, name: &str) -> Vec<&gst::Structure> {
        self.messages.iter().filter(|m| m.name() == name).collect()
    }
}

/// Runs a gst-launch description until EOS, an error, or `timeout`.
pub fn run_pipeline(description: &str, timeout: Duration) -> RunResult {
    init();
    let pipeline = gst::parse::launch(description).unwrap_or_else(|e| panic!("bad pipeline {description}: {e}"));
    let pipeline = pipeline.downcast::<gst::Pipeline>().expect("a pipeline");
    run(&pipeline, timeout)
}

/// Builds a pipeline from a gst-launch description, to set it up before running it.
pub fn init_pipeline(description: &str) -> gst::Pipeline {
    init();
    let pipeline = gst::parse::launch(description).unwrap_or_else(|e| panic!("bad pipeline {description}: {e}"));
    pipeline.downcast::<gst::Pipeline>().expect("a pipeline")
}

/// The same on another thread, so that the test can act on the receiver meanwhile.
pub fn spawn_pipeline(description: &str, timeout: Duration) -> std::thread::JoinHandle<RunResult> {
    let d = description.to_string();
    std::thread::spawn(move || run_pipeline(&d, timeout))
}

pub fn run(pipeline: &gst::Pipeline, timeout: Duration) -> RunResult {
    let start = std::time::Instant::now();
    let bus = pipeline.bus().expect("bus");
    let arrivals = std::sync::Arc::new(std::sync::Mutex::new(Vec::<std::time::Instant>::new()));
    let sink = pipeline.by_name("sink");
    if let Some(pad) = sink.as_ref().and_then(|s| s.static_pad("sink")) {
        let a = arrivals.clone();
        pad.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST, move |_, _| {
            a.lock().unwrap().push(std::time::Instant::now());
            gst::PadProbeReturn::Ok
        });
    }
    pipeline.set_state(gst::State::Playing).expect("to PLAYING");
    let mut result = RunResult::default();
    while let Some(left) = timeout.checked_sub(start.elapsed()) {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_nseconds(left.as_nanos() as u64)) else { break };
        match msg.view() {
            gst::MessageView::Eos(_) => {
                result.eos = true;
                break;
            }
            gst::MessageView::Error(e) => {
                result.errors.push(format!("{} ({:?})", e.error(), e.debug()));
                result.error_code = e.error().kind::<gst::ResourceError>();
                result.error_at = Some(start.elapsed());
                break;
            }
            gst::MessageView::Warning(w) => result.warnings.push(format!("{} ({:?})", w.error(), w.debug())),
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure().filter(|s| s.name().starts_with("fmp4ingestsink-")) {
                    result.messages.push(s.to_owned());
                }
            }
            _ => {}
        }
    }
    result.elapsed = start.elapsed();
    result.final_stats = sink.as_ref().map(|s| s.property::<gst::Structure>("stats"));
    let a = arrivals.lock().unwrap();
    result.max_buffer_gap = a.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
    drop(a);
    pipeline.set_state(gst::State::Null).expect("to NULL");
    result
}

/// A live H.264 test pattern with a GOP of `gop` frames at 30 fps, `seconds` long.
pub fn video_source(seconds: u32, gop: u32) -> String {
    format!(
        "videotestsrc is-live=true num-buffers={} pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 ! \
         x264enc key-int-max={gop} speed-preset=ultrafast bitrate=600 ! h264parse",
        seconds * 30
    )
}

/// `seconds` of live video and audio through isofmp4mux (2 s fragments) into a sink named
/// `sink` with these extra properties.
pub fn av_pipeline(url: &str, props: &str, seconds: u32) -> String {
    format!(
        "isofmp4mux name=mux fragment-duration=2000000000 ! fmp4ingestsink name=sink location=\"{url}\" {props} \
         {} ! queue ! mux. {} ! queue ! mux.",
        video_source(seconds, 600),
        audio_source(seconds)
    )
}

/// A live AAC test tone, `seconds` long.
pub fn audio_source(seconds: u32) -> String {
    format!(
        "audiotestsrc is-live=true num-buffers={} samplesperbuffer=1024 wave=sine ! audio/x-raw,rate=48000,channels=2 ! \
         avenc_aac ! aacparse",
        seconds * 48000 / 1024 + 1
    )
}

/// The Smooth FourCC a manifest must give for a sample entry.
pub fn fourcc_of(entry: &str, cpd: &str) -> &'static str {
    match entry {
        "avc1" | "avc3" => "H264",
        "hev1" => "hev1",
        "hvc1" => "hvc1",
        // AAC-LC unless the AudioSpecificConfig says SBR (5) or PS (29).
        "mp4a" if cpd.starts_with('2') || cpd.starts_with("E8") => "AACH",
        "mp4a" => "AACL",
        _ => "",
    }
}

/// Checks one POST carries a conformant ingest stream; returns the problems found.
pub fn check_media_post(p: &PostRecord) -> Vec<String> {
    let mut problems: Vec<String> = p.violations.clone();
    if !p.chunked {
        problems.push("body is not chunked".into());
    }
    if !p.complete {
        problems.push("body did not end with the zero-length chunk".into());
    }
    if p.status != Some(200) {
        problems.push(format!("receiver answered {:?}", p.status));
    }
    if p.header_boxes != ["ftyp", "lsm", "moov"] {
        problems.push(format!("header order {:?}", p.header_boxes));
    }
    if p.other_boxes.iter().any(|b| b == "mfra") {
        problems.push("mfra sent".into());
    }
    if p.smil_tracks.len() != p.moov_tracks.len() {
        problems.push(format!("manifest has {} tracks, moov {}", p.smil_tracks.len(), p.moov_tracks.len()));
    }
    for (s, m) in p.smil_tracks.iter().zip(&p.moov_tracks) {
        let id = m.track_id.to_string();
        let ts = m.timescale.to_string();
        let fourcc = fourcc_of(&m.entry, &m.codec_private_data);
        if s.param("trackID") != Some(id.as_str()) {
            problems.push(format!("manifest trackID {:?} vs moov {}", s.param("trackID"), id));
        }
        if s.param("timescale") != Some(ts.as_str()) {
            problems.push(format!("track {id}: manifest timescale {:?} vs mdhd {ts}", s.param("timescale")));
        }
        if s.param("FourCC") != Some(fourcc) {
            problems.push(format!(
                "track {id}: manifest FourCC {:?} vs sample entry {} ({fourcc})",
                s.param("FourCC"),
                m.entry
            ));
        }
        if s.param("CodecPrivateData") != Some(m.codec_private_data.as_str()) || m.codec_private_data.is_empty() {
            problems.push(format!(
                "track {id}: manifest CodecPrivateData {:?} vs moov {}",
                s.param("CodecPrivateData"),
                m.codec_private_data
            ));
        }
        match s.attr("systemBitrate").and_then(|b| b.parse::<u64>().ok()) {
            Some(b) if b > 0 => {}
            other => problems.push(format!("track {id}: systemBitrate {other:?}")),
        }
    }
    for f in &p.fragments {
        if f.tfxd.is_none() {
            problems.push(format!("fragment {} without tfxd", f.sequence));
        }
    }
    // On the grid the mfhd sequence is (index x parts + part) x tracks + the track's position +
    // 1 (docs/protocol.md §2.9): it increases along each track, and it is the track's position +
    // 1 modulo the number of tracks. (The receiver checks that it increases within the POST.)
    let tracks = p.moov_tracks.len() as u32;
    for (position, t) in p.moov_tracks.iter().enumerate() {
        let seqs: Vec<u32> = p.fragments.iter().filter(|f| f.track_id == t.track_id).map(|f| f.sequence).collect();
        if seqs.windows(2).any(|w| w[1] <= w[0]) || seqs.iter().any(|s| s % tracks != (position as u32 + 1) % tracks) {
            problems.push(format!(
                "track {}: mfhd sequence not (k x {tracks} + {}): {seqs:?}",
                t.track_id,
                position + 1
            ));
        }
    }
    problems
}

/// The whole-stream checks (docs/protocol.md §1, §2): probe first, one conformant POST, contiguous timelines,
/// video fragments of `fragment_secs` starting with a sync sample.
pub fn check_stream(view: &StreamView, fragment_secs: f64) -> Vec<String> {
    let mut problems = Vec::new();
    match view.posts.first() {
        Some(p) if p.is_probe() => {}
        other => {
            problems.push(format!("first request is not the empty probe: {:?}", other.map(|p| (&p.headers, p.bytes))))
        }
    }
    let media = view.media_posts();
    if media.len() != 1 {
        problems.push(format!("{} media POSTs, expected 1", media.len()));
    }
    for p in &media {
        problems.extend(check_media_post(p));
    }
    let Some(p) = media.first() else { return problems };
    for t in &p.moov_tracks {
        let frags: Vec<_> = p.fragments.iter().filter(|f| f.track_id == t.track_id).collect();
        if frags.len() < 4 {
            problems.push(format!("track {} has only {} fragments", t.track_id, frags.len()));
        }
        for (expected, actual) in view.gaps(t.track_id) {
            problems.push(format!("track {}: timeline gap, expected {expected}, got {actual}", t.track_id));
        }
        if t.handler == "vide" {
            let frame = u64::from(t.timescale) / 30;
            let nominal = (fragment_secs * f64::from(t.timescale)) as u64;
            for (i, f) in frags.iter().enumerate() {
                if !f.first_sample_sync {
                    problems.push(format!("video fragment {} does not start with a sync sample", f.sequence));
                }
                let d = f.duration().unwrap_or(0);
                // The first fragment may start late (a B-frame stream's key frame is presented
                // after running time 0); the last ends with the stream.
                let edge = i == 0 || i + 1 == frags.len();
                if !edge && d.abs_diff(nominal) > frame {
                    problems.push(format!("video fragment {} lasts {d}, expected {nominal} ± {frame}", f.sequence));
                }
            }
        }
    }
    problems
}

/// A pipeline on a realtime clock: base time + running time is UTC, exactly, so that the test
/// knows every time the sink writes.
pub fn realtime_pipeline(description: &str) -> gst::Pipeline {
    init();
    let p = gst::parse::launch(description).unwrap().downcast::<gst::Pipeline>().unwrap();
    let clock: gst::Clock = gst::glib::Object::builder::<gst::SystemClock>()
        .property("clock-type", gst::ClockType::Realtime)
        .build()
        .upcast();
    p.use_clock(Some(&clock));
    p
}

/// Waits until the pipeline plays; returns its base time.
pub fn wait_playing(p: &gst::Pipeline) -> u64 {
    for _ in 0..500 {
        if p.current_state() == gst::State::Playing
            && let Some(b) = p.base_time()
        {
            return b.nseconds();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the pipeline did not start");
}

/// The running time now.
pub fn running_now(p: &gst::Pipeline) -> u64 {
    p.clock().unwrap().time().nseconds() - p.base_time().unwrap().nseconds()
}

/// Runs `p`, calling `act` on another thread once it plays.
pub fn run_with(
    p: &gst::Pipeline,
    timeout: Duration,
    act: impl FnOnce(&gst::Pipeline, u64) + Send + 'static,
) -> RunResult {
    let p2 = p.clone();
    let actor = std::thread::spawn(move || {
        let base = wait_playing(&p2);
        act(&p2, base);
    });
    let r = run(p, timeout);
    actor.join().expect("the test's events");
    r
}

/// Counts the buffers that leave element `name`'s src pad (a parser: the frames an encoder
/// made).
pub fn count_buffers(p: &gst::Pipeline, name: &str) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
    let n = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let c = n.clone();
    p.by_name(name).unwrap().static_pad("src").unwrap().add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        gst::PadProbeReturn::Ok
    });
    n
}

/// `seconds` of live 320x240 video (30 fps, 2 s GOP) and 48 kHz stereo AAC through isofmp4mux
/// (2 s fragments) into `sinks` (a sink, or a tee and its branches); the parsers are named
/// `vparse` and `aparse` (see [`count_buffers`]).
pub fn av_into(sinks: &str, seconds: u32) -> String {
    format!(
        "isofmp4mux name=mux fragment-duration=2000000000 ! {sinks} \
         videotestsrc is-live=true num-buffers={} pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 ! \
           x264enc key-int-max=60 speed-preset=ultrafast bitrate=600 ! h264parse name=vparse ! queue ! mux. \
         audiotestsrc is-live=true num-buffers={} samplesperbuffer=1024 wave=sine ! audio/x-raw,rate=48000,channels=2 ! \
           avenc_aac ! aacparse name=aparse ! queue ! mux.",
        seconds * 30,
        seconds * 48000 / 1024 + 1
    )
}
