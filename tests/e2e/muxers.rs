// SPDX-License-Identifier: MPL-2.0
//! One live pipeline per muxer, pushed through fmp4ingestsink to our receiver: each must give
//! a conformant ingest stream (docs/protocol.md §1, §2).

mod common;

use std::time::Duration;

use common::{audio_source, check_stream, run_pipeline, video_source};
use fmp4ingest_receiver::Receiver;

const SECONDS: u32 = 11;

fn push(muxer: &str, with_audio: bool, stream_id: &str) {
    push_video(muxer, &video_source(SECONDS, 60), with_audio, stream_id);
}

/// Pushes the pipeline and checks the stream; returns what the receiver recorded.
fn push_video(muxer: &str, video: &str, with_audio: bool, stream_id: &str) -> fmp4ingest_receiver::StreamView {
    let rx = Receiver::start().expect("receiver");
    let url = rx.url("live", stream_id);
    let mut desc = format!("{muxer} name=mux ! fmp4ingestsink location=\"{url}\" {video} ! queue ! mux.");
    if with_audio {
        desc.push_str(&format!(" {} ! queue ! mux.", audio_source(SECONDS)));
    }
    let result = run_pipeline(&desc, Duration::from_secs(60));
    assert!(result.eos && result.errors.is_empty(), "{muxer}: {result:?}");
    // A well-behaved muxer gives the sink nothing to warn about.
    assert!(result.warnings.is_empty(), "{muxer}: {:?}", result.warnings);
    let view = rx.stream(stream_id);
    let problems = check_stream(&view, 2.0);
    assert!(problems.is_empty(), "{muxer}: {problems:#?}");
    let p = view.media_posts()[0].clone();
    let tracks = if with_audio { 2 } else { 1 };
    assert_eq!(p.moov_tracks.len(), tracks, "{muxer}");
    assert_eq!(p.smil_tracks.len(), tracks, "{muxer}");
    // 11 s of media in 2 s fragments: at least 5 video fragments.
    let video = p.moov_tracks.iter().find(|t| t.handler == "vide").expect("video track");
    assert!(p.fragments.iter().filter(|f| f.track_id == video.track_id).count() >= 5, "{muxer}");
    assert!(rx.rejected().is_empty(), "{:?}", rx.rejected());
    view
}

#[test]
fn mp4mux_video_and_audio() {
    push("mp4mux fragment-duration=2000 streamable=true", true, "mp4mux");
}

#[test]
fn ismlmux_video_and_audio() {
    push("ismlmux fragment-duration=2000", true, "ismlmux");
}

#[test]
fn isofmp4mux_video_and_audio() {
    push("isofmp4mux fragment-duration=2000000000", true, "isofmp4mux");
}

#[test]
fn cmafmux_video_only() {
    push("cmafmux fragment-duration=2000000000", false, "cmafmux");
}

#[test]
fn qtmux_video_and_audio() {
    push("qtmux fragment-duration=2000 streamable=true", true, "qtmux");
}

#[test]
fn mp4mux_with_b_frames_keeps_a_contiguous_presentation_timeline() {
    // x264's veryfast preset uses B-frames: samples carry composition offsets, and tfxd must
    // give the first sample's presentation time.
    let video = format!(
        "videotestsrc is-live=true num-buffers={} pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 ! \
         x264enc key-int-max=60 speed-preset=veryfast bframes=2 bitrate=600 ! h264parse",
        SECONDS * 30
    );
    let view = push_video("mp4mux fragment-duration=2000 streamable=true", &video, true, "bframes");
    assert!(view.fragments().iter().any(|f| f.has_cto), "no composition offsets: the encoder made no B-frames");
}

#[test]
fn isofmp4mux_with_hevc_from_x265enc() {
    let video = format!(
        "videotestsrc is-live=true num-buffers={} pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 ! \
         x265enc key-int-max=60 speed-preset=ultrafast bitrate=600 ! h265parse",
        SECONDS * 30
    );
    let view = push_video("isofmp4mux fragment-duration=2000000000", &video, true, "hevc");
    let p = view.media_posts()[0];
    let v = p.moov_tracks.iter().find(|t| t.handler == "vide").unwrap();
    assert!(v.entry == "hvc1" || v.entry == "hev1", "{}", v.entry);
    // The HEVC brands in ftyp, and the codecs attribute next to FourCC in the manifest.
    let smil = p.smil_tracks.iter().find(|t| t.param("trackID") == Some(v.track_id.to_string().as_str())).unwrap();
    assert!(smil.param("codecs").is_some_and(|c| c.starts_with(&v.entry)), "{:?}", smil.params);
    let ftyp = &p.header_bytes[..u32::from_be_bytes(p.header_bytes[..4].try_into().unwrap()) as usize];
    assert!(ftyp.windows(4).any(|w| w == b"ccff") && ftyp.windows(4).any(|w| w == b"iso8"), "{ftyp:?}");
}

/// The README's gst-launch lines, exactly as documented (variables expanded), each against the
/// receiver: every one must give a conformant stream.
#[test]
fn the_readme_gst_launch_lines_push_conformant_streams() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme.split("## Trying it with gst-launch").nth(1).unwrap();
    let block = section.split("```sh").nth(2).unwrap().split("```").next().unwrap();
    let var = |name: &str| -> String {
        let line = block.lines().find(|l| l.starts_with(&format!("{name}="))).unwrap();
        line[name.len() + 1..].trim_matches('"').to_string()
    };
    let rx = Receiver::start().unwrap();
    let base = rx.url("live", "X").trim_end_matches("(X)").to_string();
    let (v, a) = (var("V"), var("A"));
    let lines: Vec<&str> = block.lines().filter(|l| l.starts_with("gst-launch-1.0 -e ")).collect();
    assert_eq!(lines.len(), 5, "{block}");
    for line in lines {
        let d = line["gst-launch-1.0 -e ".len()..].replace("$V", &v).replace("$A", &a).replace("$URL", &base);
        let id = d.split(&format!("{base}(")).nth(1).unwrap().split(')').next().unwrap().to_string();
        let r = run_pipeline(&d, Duration::from_secs(90));
        assert!(r.eos && r.errors.is_empty(), "{line}: {r:?}");
        let problems = check_stream(&rx.stream(&id), 2.0);
        assert!(problems.is_empty(), "{line}: {problems:#?}");
        assert!(rx.stream(&id).violations().is_empty());
    }
}
