//! Drives an [`IngestSession`] over HTTP with reqwest, as a task on the shared runtime.
//!
//! The session decides; the uploader only performs its actions (probe, open the chunked POST,
//! write bytes, end the body, close) and reports back what the network did. The element talks
//! to it through [`Uploader`]: it hands over the header and fragments, never waits on a
//! socket, and hears about what happened through a callback.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fmp4ingest_core::fragment::Fragment;
use fmp4ingest_core::ingest_url::IngestUrl;
use fmp4ingest_core::session::{
    Action, ConnectionId, IngestSession, Input, SessionConfig, SessionEvent, TransportError,
};
use futures_util::Stream;
use tokio::sync::{Notify, mpsc, watch};

use crate::runtime::RUNTIME;

/// How the HTTP client is set up.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub url: IngestUrl,
    pub connect_timeout: Duration,
    pub user_agent: String,
}

/// What the uploader tells the element, with any detail the network gave.
#[derive(Debug, Clone)]
pub struct Report {
    pub event: SessionEvent,
    /// The transport's own words for the last failure (e.g. "connection refused").
    pub detail: Option<String>,
}

pub type ReportFn = Arc<dyn Fn(Report) + Send + Sync>;

struct Shared {
    session: Mutex<IngestSession>,
    /// Wakes the driver task after the element changed the session.
    wake: Notify,
    epoch: Instant,
    done: watch::Sender<bool>,
}

impl Shared {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn with_session<R>(&self, f: impl FnOnce(&mut IngestSession, Duration) -> R) -> R {
        let now = self.now();
        let mut s = self.session.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s, now)
    }
}

/// Handle of a running upload.
pub struct Uploader {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
    done: watch::Receiver<bool>,
}

impl Uploader {
    /// Builds the client and starts the session (the probe goes out at once).
    pub fn start(http: HttpConfig, session: SessionConfig, report: ReportFn) -> Result<Uploader, String> {
        crate::runtime::install_crypto_provider();
        let client = reqwest::Client::builder()
            .http1_only()
            .connect_timeout(http.connect_timeout)
            // Every request on its own connection: a failed POST must never be retried on a
            // pooled socket (spec §1.6 rule 5a).
            .pool_max_idle_per_host(0)
            // A streaming body cannot be replayed; a redirect would send it empty.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(http.user_agent.clone())
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        let (done_tx, done_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            session: Mutex::new(IngestSession::new(session)),
            wake: Notify::new(),
            epoch: Instant::now(),
            done: done_tx,
        });
        shared.with_session(|s, now| s.start(now));
        let driver =
            Driver { shared: shared.clone(), client, url: http.url, report, conns: HashMap::new(), last_detail: None };
        let task = RUNTIME.spawn(driver.run());
        Ok(Uploader { shared, task, done: done_rx })
    }

    pub fn set_header(&self, header: Bytes) {
        self.shared.with_session(|s, now| s.set_header(header, now));
        self.shared.wake.notify_one();
    }

    pub fn push_fragment(&self, fragment: Fragment) {
        self.shared.with_session(|s, now| s.push_fragment(fragment, now));
        self.shared.wake.notify_one();
    }

    /// Asks for the graceful end: the rest of the queue, the last chunk, the final response.
    pub fn finish(&self) {
        self.shared.with_session(|s, now| s.finish(now));
        self.shared.wake.notify_one();
    }

    /// Something to wait on for the end of the session, usable without holding the uploader.
    pub fn waiter(&self) -> DoneWaiter {
        DoneWaiter { done: self.done.clone() }
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

impl Drop for Uploader {
    fn drop(&mut self) {
        // Dropping the task drops every connection it holds.
        self.task.abort();
    }
}

/// One open POST.
struct PostConnection {
    /// Feeds the chunked body; dropping it ends the body.
    body: Option<mpsc::UnboundedSender<Bytes>>,
    task: tokio::task::JoinHandle<()>,
}

struct Driver {
    shared: Arc<Shared>,
    client: reqwest::Client,
    url: IngestUrl,
    report: ReportFn,
    conns: HashMap<ConnectionId, PostConnection>,
    /// The transport's words for the last failure, for reports.
    last_detail: Option<String>,
}

impl Driver {
    async fn run(mut self) {
        let (net_tx, mut net_rx) = mpsc::unbounded_channel::<(Input, Option<String>)>();
        loop {
            // Perform everything the session asked for, then tell the element what happened.
            let (actions, events, timeout, done) = self.shared.with_session(|s, _| {
                let actions: Vec<Action> = std::iter::from_fn(|| s.poll_action()).collect();
                let events: Vec<SessionEvent> = std::iter::from_fn(|| s.poll_event()).collect();
                (actions, events, s.poll_timeout(), s.is_done())
            });
            for a in actions {
                self.perform(a, &net_tx);
            }
            for event in events {
                let detail = match &event {
                    SessionEvent::Failed(_) => self.last_detail.clone(),
                    _ => None,
                };
                (self.report)(Report { event, detail });
            }
            if done {
                let _ = self.shared.done.send(true);
                // Keep going: the last connection may still be closing. The element drops us.
            }
            let sleep = async {
                match timeout {
                    Some(t) => tokio::time::sleep(t.saturating_sub(self.shared.now())).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.shared.wake.notified() => {}
                _ = sleep => {
                    self.shared.with_session(|s, now| s.handle_timeout(now));
                }
                Some((input, detail)) = net_rx.recv() => {
                    if detail.is_some() {
                        self.last_detail = detail;
                    }
                    self.shared.with_session(|s, now| s.handle_input(input, now));
                }
            }
        }
    }

    fn perform(&mut self, action: Action, net: &mpsc::UnboundedSender<(Input, Option<String>)>) {
        match action {
            Action::SendProbe { connection } => {
                let req = self
                    .client
                    .post(self.url.as_str())
                    .header(reqwest::header::CONTENT_LENGTH, "0")
                    .body(Vec::<u8>::new());
                let task = spawn_request(req, connection, net, |connection, status| Input::ProbeResponse {
                    connection,
                    status,
                });
                self.conns.insert(connection, PostConnection { body: None, task });
            }
            Action::OpenPost { connection } => {
                let (tx, rx) = mpsc::unbounded_channel();
                let connected = net.clone();
                let body = BodyStream {
                    rx,
                    on_first_poll: Some(Box::new(move || {
                        let _ = connected.send((Input::Connected { connection }, None));
                    })),
                };
                let req = self.client.post(self.url.as_str()).body(reqwest::Body::wrap_stream(body));
                let task =
                    spawn_request(req, connection, net, |connection, status| Input::Response { connection, status });
                self.conns.insert(connection, PostConnection { body: Some(tx), task });
            }
            Action::Send { connection, chunks, .. } => {
                if let Some(c) = self.conns.get(&connection) {
                    if let Some(body) = &c.body {
                        for chunk in chunks {
                            let _ = body.send(chunk);
                        }
                    }
                }
            }
            Action::EndBody { connection } => {
                if let Some(c) = self.conns.get_mut(&connection) {
                    c.body = None;
                }
            }
            Action::Close { connection } => {
                if let Some(c) = self.conns.remove(&connection) {
                    c.task.abort();
                }
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

/// The chunked POST body: whatever the driver sends, one HTTP chunk per slice.
struct BodyStream {
    rx: mpsc::UnboundedReceiver<Bytes>,
    on_first_poll: Option<Box<dyn FnOnce() + Send>>,
}

impl Stream for BodyStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // hyper reads the body only once the connection is up and the request head is out.
        if let Some(f) = self.on_first_poll.take() {
            f();
        }
        self.rx.poll_recv(cx).map(|o| o.map(Ok))
    }
}

/// Sends a request on the runtime and reports its answer (through `answered`) or its failure.
fn spawn_request(
    req: reqwest::RequestBuilder,
    connection: ConnectionId,
    net: &mpsc::UnboundedSender<(Input, Option<String>)>,
    answered: fn(ConnectionId, u16) -> Input,
) -> tokio::task::JoinHandle<()> {
    let net = net.clone();
    RUNTIME.spawn(async move {
        let msg = match req.send().await {
            Ok(resp) => (answered(connection, resp.status().as_u16()), None),
            Err(e) => (Input::Failed { connection, error: classify(&e) }, Some(describe(e))),
        };
        let _ = net.send(msg);
    })
}

fn classify(e: &reqwest::Error) -> TransportError {
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

/// The error and its causes in one line, with any credentials in URLs removed.
fn describe(e: reqwest::Error) -> String {
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
