// SPDX-License-Identifier: MPL-2.0
//! Reading a muxer's moof + mdat into per-track sample runs.
//!
//! isofmp4mux puts every track in one moof (one traf each, several interleaved truns); the qtmux
//! family writes one traf per moof. Either way each traf becomes one [`TrackFragment`]: its decode
//! time, the full sample table (defaults from tfhd and trex resolved), and its sample data as
//! views of the mdat payload. Nothing of the payload is copied (ISO/IEC 14496-12 §8.8).

use alloc::vec::Vec;

use crate::bmff::fourcc::codes;
use crate::bmff::{BoxRef, Boxes};
use crate::error::{Error, Result};
use crate::movie::{MovieInfo, SampleDefaults};
use crate::payload::Payload;
use crate::splitter::RawFragment;

/// Sample flags of a sync sample (depends on nothing) and of a non-sync one (docs/protocol.md §2.10).
pub const SAMPLE_FLAGS_SYNC: u32 = 0x0200_0000;
pub const SAMPLE_FLAGS_NON_SYNC: u32 = 0x0101_0000;
/// `sample_is_non_sync_sample` in the sample flags.
const NON_SYNC_BIT: u32 = 0x0001_0000;

/// One sample as a trun describes it, defaults resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub duration: u32,
    pub size: u32,
    pub flags: u32,
    /// Composition time offset (presentation minus decode time).
    pub cto: i32,
}

impl Sample {
    pub fn is_sync(&self) -> bool {
        self.flags & NON_SYNC_BIT == 0
    }
}

/// The samples of one track from one muxer fragment.
#[derive(Debug, Clone)]
pub struct TrackFragment {
    pub track_id: u32,
    /// Decode time of the first sample, in the track's timescale.
    pub decode_time: u64,
    pub samples: Vec<Sample>,
    /// The sample data, in sample order.
    pub data: Payload,
    /// A sample whose time the transport knew: (index of the sample, running time in ns of
    /// its presentation). Anchors the muxer's timeline to the pipeline's.
    pub anchor: Option<(usize, u64)>,
}

impl TrackFragment {
    /// Sum of the sample durations.
    pub fn duration(&self) -> u64 {
        self.samples.iter().map(|s| u64::from(s.duration)).sum()
    }

    /// Presentation time of the first sample (decode time plus its composition offset).
    pub fn presentation_time(&self) -> Result<u64> {
        let cto = self.samples.first().map_or(0, |s| i64::from(s.cto));
        let t = i128::from(self.decode_time) + i128::from(cto);
        u64::try_from(t).map_err(|_| Error::TimestampOutOfRange { track_id: self.track_id })
    }

    pub fn starts_with_sync(&self) -> bool {
        self.samples.first().is_some_and(Sample::is_sync)
    }

    /// Moves the fragment's start by `delta` ticks (negative: earlier) and keeps every other
    /// sample where it was: the first sample's duration absorbs the difference. Refused when
    /// that would leave it without duration.
    pub fn shift_start(&mut self, delta: i64) -> bool {
        let Some(first) = self.samples.first_mut() else { return false };
        let duration = i64::from(first.duration) - delta;
        let start = i128::from(self.decode_time) + i128::from(delta);
        match (u32::try_from(duration), u64::try_from(start)) {
            (Ok(d), Ok(t)) if d > 0 => {
                first.duration = d;
                self.decode_time = t;
                true
            }
            _ => false,
        }
    }

    /// The shortest sample duration, in ticks.
    pub fn shortest_sample(&self) -> u32 {
        self.samples.iter().map(|s| s.duration).min().unwrap_or(0)
    }
}

/// Splits muxer fragments into per-track runs, remembering each track's next decode time for
/// muxers that write no tfdt.
#[derive(Debug, Clone)]
pub struct FragmentReader {
    tracks: Vec<(u32, SampleDefaults, Option<u64>)>,
}

const TFHD_BASE_DATA_OFFSET: u32 = 0x01;
const TFHD_SAMPLE_DESCRIPTION_INDEX: u32 = 0x02;
const TFHD_DEFAULT_DURATION: u32 = 0x08;
const TFHD_DEFAULT_SIZE: u32 = 0x10;
const TFHD_DEFAULT_FLAGS: u32 = 0x20;
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;

const TRUN_DATA_OFFSET: u32 = 0x01;
const TRUN_FIRST_SAMPLE_FLAGS: u32 = 0x04;
const TRUN_DURATION: u32 = 0x100;
const TRUN_SIZE: u32 = 0x200;
const TRUN_FLAGS: u32 = 0x400;
const TRUN_CTO: u32 = 0x800;

/// Reads a trun's sample table (each entry's fields in the order its flags give them) into
/// `samples`, `defaults` standing in for the fields it lacks. Returns the bytes of data the
/// samples take and whether a version 0 (unsigned) composition offset was out of range.
fn decode_table(tflags: u32, table: &[u8], defaults: Sample, v0: bool, samples: &mut Vec<Sample>) -> (u64, bool) {
    let has = |flag| tflags & flag != 0;
    // One loop per field layout: fixed offsets, no test per field and sample (it runs for every
    // sample of the stream).
    match (has(TRUN_DURATION), has(TRUN_SIZE), has(TRUN_FLAGS), has(TRUN_CTO)) {
        (false, false, false, false) => (0, false),
        (false, false, false, true) => decode::<false, false, false, true>(table, defaults, v0, samples),
        (false, false, true, false) => decode::<false, false, true, false>(table, defaults, v0, samples),
        (false, false, true, true) => decode::<false, false, true, true>(table, defaults, v0, samples),
        (false, true, false, false) => decode::<false, true, false, false>(table, defaults, v0, samples),
        (false, true, false, true) => decode::<false, true, false, true>(table, defaults, v0, samples),
        (false, true, true, false) => decode::<false, true, true, false>(table, defaults, v0, samples),
        (false, true, true, true) => decode::<false, true, true, true>(table, defaults, v0, samples),
        (true, false, false, false) => decode::<true, false, false, false>(table, defaults, v0, samples),
        (true, false, false, true) => decode::<true, false, false, true>(table, defaults, v0, samples),
        (true, false, true, false) => decode::<true, false, true, false>(table, defaults, v0, samples),
        (true, false, true, true) => decode::<true, false, true, true>(table, defaults, v0, samples),
        (true, true, false, false) => decode::<true, true, false, false>(table, defaults, v0, samples),
        (true, true, false, true) => decode::<true, true, false, true>(table, defaults, v0, samples),
        (true, true, true, false) => decode::<true, true, true, false>(table, defaults, v0, samples),
        (true, true, true, true) => decode::<true, true, true, true>(table, defaults, v0, samples),
    }
}

/// [`decode_table`] for one layout: duration, size, flags, composition offset present or not.
fn decode<const D: bool, const S: bool, const F: bool, const C: bool>(
    table: &[u8],
    defaults: Sample,
    v0: bool,
    samples: &mut Vec<Sample>,
) -> (u64, bool) {
    let per_sample = 4 * (usize::from(D) + usize::from(S) + usize::from(F) + usize::from(C));
    let mut run_len = 0u64;
    let mut bad_cto = false;
    samples.extend(table.chunks_exact(per_sample).map(|entry| {
        let mut at = 0;
        let mut next = || {
            let v = u32::from_be_bytes([entry[at], entry[at + 1], entry[at + 2], entry[at + 3]]);
            at += 4;
            v
        };
        let duration = if D { next() } else { defaults.duration };
        let size = if S { next() } else { defaults.size };
        let flags = if F { next() } else { defaults.flags };
        let cto = if C {
            let raw = next();
            // Version 0 offsets are unsigned; a value above i32::MAX cannot be a real offset.
            bad_cto |= v0 && raw > i32::MAX as u32;
            raw as i32
        } else {
            0
        };
        run_len += u64::from(size);
        Sample { duration, size, flags, cto }
    }));
    (run_len, bad_cto)
}

/// No fragment of any real stream holds this many samples in one traf; a larger count in a
/// header is refused before anything is allocated for it.
const MAX_SAMPLES_PER_TRAF: u32 = 1 << 20;

impl FragmentReader {
    pub fn new(movie: &MovieInfo) -> Self {
        FragmentReader { tracks: movie.tracks.iter().map(|t| (t.track_id, t.defaults, None)).collect() }
    }

    /// The per-track runs of one muxer fragment, in traf order. Trafs of tracks the moov did
    /// not describe as audio or video are dropped.
    pub fn read(&mut self, frag: &RawFragment) -> Result<Vec<TrackFragment>> {
        let moof =
            Boxes::new(&frag.moof).next().ok_or(Error::MissingBox { parent: codes::MOOF, child: codes::TRAF })??;
        if moof.box_type() != codes::MOOF {
            return Err(Error::UnexpectedBox { box_type: moof.box_type(), expected: "moof" });
        }
        let mut out = Vec::new();
        // Where the data of the next traf starts when it names no base (ISO: the end of the
        // previous traf's data, or the moof for the first traf).
        let mut implicit_base = frag.moof_offset;
        for traf in moof.children()? {
            let traf = traf?;
            if traf.box_type() != codes::TRAF {
                continue;
            }
            let (tf, data_end) = self.read_traf(traf, frag, implicit_base)?;
            implicit_base = data_end;
            if let Some(tf) = tf {
                out.push(tf);
            }
        }
        Ok(out)
    }

    fn read_traf(
        &mut self,
        traf: BoxRef<'_>,
        frag: &RawFragment,
        implicit_base: u64,
    ) -> Result<(Option<TrackFragment>, u64)> {
        let tfhd = traf.require(codes::TFHD)?;
        let mut r = tfhd.reader();
        let (_, flags) = r.full_box()?;
        let track_id = r.u32("track_ID")?;
        let known = self.tracks.iter().position(|(id, _, _)| *id == track_id);
        let trex = known.map(|i| self.tracks[i].1).unwrap_or_default();
        let base = if flags & TFHD_BASE_DATA_OFFSET != 0 {
            r.u64("base_data_offset")?
        } else if flags & TFHD_DEFAULT_BASE_IS_MOOF != 0 {
            frag.moof_offset
        } else {
            implicit_base
        };
        if flags & TFHD_SAMPLE_DESCRIPTION_INDEX != 0 {
            r.u32("sample_description_index")?;
        }
        let default_duration =
            if flags & TFHD_DEFAULT_DURATION != 0 { r.u32("default_sample_duration")? } else { trex.duration };
        let default_size = if flags & TFHD_DEFAULT_SIZE != 0 { r.u32("default_sample_size")? } else { trex.size };
        let default_flags = if flags & TFHD_DEFAULT_FLAGS != 0 { r.u32("default_sample_flags")? } else { trex.flags };

        let mut decode_time = None;
        let mut samples = Vec::new();
        let mut data = Payload::new();
        let mut anchor = None;
        let mut next_data = base;
        for child in traf.children()? {
            let child = child?;
            match child.box_type() {
                codes::TFDT => {
                    let mut r = child.reader();
                    let (v, _) = r.full_box()?;
                    decode_time = Some(if v == 1 {
                        r.u64("baseMediaDecodeTime")?
                    } else {
                        u64::from(r.u32("baseMediaDecodeTime")?)
                    });
                }
                codes::TRUN => {
                    let mut r = child.reader();
                    let (version, tflags) = r.full_box()?;
                    let count = r.u32("sample_count")?;
                    let per_sample =
                        4 * (tflags & (TRUN_DURATION | TRUN_SIZE | TRUN_FLAGS | TRUN_CTO)).count_ones() as usize;
                    if count > MAX_SAMPLES_PER_TRAF || per_sample * count as usize > r.remaining() {
                        return Err(r.invalid("sample_count"));
                    }
                    let mut start = next_data;
                    if tflags & TRUN_DATA_OFFSET != 0 {
                        let off = r.i32("data_offset")?;
                        start = base.checked_add_signed(i64::from(off)).ok_or(r.invalid("data_offset"))?;
                    }
                    let first_flags =
                        if tflags & TRUN_FIRST_SAMPLE_FLAGS != 0 { Some(r.u32("first_sample_flags")?) } else { None };
                    // Grows with the samples actually read, never from the header's count alone.
                    samples.reserve((count as usize).min(4096));
                    // The whole table at once (its size was checked against the box above).
                    let table = r.bytes(per_sample * count as usize, "trun sample table")?;
                    let first_index = samples.len();
                    let defaults =
                        Sample { duration: default_duration, size: default_size, flags: default_flags, cto: 0 };
                    let (mut run_len, bad_cto) = decode_table(tflags, table, defaults, version == 0, &mut samples);
                    if bad_cto {
                        return Err(r.invalid("sample_composition_time_offset"));
                    }
                    if let (Some(f), Some(first)) = (first_flags, samples.get_mut(first_index)) {
                        first.flags = f;
                    }
                    // A trun whose entries carry no field at all: the defaults, `count` times.
                    if per_sample == 0 {
                        for i in 0..count {
                            let flags = if i == 0 { first_flags.unwrap_or(default_flags) } else { default_flags };
                            run_len += u64::from(default_size);
                            samples.push(Sample { duration: default_duration, size: default_size, flags, cto: 0 });
                        }
                    }
                    let rel = start.checked_sub(frag.payload_offset).ok_or(Error::SampleOutsideMdat { track_id })?;
                    let run = frag.payload.slice(rel, run_len).ok_or(Error::SampleOutsideMdat { track_id })?;
                    if anchor.is_none() && !frag.payload_times.is_empty() {
                        // The first sample of this run whose data starts a timed chunk.
                        let first = samples.len() - count as usize;
                        let mut at = rel;
                        for (i, s) in samples[first..].iter().enumerate() {
                            if let Some((_, t)) = frag.payload_times.iter().find(|(o, _)| *o == at) {
                                anchor = Some((first + i, *t));
                                break;
                            }
                            at += u64::from(s.size);
                        }
                    }
                    data.append(run);
                    next_data = start + run_len;
                }
                _ => {}
            }
        }
        let Some(i) = known else {
            return Ok((None, next_data));
        };
        let state = &mut self.tracks[i];
        let decode_time = decode_time.or(state.2).unwrap_or(0);
        let tf = TrackFragment { track_id, decode_time, samples, data, anchor };
        state.2 = decode_time.checked_add(tf.duration());
        Ok((Some(tf), next_data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fragment::{FragmentOptions, FragmentTiming, write_fragment};
    use crate::splitter::{BoxSplitter, Unit};
    use crate::test_support::{RunSpec, muxer_fragment, muxer_stream};
    use alloc::vec;
    use bytes::Bytes;

    fn samples(n: u32, size: u32, duration: u32, first_sync: bool) -> Vec<Sample> {
        (0..n)
            .map(|i| Sample {
                duration,
                size,
                flags: if i == 0 && first_sync { SAMPLE_FLAGS_SYNC } else { SAMPLE_FLAGS_NON_SYNC },
                cto: if i % 2 == 1 { 2 * duration as i32 } else { 0 },
            })
            .collect()
    }

    /// Splits a stream and reads every fragment with a reader built from its moov.
    fn read_all(stream: &[u8]) -> Vec<TrackFragment> {
        let mut split = BoxSplitter::default();
        split.push(Bytes::copy_from_slice(stream)).unwrap();
        let mut reader = None;
        let mut out = Vec::new();
        while let Some(u) = split.next_unit() {
            match u {
                Unit::Init(i) => reader = Some(FragmentReader::new(&crate::movie::parse_moov(&i.moov).unwrap())),
                Unit::Fragment(f) => out.extend(reader.as_mut().unwrap().read(&f).unwrap()),
                Unit::Skipped { .. } => {}
            }
        }
        out
    }

    #[test]
    fn multi_traf_moof_with_interleaved_runs_is_split_per_track() {
        // isofmp4mux layout: video runs and audio runs interleaved in one mdat.
        let payload: Vec<u8> = (0..=255u8).cycle().take(4 * 100 + 6 * 10).collect();
        let v = samples(4, 100, 3000, true);
        let a = samples(6, 10, 1024, false);
        let frag = muxer_fragment(
            &[
                (
                    1,
                    90_000,
                    vec![
                        RunSpec { samples: v[..2].to_vec(), payload_start: 0 },
                        RunSpec { samples: v[2..].to_vec(), payload_start: 200 + 30 },
                    ],
                ),
                (
                    2,
                    48_000,
                    vec![
                        RunSpec { samples: a[..3].to_vec(), payload_start: 200 },
                        RunSpec { samples: a[3..].to_vec(), payload_start: 430 },
                    ],
                ),
            ],
            &payload,
        );
        let tfs = read_all(&muxer_stream(&[frag]));
        assert_eq!(tfs.len(), 2);
        let (tv, ta) = (&tfs[0], &tfs[1]);
        assert_eq!((tv.track_id, tv.decode_time, tv.samples.as_slice()), (1, 90_000, v.as_slice()));
        assert_eq!((ta.track_id, ta.decode_time, ta.samples.as_slice()), (2, 48_000, a.as_slice()));
        let mut want_v = payload[..200].to_vec();
        want_v.extend_from_slice(&payload[230..430]);
        assert_eq!(tv.data.to_vec(), want_v);
        let mut want_a = payload[200..230].to_vec();
        want_a.extend_from_slice(&payload[430..460]);
        assert_eq!(ta.data.to_vec(), want_a);
        assert_eq!(tv.duration(), 12_000);
        assert!(tv.starts_with_sync());
        assert_eq!(tv.presentation_time().unwrap(), 90_000);
    }

    #[test]
    fn written_fragment_reads_back_identically_and_shares_the_payload() {
        let payload: Vec<u8> = (0..250u8).collect();
        let v = samples(5, 50, 3000, true);
        let frag = muxer_fragment(&[(1, 6000, vec![RunSpec { samples: v.clone(), payload_start: 0 }])], &payload);
        let tf = read_all(&muxer_stream(&[frag])).remove(0);
        let timing =
            FragmentTiming { time: 6000, duration: tf.duration(), decode_time: 6000, index: None, timescale: 3000 };
        let out = write_fragment(&tf, 7, timing, FragmentOptions::default());
        // The payload of the output is the input's memory, not a copy.
        assert_eq!(out.payload.chunk(0).unwrap().as_ptr(), tf.data.chunk(0).unwrap().as_ptr());
        // Parse the output as a muxer stream of its own.
        let mut wire = Vec::new();
        for c in out.wire_chunks() {
            wire.extend_from_slice(c);
        }
        let back = read_all(&muxer_stream(&[wire.clone()])).remove(0);
        assert_eq!(back.samples, v);
        assert_eq!(back.decode_time, 6000);
        assert_eq!(back.data.to_vec(), payload);
        // And the Smooth boxes are where [MS-SSTR] 2.2.4.3 puts them.
        let moof = crate::bmff::Boxes::new(&wire).next().unwrap().unwrap();
        let traf = moof.require(crate::bmff::fourcc::codes::TRAF).unwrap();
        let types: Vec<_> = traf.children().unwrap().map(|b| b.unwrap().box_type()).collect();
        assert_eq!(types, [codes::TFHD, codes::TFDT, codes::TRUN, codes::UUID]);
        let tfxd = crate::smooth_boxes::Tfxd::parse(traf.children().unwrap().last().unwrap().unwrap()).unwrap();
        assert_eq!(tfxd, crate::smooth_boxes::Tfxd::v1(6000, 15_000));
        let mut r = moof.require(codes::MFHD).unwrap().reader();
        r.full_box().unwrap();
        assert_eq!(r.u32("seq").unwrap(), 7);
    }

    #[test]
    fn sample_data_outside_the_mdat_is_refused() {
        let payload = [0u8; 10];
        let frag =
            muxer_fragment(&[(1, 0, vec![RunSpec { samples: samples(2, 8, 1, true), payload_start: 0 }])], &payload);
        let mut split = BoxSplitter::default();
        split.push(Bytes::from(muxer_stream(&[frag]))).unwrap();
        let Some(Unit::Init(i)) = split.next_unit() else { panic!() };
        let mut reader = FragmentReader::new(&crate::movie::parse_moov(&i.moov).unwrap());
        let Some(Unit::Fragment(f)) = split.next_unit() else { panic!() };
        assert_eq!(reader.read(&f).unwrap_err(), Error::SampleOutsideMdat { track_id: 1 });
    }

    #[test]
    fn a_version_0_offset_beyond_i32_is_refused_and_a_version_1_one_is_negative() {
        let payload = [0u8; 16];
        let mut v = samples(2, 8, 1000, true);
        v[1].cto = -1000;
        let mut stream =
            muxer_stream(&[muxer_fragment(&[(1, 0, vec![RunSpec { samples: v, payload_start: 0 }])], &payload)]);
        assert_eq!(read_all(&stream)[0].samples[1].cto, -1000);
        // The same table read as unsigned (version 0): 0xFFFFFC18 is no real offset.
        let at = stream.windows(4).rposition(|w| w == b"trun").unwrap();
        stream[at + 4] = 0;
        let mut split = BoxSplitter::default();
        split.push(Bytes::from(stream)).unwrap();
        let Some(Unit::Init(i)) = split.next_unit() else { panic!() };
        let mut reader = FragmentReader::new(&crate::movie::parse_moov(&i.moov).unwrap());
        let Some(Unit::Fragment(f)) = split.next_unit() else { panic!() };
        assert_eq!(
            reader.read(&f).unwrap_err(),
            Error::InvalidValue { in_box: codes::TRUN, field: "sample_composition_time_offset" }
        );
    }

    #[test]
    fn decode_time_continues_when_tfdt_is_absent() {
        // Build a fragment, then strip its tfdt by renaming it to 'free'.
        let payload = [0u8; 4];
        let mut frag = muxer_fragment(
            &[(2, 0, vec![RunSpec { samples: samples(4, 1, 1024, false), payload_start: 0 }])],
            &payload,
        );
        let mut second = frag.clone();
        let pos = second.windows(4).position(|w| w == b"tfdt").unwrap();
        second[pos..pos + 4].copy_from_slice(b"free");
        frag.extend_from_slice(&second);
        let tfs = read_all(&muxer_stream(&[frag]));
        assert_eq!(tfs[0].decode_time, 0);
        assert_eq!(tfs[1].decode_time, 4096);
    }
}
