// SPDX-License-Identifier: MPL-2.0
//! Media payload as a list of reference-counted byte slices.
//!
//! The mdat bytes a muxer hands over are never copied: they are kept as the `Bytes` the caller
//! pushed (in the element, views of the mapped GstBuffers) and re-sliced when a fragment is split
//! per track. Only the small boxes around them (moof, headers) are built anew.

use alloc::vec::Vec;
use bytes::Bytes;

/// A sequence of byte slices that together form one logical byte range.
///
/// The first slice lives inline: a payload of one slice (a muxer buffer per fragment, or a run
/// sliced out of one) allocates nothing.
#[derive(Clone, Debug, Default)]
pub struct Payload {
    first: Option<Bytes>,
    /// The other slices, with their start offsets within the payload (for slicing).
    rest: Vec<(u64, Bytes)>,
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
        let at = self.len;
        self.len += chunk.len() as u64;
        match self.first {
            None => self.first = Some(chunk),
            Some(_) => self.rest.push((at, chunk)),
        }
    }

    pub fn append(&mut self, other: Payload) {
        if self.first.is_some() {
            self.rest.reserve(other.chunk_count());
        }
        let Payload { first, rest, .. } = other;
        for c in first.into_iter().chain(rest.into_iter().map(|(_, c)| c)) {
            self.push(c);
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The slices, in order.
    pub fn chunks(&self) -> impl Iterator<Item = &Bytes> + Clone {
        self.first.iter().chain(self.rest.iter().map(|(_, c)| c))
    }

    pub fn chunk_count(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    /// Slice `i`, in order.
    pub fn chunk(&self, i: usize) -> Option<&Bytes> {
        match i {
            0 => self.first.as_ref(),
            _ => self.rest.get(i - 1).map(|(_, c)| c),
        }
    }

    /// Start offset of slice `i` within the payload.
    fn chunk_start(&self, i: usize) -> u64 {
        if i == 0 { 0 } else { self.rest[i - 1].0 }
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
        // The slice holding `start`: the last one whose start offset is <= start.
        let mut i = match self.rest.binary_search_by_key(&start, |(at, _)| *at) {
            Ok(k) => k + 1,
            Err(k) => k, // rest[k-1] starts before `start`, or k == 0: the first slice
        };
        let mut pos = start;
        while pos < end {
            let (Some(chunk), chunk_start) = (self.chunk(i), self.chunk_start(i)) else { break };
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
        for c in self.chunks() {
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
        assert_eq!(s.chunk_count(), 1);
        // Same allocation: the slice points into the third chunk of the source.
        let src = p.chunk(2).unwrap();
        assert_eq!(s.chunk(0).unwrap().as_ptr(), src.as_ptr());
    }
}
