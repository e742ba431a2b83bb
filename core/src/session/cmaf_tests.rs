// SPDX-License-Identifier: MPL-2.0
//! Every transition of the CMAF track session on a fake clock.

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::payload::Payload;

const HEADER: &[u8] = b"ftyp+moov";

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// A chunk of segment `seq` (2 s at timescale 1000, starting at `(seq - 1) * 2000`) whose bytes
/// name it: `<seq.part>`.
fn chunk(seq: u32, part: u32, first: bool, last: bool) -> CmafChunk {
    let mut payload = Payload::new();
    payload.push(Bytes::from(format!("<{seq}.{part}>").into_bytes()));
    CmafChunk {
        track_id: 1,
        timescale: 1000,
        sequence: seq,
        decode_time: u64::from(seq - 1) * 2000,
        duration: if last { 2000 - 500 * u64::from(part) } else { 500 },
        sample_count: 1,
        first,
        last,
        lmsg: false,
        head: Bytes::from_static(b"H"),
        payload,
    }
}

/// A whole segment.
fn segment(seq: u32) -> CmafChunk {
    chunk(seq, 0, true, true)
}

struct Harness {
    s: CmafSession,
    now: Duration,
    events: Vec<CmafEvent>,
}

impl Harness {
    fn new(config: CmafSessionConfig) -> Self {
        Harness { s: CmafSession::new(config), now: Duration::ZERO, events: Vec::new() }
    }

    fn actions(&mut self) -> Vec<CmafAction> {
        let a: Vec<_> = core::iter::from_fn(|| self.s.poll_action()).collect();
        self.events.extend(core::iter::from_fn(|| self.s.poll_event()));
        a
    }

    fn take_events(&mut self) -> Vec<CmafEvent> {
        self.events.extend(core::iter::from_fn(|| self.s.poll_event()));
        core::mem::take(&mut self.events)
    }

    fn at(&mut self, t: Duration) {
        self.now = t;
    }

    /// The one Connect the session asked for, reported connected.
    fn connect(&mut self) -> ConnectionId {
        let a = self.actions();
        let conn = a
            .iter()
            .find_map(|a| if let CmafAction::Connect { connection } = a { Some(*connection) } else { None })
            .unwrap_or_else(|| panic!("no Connect in {a:?}"));
        self.s.handle_input(CmafInput::Connected { connection: conn }, self.now);
        conn
    }

    /// The one Connect the session asked for, not answered yet.
    fn connect_action(&mut self) -> ConnectionId {
        let a = self.actions();
        a.iter()
            .find_map(|a| if let CmafAction::Connect { connection } = a { Some(*connection) } else { None })
            .unwrap_or_else(|| panic!("no Connect in {a:?}"))
    }

    /// The next request the session asked for.
    fn request(&mut self) -> (ConnectionId, RequestId, RequestKind, BodyLength) {
        let a = self.actions();
        a.iter()
            .find_map(|a| match a {
                CmafAction::Request { connection, request, kind, length, .. } => {
                    Some((*connection, *request, *kind, *length))
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no Request in {a:?}"))
    }

    /// Pulls the body until the session waits or ends it; returns the bytes and whether it ended.
    fn pull(&mut self, req: RequestId) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        loop {
            match self.s.poll_body(req, self.now) {
                Body::Data(b) => out.extend_from_slice(&b),
                Body::Wait => return (out, false),
                Body::End => return (out, true),
            }
        }
    }

    fn respond(&mut self, req: RequestId, status: u16) {
        self.s.handle_input(CmafInput::Response { request: req, status }, self.now);
    }

    /// Takes the next request, pulls it whole and answers `status`; returns what it was.
    fn exchange(&mut self, status: u16) -> (RequestKind, Vec<u8>) {
        let (_, req, kind, _) = self.request();
        let (body, ended) = self.pull(req);
        assert!(ended, "{kind:?} body ended");
        self.respond(req, status);
        (kind, body)
    }

    /// Start, connect, probe and header accepted.
    fn up(config: CmafSessionConfig) -> Self {
        let mut h = Harness::new(config);
        h.s.start(h.now);
        h.s.set_header(Bytes::from_static(HEADER), h.now);
        h.connect();
        assert_eq!(h.exchange(200).0, RequestKind::Probe);
        assert_eq!(h.exchange(200), (RequestKind::Header, HEADER.to_vec()));
        h.take_events();
        h
    }
}

fn seg(seq: u32) -> RequestKind {
    RequestKind::Segment { sequence: seq, lmsg: false }
}

#[test]
fn probe_then_header_then_one_request_per_segment_on_one_connection() {
    let mut h = Harness::new(CmafSessionConfig::default());
    h.s.start(h.now);
    let conn = h.connect();
    // The probe: an empty body with a Content-Length of 0.
    let (c, req, kind, length) = h.request();
    assert_eq!((c, kind, length), (conn, RequestKind::Probe, BodyLength::Known(0)));
    assert_eq!(h.pull(req), (vec![], true));
    h.respond(req, 200);
    // No header yet: nothing to send.
    assert!(h.actions().is_empty());
    h.s.set_header(Bytes::from_static(HEADER), h.now);
    let (_, req, kind, length) = h.request();
    assert_eq!((kind, length), (RequestKind::Header, BodyLength::Known(HEADER.len() as u64)));
    assert_eq!(h.pull(req), (HEADER.to_vec(), true));
    h.respond(req, 200);
    h.s.push_chunk(&segment(1), h.now);
    let a = h.actions();
    assert_eq!(
        a,
        [CmafAction::Request {
            connection: conn,
            request: RequestId(3),
            kind: seg(1),
            method: Method::Post,
            length: BodyLength::Known(6),
            content_type: "video/mp4",
        }]
    );
    assert_eq!(h.pull(RequestId(3)), (b"H<1.0>".to_vec(), true));
    h.respond(RequestId(3), 201);
    h.s.push_chunk(&segment(2), h.now);
    assert_eq!(h.exchange(200), (seg(2), b"H<2.0>".to_vec()));
    assert_eq!(
        h.take_events(),
        [
            CmafEvent::Connected { connection: 1 },
            CmafEvent::ProbeAccepted { status: 200 },
            CmafEvent::HeaderAccepted { status: 200 },
            CmafEvent::Delivered { sequence: 1, status: 201 },
            CmafEvent::Delivered { sequence: 2, status: 200 },
        ]
    );
    // One connection for all of it.
    assert!(!h.actions().iter().any(|a| matches!(a, CmafAction::Connect { .. })));
}

#[test]
fn a_segment_in_production_goes_chunked_as_its_chunks_come() {
    let config = CmafSessionConfig { method: Method::Put, kind: CmafTrackKind::Audio, ..CmafSessionConfig::default() };
    let mut h = Harness::up(config);
    h.s.push_chunk(&chunk(1, 0, true, false), h.now);
    let a = h.actions();
    let CmafAction::Request { request, length, method, content_type, .. } = a[0] else { panic!("{a:?}") };
    assert_eq!((length, method, content_type), (BodyLength::Chunked, Method::Put, "audio/mp4"));
    assert_eq!(h.pull(request), (b"H<1.0>".to_vec(), false), "the rest is not produced yet");
    h.s.push_chunk(&chunk(1, 1, false, false), h.now);
    assert_eq!(h.pull(request), (b"H<1.1>".to_vec(), false));
    // The next segment's first chunk waits for this one.
    h.s.push_chunk(&chunk(2, 0, true, false), h.now);
    h.s.push_chunk(&chunk(1, 2, false, true), h.now);
    assert_eq!(h.pull(request), (b"H<1.2>".to_vec(), true));
    h.respond(request, 200);
    let (_, req, kind, length) = h.request();
    assert_eq!((kind, length), (seg(2), BodyLength::Chunked));
    assert_eq!(h.pull(req), (b"H<2.0>".to_vec(), false));
}

#[test]
fn framing_chooses_content_length_or_chunked() {
    // Chunked: even a complete segment goes chunked.
    let mut h = Harness::up(CmafSessionConfig { framing: Framing::Chunked, ..CmafSessionConfig::default() });
    h.s.push_chunk(&segment(1), h.now);
    assert_eq!(h.request().3, BodyLength::Chunked);
    // Content-Length: a segment in production waits until it is complete.
    let mut h = Harness::up(CmafSessionConfig { framing: Framing::ContentLength, ..CmafSessionConfig::default() });
    h.s.push_chunk(&chunk(1, 0, true, false), h.now);
    assert!(h.actions().is_empty());
    h.s.push_chunk(&chunk(1, 1, false, true), h.now);
    let (_, req, kind, length) = h.request();
    assert_eq!((kind, length), (seg(1), BodyLength::Known(12)));
    assert_eq!(h.pull(req), (b"H<1.0>H<1.1>".to_vec(), true));
}

#[test]
fn a_412_sends_the_header_again_then_the_segment() {
    let mut h = Harness::up(CmafSessionConfig::default());
    h.s.push_chunk(&segment(1), h.now);
    assert_eq!(h.exchange(412).0, seg(1));
    // Same connection: the header, then segment 1 again.
    assert_eq!(h.exchange(200), (RequestKind::Header, HEADER.to_vec()));
    assert_eq!(h.exchange(200), (seg(1), b"H<1.0>".to_vec()));
    let ev = h.take_events();
    assert_eq!(ev[0], CmafEvent::HeaderRequested { sequence: 1 });
    assert!(ev.contains(&CmafEvent::Delivered { sequence: 1, status: 200 }));
    assert!(!h.actions().iter().any(|a| matches!(a, CmafAction::Connect { .. } | CmafAction::Close { .. })));
}

#[test]
fn a_412_before_the_body_ended_takes_a_new_connection() {
    let mut h = Harness::up(CmafSessionConfig::default());
    h.s.push_chunk(&chunk(1, 0, true, false), h.now);
    let (conn, req, _, _) = h.request();
    h.pull(req);
    h.respond(req, 412);
    let a = h.actions();
    assert_eq!(a[0], CmafAction::Close { connection: conn });
    assert!(matches!(a[1], CmafAction::Connect { .. }));
    // At once, no backoff and no outage.
    assert!(!h.take_events().iter().any(|e| matches!(e, CmafEvent::Disconnected { .. })));
}

#[test]
fn a_400_resends_the_segment_at_once_then_gives_it_up() {
    let mut h = Harness::up(CmafSessionConfig::default());
    h.s.push_chunk(&segment(1), h.now);
    h.s.push_chunk(&segment(2), h.now);
    // bad_request_retries 2: three 400s give segment 1 up.
    for _ in 0..3 {
        assert_eq!(h.exchange(400), (seg(1), b"H<1.0>".to_vec()));
    }
    assert_eq!(h.exchange(200).0, seg(2));
    let ev = h.take_events();
    assert!(ev.contains(&CmafEvent::Rejected { sequence: 1, status: 400 }));
    assert!(ev.contains(&CmafEvent::Delivered { sequence: 2, status: 200 }));
}

#[test]
fn a_403_is_retried_with_backoff_then_given_up() {
    let config = CmafSessionConfig { forbidden_retries: 2, ..CmafSessionConfig::default() };
    let mut h = Harness::up(config);
    h.s.push_chunk(&segment(1), h.now);
    assert_eq!(h.exchange(403).0, seg(1));
    // Closed; the first retry at once.
    let ev = h.take_events();
    assert_eq!(
        ev,
        [
            CmafEvent::Disconnected { reason: CmafFailure::Status(403) },
            CmafEvent::Reconnecting { attempt: 1, delay: Duration::ZERO },
        ]
    );
    h.s.handle_timeout(h.now);
    h.connect();
    assert_eq!(h.exchange(403).0, RequestKind::Probe);
    // The second retry after a backoff delay.
    let due = h.s.poll_timeout().unwrap();
    assert!(due >= ms(375) && due <= ms(625), "{due:?}");
    h.at(due);
    h.s.handle_timeout(h.now);
    h.connect();
    assert_eq!(h.exchange(403).0, RequestKind::Probe);
    let ev = h.take_events();
    assert_eq!(
        ev.last(),
        Some(&CmafEvent::GaveUp {
            reason: CmafFailure::Status(403),
            undelivered: vec![LostSegment { sequence: 1, decode_time: 0, timescale: 1000, duration: 2000 }],
            at_start: false,
        })
    );
    assert!(h.s.is_done());
}

#[test]
fn a_segment_refused_403_again_and_again_is_given_up() {
    let config = CmafSessionConfig { forbidden_retries: 2, ..CmafSessionConfig::default() };
    let mut h = Harness::up(config);
    h.s.push_chunk(&segment(1), h.now);
    for _ in 0..3 {
        assert_eq!(h.exchange(403).0, seg(1));
        if h.s.is_done() {
            break;
        }
        let due = h.s.poll_timeout().unwrap();
        h.at(due);
        h.s.handle_timeout(h.now);
        h.connect();
        assert_eq!(h.exchange(200).0, RequestKind::Probe);
        assert_eq!(h.exchange(200).0, RequestKind::Header);
    }
    assert!(h.s.is_done());
    assert!(matches!(
        h.take_events().last(),
        Some(CmafEvent::GaveUp { reason: CmafFailure::Status(403), at_start: false, .. })
    ));
}

#[test]
fn a_404_or_415_stops_the_track_naming_the_status() {
    for status in [404, 415] {
        let mut h = Harness::up(CmafSessionConfig::default());
        h.s.push_chunk(&segment(1), h.now);
        h.exchange(status);
        let ev = h.take_events();
        assert_eq!(
            ev,
            [CmafEvent::GaveUp {
                reason: CmafFailure::Permanent(status),
                undelivered: vec![LostSegment { sequence: 1, decode_time: 0, timescale: 1000, duration: 2000 }],
                at_start: false,
            }]
        );
        assert!(h.s.is_done());
        assert!(matches!(h.actions()[..], [CmafAction::Close { .. }]));
        assert_eq!(h.s.poll_timeout(), None);
    }
    // On the probe as well.
    let mut h = Harness::new(CmafSessionConfig::default());
    h.s.start(h.now);
    h.connect();
    h.exchange(404);
    assert!(h.s.is_done());
    assert!(matches!(h.take_events().last(), Some(CmafEvent::GaveUp { at_start: true, .. })));
}

#[test]
fn a_refusal_for_good_before_the_track_ran_stops_it_at_once() {
    // The probe or the header refused with a status no retry mends.
    for (status, header) in [(401, false), (403, false), (400, false), (405, false), (410, false), (403, true)] {
        let mut h = Harness::new(CmafSessionConfig::default());
        h.s.start(h.now);
        h.s.set_header(Bytes::from_static(HEADER), h.now);
        h.connect();
        if header {
            assert_eq!(h.exchange(200).0, RequestKind::Probe);
        }
        h.exchange(status);
        assert!(h.s.is_done(), "{status}");
        let ev = h.take_events();
        assert_eq!(
            &ev[ev.len() - 2..],
            [
                CmafEvent::Disconnected { reason: CmafFailure::Status(status) },
                CmafEvent::GaveUp { reason: CmafFailure::Status(status), undelivered: vec![], at_start: true },
            ],
            "{status}"
        );
        assert!(matches!(h.actions()[..], [CmafAction::Close { .. }]));
    }
    // A certificate refused: at once too; a handshake that merely failed is retried.
    let mut h = Harness::new(CmafSessionConfig::default());
    h.s.start(h.now);
    let conn = h.connect_action();
    let tls = TransportError::Tls(TlsRefusal::UntrustedCertificate);
    h.s.handle_input(CmafInput::ConnectionFailed { connection: conn, error: tls }, h.now);
    assert!(h.s.is_done());
    assert!(matches!(h.take_events().last(), Some(CmafEvent::GaveUp { at_start: true, .. })));
    let mut h = Harness::new(CmafSessionConfig::default());
    h.s.start(h.now);
    let conn = h.connect_action();
    let tls = TransportError::Tls(TlsRefusal::Handshake);
    h.s.handle_input(CmafInput::ConnectionFailed { connection: conn, error: tls }, h.now);
    assert!(!h.s.is_done());
    // Once the track ran, a 401 is retried like a 403.
    let mut h = Harness::up(CmafSessionConfig::default());
    h.s.push_chunk(&segment(1), h.now);
    h.exchange(401);
    assert!(!h.s.is_done());
    assert!(matches!(h.take_events()[..], [CmafEvent::Disconnected { .. }, CmafEvent::Reconnecting { .. }]));
}

#[test]
fn max_retries_gives_up_with_the_last_failure() {
    let mut h = Harness::new(CmafSessionConfig { max_retries: Some(1), ..CmafSessionConfig::default() });
    h.s.start(h.now);
    let conn = h.connect_action();
    h.s.handle_input(CmafInput::ConnectionFailed { connection: conn, error: TransportError::Connect }, h.now);
    assert!(!h.s.is_done());
    h.s.handle_timeout(h.now);
    let conn = h.connect_action();
    h.s.handle_input(CmafInput::ConnectionFailed { connection: conn, error: TransportError::Connect }, h.now);
    assert!(h.s.is_done());
    let reason = CmafFailure::Transport(TransportError::Connect);
    assert_eq!(h.take_events().last(), Some(&CmafEvent::GaveUp { reason, undelivered: vec![], at_start: true }));
}

#[test]
fn a_source_that_is_not_live_loses_nothing_and_waits_for_room() {
    let config = CmafSessionConfig { forward_buffer_bytes: 10, ..CmafSessionConfig::default() };
    let mut h = Harness::up(config);
    h.s.set_live(false);
    assert!(h.s.has_room());
    h.s.push_chunk(&segment(1), h.now);
    // Segment 1 is being sent; one more may wait.
    assert!(h.s.has_room());
    h.s.push_chunk(&segment(2), h.now);
    assert!(h.s.has_room());
    h.s.push_chunk(&segment(3), h.now);
    assert!(!h.s.has_room());
    // Far beyond the forward buffer's bytes: nothing dropped.
    let (conn, ..) = h.request();
    h.s.handle_input(CmafInput::ConnectionFailed { connection: conn, error: TransportError::Closed }, h.now);
    for seq in 4..=8 {
        h.s.push_chunk(&segment(seq), h.now);
    }
    assert_eq!(h.s.queued().0, 8);
    // Back after a long outage: everything goes, in order (no live edge for a file).
    h.at(ms(60_000));
    h.s.handle_timeout(h.now);
    h.connect();
    h.exchange(200);
    h.exchange(200);
    let sent: Vec<RequestKind> = (0..8).map(|_| h.exchange(200).0).collect();
    assert_eq!(sent, (1..=8).map(seg).collect::<Vec<_>>());
    let ev = h.take_events();
    assert!(ev.iter().any(|e| matches!(e, CmafEvent::Resending { sequences, .. } if sequences.len() == 8)), "{ev:?}");
    assert!(!ev.iter().any(|e| matches!(e, CmafEvent::Dropped { .. } | CmafEvent::Skipped { .. })));
    assert!(h.s.has_room());
}

#[test]
fn a_5xx_reconnects_and_sends_the_header_and_the_segment_again() {
    let mut h = Harness::up(CmafSessionConfig::default());
    h.s.push_chunk(&segment(1), h.now);
    h.exchange(503);
    h.s.handle_timeout(h.now);
    let conn = h.connect();
    assert_eq!(conn, ConnectionId(2));
    assert_eq!(h.exchange(200).0, RequestKind::Probe);
    assert_eq!(h.exchange(200).0, RequestKind::Header);
    assert_eq!(h.exchange(200), (seg(1), b"H<1.0>".to_vec()));
    let ev = h.take_events();
    assert!(ev.contains(&CmafEvent::Disconnected { reason: CmafFailure::Status(503) }));
    assert!(ev.contains(&CmafEvent::Resending { sequences: vec![1], outage: Duration::ZERO }));
}

#[test]
fn a_segment_cut_off_by_the_connection_is_resent_with_what_came_meanwhile() {
    let mut h = Harness::up(CmafSessionConfig::default());
    h.s.push_chunk(&segment(1), h.now);
    let (conn, req, _, _) = h.request();
    h.pull(req);
    h.s.handle_input(CmafInput::ConnectionFailed { connection: conn, error: TransportError::Write }, h.now);
    // The late answer of the lost connection changes nothing.
    h.respond(req, 200);
    h.at(ms(1500));
    h.s.push_chunk(&segment(2), h.now);
    h.s.handle_timeout(h.now);
    h.connect();
    h.exchange(200);
    h.exchange(200);
    assert_eq!(h.exchange(200).0, seg(1));
    assert_eq!(h.exchange(200).0, seg(2));
    let ev = h.take_events();
    assert!(ev.contains(&CmafEvent::Resending { sequences: vec![1, 2], outage: ms(1500) }));
    assert!(!ev.iter().any(|e| matches!(e, CmafEvent::Skipped { .. })));
}

/// Keeps the receiver down (every connection refused) until `until`, producing a segment every
/// 2 s from `next`; returns the next segment number.
fn outage(h: &mut Harness, until: Duration, mut next: u32) -> u32 {
    while h.now < until {
        let due = h.s.poll_timeout().unwrap().min(until);
        let produce = Duration::from_secs(2) * next;
        let t = due.min(produce).max(h.now);
        h.at(t);
        if t == produce {
            h.s.push_chunk(&segment(next), h.now);
            next += 1;
        }
        h.s.handle_timeout(h.now);
        for a in h.actions() {
            if let CmafAction::Connect { connection } = a {
                h.s.handle_input(CmafInput::ConnectionFailed { connection, error: TransportError::Connect }, h.now);
            }
        }
    }
    next
}

#[test]
fn after_a_long_outage_the_track_resumes_at_the_live_edge() {
    let mut h = Harness::up(CmafSessionConfig::default());
    h.at(ms(2000));
    h.s.push_chunk(&segment(1), h.now);
    let (conn, _, _, _) = h.request();
    h.s.handle_input(CmafInput::ConnectionFailed { connection: conn, error: TransportError::Closed }, h.now);
    // Down for 9 s: more than three 2 s segments.
    let next = outage(&mut h, ms(11_000), 2);
    assert_eq!(next, 6);
    h.at(h.s.poll_timeout().unwrap().max(h.now));
    h.s.handle_timeout(h.now);
    h.connect();
    h.exchange(200);
    h.exchange(200);
    // Only the newest (5) goes; 1 to 4 are skipped and reported.
    assert_eq!(h.exchange(200).0, seg(5));
    let ev = h.take_events();
    let skipped = ev
        .iter()
        .find_map(|e| {
            if let CmafEvent::Skipped { segments, outage } = e { Some((segments.clone(), *outage)) } else { None }
        })
        .unwrap();
    assert_eq!(skipped.0.iter().map(|s| s.sequence).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert!(skipped.1 >= ms(9000), "{:?}", skipped.1);
    assert!(h.actions().is_empty());
    assert_eq!(h.s.stats(h.now).fragments_dropped, 4);
}

#[test]
fn with_the_backlog_policy_a_long_outage_resends_everything_kept() {
    let mut h = Harness::up(CmafSessionConfig { resume: ResumePolicy::Backlog, ..CmafSessionConfig::default() });
    h.at(ms(2000));
    h.s.push_chunk(&segment(1), h.now);
    let (conn, _, _, _) = h.request();
    h.s.handle_input(CmafInput::ConnectionFailed { connection: conn, error: TransportError::Closed }, h.now);
    outage(&mut h, ms(11_000), 2);
    h.at(h.s.poll_timeout().unwrap().max(h.now));
    h.s.handle_timeout(h.now);
    h.connect();
    h.exchange(200);
    h.exchange(200);
    for n in 1..=5 {
        assert_eq!(h.exchange(200).0, seg(n));
    }
}

#[test]
fn the_forward_buffer_drops_the_oldest_while_down() {
    let config = CmafSessionConfig { forward_buffer_duration: ms(5000), ..CmafSessionConfig::default() };
    let mut h = Harness::up(config);
    h.at(ms(2000));
    h.s.push_chunk(&segment(1), h.now);
    let (conn, _, _, _) = h.request();
    h.s.handle_input(CmafInput::ConnectionFailed { connection: conn, error: TransportError::Closed }, h.now);
    outage(&mut h, ms(8000), 2);
    let dropped: Vec<u32> = h
        .take_events()
        .iter()
        .flat_map(|e| match e {
            CmafEvent::Dropped { segments } => segments.iter().map(|s| s.sequence).collect(),
            _ => vec![],
        })
        .collect();
    // Segments 1 to 4 came (8 s); 5 s holds two of them.
    assert_eq!(dropped, [1, 2]);
    assert_eq!(h.s.queued().0, 2);
}

#[test]
fn connecting_takes_about_one_segment_duration() {
    // Before any segment: 2 s.
    let mut h = Harness::new(CmafSessionConfig::default());
    h.s.start(h.now);
    h.actions();
    assert_eq!(h.s.poll_timeout(), Some(ms(2000)));
    h.at(ms(2000));
    h.s.handle_timeout(h.now);
    let ev = h.take_events();
    assert_eq!(ev[0], CmafEvent::Disconnected { reason: CmafFailure::ConnectTimeout });
    // With 8 s segments, bounded to 6 s; configured, as configured.
    let mut h = Harness::new(CmafSessionConfig { segment_duration: Some(ms(8000)), ..CmafSessionConfig::default() });
    h.s.start(h.now);
    assert_eq!(h.s.poll_timeout(), Some(ms(6000)));
    let mut h = Harness::new(CmafSessionConfig { connect_timeout: Some(ms(750)), ..CmafSessionConfig::default() });
    h.s.start(h.now);
    assert_eq!(h.s.poll_timeout(), Some(ms(750)));
    // Taken from the segments: 0.5 s segments give the 1 s floor.
    let mut h = Harness::up(CmafSessionConfig::default());
    for n in 1..=3 {
        let mut c = segment(n);
        c.duration = 500;
        h.s.push_chunk(&c, h.now);
        h.exchange(200);
    }
    assert_eq!(h.s.connect_timeout(), ms(1000));
}

#[test]
fn an_unanswered_request_times_out_and_is_sent_again() {
    let mut h = Harness::up(CmafSessionConfig::default());
    h.s.push_chunk(&segment(1), h.now);
    let (_, req, _, _) = h.request();
    h.pull(req);
    // Twice the 2 s segment duration.
    assert_eq!(h.s.poll_timeout(), Some(ms(4000)));
    h.at(ms(4000));
    h.s.handle_timeout(h.now);
    assert_eq!(h.take_events()[0], CmafEvent::Disconnected { reason: CmafFailure::ResponseTimeout });
    h.s.handle_timeout(h.now);
    h.connect();
    h.exchange(200);
    h.exchange(200);
    assert_eq!(h.exchange(200).0, seg(1));
}

#[test]
fn a_transport_that_takes_nothing_is_a_stall_but_waiting_for_media_is_not() {
    let mut h = Harness::up(CmafSessionConfig::default());
    // A segment in production: nothing waits once its first chunk is pulled.
    h.s.push_chunk(&chunk(1, 0, true, false), h.now);
    let (_, req, _, _) = h.request();
    h.pull(req);
    assert_eq!(h.s.poll_timeout(), None, "waiting for media is no stall");
    // The next chunk waits from 10 s; the transport takes nothing for 1.5 segment durations.
    h.at(ms(10_000));
    h.s.push_chunk(&chunk(1, 1, false, false), h.now);
    assert_eq!(h.s.poll_timeout(), Some(ms(13_000)));
    h.at(ms(13_000));
    h.s.handle_timeout(h.now);
    assert_eq!(h.take_events()[0], CmafEvent::Disconnected { reason: CmafFailure::SendTimeout });
}

#[test]
fn an_idle_connection_the_receiver_closes_is_replaced_quietly() {
    let mut h = Harness::up(CmafSessionConfig::default());
    let conn = ConnectionId(1);
    h.s.handle_input(CmafInput::ConnectionFailed { connection: conn, error: TransportError::Closed }, h.now);
    let a = h.actions();
    assert_eq!(a, [CmafAction::Close { connection: conn }, CmafAction::Connect { connection: ConnectionId(2) }]);
    assert!(!h.take_events().iter().any(|e| matches!(e, CmafEvent::Disconnected { .. })));
    h.s.handle_input(CmafInput::Connected { connection: ConnectionId(2) }, h.now);
    // The header goes on the new connection (after its probe).
    assert_eq!(h.exchange(200).0, RequestKind::Probe);
    assert_eq!(h.exchange(200).0, RequestKind::Header);
}

#[test]
fn the_end_delivers_what_is_left_then_closes() {
    let mut h = Harness::up(CmafSessionConfig::default());
    let mut last = segment(1);
    last.lmsg = true;
    h.s.push_chunk(&last, h.now);
    h.s.finish(h.now);
    assert_eq!(h.exchange(200).0, RequestKind::Segment { sequence: 1, lmsg: true });
    assert!(h.s.is_done());
    assert_eq!(h.actions(), [CmafAction::Close { connection: ConnectionId(1) }]);
    assert_eq!(h.take_events().last(), Some(&CmafEvent::Finished));
}

#[test]
fn a_track_that_never_had_a_header_ends_at_once() {
    let mut h = Harness::new(CmafSessionConfig::default());
    h.s.start(h.now);
    let conn = h.connect_action();
    h.s.finish(h.now);
    assert!(h.s.is_done());
    assert_eq!(h.actions(), [CmafAction::Close { connection: conn }]);
    assert_eq!(h.take_events(), [CmafEvent::Finished]);
}

#[test]
fn retries_come_at_least_every_segment_duration() {
    let config = CmafSessionConfig { segment_duration: Some(ms(2000)), ..CmafSessionConfig::default() };
    let mut h = Harness::new(config);
    h.s.start(h.now);
    let mut last = h.now;
    for attempt in 1..12 {
        let conn = h.connect_action();
        h.s.handle_input(CmafInput::ConnectionFailed { connection: conn, error: TransportError::Connect }, h.now);
        let due = h.s.poll_timeout().unwrap();
        // retry-delay-max (4 s) would allow more: the segment duration caps it.
        assert!(due - h.now <= ms(2000), "attempt {attempt}: {:?}", due - h.now);
        if attempt > 4 {
            assert!(due - h.now >= ms(1500), "attempt {attempt}: {:?}", due - h.now);
        }
        h.at(due);
        h.s.handle_timeout(h.now);
        last = due;
    }
    assert!(last > ms(10_000));
}

#[test]
fn the_end_gives_up_after_the_eos_timeout() {
    let mut h = Harness::up(CmafSessionConfig { eos_timeout: ms(5000), ..CmafSessionConfig::default() });
    h.s.push_chunk(&segment(1), h.now);
    h.s.finish(h.now);
    let (conn, _, _, _) = h.request();
    h.s.handle_input(CmafInput::ConnectionFailed { connection: conn, error: TransportError::Connect }, h.now);
    outage(&mut h, ms(5000), 100);
    assert!(h.s.is_done());
    let ev = h.take_events();
    assert!(
        matches!(ev.last(), Some(CmafEvent::GaveUp { reason: CmafFailure::EosTimeout, undelivered, at_start: false }) if undelivered.len() == 1)
    );
}

#[test]
fn the_retry_limit_gives_up() {
    let mut h = Harness::up(CmafSessionConfig { retry_limit: Some(ms(7000)), ..CmafSessionConfig::default() });
    h.s.push_chunk(&segment(1), h.now);
    let (conn, _, _, _) = h.request();
    h.s.handle_input(CmafInput::ConnectionFailed { connection: conn, error: TransportError::Closed }, h.now);
    outage(&mut h, ms(7000), 100);
    assert!(h.s.is_done());
    assert!(matches!(h.take_events().last(), Some(CmafEvent::GaveUp { reason: CmafFailure::RetryLimit, .. })));
}

#[test]
fn a_segment_given_again_with_lmsg_replaces_the_copy_waiting() {
    let mut h = Harness::up(CmafSessionConfig::default());
    h.s.push_chunk(&segment(1), h.now);
    h.s.push_chunk(&segment(2), h.now);
    let mut again = segment(2);
    again.lmsg = true;
    again.head = Bytes::from_static(b"L");
    h.s.push_chunk(&again, h.now);
    assert_eq!(h.exchange(200).0, seg(1));
    assert_eq!(h.exchange(200), (RequestKind::Segment { sequence: 2, lmsg: true }, b"L<2.0>".to_vec()));
    assert!(h.actions().is_empty());
    // Not a segment going back in time.
    assert_eq!(h.s.stats(h.now).tracks[0].nonincreasing_count, 0);
}

#[test]
fn the_figures_follow_the_session() {
    let mut h = Harness::new(CmafSessionConfig::default());
    assert_eq!(h.s.stats(h.now).state, "Connecting");
    h.s.start(h.now);
    h.s.set_header(Bytes::from_static(HEADER), h.now);
    h.connect();
    h.exchange(200);
    h.exchange(200);
    assert_eq!(h.s.stats(h.now).state, "Running");
    h.s.push_chunk(&segment(1), h.now);
    assert_eq!(h.s.stats(h.now).queue_fragments, 1);
    h.exchange(200);
    let st = h.s.stats(h.now);
    assert_eq!((st.bytes_sent, st.fragments_sent, st.queue_fragments, st.connections), (6, 1, 0, 1));
    assert_eq!(st.tracks[0].last_timestamp, Some(0));
    h.s.push_chunk(&segment(2), h.now);
    let (conn, ..) = h.request();
    h.s.handle_input(CmafInput::ConnectionFailed { connection: conn, error: TransportError::Closed }, h.now);
    h.actions();
    assert_eq!(h.s.stats(h.now).state, "Reconnecting");
}
