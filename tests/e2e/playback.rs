// SPDX-License-Identifier: MPL-2.0
//! Every player plays what was ingested: a real pipeline pushes H.264 + AAC through
//! fmp4ingestsink to the local endpoint, and GStreamer's own adaptive clients — mssdemux and
//! mssdemux2 (Smooth), dashdemux and dashdemux2 (DASH), hlsdemux and hlsdemux2 (HLS) — play
//! the endpoint's outputs over HTTP (souphttpsrc) through the decoders (avdec_h264,
//! avdec_aac), recorded and live.
//!
//! "Frame for frame" is checked against what was ingested, seen independently of the
//! endpoint: the muxer's output goes to a second fmp4ingestsink that pushes the same fragments
//! (the grid makes them identical) to the test receiver, whose own parser gives every
//! sample's time. A recorded stream decodes to exactly the ingested video frames, each at its
//! ingested time, and the ingested AAC frames — as many as the encoder made; a player that
//! joins live decodes exactly the frames from the start of some fragment to the end of the
//! stream, each at its time, and ends when the stream ends.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::player::{Played, StopAt, first_pass, play};
use fmp4ingest_endpoint::{Endpoint, EndpointConfig};
use fmp4ingest_receiver::Receiver;
use gst::prelude::*;

/// The players, with the output each plays. mssdemux2 plays recorded streams only: in
/// GStreamer 1.22 its live mode waits a second before every fragment download and then waits
/// again (its fragment waiting time is always one second), so it never downloads a live
/// fragment from any server.
const PLAYERS: [(&str, Format); 6] = [
    ("mssdemux", Format::Smooth),
    ("mssdemux2", Format::Smooth),
    ("dashdemux", Format::Dash),
    ("dashdemux2", Format::Dash),
    ("hlsdemux", Format::Hls),
    ("hlsdemux2", Format::Hls),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Smooth,
    Dash,
    Hls,
}

fn url(ep: &Endpoint, point: &str, f: Format) -> String {
    match f {
        Format::Smooth => ep.manifest_url(point),
        Format::Dash => ep.mpd_url(point),
        Format::Hls => ep.hls_url(point),
    }
}

/// What the encoder produced: video frames and AAC frames, counted at the parsers' outputs.
struct Encoded {
    video: Arc<AtomicU64>,
    audio: Arc<AtomicU64>,
}

/// A live push of `seconds` of 30 fps video (2 s GOP) and 48 kHz AAC to the endpoint and,
/// from the same muxer, to the receiver; counts what the encoders made.
fn push(endpoint_url: &str, receiver_url: &str, seconds: u32) -> (gst::Pipeline, Encoded) {
    let d = format!(
        "isofmp4mux name=mux fragment-duration=2000000000 ! tee name=t \
         t. ! queue ! fmp4ingestsink name=sink location=\"{endpoint_url}\" \
         t. ! queue ! fmp4ingestsink location=\"{receiver_url}\" \
         videotestsrc is-live=true num-buffers={} pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 ! \
           x264enc key-int-max=60 speed-preset=ultrafast bitrate=600 ! h264parse name=vparse ! queue ! mux. \
         audiotestsrc is-live=true num-buffers={} samplesperbuffer=1024 wave=sine ! audio/x-raw,rate=48000,channels=2 ! \
           avenc_aac ! aacparse name=aparse ! queue ! mux.",
        seconds * 30,
        seconds * 48000 / 1024 + 1
    );
    let p = common::init_pipeline(&d);
    let count = |name: &str| {
        let n = Arc::new(AtomicU64::new(0));
        let c = n.clone();
        p.by_name(name).unwrap().static_pad("src").unwrap().add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            c.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
        n
    };
    let e = Encoded { video: count("vparse"), audio: count("aparse") };
    (p, e)
}

/// What was ingested, from the receiver's reading of the stream.
struct Ingested {
    /// Every video frame's presentation time (ns), in decode order.
    video_pts: Vec<u64>,
    /// Where each video fragment starts in `video_pts`.
    video_fragment_starts: Vec<usize>,
    /// AAC frames per audio fragment, in time order.
    audio_frames: Vec<u64>,
}

fn ingested(rx: &Receiver, stream: &str) -> Ingested {
    let view = rx.stream(stream);
    let post = view.media_posts().into_iter().find(|p| !p.moov_tracks.is_empty()).expect("a media POST");
    let track = |handler: &str| post.moov_tracks.iter().find(|t| t.handler == handler).expect(handler).clone();
    let (video, audio) = (track("vide"), track("soun"));
    // Each fragment once (a resend after a reconnect is the same fragment), by time.
    let of = |id: u32| {
        let mut m = std::collections::BTreeMap::new();
        for f in view.fragments().into_iter().filter(|f| f.track_id == id) {
            m.entry(f.time().expect("tfxd")).or_insert_with(|| f.clone());
        }
        m
    };
    let mut out = Ingested { video_pts: Vec::new(), video_fragment_starts: Vec::new(), audio_frames: Vec::new() };
    let ts = u128::from(video.timescale);
    for (time, f) in of(video.track_id) {
        out.video_fragment_starts.push(out.video_pts.len());
        for o in &f.sample_offsets {
            out.video_pts.push(((i128::from(time) + i128::from(*o)) as u128 * 1_000_000_000 / ts) as u64);
        }
    }
    out.audio_frames = of(audio.track_id).values().map(|f| u64::from(f.sample_count)).collect();
    out
}

/// Whether a player's frames are the ingested ones from the start of fragment `k` on, each at
/// its ingested time (timestamps compared from the first frame, within 1 ms), and its AAC
/// frames those from the start of an audio fragment on; the `k`, or why not. Frames after a
/// backward jump (a player replaying what it played) are not counted: see [`Played::repeats`].
fn matches_from(played: &Played, ing: &Ingested) -> Result<usize, String> {
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

fn endpoint() -> Endpoint {
    Endpoint::start(EndpointConfig { bind: "127.0.0.1:0".parse().unwrap(), ..EndpointConfig::default() }).unwrap()
}

/// Waits until the point turned recorded: its last fragment is `idle` (10 s) old.
fn wait_recorded(ep: &Endpoint, point: &str) {
    let t = Instant::now();
    while ep.status().iter().any(|s| s.point == point && s.live) {
        assert!(t.elapsed() < Duration::from_secs(30), "{point} is still live");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn endpoint_and_receiver() -> (Endpoint, Receiver) {
    (endpoint(), Receiver::start().unwrap())
}

#[test]
fn every_player_plays_a_recorded_stream_frame_for_frame() {
    let (ep, rx) = endpoint_and_receiver();
    let (p, encoded) = push(&ep.ingest_url("rec", "av"), &rx.url("rec", "av"), 10);
    let r = common::run(&p, Duration::from_secs(60));
    assert!(r.eos && r.errors.is_empty(), "{:?}", r.errors);
    let ing = ingested(&rx, "av");
    let (video, audio) = (encoded.video.load(Ordering::Relaxed), encoded.audio.load(Ordering::Relaxed));
    assert_eq!(
        (ing.video_pts.len() as u64, ing.audio_frames.iter().sum::<u64>()),
        (video, audio),
        "the encoders' frames"
    );
    assert_eq!(video, 300);
    wait_recorded(&ep, "rec");
    let mut failures = Vec::new();
    for (demuxer, format) in PLAYERS {
        let played = play(&url(&ep, "rec", format), demuxer, StopAt::after(Duration::from_secs(60)));
        let verdict = matches_from(&played, &ing);
        let line = format!(
            "{demuxer}: eos {} errors {:?}, {}/{video} video frames, {}/{audio} AAC frames: {verdict:?}",
            played.eos,
            played.errors,
            played.video_pts.len(),
            played.audio_pts.len()
        );
        println!("{line}");
        if !(played.eos && played.errors.is_empty() && verdict == Ok(0) && !played.repeats()) {
            failures.push(line);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// How a player in GStreamer 1.22 ends a live stream that stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LiveEnd {
    /// It reaches the end of the stream (ENDLIST, a static MPD).
    Eos,
    /// dashdemux2 waits at the live edge for ever when the MPD turns static while its
    /// streams wait for a manifest update: the update that brings the static MPD stops the
    /// update task without waking them.
    Waits,
    /// mssdemux never ends a live stream (a manifest reload does not read IsLive again), and
    /// a reload that lists nothing past its position puts it back on the first fragment of
    /// the DVR window: after the end it plays the window again (its timestamps stuck at the
    /// last frame's).
    Replays,
}

fn live_end(demuxer: &str) -> LiveEnd {
    match demuxer {
        "mssdemux" => LiveEnd::Replays,
        "dashdemux2" => LiveEnd::Waits,
        _ => LiveEnd::Eos,
    }
}

#[test]
fn every_player_joins_a_live_stream_and_plays_it_to_its_end() {
    let (ep, rx) = endpoint_and_receiver();
    let seconds = 36;
    let (p, _) = push(&ep.ingest_url("tv", "av"), &rx.url("tv", "av"), seconds);
    let pusher = std::thread::spawn(move || common::run(&p, Duration::from_secs(u64::from(seconds) + 60)));
    // Join once a few fragments are there, while the encoder goes on for long after.
    let t = Instant::now();
    while ep.status().iter().find(|s| s.kind == "video").is_none_or(|s| s.fragments < 5) {
        assert!(t.elapsed() < Duration::from_secs(30), "no fragments");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ep.status().iter().all(|s| s.live));
    // Players that end on their own get two minutes; the others are stopped once the point
    // turned recorded and they had time to see it.
    let stop = StopAt::after(Duration::from_secs(120));
    let players: Vec<_> = PLAYERS
        .iter()
        .filter(|(demuxer, _)| *demuxer != "mssdemux2")
        .map(|(demuxer, format)| {
            let (demuxer, uri) = (demuxer.to_string(), url(&ep, "tv", *format));
            let stop =
                if live_end(&demuxer) == LiveEnd::Eos { StopAt::after(Duration::from_secs(120)) } else { stop.clone() };
            std::thread::spawn(move || (demuxer.clone(), play(&uri, &demuxer, stop)))
        })
        .collect();
    let r = pusher.join().unwrap();
    assert!(r.eos && r.errors.is_empty(), "{:?}", r.errors);
    let ended = Instant::now();
    wait_recorded(&ep, "tv");
    stop.set(Instant::now() + Duration::from_secs(8));
    let ing = ingested(&rx, "av");
    let mut failures = Vec::new();
    for h in players {
        let (demuxer, played) = h.join().unwrap();
        let verdict = matches_from(&played, &ing);
        let joined_live = played.first_frame_at.is_some_and(|f| f < ended);
        let end = live_end(&demuxer);
        let line = format!(
            "{demuxer} ({end:?}): eos {} errors {:?}, {} video frames ({:?}..{:?} ns) from fragment {verdict:?} of {}, \
             {} AAC frames, replays {}, first frame {} the end",
            played.eos,
            played.errors,
            played.video_pts.len(),
            played.video_pts.first(),
            first_pass(&played.video_pts).last(),
            ing.video_fragment_starts.len(),
            played.audio_pts.len(),
            played.repeats(),
            if joined_live { "before" } else { "after" }
        );
        println!("{line}");
        if std::env::var_os("PLAYBACK_DEBUG").is_some() {
            let odd: Vec<_> = played
                .video_pts
                .windows(2)
                .enumerate()
                .filter(|(_, w)| w[1].abs_diff(w[0] + 33_333_333) > 20_000_000)
                .take(12)
                .map(|(i, w)| (i, w[0], w[1]))
                .collect();
            println!("   {demuxer} odd steps: {odd:?}");
        }
        // Joined live (playing before the stream ended: dashdemux and hlsdemux near the live
        // edge, mssdemux from the start of the DVR window) and decoded every frame from there
        // to the last one, each once and at its time; ended as the player can.
        let ended_right = match end {
            LiveEnd::Eos => played.eos && !played.repeats(),
            LiveEnd::Waits => !played.repeats(),
            LiveEnd::Replays => true,
        };
        if !(played.errors.is_empty() && verdict.is_ok() && joined_live && ended_right) {
            failures.push(line);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
