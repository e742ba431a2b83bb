// SPDX-License-Identifier: MPL-2.0
//! Reading ISO BMFF boxes without trusting the input.
//!
//! Every size is checked against the bytes that are present before it is used, nesting depth is
//! bounded, a size-0 box is refused and `largesize` is supported (ISO/IEC 14496-12 §4.2).

use crate::bmff::FourCC;
use crate::bmff::fourcc::codes;
use crate::error::{Error, Result};

/// The deepest nesting the parsers follow. Real files use 7 or 8 levels (moov/trak/mdia/minf/stbl/stsd/entry/config).
pub const MAX_DEPTH: usize = 16;

/// A parsed box header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxHeader {
    pub box_type: FourCC,
    /// Whole box size, header included.
    pub size: u64,
    /// 8, or 16 with `largesize`; a `uuid` box adds its 16-byte usertype to this.
    pub header_len: u8,
    pub usertype: Option<[u8; 16]>,
}

impl BoxHeader {
    /// Parses a box header at the start of `buf`. Returns `Ok(None)` when more bytes are needed.
    pub fn parse(buf: &[u8]) -> Result<Option<BoxHeader>> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let size32 = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let box_type = FourCC([buf[4], buf[5], buf[6], buf[7]]);
        let (size, mut header_len) = match size32 {
            0 => return Err(Error::SizeZeroBox { box_type }),
            1 => {
                if buf.len() < 16 {
                    return Ok(None);
                }
                let mut large = [0u8; 8];
                large.copy_from_slice(&buf[8..16]);
                (u64::from_be_bytes(large), 16u8)
            }
            n => (u64::from(n), 8u8),
        };
        let mut usertype = None;
        if box_type == codes::UUID {
            let end = usize::from(header_len) + 16;
            if buf.len() < end {
                return Ok(None);
            }
            let mut u = [0u8; 16];
            u.copy_from_slice(&buf[usize::from(header_len)..end]);
            usertype = Some(u);
            header_len += 16;
        }
        if size < u64::from(header_len) {
            return Err(Error::BadBoxSize { box_type, size });
        }
        Ok(Some(BoxHeader { box_type, size, header_len, usertype }))
    }
}

/// A complete box inside a byte slice.
#[derive(Debug, Clone, Copy)]
pub struct BoxRef<'a> {
    pub header: BoxHeader,
    /// The whole box, header included.
    pub bytes: &'a [u8],
    depth: usize,
}

impl<'a> BoxRef<'a> {
    pub fn box_type(&self) -> FourCC {
        self.header.box_type
    }

    /// The payload after the header (and after the usertype of a `uuid` box).
    pub fn body(&self) -> &'a [u8] {
        &self.bytes[usize::from(self.header.header_len)..]
    }

    /// A reader over the body, whose errors name this box.
    pub fn reader(&self) -> Reader<'a> {
        Reader::new(self.body(), self.header.box_type)
    }

    /// The boxes directly inside this one, starting `skip` bytes into the body
    /// (sample entries and full boxes have fields before their children).
    pub fn children_after(&self, skip: usize) -> Result<Boxes<'a>> {
        let body = self.body();
        if skip > body.len() {
            return Err(Error::Truncated { in_box: self.box_type(), field: "children" });
        }
        Boxes::nested(&body[skip..], self.depth + 1, self.box_type())
    }

    pub fn children(&self) -> Result<Boxes<'a>> {
        self.children_after(0)
    }

    /// The first child of the given type, if any.
    pub fn child(&self, box_type: FourCC) -> Result<Option<BoxRef<'a>>> {
        self.children()?.find_type(box_type)
    }

    /// The first child of the given type, or an error naming what is missing.
    pub fn require(&self, box_type: FourCC) -> Result<BoxRef<'a>> {
        self.child(box_type)?.ok_or(Error::MissingBox { parent: self.box_type(), child: box_type })
    }
}

/// Iterator over consecutive boxes in a slice. Stops at the first malformed box with an error.
#[derive(Debug, Clone)]
pub struct Boxes<'a> {
    data: &'a [u8],
    pos: usize,
    depth: usize,
    parent: FourCC,
    failed: bool,
}

impl<'a> Boxes<'a> {
    /// The boxes of a top-level slice (a file, a buffered box sequence).
    pub fn new(data: &'a [u8]) -> Self {
        Boxes { data, pos: 0, depth: 0, parent: FourCC::default(), failed: false }
    }

    fn nested(data: &'a [u8], depth: usize, parent: FourCC) -> Result<Self> {
        if depth > MAX_DEPTH {
            return Err(Error::TooDeep { box_type: parent });
        }
        Ok(Boxes { data, pos: 0, depth, parent, failed: false })
    }

    /// Finds the first box of a type, propagating any parse error met on the way.
    pub fn find_type(self, box_type: FourCC) -> Result<Option<BoxRef<'a>>> {
        for b in self {
            let b = b?;
            if b.box_type() == box_type {
                return Ok(Some(b));
            }
        }
        Ok(None)
    }
}

impl<'a> Iterator for Boxes<'a> {
    type Item = Result<BoxRef<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        let rest = &self.data[self.pos..];
        let header = match BoxHeader::parse(rest) {
            Ok(Some(h)) => h,
            // QuickTime ends atom lists with a 32-bit zero terminator (qtmux does in sample
            // entries); zeros too short for a box are that, not a truncated box.
            Ok(None) if rest.iter().all(|b| *b == 0) => {
                self.pos = self.data.len();
                return None;
            }
            Ok(None) => {
                self.failed = true;
                let in_box = if self.depth == 0 { FourCC::new(b"file") } else { self.parent };
                return Some(Err(Error::Truncated { in_box, field: "box header" }));
            }
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        if header.size > rest.len() as u64 {
            self.failed = true;
            return Some(Err(Error::BadBoxSize { box_type: header.box_type, size: header.size }));
        }
        // Fits in usize: it is no larger than the slice.
        let size = header.size as usize;
        self.pos += size;
        Some(Ok(BoxRef { header, bytes: &rest[..size], depth: self.depth }))
    }
}

/// A bounded big-endian cursor. Reads past the end are errors naming the box and the field.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    in_box: FourCC,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8], in_box: FourCC) -> Self {
        Reader { data, pos: 0, in_box }
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.data[self.pos..]
    }

    pub fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(Error::Truncated { in_box: self.in_box, field });
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub fn skip(&mut self, n: usize, field: &'static str) -> Result<()> {
        self.bytes(n, field).map(|_| ())
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N, field)?);
        Ok(out)
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8> {
        Ok(self.array::<1>(field)?[0])
    }

    pub fn u16(&mut self, field: &'static str) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub fn u24(&mut self, field: &'static str) -> Result<u32> {
        let b = self.array::<3>(field)?;
        Ok(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    pub fn u32(&mut self, field: &'static str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub fn i32(&mut self, field: &'static str) -> Result<i32> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    pub fn u64(&mut self, field: &'static str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    pub fn fourcc(&mut self, field: &'static str) -> Result<FourCC> {
        Ok(FourCC(self.array(field)?))
    }

    /// Version and flags of a FullBox.
    pub fn full_box(&mut self) -> Result<(u8, u32)> {
        let v = self.u8("version")?;
        let flags = self.u24("flags")?;
        Ok((v, flags))
    }

    /// An error about a field of the box this reader covers.
    pub fn invalid(&self, field: &'static str) -> Error {
        Error::InvalidValue { in_box: self.in_box, field }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    #[test]
    fn parses_compact_and_large_headers() {
        let h = BoxHeader::parse(&[0, 0, 0, 16, b'f', b'r', b'e', b'e', 0, 0]).unwrap().unwrap();
        assert_eq!((h.size, h.header_len), (16, 8));
        let mut large = vec![0, 0, 0, 1, b'm', b'd', b'a', b't'];
        large.extend_from_slice(&(1u64 << 33).to_be_bytes());
        let h = BoxHeader::parse(&large).unwrap().unwrap();
        assert_eq!((h.size, h.header_len, h.box_type), (1 << 33, 16, codes::MDAT));
    }

    #[test]
    fn needs_more_bytes_for_partial_headers() {
        assert_eq!(BoxHeader::parse(&[0, 0, 0, 1, b'm', b'd', b'a', b't', 0]).unwrap(), None);
        assert_eq!(BoxHeader::parse(&[0, 0, 0]).unwrap(), None);
        assert_eq!(BoxHeader::parse(&[0, 0, 0, 40, b'u', b'u', b'i', b'd', 1, 2]).unwrap(), None);
    }

    #[test]
    fn refuses_size_zero_and_undersized_boxes() {
        assert_eq!(
            BoxHeader::parse(&[0, 0, 0, 0, b'm', b'd', b'a', b't']),
            Err(Error::SizeZeroBox { box_type: codes::MDAT })
        );
        assert_eq!(
            BoxHeader::parse(&[0, 0, 0, 7, b'f', b'r', b'e', b'e']),
            Err(Error::BadBoxSize { box_type: codes::FREE, size: 7 })
        );
        let mut large = vec![0, 0, 0, 1, b'f', b'r', b'e', b'e'];
        large.extend_from_slice(&15u64.to_be_bytes());
        assert_eq!(BoxHeader::parse(&large), Err(Error::BadBoxSize { box_type: codes::FREE, size: 15 }));
    }

    #[test]
    fn child_larger_than_parent_is_an_error() {
        let data = [0, 0, 0, 16, b'm', b'o', b'o', b'v', 0, 0, 0, 200, b't', b'r', b'a', b'k'];
        let moov = Boxes::new(&data).next().unwrap().unwrap();
        let err = moov.children().unwrap().next().unwrap().unwrap_err();
        assert_eq!(err, Error::BadBoxSize { box_type: codes::TRAK, size: 200 });
    }

    #[test]
    fn nesting_depth_is_bounded() {
        // 40 nested 'moov' boxes, each only a header around the next.
        let depth = 40usize;
        let mut data = Vec::new();
        for i in 0..depth {
            let size = (8 * (depth - i)) as u32;
            data.extend_from_slice(&size.to_be_bytes());
            data.extend_from_slice(b"moov");
        }
        fn walk(b: BoxRef<'_>) -> Result<usize> {
            let mut n = 1;
            for c in b.children()? {
                n += walk(c?)?;
            }
            Ok(n)
        }
        let top = Boxes::new(&data).next().unwrap().unwrap();
        assert_eq!(walk(top), Err(Error::TooDeep { box_type: codes::MOOV }));
    }

    #[test]
    fn quicktime_zero_terminator_ends_a_box_list() {
        let data = [0, 0, 0, 8, b'f', b'r', b'e', b'e', 0, 0, 0, 0];
        let kinds: Vec<_> = Boxes::new(&data).map(|b| b.unwrap().box_type()).collect();
        assert_eq!(kinds, [codes::FREE]);
        let bad = [0, 0, 0, 8, b'f', b'r', b'e', b'e', 0, 0, 1, 0];
        assert!(Boxes::new(&bad).nth(1).unwrap().is_err());
    }

    #[test]
    fn reader_reports_the_field_that_ran_out() {
        let mut r = Reader::new(&[1, 2, 3], codes::TFHD);
        assert_eq!(r.u16("a").unwrap(), 0x0102);
        assert_eq!(r.u32("track_ID"), Err(Error::Truncated { in_box: codes::TFHD, field: "track_ID" }));
    }
}
