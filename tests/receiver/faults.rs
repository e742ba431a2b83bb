// SPDX-License-Identifier: MPL-2.0
//! Faults the receiver can inject, each bounded in time, to show what a sender does when the
//! server misbehaves: resets, stalls, refusals, error answers, slow reading.

use std::time::{Duration, Instant};

/// What goes wrong. "Fragments" count the fragments of the stream a request brings for the
/// first time: resent duplicates do not count, so that the stream advances between faults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// After `min..=max` fragments of a POST (varying per POST), drop the connection: with a
    /// TCP reset (`reset`), or a plain close (FIN) without a response.
    Abort { min: usize, max: usize, reset: bool },
    /// After `fragments` fragments, stop reading for `duration`, or until the sender opens a
    /// new POST for the same stream (it gave up) when `until_new_post`. Then `discard` drops
    /// the connection with a reset, losing what the socket buffers held; otherwise reading
    /// goes on.
    Stall { fragments: usize, duration: Duration, until_new_post: bool, discard: bool },
    /// Answer every probe with this status.
    ProbeStatus(u16),
    /// After `fragments` fragments, answer with `status` and close.
    ErrorStatus { fragments: usize, status: u16 },
    /// Read at most this many bytes per second.
    SlowRead { bytes_per_second: u64 },
    /// Wait this long before each read from a POST's socket (each time what was read before
    /// is used up): a busy server, whose kernel has acknowledged (and advertised a window
    /// without) whatever arrives while it waits.
    ReadDelay(Duration),
    /// Read a request's whole body, then answer with this status (a refused POST).
    PostStatus(u16),
    /// Answer (a probe, or a POST once its body is read) with something meant to exhaust the
    /// client.
    HostileAnswer(Hostile),
    /// Answer probes with a redirect to `location`.
    Redirect { status: u16, location: String },
    /// Once `fragments` complete fragments arrived on the POST (resent ones included) and
    /// nothing more came for `quiet`, reset the connection.
    CutWhenQuiet { fragments: usize, quiet: Duration },
    /// CMAF ingest: answer the first `times` requests that carry segment `sequence` (its
    /// `mfhd` number) with `status`, once read.
    SegmentStatus { sequence: u32, status: u16, times: u32 },
}

/// Answers a broken or hostile server gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostile {
    /// One header line of 1 MiB.
    HugeHeader,
    /// 10 000 header lines.
    ManyHeaders,
    /// 200 with a 10 GiB body, written as fast as the client takes it.
    EndlessBody,
    /// The status line, one byte every 200 ms, for up to a minute.
    SlowDrip,
}

/// Writes a hostile answer; returns the bytes the client took.
pub async fn answer_with<W: tokio::io::AsyncWrite + Unpin>(how: &Hostile, w: &mut W) -> u64 {
    use tokio::io::AsyncWriteExt;
    let mut written = 0u64;
    let mut put = async |w: &mut W, b: &[u8]| -> bool {
        let ok = w.write_all(b).await.is_ok() && w.flush().await.is_ok();
        if ok {
            written += b.len() as u64;
        }
        ok
    };
    match how {
        Hostile::HugeHeader => {
            let mut head = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
            head.resize(head.len() + (1 << 20), b'a');
            head.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
            put(w, &head).await;
        }
        Hostile::ManyHeaders => {
            let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..10_000 {
                head.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
            }
            head.extend_from_slice(b"Content-Length: 0\r\n\r\n");
            put(w, &head).await;
        }
        Hostile::EndlessBody => {
            if put(w, b"HTTP/1.1 200 OK\r\nContent-Length: 10737418240\r\n\r\n").await {
                let chunk = vec![0u8; 64 * 1024];
                let deadline = Instant::now() + Duration::from_secs(60);
                while Instant::now() < deadline && put(w, &chunk).await {}
            }
        }
        Hostile::SlowDrip => {
            for b in b"HTTP/1.1 200 OK\r\n".iter().cycle().take(300) {
                if !put(w, std::slice::from_ref(b)).await {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    written
}

/// How often a fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Times {
    Once,
    Every,
}

/// A fault, for one stream id or all, active until a time.
#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: FaultKind,
    pub stream: Option<String>,
    pub times: Times,
    /// The fault is ignored after this instant.
    pub until: Instant,
    pub(crate) fired: u32,
}

impl Fault {
    /// A fault for every stream, firing every time, active for `duration` from now.
    pub fn new(kind: FaultKind, duration: Duration) -> Self {
        Fault { kind, stream: None, times: Times::Every, until: Instant::now() + duration, fired: 0 }
    }

    pub fn once(mut self) -> Self {
        self.times = Times::Once;
        self
    }

    pub fn for_stream(mut self, id: &str) -> Self {
        self.stream = Some(id.to_string());
        self
    }

    pub(crate) fn applies(&self, stream: &str, now: Instant) -> bool {
        now < self.until
            && self.stream.as_deref().is_none_or(|s| s == stream)
            && !(self.times == Times::Once && self.fired > 0)
    }
}

/// The faults chosen for one request when it starts.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Abort after this many fragments, with a reset or not.
    pub abort_after: Option<(usize, bool)>,
    pub cut_when_quiet: Option<(usize, Duration)>,
    pub stall: Option<(usize, Duration, bool, bool)>,
    pub error_after: Option<(usize, u16)>,
    pub probe_status: Option<u16>,
    pub bytes_per_second: Option<u64>,
    pub read_delay: Option<Duration>,
    pub post_status: Option<u16>,
    pub hostile: Option<Hostile>,
    pub redirect: Option<(u16, String)>,
}

impl Plan {
    /// Picks the active faults for request number `index` of `stream`, marking them fired:
    /// the first applicable fault of each kind, so that faults queue up in order.
    pub fn choose(faults: &mut [Fault], stream: &str, index: usize, probe: bool) -> Plan {
        let now = Instant::now();
        let mut plan = Plan::default();
        for f in faults.iter_mut().filter(|f| f.applies(stream, now)) {
            let used = match &f.kind {
                FaultKind::ProbeStatus(_) if plan.probe_status.is_some() => false,
                FaultKind::Abort { .. } if plan.abort_after.is_some() => false,
                FaultKind::CutWhenQuiet { .. } if plan.cut_when_quiet.is_some() => false,
                FaultKind::CutWhenQuiet { fragments, quiet } if !probe => {
                    plan.cut_when_quiet = Some((*fragments, *quiet));
                    true
                }
                FaultKind::Stall { .. } if plan.stall.is_some() => false,
                FaultKind::ErrorStatus { .. } if plan.error_after.is_some() => false,
                FaultKind::SlowRead { .. } if plan.bytes_per_second.is_some() => false,
                FaultKind::ReadDelay(_) if plan.read_delay.is_some() => false,
                FaultKind::PostStatus(_) if plan.post_status.is_some() => false,
                FaultKind::HostileAnswer(_) if plan.hostile.is_some() => false,
                FaultKind::HostileAnswer(h) => {
                    plan.hostile = Some(*h);
                    true
                }
                FaultKind::Redirect { .. } if plan.redirect.is_some() => false,
                FaultKind::Redirect { status, location } if probe => {
                    plan.redirect = Some((*status, location.clone()));
                    true
                }
                FaultKind::PostStatus(s) if !probe => {
                    plan.post_status = Some(*s);
                    true
                }
                FaultKind::ProbeStatus(s) if probe => {
                    plan.probe_status = Some(*s);
                    true
                }
                FaultKind::Abort { min, max, reset } if !probe => {
                    let span = max.saturating_sub(*min) + 1;
                    plan.abort_after = Some((min + index % span, *reset));
                    true
                }
                FaultKind::Stall { fragments, duration, until_new_post, discard } if !probe => {
                    plan.stall = Some((*fragments, *duration, *until_new_post, *discard));
                    true
                }
                FaultKind::ErrorStatus { fragments, status } if !probe => {
                    plan.error_after = Some((*fragments, *status));
                    true
                }
                FaultKind::SlowRead { bytes_per_second } if !probe => {
                    plan.bytes_per_second = Some(*bytes_per_second);
                    true
                }
                FaultKind::ReadDelay(delay) if !probe => {
                    plan.read_delay = Some(*delay);
                    true
                }
                _ => false,
            };
            if used {
                f.fired += 1;
            }
        }
        plan
    }
}
