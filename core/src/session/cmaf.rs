// SPDX-License-Identifier: MPL-2.0
//! The requests of one CMAF track, as a sans-IO state machine (DASH-IF Live Media Ingest v1.2:
//! "Common Requirements for Interface-1 and Interface-2", "General Protocol, Manifest and
//! Track Format Requirements" 1-6, "Requirements for Failovers and Connection Error
//! Handling").
//!
//! One persistent HTTP/1.1 connection per track (clause "General Requirements" 19, 20) carries,
//! one request after the other, to the track's URL: an empty request (the probe), the CMAF
//! header, then one request per segment (POST or PUT), each body one whole segment, sent with
//! a Content-Length or with chunked transfer while it is produced. The header goes again on
//! every new connection, after a 412 (then the segment again), and in a new session after a
//! restart.
//!
//! Failures, by class ("Failure Behaviors"):
//! - connecting takes at most about a segment duration (1 to 6 s, configurable);
//! - a connection error, a segment cut off, a response that does not come, a stalled
//!   transport, a 5xx or any other unexpected status: the connection is closed and a new one
//!   made after a backoff (at once the first time), the header sent, then the segment again;
//! - 400: the segment is resent at once, a few times, then given up (reported);
//! - 401/403: retried with backoff (the driver may renew credentials), then given up;
//! - 404/415: the track stops with an event naming the status;
//! - before the track ever ran (no header accepted yet), a refusal that no retry can mend — a
//!   certificate refused either way, the probe or the header answered 400, 401, 403, 405 or
//!   410 — stops it at once (`at_start`);
//! - when the receiver is back within three average segment durations of the first failure,
//!   every segment missed goes, in order; after a longer outage the track resumes at the live
//!   edge (the newest segment), and what was skipped is reported. What waits meanwhile is
//!   bounded by the forward buffer: the oldest goes, reported.
//!
//! The session does no IO and reads no clock. The driver:
//! - performs [`CmafAction`]s: connect, send a request (its head: method, length), close;
//! - pulls each request's body with [`CmafSession::poll_body`] whenever its transport can
//!   take more (a segment produced in chunks is pulled as its chunks arrive);
//! - reports what the network did as [`CmafInput`]s;
//! - calls [`CmafSession::handle_timeout`] at [`CmafSession::poll_timeout`].
//!
//! Every method takes the current time as a [`Duration`] since an epoch the driver chooses.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use bytes::Bytes;
use core::time::Duration;

use super::backoff::Backoff;
use super::sparse::RequestId;
use super::stats::StatsKeeper;
use super::{ConnectionId, StreamStats, TlsRefusal, TransportError};
use crate::cmaf::header::CmafTrackKind;
use crate::cmaf::segment::CmafChunk;

/// How many recent segments the average segment duration is taken over.
const RECENT_SEGMENTS: usize = 8;

/// What may wait behind the segment being sent before a source that is not live waits.
pub const ROOM_BYTES: u64 = 8 << 20;

/// The request method; DASH-IF ingest makes no difference between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
}

/// How segment bodies are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Content-Length when the segment is complete as its request starts, else chunked
    /// transfer while it is produced.
    Auto,
    /// Always chunked transfer; a segment's request starts with its first chunk.
    Chunked,
    /// Always Content-Length; a segment's request waits until it is complete.
    ContentLength,
}

/// When the track comes back from an outage longer than the resend window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumePolicy {
    /// At the live edge: only the newest segment waiting goes, the rest is skipped (DASH-IF
    /// "Failure Behaviors" 2).
    LiveEdge,
    /// Everything the forward buffer kept goes, in order (for receivers that archive).
    Backlog,
}

/// Timers, limits and policies, with DASH-IF ingest's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct CmafSessionConfig {
    /// The track, for the figures ([`CmafSession::stats`]).
    pub track_id: u32,
    /// What the track carries: the requests' Content-Type.
    pub kind: CmafTrackKind,
    pub method: Method,
    pub framing: Framing,
    /// An empty request on each new connection before the header.
    pub probe: bool,
    /// Time to connect (TCP and TLS); `None` is the average segment duration, within 1 to 6 s.
    pub connect_timeout: Option<Duration>,
    /// Time for a response once the body is sent; `None` is twice the average segment
    /// duration, within 2 to 12 s.
    pub response_timeout: Option<Duration>,
    /// Time without the transport taking bytes while some wait; `None` is 1.5 times the
    /// average segment duration, within 1 to 9 s.
    pub send_timeout: Option<Duration>,
    /// The segment duration when it is known (the grid's); `None` takes it from the segments
    /// (2 s before the first).
    pub segment_duration: Option<Duration>,
    /// First backoff delay (the first retry is at once) and the cap.
    pub retry_delay: Duration,
    pub retry_delay_max: Duration,
    pub jitter_seed: u64,
    /// 401/403 answers in a row before the track gives up.
    pub forbidden_retries: u32,
    /// 400 answers to one segment before it is given up.
    pub bad_request_retries: u32,
    /// Time without a working connection before giving up; `None` is never (a 24/7 channel).
    pub retry_limit: Option<Duration>,
    /// Failed attempts in a row before giving up; `None` is never.
    pub max_retries: Option<u32>,
    /// An outage shorter than this many average segment durations resends what was missed.
    pub resend_window_segments: u32,
    pub resume: ResumePolicy,
    /// What may wait, in media time and bytes; beyond, the oldest goes.
    pub forward_buffer_duration: Duration,
    pub forward_buffer_bytes: u64,
    /// After [`CmafSession::finish`], how long to keep trying to deliver what is left.
    pub eos_timeout: Duration,
}

impl Default for CmafSessionConfig {
    fn default() -> Self {
        CmafSessionConfig {
            track_id: 1,
            kind: CmafTrackKind::Video,
            method: Method::Post,
            framing: Framing::Auto,
            probe: true,
            connect_timeout: None,
            response_timeout: None,
            send_timeout: None,
            segment_duration: None,
            retry_delay: Duration::from_millis(500),
            retry_delay_max: Duration::from_secs(4),
            jitter_seed: 0x2545_F491_4F6C_DD1D,
            forbidden_retries: 3,
            bad_request_retries: 2,
            retry_limit: None,
            max_retries: None,
            resend_window_segments: 3,
            resume: ResumePolicy::LiveEdge,
            forward_buffer_duration: Duration::from_secs(30),
            forward_buffer_bytes: 64 << 20,
            eos_timeout: Duration::from_secs(30),
        }
    }
}

/// What a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// No body.
    Probe,
    /// The CMAF header.
    Header,
    /// One segment.
    Segment { sequence: u32, lmsg: bool },
}

/// The body's framing in the request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// `Content-Length: n`.
    Known(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmafAction {
    /// Open a new connection to the track URL's host; report [`CmafInput::Connected`] or
    /// [`CmafInput::ConnectionFailed`].
    Connect { connection: ConnectionId },
    /// Send a request on `connection` to the track's URL: `method`, the framing `length`, a
    /// `Content-Type` of `content_type`, the body pulled with [`CmafSession::poll_body`];
    /// report its [`CmafInput::Response`].
    Request {
        connection: ConnectionId,
        request: RequestId,
        kind: RequestKind,
        method: Method,
        length: BodyLength,
        content_type: &'static str,
    },
    /// Close the connection; nothing more is sent on it and nothing more is reported of it.
    Close { connection: ConnectionId },
}

/// The next piece of a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Data(Bytes),
    /// Nothing now (the segment is still produced); ask again when woken.
    Wait,
    /// The body is complete (for chunked transfer: send the last chunk).
    End,
}

/// What happened, as the driver reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmafInput {
    Connected {
        connection: ConnectionId,
    },
    /// The connection could not be made, or broke (a request on it is cut off), or the peer
    /// closed it.
    ConnectionFailed {
        connection: ConnectionId,
        error: TransportError,
    },
    /// The response to a request (after redirects, if the driver follows them).
    Response {
        request: RequestId,
        status: u16,
    },
}

/// Why a request or connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmafFailure {
    ConnectTimeout,
    Transport(TransportError),
    /// An answer that asks for a retry (5xx, 401/403, anything unexpected).
    Status(u16),
    ResponseTimeout,
    /// The transport took nothing for the send timeout while data waited.
    SendTimeout,
    /// 404 or 415: the receiver will not take this track.
    Permanent(u16),
    /// Nothing worked for the retry limit (time).
    RetryLimit,
    /// The stream ended and what was left could not be delivered in time.
    EosTimeout,
}

/// A segment that did not reach the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LostSegment {
    pub sequence: u32,
    pub decode_time: u64,
    pub timescale: u32,
    pub duration: u64,
}

/// What the application should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmafEvent {
    /// A connection is up; `connection` counts them from 1.
    Connected {
        connection: u64,
    },
    ProbeAccepted {
        status: u16,
    },
    HeaderAccepted {
        status: u16,
    },
    /// The receiver answered 412: the header goes again, then the segment.
    HeaderRequested {
        sequence: u32,
    },
    Delivered {
        sequence: u32,
        status: u16,
    },
    Disconnected {
        reason: CmafFailure,
    },
    /// The next attempt, after `delay`.
    Reconnecting {
        attempt: u32,
        delay: Duration,
    },
    /// Back within the resend window: these segments go again, in order.
    Resending {
        sequences: Vec<u32>,
        outage: Duration,
    },
    /// Back after a longer outage, at the live edge: these segments were skipped.
    Skipped {
        segments: Vec<LostSegment>,
        outage: Duration,
    },
    /// The forward buffer was full: the oldest waiting segments were dropped.
    Dropped {
        segments: Vec<LostSegment>,
    },
    /// A segment answered 400 too many times was given up.
    Rejected {
        sequence: u32,
        status: u16,
    },
    /// The track stopped; `undelivered` never reached the receiver. When the attempts ran out
    /// (`max_retries`) the reason is the last failure. `at_start` when the track never ran
    /// (no header was ever accepted).
    GaveUp {
        reason: CmafFailure,
        undelivered: Vec<LostSegment>,
        at_start: bool,
    },
    /// Everything was delivered after [`CmafSession::finish`].
    Finished,
}

/// One segment waiting, being sent, or in production.
#[derive(Debug, Clone)]
struct Segment {
    sequence: u32,
    decode_time: u64,
    timescale: u32,
    duration: u64,
    lmsg: bool,
    /// The wire pieces given so far.
    pieces: Vec<Bytes>,
    bytes: u64,
    complete: bool,
    /// When the last chunk came (for the send latency).
    ready_at: Duration,
    bad_requests: u32,
}

impl Segment {
    fn lost(&self) -> LostSegment {
        LostSegment {
            sequence: self.sequence,
            decode_time: self.decode_time,
            timescale: self.timescale,
            duration: self.duration,
        }
    }

    fn duration_ns(&self) -> u64 {
        let ns = u128::from(self.duration) * 1_000_000_000 / u128::from(self.timescale.max(1));
        u64::try_from(ns).unwrap_or(u64::MAX)
    }
}

/// The request in flight.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    id: RequestId,
    kind: RequestKind,
    /// Pieces pulled (of the header, or of the segment at the queue's front).
    cursor: usize,
    body_done: bool,
    /// Last time the transport took bytes, or data started to wait.
    progress_at: Duration,
    /// Set once the body ended: the response must come by then.
    response_by: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Idle,
    Connecting { conn: ConnectionId, deadline: Duration },
    Connected { conn: ConnectionId },
    Backoff { until: Duration },
    Done,
}

/// The requests of one CMAF track.
#[derive(Debug)]
pub struct CmafSession {
    config: CmafSessionConfig,
    state: State,
    header: Option<Bytes>,
    queue: VecDeque<Segment>,
    in_flight: Option<InFlight>,
    /// On the current connection: the probe was answered, the header accepted.
    probed: bool,
    header_ok: bool,
    /// A header was accepted once: the track ran.
    ran: bool,
    /// A live source: beyond the forward buffer the oldest segments go, and a long outage
    /// resumes at the live edge. Not live: nothing is dropped or skipped; the driver waits
    /// for room ([`CmafSession::has_room`]).
    live: bool,
    last_failure: Option<CmafFailure>,
    /// Sequence and decode time of the last segment completed.
    last_produced: Option<(u32, u64)>,
    backoff: Backoff,
    /// Consecutive failed attempts, and 401/403 answers in a row.
    attempt: u32,
    forbidden: u32,
    /// Since when nothing works (the first failure after the last success).
    outage_since: Option<Duration>,
    finishing: Option<Duration>,
    recent: VecDeque<u64>,
    next_connection: u64,
    next_request: u64,
    connections: u64,
    last_now: Duration,
    stats: StatsKeeper,
    actions: VecDeque<CmafAction>,
    events: VecDeque<CmafEvent>,
}

impl CmafSession {
    pub fn new(config: CmafSessionConfig) -> Self {
        // A retry at least every segment duration ("Failure Behaviors" 1: try again in the
        // order of a segment duration): a track is back within a segment of its receiver, so
        // that a short outage stays short enough to resend what it missed.
        let cap = config
            .segment_duration
            .filter(|d| !d.is_zero())
            .map_or(config.retry_delay_max, |d| d.min(config.retry_delay_max));
        let backoff = Backoff::new(config.retry_delay, cap, config.jitter_seed);
        CmafSession {
            config,
            state: State::Idle,
            header: None,
            queue: VecDeque::new(),
            in_flight: None,
            probed: false,
            header_ok: false,
            ran: false,
            live: true,
            last_failure: None,
            last_produced: None,
            backoff,
            attempt: 0,
            forbidden: 0,
            outage_since: None,
            finishing: None,
            recent: VecDeque::new(),
            next_connection: 0,
            next_request: 0,
            connections: 0,
            last_now: Duration::ZERO,
            stats: StatsKeeper::default(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Connects; the probe, the header and the segments follow as they can.
    pub fn start(&mut self, now: Duration) {
        if self.state == State::Idle {
            self.connect(now);
        }
    }

    /// The track's CMAF header, the same bytes on every connection.
    pub fn set_header(&mut self, header: Bytes, now: Duration) {
        if self.header.is_none() {
            self.header = Some(header);
            self.advance(now);
        }
    }

    /// A chunk of a segment, in order: a `first` chunk starts a segment, a `last` one
    /// completes it. A segment given again (the same number and time, with `lmsg`) replaces
    /// a copy still waiting. Never blocks: beyond the forward buffer the oldest waiting
    /// segments go (reported).
    pub fn push_chunk(&mut self, chunk: &CmafChunk, now: Duration) {
        self.last_now = self.last_now.max(now);
        if self.state == State::Done {
            return;
        }
        let pieces: Vec<Bytes> = chunk.wire_chunks().cloned().collect();
        let bytes = chunk.wire_len();
        // A request that pulled all of its segment so far waits for this chunk: from now on
        // data waits, and the stall clock runs from here.
        let idle = self.in_flight.is_some_and(|f| {
            !chunk.first
                && !f.body_done
                && matches!(f.kind, RequestKind::Segment { .. })
                && self.queue.len() == 1
                && self.queue.front().is_some_and(|s| f.cursor == s.pieces.len())
        });
        if chunk.first {
            let in_flight_front = self.front_in_flight();
            let same = |s: &Segment| s.sequence == chunk.sequence && s.decode_time == chunk.decode_time;
            if let Some(i) = self.queue.iter().position(same).filter(|i| !(in_flight_front && *i == 0)) {
                self.queue.remove(i);
            }
            self.queue.push_back(Segment {
                sequence: chunk.sequence,
                decode_time: chunk.decode_time,
                timescale: chunk.timescale,
                duration: 0,
                lmsg: chunk.lmsg,
                pieces: Vec::new(),
                bytes: 0,
                complete: false,
                ready_at: now,
                bad_requests: 0,
            });
        }
        let Some(seg) = self.queue.iter_mut().rev().find(|s| !s.complete && s.sequence == chunk.sequence) else {
            return;
        };
        seg.pieces.extend(pieces);
        seg.bytes += bytes;
        seg.duration += chunk.duration;
        seg.lmsg |= chunk.lmsg;
        if chunk.last {
            seg.complete = true;
            seg.ready_at = now;
            let (ns, ts, t, d) = (seg.duration_ns(), seg.timescale, seg.decode_time, seg.duration);
            // A segment given again (with lmsg) is no new segment of the timeline.
            let again = self.last_produced == Some((chunk.sequence, t));
            if !again {
                self.last_produced = Some((chunk.sequence, t));
                if self.recent.len() == RECENT_SEGMENTS {
                    self.recent.pop_front();
                }
                self.recent.push_back(ns);
                let track = self.track_id();
                self.stats.produced(track, ts, t, d);
            }
        }
        if let Some(f) = self.in_flight.as_mut().filter(|_| idle) {
            f.progress_at = now;
        }
        self.enforce_bound();
        self.advance(now);
    }

    /// The stream ended: finish once everything is delivered, or give up `eos_timeout` from now.
    pub fn finish(&mut self, now: Duration) {
        self.last_now = self.last_now.max(now);
        if self.finishing.is_none() {
            self.finishing = Some(now + self.config.eos_timeout);
        }
        if self.header.is_none() && self.queue.is_empty() && self.state != State::Done {
            // Nothing was ever produced for the track: nothing to deliver.
            if let State::Connecting { conn, .. } | State::Connected { conn } = self.state {
                self.actions.push_back(CmafAction::Close { connection: conn });
            }
            self.in_flight = None;
            self.state = State::Done;
            self.events.push_back(CmafEvent::Finished);
            return;
        }
        self.advance(now);
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// A live source (the default) or not: see the `live` field.
    pub fn set_live(&mut self, live: bool) {
        self.live = live;
    }

    /// For a source that is not live: whether more may be pushed. At most one complete
    /// segment waits behind the one being sent, and less than [`ROOM_BYTES`].
    pub fn has_room(&self) -> bool {
        let skip = usize::from(self.front_in_flight());
        let waiting = self.queue.iter().skip(skip).filter(|s| s.complete);
        let (n, bytes) = waiting.fold((0usize, 0u64), |(n, b), s| (n + 1, b + s.bytes));
        self.is_done() || (n <= 1 && bytes < ROOM_BYTES)
    }

    /// The next piece of request `request`'s body.
    pub fn poll_body(&mut self, request: RequestId, now: Duration) -> Body {
        self.last_now = self.last_now.max(now);
        let Some(mut f) = self.in_flight.filter(|f| f.id == request && !f.body_done) else {
            return Body::Wait;
        };
        let piece = match f.kind {
            RequestKind::Probe => None,
            RequestKind::Header => self.header.as_ref().filter(|_| f.cursor == 0).cloned(),
            RequestKind::Segment { .. } => match self.queue.front() {
                Some(s) if f.cursor < s.pieces.len() => Some(s.pieces[f.cursor].clone()),
                Some(s) if !s.complete => {
                    self.in_flight = Some(f);
                    return Body::Wait;
                }
                _ => None,
            },
        };
        match piece {
            Some(b) => {
                f.cursor += 1;
                f.progress_at = now;
                if let RequestKind::Segment { .. } = f.kind {
                    let s = self
                        .queue
                        .front()
                        .map(|s| (s.timescale, s.decode_time, s.complete, s.pieces.len(), s.ready_at));
                    if let Some((ts, t, complete, n, ready_at)) = s {
                        let last = complete && f.cursor == n;
                        let track = self.track_id();
                        self.stats.written(track, ts, t, b.len() as u64, last, now);
                        if last {
                            self.stats.sent_after(now.saturating_sub(ready_at));
                        }
                    }
                }
                self.in_flight = Some(f);
                Body::Data(b)
            }
            None => {
                f.body_done = true;
                f.response_by = Some(now + self.response_timeout());
                self.in_flight = Some(f);
                Body::End
            }
        }
    }

    pub fn handle_input(&mut self, input: CmafInput, now: Duration) {
        self.last_now = self.last_now.max(now);
        match (self.state, input) {
            (State::Connecting { conn, .. }, CmafInput::Connected { connection }) if conn == connection => {
                self.connections += 1;
                self.state = State::Connected { conn };
                self.probed = !self.config.probe;
                self.header_ok = false;
                self.events.push_back(CmafEvent::Connected { connection: self.connections });
                self.advance(now);
            }
            (State::Connecting { conn, .. }, CmafInput::ConnectionFailed { connection, error })
                if conn == connection =>
            {
                self.fail(CmafFailure::Transport(error), now);
            }
            (State::Connected { conn }, CmafInput::ConnectionFailed { connection, error }) if conn == connection => {
                if self.in_flight.is_none() && self.outage_since.is_none() {
                    // The receiver closed an idle connection (its keep-alive ran out): a new
                    // one, at once, and nothing lost.
                    self.actions.push_back(CmafAction::Close { connection: conn });
                    self.connect(now);
                } else {
                    self.fail(CmafFailure::Transport(error), now);
                }
            }
            (State::Connected { conn }, CmafInput::Response { request, status }) => {
                if let Some(f) = self.in_flight.filter(|f| f.id == request) {
                    self.in_flight = None;
                    self.on_response(conn, f, status, now);
                }
            }
            // Events of connections and requests the session no longer uses.
            _ => {}
        }
    }

    /// The driver's timer fired.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.last_now = self.last_now.max(now);
        if self.give_up_if_over(now) {
            return;
        }
        match self.state {
            State::Connecting { deadline, .. } if now >= deadline => self.fail(CmafFailure::ConnectTimeout, now),
            State::Backoff { until } if now >= until => self.connect(now),
            State::Connected { .. } => {
                if let Some(f) = self.in_flight {
                    if f.response_by.is_some_and(|t| now >= t) {
                        self.fail(CmafFailure::ResponseTimeout, now);
                    } else if self.stall_deadline().is_some_and(|t| now >= t) {
                        self.fail(CmafFailure::SendTimeout, now);
                    }
                }
            }
            _ => {}
        }
    }

    /// When the session wants [`CmafSession::handle_timeout`] called.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let state = match self.state {
            State::Connecting { deadline, .. } => Some(deadline),
            State::Backoff { until } => Some(until),
            State::Connected { .. } => {
                let f = self.in_flight.and_then(|f| f.response_by);
                [f, self.stall_deadline()].into_iter().flatten().min()
            }
            State::Idle | State::Done => None,
        };
        [state, self.give_up_at()].into_iter().flatten().min()
    }

    pub fn poll_action(&mut self) -> Option<CmafAction> {
        self.actions.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<CmafEvent> {
        self.events.pop_front()
    }

    /// Segments waiting (the one being sent included) and their bytes.
    pub fn queued(&self) -> (usize, u64) {
        (self.queue.len(), self.queue.iter().map(|s| s.bytes).sum())
    }

    /// The track's figures at `now`, as the Smooth session gives them.
    pub fn stats(&mut self, now: Duration) -> StreamStats {
        self.stats.refresh(now);
        self.stats.stream.latency = self.stats.latency();
        let connected = matches!(self.state, State::Connected { .. });
        let s = &mut self.stats.stream;
        s.queue_fragments = self.queue.len() as u64;
        s.queue_bytes = self.queue.iter().map(|q| q.bytes).sum();
        s.queue_duration_ns = self.queue.iter().map(Segment::duration_ns).sum();
        s.connections = self.connections;
        s.reconnects = self.connections.saturating_sub(1);
        s.connected = connected;
        s.state = match self.state {
            State::Done => "Stopped",
            State::Connected { .. } if self.finishing.is_some() => "Ending",
            State::Connected { .. } => "Running",
            _ if self.connections == 0 => "Connecting",
            _ => "Reconnecting",
        };
        s.clone()
    }

    fn track_id(&self) -> u32 {
        self.config.track_id
    }

    /// The average duration of the last segments, or the configured one.
    fn segment_duration(&self) -> Duration {
        if let Some(d) = self.config.segment_duration.filter(|d| !d.is_zero()) {
            return d;
        }
        match self.recent.len() {
            0 => Duration::from_secs(2),
            n => Duration::from_nanos(self.recent.iter().sum::<u64>() / n as u64),
        }
    }

    fn connect_timeout(&self) -> Duration {
        self.config
            .connect_timeout
            .unwrap_or_else(|| self.segment_duration().clamp(Duration::from_secs(1), Duration::from_secs(6)))
    }

    fn response_timeout(&self) -> Duration {
        self.config
            .response_timeout
            .unwrap_or_else(|| (self.segment_duration() * 2).clamp(Duration::from_secs(2), Duration::from_secs(12)))
    }

    fn send_timeout(&self) -> Duration {
        self.config.send_timeout.unwrap_or_else(|| {
            self.segment_duration().mul_f64(1.5).clamp(Duration::from_secs(1), Duration::from_secs(9))
        })
    }

    /// Pieces of the request in flight that wait to be pulled.
    fn waiting(&self) -> bool {
        let Some(f) = self.in_flight.filter(|f| !f.body_done) else { return false };
        match f.kind {
            RequestKind::Probe | RequestKind::Header => true,
            RequestKind::Segment { .. } => self.queue.front().is_some_and(|s| f.cursor < s.pieces.len() || s.complete),
        }
    }

    fn stall_deadline(&self) -> Option<Duration> {
        let f = self.in_flight?;
        self.waiting().then(|| f.progress_at + self.send_timeout())
    }

    fn front_in_flight(&self) -> bool {
        self.in_flight.is_some_and(|f| matches!(f.kind, RequestKind::Segment { .. }))
    }

    fn content_type(&self) -> &'static str {
        match self.config.kind {
            CmafTrackKind::Video => "video/mp4",
            CmafTrackKind::Audio => "audio/mp4",
            CmafTrackKind::Metadata => "application/mp4",
        }
    }

    fn connect(&mut self, now: Duration) {
        self.next_connection += 1;
        let conn = ConnectionId(self.next_connection);
        self.in_flight = None;
        self.state = State::Connecting { conn, deadline: now + self.connect_timeout() };
        self.actions.push_back(CmafAction::Connect { connection: conn });
    }

    fn request(&mut self, conn: ConnectionId, kind: RequestKind, length: BodyLength, now: Duration) {
        self.next_request += 1;
        let id = RequestId(self.next_request);
        self.in_flight = Some(InFlight { id, kind, cursor: 0, body_done: false, progress_at: now, response_by: None });
        self.actions.push_back(CmafAction::Request {
            connection: conn,
            request: id,
            kind,
            method: self.config.method,
            length,
            content_type: self.content_type(),
        });
    }

    /// Starts the next request on an idle connection, or finishes.
    fn advance(&mut self, now: Duration) {
        let State::Connected { conn } = self.state else { return };
        if self.in_flight.is_some() {
            return;
        }
        if !self.probed {
            return self.request(conn, RequestKind::Probe, BodyLength::Known(0), now);
        }
        if !self.header_ok {
            if let Some(h) = &self.header {
                let len = h.len() as u64;
                self.request(conn, RequestKind::Header, BodyLength::Known(len), now);
            }
            return;
        }
        if let Some(s) = self.queue.front() {
            let length = match (self.config.framing, s.complete) {
                (Framing::ContentLength | Framing::Auto, true) => BodyLength::Known(s.bytes),
                (Framing::Chunked, _) | (Framing::Auto, false) => BodyLength::Chunked,
                (Framing::ContentLength, false) => return,
            };
            let kind = RequestKind::Segment { sequence: s.sequence, lmsg: s.lmsg };
            return self.request(conn, kind, length, now);
        }
        if self.finishing.is_some() {
            self.actions.push_back(CmafAction::Close { connection: conn });
            self.state = State::Done;
            self.events.push_back(CmafEvent::Finished);
        }
    }

    fn on_response(&mut self, conn: ConnectionId, f: InFlight, status: u16, now: Duration) {
        let ok = (200..300).contains(&status);
        match (f.kind, status) {
            (RequestKind::Probe, _) if ok => {
                self.probed = true;
                self.events.push_back(CmafEvent::ProbeAccepted { status });
            }
            (RequestKind::Probe | RequestKind::Header, 400 | 401 | 403 | 405 | 410) if !self.ran => {
                // The receiver refuses the track before it ever ran: a person must act.
                self.events.push_back(CmafEvent::Disconnected { reason: CmafFailure::Status(status) });
                return self.give_up(CmafFailure::Status(status));
            }
            (RequestKind::Header, _) if ok => {
                self.header_ok = true;
                self.ran = true;
                // With a segment waiting, only its delivery shows the refusal is over: a
                // segment refused again and again must not be retried for ever.
                if self.queue.is_empty() {
                    self.forbidden = 0;
                }
                self.events.push_back(CmafEvent::HeaderAccepted { status });
                self.back_from_outage(now);
            }
            (RequestKind::Segment { sequence, .. }, _) if ok => {
                self.forbidden = 0;
                self.queue.pop_front();
                self.events.push_back(CmafEvent::Delivered { sequence, status });
            }
            (RequestKind::Segment { sequence, .. }, 412) => {
                self.header_ok = false;
                self.events.push_back(CmafEvent::HeaderRequested { sequence });
                if !f.body_done {
                    // Answered before the body ended: the connection cannot carry another
                    // request. A new one, at once; the header goes first on it anyway.
                    self.actions.push_back(CmafAction::Close { connection: conn });
                    return self.connect(now);
                }
            }
            (RequestKind::Segment { sequence, .. }, 400) => {
                let give_up = self.queue.front_mut().is_some_and(|s| {
                    s.bad_requests += 1;
                    s.bad_requests > self.config.bad_request_retries
                });
                if give_up {
                    self.queue.pop_front();
                    self.events.push_back(CmafEvent::Rejected { sequence, status });
                }
                if !f.body_done {
                    self.actions.push_back(CmafAction::Close { connection: conn });
                    return self.connect(now);
                }
            }
            (_, 404 | 415) => return self.give_up(CmafFailure::Permanent(status)),
            (_, 401 | 403) => {
                self.forbidden += 1;
                if self.forbidden > self.config.forbidden_retries {
                    return self.give_up(CmafFailure::Status(status));
                }
                return self.fail(CmafFailure::Status(status), now);
            }
            _ => return self.fail(CmafFailure::Status(status), now),
        }
        if !f.body_done {
            // A success before the body ended: take it, but the connection cannot go on.
            self.actions.push_back(CmafAction::Close { connection: conn });
            return self.connect(now);
        }
        self.advance(now);
    }

    /// The header was accepted on a new connection: if it follows an outage, what was missed
    /// goes again, or the track resumes at the live edge.
    fn back_from_outage(&mut self, now: Duration) {
        self.attempt = 0;
        let Some(since) = self.outage_since.take() else { return };
        let outage = now.saturating_sub(since);
        let window = self.segment_duration() * self.config.resend_window_segments;
        if self.queue.is_empty() {
            return;
        }
        if outage < window || self.config.resume == ResumePolicy::Backlog || !self.live {
            let sequences = self.queue.iter().map(|s| s.sequence).collect();
            self.stats.stream.fragments_resent += self.queue.len() as u64;
            self.events.push_back(CmafEvent::Resending { sequences, outage });
            return;
        }
        let keep = self.queue.len() - 1;
        let skipped: Vec<LostSegment> = self.queue.drain(..keep).map(|s| s.lost()).collect();
        if !skipped.is_empty() {
            let track = self.track_id();
            for s in &skipped {
                self.stats.dropped(track, s.timescale);
            }
            self.events.push_back(CmafEvent::Skipped { segments: skipped, outage });
        }
    }

    /// A connection or request failed: close, back off, connect again.
    fn fail(&mut self, reason: CmafFailure, now: Duration) {
        if let State::Connecting { conn, .. } | State::Connected { conn } = self.state {
            self.actions.push_back(CmafAction::Close { connection: conn });
        }
        self.in_flight = None;
        self.outage_since.get_or_insert(now);
        self.attempt = self.attempt.saturating_add(1);
        self.last_failure = Some(reason);
        self.events.push_back(CmafEvent::Disconnected { reason });
        if !self.ran && matches!(reason, CmafFailure::Transport(TransportError::Tls(r)) if r != TlsRefusal::Handshake) {
            // A certificate refused either way before the track ever ran: no retry mends it.
            return self.give_up(reason);
        }
        if self.config.max_retries.is_some_and(|m| self.attempt > m) {
            return self.give_up(reason);
        }
        if self.give_up_if_over(now) {
            return;
        }
        let delay = self.backoff.delay(self.attempt);
        self.events.push_back(CmafEvent::Reconnecting { attempt: self.attempt, delay });
        self.state = State::Backoff { until: now + delay };
        self.enforce_bound();
    }

    fn give_up_at(&self) -> Option<Duration> {
        let limit = self.outage_since.zip(self.config.retry_limit).map(|(s, l)| s + l);
        [limit, self.finishing].into_iter().flatten().min()
    }

    fn give_up_if_over(&mut self, now: Duration) -> bool {
        if self.state == State::Done {
            return true;
        }
        let limit = self.outage_since.zip(self.config.retry_limit).is_some_and(|(s, l)| now >= s + l);
        let eos = self.finishing.is_some_and(|d| now >= d);
        match (limit, eos) {
            (true, _) => self.give_up(CmafFailure::RetryLimit),
            (false, true) => self.give_up(CmafFailure::EosTimeout),
            _ => return false,
        }
        true
    }

    fn give_up(&mut self, reason: CmafFailure) {
        if let State::Connecting { conn, .. } | State::Connected { conn } = self.state {
            self.actions.push_back(CmafAction::Close { connection: conn });
        }
        self.in_flight = None;
        let undelivered = self.queue.drain(..).map(|s| s.lost()).collect();
        self.state = State::Done;
        self.events.push_back(CmafEvent::GaveUp { reason, undelivered, at_start: !self.ran });
    }

    /// Drops the oldest waiting segments beyond the forward buffer (never the one being sent,
    /// nor one still produced).
    fn enforce_bound(&mut self) {
        if !self.live {
            return;
        }
        let max_ns = u64::try_from(self.config.forward_buffer_duration.as_nanos()).unwrap_or(u64::MAX);
        let mut dropped = Vec::new();
        loop {
            let bytes: u64 = self.queue.iter().map(|s| s.bytes).sum();
            let ns: u64 = self.queue.iter().map(Segment::duration_ns).sum();
            if bytes <= self.config.forward_buffer_bytes && ns <= max_ns {
                break;
            }
            let from = usize::from(self.front_in_flight());
            match self.queue.get(from) {
                Some(s) if s.complete && self.queue.len() > from + 1 => {
                    dropped.extend(self.queue.remove(from).map(|s| s.lost()));
                }
                _ => break,
            }
        }
        if !dropped.is_empty() {
            let track = self.track_id();
            for s in &dropped {
                self.stats.dropped(track, s.timescale);
            }
            self.events.push_back(CmafEvent::Dropped { segments: dropped });
        }
    }
}

#[cfg(test)]
#[path = "cmaf_tests.rs"]
mod tests;
