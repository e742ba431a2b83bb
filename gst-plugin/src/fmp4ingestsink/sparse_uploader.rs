//! Drives the sparse stream's [`SparseSession`] over HTTP: one short POST at a time, each with
//! a `Content-Length`, on a connection of its own that is closed once answered.
//!
//! The session decides what to POST and when to retry; this task performs the requests on the
//! shared runtime and reports what happened. The streaming thread only queues messages.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fmp4ingest_core::ingest_url::IngestUrl;
use fmp4ingest_core::session::sparse::{PostRequest, SparseConfig, SparseEvent, SparseInput, SparseSession};
use tokio::sync::{Notify, mpsc, watch};

use super::http_client::{self, ClientSettings, MAX_RESPONSE_BODY};
use super::uploader::{classify, describe};
use crate::runtime::RUNTIME;

/// How the sparse stream's requests are made.
#[derive(Debug, Clone)]
pub struct SparseHttp {
    pub url: IngestUrl,
    pub client: ClientSettings,
    /// Connecting, sending and the answer, together.
    pub request_timeout: Duration,
}

/// A session event, with the transport's words for a failure.
#[derive(Debug, Clone)]
pub struct SparseReport {
    pub event: SparseEvent,
    pub detail: Option<String>,
}

pub type SparseReportFn = Arc<dyn Fn(SparseReport) + Send + Sync>;

struct Shared {
    session: Mutex<SparseSession>,
    wake: Notify,
    epoch: Instant,
    idle: watch::Sender<bool>,
}

impl Shared {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn with_session<R>(&self, f: impl FnOnce(&mut SparseSession, Duration) -> R) -> R {
        let now = self.now();
        let r = f(&mut self.session.lock().unwrap_or_else(|e| e.into_inner()), now);
        self.wake.notify_one();
        r
    }
}

/// Handle of the sparse stream's uploads; dropping it abandons them.
pub struct SparseUploader {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
    idle: watch::Receiver<bool>,
}

impl SparseUploader {
    pub fn start(http: SparseHttp, config: SparseConfig, report: SparseReportFn) -> Result<Self, String> {
        crate::runtime::install_crypto_provider();
        let client = http_client::builder(&http.client)?
            .timeout(http.request_timeout)
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        let (idle_tx, idle_rx) = watch::channel(true);
        let shared = Arc::new(Shared {
            session: Mutex::new(SparseSession::new(config)),
            wake: Notify::new(),
            epoch: Instant::now(),
            idle: idle_tx,
        });
        let driver = Driver { shared: shared.clone(), client, url: http.url, report };
        let task = RUNTIME.spawn(driver.run());
        Ok(SparseUploader { shared, task, idle: idle_rx })
    }

    /// The header boxes: the registering POST goes out.
    pub fn set_header(&self, header: Bytes) {
        let _ = self.shared.idle.send(false);
        self.shared.with_session(|s, now| s.set_header(header, now));
    }

    /// A message's POST (the header boxes, then `fragment`).
    pub fn push_message(&self, id: u32, time: u64, fragment: &[u8]) {
        let _ = self.shared.idle.send(false);
        self.shared.with_session(|s, now| s.push_message(id, time, fragment, now));
    }

    /// Something to wait on for the queued POSTs, usable without holding the uploader.
    pub fn drain_handle(&self) -> SparseDrain {
        SparseDrain { shared: self.shared.clone(), idle: self.idle.clone() }
    }
}

/// Waits for the sparse stream's POSTs at the end of the stream.
pub struct SparseDrain {
    shared: Arc<Shared>,
    idle: watch::Receiver<bool>,
}

impl SparseDrain {
    /// Blocks the calling (non-runtime) thread until every queued POST was delivered or given
    /// up, at most `limit`; then gives up what is left. Returns how many were given up.
    pub fn drain(mut self, limit: Duration) -> usize {
        let idle = &mut self.idle;
        let done = RUNTIME.block_on(async { tokio::time::timeout(limit, idle.wait_for(|i| *i)).await.is_ok() });
        if done {
            return 0;
        }
        self.shared.with_session(|s, _| {
            let left = s.undelivered().len();
            s.abandon();
            left
        })
    }
}

impl Drop for SparseUploader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Driver {
    shared: Arc<Shared>,
    client: reqwest::Client,
    url: IngestUrl,
    report: SparseReportFn,
}

impl Driver {
    async fn run(self) {
        let (tx, mut rx) = mpsc::unbounded_channel::<(SparseInput, Option<String>)>();
        let mut detail: Option<String> = None;
        loop {
            let (request, events, timeout, idle) = {
                let now = self.shared.now();
                let mut s = self.shared.session.lock().unwrap_or_else(|e| e.into_inner());
                let request = s.poll_request(now);
                let events: Vec<SparseEvent> = std::iter::from_fn(|| s.poll_event()).collect();
                (request, events, s.poll_timeout(), s.is_idle())
            };
            for event in events {
                let d = matches!(event, SparseEvent::Retrying { .. } | SparseEvent::GaveUp { .. })
                    .then(|| detail.clone())
                    .flatten();
                (self.report)(SparseReport { event, detail: d });
            }
            if let Some(r) = request {
                self.send(r, &tx);
            }
            let _ = self.shared.idle.send_if_modified(|v| {
                let changed = *v != idle;
                *v = idle;
                changed
            });
            let sleep = async {
                match timeout {
                    Some(t) => tokio::time::sleep_until((self.shared.epoch + t).into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.shared.wake.notified() => {}
                _ = sleep => {}
                Some((input, d)) = rx.recv() => {
                    detail = d;
                    self.shared.with_session(|s, now| s.handle_input(input, now));
                }
            }
        }
    }

    fn send(&self, r: PostRequest, tx: &mpsc::UnboundedSender<(SparseInput, Option<String>)>) {
        let request = r.request;
        let req = self
            .client
            .post(self.url.as_str())
            .header(reqwest::header::CONTENT_LENGTH, r.body.len().to_string())
            .body(r.body);
        let tx = tx.clone();
        RUNTIME.spawn(async move {
            let result = match req.send().await {
                // The answer is read, up to a cap, before the connection is let go (and closed:
                // no pool); a server that sends more is not listened to.
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let mut read = 0;
                    while let Ok(Some(chunk)) = resp.chunk().await {
                        read += chunk.len();
                        if read >= MAX_RESPONSE_BODY {
                            break;
                        }
                    }
                    (SparseInput::Answered { request, status }, None)
                }
                Err(e) => (SparseInput::Failed { request, error: classify(&e) }, Some(describe(e))),
            };
            let _ = tx.send(result);
        });
    }
}
