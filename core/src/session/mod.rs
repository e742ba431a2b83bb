// SPDX-License-Identifier: MPL-2.0
//! The POST session of one stream, as a sans-IO state machine (docs/protocol.md §1.3–§1.7, §3).
//!
//! Probe (an empty POST) → open the long-running chunked POST → stream the header and every
//! fragment → on any failure (refused probe, connection error, early response, send timeout):
//! close, back off with jitter, probe again, open a new connection to the same URL, send the
//! same header bytes, the last two fully written fragments of every track and whatever was not
//! delivered, then what was produced meanwhile, paced → at the end, the zero-length chunk and
//! the final response. A failure that no retry can mend (a refused certificate, a probe answered
//! 401, 403 or 404) before the stream ever ran ends the session at once.
//!
//! The session does no IO and reads no clock. The driver:
//! - performs [`Action`]s (probe, open, close) and reports what the network did as [`Input`]s:
//!   answers, failures, and what the transport measured of the POST ([`FlushMark`]s and
//!   [`KernelReading`]s, from which [`delivery`] tells what the server received and read);
//! - pulls body bytes for an open POST with [`IngestSession::poll_transmit`] whenever its
//!   transport can take more (so the session always knows exactly what was handed over);
//! - calls [`IngestSession::handle_timeout`] at [`IngestSession::poll_timeout`].
//!
//! Every method takes the current time as a [`Duration`] since an epoch the driver chooses.

mod backlog;
mod backoff;
pub mod cmaf;
pub mod delivery;
pub mod sparse;
mod stats;
mod timers;

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use bytes::Bytes;
use core::time::Duration;

pub use backlog::{DroppedFragment, ResentFragment};
pub use delivery::{FlushMark, KernelReading};
pub use stats::{LatencySummary, StreamStats, TrackStats, WINDOW as STATS_WINDOW};

use crate::fragment::Fragment;
use backlog::{Backlog, Chunk};
use backoff::Backoff;
use delivery::Delivery;
use stats::StatsKeeper;
use timers::{Timer, Timers};

/// While the server holds unread bytes, how far the estimate of what it read (in wire bytes)
/// must move to count as progress (see `Input::Progress`).
const READ_PROGRESS: u64 = 16 * 1024;

/// How many recent fragments the automatic send timeout looks at: a few per track.
const RECENT_FRAGMENTS: usize = 8;

/// How long an abandoned connection's last reading is awaited before resending without it.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Identifies one connection the session asked for, so that late events of an abandoned
/// connection are recognised and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub u64);

/// Timers, limits and policies, with the defaults of docs/protocol.md §3.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    /// Time to connect, and for the probe to be answered (docs/protocol.md §3.1: 10 s).
    pub connect_timeout: Duration,
    /// Time without progress while data waits before the connection is abandoned; `None` is
    /// 1.5 × the fragment duration N (docs/protocol.md §3.2: between N and 2N).
    pub send_timeout: Option<Duration>,
    /// N when the fragments are cut on a grid (the element's `fragment-duration`); `None`
    /// takes it from the fragments: the longest of the last few.
    pub fragment_duration: Option<Duration>,
    /// Time to wait for the server's answer after the last chunk.
    pub final_response_timeout: Duration,
    /// Consecutive failed attempts before giving up; `None` retries forever (docs/protocol.md §3.6).
    pub max_retries: Option<u32>,
    /// Time without a working connection before giving up; `None` is forever.
    pub retry_limit: Option<Duration>,
    /// First backoff delay (the first retry is at once) and the cap.
    pub retry_delay: Duration,
    pub retry_delay_max: Duration,
    /// Probe again before each reconnect.
    pub reprobe: bool,
    /// What may wait while disconnected, in media time and bytes; the oldest goes beyond.
    pub forward_buffer_duration: Duration,
    pub forward_buffer_bytes: u64,
    /// After an outage the backlog goes out at no more than this multiple of real time; 0
    /// disables pacing. The first connection is never paced.
    pub catch_up_rate: f64,
    /// Beyond the forward buffer's bound, drop the oldest waiting fragments (a live source:
    /// nothing may block). When false the application waits for [`IngestSession::has_room`]
    /// instead (a non-live source, such as a file, that can be slowed down).
    pub drop_oldest: bool,
    /// When the application waits (`drop_oldest` false), it may go on once no more than this
    /// many bytes wait to be sent, connected or not: the connection keeps busy, and a file
    /// pushed as fast as it goes (or through an outage) holds little memory. A source that can
    /// wait gains nothing from a bigger buffer.
    pub wait_window_bytes: u64,
    /// ... and once no more than this many bytes are on their way (handed to the connection,
    /// not yet known to be read by the server): what is in flight is held for resending, so
    /// this bounds memory too. Above any ingest's bandwidth-delay product (4 MiB is 130 Mbit/s
    /// at a 250 ms round trip).
    pub wait_in_flight_bytes: u64,
    /// After `finish()`, how long to keep trying to deliver what is left.
    pub eos_timeout: Duration,
    /// Fully written fragments per track sent again on every new connection (docs/protocol.md §3.4: 2).
    pub resend_depth: usize,
    /// Body bytes taken to be still in flight when the transport cannot see acknowledgements.
    pub unobserved_in_flight: u64,
    /// Seed of the backoff jitter.
    pub jitter_seed: u64,
    /// Every fragment waits this long before it may be sent (a second encoder of a redundant
    /// pair, so that both do not POST in lock-step; MediaLive's SendDelayMs).
    pub send_delay: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            connect_timeout: Duration::from_secs(10),
            send_timeout: None,
            fragment_duration: None,
            final_response_timeout: Duration::from_secs(10),
            max_retries: None,
            retry_limit: None,
            retry_delay: Duration::from_millis(500),
            retry_delay_max: Duration::from_secs(4),
            reprobe: true,
            forward_buffer_duration: Duration::from_secs(30),
            forward_buffer_bytes: 64 << 20,
            catch_up_rate: 2.0,
            drop_oldest: true,
            wait_window_bytes: 1 << 20,
            wait_in_flight_bytes: 4 << 20,
            eos_timeout: Duration::from_secs(30),
            resend_depth: 2,
            unobserved_in_flight: 8 << 20,
            jitter_seed: 0x9E37_79B9_7F4A_7C15,
            send_delay: Duration::ZERO,
        }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// POST an empty body (`Content-Length: 0`) to the stream URL on a new connection.
    SendProbe { connection: ConnectionId },
    /// Start the long-running POST with `Transfer-Encoding: chunked` on a new connection and
    /// pull its body with [`IngestSession::poll_transmit`].
    OpenPost { connection: ConnectionId },
    /// Abandon the connection without ending its body — with a reset, so that nothing it still
    /// holds reaches the server after the next connection's bytes — then report
    /// [`Input::Closed`].
    Close { connection: ConnectionId },
}

/// The next piece of a POST body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// Send these bytes.
    Data(Bytes),
    /// End the body with the zero-length chunk and wait for the response.
    End,
    /// Nothing now; ask again when woken.
    Wait,
}

/// Why the transport failed, as the driver saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportError {
    /// The TCP connection could not be established.
    Connect,
    /// Connecting took longer than the connect timeout.
    Timeout,
    /// Writing the body failed.
    Write,
    /// The connection closed before a response arrived.
    Closed,
    /// The TLS handshake refused the server, or the server refused us.
    Tls(TlsRefusal),
    /// Anything else.
    Other,
}

/// Why TLS refused the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsRefusal {
    /// The server's certificate does not chain to a trusted root (or its signature is bad).
    UntrustedCertificate,
    /// The server's certificate has expired, or is not valid yet.
    ExpiredCertificate,
    /// The server's certificate is not for the host name of the URL.
    WrongName,
    /// The server wants a client certificate we do not have, or refused ours.
    ClientCertificateRequired,
    /// Any other handshake failure.
    Handshake,
}

/// What happened, as the driver reports it. Every connection ends with exactly one of
/// `ProbeResponse`, `Response`, `Failed` or `Closed`; the driver reports a last
/// [`Input::Progress`] of a POST before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The probe was answered.
    ProbeResponse { connection: ConnectionId, status: u16 },
    /// The POST is connected and its body is being pulled. `observes_acks` says whether
    /// [`Input::Progress`] will report the kernel's counters of the server's own connection
    /// (not of a proxy's, say).
    Connected { connection: ConnectionId, observes_acks: bool },
    /// The transport's buffers of the POST were empty at `mark` (see [`FlushMark`]).
    Flushed { connection: ConnectionId, mark: FlushMark },
    /// The kernel's counters of the POST's socket.
    Progress { connection: ConnectionId, reading: KernelReading },
    /// The server answered the POST. Before the body ended, that is a server abort.
    Response { connection: ConnectionId, status: u16 },
    /// The connection failed.
    Failed { connection: ConnectionId, error: TransportError },
    /// The connection the session asked to close is closed.
    Closed { connection: ConnectionId },
}

/// Why a connection ended or an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The probe got a non-2xx answer.
    ProbeRefused { status: u16 },
    /// The probe got no answer within the connect timeout.
    ProbeTimeout,
    /// The POST did not connect within the connect timeout.
    ConnectTimeout,
    /// A connection failed.
    Transport { error: TransportError },
    /// The server answered before the body ended.
    ServerAbort { status: u16 },
    /// Nothing moved for the send timeout while data waited.
    SendTimeout,
    /// The stream ended (EOS) and what was left could not be delivered in time.
    EosTimeout,
}

impl Failure {
    /// Whether the server refuses this stream for good: a certificate refused either way, or a
    /// probe answered with a status that says the request itself is wrong (400, 401, 403, 404,
    /// 405, 410, 415). Retrying cannot mend these; a person must (docs/protocol.md §3.6).
    pub fn refuses_the_stream(&self) -> bool {
        match self {
            Failure::ProbeRefused { status } => matches!(status, 400 | 401 | 403 | 404 | 405 | 410 | 415),
            Failure::Transport { error: TransportError::Tls(r) } => *r != TlsRefusal::Handshake,
            _ => false,
        }
    }
}

/// What the application should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    ProbeAccepted {
        status: u16,
    },
    /// A POST is up; `connection` counts connections of this session from 1.
    Connected {
        connection: u64,
    },
    /// Fragments sent again on the new connection.
    Resent {
        fragments: Vec<ResentFragment>,
    },
    /// A connection or attempt failed.
    Disconnected {
        reason: Failure,
    },
    /// The next attempt, after `delay`.
    Reconnecting {
        attempt: u32,
        delay: Duration,
    },
    /// The forward buffer was full: these fragments are lost, the timeline has a gap.
    Dropped {
        fragments: Vec<DroppedFragment>,
    },
    /// The body ended and the server answered.
    Finished {
        status: u16,
    },
    /// The final response did not come in time; the connection was closed.
    FinishedWithoutResponse,
    /// The session stopped trying; `undelivered` never reached the server. `at_start` when the
    /// server refused the stream before it ever ran (see [`Failure::refuses_the_stream`]).
    GaveUp {
        reason: Failure,
        undelivered: Vec<DroppedFragment>,
        at_start: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for `start()`.
    Idle,
    Probing {
        conn: ConnectionId,
    },
    /// Probe accepted; the header is not there yet.
    WaitingHeader,
    Opening {
        conn: ConnectionId,
    },
    Streaming {
        conn: ConnectionId,
    },
    /// Body ended; waiting for the final response.
    Ending {
        conn: ConnectionId,
    },
    /// Abandoned after a send timeout; waiting for the driver's `Closed`.
    Closing {
        conn: ConnectionId,
    },
    /// Waiting to retry.
    Backoff,
    Done,
}

impl State {
    /// The timer that belongs to the state, if any.
    fn timer(&self) -> Option<Timer> {
        match self {
            State::Probing { .. } | State::Opening { .. } => Some(Timer::Connect),
            State::Ending { .. } => Some(Timer::FinalResponse),
            State::Closing { .. } => Some(Timer::Close),
            State::Backoff => Some(Timer::Backoff),
            _ => None,
        }
    }

    /// The connection the state holds, if any.
    fn connection(&self) -> Option<ConnectionId> {
        match *self {
            State::Probing { conn }
            | State::Opening { conn }
            | State::Streaming { conn }
            | State::Ending { conn }
            | State::Closing { conn } => Some(conn),
            _ => None,
        }
    }
}

/// What the session knows of the open POST.
#[derive(Debug, Clone)]
struct Link {
    conn: ConnectionId,
    /// Body bytes handed to the transport.
    pulled: u64,
    /// What the server received and read of them.
    delivery: Delivery,
    observes_acks: bool,
    /// Body bytes the server read, as last told to the backlog.
    read: u64,
    /// The wire bytes the server's application took (see `Delivery::taken_wire`) when the link
    /// last moved, and the largest count of acknowledged wire bytes.
    read_mark: u64,
    wire_acked: u64,
    header_sent: bool,
    /// Last time something moved (or the link was idle).
    progress_at: Duration,
    /// Pacing origin: (wall time, media time in ns).
    pace: Option<(Duration, u64)>,
}

impl Link {
    /// Body bytes to count as read when the connection ends: what the server read; without the
    /// kernel's view, what was handed over less what may still be in flight.
    fn read_at_end(&self, unobserved_in_flight: u64) -> u64 {
        if self.observes_acks {
            self.delivery.read_body().min(self.pulled)
        } else {
            self.pulled.saturating_sub(unobserved_in_flight)
        }
    }

    /// Bytes the kernel still holds, either side, that the server has not read.
    fn unsettled(&self) -> bool {
        self.observes_acks && (self.delivery.unacked() > 0 || self.delivery.unread() > 0)
    }
}

/// The POST session of one `Streams(<id>)` URL.
#[derive(Debug)]
pub struct IngestSession {
    config: SessionConfig,
    state: State,
    timers: Timers,
    header: Option<Bytes>,
    backlog: Backlog,
    link: Option<Link>,
    backoff: Backoff,
    /// Consecutive failed attempts.
    attempt: u32,
    /// Why the last attempt failed, for the report when the session gives up.
    last_failure: Option<Failure>,
    /// Since when no connection works.
    outage_since: Option<Duration>,
    /// Set by `finish()`: the end of the stream and the deadline to deliver it.
    finishing: Option<Duration>,
    /// The server read a fragment once: failures are retried from then on, whatever they are.
    ran: bool,
    /// Durations of the last fragments (up to `RECENT_FRAGMENTS`), for the automatic send
    /// timeout when no fragment duration is configured.
    recent_durations: VecDeque<Duration>,
    /// Fragments to announce as resent once the next connection is up.
    resend_notice: Vec<ResentFragment>,
    next_connection: u64,
    connections: u64,
    timescales: Vec<(u32, u32)>,
    /// The latest time any call gave, for decisions made without one (timers).
    last_now: Duration,
    stats: StatsKeeper,
    actions: VecDeque<Action>,
    events: VecDeque<SessionEvent>,
}

impl IngestSession {
    pub fn new(config: SessionConfig) -> Self {
        let backoff = Backoff::new(config.retry_delay, config.retry_delay_max, config.jitter_seed);
        let backlog = Backlog::new(config.resend_depth);
        IngestSession {
            config,
            state: State::Idle,
            timers: Timers::default(),
            header: None,
            backlog,
            link: None,
            backoff,
            attempt: 0,
            last_failure: None,
            outage_since: None,
            finishing: None,
            ran: false,
            recent_durations: VecDeque::new(),
            resend_notice: Vec::new(),
            next_connection: 0,
            connections: 0,
            timescales: Vec::new(),
            last_now: Duration::ZERO,
            stats: StatsKeeper::default(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Starts with the probe.
    pub fn start(&mut self, now: Duration) {
        self.tick(now);
        if self.state == State::Idle {
            self.probe(now);
        }
        self.refresh_timers();
    }

    /// The header boxes (ftyp, manifest, moov), identical for every connection.
    pub fn set_header(&mut self, header: Bytes, now: Duration) {
        self.tick(now);
        if self.header.is_none() {
            self.header = Some(header);
            if self.state == State::WaitingHeader {
                self.open(now);
            }
        }
        self.refresh_timers();
    }

    /// A fragment ready to go out. Never blocks: beyond the forward buffer's bound the oldest
    /// waiting fragments are dropped (and reported).
    pub fn push_fragment(&mut self, fragment: Fragment, now: Duration) {
        if self.state == State::Done {
            return;
        }
        self.tick(now);
        let t = &fragment.timing;
        self.timescales.retain(|(id, _)| *id != fragment.track_id);
        self.timescales.push((fragment.track_id, t.timescale));
        if self.recent_durations.len() == RECENT_FRAGMENTS {
            self.recent_durations.pop_front();
        }
        self.recent_durations.push_back(Duration::from_nanos(t.duration_ns()));
        self.stats.produced(fragment.track_id, t.timescale, t.time, t.duration);
        self.note_idle(now);
        self.backlog.push(fragment, now + self.config.send_delay);
        self.enforce_bound();
        self.refresh_timers();
    }

    /// The application has nothing more to send: end the body once the rest is delivered, or
    /// give up `eos_timeout` from now.
    pub fn finish(&mut self, now: Duration) {
        self.tick(now);
        if self.finishing.is_none() {
            self.finishing = Some(now + self.config.eos_timeout);
        }
        if self.header.is_none() && matches!(self.state, State::Idle | State::WaitingHeader | State::Probing { .. }) {
            // Nothing was ever produced: there is no stream to send.
            if let State::Probing { conn } = self.state {
                self.actions.push_back(Action::Close { connection: conn });
            }
            self.enter(State::Done, now);
            self.events.push_back(SessionEvent::FinishedWithoutResponse);
        }
        self.refresh_timers();
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether what waits is within the forward buffer's bound (always true when the session
    /// drops the oldest itself).
    pub fn has_room(&self) -> bool {
        if self.config.drop_oldest || self.state == State::Done {
            return true;
        }
        let (_, bytes, duration) = self.backlog.pending_size();
        let max_ns = u64::try_from(self.config.forward_buffer_duration.as_nanos()).unwrap_or(u64::MAX);
        // With nothing waiting, go on whatever is in flight: the last bytes of a connection
        // may only be confirmed once more follow. But not while a fragment is part way out:
        // until it is all handed over, the two before it are the last two written and stay
        // held for resending, so the next one would make four fragments in memory, not three.
        bytes <= self.config.wait_window_bytes.min(self.config.forward_buffer_bytes)
            && duration < max_ns
            && (bytes == 0 || self.backlog.unconfirmed_bytes() <= self.config.wait_in_flight_bytes)
            && !self.backlog.handing_over()
    }

    /// Bytes handed to the transport whose delivery is not known yet: a driver reads the
    /// peer's counters sooner while there are any, since each is held until then.
    pub fn awaiting_confirmation(&self) -> u64 {
        self.backlog.unconfirmed_bytes()
    }

    /// Chooses between dropping the oldest and letting the application wait (see
    /// [`SessionConfig::drop_oldest`]).
    pub fn set_drop_oldest(&mut self, drop_oldest: bool) {
        self.config.drop_oldest = drop_oldest;
    }

    /// The next body bytes of POST `connection`, if the transport can take them now.
    pub fn poll_transmit(&mut self, connection: ConnectionId, now: Duration) -> Transmit {
        self.tick(now);
        let t = self.transmit(connection, now);
        self.refresh_timers();
        t
    }

    fn transmit(&mut self, connection: ConnectionId, now: Duration) -> Transmit {
        let State::Streaming { conn } = self.state else { return Transmit::Wait };
        if conn != connection {
            return Transmit::Wait;
        }
        let Some(link) = self.link.as_mut() else { return Transmit::Wait };
        if !link.header_sent
            && let Some(h) = &self.header
        {
            link.header_sent = true;
            link.pulled += h.len() as u64;
            // Bytes taken into a buffer are progress only when nothing better is known:
            // with acknowledgements observed, only acknowledgements are.
            if !link.observes_acks {
                link.progress_at = now;
            }
            return Transmit::Data(h.clone());
        }
        let allowed = Self::pace_limit(link, self.config.catch_up_rate, now);
        if self.backlog.next_is_allowed(conn, allowed, now)
            && let Chunk::Data { bytes, track_id, time, last, first_ready_at } =
                self.backlog.next_chunk(conn, link.pulled)
        {
            if let Some(ready) = first_ready_at {
                self.stats.sent_after(now.saturating_sub(ready));
            }
            link.pulled += bytes.len() as u64;
            if !link.observes_acks {
                link.progress_at = now;
            }
            let timescale = self.timescale(track_id);
            self.stats.written(track_id, timescale, time, bytes.len() as u64, last, now);
            return Transmit::Data(bytes);
        }
        if self.finishing.is_some() && !self.backlog.has_work_for(conn) {
            self.enter(State::Ending { conn }, now);
            return Transmit::End;
        }
        self.note_idle(now);
        Transmit::Wait
    }

    fn timescale(&self, track_id: u32) -> u32 {
        self.timescales.iter().find(|(id, _)| *id == track_id).map_or(1, |(_, ts)| *ts)
    }

    pub fn handle_input(&mut self, input: Input, now: Duration) {
        self.tick(now);
        self.input(input, now);
        self.refresh_timers();
    }

    fn input(&mut self, input: Input, now: Duration) {
        match (self.state, input) {
            (State::Probing { conn }, Input::ProbeResponse { connection, status }) if conn == connection => {
                if (200..300).contains(&status) {
                    self.events.push_back(SessionEvent::ProbeAccepted { status });
                    self.open(now);
                } else {
                    self.fail(Failure::ProbeRefused { status }, now);
                }
            }
            (State::Probing { conn }, Input::Failed { connection, error }) if conn == connection => {
                self.fail(Failure::Transport { error }, now);
            }
            (State::Opening { conn }, Input::Connected { connection, observes_acks }) if conn == connection => {
                self.connections += 1;
                self.attempt = 0;
                self.outage_since = None;
                // Only a backlog after an outage is paced, and only beyond the resent fragments
                // and the first new one of each track; the first connection sends at once.
                let pace = if self.connections > 1 { self.backlog.catch_up_start().map(|m| (now, m)) } else { None };
                self.link = Some(Link {
                    conn,
                    pulled: 0,
                    delivery: Delivery::new(),
                    observes_acks,
                    read: 0,
                    read_mark: 0,
                    wire_acked: 0,
                    header_sent: false,
                    progress_at: now,
                    pace,
                });
                self.enter(State::Streaming { conn }, now);
                self.events.push_back(SessionEvent::Connected { connection: self.connections });
                let resent = core::mem::take(&mut self.resend_notice);
                if !resent.is_empty() {
                    self.stats.stream.fragments_resent += resent.len() as u64;
                    self.events.push_back(SessionEvent::Resent { fragments: resent });
                }
            }
            (_, Input::Flushed { connection, mark }) => {
                if let Some(link) = self.link.as_mut().filter(|l| l.conn == connection) {
                    link.delivery.flushed(mark);
                }
            }
            (_, Input::Progress { connection, reading }) => self.progress(connection, reading, now),
            (State::Opening { conn } | State::Streaming { conn }, Input::Response { connection, status })
                if conn == connection =>
            {
                self.fail(Failure::ServerAbort { status }, now);
            }
            (
                State::Opening { conn } | State::Streaming { conn } | State::Ending { conn },
                Input::Failed { connection, error },
            ) if conn == connection => {
                self.fail(Failure::Transport { error }, now);
            }
            // The end refused (a 5xx, or a redirect of the body): the server may not have kept
            // what it was sent, so it goes again on a new connection, within the EOS timeout.
            (State::Ending { conn }, Input::Response { connection, status })
                if conn == connection && !(200..300).contains(&status) =>
            {
                self.fail(Failure::ServerAbort { status }, now);
            }
            (State::Ending { conn }, Input::Response { connection, status }) if conn == connection => {
                // The server answered the end: it read the whole body.
                if let Some(link) = self.link.take() {
                    self.backlog.acknowledge(conn, link.pulled);
                }
                self.enter(State::Done, now);
                self.events.push_back(SessionEvent::Finished { status });
            }
            (State::Closing { conn }, Input::Closed { connection }) if conn == connection => {
                self.connection_lost();
                self.retry(now);
            }
            // Events of connections the session no longer uses.
            _ => {}
        }
    }

    /// A reading of the kernel's counters of `connection`.
    fn progress(&mut self, connection: ConnectionId, reading: KernelReading, now: Duration) {
        let Some(link) = self.link.as_mut().filter(|l| l.conn == connection) else { return };
        link.delivery.read(reading);
        let read = link.delivery.read_body().min(link.pulled);
        let taken = link.delivery.taken_wire();
        let wire_acked = link.delivery.wire_acked();
        // The link moves when the server reads. Acknowledgements alone are movement only while
        // nothing sits unread at the peer: a server that stopped reading still has a kernel
        // that acknowledges until its buffer is full. With bytes unread, the estimate of what
        // was read must move by `READ_PROGRESS`: it creeps by a few percent of the incoming
        // bytes even when nothing is read.
        let moved = if link.delivery.unread() == 0 {
            read > link.read || wire_acked > link.wire_acked
        } else {
            taken.saturating_sub(link.read_mark) >= READ_PROGRESS
        };
        if moved {
            link.progress_at = now;
            link.read_mark = link.read_mark.max(taken);
        }
        link.wire_acked = link.wire_acked.max(wire_acked);
        if read > link.read {
            link.read = read;
            if self.backlog.acknowledge(connection, read) {
                self.ran = true;
            }
        }
        self.note_idle(now);
    }

    /// The driver's timer fired.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.tick(now);
        let due: Vec<Timer> = self.timers.due(now).collect();
        for timer in due {
            // An earlier timer's transition may have moved or cleared this one.
            if self.timers.get(timer).is_some_and(|at| at <= now) {
                self.fire(timer, now);
            }
        }
        self.refresh_timers();
    }

    fn fire(&mut self, timer: Timer, now: Duration) {
        match (timer, self.state) {
            (Timer::Connect, State::Probing { conn }) => {
                self.actions.push_back(Action::Close { connection: conn });
                self.fail(Failure::ProbeTimeout, now);
            }
            (Timer::Connect, State::Opening { .. }) => self.fail(Failure::ConnectTimeout, now),
            (Timer::Stall, State::Streaming { conn } | State::Ending { conn }) => {
                self.last_failure = Some(Failure::SendTimeout);
                self.events.push_back(SessionEvent::Disconnected { reason: Failure::SendTimeout });
                self.actions.push_back(Action::Close { connection: conn });
                // Wait for the driver's final reading before resending.
                self.enter(State::Closing { conn }, now);
            }
            (Timer::Close, State::Closing { .. }) => {
                self.connection_lost();
                self.retry(now);
            }
            // No answer, and the server's kernel still holds bytes it never read: the server
            // did not take the end of the stream, which goes again.
            (Timer::FinalResponse, State::Ending { .. })
                if self.link.as_ref().is_some_and(|l| l.observes_acks && l.delivery.unread() > 0) =>
            {
                self.fail(Failure::SendTimeout, now);
            }
            (Timer::FinalResponse, State::Ending { conn }) => {
                self.actions.push_back(Action::Close { connection: conn });
                self.link = None;
                self.enter(State::Done, now);
                self.events.push_back(SessionEvent::FinishedWithoutResponse);
            }
            (Timer::Backoff, State::Backoff) => {
                if self.give_up_if_over(now) {
                    return;
                }
                if self.config.reprobe || self.header.is_none() {
                    self.probe(now);
                } else {
                    self.open(now);
                }
            }
            (Timer::GiveUp, _) => {
                self.give_up_if_over(now);
            }
            // Release: held-back fragments may go; the driver pulls the body after every call.
            _ => {}
        }
    }

    /// When the session wants [`IngestSession::handle_timeout`] called.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.timers.next()
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// The stream's figures at `now`.
    pub fn stats(&mut self, now: Duration) -> StreamStats {
        self.stats.refresh(now);
        self.stats.stream.latency = self.stats.latency();
        let (n, bytes, duration) = self.backlog.pending_size();
        let s = &mut self.stats.stream;
        s.queue_fragments = n as u64;
        s.queue_bytes = bytes;
        s.queue_duration_ns = duration;
        s.connections = self.connections;
        s.reconnects = self.connections.saturating_sub(1);
        s.connected = matches!(self.state, State::Streaming { .. } | State::Ending { .. });
        s.state = match self.state {
            State::Idle | State::Probing { .. } | State::WaitingHeader | State::Opening { .. }
                if self.connections == 0 =>
            {
                "Connecting"
            }
            State::Streaming { .. } => "Running",
            State::Ending { .. } => "Ending",
            State::Done => "Stopped",
            _ => "Reconnecting",
        };
        s.clone()
    }

    /// Fragments held in memory (waiting, in flight, or kept for resending).
    pub fn held_fragments(&self) -> usize {
        self.backlog.held()
    }

    fn tick(&mut self, now: Duration) {
        self.last_now = self.last_now.max(now);
    }

    /// Moves to `state`, with the deadline of its timer set and the other states' cleared.
    fn enter(&mut self, state: State, now: Duration) {
        for t in [Timer::Connect, Timer::FinalResponse, Timer::Close, Timer::Backoff] {
            self.timers.clear(t);
        }
        let deadline = match state {
            State::Probing { .. } | State::Opening { .. } => Some(now + self.config.connect_timeout),
            State::Ending { .. } => Some(now + self.config.final_response_timeout),
            State::Closing { .. } => Some(now + CLOSE_WAIT),
            // Set by `retry`, which knows the delay.
            _ => None,
        };
        if let Some(t) = state.timer() {
            self.timers.set(t, deadline);
        }
        self.state = state;
    }

    /// The timers that follow from the state of the link, the backlog and the limits.
    fn refresh_timers(&mut self) {
        let streaming = matches!(self.state, State::Streaming { .. });
        let stall = if matches!(self.state, State::Streaming { .. } | State::Ending { .. }) {
            self.stall_deadline()
        } else {
            None
        };
        self.timers.set(Timer::Stall, stall);
        let release = if streaming {
            [self.pace_wake(), self.backlog.next_ready_at(self.last_now)].into_iter().flatten().min()
        } else {
            None
        };
        self.timers.set(Timer::Release, release);
        let give_up = match self.state {
            State::Ending { .. } | State::Done => None,
            // While connected only the end-of-stream limit applies.
            State::Streaming { .. } => self.finishing,
            _ => self.give_up_at(),
        };
        self.timers.set(Timer::GiveUp, give_up);
        if self.state == State::Done {
            self.timers = Timers::default();
        }
    }

    fn new_connection(&mut self) -> ConnectionId {
        self.next_connection += 1;
        ConnectionId(self.next_connection)
    }

    fn probe(&mut self, now: Duration) {
        let conn = self.new_connection();
        self.enter(State::Probing { conn }, now);
        self.actions.push_back(Action::SendProbe { connection: conn });
    }

    fn open(&mut self, now: Duration) {
        if self.header.is_none() {
            self.enter(State::WaitingHeader, now);
            return;
        }
        let conn = self.new_connection();
        self.enter(State::Opening { conn }, now);
        self.actions.push_back(Action::OpenPost { connection: conn });
    }

    /// A connection or attempt failed with `reason`.
    fn fail(&mut self, reason: Failure, now: Duration) {
        if let State::Opening { conn } | State::Streaming { conn } | State::Ending { conn } = self.state {
            self.actions.push_back(Action::Close { connection: conn });
        }
        self.connection_lost();
        self.last_failure = Some(reason);
        self.events.push_back(SessionEvent::Disconnected { reason });
        if !self.ran && reason.refuses_the_stream() {
            self.give_up(reason, true);
            return;
        }
        self.retry(now);
    }

    /// Puts back what the lost connection may not have delivered.
    fn connection_lost(&mut self) {
        if let Some(link) = self.link.take() {
            let read = link.read_at_end(self.config.unobserved_in_flight);
            let resent = self.backlog.connection_ended(link.conn, read);
            for r in resent {
                if !self.resend_notice.contains(&r) {
                    self.resend_notice.push(r);
                }
            }
        }
    }

    fn retry(&mut self, now: Duration) {
        self.attempt = self.attempt.saturating_add(1);
        self.outage_since.get_or_insert(now);
        if self.give_up_if_over(now) {
            return;
        }
        let delay = self.backoff.delay(self.attempt);
        self.events.push_back(SessionEvent::Reconnecting { attempt: self.attempt, delay });
        self.enter(State::Backoff, now);
        self.timers.set(Timer::Backoff, Some(now + delay));
        self.enforce_bound();
    }

    /// When the session will give up if nothing works by then.
    fn give_up_at(&self) -> Option<Duration> {
        let limit = match (self.outage_since, self.config.retry_limit) {
            (Some(since), Some(limit)) => Some(since + limit),
            _ => None,
        };
        match (limit, self.finishing) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn give_up_if_over(&mut self, now: Duration) -> bool {
        let over_retries = self.config.max_retries.is_some_and(|m| self.attempt > m);
        let limit = self.outage_since.zip(self.config.retry_limit).is_some_and(|(since, l)| now >= since + l);
        let eos = self.finishing.is_some_and(|d| now >= d) && !matches!(self.state, State::Ending { .. });
        if !(over_retries || limit || eos) || self.state == State::Done {
            return false;
        }
        let reason = if eos && !(over_retries || limit) {
            Failure::EosTimeout
        } else {
            self.last_failure.unwrap_or(Failure::Transport { error: TransportError::Other })
        };
        self.give_up(reason, false);
        true
    }

    /// Stops for good: closes what is open and reports what never reached the server.
    fn give_up(&mut self, reason: Failure, at_start: bool) {
        if let Some(conn) = self.state.connection().filter(|_| !matches!(self.state, State::Ending { .. })) {
            self.actions.push_back(Action::Close { connection: conn });
        }
        self.link = None;
        let undelivered = self.backlog.abandon_pending();
        self.enter(State::Done, self.last_now);
        self.events.push_back(SessionEvent::GaveUp { reason, undelivered, at_start });
    }

    fn enforce_bound(&mut self) {
        if !self.config.drop_oldest {
            return;
        }
        let max_ns = u64::try_from(self.config.forward_buffer_duration.as_nanos()).unwrap_or(u64::MAX);
        let dropped = self.backlog.enforce_bound(max_ns, self.config.forward_buffer_bytes);
        if !dropped.is_empty() {
            for d in &dropped {
                let ts = self.timescale(d.track_id);
                self.stats.dropped(d.track_id, ts);
            }
            self.events.push_back(SessionEvent::Dropped { fragments: dropped });
        }
    }

    /// The send timeout: as configured, else 1.5 N. N is the configured fragment duration, else
    /// the longest of the last fragments of all tracks (one long fragment, a late key frame,
    /// does not raise it for good), 2 s before any, and never above 10 s.
    fn send_timeout(&self) -> Duration {
        if let Some(t) = self.config.send_timeout {
            return t;
        }
        let n = self
            .config
            .fragment_duration
            .filter(|d| !d.is_zero())
            .or_else(|| self.recent_durations.iter().max().copied().filter(|d| !d.is_zero()))
            .unwrap_or(Duration::from_secs(2))
            .min(Duration::from_secs(10));
        n.mul_f64(1.5)
    }

    /// The send timeout in force now (for tests and stats).
    pub fn current_send_timeout(&self) -> Duration {
        self.send_timeout()
    }

    /// Whether something is waiting on the open link: data to hand over, or bytes the peer
    /// has not acknowledged.
    fn outstanding(&self) -> bool {
        let Some(link) = &self.link else { return false };
        let allowed = Self::pace_limit(link, self.config.catch_up_rate, self.last_now);
        let data = !link.header_sent || self.backlog.next_is_allowed(link.conn, allowed, self.last_now);
        data || link.unsettled()
    }

    /// An idle link (nothing waiting) restarts the stall clock.
    fn note_idle(&mut self, now: Duration) {
        if !self.outstanding()
            && let Some(link) = self.link.as_mut()
        {
            link.progress_at = now;
        }
    }

    fn stall_deadline(&self) -> Option<Duration> {
        let link = self.link.as_ref()?;
        self.outstanding().then(|| link.progress_at + self.send_timeout())
    }

    /// Media time (ns) up to which fragments may be sent at `now`.
    fn pace_limit(link: &Link, rate: f64, now: Duration) -> u64 {
        match link.pace {
            Some((wall, media)) if rate > 0.0 => {
                let elapsed = now.saturating_sub(wall).mul_f64(rate);
                media.saturating_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
            }
            _ => u64::MAX,
        }
    }

    /// When the next paced fragment may go, if pacing holds it back.
    fn pace_wake(&self) -> Option<Duration> {
        let link = self.link.as_ref()?;
        let (wall, media) = link.pace?;
        let rate = self.config.catch_up_rate;
        if rate <= 0.0 {
            return None;
        }
        let next = self.backlog.first_pending_start()?;
        let ahead = next.checked_sub(media)?;
        Some(wall + Duration::from_nanos(ahead).div_f64(rate))
    }
}

#[cfg(test)]
mod tests;
