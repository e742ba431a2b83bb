//! The main job: a live test pattern (H.264 + AAC) pushed through fmp4ingestsink for 30 s.
//!
//! With no argument it starts the project's own ingest receiver on 127.0.0.1 and pushes to it;
//! with a URL (`.../ingest.isml/Streams(<id>)`) it pushes there instead. It prints progress
//! every second and, at the end, what the receiver got.
//!
//!     fmp4ingest-demo [URL] [--seconds N]

use std::time::{Duration, Instant};

use fmp4ingest_receiver::{Receiver, StreamView};
use gst::prelude::*;

const STREAM_ID: &str = "demo";

struct Options {
    url: Option<String>,
    seconds: u32,
}

fn options() -> Result<Options, String> {
    let mut o = Options { url: None, seconds: 30 };
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
            "-h" | "--help" => return Err("usage: fmp4ingest-demo [URL] [--seconds N]".into()),
            url if o.url.is_none() && !url.starts_with('-') => o.url = Some(url.to_string()),
            other => return Err(format!("unexpected argument {other:?}; usage: fmp4ingest-demo [URL] [--seconds N]")),
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

    let receiver = match &o.url {
        Some(_) => None,
        None => Some(Receiver::start().map_err(|e| format!("cannot start the receiver: {e}"))?),
    };
    let url = match (&o.url, &receiver) {
        (Some(u), _) => u.clone(),
        (None, Some(r)) => r.url("live", STREAM_ID),
        (None, None) => unreachable!(),
    };
    let s = o.seconds;
    let description = format!(
        "isofmp4mux name=mux fragment-duration=2000000000 ! fmp4ingestsink name=sink location=\"{url}\" \
         videotestsrc is-live=true num-buffers={v} pattern=smpte ! video/x-raw,width=640,height=360,framerate=30/1 ! \
           x264enc key-int-max=60 speed-preset=ultrafast bitrate=1200 ! h264parse ! queue ! mux. \
         audiotestsrc is-live=true num-buffers={a} samplesperbuffer=1024 wave=ticks ! audio/x-raw,rate=48000,channels=2 ! \
           avenc_aac bitrate=128000 ! aacparse ! queue ! mux.",
        v = s * 30,
        a = s * 48000 / 1024 + 1,
    );
    let pipeline = gst::parse::launch(&description).map_err(|e| format!("cannot build the pipeline: {e}"))?;
    let pipeline = pipeline.downcast::<gst::Pipeline>().map_err(|_| "not a pipeline")?;
    let sink = pipeline.by_name("sink").ok_or("no sink")?;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sent.clone();
    // isofmp4mux pushes buffer lists, the qtmux family single buffers: count both.
    sink.static_pad("sink").ok_or("no sink pad")?.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        move |_, info| {
            let size = match &info.data {
                Some(gst::PadProbeData::Buffer(b)) => b.size(),
                Some(gst::PadProbeData::BufferList(l)) => l.calculate_size(),
                _ => 0,
            };
            counter.fetch_add(size as u64, std::sync::atomic::Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        },
    );

    println!("fmp4ingest demo: {s} s of live 640x360 H.264 + AAC through fmp4ingestsink");
    println!("  ingest URL: {url}");
    if receiver.is_some() {
        println!("  receiver:   the project's own, on {}", url.split('/').nth(2).unwrap_or(""));
    }
    let bus = pipeline.bus().ok_or("no bus")?;
    pipeline.set_state(gst::State::Playing).map_err(|e| format!("cannot start the pipeline: {e}"))?;
    let start = Instant::now();
    let deadline = Duration::from_secs(u64::from(s) + 60);
    let mut last_print = Instant::now();
    let mut outcome: Result<(), String> = Err("timed out".into());
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
                    println!("  warning: {} ({})", w.error(), w.debug().unwrap_or_default())
                }
                _ => {}
            }
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            progress(
                start.elapsed(),
                sent.load(std::sync::atomic::Ordering::Relaxed),
                receiver.as_ref().map(|r| r.stream(STREAM_ID)),
            );
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    outcome?;
    println!();
    match &receiver {
        Some(r) => summary(&r.stream(STREAM_ID), start.elapsed()),
        None => {
            println!(
                "Pushed {} bytes to {url} in {:.1} s; the stream ended gracefully.",
                sent.load(std::sync::atomic::Ordering::Relaxed),
                start.elapsed().as_secs_f64()
            );
            Ok(())
        }
    }
}

fn progress(elapsed: Duration, sent: u64, view: Option<StreamView>) {
    let secs = elapsed.as_secs_f64().max(0.001);
    let mut line = format!(
        "  [{:5.1} s] muxer -> sink {:7.1} kB ({:6.0} kb/s)",
        secs,
        sent as f64 / 1000.0,
        sent as f64 * 8.0 / secs / 1000.0
    );
    if let Some(v) = view {
        let received: u64 = v.media_posts().iter().map(|p| p.bytes).sum();
        let per_track: Vec<String> = v
            .track_ids()
            .iter()
            .map(|t| format!("track {t}: {} frags", v.fragments().iter().filter(|f| f.track_id == *t).count()))
            .collect();
        line.push_str(&format!(" | receiver {:7.1} kB, {}", received as f64 / 1000.0, per_track.join(", ")));
    }
    println!("{line}");
}

fn summary(view: &StreamView, elapsed: Duration) -> Result<(), String> {
    println!("What the receiver got for Streams({STREAM_ID}):");
    let probes = view.probes().len();
    let media = view.media_posts();
    println!("  requests: {} probe(s), {} streaming POST(s)", probes, media.len());
    let mut ok = probes >= 1 && media.len() == 1;
    for p in &media {
        println!(
            "  POST #{}: {} chunked={} ended-gracefully={} answered={:?} {} bytes in {} chunks, User-Agent {:?}",
            p.index,
            p.path,
            p.chunked,
            p.complete,
            p.status,
            p.bytes,
            p.chunks,
            p.header("user-agent").unwrap_or("")
        );
        println!("  header boxes: {}", p.header_boxes.join(", "));
        for (s, m) in p.smil_tracks.iter().zip(&p.moov_tracks) {
            println!(
                "  track {} {:<5} {} FourCC={} timescale={} systemBitrate={} CodecPrivateData={}",
                m.track_id,
                s.element,
                s.param("trackName").unwrap_or(""),
                s.param("FourCC").unwrap_or(""),
                m.timescale,
                s.attr("systemBitrate").unwrap_or(""),
                s.param("CodecPrivateData").unwrap_or("")
            );
        }
        ok &= p.chunked && p.complete && p.status == Some(200) && p.header_boxes == ["ftyp", "lsm", "moov"];
    }
    for t in view.track_ids() {
        let frags: Vec<_> = view.fragments().into_iter().filter(|f| f.track_id == t).collect();
        let timescale = media
            .first()
            .and_then(|p| p.moov_tracks.iter().find(|m| m.track_id == t))
            .map_or(1, |m| m.timescale.max(1));
        let timeline = view.timeline(t);
        let total: u64 = timeline.iter().map(|(_, d)| d).sum();
        let gaps = view.gaps(t);
        let sync = frags.iter().filter(|f| f.first_sample_sync).count();
        println!(
            "  track {t}: {} fragments, {:.3} s of media from t={} ({} timescale), {} gaps, {} start with a sync sample, tfxd in {}",
            frags.len(),
            total as f64 / f64::from(timescale),
            timeline.first().map_or(0, |x| x.0),
            timescale,
            gaps.len(),
            sync,
            frags.iter().filter(|f| f.tfxd.is_some()).count()
        );
        ok &= gaps.is_empty() && frags.iter().all(|f| f.tfxd.is_some());
    }
    let violations = view.violations();
    for v in &violations {
        println!("  violation: {v}");
    }
    ok &= violations.is_empty();
    println!("  took {:.1} s", elapsed.as_secs_f64());
    if ok {
        println!(
            "\nRESULT: OK - a conformant Smooth ingest stream: probe, chunked POST, ftyp/manifest/moov, tfxd everywhere, contiguous timelines, graceful end."
        );
        Ok(())
    } else {
        Err("the receiver saw problems (see above)".into())
    }
}
