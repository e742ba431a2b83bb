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

pub fn section() -> Result<String, String> {
    let input = input()?;
    let size = std::fs::metadata(&input).map_err(|e| e.to_string())?.len();
    let env = plugin_env()?;
    let (port, counters) = discard_server()?;
    let url = |id: &str| format!("http://127.0.0.1:{port}/live.isml/Streams({id})");
    let file = input.display().to_string();
    // 64 KiB reads: with filesrc's default 4 KiB, curlhttpsink's per-buffer hand-over to its
    // transfer thread dominates (about 3 s); the reference figures imply larger reads.
    let src = format!("filesrc location={file} blocksize=65536");
    let ours_desc = format!("{src} ! fmp4ingestsink location={}", url("ours"));
    let curl_desc = format!("{src} ! curlhttpsink location={} use-content-length=false", url("curl"));
    let mut sides = [Side::new("fmp4ingestsink"), Side::new("curlhttpsink")];
    for i in 0..RUNS {
        for (side, desc) in sides.iter_mut().zip([&ours_desc, &curl_desc]) {
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
            // Both must have delivered the whole stream (ours adds the ingest boxes).
            if got < size * 99 / 100 {
                return Err(format!("{} delivered {got} of {size} bytes", side.name));
            }
            side.runs.push(run);
            side.bytes.push(got);
        }
    }
    let [ours, curl] = &sides;
    let rows: Vec<String> = sides.iter().map(Side::row).collect();
    let wall_ratio = ours.wall() / curl.wall();
    let cpu_ratio = ours.cpu() / curl.cpu();
    let verdict = |ok: bool| if ok { "met" } else { "**not met**" };
    Ok(format!(
        "## Throughput\n\n{}\n\n\
         {:.1} MB of pre-muxed fMP4 (60 s of 20 Mbps 1280x720 H.264 + AAC from mp4mux, 2 s fragments) pushed from \
         a file as fast as it goes (`filesrc blocksize=65536`) to our discard server on loopback (it answers the \
         probe and `Expect: 100-continue`, discards the chunked body, answers at the end). Each sender is a whole \
         `gst-launch-1.0` process, timed by GNU time; {RUNS} runs each, alternating; medians:\n\n\
         | sender | wall | CPU (user + system) | peak RSS | bytes at the server |\n|---|---|---|---|---|\n{}\n\n\
         Wall ratio fmp4ingestsink / curlhttpsink: **{wall_ratio:.2}** (target ≤ 1.0: {}); CPU ratio: \
         **{cpu_ratio:.2}**; peak RSS of fmp4ingestsink's run: **{:.1} MiB** (target ≤ 32 MiB: {}).\n\n\
         `{ours_desc}` against `{curl_desc}` (ports and paths as in this run).\n",
        machine(),
        size as f64 / 1e6,
        rows.join("\n"),
        verdict(wall_ratio <= 1.0),
        ours.peak_rss_mib(),
        verdict(ours.peak_rss_mib() <= 32.0),
    ))
}
