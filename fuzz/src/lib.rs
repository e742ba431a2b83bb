// SPDX-License-Identifier: MPL-2.0
//! The bodies of the fuzz targets: each feeds arbitrary bytes to one parser of
//! fmp4ingest-core, or of the local endpoint ([`endpoint`]), and checks what must hold
//! whatever the input. `fuzz_targets/` wraps them for
//! libFuzzer; the tests below replay the committed corpora on stable, so that a crash once
//! found stays fixed.

mod endpoint;

pub use endpoint::{endpoint_cmaf, endpoint_ingest, endpoint_programs, endpoint_route};
use fmp4ingest_core::Bytes;
use fmp4ingest_core::bmff::Boxes;
use fmp4ingest_core::cmaf::boxes::{
    BitRate, EventMessage, Kind, ProducerReferenceTime, SegmentType, parse_elng, parse_uri_meta_sample_entry,
    write_elng, write_uri_meta_sample_entry,
};
use fmp4ingest_core::cmaf::stream::{CmafOutput, CmafStream, CmafStreamConfig};
use fmp4ingest_core::ingest_stream::{IngestStream, StreamConfig, StreamOutput};
use fmp4ingest_core::movie::parse_moov;
use fmp4ingest_core::scte35::{SpliceCommand, build_splice_insert, parse_section};
use fmp4ingest_core::splitter::{BoxSplitter, SplitterLimits, Unit};
use fmp4ingest_core::track_fragment::FragmentReader;

/// The init segment (ftyp, moov) of a real isofmp4mux stream, video and audio: the `rewrite`
/// target reads its fragments against it.
pub const INIT: &[u8] = include_bytes!("../init.mp4");

/// Limits small enough that a fuzzer cannot make the splitter hold much.
fn limits() -> SplitterLimits {
    SplitterLimits { max_box_size: 1 << 20, max_mdat_size: 4 << 20 }
}

/// The splitter, fed in chunks whose sizes come from the input's first byte: every unit it
/// yields lies within what was pushed.
pub fn splitter(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else { return };
    let chunk = usize::from(first % 64) + 1;
    let mut s = BoxSplitter::new(limits());
    let mut total = 0u64;
    for c in rest.chunks(chunk) {
        total += c.len() as u64;
        if s.push(Bytes::copy_from_slice(c)).is_err() {
            return;
        }
        while let Some(u) = s.next_unit() {
            check_unit(&u, total);
        }
    }
    let _ = s.finish();
    while let Some(u) = s.next_unit() {
        check_unit(&u, total);
    }
}

fn check_unit(u: &Unit, pushed: u64) {
    if let Unit::Fragment(f) = u {
        assert!(f.payload_offset + f.payload.len() <= pushed, "a fragment beyond the input");
        assert!(f.moof.len() as u64 <= pushed);
    }
}

/// The moov parser: any input is a track list or a typed error.
pub fn moov(data: &[u8]) {
    if let Ok(movie) = parse_moov(data) {
        assert!(!movie.tracks.is_empty(), "a movie without tracks is refused");
        for t in &movie.tracks {
            assert!(t.timescale > 0, "a zero timescale is refused");
        }
    }
}

/// The fragment rewriter: the input as moof + mdat after a real init segment, each per-track
/// fragment read from it rewritten as a Smooth fragment; the mdat of every rewritten fragment
/// holds exactly the samples its trun describes. Returns how many were rewritten.
pub fn rewrite(data: &[u8]) -> usize {
    let mut rewritten = 0;
    let mut s = BoxSplitter::new(limits());
    if s.push(Bytes::from_static(INIT)).is_err() {
        return 0;
    }
    let mut reader = None;
    let _ = s.push(Bytes::copy_from_slice(data));
    let _ = s.finish();
    while let Some(u) = s.next_unit() {
        match u {
            Unit::Init(init) => reader = parse_moov(&init.moov).ok().map(|m| FragmentReader::new(&m)),
            Unit::Fragment(f) => {
                let Some(r) = reader.as_mut() else { continue };
                let Ok(trafs) = r.read(&f) else { continue };
                for (i, tf) in trafs.iter().enumerate() {
                    let timing = fmp4ingest_core::fragment::FragmentTiming {
                        time: tf.decode_time,
                        duration: tf.duration(),
                        decode_time: tf.decode_time,
                        index: None,
                        timescale: 1000,
                    };
                    let out = fmp4ingest_core::fragment::write_fragment(tf, i as u32, timing, Default::default());
                    let sizes: u64 = tf.samples.iter().map(|s| u64::from(s.size)).sum();
                    assert_eq!(out.payload.len(), sizes, "the mdat holds exactly the samples");
                    rewritten += 1;
                }
            }
            Unit::Skipped { .. } => {}
        }
    }
    rewritten
}

/// The same input through the whole media path as the element runs it by default: the
/// fragments re-cut on the 2 s grid (timeline.rs). Nothing panics, and no output fragment
/// carries more payload than came in.
pub fn on_the_grid(data: &[u8]) -> usize {
    let config = StreamConfig { limits: limits(), ..StreamConfig::default() };
    let mut s = IngestStream::new(config);
    if s.push(Bytes::from_static(INIT)).is_err() {
        return 0;
    }
    let _ = s.push(Bytes::copy_from_slice(data));
    let _ = s.finish();
    let mut out = 0;
    while let Some(o) = s.next_output() {
        if let StreamOutput::Fragment(f) = o {
            assert!(f.payload.len() <= data.len() as u64, "a fragment with more payload than came in");
            out += 1;
        }
    }
    out
}

/// The parsers of the boxes CMAF ingest adds (styp, prft, btrt, kind, elng, urim, emsg), over
/// every top-level box of the input: any box is a value or a typed error, and a value written
/// again parses back to itself.
pub fn cmaf_boxes(data: &[u8]) {
    for b in Boxes::new(data) {
        let Ok(b) = b else { return };
        let mut out = Vec::new();
        if let Ok(v) = SegmentType::parse(b) {
            v.write(&mut out);
            assert_eq!(SegmentType::parse(one(&out)), Ok(v));
        }
        out.clear();
        if let Ok(v) = ProducerReferenceTime::parse(b) {
            v.write(&mut out);
            // Written as version 1: the same values.
            assert_eq!(ProducerReferenceTime::parse(one(&out)), Ok(v));
        }
        out.clear();
        if let Ok(v) = BitRate::parse(b) {
            v.write(&mut out);
            assert_eq!(BitRate::parse(one(&out)), Ok(v));
        }
        out.clear();
        if let Ok(v) = Kind::parse(b) {
            v.write(&mut out);
            assert_eq!(Kind::parse(one(&out)), Ok(v));
        }
        out.clear();
        if let Ok(v) = parse_elng(b) {
            write_elng(&mut out, &v);
            assert_eq!(parse_elng(one(&out)), Ok(v));
        }
        out.clear();
        if let Ok(v) = parse_uri_meta_sample_entry(b) {
            write_uri_meta_sample_entry(&mut out, &v);
            assert_eq!(parse_uri_meta_sample_entry(one(&out)), Ok(v));
        }
        out.clear();
        if let Ok(v) = EventMessage::parse(b).map(|e| EventMessage { version: 1, ..e }) {
            v.write(&mut out);
            assert_eq!(out.len(), v.size());
            assert_eq!(EventMessage::parse(one(&out)), Ok(v));
        }
    }
}

fn one(bytes: &[u8]) -> fmp4ingest_core::bmff::BoxRef<'_> {
    Boxes::new(bytes).next().expect("a box was written").expect("a written box parses")
}

/// The CMAF media path as the element runs it: the input as moof + mdat after a real init
/// segment, split per track on the 2 s grid and given in chunks. Nothing panics, every chunk
/// belongs to a track a header was given for first, and no track's chunks carry more payload
/// than came in.
pub fn cmaf_stream(data: &[u8]) -> usize {
    let config = CmafStreamConfig { limits: limits(), chunked: true, ..CmafStreamConfig::default() };
    let mut s = CmafStream::new(config);
    if s.push(Bytes::from_static(INIT)).is_err() {
        return 0;
    }
    let _ = s.push(Bytes::copy_from_slice(data));
    let _ = s.finish();
    let (mut headers, mut payload, mut chunks) = (Vec::new(), 0u64, 0);
    while let Some(o) = s.next_output() {
        match o {
            CmafOutput::Header(h) => headers.push(h.track_id()),
            CmafOutput::Chunk(c) => {
                assert!(headers.contains(&c.track_id), "a chunk before its track's header");
                if !c.lmsg || c.first {
                    payload += c.payload.len();
                }
                chunks += 1;
            }
            CmafOutput::Notice(_) => {}
        }
    }
    // A segment given again with lmsg repeats its payload once at most.
    assert!(payload <= 2 * data.len() as u64, "more payload than came in");
    chunks
}

/// The SCTE-35 section parser: a splice_insert it accepts builds back to a section it reads
/// the same.
pub fn scte35(data: &[u8]) {
    if let Ok(info) = parse_section(data) {
        if let SpliceCommand::Insert(i) = info.command {
            if i.program_splice || i.cancel {
                let again = parse_section(&build_splice_insert(&i)).expect("a built section parses");
                assert_eq!(again.command, SpliceCommand::Insert(i));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// Every file of `corpus/<target>` (seeds and whatever fuzzing added) through the target.
    fn replay(target: &str, f: fn(&[u8])) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let data = std::fs::read(e.unwrap().path()).unwrap();
            f(&data);
            n += 1;
        }
        assert!(n >= 3, "{target}: {n} inputs");
    }

    #[test]
    fn splitter_corpus() {
        replay("splitter", super::splitter);
    }

    #[test]
    fn moov_corpus() {
        replay("moov", super::moov);
    }

    #[test]
    fn rewrite_corpus() {
        replay("rewrite", |d| {
            super::rewrite(d);
            super::on_the_grid(d);
        });
        // The seeds are real fragments: they are read and rewritten, not refused, and on the
        // grid they come out as fragments too (flushed at the end).
        let seed = std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus/rewrite/fragment0")).unwrap();
        assert_eq!(super::rewrite(&seed), 2, "video and audio");
        assert_eq!(super::on_the_grid(&seed), 2, "video and audio, on the grid");
    }

    #[test]
    fn cmaf_corpus() {
        replay("cmaf", |d| {
            super::cmaf_boxes(d);
            super::cmaf_stream(d);
        });
        // The seed of real fragments comes out as chunks of both tracks.
        let seed = std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus/cmaf/fragment0")).unwrap();
        assert!(super::cmaf_stream(&seed) >= 2);
    }

    #[test]
    fn scte35_corpus() {
        replay("scte35", super::scte35);
    }

    #[test]
    fn endpoint_route_corpus() {
        replay("endpoint_route", super::endpoint_route);
    }

    #[test]
    fn endpoint_programs_corpus() {
        replay("endpoint_programs", super::endpoint_programs);
    }

    #[test]
    fn endpoint_cmaf_corpus() {
        replay("endpoint_cmaf", |d| {
            super::endpoint_cmaf(d);
        });
        // Every real request is taken, whatever the chunking; the metadata segments give the
        // event, and the chunked segments join.
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus/endpoint_cmaf");
        for seed in ["video-segment1", "audio-segment2", "chunked-segment2", "scte35-header"] {
            let d = std::fs::read(dir.join(seed)).unwrap();
            for first in [d[0] & 0xc0, d[0] | 0x3f] {
                assert_eq!(super::endpoint_cmaf(&[&[first][..], &d[1..]].concat()), 1, "{seed}");
            }
        }
        assert_eq!(super::endpoint_cmaf(&std::fs::read(dir.join("scte35-segment1")).unwrap()), 2);
    }

    #[test]
    fn endpoint_ingest_corpus() {
        replay("endpoint_ingest", |d| {
            super::endpoint_ingest(d);
        });
        // The real body is read whole, whatever the chunking: its fragments are served.
        for first in [0x00, 0x01, 0x3f] {
            let seed = [&[first][..], super::endpoint::REAL_BODY].concat();
            assert!(super::endpoint_ingest(&seed) >= 2, "chunks of {}", usize::from(first) * 64 + 1);
        }
    }
}
