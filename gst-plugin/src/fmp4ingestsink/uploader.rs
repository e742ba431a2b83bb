//! Drives an [`IngestSession`] over HTTP with reqwest, as tasks on the shared runtime.
//!
//! The session decides; the uploader performs its actions (probe, open the chunked POST, close)
//! and reports what the network did. The POST body is pulled from the session by hyper itself
//! ([`BodyStream`]): the session hands over bytes only when the connection can take them, so
//! it always knows what was written, and the fragments wait in its forward buffer rather than
//! in a channel. While a POST is up, the kernel's acknowledgement counters ([`TcpWatch`]) are
//! reported so that the session knows what the server cannot have received.
//!
//! The element never waits on a socket: it hands over the header and fragments, and hears
//! about what happened through a callback.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fmp4ingest_core::fragment::Fragment;
use fmp4ingest_core::ingest_url::{IngestUrl, redact_url};
use fmp4ingest_core::session::{
    Action, ConnectionId, IngestSession, Input, SessionConfig, SessionEvent, StreamStats, Transmit, TransportError,
};
use futures_util::Stream;
use tokio::sync::{Notify, mpsc, watch};

use super::http_client::{self, ClientSettings};
use super::tcp_watch::{ConnectionLog, ConnectionTap, TcpWatch};
use crate::runtime::RUNTIME;

static CAT: std::sync::LazyLock<gst::DebugCategory> = std::sync::LazyLock::new(|| {
    gst::DebugCategory::new("fmp4ingesthttp", gst::DebugColorFlags::empty(), Some("fmp4ingestsink HTTP transport"))
});

/// How often the kernel's counters are read while a POST is up, at least.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

/// While handed-over bytes wait for their acknowledgement, the counters are read again after
/// this, doubling up to `PROGRESS_INTERVAL` while nothing new is confirmed: a fragment just
/// written is confirmed within a round trip or so, and everything it holds for resending (the
/// oldest fragment of the ring) is freed then, not up to 200 ms later while more piles up.
const PROGRESS_FIRST_RETRY: Duration = Duration::from_millis(1);

/// A waiting `render()` looks at the session again after this at the latest: it may give up
/// without any data moving.
const ROOM_RECHECK: Duration = Duration::from_millis(250);

/// Body bytes handed to the connection after which the counters are read again at once.
const PROGRESS_BYTES: u64 = 256 << 10;

/// Most body bytes hyper can hold before writing them to the socket: its write buffer limit
/// (8 KiB + 100 x 4 KiB in hyper 1.x), rounded up; plus one chunk of any size.
const HYPER_BUFFER_BOUND: u64 = 512 * 1024;
/// Most plaintext rustls buffers before writing records, rounded up.
const TLS_BUFFER_BOUND: u64 = 80 * 1024;

/// How the HTTP client is set up.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub url: IngestUrl,
    pub client: ClientSettings,
    /// SO_SNDBUF for POST connections; `None` leaves the kernel's autotuning.
    pub send_buffer: Option<u32>,
    /// Follow a redirect of the probe (the POST then goes where the probe ended up).
    pub follow_redirects: bool,
}

/// Unread bytes at the server below this are taken as noise of the window it advertises (its
/// granularity, autotuning), not as a server that stopped reading.
const UNREAD_NOTICED: u64 = 16 * 1024;

/// Redirects of one probe followed at most.
const MAX_REDIRECTS: u32 = 5;

/// What the uploader tells the element.
#[derive(Debug, Clone)]
pub enum Report {
    /// A session event, with the transport's own words for the last failure (e.g.
    /// "connection refused").
    Session { event: SessionEvent, detail: Option<String> },
    /// The probe was redirected; the POST goes to `to` (both without credentials).
    Redirected { from: String, to: String, status: u16 },
}

pub type ReportFn = Arc<dyn Fn(Report) + Send + Sync>;

struct Shared {
    session: Mutex<IngestSession>,
    /// Wakes the driver task.
    wake: Notify,
    /// POST bodies waiting for data, by connection (an abandoned one may still be polled).
    body_wakers: Mutex<HashMap<ConnectionId, Waker>>,
    /// Notified when the transport took data: room may have been made in the forward buffer.
    room: Notify,
    /// Notified when a body handed over `PROGRESS_BYTES` since the kernel's counters were last
    /// read: the data held for resending is freed as soon as it is acknowledged, not up to
    /// `PROGRESS_INTERVAL` later (a file pushed at loopback speed would pile up in between).
    progress_due: Notify,
    epoch: Instant,
    done: watch::Sender<bool>,
}

impl Shared {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Runs `f` on the session, then wakes whoever may have something new to do.
    fn with_session<R>(&self, f: impl FnOnce(&mut IngestSession, Duration) -> R) -> R {
        let now = self.now();
        let r = {
            let mut s = self.session.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut s, now)
        };
        self.wake.notify_one();
        for (_, w) in self.body_wakers.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            w.wake();
        }
        r
    }
}

/// Handle of a running upload. Dropping it closes every connection.
pub struct Uploader {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
    done: watch::Receiver<bool>,
}

impl Uploader {
    /// Builds the client and starts the session (the probe goes out at once).
    pub fn start(http: HttpConfig, mut session: SessionConfig, report: ReportFn) -> Result<Uploader, String> {
        crate::runtime::install_crypto_provider();
        let log = ConnectionLog::default();
        let client = http_client::builder(&http.client)?
            .connector_layer(ConnectionTap { log: log.clone() })
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        let (done_tx, done_rx) = watch::channel(false);
        // Bound on the request head: request line, Host, User-Agent, Transfer-Encoding, and
        // the configured headers.
        let c = &http.client;
        let configured: usize = c.headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum::<usize>()
            + c.basic.as_ref().map_or(0, |(u, p)| 32 + 2 * (u.len() + p.len()))
            + c.content_type.as_ref().map_or(0, |t| t.len() + 16);
        let head_bound = 512 + 2 * http.url.as_str().len() as u64 + c.user_agent.len() as u64 + configured as u64;
        // The acknowledged count lags by at most the head bound's slack (see acked_body).
        session.delivery_slack_bytes = head_bound;
        let shared = Arc::new(Shared {
            session: Mutex::new(IngestSession::new(session)),
            wake: Notify::new(),
            body_wakers: Mutex::new(HashMap::new()),
            room: Notify::new(),
            progress_due: Notify::new(),
            epoch: Instant::now(),
            done: done_tx,
        });
        shared.with_session(|s, now| s.start(now));
        let driver = Driver {
            shared: shared.clone(),
            client,
            post_url: http.url.as_str().to_string(),
            url: http.url.clone(),
            follow_redirects: http.follow_redirects,
            secrets: http.client.basic.is_some() || !http.client.headers.is_empty() || http.url.has_credentials(),
            tls: http.url.is_tls(),
            head_bound,
            report,
            log,
            send_buffer: http.send_buffer,
            conns: HashMap::new(),
            last_detail: None,
        };
        let task = RUNTIME.spawn(driver.run());
        Ok(Uploader { shared, task, done: done_rx })
    }

    pub fn set_header(&self, header: Bytes) {
        self.shared.with_session(|s, now| s.set_header(header, now));
    }

    pub fn push_fragment(&self, fragment: Fragment) {
        self.shared.with_session(|s, now| s.push_fragment(fragment, now));
    }

    /// Asks for the graceful end: the rest of the queue, the last chunk, the final response.
    pub fn finish(&self) {
        self.shared.with_session(|s, now| s.finish(now));
    }

    /// Live upstream: beyond the forward buffer's bound the session drops the oldest. Not
    /// live: it drops nothing, and `render()` waits for room (see [`RoomWaiter`]).
    pub fn set_drop_oldest(&self, drop_oldest: bool) {
        self.shared.with_session(|s, _| s.set_drop_oldest(drop_oldest));
    }

    /// Something to wait on for room in the forward buffer, usable without holding the uploader.
    pub fn room_waiter(&self) -> RoomWaiter {
        RoomWaiter { shared: self.shared.clone() }
    }

    /// The session's figures now, and the driver's clock for them.
    pub fn stats(&self) -> (StreamStats, Duration) {
        let now = self.shared.now();
        let mut s = self.shared.session.lock().unwrap_or_else(|e| e.into_inner());
        (s.stats(now), now)
    }

    /// Something to wait on for the end of the session, usable without holding the uploader.
    pub fn waiter(&self) -> DoneWaiter {
        DoneWaiter { done: self.done.clone() }
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        // Dropping the task drops every connection it holds.
        self.task.abort();
    }
}

/// Waits for room in the forward buffer.
pub struct RoomWaiter {
    shared: Arc<Shared>,
}

impl RoomWaiter {
    /// For a non-live source: blocks until the forward buffer has room, the session is done,
    /// or `cancelled()` holds (`wake` is notified when it may have changed). Never used for a
    /// live source, which must not wait on the network.
    pub fn wait(&self, wake: &Notify, cancelled: impl Fn() -> bool) {
        let shared = &self.shared;
        let ready = || {
            let s = shared.session.lock().unwrap_or_else(|e| e.into_inner());
            s.has_room() || s.is_done()
        };
        if ready() {
            return;
        }
        RUNTIME.block_on(async {
            loop {
                let room = shared.room.notified();
                let woken = wake.notified();
                tokio::pin!(room, woken);
                // Register before checking, so that a notification in between is not lost.
                room.as_mut().enable();
                woken.as_mut().enable();
                if ready() {
                    return;
                }
                if cancelled() {
                    return;
                }
                tokio::select! {
                    _ = room => {}
                    _ = woken => {}
                    // The session may give up without any data moving.
                    _ = tokio::time::sleep(ROOM_RECHECK) => {}
                }
            }
        })
    }
}

/// How a wait for the end of the session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    Done,
    TimedOut,
    Cancelled,
}

/// Waits for the session to be done.
pub struct DoneWaiter {
    done: watch::Receiver<bool>,
}

impl DoneWaiter {
    /// Blocks the calling (non-runtime) thread until the session is done, `limit` passes, or
    /// `cancelled()` holds; `wake` is notified (notify_waiters) whenever `cancelled` may have
    /// changed.
    pub fn wait(mut self, limit: Duration, wake: &Notify, cancelled: impl Fn() -> bool) -> WaitOutcome {
        RUNTIME.block_on(async {
            let cancel = async {
                loop {
                    let n = wake.notified();
                    tokio::pin!(n);
                    // Register before checking, so that a notification in between is not lost.
                    n.as_mut().enable();
                    if cancelled() {
                        return;
                    }
                    n.await;
                }
            };
            tokio::select! {
                r = tokio::time::timeout(limit, self.done.wait_for(|d| *d)) => {
                    if r.is_ok() { WaitOutcome::Done } else { WaitOutcome::TimedOut }
                }
                _ = cancel => WaitOutcome::Cancelled,
            }
        })
    }
}

/// What the request tasks tell the driver.
enum NetEvent {
    /// hyper started pulling the body of this POST: its connection is up.
    BodyStarted(ConnectionId),
    /// The probe was answered (status, Location header) or failed, after `u32` redirects.
    Probe(ConnectionId, Result<(u16, Option<String>), (TransportError, String)>, u32),
    /// The POST was answered or failed.
    Post(ConnectionId, Result<u16, (TransportError, String)>),
}

/// Body bytes and chunks handed to hyper on one POST.
#[derive(Debug, Default)]
struct BodyCounters {
    bytes: AtomicU64,
    /// Exact chunked framing of what was handed over: hex size, CRLF, CRLF per chunk.
    framing: AtomicU64,
    chunks: AtomicU64,
    largest_chunk: AtomicU64,
}

/// One request in flight.
struct RequestTask {
    task: tokio::task::JoinHandle<()>,
    body: Option<Arc<BodyCounters>>,
    watch: Option<TcpWatch>,
    /// Largest receive window the peer advertised: its socket buffer with nothing unread.
    max_window: u64,
}

/// One reading of a POST's kernel counters (see [`Input::Progress`]).
struct Reading {
    acked: u64,
    wire_acked: u64,
    unacked: u64,
    /// 0 below `UNREAD_NOTICED`.
    unread: u64,
    /// The window the peer advertises now (0 when unknown), and the largest so far.
    window: u64,
    max_window: u64,
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

    /// The session now has `unconfirmed` bytes in flight: a change (more handed over, or some
    /// confirmed) starts the quick retries again.
    fn saw(&mut self, unconfirmed: u64) {
        if unconfirmed != self.unconfirmed {
            self.unconfirmed = unconfirmed;
            self.retry = PROGRESS_FIRST_RETRY;
            if unconfirmed > 0 {
                self.next = self.next.min(Instant::now() + self.retry);
            }
        }
    }

    /// The counters were just read; `unconfirmed` bytes are still in flight.
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
        // A peer that stops reading leaves bytes unconfirmed for long: back off to the
        // regular interval rather than spin.
        self.retry = (self.retry * 2).min(PROGRESS_INTERVAL);
    }
}

struct Driver {
    shared: Arc<Shared>,
    client: reqwest::Client,
    url: IngestUrl,
    /// Where the POST goes: the URL, or where a redirected probe ended up.
    post_url: String,
    follow_redirects: bool,
    /// Credentials or headers that must not follow a redirect to another origin.
    secrets: bool,
    tls: bool,
    head_bound: u64,
    report: ReportFn,
    log: ConnectionLog,
    send_buffer: Option<u32>,
    conns: HashMap<ConnectionId, RequestTask>,
    /// The transport's words for the last failure, for reports.
    last_detail: Option<String>,
}

impl Driver {
    async fn run(mut self) {
        let (net_tx, mut net_rx) = mpsc::unbounded_channel::<NetEvent>();
        let mut progress = ProgressClock::new();
        loop {
            let (actions, events, timeout, done, unconfirmed) = {
                let mut s = self.shared.session.lock().unwrap_or_else(|e| e.into_inner());
                let actions: Vec<Action> = std::iter::from_fn(|| s.poll_action()).collect();
                let events: Vec<SessionEvent> = std::iter::from_fn(|| s.poll_event()).collect();
                (actions, events, s.poll_timeout(), s.is_done(), s.awaiting_confirmation())
            };
            progress.saw(unconfirmed);
            for a in actions {
                self.perform(a, &net_tx);
            }
            for event in events {
                let detail = match &event {
                    SessionEvent::Disconnected { .. } | SessionEvent::GaveUp { .. } => self.last_detail.clone(),
                    _ => None,
                };
                (self.report)(Report::Session { event, detail });
            }
            if done {
                let _ = self.shared.done.send(true);
            }
            if Instant::now() >= progress.next {
                self.report_progress();
                progress.reported(self.unconfirmed());
            }
            let watching = self.conns.values().any(|c| c.watch.is_some());
            let wake_at = match (timeout.map(|t| self.shared.epoch + t), watching) {
                (Some(t), true) => Some(t.min(progress.next)),
                (Some(t), false) => Some(t),
                (None, true) => Some(progress.next),
                (None, false) => None,
            };
            let sleep = async {
                match wake_at {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.shared.wake.notified() => {}
                _ = self.shared.progress_due.notified() => {
                    self.report_progress();
                    progress.reported(self.unconfirmed());
                }
                _ = sleep => {
                    self.shared.with_session(|s, now| s.handle_timeout(now));
                }
                Some(ev) = net_rx.recv() => self.on_net(ev, &net_tx),
            }
        }
    }

    /// See [`IngestSession::awaiting_confirmation`] (and `ProgressClock`).
    fn unconfirmed(&self) -> u64 {
        self.shared.session.lock().unwrap_or_else(|e| e.into_inner()).awaiting_confirmation()
    }

    /// Body bytes the peer has certainly received on `conn`, the kernel's raw count of
    /// acknowledged bytes, the bytes in its send queue, the bytes the server's kernel holds
    /// unread (0 below `UNREAD_NOTICED`, window noise), and the peer's windows.
    ///
    /// Two lower bounds, the larger wins: what the kernel acknowledged minus the most that can
    /// be framing (request head, chunk headers, TLS records) — exact for plain HTTP, drifting
    /// with TLS; and what was handed over minus what can still sit in the send queue and in
    /// hyper's and rustls' buffers — never drifting, but coarse. Then what the server has not
    /// read yet comes off: acknowledged bytes still in its socket buffer, the difference
    /// between the largest window it advertised (an empty buffer) and the current one. A server
    /// that stops reading and drops its connection loses those.
    fn acked_body(&mut self, conn: ConnectionId) -> Option<Reading> {
        let head_bound = self.head_bound;
        let tls = self.tls;
        let c = self.conns.get_mut(&conn)?;
        let counters = c.watch.as_ref()?.counters()?;
        let body = c.body.as_ref()?;
        let chunks = body.chunks.load(Ordering::Relaxed);
        let bytes = body.bytes.load(Ordering::Relaxed);
        let mut overhead = head_bound + body.framing.load(Ordering::Relaxed);
        let mut buffered = HYPER_BUFFER_BOUND + body.largest_chunk.load(Ordering::Relaxed);
        if tls {
            overhead += 16 * 1024 + chunks * 32 + (bytes / 16384 + 1) * 32;
            buffered += TLS_BUFFER_BOUND;
        }
        let by_acks = counters.bytes_acked.saturating_sub(overhead);
        let by_queue = bytes.saturating_sub(counters.unacked + buffered);
        // Without the peer's window (Linux before 6.2) nothing shows unread bytes.
        let window = counters.peer_window.unwrap_or(0);
        c.max_window = c.max_window.max(window);
        let unread = if counters.peer_window.is_some() { c.max_window - window } else { 0 };
        let delivered = by_acks.max(by_queue).saturating_sub(unread);
        Some(Reading {
            acked: delivered,
            wire_acked: counters.bytes_acked,
            unacked: counters.unacked,
            unread: if unread >= UNREAD_NOTICED { unread } else { 0 },
            window,
            max_window: c.max_window,
        })
    }

    /// Reads the counters of `conn` and tells the session; returns the body bytes acknowledged.
    fn progress(&mut self, conn: ConnectionId) -> Option<u64> {
        let r = self.acked_body(conn)?;
        gst::trace!(
            CAT,
            "POST {conn:?}: {} body bytes acknowledged, {} in the send queue, {} unread, window {} (largest {})",
            r.acked,
            r.unacked,
            r.unread,
            r.window,
            r.max_window
        );
        let input = Input::Progress {
            connection: conn,
            acked: r.acked,
            wire_acked: r.wire_acked,
            unacked: r.unacked,
            unread: r.unread,
            window: r.max_window,
        };
        self.shared.with_session(|s, now| s.handle_input(input, now));
        // What was delivered is no longer in flight: a waiting render() may go on.
        self.shared.room.notify_waiters();
        Some(r.acked)
    }

    fn report_progress(&mut self) {
        let open: Vec<ConnectionId> = self.conns.iter().filter(|(_, c)| c.watch.is_some()).map(|(id, _)| *id).collect();
        for conn in open {
            self.progress(conn);
        }
    }

    /// Ends the driver's record of a connection, returning the final acknowledged count (told
    /// to the session first, as a last reading).
    fn end(&mut self, conn: ConnectionId) -> Option<u64> {
        let acked = self.progress(conn);
        if let Some(c) = self.conns.remove(&conn) {
            c.task.abort();
        }
        self.shared.body_wakers.lock().unwrap_or_else(|e| e.into_inner()).remove(&conn);
        acked
    }

    /// Where a probe's redirect leads, if it may be followed.
    fn redirect(&self, location: &Option<String>, hops: u32) -> Result<String, String> {
        let Some(location) = location else { return Err("a redirect without a Location header".into()) };
        if !self.follow_redirects {
            return Err(format!(
                "the probe was redirected to {}; set follow-redirects=true to follow",
                redact_url(location)
            ));
        }
        if hops >= MAX_REDIRECTS {
            return Err(format!("more than {MAX_REDIRECTS} redirects"));
        }
        resolve_redirect(&self.post_url, location, self.secrets)
    }

    fn send_probe(&mut self, connection: ConnectionId, url: &str, hops: u32, net: &mpsc::UnboundedSender<NetEvent>) {
        let req = self.client.post(url).header(reqwest::header::CONTENT_LENGTH, "0").body(Vec::<u8>::new());
        let net = net.clone();
        let task = RUNTIME.spawn(async move {
            let result = match req.send().await {
                Ok(resp) => {
                    let location =
                        resp.headers().get(reqwest::header::LOCATION).and_then(|l| l.to_str().ok()).map(str::to_string);
                    Ok((resp.status().as_u16(), location))
                }
                Err(e) => Err((classify(&e), describe(e))),
            };
            let _ = net.send(NetEvent::Probe(connection, result, hops));
        });
        self.conns.insert(connection, RequestTask { task, body: None, watch: None, max_window: 0 });
    }

    fn on_net(&mut self, ev: NetEvent, net: &mpsc::UnboundedSender<NetEvent>) {
        match ev {
            NetEvent::BodyStarted(conn) => {
                let addresses = self.log.take_newest();
                let watch = addresses.and_then(|(local, remote)| TcpWatch::find(local, remote));
                let observes_acks = watch.is_some();
                gst::debug!(CAT, "POST {conn:?} connected {addresses:?}; kernel counters: {observes_acks}");
                if let (Some(w), Some(size)) = (&watch, self.send_buffer) {
                    if !w.set_send_buffer(size) {
                        gst::warning!(CAT, "could not set the send buffer of POST {conn:?} to {size} bytes");
                    }
                }
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.watch = watch;
                }
                self.shared
                    .with_session(|s, now| s.handle_input(Input::Connected { connection: conn, observes_acks }, now));
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
                    Err((error, detail)) => {
                        self.last_detail = Some(detail);
                        Input::Failed { connection: conn, error, acked: None }
                    }
                };
                self.shared.with_session(|s, now| s.handle_input(input, now));
            }
            NetEvent::Post(conn, result) => {
                let acked = self.end(conn);
                let input = match result {
                    Ok(status) => Input::Response { connection: conn, status, acked },
                    Err((error, detail)) => {
                        self.last_detail = Some(detail);
                        Input::Failed { connection: conn, error, acked }
                    }
                };
                self.shared.with_session(|s, now| s.handle_input(input, now));
            }
        }
    }

    fn perform(&mut self, action: Action, net: &mpsc::UnboundedSender<NetEvent>) {
        match action {
            Action::SendProbe { connection } => {
                // Every probe starts from the configured URL: a redirect may change.
                self.post_url = self.url.as_str().to_string();
                let url = self.post_url.clone();
                self.send_probe(connection, &url, 0, net);
            }
            Action::OpenPost { connection } => {
                let counters = Arc::new(BodyCounters::default());
                let body = BodyStream {
                    shared: self.shared.clone(),
                    conn: connection,
                    net: net.clone(),
                    started: false,
                    counters: counters.clone(),
                    busy: false,
                };
                let req = self.client.post(self.post_url.as_str()).body(reqwest::Body::wrap_stream(body));
                let task = spawn_request(req, connection, net, NetEvent::Post);
                self.conns.insert(connection, RequestTask { task, body: Some(counters), watch: None, max_window: 0 });
            }
            Action::Close { connection } => {
                let acked = self.end(connection);
                self.shared.with_session(|s, now| s.handle_input(Input::Closed { connection, acked }, now));
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        for (_, c) in self.conns.drain() {
            c.task.abort();
        }
    }
}

/// Where a redirect's `location` leads from `from`: an absolute http(s) URL. Refused when it
/// leaves HTTPS for HTTP, or changes origin (scheme, host, port) while credentials or extra
/// headers would go with it.
pub fn resolve_redirect(from: &str, location: &str, secrets: bool) -> Result<String, String> {
    let base = reqwest::Url::parse(from).map_err(|e| format!("cannot read the URL: {e}"))?;
    let to = base.join(location).map_err(|_| format!("a redirect to an invalid location {}", redact_url(location)))?;
    match (base.scheme(), to.scheme()) {
        ("https", "http") => {
            return Err(format!("a redirect from HTTPS to HTTP ({}) is not followed", redact_url(to.as_str())));
        }
        (_, "http" | "https") => {}
        (_, other) => return Err(format!("a redirect to a {other}: URL is not followed")),
    }
    if secrets && base.origin() != to.origin() {
        return Err(format!(
            "a redirect to another origin ({}) is not followed: the credentials and headers would go with it",
            redact_url(to.as_str())
        ));
    }
    Ok(to.to_string())
}

/// Sends a request on the runtime and reports its answer or failure as `wrap(...)`.
fn spawn_request(
    req: reqwest::RequestBuilder,
    connection: ConnectionId,
    net: &mpsc::UnboundedSender<NetEvent>,
    wrap: fn(ConnectionId, Result<u16, (TransportError, String)>) -> NetEvent,
) -> tokio::task::JoinHandle<()> {
    let net = net.clone();
    RUNTIME.spawn(async move {
        let result = match req.send().await {
            Ok(resp) => Ok(resp.status().as_u16()),
            Err(e) => Err((classify(&e), describe(e))),
        };
        let _ = net.send(wrap(connection, result));
    })
}

/// The chunked POST body, pulled from the session: one HTTP chunk per slice it hands over.
struct BodyStream {
    shared: Arc<Shared>,
    conn: ConnectionId,
    net: mpsc::UnboundedSender<NetEvent>,
    started: bool,
    counters: Arc<BodyCounters>,
    /// Data was handed over since the body was last idle.
    busy: bool,
}

impl Stream for BodyStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // hyper reads the body only once the connection is up and the request head is out.
        if !self.started {
            self.started = true;
            let _ = self.net.send(NetEvent::BodyStarted(self.conn));
        }
        // Register before asking, so that data arriving in between wakes us.
        self.shared.body_wakers.lock().unwrap_or_else(|e| e.into_inner()).insert(self.conn, cx.waker().clone());
        let now = self.shared.now();
        let t = self.shared.session.lock().unwrap_or_else(|e| e.into_inner()).poll_transmit(self.conn, now);
        match t {
            Transmit::Data(b) => {
                let len = b.len() as u64;
                // hyper frames each chunk as "<hex size>\r\n<data>\r\n".
                let hex_digits = u64::from((64 - len.leading_zeros()).div_ceil(4).max(1));
                let total = self.counters.bytes.fetch_add(len, Ordering::Relaxed) + len;
                if total / PROGRESS_BYTES != (total - len) / PROGRESS_BYTES {
                    self.shared.progress_due.notify_one();
                }
                self.counters.framing.fetch_add(hex_digits + 4, Ordering::Relaxed);
                self.counters.chunks.fetch_add(1, Ordering::Relaxed);
                self.counters.largest_chunk.fetch_max(len, Ordering::Relaxed);
                self.shared.room.notify_waiters();
                self.busy = true;
                Poll::Ready(Some(Ok(b)))
            }
            Transmit::End => {
                self.shared.wake.notify_one();
                Poll::Ready(None)
            }
            Transmit::Wait => {
                // The body went idle (a fragment was handed over whole): read the counters
                // soon, so that what it confirms is freed before the next fragment piles up.
                if std::mem::take(&mut self.busy) {
                    self.shared.progress_due.notify_one();
                }
                Poll::Pending
            }
        }
    }
}

pub fn classify(e: &reqwest::Error) -> TransportError {
    if e.is_timeout() {
        TransportError::Timeout
    } else if e.is_connect() {
        TransportError::Connect
    } else if e.is_body() || e.is_request() {
        TransportError::Write
    } else {
        TransportError::Other
    }
}

/// The error and its causes in one line, without the URL (it may carry credentials).
pub fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_that_may_be_followed() {
        let from = "https://a.example/live.isml/Streams(v)";
        assert_eq!(
            resolve_redirect(from, "/other.isml/Streams(v)", true).unwrap(),
            "https://a.example/other.isml/Streams(v)"
        );
        assert_eq!(
            resolve_redirect(from, "https://b.example/x.isml/Streams(v)", false).unwrap(),
            "https://b.example/x.isml/Streams(v)"
        );
        let e = resolve_redirect(from, "https://b.example/x.isml/Streams(v)", true).unwrap_err();
        assert!(e.contains("another origin"), "{e}");
        let e = resolve_redirect(from, "http://a.example/x", false).unwrap_err();
        assert!(e.contains("HTTPS to HTTP"), "{e}");
        let e = resolve_redirect(from, "ftp://a.example/x", false).unwrap_err();
        assert!(e.contains("ftp"), "{e}");
        // Credentials in a Location are never shown.
        let e = resolve_redirect(from, "https://u:pw@b.example/x", true).unwrap_err();
        assert!(!e.contains("pw@"), "{e}");
    }
}
