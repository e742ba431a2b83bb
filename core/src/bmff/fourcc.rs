// SPDX-License-Identifier: MPL-2.0
//! Four-character codes: box types, brands, handler types and sample entry names.

use core::fmt;

/// A four-character code as it appears on the wire (ISO/IEC 14496-12 §4.2).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FourCC(pub [u8; 4]);

impl FourCC {
    pub const fn new(code: &[u8; 4]) -> Self {
        FourCC(*code)
    }

    pub const fn as_bytes(&self) -> &[u8; 4] {
        &self.0
    }

    /// The code as text when it is printable ASCII (it usually is).
    pub fn as_str(&self) -> Option<&str> {
        if self.0.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
            core::str::from_utf8(&self.0).ok()
        } else {
            None
        }
    }
}

impl From<u32> for FourCC {
    fn from(v: u32) -> Self {
        FourCC(v.to_be_bytes())
    }
}

impl fmt::Display for FourCC {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(s) => f.write_str(s),
            // Garbage in a box header is shown in hex, so that error texts stay readable.
            None => write!(f, "0x{:08x}", u32::from_be_bytes(self.0)),
        }
    }
}

impl fmt::Debug for FourCC {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FourCC({self})")
    }
}

/// Box types and codes used across the crate.
pub mod codes {
    use super::FourCC;

    pub const FTYP: FourCC = FourCC::new(b"ftyp");
    pub const STYP: FourCC = FourCC::new(b"styp");
    pub const MOOV: FourCC = FourCC::new(b"moov");
    pub const MVHD: FourCC = FourCC::new(b"mvhd");
    pub const TRAK: FourCC = FourCC::new(b"trak");
    pub const TKHD: FourCC = FourCC::new(b"tkhd");
    pub const EDTS: FourCC = FourCC::new(b"edts");
    pub const MDIA: FourCC = FourCC::new(b"mdia");
    pub const MDHD: FourCC = FourCC::new(b"mdhd");
    pub const HDLR: FourCC = FourCC::new(b"hdlr");
    pub const MINF: FourCC = FourCC::new(b"minf");
    pub const VMHD: FourCC = FourCC::new(b"vmhd");
    pub const SMHD: FourCC = FourCC::new(b"smhd");
    pub const NMHD: FourCC = FourCC::new(b"nmhd");
    pub const DINF: FourCC = FourCC::new(b"dinf");
    pub const DREF: FourCC = FourCC::new(b"dref");
    pub const URL: FourCC = FourCC::new(b"url ");
    pub const STBL: FourCC = FourCC::new(b"stbl");
    pub const STSD: FourCC = FourCC::new(b"stsd");
    pub const STTS: FourCC = FourCC::new(b"stts");
    pub const STSC: FourCC = FourCC::new(b"stsc");
    pub const STSZ: FourCC = FourCC::new(b"stsz");
    pub const STCO: FourCC = FourCC::new(b"stco");
    pub const MVEX: FourCC = FourCC::new(b"mvex");
    pub const MEHD: FourCC = FourCC::new(b"mehd");
    pub const TREX: FourCC = FourCC::new(b"trex");
    pub const UDTA: FourCC = FourCC::new(b"udta");
    pub const MOOF: FourCC = FourCC::new(b"moof");
    pub const MFHD: FourCC = FourCC::new(b"mfhd");
    pub const TRAF: FourCC = FourCC::new(b"traf");
    pub const TFHD: FourCC = FourCC::new(b"tfhd");
    pub const TFDT: FourCC = FourCC::new(b"tfdt");
    pub const TRUN: FourCC = FourCC::new(b"trun");
    pub const SDTP: FourCC = FourCC::new(b"sdtp");
    pub const MDAT: FourCC = FourCC::new(b"mdat");
    pub const MFRA: FourCC = FourCC::new(b"mfra");
    pub const SIDX: FourCC = FourCC::new(b"sidx");
    pub const PRFT: FourCC = FourCC::new(b"prft");
    pub const EMSG: FourCC = FourCC::new(b"emsg");
    pub const FREE: FourCC = FourCC::new(b"free");
    pub const SKIP: FourCC = FourCC::new(b"skip");
    pub const UUID: FourCC = FourCC::new(b"uuid");
    pub const WAVE: FourCC = FourCC::new(b"wave");

    // Sample entries and their configuration boxes.
    pub const AVC1: FourCC = FourCC::new(b"avc1");
    pub const AVC3: FourCC = FourCC::new(b"avc3");
    pub const AVCC: FourCC = FourCC::new(b"avcC");
    pub const HVC1: FourCC = FourCC::new(b"hvc1");
    pub const HEV1: FourCC = FourCC::new(b"hev1");
    pub const HVCC: FourCC = FourCC::new(b"hvcC");
    pub const MP4A: FourCC = FourCC::new(b"mp4a");
    pub const ESDS: FourCC = FourCC::new(b"esds");
    pub const BTRT: FourCC = FourCC::new(b"btrt");
    pub const SCTE: FourCC = FourCC::new(b"scte");

    // Handler types.
    pub const VIDE: FourCC = FourCC::new(b"vide");
    pub const SOUN: FourCC = FourCC::new(b"soun");
    pub const META: FourCC = FourCC::new(b"meta");

    // Brands.
    pub const ISML: FourCC = FourCC::new(b"isml");
    pub const PIFF: FourCC = FourCC::new(b"piff");
    pub const ISO2: FourCC = FourCC::new(b"iso2");
    pub const CCFF: FourCC = FourCC::new(b"ccff");
    pub const ISO8: FourCC = FourCC::new(b"iso8");

    // CMAF ingest (ISO/IEC 23000-19, ISO/IEC 23009-1, ISO/IEC 14496-12).
    pub const ELNG: FourCC = FourCC::new(b"elng");
    pub const KIND: FourCC = FourCC::new(b"kind");
    pub const URIM: FourCC = FourCC::new(b"urim");
    pub const URI: FourCC = FourCC::new(b"uri ");
    pub const ISO6: FourCC = FourCC::new(b"iso6");
    pub const CMFC: FourCC = FourCC::new(b"cmfc");
    pub const CMFS: FourCC = FourCC::new(b"cmfs");
    pub const CMFF: FourCC = FourCC::new(b"cmff");
    pub const CMFL: FourCC = FourCC::new(b"cmfl");
    pub const LMSG: FourCC = FourCC::new(b"lmsg");
}
