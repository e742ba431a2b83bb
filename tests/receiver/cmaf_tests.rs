// SPDX-License-Identifier: MPL-2.0
//! The receiver's CMAF ingest, driven by a small blocking HTTP/1.1 client with tracks that
//! fmp4ingest-core made from a real isofmp4mux recording.

use std::io::{BufRead, BufReader as StdBufReader, Read, Write};
use std::net::TcpStream;

use fmp4ingest_core::Bytes;
use fmp4ingest_core::cmaf::stream::{CmafOutput, CmafStream, CmafStreamConfig, MetadataConfig};

use super::*;
use crate::{Fault, FaultKind};

const STREAM: &[u8] = include_bytes!("../../core/tests/data/isofmp4mux-av.mp4");

/// Headers and whole segments of every track of the recording, by name (`video.cmfv`, ...).
struct Tracks {
    headers: Vec<(String, Vec<u8>)>,
    segments: Vec<(String, u32, Vec<u8>)>,
    chunks: Vec<(String, fmp4ingest_core::cmaf::segment::CmafChunk)>,
}

impl Tracks {
    fn make(metadata: bool) -> Tracks {
        let config =
            CmafStreamConfig { metadata: metadata.then(MetadataConfig::default), ..CmafStreamConfig::default() };
        let mut s = CmafStream::new(config);
        let half = STREAM.len() / 2;
        s.push(Bytes::from_static(&STREAM[..half])).unwrap();
        let mut early = Vec::new();
        if metadata {
            // An event from where the metadata track is now.
            let (id, _) = s.metadata_track().unwrap();
            early.extend(core::iter::from_fn(|| s.next_output()));
            let at = early
                .iter()
                .filter_map(|o| match o {
                    CmafOutput::Chunk(c) if c.track_id == id => Some(c.decode_time + c.duration),
                    _ => None,
                })
                .last()
                .unwrap();
            let section = fmp4ingest_core::scte35::build_splice_insert(
                &fmp4ingest_core::scte35::SpliceInsert::program(7, true, None, None),
            );
            s.add_event(fmp4ingest_core::cmaf::metadata::TimedEvent {
                id: 7,
                announce: at,
                presentation_time: at + 5,
                duration: None,
                scheme_id_uri: "urn:scte:scte35:2013:bin".into(),
                value: String::new(),
                message: Bytes::from(section),
            });
        }
        s.push(Bytes::from_static(&STREAM[half..])).unwrap();
        s.finish().unwrap();
        let (mut headers, mut segments, mut names, mut chunks) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let outputs: Vec<CmafOutput> = early.into_iter().chain(core::iter::from_fn(|| s.next_output())).collect();
        for o in outputs {
            match o {
                CmafOutput::Header(h) => {
                    let name = format!("{}.{}", h.name, h.kind().extension());
                    names.push((h.track_id(), name.clone()));
                    headers.push((name, h.header.bytes.to_vec()));
                }
                CmafOutput::Chunk(c) => {
                    let name = names.iter().find(|(id, _)| *id == c.track_id).unwrap().1.clone();
                    let bytes: Vec<u8> = c.wire_chunks().flat_map(|b| b.to_vec()).collect();
                    assert!(c.first && c.last, "whole segments");
                    segments.push((name.clone(), c.sequence, bytes));
                    chunks.push((name, c));
                }
                CmafOutput::Notice(_) => {}
            }
        }
        Tracks { headers, segments, chunks }
    }

    fn header(&self, name: &str) -> &[u8] {
        &self.headers.iter().find(|(n, _)| n == name).unwrap().1
    }

    fn segments(&self, name: &str) -> Vec<&[u8]> {
        self.segments.iter().filter(|(n, _, _)| n == name).map(|(_, _, b)| b.as_slice()).collect()
    }
}

/// A blocking HTTP/1.1 client on one keep-alive connection.
struct Client {
    w: TcpStream,
    r: StdBufReader<TcpStream>,
}

impl Client {
    fn connect(rx: &Receiver) -> Client {
        let w = TcpStream::connect(rx.addr()).unwrap();
        w.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let r = StdBufReader::new(w.try_clone().unwrap());
        Client { w, r }
    }

    /// Sends a request; `chunk` sends the body chunked in pieces of that size. Returns the
    /// status, or the error the connection ended with.
    fn send(&mut self, method: &str, path: &str, body: &[u8], chunk: Option<usize>) -> std::io::Result<u16> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: test\r\nDASH-IF-Ingest: 1.1\r\n");
        match chunk {
            Some(_) => head.push_str("Transfer-Encoding: chunked\r\n\r\n"),
            None => head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len())),
        }
        self.w.write_all(head.as_bytes())?;
        match chunk {
            Some(n) => {
                for c in body.chunks(n.max(1)) {
                    self.w.write_all(format!("{:x}\r\n", c.len()).as_bytes())?;
                    self.w.write_all(c)?;
                    self.w.write_all(b"\r\n")?;
                }
                self.w.write_all(b"0\r\n\r\n")?;
            }
            None => self.w.write_all(body)?,
        }
        self.w.flush()?;
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed without a response"));
        }
        let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            self.r.read_line(&mut h)?;
            if h.trim().is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut rest = vec![0; length];
        self.r.read_exact(&mut rest)?;
        Ok(status)
    }
}

fn path(name: &str) -> String {
    format!("/live.isml/Streams({name})")
}

/// A new connection on which track `name`'s header was accepted.
fn with_header(rx: &Receiver, tracks: &Tracks, name: &str) -> Client {
    let mut c = Client::connect(rx);
    assert_eq!(c.send("POST", &path(name), tracks.header(name), None).unwrap(), 200);
    c
}

#[test]
fn a_track_sent_as_the_spec_says_is_recorded_without_violations() {
    let tracks = Tracks::make(false);
    let rx = Receiver::start().unwrap();
    let v = "video.cmfv";
    let mut c = Client::connect(&rx);
    assert_eq!(c.send("POST", &path(v), b"", None).unwrap(), 200);
    assert_eq!(c.send("POST", &path(v), tracks.header(v), None).unwrap(), 200);
    let segs = tracks.segments(v);
    assert!(segs.len() >= 3, "{} segments", segs.len());
    // Half with POST and a Content-Length, half with PUT, chunked in small pieces.
    for (i, s) in segs.iter().enumerate() {
        let (method, chunk) = if i % 2 == 0 { ("POST", None) } else { ("PUT", Some(777)) };
        assert_eq!(c.send(method, &path(v), s, chunk).unwrap(), 200);
    }
    let t = rx.cmaf_track(v).unwrap();
    assert_eq!(t.violations, Vec::<String>::new());
    assert_eq!(t.header.as_deref(), Some(tracks.header(v)));
    let info = t.header_info.as_ref().unwrap();
    assert_eq!((info.brands[0].as_str(), info.track.handler.as_str()), ("cmfc", "vide"));
    assert!(info.btrt.is_some_and(|(_, _, avg)| avg > 0));
    assert_eq!(t.segments.len(), segs.len());
    let seqs = t.sequences();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert!(t.gaps().is_empty());
    assert!(t.ended(), "the last segment says lmsg");
    for s in &t.segments {
        let p = s.segment.prft.unwrap();
        assert_eq!((p.track_id, p.media_time), (s.segment.track_id, s.segment.tfdt));
        assert!(s.segment.brands.contains(&"cmfs".to_string()));
        assert!(s.segment.first_sample_sync);
    }
    // All on one connection; the request kinds and framing as sent.
    let reqs = rx.cmaf_requests();
    assert!(reqs.iter().all(|r| r.connection == 1 && r.status == Some(200) && r.complete));
    assert_eq!(reqs[0].kind, Some(CmafRequestKind::Probe));
    assert_eq!(reqs[1].kind, Some(CmafRequestKind::Header));
    assert!(reqs[3].chunked && reqs[3].method == "PUT" && reqs[3].header("dash-if-ingest") == Some("1.1"));
    // The track as a file: the header, then each segment once (the last came again with lmsg).
    let file = t.file();
    let once: Vec<u8> = t.unique_segments().iter().flat_map(|s| s.bytes.clone()).collect();
    assert_eq!(file, [tracks.header(v), &once].concat());
    assert_eq!(t.unique_segments().len() + 1, segs.len());
}

#[test]
fn a_segment_before_its_header_is_answered_412_and_a_restart_forgets_the_header() {
    let tracks = Tracks::make(false);
    let rx = Receiver::start().unwrap();
    let a = "audio.cmfa";
    let segs = tracks.segments(a);
    let mut c = Client::connect(&rx);
    assert_eq!(c.send("POST", &path(a), segs[0], None).unwrap(), 412);
    assert_eq!(c.send("POST", &path(a), tracks.header(a), None).unwrap(), 200);
    assert_eq!(c.send("POST", &path(a), segs[0], None).unwrap(), 200);
    assert_eq!(rx.cmaf_track(a).unwrap().refused_412, 1);
    rx.restart(Duration::from_millis(100));
    // The open connection is reset at its next request.
    assert!(c.send("POST", &path(a), segs[1], None).is_err());
    std::thread::sleep(Duration::from_millis(300));
    let mut c = Client::connect(&rx);
    assert_eq!(c.send("POST", &path(a), segs[1], None).unwrap(), 412);
    assert_eq!(c.send("POST", &path(a), tracks.header(a), None).unwrap(), 200);
    assert_eq!(c.send("POST", &path(a), segs[1], None).unwrap(), 200);
    let t = rx.cmaf_track(a).unwrap();
    assert_eq!((t.headers_received, t.segments.len(), t.refused_412), (2, 2, 2));
    assert_eq!(t.violations, Vec::<String>::new());
}

#[test]
fn what_breaks_the_protocol_is_recorded() {
    let tracks = Tracks::make(false);
    let rx = Receiver::start().unwrap();
    let v = "video.cmfv";
    let segs = tracks.segments(v);
    let mut c = with_header(&rx, &tracks, v);
    // Two segments in one request.
    let two = [segs[0], segs[1]].concat();
    assert_eq!(c.send("POST", &path(v), &two, None).unwrap(), 200);
    // A segment skipped: mfhd and tfdt jump.
    c.send("POST", &path(v), segs[3], None).unwrap();
    // A segment without its prft (the 32 bytes after the styp).
    let styp = u32::from_be_bytes(segs[4][..4].try_into().unwrap()) as usize;
    assert_eq!(&segs[4][styp + 4..styp + 8], b"prft");
    let no_prft = [&segs[4][..styp], &segs[4][styp + 32..]].concat();
    c.send("POST", &path(v), &no_prft, None).unwrap();
    // A header that changed.
    let mut other = tracks.header(v).to_vec();
    let n = other.len();
    other[n - 100] ^= 1;
    c.send("POST", &path(v), &other, None).unwrap();
    // A segment on a new connection that carried no header.
    let mut c2 = Client::connect(&rx);
    c2.send("POST", &path(v), segs[5], None).unwrap();
    let t = rx.cmaf_track(v).unwrap();
    let has = |what: &str| t.violations.iter().any(|x| x.contains(what));
    assert!(has("more than one segment in a request"), "{:?}", t.violations);
    assert!(has("not +1"), "{:?}", t.violations);
    assert!(has("not continuous"), "{:?}", t.violations);
    assert!(has("has no prft"), "{:?}", t.violations);
    assert!(has("the header changed"), "{:?}", t.violations);
    assert!(has("which carried no header"), "{:?}", t.violations);
}

#[test]
fn a_segment_sent_again_is_a_duplicate_not_a_violation() {
    let tracks = Tracks::make(false);
    let rx = Receiver::start().unwrap();
    let v = "video.cmfv";
    let segs = tracks.segments(v);
    let mut c = with_header(&rx, &tracks, v);
    for s in [segs[0], segs[1], segs[1], segs[2]] {
        assert_eq!(c.send("POST", &path(v), s, None).unwrap(), 200);
    }
    let t = rx.cmaf_track(v).unwrap();
    assert_eq!(t.violations, Vec::<String>::new());
    assert_eq!(t.segments.iter().map(|s| s.duplicate).collect::<Vec<_>>(), [false, false, true, false]);
    assert_eq!(t.unique_segments().len(), 3);
}

#[test]
fn injected_faults_fall_on_segment_requests_of_a_connection() {
    let tracks = Tracks::make(false);
    let v = "video.cmfv";
    let segs = tracks.segments(v);
    let up = |rx: &Receiver| with_header(rx, &tracks, v);
    // A 412 after one new segment: the receiver forgets the header.
    let rx = Receiver::start().unwrap();
    rx.inject(Fault::new(FaultKind::ErrorStatus { fragments: 1, status: 412 }, Duration::from_secs(60)).once());
    let mut c = up(&rx);
    assert_eq!(c.send("POST", &path(v), segs[0], None).unwrap(), 200);
    assert_eq!(c.send("POST", &path(v), segs[1], None).unwrap(), 412);
    assert_eq!(c.send("POST", &path(v), segs[1], None).unwrap(), 412, "no header any more");
    assert_eq!(c.send("POST", &path(v), tracks.header(v), None).unwrap(), 200);
    assert_eq!(c.send("POST", &path(v), segs[1], None).unwrap(), 200);
    // Cut off after two new segments: the third request gets no answer.
    let rx = Receiver::start().unwrap();
    rx.inject(Fault::new(FaultKind::Abort { min: 2, max: 2, reset: true }, Duration::from_secs(60)));
    let mut c = up(&rx);
    c.send("POST", &path(v), segs[0], None).unwrap();
    c.send("POST", &path(v), segs[1], None).unwrap();
    assert!(c.send("POST", &path(v), segs[2], None).is_err());
    let reqs = rx.cmaf_requests();
    assert_eq!(reqs.last().unwrap().ended_by_receiver.as_deref(), Some("abort-reset"));
    assert_eq!(rx.cmaf_track(v).unwrap().segments.len(), 2, "the cut-off segment is not kept");
    // Every request with a body refused; a probe status.
    let rx = Receiver::start().unwrap();
    rx.inject(Fault::new(FaultKind::PostStatus(415), Duration::from_secs(60)));
    rx.inject(Fault::new(FaultKind::ProbeStatus(403), Duration::from_secs(60)));
    let mut c = Client::connect(&rx);
    assert_eq!(c.send("POST", &path(v), b"", None).unwrap(), 403);
    assert_eq!(c.send("POST", &path(v), tracks.header(v), None).unwrap(), 415);
    // A 5xx closes the connection after the answer.
    let rx = Receiver::start().unwrap();
    rx.inject(Fault::new(FaultKind::ErrorStatus { fragments: 0, status: 503 }, Duration::from_secs(60)).once());
    let mut c = up(&rx);
    assert_eq!(c.send("POST", &path(v), segs[0], None).unwrap(), 503);
    assert!(c.send("POST", &path(v), segs[0], None).is_err());
    // A stall until the client comes back on another connection.
    let rx = Receiver::start().unwrap();
    rx.inject(
        Fault::new(
            FaultKind::Stall { fragments: 0, duration: Duration::from_secs(5), until_new_post: true, discard: true },
            Duration::from_secs(60),
        )
        .once(),
    );
    let mut c = up(&rx);
    c.w.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    assert!(c.send("POST", &path(v), segs[0], None).is_err(), "no answer while stalled");
    let mut c2 = up(&rx);
    assert_eq!(c2.send("POST", &path(v), segs[0], None).unwrap(), 200);
}

#[test]
fn the_metadata_track_s_events_are_read() {
    let tracks = Tracks::make(true);
    let rx = Receiver::start().unwrap();
    let m = "scte35.cmfm";
    let mut c = Client::connect(&rx);
    assert_eq!(c.send("PUT", &path(m), tracks.header(m), None).unwrap(), 200);
    for s in tracks.segments(m) {
        assert_eq!(c.send("PUT", &path(m), s, Some(100)).unwrap(), 200);
    }
    let t = rx.cmaf_track(m).unwrap();
    assert_eq!(t.violations, Vec::<String>::new());
    let info = t.header_info.as_ref().unwrap();
    assert_eq!((info.track.handler.as_str(), info.uri.as_deref()), ("meta", Some("urn:mpeg:dash:event:2012")));
    let events: Vec<_> = t.segments.iter().flat_map(|s| s.segment.events.clone()).collect();
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e.version == 1 && e.id == 7 && e.scheme == "urn:scte:scte35:2013:bin"));
    // The metadata segments follow the video's (each once).
    let mut video: Vec<u32> =
        tracks.segments.iter().filter(|(n, _, _)| n == "video.cmfv").map(|(_, s, _)| *s).collect();
    video.dedup();
    assert_eq!(t.sequences(), video);
    assert!(t.ended());
}

mod with_the_core_session {
    //! The core's CMAF session against the receiver, through a small blocking driver (what the
    //! element's HTTP layer does, in miniature): the two ends agree on the protocol, faults
    //! included.

    use super::*;
    use fmp4ingest_core::session::cmaf::{
        Body, BodyLength, CmafAction, CmafEvent, CmafInput, CmafSession, CmafSessionConfig, Method,
    };
    use fmp4ingest_core::session::{ConnectionId, TransportError};
    use std::collections::HashMap;

    struct Driver {
        s: CmafSession,
        start: Instant,
        conns: HashMap<ConnectionId, Client>,
        path: String,
        addr: std::net::SocketAddr,
        events: Vec<CmafEvent>,
    }

    impl Driver {
        fn now(&self) -> Duration {
            self.start.elapsed()
        }

        fn perform(&mut self, a: CmafAction) {
            let now = self.now();
            match a {
                CmafAction::Connect { connection } => match TcpStream::connect(self.addr) {
                    Ok(w) => {
                        w.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        let r = StdBufReader::new(w.try_clone().unwrap());
                        self.conns.insert(connection, Client { w, r });
                        self.s.handle_input(CmafInput::Connected { connection }, now);
                    }
                    Err(_) => self
                        .s
                        .handle_input(CmafInput::ConnectionFailed { connection, error: TransportError::Connect }, now),
                },
                CmafAction::Request { connection, request, method, length, .. } => {
                    let mut body = Vec::new();
                    loop {
                        match self.s.poll_body(request, self.now()) {
                            Body::Data(b) => body.extend_from_slice(&b),
                            Body::End => break,
                            Body::Wait => panic!("whole segments only here"),
                        }
                    }
                    let chunk = matches!(length, BodyLength::Chunked).then_some(4096);
                    let sent = self.conns.get_mut(&connection).unwrap().send(method.as_str(), &self.path, &body, chunk);
                    let input = match sent {
                        Ok(status) => CmafInput::Response { request, status },
                        Err(_) => CmafInput::ConnectionFailed { connection, error: TransportError::Closed },
                    };
                    self.s.handle_input(input, self.now());
                }
                CmafAction::Close { connection } => {
                    self.conns.remove(&connection);
                }
            }
        }

        /// Runs the session until `done` holds or `limit` passes.
        fn run(&mut self, limit: Duration, done: impl Fn(&CmafSession) -> bool) {
            let deadline = Instant::now() + limit;
            loop {
                self.events.extend(core::iter::from_fn(|| self.s.poll_event()));
                if done(&self.s) || Instant::now() >= deadline {
                    break;
                }
                let mut acted = false;
                while let Some(a) = self.s.poll_action() {
                    acted = true;
                    self.perform(a);
                }
                if self.s.poll_timeout().is_some_and(|t| t <= self.now()) {
                    self.s.handle_timeout(self.now());
                    acted = true;
                }
                if !acted {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }

    #[test]
    fn a_track_survives_a_412_a_cut_off_and_a_receiver_restart() {
        let tracks = Tracks::make(false);
        let v = "video.cmfv";
        let rx = Receiver::start().unwrap();
        rx.inject(Fault::new(FaultKind::ErrorStatus { fragments: 2, status: 412 }, Duration::from_secs(60)).once());
        rx.inject(Fault::new(FaultKind::Abort { min: 4, max: 4, reset: true }, Duration::from_secs(60)).once());
        let config = CmafSessionConfig {
            method: Method::Put,
            segment_duration: Some(Duration::from_secs(2)),
            ..CmafSessionConfig::default()
        };
        let mut d = Driver {
            s: CmafSession::new(config),
            start: Instant::now(),
            conns: HashMap::new(),
            path: path(v),
            addr: rx.addr(),
            events: Vec::new(),
        };
        d.s.start(d.now());
        d.s.set_header(Bytes::copy_from_slice(tracks.header(v)), d.now());
        let chunks: Vec<_> = tracks.chunks.iter().filter(|(n, _)| n == v).map(|(_, c)| c.clone()).collect();
        for (i, c) in chunks.iter().enumerate() {
            // Before the last segment (sent again with lmsg): the receiver goes away.
            if i == chunks.len() - 1 {
                rx.restart(Duration::from_millis(150));
            }
            d.s.push_chunk(c, d.now());
            d.run(Duration::from_secs(5), |s| s.queued().0 == 0);
        }
        d.s.finish(d.now());
        d.run(Duration::from_secs(5), CmafSession::is_done);
        assert!(d.events.contains(&CmafEvent::Finished), "{:?}", d.events);
        assert!(d.events.iter().any(|e| matches!(e, CmafEvent::HeaderRequested { .. })));
        assert!(d.events.iter().any(|e| matches!(e, CmafEvent::Resending { .. })));
        // The cut-off and the restart (and the connections it refused).
        let down = d.events.iter().filter(|e| matches!(e, CmafEvent::Disconnected { .. })).count();
        assert!(down >= 2, "{:?}", d.events);
        let t = rx.cmaf_track(v).unwrap();
        assert_eq!(t.violations, Vec::<String>::new());
        let mut expected: Vec<u32> = chunks.iter().map(|c| c.sequence).collect();
        expected.dedup();
        assert_eq!(t.sequences(), expected, "every segment, once, in order");
        assert!(t.gaps().is_empty());
        assert!(t.ended());
        // The header went on every connection that carried segments.
        let conns: std::collections::BTreeSet<u64> = t.segments.iter().map(|s| s.connection).collect();
        assert!(conns.len() >= 3, "{conns:?}");
        assert!(conns.iter().all(|c| t.header_connections.contains(c)));
        assert!(rx.cmaf_requests().iter().all(|r| r.method == "PUT"));
    }
}
