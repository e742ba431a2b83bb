// SPDX-License-Identifier: MPL-2.0
//! Deterministic costs of the media path (BENCHMARKS.md), the CI guard that cannot flake: no wall
//! clock, only what the code does. For a real isofmp4mux stream (video and audio, 1 s
//! fragments) handed over as one buffer:
//! - no byte of mdat payload is copied: every payload slice of every output fragment points
//!   into the input buffer;
//! - splitting and rewriting a fragment allocates a bounded number of blocks and bytes, far
//!   below its payload, whatever the payload's size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use fmp4ingest_core::Bytes;
use fmp4ingest_core::ingest_stream::{IngestStream, StreamConfig, StreamOutput};

/// Counts every allocation of the test process.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const STREAM: &[u8] = include_bytes!("data/isofmp4mux-av.mp4");

/// Where the init segment and the first fragment end: the header goes out with the first
/// fragment (its bitrate is measured on it), a cost paid once per stream.
fn header_len() -> usize {
    let mut pos = 0;
    loop {
        let size = u32::from_be_bytes(STREAM[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &STREAM[pos + 4..pos + 8];
        pos += size;
        if kind == b"mdat" {
            return pos;
        }
    }
}

fn fragments(out: Vec<StreamOutput>) -> Vec<fmp4ingest_core::fragment::Fragment> {
    out.into_iter().filter_map(|o| if let StreamOutput::Fragment(f) = o { Some(f) } else { None }).collect()
}

/// The test runs as one function: the counters are process-wide.
#[test]
fn the_media_path_copies_no_payload_and_allocates_little_per_fragment() {
    let input = Bytes::from_static(STREAM);
    let range = input.as_ptr() as usize..input.as_ptr() as usize + input.len();
    for config in [StreamConfig::default(), {
        let mut c = StreamConfig::default();
        c.grid.fragment_duration_ns = 0;
        c
    }] {
        let mut s = IngestStream::new(config);
        // The header and the first fragment: what the header costs is paid once per stream.
        s.push(input.slice(..header_len())).unwrap();
        let _ = std::iter::from_fn(|| s.next_output()).count();
        let (allocs0, bytes0) = (ALLOCS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed));
        s.push(input.slice(header_len()..)).unwrap();
        s.finish().unwrap();
        let out: Vec<StreamOutput> = std::iter::from_fn(|| s.next_output()).collect();
        let (allocs, bytes) = (ALLOCS.load(Ordering::Relaxed) - allocs0, BYTES.load(Ordering::Relaxed) - bytes0);
        let frags = fragments(out);
        assert!(frags.len() >= 10, "{} fragments", frags.len());
        let payload: u64 = frags.iter().map(|f| f.payload.len()).sum();
        // Zero copies: every payload byte is a view of the input buffer.
        for f in &frags {
            for chunk in f.payload.chunks() {
                let p = chunk.as_ptr() as usize;
                assert!(range.contains(&p) && p + chunk.len() <= range.end, "a payload slice outside the input");
            }
        }
        let n = frags.len() as u64;
        let samples: u64 = frags.iter().map(|f| u64::from(f.sample_count)).sum();
        eprintln!(
            "{n} fragments, {samples} samples, {payload} payload bytes: {allocs} allocations, {bytes} bytes allocated"
        );
        if std::env::var("COSTS_ONLY_PRINT").is_ok() {
            continue;
        }
        // The moof is rebuilt and the samples' tables are kept per fragment: what is allocated
        // grows with the number of samples, never with their size. (Measured: about 20
        // allocations per fragment and 155 bytes per sample on the grid; the bounds leave room.)
        assert!(allocs <= 32 * n, "{} allocations per fragment", allocs / n);
        assert!(bytes <= 160 * samples + 4096 * n, "{bytes} bytes allocated for {samples} samples in {n} fragments");
    }
}
