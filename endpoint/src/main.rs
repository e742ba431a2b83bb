// SPDX-License-Identifier: MPL-2.0
//! `fmp4ingest-endpoint`: the local ingest endpoint on its own. It takes Smooth ingest and
//! CMAF ingest (DASH-IF Live Media Ingest, Interface-1) for any publishing point and stream, keeps deduplicated timelines, answers the heartbeats API, runs
//! programs, and plays back what it got as Smooth, DASH and HLS, live and recorded.
//!
//! It prints a status line per track every two seconds; `--verbose` also prints every log line
//! (refused requests, ingest requests started and ended) as it happens.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use fmp4ingest_endpoint::programs::{MAX_WINDOW, MIN_WINDOW};
use fmp4ingest_endpoint::{Endpoint, EndpointConfig, clock};

/// A local live ingest endpoint: Smooth and CMAF ingest in; heartbeats, programs, and playback
/// as Smooth, DASH and HLS out.
#[derive(Debug, Parser)]
#[command(name = "fmp4ingest-endpoint", version)]
struct Cli {
    /// The port to listen on (on the --bind address).
    #[arg(long, value_name = "N")]
    port: Option<u16>,
    /// The address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// How much media each track keeps: an ISO 8601 duration from PT5M to PT25H.
    #[arg(long, value_name = "DURATION", default_value = "PT30M", value_parser = window)]
    archive_window: Duration,
    /// Keep the archive on disk in DIR (and serve what an earlier run recorded there).
    #[arg(long, value_name = "DIR")]
    archive_dir: Option<PathBuf>,
    /// Megabytes of fragments each track holds in memory (older ones are read back from
    /// --archive-dir, or dropped without one).
    #[arg(long, value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    max_track_mb: u64,
    /// No status lines.
    #[arg(long)]
    quiet: bool,
    /// Every log line as it happens.
    #[arg(long)]
    verbose: bool,
}

/// An archive window: strict ISO 8601, PT5M to PT25H.
fn window(text: &str) -> Result<Duration, String> {
    let d = clock::parse_duration(text)?;
    if !(MIN_WINDOW..=MAX_WINDOW).contains(&d) {
        return Err(format!("{text} is outside PT5M to PT25H"));
    }
    Ok(d)
}

impl Cli {
    fn config(&self) -> EndpointConfig {
        let mut bind = self.bind;
        if let Some(p) = self.port {
            bind.set_port(p);
        }
        EndpointConfig {
            bind,
            archive_window: self.archive_window,
            archive_dir: self.archive_dir.clone(),
            max_track_bytes: self.max_track_mb << 20,
            verbose: self.verbose,
            ..EndpointConfig::default()
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let config = cli.config();
    let window = clock::format_duration(config.archive_window);
    let endpoint = match Endpoint::start(config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("fmp4ingest-endpoint: cannot start on {}: {e}", cli.config().bind);
            std::process::exit(1);
        }
    };
    let a = endpoint.addr();
    println!("fmp4ingest-endpoint on http://{a} (archive window {window})");
    println!("  ingest:     http://{a}/<name>.isml/Streams(<id>)              (Smooth)");
    println!("              http://{a}/<name>.isml as the publishing point    (CMAF, protocol=cmaf)");
    println!("  play:       gst-play-1.0 http://{a}/<name>.isml/Manifest    (Smooth)");
    println!("              gst-play-1.0 http://{a}/<name>.isml/.mpd        (DASH)");
    println!("              gst-play-1.0 http://{a}/<name>.isml/.m3u8       (HLS)");
    println!("  heartbeats: curl -X POST '{}'", endpoint.heartbeats_url("<name>"));
    println!("  programs:   http://{a}/api/Programs");
    for line in endpoint.log_lines() {
        println!("  {line}");
    }
    loop {
        std::thread::sleep(Duration::from_secs(2));
        if cli.quiet {
            continue;
        }
        for s in endpoint.status() {
            println!(
                "{}/{:<8} {:<5} from {:<10} {:>5} fragments {:>8.1} s kept  last {:>14} /{:<8} {:>7.0} kb/s  \
                 dup {} overlap {} gap {} past {}  requests {}{}{}",
                s.point,
                s.track,
                s.kind,
                s.streams.join(","),
                s.fragments,
                s.kept_seconds,
                s.last_time.map_or("-".into(), |t| t.to_string()),
                s.timescale,
                s.incoming_bitrate as f64 / 1000.0,
                s.duplicates,
                s.overlaps,
                s.discontinuities,
                s.past,
                s.requests,
                if s.headers > 0 {
                    format!(" (headers {}, 412 {}, refused {})", s.headers, s.precondition_failed, s.refused)
                } else {
                    String::new()
                },
                if s.live { "" } else { "  (recorded)" }
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, String> {
        Cli::try_parse_from(std::iter::once("fmp4ingest-endpoint").chain(args.iter().copied()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn flags_in_both_forms() {
        for args in [&["--port", "9000"][..], &["--port=9000"][..]] {
            assert_eq!(parse(args).unwrap().config().bind, "127.0.0.1:9000".parse().unwrap());
        }
        let c = parse(&["--bind", "0.0.0.0:1234", "--archive-window=PT25H", "--max-track-mb", "64"]).unwrap().config();
        assert_eq!((c.bind.port(), c.archive_window, c.max_track_bytes), (1234, Duration::from_secs(90_000), 64 << 20));
        assert_eq!(parse(&[]).unwrap().config().archive_window, Duration::from_secs(1800));
    }

    #[test]
    fn errors_name_the_flag_and_the_reason() {
        for (args, flag, why) in [
            (&["--port", "x"][..], "--port", "invalid digit"),
            (&["--archive-window", "PT.5S"][..], "--archive-window", "PT30M"),
            (&["--archive-window", "P1Y"][..], "--archive-window", "no fixed length"),
            (&["--archive-window", "PT4M"][..], "--archive-window", "outside PT5M to PT25H"),
            (&["--bind", "localhost"][..], "--bind", "invalid"),
            (&["--frobnicate"][..], "--frobnicate", "unexpected argument"),
            (&["--quiet", "--quiet"][..], "--quiet", "cannot be used multiple times"),
        ] {
            let e = parse(args).unwrap_err();
            assert!(e.contains(flag) && e.contains(why), "{args:?}: {e}");
        }
    }
}
