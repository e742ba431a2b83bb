// SPDX-License-Identifier: MPL-2.0
//! fmp4ingest's benchmarks. Figures go into BENCHMARKS.md, never into timed assertions.
//!
//!     fmp4ingest-bench [SUITE ...] [--out BENCHMARKS.md] [--latency-seconds N]
//!
//! Suites (all of them without one):
//! - `throughput`: fmp4ingestsink against curlhttpsink, whole processes, 150 MB from a file;
//! - `core`: the core's criterion micro-benchmarks and its payload-copy and allocation counts;
//! - `latency`: the send latency of a live push (5 minutes);
//! - `many`: 100 sinks in one process;
//! - `failover`: recovery after a reset, memory through a 10-minute outage, CPU per hour;
//! - `connect`: a POST's connection to its first body byte, with 10 000 unrelated sockets in the
//!   process (set `FMP4INGEST_BASELINE_SO` to an earlier build's `.so` to compare).
//! - `endpoint`: the local endpoint with a 25 h archive of 10 points on disk, 10 live pushes
//!   and 50 players: manifest and fragment latency, its CPU.
//! - `cmaf`: CMAF ingest: throughput against curlhttpsink and FFmpeg's CMAF push of the same
//!   file, the live latency (`--latency-seconds` too), recovery after a reset.
//!
//! Each suite replaces its own section of the output file. Heavy phases run in child
//! processes (this binary with an internal sub-command), so that RSS and CPU time belong to
//! the measured process alone. Run by `scripts/bench.sh`, which builds the release plugin.

mod cmaf;
mod connect;
mod endpoint;
mod failover;
mod latency;
mod many;
mod micro;
mod throughput;
mod util;

const SUITES: [&str; 8] = ["throughput", "core", "latency", "many", "failover", "connect", "endpoint", "cmaf"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("outage-child") => failover::outage_child(args.get(1).and_then(|m| m.parse().ok()).unwrap_or(10)),
        Some("push-file-child") => failover::push_file_child(&args[1], &args[2]),
        Some("discard-server") => util::discard_server(args.get(1).and_then(|p| p.parse().ok()).unwrap_or(0)),
        Some("many-child") => many::child(args.get(1).and_then(|p| p.parse().ok()).unwrap_or(0)),
        Some("connect-child") => connect::child(&args[1], args.get(2).and_then(|n| n.parse().ok()).unwrap_or(0)),
        Some("endpoint-push") => {
            let n = |i: usize| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
            endpoint::push_child(n(1) as u16, n(2), n(3))
        }
        Some("endpoint-players") => {
            let n = |i: usize| args.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            endpoint::players_child(n(1) as u16, n(2))
        }
        _ => run(&args),
    };
    if let Err(e) = result {
        eprintln!("fmp4ingest-bench: {e}");
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let value = |flag: &str| args.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone());
    let out = value("--out").unwrap_or_else(|| "BENCHMARKS.md".to_string());
    let latency_seconds = value("--latency-seconds").and_then(|s| s.parse().ok()).unwrap_or(300);
    let flag_values = [Some(out.clone()), value("--latency-seconds")];
    let mut chosen: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--") && !flag_values.iter().flatten().any(|v| v == a))
        .collect();
    if let Some(bad) = chosen.iter().find(|s| !SUITES.contains(s)) {
        return Err(format!("unknown suite {bad}; the suites are {}", SUITES.join(", ")));
    }
    if chosen.is_empty() {
        chosen = SUITES.to_vec();
    }
    util::init()?;
    for suite in chosen {
        println!("== {suite}");
        let section = match suite {
            "throughput" => throughput::section()?,
            "core" => micro::section()?,
            "latency" => latency::section(latency_seconds)?,
            "many" => many::section()?,
            "connect" => connect::section()?,
            "endpoint" => endpoint::section()?,
            "cmaf" => cmaf::section(latency_seconds)?,
            _ => failover::section()?,
        };
        println!("{section}");
        util::write_section(&out, suite, &section)?;
        println!("written to {out}");
    }
    Ok(())
}
