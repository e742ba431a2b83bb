// SPDX-License-Identifier: MPL-2.0
//! Drives one CMAF track's [`CmafSession`] over HTTP, as tasks on the shared runtime
//! (docs/protocol.md §6.2, §6.6).
//!
//! The session decides; this transport performs its actions on the driver skeleton: it opens a
//! connection when asked and keeps it for request after request (the probe, the header, one
//! segment each), sends each request with the method, framing and Content-Type the session
//! gives, and reports the answers and failures. Every request body is pulled from the session
//! by hyper ([`TrackBody`]): a segment still being produced goes out chunk by chunk as the
//! element hands its CMAF chunks over. A connection the session abandons with a request on it
//! is reset, so that nothing of it reaches the receiver after the next connection's requests.
//!
//! The element never waits on a socket: it hands over the header and chunks, hears what
//! happened through a callback, and only blocks for room (a source that is not live) or for
//! the end.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use fmp4ingest_core::cmaf::segment::CmafChunk;
use fmp4ingest_core::ingest_url::redact_url;
use fmp4ingest_core::session::cmaf::{
    Body, BodyLength, CmafAction, CmafEvent, CmafInput, CmafSession, CmafSessionConfig, Method, RequestKind,
};
use fmp4ingest_core::session::sparse::RequestId;
use fmp4ingest_core::session::{ConnectionId, StreamStats, TransportError};
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, LOCATION};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::sync::{Notify, mpsc};

use crate::driver::{self, HttpConfig, Machine, Net, Pending, Report, Shared, Transport, WaitOutcome};
use crate::http::redirect;
use crate::http::socket::SocketWatch;
use crate::http::{Client, Connection, RequestFailure, Target};
use crate::runtime::RUNTIME;

static CAT: std::sync::LazyLock<gst::DebugCategory> = std::sync::LazyLock::new(|| {
    gst::DebugCategory::new("fmp4ingesthttp", gst::DebugColorFlags::empty(), Some("fmp4ingestsink HTTP transport"))
});

/// The version of DASH-IF Live Media Ingest the requests say they follow, in the header the
/// specification suggests ("Ingest Source Identification").
const DASH_IF_INGEST: (&str, &str) = ("dash-if-ingest", "1.1");

/// An answer's body is read (so that the connection can carry the next request) up to this;
/// a longer one ends the connection.
const MAX_ANSWER: usize = 64 << 10;

impl Machine for CmafSession {
    type Action = CmafAction;
    type Event = CmafEvent;
    fn poll_action(&mut self, _now: Duration) -> Option<CmafAction> {
        CmafSession::poll_action(self)
    }
    fn poll_event(&mut self) -> Option<CmafEvent> {
        CmafSession::poll_event(self)
    }
    fn poll_timeout(&self) -> Option<Duration> {
        CmafSession::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Duration) {
        CmafSession::handle_timeout(self, now)
    }
    fn settled(&self) -> bool {
        self.is_done()
    }
}

pub type TrackReportFn = driver::ReportFn<CmafEvent>;

/// Handle of one track's uploads. Dropping it closes its connection.
pub struct TrackUploader {
    shared: Arc<Shared<CmafSession>>,
    task: tokio::task::JoinHandle<()>,
}

impl TrackUploader {
    /// Starts the session: the track's connection is opened at once.
    pub fn start(http: HttpConfig, config: CmafSessionConfig, live: bool, report: TrackReportFn) -> TrackUploader {
        let shared = Shared::new(CmafSession::new(config));
        shared.with(|s, now| {
            s.set_live(live);
            s.start(now);
        });
        let secrets = http.client.settings().basic.is_some()
            || !http.client.settings().headers.is_empty()
            || http.url.has_credentials();
        let transport = TrackTransport {
            shared: shared.clone(),
            client: http.client,
            url: http.url.as_str().to_string(),
            follow_redirects: http.follow_redirects,
            secrets,
            report,
            links: HashMap::new(),
            detail: None,
        };
        let task = RUNTIME.spawn(driver::run(shared.clone(), transport));
        TrackUploader { shared, task }
    }

    /// The track's CMAF header: the probe is followed by it on every connection.
    pub fn set_header(&self, header: Bytes) {
        self.shared.with(|s, now| s.set_header(header, now));
    }

    pub fn push_chunk(&self, chunk: &CmafChunk) {
        self.shared.with(|s, now| s.push_chunk(chunk, now));
    }

    /// The end: what is left goes, then the connection closes.
    pub fn finish(&self) {
        self.shared.with(|s, now| s.finish(now));
    }

    pub fn set_live(&self, live: bool) {
        self.shared.with(|s, _| s.set_live(live));
    }

    /// The session's figures now, and the driver's clock for them.
    pub fn stats(&self) -> (StreamStats, Duration) {
        let now = self.shared.now();
        (self.shared.quietly(|s, _| s.stats(now)), now)
    }

    pub fn waiter(&self) -> TrackWaiter {
        TrackWaiter { shared: self.shared.clone() }
    }
}

impl Drop for TrackUploader {
    fn drop(&mut self) {
        // Dropping the task drops every connection it holds.
        self.task.abort();
    }
}

/// Blocks a streaming thread on a track's session (never on a socket).
pub struct TrackWaiter {
    shared: Arc<Shared<CmafSession>>,
}

impl TrackWaiter {
    /// For a source that is not live: until the session has room, or is done.
    pub fn room(&self, cancel: &Notify, cancelled: impl Fn() -> bool) -> WaitOutcome {
        self.shared.block_until(|s| s.peek(CmafSession::has_room), None, cancel, cancelled)
    }

    /// Until the session is done and the element heard why, at most `limit`.
    pub fn done(&self, limit: Duration, cancel: &Notify, cancelled: impl Fn() -> bool) -> WaitOutcome {
        self.shared.block_until(Shared::settled, Some(limit), cancel, cancelled)
    }
}

/// A request the session asked for, for the connection's task.
#[derive(Debug, Clone, Copy)]
struct SendRequest {
    request: RequestId,
    kind: RequestKind,
    method: Method,
    length: BodyLength,
    content_type: &'static str,
}

/// What the connection tasks tell the driver.
enum NetEvent {
    /// The connection is up (again, after a redirect to another origin); its socket.
    Connected {
        conn: ConnectionId,
        watch: SocketWatch,
    },
    Failed {
        conn: ConnectionId,
        failure: RequestFailure,
    },
    Answered {
        conn: ConnectionId,
        request: RequestId,
        status: u16,
    },
    Redirected {
        from: String,
        to: String,
        status: u16,
    },
}

/// One connection and its task.
struct Link {
    task: tokio::task::JoinHandle<()>,
    requests: mpsc::UnboundedSender<SendRequest>,
    watch: Option<SocketWatch>,
    /// A request was sent and not answered yet, or its body did not end: closing must reset.
    busy: Busy,
}

/// Whether a connection has a request part way.
#[derive(Clone, Default)]
struct Busy {
    unanswered: Arc<AtomicBool>,
    body_open: Arc<AtomicBool>,
}

impl Busy {
    fn any(&self) -> bool {
        self.unanswered.load(Ordering::Acquire) || self.body_open.load(Ordering::Acquire)
    }
}

struct TrackTransport {
    shared: Arc<Shared<CmafSession>>,
    client: Client,
    url: String,
    follow_redirects: bool,
    /// Credentials or headers that must not follow a redirect to another origin.
    secrets: bool,
    report: TrackReportFn,
    links: HashMap<ConnectionId, Link>,
    /// The transport's words for the last failure.
    detail: Option<String>,
}

impl Transport for TrackTransport {
    type Machine = CmafSession;
    type Net = NetEvent;

    fn perform(&mut self, action: CmafAction, net: &Net<NetEvent>) -> Option<Pending> {
        match action {
            CmafAction::Connect { connection } => {
                gst::debug!(CAT, "{}: connecting ({connection:?})", redact_url(&self.url));
                let (tx, rx) = mpsc::unbounded_channel();
                let busy = Busy::default();
                let task = RUNTIME.spawn(connection_task(ConnectionTask {
                    id: connection,
                    client: self.client.clone(),
                    url: self.url.clone(),
                    shared: self.shared.clone(),
                    net: net.clone(),
                    requests: rx,
                    busy: busy.clone(),
                    follow_redirects: self.follow_redirects,
                    secrets: self.secrets,
                }));
                self.links.insert(connection, Link { task, requests: tx, watch: None, busy });
                None
            }
            CmafAction::Request { connection, request, kind, method, length, content_type } => {
                gst::debug!(CAT, "{}: {} {kind:?} {length:?}", redact_url(&self.url), method.as_str());
                if let Some(link) = self.links.get(&connection) {
                    link.busy.unanswered.store(true, Ordering::Release);
                    let _ = link.requests.send(SendRequest { request, kind, method, length, content_type });
                }
                None
            }
            CmafAction::Close { connection } => {
                let link = self.links.remove(&connection);
                self.shared.unregister(connection.0);
                Some(Box::pin(async move {
                    if let Some(link) = link {
                        // A request part way: a reset, so that none of it follows later bytes.
                        if link.busy.any()
                            && let Some(w) = &link.watch
                        {
                            let _ = w.reset_on_close();
                        }
                        link.task.abort();
                        let _ = link.task.await;
                    }
                }))
            }
        }
    }

    fn on_net(&mut self, ev: NetEvent, _net: &Net<NetEvent>) {
        let input = match ev {
            NetEvent::Connected { conn, watch } => {
                if let Some(link) = self.links.get_mut(&conn) {
                    let first = link.watch.is_none();
                    link.watch = Some(watch);
                    if !first {
                        return;
                    }
                }
                CmafInput::Connected { connection: conn }
            }
            NetEvent::Failed { conn, failure } => {
                gst::debug!(CAT, "{}: {conn:?} failed: {}", redact_url(&self.url), failure.detail);
                self.detail = Some(failure.detail);
                CmafInput::ConnectionFailed { connection: conn, error: failure.cause }
            }
            NetEvent::Answered { conn, request, status } => {
                gst::debug!(CAT, "{}: {conn:?} answered {status}", redact_url(&self.url));
                if status >= 300 {
                    // The status says it all: no older words of the transport with it.
                    self.detail = None;
                }
                CmafInput::Response { request, status }
            }
            NetEvent::Redirected { from, to, status } => {
                (self.report)(Report::Redirected { from, to, status });
                return;
            }
        };
        self.shared.with(|s, now| s.handle_input(input, now));
    }

    fn report(&mut self, event: CmafEvent) {
        let detail = match &event {
            CmafEvent::Disconnected { .. } | CmafEvent::GaveUp { .. } => self.detail.clone(),
            _ => None,
        };
        (self.report)(Report::Session { event, detail });
    }
}

/// What a connection's task needs.
struct ConnectionTask {
    id: ConnectionId,
    client: Client,
    url: String,
    shared: Arc<Shared<CmafSession>>,
    net: Net<NetEvent>,
    requests: mpsc::UnboundedReceiver<SendRequest>,
    busy: Busy,
    follow_redirects: bool,
    secrets: bool,
}

/// Opens the connection, then carries the session's requests one after the other until the
/// driver drops it. A failure is reported once; the task then waits to be aborted (the driver
/// resets the socket first when a request was on it).
async fn connection_task(mut t: ConnectionTask) {
    let failure = match run_connection(&mut t).await {
        Ok(()) => return,
        Err(f) => f,
    };
    let _ = t.net.send(NetEvent::Failed { conn: t.id, failure });
    std::future::pending::<()>().await;
}

async fn run_connection(t: &mut ConnectionTask) -> Result<(), RequestFailure> {
    let mut url = t.url.clone();
    let mut target = Target::parse(&url).map_err(|e| RequestFailure::new(TransportError::Other, e))?;
    let mut conn = open(t, &target).await?;
    loop {
        let send = tokio::select! {
            s = t.requests.recv() => match s {
                Some(s) => s,
                None => return Ok(()),
            },
            f = conn.closed() => return Err(f),
        };
        let body = if send.length == BodyLength::Known(0) {
            // hyper does not ask an empty body for its end: take it from the session here.
            t.shared.quietly(|s, now| s.poll_body(send.request, now));
            t.shared.nudge(true);
            empty()
        } else {
            t.busy.body_open.store(true, Ordering::Release);
            let open = t.busy.body_open.clone();
            let remaining = match send.length {
                BodyLength::Known(n) => Some(n),
                BodyLength::Chunked => None,
            };
            TrackBody { shared: t.shared.clone(), conn: t.id, request: send.request, open, remaining, ended: false }
                .boxed_unsync()
        };
        let mut status_and_body = exchange(t, &mut conn, &target, &send, body).await?;
        let mut hops = 0;
        while send.kind == RequestKind::Probe && (300..400).contains(&status_and_body.0) && t.follow_redirects {
            let to = match redirect::next_hop(&url, status_and_body.1.as_deref(), hops, t.secrets) {
                Ok(to) => to,
                Err(why) => {
                    gst::info!(CAT, "{}: {why}", redact_url(&url));
                    break;
                }
            };
            hops += 1;
            let _ = t.net.send(NetEvent::Redirected {
                from: redact_url(&url),
                to: redact_url(&to),
                status: status_and_body.0,
            });
            let next = Target::parse(&to).map_err(|e| RequestFailure::new(TransportError::Other, e))?;
            // A new connection: a server that redirects often closes the one it answered on.
            conn = open(t, &next).await?;
            (url, target) = (to, next);
            status_and_body = exchange(t, &mut conn, &target, &send, empty()).await?;
        }
        t.busy.unanswered.store(false, Ordering::Release);
        let _ = t.net.send(NetEvent::Answered { conn: t.id, request: send.request, status: status_and_body.0 });
    }
}

fn empty() -> crate::http::Body {
    http_body_util::Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Connects to `target` and tells the driver, with the socket to reset if need be.
async fn open(t: &ConnectionTask, target: &Target) -> Result<Connection, RequestFailure> {
    let conn = t.client.connect(target).await?;
    let watch = conn.watch.try_clone().map_err(|e| RequestFailure::connect("watching the connection's socket", &e))?;
    let _ = t.net.send(NetEvent::Connected { conn: t.id, watch });
    Ok(conn)
}

/// One request and its answer: the status and a Location, the answer's body read.
async fn exchange(
    t: &ConnectionTask,
    conn: &mut Connection,
    target: &Target,
    send: &SendRequest,
    body: crate::http::Body,
) -> Result<(u16, Option<String>), RequestFailure> {
    let method = match send.method {
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
    };
    let length = match send.length {
        BodyLength::Known(n) => Some(n),
        BodyLength::Chunked => None,
    };
    let mut req = t.client.request(method, target, body, length);
    let h = req.headers_mut();
    // The content-type property, when set, wins.
    if !h.contains_key(CONTENT_TYPE) {
        h.insert(CONTENT_TYPE, HeaderValue::from_static(send.content_type));
    }
    h.insert(HeaderName::from_static(DASH_IF_INGEST.0), HeaderValue::from_static(DASH_IF_INGEST.1));
    let resp = conn.exchange(req).await?;
    let status = resp.status().as_u16();
    let location = resp.headers().get(LOCATION).and_then(|l| l.to_str().ok()).map(str::to_string);
    conn.read_body(resp.into_body(), MAX_ANSWER).await?;
    Ok((status, location))
}

/// A request body, pulled from the session as the connection can take it: one HTTP chunk (or
/// one write, with a Content-Length) per piece the session hands over.
struct TrackBody {
    shared: Arc<Shared<CmafSession>>,
    conn: ConnectionId,
    request: RequestId,
    /// Cleared when the body ended.
    open: Arc<AtomicBool>,
    /// With a Content-Length, the bytes still to come: hyper asks no more once they came.
    remaining: Option<u64>,
    ended: bool,
}

impl TrackBody {
    /// The session ended the body: the answer is due from now on, and the driver must see the
    /// session's new timer.
    fn end(&mut self) {
        self.ended = true;
        self.open.store(false, Ordering::Release);
        self.shared.nudge(true);
    }
}

impl http_body::Body for TrackBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        // Register before asking, so that a chunk arriving in between wakes us.
        self.shared.register(self.conn.0, cx.waker());
        let request = self.request;
        match self.shared.quietly(|s, now| s.poll_body(request, now)) {
            Body::Data(b) => {
                if let Some(left) = self.remaining.as_mut() {
                    *left = left.saturating_sub(b.len() as u64);
                    if *left == 0 {
                        // The whole length: take the end from the session now.
                        self.shared.quietly(|s, now| s.poll_body(request, now));
                        self.end();
                    }
                }
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            Body::Wait => Poll::Pending,
            Body::End => {
                self.end();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}
