// SPDX-License-Identifier: MPL-2.0
//! The incremental reader of an ingest request body: bytes in as they arrive, in any chunking;
//! whole top-level boxes out, and each `moof` together with the `mdat` after it as one
//! fragment (contiguous bytes, so that the stored fragment is one buffer).
//!
//! What it buffers is bounded: a box larger than the limits is refused from its header, before
//! its bytes arrive. Box headers are read by the core's checked reader (ISO/IEC 14496-12 §4.2:
//! `largesize`, `uuid`; a size-0 box, which runs to the end of a file, is refused in a stream).

use bytes::{Bytes, BytesMut};
use fmp4ingest_core::bmff::fourcc::codes;
use fmp4ingest_core::bmff::{BoxHeader, FourCC};

/// What the reader yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A top-level box other than moof and mdat (ftyp, moov, uuid, styp, free, ...).
    Box { header: BoxHeader, bytes: Bytes },
    /// A moof and its mdat: `bytes` holds both, the moof first, `moof_len` bytes long.
    Fragment { bytes: Bytes, moof_len: usize },
}

/// Limits of what one box may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Any box but an mdat (ftyp, moov, moof, the Live Server Manifest, ...).
    pub max_box: u64,
    /// An mdat: one fragment's media.
    pub max_mdat: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_box: 16 << 20, max_mdat: 64 << 20 }
    }
}

#[derive(Debug)]
pub struct BoxReader {
    limits: Limits,
    buf: BytesMut,
    /// The length of a complete moof at the start of `buf`, waiting for its mdat.
    moof: Option<usize>,
    /// Bytes taken out of the stream so far (for error positions).
    consumed: u64,
}

fn name(t: FourCC) -> String {
    t.as_str().map_or_else(|| format!("{:02x?}", t.as_bytes()), |s| format!("'{s}'"))
}

impl BoxReader {
    pub fn new(limits: Limits) -> Self {
        BoxReader { limits, buf: BytesMut::new(), moof: None, consumed: 0 }
    }

    /// Adds body bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered and not yet yielded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete item; `Ok(None)` when more bytes are needed. An error is final: the
    /// stream cannot be followed past a broken box.
    pub fn next_item(&mut self) -> Result<Option<Item>, String> {
        loop {
            let at = self.moof.unwrap_or(0);
            let offset = self.consumed + at as u64;
            let header = match BoxHeader::parse(&self.buf[at..]) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(None),
                Err(e) => return Err(format!("a broken box header at byte {offset}: {e:?}")),
            };
            let cap = if header.box_type == codes::MDAT { self.limits.max_mdat } else { self.limits.max_box };
            if header.size > cap {
                return Err(format!(
                    "a {} box of {} bytes at byte {offset}: larger than the {cap} bytes this endpoint takes",
                    name(header.box_type),
                    header.size
                ));
            }
            let size = header.size as usize;
            if self.buf.len() < at + size {
                // Room for the rest of the box, once.
                self.buf.reserve(at + size - self.buf.len());
                return Ok(None);
            }
            match (self.moof, header.box_type) {
                (Some(moof_len), codes::MDAT) => {
                    self.moof = None;
                    self.consumed += (moof_len + size) as u64;
                    let bytes = self.buf.split_to(moof_len + size).freeze();
                    return Ok(Some(Item::Fragment { bytes, moof_len }));
                }
                (Some(_), other) => {
                    return Err(format!("a moof followed by a {} box at byte {offset}, not by its mdat", name(other)));
                }
                (None, codes::MOOF) => self.moof = Some(size),
                (None, codes::MDAT) => return Err(format!("an mdat without a moof at byte {offset}")),
                (None, _) => {
                    self.consumed += size as u64;
                    return Ok(Some(Item::Box { header, bytes: self.buf.split_to(size).freeze() }));
                }
            }
        }
    }

    /// The body ended: anything left is a box cut short.
    pub fn finish(&self) -> Result<(), String> {
        match (self.moof, self.buf.len()) {
            (Some(_), _) => Err("the body ends with a moof without its mdat".into()),
            (None, 0) => Ok(()),
            (None, n) => Err(format!("the body ends inside a box ({n} bytes of it)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(body);
        b
    }

    fn all(r: &mut BoxReader) -> Vec<Item> {
        std::iter::from_fn(|| r.next_item().unwrap()).collect()
    }

    #[test]
    fn boxes_and_fragments_in_any_chunking() {
        let stream =
            [bx(b"ftyp", b"isml"), bx(b"moov", &[0; 30]), bx(b"moof", &[1; 20]), bx(b"mdat", &[2; 100])].concat();
        for chunk in [1, 3, 7, 64, 1000] {
            let mut r = BoxReader::new(Limits::default());
            let mut items = Vec::new();
            for c in stream.chunks(chunk) {
                r.push(c);
                items.extend(all(&mut r));
            }
            r.finish().unwrap();
            assert_eq!(items.len(), 3, "chunks of {chunk}");
            assert!(matches!(&items[0], Item::Box { header, .. } if header.box_type == codes::FTYP));
            match &items[2] {
                Item::Fragment { bytes, moof_len } => {
                    assert_eq!((*moof_len, bytes.len()), (28, 28 + 108));
                    assert_eq!(&bytes[..], &stream[12 + 38..]);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn broken_streams_are_refused_with_a_reason() {
        let cases: [(Vec<u8>, &str); 5] = [
            ([0, 0, 0, 4, b'f', b'r', b'e', b'e'].to_vec(), "broken box header"),
            ([0, 0, 0, 0, b'm', b'o', b'o', b'v'].to_vec(), "broken box header"),
            (bx(b"mdat", &[0; 4]), "without a moof"),
            ([bx(b"moof", &[0; 4]), bx(b"free", &[])].concat(), "not by its mdat"),
            ([0xff, 0xff, 0xff, 0xff, b'm', b'o', b'o', b'v'].to_vec(), "larger than"),
        ];
        for (bytes, why) in cases {
            let mut r = BoxReader::new(Limits::default());
            r.push(&bytes);
            let e = r.next_item().unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        let mut r = BoxReader::new(Limits::default());
        r.push(&bx(b"moof", &[0; 4]));
        assert_eq!(r.next_item(), Ok(None));
        assert!(r.finish().unwrap_err().contains("without its mdat"));
        let mut r = BoxReader::new(Limits::default());
        r.push(&[0, 0, 0, 9, b'f']);
        assert_eq!(r.next_item(), Ok(None));
        assert!(r.finish().unwrap_err().contains("inside a box"));
    }
}
