// SPDX-License-Identifier: MPL-2.0
//! The session's fragment store: the forward buffer, what each connection carried, and what
//! must be sent again after a failure (docs/protocol.md §3.4, §3.5, §3.7).
//!
//! Every fragment stays here until it is known to be delivered — the peer's TCP acknowledged
//! its last byte — and is no longer one of the last two delivered fragments of its track.
//! When a connection ends, everything it carried that was not delivered, and the last two
//! delivered fragments of every track, become pending again: the next connection sends them
//! first, in production order, then what was produced meanwhile.
//!
//! "Delivered" rather than "written": the kernel takes bytes long before the server reads
//! them, and a server that stops reading still acknowledges what fits in its socket buffer.
//! The last two acknowledged fragments are the ones most likely to sit unread there.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use bytes::Bytes;

use super::ConnectionId;
use crate::fragment::Fragment;

/// Where a stored fragment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// To be sent on the next connection (never sent, or to be resent).
    Pending,
    /// Its bytes are being handed to the transport: `next` chunks taken so far.
    Sending { conn: ConnectionId, start: u64, next: usize },
    /// All its bytes were taken by the transport: body bytes `[start, end)` of `conn`.
    Written { conn: ConnectionId, start: u64, end: u64 },
    /// The peer acknowledged it; kept only as one of the last two of its track.
    Delivered,
}

#[derive(Debug, Clone)]
struct Item {
    seq: u64,
    /// Not to be sent before this (the session's send delay).
    ready_at: core::time::Duration,
    fragment: Fragment,
    start_ns: u64,
    duration_ns: u64,
    stage: Stage,
    /// How many times all its bytes were handed to a transport.
    sends: u32,
    /// The peer acknowledged it at least once.
    delivered: bool,
}

/// A fragment given up on because the forward buffer was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DroppedFragment {
    pub track_id: u32,
    pub time: u64,
    pub start_ns: u64,
    pub duration_ns: u64,
}

/// A fragment that goes out again on a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResentFragment {
    pub track_id: u32,
    pub time: u64,
}

/// What a connection's next chunk of body is.
#[derive(Debug, Clone)]
pub enum Chunk {
    /// Bytes of a fragment (of `track_id`, at tfxd `time`); `last` when they complete it.
    /// `first_ready_at` is when the fragment could first be sent, when these bytes complete its
    /// first sending (for the send latency; resends do not count).
    Data { bytes: Bytes, track_id: u32, time: u64, last: bool, first_ready_at: Option<core::time::Duration> },
    /// Nothing pending.
    None,
}

#[derive(Debug, Default)]
pub struct Backlog {
    items: VecDeque<Item>,
    next_seq: u64,
    /// Per track, the sequence numbers of its last two delivered fragments.
    last_delivered: Vec<(u32, VecDeque<u64>)>,
    resend_depth: usize,
}

impl Backlog {
    pub fn new(resend_depth: usize) -> Self {
        Backlog { resend_depth: resend_depth.max(1), ..Default::default() }
    }

    pub fn push(&mut self, fragment: Fragment, ready_at: core::time::Duration) {
        let start_ns = fragment.timing.start_ns();
        let duration_ns = fragment.timing.duration_ns();
        let seq = self.next_seq;
        self.next_seq += 1;
        self.items.push_back(Item {
            seq,
            ready_at,
            fragment,
            start_ns,
            duration_ns,
            stage: Stage::Pending,
            sends: 0,
            delivered: false,
        });
    }

    fn pending(&self) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(|i| i.stage == Stage::Pending)
    }

    /// When the next pending fragment becomes sendable, if it is not yet.
    pub fn next_ready_at(&self, now: core::time::Duration) -> Option<core::time::Duration> {
        self.pending().next().map(|i| i.ready_at).filter(|t| *t > now)
    }

    /// Fragments, bytes and media duration (ns) of what waits to be sent.
    pub fn pending_size(&self) -> (usize, u64, u64) {
        span(self.pending())
    }

    /// Fragments held in memory, whatever their stage.
    /// Bytes of the fragments handed to a connection (or being handed) whose delivery is not
    /// known yet.
    pub fn unconfirmed_bytes(&self) -> u64 {
        self.items
            .iter()
            .filter(|i| matches!(i.stage, Stage::Sending { .. } | Stage::Written { .. }))
            .map(|i| i.fragment.head.len() as u64 + i.fragment.payload.len())
            .sum()
    }

    /// Whether a fragment is part way through being handed to a connection.
    pub fn handing_over(&self) -> bool {
        self.items.iter().any(|i| matches!(i.stage, Stage::Sending { .. }))
    }

    pub fn held(&self) -> usize {
        self.items.len()
    }

    /// Media start (ns) of the first pending fragment, if any.
    pub fn first_pending_start(&self) -> Option<u64> {
        self.pending().map(|i| i.start_ns).next()
    }

    /// Where pacing starts on a new connection: the latest of each track's first pending
    /// fragment that was never sent. Everything up to there goes at once — the resent
    /// fragments (delivered, or sent but not known to be) and then at least one new fragment
    /// of every track — so that a server that cuts each POST soon after the resend still sees
    /// the stream move.
    pub fn catch_up_start(&self) -> Option<u64> {
        let mut firsts: Vec<(u32, u64)> = Vec::new();
        for i in self.pending().filter(|i| i.sends == 0) {
            if !firsts.iter().any(|(t, _)| *t == i.fragment.track_id) {
                firsts.push((i.fragment.track_id, i.start_ns));
            }
        }
        firsts.into_iter().map(|(_, start)| start).max()
    }

    /// Whether the fragment being handed over, or else the next pending one, may start now:
    /// `allowed_until_ns` is the pacing limit on media time, and it must be ready.
    pub fn next_is_allowed(&self, conn: ConnectionId, allowed_until_ns: u64, now: core::time::Duration) -> bool {
        if self.items.iter().any(|i| matches!(i.stage, Stage::Sending { conn: c, .. } if c == conn)) {
            return true;
        }
        self.pending().next().is_some_and(|i| i.start_ns <= allowed_until_ns && i.ready_at <= now)
    }

    /// The next chunk of body for `conn`, whose body so far is `offset` bytes long.
    pub fn next_chunk(&mut self, conn: ConnectionId, offset: u64) -> Chunk {
        let idx = match self.items.iter().position(|i| matches!(i.stage, Stage::Sending { conn: c, .. } if c == conn)) {
            Some(i) => i,
            None => match self.items.iter().position(|i| i.stage == Stage::Pending) {
                Some(i) => {
                    self.items[i].stage = Stage::Sending { conn, start: offset, next: 0 };
                    i
                }
                None => return Chunk::None,
            },
        };
        let item = &mut self.items[idx];
        let Stage::Sending { start, next, .. } = item.stage else { return Chunk::None };
        let chunks = 1 + item.fragment.payload.chunk_count();
        let bytes = if next == 0 {
            item.fragment.head.clone()
        } else {
            item.fragment.payload.chunk(next - 1).cloned().unwrap_or_default()
        };
        let last = next + 1 == chunks;
        let track_id = item.fragment.track_id;
        let time = item.fragment.timing.time;
        let mut first_ready_at = None;
        if last {
            let end = offset + bytes.len() as u64;
            item.stage = Stage::Written { conn, start, end };
            item.sends += 1;
            first_ready_at = (item.sends == 1).then_some(item.ready_at);
            self.prune();
        } else {
            item.stage = Stage::Sending { conn, start, next: next + 1 };
        }
        Chunk::Data { bytes, track_id, time, last, first_ready_at }
    }

    /// Puts a delivered fragment in its track's ring; returns those that left the ring.
    fn note_delivered(&mut self, track_id: u32, seq: u64) -> Vec<u64> {
        let depth = self.resend_depth;
        let ring = match self.last_delivered.iter_mut().find(|(t, _)| *t == track_id) {
            Some((_, r)) => r,
            None => {
                self.last_delivered.push((track_id, VecDeque::new()));
                &mut self.last_delivered.last_mut().expect("just pushed").1
            }
        };
        ring.retain(|s| *s != seq);
        // Keep the ring in production order even when acknowledgements are reported late.
        let at = ring.iter().position(|s| *s > seq).unwrap_or(ring.len());
        ring.insert(at, seq);
        let mut left = Vec::new();
        while ring.len() > depth {
            if let Some(old) = ring.pop_front() {
                left.push(old);
            }
        }
        left
    }

    fn ring(&self) -> Vec<u64> {
        self.last_delivered.iter().flat_map(|(_, r)| r.iter().copied()).collect()
    }

    /// The server read the body of `conn` up to `read` bytes at least: marks its fragments
    /// up to there as delivered and frees those no longer needed. True when a fragment was
    /// newly delivered.
    pub fn acknowledge(&mut self, conn: ConnectionId, read: u64) -> bool {
        let mut newly = Vec::new();
        for i in self.items.iter_mut() {
            if matches!(i.stage, Stage::Written { conn: c, end, .. } if c == conn && end <= read) {
                i.stage = Stage::Delivered;
                i.delivered = true;
                newly.push((i.fragment.track_id, i.seq));
            }
        }
        if newly.is_empty() {
            return false;
        }
        for (track, seq) in newly {
            self.note_delivered(track, seq);
        }
        self.prune();
        true
    }

    /// Frees the delivered fragments no longer needed: those not among the last
    /// `resend_depth` delivered of their track (the ring), and those that are no longer among
    /// the last `resend_depth` fully written (the "last two" of docs/protocol.md §3.4: a fragment in flight
    /// takes its place).
    fn prune(&mut self) {
        let ring = self.ring();
        let newest = self.newest_written();
        let keep = |i: &Item| ring.contains(&i.seq) && newest.contains(&i.seq);
        self.items.retain(|i| i.stage != Stage::Delivered || keep(i));
        let kept: Vec<u64> = self.items.iter().map(|i| i.seq).collect();
        for (_, r) in self.last_delivered.iter_mut() {
            r.retain(|s| kept.contains(s));
        }
    }

    /// The last `resend_depth` fully written (handed over whole, delivered or not) fragments
    /// of each track.
    fn newest_written(&self) -> Vec<u64> {
        let mut out = Vec::new();
        let mut counts: Vec<(u32, usize)> = Vec::new();
        for i in self.items.iter().rev() {
            if !matches!(i.stage, Stage::Written { .. } | Stage::Delivered) {
                continue;
            }
            let n = match counts.iter_mut().find(|(t, _)| *t == i.fragment.track_id) {
                Some((_, n)) => n,
                None => {
                    counts.push((i.fragment.track_id, 0));
                    &mut counts.last_mut().expect("just pushed").1
                }
            };
            if *n < self.resend_depth {
                *n += 1;
                out.push(i.seq);
            }
        }
        out
    }

    /// `conn` ended; the peer acknowledged `acked` body bytes of it. Returns what will be sent
    /// again on the next connection, in order.
    pub fn connection_ended(&mut self, conn: ConnectionId, acked: u64) -> Vec<ResentFragment> {
        self.acknowledge(conn, acked);
        let ring = self.ring();
        let mut resent = Vec::new();
        for i in self.items.iter_mut() {
            let again = match i.stage {
                // Partly handed over: its bytes are useless, the whole fragment goes again.
                Stage::Sending { conn: c, .. } | Stage::Written { conn: c, .. } => c == conn,
                Stage::Delivered => ring.contains(&i.seq),
                Stage::Pending => false,
            };
            if again {
                i.stage = Stage::Pending;
                if i.sends > 0 {
                    resent.push(ResentFragment { track_id: i.fragment.track_id, time: i.fragment.timing.time });
                }
            }
        }
        resent
    }

    /// Drops the oldest pending fragments while what waits exceeds `max_ns` of media or
    /// `max_bytes`. Only fragments the server never had count and go: those it had wait only
    /// to be sent again after a reconnect, at most `resend_depth` per track, and dropping them
    /// would break the resend on every later connection.
    pub fn enforce_bound(&mut self, max_ns: u64, max_bytes: u64) -> Vec<DroppedFragment> {
        let mut dropped = Vec::new();
        loop {
            let (n, bytes, duration) = span(self.pending().filter(|i| !i.delivered));
            if n <= 1 || (duration <= max_ns && bytes <= max_bytes) {
                break;
            }
            let Some(idx) = self.items.iter().position(|i| i.stage == Stage::Pending && !i.delivered) else { break };
            let Some(item) = self.items.remove(idx) else { break };
            for (_, r) in self.last_delivered.iter_mut() {
                r.retain(|s| *s != item.seq);
            }
            dropped.push(DroppedFragment {
                track_id: item.fragment.track_id,
                time: item.fragment.timing.time,
                start_ns: item.start_ns,
                duration_ns: item.duration_ns,
            });
        }
        dropped
    }

    /// Removes everything not yet handed over (the session gave up) and returns what of it
    /// the peer never acknowledged.
    pub fn abandon_pending(&mut self) -> Vec<DroppedFragment> {
        let mut out = Vec::new();
        self.items.retain(|i| {
            let waiting = matches!(i.stage, Stage::Pending | Stage::Sending { .. });
            if waiting && !i.delivered {
                out.push(DroppedFragment {
                    track_id: i.fragment.track_id,
                    time: i.fragment.timing.time,
                    start_ns: i.start_ns,
                    duration_ns: i.duration_ns,
                });
            }
            !waiting
        });
        out
    }

    /// Whether anything is still to be handed to `conn`.
    pub fn has_work_for(&self, conn: ConnectionId) -> bool {
        self.items
            .iter()
            .any(|i| i.stage == Stage::Pending || matches!(i.stage, Stage::Sending { conn: c, .. } if c == conn))
    }
}

/// Count, bytes and media duration (ns, first start to last end) of some fragments.
fn span<'a>(items: impl Iterator<Item = &'a Item>) -> (usize, u64, u64) {
    let mut n = 0;
    let mut bytes = 0;
    let mut first = u64::MAX;
    let mut last = 0;
    for i in items {
        n += 1;
        bytes += i.fragment.wire_len();
        first = first.min(i.start_ns);
        last = last.max(i.start_ns.saturating_add(i.duration_ns));
    }
    (n, bytes, last.saturating_sub(if n == 0 { last } else { first }))
}
