// SPDX-License-Identifier: MPL-2.0
//! Live latency: the time from a fragment's last byte entering `render()` (the core
//! taking the muxer's bytes that complete it) to its last byte handed to the connection, which
//! hyper writes to the socket in the same poll. The element measures it for every fragment it
//! sends for the first time (`latency-*` in `stats`); this pushes a live stream to our discard
//! server for five minutes and reads the figures at the end.

use gst::prelude::*;

use crate::throughput::discard_server;
use crate::util::machine;

fn ms(ns: u64) -> String {
    format!("{:.2} ms", ns as f64 / 1e6)
}

/// Pushes `seconds` of live 640x360 H.264 at 2 Mbps + AAC through isofmp4mux (2 s fragments)
/// into a sink with `props` (its location among them); returns its `stats` at the end.
pub fn live_push(props: &str, seconds: u64) -> Result<gst::Structure, String> {
    let d = format!(
        "isofmp4mux name=mux fragment-duration=2000000000 ! fmp4ingestsink name=sink {props} \
         videotestsrc is-live=true num-buffers={} ! video/x-raw,width=640,height=360,framerate=30/1 ! \
         x264enc key-int-max=60 speed-preset=ultrafast bitrate=2000 ! h264parse ! queue ! mux. \
         audiotestsrc is-live=true num-buffers={} samplesperbuffer=1024 ! audio/x-raw,rate=48000,channels=2 ! \
         avenc_aac ! aacparse ! queue ! mux.",
        seconds * 30,
        seconds * 48000 / 1024 + 1
    );
    println!("   a live push of {seconds} s");
    let p = gst::parse::launch(&d).map_err(|e| e.to_string())?.downcast::<gst::Pipeline>().map_err(|_| "pipeline")?;
    let bus = p.bus().ok_or("bus")?;
    p.set_state(gst::State::Playing).map_err(|e| e.to_string())?;
    let limit = gst::ClockTime::from_seconds(seconds + 60);
    let msg = bus.timed_pop_filtered(limit, &[gst::MessageType::Eos, gst::MessageType::Error]);
    // Read before the element stops.
    let stats = p.by_name("sink").map(|s| s.property::<gst::Structure>("stats"));
    let _ = p.set_state(gst::State::Null);
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => {}
        Some(gst::MessageView::Error(e)) => return Err(format!("{} ({:?})", e.error(), e.debug())),
        _ => return Err("the live push did not end".into()),
    }
    stats.ok_or_else(|| "no stats".to_string())
}

pub fn section(seconds: u64) -> Result<String, String> {
    let (port, counters) = discard_server()?;
    let s = live_push(&format!("location=http://127.0.0.1:{port}/live.isml/Streams(latency)"), seconds)?;
    let get = |f: &str| s.get::<u64>(f).map_err(|e| format!("{f}: {e}"));
    let (count, p50, p99, max) = (get("latency-count")?, get("latency-p50")?, get("latency-p99")?, get("latency-max")?);
    let sent = get("fragments-sent")?;
    Ok(format!(
        "## Live latency\n\n{}\n\n\
         {seconds} s of live 640x360 H.264 at 2 Mbps + AAC (isofmp4mux, 2 s fragments) pushed to our discard \
         server on loopback ({:.1} MB received). For each of the {count} fragments sent (of {sent}), the time from \
         its last byte entering `render()` to its last byte handed to the connection (the element's \
         `latency-*` stats):\n\n\
         | p50 | p99 | max |\n|---|---|---|\n| {} | {} | {} |\n\n\
         Target p99 < 2 ms: {}.\n",
        machine(),
        counters.bytes.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6,
        ms(p50),
        ms(p99),
        ms(max),
        if p99 < 2_000_000 { "met" } else { "**not met**" }
    ))
}
