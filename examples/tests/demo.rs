// SPDX-License-Identifier: MPL-2.0
//! The README's main job, as a user runs it: the demo binary pushes a short live stream to the
//! local endpoint in each protocol and gives its verdict.

use std::process::Command;

fn demo(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fmp4ingest-demo")).args(args).output().expect("the demo runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn the_smooth_demo_ends_with_a_verdict_and_the_play_lines() {
    let (code, out) = demo(&["--seconds", "6"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("RESULT: OK - the endpoint took a conformant Smooth ingest stream"), "{out}");
    for format in ["/live.isml/Manifest", "/live.isml/.mpd", "/live.isml/.m3u8"] {
        assert!(out.contains("gst-play-1.0 http://127.0.0.1:") && out.contains(format), "{out}");
    }
    // The heartbeat view has a row per track.
    assert!(out.lines().filter(|l| l.contains(" video ") || l.contains(" audio ")).count() >= 2, "{out}");
}

#[test]
fn the_cmaf_demo_shows_each_tracks_requests_and_its_end() {
    let (code, out) = demo(&["--protocol", "cmaf", "--seconds", "6"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("RESULT: OK - the endpoint took a conformant CMAF ingest stream"), "{out}");
    assert!(out.contains("/live.isml (each track to <this>/Streams(<track>.cmfv|cmfa))"), "{out}");
    // A header on each track's connection, no 412 and no refusal on a clean run, the end seen.
    let tracks: Vec<&str> = out.lines().filter(|l| l.trim_start().contains(" requests: ")).collect();
    assert_eq!(tracks.len(), 2, "{out}");
    for t in tracks {
        assert!(
            t.contains(" 1 headers, 0 segments answered 412 (no header), 0 refused (400/415), ended with lmsg"),
            "{t}"
        );
    }
    assert!(out.contains("the sink: 0 disconnects, 0 segments resent after one"), "{out}");
}

#[test]
fn a_wrong_argument_is_named_with_the_usage() {
    let (code, out) = demo(&["--protocol", "rtmp"]);
    assert_eq!(code, 2);
    assert!(out.contains("--protocol needs smooth or cmaf"), "{out}");
}
