// SPDX-License-Identifier: MPL-2.0
//! The `fmp4ingest-endpoint` command line as a user meets it: `--help` on stdout with exit
//! status 0, a bad flag or value named on stderr with exit status 2, and a started endpoint
//! that prints where it plays.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn endpoint() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fmp4ingest-endpoint"))
}

#[test]
fn help_goes_to_stdout_and_exits_0() {
    let out = endpoint().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in ["--port", "--bind", "--archive-window", "--archive-dir", "--max-track-mb", "--quiet", "--verbose"] {
        assert!(text.contains(flag), "{flag} in {text}");
    }
    assert!(out.stderr.is_empty());
}

#[test]
fn bad_flags_and_values_are_named_and_exit_2() {
    for (args, needle) in [
        (&["--port", "http"][..], "--port"),
        (&["--port=70000"][..], "--port"),
        (&["--archive-window", "PT.5S"][..], "--archive-window"),
        (&["--archive-window=P1Y"][..], "no fixed length"),
        (&["--archive-window", "PT26H"][..], "outside PT5M to PT25H"),
        (&["--max-track-mb", "0"][..], "--max-track-mb"),
        (&["--frobnicate"][..], "--frobnicate"),
    ] {
        let out = endpoint().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.lines().next().map(|l| l.starts_with("error:")), Some(true), "{err}");
    }
}

#[test]
fn it_starts_on_the_port_given_and_prints_the_play_lines() {
    // Port 0: any free port, in either form of the flag.
    for args in [&["--port", "0", "--quiet"][..], &["--port=0", "--quiet"][..]] {
        let mut child = endpoint().args(args).stdout(Stdio::piped()).spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        assert!(first.starts_with("fmp4ingest-endpoint on http://127.0.0.1:"), "{first}");
        let rest: Vec<String> = lines.by_ref().take(6).map(|l| l.unwrap()).collect();
        for suffix in ["/Manifest", "/.mpd", "/.m3u8"] {
            assert!(rest.iter().any(|l| l.contains("gst-play-1.0") && l.contains(suffix)), "{suffix} in {rest:?}");
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
