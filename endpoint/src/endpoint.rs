// SPDX-License-Identifier: MPL-2.0
//! The endpoint as a library: its configuration, what it shares between requests, and the
//! handle that starts it, reports on it and stops it when dropped.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpListener;

use crate::archive::{self, Archive};
use crate::heartbeats;
use crate::ingest::boxes::Limits;
use crate::media::meta::Kind;
use crate::programs::Programs;
use crate::store::{Entry, Point, Track};

/// How the endpoint runs. The defaults are what `fmp4ingest-endpoint` runs with.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Where it listens: 127.0.0.1:8080 by default.
    pub bind: SocketAddr,
    /// How much media each track keeps (the DVR window of the outputs).
    pub archive_window: Duration,
    /// Where to keep the archive on disk; `None` keeps memory only.
    pub archive_dir: Option<PathBuf>,
    /// Fragment bytes each track holds in memory. Without an archive directory, older
    /// fragments are dropped beyond it; with one, they are read back from disk.
    pub max_track_bytes: u64,
    /// A point with no open ingest request is still live this long after its last fragment.
    pub idle: Duration,
    /// An ingest request that sends nothing for this long is answered 408 and closed.
    pub body_timeout: Duration,
    /// A request head must arrive within this.
    pub head_timeout: Duration,
    /// The largest boxes an ingest body may carry.
    pub box_limits: Limits,
    /// Log lines go to stderr too.
    pub verbose: bool,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            archive_window: Duration::from_secs(30 * 60),
            archive_dir: None,
            max_track_bytes: 512 << 20,
            idle: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            head_timeout: Duration::from_secs(30),
            box_limits: Limits::default(),
            verbose: false,
        }
    }
}

/// Publishing points, and streams in one, that the endpoint takes: a client cannot make it
/// hold an unbounded number of them.
pub const MAX_POINTS: usize = 256;
pub const MAX_STREAMS: usize = 64;
/// Open connections; the next is answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 512;
/// Request heads: size and header count.
pub const MAX_HEAD: usize = 64 * 1024;
pub const MAX_HEADERS: usize = 100;
/// API request bodies (Programs, heartbeats): size, and the time to send them.
pub const MAX_API_BODY: usize = 64 * 1024;
pub const API_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Log lines kept for [`Endpoint::log_lines`].
const LOG_LINES: usize = 1000;

/// What requests share.
pub struct Shared {
    pub config: EndpointConfig,
    pub points: Mutex<BTreeMap<String, Arc<Mutex<Point>>>>,
    pub programs: Mutex<Programs>,
    pub archive: Option<Archive>,
    log: Mutex<VecDeque<String>>,
}

impl Shared {
    /// A log line: every refused request, every ingest request's start and end, every problem.
    pub fn log(&self, line: String) {
        if self.config.verbose {
            eprintln!("{line}");
        }
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() == LOG_LINES {
            log.pop_front();
        }
        log.push_back(line);
    }

    /// The point of that name, made if new.
    pub fn point(&self, name: &str) -> Arc<Mutex<Point>> {
        self.points.lock().unwrap_or_else(|e| e.into_inner()).entry(name.to_string()).or_default().clone()
    }

    /// The point of that name, if it exists.
    pub fn existing_point(&self, name: &str) -> Option<Arc<Mutex<Point>>> {
        self.points.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    /// The names of the points that are live now.
    pub fn live_points(&self) -> Vec<String> {
        let points: Vec<(String, Arc<Mutex<Point>>)> =
            self.points.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(n, p)| (n.clone(), p.clone())).collect();
        let now = Instant::now();
        points
            .into_iter()
            .filter(|(_, p)| p.lock().unwrap_or_else(|e| e.into_inner()).is_live(now, self.config.idle))
            .map(|(n, _)| n)
            .collect()
    }
}

/// One line per track, for the live status display.
#[derive(Debug, Clone)]
pub struct TrackStatus {
    pub point: String,
    /// The ingest streams that feed the track.
    pub streams: Vec<String>,
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
    /// Requests with a body from the streams that feed it (a Smooth POST; a CMAF header or
    /// segment).
    pub requests: u64,
    /// CMAF ingest: headers taken, segments answered 412 (no header), requests refused (400,
    /// 415).
    pub headers: u64,
    pub precondition_failed: u64,
    pub refused: u64,
    /// CMAF ingest: every stream feeding the track sent its last segment (`lmsg`).
    pub ended: bool,
}

/// A running endpoint; dropping it stops the server.
pub struct Endpoint {
    addr: SocketAddr,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Endpoint {
    /// Starts the endpoint: reads back the archive directory if there is one, then listens.
    pub fn start(config: EndpointConfig) -> std::io::Result<Endpoint> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("endpoint")
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind(config.bind))?;
        let addr = listener.local_addr()?;
        let mut points: BTreeMap<String, Arc<Mutex<Point>>> = BTreeMap::new();
        let mut lines = Vec::new();
        if let Some(dir) = &config.archive_dir {
            let (tracks, problems) = archive::restore(dir);
            lines.extend(problems);
            let restored = tracks.len();
            for r in tracks {
                let p = points.entry(r.point.clone()).or_default();
                let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
                // A sparse track's few bytes come back to memory: its messages are in the
                // manifests, not only in its fragments.
                let text = r.meta.kind == Kind::Text;
                let mut t = Track::new(r.meta, r.init);
                for (time, duration) in r.fragments {
                    let data = text
                        .then(|| {
                            std::fs::read(archive::fragment_path(dir, &r.point, &t.meta.name, time, duration)).ok()
                        })
                        .flatten()
                        .filter(|b| b.len() >= 8);
                    let moof_len = data.as_ref().map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                    let size = data.as_ref().map_or(0, |b| b.len() as u64);
                    let e = Entry { duration, size, moof_len, data: data.map(bytes::Bytes::from), archived: true };
                    t.timeline.insert(time, e);
                }
                p.tracks.insert(t.meta.name.clone(), t);
                p.generation += 1;
            }
            if restored > 0 {
                lines.push(format!("archive: {restored} tracks read back from {}", dir.display()));
            }
        }
        let shared = Arc::new_cyclic(|weak: &std::sync::Weak<Shared>| {
            let archive = config.archive_dir.clone().and_then(|dir| {
                let w = weak.clone();
                Archive::start(dir, move |line| {
                    if let Some(s) = w.upgrade() {
                        s.log(line);
                    }
                })
                .ok()
            });
            Shared {
                config: config.clone(),
                points: Mutex::new(points),
                programs: Mutex::default(),
                archive,
                log: Mutex::default(),
            }
        });
        if config.archive_dir.is_some() && shared.archive.is_none() {
            return Err(std::io::Error::other("cannot start the archive writer"));
        }
        for l in lines {
            shared.log(l);
        }
        runtime.spawn(crate::server::serve(listener, shared.clone()));
        if config.archive_dir.is_some() {
            let s = shared.clone();
            runtime.spawn_blocking(move || crate::server::warm(&s));
        }
        Ok(Endpoint { addr, shared, runtime: Some(runtime) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn base(&self, point: &str) -> String {
        format!("http://{}/{}.isml", self.addr, crate::output::url_part(point))
    }

    /// The Smooth ingest URL of a stream.
    pub fn ingest_url(&self, point: &str, stream: &str) -> String {
        format!("{}/Streams({})", self.base(point), crate::output::url_part(stream))
    }

    /// The publishing point URL of a point, for CMAF ingest (`protocol=cmaf`): each track
    /// goes to `<this>/Streams(<track>.cmfv|cmfa|cmfm)`.
    pub fn publishing_point_url(&self, point: &str) -> String {
        self.base(point)
    }

    /// The Smooth client manifest of a point.
    pub fn manifest_url(&self, point: &str) -> String {
        format!("{}/Manifest", self.base(point))
    }

    /// The DASH MPD of a point.
    pub fn mpd_url(&self, point: &str) -> String {
        format!("{}/.mpd", self.base(point))
    }

    /// The HLS multivariant playlist of a point.
    pub fn hls_url(&self, point: &str) -> String {
        format!("{}/.m3u8", self.base(point))
    }

    /// The heartbeats URL of a point (its live event).
    pub fn heartbeats_url(&self, point: &str) -> String {
        format!(
            "http://{}/subscriptions/local/resourceGroups/local/providers/Microsoft.Media/mediaservices/local/\
             liveEvents/{}/getTrackIngestHeartbeats?api-version=2022-11-01",
            self.addr,
            crate::output::url_part(point)
        )
    }

    /// The heartbeats of a point, as the API answers them.
    pub fn heartbeats(&self, point: &str) -> serde_json::Value {
        match self.shared.existing_point(point) {
            Some(p) => {
                heartbeats::heartbeats(&p.lock().unwrap_or_else(|e| e.into_inner()), Instant::now(), SystemTime::now())
            }
            None => serde_json::json!({ "value": [] }),
        }
    }

    /// Every track's status.
    pub fn status(&self) -> Vec<TrackStatus> {
        let points: Vec<(String, Arc<Mutex<Point>>)> = self
            .shared
            .points
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(n, p)| (n.clone(), p.clone()))
            .collect();
        let now = Instant::now();
        let mut out = Vec::new();
        for (name, p) in points {
            let p = p.lock().unwrap_or_else(|e| e.into_inner());
            let live = p.is_live(now, self.shared.config.idle);
            for t in p.ordered() {
                let ts = f64::from(t.meta.timescale.max(1));
                let recent: u64 = t
                    .arrivals
                    .iter()
                    .filter(|a| now.duration_since(a.at) <= heartbeats::WINDOW)
                    .map(|a| a.bytes * 8)
                    .sum();
                let feeding: Vec<(&String, &crate::store::Source)> =
                    p.sources.iter().filter(|(_, s)| s.tracks.values().any(|n| *n == t.meta.name)).collect();
                let sum = |f: &dyn Fn(&crate::store::Source) -> u64| feeding.iter().map(|(_, s)| f(s)).sum::<u64>();
                out.push(TrackStatus {
                    point: name.clone(),
                    streams: feeding.iter().map(|(id, _)| (*id).clone()).collect(),
                    track: t.meta.name.clone(),
                    kind: t.meta.kind.as_str().to_string(),
                    fragments: t.timeline.entries.len(),
                    kept_seconds: match (t.timeline.first(), t.timeline.end()) {
                        (Some(a), Some(b)) => (b - a) as f64 / ts,
                        _ => 0.0,
                    },
                    last_time: t.timeline.entries.keys().next_back().copied(),
                    timescale: t.meta.timescale,
                    incoming_bitrate: recent / heartbeats::WINDOW.as_secs(),
                    duplicates: t.counts.duplicates,
                    overlaps: t.counts.overlaps,
                    discontinuities: t.counts.discontinuities,
                    past: t.counts.past,
                    live,
                    requests: sum(&|s| s.requests),
                    headers: sum(&|s| s.cmaf.headers),
                    precondition_failed: sum(&|s| s.cmaf.precondition_failed),
                    refused: sum(&|s| s.cmaf.refused),
                    ended: !feeding.is_empty() && feeding.iter().all(|(_, s)| s.cmaf.ended),
                });
            }
        }
        out
    }

    /// The log lines so far (refused requests, ingest events), oldest first.
    pub fn log_lines(&self) -> Vec<String> {
        self.shared.log.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }

    /// The archive writer's counts: (written, removed, failed, dropped).
    pub fn archive_counts(&self) -> Option<(u64, u64, u64, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        self.shared.archive.as_ref().map(|a| {
            let s = &a.stats;
            (s.written.load(Relaxed), s.removed.load(Relaxed), s.failed.load(Relaxed), s.dropped.load(Relaxed))
        })
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
