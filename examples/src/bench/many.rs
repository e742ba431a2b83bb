// SPDX-License-Identifier: MPL-2.0
//! Many sinks: 100 fmp4ingestsink instances in one process, each pushing a live
//! 2 Mbps stream to the discard server (another process) for 60 s: the process's CPU time per
//! stream and in all, and the threads it runs.
//!
//! Encoding 100 live streams would take far more than the sinks, so the streams are a
//! pre-muxed 2 Mbps fMP4 (isofmp4mux, 2 s fragments) fed live: one feeder thread hands every
//! fragment, in real time, to 100 `appsrc is-live=true do-timestamp=true` — each a GStreamer
//! streaming thread, as any live source has. What the feeder costs (handing out buffer
//! references) is part of the figure, so the sinks cost at most that.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use gst::prelude::*;

use crate::util::{init, machine, muxed_input, start_discard_child};

pub const SINKS: usize = 100;
pub const SECONDS: u64 = 60;

pub(crate) fn input() -> Result<PathBuf, String> {
    // Noise, so that x264 reaches the rate (a moving ball compresses to about 0.4 Mbps).
    muxed_input(
        "input-2mbps-60s-isofmp4mux-snow.mp4",
        "isofmp4mux fragment-duration=2000000000",
        640,
        360,
        2000,
        "snow",
    )
}

/// The file as the muxer's pushes: the header (ftyp, moov), then each moof + mdat.
pub(crate) fn units(data: &[u8]) -> Result<(Vec<u8>, Vec<Vec<u8>>), String> {
    let mut header = Vec::new();
    let mut fragments = Vec::new();
    let mut pending = Vec::new();
    let mut pos = 0;
    while pos + 8 <= data.len() {
        let size = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        if size < 8 || pos + size > data.len() {
            return Err("a truncated box in the input".into());
        }
        let b = &data[pos..pos + size];
        match &b[4..8] {
            b"ftyp" | b"moov" => header.extend_from_slice(b),
            b"moof" => pending = b.to_vec(),
            b"mdat" => {
                pending.extend_from_slice(b);
                fragments.push(std::mem::take(&mut pending));
            }
            _ => {}
        }
        pos += size;
    }
    Ok((header, fragments))
}

fn self_cpu() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// The process's threads by name (`/proc/self/task/*/comm`), the appsrc threads together.
fn threads() -> Vec<(String, usize)> {
    let mut names: std::collections::BTreeMap<String, usize> = Default::default();
    if let Ok(d) = std::fs::read_dir("/proc/self/task") {
        for t in d.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            // The appsrc threads are named after their element (src0:src, src1:src, ...).
            let comm = comm.trim();
            let name = match comm.strip_prefix("src").and_then(|r| r.split_once(':')) {
                Some((n, rest)) if n.chars().all(|c| c.is_ascii_digit()) => format!("src<n>:{rest}"),
                _ => comm.to_string(),
            };
            *names.entry(name).or_default() += 1;
        }
    }
    names.into_iter().collect()
}

/// Child: `many-child <port>`; prints `cpu`, `threads`, `thread <name> <count>` and `sent` lines.
pub fn child(port: u16) -> Result<(), String> {
    init()?;
    let data = std::fs::read(input()?).map_err(|e| e.to_string())?;
    let (header, fragments) = units(&data)?;
    let fragment_ns = 2_000_000_000u64;
    let mut d = String::new();
    for i in 0..SINKS {
        d.push_str(&format!(
            "appsrc name=src{i} is-live=true do-timestamp=true format=time \
             caps=video/quicktime,variant=iso-fragmented ! \
             fmp4ingestsink name=sink{i} location=http://127.0.0.1:{port}/live.isml/Streams(s{i}) "
        ));
    }
    let p = gst::parse::launch(&d).map_err(|e| e.to_string())?.downcast::<gst::Pipeline>().map_err(|_| "pipeline")?;
    let srcs: Vec<gst::Element> = (0..SINKS).map(|i| p.by_name(&format!("src{i}")).unwrap()).collect();
    let bus = p.bus().ok_or("bus")?;
    p.set_state(gst::State::Playing).map_err(|e| e.to_string())?;
    let push = |buf: &gst::Buffer| {
        for s in &srcs {
            let _ = s.emit_by_name::<gst::FlowReturn>("push-buffer", &[buf]);
        }
    };
    let cpu0 = self_cpu();
    let start = Instant::now();
    push(&gst::Buffer::from_slice(header));
    let mut mid = Vec::new();
    let n = fragments.len().min((SECONDS * 1_000_000_000 / fragment_ns) as usize);
    for (k, f) in fragments.into_iter().take(n).enumerate() {
        // Fragment k is complete once its 2 s have passed, as from a live muxer.
        let due = start + Duration::from_nanos((k as u64 + 1) * fragment_ns);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        push(&gst::Buffer::from_slice(f));
        if k == n / 2 {
            mid = threads();
        }
    }
    for s in &srcs {
        let _ = s.emit_by_name::<gst::FlowReturn>("end-of-stream", &[]);
    }
    let msg =
        bus.timed_pop_filtered(gst::ClockTime::from_seconds(60), &[gst::MessageType::Eos, gst::MessageType::Error]);
    let cpu = self_cpu() - cpu0;
    let wall = start.elapsed().as_secs_f64();
    let sent: u64 = (0..SINKS)
        .map(|i| {
            p.by_name(&format!("sink{i}"))
                .map(|s| s.property::<gst::Structure>("stats").get::<u64>("fragments-sent").unwrap_or(0))
                .unwrap_or(0)
        })
        .sum();
    let _ = p.set_state(gst::State::Null);
    if let Some(gst::MessageView::Error(e)) = msg.as_ref().map(|m| m.view()) {
        return Err(format!("{} ({:?})", e.error(), e.debug()));
    }
    println!("cpu {cpu:.3}");
    println!("wall {wall:.3}");
    println!("fragments {n}");
    println!("sent {sent}");
    println!("threads {}", mid.iter().map(|(_, c)| c).sum::<usize>());
    for (name, c) in mid {
        println!("thread {name} {c}");
    }
    Ok(())
}

pub fn section() -> Result<String, String> {
    input()?;
    let (mut server, port) = start_discard_child()?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    println!("   {SINKS} sinks for {SECONDS} s");
    let out = Command::new(exe).args(["many-child", &port.to_string()]).output().map_err(|e| e.to_string());
    let _ = server.kill();
    let _ = server.wait();
    let out = out?;
    if !out.status.success() {
        return Err(format!("many-child failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |name: &str| -> f64 {
        text.lines().find_map(|l| l.strip_prefix(&format!("{name} ")).and_then(|v| v.parse().ok())).unwrap_or(f64::NAN)
    };
    let (cpu, wall, fragments, sent, threads) =
        (field("cpu"), field("wall"), field("fragments"), field("sent"), field("threads"));
    let names: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("thread "))
        .map(|l| {
            let (n, c) = l.rsplit_once(' ').unwrap_or((l, "?"));
            format!("`{n}` × {c}")
        })
        .collect();
    let share = cpu / wall * 100.0;
    Ok(format!(
        "## Many sinks\n\n{}\n\n\
         {SINKS} fmp4ingestsink in one process, each pushing a live 2 Mbps H.264 + AAC stream (a pre-muxed \
         isofmp4mux file fed in real time through `appsrc is-live=true`, one fragment every 2 s) to our discard \
         server in another process, for {wall:.0} s; {sent} of {} fragments sent. CPU of the whole process (feeder \
         included): **{cpu:.2} s**, that is **{share:.1} % of one core** for all {SINKS} streams (target < 25 %: {}), \
         {:.3} % per stream.\n\n\
         Threads while streaming: **{threads}** — {}. Besides GStreamer's own (one streaming thread per live \
         source, its clock), the sinks share the process-wide runtime (`fmp4ingest-rt`, 2 threads): no thread per \
         sink.\n",
        machine(),
        fragments * 2.0 * SINKS as f64,
        if share < 25.0 { "met" } else { "**not met**" },
        share / SINKS as f64,
        names.join(", ")
    ))
}
