//! fmp4ingest's own Smooth Streaming ingest receiver.
//!
//! It listens on 127.0.0.1, accepts the probe (an empty POST) and the long-running chunked POST
//! of any `/<name>.isml/Streams(<id>)` URL, reads the box stream as it arrives, and records per
//! request what a strict receiver would check: probe, framing, header order, the manifest and
//! the moov, every fragment's tfxd. Tests assert on those records; the demo prints them.

pub mod http;
pub mod mp4;
pub mod record;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};

pub use mp4::{FragmentInfo, MoovTrack, SmilTrack};
pub use record::PostRecord;

use record::BodyReader;

/// How the receiver answers.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Status for empty-body probes.
    pub probe_status: u16,
    /// Largest box the receiver buffers.
    pub max_box: usize,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour { probe_status: 200, max_box: 256 << 20 }
    }
}

#[derive(Debug, Default)]
struct State {
    posts: Vec<PostRecord>,
    /// Requests refused (wrong method or path), with the reason.
    rejected: Vec<String>,
    connections: u64,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    behaviour: Mutex<Behaviour>,
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
        let listener = runtime.block_on(TcpListener::bind(bind))?;
        let addr = listener.local_addr()?;
        let shared =
            Arc::new(Shared { state: Mutex::default(), changed: Condvar::new(), behaviour: Mutex::new(behaviour) });
        let s = shared.clone();
        runtime.spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else { continue };
                let s = s.clone();
                s.update(|st| st.connections += 1);
                tokio::spawn(async move {
                    let _ = serve(sock, s).await;
                });
            }
        });
        Ok(Receiver { addr, shared, runtime: Some(runtime) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The ingest URL of a stream on a publishing point of this receiver.
    pub fn url(&self, publishing_point: &str, stream_id: &str) -> String {
        format!("http://{}/{publishing_point}.isml/Streams({stream_id})", self.addr)
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

async fn serve(sock: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let (rd, mut wr) = sock.into_split();
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let Some(head) = http::read_head(&mut rd).await? else { return Ok(()) };
    let behaviour = shared.behaviour.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let Some(stream_id) = stream_id_of(&head.path).filter(|_| head.method == "POST") else {
        let why = format!("{} {}: not a POST to .../<name>.isml/Streams(<id>)", head.method, head.path);
        shared.update(|s| s.rejected.push(why));
        return http::respond(&mut wr, 404, "Not Found", b"unknown publishing point or stream\n").await;
    };
    let index = {
        let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        let index = st.posts.len();
        st.posts.push(PostRecord::new(
            index,
            stream_id,
            head.path.clone(),
            head.headers.clone(),
            head.is_chunked(),
            head.content_length(),
        ));
        shared.changed.notify_all();
        index
    };
    let mut reader = BodyReader::new(behaviour.max_box);
    let on_body = |ev: http::BodyEvent<'_>| {
        shared.update(|st| {
            let rec = &mut st.posts[index];
            match ev {
                http::BodyEvent::Data { bytes, chunk } => {
                    rec.bytes += bytes.len() as u64;
                    rec.chunks = rec.chunks.max(chunk);
                    reader.push(bytes, rec);
                }
                http::BodyEvent::End => {
                    rec.complete = true;
                    reader.end(rec);
                }
            }
        });
    };
    let result = if head.is_chunked() {
        http::read_chunked(&mut rd, on_body).await
    } else {
        http::read_sized(&mut rd, head.content_length().unwrap_or(0), on_body).await
    };
    let probe = head.content_length() == Some(0) && !head.is_chunked();
    let status = match &result {
        Ok(()) if probe => behaviour.probe_status,
        Ok(()) => 200,
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
    if result.is_ok() {
        http::respond(&mut wr, status, if status == 200 { "OK" } else { "Refused" }, b"").await?;
    }
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
