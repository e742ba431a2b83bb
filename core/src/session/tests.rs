// SPDX-License-Identifier: MPL-2.0
//! Every transition of the session on a fake clock: nothing sleeps, years of behaviour run in
//! milliseconds.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::*;
use crate::fragment::FragmentTiming;
use crate::payload::Payload;

const HEADER: &[u8] = b"ftyp+lsm+moov";

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// A fragment of `track` starting at `time_ms` (timescale 1000), 2 s long, whose bytes name it.
fn frag(track: u32, time_ms: u64) -> Fragment {
    let mut payload = Payload::new();
    payload.push(Bytes::from(format!("<{track}@{time_ms}>").into_bytes()));
    Fragment {
        track_id: track,
        sequence: 0,
        timing: FragmentTiming { time: time_ms, duration: 2000, decode_time: time_ms, index: None, timescale: 1000 },
        sample_count: 1,
        starts_with_sync: true,
        head: Bytes::from_static(b"moof"),
        payload,
    }
}

/// Names the fragments in pulled bytes, in order: "1@0", "2@0", ...
fn names(chunks: &[Bytes]) -> Vec<String> {
    chunks
        .iter()
        .filter_map(|c| {
            let s = core::str::from_utf8(c).ok()?;
            s.strip_prefix('<').and_then(|s| s.strip_suffix('>')).map(String::from)
        })
        .collect()
}

struct Harness {
    s: IngestSession,
    now: Duration,
    /// Body bytes pulled per connection: what its (test) transport wrote to the socket, with
    /// no head, framing or TLS in between.
    written: Vec<(ConnectionId, u64)>,
}

impl Harness {
    fn new(config: SessionConfig) -> Self {
        Harness { s: IngestSession::new(config), now: Duration::ZERO, written: Vec::new() }
    }

    fn written(&self, connection: ConnectionId) -> u64 {
        self.written.iter().find(|(c, _)| *c == connection).map_or(0, |(_, n)| *n)
    }

    /// The kernel's counters of `connection`: of everything written, the peer acknowledged
    /// `acked` bytes, and advertises `window` (`None`: unknown).
    fn kernel(&mut self, connection: ConnectionId, acked: u64, window: Option<u64>) {
        let written = self.written(connection);
        let reading =
            KernelReading { wire_written: written, unacked: written.saturating_sub(acked), peer_window: window };
        self.input(Input::Progress { connection, reading });
    }

    fn at(&mut self, t: Duration) {
        self.now = t;
        self.s.handle_timeout(t);
    }

    fn actions(&mut self) -> Vec<Action> {
        core::iter::from_fn(|| self.s.poll_action()).collect()
    }

    fn events(&mut self) -> Vec<SessionEvent> {
        core::iter::from_fn(|| self.s.poll_event()).collect()
    }

    fn input(&mut self, i: Input) {
        self.s.handle_input(i, self.now);
    }

    /// Pulls until the session has nothing more now; returns the chunks and whether it ended.
    /// The transport writes them at once: a flush mark follows.
    fn pull(&mut self, conn: ConnectionId) -> (Vec<Bytes>, bool) {
        let mut out = Vec::new();
        let ended = loop {
            match self.s.poll_transmit(conn, self.now) {
                Transmit::Data(b) => out.push(b),
                Transmit::End => break true,
                Transmit::Wait => break false,
            }
        };
        let n: u64 = out.iter().map(|b| b.len() as u64).sum();
        if n > 0 {
            let total = self.written(conn) + n;
            self.written.retain(|(c, _)| *c != conn);
            self.written.push((conn, total));
            self.input(Input::Flushed { connection: conn, mark: FlushMark { wire: total, body: total } });
        }
        (out, ended)
    }

    /// Start, probe answered 200, header set, POST connected: returns the POST's id.
    fn connect_first(&mut self, observes_acks: bool) -> ConnectionId {
        self.s.start(self.now);
        let Some(Action::SendProbe { connection: probe }) = self.s.poll_action() else { panic!() };
        self.input(Input::ProbeResponse { connection: probe, status: 200 });
        self.s.set_header(Bytes::from_static(HEADER), self.now);
        self.expect_open(observes_acks)
    }

    fn expect_open(&mut self, observes_acks: bool) -> ConnectionId {
        let open = self.actions();
        let Some(Action::OpenPost { connection }) = open.last().cloned() else { panic!("{open:?}") };
        self.input(Input::Connected { connection, observes_acks });
        connection
    }

    /// Connected (acknowledgements observed, no pacing), with 1@0 and 1@2000 handed over:
    /// returns the POST and the body bytes it was handed after the header.
    fn two_fragments_sent() -> (Self, ConnectionId, u64) {
        let mut h = Harness::new(SessionConfig { catch_up_rate: 0.0, ..SessionConfig::default() });
        let c1 = h.connect_first(true);
        let mut total = 0u64;
        for t in [0, 2000] {
            h.s.push_fragment(frag(1, t), h.now);
            total += h.pull(c1).0.iter().map(|b| b.len() as u64).sum::<u64>();
        }
        (h, c1, total)
    }

    /// After a failure: wait out the backoff, answer the probe, connect.
    fn reconnect(&mut self, observes_acks: bool) -> ConnectionId {
        let until = self.s.poll_timeout().expect("a backoff timer");
        self.at(until);
        let a = self.actions();
        let probe = a
            .iter()
            .find_map(|a| if let Action::SendProbe { connection } = a { Some(*connection) } else { None })
            .unwrap_or_else(|| panic!("{a:?}"));
        self.input(Input::ProbeResponse { connection: probe, status: 200 });
        self.expect_open(observes_acks)
    }
}

#[test]
fn probe_post_stream_and_graceful_end() {
    let mut h = Harness::new(SessionConfig::default());
    h.s.start(h.now);
    assert_eq!(h.actions(), [Action::SendProbe { connection: ConnectionId(1) }]);
    h.s.push_fragment(frag(1, 0), h.now);
    h.input(Input::ProbeResponse { connection: ConnectionId(1), status: 200 });
    // No header yet: nothing opens.
    assert!(h.actions().is_empty());
    h.s.set_header(Bytes::from_static(HEADER), h.now);
    assert_eq!(h.actions(), [Action::OpenPost { connection: ConnectionId(2) }]);
    h.input(Input::Connected { connection: ConnectionId(2), observes_acks: true });
    let (chunks, ended) = h.pull(ConnectionId(2));
    assert!(!ended);
    assert_eq!(chunks[0], HEADER);
    assert_eq!(names(&chunks), ["1@0"]);
    h.s.push_fragment(frag(2, 0), h.now);
    assert_eq!(names(&h.pull(ConnectionId(2)).0), ["2@0"]);
    h.s.finish(ms(3000));
    h.now = ms(3000);
    let (chunks, ended) = h.pull(ConnectionId(2));
    assert!(chunks.is_empty() && ended);
    assert_eq!(h.s.poll_timeout(), Some(ms(13_000)));
    h.input(Input::Response { connection: ConnectionId(2), status: 200 });
    assert!(h.s.is_done());
    assert_eq!(
        h.events(),
        [
            SessionEvent::ProbeAccepted { status: 200 },
            SessionEvent::Connected { connection: 1 },
            SessionEvent::Finished { status: 200 }
        ]
    );
}

#[test]
fn refused_probe_is_retried_with_growing_jittered_delays() {
    let mut h = Harness::new(SessionConfig::default());
    h.s.start(h.now);
    let mut delays = Vec::new();
    for round in 0..6 {
        let a = h.actions();
        let Some(Action::SendProbe { connection }) = a.first().cloned() else { panic!("{a:?}") };
        h.input(Input::ProbeResponse { connection, status: [500, 503, 429][round % 3] });
        let ev = h.events();
        assert!(matches!(ev[0], SessionEvent::Disconnected { reason: Failure::ProbeRefused { .. } }), "{ev:?}");
        let SessionEvent::Reconnecting { attempt, delay } = ev[1] else { panic!("{ev:?}") };
        assert_eq!(attempt as usize, round + 1);
        delays.push(delay);
        let t = h.s.poll_timeout().unwrap();
        assert_eq!(t, h.now + delay);
        h.at(t);
    }
    assert_eq!(delays[0], Duration::ZERO);
    assert!(delays[1] >= ms(375) && delays[1] <= ms(625), "{delays:?}");
    assert!(delays[2] > delays[1]);
    assert!(delays.iter().all(|d| *d <= Duration::from_secs(4)));
    assert!(!h.s.is_done());
}

#[test]
fn reconnect_resends_header_last_two_written_per_track_and_everything_unacknowledged() {
    let mut h = Harness::new(SessionConfig { catch_up_rate: 0.0, ..SessionConfig::default() });
    let c1 = h.connect_first(true);
    let mut body = Vec::new();
    for t in [0, 2000, 4000] {
        h.s.push_fragment(frag(1, t), h.now);
        h.s.push_fragment(frag(2, t), h.now);
        body.extend(h.pull(c1).0);
    }
    assert_eq!(names(&body), ["1@0", "2@0", "1@2000", "2@2000", "1@4000", "2@4000"]);
    // The peer acknowledged the header and the first two fragments only.
    let through_2_at_0: u64 = body.iter().take(5).map(|b| b.len() as u64).sum();
    h.kernel(c1, through_2_at_0, None);
    h.input(Input::Failed { connection: c1, error: TransportError::Closed });
    let ev = h.events();
    assert!(ev.contains(&SessionEvent::Disconnected { reason: Failure::Transport { error: TransportError::Closed } }));
    // Produced while down.
    h.s.push_fragment(frag(1, 6000), h.now);
    let c2 = h.reconnect(true);
    let (chunks, _) = h.pull(c2);
    assert_eq!(chunks[0], HEADER, "the same header bytes on every connection");
    // The last two fully written fragments of each track (@2000 and @4000, not acknowledged
    // either), everything not acknowledged (the same), then what was produced meanwhile; 1@0
    // and 2@0 were acknowledged and are older than the last two: freed, not resent.
    assert_eq!(names(&chunks), ["1@2000", "2@2000", "1@4000", "2@4000", "1@6000"]);
    let ev = h.events();
    let resent =
        ev.iter().find_map(|e| if let SessionEvent::Resent { fragments } = e { Some(fragments.clone()) } else { None });
    assert_eq!(resent.unwrap().len(), 4);
}

#[test]
fn a_fragment_in_flight_takes_the_place_of_the_oldest_delivered_one() {
    let (mut h, c1, total) = Harness::two_fragments_sent();
    h.kernel(c1, total, None);
    assert_eq!(h.s.held_fragments(), 2, "the last two, delivered");
    // A third goes out: while it is not confirmed, it and the newest delivered one are held.
    h.s.push_fragment(frag(1, 4000), h.now);
    h.pull(c1);
    h.kernel(c1, total, None);
    assert_eq!(h.s.held_fragments(), 2, "1@0 freed: 1@2000 and 1@4000 are the last two written");
    // Lost with the connection: both go again.
    h.input(Input::Failed { connection: c1, error: TransportError::Closed });
    let c2 = h.reconnect(true);
    assert_eq!(names(&h.pull(c2).0), ["1@2000", "1@4000"]);
}

#[test]
fn unacknowledged_fragments_beyond_the_last_two_are_resent_too() {
    let mut h = Harness::new(SessionConfig { catch_up_rate: 0.0, ..SessionConfig::default() });
    let c1 = h.connect_first(true);
    for t in (0..10_000).step_by(2000) {
        h.s.push_fragment(frag(1, t), h.now);
    }
    let (body, _) = h.pull(c1);
    assert_eq!(names(&body).len(), 5);
    // Only the header is acknowledged: the kernel still holds all five fragments.
    h.kernel(c1, HEADER.len() as u64, None);
    h.input(Input::Failed { connection: c1, error: TransportError::Write });
    let c2 = h.reconnect(true);
    assert_eq!(names(&h.pull(c2).0), ["1@0", "1@2000", "1@4000", "1@6000", "1@8000"]);
}

#[test]
fn without_acknowledgements_the_assumed_in_flight_bytes_are_resent() {
    let config = SessionConfig { catch_up_rate: 0.0, unobserved_in_flight: 0, ..SessionConfig::default() };
    let mut h = Harness::new(config);
    let c1 = h.connect_first(false);
    for t in (0..10_000).step_by(2000) {
        h.s.push_fragment(frag(1, t), h.now);
    }
    h.pull(c1);
    h.input(Input::Failed { connection: c1, error: TransportError::Write });
    let c2 = h.reconnect(false);
    // Everything counts as delivered: only the last two go again.
    assert_eq!(names(&h.pull(c2).0), ["1@6000", "1@8000"]);
    // Fragments no longer needed are freed.
    assert_eq!(h.s.held_fragments(), 2);
}

#[test]
fn a_partly_written_fragment_is_sent_whole_again() {
    let mut h = Harness::new(SessionConfig { catch_up_rate: 0.0, ..SessionConfig::default() });
    let c1 = h.connect_first(true);
    h.s.push_fragment(frag(1, 0), h.now);
    // Header, then only the moof of the fragment.
    assert!(matches!(h.s.poll_transmit(c1, h.now), Transmit::Data(_)));
    assert!(matches!(h.s.poll_transmit(c1, h.now), Transmit::Data(ref b) if b == "moof"));
    h.input(Input::Failed { connection: c1, error: TransportError::Write });
    let c2 = h.reconnect(true);
    let (chunks, _) = h.pull(c2);
    assert_eq!(chunks.len(), 3, "header, moof, payload");
    assert_eq!(names(&chunks), ["1@0"]);
}

#[test]
fn a_send_timeout_abandons_a_stalled_connection() {
    let mut h = Harness::new(SessionConfig { catch_up_rate: 0.0, ..SessionConfig::default() });
    let c1 = h.connect_first(true);
    h.pull(c1);
    h.s.push_fragment(frag(1, 0), h.now);
    // The transport takes nothing: 1.5 × the 2 s fragment duration later, the link is dead.
    assert_eq!(h.s.poll_timeout(), Some(ms(3000)));
    h.at(ms(2999));
    assert!(h.actions().is_empty());
    h.at(ms(3000));
    assert_eq!(h.actions(), [Action::Close { connection: c1 }]);
    assert!(h.events().contains(&SessionEvent::Disconnected { reason: Failure::SendTimeout }));
    // The driver confirms the close with the final count; then the retry starts.
    h.kernel(c1, HEADER.len() as u64, None);
    h.input(Input::Closed { connection: c1 });
    let c2 = h.reconnect(true);
    assert_eq!(names(&h.pull(c2).0), ["1@0"]);
}

#[test]
fn unacknowledged_bytes_that_do_not_move_are_a_stall_and_an_idle_link_is_not() {
    let mut h = Harness::new(SessionConfig { catch_up_rate: 0.0, ..SessionConfig::default() });
    let c1 = h.connect_first(true);
    h.s.push_fragment(frag(1, 0), h.now);
    let (body, _) = h.pull(c1);
    let all: u64 = body.iter().map(|b| b.len() as u64).sum();
    // Everything acknowledged: idle, no timer.
    h.kernel(c1, all, None);
    assert_eq!(h.s.poll_timeout(), None);
    h.at(ms(60_000));
    assert!(h.actions().is_empty());
    // Next fragment is taken by the transport, but the peer stops acknowledging.
    h.s.push_fragment(frag(1, 2000), h.now);
    h.pull(c1);
    h.kernel(c1, all, None);
    assert_eq!(h.s.poll_timeout(), Some(ms(63_000)));
    h.now = ms(62_000);
    h.kernel(c1, all, None);
    h.at(ms(63_000));
    assert_eq!(h.actions(), [Action::Close { connection: c1 }]);
}

#[test]
fn the_forward_buffer_is_bounded_by_bytes_too() {
    // Each test fragment is a few bytes ("moof" + "<1@2000>"): a 100-byte bound holds a handful,
    // whatever the duration bound allows.
    let config = SessionConfig {
        forward_buffer_duration: Duration::from_secs(3600),
        forward_buffer_bytes: 100,
        max_retries: None,
        ..SessionConfig::default()
    };
    let mut h = Harness::new(config);
    h.s.start(h.now);
    let Some(Action::SendProbe { connection }) = h.actions().first().cloned() else { panic!() };
    h.input(Input::Failed { connection, error: TransportError::Connect });
    h.events();
    let mut dropped = Vec::new();
    for k in 0..50u64 {
        h.s.push_fragment(frag(1, 2000 * k), h.now);
        for e in h.events() {
            if let SessionEvent::Dropped { fragments } = e {
                dropped.extend(fragments.iter().map(|f| f.time));
            }
        }
        assert!(h.s.stats(h.now).queue_bytes <= 100, "{}", h.s.stats(h.now).queue_bytes);
    }
    let held = h.s.held_fragments();
    assert!((3..=10).contains(&held), "{held} held");
    // The oldest went, in order.
    assert_eq!(dropped, (0..50 - held as u64).map(|k| 2000 * k).collect::<Vec<_>>());
}

#[test]
fn the_forward_buffer_drops_the_oldest_beyond_its_bound_and_memory_stays_flat() {
    let config = SessionConfig {
        forward_buffer_duration: Duration::from_secs(30),
        max_retries: None,
        ..SessionConfig::default()
    };
    let mut h = Harness::new(config);
    h.s.start(h.now);
    let a = h.actions();
    let Some(Action::SendProbe { connection }) = a.first().cloned() else { panic!() };
    h.input(Input::Failed { connection, error: TransportError::Connect });
    h.events();
    // Ten minutes of outage, fragments every 2 s on two tracks.
    let mut dropped = 0;
    let mut max_held = 0;
    for k in 0..300u64 {
        h.now = Duration::from_secs(2 * k);
        h.s.push_fragment(frag(1, 2000 * k), h.now);
        h.s.push_fragment(frag(2, 2000 * k), h.now);
        for e in h.events() {
            if let SessionEvent::Dropped { fragments } = e {
                dropped += fragments.len();
            }
        }
        max_held = max_held.max(h.s.held_fragments());
        // Keep failing every attempt.
        h.s.handle_timeout(h.now);
        for a in h.actions() {
            if let Action::SendProbe { connection } = a {
                h.input(Input::Failed { connection, error: TransportError::Connect });
            }
        }
    }
    let stats = h.s.stats(h.now);
    assert!(stats.queue_duration_ns <= 30_000_000_000, "{}", stats.queue_duration_ns);
    assert!(max_held <= 32, "{max_held}");
    assert_eq!(dropped as u64, stats.fragments_dropped);
    assert!(dropped >= 2 * 300 - 32);
    assert!(stats.tracks.iter().all(|t| t.discontinuity_count > 0));
}

#[test]
fn a_backlog_goes_out_paced_at_the_catch_up_rate() {
    let mut h = Harness::new(SessionConfig::default()); // rate 2
    let c1 = h.connect_first(true);
    h.pull(c1);
    h.input(Input::Failed { connection: c1, error: TransportError::Closed });
    // 10 s of media produced during the outage.
    for t in (0..10_000).step_by(2000) {
        h.s.push_fragment(frag(1, t), h.now);
    }
    let c2 = h.reconnect(true);
    let start = h.now;
    let mut sent_at = Vec::new();
    for _ in 0..40 {
        for n in names(&h.pull(c2).0) {
            sent_at.push((n, h.now - start));
        }
        match h.s.poll_timeout() {
            Some(t) if t > h.now => h.at(t),
            _ => break,
        }
    }
    let when = |name: &str| sent_at.iter().find(|(n, _)| n == name).map(|(_, t)| *t).unwrap();
    assert_eq!(when("1@0"), Duration::ZERO);
    // Media at 8 s goes out 4 s after the start, not before.
    assert!(when("1@8000") >= ms(4000) && when("1@8000") <= ms(4100), "{sent_at:?}");
    assert!(when("1@4000") >= ms(2000), "{sent_at:?}");
}

#[test]
fn gives_up_after_the_retry_limit_and_reports_what_was_lost() {
    let config = SessionConfig { max_retries: Some(3), ..SessionConfig::default() };
    let mut h = Harness::new(config);
    h.s.start(h.now);
    h.s.push_fragment(frag(1, 0), h.now);
    for _ in 0..10 {
        for a in h.actions() {
            if let Action::SendProbe { connection } = a {
                h.input(Input::Failed { connection, error: TransportError::Connect });
            }
        }
        if h.s.is_done() {
            break;
        }
        let t = h.s.poll_timeout().unwrap();
        h.at(t);
    }
    assert!(h.s.is_done());
    let ev = h.events();
    let gave_up = ev.iter().find_map(|e| {
        if let SessionEvent::GaveUp { reason, undelivered, at_start: false } = e {
            Some((*reason, undelivered.len()))
        } else {
            None
        }
    });
    assert_eq!(gave_up, Some((Failure::Transport { error: TransportError::Connect }, 1)));
    assert_eq!(ev.iter().filter(|e| matches!(e, SessionEvent::Reconnecting { .. })).count(), 3);
}

#[test]
fn gives_up_after_the_retry_time_limit() {
    let config = SessionConfig { retry_limit: Some(Duration::from_secs(20)), ..SessionConfig::default() };
    let mut h = Harness::new(config);
    h.s.start(h.now);
    let mut guard = 0;
    let mut last = Vec::new();
    while !h.s.is_done() && guard < 1000 {
        guard += 1;
        for a in h.actions() {
            if let Action::SendProbe { connection } = a {
                h.input(Input::Failed { connection, error: TransportError::Connect });
            }
        }
        // The driver drains events as they come.
        last = h.events();
        if let Some(t) = h.s.poll_timeout() {
            h.at(t);
        }
    }
    assert!(h.s.is_done());
    assert_eq!(h.now, Duration::from_secs(20));
    // The reason given up for is the last failure, although its event was drained long ago.
    last.extend(h.events());
    assert!(
        last.iter().any(|e| matches!(
            e,
            SessionEvent::GaveUp { reason: Failure::Transport { error: TransportError::Connect }, .. }
        )),
        "{last:?}"
    );
}

#[test]
fn eos_during_an_outage_delivers_when_the_server_returns() {
    let mut h = Harness::new(SessionConfig { catch_up_rate: 0.0, ..SessionConfig::default() });
    let c1 = h.connect_first(true);
    h.pull(c1);
    h.input(Input::Failed { connection: c1, error: TransportError::Closed });
    h.s.push_fragment(frag(1, 0), h.now);
    h.s.finish(h.now);
    // Two refused attempts, then the server is back.
    for _ in 0..2 {
        let t = h.s.poll_timeout().unwrap();
        h.at(t);
        for a in h.actions() {
            if let Action::SendProbe { connection } = a {
                h.input(Input::Failed { connection, error: TransportError::Connect });
            }
        }
    }
    let c2 = h.reconnect(true);
    let (chunks, ended) = h.pull(c2);
    assert_eq!(names(&chunks), ["1@0"]);
    assert!(ended);
    h.input(Input::Response { connection: c2, status: 200 });
    assert!(h.events().contains(&SessionEvent::Finished { status: 200 }));
}

#[test]
fn eos_during_an_outage_gives_up_at_the_eos_timeout_with_the_undelivered_list() {
    let mut h = Harness::new(SessionConfig { eos_timeout: Duration::from_secs(15), ..SessionConfig::default() });
    let c1 = h.connect_first(true);
    h.pull(c1);
    h.input(Input::Failed { connection: c1, error: TransportError::Closed });
    h.s.push_fragment(frag(1, 0), h.now);
    h.s.push_fragment(frag(2, 0), h.now);
    h.s.finish(h.now);
    while !h.s.is_done() {
        for a in h.actions() {
            if let Action::SendProbe { connection } = a {
                h.input(Input::Failed { connection, error: TransportError::Connect });
            }
        }
        let t = h.s.poll_timeout().unwrap();
        h.at(t);
    }
    assert_eq!(h.now, Duration::from_secs(15));
    let ev = h.events();
    let undelivered = ev.iter().find_map(|e| match e {
        SessionEvent::GaveUp { reason: Failure::EosTimeout, undelivered, .. } => Some(undelivered.len()),
        _ => None,
    });
    assert_eq!(undelivered, Some(2));
}

#[test]
fn an_early_response_is_a_server_abort_and_is_retried() {
    let mut h = Harness::new(SessionConfig::default());
    let c1 = h.connect_first(true);
    h.input(Input::Response { connection: c1, status: 503 });
    let ev = h.events();
    assert!(ev.contains(&SessionEvent::Disconnected { reason: Failure::ServerAbort { status: 503 } }));
    assert!(ev.iter().any(|e| matches!(e, SessionEvent::Reconnecting { attempt: 1, .. })));
    assert!(h.actions().contains(&Action::Close { connection: c1 }));
    // Late events of the old connection change nothing.
    h.input(Input::Failed { connection: c1, error: TransportError::Closed });
    assert!(h.events().is_empty());
}

#[test]
fn a_post_that_does_not_connect_in_time_is_retried() {
    let mut h = Harness::new(SessionConfig::default());
    h.s.start(h.now);
    let Some(Action::SendProbe { connection }) = h.s.poll_action() else { panic!() };
    h.input(Input::ProbeResponse { connection, status: 200 });
    h.s.set_header(Bytes::from_static(HEADER), h.now);
    assert!(matches!(h.actions()[..], [Action::OpenPost { .. }]));
    h.at(Duration::from_secs(10));
    assert!(h.events().contains(&SessionEvent::Disconnected { reason: Failure::ConnectTimeout }));
}

#[test]
fn a_probe_without_answer_times_out() {
    let mut h = Harness::new(SessionConfig::default());
    h.s.start(h.now);
    h.actions();
    h.at(Duration::from_secs(10));
    assert_eq!(h.actions(), [Action::Close { connection: ConnectionId(1) }]);
    assert!(h.events().contains(&SessionEvent::Disconnected { reason: Failure::ProbeTimeout }));
}

#[test]
fn without_reprobe_the_reconnect_opens_the_post_directly() {
    let mut h = Harness::new(SessionConfig { reprobe: false, ..SessionConfig::default() });
    let c1 = h.connect_first(true);
    h.input(Input::Failed { connection: c1, error: TransportError::Closed });
    let t = h.s.poll_timeout().unwrap();
    h.at(t);
    assert!(h.actions().iter().any(|a| matches!(a, Action::OpenPost { .. })));
}

#[test]
fn a_missing_final_response_ends_the_session_after_its_timeout() {
    let mut h = Harness::new(SessionConfig::default());
    let c1 = h.connect_first(true);
    h.s.finish(h.now);
    assert!(h.pull(c1).1);
    h.at(Duration::from_secs(10));
    assert!(h.s.is_done());
    assert_eq!(h.actions(), [Action::Close { connection: c1 }]);
    assert!(h.events().contains(&SessionEvent::FinishedWithoutResponse));
}

#[test]
fn a_connection_lost_while_ending_is_retried_and_the_rest_delivered() {
    let mut h = Harness::new(SessionConfig { catch_up_rate: 0.0, ..SessionConfig::default() });
    let c1 = h.connect_first(true);
    h.s.push_fragment(frag(1, 0), h.now);
    h.s.finish(h.now);
    assert!(h.pull(c1).1);
    h.input(Input::Failed { connection: c1, error: TransportError::Closed });
    let c2 = h.reconnect(true);
    let (chunks, ended) = h.pull(c2);
    assert_eq!(names(&chunks), ["1@0"]);
    assert!(ended);
}

#[test]
fn an_end_answered_with_an_error_is_sent_again_until_the_eos_timeout() {
    let mut h = Harness::new(SessionConfig {
        catch_up_rate: 0.0,
        eos_timeout: Duration::from_secs(5),
        ..SessionConfig::default()
    });
    let c1 = h.connect_first(true);
    h.s.push_fragment(frag(1, 0), h.now);
    h.s.finish(h.now);
    assert!(h.pull(c1).1);
    h.input(Input::Response { connection: c1, status: 503 });
    assert!(!h.s.is_done());
    assert!(
        h.events().contains(&SessionEvent::Disconnected { reason: Failure::ServerAbort { status: 503 } }),
        "a refused end is a failure like any other"
    );
    // The next POST sends the fragment again and ends; this time the server takes it.
    let c2 = h.reconnect(true);
    let (chunks, ended) = h.pull(c2);
    assert_eq!(names(&chunks), ["1@0"]);
    assert!(ended);
    h.input(Input::Response { connection: c2, status: 200 });
    assert!(h.s.is_done());
    assert!(h.events().contains(&SessionEvent::Finished { status: 200 }));
    // A server that refuses every end is given up on at the EOS timeout.
    let mut h = Harness::new(SessionConfig { eos_timeout: Duration::from_secs(5), ..SessionConfig::default() });
    let c = h.connect_first(true);
    h.s.finish(h.now);
    assert!(h.pull(c).1);
    h.input(Input::Response { connection: c, status: 500 });
    for _ in 0..100 {
        if h.s.is_done() {
            break;
        }
        let next = h.s.poll_timeout().unwrap_or(h.now + Duration::from_millis(100));
        h.at(next.max(h.now + Duration::from_millis(1)));
        for a in h.actions() {
            match a {
                Action::SendProbe { connection } => {
                    h.input(Input::ProbeResponse { connection, status: 200 });
                }
                Action::OpenPost { connection } => {
                    h.input(Input::Connected { connection, observes_acks: false });
                    if h.pull(connection).1 {
                        h.input(Input::Response { connection, status: 500 });
                    }
                }
                _ => {}
            }
        }
    }
    assert!(h.s.is_done());
    assert!(h.now <= Duration::from_secs(6), "gave up at {:?}", h.now);
    assert!(h.events().iter().any(|e| matches!(e, SessionEvent::GaveUp { .. })));
}

#[test]
fn stats_follow_the_stream() {
    let mut h = Harness::new(SessionConfig { catch_up_rate: 0.0, ..SessionConfig::default() });
    assert_eq!(h.s.stats(h.now).state, "Connecting");
    let c1 = h.connect_first(true);
    h.s.push_fragment(frag(1, 0), h.now);
    h.s.push_fragment(frag(1, 2000), h.now);
    h.pull(c1);
    let s = h.s.stats(h.now);
    assert_eq!((s.state, s.connections, s.fragments_sent), ("Running", 1, 2));
    assert_eq!(s.tracks[0].last_timestamp, Some(2000));
    assert!(s.healthy(&s.tracks[0]));
    h.input(Input::Failed { connection: c1, error: TransportError::Closed });
    let s = h.s.stats(h.now);
    assert_eq!(s.state, "Reconnecting");
    assert!(!s.healthy(&s.tracks[0]));
    let c2 = h.reconnect(true);
    h.pull(c2);
    let s = h.s.stats(h.now);
    assert_eq!((s.connections, s.reconnects, s.fragments_resent), (2, 1, 2));
}

#[test]
fn eos_on_a_connection_too_slow_to_deliver_gives_up_at_the_eos_timeout() {
    let mut h = Harness::new(SessionConfig {
        catch_up_rate: 0.0,
        eos_timeout: Duration::from_secs(5),
        send_timeout: Some(Duration::from_secs(60)),
        ..SessionConfig::default()
    });
    let c1 = h.connect_first(true);
    h.pull(c1);
    h.s.push_fragment(frag(1, 0), h.now);
    h.s.finish(h.now);
    // The transport takes nothing more.
    assert_eq!(h.s.poll_timeout(), Some(Duration::from_secs(5)));
    h.at(Duration::from_secs(5));
    assert!(h.s.is_done());
    assert!(h.actions().contains(&Action::Close { connection: c1 }));
    assert!(h.events().iter().any(
        |e| matches!(e, SessionEvent::GaveUp { reason: Failure::EosTimeout, undelivered, .. } if undelivered.len() == 1)
    ));
}

#[test]
fn pulls_into_a_kernel_buffer_that_never_drains_are_not_progress() {
    let mut h = Harness::new(SessionConfig { catch_up_rate: 0.0, ..SessionConfig::default() });
    let c1 = h.connect_first(true);
    h.pull(c1);
    h.kernel(c1, 10, None);
    // The receiver stopped reading: the kernel keeps taking bytes, acknowledgements stop.
    for k in 0..10u64 {
        h.now = ms(500 * k);
        h.s.push_fragment(frag(1, 2000 * k), h.now);
        h.pull(c1);
        h.kernel(c1, 10, None);
        h.s.handle_timeout(h.now);
    }
    // 1.5 x 2 s after the last movement (at 0 ms) the link is abandoned, although bytes
    // were still being taken.
    assert!(h.actions().contains(&Action::Close { connection: c1 }));
    assert!(h.events().contains(&SessionEvent::Disconnected { reason: Failure::SendTimeout }));
}

#[test]
fn with_everything_acknowledged_exactly_the_last_two_per_track_go_again() {
    let mut h = Harness::new(SessionConfig { catch_up_rate: 0.0, ..SessionConfig::default() });
    let c1 = h.connect_first(true);
    let mut total = 0;
    for t in (0..10_000).step_by(2000) {
        h.s.push_fragment(frag(1, t), h.now);
        h.s.push_fragment(frag(2, t), h.now);
        total += h.pull(c1).0.iter().map(|b| b.len() as u64).sum::<u64>();
    }
    h.kernel(c1, total, None);
    // Fragments no longer needed for resending are freed as they are acknowledged.
    assert_eq!(h.s.held_fragments(), 4);
    h.input(Input::Failed { connection: c1, error: TransportError::Closed });
    let c2 = h.reconnect(true);
    assert_eq!(names(&h.pull(c2).0), ["1@6000", "2@6000", "1@8000", "2@8000"]);
}

#[test]
fn the_first_connection_is_not_paced() {
    let mut h = Harness::new(SessionConfig::default());
    for t in (0..20_000).step_by(2000) {
        h.s.push_fragment(frag(1, t), h.now);
    }
    let c1 = h.connect_first(true);
    // Everything goes out at once: a file pushed faster than real time is not slowed down.
    assert_eq!(names(&h.pull(c1).0).len(), 10);
}

#[test]
fn without_dropping_the_application_is_told_to_wait() {
    let mut h = Harness::new(SessionConfig {
        drop_oldest: false,
        forward_buffer_duration: Duration::from_secs(10),
        ..SessionConfig::default()
    });
    h.s.start(h.now);
    for t in (0..10_000).step_by(2000) {
        assert!(h.s.has_room());
        h.s.push_fragment(frag(1, t), h.now);
    }
    // 10 s of media wait: full, but nothing dropped.
    assert!(!h.s.has_room());
    h.s.push_fragment(frag(1, 10_000), h.now);
    assert!(!h.events().iter().any(|e| matches!(e, SessionEvent::Dropped { .. })));
    assert_eq!(h.s.stats(h.now).queue_fragments, 6);
}

#[test]
fn the_application_waits_once_a_small_window_is_pending() {
    let mut h = Harness::new(SessionConfig { drop_oldest: false, wait_window_bytes: 40, ..SessionConfig::default() });
    let c1 = h.connect_first(true);
    h.pull(c1);
    // Each test fragment is about 14 bytes: three fit the 40-byte window, a fourth does not.
    for t in 0..3 {
        h.s.push_fragment(frag(1, 2000 * t), h.now);
        assert!(h.s.has_room(), "{t}");
    }
    h.s.push_fragment(frag(1, 6000), h.now);
    assert!(!h.s.has_room());
    // The connection takes them: room again.
    h.pull(c1);
    assert!(h.s.has_room());
    // Disconnected too: a source that can wait gains nothing from a bigger buffer.
    h.input(Input::Failed { connection: c1, error: TransportError::Closed });
    for t in 4..7 {
        h.s.push_fragment(frag(1, 2000 * t), h.now);
    }
    assert!(!h.s.has_room());
    assert!(!h.events().iter().any(|e| matches!(e, SessionEvent::Dropped { .. })));
}

#[test]
fn a_send_delay_holds_every_fragment_back_that_long() {
    let mut h = Harness::new(SessionConfig { send_delay: ms(800), ..SessionConfig::default() });
    let c1 = h.connect_first(true);
    h.pull(c1);
    h.s.push_fragment(frag(1, 0), h.now);
    assert!(names(&h.pull(c1).0).is_empty());
    assert_eq!(h.s.poll_timeout(), Some(ms(800)));
    h.at(ms(799));
    assert!(names(&h.pull(c1).0).is_empty());
    // Waiting on the delay is not a stall.
    assert!(h.actions().is_empty());
    h.at(ms(800));
    assert_eq!(names(&h.pull(c1).0), ["1@0"]);
}

#[test]
fn the_send_timeout_is_one_and_a_half_fragments() {
    let dur = |f: &mut Fragment, ms: u64| f.timing.duration = ms;
    // Before any fragment: 1.5 × 2 s.
    let mut h = Harness::new(SessionConfig::default());
    assert_eq!(h.s.current_send_timeout(), ms(3000));
    // 1 s fragments: 1.5 s, within [N, 2N].
    for k in 0..4 {
        let mut f = frag(1, k * 1000);
        dur(&mut f, 1000);
        h.s.push_fragment(f, h.now);
    }
    assert_eq!(h.s.current_send_timeout(), ms(1500));
    // One long fragment (a late key frame) raises it for a while, not for good.
    let mut f = frag(1, 4000);
    dur(&mut f, 6000);
    h.s.push_fragment(f, h.now);
    assert_eq!(h.s.current_send_timeout(), ms(9000));
    for k in 0..8 {
        let mut f = frag(1, 10_000 + k * 1000);
        dur(&mut f, 1000);
        h.s.push_fragment(f, h.now);
    }
    assert_eq!(h.s.current_send_timeout(), ms(1500));
    // On a grid, N is the grid's, whatever the fragments (a cut at a splice is shorter).
    let mut h = Harness::new(SessionConfig { fragment_duration: Some(ms(4000)), ..SessionConfig::default() });
    let mut f = frag(1, 0);
    dur(&mut f, 500);
    h.s.push_fragment(f, h.now);
    assert_eq!(h.s.current_send_timeout(), ms(6000));
    // A configured timeout is taken as it is.
    let h = Harness::new(SessionConfig { send_timeout: Some(ms(2500)), ..SessionConfig::default() });
    assert_eq!(h.s.current_send_timeout(), ms(2500));
}

#[test]
fn a_server_that_stops_reading_is_abandoned_although_its_kernel_still_acknowledges() {
    let mut h = Harness::new(SessionConfig { catch_up_rate: 0.0, ..SessionConfig::default() });
    let c1 = h.connect_first(true);
    let pulled = h.pull(c1).0.iter().map(|b| b.len() as u64).sum::<u64>();
    // A server with an empty 4 MB receive buffer: it advertises all of it.
    let buffer = 4 << 20;
    h.kernel(c1, pulled, Some(buffer));
    // From here the server reads nothing: its kernel acknowledges every byte into that buffer
    // (wire acknowledgements move), the window it advertises shrinks by as much, and a little
    // less (window granularity: the estimate of what it read creeps).
    let read = pulled;
    for k in 0..7u64 {
        h.now = ms(500 * k);
        h.s.push_fragment(big_frag(1, 2000 * k, 100_000), h.now);
        h.pull(c1);
        let written = h.written(c1);
        h.kernel(c1, written, Some(buffer - (written - read) + k));
        h.s.handle_timeout(h.now);
    }
    // 1.5 x 2 s after the last read (at 0 ms) the link is abandoned.
    assert!(h.events().contains(&SessionEvent::Disconnected { reason: Failure::SendTimeout }));
    assert!(h.actions().contains(&Action::Close { connection: c1 }));
    // Everything it never read goes again.
    h.input(Input::Closed { connection: c1 });
    let c2 = h.reconnect(true);
    let names = names(&h.pull(c2).0);
    assert_eq!(names.len(), 7, "{names:?}");
}

/// A fragment of `track` at `time_ms` with `size` more payload bytes after its name.
fn big_frag(track: u32, time_ms: u64, size: usize) -> Fragment {
    let mut f = frag(track, time_ms);
    f.payload.push(Bytes::from(alloc::vec![0u8; size]));
    f
}

#[test]
fn an_end_the_server_never_read_is_sent_again() {
    let mut h =
        Harness::new(SessionConfig { catch_up_rate: 0.0, send_timeout: Some(ms(60_000)), ..SessionConfig::default() });
    let c1 = h.connect_first(true);
    h.s.push_fragment(frag(1, 0), h.now);
    h.s.finish(h.now);
    let (chunks, ended) = h.pull(c1);
    assert!(ended);
    let pulled = chunks.iter().map(|b| b.len() as u64).sum::<u64>();
    // All acknowledged by the server's kernel, nothing read (its 1 MB window shrank by all of it,
    // more than the noise of a window), no answer.
    assert!(pulled > 0);
    h.kernel(c1, 0, Some(1 << 20));
    h.kernel(c1, h.written(c1), Some((1 << 20) - h.written(c1) - 20_000));
    h.at(ms(10_000));
    assert!(!h.s.is_done());
    assert!(h.events().contains(&SessionEvent::Disconnected { reason: Failure::SendTimeout }));
    let c2 = h.reconnect(true);
    let (chunks, ended) = h.pull(c2);
    assert_eq!(names(&chunks), ["1@0"]);
    assert!(ended);
    // Read and answered this time.
    h.input(Input::Response { connection: c2, status: 200 });
    assert!(h.events().contains(&SessionEvent::Finished { status: 200 }));
    // Without unread bytes, a missing answer still just ends the session.
    let mut h = Harness::new(SessionConfig::default());
    let c = h.connect_first(true);
    h.s.finish(h.now);
    assert!(h.pull(c).1);
    h.at(ms(10_000));
    assert!(h.s.is_done());
}

#[test]
fn the_send_latency_counts_first_sends_from_when_each_fragment_could_go() {
    let mut h = Harness::new(SessionConfig { catch_up_rate: 0.0, ..SessionConfig::default() });
    let c1 = h.connect_first(true);
    h.pull(c1);
    // Three fragments, taken 1, 2 and 30 ms after they came.
    for (k, wait) in [(0u64, 1u64), (1, 2), (2, 30)] {
        h.now = ms(1000 * k);
        h.s.push_fragment(frag(1, 2000 * k), h.now);
        h.now = ms(1000 * k + wait);
        h.pull(c1);
    }
    let l = h.s.stats(h.now).latency;
    assert_eq!((l.count, l.p50_ns, l.max_ns), (3, 2_000_000, 30_000_000));
    // Resent after a reconnect: not counted again.
    h.input(Input::Failed { connection: c1, error: TransportError::Closed });
    let c2 = h.reconnect(true);
    h.now += ms(500);
    h.pull(c2);
    assert_eq!(h.s.stats(h.now).latency.count, 3);
}

/// A fragment of `track` at `time_ms` whose payload comes in two slices, so that it can be
/// caught part way out.
fn frag_in_two(track: u32, time_ms: u64) -> Fragment {
    let mut f = frag(track, time_ms);
    f.payload.push(Bytes::from_static(b"more"));
    f
}

#[test]
fn what_a_growing_window_may_hide_counts_as_unread() {
    // Three fragments of one track out; the last two are the ones resent after any failure.
    let (mut h, c1, mut all) = Harness::two_fragments_sent();
    h.s.push_fragment(frag(1, 4000), h.now);
    let third: u64 = h.pull(c1).0.iter().map(|b| b.len() as u64).sum();
    all += third;
    // All acknowledged, nothing shows unread, but the share of the peer's largest window that
    // may hide unread bytes is more than the whole body: none of it counts as read yet.
    let window = 8 * all;
    h.kernel(c1, all, Some(window));
    assert_eq!(h.s.held_fragments(), 3, "1@0 stays: it may sit unread");
    h.input(Input::Failed { connection: c1, error: TransportError::Closed });
    let c2 = h.reconnect(true);
    assert_eq!(names(&h.pull(c2).0), ["1@0", "1@2000", "1@4000"]);
}

#[test]
fn a_fragment_behind_the_hidden_share_of_the_window_is_read_and_freed() {
    let (mut h, c1, mut all) = Harness::two_fragments_sent();
    h.s.push_fragment(frag(1, 4000), h.now);
    let third: u64 = h.pull(c1).0.iter().map(|b| b.len() as u64).sum();
    all += third;
    // The hidden share of the window is the last fragment: 1@0 and 1@2000 count as read, and
    // 1@0, no longer among the last two written, goes.
    h.kernel(c1, all, Some(8 * third));
    assert_eq!(h.s.held_fragments(), 2);
    h.input(Input::Failed { connection: c1, error: TransportError::Closed });
    let c2 = h.reconnect(true);
    assert_eq!(names(&h.pull(c2).0), ["1@2000", "1@4000"]);
}

#[test]
fn a_waiting_application_is_held_while_a_fragment_is_part_way_out() {
    let mut h = Harness::new(SessionConfig { drop_oldest: false, catch_up_rate: 0.0, ..SessionConfig::default() });
    let c1 = h.connect_first(true);
    h.pull(c1);
    h.s.push_fragment(frag_in_two(1, 0), h.now);
    // The head and the first slice go; the last slice not yet.
    for _ in 0..2 {
        let Transmit::Data(_) = h.s.poll_transmit(c1, h.now) else { panic!("data expected") };
    }
    assert!(!h.s.has_room(), "the next fragment would be a fourth one in memory");
    h.pull(c1);
    assert!(h.s.has_room());
}

/// A receiver that resets every POST once four complete fragments arrived on it and it has
/// been quiet for 200 ms: with A/V, the four are exactly the resend of the last two per track.
/// Returns the names each POST carried, the sizes of the resends, and the events.
fn cut_after_the_resend(config: SessionConfig, seconds: u64) -> (Vec<Vec<String>>, Vec<usize>, Vec<SessionEvent>) {
    let mut h = Harness::new(config);
    h.s.start(h.now);
    h.s.set_header(Bytes::from_static(HEADER), h.now);
    let mut posts: Vec<Vec<String>> = Vec::new();
    let mut events = Vec::new();
    let mut open: Option<(ConnectionId, u64, Duration)> = None; // (conn, bytes pulled, last data)
    let tick = ms(10);
    let mut next_fragment = 0u64;
    let mut finished = false;
    while h.now < Duration::from_secs(seconds + 20) && !h.s.is_done() {
        h.now += tick;
        // Fragment k of each track is complete 2 s after it starts.
        while next_fragment < seconds * 1000 && h.now >= ms(next_fragment + 2000) {
            h.s.push_fragment(frag(1, next_fragment), h.now);
            h.s.push_fragment(frag(2, next_fragment), h.now);
            next_fragment += 2000;
        }
        if next_fragment >= seconds * 1000 && !finished {
            // The end of the stream cuts a last short audio fragment.
            let mut last = frag(2, next_fragment);
            last.timing.duration = 45;
            h.s.push_fragment(last, h.now);
            h.s.finish(h.now);
            finished = true;
        }
        if h.s.poll_timeout().is_some_and(|t| t <= h.now) {
            h.s.handle_timeout(h.now);
        }
        for a in h.actions() {
            match a {
                Action::SendProbe { connection } => h.input(Input::ProbeResponse { connection, status: 200 }),
                Action::OpenPost { connection } => {
                    h.input(Input::Connected { connection, observes_acks: true });
                    open = Some((connection, 0, h.now));
                    posts.push(Vec::new());
                }
                Action::Close { connection } => h.input(Input::Closed { connection }),
            }
        }
        let Some((conn, mut pulled, mut last_data)) = open else { continue };
        let (chunks, ended) = h.pull(conn);
        if !chunks.is_empty() {
            last_data = h.now;
        }
        pulled += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
        posts.last_mut().unwrap().extend(names(&chunks));
        // The server reads everything at once; its window is large enough that an eighth of it
        // (the share it may hide unread bytes in) covers the last fragment of the POST, which
        // therefore never counts as read.
        h.kernel(conn, h.written(conn), Some(120));
        if ended {
            h.input(Input::Response { connection: conn, status: 200 });
            open = None;
        } else if posts.last().unwrap().len() >= 4 && h.now - last_data >= ms(200) {
            h.input(Input::Failed { connection: conn, error: TransportError::Closed });
            open = None;
        } else {
            open = Some((conn, pulled, last_data));
        }
        events.extend(h.events());
    }
    let resends = events
        .iter()
        .filter_map(|e| if let SessionEvent::Resent { fragments } = e { Some(fragments.len()) } else { None })
        .collect();
    (posts, resends, events)
}

#[test]
fn a_server_that_cuts_every_post_after_the_resend_still_gets_every_fragment() {
    let (posts, resends, events) = cut_after_the_resend(SessionConfig::default(), 40);
    assert!(posts.len() > 20, "the receiver cut many POSTs: {}", posts.len());
    // Every reconnect resends the last two of each track, however many came before.
    assert!(resends.iter().all(|n| *n == 4), "{resends:?}");
    assert_eq!(resends.len(), posts.len() - 1);
    // Every POST carries something new after the resend, while anything new waits.
    let all: Vec<String> = posts.iter().flatten().cloned().collect();
    for t in (0..40_000).step_by(2000) {
        for track in [1, 2] {
            let name = format!("{track}@{t}");
            assert!(all.contains(&name), "{name} never sent: {posts:?}");
        }
    }
    assert!(all.contains(&String::from("2@40000")), "the last short fragment");
    assert!(!events.iter().any(|e| matches!(e, SessionEvent::Dropped { .. })), "{events:?}");
    assert!(events.iter().any(|e| matches!(e, SessionEvent::Finished { status: 200 })), "{events:?}");
    // After each resend, the first new fragment of each track follows at once.
    for p in posts.iter().skip(1).filter(|p| p.len() > 4) {
        let new: Vec<&String> = p[4..].iter().collect();
        assert!(new.iter().any(|n| n.starts_with("1@")) && new.iter().any(|n| n.starts_with("2@")), "{p:?}");
    }
}

#[test]
fn resent_fragments_never_count_against_the_forward_buffer() {
    // A short forward buffer: only what the server never had is dropped beyond it.
    let config = SessionConfig { forward_buffer_duration: Duration::from_secs(4), ..SessionConfig::default() };
    let mut h = Harness::new(config);
    let c1 = h.connect_first(true);
    let mut pulled = 0;
    for t in [0, 2000] {
        h.s.push_fragment(frag(1, t), h.now);
        pulled += h.pull(c1).0.iter().map(|b| b.len() as u64).sum::<u64>();
    }
    h.kernel(c1, pulled, None);
    h.input(Input::Failed { connection: c1, error: TransportError::Closed });
    // A long outage: 20 s produced.
    for t in (4000..24_000).step_by(2000) {
        h.s.push_fragment(frag(1, t), h.now);
    }
    let dropped: Vec<String> = h
        .events()
        .into_iter()
        .filter_map(|e| if let SessionEvent::Dropped { fragments } = e { Some(fragments) } else { None })
        .flatten()
        .map(|f| format!("1@{}", f.time))
        .collect();
    assert!(!dropped.contains(&"1@0".into()) && !dropped.contains(&"1@2000".into()), "{dropped:?}");
    let c2 = h.reconnect(true);
    let sent = names(&h.pull(c2).0);
    assert_eq!(sent[..2], ["1@0", "1@2000"], "the resend survives the outage: {sent:?}");
    assert!(sent.len() > 2, "and the newest waiting fragment follows at once: {sent:?}");
}

/// Fails the first connection of a new session with `how` (a probe status or a transport error
/// of the probe); returns the events.
fn first_probe_fails(how: Result<u16, TransportError>) -> Vec<SessionEvent> {
    let mut h = Harness::new(SessionConfig::default());
    h.s.start(h.now);
    let Some(Action::SendProbe { connection }) = h.s.poll_action() else { panic!() };
    match how {
        Ok(status) => h.input(Input::ProbeResponse { connection, status }),
        Err(error) => h.input(Input::Failed { connection, error }),
    }
    h.events()
}

#[test]
fn a_stream_refused_for_good_before_it_ever_ran_is_given_up_at_once() {
    for how in [
        Ok(400),
        Ok(401),
        Ok(403),
        Ok(404),
        Ok(415),
        Err(TransportError::Tls(TlsRefusal::UntrustedCertificate)),
        Err(TransportError::Tls(TlsRefusal::ExpiredCertificate)),
        Err(TransportError::Tls(TlsRefusal::WrongName)),
        Err(TransportError::Tls(TlsRefusal::ClientCertificateRequired)),
    ] {
        let ev = first_probe_fails(how);
        assert!(
            ev.iter().any(|e| matches!(e, SessionEvent::GaveUp { at_start: true, .. })),
            "{how:?} is final: {ev:?}"
        );
        assert!(!ev.iter().any(|e| matches!(e, SessionEvent::Reconnecting { .. })), "{how:?}: {ev:?}");
    }
    // What a retry may mend is retried.
    for how in [
        Ok(500),
        Ok(503),
        Ok(429),
        Ok(408),
        Err(TransportError::Connect),
        Err(TransportError::Timeout),
        Err(TransportError::Closed),
        Err(TransportError::Tls(TlsRefusal::Handshake)),
    ] {
        let ev = first_probe_fails(how);
        assert!(ev.iter().any(|e| matches!(e, SessionEvent::Reconnecting { .. })), "{how:?} is retried: {ev:?}");
        assert!(!ev.iter().any(|e| matches!(e, SessionEvent::GaveUp { .. })), "{how:?}: {ev:?}");
    }
}

#[test]
fn the_same_refusals_after_the_stream_ran_are_retried() {
    let (mut h, c1, total) = Harness::two_fragments_sent();
    h.kernel(c1, total, None);
    h.input(Input::Failed { connection: c1, error: TransportError::Closed });
    // The certificate was rotated, then the publishing point stopped for a moment.
    for how in [Err(TransportError::Tls(TlsRefusal::UntrustedCertificate)), Ok(404), Ok(403)] {
        let until = h.s.poll_timeout().expect("a backoff timer");
        h.at(until);
        let a = h.actions();
        let Some(Action::SendProbe { connection }) = a.last().cloned() else { panic!("{a:?}") };
        match how {
            Ok(status) => h.input(Input::ProbeResponse { connection, status }),
            Err(error) => h.input(Input::Failed { connection, error }),
        }
        let ev = h.events();
        assert!(ev.iter().any(|e| matches!(e, SessionEvent::Reconnecting { .. })), "{how:?}: {ev:?}");
        assert!(!ev.iter().any(|e| matches!(e, SessionEvent::GaveUp { .. })), "{how:?}: {ev:?}");
    }
    // And the stream goes on once the server takes it again.
    let c2 = h.reconnect(true);
    assert_eq!(names(&h.pull(c2).0), ["1@0", "1@2000"]);
}

#[test]
fn poll_timeout_and_handle_timeout_agree_on_every_timer() {
    // Whatever the session is doing, waking it at poll_timeout changes something or moves
    // the deadline: it is never asked to wake for nothing, forever.
    let mut h = Harness::new(SessionConfig { send_delay: ms(300), ..SessionConfig::default() });
    let c1 = h.connect_first(true);
    h.s.push_fragment(frag(1, 0), h.now);
    h.s.finish(h.now);
    let mut wakes = 0;
    while let Some(t) = h.s.poll_timeout() {
        wakes += 1;
        assert!(wakes < 100, "woken {wakes} times");
        h.at(t.max(h.now));
        h.pull(c1);
        for a in h.actions() {
            if let Action::Close { connection } = a {
                h.input(Input::Closed { connection });
            }
        }
    }
    assert!(h.s.is_done());
}
