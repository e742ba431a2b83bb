// SPDX-License-Identifier: MPL-2.0
//! Throughput: 60 s of pre-muxed 20 Mbps 720p H.264 + AAC (mp4mux, 2 s fragments)
//! pushed from a file as fast as it goes to a discard server of ours on loopback, by
//! `gst-launch-1.0 filesrc ! fmp4ingestsink` and by `filesrc ! curlhttpsink
//! use-content-length=false` (a sender that only moves bytes), alternating, as whole
//! processes: wall time, CPU (user + system) and peak RSS as the kernel accounts them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fmp4ingest_receiver::discard::{self, DiscardCounters};

use crate::util::{ChildRun, machine, median, muxed_input, run_child};

pub const RUNS: usize = 7;

/// The input, made once (about 150 MB; x264 on noise, so that it reaches the rate).
pub fn input() -> Result<PathBuf, String> {
    muxed_input(
        "input-20mbps-720p-60s-mp4mux.mp4",
        "mp4mux fragment-duration=2000 streamable=true",
        1280,
        720,
        20_000,
        "snow",
    )
}

/// A directory holding only the release build of our plugin, and a registry for it, so that
/// every timed run loads a registry that is already up to date.
pub fn plugin_env() -> Result<Vec<(String, String)>, String> {
    let so = Path::new("target/release/libgstfmp4ingest.so");
    if !so.exists() {
        return Err(
            "target/release/libgstfmp4ingest.so is missing: cargo build --release -p gst-plugin-fmp4ingest".into()
        );
    }
    let dir = Path::new("target/bench/plugins");
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    std::fs::copy(so, dir.join("libgstfmp4ingest.so")).map_err(|e| e.to_string())?;
    let abs = |p: &Path| std::fs::canonicalize(p).map(|p| p.display().to_string()).map_err(|e| e.to_string());
    let env = vec![
        ("GST_PLUGIN_PATH".to_string(), abs(dir)?),
        ("GST_REGISTRY".to_string(), format!("{}/registry.bin", abs(Path::new("target/bench"))?)),
    ];
    // Warm the registry: the first run after a plugin changes rescans.
    let mut warm = Command::new("gst-inspect-1.0");
    warm.arg("fmp4ingestsink").envs(env.iter().cloned());
    run_child(&warm)?;
    Ok(env)
}

/// A discard server on a thread of this process (its cost is not the children's).
pub fn discard_server() -> Result<(u16, Arc<DiscardCounters>), String> {
    let counters = Arc::new(DiscardCounters::default());
    let c = counters.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let (l, a) = discard::bind(0).await.expect("bind");
            let _ = tx.send(a.port());
            discard::serve(l, c).await;
        });
    });
    let port = rx.recv_timeout(Duration::from_secs(5)).map_err(|e| e.to_string())?;
    Ok((port, counters))
}

/// One sender's runs.
pub struct Side {
    pub name: &'static str,
    pub runs: Vec<ChildRun>,
    /// Bytes at the server, per run.
    pub bytes: Vec<u64>,
}

impl Side {
    pub fn new(name: &'static str) -> Side {
        Side { name, runs: Vec::new(), bytes: Vec::new() }
    }
    pub fn wall(&self) -> f64 {
        median(&self.runs.iter().map(|r| r.wall).collect::<Vec<_>>())
    }
    pub fn cpu(&self) -> f64 {
        median(&self.runs.iter().map(|r| r.cpu).collect::<Vec<_>>())
    }
    pub fn rss_mib(&self) -> f64 {
        median(&self.runs.iter().map(|r| r.max_rss_kib as f64 / 1024.0).collect::<Vec<_>>())
    }
    pub fn peak_rss_mib(&self) -> f64 {
        self.runs.iter().map(|r| r.max_rss_kib).max().unwrap_or(0) as f64 / 1024.0
    }
    /// Its row of the table: sender, wall, CPU, peak RSS, bytes at the server.
    pub fn row(&self) -> String {
        format!(
            "| {} | {:.3} s | {:.3} s | {:.1} MiB (max {:.1}) | {:.1} MB |",
            self.name,
            self.wall(),
            self.cpu(),
            self.rss_mib(),
            self.peak_rss_mib(),
            self.bytes.first().copied().unwrap_or(0) as f64 / 1e6
        )
    }
}

/// A low-rate input (0.2 Mbps, 30 s): what the senders cost with hardly any media held.
fn low_rate_input() -> Result<PathBuf, String> {
    muxed_input(
        "input-0.2mbps-240p-60s-mp4mux.mp4",
        "mp4mux fragment-duration=2000 streamable=true",
        320,
        240,
        200,
        "ball",
    )
}

/// Runs every sender `runs` times on `file`, alternating; each must deliver the whole file
/// (but a sender named `fakesink`, the pipeline alone).
fn compare(file: &Path, senders: &[(&'static str, String)], runs: usize) -> Result<Vec<Side>, String> {
    let size = std::fs::metadata(file).map_err(|e| e.to_string())?.len();
    let env = plugin_env()?;
    let (_, counters) = DISCARD.get_or_init(|| discard_server().expect("a discard server"));
    let mut sides: Vec<Side> = senders.iter().map(|(n, _)| Side::new(n)).collect();
    for i in 0..runs {
        for (side, (_, desc)) in sides.iter_mut().zip(senders) {
            let before = counters.bytes.load(Ordering::Relaxed);
            let mut cmd = Command::new("gst-launch-1.0");
            cmd.arg("-q").args(desc.split(' ')).envs(env.iter().cloned());
            let run = run_child(&cmd)?;
            let got = counters.bytes.load(Ordering::Relaxed) - before;
            println!(
                "   run {} {:15} wall {:.3} s, cpu {:.3} s, peak RSS {:.1} MiB, {} bytes at the server",
                i + 1,
                side.name,
                run.wall,
                run.cpu,
                run.max_rss_kib as f64 / 1024.0,
                got
            );
            // The senders must have delivered the whole stream (ours adds the ingest boxes).
            if side.name != "fakesink" && got < size * 99 / 100 {
                return Err(format!("{} delivered {got} of {size} bytes", side.name));
            }
            side.runs.push(run);
            side.bytes.push(got);
        }
    }
    Ok(sides)
}

/// The discard server of this process, shared by every comparison.
static DISCARD: std::sync::OnceLock<(u16, Arc<DiscardCounters>)> = std::sync::OnceLock::new();

fn rows(sides: &[Side]) -> String {
    sides.iter().map(Side::row).collect::<Vec<_>>().join("\n")
}

pub fn section() -> Result<String, String> {
    let input = input()?;
    let low = low_rate_input()?;
    let size = std::fs::metadata(&input).map_err(|e| e.to_string())?.len();
    let port = DISCARD.get_or_init(|| discard_server().expect("a discard server")).0;
    let url = |id: &str| format!("http://127.0.0.1:{port}/live.isml/Streams({id})");
    // 64 KiB reads: with filesrc's default 4 KiB, curlhttpsink's per-buffer hand-over to its
    // transfer thread dominates (about 3 s); the reference figures imply larger reads.
    let senders = |file: &Path| {
        let src = format!("filesrc location={} blocksize=65536", file.display());
        [
            ("fmp4ingestsink", format!("{src} ! fmp4ingestsink location={}", url("ours"))),
            ("curlhttpsink", format!("{src} ! curlhttpsink location={} use-content-length=false", url("curl"))),
            ("fakesink", format!("{src} ! fakesink")),
        ]
    };
    let big = senders(&input);
    let sides = compare(&input, &big[..2], RUNS)?;
    let small = compare(&low, &senders(&low), 3)?;
    let (ours, curl) = (&sides[0], &sides[1]);
    let wall_ratio = ours.wall() / curl.wall();
    let cpu_ratio = ours.cpu() / curl.cpu();
    let low_size = std::fs::metadata(&low).map_err(|e| e.to_string())?.len() as f64;
    let (low_mb, low_mbps) = (low_size / 1e6, low_size * 8.0 / 60.0 / 1e6);
    let fixed_ours = small[0].rss_mib() - small[2].rss_mib();
    let fixed_curl = small[1].rss_mib() - small[2].rss_mib();
    let verdict = |ok: bool| if ok { "met" } else { "**not met**" };
    Ok(format!(
        "## Throughput\n\n{}\n\n\
         {:.1} MB of pre-muxed fMP4 (60 s of 20 Mbps 1280x720 H.264 + AAC from mp4mux, 2 s fragments) pushed from \
         a file as fast as it goes (`filesrc blocksize=65536`) to our discard server on loopback (it answers the \
         probe and `Expect: 100-continue`, discards the chunked body, answers at the end). Each sender is a whole \
         `gst-launch-1.0` process, timed by GNU time; {RUNS} runs each, alternating; medians:\n\n\
         | sender | wall | CPU (user + system) | peak RSS | bytes at the server |\n|---|---|---|---|---|\n{}\n\n\
         Wall ratio fmp4ingestsink / curlhttpsink: **{wall_ratio:.2}** (target: at most 0.51, the ratio before \
         the element opened its own connections: {}); CPU ratio: **{cpu_ratio:.2}**; peak RSS **{:.1} MiB** against curlhttpsink's {:.1} MiB (target: at most \
         curlhttpsink's: {}).\n\n\
         What the memory is: the same senders on a low-rate input ({low_mb:.1} MB, 60 s at {low_mbps:.2} Mb/s), \
         where hardly any media is held, \
         3 runs each, with the pipeline alone (`fakesink`) as the floor:\n\n\
         | sender | wall | CPU (user + system) | peak RSS | bytes at the server |\n|---|---|---|---|---|\n{}\n\n\
         The element's own cost over the bare pipeline is **{fixed_ours:.1} MiB** against curlhttpsink's \
         {fixed_curl:.1} MiB. At 20 Mbps the rest is media the protocol makes it keep: the last two fragments \
         of every track, for the resend after a reconnect (docs/protocol.md §3.4), 2 × 5 MB of video here, and \
         the fragment being sent; curlhttpsink keeps nothing and could resend nothing.\n\n\
         `{}` against `{}` (ports and paths as in this run).\n",
        machine(),
        size as f64 / 1e6,
        rows(&sides),
        verdict(wall_ratio <= 0.51),
        ours.peak_rss_mib(),
        curl.peak_rss_mib(),
        verdict(ours.peak_rss_mib() <= curl.peak_rss_mib()),
        rows(&small),
        big[0].1,
        big[1].1,
    ))
}
