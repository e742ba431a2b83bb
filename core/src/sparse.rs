// SPDX-License-Identifier: MPL-2.0
//! The boxes of a sparse (timed metadata) stream: its header — `ftyp`, a Live Server Manifest
//! with one `<textstream>`, a `moov` with a `meta` track — and its fragments, one `moof` +
//! `mdat` per message (docs/protocol.md §5.1–§5.5, Appendix A.2/A.3).
//!
//! Every byte is a function of the configuration and the message, so that redundant encoders
//! given the same message send the same bytes, and a retried POST repeats itself exactly.

use alloc::borrow::ToOwned;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use bytes::Bytes;

use crate::bmff::fourcc::codes;
use crate::bmff::writer::{PutBytes, write_box, write_full_box};
use crate::manifest::{LiveServerManifest, ManifestTrack, TrackElement};
use crate::moov::{MoovTrack, metadata_sample_entry, write_moov};
use crate::smooth_boxes::{Tfxd, write_ingest_ftyp};

/// The Azure SCTE-35 scheme (2019+ revision of Azure's timed-metadata text, 2.2.1; DASH-IF).
pub const SCTE35_SCHEME: &str = "urn:scte:scte35:2013:bin";

/// trun flags: data_offset, sample_duration and sample_size present (0x301, docs/protocol.md A.2).
const TRUN_FLAGS: u32 = 0x301;

/// What the sparse stream declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseTrack {
    /// The manifest's `src`: the sparse stream's Streams() id.
    pub src: String,
    pub track_id: u32,
    pub name: String,
    /// `Scheme`: what the messages are.
    pub scheme: String,
    /// `parentTrackName`: the audio or video track whose timeline the messages use.
    pub parent_name: String,
    /// The parent's timescale; the sparse track's times are in it.
    pub timescale: u32,
    pub creator: Option<String>,
}

impl SparseTrack {
    /// The `<textstream>` entry (docs/protocol.md §5.2): systemBitrate 0, then trackID, trackName,
    /// timescale, Subtype DATA, Scheme, parentTrackName, manifestOutput true.
    pub fn manifest_entry(&self) -> ManifestTrack {
        let params = [
            ("trackID", self.track_id.to_string()),
            ("trackName", self.name.clone()),
            ("timescale", self.timescale.to_string()),
            ("Subtype", "DATA".to_owned()),
            ("Scheme", self.scheme.clone()),
            ("parentTrackName", self.parent_name.clone()),
            ("manifestOutput", "true".to_owned()),
        ];
        ManifestTrack {
            element: TrackElement::TextStream,
            src: self.src.clone(),
            system_bitrate: 0,
            system_language: None,
            params: params.into_iter().map(|(n, v)| (n.to_owned(), v)).collect(),
        }
    }

    /// ftyp + manifest + moov: the whole body of the registering POST, and the start of every
    /// message POST.
    pub fn header(&self) -> Bytes {
        let manifest = LiveServerManifest { creator: self.creator.clone(), tracks: alloc::vec![self.manifest_entry()] };
        let mut out = Vec::with_capacity(1024);
        write_ingest_ftyp(&mut out, false);
        manifest.write_box(&mut out);
        // hdlr `meta`, nmhd, and a MetaDataSampleEntry `scte` (docs/protocol.md §5.3); mvhd in the
        // same timescale, which with 10 MHz gives docs/protocol.md A.3 byte for byte.
        let entry = metadata_sample_entry(codes::SCTE);
        let track = MoovTrack {
            track_id: self.track_id,
            handler: codes::META,
            timescale: self.timescale,
            language: *b"und",
            width: 0,
            height: 0,
            sample_entry: &entry,
        };
        write_moov(&mut out, self.timescale, &[track]);
        Bytes::from(out)
    }
}

/// One message on the sparse track (docs/protocol.md §5.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseMessage {
    /// tfxd fragment_absolute_time: when the message is sent, on the parent's timeline.
    pub time: u64,
    /// tfxd fragment_duration: the event's duration; 0 = unknown.
    pub duration: u64,
    /// Identifies the message; equivalent messages have the same id.
    pub id: u32,
    /// Event presentation time minus `time`.
    pub presentation_time_delta: u32,
    /// For SCTE-35: the binary splice_info_section, CRC included.
    pub message: Bytes,
}

/// The `moof` and `mdat` of a message: mfhd, traf (tfhd, trun with one sample, tfxd v1), then
/// the mdat holding version 1, id, presentation_time_delta and the message.
pub fn write_sparse_fragment(track_id: u32, sequence: u32, m: &SparseMessage) -> Vec<u8> {
    let payload_len = 12 + m.message.len();
    let mut out = Vec::with_capacity(128 + payload_len);
    let mut data_offset_at = 0;
    write_box(&mut out, codes::MOOF, |o| {
        write_full_box(o, codes::MFHD, 0, 0, |o| o.put_u32(sequence));
        write_box(o, codes::TRAF, |o| {
            write_full_box(o, codes::TFHD, 0, 0, |o| o.put_u32(track_id));
            write_full_box(o, codes::TRUN, 0, TRUN_FLAGS, |o| {
                o.put_u32(1);
                data_offset_at = o.len();
                o.put_i32(0);
                // The sample lasts the event, as far as 32 bits reach.
                o.put_u32(u32::try_from(m.duration).unwrap_or(u32::MAX));
                o.put_u32(payload_len as u32);
            });
            Tfxd::v1(m.time, m.duration).write(o);
        });
    });
    // data_offset from the moof's first byte to the payload, past the 8-byte mdat header.
    let data_offset = (out.len() + 8) as i32;
    out[data_offset_at..data_offset_at + 4].copy_from_slice(&data_offset.to_be_bytes());
    write_box(&mut out, codes::MDAT, |o| {
        o.put_u32(1); // version
        o.put_u32(m.id);
        o.put_u32(m.presentation_time_delta);
        o.extend_from_slice(&m.message);
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bmff::Boxes;
    use crate::hex::parse_hex;
    use crate::movie::parse_moov;

    fn track() -> SparseTrack {
        SparseTrack {
            src: "ads".into(),
            track_id: 3,
            name: "scte35".into(),
            scheme: SCTE35_SCHEME.into(),
            parent_name: "video".into(),
            timescale: 10_000_000,
            creator: Some("fmp4ingestsink".into()),
        }
    }

    #[test]
    fn the_fragment_matches_the_spec_example() {
        // docs/protocol.md A.2: moof 120 B + mdat 60 B.
        let m = SparseMessage {
            time: 2_595_092_444,
            duration: 0,
            id: 1002,
            presentation_time_delta: 0,
            message: Bytes::from(parse_hex(
                "FC302500 00000005 DD00FFF0 14050000 03EA7FEF FE016461 B8FE0052 63630001 01010000 F20D5E37",
            )),
        };
        let expected = parse_hex(
            "00000078 6D6F6F66
               00000010 6D666864 00000000 00000001
               00000060 74726166
                 00000010 74666864 00000000 00000003
                 0000001C 7472756E 00000301 00000001 00000080 00000000 00000034
                 0000002C 75756964 6D1D9B05 42D544E6 80E2141D AFF757B2 01000000
                          00000000 9AADF7DC 00000000 00000000
             0000003C 6D646174 00000001 000003EA 00000000
             FC302500 00000005 DD00FFF0 14050000 03EA7FEF FE016461 B8FE0052 63630001 01010000 F20D5E37",
        );
        assert_eq!(write_sparse_fragment(3, 1, &m), expected);
    }

    #[test]
    fn the_header_declares_a_textstream_and_a_meta_track() {
        let h = track().header();
        let boxes: Vec<_> = Boxes::new(&h).map(|b| b.unwrap()).collect();
        assert_eq!(boxes.iter().map(|b| b.box_type()).collect::<Vec<_>>(), [codes::FTYP, codes::UUID, codes::MOOV]);
        let lsm = LiveServerManifest::parse_box(boxes[1]).unwrap();
        let t = &lsm.tracks[0];
        assert_eq!(t.element, TrackElement::TextStream);
        assert_eq!(t.system_bitrate, 0);
        for (n, v) in [
            ("trackID", "3"),
            ("trackName", "scte35"),
            ("timescale", "10000000"),
            ("Subtype", "DATA"),
            ("Scheme", "urn:scte:scte35:2013:bin"),
            ("parentTrackName", "video"),
            ("manifestOutput", "true"),
        ] {
            assert_eq!(t.param(n), Some(v), "{n}");
        }
        assert!(lsm.to_smil().contains("<textstream src=\"ads\" systemBitrate=\"0\">"));
        // The moov is docs/protocol.md A.3's (493 bytes) for track 3 at 10 MHz.
        assert_eq!(boxes[2].bytes.len(), 493);
        // A moov without audio/video is refused by the media parser, which is right for media.
        assert!(parse_moov(boxes[2].bytes).is_err());
    }

    #[test]
    fn the_same_message_gives_the_same_bytes() {
        let m = SparseMessage {
            time: 5,
            duration: 7,
            id: 9,
            presentation_time_delta: 11,
            message: Bytes::from_static(b"x"),
        };
        assert_eq!(write_sparse_fragment(3, 1, &m), write_sparse_fragment(3, 1, &m.clone()));
        assert_eq!(track().header(), track().header());
        // The sample lasts the event.
        let f = write_sparse_fragment(3, 1, &m);
        assert_eq!(&f[68..72], &7u32.to_be_bytes());
    }
}
