// SPDX-License-Identifier: MPL-2.0
//! The HTTP/1.1 server, on hyper: keep-alive, pipelining, `HEAD` and `Expect: 100-continue`
//! as hyper does them, with the endpoint's limits — request heads of at most 64 KiB and 100
//! headers (hyper answers 431 beyond), due within 30 s; API bodies of at most 64 KiB within
//! 10 s (413, 408); at most 512 connections (503). Ingest bodies stream into the incremental
//! box reader as they arrive (see [`crate::ingest`]).
//!
//! Every refused request is answered with its status and a one-line `text/plain` reason, and
//! logged with the peer, the method and the path.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::endpoint::{API_BODY_TIMEOUT, MAX_API_BODY, MAX_CONNECTIONS, MAX_HEAD, MAX_HEADERS, Shared};
use crate::media::fragment::{self, Wrap};
use crate::media::meta::Kind;
use crate::output::smooth::LOOKAHEAD;
use crate::programs::ProgramState;
use crate::route::{self, Resource, Route, Source};
use crate::store::{self, Listing, Output, Track};
use crate::{archive, heartbeats, ingest, output};

/// A response body of whole parts, sent one after the other (a served fragment is its new
/// moof and the stored mdat, without copying the mdat). Its length is known: hyper sends it
/// with Content-Length, and leaves it out for HEAD.
#[derive(Debug, Default)]
pub struct Body(VecDeque<Bytes>);

impl Body {
    pub fn from_parts(parts: impl IntoIterator<Item = Bytes>) -> Self {
        Body(parts.into_iter().filter(|b| !b.is_empty()).collect())
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().0.pop_front().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.iter().map(|b| b.len() as u64).sum())
    }
}

fn response(status: u16, content_type: &str, parts: impl IntoIterator<Item = Bytes>) -> Response<Body> {
    let mut r = Response::new(Body::from_parts(parts));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

/// A bodiless answer.
pub fn empty(status: u16) -> Response<Body> {
    let mut r = Response::new(Body::default());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    r
}

/// A refused request: its status, its reason in one line of text, and a log line.
pub fn refusal(shared: &Shared, peer: &str, what: &str, status: u16, reason: &str) -> Response<Body> {
    let reason: String = reason.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    shared.log(format!("{peer}: {what}: {status} ({reason})"));
    response(status, "text/plain; charset=utf-8", [Bytes::from(format!("{reason}\n"))])
}

/// A connection's socket that closes gently: when hyper is done with it (after a refused
/// request whose body was not read, typically), the write side is shut and what the client
/// still sends is read and dropped for a while (at most 2 s and 1 MiB), so that its kernel
/// does not turn the unread bytes into a reset that destroys the answer before the client
/// reads it ("lingering close").
struct Linger(Option<TcpStream>);

impl Linger {
    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.0.as_mut().expect("present until dropped"))
    }
}

impl AsyncRead for Linger {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().stream().poll_read(cx, buf)
    }
}

impl AsyncWrite for Linger {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.get_mut().stream().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut().stream().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().stream().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().stream().poll_shutdown(cx)
    }
}

impl Drop for Linger {
    fn drop(&mut self) {
        let (Some(mut s), Ok(rt)) = (self.0.take(), tokio::runtime::Handle::try_current()) else { return };
        rt.spawn(async move {
            let _ = s.shutdown().await;
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
            let (mut buf, mut total) = (vec![0u8; 16 * 1024], 0usize);
            while total < 1 << 20 {
                match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => total += n,
                    _ => break,
                }
            }
        });
    }
}

/// Accepts connections for ever.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, typically: wait rather than spin.
                shared.log(format!("accept failed: {e}"));
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let peer = peer.to_string();
        if open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::AcqRel);
            shared.log(format!("{peer}: connection refused: 503 (at most {MAX_CONNECTIONS} connections)"));
            tokio::spawn(async move {
                let mut stream = stream;
                let reason = format!("at most {MAX_CONNECTIONS} connections\n");
                let answer = format!(
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{reason}",
                    reason.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
            continue;
        }
        let (shared, open) = (shared.clone(), open.clone());
        tokio::spawn(async move {
            let svc = {
                let (shared, peer) = (shared.clone(), peer.clone());
                service_fn(move |req| {
                    let (shared, peer) = (shared.clone(), peer.clone());
                    async move { Ok::<_, Infallible>(handle(req, &peer, shared).await) }
                })
            };
            let result = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(shared.config.head_timeout)
                .max_header_size(MAX_HEAD)
                .max_headers(MAX_HEADERS)
                .keep_alive(true)
                .serve_connection(TokioIo::new(Linger(Some(stream))), svc)
                .await;
            if let Err(e) = result {
                let why = if e.is_timeout() {
                    format!("no complete request head within {:?}: closed", shared.config.head_timeout)
                } else if e.is_parse_too_large() {
                    format!("request head over {MAX_HEAD} bytes or {MAX_HEADERS} headers: 431")
                } else if e.is_parse() {
                    format!("malformed request: 400 ({e})")
                } else {
                    format!("connection ended: {e}")
                };
                shared.log(format!("{peer}: {why}"));
            }
            open.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// One request.
async fn handle(req: Request<Incoming>, peer: &str, shared: Arc<Shared>) -> Response<Body> {
    let method = req.method().as_str().to_string();
    let target = req.uri().path_and_query().map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let what = format!("{method} {target}");
    let route = match route::route(&method, &target) {
        Ok(r) => r,
        Err(r) => {
            let mut resp = refusal(&shared, peer, &what, r.status, &r.reason);
            if let Some(allow) = r.allow {
                resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            return resp;
        }
    };
    let mut resp = match route {
        Route::Ingest { point, stream } => return ingest::ingest(req, &point, &stream, peer, shared).await,
        Route::MpdUpload { point, file } => {
            let stored =
                small_body(req.into_body()).await.and_then(|body| ingest::store_mpd(&shared, &point, &file, body));
            return match stored {
                Ok(line) => {
                    shared.log(format!("{peer}: {what}: {line}"));
                    empty(200)
                }
                Err((status, why)) => refusal(&shared, peer, &what, status, &why),
            };
        }
        Route::Heartbeats { point } => {
            if let Err((status, why)) = small_body(req.into_body()).await {
                return refusal(&shared, peer, &what, status, &why);
            }
            let Some(p) = shared.existing_point(&point) else {
                shared.log(format!("{peer}: {what}: 404 (live event {point} has received no ingest)"));
                let e = serde_json::json!({ "error": { "code": "NotFound", "message": format!("live event {point} has received no ingest") } });
                return response(404, "application/json", [Bytes::from(e.to_string())]);
            };
            let body =
                heartbeats::heartbeats(&p.lock().unwrap_or_else(|e| e.into_inner()), Instant::now(), SystemTime::now());
            response(200, "application/json", [Bytes::from(body.to_string())])
        }
        Route::Programs => {
            let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1").to_string();
            let body = match small_body(req.into_body()).await {
                Ok(b) => b,
                Err((status, why)) => return refusal(&shared, peer, &what, status, &why),
            };
            let live = shared.live_points();
            let answer = shared.programs.lock().unwrap_or_else(|e| e.into_inner()).handle(
                &method,
                &target,
                &body,
                Instant::now(),
                &|c| live.iter().any(|l| l == c),
                &format!("http://{host}"),
            );
            if answer.status >= 400 {
                let msg =
                    answer.body.as_ref().and_then(|b| b["odata.error"]["message"]["value"].as_str()).unwrap_or("");
                shared.log(format!("{peer}: {what}: {} ({msg})", answer.status));
            }
            let bytes = answer.body.map(|b| Bytes::from(b.to_string()));
            response(answer.status, "application/json", bytes)
        }
        Route::Get { source, resource } => match get(&shared, &source, &resource).await {
            Ok(r) => r,
            Err((status, why)) => return refusal(&shared, peer, &what, status, &why),
        },
    };
    // Players in browsers (dash.js, hls.js) read the outputs from other origins. For HEAD,
    // hyper sends the head alone, with the Content-Length of the body.
    resp.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    resp
}

/// An API request body: at most [`MAX_API_BODY`] bytes, within [`API_BODY_TIMEOUT`].
async fn small_body(body: Incoming) -> Result<Bytes, (u16, String)> {
    let limited = http_body_util::Limited::new(body, MAX_API_BODY);
    match tokio::time::timeout(API_BODY_TIMEOUT, limited.collect()).await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err((413, format!("the body is larger than {MAX_API_BODY} bytes")))
        }
        Ok(Err(e)) => Err((400, format!("the body broke off: {e}"))),
        Err(_) => Err((408, format!("the body did not arrive within {API_BODY_TIMEOUT:?}"))),
    }
}

type Answer = Result<Response<Body>, (u16, String)>;

/// The resources of a point or a program.
async fn get(shared: &Shared, source: &Source, resource: &Resource) -> Answer {
    match source {
        Source::Point(name) => {
            let p = shared.existing_point(name).ok_or_else(|| (404, format!("no publishing point {name}")))?;
            point_resource(shared, name, &p, resource).await
        }
        Source::Program(manifest) => program_resource(shared, manifest, resource).await,
    }
}

fn output_of(resource: &Resource) -> Option<Output> {
    Some(match resource {
        Resource::Smooth => Output::Smooth,
        Resource::Mpd => Output::Mpd,
        Resource::HlsMain => Output::HlsMain,
        Resource::HlsMedia(t) => Output::HlsMedia(t.clone()),
        _ => return None,
    })
}

fn manifest_response(content_type: &str, bytes: Bytes) -> Response<Body> {
    let mut r = response(200, content_type, [bytes]);
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn rendered(output: &Output, listing: &Listing) -> Result<(&'static str, Bytes), (u16, String)> {
    output::render(output, listing)
        .map(|(ct, text)| (ct, Bytes::from(text)))
        .ok_or_else(|| (404, "no track of this point can be served in this format yet".to_string()))
}

/// An output of a point: the rendering cached for its generation, or a snapshot rendered
/// without the point's lock (the fragment lists from the tracks' bucket caches).
fn output_bytes(
    shared: &Shared,
    p: &std::sync::Mutex<store::Point>,
    out: &Output,
) -> Result<(&'static str, Bytes), (u16, String)> {
    let cfg = &shared.config;
    // What the output depends on: the point's generation, or for an HLS media playlist its
    // track's and the sparse tracks' (and whether the anchor of its date-times is known).
    let generation_of = |p: &store::Point| match out {
        Output::HlsMedia(name) => {
            // Its track, and the sparse tracks its date ranges come from.
            let text: u64 = p.tracks.values().filter(|t| t.meta.kind == Kind::Text).map(|t| t.generation).sum();
            p.tracks.get(name).map_or(0, |t| (t.generation + text) * 2 + u64::from(p.anchor.is_some()))
        }
        _ => p.generation,
    };
    let (key, generation, listing) = {
        let p = p.lock().unwrap_or_else(|e| e.into_inner());
        let live = p.is_live(Instant::now(), cfg.idle);
        let key = (out.clone(), live);
        let generation = generation_of(&p);
        if let Some((g, bytes)) = p.cache.get(&key)
            && *g == generation
        {
            return Ok((output::content_type(out), bytes.clone()));
        }
        let mut tracks = p.ordered();
        if let Output::HlsMedia(name) = out {
            tracks.retain(|t| t.meta.name == *name || t.meta.kind == Kind::Text);
        }
        (key, generation, store::listing(&tracks, live, cfg.archive_window, p.anchor, p.changed))
    };
    let (ct, bytes) = rendered(out, &listing)?;
    let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
    if generation_of(&p) == generation {
        p.cache.insert(key, (generation, bytes.clone()));
    }
    Ok((ct, bytes))
}

/// Renders every output of every point once, so that the first players of an archive read
/// back at start do not wait for 45,000-entry lists to be written.
pub fn warm(shared: &Shared) {
    let points: Vec<Arc<std::sync::Mutex<store::Point>>> =
        shared.points.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
    for p in points {
        let mut outputs = vec![Output::Smooth, Output::Mpd, Output::HlsMain];
        let tracks: Vec<String> = p.lock().unwrap_or_else(|e| e.into_inner()).tracks.keys().cloned().collect();
        outputs.extend(tracks.into_iter().map(Output::HlsMedia));
        for out in outputs {
            let _ = output_bytes(shared, &p, &out);
        }
    }
}

async fn point_resource(
    shared: &Shared,
    name: &str,
    p: &std::sync::Mutex<store::Point>,
    resource: &Resource,
) -> Answer {
    if let Some(out) = output_of(resource) {
        let (ct, bytes) = output_bytes(shared, p, &out)?;
        return Ok(manifest_response(ct, bytes));
    }
    let (track, time, wrap) = match resource {
        Resource::PostedMpd(file) => {
            let mpd = p.lock().unwrap_or_else(|e| e.into_inner()).mpds.get(file).cloned();
            let mpd = mpd.ok_or_else(|| (404, format!("no MPD {file} was posted to this point")))?;
            return Ok(manifest_response("application/dash+xml", mpd));
        }
        Resource::Init(t) => {
            let p = p.lock().unwrap_or_else(|e| e.into_inner());
            let track = p.tracks.get(t).ok_or_else(|| (404, format!("no track {t}")))?;
            let init = track.init.clone().ok_or_else(|| (404, format!("track {t} has no init segment")))?;
            return Ok(response(200, content_type(track), [init]));
        }
        Resource::Segment { track, time } => (track, *time, true),
        Resource::SmoothFragment { track, time } => (track, *time, false),
        _ => unreachable!("outputs are handled above"),
    };
    let found = {
        let p = p.lock().unwrap_or_else(|e| e.into_inner());
        let t = p.tracks.get(track).ok_or_else(|| (404, format!("no track {track}")))?;
        stored(t, time)?
    };
    let path = shared.archive.as_ref().map(|a| archive::fragment_path(&a.dir, name, track, time, found.duration));
    serve_fragment(found, wrap, path).await
}

/// What serving a fragment needs, taken under the lock.
struct Found {
    time: u64,
    duration: u64,
    data: Option<Bytes>,
    moof_len: usize,
    lookahead: Vec<(u64, u64)>,
    content_type: &'static str,
}

fn content_type(t: &Track) -> &'static str {
    if t.meta.kind == Kind::Audio { "audio/mp4" } else { "video/mp4" }
}

fn stored(t: &Track, time: u64) -> Result<Found, (u16, String)> {
    let e = t
        .timeline
        .entries
        .get(&time)
        .ok_or_else(|| (404, format!("track {} has no fragment at {time}", t.meta.name)))?;
    let lookahead = t.timeline.entries.range(time + 1..).take(LOOKAHEAD).map(|(s, n)| (*s, n.duration)).collect();
    Ok(Found {
        time,
        duration: e.duration,
        data: e.data.clone(),
        moof_len: e.moof_len as usize,
        lookahead,
        content_type: content_type(t),
    })
}

/// The served fragment: from memory, or read back from the archive off the async workers.
async fn serve_fragment(found: Found, cmaf: bool, path: Option<std::path::PathBuf>) -> Answer {
    let (bytes, moof_len) = match found.data {
        Some(b) => (b, found.moof_len),
        None => {
            let path = path.ok_or_else(|| (404, "the fragment left memory and there is no archive".to_string()))?;
            let shown = path.display().to_string();
            let b = tokio::task::spawn_blocking(move || std::fs::read(path))
                .await
                .map_err(|e| (500, format!("reading {shown}: {e}")))?
                .map_err(|e| (404, format!("the archive has no {shown}: {e}")))?;
            let moof_len = u32::from_be_bytes(b.get(..4).and_then(|s| s.try_into().ok()).unwrap_or([0; 4])) as usize;
            (Bytes::from(b), moof_len)
        }
    };
    let wrap = if cmaf { Wrap::Cmaf } else { Wrap::Smooth { lookahead: &found.lookahead } };
    // The time and duration are the timeline's, whatever the stored bytes say.
    let (moof, mdat) = fragment::rewrap(&bytes, moof_len, found.time, found.duration, wrap)
        .map_err(|e| (500, format!("the stored fragment cannot be served: {e}")))?;
    let mut r = response(200, found.content_type, [moof, mdat]);
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
    Ok(r)
}

async fn program_resource(shared: &Shared, manifest: &str, resource: &Resource) -> Answer {
    let live_points = shared.live_points();
    let now = Instant::now();
    let found = {
        let mut programs = shared.programs.lock().unwrap_or_else(|e| e.into_inner());
        let p = programs
            .by_id
            .values_mut()
            .find(|p| p.manifest_name == manifest)
            .ok_or_else(|| (404, format!("no program with ManifestName {manifest}")))?;
        let live = p.state(now) == ProgramState::Running && live_points.contains(&p.channel);
        if let Some(out) = output_of(resource) {
            let mut tracks: Vec<&Track> = p.archive.values().collect();
            tracks.sort_by_key(|t| t.meta.kind.order());
            let listing = store::listing(&tracks, live, p.window, None, None);
            drop(programs);
            let (ct, bytes) = rendered(&out, &listing)?;
            return Ok(manifest_response(ct, bytes));
        }
        let (track, time, cmaf) = match resource {
            Resource::Init(t) => {
                let track = p.archive.get(t).ok_or_else(|| (404, format!("no track {t}")))?;
                let init = track.init.clone().ok_or_else(|| (404, format!("track {t} has no init segment")))?;
                return Ok(response(200, content_type(track), [init]));
            }
            Resource::Segment { track, time } => (track, *time, true),
            Resource::SmoothFragment { track, time } => (track, *time, false),
            Resource::PostedMpd(file) => return Err((404, format!("a program keeps no posted MPD ({file})"))),
            _ => unreachable!("outputs are handled above"),
        };
        let t = p.archive.get(track).ok_or_else(|| (404, format!("no track {track}")))?;
        (stored(t, time)?, cmaf)
    };
    serve_fragment(found.0, found.1, None).await
}
