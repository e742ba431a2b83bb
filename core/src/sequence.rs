// SPDX-License-Identifier: MPL-2.0
//! mfhd sequence numbers on the grid, and the order in which fragments leave the stream.
//!
//! ISO/IEC 14496-12 8.8.5 (Movie Fragment Header): the sequence number increases for each movie
//! fragment in the order they occur in the file, so that a reader can detect reordering. Each
//! POST body is such a file, and it also starts with fragments sent again after a reconnect;
//! and two redundant encoders, or one encoder after a restart, must give the same fragment the
//! same number. So the number is a function of where the fragment lies, never a counter:
//!
//! `sequence = ((index × S + part) × T + position + 1) mod 2^32`
//!
//! with `index` the fragment's grid index (its start / D), `part` its rank among the fragments
//! of its track that a splice cut out of the same grid interval (0 without cuts), `S` the parts
//! an interval may have (1 unless splices may cut fragments), `T` the number of tracks of the
//! stream and `position` the track's place in the moov (see `docs/protocol.md` §2.6).
//!
//! Tracks finish their fragments in no fixed order (the muxer interleaves them as it likes), so
//! [`FragmentOrder`] releases fragments in sequence order: one waits while another track may
//! still produce a fragment that sorts before it. It waits at most until its own track is two
//! grid intervals further, so that a track that stops producing holds up the others by no more.

use alloc::vec::Vec;

use crate::fragment::Fragment;

/// Where a fragment sorts: by grid interval, then part, then track position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SequenceKey {
    pub index: u64,
    pub part: u32,
    pub position: u32,
}

/// How fragments are numbered: the stream's track count and the parts an interval may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numbering {
    pub tracks: u32,
    pub parts: u32,
}

impl Numbering {
    /// The mfhd sequence_number of the fragment at `key`.
    pub fn sequence(&self, key: SequenceKey) -> u32 {
        let parts = u64::from(self.parts.max(1));
        let tracks = u64::from(self.tracks.max(1));
        let part = u64::from(key.part.min(self.parts.max(1) - 1));
        let n = key
            .index
            .wrapping_mul(parts)
            .wrapping_add(part)
            .wrapping_mul(tracks)
            .wrapping_add(u64::from(key.position))
            .wrapping_add(1);
        n as u32
    }
}

/// Grid intervals a track may run ahead of another before its fragments go out regardless.
const MAX_LEAD: u64 = 2;

/// Numbers the fragments of a stream's tracks and releases them in sequence order.
#[derive(Debug)]
pub struct FragmentOrder {
    numbering: Numbering,
    /// Per track position: the key of the last fragment the grid produced.
    last: Vec<Option<SequenceKey>>,
    /// Fragments waiting for the other tracks, in key order.
    held: Vec<(SequenceKey, Fragment)>,
}

impl FragmentOrder {
    pub fn new(numbering: Numbering) -> Self {
        let tracks = numbering.tracks.max(1) as usize;
        FragmentOrder { numbering, last: alloc::vec![None; tracks], held: Vec::new() }
    }

    /// The key of the next fragment of the track at `position`, which starts grid interval
    /// `index`; it becomes that track's last. `None` for a position the stream does not have.
    pub fn next_key(&mut self, position: u32, index: u64) -> Option<SequenceKey> {
        let last = self.last.get_mut(position as usize)?;
        let part = match *last {
            Some(k) if k.index == index => (k.part + 1).min(self.numbering.parts.max(1) - 1),
            _ => 0,
        };
        let key = SequenceKey { index, part, position };
        *last = Some(key);
        Some(key)
    }

    pub fn sequence(&self, key: SequenceKey) -> u32 {
        self.numbering.sequence(key)
    }

    /// Takes a fragment written with `key`'s sequence number.
    pub fn hold(&mut self, key: SequenceKey, fragment: Fragment) {
        let at = self.held.partition_point(|(k, _)| *k <= key);
        self.held.insert(at, (key, fragment));
    }

    /// The fragments that may go now, in order.
    pub fn release(&mut self) -> Vec<Fragment> {
        let mut n = 0;
        while n < self.held.len() && self.may_go(self.held[n].0) {
            n += 1;
        }
        self.held.drain(..n).map(|(_, f)| f).collect()
    }

    /// Everything held, in order (the end of the stream).
    pub fn flush(&mut self) -> Vec<Fragment> {
        self.held.drain(..).map(|(_, f)| f).collect()
    }

    /// Whether no other track can still produce a fragment that sorts before `key`, or `key`'s
    /// own track is `MAX_LEAD` intervals further on.
    fn may_go(&self, key: SequenceKey) -> bool {
        let own = self.last.get(key.position as usize).copied().flatten();
        if own.is_some_and(|o| o.index >= key.index.saturating_add(MAX_LEAD)) {
            return true;
        }
        let parts = self.numbering.parts.max(1);
        self.last.iter().enumerate().filter(|(p, _)| *p != key.position as usize).all(|(p, last)| match last {
            // The smallest key the track can produce next: the next part of its interval, or
            // the next interval.
            Some(k) => {
                let next = if k.part + 1 < parts {
                    SequenceKey { part: k.part + 1, ..*k }
                } else {
                    SequenceKey { index: k.index.saturating_add(1), part: 0, position: p as u32 }
                };
                next > key
            }
            None => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fragment::FragmentTiming;
    use crate::payload::Payload;
    use alloc::vec;
    use bytes::Bytes;

    fn fragment(track_id: u32, sequence: u32) -> Fragment {
        Fragment {
            track_id,
            sequence,
            timing: FragmentTiming { time: 0, duration: 1, decode_time: 0, index: None, timescale: 1 },
            sample_count: 1,
            starts_with_sync: true,
            head: Bytes::new(),
            payload: Payload::default(),
        }
    }

    /// Feeds (position, index) pairs as the grid produces them; returns the released sequence
    /// numbers after each.
    fn run(order: &mut FragmentOrder, produced: &[(u32, u64)]) -> Vec<u32> {
        let mut out = Vec::new();
        for &(position, index) in produced {
            let key = order.next_key(position, index).unwrap();
            let seq = order.sequence(key);
            order.hold(key, fragment(position + 1, seq));
            out.extend(order.release().iter().map(|f| f.sequence));
        }
        out.extend(order.flush().iter().map(|f| f.sequence));
        out
    }

    #[test]
    fn numbers_follow_the_index_and_the_track_position() {
        let n = Numbering { tracks: 2, parts: 1 };
        assert_eq!(n.sequence(SequenceKey { index: 0, part: 0, position: 0 }), 1);
        assert_eq!(n.sequence(SequenceKey { index: 0, part: 0, position: 1 }), 2);
        assert_eq!(n.sequence(SequenceKey { index: 5, part: 0, position: 1 }), 12);
        // UTC mode: the index is the number of 2 s intervals since 1970; the number wraps.
        let k = SequenceKey { index: 898_254_442, part: 0, position: 1 };
        assert_eq!(n.sequence(k), 1_796_508_886);
        let n = Numbering { tracks: 5, parts: 1 };
        assert_eq!(n.sequence(k), ((898_254_442u64 * 5 + 2) % (1 << 32)) as u32);
        // A single track: index + 1.
        let n = Numbering { tracks: 1, parts: 1 };
        assert_eq!(n.sequence(SequenceKey { index: 9, part: 0, position: 0 }), 10);
        // With splices, a second part of the interval sorts between the first and the next.
        let n = Numbering { tracks: 2, parts: 4 };
        let a = n.sequence(SequenceKey { index: 3, part: 0, position: 1 });
        let b = n.sequence(SequenceKey { index: 3, part: 1, position: 0 });
        let c = n.sequence(SequenceKey { index: 4, part: 0, position: 0 });
        assert!(a < b && b < c, "{a} {b} {c}");
    }

    #[test]
    fn fragments_leave_in_sequence_order_whatever_order_the_tracks_finish_in() {
        // Audio (position 1) of each interval finishes before video (position 0).
        let mut o = FragmentOrder::new(Numbering { tracks: 2, parts: 1 });
        let produced = [(1, 0), (0, 0), (1, 1), (0, 1), (1, 2), (0, 2)];
        assert_eq!(run(&mut o, &produced), [1, 2, 3, 4, 5, 6]);
        // Video first: nothing waits longer than the other track's fragment of the interval.
        let mut o = FragmentOrder::new(Numbering { tracks: 2, parts: 1 });
        let mut released = Vec::new();
        for (i, &(p, k)) in [(0, 0), (1, 0), (0, 1), (1, 1)].iter().enumerate() {
            let key = o.next_key(p, k).unwrap();
            let seq = o.sequence(key);
            o.hold(key, fragment(p + 1, seq));
            released.push((i, o.release().iter().map(|f| f.sequence).collect::<Vec<_>>()));
        }
        assert_eq!(released, [(0, vec![]), (1, vec![1, 2]), (2, vec![3]), (3, vec![4])]);
    }

    #[test]
    fn a_single_track_is_never_held() {
        let mut o = FragmentOrder::new(Numbering { tracks: 1, parts: 1 });
        for k in 0..3 {
            let key = o.next_key(0, k).unwrap();
            o.hold(key, fragment(1, o.sequence(key)));
            assert_eq!(o.release().len(), 1);
        }
    }

    #[test]
    fn a_track_that_stops_holds_the_others_two_intervals_at_most() {
        let mut o = FragmentOrder::new(Numbering { tracks: 2, parts: 1 });
        // Audio never comes.
        let mut released = Vec::new();
        for k in 0..5 {
            let key = o.next_key(0, k).unwrap();
            o.hold(key, fragment(1, o.sequence(key)));
            released.push(o.release().len());
        }
        assert_eq!(released, [0, 0, 1, 1, 1]);
        assert_eq!(o.flush().len(), 2);
    }

    #[test]
    fn parts_cut_by_a_splice_are_numbered_and_ordered() {
        let mut o = FragmentOrder::new(Numbering { tracks: 2, parts: 4 });
        // Interval 1 is cut in two on both tracks; audio finishes each piece first.
        let produced = [(1, 0), (0, 0), (1, 1), (0, 1), (1, 1), (0, 1), (1, 2), (0, 2)];
        let seqs = run(&mut o, &produced);
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        assert_eq!(seqs.len(), produced.len());
    }

    #[test]
    fn unknown_positions_are_refused() {
        let mut o = FragmentOrder::new(Numbering { tracks: 2, parts: 1 });
        assert!(o.next_key(2, 0).is_none());
    }
}
