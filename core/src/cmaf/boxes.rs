// SPDX-License-Identifier: MPL-2.0
//! The boxes CMAF ingest adds to what the Smooth path writes, each with its writer and a
//! parser that does not trust its input:
//!
//! - `styp` SegmentTypeBox (ISO/IEC 14496-12 8.16.2; brands of ISO/IEC 23000-19 7.2 and
//!   ISO/IEC 23009-1 6.3.4.2 `lmsg`): the same layout as `ftyp`;
//! - `prft` ProducerReferenceTimeBox (ISO/IEC 14496-12 8.16.5): an NTP wall-clock time and the
//!   media time it corresponds to;
//! - `btrt` BitRateBox (ISO/IEC 14496-12 8.5.2.2), in a sample entry;
//! - `kind` KindBox (ISO/IEC 14496-12 8.10.4), in `udta`: a track's role;
//! - `elng` ExtendedLanguageBox (ISO/IEC 14496-12 8.4.6), in `mdia`: a BCP 47 language tag;
//! - `urim` URIMetaSampleEntry with its `uri ` URIBox (ISO/IEC 14496-12 12.3.3.2);
//! - `emsg` DASHEventMessageBox, versions 0 and 1 (ISO/IEC 23009-1 5.10.3.3).
//!
//! Strings are null-terminated UTF-8 (ISO/IEC 14496-12 4.2 `string`); a writer stops a string
//! at its first NUL, since nothing after one could be read back.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use bytes::Bytes;

use crate::bmff::fourcc::codes;
use crate::bmff::writer::{PutBytes, write_box, write_full_box};
use crate::bmff::{BoxRef, FourCC, Reader};
use crate::error::{Error, Result};
use crate::smooth_boxes::parse_ftyp;

/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
pub const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;

/// The 64-bit NTP timestamp (RFC 5905 6: seconds since 1900 in the high 32 bits, the fraction
/// in the low 32) of `unix_ns` nanoseconds since the Unix epoch. The seconds wrap in 2036 as
/// NTP era 1 begins, as the format has them do.
pub fn ntp_from_unix_ns(unix_ns: u64) -> u64 {
    let secs = (unix_ns / 1_000_000_000).wrapping_add(NTP_UNIX_OFFSET_S) & 0xFFFF_FFFF;
    let frac = ((unix_ns % 1_000_000_000) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// Writes a string field: its bytes up to any NUL, then the terminating NUL.
fn put_string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    out.extend_from_slice(&bytes[..end]);
    out.put_u8(0);
}

/// Reads a null-terminated UTF-8 string field.
fn read_string(r: &mut Reader<'_>, field: &'static str) -> Result<String> {
    let rest = r.rest();
    let nul = rest.iter().position(|b| *b == 0).ok_or(r.invalid(field))?;
    let text = core::str::from_utf8(&rest[..nul]).map_err(|_| r.invalid(field))?.to_string();
    r.skip(nul + 1, field)?;
    Ok(text)
}

/// Checks that a box is of the expected type.
fn expect(b: BoxRef<'_>, box_type: FourCC, expected: &'static str) -> Result<()> {
    if b.box_type() == box_type { Ok(()) } else { Err(Error::UnexpectedBox { box_type: b.box_type(), expected }) }
}

/// A SegmentTypeBox: the brands of a segment or chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentType {
    pub major_brand: FourCC,
    pub minor_version: u32,
    pub compatible_brands: Vec<FourCC>,
}

impl SegmentType {
    /// The box size: header, major brand and minor version, 4 bytes per compatible brand.
    pub fn size(&self) -> usize {
        16 + 4 * self.compatible_brands.len()
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        write_box(out, codes::STYP, |o| {
            o.put_fourcc(self.major_brand);
            o.put_u32(self.minor_version);
            for b in &self.compatible_brands {
                o.put_fourcc(*b);
            }
        });
    }

    pub fn parse(b: BoxRef<'_>) -> Result<SegmentType> {
        expect(b, codes::STYP, "styp")?;
        let (major_brand, minor_version, compatible_brands) = parse_ftyp(b)?;
        if !b.body().len().is_multiple_of(4) {
            return Err(Error::InvalidValue { in_box: codes::STYP, field: "compatible_brands" });
        }
        Ok(SegmentType { major_brand, minor_version, compatible_brands })
    }

    /// Whether the major or a compatible brand is `brand`.
    pub fn has(&self, brand: FourCC) -> bool {
        self.major_brand == brand || self.compatible_brands.contains(&brand)
    }
}

/// How a `prft`'s NTP time relates to its media time (ISO/IEC 14496-12 8.16.5 `flags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceTimeKind {
    /// 0: the time the frame at `media_time` was input to the encoder.
    EncoderInput,
    /// 1: the time that frame was output from the encoder.
    EncoderOutput,
    /// 2: the time the following `moof` was finalised.
    MoofFinalized,
    /// 4: the time the following `moof` was written.
    MoofWritten,
    /// 8: an arbitrary but consistent association.
    Consistent,
    /// 24 (8 | 16): a consistent, small offset from the real time of what is depicted.
    Captured,
    /// Any other value.
    Other(u32),
}

impl ReferenceTimeKind {
    pub fn flags(self) -> u32 {
        match self {
            ReferenceTimeKind::EncoderInput => 0,
            ReferenceTimeKind::EncoderOutput => 1,
            ReferenceTimeKind::MoofFinalized => 2,
            ReferenceTimeKind::MoofWritten => 4,
            ReferenceTimeKind::Consistent => 8,
            ReferenceTimeKind::Captured => 24,
            ReferenceTimeKind::Other(f) => f & 0x00FF_FFFF,
        }
    }

    pub fn from_flags(flags: u32) -> Self {
        match flags {
            0 => ReferenceTimeKind::EncoderInput,
            1 => ReferenceTimeKind::EncoderOutput,
            2 => ReferenceTimeKind::MoofFinalized,
            4 => ReferenceTimeKind::MoofWritten,
            8 => ReferenceTimeKind::Consistent,
            24 => ReferenceTimeKind::Captured,
            f => ReferenceTimeKind::Other(f),
        }
    }
}

/// A ProducerReferenceTimeBox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerReferenceTime {
    pub reference_track_id: u32,
    /// NTP format (see [`ntp_from_unix_ns`]).
    pub ntp_timestamp: u64,
    /// In the reference track's timescale.
    pub media_time: u64,
    pub kind: ReferenceTimeKind,
}

impl ProducerReferenceTime {
    /// Always version 1 (64-bit media time): 32 bytes.
    pub const SIZE: usize = 32;

    pub fn write(&self, out: &mut Vec<u8>) {
        write_full_box(out, codes::PRFT, 1, self.kind.flags(), |o| {
            o.put_u32(self.reference_track_id);
            o.put_u64(self.ntp_timestamp);
            o.put_u64(self.media_time);
        });
    }

    pub fn parse(b: BoxRef<'_>) -> Result<ProducerReferenceTime> {
        expect(b, codes::PRFT, "prft")?;
        let mut r = b.reader();
        let (version, flags) = r.full_box()?;
        let reference_track_id = r.u32("reference_track_ID")?;
        let ntp_timestamp = r.u64("ntp_timestamp")?;
        let media_time = match version {
            0 => u64::from(r.u32("media_time")?),
            1 => r.u64("media_time")?,
            _ => return Err(r.invalid("version")),
        };
        Ok(ProducerReferenceTime {
            reference_track_id,
            ntp_timestamp,
            media_time,
            kind: ReferenceTimeKind::from_flags(flags),
        })
    }
}

/// A BitRateBox, bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BitRate {
    /// Size of the decoding buffer in bytes; 0 when not known.
    pub buffer_size_db: u32,
    pub max_bitrate: u32,
    pub avg_bitrate: u32,
}

impl BitRate {
    pub const SIZE: usize = 20;

    pub fn write(&self, out: &mut Vec<u8>) {
        write_box(out, codes::BTRT, |o| {
            o.put_u32(self.buffer_size_db);
            o.put_u32(self.max_bitrate);
            o.put_u32(self.avg_bitrate);
        });
    }

    pub fn parse(b: BoxRef<'_>) -> Result<BitRate> {
        expect(b, codes::BTRT, "btrt")?;
        let mut r = b.reader();
        Ok(BitRate {
            buffer_size_db: r.u32("bufferSizeDB")?,
            max_bitrate: r.u32("maxBitrate")?,
            avg_bitrate: r.u32("avgBitrate")?,
        })
    }
}

/// The scheme of DASH roles in a `kind` box (ISO/IEC 23009-1 5.8.5.5; DASH-IF Live Media
/// Ingest, "Requirements for Formatting Media Tracks" 11).
pub const DASH_ROLE_SCHEME: &str = "urn:mpeg:dash:role:2011";
/// The scheme of a switching set id in a `kind` box (DASH-IF Live Media Ingest, "Requirements
/// for Signaling Switching Sets" 3).
pub const SWITCHING_SET_SCHEME: &str = "urn:dashif:ingest:switchingset_id";

/// A KindBox: a role of the track in a scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kind {
    pub scheme_uri: String,
    pub value: String,
}

impl Kind {
    /// A DASH role (`main`, `alternate`, `commentary`, `description`, `caption`, ...).
    pub fn dash_role(value: &str) -> Kind {
        Kind { scheme_uri: DASH_ROLE_SCHEME.into(), value: value.into() }
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        write_full_box(out, codes::KIND, 0, 0, |o| {
            put_string(o, &self.scheme_uri);
            put_string(o, &self.value);
        });
    }

    pub fn parse(b: BoxRef<'_>) -> Result<Kind> {
        expect(b, codes::KIND, "kind")?;
        let mut r = b.reader();
        r.full_box()?;
        let scheme_uri = read_string(&mut r, "schemeURI")?;
        let value = read_string(&mut r, "value")?;
        Ok(Kind { scheme_uri, value })
    }
}

/// Writes an ExtendedLanguageBox with a BCP 47 tag.
pub fn write_elng(out: &mut Vec<u8>, tag: &str) {
    write_full_box(out, codes::ELNG, 0, 0, |o| put_string(o, tag));
}

/// The BCP 47 tag of an ExtendedLanguageBox.
pub fn parse_elng(b: BoxRef<'_>) -> Result<String> {
    expect(b, codes::ELNG, "elng")?;
    let mut r = b.reader();
    r.full_box()?;
    read_string(&mut r, "extended_language")
}

/// The URI of a timed metadata track whose samples are DASHEventMessageBoxes (ISO/IEC 23009-1
/// 5.10.3.3; DASH-IF Live Media Ingest, "Requirements for Timed Metadata Tracks" 5b).
pub const DASH_EVENT_URI: &str = "urn:mpeg:dash:event:2012";

/// Writes a URIMetaSampleEntry: the SampleEntry fields (6 reserved bytes,
/// data_reference_index 1), then a URIBox with `uri`. No URIInitBox: the scheme needs none.
pub fn write_uri_meta_sample_entry(out: &mut Vec<u8>, uri: &str) {
    write_box(out, codes::URIM, |o| {
        o.put_zeros(6);
        o.put_u16(1);
        write_full_box(o, codes::URI, 0, 0, |o| put_string(o, uri));
    });
}

/// The URI of a URIMetaSampleEntry.
pub fn parse_uri_meta_sample_entry(b: BoxRef<'_>) -> Result<String> {
    expect(b, codes::URIM, "urim")?;
    let uri = b
        .children_after(8)?
        .find_type(codes::URI)?
        .ok_or(Error::MissingBox { parent: codes::URIM, child: codes::URI })?;
    let mut r = uri.reader();
    r.full_box()?;
    read_string(&mut r, "theURI")
}

/// The scheme of SCTE-35 splice_info_sections carried in event messages (SCTE 214-3; DASH-IF
/// Live Media Ingest, "Requirements for Timed Metadata Tracks" 5g).
pub const SCTE35_BIN_SCHEME: &str = "urn:scte:scte35:2013:bin";

/// `event_duration` of an event whose duration is not known.
pub const UNKNOWN_EVENT_DURATION: u32 = 0xFFFF_FFFF;

/// A DASHEventMessageBox. Written as version 1 (an absolute presentation time, DASH-IF Live
/// Media Ingest "Requirements for Timed Metadata Tracks" 5a); both versions are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMessage {
    pub scheme_id_uri: String,
    pub value: String,
    pub timescale: u32,
    /// Version 1: the presentation time on the track's timeline. Version 0 carries a delta
    /// from the segment's earliest presentation time instead: see `version`.
    pub presentation_time: u64,
    pub event_duration: u32,
    pub id: u32,
    pub message_data: Bytes,
    /// 0 when parsed from a version 0 box (then `presentation_time` is the delta); 1 otherwise.
    pub version: u8,
}

impl EventMessage {
    /// The size of the version 1 box.
    pub fn size(&self) -> usize {
        let text = |s: &str| s.as_bytes().iter().position(|b| *b == 0).unwrap_or(s.len()) + 1;
        12 + 20 + text(&self.scheme_id_uri) + text(&self.value) + self.message_data.len()
    }

    /// Writes the version 1 box.
    pub fn write(&self, out: &mut Vec<u8>) {
        write_full_box(out, codes::EMSG, 1, 0, |o| {
            o.put_u32(self.timescale);
            o.put_u64(self.presentation_time);
            o.put_u32(self.event_duration);
            o.put_u32(self.id);
            put_string(o, &self.scheme_id_uri);
            put_string(o, &self.value);
            o.extend_from_slice(&self.message_data);
        });
    }

    pub fn parse(b: BoxRef<'_>) -> Result<EventMessage> {
        expect(b, codes::EMSG, "emsg")?;
        let mut r = b.reader();
        let (version, _) = r.full_box()?;
        let m = match version {
            0 => {
                let scheme_id_uri = read_string(&mut r, "scheme_id_uri")?;
                let value = read_string(&mut r, "value")?;
                let timescale = r.u32("timescale")?;
                let presentation_time = u64::from(r.u32("presentation_time_delta")?);
                let event_duration = r.u32("event_duration")?;
                let id = r.u32("id")?;
                EventMessage {
                    scheme_id_uri,
                    value,
                    timescale,
                    presentation_time,
                    event_duration,
                    id,
                    message_data: Bytes::new(),
                    version,
                }
            }
            1 => {
                let timescale = r.u32("timescale")?;
                let presentation_time = r.u64("presentation_time")?;
                let event_duration = r.u32("event_duration")?;
                let id = r.u32("id")?;
                let scheme_id_uri = read_string(&mut r, "scheme_id_uri")?;
                let value = read_string(&mut r, "value")?;
                EventMessage {
                    scheme_id_uri,
                    value,
                    timescale,
                    presentation_time,
                    event_duration,
                    id,
                    message_data: Bytes::new(),
                    version,
                }
            }
            _ => return Err(r.invalid("version")),
        };
        if m.timescale == 0 {
            return Err(r.invalid("timescale"));
        }
        Ok(EventMessage { message_data: Bytes::copy_from_slice(r.rest()), ..m })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bmff::Boxes;
    use crate::hex::parse_hex;

    fn one(bytes: &[u8]) -> BoxRef<'_> {
        Boxes::new(bytes).next().unwrap().unwrap()
    }

    #[test]
    fn styp_is_byte_exact() {
        let s = SegmentType {
            major_brand: codes::CMFS,
            minor_version: 0,
            compatible_brands: alloc::vec![codes::CMFS, codes::CMFF, codes::LMSG],
        };
        let mut out = Vec::new();
        s.write(&mut out);
        // size 28, 'styp', major 'cmfs', minor 0, 'cmfs' 'cmff' 'lmsg'
        assert_eq!(out, parse_hex("0000001C 73747970 636D6673 00000000 636D6673 636D6666 6C6D7367"));
        assert_eq!(out.len(), s.size());
        let back = SegmentType::parse(one(&out)).unwrap();
        assert_eq!(back, s);
        assert!(back.has(codes::LMSG) && back.has(codes::CMFS) && !back.has(codes::CMFL));
        // A brand list that is not whole brands is refused.
        assert!(SegmentType::parse(one(&parse_hex("0000000F 73747970 636D6673 000000 00"))).is_err());
    }

    #[test]
    fn prft_is_byte_exact_and_reads_both_versions() {
        let p = ProducerReferenceTime {
            reference_track_id: 1,
            ntp_timestamp: 0xE8A1_2B3C_8000_0000,
            media_time: 0x0000_0001_2345_6789,
            kind: ReferenceTimeKind::Captured,
        };
        let mut out = Vec::new();
        p.write(&mut out);
        // size 32, 'prft', version 1, flags 24, track 1, NTP, 64-bit media time
        assert_eq!(out, parse_hex("00000020 70726674 01000018 00000001 E8A12B3C 80000000 00000001 23456789"));
        assert_eq!(out.len(), ProducerReferenceTime::SIZE);
        assert_eq!(ProducerReferenceTime::parse(one(&out)).unwrap(), p);
        // Version 0: a 32-bit media time; flags 2, moof finalised.
        let v0 = parse_hex("0000001C 70726674 00000002 00000002 83AA7E80 00000000 00000400");
        let p0 = ProducerReferenceTime::parse(one(&v0)).unwrap();
        assert_eq!((p0.reference_track_id, p0.media_time, p0.kind), (2, 1024, ReferenceTimeKind::MoofFinalized));
        // A version 1 box four bytes short of its 64-bit media time.
        let mut short = out[..28].to_vec();
        short[3] = 28;
        assert!(ProducerReferenceTime::parse(one(&short)).is_err());
    }

    #[test]
    fn ntp_time_of_the_unix_epoch_and_after() {
        assert_eq!(ntp_from_unix_ns(0), 0x83AA_7E80_0000_0000);
        assert_eq!(ntp_from_unix_ns(1_500_000_000), 0x83AA_7E81_8000_0000);
        // 2036-02-07T06:28:16Z: NTP era 1 begins, the seconds wrap to 0.
        assert_eq!(ntp_from_unix_ns(2_085_978_496_000_000_000), 0);
        // 2024-01-01T00:00:00Z = 1 704 067 200 s: NTP 3 913 056 000 s.
        assert_eq!(ntp_from_unix_ns(1_704_067_200_000_000_000) >> 32, 3_913_056_000);
    }

    #[test]
    fn btrt_is_byte_exact() {
        let b = BitRate { buffer_size_db: 0, max_bitrate: 3_000_000, avg_bitrate: 2_500_000 };
        let mut out = Vec::new();
        b.write(&mut out);
        assert_eq!(out, parse_hex("00000014 62747274 00000000 002DC6C0 002625A0"));
        assert_eq!(BitRate::parse(one(&out)).unwrap(), b);
        let mut short = out[..16].to_vec();
        short[3] = 16;
        assert!(BitRate::parse(one(&short)).is_err());
    }

    #[test]
    fn kind_is_byte_exact() {
        let k = Kind::dash_role("main");
        let mut out = Vec::new();
        k.write(&mut out);
        // size 41, 'kind', version/flags 0, "urn:mpeg:dash:role:2011\0", "main\0"
        let expected = parse_hex(
            "00000029 6B696E64 00000000
             75726E3A6D7065673A646173683A726F6C653A32303131 00
             6D61696E 00",
        );
        assert_eq!(out, expected);
        assert_eq!(Kind::parse(one(&out)).unwrap(), k);
        // A string that is not terminated inside the box is refused.
        let mut cut = out[..out.len() - 1].to_vec();
        cut[3] -= 1;
        assert!(Kind::parse(one(&cut)).is_err());
    }

    #[test]
    fn elng_is_byte_exact() {
        let mut out = Vec::new();
        write_elng(&mut out, "en-US");
        assert_eq!(out, parse_hex("00000012 656C6E67 00000000 656E2D5553 00"));
        assert_eq!(parse_elng(one(&out)).unwrap(), "en-US");
    }

    #[test]
    fn urim_with_its_uri_box_is_byte_exact() {
        let mut out = Vec::new();
        write_uri_meta_sample_entry(&mut out, DASH_EVENT_URI);
        // urim: size 53, 6 reserved, data_reference_index 1; uri : size 37, full box, the URI
        let expected = parse_hex(
            "00000035 7572696D 000000000000 0001
               00000025 75726920 00000000 75726E3A6D7065673A646173683A6576656E743A32303132 00",
        );
        assert_eq!(out, expected);
        assert_eq!(parse_uri_meta_sample_entry(one(&out)).unwrap(), DASH_EVENT_URI);
        // Without its uri box it is refused.
        assert!(parse_uri_meta_sample_entry(one(&parse_hex("00000010 7572696D 000000000000 0001"))).is_err());
    }

    fn scte_event() -> EventMessage {
        EventMessage {
            scheme_id_uri: SCTE35_BIN_SCHEME.into(),
            value: String::new(),
            timescale: 90_000,
            presentation_time: 180_000,
            event_duration: 2_700_000,
            id: 1002,
            message_data: Bytes::from_static(&[0xFC, 0x30, 0x11, 0x00]),
            version: 1,
        }
    }

    #[test]
    fn emsg_v1_is_byte_exact() {
        let e = scte_event();
        let mut out = Vec::new();
        e.write(&mut out);
        // size 62, 'emsg', version 1, timescale 90000, presentation_time 180000 (64 bits),
        // event_duration 2 700 000, id 1002, scheme, empty value, message_data
        let expected = parse_hex(
            "0000003E 656D7367 01000000
             00015F90 00000000 0002BF20 002932E0 000003EA
             75726E3A736374653A7363746533353A323031333A62696E 00
             00
             FC301100",
        );
        assert_eq!(out, expected);
        assert_eq!(out.len(), e.size());
        assert_eq!(EventMessage::parse(one(&out)).unwrap(), e);
    }

    #[test]
    fn emsg_v0_is_read_with_its_delta() {
        // version 0: scheme, value, timescale, delta 10, duration unknown, id 7, data 'AB'
        let v0 = parse_hex("00000024 656D7367 00000000 782E7900 7600 000003E8 0000000A FFFFFFFF 00000007 4142");
        let e = EventMessage::parse(one(&v0)).unwrap();
        assert_eq!((e.version, e.scheme_id_uri.as_str(), e.value.as_str()), (0, "x.y", "v"));
        assert_eq!((e.timescale, e.presentation_time, e.event_duration, e.id), (1000, 10, UNKNOWN_EVENT_DURATION, 7));
        assert_eq!(e.message_data.as_ref(), b"AB");
        // Every truncation is an error, never a panic.
        let mut v1 = Vec::new();
        scte_event().write(&mut v1);
        for n in 8..v1.len() {
            let mut cut = v1[..n].to_vec();
            cut[..4].copy_from_slice(&(n as u32).to_be_bytes());
            let _ = EventMessage::parse(one(&cut));
        }
        // A zero timescale cannot place anything.
        let mut zero = v1.clone();
        zero[12..16].copy_from_slice(&[0; 4]);
        assert!(EventMessage::parse(one(&zero)).is_err());
    }

    mod round_trips {
        use super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            proptest::string::string_regex("[a-zA-Z0-9 _.:/&<>=é€-]{0,40}").unwrap()
        }

        fn brand() -> impl Strategy<Value = FourCC> {
            any::<[u8; 4]>().prop_map(FourCC)
        }

        proptest! {
            #[test]
            fn every_box_parses_back_to_what_was_written(
                track: u32, ntp: u64, media_time: u64, flags in 0u32..0x0100_0000,
                rates: (u32, u32, u32),
                scheme in text(), value in text(), tag in text(),
                timescale in 1u32.., presentation_time: u64, duration: u32, id: u32,
                data in proptest::collection::vec(any::<u8>(), 0..64),
                major in brand(), minor: u32, compatible in proptest::collection::vec(brand(), 0..8),
            ) {
                let mut out = Vec::new();
                let p = ProducerReferenceTime {
                    reference_track_id: track,
                    ntp_timestamp: ntp,
                    media_time,
                    kind: ReferenceTimeKind::from_flags(flags),
                };
                p.write(&mut out);
                prop_assert_eq!(ProducerReferenceTime::parse(one(&out)).unwrap(), p);
                prop_assert_eq!(ReferenceTimeKind::from_flags(flags).flags(), flags);

                out.clear();
                let b = BitRate { buffer_size_db: rates.0, max_bitrate: rates.1, avg_bitrate: rates.2 };
                b.write(&mut out);
                prop_assert_eq!(BitRate::parse(one(&out)).unwrap(), b);

                out.clear();
                let k = Kind { scheme_uri: scheme.clone(), value: value.clone() };
                k.write(&mut out);
                prop_assert_eq!(Kind::parse(one(&out)).unwrap(), k);

                out.clear();
                write_elng(&mut out, &tag);
                prop_assert_eq!(parse_elng(one(&out)).unwrap(), tag.clone());

                out.clear();
                write_uri_meta_sample_entry(&mut out, &scheme);
                prop_assert_eq!(parse_uri_meta_sample_entry(one(&out)).unwrap(), scheme.clone());

                out.clear();
                let e = EventMessage {
                    scheme_id_uri: scheme,
                    value,
                    timescale,
                    presentation_time,
                    event_duration: duration,
                    id,
                    message_data: Bytes::from(data),
                    version: 1,
                };
                e.write(&mut out);
                prop_assert_eq!(out.len(), e.size());
                prop_assert_eq!(EventMessage::parse(one(&out)).unwrap(), e);

                out.clear();
                let st = SegmentType { major_brand: major, minor_version: minor, compatible_brands: compatible };
                st.write(&mut out);
                prop_assert_eq!(out.len(), st.size());
                prop_assert_eq!(SegmentType::parse(one(&out)).unwrap(), st);
            }
        }
    }

    #[test]
    fn a_nul_inside_a_string_ends_it() {
        let k = Kind { scheme_uri: "a\0b".into(), value: "v".into() };
        let mut out = Vec::new();
        k.write(&mut out);
        assert_eq!(Kind::parse(one(&out)).unwrap(), Kind { scheme_uri: "a".into(), value: "v".into() });
    }
}
