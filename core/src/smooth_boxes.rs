// SPDX-License-Identifier: MPL-2.0
//! The Smooth Streaming ([MS-SSTR]) boxes of the ingest stream: the ingest `ftyp` (docs/protocol.md
//! §2.2) and `tfxd` (§2.11), with the UUIDs of the boxes a receiver meets ([MS-SSTR] 2.2.4, 2.2.7).
//! No `mfra` is ever sent: the end of the chunked body ends the stream (§1.7, §1.8).

use alloc::vec::Vec;

use crate::bmff::fourcc::codes;
use crate::bmff::writer::{PutBytes, write_box, write_uuid_box};
use crate::bmff::{BoxRef, FourCC};
use crate::error::{Error, Result};

/// LiveServerManifestBox usertype A5D40B30-E814-11DD-BA2F-0800200C9A66.
pub const LIVE_SERVER_MANIFEST_UUID: [u8; 16] =
    [0xA5, 0xD4, 0x0B, 0x30, 0xE8, 0x14, 0x11, 0xDD, 0xBA, 0x2F, 0x08, 0x00, 0x20, 0x0C, 0x9A, 0x66];
/// StreamManifestBox usertype (deprecated; never sent to Azure-style receivers).
pub const STREAM_MANIFEST_UUID: [u8; 16] =
    [0x3C, 0x2F, 0xE5, 0x1B, 0xEF, 0xEE, 0x40, 0xA3, 0xAE, 0x81, 0x53, 0x00, 0x19, 0x9D, 0xC3, 0x48];
/// TrackFragmentExtendedHeaderBox (tfxd) usertype.
pub const TFXD_UUID: [u8; 16] =
    [0x6D, 0x1D, 0x9B, 0x05, 0x42, 0xD5, 0x44, 0xE6, 0x80, 0xE2, 0x14, 0x1D, 0xAF, 0xF7, 0x57, 0xB2];
/// TfrfBox (lookahead) usertype.
pub const TFRF_UUID: [u8; 16] =
    [0xD4, 0x80, 0x7E, 0xF2, 0xCA, 0x39, 0x46, 0x95, 0x8E, 0x54, 0x26, 0xCB, 0x9E, 0x46, 0xA7, 0x9F];

/// The ingest `ftyp`: major `isml`, minor 1, compatible `piff` and `iso2`, plus `ccff` and
/// `iso8` when the stream carries HEVC ([MS-SSTR] 2.2.7.1, HEVC amendment 2.2.7.1).
pub fn write_ingest_ftyp(out: &mut Vec<u8>, hevc: bool) {
    write_box(out, codes::FTYP, |o| {
        o.put_fourcc(codes::ISML);
        o.put_u32(1);
        o.put_fourcc(codes::PIFF);
        o.put_fourcc(codes::ISO2);
        if hevc {
            o.put_fourcc(codes::CCFF);
            o.put_fourcc(codes::ISO8);
        }
    });
}

/// The brands of an `ftyp` box: (major, minor, compatible).
pub fn parse_ftyp(ftyp: BoxRef<'_>) -> Result<(FourCC, u32, Vec<FourCC>)> {
    let mut r = ftyp.reader();
    let major = r.fourcc("major_brand")?;
    let minor = r.u32("minor_version")?;
    let mut compatible = Vec::new();
    while r.remaining() >= 4 {
        compatible.push(r.fourcc("compatible_brands")?);
    }
    Ok((major, minor, compatible))
}

/// TrackFragmentExtendedHeaderBox: the fragment's absolute time and duration in the track's
/// timescale. Version 2 appends a 64-bit fragment_index; that layout is inferred, not published
/// (docs/protocol.md §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tfxd {
    pub version: u8,
    pub fragment_absolute_time: u64,
    pub fragment_duration: u64,
    pub fragment_index: Option<u64>,
}

impl Tfxd {
    pub fn v1(time: u64, duration: u64) -> Self {
        Tfxd { version: 1, fragment_absolute_time: time, fragment_duration: duration, fragment_index: None }
    }

    /// Bytes [`Tfxd::write`] writes.
    pub fn size(&self) -> usize {
        // uuid box header, usertype, version and flags, then the fields.
        8 + 16
            + 4
            + match self.version {
                0 => 8,
                1 => 16,
                _ => 24,
            }
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        write_uuid_box(out, &TFXD_UUID, self.version, 0, |o| {
            if self.version == 0 {
                // 32-bit fields wrap; callers use version 1 unless they reproduce legacy bytes.
                o.put_u32(self.fragment_absolute_time as u32);
                o.put_u32(self.fragment_duration as u32);
            } else {
                o.put_u64(self.fragment_absolute_time);
                o.put_u64(self.fragment_duration);
                if self.version >= 2 {
                    o.put_u64(self.fragment_index.unwrap_or(0));
                }
            }
        });
    }

    /// Parses a `uuid` box known to carry the tfxd usertype.
    pub fn parse(b: BoxRef<'_>) -> Result<Tfxd> {
        if b.header.usertype != Some(TFXD_UUID) {
            return Err(Error::UnexpectedBox { box_type: b.box_type(), expected: "tfxd" });
        }
        let mut r = b.reader();
        let (version, _) = r.full_box()?;
        let (t, d) = match version {
            0 => (u64::from(r.u32("fragment_absolute_time")?), u64::from(r.u32("fragment_duration")?)),
            1 | 2 => (r.u64("fragment_absolute_time")?, r.u64("fragment_duration")?),
            _ => return Err(r.invalid("version")),
        };
        let fragment_index = if version == 2 { Some(r.u64("fragment_index")?) } else { None };
        Ok(Tfxd { version, fragment_absolute_time: t, fragment_duration: d, fragment_index })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bmff::Boxes;
    use crate::hex::parse_hex;

    #[test]
    fn ftyp_matches_the_spec_vector() {
        // docs/protocol.md A.5
        let mut out = Vec::new();
        write_ingest_ftyp(&mut out, false);
        assert_eq!(out, parse_hex("00 00 00 18 66 74 79 70 69 73 6D 6C 00 00 00 01 70 69 66 66 69 73 6F 32"));
        let b = Boxes::new(&out).next().unwrap().unwrap();
        let (major, minor, compat) = parse_ftyp(b).unwrap();
        assert_eq!((major, minor, compat), (codes::ISML, 1, alloc::vec![codes::PIFF, codes::ISO2]));
        let mut hevc = Vec::new();
        write_ingest_ftyp(&mut hevc, true);
        assert_eq!(hevc.len(), 32);
        assert_eq!(&hevc[24..], b"ccffiso8");
    }

    #[test]
    fn tfxd_matches_the_spec_vectors() {
        // [MS-SSTR] 2.2.4.4, v0 and v1 (v1: docs/protocol.md A.5)
        let v0 = parse_hex(
            "00 00 00 24 75 75 69 64 6D 1D 9B 05 42 D5 44 E6 80 E2 14 1D AF F7 57 B2 00 00 00 00 01 23 45 67 01 31 2D 00",
        );
        let t = Tfxd {
            version: 0,
            fragment_absolute_time: 0x0123_4567,
            fragment_duration: 20_000_000,
            fragment_index: None,
        };
        let mut out = Vec::new();
        t.write(&mut out);
        assert_eq!(out, v0);
        assert_eq!(Tfxd::parse(Boxes::new(&v0).next().unwrap().unwrap()).unwrap(), t);

        let v1 = parse_hex(
            "00 00 00 2C 75 75 69 64 6D 1D 9B 05 42 D5 44 E6 80 E2 14 1D AF F7 57 B2 01 00 00 00
             00 00 00 00 23 C3 46 00 00 00 00 00 01 31 2D 00",
        );
        let mut out = Vec::new();
        Tfxd::v1(600_000_000, 20_000_000).write(&mut out);
        assert_eq!(out, v1);
        assert_eq!(Tfxd::parse(Boxes::new(&v1).next().unwrap().unwrap()).unwrap(), Tfxd::v1(600_000_000, 20_000_000));
        // FFmpeg's first tfxd of a `-f ismv -movflags isml` push, t=0 d=20000000
        let ffmpeg = parse_hex(
            "0000002c 75756964 6d1d9b05 42d544e6 80e2141d aff757b2 01000000 00000000 00000000 00000000 01312d00",
        );
        let mut out = Vec::new();
        Tfxd::v1(0, 20_000_000).write(&mut out);
        assert_eq!(out, ffmpeg);
    }

    #[test]
    fn tfxd_v2_round_trips_with_its_index() {
        let t = Tfxd { version: 2, fragment_absolute_time: 7, fragment_duration: 9, fragment_index: Some(3) };
        let mut out = Vec::new();
        t.write(&mut out);
        assert_eq!(out.len(), 52);
        assert_eq!(Tfxd::parse(Boxes::new(&out).next().unwrap().unwrap()).unwrap(), t);
    }
}
