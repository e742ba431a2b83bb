// SPDX-License-Identifier: MPL-2.0
//! DASH-IF Live Media Ingest v1.2 Interface-1 ("CMAF ingest") on the test receiver.
//!
//! Each track posts (or puts) to its own path, `<pp>.isml/Streams(<name>.cmfv|cmfa|cmfm)`, on
//! keep-alive connections: an empty request (the probe), the CMAF header, then one CMAF segment
//! per request, with a Content-Length or chunked. The receiver answers every request, keeps the
//! connection open, answers 412 to a segment of a track whose header it does not have (none
//! came, or it "restarted" since), and records per track what a strict receiver checks: the
//! header (and whether it changed), every segment (brands, `prft`, `mfhd`, `tfdt`, samples),
//! duplicates (a resent segment), and violations: `mfhd` not +1, `tfdt` not continuous, a
//! media segment without `prft`, more than one segment in a request, a segment on a connection
//! that carried no header, segments after the one with `lmsg`.
//!
//! The faults of [`crate::faults`] apply per connection, counting the new segments it brought:
//! after N of them, the next segment request is cut off part way (`Abort`), not read for a
//! while (`Stall`), or answered with a status (`ErrorStatus`; a 412 also makes the receiver
//! forget the header); `ProbeStatus`, `PostStatus` (every request with a body), `Redirect`
//! (probes) and `SlowRead` as for Smooth; [`crate::Receiver::restart`] refuses connections and
//! forgets every header.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::BufReader;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::cmaf_mp4::{self, HeaderInfo, Segment};
use crate::http::{self, RequestHead};
use crate::{Receiver, Shared, faults, stream_id_of};

/// The extension of a CMAF track's name, if the path is a CMAF track's.
fn extension(stream_id: &str) -> Option<&str> {
    stream_id.rsplit_once('.').map(|(_, e)| e).filter(|e| matches!(*e, "cmfv" | "cmfa" | "cmfm"))
}

/// Whether a request path is a CMAF ingest track's: `.../<pp>.isml/Streams(<name>.cmf[vam])`.
pub fn is_cmaf_path(path: &str) -> bool {
    stream_id_of(path).is_some_and(|id| extension(&id).is_some())
}

/// What a request carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmafRequestKind {
    /// No body.
    Probe,
    /// A body starting with `ftyp`.
    Header,
    Segment,
}

/// One request to a CMAF track.
#[derive(Debug, Clone)]
pub struct CmafRequest {
    /// Order of arrival among CMAF requests.
    pub index: usize,
    /// The connection it came on, numbered from 1 in order of arrival.
    pub connection: u64,
    /// The track's path (`/<pp>.isml/Streams(<name>.<ext>)`).
    pub track: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub chunked: bool,
    pub content_length: Option<u64>,
    /// Body bytes read.
    pub bytes: u64,
    /// The body ended properly.
    pub complete: bool,
    pub kind: Option<CmafRequestKind>,
    pub status: Option<u16>,
    /// How the receiver ended it on purpose (an injected fault).
    pub ended_by_receiver: Option<String>,
    pub started: Instant,
    pub ended: Option<Instant>,
}

impl CmafRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A segment received.
#[derive(Debug, Clone)]
pub struct SegmentRecord {
    pub request: usize,
    pub connection: u64,
    pub segment: Segment,
    /// The request body.
    pub bytes: Vec<u8>,
    /// The same segment (sequence and tfdt, same media) came before: a resend.
    pub duplicate: bool,
    pub arrived: Instant,
}

/// What the receiver knows of one track.
#[derive(Debug, Clone, Default)]
pub struct CmafTrack {
    pub path: String,
    /// `<name>.<ext>`.
    pub name: String,
    /// The last header received, and how many times one came.
    pub header: Option<Vec<u8>>,
    pub header_info: Option<HeaderInfo>,
    pub headers_received: usize,
    /// Connections that carried the header.
    pub header_connections: Vec<u64>,
    pub segments: Vec<SegmentRecord>,
    /// Segments answered 412: no header was there for them.
    pub refused_412: usize,
    /// Segments refused by a `SegmentStatus` fault: (sequence, status).
    pub refused: Vec<(u32, u16)>,
    pub violations: Vec<String>,
    /// The receiver generation the header belongs to (a restart forgets it).
    header_generation: Option<u64>,
}

impl CmafTrack {
    pub fn extension(&self) -> &str {
        extension(&self.name).unwrap_or("")
    }

    /// Segments received for the first time, in arrival order.
    pub fn unique_segments(&self) -> Vec<&SegmentRecord> {
        self.segments.iter().filter(|s| !s.duplicate).collect()
    }

    /// `mfhd` sequence numbers of the segments received for the first time.
    pub fn sequences(&self) -> Vec<u32> {
        self.unique_segments().iter().map(|s| s.segment.sequence).collect()
    }

    /// (tfdt, duration) of every segment, by time, each once.
    pub fn timeline(&self) -> Vec<(u64, u64)> {
        let mut t: Vec<(u64, u64)> =
            self.unique_segments().iter().map(|s| (s.segment.tfdt, s.segment.duration)).collect();
        t.sort_unstable();
        t
    }

    /// Places where the timeline is not contiguous: (expected next time, actual time).
    pub fn gaps(&self) -> Vec<(u64, u64)> {
        self.timeline().windows(2).filter(|w| w[0].0 + w[0].1 != w[1].0).map(|w| (w[0].0 + w[0].1, w[1].0)).collect()
    }

    /// The track as a file: the header, then every segment once, by time (what an origin
    /// archives, and what a demuxer can play).
    pub fn file(&self) -> Vec<u8> {
        let mut segs = self.unique_segments();
        segs.sort_by_key(|s| s.segment.tfdt);
        let mut out = self.header.clone().unwrap_or_default();
        for s in segs {
            out.extend_from_slice(&s.bytes);
        }
        out
    }

    /// The last segment says `lmsg` (in its first copy, or in one sent again with it).
    pub fn ended(&self) -> bool {
        let Some(last) = self.unique_segments().last().map(|s| (s.segment.sequence, s.segment.tfdt)) else {
            return false;
        };
        self.segments.iter().any(|s| s.segment.lmsg && (s.segment.sequence, s.segment.tfdt) == last)
    }

    /// Takes a segment in: a duplicate, or the next one of the timeline, checked.
    fn add_segment(&mut self, request: usize, connection: u64, segment: Segment, bytes: Vec<u8>) -> bool {
        let same =
            self.segments.iter().find(|s| s.segment.sequence == segment.sequence && s.segment.tfdt == segment.tfdt);
        let duplicate = same.is_some();
        if let Some(first) = same {
            if first.segment.media_hash != segment.media_hash {
                self.violations.push(format!("segment {} sent again with other media bytes", segment.sequence));
            }
        } else if let Some(last) = self.segments.iter().rev().find(|s| !s.duplicate) {
            let (p, s) = (&last.segment, &segment);
            if p.lmsg {
                self.violations.push(format!("segment {} after the last one (lmsg) {}", s.sequence, p.sequence));
            }
            if s.sequence != p.sequence.wrapping_add(1) {
                self.violations.push(format!("mfhd {} after {}: not +1", s.sequence, p.sequence));
            }
            if s.tfdt != p.tfdt + p.duration {
                self.violations.push(format!(
                    "tfdt {} after a segment that ended at {}: not continuous",
                    s.tfdt,
                    p.tfdt + p.duration
                ));
            }
        }
        if !self.header_connections.contains(&connection) {
            self.violations
                .push(format!("segment {} on connection {connection}, which carried no header", segment.sequence));
        }
        if let Some(h) = self.header_info.as_ref().filter(|h| h.track.track_id != segment.track_id) {
            self.violations
                .push(format!("segment of track {}, the header's is {}", segment.track_id, h.track.track_id));
        }
        self.segments.push(SegmentRecord { request, connection, segment, bytes, duplicate, arrived: Instant::now() });
        !duplicate
    }
}

/// The receiver's CMAF ingest state.
#[derive(Debug, Default)]
pub(crate) struct CmafState {
    tracks: BTreeMap<String, CmafTrack>,
    requests: Vec<CmafRequest>,
    connections: u64,
}

impl Receiver {
    /// The publishing point URL of this receiver for CMAF ingest: `http(s)://addr/<pp>.isml`.
    pub fn publishing_point(&self, pp: &str) -> String {
        match self.tls_addr {
            Some(a) => format!("https://{a}/{pp}.isml"),
            None => format!("http://{}/{pp}.isml", self.addr),
        }
    }

    /// Every CMAF track, by path.
    pub fn cmaf_tracks(&self) -> Vec<CmafTrack> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner()).cmaf.tracks.values().cloned().collect()
    }

    /// The CMAF track named `<name>.<ext>` (of any publishing point).
    pub fn cmaf_track(&self, name: &str) -> Option<CmafTrack> {
        self.cmaf_tracks().into_iter().find(|t| t.name == name)
    }

    /// Every CMAF request, in arrival order.
    pub fn cmaf_requests(&self) -> Vec<CmafRequest> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner()).cmaf.requests.clone()
    }

    /// Waits until `cond` holds over the CMAF tracks, or `timeout` passes.
    pub fn wait_cmaf(&self, timeout: Duration, cond: impl Fn(&[CmafTrack]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let tracks: Vec<CmafTrack> = st.cmaf.tracks.values().cloned().collect();
            if cond(&tracks) {
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

/// What to do with the connection after a request.
enum Next {
    KeepAlive,
    Close,
    Reset,
}

/// Serves a connection whose first request head is `first`, request after request.
pub(crate) async fn serve(
    first: RequestHead,
    mut rd: BufReader<OwnedReadHalf>,
    mut wr: OwnedWriteHalf,
    shared: Arc<Shared>,
    generation: u64,
) -> io::Result<()> {
    let connection = {
        let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        st.cmaf.connections += 1;
        st.cmaf.connections
    };
    let mut conn = Connection { id: connection, generation, plan: faults::Plan::default(), new_segments: 0 };
    let mut head = first;
    loop {
        match conn.request(&head, &mut rd, &mut wr, &shared).await? {
            Next::KeepAlive => {}
            Next::Close => return Ok(()),
            Next::Reset => return crate::reset(rd, wr),
        }
        match http::read_head(&mut rd).await? {
            Some(h) => head = h,
            None => return Ok(()),
        }
    }
}

/// One connection's faults and count of new segments.
struct Connection {
    id: u64,
    generation: u64,
    plan: faults::Plan,
    new_segments: usize,
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, crate::State> {
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

impl Connection {
    /// Records the request and takes in the faults chosen for it.
    fn record(&mut self, head: &RequestHead, shared: &Shared, probe: bool) -> (usize, faults::Plan) {
        let mut st = lock(shared);
        let index = st.cmaf.requests.len();
        let path = head.path.clone();
        let name = stream_id_of(&path).unwrap_or_default();
        let p = faults::Plan::choose(&mut st.faults, &name, index, probe);
        // Counting faults hold for the rest of the connection.
        let plan = &mut self.plan;
        plan.abort_after = plan.abort_after.or(p.abort_after);
        plan.stall = plan.stall.or(p.stall);
        plan.error_after = plan.error_after.or(p.error_after);
        plan.bytes_per_second = plan.bytes_per_second.or(p.bytes_per_second);
        st.cmaf.tracks.entry(path.clone()).or_insert_with(|| CmafTrack {
            path: path.clone(),
            name,
            ..CmafTrack::default()
        });
        st.cmaf.requests.push(CmafRequest {
            index,
            connection: self.id,
            track: path,
            method: head.method.clone(),
            headers: head.headers.clone(),
            chunked: head.is_chunked(),
            content_length: head.content_length(),
            bytes: 0,
            complete: false,
            kind: probe.then_some(CmafRequestKind::Probe),
            status: None,
            ended_by_receiver: None,
            started: Instant::now(),
            ended: None,
        });
        shared.changed.notify_all();
        (index, p)
    }

    fn restarted(&self, shared: &Shared) -> bool {
        lock(shared).generation != self.generation
    }

    fn update(shared: &Shared, index: usize, f: impl FnOnce(&mut CmafRequest)) {
        shared.update(|st| f(&mut st.cmaf.requests[index]));
    }

    async fn request(
        &mut self,
        head: &RequestHead,
        rd: &mut BufReader<OwnedReadHalf>,
        wr: &mut OwnedWriteHalf,
        shared: &Shared,
    ) -> io::Result<Next> {
        let behaviour = shared.behaviour.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if head.method != "POST" && head.method != "PUT" {
            let why = format!("{} {}: CMAF ingest takes POST or PUT", head.method, head.path);
            shared.update(|s| s.rejected.push(why));
            http::respond(wr, 405, "Method Not Allowed", b"").await?;
            return Ok(Next::Close);
        }
        if let Some(why) = crate::unauthorized(head, &behaviour) {
            shared.update(|s| s.rejected.push(why));
            http::respond_with(wr, 401, "Unauthorized", &[("WWW-Authenticate", "Basic realm=\"ingest\"")]).await?;
            return Ok(Next::Close);
        }
        if self.restarted(shared) {
            return Ok(Next::Reset);
        }
        let probe = head.content_length() == Some(0) && !head.is_chunked();
        let (index, this) = self.record(head, shared, probe);
        http::continue_if_expected(head, wr).await?;
        if probe {
            if let Some((status, location)) = &this.redirect {
                Self::update(shared, index, |r| {
                    r.status = Some(*status);
                    r.complete = true;
                });
                http::respond_with(wr, *status, "Redirect", &[("Location", location.as_str())]).await?;
                return Ok(Next::Close);
            }
            let status = this.probe_status.unwrap_or(behaviour.probe_status);
            Self::update(shared, index, |r| r.complete = true);
            return self.answer(wr, shared, index, status).await;
        }
        let mut body = http::IncomingBody::new(head);
        let mut bytes = Vec::new();
        let started = Instant::now();
        let mut kind = None;
        loop {
            let max = self.plan.bytes_per_second.map_or(256 * 1024, |bps| (bps / 20).max(1) as usize);
            let piece = match body.next(rd, max).await {
                Ok(Some(p)) => p.to_vec(),
                Ok(None) => break,
                // Cut off: nothing of it is kept.
                Err(_) => {
                    Self::update(shared, index, |r| r.ended = Some(Instant::now()));
                    return Ok(Next::Close);
                }
            };
            bytes.extend_from_slice(&piece);
            Self::update(shared, index, |r| r.bytes = bytes.len() as u64);
            if kind.is_none() && bytes.len() >= 8 {
                let k = if &bytes[4..8] == b"ftyp" { CmafRequestKind::Header } else { CmafRequestKind::Segment };
                kind = Some(k);
                Self::update(shared, index, |r| r.kind = Some(k));
                let fault = match k {
                    CmafRequestKind::Segment => self.segment_faults(shared, index, head).await,
                    _ => None,
                };
                if let Some(next) = fault {
                    return Ok(next);
                }
            }
            if self.restarted(shared) {
                Self::update(shared, index, |r| r.ended_by_receiver = Some("restart".into()));
                return Ok(Next::Reset);
            }
            if let Some(bps) = self.plan.bytes_per_second {
                let due = Duration::from_secs_f64(bytes.len() as f64 / bps as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
        }
        Self::update(shared, index, |r| r.complete = true);
        if let Some(status) = this.post_status {
            return self.answer(wr, shared, index, status).await;
        }
        let status = match kind {
            Some(CmafRequestKind::Header) => self.take_header(shared, index, bytes),
            _ => self.take_segment(shared, index, bytes),
        };
        self.answer(wr, shared, index, status).await
    }

    /// The faults that fall on a segment request once the connection brought enough new
    /// segments: cut it off, or stop reading it for a while.
    async fn segment_faults(&mut self, shared: &Shared, index: usize, head: &RequestHead) -> Option<Next> {
        if let Some((_, reset)) = self.plan.abort_after.filter(|(n, _)| self.new_segments >= *n) {
            let how = if reset { "abort-reset" } else { "abort-fin" };
            Self::update(shared, index, |r| {
                r.ended_by_receiver = Some(how.into());
                r.ended = Some(Instant::now());
            });
            return Some(if reset { Next::Reset } else { Next::Close });
        }
        if let Some((_, duration, until_new, discard)) = self.plan.stall.filter(|s| self.new_segments >= s.0) {
            Self::update(shared, index, |r| r.ended_by_receiver = Some("stall".into()));
            let deadline = Instant::now() + duration;
            while Instant::now() < deadline {
                let newer = until_new && {
                    let st = lock(shared);
                    st.cmaf.requests.iter().skip(index + 1).any(|r| r.track == head.path && r.connection != self.id)
                };
                if newer {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Once per connection.
            self.plan.stall = None;
            if discard {
                return Some(Next::Reset);
            }
        }
        None
    }

    /// A header: kept (it replaces the one before, which it should equal).
    fn take_header(&mut self, shared: &Shared, index: usize, bytes: Vec<u8>) -> u16 {
        let mut st = lock(shared);
        let generation = st.generation;
        let path = st.cmaf.requests[index].track.clone();
        let t = st.cmaf.tracks.get_mut(&path).expect("recorded with the request");
        let mut v = Vec::new();
        let info = cmaf_mp4::read_header(&bytes, &mut v);
        if t.header.as_ref().is_some_and(|h| *h != bytes) {
            v.push(format!("the header changed (request {index})"));
        }
        t.violations.extend(v.into_iter().map(|x| format!("request {index}: {x}")));
        t.header = Some(bytes);
        t.header_info = info.or(t.header_info.take());
        t.headers_received += 1;
        t.header_generation = Some(generation);
        t.header_connections.push(self.id);
        shared.changed.notify_all();
        200
    }

    /// A segment: 412 without a header, an injected error, or checked and kept.
    fn take_segment(&mut self, shared: &Shared, index: usize, bytes: Vec<u8>) -> u16 {
        let mut st = lock(shared);
        let generation = st.generation;
        let path = st.cmaf.requests[index].track.clone();
        let t = st.cmaf.tracks.get_mut(&path).expect("recorded with the request");
        if t.header_generation != Some(generation) {
            t.refused_412 += 1;
            return 412;
        }
        if let Some((_, status)) = self.plan.error_after.filter(|(n, _)| self.new_segments >= *n) {
            if status == 412 {
                t.header_generation = None;
            }
            // Once per connection.
            self.plan.error_after = None;
            return status;
        }
        let ext = t.extension().to_string();
        let mut v = Vec::new();
        let segment = cmaf_mp4::read_segment(&bytes, ext != "cmfm", ext == "cmfm", &mut v);
        t.violations.extend(v.into_iter().map(|x| format!("request {index}: {x}")));
        let Some(segment) = segment else { return 400 };
        let name = t.name.clone();
        let refused = st.faults.iter_mut().find(|f| {
            matches!(f.kind, faults::FaultKind::SegmentStatus { sequence, times, .. }
                if sequence == segment.sequence && f.fired < times)
                && f.applies(&name, Instant::now())
        });
        if let Some(f) = refused {
            f.fired += 1;
            let faults::FaultKind::SegmentStatus { status, .. } = f.kind else { unreachable!() };
            let t = st.cmaf.tracks.get_mut(&path).expect("recorded with the request");
            t.refused.push((segment.sequence, status));
            return status;
        }
        let t = st.cmaf.tracks.get_mut(&path).expect("recorded with the request");
        if t.add_segment(index, self.id, segment, bytes) {
            self.new_segments += 1;
        }
        shared.changed.notify_all();
        200
    }

    /// Answers a request, keeping the connection open unless the status ends it.
    async fn answer(&self, wr: &mut OwnedWriteHalf, shared: &Shared, index: usize, status: u16) -> io::Result<Next> {
        Self::update(shared, index, |r| {
            r.status = Some(status);
            r.ended = Some(Instant::now());
        });
        let reason = match status {
            200..=299 => "OK",
            412 => "Precondition Failed",
            _ => "Refused",
        };
        if status >= 500 {
            http::respond(wr, status, reason, b"").await?;
            return Ok(Next::Close);
        }
        http::respond_keep_alive(wr, status, reason).await?;
        Ok(Next::KeepAlive)
    }
}

#[cfg(test)]
#[path = "cmaf_tests.rs"]
mod tests;
