//! A local Smooth ingest endpoint to try pipelines against (issue 8): it takes ingest for any
//! publishing point and stream, keeps deduplicated timelines, answers the heartbeats API,
//! serves what it got as a Smooth origin (live and recorded) and runs programs.
//!
//!     fmp4ingest-endpoint [--port N] [--bind ADDR] [--archive-window PT30M]
//!                         [--archive-dir DIR] [--max-track-mb N] [--quiet] [--verbose]
//!
//! It prints a status line per track every two seconds; `--verbose` also prints every log line
//! (requests refused, POSTs started and ended) as it happens.

use std::time::Duration;

use fmp4ingest_receiver::endpoint::clock::parse_duration;
use fmp4ingest_receiver::endpoint::programs::{MAX_WINDOW, MIN_WINDOW};
use fmp4ingest_receiver::endpoint::{Endpoint, EndpointConfig};

const USAGE: &str = "usage: fmp4ingest-endpoint [--port N] [--bind ADDR] [--archive-window PT5M..PT25H] \
                     [--archive-dir DIR] [--max-track-mb N] [--quiet] [--verbose]";

fn options() -> Result<(EndpointConfig, bool), String> {
    let mut c = EndpointConfig::default();
    let mut quiet = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value; {USAGE}"));
        match a.as_str() {
            "--port" => {
                let p: u16 = value()?.parse().map_err(|_| "--port needs a number".to_string())?;
                c.bind.set_port(p);
            }
            "--bind" => {
                let v = value()?;
                c.bind = v.parse().map_err(|_| format!("--bind {v}: not an address such as 127.0.0.1:8080"))?
            }
            "--archive-window" => {
                let v = value()?;
                let d = parse_duration(&v).ok_or(format!("--archive-window {v}: not an ISO 8601 duration"))?;
                if !(MIN_WINDOW..=MAX_WINDOW).contains(&d) {
                    return Err(format!("--archive-window {v}: outside PT5M to PT25H"));
                }
                c.archive_window = d;
            }
            "--archive-dir" => c.archive_dir = Some(value()?.into()),
            "--max-track-mb" => {
                c.max_track_bytes =
                    value()?.parse::<u64>().map_err(|_| "--max-track-mb needs a number".to_string())? << 20
            }
            "--quiet" => quiet = true,
            "--verbose" => c.verbose = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unexpected argument {other:?}; {USAGE}")),
        }
    }
    Ok((c, quiet))
}

fn main() {
    let (config, quiet) = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let window = config.archive_window;
    let endpoint = match Endpoint::start(config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot start the endpoint: {e}");
            std::process::exit(1);
        }
    };
    let a = endpoint.addr();
    println!("fmp4ingest-endpoint on http://{a} (archive window {window:?})");
    println!("  ingest:     http://{a}/<name>.isml/Streams(<id>)");
    println!("  play:       gst-play-1.0 http://{a}/<name>.isml/Manifest");
    println!("  heartbeats: curl -X POST '{}'", endpoint.heartbeats_url("<name>"));
    println!("  programs:   http://{a}/api/Programs");
    loop {
        std::thread::sleep(Duration::from_secs(2));
        if quiet {
            continue;
        }
        for s in endpoint.status() {
            println!(
                "{}/{} {:<8} {:<5} {:>4} fragments {:>7.1} s kept  last {:>14} /{:<8} {:>7.0} kb/s  \
                 dup {} overlap {} gap {} past {}{}",
                s.point,
                s.stream,
                s.track,
                s.kind,
                s.fragments,
                s.kept_seconds,
                s.last_time.map_or("-".into(), |t| t.to_string()),
                s.timescale,
                s.incoming_bitrate as f64 / 1000.0,
                s.duplicates,
                s.overlaps,
                s.discontinuities,
                s.past,
                if s.live { "" } else { "  (ended)" }
            );
        }
    }
}
