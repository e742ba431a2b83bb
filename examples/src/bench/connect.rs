// SPDX-License-Identifier: MPL-2.0
//! Connect: the time from a POST's connection to its first body byte, in a process that holds
//! many unrelated sockets — what an element living in a media server sees. The sink must know
//! the POST's socket before it sends (its counters decide what is delivered); a sink that
//! searches the process's descriptors for it pays for every socket the host has.
//!
//! Each measurement is a child process (this binary, `connect-child`) that opens N unrelated
//! TCP connections on loopback (2 N descriptors), loads a build of the plugin from a `.so`,
//! and pushes a live stream to our receiver, which resets every POST after one fragment: about
//! 25 POSTs, each timed at the receiver from its request head to its first body byte. The
//! builds compared: this tree's, and, when `FMP4INGEST_BASELINE_SO` names one, an earlier
//! build's (the one before the sink owned its connections).

use std::process::Command;
use std::time::Duration;

use fmp4ingest_receiver::{Fault, FaultKind, Receiver};

use crate::util::{machine, median, percentile};

/// Unrelated sockets held in the process (as connections: twice as many descriptors).
const CONNECTIONS: [usize; 2] = [0, 5_000];

/// Child: holds `connections` loopback connections, loads the plugin from `so`, pushes, and
/// prints one line per POST: `post <microseconds from head to first body byte>`.
pub fn child(so: &str, connections: usize) -> Result<(), String> {
    raise_fd_limit(2 * connections + 1024)?;
    let held = hold_connections(connections)?;
    gst::init().map_err(|e| e.to_string())?;
    gst::Plugin::load_file(so).map_err(|e| format!("cannot load {so}: {e}"))?;
    let rx = Receiver::start().map_err(|e| e.to_string())?;
    rx.inject(Fault::new(FaultKind::Abort { min: 1, max: 1, reset: true }, Duration::from_secs(600)));
    let desc = format!(
        "videotestsrc is-live=true num-buffers=300 pattern=ball ! video/x-raw,width=160,height=120,framerate=50/1 ! \
         x264enc key-int-max=25 speed-preset=ultrafast bitrate=300 ! h264parse ! \
         mp4mux fragment-duration=500 streamable=true ! fmp4ingestsink location=\"{}\" fragment-duration=500000000 \
         retry-delay=10000000 retry-delay-max=20000000",
        rx.url("live", "c")
    );
    crate::util::run_pipeline(&desc, Duration::from_secs(60))?;
    for p in rx.stream("c").media_posts() {
        if let Some(first) = p.first_byte_at {
            println!("post {}", (first - p.started).as_micros());
        }
    }
    drop(held);
    Ok(())
}

fn raise_fd_limit(want: usize) -> Result<(), String> {
    // SAFETY: getrlimit/setrlimit read and write the struct they are given.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err("getrlimit failed".into());
    }
    let want = want as libc::rlim_t;
    if lim.rlim_cur < want {
        lim.rlim_cur = want.min(lim.rlim_max);
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 || lim.rlim_cur < want {
            return Err(format!("cannot hold {want} descriptors (hard limit {})", lim.rlim_max));
        }
    }
    Ok(())
}

/// `n` established loopback connections, both ends held.
fn hold_connections(n: usize) -> Result<Vec<std::net::TcpStream>, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut held = Vec::with_capacity(2 * n);
    for _ in 0..n {
        held.push(std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?);
        held.push(listener.accept().map_err(|e| e.to_string())?.0);
    }
    Ok(held)
}

/// Runs the child for a build and a socket count; returns the times in ms.
fn measure(so: &str, connections: usize) -> Result<Vec<f64>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out =
        Command::new(exe).args(["connect-child", so, &connections.to_string()]).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("connect-child failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let mut ms: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("post ").and_then(|v| v.parse::<f64>().ok()))
        .map(|us| us / 1000.0)
        .collect();
    ms.sort_by(f64::total_cmp);
    Ok(ms)
}

pub fn section() -> Result<String, String> {
    let ours = std::fs::canonicalize("target/release/libgstfmp4ingest.so")
        .map_err(|e| format!("target/release/libgstfmp4ingest.so: {e}"))?;
    let mut builds = vec![("this tree".to_string(), ours.display().to_string())];
    if let Ok(base) = std::env::var("FMP4INGEST_BASELINE_SO") {
        builds.push(("baseline (descriptor search in /proc)".to_string(), base));
    }
    let mut rows = String::new();
    for (name, so) in &builds {
        for n in CONNECTIONS {
            println!("   {name}, {} unrelated sockets", 2 * n);
            let ms = measure(so, n)?;
            rows.push_str(&format!(
                "| {name} | {} | {} | {:.2} | {:.2} | {:.2} |\n",
                2 * n,
                ms.len(),
                median(&ms),
                percentile(&ms, 0.9),
                ms.last().copied().unwrap_or(f64::NAN)
            ));
        }
    }
    Ok(format!(
        "## Connect with many sockets in the process\n\n{}\n\n\
         From a POST's request head to its first body byte, at our receiver, with unrelated loopback \
         connections held open in the element's process (a media server's sockets). Each row is one child \
         process: a live 160x120 H.264 push (mp4mux, 0.5 s fragments) that the receiver resets after each \
         fragment, so that the sink opens a new POST about every half second. The sink may send once it \
         knows the POST's socket: this tree opens the connection itself and has it at once; the baseline \
         searched `/proc/net/tcp*` and every entry of `/proc/self/fd` for it.\n\n\
         | build | unrelated sockets | POSTs | median (ms) | p90 (ms) | max (ms) |\n|---|---:|---:|---:|---:|---:|\n{rows}\n",
        machine()
    ))
}
