// SPDX-License-Identifier: MPL-2.0
//! CMAF segments on the wire: `styp`, `prft`, then `moof` + `mdat`, whole or as CMAF chunks
//! (ISO/IEC 23000-19 7.3.2; DASH-IF Live Media Ingest, "General Protocol, Manifest and Track
//! Format Requirements" 15, 19, 20 and "Requirements for Formatting Media Tracks" 7).
//!
//! A segment is one CMAF fragment. Sent whole it is one chunk: `styp` (major `cmfs`,
//! compatible `cmfs` and `cmff`, and `lmsg` on the track's last segment), `prft` for audio and
//! video, `moof`, `mdat`. Sent as it is produced (chunked transfer, low latency) its first
//! chunk has the same `styp` and `prft`, and every later one a `styp` of its own with brand
//! `cmfl`; when a segment turns out to be the last only after its first chunk went, its last
//! chunk's `styp` carries `lmsg`.
//!
//! The `moof` is the one the Smooth path writes without `tfxd`: `mfhd`, `tfhd` with
//! default-base-is-moof (ISO/IEC 23000-19 7.5.16), `tfdt` version 1, one `trun`. Every chunk of
//! a segment carries the segment's `mfhd` sequence_number: the number counts segments, +1
//! each ("General Protocol ..." 11), the same in every encoder. The payload is never copied:
//! the chunk holds views of the muxer's buffers.

use alloc::vec::Vec;
use bytes::Bytes;

use crate::bmff::fourcc::codes;
use crate::bmff::{Boxes, FourCC};
use crate::cmaf::boxes::{ProducerReferenceTime, SegmentType};
use crate::error::{Error, Result};
use crate::fragment::MoofSpec;
use crate::payload::Payload;
use crate::track_fragment::Sample;

/// The `styp` of a segment, or of its first chunk.
pub fn segment_type(lmsg: bool) -> SegmentType {
    let mut compatible_brands = alloc::vec![codes::CMFS, codes::CMFF];
    if lmsg {
        compatible_brands.push(codes::LMSG);
    }
    SegmentType { major_brand: codes::CMFS, minor_version: 0, compatible_brands }
}

/// The `styp` of a chunk after the first of its segment.
pub fn chunk_type(lmsg: bool) -> SegmentType {
    let mut compatible_brands = alloc::vec![codes::CMFL];
    if lmsg {
        compatible_brands.push(codes::LMSG);
    }
    SegmentType { major_brand: codes::CMFL, minor_version: 0, compatible_brands }
}

/// What one chunk holds and where it lies in its segment.
#[derive(Debug, Clone, Copy)]
pub struct ChunkSpec<'a> {
    pub track_id: u32,
    pub timescale: u32,
    /// The segment's `mfhd` sequence_number.
    pub sequence: u32,
    /// `tfdt` of the chunk's first sample.
    pub decode_time: u64,
    /// The samples with their written durations, and their bytes.
    pub samples: &'a [Sample],
    pub data: &'a Payload,
    /// The chunk starts its segment (`styp` `cmfs`, `prft`) ...
    pub first: bool,
    /// ... or ends it (the request body ends after it).
    pub last: bool,
    /// The segment is the track's last: `lmsg` goes in this chunk's `styp`.
    pub lmsg: bool,
    /// The `prft` of a media segment, written in its first chunk.
    pub reference: Option<ProducerReferenceTime>,
}

/// One chunk ready for the wire. A segment sent whole is one chunk, `first` and `last`.
#[derive(Debug, Clone)]
pub struct CmafChunk {
    pub track_id: u32,
    pub timescale: u32,
    pub sequence: u32,
    pub decode_time: u64,
    /// Sum of the chunk's sample durations, in the timescale.
    pub duration: u64,
    pub sample_count: u32,
    pub first: bool,
    pub last: bool,
    pub lmsg: bool,
    /// `styp`, `prft` (first chunk), `moof` and the `mdat` header.
    pub head: Bytes,
    /// The `mdat` payload, as views of the muxer's buffers.
    pub payload: Payload,
}

impl CmafChunk {
    pub fn wire_len(&self) -> u64 {
        self.head.len() as u64 + self.payload.len()
    }

    /// The bytes on the wire, in order: the head, then the payload views.
    pub fn wire_chunks(&self) -> impl Iterator<Item = &Bytes> {
        core::iter::once(&self.head).chain(self.payload.chunks())
    }

    /// Nanoseconds of media in the chunk.
    pub fn duration_ns(&self) -> u64 {
        let ns = u128::from(self.duration) * 1_000_000_000 / u128::from(self.timescale.max(1));
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// The same chunk as the first of the track's last segment: its `styp` gains `lmsg`. For
    /// a segment that went out before the stream knew it was the last (it ended exactly at a
    /// boundary): sent again, identical but for the brand, a receiver that already has it
    /// keeps its media and learns that no more follow.
    pub fn with_lmsg(&self) -> Result<CmafChunk> {
        let styp = Boxes::new(&self.head)
            .next()
            .ok_or(Error::MissingBox { parent: FourCC::new(b"file"), child: codes::STYP })??;
        let mut st = SegmentType::parse(styp)?;
        if !st.has(codes::LMSG) {
            st.compatible_brands.push(codes::LMSG);
        }
        let mut head = Vec::with_capacity(self.head.len() + 4);
        st.write(&mut head);
        head.extend_from_slice(&self.head[styp.bytes.len()..]);
        Ok(CmafChunk { head: Bytes::from(head), lmsg: true, ..self.clone() })
    }
}

/// Writes one chunk.
pub fn write_chunk(spec: &ChunkSpec<'_>) -> CmafChunk {
    let styp = if spec.first { segment_type(spec.lmsg) } else { chunk_type(spec.lmsg) };
    let reference = spec.reference.filter(|_| spec.first);
    let moof = MoofSpec {
        track_id: spec.track_id,
        samples: spec.samples,
        payload_len: spec.data.len(),
        sequence: spec.sequence,
        decode_time: Some(spec.decode_time),
        default_base_is_moof: true,
        tfxd: None,
    };
    let mut head = Vec::with_capacity(styp.size() + reference.map_or(0, |_| ProducerReferenceTime::SIZE));
    styp.write(&mut head);
    if let Some(r) = reference {
        r.write(&mut head);
    }
    moof.write(&mut head);
    CmafChunk {
        track_id: spec.track_id,
        timescale: spec.timescale,
        sequence: spec.sequence,
        decode_time: spec.decode_time,
        duration: spec.samples.iter().map(|s| u64::from(s.duration)).sum(),
        sample_count: spec.samples.len() as u32,
        first: spec.first,
        last: spec.last,
        lmsg: spec.lmsg,
        head: Bytes::from(head),
        payload: spec.data.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmaf::boxes::ReferenceTimeKind;
    use crate::hex::parse_hex;
    use crate::track_fragment::{SAMPLE_FLAGS_NON_SYNC, SAMPLE_FLAGS_SYNC};
    use alloc::vec;

    /// A whole segment of track 1 at 48 kHz, number 7, at 0, with these samples.
    fn spec<'a>(samples: &'a [Sample], data: &'a Payload) -> ChunkSpec<'a> {
        ChunkSpec {
            track_id: 1,
            timescale: 48000,
            sequence: 7,
            decode_time: 0,
            samples,
            data,
            first: true,
            last: true,
            lmsg: false,
            reference: None,
        }
    }

    fn audio() -> (Vec<Sample>, Payload) {
        let mut data = Payload::new();
        data.push(Bytes::from(vec![0xAA; 22]));
        let samples = vec![
            Sample { duration: 1024, size: 10, flags: SAMPLE_FLAGS_SYNC, cto: 0 },
            Sample { duration: 1024, size: 12, flags: SAMPLE_FLAGS_SYNC, cto: 0 },
        ];
        (samples, data)
    }

    #[test]
    fn a_whole_audio_segment_is_byte_exact() {
        let (samples, data) = audio();
        let prft = ProducerReferenceTime {
            reference_track_id: 2,
            ntp_timestamp: 0x83AA_7E81_8000_0000,
            media_time: 48000,
            kind: ReferenceTimeKind::Captured,
        };
        let c = write_chunk(&ChunkSpec {
            track_id: 2,
            sequence: 25,
            decode_time: 48000,
            reference: Some(prft),
            ..spec(&samples, &data)
        });
        let expected = parse_hex(
            "00000018 73747970 636D6673 00000000 636D6673 636D6666
             00000020 70726674 01000018 00000002 83AA7E81 80000000 00000000 0000BB80
             0000006C 6D6F6F66
               00000010 6D666864 00000000 00000019
               00000054 74726166
                 00000014 74666864 00020020 00000002 02000000
                 00000014 74666474 01000000 00000000 0000BB80
                 00000024 7472756E 00000301 00000002 00000074 00000400 0000000A 00000400 0000000C
             0000001E 6D646174",
        );
        assert_eq!(c.head.to_vec(), expected);
        assert_eq!(c.wire_len(), expected.len() as u64 + 22);
        assert_eq!((c.duration, c.sample_count, c.duration_ns()), (2048, 2, 42_666_666));
        // The payload is the same memory, not a copy.
        assert_eq!(c.payload.chunk(0).unwrap().as_ptr(), data.chunk(0).unwrap().as_ptr());
    }

    #[test]
    fn later_chunks_say_cmfl_and_the_last_segment_lmsg() {
        let (samples, data) = audio();
        let spec = ChunkSpec { first: false, lmsg: true, ..spec(&samples, &data) };
        let c = write_chunk(&spec);
        // The head ends with the mdat's header; its payload follows.
        let boxes: Vec<_> = Boxes::new(&c.head).take(2).map(|b| b.unwrap()).collect();
        assert_eq!(boxes.iter().map(|b| b.box_type()).collect::<Vec<_>>(), [codes::STYP, codes::MOOF]);
        assert_eq!(&c.head[c.head.len() - 4..], b"mdat");
        assert_eq!(boxes[0].bytes, parse_hex("00000018 73747970 636D666C 00000000 636D666C 6C6D7367"));
        // The first chunk of a last segment: cmfs, cmff, lmsg; with no prft for a metadata track.
        let first = write_chunk(&ChunkSpec { first: true, ..spec });
        assert_eq!(&first.head[..28], parse_hex("0000001C 73747970 636D6673 00000000 636D6673 636D6666 6C6D7367"));
        assert_eq!(&first.head[32..36], b"moof");
    }

    #[test]
    fn lmsg_can_be_added_to_a_segment_that_went_out_without_it() {
        let (samples, data) = audio();
        let spec = spec(&samples, &data);
        let plain = write_chunk(&spec);
        let marked = plain.with_lmsg().unwrap();
        assert_eq!(marked.head, write_chunk(&ChunkSpec { lmsg: true, ..spec }).head);
        assert!(marked.lmsg);
        assert_eq!(marked.with_lmsg().unwrap().head, marked.head, "once is enough");
    }

    #[test]
    fn a_video_chunk_keeps_signed_offsets_and_first_sample_flags() {
        let mut data = Payload::new();
        data.push(Bytes::from(vec![0; 6]));
        let s = |flags, cto| Sample { duration: 100, size: 2, flags, cto };
        let samples = [s(SAMPLE_FLAGS_SYNC, 100), s(SAMPLE_FLAGS_NON_SYNC, -100), s(SAMPLE_FLAGS_NON_SYNC, 0)];
        let c = write_chunk(&ChunkSpec {
            timescale: 3000,
            sequence: 1,
            decode_time: 900,
            last: false,
            ..spec(&samples, &data)
        });
        let moof = Boxes::new(&c.head).nth(1).unwrap().unwrap();
        let traf = moof.require(codes::TRAF).unwrap();
        let kids: Vec<_> = traf.children().unwrap().map(|c| c.unwrap().box_type()).collect();
        assert_eq!(kids, [codes::TFHD, codes::TFDT, codes::TRUN], "no tfxd");
        let mut r = traf.require(codes::TRUN).unwrap().reader();
        assert_eq!(r.full_box().unwrap(), (1, 0x0B05));
        let mut r = traf.require(codes::TFHD).unwrap().reader();
        assert_eq!(r.full_box().unwrap(), (0, 0x02_0020), "default-base-is-moof");
    }
}
