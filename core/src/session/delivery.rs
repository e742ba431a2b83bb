// SPDX-License-Identifier: MPL-2.0
//! What the server has received, and read, of one POST body: delivery accounting from what the
//! transport measured (see `docs/protocol.md` §3.5).
//!
//! The kernel knows which bytes of the connection the peer acknowledged; the session needs to
//! know which bytes of the *body*. Between the two lie the request head, the chunked framing and
//! (with HTTPS) TLS records, and buffers in the HTTP and TLS layers. Nothing of that is guessed:
//! - the transport reports a [`FlushMark`] every time its buffers were empty — the bytes
//!   written to the socket then carried every body byte handed over so far. Acknowledged wire
//!   bytes map to body bytes through the last mark they cover: exact at each mark, and never
//!   more than what was delivered in between;
//! - a [`KernelReading`] gives the bytes written to the socket and, of those, the bytes the
//!   peer has not acknowledged (`SIOCOUTQ`): the difference is exactly what its TCP took;
//! - the receive window the peer advertises (Linux `TCP_INFO` since 6.2) tells what its kernel
//!   holds that its application has not read: the difference between the largest window it
//!   advertised (an empty buffer) and the current one, less noise; and an eighth of that
//!   largest window, which a still-growing window hides (Linux takes bytes in without shrinking
//!   the window while its threshold is below the free space).
//!
//! What the server *read* frees fragments; what it only acknowledged does not.

use alloc::collections::VecDeque;

/// The transport's buffers were empty: `wire` bytes written to the socket carried every body
/// byte up to `body`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushMark {
    pub wire: u64,
    pub body: u64,
}

/// The kernel's counters of the connection's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KernelReading {
    /// Bytes written to the socket so far (counted by the transport as it writes).
    pub wire_written: u64,
    /// Of those, bytes the peer has not acknowledged yet, sent or not (`SIOCOUTQ`).
    pub unacked: u64,
    /// The receive window the peer advertises now, when the kernel tells (`tcpi_snd_wnd`).
    pub peer_window: Option<u64>,
}

impl KernelReading {
    /// Wire bytes the peer's TCP acknowledged.
    pub fn wire_acked(&self) -> u64 {
        self.wire_written.saturating_sub(self.unacked)
    }
}

/// Unread bytes at the server below this are taken as noise of the window it advertises (its
/// granularity, autotuning), not as a server that stopped reading.
pub const UNREAD_NOTICED: u64 = 16 * 1024;

/// The share of the peer's largest receive window that may hold bytes unread without the
/// window showing them: 1/8. A stall test with a 1 MiB receive buffer (a window of 1.9 MB) had
/// about 90 KB acknowledged unread while the window still grew by a kilobyte, then lost it with
/// the connection. Memory pays little for it: windows are large only at high rates.
pub const HIDDEN_SHARE: u64 = 8;

/// The accounting of one POST.
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    /// Flush marks, oldest first: from a window's worth before what the server read on.
    marks: VecDeque<FlushMark>,
    /// The latest reading.
    reading: KernelReading,
    /// The largest window the peer advertised.
    max_window: u64,
}

impl Delivery {
    pub fn new() -> Self {
        Delivery::default()
    }

    /// The transport's buffers were empty at `mark`.
    pub fn flushed(&mut self, mark: FlushMark) {
        let newest = self.marks.back().copied().unwrap_or(FlushMark { wire: 0, body: 0 });
        if mark.wire >= newest.wire && mark.body >= newest.body {
            self.marks.push_back(mark);
        }
    }

    /// A new reading of the kernel's counters.
    pub fn read(&mut self, reading: KernelReading) {
        if let Some(w) = reading.peer_window {
            self.max_window = self.max_window.max(w);
        }
        self.reading = reading;
        // Marks older than the newest one the read point covers are no longer needed, but for
        // a window's worth: the read point moves back when the window shrinks with nothing new
        // acknowledged.
        let keep_from = self.read_wire().saturating_sub(self.max_window);
        while self.marks.get(1).is_some_and(|m| m.wire <= keep_from) {
            self.marks.pop_front();
        }
    }

    /// Wire bytes the server certainly read: acknowledged, less what its kernel holds unread,
    /// less what a growing window may hide.
    pub fn read_wire(&self) -> u64 {
        self.taken_wire().saturating_sub(self.max_window / HIDDEN_SHARE)
    }

    /// Wire bytes the server's application took, as far as the window shows: acknowledged,
    /// less what its kernel holds unread. Unlike [`Delivery::read_wire`] it does not move back
    /// as the peer's buffer (and so the hidden share) grows, which makes it the measure of
    /// whether the server is reading at all.
    pub fn taken_wire(&self) -> u64 {
        self.wire_acked().saturating_sub(self.unread())
    }

    /// Wire bytes the peer's TCP acknowledged.
    pub fn wire_acked(&self) -> u64 {
        self.reading.wire_acked()
    }

    /// Wire bytes waiting in the kernel's send queue.
    pub fn unacked(&self) -> u64 {
        self.reading.unacked
    }

    /// The largest window the peer advertised (0 when unknown).
    pub fn max_window(&self) -> u64 {
        self.max_window
    }

    /// Bytes the peer's kernel acknowledged that its application has not read, as the window
    /// shows them (0 below [`UNREAD_NOTICED`], or without the peer's window).
    pub fn unread(&self) -> u64 {
        let unread = self.reading.peer_window.map_or(0, |w| self.max_window.saturating_sub(w));
        if unread >= UNREAD_NOTICED { unread } else { 0 }
    }

    /// Body bytes the peer's TCP certainly acknowledged.
    pub fn acked_body(&self) -> u64 {
        self.body_at(self.wire_acked())
    }

    /// Body bytes the server certainly read (see [`HIDDEN_SHARE`]).
    pub fn read_body(&self) -> u64 {
        self.body_at(self.read_wire())
    }

    /// Body bytes carried by the first `wire` bytes: those of the last mark they cover (0 when
    /// the marks that could tell are gone).
    fn body_at(&self, wire: u64) -> u64 {
        self.marks.iter().take_while(|m| m.wire <= wire).last().map_or(0, |m| m.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(wire: u64, body: u64) -> FlushMark {
        FlushMark { wire, body }
    }

    #[test]
    fn acknowledged_wire_bytes_count_up_to_the_last_mark_they_cover() {
        let mut d = Delivery::new();
        // A 200-byte head flushed with the first 1000 body bytes (framing 10), then 1000 more.
        d.flushed(mark(1210, 1000));
        d.flushed(mark(2220, 2000));
        d.read(KernelReading { wire_written: 2220, unacked: 2220, peer_window: None });
        assert_eq!(d.acked_body(), 0);
        d.read(KernelReading { wire_written: 2220, unacked: 1010, peer_window: None });
        assert_eq!((d.wire_acked(), d.acked_body()), (1210, 1000));
        // Between marks: the earlier mark.
        d.read(KernelReading { wire_written: 2220, unacked: 5, peer_window: None });
        assert_eq!(d.acked_body(), 1000);
        d.read(KernelReading { wire_written: 2220, unacked: 0, peer_window: None });
        assert_eq!(d.acked_body(), 2000);
        // Without a kernel window nothing is unread.
        assert_eq!(d.read_body(), 2000);
    }

    #[test]
    fn the_window_tells_what_the_server_has_not_read() {
        let mut d = Delivery::new();
        for k in 1..=10u64 {
            d.flushed(mark(k * 100_000, k * 99_000));
        }
        // All acknowledged; the window shrank by 250 000 from its largest 800 000.
        d.read(KernelReading { wire_written: 1_000_000, unacked: 0, peer_window: Some(800_000) });
        d.read(KernelReading { wire_written: 1_000_000, unacked: 0, peer_window: Some(550_000) });
        assert_eq!(d.acked_body(), 990_000);
        assert_eq!(d.unread(), 250_000);
        // Read: 1 000 000 - 250 000 - 800 000 / 8 = 650 000 wire bytes, the mark at 600 000.
        assert_eq!(d.read_body(), 594_000);
        // A window a few kilobytes short is noise.
        d.read(KernelReading { wire_written: 1_000_000, unacked: 0, peer_window: Some(790_000) });
        assert_eq!(d.unread(), 0);
        assert_eq!(d.read_body(), 891_000);
    }

    #[test]
    fn marks_that_go_backwards_are_ignored() {
        let mut d = Delivery::new();
        d.flushed(mark(500, 400));
        d.flushed(mark(400, 450));
        d.flushed(mark(600, 300));
        d.read(KernelReading { wire_written: 600, unacked: 0, peer_window: None });
        assert_eq!(d.acked_body(), 400);
    }

    /// A transport that writes chunks of body with framing around them, flushes after some,
    /// and a peer that acknowledges at random and advertises windows at random.
    mod properties {
        use super::*;
        use alloc::vec::Vec;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Step {
            /// Hand over a chunk of body (with `framing` bytes of HTTP/TLS around it).
            Write { body: u64, framing: u64 },
            /// The transport's buffers were flushed.
            Flush,
            /// A reading: the peer acknowledged up to a share (per mille) of what was written,
            /// with this window (or none).
            Read { share: u64, window: Option<u64> },
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                (1u64..70_000, 0u64..40).prop_map(|(body, framing)| Step::Write { body, framing }),
                Just(Step::Flush),
                (0u64..=1000, proptest::option::of(0u64..4_000_000))
                    .prop_map(|(share, window)| Step::Read { share, window }),
            ]
        }

        proptest! {
            #[test]
            fn never_counts_more_than_was_delivered_and_never_goes_back(steps in proptest::collection::vec(step(), 1..200)) {
                let mut d = Delivery::new();
                // Wire bytes and body bytes handed over, and per chunk where its body ends on
                // the wire (its framing written first).
                let (mut wire, mut body) = (0u64, 0u64);
                let mut ends: Vec<(u64, u64)> = Vec::new();
                let mut acked_wire = 0u64;
                let mut last_acked_body = 0u64;
                for s in steps {
                    match s {
                        Step::Write { body: b, framing } => {
                            wire += framing + b;
                            body += b;
                            ends.push((wire, body));
                        }
                        Step::Flush => d.flushed(FlushMark { wire, body }),
                        Step::Read { share, window } => {
                            acked_wire = acked_wire.max(wire * share / 1000);
                            d.read(KernelReading { wire_written: wire, unacked: wire - acked_wire, peer_window: window });
                            // What truly reached the peer's TCP: every chunk whose last byte it acknowledged.
                            let truly = ends.iter().take_while(|(w, _)| *w <= acked_wire).last().map_or(0, |e| e.1);
                            prop_assert!(d.acked_body() <= truly, "{} > {}", d.acked_body(), truly);
                            prop_assert!(d.read_body() <= d.acked_body());
                            prop_assert!(d.acked_body() >= last_acked_body, "went back");
                            last_acked_body = d.acked_body();
                            prop_assert_eq!(d.wire_acked(), acked_wire);
                        }
                    }
                }
            }
        }
    }
}
