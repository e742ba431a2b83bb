// SPDX-License-Identifier: MPL-2.0
//! Uppercase hex, as the manifest's CodecPrivateData is written (docs/protocol.md §2.7).

use alloc::string::String;
use alloc::vec::Vec;

/// Bytes as an uppercase hex string, without separators. Unlike FFmpeg's `param_write_hex`,
/// there is no length limit.
pub fn to_upper_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Hex digits to bytes, ignoring whitespace; `None` on any other character or an odd count.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|p| {
            let hi = char::from(p[0]).to_digit(16)?;
            let lo = char::from(p[1]).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

/// Test vectors are written as spaced hex (as in docs/protocol.md's appendix); this reads them.
#[cfg(test)]
pub fn parse_hex(text: &str) -> Vec<u8> {
    from_hex(text).expect("valid hex in a test vector")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let b = [0x00, 0x01, 0xAB, 0xff];
        assert_eq!(to_upper_hex(&b), "0001ABFF");
        assert_eq!(from_hex("00 01 ab FF").unwrap(), b);
        assert_eq!(from_hex("0"), None);
        assert_eq!(from_hex("zz"), None);
    }
}
