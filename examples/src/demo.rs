// SPDX-License-Identifier: MPL-2.0
//! The main job: a live test pattern (H.264 + AAC) pushed through fmp4ingestsink for 30 s.
//!
//! With no argument it starts the project's own ingest endpoint on 127.0.0.1 and pushes to it,
//! printing progress every second, the commands that play the stream (Smooth, DASH and HLS, live
//! while it runs) and, at the end, the heartbeat view of the whole run with a verdict. `--keep`
//! keeps the endpoint serving the recording afterwards (until Ctrl-C). `--protocol cmaf` pushes
//! DASH-IF Live Media Ingest (Interface-1, "CMAF ingest") instead of Smooth ingest: a header
//! and one request per segment on each track's own URL; the summary then shows each track's
//! requests, headers, 412s and what the sink resent. With a URL it pushes there instead: a
//! stream URL (`.../ingest.isml/Streams(<id>)`) for Smooth, a publishing point URL
//! (`.../channel1.isml`) for CMAF.
//!
//!     fmp4ingest-demo [URL] [--protocol smooth|cmaf] [--seconds N] [--port N] [--keep]

use std::time::{Duration, Instant};

use fmp4ingest_endpoint::{Endpoint, EndpointConfig};
use gst::prelude::*;

const STREAM_ID: &str = "demo";
const POINT: &str = "live";
const USAGE: &str = "usage: fmp4ingest-demo [URL] [--protocol smooth|cmaf] [--seconds N] [--port N] [--keep]";

struct Options {
    url: Option<String>,
    cmaf: bool,
    seconds: u32,
    port: u16,
    keep: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options { url: None, cmaf: false, seconds: 30, port: 0, keep: false };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => {
                o.seconds = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|s| *s > 0)
                    .ok_or("--seconds needs a positive number")?
            }
            "--port" => o.port = args.next().and_then(|s| s.parse().ok()).ok_or("--port needs a number")?,
            "--keep" => o.keep = true,
            "--protocol" => {
                o.cmaf = match args.next().as_deref() {
                    Some("smooth") => false,
                    Some("cmaf") => true,
                    _ => return Err("--protocol needs smooth or cmaf".into()),
                }
            }
            "-h" | "--help" => return Err(USAGE.into()),
            url if o.url.is_none() && !url.starts_with('-') => o.url = Some(url.to_string()),
            other => return Err(format!("unexpected argument {other:?}; {USAGE}")),
        }
    }
    Ok(o)
}

fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(o) {
        eprintln!("\nFAILED: {e}");
        std::process::exit(1);
    }
}

fn run(o: Options) -> Result<(), String> {
    gst::init().map_err(|e| e.to_string())?;
    gstfmp4ingest::plugin_register_static().map_err(|e| e.to_string())?;
    gstfmp4::plugin_register_static().map_err(|e| e.to_string())?;

    let endpoint = match &o.url {
        Some(_) => None,
        None => {
            let bind = format!("127.0.0.1:{}", o.port).parse().map_err(|e| format!("{e}"))?;
            Some(
                Endpoint::start(EndpointConfig { bind, ..EndpointConfig::default() })
                    .map_err(|e| format!("cannot start the endpoint: {e}"))?,
            )
        }
    };
    let url = match (&o.url, &endpoint) {
        (Some(u), _) => u.clone(),
        (None, Some(e)) if o.cmaf => e.publishing_point_url(POINT),
        (None, Some(e)) => e.ingest_url(POINT, STREAM_ID),
        (None, None) => unreachable!(),
    };
    let s = o.seconds;
    let description = format!(
        "isofmp4mux name=mux fragment-duration=2000000000 ! fmp4ingestsink name=sink location=\"{url}\" {protocol} \
         videotestsrc is-live=true num-buffers={v} pattern=smpte ! video/x-raw,width=640,height=360,framerate=30/1 ! \
           x264enc key-int-max=60 speed-preset=ultrafast bitrate=1200 ! h264parse ! queue ! mux. \
         audiotestsrc is-live=true num-buffers={a} samplesperbuffer=1024 wave=ticks ! audio/x-raw,rate=48000,channels=2 ! \
           avenc_aac bitrate=128000 ! aacparse ! queue ! mux.",
        v = s * 30,
        a = s * 48000 / 1024 + 1,
        protocol = if o.cmaf { "protocol=cmaf" } else { "" },
    );
    let pipeline = gst::parse::launch(&description).map_err(|e| format!("cannot build the pipeline: {e}"))?;
    let pipeline = pipeline.downcast::<gst::Pipeline>().map_err(|_| "not a pipeline")?;
    let sink = pipeline.by_name("sink").ok_or("no sink")?;

    let how = if o.cmaf { "CMAF ingest (DASH-IF Live Media Ingest, Interface-1)" } else { "Smooth ingest" };
    println!("fmp4ingest demo: {s} s of live 640x360 H.264 + AAC through fmp4ingestsink, {how}");
    if o.cmaf {
        println!("  publishing point: {url} (each track to <this>/Streams(<track>.cmfv|cmfa))");
    } else {
        println!("  ingest URL: {url}");
    }
    if let Some(e) = &endpoint {
        println!("  endpoint:   the project's own, on http://{}", e.addr());
        println!("  play it:    gst-play-1.0 {}    (Smooth)", e.manifest_url(POINT));
        println!("              gst-play-1.0 {}         (DASH)", e.mpd_url(POINT));
        println!("              gst-play-1.0 {}        (HLS)", e.hls_url(POINT));
        println!("  heartbeats: curl -s -X POST '{}'", e.heartbeats_url(POINT));
    }
    let bus = pipeline.bus().ok_or("no bus")?;
    pipeline.set_state(gst::State::Playing).map_err(|e| format!("cannot start the pipeline: {e}"))?;
    let start = Instant::now();
    let deadline = Duration::from_secs(u64::from(s) + 60);
    let mut last_print = Instant::now();
    let mut outcome: Result<(), String> = Err("timed out".into());
    let mut warnings = 0;
    let mut sink_said = SinkSaid::default();
    loop {
        if start.elapsed() > deadline {
            break;
        }
        if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(200)) {
            match msg.view() {
                gst::MessageView::Eos(_) => {
                    outcome = Ok(());
                    break;
                }
                gst::MessageView::Error(e) => {
                    outcome = Err(format!("{} ({})", e.error(), e.debug().unwrap_or_default()));
                    break;
                }
                gst::MessageView::Warning(w) => {
                    warnings += 1;
                    println!("  warning: {} ({})", w.error(), w.debug().unwrap_or_default())
                }
                gst::MessageView::Element(m) => {
                    if let Some(s) = m.structure() {
                        sink_said.count(s);
                    }
                }
                _ => {}
            }
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            progress(start.elapsed(), &sink, endpoint.as_ref());
        }
    }
    let stats = sink.property::<gst::Structure>("stats");
    let _ = pipeline.set_state(gst::State::Null);
    outcome?;
    println!();
    let Some(e) = &endpoint else {
        println!(
            "Pushed {} bytes to {url} in {:.1} s; the stream ended gracefully.",
            stats.get::<u64>("bytes-sent").unwrap_or(0),
            start.elapsed().as_secs_f64()
        );
        return Ok(());
    };
    let result = summary(e, o.cmaf, start.elapsed(), warnings, &sink_said);
    if o.keep {
        println!(
            "\nServing the recording until Ctrl-C: gst-play-1.0 {} (or {}, {})",
            e.manifest_url(POINT),
            e.mpd_url(POINT),
            e.hls_url(POINT)
        );
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    result
}

fn progress(elapsed: Duration, sink: &gst::Element, endpoint: Option<&Endpoint>) {
    let stats = sink.property::<gst::Structure>("stats");
    let sent = stats.get::<u64>("bytes-sent").unwrap_or(0);
    let secs = elapsed.as_secs_f64().max(0.001);
    let mut line = format!(
        "  [{:5.1} s] sink {} sent {:7.1} kB ({:5.0} kb/s)",
        secs,
        stats.get::<String>("state").unwrap_or_default(),
        sent as f64 / 1000.0,
        sent as f64 * 8.0 / secs / 1000.0
    );
    if let Some(e) = endpoint {
        let per_track: Vec<String> = e
            .status()
            .iter()
            .filter(|t| t.kind != "text")
            .map(|t| {
                let requests = if t.headers > 0 { format!(" in {} requests", t.requests) } else { String::new() };
                format!(
                    "{} {} fragments{requests}, {:.0} kb/s",
                    t.track,
                    t.fragments,
                    t.incoming_bitrate as f64 / 1000.0
                )
            })
            .collect();
        line.push_str(&format!(" | endpoint: {}", per_track.join("; ")));
    }
    println!("{line}");
}

/// What the sink reported on the bus about its connections (its element messages).
#[derive(Default)]
struct SinkSaid {
    disconnected: u32,
    /// Fragments or segments sent again after a reconnect (CMAF: `fmp4ingestsink-cmaf-resent`).
    resent: u64,
    /// CMAF: headers sent again because the receiver answered 412.
    headers_requested: u32,
    dropped: u64,
}

impl SinkSaid {
    fn count(&mut self, s: &gst::StructureRef) {
        let n = |f: &str| s.get::<u32>(f).map(u64::from).unwrap_or(0);
        match s.name().as_str() {
            "fmp4ingestsink-disconnected" => self.disconnected += 1,
            "fmp4ingestsink-cmaf-resent" => self.resent += n("count"),
            "fmp4ingestsink-cmaf-header-requested" => self.headers_requested += 1,
            "fmp4ingestsink-dropped" | "fmp4ingestsink-cmaf-skipped" => self.dropped += n("count"),
            _ => {}
        }
    }
}

/// The heartbeat view of the whole run, per track and 20 s window, and a verdict.
fn summary(e: &Endpoint, cmaf: bool, elapsed: Duration, warnings: usize, sink: &SinkSaid) -> Result<(), String> {
    let hb = e.heartbeats(POINT);
    let events = hb["value"].as_array().cloned().unwrap_or_default();
    println!("Heartbeats of live event {POINT:?} (as getTrackIngestHeartbeats answers them), one per track and 20 s:");
    println!(
        "  {:<24} {:<6} {:>9} {:>9} {:>12} {:>6} {:>7} {:>8} {:>7} {:>5}",
        "eventTime", "track", "bitrate", "incoming", "lastTimestamp", "gaps", "overlap", "in past", "healthy", "drift"
    );
    for ev in &events {
        let d = &ev["data"];
        // JSON values as text: strings without their quotes.
        let f = |k: &str| d[k].as_str().map_or_else(|| d[k].to_string(), str::to_string);
        println!(
            "  {:<24} {:<6} {:>9} {:>9} {:>12} {:>6} {:>7} {:>8} {:>7} {:>5}",
            ev["eventTime"].as_str().unwrap_or(""),
            f("trackName"),
            f("bitrate"),
            f("incomingBitrate"),
            f("lastTimestamp"),
            f("discontinuityCount"),
            f("overlapCount"),
            f("nonincreasingCount"),
            f("healthy"),
            f("ingestDriftValue")
        );
    }
    let status = e.status();
    for t in &status {
        println!(
            "  {} track {}: {} fragments, {:.1} s of media kept, {} duplicates, {} gaps, {} overlaps, {} in the past",
            t.kind, t.track, t.fragments, t.kept_seconds, t.duplicates, t.discontinuities, t.overlaps, t.past
        );
        if cmaf {
            println!(
                "      {} requests: {} headers, {} segments answered 412 (no header), {} refused (400/415), {}",
                t.requests,
                t.headers,
                t.precondition_failed,
                t.refused,
                if t.ended { "ended with lmsg" } else { "no last segment (lmsg) seen" }
            );
        }
    }
    if cmaf {
        println!(
            "  the sink: {} disconnects, {} segments resent after one, {} headers sent again on a 412, {} dropped",
            sink.disconnected, sink.resent, sink.headers_requested, sink.dropped
        );
    } else {
        println!("  the sink: {} disconnects, {} fragments dropped", sink.disconnected, sink.dropped);
    }
    // The endpoint logs each request's start and end and each new header; anything else is a
    // problem it found in what came.
    let routine = |l: &str| l.ends_with(" started") || l.contains(" ended (") || l.contains(": header: ");
    let problems: Vec<String> = e.log_lines().into_iter().filter(|l| !routine(l)).collect();
    for p in &problems {
        println!("  endpoint: {p}");
    }
    let counts = |f: &str| events.iter().map(|ev| ev["data"][f].as_u64().unwrap_or(0)).sum::<u64>();
    let clean = counts("discontinuityCount") + counts("overlapCount") + counts("nonincreasingCount") == 0;
    // CMAF: a header on each track's connection before its segments, one request per segment
    // besides (a resend is a request too), and the last segment marked so (lmsg).
    let cmaf_ok = |t: &fmp4ingest_endpoint::TrackStatus| {
        !cmaf || (t.headers >= 1 && t.requests >= t.headers + t.fragments as u64 && t.refused == 0 && t.ended)
    };
    let ok = status.len() == 2
        && status.iter().all(|t| t.fragments >= 2 && t.discontinuities == 0 && t.overlaps == 0 && cmaf_ok(t))
        && clean
        && problems.is_empty()
        && warnings == 0
        && sink.dropped == 0;
    println!("  took {:.1} s", elapsed.as_secs_f64());
    if ok {
        let what = if cmaf {
            "CMAF ingest stream (per track: a CMAF header, then one segment per request, contiguous \
             timelines, lmsg on the last)"
        } else {
            "Smooth ingest stream (probe, chunked POST, ftyp/manifest/moov, tfxd, contiguous timelines, \
             graceful end)"
        };
        println!(
            "\nRESULT: OK - the endpoint took a conformant {what} and serves it at {} (Smooth), {} (DASH) \
             and {} (HLS)",
            e.manifest_url(POINT),
            e.mpd_url(POINT),
            e.hls_url(POINT)
        );
        Ok(())
    } else {
        Err("the endpoint saw problems (see above)".into())
    }
}
