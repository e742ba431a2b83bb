// SPDX-License-Identifier: MPL-2.0
//! fmp4ingest's own Smooth Streaming ingest receiver.
//!
//! It listens on 127.0.0.1, accepts the probe (an empty POST) and the long-running chunked POST
//! of any `/<name>.isml/Streams(<id>)` URL, reads the box stream as it arrives, and records per
//! request what a strict receiver would check: probe, framing, header order, the manifest and
//! the moov, every fragment's tfxd. Tests assert on those records; the demo prints them.
//! It also takes DASH-IF CMAF ingest on `.../Streams(<name>.cmfv|cmfa|cmfm)` ([`cmaf`]).

pub mod cmaf;
pub mod cmaf_mp4;
pub mod discard;
pub mod faults;
pub mod http;
pub mod mp4;
pub mod proxy;
pub mod record;
pub mod recording;
pub mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};

pub use faults::{Fault, FaultKind, Hostile, Times};
pub use mp4::{FragmentInfo, MoovTrack, SmilTrack};
pub use record::PostRecord;
pub use tls::TlsSetup;

use record::BodyReader;

/// How the receiver answers.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Status for empty-body probes.
    pub probe_status: u16,
    /// Largest box the receiver buffers.
    pub max_box: usize,
    /// A fixed socket receive buffer (SO_RCVBUF) instead of the kernel's autotuning.
    pub recv_buffer: Option<u32>,
    /// Require HTTP Basic authentication with this user and password: anything else is
    /// answered 401 without reading the body.
    pub basic_auth: Option<(String, String)>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour { probe_status: 200, max_box: 256 << 20, recv_buffer: None, basic_auth: None }
    }
}

/// Listens on `addr`; accepted sockets inherit the receive buffer size.
fn listen(addr: SocketAddr, recv_buffer: Option<u32>) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

#[derive(Debug, Default)]
struct State {
    posts: Vec<PostRecord>,
    faults: Vec<Fault>,
    /// Per stream, the (track, time) of every fragment received so far.
    seen: std::collections::HashMap<String, std::collections::HashSet<(u32, u64)>>,
    /// Bumped by a simulated restart: connections of an older generation are reset.
    generation: u64,
    /// Requests refused (wrong method or path, no authentication), with the reason.
    rejected: Vec<String>,
    connections: u64,
    /// Requests and tracks of CMAF ingest (cmaf.rs).
    cmaf: cmaf::CmafState,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    behaviour: Mutex<Behaviour>,
    /// Asks the accept loop to stop listening for a while.
    refuse: tokio::sync::mpsc::UnboundedSender<Duration>,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut State)) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s);
        self.changed.notify_all();
    }
}

/// A running receiver. Dropping it stops the server.
pub struct Receiver {
    addr: SocketAddr,
    /// The HTTPS port, when the receiver speaks TLS.
    tls_addr: Option<SocketAddr>,
    tls_failures: Arc<Mutex<Vec<String>>>,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Receiver {
    /// Starts on 127.0.0.1 with an ephemeral port.
    pub fn start() -> std::io::Result<Receiver> {
        Self::start_with(Behaviour::default(), "127.0.0.1:0")
    }

    pub fn start_with(behaviour: Behaviour, bind: &str) -> std::io::Result<Receiver> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("receiver")
            .enable_all()
            .build()?;
        let recv_buffer = behaviour.recv_buffer;
        let bind: SocketAddr = bind.parse().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = runtime.block_on(async { listen(bind, recv_buffer) })?;
        let addr = listener.local_addr()?;
        let (refuse_tx, mut refuse_rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            changed: Condvar::new(),
            behaviour: Mutex::new(behaviour),
            refuse: refuse_tx,
        });
        let s = shared.clone();
        runtime.spawn(async move {
            let mut listener = Some(listener);
            loop {
                let l = match listener.take() {
                    Some(l) => l,
                    // Back from a simulated restart: listen on the same port again.
                    None => match listen(addr, recv_buffer) {
                        Ok(l) => l,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                loop {
                    tokio::select! {
                        accepted = l.accept() => {
                            let Ok((sock, _)) = accepted else { continue };
                            let s = s.clone();
                            s.update(|st| st.connections += 1);
                            tokio::spawn(async move {
                                let _ = serve(sock, s).await;
                            });
                        }
                        Some(down) = refuse_rx.recv() => {
                            // Closing the listener makes new connections fail with "refused".
                            drop(l);
                            tokio::time::sleep(down).await;
                            break;
                        }
                    }
                }
            }
        });
        Ok(Receiver { addr, tls_addr: None, tls_failures: Arc::default(), shared, runtime: Some(runtime) })
    }

    /// Starts on 127.0.0.1 speaking HTTPS only (the plain listener is still there, for the
    /// TLS front to forward to).
    pub fn start_tls(behaviour: Behaviour, setup: TlsSetup) -> std::io::Result<Receiver> {
        let mut r = Self::start_with(behaviour, "127.0.0.1:0")?;
        let rt = r.runtime.as_ref().expect("runtime");
        let listener = rt.block_on(async { TcpListener::bind("127.0.0.1:0").await })?;
        r.tls_addr = Some(listener.local_addr()?);
        tls::spawn_front(rt, listener, r.addr, &setup, r.tls_failures.clone()).map_err(std::io::Error::other)?;
        Ok(r)
    }

    /// TLS handshakes that failed, with the server's reason.
    pub fn tls_failures(&self) -> Vec<String> {
        self.tls_failures.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Adds a fault for the requests that start from now on.
    pub fn inject(&self, fault: Fault) {
        self.shared.update(|s| s.faults.push(fault));
    }

    pub fn clear_faults(&self) {
        self.shared.update(|s| s.faults.clear());
    }

    /// Simulates a server restart: open connections are reset, and new ones are refused for
    /// `down_for`.
    pub fn restart(&self, down_for: Duration) {
        self.shared.update(|s| s.generation += 1);
        let _ = self.shared.refuse.send(down_for);
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The ingest URL of a stream on a publishing point of this receiver.
    pub fn url(&self, publishing_point: &str, stream_id: &str) -> String {
        match self.tls_addr {
            Some(a) => format!("https://{a}/{publishing_point}.isml/Streams({stream_id})"),
            None => format!("http://{}/{publishing_point}.isml/Streams({stream_id})", self.addr),
        }
    }

    pub fn set_behaviour(&self, b: Behaviour) {
        *self.shared.behaviour.lock().unwrap_or_else(|e| e.into_inner()) = b;
    }

    /// All requests so far, in arrival order.
    pub fn posts(&self) -> Vec<PostRecord> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner()).posts.clone()
    }

    /// The requests of one stream id.
    pub fn stream(&self, stream_id: &str) -> StreamView {
        StreamView { posts: self.posts().into_iter().filter(|p| p.stream_id == stream_id).collect() }
    }

    pub fn rejected(&self) -> Vec<String> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner()).rejected.clone()
    }

    pub fn connections(&self) -> u64 {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner()).connections
    }

    /// Waits until `cond` holds over the requests so far, or `timeout` passes.
    pub fn wait_until(&self, timeout: Duration, cond: impl Fn(&[PostRecord]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if cond(&st.posts) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self.shared.changed.wait_timeout(st, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The stream id of a `.../Streams(<id>)` path.
pub fn stream_id_of(path: &str) -> Option<String> {
    let lower = path.to_ascii_lowercase();
    let at = lower.rfind("/streams(")?;
    if !lower[..at].contains(".isml") {
        return None;
    }
    let rest = &path[at + "/streams(".len()..];
    let close = rest.find(')')?;
    (close + 1 == rest.len() && close > 0).then(|| rest[..close].to_string())
}

/// Why a request is refused for its credentials, when Basic authentication is required.
fn unauthorized(head: &http::RequestHead, behaviour: &Behaviour) -> Option<String> {
    let (user, pw) = behaviour.basic_auth.as_ref()?;
    let given = head.header("authorization").and_then(http::basic_credentials);
    given.as_ref().is_none_or(|(u, p)| u != user || p != pw).then(|| {
        format!("{} {}: 401, credentials {}", head.method, head.path, if given.is_some() { "wrong" } else { "missing" })
    })
}

/// How the receiver ended a request, when it did on purpose.
fn note_end(shared: &Shared, index: usize, how: &str) {
    shared.update(|st| {
        st.posts[index].ended_by_receiver = Some(how.to_string());
        st.posts[index].fault_at = Some(Instant::now());
    });
}

async fn serve(sock: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let generation = shared.state.lock().unwrap_or_else(|e| e.into_inner()).generation;
    let (rd, mut wr) = sock.into_split();
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let Some(head) = http::read_head(&mut rd).await? else { return Ok(()) };
    if cmaf::is_cmaf_path(&head.path) {
        return cmaf::serve(head, rd, wr, shared, generation).await;
    }
    let behaviour = shared.behaviour.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let Some(stream_id) = stream_id_of(&head.path).filter(|_| head.method == "POST") else {
        let why = format!("{} {}: not a POST to .../<name>.isml/Streams(<id>)", head.method, head.path);
        shared.update(|s| s.rejected.push(why));
        return http::respond(&mut wr, 404, "Not Found", b"unknown publishing point or stream\n").await;
    };
    let probe = head.content_length() == Some(0) && !head.is_chunked();
    if let Some(why) = unauthorized(&head, &behaviour) {
        shared.update(|s| s.rejected.push(why));
        return http::respond_with(&mut wr, 401, "Unauthorized", &[("WWW-Authenticate", "Basic realm=\"ingest\"")])
            .await;
    }
    let (index, plan) = {
        let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        let index = st.posts.len();
        let plan = faults::Plan::choose(&mut st.faults, &stream_id, index, probe);
        st.posts.push(PostRecord::new(
            index,
            stream_id.clone(),
            head.path.clone(),
            head.headers.clone(),
            head.is_chunked(),
            head.content_length(),
        ));
        shared.changed.notify_all();
        (index, plan)
    };
    http::continue_if_expected(&head, &mut wr).await?;
    let mut reader = BodyReader::new(behaviour.max_box);
    let mut body = http::IncomingBody::new(&head);
    let started = Instant::now();
    let mut read_total = 0u64;
    let mut new_fragments = 0usize;
    // Complete fragments on this POST, resent ones included.
    let mut on_post = 0usize;
    let mut resumed = false;
    let result: std::io::Result<()> = loop {
        if let Some(delay) = plan.read_delay.filter(|_| rd.buffer().is_empty()) {
            tokio::time::sleep(delay).await;
        }
        let max = plan.bytes_per_second.map_or(256 * 1024, |bps| (bps / 20).max(1) as usize);
        let next = body.next(&mut rd, max);
        let next = match plan.cut_when_quiet {
            Some((after, quiet)) if on_post >= after => match tokio::time::timeout(quiet, next).await {
                Ok(r) => r,
                Err(_) => {
                    note_end(&shared, index, "cut-when-quiet");
                    return reset(rd, wr);
                }
            },
            _ => next.await,
        };
        let piece = match next {
            Ok(Some(p)) => p.to_vec(),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        read_total += piece.len() as u64;
        let chunks = body.chunks();
        let fragments = {
            let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            let restarted = st.generation != generation;
            let rec = &mut st.posts[index];
            rec.first_byte_at.get_or_insert_with(Instant::now);
            rec.bytes += piece.len() as u64;
            rec.chunks = chunks;
            if resumed {
                rec.read_after_resume += piece.len() as u64;
            }
            let before = rec.fragments.len();
            reader.push(&piece, rec);
            on_post = rec.fragments.len();
            let arrived: Vec<(u32, u64)> =
                rec.fragments[before..].iter().filter_map(|f| f.time().map(|t| (f.track_id, t))).collect();
            let seen = st.seen.entry(stream_id.clone()).or_default();
            new_fragments += arrived.into_iter().filter(|k| seen.insert(*k)).count();
            shared.changed.notify_all();
            if restarted { None } else { Some(new_fragments) }
        };
        let Some(fragments) = fragments else {
            note_end(&shared, index, "restart");
            return reset(rd, wr);
        };
        if let Some((after, reset_it)) = plan.abort_after
            && fragments >= after
        {
            note_end(&shared, index, if reset_it { "abort-reset" } else { "abort-fin" });
            return if reset_it { reset(rd, wr) } else { Ok(()) };
        }
        if let Some((after, status)) = plan.error_after
            && fragments >= after
        {
            note_end(&shared, index, "error-status");
            return http::respond(&mut wr, status, "Refused", b"").await;
        }
        if let Some((after, duration, until_new_post, discard)) = plan.stall
            && fragments >= after
            && !resumed
        {
            note_end(&shared, index, "stall");
            let deadline = Instant::now() + duration;
            while Instant::now() < deadline {
                let newer = until_new_post && {
                    let st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                    st.posts.iter().skip(index + 1).any(|p| p.stream_id == stream_id && !p.is_probe())
                };
                if newer {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if discard {
                return reset(rd, wr);
            }
            // What this side holds now arrived before: anything read beyond it came later.
            let held = rd.buffer().len() as u64 + unread_in_kernel(rd.get_ref().as_ref());
            shared.update(|st| st.posts[index].held_at_resume = Some(held));
            resumed = true;
        }
        if let Some(bps) = plan.bytes_per_second {
            let due = Duration::from_secs_f64(read_total as f64 / bps as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    };
    if result.is_ok() {
        let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        let rec = &mut st.posts[index];
        rec.complete = true;
        reader.end(rec);
        shared.changed.notify_all();
    }
    let status = match &result {
        Ok(()) if probe => plan.probe_status.unwrap_or(behaviour.probe_status),
        Ok(()) => plan.post_status.unwrap_or(200),
        Err(_) => 400,
    };
    shared.update(|st| {
        let rec = &mut st.posts[index];
        rec.ended = Some(Instant::now());
        if let Err(e) = &result {
            rec.violations.push(format!("body: {e}"));
        }
        rec.status = Some(status);
    });
    if let (Ok(()), Some(how)) = (&result, &plan.hostile) {
        let written = faults::answer_with(how, &mut wr).await;
        shared.update(|st| {
            st.posts[index].ended_by_receiver = Some(format!("hostile {how:?}"));
            st.posts[index].hostile_bytes = Some(written);
        });
        return Ok(());
    }
    if let (Ok(()), true, Some((status, location))) = (&result, probe, &plan.redirect) {
        shared.update(|st| st.posts[index].status = Some(*status));
        return http::respond_with(&mut wr, *status, "Redirect", &[("Location", location.as_str())]).await;
    }
    let reason = if (200..300).contains(&status) { "OK" } else { "Refused" };
    let sized = !probe && !head.is_chunked() && head.content_length().is_some();
    if result.is_ok() && sized {
        // A sparse POST: answer without closing, and see whether the client closes the
        // connection itself (docs/protocol.md §5.4: no idle connection left open).
        http::respond_keep_alive(&mut wr, status, reason).await?;
        let answered = Instant::now();
        let mut rest = [0u8; 1];
        let closed =
            tokio::time::timeout(Duration::from_secs(3), tokio::io::AsyncReadExt::read(&mut rd, &mut rest)).await;
        if let Ok(Ok(0)) = closed {
            shared.update(|st| st.posts[index].client_closed_after = Some(answered.elapsed()));
        }
        return Ok(());
    }
    if result.is_ok() {
        http::respond(&mut wr, status, reason, b"").await?;
    }
    Ok(())
}

/// Drops a connection with a TCP reset: whatever the socket buffers hold is lost.
/// Bytes in the socket's receive queue that were not read yet (FIONREAD).
fn unread_in_kernel(sock: &TcpStream) -> u64 {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which outlives the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::FIONREAD, &mut n) };
    if rc == 0 { u64::try_from(n).unwrap_or(0) } else { 0 }
}

fn reset(rd: BufReader<tokio::net::tcp::OwnedReadHalf>, wr: tokio::net::tcp::OwnedWriteHalf) -> std::io::Result<()> {
    let sock = rd.into_inner().reunite(wr).map_err(|e| std::io::Error::other(e.to_string()))?;
    sock.set_zero_linger()?;
    drop(sock);
    Ok(())
}

/// The requests of one stream, with the checks tests make on them.
#[derive(Debug, Clone)]
pub struct StreamView {
    pub posts: Vec<PostRecord>,
}

impl StreamView {
    pub fn probes(&self) -> Vec<&PostRecord> {
        self.posts.iter().filter(|p| p.is_probe()).collect()
    }

    /// Requests that carried a body.
    pub fn media_posts(&self) -> Vec<&PostRecord> {
        self.posts.iter().filter(|p| !p.is_probe()).collect()
    }

    pub fn violations(&self) -> Vec<String> {
        self.posts.iter().flat_map(|p| p.violations.iter().map(move |v| format!("POST #{}: {v}", p.index))).collect()
    }

    /// The messages of a sparse stream, in arrival order: (request index, fragment).
    pub fn sparse_messages(&self) -> Vec<(usize, &FragmentInfo)> {
        self.media_posts()
            .into_iter()
            .flat_map(|p| p.fragments.iter().filter(|f| f.sparse.is_some()).map(move |f| (p.index, f)))
            .collect()
    }

    /// Every fragment received, in arrival order.
    pub fn fragments(&self) -> Vec<&FragmentInfo> {
        self.media_posts().into_iter().flat_map(|p| p.fragments.iter()).collect()
    }

    pub fn track_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.fragments().iter().map(|f| f.track_id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// One track's timeline as a server keeps it: (time, duration) by time, duplicates (same
    /// time) dropped.
    pub fn timeline(&self, track_id: u32) -> Vec<(u64, u64)> {
        let mut map = BTreeMap::new();
        for f in self.fragments().into_iter().filter(|f| f.track_id == track_id) {
            if let Some((_, t, d)) = f.tfxd {
                map.entry(t).or_insert(d);
            }
        }
        map.into_iter().collect()
    }

    /// Places where a track's timeline is not contiguous: (expected next time, actual time).
    pub fn gaps(&self, track_id: u32) -> Vec<(u64, u64)> {
        self.timeline(track_id)
            .windows(2)
            .filter(|w| w[0].0 + w[0].1 != w[1].0)
            .map(|w| (w[0].0 + w[0].1, w[1].0))
            .collect()
    }
}
