// SPDX-License-Identifier: MPL-2.0
//! Smooth ingest fragments: one moof with a single traf, then the mdat (docs/protocol.md §2.8-2.13).
//!
//! The moof is written anew: `mfhd` (the stream's sequence), `traf` = `tfhd`, `tfdt` v1, one
//! `trun` whose data_offset points just past the mdat header, and `tfxd`. The mdat payload is the
//! track's sample data as views of the muxer's buffers; only the moof and the mdat header are
//! new bytes.

use alloc::vec::Vec;
use bytes::Bytes;

use crate::bmff::fourcc::codes;
use crate::bmff::writer::{PutBytes, mdat_header, write_box, write_full_box};
use crate::payload::Payload;
use crate::smooth_boxes::Tfxd;
use crate::track_fragment::{Sample, TrackFragment};

/// Choices in how fragments are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentOptions {
    /// Write `tfdt` (v1) next to `tfxd`.
    pub tfdt: bool,
    /// tfxd version: 1, or 2 with the (inferred) fragment_index.
    pub tfxd_version: u8,
    /// Set tfhd `default-base-is-moof`, as the MS-SSTR HEVC amendment (2.2.4.6) asks for HEVC.
    pub default_base_is_moof: bool,
}

impl Default for FragmentOptions {
    fn default() -> Self {
        FragmentOptions { tfdt: true, tfxd_version: 1, default_base_is_moof: false }
    }
}

/// Timing of an output fragment on the ingest timeline, in the track's timescale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentTiming {
    /// tfxd fragment_absolute_time: presentation time of the first sample.
    pub time: u64,
    /// tfxd fragment_duration: sum of the sample durations.
    pub duration: u64,
    /// tfdt baseMediaDecodeTime.
    pub decode_time: u64,
    /// tfxd v2 fragment_index.
    pub index: Option<u64>,
    /// Ticks per second of the times above (the track's mdhd timescale).
    pub timescale: u32,
}

impl FragmentTiming {
    /// Ticks to nanoseconds, without overflow for any 64-bit tick count.
    pub fn ticks_to_ns(&self, ticks: u64) -> u64 {
        let ns = u128::from(ticks) * 1_000_000_000 / u128::from(self.timescale.max(1));
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// Presentation time of the fragment in nanoseconds on the track's timeline.
    pub fn start_ns(&self) -> u64 {
        self.ticks_to_ns(self.time)
    }

    pub fn duration_ns(&self) -> u64 {
        self.ticks_to_ns(self.duration)
    }
}

/// One output fragment, ready for the wire.
#[derive(Debug, Clone)]
pub struct Fragment {
    pub track_id: u32,
    pub sequence: u32,
    pub timing: FragmentTiming,
    pub sample_count: u32,
    pub starts_with_sync: bool,
    /// moof and mdat header.
    pub head: Bytes,
    /// mdat payload.
    pub payload: Payload,
}

impl Fragment {
    /// Bytes on the wire.
    pub fn wire_len(&self) -> u64 {
        self.head.len() as u64 + self.payload.len()
    }

    /// The wire bytes as slices: the head, then the payload views.
    pub fn wire_chunks(&self) -> impl Iterator<Item = &Bytes> {
        core::iter::once(&self.head).chain(self.payload.chunks())
    }
}

const TFHD_DEFAULT_FLAGS: u32 = 0x20;
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
const TRUN_DATA_OFFSET: u32 = 0x01;
const TRUN_FIRST_SAMPLE_FLAGS: u32 = 0x04;
const TRUN_DURATION: u32 = 0x100;
const TRUN_SIZE: u32 = 0x200;
const TRUN_FLAGS: u32 = 0x400;
const TRUN_CTO: u32 = 0x800;

/// How the sample flags are carried: all equal (tfhd default), all but the first equal
/// (default + first_sample_flags, the usual video case), or per sample.
enum FlagsLayout {
    Default(u32),
    FirstThenDefault(u32, u32),
    PerSample,
}

/// How the sample table is written: the flags' layout, and whether any sample has a
/// composition offset, and a negative one. One pass without early exits (it runs for every
/// sample of the stream, and vectorises).
fn table_layout(samples: &[Sample]) -> (FlagsLayout, bool, bool) {
    let Some((first, rest)) = samples.split_first() else {
        return (FlagsLayout::Default(0), false, false);
    };
    let d = rest.first().map_or(first.flags, |s| s.flags);
    let (mut mixed, mut cto_bits, mut negative) = (false, first.cto, first.cto < 0);
    for s in rest {
        mixed |= s.flags != d;
        cto_bits |= s.cto;
        negative |= s.cto < 0;
    }
    let layout = if mixed {
        FlagsLayout::PerSample
    } else if first.flags == d {
        FlagsLayout::Default(d)
    } else {
        FlagsLayout::FirstThenDefault(first.flags, d)
    };
    (layout, cto_bits != 0, negative)
}

/// Fills a trun's sample table, `table` sized for `samples` with duration and size, plus
/// flags (`F`) and composition offset (`C`) per entry: fixed offsets, no test per field.
fn fill_table<const F: bool, const C: bool>(table: &mut [u8], samples: &[Sample]) {
    let per_sample = 8 + 4 * usize::from(F) + 4 * usize::from(C);
    for (entry, s) in table.chunks_exact_mut(per_sample).zip(samples) {
        entry[0..4].copy_from_slice(&s.duration.to_be_bytes());
        entry[4..8].copy_from_slice(&s.size.to_be_bytes());
        if F {
            entry[8..12].copy_from_slice(&s.flags.to_be_bytes());
        }
        if C {
            let at = if F { 12 } else { 8 };
            entry[at..at + 4].copy_from_slice(&s.cto.to_be_bytes());
        }
    }
}

/// Writes the Smooth fragment of one track run.
pub fn write_fragment(tf: &TrackFragment, sequence: u32, timing: FragmentTiming, opts: FragmentOptions) -> Fragment {
    let tfxd = Tfxd {
        version: opts.tfxd_version,
        fragment_absolute_time: timing.time,
        fragment_duration: timing.duration,
        fragment_index: timing.index,
    };
    let moof = MoofSpec {
        track_id: tf.track_id,
        samples: &tf.samples,
        payload_len: tf.data.len(),
        sequence,
        decode_time: opts.tfdt.then_some(timing.decode_time),
        default_base_is_moof: opts.default_base_is_moof,
        tfxd: Some(tfxd),
    };
    let mut head = Vec::new();
    moof.write(&mut head);
    Fragment {
        track_id: tf.track_id,
        sequence,
        timing,
        sample_count: tf.samples.len() as u32,
        starts_with_sync: tf.starts_with_sync(),
        head: Bytes::from(head),
        payload: tf.data.clone(),
    }
}

/// A `moof` of one track run and the `mdat` header after it: `mfhd`, then a `traf` with
/// `tfhd`, `tfdt` v1 (when there is a decode time), one `trun` whose data_offset points just
/// past the mdat header, and `tfxd` (when given). Smooth and CMAF fragments both are one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MoofSpec<'a> {
    pub track_id: u32,
    pub samples: &'a [Sample],
    pub payload_len: u64,
    pub sequence: u32,
    pub decode_time: Option<u64>,
    pub default_base_is_moof: bool,
    pub tfxd: Option<Tfxd>,
}

impl MoofSpec<'_> {
    /// Appends the moof and the mdat header to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let samples = self.samples;
        let (layout, any_cto, negative_cto) = table_layout(samples);

        let mut tfhd_flags = 0;
        if !matches!(layout, FlagsLayout::PerSample) {
            tfhd_flags |= TFHD_DEFAULT_FLAGS;
        }
        if self.default_base_is_moof {
            tfhd_flags |= TFHD_DEFAULT_BASE_IS_MOOF;
        }
        let mut trun_flags = TRUN_DATA_OFFSET | TRUN_DURATION | TRUN_SIZE;
        match layout {
            FlagsLayout::PerSample => trun_flags |= TRUN_FLAGS,
            FlagsLayout::FirstThenDefault(..) => trun_flags |= TRUN_FIRST_SAMPLE_FLAGS,
            FlagsLayout::Default(_) => {}
        }
        if any_cto {
            trun_flags |= TRUN_CTO;
        }

        let per_sample = 8 + 4 * usize::from(matches!(layout, FlagsLayout::PerSample)) + 4 * usize::from(any_cto);
        let (mdat, mdat_len) = mdat_header(self.payload_len);
        // Sized exactly, so that a fresh vector becomes `Bytes` without a reallocation: moof,
        // mfhd, traf, tfhd, tfdt, trun, tfxd, then the mdat header.
        let size = 8
            + 16
            + 8
            + 16
            + 4 * usize::from(!matches!(layout, FlagsLayout::PerSample))
            + 20 * usize::from(self.decode_time.is_some())
            + 20
            + 4 * usize::from(matches!(layout, FlagsLayout::FirstThenDefault(..)))
            + per_sample * samples.len()
            + self.tfxd.map_or(0, |t| t.size())
            + mdat_len;
        out.reserve(size);
        let moof_start = out.len();
        let mut data_offset_at = 0;
        write_box(out, codes::MOOF, |o| {
            write_full_box(o, codes::MFHD, 0, 0, |o| o.put_u32(self.sequence));
            write_box(o, codes::TRAF, |o| {
                write_full_box(o, codes::TFHD, 0, tfhd_flags, |o| {
                    o.put_u32(self.track_id);
                    match layout {
                        FlagsLayout::Default(d) | FlagsLayout::FirstThenDefault(_, d) => o.put_u32(d),
                        FlagsLayout::PerSample => {}
                    }
                });
                if let Some(decode_time) = self.decode_time {
                    write_full_box(o, codes::TFDT, 1, 0, |o| o.put_u64(decode_time));
                }
                write_full_box(o, codes::TRUN, u8::from(negative_cto), trun_flags, |o| {
                    o.put_u32(samples.len() as u32);
                    data_offset_at = o.len();
                    o.put_i32(0); // patched below, once the moof size is known
                    if let FlagsLayout::FirstThenDefault(first, _) = layout {
                        o.put_u32(first);
                    }
                    // The sample table in one go: sized once, each entry filled in place.
                    let at = o.len();
                    o.resize(at + per_sample * samples.len(), 0);
                    let table = &mut o[at..];
                    match (matches!(layout, FlagsLayout::PerSample), any_cto) {
                        (false, false) => fill_table::<false, false>(table, samples),
                        (false, true) => fill_table::<false, true>(table, samples),
                        (true, false) => fill_table::<true, false>(table, samples),
                        (true, true) => fill_table::<true, true>(table, samples),
                    }
                });
                if let Some(tfxd) = &self.tfxd {
                    tfxd.write(o);
                }
            });
        });
        // data_offset is relative to the moof's first byte (no base_data_offset in tfhd).
        let data_offset = (out.len() - moof_start + mdat_len) as i32;
        out[data_offset_at..data_offset_at + 4].copy_from_slice(&data_offset.to_be_bytes());
        out.extend_from_slice(&mdat[..mdat_len]);
        debug_assert_eq!(out.len() - moof_start, size, "the moof's size worked out beforehand");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex::parse_hex;
    use crate::track_fragment::{SAMPLE_FLAGS_SYNC, Sample, TrackFragment};
    use alloc::vec;

    #[test]
    fn audio_fragment_is_byte_exact() {
        // Two AAC frames of 1024 ticks at 48 kHz, 10 and 12 bytes, all sync.
        let mut data = Payload::new();
        data.push(Bytes::from(vec![0xAA; 22]));
        let tf = TrackFragment {
            track_id: 2,
            decode_time: 48000,
            samples: vec![
                Sample { duration: 1024, size: 10, flags: SAMPLE_FLAGS_SYNC, cto: 0 },
                Sample { duration: 1024, size: 12, flags: SAMPLE_FLAGS_SYNC, cto: 0 },
            ],
            data,
            anchor: None,
        };
        let timing = FragmentTiming { time: 48000, duration: 2048, decode_time: 48000, index: None, timescale: 48000 };
        let f = write_fragment(&tf, 1, timing, FragmentOptions::default());
        let expected = parse_hex(
            "00000098 6D6F6F66
               00000010 6D666864 00000000 00000001
               00000080 74726166
                 00000014 74666864 00000020 00000002 02000000
                 00000014 74666474 01000000 00000000 0000BB80
                 00000024 7472756E 00000301 00000002 000000A0 00000400 0000000A 00000400 0000000C
                 0000002C 75756964 6D1D9B05 42D544E6 80E2141D AFF757B2 01000000 00000000 0000BB80 00000000 00000800
             0000001E 6D646174",
        );
        assert_eq!(f.head.to_vec(), expected);
        assert_eq!(f.wire_len(), 152 + 30);
    }

    #[test]
    fn video_fragment_uses_first_sample_flags_and_signed_offsets_when_needed() {
        let mut data = Payload::new();
        data.push(Bytes::from(vec![0; 6]));
        let s = |flags, cto| Sample { duration: 100, size: 2, flags, cto };
        let tf = TrackFragment {
            track_id: 1,
            decode_time: 0,
            samples: vec![s(SAMPLE_FLAGS_SYNC, 0), s(0x0101_0000, -100), s(0x0101_0000, 100)],
            data,
            anchor: None,
        };
        let timing = FragmentTiming { time: 0, duration: 300, decode_time: 0, index: None, timescale: 3000 };
        let f = write_fragment(&tf, 9, timing, FragmentOptions { tfdt: false, ..FragmentOptions::default() });
        let moof = crate::bmff::Boxes::new(&f.head).next().unwrap().unwrap();
        let traf = moof.require(codes::TRAF).unwrap();
        assert!(traf.child(codes::TFDT).unwrap().is_none());
        let mut r = traf.require(codes::TRUN).unwrap().reader();
        // version 1 for the negative offset; data offset, first-sample-flags, duration, size, CTO
        assert_eq!(r.full_box().unwrap(), (1, 0x0B05));
        let mut r = traf.require(codes::TFHD).unwrap().reader();
        assert_eq!(r.full_box().unwrap(), (0, 0x20));
        r.u32("track").unwrap();
        assert_eq!(r.u32("default flags").unwrap(), 0x0101_0000);
    }
}
