// SPDX-License-Identifier: MPL-2.0
//! CMAF ingest (docs/protocol.md §6), in one run:
//! - throughput: the throughput suite's file (60 s of 20 Mbps 720p H.264 + AAC from mp4mux)
//!   pushed as fast as it goes to our discard server on loopback by `fmp4ingestsink
//!   protocol=cmaf` (a request per segment and track, on keep-alive connections), by
//!   `curlhttpsink` (one chunked POST that only moves bytes) and by FFmpeg's CMAF push of the
//!   same file (its dash muxer with `movflags=cmaf`: a PUT per segment on persistent
//!   connections), alternating, as whole processes;
//! - live latency: a live push in CMAF mode to the discard server; per track, the time from a
//!   segment's last byte entering `render()` to its last byte handed to the connection (the
//!   element's `latency-*` stats, the worst track's);
//! - recovery: the receiver resets the video track's connection every 4 new segments of a live
//!   stream; the time from the reset to the new connection's probe and to the resent segment
//!   complete at the receiver.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fmp4ingest_receiver::cmaf::CmafRequestKind;
use fmp4ingest_receiver::{Fault, FaultKind, Receiver};

use crate::latency::live_push;
use crate::throughput::{RUNS, Side, discard_server, input, plugin_env};
use crate::util::{machine, percentile, run_child, run_pipeline};

pub fn section(latency_seconds: u64) -> Result<String, String> {
    println!("   throughput in cmaf mode, curlhttpsink and FFmpeg");
    let throughput = throughput()?;
    println!("{throughput}");
    println!("   live latency in cmaf mode ({latency_seconds} s)");
    let latency = latency(latency_seconds)?;
    println!("{latency}");
    println!("   recovery after a reset in cmaf mode");
    let recovery = recovery()?;
    println!("{recovery}");
    Ok(format!(
        "## CMAF ingest\n\n{}\n\n### Throughput\n\n{}\n\n### Live latency\n\n{}\n\n### Recovery after a reset\n\n{}\n",
        machine(),
        throughput.trim_end(),
        latency.trim_end(),
        recovery.trim_end()
    ))
}

fn throughput() -> Result<String, String> {
    let input = input()?;
    let size = std::fs::metadata(&input).map_err(|e| e.to_string())?.len();
    let env = plugin_env()?;
    let (port, counters) = discard_server()?;
    let file = input.display().to_string();
    let src = format!("filesrc location={file} blocksize=65536");
    let ours = format!("{src} ! fmp4ingestsink protocol=cmaf location=http://127.0.0.1:{port}/cmaf.isml");
    let curl = format!(
        "{src} ! curlhttpsink location=http://127.0.0.1:{port}/curl.isml/Streams(curl) use-content-length=false"
    );
    let ffmpeg_args: Vec<String> = [
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        &file,
        "-map",
        "0",
        "-c",
        "copy",
        "-f",
        "dash",
        "-method",
        "PUT",
        "-http_persistent",
        "1",
        "-seg_duration",
        "2",
        "-use_timeline",
        "0",
        "-format_options",
        "movflags=cmaf",
        "-init_seg_name",
        "init-$RepresentationID$.cmf",
        "-media_seg_name",
        "seg-$RepresentationID$-$Number$.cmf",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("http://127.0.0.1:{port}/ffmpeg/live.mpd")])
    .collect();
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        return Err("ffmpeg is missing: apt-get install ffmpeg (scripts/bench.sh does)".into());
    }
    let mut sides = [
        Side::new("fmp4ingestsink protocol=cmaf"),
        Side::new("curlhttpsink"),
        Side::new("FFmpeg dash muxer (CMAF, PUT)"),
    ];
    for i in 0..RUNS {
        for (k, side) in sides.iter_mut().enumerate() {
            let before = counters.bytes.load(Ordering::Relaxed);
            let requests_before = counters.requests.load(Ordering::Relaxed);
            let cmd = match k {
                0 | 1 => {
                    let mut c = Command::new("gst-launch-1.0");
                    c.arg("-q").args(if k == 0 { &ours } else { &curl }.split(' ')).envs(env.iter().cloned());
                    c
                }
                _ => {
                    let mut c = Command::new("ffmpeg");
                    c.args(&ffmpeg_args);
                    c
                }
            };
            let run = run_child(&cmd)?;
            let got = counters.bytes.load(Ordering::Relaxed) - before;
            let requests = counters.requests.load(Ordering::Relaxed) - requests_before;
            println!(
                "   run {} {:30} wall {:.3} s, cpu {:.3} s, peak RSS {:.1} MiB, {got} bytes in {requests} requests",
                i + 1,
                side.name,
                run.wall,
                run.cpu,
                run.max_rss_kib as f64 / 1024.0,
            );
            if got < size * 95 / 100 {
                return Err(format!("{} delivered {got} of {size} bytes", side.name));
            }
            side.runs.push(run);
            side.bytes.push(got);
        }
    }
    let rows: Vec<String> = sides.iter().map(Side::row).collect();
    let [ours_side, curl_side, ff_side] = &sides;
    let vs_curl = ours_side.wall() / curl_side.wall();
    let vs_ffmpeg = ours_side.wall() / ff_side.wall();
    Ok(format!(
        "{:.1} MB of pre-muxed fMP4 (the throughput suite's file: 60 s of 20 Mbps 1280x720 H.264 + AAC from mp4mux, \
         2 s fragments) pushed from a file as fast as it goes to our discard server on loopback (it reads every \
         request's body, answers, and keeps the connection). Each sender is a whole process timed by GNU time; \
         {RUNS} runs each, alternating; medians:\n\n\
         | sender | wall | CPU (user + system) | peak RSS | bytes at the server |\n|---|---|---|---|---|\n{}\n\n\
         Wall ratio fmp4ingestsink (cmaf) / curlhttpsink: **{vs_curl:.2}** (target ≤ 1.0: {}); / FFmpeg: \
         **{vs_ffmpeg:.2}**. fmp4ingestsink sends a request per 2 s segment and track (the probe and the CMAF header \
         first on each track's connection; one request more, and a segment's bytes more at the server, in the runs \
         where the last video segment had gone out before the end was known and goes again with `lmsg`), FFmpeg a \
         PUT per segment and the MPD again and again, curlhttpsink one chunked POST of the file as it is.\n\n\
         `{ours}`; `{curl}`; `ffmpeg {}` (ports as in this run).\n",
        size as f64 / 1e6,
        rows.join("\n"),
        if vs_curl <= 1.0 { "met" } else { "**not met**" },
        ffmpeg_args.join(" ")
    ))
}

fn ms(ns: u64) -> String {
    format!("{:.2} ms", ns as f64 / 1e6)
}

fn latency(seconds: u64) -> Result<String, String> {
    let (port, counters) = discard_server()?;
    let s = live_push(&format!("protocol=cmaf location=http://127.0.0.1:{port}/latency.isml"), seconds)?;
    let get = |f: &str| s.get::<u64>(f).map_err(|e| format!("{f}: {e}"));
    let (count, p50, p99, max) = (get("latency-count")?, get("latency-p50")?, get("latency-p99")?, get("latency-max")?);
    Ok(format!(
        "{seconds} s of live 640x360 H.264 at 2 Mbps + AAC (isofmp4mux, 2 s segments) pushed in CMAF mode to our \
         discard server on loopback ({:.1} MB received, {} requests). For each of the {count} segments sent (both \
         tracks), the time from its last byte entering `render()` to its last byte handed to the connection (the \
         element's `latency-*` stats: per track, and here the worst track's). A track's first segment waits for \
         the track's connection, probe and header (its connection opens when the muxer's `moov` names the track, \
         which isofmp4mux sends with its first fragment).\n\n\
         | p50 | p99 | max |\n|---|---|---|\n| {} | {} | {} |\n\n\
         Target p99 < 5 ms: {}.\n",
        counters.bytes.load(Ordering::Relaxed) as f64 / 1e6,
        counters.requests.load(Ordering::Relaxed),
        ms(p50),
        ms(p99),
        ms(max),
        if p99 < 5_000_000 { "met" } else { "**not met**" }
    ))
}

fn recovery() -> Result<String, String> {
    let rx = Receiver::start().map_err(|e| e.to_string())?;
    let reset = FaultKind::Abort { min: 4, max: 4, reset: true };
    rx.inject(Fault::new(reset, Duration::from_secs(600)).for_stream("video.cmfv"));
    let d = format!(
        "isofmp4mux name=mux fragment-duration=2000000000 ! fmp4ingestsink protocol=cmaf location=\"{}\" \
         videotestsrc is-live=true num-buffers=1800 ! video/x-raw,width=640,height=360,framerate=30/1 ! \
         x264enc key-int-max=60 speed-preset=ultrafast bitrate=2000 ! h264parse ! queue ! mux. \
         audiotestsrc is-live=true num-buffers=2813 samplesperbuffer=1024 ! audio/x-raw,rate=48000,channels=2 ! \
         avenc_aac ! aacparse ! queue ! mux.",
        rx.publishing_point("live")
    );
    run_pipeline(&d, Duration::from_secs(180))?;
    let requests: Vec<_> = rx.cmaf_requests().into_iter().filter(|r| r.track.ends_with("(video.cmfv)")).collect();
    let (mut to_probe, mut to_segment) = (Vec::new(), Vec::new());
    for cut in requests.iter().filter(|r| r.ended_by_receiver.as_deref() == Some("abort-reset")) {
        let Some(at) = cut.ended else { continue };
        let later: Vec<_> = requests.iter().filter(|r| r.index > cut.index && r.connection != cut.connection).collect();
        if let Some(probe) = later.iter().find(|r| r.kind == Some(CmafRequestKind::Probe)) {
            to_probe.push((probe.started - at).as_secs_f64() * 1000.0);
        }
        if let Some(seg) = later.iter().find(|r| r.kind == Some(CmafRequestKind::Segment) && r.complete)
            && let Some(end) = seg.ended
        {
            to_segment.push((end - at).as_secs_f64() * 1000.0);
        }
    }
    if to_segment.is_empty() {
        return Err("no reset was recovered from".into());
    }
    to_probe.sort_by(f64::total_cmp);
    to_segment.sort_by(f64::total_cmp);
    let worst = to_segment.last().copied().unwrap_or(f64::NAN);
    Ok(format!(
        "{} resets of the video track's connection of a live 2 Mbps + AAC stream in CMAF mode (isofmp4mux, 2 s \
         segments), the receiver resetting it after every 4 new segments; defaults (first retry at once). Time \
         from the reset to:\n\n\
         | | median | p90 | max |\n|---|---|---|---|\n\
         | the probe on the new connection | {:.1} ms | {:.1} ms | {:.1} ms |\n\
         | the resent segment complete at the receiver (after the probe and the header) | {:.1} ms | {:.1} ms | {:.1} ms |\n\n\
         Target: the resent segment within 50 ms of the reset: {}.\n",
        to_segment.len(),
        percentile(&to_probe, 0.5),
        percentile(&to_probe, 0.9),
        to_probe.last().copied().unwrap_or(f64::NAN),
        percentile(&to_segment, 0.5),
        percentile(&to_segment, 0.9),
        worst,
        if worst < 50.0 { "met" } else { "**not met**" },
    ))
}
