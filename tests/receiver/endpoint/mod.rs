//! A local ingest endpoint people can run (issue 8): it takes Smooth ingest for any number of
//! publishing points and streams, keeps a deduplicated timeline per stream and track within an
//! archive window, answers the heartbeats API, serves the ingested streams as a Smooth origin
//! (live and recorded), and runs programs that archive a publishing point. It is the demo's
//! endpoint and `fmp4ingest-endpoint`'s; the tests push real pipelines to it and play its
//! output with GStreamer's mssdemux.
//!
//! Routes:
//! - `POST /<name>.isml/Streams(<id>)`: ingest — the empty probe, a long chunked POST, or a
//!   short Content-Length POST (sparse streams);
//! - `POST /subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Media/mediaservices/
//!   {account}/liveEvents/{name}/getTrackIngestHeartbeats`: the heartbeats of publishing
//!   point `{name}` ([`heartbeats`]);
//! - `GET /<name>.isml/Manifest` and `GET /<name>.isml/QualityLevels(<b>)/Fragments(<t>=<time>)`
//!   ([`origin`]); the same under `/<ManifestName>.ism/` for a program's archive;
//! - `/api/Programs...` ([`programs`]).
//!
//! Robustness: it listens on 127.0.0.1 unless told otherwise; request heads are capped (64 KiB,
//! 100 headers) and must come within 30 s, API bodies within 64 KiB; an ingest POST that sends
//! nothing for 60 s is closed; what is kept is bounded by the archive window and a byte cap per
//! track, in at most 256 publishing points of 64 streams; every refused request gets a log line.

pub mod archive;
pub mod clock;
pub mod heartbeats;
pub mod origin;
pub mod programs;
pub mod store;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};

use crate::http::{self, RequestHead};
use crate::record::{BodyReader, PostRecord};
use store::{Arrival, PublishingPoint, StoredFragment, Track};

/// How the endpoint runs.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Where it listens: 127.0.0.1:8080 by default.
    pub bind: SocketAddr,
    /// How much media each track keeps (the manifests' DVR window): seed 003's PT5M to PT25H.
    pub archive_window: Duration,
    /// Where to keep an on-disk copy of what is kept (per publishing point and track).
    pub archive_dir: Option<PathBuf>,
    /// At most this many bytes per track, whatever the window.
    pub max_track_bytes: u64,
    /// A publishing point with no open POST is still live this long after its last fragment.
    pub idle: Duration,
    /// A POST that sends nothing for this long is closed.
    pub body_timeout: Duration,
    /// Log lines go to stderr too.
    pub verbose: bool,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            bind: "127.0.0.1:8080".parse().expect("an address"),
            archive_window: Duration::from_secs(30 * 60),
            archive_dir: None,
            max_track_bytes: 512 << 20,
            idle: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            verbose: false,
        }
    }
}

const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Publishing points, and streams in one, that the endpoint takes: a client cannot make it
/// hold an unbounded number of them.
const MAX_POINTS: usize = 256;
const MAX_STREAMS: usize = 64;
const MAX_API_BODY: u64 = 64 * 1024;
const LOG_LINES: usize = 1000;

#[derive(Default)]
struct State {
    points: BTreeMap<String, PublishingPoint>,
    programs: programs::Programs,
    log: VecDeque<String>,
}

struct Shared {
    config: EndpointConfig,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn log(&self, line: String) {
        if self.config.verbose {
            eprintln!("{line}");
        }
        let mut st = self.lock();
        if st.log.len() == LOG_LINES {
            st.log.pop_front();
        }
        st.log.push_back(line);
    }
}

/// A running endpoint; dropping it stops the server.
pub struct Endpoint {
    addr: SocketAddr,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// One line per track, for the live status display.
#[derive(Debug, Clone)]
pub struct TrackStatus {
    pub point: String,
    pub stream: String,
    pub track: String,
    pub kind: String,
    pub fragments: usize,
    /// Seconds of media kept.
    pub kept_seconds: f64,
    pub last_time: Option<u64>,
    pub timescale: u32,
    /// Bits per second over the last 20 s.
    pub incoming_bitrate: u64,
    pub duplicates: u64,
    pub overlaps: u64,
    pub discontinuities: u64,
    pub past: u64,
    pub live: bool,
}

impl Endpoint {
    pub fn start(config: EndpointConfig) -> std::io::Result<Endpoint> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("endpoint")
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind(config.bind))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared { config, state: Mutex::default() });
        let s = shared.clone();
        runtime.spawn(async move {
            loop {
                let Ok((sock, peer)) = listener.accept().await else { continue };
                let s = s.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(sock, s.clone()).await {
                        s.log(format!("{peer}: connection ended: {e}"));
                    }
                });
            }
        });
        Ok(Endpoint { addr, shared, runtime: Some(runtime) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The ingest URL of a stream.
    pub fn ingest_url(&self, point: &str, stream: &str) -> String {
        format!("http://{}/{point}.isml/Streams({stream})", self.addr)
    }

    /// The client manifest URL of a publishing point.
    pub fn manifest_url(&self, point: &str) -> String {
        format!("http://{}/{point}.isml/Manifest", self.addr)
    }

    /// The heartbeats URL of a publishing point (its live event).
    pub fn heartbeats_url(&self, point: &str) -> String {
        format!(
            "http://{}/subscriptions/local/resourceGroups/local/providers/Microsoft.Media/mediaservices/local/\
             liveEvents/{point}/getTrackIngestHeartbeats?api-version=2022-11-01",
            self.addr
        )
    }

    /// The heartbeats of a publishing point, as the API answers them.
    pub fn heartbeats(&self, point: &str) -> serde_json::Value {
        let st = self.shared.lock();
        match st.points.get(point) {
            Some(pp) => heartbeats::heartbeats(pp, Instant::now(), SystemTime::now()),
            None => serde_json::json!({ "value": [] }),
        }
    }

    /// Every track's status.
    pub fn status(&self) -> Vec<TrackStatus> {
        let st = self.shared.lock();
        let now = Instant::now();
        let mut out = Vec::new();
        for (pname, pp) in &st.points {
            let live = pp.is_live(now, self.shared.config.idle);
            for (sid, s) in &pp.streams {
                for t in s.tracks.values() {
                    let ts = f64::from(t.meta.timescale.max(1));
                    let first = t.fragments.values().next().map(|f| f.time);
                    let recent: u64 = t
                        .arrivals
                        .iter()
                        .filter(|a| now.duration_since(a.at) <= heartbeats::WINDOW)
                        .map(|a| a.bytes * 8)
                        .sum();
                    out.push(TrackStatus {
                        point: pname.clone(),
                        stream: sid.clone(),
                        track: t.meta.name.clone(),
                        kind: t.meta.kind.clone(),
                        fragments: t.fragments.len(),
                        kept_seconds: match (first, t.end()) {
                            (Some(a), Some(b)) => (b - a) as f64 / ts,
                            _ => 0.0,
                        },
                        last_time: t.fragments.keys().next_back().copied(),
                        timescale: t.meta.timescale,
                        incoming_bitrate: recent / heartbeats::WINDOW.as_secs(),
                        duplicates: t.duplicates,
                        overlaps: t.overlaps,
                        discontinuities: t.discontinuities,
                        past: t.past,
                        live,
                    });
                }
            }
        }
        out
    }

    /// The log lines so far (refused requests, ingest events), oldest first.
    pub fn log_lines(&self) -> Vec<String> {
        self.shared.lock().log.iter().cloned().collect()
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn respond<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    status: u16,
    reason: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    http::respond_typed(w, status, reason, content_type, body).await
}

/// `/<name>.isml/<rest>` or `/<name>.ism/<rest>`: (name, program archive?, rest).
fn split_point(path: &str) -> Option<(String, bool, String)> {
    let path = path.split('?').next()?;
    let trimmed = path.strip_prefix('/')?;
    let (first, rest) = trimmed.split_once('/')?;
    if let Some(name) = first.strip_suffix(".isml") {
        return Some((name.to_string(), false, rest.to_string()));
    }
    first.strip_suffix(".ism").map(|name| (name.to_string(), true, rest.to_string()))
}

async fn serve(sock: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let peer = sock.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let (rd, mut wr) = sock.into_split();
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let head = match tokio::time::timeout(HEAD_TIMEOUT, http::read_head(&mut rd)).await {
        Ok(Ok(Some(h))) => h,
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(e)) => {
            shared.log(format!("{peer}: refused a bad request head: {e}"));
            return respond(&mut wr, 400, "Bad Request", "text/plain", b"bad request head\n").await;
        }
        Err(_) => {
            shared.log(format!("{peer}: no request head within {HEAD_TIMEOUT:?}: closed"));
            return Ok(());
        }
    };
    let path = head.path.clone();
    let method = head.method.as_str();
    if let Some(point) = heartbeats::live_event_of(&path) {
        if method != "POST" {
            shared.log(format!("{peer}: {method} {path}: 405 (the heartbeats API takes POST)"));
            return respond(&mut wr, 405, "Method Not Allowed", "text/plain", b"POST only\n").await;
        }
        let _ = read_small_body(&head, &mut rd).await;
        let body = {
            let st = shared.lock();
            st.points.get(&point).map(|pp| heartbeats::heartbeats(pp, Instant::now(), SystemTime::now()))
        };
        return match body {
            Some(b) => respond(&mut wr, 200, "OK", "application/json", b.to_string().as_bytes()).await,
            None => {
                shared.log(format!("{peer}: heartbeats of unknown live event {point}: 404"));
                let e = serde_json::json!({ "error": { "code": "NotFound", "message": format!("live event {point} has received no ingest") } });
                respond(&mut wr, 404, "Not Found", "application/json", e.to_string().as_bytes()).await
            }
        };
    }
    if path.starts_with("/api/Programs") {
        let body = match read_small_body(&head, &mut rd).await {
            Ok(b) => b,
            Err(e) => {
                shared.log(format!("{peer}: {method} {path}: 400 ({e})"));
                return respond(&mut wr, 400, "Bad Request", "text/plain", format!("{e}\n").as_bytes()).await;
            }
        };
        let base = format!("http://{}", head.header("host").unwrap_or("127.0.0.1"));
        let answer = {
            let mut st = shared.lock();
            let now = Instant::now();
            let idle = shared.config.idle;
            let live: Vec<String> =
                st.points.iter().filter(|(_, p)| p.is_live(now, idle)).map(|(n, _)| n.clone()).collect();
            st.programs.handle(method, &path, &body, now, &|c| live.iter().any(|l| l == c), &base)
        };
        if answer.status >= 400 {
            shared.log(format!("{peer}: {method} {path}: {} {}", answer.status, answer.reason));
        }
        let bytes = answer.body.map(|b| b.to_string()).unwrap_or_default();
        return respond(&mut wr, answer.status, answer.reason, "application/json", bytes.as_bytes()).await;
    }
    let Some((point, program, rest)) = split_point(&path) else {
        shared.log(format!("{peer}: {method} {path}: 404 (not a publishing point, heartbeats or programs URL)"));
        return respond(&mut wr, 404, "Not Found", "text/plain", b"unknown resource\n").await;
    };
    match (method, program) {
        ("POST", false) if crate::stream_id_of(&path).is_some() => {
            let stream = crate::stream_id_of(&path).unwrap_or_default();
            ingest(&head, rd, wr, shared, &point, &stream, &peer).await
        }
        ("GET", _) => {
            let answer = origin_get(&shared, &point, program, &rest);
            match answer {
                Some((ct, body)) => respond(&mut wr, 200, "OK", ct, &body).await,
                None => {
                    shared.log(format!("{peer}: GET {path}: 404"));
                    respond(&mut wr, 404, "Not Found", "text/plain", b"no such manifest or fragment\n").await
                }
            }
        }
        _ => {
            shared.log(format!("{peer}: {method} {path}: 405"));
            respond(&mut wr, 405, "Method Not Allowed", "text/plain", b"method not allowed\n").await
        }
    }
}

/// A request body of the APIs: bounded in size and time.
async fn read_small_body<R: tokio::io::AsyncBufRead + Unpin>(
    head: &RequestHead,
    rd: &mut R,
) -> Result<Vec<u8>, String> {
    if head.content_length().is_some_and(|n| n > MAX_API_BODY) {
        return Err(format!("body larger than {MAX_API_BODY} bytes"));
    }
    let mut body = http::IncomingBody::new(head);
    let mut out = Vec::new();
    let read = async {
        while let Some(p) = body.next(rd, 16 * 1024).await.map_err(|e| e.to_string())? {
            out.extend_from_slice(p);
            if out.len() as u64 > MAX_API_BODY {
                return Err(format!("body larger than {MAX_API_BODY} bytes"));
            }
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .map_err(|_| "body not sent within 10 s".to_string())??;
    Ok(out)
}

/// The manifest or a fragment of a publishing point (or of a program's archive).
fn origin_get(shared: &Shared, point: &str, program: bool, rest: &str) -> Option<(&'static str, Vec<u8>)> {
    let mut st = shared.lock();
    let now = Instant::now();
    let window_ticks = (shared.config.archive_window.as_secs_f64() * 1e7) as u64;
    let idle = shared.config.idle;
    if program {
        let live_points: Vec<String> =
            st.points.iter().filter(|(_, p)| p.is_live(now, idle)).map(|(n, _)| n.clone()).collect();
        let p = st.programs.by_id.values_mut().find(|p| p.manifest_name == point)?;
        let live = p.state(now) == programs::ProgramState::Running && live_points.contains(&p.channel);
        let window = (p.window.as_secs_f64() * 1e7) as u64;
        let tracks: Vec<&Track> = p.archive.values().collect();
        return serve_from(&tracks, live, window, rest);
    }
    let pp = st.points.get(point)?;
    let live = pp.is_live(now, idle);
    let by_name = pp.tracks_by_name();
    let mut tracks: Vec<&Track> = by_name.values().copied().collect();
    // Video first, then audio, then text, as encoders and origins list them.
    tracks.sort_by_key(|t| match t.meta.kind.as_str() {
        "video" => 0,
        "audio" => 1,
        _ => 2,
    });
    serve_from(&tracks, live, window_ticks, rest)
}

fn serve_from(tracks: &[&Track], live: bool, window_ticks: u64, rest: &str) -> Option<(&'static str, Vec<u8>)> {
    if rest == "Manifest" || rest.eq_ignore_ascii_case("manifest") {
        if tracks.is_empty() {
            return None;
        }
        return Some(("text/xml", origin::client_manifest(tracks, live, window_ticks).into_bytes()));
    }
    let (name, time) = origin::fragment_request(rest)?;
    let t = tracks.iter().find(|t| t.meta.name == name)?;
    origin::serve_fragment(t, time, live).map(|b| ("video/mp4", b))
}

/// An ingest request: the probe, or a POST whose fragments go onto the timelines.
async fn ingest(
    head: &RequestHead,
    mut rd: BufReader<tokio::net::tcp::OwnedReadHalf>,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    shared: Arc<Shared>,
    point: &str,
    stream: &str,
    peer: &str,
) -> std::io::Result<()> {
    let probe = head.content_length() == Some(0) && !head.is_chunked();
    let full = {
        let mut st = shared.lock();
        let full = match st.points.get(point) {
            Some(pp) => !pp.streams.contains_key(stream) && pp.streams.len() >= MAX_STREAMS,
            None => st.points.len() >= MAX_POINTS,
        };
        if !full {
            st.points.entry(point.to_string()).or_default().streams.entry(stream.to_string()).or_default();
        }
        full
    };
    if full {
        shared.log(format!(
            "{peer}: POST /{point}.isml/Streams({stream}): 503, at most {MAX_POINTS} publishing points of \
             {MAX_STREAMS} streams"
        ));
        let body = b"too many publishing points or streams\n";
        return respond(&mut wr, 503, "Service Unavailable", "text/plain", body).await;
    }
    if probe {
        return respond(&mut wr, 200, "OK", "text/plain", b"").await;
    }
    http::continue_if_expected(head, &mut wr).await?;
    let sized = !head.is_chunked() && head.content_length().is_some();
    {
        let mut st = shared.lock();
        let s = st.points.entry(point.to_string()).or_default().streams.entry(stream.to_string()).or_default();
        s.posts += 1;
        s.open_posts += 1;
        s.ended = false;
    }
    shared.log(format!("{peer}: POST /{point}.isml/Streams({stream}) started"));
    let mut rec =
        PostRecord::new(0, stream.to_string(), head.path.clone(), Vec::new(), head.is_chunked(), head.content_length());
    let mut reader = BodyReader::new(64 << 20);
    reader.keep = true;
    let mut body = http::IncomingBody::new(head);
    let mut header_set = false;
    let result: std::io::Result<()> = loop {
        let piece = match tokio::time::timeout(shared.config.body_timeout, body.next(&mut rd, 256 * 1024)).await {
            Ok(Ok(Some(p))) => p.to_vec(),
            Ok(Ok(None)) => break Ok(()),
            Ok(Err(e)) => break Err(e),
            Err(_) => break Err(std::io::Error::other(format!("nothing for {:?}", shared.config.body_timeout))),
        };
        reader.push(&piece, &mut rec);
        store_new(&shared, point, stream, &mut rec, &mut reader, &mut header_set);
    };
    if result.is_ok() {
        reader.end(&mut rec);
        store_new(&shared, point, stream, &mut rec, &mut reader, &mut header_set);
    }
    {
        let mut st = shared.lock();
        if let Some(s) = st.points.get_mut(point).and_then(|p| p.streams.get_mut(stream)) {
            s.open_posts = s.open_posts.saturating_sub(1);
            // A long POST ended on purpose ends the stream (a short sparse POST does not).
            if result.is_ok() && !sized {
                s.ended = true;
            }
        }
    }
    for v in rec.violations.iter().take(20) {
        shared.log(format!("{peer}: /{point}.isml/Streams({stream}): {v}"));
    }
    match result {
        Ok(()) => {
            shared.log(format!("{peer}: POST /{point}.isml/Streams({stream}) ended"));
            respond(&mut wr, 200, "OK", "text/plain", b"").await
        }
        Err(e) => {
            shared.log(format!("{peer}: POST /{point}.isml/Streams({stream}) broke off: {e}"));
            Ok(())
        }
    }
}

/// Moves what the reader completed (the header, fragments) into the store.
fn store_new(
    shared: &Shared,
    point: &str,
    stream: &str,
    rec: &mut PostRecord,
    reader: &mut BodyReader,
    header_set: &mut bool,
) {
    if rec.fragments.is_empty() && !(!*header_set && !rec.smil_tracks.is_empty() && !rec.moov_tracks.is_empty()) {
        return;
    }
    let cfg = &shared.config;
    let now = Instant::now();
    let wall = SystemTime::now();
    let mut st = shared.lock();
    let State { points, programs, .. } = &mut *st;
    let pp = points.entry(point.to_string()).or_default();
    let s = pp.streams.entry(stream.to_string()).or_default();
    if !*header_set && !rec.smil_tracks.is_empty() && !rec.moov_tracks.is_empty() {
        s.set_header(rec.header_bytes.clone(), &rec.smil_tracks, &rec.moov_tracks);
        *header_set = true;
    }
    let kept = std::mem::take(&mut reader.kept);
    for (info, bytes) in rec.fragments.drain(..).zip(kept) {
        let Some((_, time, duration)) = info.tfxd else { continue };
        let Some(track) = s.tracks.get_mut(&info.track_id) else { continue };
        let bytes = Arc::new(bytes);
        let f = StoredFragment { time, duration, bytes: bytes.clone(), arrived: wall };
        let how = track.add(f.clone(), now);
        s.last_arrival = Some(now);
        if matches!(how, Arrival::Duplicate | Arrival::Overlap) {
            continue;
        }
        track.trim(cfg.archive_window, cfg.max_track_bytes);
        if let Some(dir) = &cfg.archive_dir {
            archive::write(dir, point, &track.meta.name, &f, track.fragments.keys().next().copied());
        }
        // Running programs of this channel record it too.
        for p in programs.by_id.values_mut() {
            if p.channel == point && p.state(now) == programs::ProgramState::Running {
                let copy =
                    p.archive.entry(track.meta.name.clone()).or_insert_with(|| store::Track::new(track.meta.clone()));
                copy.add(f.clone(), now);
                copy.trim(p.window, cfg.max_track_bytes);
            }
        }
    }
}
