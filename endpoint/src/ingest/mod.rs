// SPDX-License-Identifier: MPL-2.0
//! Ingest: requests that bring media, and how what they bring reaches the store.
//!
//! The protocol side reads a request body into declared tracks and fragments ([`smooth`]
//! for Smooth ingest, through the incremental [`boxes`] reader and the [`lsm`] parser). The
//! store side is the same for any protocol: [`declare`] puts a source's tracks on the
//! point's per-name timelines, [`place`] adds a fragment, trims to the window, hands the
//! archive its writes and prunes, and lets running programs record it.

pub mod boxes;
pub mod lsm;
pub mod smooth;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};

use crate::archive::Op;
use crate::endpoint::{MAX_POINTS, MAX_STREAMS, Shared};
use crate::media::init::SampleDefaults;
use crate::media::meta::TrackMeta;
use crate::programs::ProgramState;
use crate::server::{Body, empty, refusal};
use crate::store::{Arrival, Track};
use smooth::{Event, SmoothBody};

/// A track an ingest request declares (Smooth: the Live Server Manifest and the moov; CMAF:
/// a header of one track).
#[derive(Debug, Clone)]
pub struct DeclaredTrack {
    /// track_ID in the moov and the fragments.
    pub track_id: u32,
    pub meta: TrackMeta,
    /// ftyp + moov of this track alone, for DASH and HLS (None for a sparse track).
    pub init: Option<Bytes>,
    pub defaults: SampleDefaults,
}

/// A fragment of an ingest request, checked and timed.
#[derive(Debug, Clone)]
pub struct Fragment {
    pub track_id: u32,
    pub time: u64,
    pub duration: u64,
    pub samples: u32,
    /// moof + mdat as ingested.
    pub bytes: Bytes,
    pub moof_len: usize,
}

/// Log lines a single request may add about its content (the rest are counted).
const NOTES_PER_REQUEST: usize = 20;

/// A source declared its tracks: they join the point's timelines (and the archive).
pub fn declare(shared: &Shared, point: &str, source: &str, tracks: &[DeclaredTrack], peer: &str) {
    let p = shared.point(point);
    let notes = {
        let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
        let notes = p.declare(source, tracks, SystemTime::now());
        if let Some(a) = &shared.archive {
            for t in tracks {
                if let Some(track) = p.tracks.get(&t.meta.name) {
                    let meta = (*track.meta).clone();
                    a.send(Op::Track { point: point.to_string(), meta, init: track.init.clone() });
                }
            }
        }
        notes
    };
    for n in notes {
        shared.log(format!("{peer}: /{point}.isml/Streams({source}): {n}"));
    }
}

/// Adds a fragment of a source to its point; how it fitted, or why it has no place.
pub fn place(shared: &Shared, point: &str, source: &str, f: &Fragment) -> Result<Arrival, String> {
    let (now, wall) = (Instant::now(), SystemTime::now());
    let cfg = &shared.config;
    let p = shared.point(point);
    let (name, how, meta, init) = {
        let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
        let (name, how) = p.add(source, f, now, wall)?;
        let track = p.tracks.get_mut(&name).expect("placed on this track");
        if !how.kept() {
            return Ok(how);
        }
        if let Some(a) = &shared.archive {
            let op = Op::Fragment {
                point: point.to_string(),
                track: name.clone(),
                time: f.time,
                duration: f.duration,
                bytes: f.bytes.clone(),
            };
            if a.send(op)
                && let Some(e) = track.timeline.entries.get_mut(&f.time)
            {
                e.archived = true;
            }
        }
        let removed = track.trim(cfg.archive_window, cfg.max_track_bytes, shared.archive.is_some());
        if let Some(a) = &shared.archive {
            for (time, duration) in removed {
                a.send(Op::Remove { point: point.to_string(), track: name.clone(), time, duration });
            }
        }
        (name.clone(), how, track.meta.clone(), track.init.clone())
    };
    // Running programs of this channel record the fragment too.
    let mut programs = shared.programs.lock().unwrap_or_else(|e| e.into_inner());
    for prog in programs.by_id.values_mut() {
        if prog.channel == point && prog.state(now) == ProgramState::Running {
            let window = prog.window;
            let copy = prog.archive.entry(name.clone()).or_insert_with(|| Track::new((*meta).clone(), init.clone()));
            copy.add(f.time, f.duration, f.bytes.clone(), f.moof_len, now, wall);
            copy.trim(window, cfg.max_track_bytes, false);
        }
    }
    Ok(how)
}

/// Whether the point (and the stream in it) can be taken; registers both.
fn admit(shared: &Shared, point: &str, stream: &str) -> bool {
    let mut points = shared.points.lock().unwrap_or_else(|e| e.into_inner());
    if !points.contains_key(point) && points.len() >= MAX_POINTS {
        return false;
    }
    let p = points.entry(point.to_string()).or_default().clone();
    drop(points);
    let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
    if !p.sources.contains_key(stream) && p.sources.len() >= MAX_STREAMS {
        return false;
    }
    p.source_mut(stream);
    true
}

/// A POST to `/<point>.isml/Streams(<stream>)`: the empty probe, a long chunked POST or a
/// short one with a Content-Length (a sparse stream's message).
pub async fn smooth_post(
    req: Request<Incoming>,
    point: &str,
    stream: &str,
    peer: &str,
    shared: Arc<Shared>,
) -> Response<Body> {
    let what = format!("POST /{point}.isml/Streams({stream})");
    if !admit(&shared, point, stream) {
        let why = format!("at most {MAX_POINTS} publishing points of {MAX_STREAMS} streams");
        return refusal(&shared, peer, &what, 503, &why);
    }
    let headers = req.headers();
    let chunked =
        headers.get(hyper::header::TRANSFER_ENCODING).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    let length: Option<u64> = headers.get(hyper::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    if !chunked && length.unwrap_or(0) == 0 {
        // The probe: an empty POST (Azure fragmented MP4 live ingest §2.2, rule 2).
        return empty(200);
    }
    {
        let p = shared.point(point);
        let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
        let s = p.source_mut(stream);
        s.requests += 1;
        s.open += 1;
    }
    shared.log(format!("{peer}: {what} started"));
    let mut body = req.into_body();
    let mut reader = SmoothBody::new(shared.config.box_limits);
    let (mut notes, mut fragments) = (0usize, 0u64);
    let outcome: Result<(), (u16, String)> = loop {
        let frame = match tokio::time::timeout(shared.config.body_timeout, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(e))) => break Err((400, format!("the body broke off: {e}"))),
            Ok(None) => break reader.finish().map_err(|e| (400, e)),
            Err(_) => break Err((408, format!("nothing received for {:?}", shared.config.body_timeout))),
        };
        let Ok(data) = frame.into_data() else { continue };
        if let Err(e) = reader.push(&data) {
            break Err((400, e));
        }
        while let Some(ev) = reader.next_event() {
            match ev {
                Event::Header { tracks, .. } => declare(&shared, point, stream, &tracks, peer),
                Event::Fragment(f) => match place(&shared, point, stream, &f) {
                    Ok(_) => fragments += 1,
                    Err(e) => note(&shared, peer, &what, &mut notes, format!("fragment refused: {e}")),
                },
                Event::Note(n) => note(&shared, peer, &what, &mut notes, n),
            }
        }
    };
    if notes > NOTES_PER_REQUEST {
        shared.log(format!("{peer}: {what}: {} more problems not logged", notes - NOTES_PER_REQUEST));
    }
    {
        let p = shared.point(point);
        let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
        let s = p.source_mut(stream);
        s.open = s.open.saturating_sub(1);
    }
    match outcome {
        Ok(()) => {
            shared.log(format!("{peer}: {what} ended ({fragments} fragments)"));
            empty(200)
        }
        Err((status, why)) => refusal(&shared, peer, &what, status, &format!("{why} (after {fragments} fragments)")),
    }
}

fn note(shared: &Shared, peer: &str, what: &str, count: &mut usize, line: String) {
    *count += 1;
    if *count <= NOTES_PER_REQUEST {
        shared.log(format!("{peer}: {what}: {line}"));
    }
}
