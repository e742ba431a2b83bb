// SPDX-License-Identifier: MPL-2.0
//! Failover (docs/protocol.md §3):
//! - recovery: time from a server reset to the first bytes of the new POST and to its first
//!   resent fragment, on loopback, over many resets of a live stream;
//! - outage memory: peak RSS of a process pushing 10 minutes of live 6 Mbps media while the
//!   server refuses every connection (10 real minutes), with RSS along the way;
//! - CPU: CPU time of a process that pushes 60 s of 6 Mbps fMP4 from a file through the
//!   element to a discard server, scaled to an hour of media.

use std::process::Command;
use std::time::{Duration, Instant};

use fmp4ingest_receiver::{Fault, FaultKind, Receiver};
use gst::prelude::*;

use crate::util::{
    child_cpu_seconds, init, machine, muxed_input, percentile, rss_kib, run_pipeline, start_discard_child,
};

/// All three; the section of BENCHMARKS.md.
pub fn section() -> Result<String, String> {
    println!("== recovery after a reset (live stream, loopback)");
    let recovery = recovery()?;
    println!("{recovery}");
    println!("== peak RSS through a 10-minute outage at 6 Mbps");
    let outage = outage()?;
    println!("{outage}");
    println!("== CPU time per hour of media (6 Mbps, file to discard server)");
    let cpu = cpu()?;
    println!("{cpu}");
    Ok(format!(
        "## Failover\n\n{}\n\n### Recovery after a reset\n\n{recovery}\n\n### Memory through a 10-minute \
         outage\n\n{outage}\n\n### CPU in steady state\n\n{cpu}\n",
        machine()
    ))
}

/// Resets every 4 new fragments of a 60 s live stream; for each, the time until the new POST's
/// first body byte (the header) and until its first resent fragment is in.
fn recovery() -> Result<String, String> {
    let rx = Receiver::start().map_err(|e| e.to_string())?;
    rx.inject(Fault::new(FaultKind::Abort { min: 4, max: 4, reset: true }, Duration::from_secs(600)));
    let url = rx.url("live", "bench");
    let d = format!(
        "isofmp4mux name=mux fragment-duration=2000000000 ! fmp4ingestsink location=\"{url}\" \
         videotestsrc is-live=true num-buffers=1800 ! video/x-raw,width=640,height=360,framerate=30/1 ! \
         x264enc key-int-max=60 speed-preset=ultrafast bitrate=2000 ! h264parse ! queue ! mux. \
         audiotestsrc is-live=true num-buffers=2813 samplesperbuffer=1024 ! audio/x-raw,rate=48000,channels=2 ! \
         avenc_aac ! aacparse ! queue ! mux."
    );
    run_pipeline(&d, Duration::from_secs(180))?;
    let posts = rx.stream("bench").media_posts().into_iter().cloned().collect::<Vec<_>>();
    let mut first_byte = Vec::new();
    let mut first_fragment = Vec::new();
    for (i, p) in posts.iter().enumerate() {
        let (Some(at), Some(next)) = (p.fault_at, posts.get(i + 1)) else { continue };
        if let Some(b) = next.first_byte_at {
            first_byte.push((b - at).as_secs_f64() * 1000.0);
        }
        if let Some(f) = next.fragments.first().and_then(|f| f.arrived) {
            first_fragment.push((f - at).as_secs_f64() * 1000.0);
        }
    }
    first_byte.sort_by(f64::total_cmp);
    first_fragment.sort_by(f64::total_cmp);
    Ok(format!(
        "{} resets of a live 2 Mbps + AAC stream (isofmp4mux, 2 s fragments), the receiver resetting the POST \
         after every 4 new fragments; defaults (reprobe on, first retry at once). Time from the reset to:\n\n\
         | | median | p90 | max |\n|---|---|---|---|\n\
         | first byte of the new POST (probe and connection included) | {:.1} ms | {:.1} ms | {:.1} ms |\n\
         | first resent fragment complete at the receiver | {:.1} ms | {:.1} ms | {:.1} ms |\n\n\
         Target: the first resent byte within 50 ms of the connection being up. Counted from the \
         reset instead (the backoff, the probe and the new connection included), the first resent fragment was \
         complete at the receiver within {:.1} ms every time: {}.",
        first_byte.len(),
        percentile(&first_byte, 0.5),
        percentile(&first_byte, 0.9),
        first_byte.last().copied().unwrap_or(f64::NAN),
        percentile(&first_fragment, 0.5),
        percentile(&first_fragment, 0.9),
        first_fragment.last().copied().unwrap_or(f64::NAN),
        first_fragment.last().copied().unwrap_or(f64::NAN),
        if first_fragment.last().is_some_and(|m| *m < 50.0) { "met" } else { "**not met**" },
    ))
}

/// Child: pushes `minutes` of live 6 Mbps media (in real time: a non-live source would make the
/// sink wait for room instead of dropping) to a port that refuses every connection; prints
/// "rss <media s> <KiB>" along the way and "peak <KiB>" at the end.
pub fn outage_child(minutes: u64) -> Result<(), String> {
    init()?;
    let held = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = held.local_addr().map_err(|e| e.to_string())?.port();
    drop(held);
    let frames = minutes * 60 * 30;
    let d = format!(
        "videotestsrc is-live=true num-buffers={frames} pattern=snow ! video/x-raw,width=640,height=360,framerate=30/1 ! \
         x264enc key-int-max=60 speed-preset=ultrafast bitrate=6000 ! h264parse ! \
         isofmp4mux fragment-duration=2000000000 ! fmp4ingestsink name=sink eos-timeout=1000000000 \
         location=http://127.0.0.1:{port}/live.isml/Streams(outage)"
    );
    let p = gst::parse::launch(&d).map_err(|e| e.to_string())?.downcast::<gst::Pipeline>().map_err(|_| "pipeline")?;
    let bus = p.bus().ok_or("bus")?;
    p.set_state(gst::State::Playing).map_err(|e| e.to_string())?;
    let mut next_report = 0u64;
    loop {
        if let Some(m) = bus
            .timed_pop_filtered(gst::ClockTime::from_mseconds(200), &[gst::MessageType::Eos, gst::MessageType::Error])
        {
            if let gst::MessageView::Error(e) = m.view() {
                return Err(format!("{}", e.error()));
            }
            break;
        }
        let media = p.query_position::<gst::ClockTime>().map_or(0, |t| t.seconds());
        if media >= next_report {
            println!("rss {media} {}", rss_kib("VmRSS:"));
            next_report += 60;
        }
    }
    let stats = p.by_name("sink").map(|s| s.property::<gst::Structure>("stats"));
    let _ = p.set_state(gst::State::Null);
    if let Some(s) = stats {
        println!("dropped {}", s.get::<u64>("fragments-dropped").unwrap_or(0));
    }
    println!("peak {}", rss_kib("VmHWM:"));
    Ok(())
}

/// What the outage may add beyond its forward buffer's bound (queues, the allocator's slack),
/// and how much it may grow once the buffer is full.
const CONSTANT_MIB: f64 = 8.0;
const FLAT_MIB: f64 = 2.0;

fn outage() -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let start = Instant::now();
    let out = Command::new(exe).args(["outage-child", "10"]).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("outage child failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut samples = Vec::new();
    let mut peak = 0;
    let mut dropped = 0;
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        match f.as_slice() {
            ["rss", m, k] => samples.push((m.parse::<u64>().unwrap_or(0), k.parse::<u64>().unwrap_or(0))),
            ["peak", k] => peak = k.parse().unwrap_or(0),
            ["dropped", d] => dropped = d.parse().unwrap_or(0),
            _ => {}
        }
    }
    let along: Vec<String> =
        samples.iter().map(|(m, k)| format!("{} min: {:.1} MiB", m / 60, *k as f64 / 1024.0)).collect();
    // The forward buffer's bound at this rate: 30 s of 6 Mbit/s. The target: the
    // process grows by no more than that plus a constant while it fills, then stays flat.
    let bound_mib = 30.0 * 6e6 / 8.0 / (1024.0 * 1024.0);
    let mib = |k: u64| k as f64 / 1024.0;
    let at = |secs: u64| samples.iter().find(|(m, _)| *m >= secs).map(|(_, k)| mib(*k));
    let (Some(start_mib), Some(full_mib)) = (at(0), at(60)) else {
        return Err(format!("the outage child printed no RSS samples: {text}"));
    };
    let peak_mib = mib(peak);
    let filling = full_mib - start_mib;
    let after = peak_mib - full_mib;
    let met = filling <= bound_mib + CONSTANT_MIB && after <= FLAT_MIB;
    Ok(format!(
        "10 minutes of live 640x360 H.264 at 6 Mbps (x264 on noise, so that it reaches the rate; {:.0} s wall) \
         pushed to a port that refuses every connection; default forward buffer (30 s, 64 MiB). \
         Peak RSS of the whole process (encoder included): **{peak_mib:.1} MiB**. {} fragments dropped from the \
         forward buffer. RSS along the media timeline: {}.\n\n\
         The forward buffer's bound at this rate is 30 s × 6 Mbit/s = {bound_mib:.1} MiB. The process grew by \
         {filling:.1} MiB in the first minute, while the buffer filled, and by {after:.1} MiB from then to its \
         peak. Target: within the bound plus a constant ({CONSTANT_MIB} MiB: queues, allocator), then \
         flat (at most {FLAT_MIB} MiB more over the remaining 9 minutes): {}.",
        start.elapsed().as_secs_f64(),
        dropped,
        along.join(", "),
        if met { "met" } else { "**not met**" }
    ))
}

/// Child: pushes a file through the element to `url`.
pub fn push_file_child(file: &str, url: &str) -> Result<(), String> {
    init()?;
    run_pipeline(&format!("filesrc location=\"{file}\" ! fmp4ingestsink location=\"{url}\""), Duration::from_secs(300))
}

fn cpu() -> Result<String, String> {
    let input = muxed_input("input-6mbps-60s.mp4", "isofmp4mux fragment-duration=2000000000", 640, 360, 6000, "snow")?;
    let size = std::fs::metadata(&input).map_err(|e| e.to_string())?.len();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let (mut server, port) = start_discard_child()?;
    let url = format!("http://127.0.0.1:{port}/live.isml/Streams(cpu)");
    let mut runs = Vec::new();
    let mut walls = Vec::new();
    for _ in 0..5 {
        let before = child_cpu_seconds();
        let start = Instant::now();
        let st = Command::new(&exe)
            .args(["push-file-child", &input.display().to_string(), &url])
            .status()
            .map_err(|e| e.to_string())?;
        walls.push(start.elapsed().as_secs_f64());
        if !st.success() {
            let _ = server.kill();
            return Err("push child failed".into());
        }
        runs.push(child_cpu_seconds() - before);
    }
    let _ = server.kill();
    let _ = server.wait();
    runs.sort_by(f64::total_cmp);
    walls.sort_by(f64::total_cmp);
    let median = percentile(&runs, 0.5);
    Ok(format!(
        "60 s of 6 Mbps H.264 + AAC ({:.1} MB, isofmp4mux output) pushed from a file through fmp4ingestsink \
         (`filesrc ! fmp4ingestsink`, whole process: GStreamer start-up included) to a discard server in another \
         process, 5 runs: median CPU (user + system) **{:.3} s** (min {:.3}, max {:.3}), wall {:.3} s; that is \
         **{:.1} s of CPU per hour of media** ({:.2} % of one core at real time).",
        size as f64 / 1e6,
        median,
        runs[0],
        runs[runs.len() - 1],
        percentile(&walls, 0.5),
        median * 60.0,
        median / 60.0 * 100.0
    ))
}
