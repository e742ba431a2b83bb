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

use common::player::{Ingested, StopAt, first_pass, matches_from, play, plays_recorded};
use fmp4ingest_endpoint::{Endpoint, EndpointConfig};
use fmp4ingest_receiver::Receiver;

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
    let sinks = format!(
        "tee name=t t. ! queue ! fmp4ingestsink name=sink location=\"{endpoint_url}\" \
         t. ! queue ! fmp4ingestsink location=\"{receiver_url}\""
    );
    let d = common::av_into(&sinks, seconds);
    let p = common::init_pipeline(&d);
    let e = Encoded { video: common::count_buffers(&p, "vparse"), audio: common::count_buffers(&p, "aparse") };
    (p, e)
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
    let ing = Ingested::smooth(&rx, "av");
    let (video, audio) = (encoded.video.load(Ordering::Relaxed), encoded.audio.load(Ordering::Relaxed));
    assert_eq!(
        (ing.video_pts.len() as u64, ing.audio_frames.iter().sum::<u64>()),
        (video, audio),
        "the encoders' frames"
    );
    assert_eq!(video, 300);
    wait_recorded(&ep, "rec");
    let failures: Vec<String> =
        PLAYERS.iter().filter_map(|(d, f)| plays_recorded(d, &url(&ep, "rec", *f), &ing, video, audio).err()).collect();
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
    let ing = Ingested::smooth(&rx, "av");
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
