//! The POST session of one stream, as a sans-IO state machine (ingest-spec §1.3, §1.6, §3).
//!
//! Probe (an empty POST) → open the long-running chunked POST → stream the header and every
//! fragment → on any failure (refused probe, connection error, early response, send timeout):
//! close, back off with jitter, probe again, open a new connection to the same URL, send the
//! same header bytes, the last two fully written fragments of every track and whatever was not
//! delivered, then what was produced meanwhile, paced → at the end, the zero-length chunk and
//! the final response.
//!
//! The session does no IO and reads no clock. The driver:
//! - performs [`Action`]s (probe, open, close) and reports what the network did as [`Input`]s;
//! - pulls body bytes for an open POST with [`IngestSession::poll_transmit`] whenever its
//!   transport can take more (so the session always knows exactly what was handed over);
//! - calls [`IngestSession::handle_timeout`] at [`IngestSession::poll_timeout`].
//!
//! Every method takes the current time as a [`Duration`] since an epoch the driver chooses.

mod backlog;
mod backoff;
pub mod cmaf;
pub mod sparse;
mod stats;

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use bytes::Bytes;
use core::time::Duration;

pub use backlog::{DroppedFragment, ResentFragment};
pub use stats::{StreamStats, TrackStats, WINDOW as STATS_WINDOW};

use crate::fragment::Fragment;
use backlog::{Backlog, Chunk};
use backoff::Backoff;
use stats::StatsKeeper;

/// While the server holds unread bytes, how far the estimate of what it read must move to
/// count as progress (see `Input::Progress`).
const READ_PROGRESS: u64 = 16 * 1024;

/// The share of the peer's largest receive window that may hold bytes unread without the
/// window showing them: 1/8 (see `Link::window`).
const HIDDEN_SHARE: u64 = 8;

/// How many recent fragments the automatic send timeout looks at: a few per track.
const RECENT_FRAGMENTS: usize = 8;

/// Identifies one connection the session asked for, so that late events of an abandoned
/// connection are recognised and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub u64);

/// Timers, limits and policies, with the spec's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    /// Time to connect, and for the probe to be answered (spec §1.6 rule 1: 10 s).
    pub connect_timeout: Duration,
    /// Time without progress while data waits before the connection is abandoned; `None` is
    /// 1.5 × the fragment duration N (spec §1.6 rule 2: between N and 2N).
    pub send_timeout: Option<Duration>,
    /// N when the fragments are cut on a grid (the element's `fragment-duration`); `None`
    /// takes it from the fragments: the longest of the last few.
    pub fragment_duration: Option<Duration>,
    /// Time to wait for the server's answer after the last chunk.
    pub final_response_timeout: Duration,
    /// Consecutive failed attempts before giving up; `None` retries forever (spec §1.6 rule 4).
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
    /// A fragment handed over counts as delivered once the acknowledged count is within this
    /// many bytes of its end. A driver whose count is a lower bound that lags by a known slack
    /// (its estimate of the request head) sets it, so that the newest fragment is confirmed
    /// without waiting for more bytes to follow. Nothing is lost by it: the newest delivered
    /// fragments of every track are resent after any failure anyway.
    pub delivery_slack_bytes: u64,
    /// After `finish()`, how long to keep trying to deliver what is left.
    pub eos_timeout: Duration,
    /// Fully written fragments per track sent again on every new connection (spec: 2).
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
            delivery_slack_bytes: 0,
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
    /// Abandon the connection without ending its body, then report [`Input::Closed`].
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
    /// The TCP (or TLS) connection could not be established.
    Connect,
    /// Connecting took longer than the connect timeout.
    Timeout,
    /// Writing the body failed.
    Write,
    /// The connection closed before a response arrived.
    Closed,
    /// Anything else.
    Other,
}

/// What happened, as the driver reports it. Every connection ends with exactly one of
/// `ProbeResponse`, `Response`, `Failed` or `Closed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The probe was answered.
    ProbeResponse { connection: ConnectionId, status: u16 },
    /// The POST is connected and its body is being pulled. `observes_acks` says whether
    /// [`Input::Progress`] will report acknowledgements.
    Connected { connection: ConnectionId, observes_acks: bool },
    /// The peer's application took at least `acked` body bytes; `wire_acked` is the kernel's
    /// raw count of acknowledged bytes (framing included; only its movement matters),
    /// `unacked` wire bytes wait in the kernel's send queue, and `unread` bytes were
    /// acknowledged by the peer's kernel but not yet read by its application (from the window
    /// it advertises; 0 when unknown). `window` is the largest receive window the peer
    /// advertised (0 when unknown): see [`Link::window`] for what it is for.
    Progress { connection: ConnectionId, acked: u64, wire_acked: u64, unacked: u64, unread: u64, window: u64 },
    /// The server answered the POST. Before the body ended, that is a server abort.
    Response { connection: ConnectionId, status: u16, acked: Option<u64> },
    /// The connection failed; `acked` is what the peer acknowledged, when known.
    Failed { connection: ConnectionId, error: TransportError, acked: Option<u64> },
    /// The connection the session asked to close is closed.
    Closed { connection: ConnectionId, acked: Option<u64> },
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
    /// The session stopped trying; `undelivered` never reached the server.
    GaveUp {
        reason: Failure,
        undelivered: Vec<DroppedFragment>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for `start()`.
    Idle,
    Probing {
        conn: ConnectionId,
        deadline: Duration,
    },
    /// Probe accepted; the header is not there yet.
    WaitingHeader,
    Opening {
        conn: ConnectionId,
        deadline: Duration,
    },
    Streaming {
        conn: ConnectionId,
    },
    /// Body ended; waiting for the final response.
    Ending {
        conn: ConnectionId,
        deadline: Duration,
    },
    /// Abandoned after a send timeout; waiting for the driver's `Closed`.
    Closing {
        conn: ConnectionId,
        deadline: Duration,
    },
    /// Waiting to retry.
    Backoff {
        until: Duration,
    },
    Done,
}

/// What the session knows of the open POST.
#[derive(Debug, Clone)]
struct Link {
    conn: ConnectionId,
    /// Body bytes handed to the transport.
    pulled: u64,
    /// Body bytes the peer acknowledged (a lower bound).
    acked: u64,
    /// The kernel's count of acknowledged wire bytes: when it moves, the link moves.
    wire_acked: u64,
    observes_acks: bool,
    /// Wire bytes waiting in the kernel's send queue.
    unacked: u64,
    /// Bytes the peer's kernel holds that its application has not read.
    unread: u64,
    /// The largest receive window the peer advertised.
    ///
    /// The peer's kernel may hold more unread than its window shows. Linux advertises the
    /// smaller of its free buffer space and a threshold (and a clamp) that grow with the data
    /// it receives; while they are below the free space, bytes taken unread do not shrink the
    /// window. A stall test with a 1 MiB receive buffer (a window of 1.9 MB) had about 90 KB
    /// acknowledged unread while the window still grew by a kilobyte, then lost it with the
    /// connection. So what counts as read, for freeing fragments, is `acked` less
    /// [`HIDDEN_SHARE`] of this window. Memory pays little for it: windows are large only at
    /// high rates (32 MB on loopback at file speed, an eighth of which is less than the last
    /// two fragments of a 20 Mbps track, held anyway).
    window: u64,
    /// `acked` when the link last moved.
    read_mark: u64,
    header_sent: bool,
    /// Last time something moved (or the link was idle).
    progress_at: Duration,
    /// Pacing origin: (wall time, media time in ns).
    pace: Option<(Duration, u64)>,
}

impl Link {
    /// Body bytes the server certainly read (see [`Link::window`]).
    fn read(&self) -> u64 {
        self.read_of(self.acked)
    }

    fn read_of(&self, acked: u64) -> u64 {
        acked.saturating_sub(self.window / HIDDEN_SHARE)
    }
}

/// The body bytes to count as delivered when a connection ends: the driver's final count, or
/// what was handed over minus what may still be in flight when acknowledgements are unseen.
fn effective_acked(link: &Link, reported: Option<u64>, unobserved_in_flight: u64) -> u64 {
    match (link.observes_acks, reported) {
        (true, Some(a)) => link.read_of(a.max(link.acked).min(link.pulled)),
        (true, None) => link.read(),
        (false, _) => link.pulled.saturating_sub(unobserved_in_flight),
    }
}

/// The POST session of one `Streams(<id>)` URL.
#[derive(Debug)]
pub struct IngestSession {
    config: SessionConfig,
    state: State,
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
        let backlog = Backlog::new(config.resend_depth, config.delivery_slack_bytes);
        IngestSession {
            config,
            state: State::Idle,
            header: None,
            backlog,
            link: None,
            backoff,
            attempt: 0,
            last_failure: None,
            outage_since: None,
            finishing: None,
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
        if self.state == State::Idle {
            self.probe(now);
        }
    }

    /// The header boxes (ftyp, manifest, moov), identical for every connection.
    pub fn set_header(&mut self, header: Bytes, now: Duration) {
        if self.header.is_none() {
            self.header = Some(header);
            if self.state == State::WaitingHeader {
                self.open(now);
            }
        }
    }

    /// A fragment ready to go out. Never blocks: beyond the forward buffer's bound the oldest
    /// waiting fragments are dropped (and reported).
    pub fn push_fragment(&mut self, fragment: Fragment, now: Duration) {
        if self.state == State::Done {
            return;
        }
        let t = &fragment.timing;
        self.timescales.retain(|(id, _)| *id != fragment.track_id);
        self.timescales.push((fragment.track_id, t.timescale));
        if self.recent_durations.len() == RECENT_FRAGMENTS {
            self.recent_durations.pop_front();
        }
        self.recent_durations.push_back(Duration::from_nanos(t.duration_ns()));
        self.stats.produced(fragment.track_id, t.timescale, t.time, t.duration);
        self.last_now = self.last_now.max(now);
        self.note_idle(now);
        self.backlog.push(fragment, now + self.config.send_delay);
        self.enforce_bound();
    }

    /// The application has nothing more to send: end the body once the rest is delivered, or
    /// give up `eos_timeout` from now.
    pub fn finish(&mut self, now: Duration) {
        if self.finishing.is_none() {
            self.finishing = Some(now + self.config.eos_timeout);
        }
        if self.header.is_none() && matches!(self.state, State::Idle | State::WaitingHeader | State::Probing { .. }) {
            // Nothing was ever produced: there is no stream to send.
            if let State::Probing { conn, .. } = self.state {
                self.actions.push_back(Action::Close { connection: conn });
            }
            self.state = State::Done;
            self.events.push_back(SessionEvent::FinishedWithoutResponse);
        }
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
        self.last_now = self.last_now.max(now);
        let State::Streaming { conn } = self.state else { return Transmit::Wait };
        if conn != connection {
            return Transmit::Wait;
        }
        let Some(link) = self.link.as_mut() else { return Transmit::Wait };
        if !link.header_sent {
            if let Some(h) = &self.header {
                link.header_sent = true;
                link.pulled += h.len() as u64;
                // Bytes taken into a buffer are progress only when nothing better is known:
                // with acknowledgements observed, only acknowledgements are.
                if !link.observes_acks {
                    link.progress_at = now;
                }
                return Transmit::Data(h.clone());
            }
        }
        let allowed = Self::pace_limit(link, self.config.catch_up_rate, now);
        if self.backlog.next_is_allowed(conn, allowed, now) {
            if let Chunk::Data { bytes, track_id, time, last, first_ready_at } =
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
        }
        if self.finishing.is_some() && !self.backlog.has_work_for(conn) {
            self.state = State::Ending { conn, deadline: now + self.config.final_response_timeout };
            return Transmit::End;
        }
        self.note_idle(now);
        Transmit::Wait
    }

    fn timescale(&self, track_id: u32) -> u32 {
        self.timescales.iter().find(|(id, _)| *id == track_id).map_or(1, |(_, ts)| *ts)
    }

    pub fn handle_input(&mut self, input: Input, now: Duration) {
        self.last_now = self.last_now.max(now);
        match (self.state, input) {
            (State::Probing { conn, .. }, Input::ProbeResponse { connection, status }) if conn == connection => {
                if (200..300).contains(&status) {
                    self.events.push_back(SessionEvent::ProbeAccepted { status });
                    self.open(now);
                } else {
                    self.fail(Failure::ProbeRefused { status }, None, now);
                }
            }
            (State::Probing { conn, .. }, Input::Failed { connection, error, .. }) if conn == connection => {
                self.fail(Failure::Transport { error }, None, now);
            }
            (State::Opening { conn, .. }, Input::Connected { connection, observes_acks }) if conn == connection => {
                self.connections += 1;
                self.attempt = 0;
                self.outage_since = None;
                // Only a backlog after an outage is paced; the first connection sends at once.
                let pace =
                    if self.connections > 1 { self.backlog.first_pending_start().map(|m| (now, m)) } else { None };
                self.link = Some(Link {
                    conn,
                    pulled: 0,
                    acked: 0,
                    wire_acked: 0,
                    unread: 0,
                    window: 0,
                    read_mark: 0,
                    observes_acks,
                    unacked: 0,
                    header_sent: false,
                    progress_at: now,
                    pace,
                });
                self.state = State::Streaming { conn };
                self.events.push_back(SessionEvent::Connected { connection: self.connections });
                let resent = core::mem::take(&mut self.resend_notice);
                if !resent.is_empty() {
                    self.stats.stream.fragments_resent += resent.len() as u64;
                    self.events.push_back(SessionEvent::Resent { fragments: resent });
                }
            }
            (_, Input::Progress { connection, acked, wire_acked, unacked, unread, window }) => {
                if let Some(link) = self.link.as_mut().filter(|l| l.conn == connection) {
                    // The link moves when the server reads. Acknowledgements alone are movement
                    // only while nothing sits unread at the peer: a server that stopped reading
                    // still has a kernel that acknowledges until its buffer is full. With bytes
                    // unread, the estimate of what was read must move by `READ_PROGRESS`: it
                    // creeps by a few percent of the incoming bytes even when nothing is read.
                    let read = acked.min(link.pulled) > link.acked;
                    let moved = if unread == 0 {
                        read || wire_acked > link.wire_acked
                    } else {
                        acked.saturating_sub(link.read_mark) >= READ_PROGRESS
                    };
                    if moved {
                        link.progress_at = now;
                        link.read_mark = link.read_mark.max(acked);
                    }
                    link.wire_acked = link.wire_acked.max(wire_acked);
                    link.window = link.window.max(window);
                    if read {
                        link.acked = acked.min(link.pulled);
                        self.backlog.acknowledge(connection, link.read());
                    }
                    link.unacked = unacked;
                    link.unread = unread;
                    self.note_idle(now);
                }
            }
            (
                State::Opening { conn, .. } | State::Streaming { conn },
                Input::Response { connection, status, acked },
            ) if conn == connection => {
                self.fail(Failure::ServerAbort { status }, acked, now);
            }
            (
                State::Opening { conn, .. } | State::Streaming { conn } | State::Ending { conn, .. },
                Input::Failed { connection, error, acked },
            ) if conn == connection => {
                self.fail(Failure::Transport { error }, acked, now);
            }
            // The end refused (a 5xx, or a redirect of the body): the server may not have kept
            // what it was sent, so it goes again on a new connection, within the EOS timeout.
            (State::Ending { conn, .. }, Input::Response { connection, status, acked })
                if conn == connection && !(200..300).contains(&status) =>
            {
                self.fail(Failure::ServerAbort { status }, acked, now);
            }
            (State::Ending { conn, .. }, Input::Response { connection, status, acked }) if conn == connection => {
                // The server answered the end: it read all it kept.
                if let (Some(a), Some(link)) = (acked, self.link.as_ref()) {
                    self.backlog.acknowledge(conn, a.min(link.pulled));
                }
                self.link = None;
                self.state = State::Done;
                self.events.push_back(SessionEvent::Finished { status });
            }
            (State::Closing { conn, .. }, Input::Closed { connection, acked }) if conn == connection => {
                self.connection_lost(acked);
                self.retry(now);
            }
            // Events of connections the session no longer uses.
            _ => {}
        }
    }

    /// The driver's timer fired.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.last_now = self.last_now.max(now);
        match self.state {
            State::Probing { conn, deadline } if now >= deadline => {
                self.actions.push_back(Action::Close { connection: conn });
                self.fail(Failure::ProbeTimeout, None, now);
            }
            State::Opening { deadline, .. } if now >= deadline => {
                self.fail(Failure::ConnectTimeout, None, now);
            }
            State::Streaming { conn } | State::Ending { conn, .. }
                if self.stall_deadline().is_some_and(|t| now >= t) =>
            {
                self.last_failure = Some(Failure::SendTimeout);
                self.events.push_back(SessionEvent::Disconnected { reason: Failure::SendTimeout });
                self.actions.push_back(Action::Close { connection: conn });
                // Wait for the driver's final acknowledgement count before resending.
                self.state = State::Closing { conn, deadline: now + Duration::from_secs(1) };
            }
            State::Closing { deadline, .. } if now >= deadline => {
                self.connection_lost(None);
                self.retry(now);
            }
            // No answer, and the server's kernel still holds bytes it never read: the server
            // did not take the end of the stream, which goes again.
            State::Ending { conn, deadline }
                if now >= deadline && self.link.as_ref().is_some_and(|l| l.observes_acks && l.unread > 0) =>
            {
                self.actions.push_back(Action::Close { connection: conn });
                self.fail(Failure::SendTimeout, None, now);
            }
            State::Ending { conn, deadline } if now >= deadline => {
                self.actions.push_back(Action::Close { connection: conn });
                self.link = None;
                self.state = State::Done;
                self.events.push_back(SessionEvent::FinishedWithoutResponse);
            }
            State::Backoff { until } if now >= until => {
                if self.give_up_if_over(now) {
                    return;
                }
                if self.config.reprobe || self.header.is_none() {
                    self.probe(now);
                } else {
                    self.open(now);
                }
            }
            _ => {}
        }
        if !matches!(self.state, State::Ending { .. } | State::Done) {
            self.give_up_if_over(now);
        }
    }

    /// When the session wants [`IngestSession::handle_timeout`] called.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let state = match self.state {
            State::Probing { deadline, .. } | State::Opening { deadline, .. } | State::Closing { deadline, .. } => {
                Some(deadline)
            }
            State::Ending { deadline, .. } => Some(self.stall_deadline().map_or(deadline, |t| t.min(deadline))),
            State::Backoff { until } => Some(until),
            State::Streaming { .. } => {
                [self.stall_deadline(), self.pace_wake(), self.backlog.next_ready_at(self.last_now)]
                    .into_iter()
                    .flatten()
                    .min()
            }
            _ => None,
        };
        let give_up = match self.state {
            State::Ending { .. } | State::Done => None,
            // While connected only the end-of-stream limit applies.
            State::Streaming { .. } => self.finishing,
            _ => self.give_up_at(),
        };
        match (state, give_up) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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

    fn new_connection(&mut self) -> ConnectionId {
        self.next_connection += 1;
        ConnectionId(self.next_connection)
    }

    fn probe(&mut self, now: Duration) {
        let conn = self.new_connection();
        self.state = State::Probing { conn, deadline: now + self.config.connect_timeout };
        self.actions.push_back(Action::SendProbe { connection: conn });
    }

    fn open(&mut self, now: Duration) {
        if self.header.is_none() {
            self.state = State::WaitingHeader;
            return;
        }
        let conn = self.new_connection();
        self.state = State::Opening { conn, deadline: now + self.config.connect_timeout };
        self.actions.push_back(Action::OpenPost { connection: conn });
    }

    /// A connection or attempt failed with `reason`; `acked` is the peer's final count.
    fn fail(&mut self, reason: Failure, acked: Option<u64>, now: Duration) {
        if let State::Opening { conn, .. } | State::Streaming { conn } | State::Ending { conn, .. } = self.state {
            self.actions.push_back(Action::Close { connection: conn });
        }
        self.connection_lost(acked);
        self.last_failure = Some(reason);
        self.events.push_back(SessionEvent::Disconnected { reason });
        self.retry(now);
    }

    /// Puts back what the lost connection may not have delivered.
    fn connection_lost(&mut self, acked: Option<u64>) {
        if let Some(link) = self.link.take() {
            let acked = effective_acked(&link, acked, self.config.unobserved_in_flight);
            let resent = self.backlog.connection_ended(link.conn, acked);
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
        self.state = State::Backoff { until: now + delay };
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
        match self.state {
            State::Probing { conn, .. }
            | State::Opening { conn, .. }
            | State::Streaming { conn }
            | State::Closing { conn, .. } => self.actions.push_back(Action::Close { connection: conn }),
            _ => {}
        }
        self.link = None;
        let undelivered = self.backlog.abandon_pending();
        self.state = State::Done;
        self.events.push_back(SessionEvent::GaveUp { reason, undelivered });
        true
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
        data || (link.observes_acks && (link.unacked > 0 || link.unread > 0))
    }

    /// An idle link (nothing waiting) restarts the stall clock.
    fn note_idle(&mut self, now: Duration) {
        if !self.outstanding() {
            if let Some(link) = self.link.as_mut() {
                link.progress_at = now;
            }
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
        let next = self.backlog.next_pending_start()?;
        let ahead = next.checked_sub(media)?;
        Some(wall + Duration::from_nanos(ahead).div_f64(rate))
    }
}

#[cfg(test)]
mod tests;
