// SPDX-License-Identifier: MPL-2.0
//! What every benchmark needs: GStreamer with our plugins, pipelines run to the end, child
//! processes measured by the kernel (wall time, CPU, peak RSS), percentiles, a discard server
//! and the sections of BENCHMARKS.md.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use fmp4ingest_receiver::discard::{self, DiscardCounters};
use gst::prelude::*;

pub fn init() -> Result<(), String> {
    gst::init().map_err(|e| e.to_string())?;
    gstfmp4ingest::plugin_register_static().map_err(|e| e.to_string())?;
    gstfmp4::plugin_register_static().map_err(|e| e.to_string())
}

/// Replaces (or appends) the section between `<!-- name:begin -->` and `<!-- name:end -->`.
pub fn write_section(path: &str, name: &str, body: &str) -> Result<(), String> {
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let old = std::fs::read_to_string(path).unwrap_or_else(|_| {
        "# Benchmarks\n\nFigures measured by `scripts/bench.sh` (`fmp4ingest-bench`); each section says how.\n\n"
            .to_string()
    });
    let block = format!("{begin}\n{body}{end}\n");
    let new = match (old.find(&begin), old.find(&end)) {
        (Some(a), Some(b)) if b > a => {
            format!("{}{}{}", &old[..a], block, &old[b + end.len()..].trim_start_matches('\n'))
        }
        _ => format!("{}\n{}", old.trim_end(), "\n".to_string() + &block),
    };
    std::fs::write(path, new).map_err(|e| format!("cannot write {path}: {e}"))
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "Measured {date} on {cpu}, {cores} cores, Linux {}, {}, release build of the element.",
        kernel.trim(),
        gst::version_string()
    )
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

pub fn run_pipeline(description: &str, limit: Duration) -> Result<(), String> {
    let p = gst::parse::launch(description).map_err(|e| format!("{e}: {description}"))?;
    let p = p.downcast::<gst::Pipeline>().map_err(|_| "not a pipeline")?;
    let bus = p.bus().ok_or("no bus")?;
    p.set_state(gst::State::Playing).map_err(|e| e.to_string())?;
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_nseconds(limit.as_nanos() as u64),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    let _ = p.set_state(gst::State::Null);
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => Ok(()),
        Some(gst::MessageView::Error(e)) => Err(format!("{} ({:?})", e.error(), e.debug())),
        _ => Err("timed out".into()),
    }
}

pub fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// Child: serves a discard server on 127.0.0.1:`port` until killed, printing its port.
pub fn discard_server(port: u16) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let (l, a) = discard::bind(port).await.map_err(|e| e.to_string())?;
        println!("{}", a.port());
        use std::io::Write;
        let _ = std::io::stdout().flush();
        discard::serve(l, Arc::new(DiscardCounters::default())).await;
        Ok(())
    })
}

pub fn child_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// Starts `fmp4ingest-bench discard-server` as a child; returns it and its port.
pub fn start_discard_child() -> Result<(std::process::Child, u16), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut server = Command::new(exe)
        .arg("discard-server")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut port = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(server.stdout.take().ok_or("no stdout")?)
        .read_line(&mut port)
        .map_err(|e| e.to_string())?;
    let port = port.trim().parse().map_err(|_| format!("discard server said {port:?}"))?;
    Ok((server, port))
}

/// How a child process ran, as the kernel accounts it.
#[derive(Debug, Clone, Copy)]
pub struct ChildRun {
    pub wall: f64,
    /// User + system CPU seconds.
    pub cpu: f64,
    pub max_rss_kib: u64,
}

/// Runs `cmd` to its end under GNU time (`/usr/bin/time`, Debian's `time`); fails unless it
/// exits 0. Not measured by this process itself: a child forked from a big process starts
/// with the parent's resident pages in its peak RSS, which GNU time's own small child does not.
pub fn run_child(cmd: &Command) -> Result<ChildRun, String> {
    let report = std::env::temp_dir().join(format!("fmp4ingest-bench-time-{}", std::process::id()));
    let mut timed = Command::new("/usr/bin/time");
    timed.arg("-f").arg("%e %U %S %M").arg("-o").arg(&report).arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            timed.env(k, v);
        }
    }
    timed.stdout(std::process::Stdio::null());
    let st = timed.status().map_err(|e| format!("cannot start /usr/bin/time (Debian package time): {e}"))?;
    let text = std::fs::read_to_string(&report).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&report);
    if !st.success() {
        return Err(format!("{cmd:?} failed: {text}"));
    }
    let f: Vec<f64> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    let [wall, user, sys, rss] = f[..] else { return Err(format!("unexpected GNU time output {text:?}")) };
    Ok(ChildRun { wall, cpu: user + sys, max_rss_kib: rss as u64 })
}

/// The median of some values.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    percentile(&s, 0.5)
}

/// Generates `path` with a pipeline (ending in `filesink location=PATH`) unless it exists.
pub fn ensure_file(path: &std::path::Path, description: &str, limit: Duration) -> Result<(), String> {
    if path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    println!("   generating {}", path.display());
    let tmp = path.with_extension("part");
    run_pipeline(&description.replace("PATH", &tmp.display().to_string()), limit)?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
}

/// 60 s of H.264 (`width`x`height`, 30 fps, 2 s GOP, `kbps`, videotestsrc `pattern`) and AAC,
/// muxed by `muxer` (with its properties, named `mux`) into `target/bench/<name>`, made once.
pub fn muxed_input(
    name: &str,
    muxer: &str,
    width: u32,
    height: u32,
    kbps: u32,
    pattern: &str,
) -> Result<PathBuf, String> {
    let path = PathBuf::from("target/bench").join(name);
    ensure_file(
        &path,
        &format!(
            "{muxer} name=mux ! filesink location=PATH \
             videotestsrc num-buffers=1800 pattern={pattern} ! video/x-raw,width={width},height={height},framerate=30/1 ! \
             x264enc key-int-max=60 speed-preset=ultrafast bitrate={kbps} ! h264parse ! queue ! mux. \
             audiotestsrc num-buffers=2813 samplesperbuffer=1024 ! audio/x-raw,rate=48000,channels=2 ! \
             avenc_aac ! aacparse ! queue ! mux."
        ),
        Duration::from_secs(1800),
    )?;
    Ok(path)
}
