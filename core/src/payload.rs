//! Media payload as a list of reference-counted byte slices.
//!
//! The mdat bytes a muxer hands over are never copied: they are kept as the `Bytes` the caller
//! pushed (in the element, views of the mapped GstBuffers) and re-sliced when a fragment is split
//! per track. Only the small boxes around them (moof, headers) are built anew.

use alloc::vec::Vec;
use bytes::Bytes;

/// A sequence of byte slices that together form one logical byte range.
#[derive(Clone, Debug, Default)]
pub struct Payload {
    chunks: Vec<Bytes>,
    /// Start offset of each chunk within the payload, for binary search when slicing.
    starts: Vec<u64>,
    len: u64,
}

impl Payload {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a slice; empty slices are dropped.
    pub fn push(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        self.starts.push(self.len);
        self.len += chunk.len() as u64;
        self.chunks.push(chunk);
    }

    pub fn append(&mut self, other: Payload) {
        for c in other.chunks {
            self.push(c);
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// The bytes `[start, start + len)` as views of the same memory, or `None` if the range
    /// does not lie inside the payload.
    pub fn slice(&self, start: u64, len: u64) -> Option<Payload> {
        let end = start.checked_add(len)?;
        if end > self.len {
            return None;
        }
        let mut out = Payload::new();
        if len == 0 {
            return Some(out);
        }
        // The chunk holding `start`: the last one whose start offset is <= start.
        let mut i = match self.starts.binary_search(&start) {
            Ok(i) => i,
            Err(i) => i - 1, // i >= 1 because starts[0] == 0 <= start
        };
        let mut pos = start;
        while pos < end {
            let chunk = &self.chunks[i];
            let chunk_start = self.starts[i];
            let from = (pos - chunk_start) as usize;
            let to = ((end - chunk_start) as usize).min(chunk.len());
            out.push(chunk.slice(from..to));
            pos = chunk_start + to as u64;
            i += 1;
        }
        Some(out)
    }

    /// Copies the payload into one vector. For tests and diagnostics, never on the media path.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len as usize);
        for c in &self.chunks {
            v.extend_from_slice(c);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Payload, Vec<u8>) {
        let mut p = Payload::new();
        let mut flat = Vec::new();
        for (i, n) in [3usize, 1, 5, 0, 4].iter().enumerate() {
            let bytes: Vec<u8> = (0..*n).map(|k| (i * 16 + k) as u8).collect();
            flat.extend_from_slice(&bytes);
            p.push(Bytes::from(bytes));
        }
        (p, flat)
    }

    #[test]
    fn every_sub_range_matches_the_flat_bytes() {
        let (p, flat) = sample();
        assert_eq!(p.len(), flat.len() as u64);
        for start in 0..=flat.len() {
            for len in 0..=(flat.len() - start) {
                let s = p.slice(start as u64, len as u64).unwrap();
                assert_eq!(s.to_vec(), &flat[start..start + len], "start {start} len {len}");
            }
        }
        assert!(p.slice(10, 4).is_none());
        assert!(p.slice(u64::MAX, 2).is_none());
    }

    #[test]
    fn slices_share_memory_with_the_source() {
        let (p, _) = sample();
        let s = p.slice(4, 5).unwrap();
        assert_eq!(s.chunks().len(), 1);
        // Same allocation: the slice points into the third chunk of the source.
        let src = &p.chunks()[2];
        assert_eq!(s.chunks()[0].as_ptr(), src.as_ptr());
    }
}
