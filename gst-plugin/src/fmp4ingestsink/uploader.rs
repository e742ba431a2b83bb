// SPDX-License-Identifier: MPL-2.0
//! Drives the media stream's [`IngestSession`] over HTTP, as tasks on the shared runtime.
//!
//! The session decides; this transport performs its actions (probe, open the chunked POST,
//! close) and reports what the network did. The POST body is pulled from the session by hyper
//! itself ([`BodyStream`]): the session hands over bytes only when the connection can take them,
//! so it always knows what was written, and the fragments wait in its forward buffer rather than
//! in a channel. While a POST is up, what the transport wrote (flush marks) and the kernel's
//! counters of its socket are reported, so that the session knows what the server cannot have
//! received. An abandoned connection is reset, never closed behind data still queued.
//!
//! The element never waits on a socket: it hands over the header and fragments, hears what
//! happened through a callback, and only blocks for room (a non-live source) or for the end.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fmp4ingest_core::fragment::Fragment;
use fmp4ingest_core::ingest_url::{IngestUrl, redact_url};
use fmp4ingest_core::session::{
    Action, ConnectionId, IngestSession, Input, KernelReading, SessionConfig, SessionEvent, StreamStats, Transmit,
    TransportError,
};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::sync::Notify;

use crate::driver::{self, HttpConfig, Machine, Net, Pending, Report, Shared, Transport, WaitOutcome};
use crate::http::meter::Meter;
use crate::http::redirect;
use crate::http::socket::SocketWatch;
use crate::http::{Body, Client, RequestFailure, Target};
use crate::runtime::RUNTIME;

static CAT: std::sync::LazyLock<gst::DebugCategory> = std::sync::LazyLock::new(|| {
    gst::DebugCategory::new("fmp4ingesthttp", gst::DebugColorFlags::empty(), Some("fmp4ingestsink HTTP transport"))
});

/// How long a POST is idle before its peer is asked for its current receive window: well
/// within the send timeout (at least 1.5 s), so that a server that read everything is seen to
/// have read it before the next fragment is due.
const WINDOW_PROBE_AFTER: Duration = Duration::from_secs(1);

/// How often the kernel's counters are read while a POST is up, at least.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

/// While handed-over bytes wait for their acknowledgement, the counters are read again after
/// this, doubling up to `PROGRESS_INTERVAL` while nothing new is confirmed: a fragment just
/// written is confirmed within a round trip or so, and everything it holds for resending (the
/// oldest fragment of the ring) is freed then, not up to 200 ms later while more piles up.
const PROGRESS_FIRST_RETRY: Duration = Duration::from_millis(1);

/// Body bytes handed to the connection after which the counters are read again at once.
const PROGRESS_BYTES: u64 = 256 << 10;

impl Machine for IngestSession {
    type Action = Action;
    type Event = SessionEvent;
    fn poll_action(&mut self, _now: Duration) -> Option<Action> {
        IngestSession::poll_action(self)
    }
    fn poll_event(&mut self) -> Option<SessionEvent> {
        IngestSession::poll_event(self)
    }
    fn poll_timeout(&self) -> Option<Duration> {
        IngestSession::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Duration) {
        IngestSession::handle_timeout(self, now)
    }
    fn settled(&self) -> bool {
        self.is_done()
    }
}

pub type ReportFn = driver::ReportFn<SessionEvent>;

/// Handle of a running upload. Dropping it closes every connection.
pub struct Uploader {
    shared: Arc<Shared<IngestSession>>,
    task: tokio::task::JoinHandle<()>,
}

impl Uploader {
    /// Starts the session (the probe goes out at once).
    pub fn start(http: HttpConfig, session: SessionConfig, report: ReportFn) -> Uploader {
        let shared = Shared::new(IngestSession::new(session));
        shared.with(|s, now| s.start(now));
        let transport = MediaTransport {
            shared: shared.clone(),
            client: http.client.clone(),
            post_url: http.url.as_str().to_string(),
            secrets: http.client.settings().basic.is_some()
                || !http.client.settings().headers.is_empty()
                || http.url.has_credentials(),
            url: http.url,
            follow_redirects: http.follow_redirects,
            report,
            conns: HashMap::new(),
            last_detail: None,
            clock: ProgressClock::new(),
        };
        let task = RUNTIME.spawn(driver::run(shared.clone(), transport));
        Uploader { shared, task }
    }

    pub fn set_header(&self, header: Bytes) {
        self.shared.with(|s, now| s.set_header(header, now));
    }

    pub fn push_fragment(&self, fragment: Fragment) {
        self.shared.with(|s, now| s.push_fragment(fragment, now));
    }

    /// Asks for the graceful end: the rest of the queue, the last chunk, the final response.
    pub fn finish(&self) {
        self.shared.with(|s, now| s.finish(now));
    }

    /// Live upstream: beyond the forward buffer's bound the session drops the oldest. Not
    /// live: it drops nothing, and `render()` waits for room (see [`Waiter::room`]).
    pub fn set_drop_oldest(&self, drop_oldest: bool) {
        self.shared.with(|s, _| s.set_drop_oldest(drop_oldest));
    }

    /// The session's figures now, and the driver's clock for them.
    pub fn stats(&self) -> (StreamStats, Duration) {
        let now = self.shared.now();
        (self.shared.quietly(|s, _| s.stats(now)), now)
    }

    /// Something to wait on, usable without holding the uploader.
    pub fn waiter(&self) -> Waiter {
        Waiter { shared: self.shared.clone() }
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        // Dropping the task drops every connection it holds.
        self.task.abort();
    }
}

/// Blocks a streaming thread on the session (never on a socket).
pub struct Waiter {
    shared: Arc<Shared<IngestSession>>,
}

impl Waiter {
    /// For a non-live source: until the forward buffer has room or the session is done. Never
    /// used for a live source, which must not wait on the network.
    pub fn room(&self, cancel: &Notify, cancelled: impl Fn() -> bool) -> WaitOutcome {
        self.shared.block_until(|s| s.peek(|s| s.has_room() || s.is_done()), None, cancel, cancelled)
    }

    /// Until the session is done and the element heard why, at most `limit`.
    pub fn done(&self, limit: Duration, cancel: &Notify, cancelled: impl Fn() -> bool) -> WaitOutcome {
        self.shared.block_until(Shared::settled, Some(limit), cancel, cancelled)
    }
}

/// What the request tasks tell the driver.
enum NetEvent {
    /// The POST's connection is open; its socket and meter.
    Connected { conn: ConnectionId, watch: SocketWatch, meter: Arc<Meter>, proxied: bool },
    /// The probe was answered (status, Location header) or failed, after `u32` redirects.
    Probe(ConnectionId, Result<(u16, Option<String>), RequestFailure>, u32),
    /// The POST was answered or failed. `ended`: the answer came after the whole body (the
    /// task then closed its connection itself).
    Post { conn: ConnectionId, result: Result<u16, RequestFailure>, ended: bool },
}

/// One request in flight.
struct RequestTask {
    task: tokio::task::JoinHandle<()>,
    /// Once the POST is connected.
    link: Option<Link>,
}

struct Link {
    watch: SocketWatch,
    meter: Arc<Meter>,
    /// Whether the socket's counters are the server's connection's (not a proxy's).
    observes: bool,
}

/// When the kernel's counters are read next: every `PROGRESS_INTERVAL`, and sooner while
/// handed-over bytes wait for their acknowledgement (see `PROGRESS_FIRST_RETRY`).
struct ProgressClock {
    next: Instant,
    retry: Duration,
    unconfirmed: u64,
}

impl ProgressClock {
    fn new() -> Self {
        ProgressClock { next: Instant::now() + PROGRESS_INTERVAL, retry: PROGRESS_FIRST_RETRY, unconfirmed: 0 }
    }

    /// The counters were just read; `unconfirmed` bytes are still in flight. A change (more
    /// handed over, or some confirmed) starts the quick retries again; a peer that stops
    /// reading leaves bytes unconfirmed for long: back off to the regular interval then.
    fn reported(&mut self, unconfirmed: u64) {
        let changed = unconfirmed != self.unconfirmed;
        self.unconfirmed = unconfirmed;
        if unconfirmed == 0 {
            self.retry = PROGRESS_FIRST_RETRY;
            self.next = Instant::now() + PROGRESS_INTERVAL;
            return;
        }
        if changed {
            self.retry = PROGRESS_FIRST_RETRY;
        }
        self.next = Instant::now() + self.retry;
        self.retry = (self.retry * 2).min(PROGRESS_INTERVAL);
    }
}

struct MediaTransport {
    shared: Arc<Shared<IngestSession>>,
    client: Client,
    url: IngestUrl,
    /// Where the POST goes: the URL, or where a redirected probe ended up.
    post_url: String,
    follow_redirects: bool,
    /// Credentials or headers that must not follow a redirect to another origin.
    secrets: bool,
    report: ReportFn,
    conns: HashMap<ConnectionId, RequestTask>,
    /// The transport's words for the last failure, for reports.
    last_detail: Option<String>,
    clock: ProgressClock,
}

impl Transport for MediaTransport {
    type Machine = IngestSession;
    type Net = NetEvent;

    fn perform(&mut self, action: Action, net: &Net<NetEvent>) -> Option<Pending> {
        match action {
            Action::SendProbe { connection } => {
                gst::debug!(CAT, "probe {connection:?}");
                // Every probe starts from the configured URL: a redirect may change.
                self.post_url = self.url.as_str().to_string();
                let url = self.post_url.clone();
                self.send_probe(connection, &url, 0, net);
                None
            }
            Action::OpenPost { connection } => {
                self.open_post(connection, net);
                None
            }
            Action::Close { connection } => {
                self.read_progress(connection);
                let request = self.conns.remove(&connection);
                self.shared.unregister(connection.0);
                let shared = self.shared.clone();
                Some(Box::pin(async move {
                    if let Some(r) = request {
                        // A reset, then wait until the task (and with it the socket) is gone:
                        // nothing of this connection goes out after the next one's bytes.
                        if let Some(link) = &r.link {
                            let _ = link.watch.reset_on_close();
                        }
                        r.task.abort();
                        let _ = r.task.await;
                    }
                    shared.with(|s, now| s.handle_input(Input::Closed { connection }, now));
                }))
            }
        }
    }

    fn on_net(&mut self, ev: NetEvent, net: &Net<NetEvent>) {
        gst::trace!(CAT, "net event");
        match ev {
            NetEvent::Connected { conn, watch, meter, proxied } => {
                let observes = !proxied && watch.counters().is_some();
                // Fresh windows between fragments: see `SocketWatch::probe_when_idle`.
                if let Some(Err(e)) = observes.then(|| watch.probe_when_idle(WINDOW_PROBE_AFTER)) {
                    gst::debug!(CAT, "POST {conn:?}: no keepalive probes ({e}); an idle POST's window may look stale");
                }
                gst::debug!(CAT, "POST {conn:?} connected; kernel counters of the server's connection: {observes}");
                if let Some(r) = self.conns.get_mut(&conn) {
                    r.link = Some(Link { watch, meter, observes });
                }
                self.shared
                    .with(|s, now| s.handle_input(Input::Connected { connection: conn, observes_acks: observes }, now));
            }
            NetEvent::Probe(conn, result, hops) => {
                self.conns.remove(&conn);
                let input = match result {
                    Ok((status, location)) if (300..400).contains(&status) => match self.redirect(&location, hops) {
                        Ok(to) => {
                            let from = redact_url(&self.post_url);
                            (self.report)(Report::Redirected { from, to: redact_url(&to), status });
                            self.post_url = to.clone();
                            self.send_probe(conn, &to, hops + 1, net);
                            return;
                        }
                        Err(why) => {
                            self.last_detail = Some(why);
                            Input::ProbeResponse { connection: conn, status }
                        }
                    },
                    Ok((status, _)) => Input::ProbeResponse { connection: conn, status },
                    Err(f) => {
                        self.last_detail = Some(f.detail);
                        Input::Failed { connection: conn, error: f.cause }
                    }
                };
                self.shared.with(|s, now| s.handle_input(input, now));
            }
            NetEvent::Post { conn, result, ended } => {
                // A last reading, then the end: the session asks to close what is not done.
                self.read_progress(conn);
                if ended {
                    self.conns.remove(&conn);
                    self.shared.unregister(conn.0);
                }
                let input = match result {
                    Ok(status) => Input::Response { connection: conn, status },
                    Err(f) => {
                        self.last_detail = Some(f.detail);
                        Input::Failed { connection: conn, error: f.cause }
                    }
                };
                self.shared.with(|s, now| s.handle_input(input, now));
            }
        }
    }

    fn report(&mut self, event: SessionEvent) {
        let detail = match &event {
            SessionEvent::Disconnected { .. } | SessionEvent::GaveUp { .. } => self.last_detail.clone(),
            _ => None,
        };
        (self.report)(Report::Session { event, detail });
    }

    fn next_tick(&self) -> Option<Instant> {
        self.conns.values().any(|c| c.link.is_some()).then_some(self.clock.next)
    }

    fn tick(&mut self) {
        let open: Vec<ConnectionId> = self.conns.iter().filter(|(_, c)| c.link.is_some()).map(|(id, _)| *id).collect();
        for conn in open {
            self.read_progress(conn);
        }
        let unconfirmed = self.shared.peek(IngestSession::awaiting_confirmation);
        self.clock.reported(unconfirmed);
    }
}

impl MediaTransport {
    /// Tells the session what the transport wrote on `conn` and what the kernel says of it.
    fn read_progress(&mut self, conn: ConnectionId) {
        let Some(link) = self.conns.get(&conn).and_then(|c| c.link.as_ref()) else { return };
        let marks = link.meter.take_marks();
        let reading = link.observes.then(|| link.watch.counters()).flatten().map(|c| KernelReading {
            wire_written: link.meter.wire(),
            unacked: c.unacked,
            peer_window: c.peer_window,
        });
        gst::trace!(CAT, "POST {conn:?}: {} marks, {reading:?}", marks.len());
        self.shared.with(|s, now| {
            for mark in marks {
                s.handle_input(Input::Flushed { connection: conn, mark }, now);
            }
            if let Some(reading) = reading {
                s.handle_input(Input::Progress { connection: conn, reading }, now);
            }
        });
    }

    /// Where a probe's redirect leads, if it may be followed.
    fn redirect(&self, location: &Option<String>, hops: u32) -> Result<String, String> {
        if let (Some(location), false) = (location, self.follow_redirects) {
            return Err(format!(
                "the probe was redirected to {}; set follow-redirects=true to follow",
                redact_url(location)
            ));
        }
        redirect::next_hop(&self.post_url, location.as_deref(), hops, self.secrets)
    }

    fn send_probe(&mut self, connection: ConnectionId, url: &str, hops: u32, net: &Net<NetEvent>) {
        let net = net.clone();
        let client = self.client.clone();
        let target = Target::parse(url);
        let task = RUNTIME.spawn(async move {
            let result = async {
                let target = target.map_err(|e| RequestFailure::new(TransportError::Other, e))?;
                let mut conn = client.connect(&target).await?;
                let req = client.post(&target, empty_body(), Some(0));
                let resp = conn.exchange(req).await?;
                let location =
                    resp.headers().get(http::header::LOCATION).and_then(|l| l.to_str().ok()).map(str::to_string);
                Ok((resp.status().as_u16(), location))
            }
            .await;
            gst::debug!(CAT, "probe {connection:?}: {result:?}");
            let _ = net.send(NetEvent::Probe(connection, result, hops));
        });
        self.conns.insert(connection, RequestTask { task, link: None });
    }

    fn open_post(&mut self, connection: ConnectionId, net: &Net<NetEvent>) {
        let net = net.clone();
        let client = self.client.clone();
        let shared = self.shared.clone();
        let target = Target::parse(&self.post_url);
        let task = RUNTIME.spawn(async move {
            let target = match target {
                Ok(t) => t,
                Err(e) => {
                    let result = Err(RequestFailure::new(TransportError::Other, e));
                    let _ = net.send(NetEvent::Post { conn: connection, result, ended: false });
                    return;
                }
            };
            let mut conn = match client.connect(&target).await {
                Ok(c) => c,
                Err(f) => {
                    let _ = net.send(NetEvent::Post { conn: connection, result: Err(f), ended: false });
                    return;
                }
            };
            let Ok(watch) = conn.watch.try_clone() else {
                let f = RequestFailure::new(TransportError::Other, "cannot watch the connection's socket");
                let _ = net.send(NetEvent::Post { conn: connection, result: Err(f), ended: false });
                return;
            };
            let meter = conn.meter.clone();
            let _ =
                net.send(NetEvent::Connected { conn: connection, watch, meter: meter.clone(), proxied: conn.proxied });
            let ended = Arc::new(AtomicBool::new(false));
            let body = BodyStream { shared, conn: connection, meter, ended: ended.clone(), busy: false, taken: 0 };
            let req = client.post(&target, body.boxed_unsync(), None);
            let result = conn.exchange(req).await.map(|r| r.status().as_u16());
            let ended = ended.load(Ordering::Acquire);
            let _ = net.send(NetEvent::Post { conn: connection, result, ended });
            if !ended {
                // Not the graceful end: hold the connection until the driver resets it.
                std::future::pending::<()>().await;
            }
        });
        self.conns.insert(connection, RequestTask { task, link: None });
    }
}

fn empty_body() -> Body {
    http_body_util::Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// The chunked POST body, pulled from the session by hyper: one HTTP chunk per slice the
/// session hands over.
struct BodyStream {
    shared: Arc<Shared<IngestSession>>,
    conn: ConnectionId,
    meter: Arc<Meter>,
    /// Set when the session ended the body.
    ended: Arc<AtomicBool>,
    /// Data was handed over since the body was last idle.
    busy: bool,
    taken: u64,
}

impl http_body::Body for BodyStream {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        // Register before asking, so that data arriving in between wakes us.
        self.shared.register(self.conn.0, cx.waker());
        let conn = self.conn;
        match self.shared.quietly(|s, now| s.poll_transmit(conn, now)) {
            Transmit::Data(b) => {
                let len = b.len() as u64;
                self.meter.body_taken(len);
                let before = self.taken;
                self.taken += len;
                if self.taken / PROGRESS_BYTES != before / PROGRESS_BYTES {
                    self.shared.tick_now();
                }
                self.busy = true;
                // What was handed over may make room for a waiting render().
                self.shared.nudge(false);
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            Transmit::End => {
                self.ended.store(true, Ordering::Release);
                self.shared.nudge(true);
                Poll::Ready(None)
            }
            Transmit::Wait => {
                // The body went idle (a fragment was handed over whole): read the counters
                // soon, so that what it confirms is freed before the next fragment piles up.
                if std::mem::take(&mut self.busy) {
                    self.shared.tick_now();
                }
                Poll::Pending
            }
        }
    }
}
