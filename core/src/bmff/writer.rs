// SPDX-License-Identifier: MPL-2.0
//! Writing ISO BMFF boxes: reserve the header, write the body, patch the size.
//!
//! One function per box lives with the code that owns the box; this module holds the mechanics.

use alloc::vec::Vec;

use crate::bmff::FourCC;

/// Big-endian appends to a byte vector.
pub trait PutBytes {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u24(&mut self, v: u32);
    fn put_u32(&mut self, v: u32);
    fn put_i32(&mut self, v: i32);
    fn put_u64(&mut self, v: u64);
    fn put_fourcc(&mut self, v: FourCC);
    fn put_zeros(&mut self, n: usize);
}

impl PutBytes for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u24(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes()[1..]);
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_i32(&mut self, v: i32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_fourcc(&mut self, v: FourCC) {
        self.extend_from_slice(v.as_bytes());
    }
    fn put_zeros(&mut self, n: usize) {
        self.resize(self.len() + n, 0);
    }
}

/// Writes a box whose body is produced by `body`, then patches its size.
pub fn write_box(out: &mut Vec<u8>, box_type: FourCC, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.put_u32(0);
    out.put_fourcc(box_type);
    body(out);
    patch_size(out, start);
}

/// Writes a FullBox (version and flags before the body).
pub fn write_full_box(out: &mut Vec<u8>, box_type: FourCC, version: u8, flags: u32, body: impl FnOnce(&mut Vec<u8>)) {
    write_box(out, box_type, |out| {
        out.put_u8(version);
        out.put_u24(flags);
        body(out);
    });
}

/// Writes a `uuid` box with a FullBox-style version and flags, as every Smooth extension box has.
pub fn write_uuid_box(
    out: &mut Vec<u8>,
    usertype: &[u8; 16],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut Vec<u8>),
) {
    write_box(out, crate::bmff::fourcc::codes::UUID, |out| {
        out.extend_from_slice(usertype);
        out.put_u8(version);
        out.put_u24(flags);
        body(out);
    });
}

/// Sets the 32-bit size of the box that starts at `start` and runs to the end of `out`.
/// A box over 4 GiB is converted to the `largesize` form instead of being truncated.
#[inline]
fn patch_size(out: &mut Vec<u8>, start: usize) {
    let size = out.len() - start;
    match u32::try_from(size) {
        Ok(s) => out[start..start + 4].copy_from_slice(&s.to_be_bytes()),
        Err(_) => patch_large_size(out, start, size),
    }
}

/// Inserts the 64-bit size after the type; this only happens for boxes larger than any this
/// crate writes, so the cost of the shift does not matter.
#[cold]
fn patch_large_size(out: &mut Vec<u8>, start: usize, size: usize) {
    let large = (size + 8) as u64;
    out[start..start + 4].copy_from_slice(&1u32.to_be_bytes());
    let at = start + 8;
    for (i, b) in large.to_be_bytes().iter().enumerate() {
        out.insert(at + i, *b);
    }
}

/// The header of an `mdat` holding `payload_len` bytes: 8 bytes, or 16 when it needs `largesize`.
pub fn mdat_header(payload_len: u64) -> ([u8; 16], usize) {
    let mut h = [0u8; 16];
    match u32::try_from(payload_len + 8) {
        Ok(size) => {
            h[..4].copy_from_slice(&size.to_be_bytes());
            h[4..8].copy_from_slice(b"mdat");
            (h, 8)
        }
        Err(_) => {
            h[..4].copy_from_slice(&1u32.to_be_bytes());
            h[4..8].copy_from_slice(b"mdat");
            h[8..].copy_from_slice(&(payload_len + 16).to_be_bytes());
            (h, 16)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bmff::fourcc::codes;
    use crate::bmff::{BoxHeader, Boxes};

    #[test]
    fn writes_size_after_body() {
        let mut out = Vec::new();
        write_full_box(&mut out, codes::MFHD, 0, 0, |o| o.put_u32(7));
        assert_eq!(out, [0, 0, 0, 16, b'm', b'f', b'h', b'd', 0, 0, 0, 0, 0, 0, 0, 7]);
        let b = Boxes::new(&out).next().unwrap().unwrap();
        assert_eq!(b.box_type(), codes::MFHD);
    }

    #[test]
    fn mdat_header_switches_to_largesize() {
        let (h, n) = mdat_header(100);
        assert_eq!(&h[..n], &[0, 0, 0, 108, b'm', b'd', b'a', b't']);
        let (h, n) = mdat_header(u64::from(u32::MAX));
        assert_eq!(n, 16);
        let parsed = BoxHeader::parse(&h[..n]).unwrap().unwrap();
        assert_eq!(parsed.size, u64::from(u32::MAX) + 16);
        assert_eq!(parsed.header_len, 16);
    }
}
