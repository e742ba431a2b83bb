// SPDX-License-Identifier: MPL-2.0
//! The POSTs of a sparse stream, as a sans-IO state machine (docs/protocol.md §5.4).
//!
//! Unlike the media stream, a sparse stream keeps no connection open: a POST of the header
//! boxes alone registers the track, then each message is a short POST of the header boxes
//! again plus its fragment, with a `Content-Length`, closed once answered. One POST is in
//! flight at a time, in order. A failed POST (no connection, an error status, no answer) is
//! retried with the same bytes after the same backoff as the media stream; the server
//! deduplicates by time. Past `max_attempts` the message is given up and reported.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use bytes::{Bytes, BytesMut};
use core::time::Duration;

use super::TransportError;
use super::backoff::Backoff;

/// Retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseConfig {
    pub retry_delay: Duration,
    pub retry_delay_max: Duration,
    /// Attempts per POST before it is given up; `None` = forever (until the stream ends).
    pub max_attempts: Option<u32>,
    pub jitter_seed: u64,
}

impl Default for SparseConfig {
    fn default() -> Self {
        SparseConfig {
            retry_delay: Duration::from_millis(500),
            retry_delay_max: Duration::from_secs(4),
            max_attempts: None,
            jitter_seed: 0x5851_F42D_4C95_7F2D,
        }
    }
}

/// Which POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SparsePost {
    /// The header boxes alone: registers the track.
    Header,
    /// A message: its id and tfxd time.
    Message { id: u32, time: u64 },
}

/// Identifies one request, so that late answers are matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// What the driver must do: POST this body with a `Content-Length`, on a new connection that
/// is closed once the answer came, and report the answer or the failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostRequest {
    pub request: RequestId,
    pub post: SparsePost,
    pub body: Bytes,
}

/// What the network did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SparseInput {
    Answered { request: RequestId, status: u16 },
    Failed { request: RequestId, error: TransportError },
}

/// What the application should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SparseEvent {
    /// A POST was accepted (2xx) after `attempts` tries.
    Delivered { post: SparsePost, status: u16, attempts: u32 },
    /// A POST failed (status 0 = no answer); it is retried after `delay`.
    Retrying { post: SparsePost, status: u16, error: Option<TransportError>, attempt: u32, delay: Duration },
    /// A POST was given up.
    GaveUp { post: SparsePost, attempts: u32 },
}

#[derive(Debug)]
struct Queued {
    post: SparsePost,
    body: Bytes,
    attempts: u32,
    not_before: Duration,
}

/// The sparse stream's POSTs.
#[derive(Debug)]
pub struct SparseSession {
    config: SparseConfig,
    header: Option<Bytes>,
    queue: VecDeque<Queued>,
    in_flight: Option<RequestId>,
    next_request: u64,
    backoff: Backoff,
    events: VecDeque<SparseEvent>,
}

impl SparseSession {
    pub fn new(config: SparseConfig) -> Self {
        let backoff = Backoff::new(config.retry_delay, config.retry_delay_max, config.jitter_seed);
        SparseSession {
            config,
            header: None,
            queue: VecDeque::new(),
            in_flight: None,
            next_request: 0,
            backoff,
            events: VecDeque::new(),
        }
    }

    /// The header boxes: queues the registering POST. Later messages start with them.
    pub fn set_header(&mut self, header: Bytes, now: Duration) {
        self.header = Some(header.clone());
        self.queue.push_back(Queued { post: SparsePost::Header, body: header, attempts: 0, not_before: now });
    }

    /// Queues a message POST: the header boxes, then `fragment`. Ignored before the header.
    pub fn push_message(&mut self, id: u32, time: u64, fragment: &[u8], now: Duration) -> bool {
        let Some(header) = &self.header else { return false };
        let mut body = BytesMut::with_capacity(header.len() + fragment.len());
        body.extend_from_slice(header);
        body.extend_from_slice(fragment);
        let post = SparsePost::Message { id, time };
        self.queue.push_back(Queued { post, body: body.freeze(), attempts: 0, not_before: now });
        true
    }

    /// The next POST to make, when one is due and none is in flight.
    pub fn poll_request(&mut self, now: Duration) -> Option<PostRequest> {
        if self.in_flight.is_some() {
            return None;
        }
        let q = self.queue.front_mut().filter(|q| q.not_before <= now)?;
        q.attempts += 1;
        let request = RequestId(self.next_request);
        self.next_request += 1;
        self.in_flight = Some(request);
        Some(PostRequest { request, post: q.post, body: q.body.clone() })
    }

    /// When the next POST is due, if one waits for a retry.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.in_flight.is_some() {
            return None;
        }
        self.queue.front().map(|q| q.not_before)
    }

    pub fn handle_input(&mut self, input: SparseInput, now: Duration) {
        let (request, status, error) = match input {
            SparseInput::Answered { request, status } => (request, status, None),
            SparseInput::Failed { request, error } => (request, 0, Some(error)),
        };
        if self.in_flight != Some(request) {
            return;
        }
        self.in_flight = None;
        let Some(q) = self.queue.front_mut() else { return };
        if (200..300).contains(&status) {
            let post = q.post;
            let attempts = q.attempts;
            self.queue.pop_front();
            self.backoff = Backoff::new(self.config.retry_delay, self.config.retry_delay_max, self.config.jitter_seed);
            self.events.push_back(SparseEvent::Delivered { post, status, attempts });
            return;
        }
        if self.config.max_attempts.is_some_and(|m| q.attempts >= m) {
            let (post, attempts) = (q.post, q.attempts);
            self.queue.pop_front();
            self.events.push_back(SparseEvent::GaveUp { post, attempts });
            return;
        }
        // The same bytes again: at once after the first failure, then backing off.
        let delay = self.backoff.delay(q.attempts);
        q.not_before = now + delay;
        self.events.push_back(SparseEvent::Retrying { post: q.post, status, error, attempt: q.attempts, delay });
    }

    /// Gives up everything not delivered (the stream ended and its time ran out).
    pub fn abandon(&mut self) {
        self.in_flight = None;
        for q in self.queue.drain(..) {
            self.events.push_back(SparseEvent::GaveUp { post: q.post, attempts: q.attempts });
        }
    }

    /// Nothing queued and nothing in flight.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_none()
    }

    /// POSTs not yet delivered, the one in flight included.
    pub fn undelivered(&self) -> Vec<SparsePost> {
        self.queue.iter().map(|q| q.post).collect()
    }

    pub fn poll_event(&mut self) -> Option<SparseEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Duration = Duration::ZERO;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn events(s: &mut SparseSession) -> Vec<SparseEvent> {
        core::iter::from_fn(|| s.poll_event()).collect()
    }

    #[test]
    fn header_first_then_one_post_per_message_in_order() {
        let mut s = SparseSession::new(SparseConfig::default());
        assert!(!s.push_message(1, 10, b"frag", T0), "no message before the header");
        s.set_header(Bytes::from_static(b"HDR"), T0);
        assert!(s.push_message(1, 10, b"one", T0));
        assert!(s.push_message(2, 20, b"two", T0));
        let h = s.poll_request(T0).unwrap();
        assert_eq!((h.post, h.body.as_ref()), (SparsePost::Header, b"HDR".as_ref()));
        // One at a time.
        assert_eq!(s.poll_request(T0), None);
        s.handle_input(SparseInput::Answered { request: h.request, status: 200 }, T0);
        let m1 = s.poll_request(T0).unwrap();
        assert_eq!(m1.body.as_ref(), b"HDRone");
        s.handle_input(SparseInput::Answered { request: m1.request, status: 201 }, T0);
        let m2 = s.poll_request(T0).unwrap();
        assert_eq!((m2.post, m2.body.as_ref()), (SparsePost::Message { id: 2, time: 20 }, b"HDRtwo".as_ref()));
        s.handle_input(SparseInput::Answered { request: m2.request, status: 200 }, T0);
        assert!(s.is_idle());
        assert_eq!(events(&mut s).len(), 3);
    }

    #[test]
    fn a_failed_post_is_retried_with_the_same_bytes_and_backoff() {
        let mut s = SparseSession::new(SparseConfig::default());
        s.set_header(Bytes::from_static(b"H"), T0);
        let h = s.poll_request(T0).unwrap();
        s.handle_input(SparseInput::Answered { request: h.request, status: 200 }, T0);
        s.push_message(7, 70, b"m", T0);
        let a = s.poll_request(T0).unwrap();
        s.handle_input(SparseInput::Failed { request: a.request, error: TransportError::Connect }, ms(10));
        // First retry at once.
        let b = s.poll_request(ms(10)).unwrap();
        assert_eq!(a.body, b.body);
        assert_ne!(a.request, b.request);
        s.handle_input(SparseInput::Answered { request: b.request, status: 503 }, ms(20));
        // Then after a delay.
        assert_eq!(s.poll_request(ms(20)), None);
        let due = s.poll_timeout().unwrap();
        assert!(due >= ms(20 + 375) && due <= ms(20 + 625), "{due:?}");
        // A late answer to an old request changes nothing.
        s.handle_input(SparseInput::Answered { request: a.request, status: 200 }, ms(30));
        let c = s.poll_request(due).unwrap();
        assert_eq!(c.body, a.body);
        s.handle_input(SparseInput::Answered { request: c.request, status: 200 }, due);
        let ev = events(&mut s);
        assert!(matches!(
            ev[1],
            SparseEvent::Retrying { attempt: 1, status: 0, error: Some(TransportError::Connect), .. }
        ));
        assert!(matches!(ev[2], SparseEvent::Retrying { attempt: 2, status: 503, .. }));
        assert_eq!(
            ev[3],
            SparseEvent::Delivered { post: SparsePost::Message { id: 7, time: 70 }, status: 200, attempts: 3 }
        );
    }

    #[test]
    fn attempts_run_out_and_the_stream_end_abandons_the_rest() {
        let config = SparseConfig { max_attempts: Some(2), ..SparseConfig::default() };
        let mut s = SparseSession::new(config);
        s.set_header(Bytes::from_static(b"H"), T0);
        for _ in 0..2 {
            let now = s.poll_timeout().unwrap();
            let r = s.poll_request(now).unwrap();
            s.handle_input(SparseInput::Answered { request: r.request, status: 500 }, now);
        }
        s.push_message(1, 1, b"x", T0);
        let ev = events(&mut s);
        assert_eq!(ev.last(), Some(&SparseEvent::GaveUp { post: SparsePost::Header, attempts: 2 }));
        // The message still goes (it carries the header itself).
        let r = s.poll_request(ms(5000)).unwrap();
        assert_eq!(r.post, SparsePost::Message { id: 1, time: 1 });
        assert_eq!(s.undelivered().len(), 1);
        s.abandon();
        assert!(s.is_idle());
        assert_eq!(events(&mut s), [SparseEvent::GaveUp { post: SparsePost::Message { id: 1, time: 1 }, attempts: 1 }]);
    }
}
