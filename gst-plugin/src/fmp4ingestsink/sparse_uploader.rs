// SPDX-License-Identifier: MPL-2.0
//! Drives the sparse stream's [`SparseSession`] over HTTP: one short POST at a time, each with
//! a `Content-Length`, on a connection of its own that is closed once answered.
//!
//! The session decides what to POST and when to retry; this transport performs the requests on
//! the shared runtime and reports what happened. The streaming thread only queues messages.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fmp4ingest_core::ingest_url::IngestUrl;
use fmp4ingest_core::session::TransportError;
use fmp4ingest_core::session::sparse::{PostRequest, SparseConfig, SparseEvent, SparseInput, SparseSession};
use http_body_util::BodyExt;
use tokio::sync::Notify;

use crate::driver::{self, Machine, Net, Pending, Shared, Transport, WaitOutcome};
use crate::http::{Client, RequestFailure, Target};
use crate::runtime::RUNTIME;

impl Machine for SparseSession {
    type Action = PostRequest;
    type Event = SparseEvent;
    fn poll_action(&mut self, now: Duration) -> Option<PostRequest> {
        self.poll_request(now)
    }
    fn poll_event(&mut self) -> Option<SparseEvent> {
        SparseSession::poll_event(self)
    }
    fn poll_timeout(&self) -> Option<Duration> {
        SparseSession::poll_timeout(self)
    }
    /// A retry is due: `poll_request` hands it out.
    fn handle_timeout(&mut self, _now: Duration) {}
    fn settled(&self) -> bool {
        self.is_idle()
    }
}

/// How the sparse stream's requests are made.
#[derive(Debug, Clone)]
pub struct SparseHttp {
    pub url: IngestUrl,
    pub client: Client,
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

/// Handle of the sparse stream's uploads; dropping it abandons them.
pub struct SparseUploader {
    shared: Arc<Shared<SparseSession>>,
    task: tokio::task::JoinHandle<()>,
}

impl SparseUploader {
    pub fn start(http: SparseHttp, config: SparseConfig, report: SparseReportFn) -> Self {
        let shared = Shared::new(SparseSession::new(config));
        let target = Target::parse(http.url.as_str());
        let transport = SparseTransport { shared: shared.clone(), http, target, report, detail: None };
        let task = RUNTIME.spawn(driver::run(shared.clone(), transport));
        SparseUploader { shared, task }
    }

    /// The header boxes: the registering POST goes out.
    pub fn set_header(&self, header: Bytes) {
        self.shared.with(|s, now| s.set_header(header, now));
    }

    /// A message's POST (the header boxes, then `fragment`).
    pub fn push_message(&self, id: u32, time: u64, fragment: &[u8]) {
        self.shared.with(|s, now| s.push_message(id, time, fragment, now));
    }

    /// Something to wait on for the queued POSTs, usable without holding the uploader.
    pub fn drain_handle(&self) -> SparseDrain {
        SparseDrain { shared: self.shared.clone() }
    }
}

impl Drop for SparseUploader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits for the sparse stream's POSTs at the end of the stream.
pub struct SparseDrain {
    shared: Arc<Shared<SparseSession>>,
}

impl SparseDrain {
    /// Blocks the calling (non-runtime) thread until every queued POST was delivered or given
    /// up, at most `limit`; then gives up what is left. Returns how many were given up.
    pub fn drain(self, limit: Duration) -> usize {
        let never = Notify::new();
        if self.shared.block_until(Shared::settled, Some(limit), &never, || false) == WaitOutcome::Ready {
            return 0;
        }
        self.shared.with(|s, _| {
            let left = s.undelivered().len();
            s.abandon();
            left
        })
    }
}

struct SparseTransport {
    shared: Arc<Shared<SparseSession>>,
    http: SparseHttp,
    target: Result<Target, String>,
    report: SparseReportFn,
    /// The transport's words for the last failure.
    detail: Option<String>,
}

impl Transport for SparseTransport {
    type Machine = SparseSession;
    type Net = (SparseInput, Option<String>);

    fn perform(&mut self, r: PostRequest, net: &Net<Self::Net>) -> Option<Pending> {
        let request = r.request;
        let client = self.http.client.clone();
        let target = self.target.clone();
        let limit = self.http.request_timeout;
        let net = net.clone();
        RUNTIME.spawn(async move {
            let post = async {
                let target = target.map_err(|e| RequestFailure::new(TransportError::Other, e))?;
                let mut conn = client.connect(&target).await?;
                let length = r.body.len() as u64;
                let body = http_body_util::Full::new(r.body).map_err(|never| match never {}).boxed_unsync();
                let resp = conn.exchange(client.post(&target, body, Some(length))).await?;
                // The answer's body is not read: the connection is closed with it.
                Ok::<u16, RequestFailure>(resp.status().as_u16())
            };
            let result = match tokio::time::timeout(limit, post).await {
                Ok(Ok(status)) => (SparseInput::Answered { request, status }, None),
                Ok(Err(f)) => (SparseInput::Failed { request, error: f.cause }, Some(f.detail)),
                Err(_) => {
                    let detail = format!("no answer within {limit:?}");
                    (SparseInput::Failed { request, error: TransportError::Timeout }, Some(detail))
                }
            };
            let _ = net.send(result);
        });
        None
    }

    fn on_net(&mut self, (input, detail): Self::Net, _net: &Net<Self::Net>) {
        self.detail = detail;
        self.shared.with(|s, now| s.handle_input(input, now));
    }

    fn report(&mut self, event: SparseEvent) {
        let detail = matches!(event, SparseEvent::Retrying { .. } | SparseEvent::GaveUp { .. })
            .then(|| self.detail.clone())
            .flatten();
        (self.report)(SparseReport { event, detail });
    }
}
