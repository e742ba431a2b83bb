// SPDX-License-Identifier: MPL-2.0
//! Micro-benchmarks of the core (figures and targets in BENCHMARKS.md), with criterion: splitting and rewriting one
//! fragment at several mdat sizes, building the ingest header (manifest, moov) and a sparse
//! fragment. `fmp4ingest-bench core` runs them and writes the figures to BENCHMARKS.md.
//!
//! The fragments are a real isofmp4mux init segment's tracks with synthetic moofs: 60 video
//! samples per fragment (2 s at 30 fps), their sizes scaled to the mdat size measured, and one
//! shared payload buffer, handed over as a muxer would: the moof, the mdat header, the payload.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use fmp4ingest_core::Bytes;
use fmp4ingest_core::bmff::fourcc::FourCC;
use fmp4ingest_core::bmff::writer::{PutBytes, write_box, write_full_box};
use fmp4ingest_core::ingest_header::{IngestHeader, IngestTrack};
use fmp4ingest_core::ingest_stream::{IngestStream, StreamConfig, StreamOutput};
use fmp4ingest_core::movie::parse_moov;
use fmp4ingest_core::sparse::{SparseMessage, write_sparse_fragment};

const STREAM: &[u8] = include_bytes!("../tests/data/isofmp4mux-av.mp4");
const SAMPLES: u32 = 60;

/// ftyp + moov of the fixture, and the moov alone.
fn init() -> (Bytes, Bytes) {
    let mut pos = 0;
    loop {
        let size = u32::from_be_bytes(STREAM[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &STREAM[pos + 4..pos + 8];
        if kind == b"moov" {
            return (Bytes::from_static(&STREAM[..pos + size]), Bytes::from_static(&STREAM[pos..pos + size]));
        }
        pos += size;
    }
}

/// The moof of video fragment `k` (track 1, timescale from the fixture): `SAMPLES` samples of
/// `sample_size` bytes, the first a sync sample, data right after the mdat header. With
/// `b_frames`, composition offsets as B-frames give them: every other frame, the key frame
/// included, presented one frame after it decodes.
fn moof(k: u64, sample_size: u32, sample_duration: u32, b_frames: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut data_offset_at = 0;
    write_box(&mut out, FourCC::new(b"moof"), |o| {
        write_full_box(o, FourCC::new(b"mfhd"), 0, 0, |o| o.put_u32(k as u32 + 1));
        write_box(o, FourCC::new(b"traf"), |o| {
            // default-base-is-moof, default sample flags (non-sync)
            write_full_box(o, FourCC::new(b"tfhd"), 0, 0x02_0020, |o| {
                o.put_u32(1);
                o.put_u32(0x0001_0000);
            });
            write_full_box(o, FourCC::new(b"tfdt"), 1, 0, |o| o.put_u64(k * u64::from(SAMPLES * sample_duration)));
            // data offset, first-sample flags, durations, sizes
            let flags = if b_frames { 0x0B05 } else { 0x0305 };
            write_full_box(o, FourCC::new(b"trun"), 0, flags, |o| {
                o.put_u32(SAMPLES);
                data_offset_at = o.len();
                o.put_i32(0);
                o.put_u32(0x0200_0000);
                for i in 0..SAMPLES {
                    o.put_u32(sample_duration);
                    o.put_u32(sample_size);
                    if b_frames {
                        o.put_u32(if i % 2 == 0 { sample_duration } else { 0 });
                    }
                }
            });
        });
    });
    let offset = (out.len() + 8) as i32;
    out[data_offset_at..data_offset_at + 4].copy_from_slice(&offset.to_be_bytes());
    out
}

fn split_and_rewrite(c: &mut Criterion) {
    let (header, moov) = init();
    let movie = parse_moov(&moov).unwrap();
    let video = movie.tracks.iter().find(|t| t.track_id == 1).unwrap();
    let sample_duration = video.timescale / 30;
    let mut g = c.benchmark_group("split_and_rewrite_one_fragment");
    for (mode, grid_ns, b_frames) in [
        ("muxer_fragments", 0u64, false),
        ("on_the_2s_grid", 2_000_000_000, false),
        ("on_the_2s_grid_b_frames", 2_000_000_000, true),
    ] {
        for mdat in [16u32 << 10, 512 << 10, 8 << 20] {
            let sample_size = mdat / SAMPLES;
            let payload = Bytes::from(vec![0x5a; (sample_size * SAMPLES) as usize]);
            let mdat_header = Bytes::from([(8 + sample_size * SAMPLES).to_be_bytes(), *b"mdat"].concat());
            // The muxer's fragments as they are (fragment-duration=0), or re-cut on the default
            // grid (fragments of 2 s: one in, one out).
            let mut config = StreamConfig::default();
            config.grid.fragment_duration_ns = grid_ns;
            let mut s = IngestStream::new(config);
            s.push(header.clone()).unwrap();
            let mut k = 0u64;
            g.throughput(Throughput::Elements(1));
            g.bench_function(format!("{mode}/mdat_{}KiB", mdat >> 10), |b| {
                b.iter_batched(
                    || {
                        k += 1;
                        Bytes::from(moof(k, sample_size, sample_duration, b_frames))
                    },
                    |moof| {
                        s.push(moof).unwrap();
                        s.push(mdat_header.clone()).unwrap();
                        s.push(payload.clone()).unwrap();
                        let mut n = 0;
                        while let Some(o) = s.next_output() {
                            if let StreamOutput::Fragment(f) = o {
                                n += f.payload.len();
                            }
                        }
                        n
                    },
                    BatchSize::SmallInput,
                )
            });
        }
    }
    g.finish();
}

fn header_and_sparse(c: &mut Criterion) {
    let (_, moov) = init();
    let movie = parse_moov(&moov).unwrap();
    let tracks: Vec<IngestTrack> = movie
        .tracks
        .iter()
        .map(|t| IngestTrack { info: t.clone(), name: format!("track{}", t.track_id), bitrate: 2_000_000 })
        .collect();
    c.bench_function("build_ingest_header_2_tracks", |b| {
        b.iter(|| IngestHeader::build(tracks.clone(), "video", Some("fmp4ingestsink")).bytes.len())
    });
    let section = Bytes::from_static(&[0xFC; 40]);
    c.bench_function("build_sparse_fragment", |b| {
        let mut k = 0u32;
        b.iter(|| {
            k += 1;
            let m = SparseMessage {
                time: u64::from(k) * 20_000_000,
                duration: 300_000_000,
                id: k,
                presentation_time_delta: 40_000_000,
                message: section.clone(),
            };
            write_sparse_fragment(3, k, &m).len()
        })
    });
}

criterion_group!(benches, split_and_rewrite, header_and_sparse);
criterion_main!(benches);
