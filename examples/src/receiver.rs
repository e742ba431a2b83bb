// SPDX-License-Identifier: MPL-2.0
//! Runs the project's ingest receiver on its own, to try pipelines by hand.
//!
//!     fmp4ingest-receiver [--port N] [--verbose]
//!
//! Listens on 127.0.0.1 (port 8080 by default), accepts probes and chunked POSTs to any
//! `/<name>.isml/Streams(<id>)`, and prints a line for every request when it ends, then a
//! summary per stream every few seconds. CMAF ingest tracks (`.../Streams(<name>.cmfv|cmfa|cmfm)`)
//! get a summary line each: segments, their sequence numbers, gaps, the end, what a strict
//! receiver would object to.

use std::collections::BTreeMap;
use std::time::Duration;

use fmp4ingest_receiver::Receiver;

fn main() {
    let mut port = 8080u16;
    let mut verbose = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => match args.next().and_then(|p| p.parse().ok()) {
                Some(p) => port = p,
                None => usage(),
            },
            "--verbose" => verbose = true,
            _ => usage(),
        }
    }
    let rx = match Receiver::start_with(Default::default(), &format!("127.0.0.1:{port}")) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    println!("listening on http://{}/<name>.isml/Streams(<id>)", rx.addr());
    let mut reported = 0;
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let posts = rx.posts();
        for p in posts.iter().skip(reported).take_while(|p| p.ended.is_some()) {
            reported += 1;
            let kind = if p.is_probe() {
                "probe"
            } else if p.chunked {
                "chunked POST"
            } else {
                "POST"
            };
            println!(
                "#{} {} {} -> {:?}: {} bytes, header {:?}, {} fragments, {} violations{}",
                p.index,
                kind,
                p.path,
                p.status,
                p.bytes,
                p.header_boxes,
                p.fragments.len(),
                p.violations.len(),
                if p.complete || p.is_probe() { "" } else { " (ended without the last chunk)" }
            );
            for v in &p.violations {
                println!("    violation: {v}");
            }
            if verbose {
                for f in &p.fragments {
                    println!(
                        "    fragment {:>4} track {} t={:?} d={:?} samples={} sync-start={} {} bytes",
                        f.sequence,
                        f.track_id,
                        f.time(),
                        f.duration(),
                        f.sample_count,
                        f.first_sample_sync,
                        f.size
                    );
                }
            }
        }
        let mut streams: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
        for p in &posts {
            let e = streams.entry(p.stream_id.as_str()).or_default();
            e.0 += p.fragments.len();
            e.1 += p.bytes;
        }
        for (id, (frags, bytes)) in streams {
            let view = rx.stream(id);
            let gaps: usize = view.track_ids().iter().map(|t| view.gaps(*t).len()).sum();
            println!("  Streams({id}): {frags} fragments, {bytes} bytes, {gaps} gaps");
        }
        for t in rx.cmaf_tracks() {
            let seqs = t.sequences();
            println!(
                "  {} (CMAF): {} segments ({:?}..{:?}), header sent {} times, {} gaps, {}{} violations",
                t.path,
                seqs.len(),
                seqs.first(),
                seqs.last(),
                t.headers_received,
                t.gaps().len(),
                if t.ended() { "ended (lmsg), " } else { "" },
                t.violations.len()
            );
            if verbose {
                for v in &t.violations {
                    println!("    violation: {v}");
                }
            }
        }
    }
}

fn usage() -> ! {
    eprintln!("usage: fmp4ingest-receiver [--port N] [--verbose]");
    std::process::exit(2);
}
