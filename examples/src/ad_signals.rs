// SPDX-License-Identifier: MPL-2.0
//! How an application injects ad signals into fmp4ingestsink's sparse SCTE-35 track.
//!
//! A live test pattern goes to an ingest URL (by default the project's own receiver, started
//! here) in UTC mode, with the sparse stream `ads` next to it. Every `--every` seconds the
//! application announces an ad break `--lead` seconds ahead: one break with a
//! `fmp4ingest-splice` event (the sink builds the splice_insert), the next with a
//! `fmp4ingest-scte35` event carrying a section the application encoded itself. The first
//! kind is sent on the sink pad, the second given to the element; both ways work for both.
//!
//!     fmp4ingest-ads [URL] [--seconds N] [--every S] [--lead S]

use std::time::Duration;

use fmp4ingest_core::scte35::{SpliceInsert, build_splice_insert};
use fmp4ingest_receiver::Receiver;
use gst::prelude::*;

const SECOND: u64 = 1_000_000_000;
const BREAK: u64 = 30 * SECOND;

struct Options {
    url: Option<String>,
    seconds: u64,
    every: u64,
    lead: u64,
}

fn options() -> Result<Options, String> {
    let usage = "usage: fmp4ingest-ads [URL] [--seconds N] [--every S] [--lead S]";
    let mut o = Options { url: None, seconds: 40, every: 15, lead: 8 };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut number = || args.next().and_then(|s| s.parse::<u64>().ok()).filter(|n| *n > 0).ok_or(usage);
        match a.as_str() {
            "--seconds" => o.seconds = number()?,
            "--every" => o.every = number()?,
            "--lead" => o.lead = number()?,
            "-h" | "--help" => return Err(usage.into()),
            url if o.url.is_none() && !url.starts_with('-') => o.url = Some(url.into()),
            other => return Err(format!("unexpected argument {other:?}; {usage}")),
        }
    }
    Ok(o)
}

fn main() {
    match options().and_then(run) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

/// The application's own SCTE-35 encoder, as a broadcast automation system would have: a
/// splice_insert that starts a break of `duration` at 90 kHz time `pts`.
fn encode_break(id: u32, pts: u64, duration: u64) -> Vec<u8> {
    let mut insert = SpliceInsert::program(id, true, Some(pts & ((1 << 33) - 1)), Some(duration * 90_000 / SECOND));
    insert.unique_program_id = 1;
    build_splice_insert(&insert)
}

fn run(o: Options) -> Result<(), String> {
    gst::init().map_err(|e| e.to_string())?;
    gstfmp4ingest::plugin_register_static().map_err(|e| e.to_string())?;
    gstfmp4::plugin_register_static().map_err(|e| e.to_string())?;
    let receiver = match o.url {
        Some(_) => None,
        None => Some(Receiver::start().map_err(|e| format!("cannot start the receiver: {e}"))?),
    };
    let url = o.url.clone().or_else(|| receiver.as_ref().map(|r| r.url("live", "av"))).unwrap_or_default();
    let description = format!(
        "isofmp4mux name=mux fragment-duration=2000000000 ! fmp4ingestsink name=sink location=\"{url}\" \
         timestamp-mode=utc sparse-stream-id=ads splice-mode=segment \
         videotestsrc is-live=true num-buffers={v} ! video/x-raw,width=640,height=360,framerate=30/1 ! \
           x264enc speed-preset=ultrafast bitrate=1200 key-int-max=600 ! h264parse ! queue ! mux. \
         audiotestsrc is-live=true num-buffers={a} samplesperbuffer=1024 ! audio/x-raw,rate=48000,channels=2 ! \
           avenc_aac ! aacparse ! queue ! mux.",
        v = o.seconds * 30,
        a = o.seconds * 48000 / 1024 + 1
    );
    let pipeline = gst::parse::launch(&description).map_err(|e| e.to_string())?;
    let pipeline = pipeline.downcast::<gst::Pipeline>().map_err(|_| "not a pipeline")?;
    let sink = pipeline.by_name("sink").ok_or("no sink")?;
    pipeline.set_state(gst::State::Playing).map_err(|e| e.to_string())?;

    // The scheduler: announce a break every `every` seconds, `lead` seconds ahead.
    let scheduler = {
        let pipeline = pipeline.clone();
        let sink = sink.clone();
        std::thread::spawn(move || {
            let mut k = 1u64;
            loop {
                let splice = k * o.every * SECOND;
                if splice + 2 * SECOND >= o.seconds * SECOND {
                    break;
                }
                let (Some(clock), Some(base)) = (pipeline.clock(), pipeline.base_time()) else {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                };
                let now = clock.time().nseconds().saturating_sub(base.nseconds());
                let announce = splice - o.lead * SECOND;
                if now < announce {
                    std::thread::sleep(Duration::from_nanos(announce - now));
                    continue;
                }
                let id = 1000 + k as u32;
                let sent = if k % 2 == 1 {
                    // The sink builds the section: running time, id, duration.
                    let s = gst::Structure::builder("fmp4ingest-splice")
                        .field("running-time", splice)
                        .field("id", id)
                        .field("duration", BREAK)
                        .build();
                    sink.static_pad("sink").is_some_and(|p| p.send_event(gst::event::CustomDownstream::new(s)))
                } else {
                    // The application's own section; its pts_time is on the application's
                    // timeline and passes through as it is.
                    let section = encode_break(id, splice * 90_000 / SECOND, BREAK);
                    let s = gst::Structure::builder("fmp4ingest-scte35")
                        .field("section", gst::Buffer::from_slice(section))
                        .field("running-time", splice)
                        .build();
                    sink.send_event(gst::event::CustomDownstream::new(s))
                };
                println!(
                    "[{:6.1} s] announced break {id} at {:.1} s: {}",
                    now as f64 / 1e9,
                    splice as f64 / 1e9,
                    if sent { "accepted" } else { "refused" }
                );
                k += 1;
            }
        })
    };

    let bus = pipeline.bus().ok_or("no bus")?;
    let mut failed = None;
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(o.seconds + 60)) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => {
                failed = Some(format!("{} ({:?})", e.error(), e.debug()));
                break;
            }
            gst::MessageView::Warning(w) => println!("warning: {} ({:?})", w.error(), w.debug()),
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure().filter(|s| s.name().starts_with("fmp4ingestsink-s")) {
                    println!("{s}");
                }
            }
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).map_err(|e| e.to_string())?;
    let _ = scheduler.join();
    if let Some(e) = failed {
        return Err(e);
    }
    if let Some(r) = receiver {
        println!("\nThe receiver got, on Streams(ads):");
        for p in r.stream("ads").media_posts() {
            match p.fragments.first().and_then(|f| f.sparse.as_ref().map(|m| (f, m))) {
                None => println!("  POST #{}: header only (registers the track), HTTP {:?}", p.index, p.status),
                Some((f, m)) => println!(
                    "  POST #{}: message id {} at t={} (+{} to the splice), {} section bytes, HTTP {:?}",
                    p.index,
                    m.id,
                    f.time().unwrap_or(0),
                    m.delta,
                    m.message.len(),
                    p.status
                ),
            }
        }
        let violations = r.stream("ads").violations();
        if !violations.is_empty() {
            return Err(format!("violations: {violations:?}"));
        }
    }
    Ok(())
}
