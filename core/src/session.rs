//! The POST session of one stream, as a sans-IO state machine (ingest-spec §1.3, §3.1).
//!
//! Probe (an empty POST, `Content-Length: 0`) → on a 2xx, open the long-running chunked POST →
//! send the header boxes, then every fragment as it comes → at the end, end the chunked body and
//! wait for the final response. The session does no IO and reads no clock: the driver reports
//! what happened ([`Input`]) with the current time, performs the [`Action`]s the session asks
//! for, and wakes it at [`IngestSession::poll_timeout`]. Every decision lives here.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use bytes::Bytes;
use core::time::Duration;

use crate::fragment::Fragment;

/// Identifies one connection the session asked for, so that late events of an abandoned
/// connection are recognised and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub u64);

/// Timers and limits of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// How long the probe may take to answer (spec §1.6: 10 s to connect).
    pub probe_timeout: Duration,
    /// How long to wait for the final response after ending the body (spec §3.3: 10 s).
    pub final_response_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig { probe_timeout: Duration::from_secs(10), final_response_timeout: Duration::from_secs(10) }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// POST an empty body (`Content-Length: 0`) to the stream URL on a new connection.
    SendProbe { connection: ConnectionId },
    /// Start the long-running POST with `Transfer-Encoding: chunked` on a new connection.
    OpenPost { connection: ConnectionId },
    /// Append these bytes to the POST body, in order.
    Send { connection: ConnectionId, what: Sent, chunks: Vec<Bytes> },
    /// End the chunked body (zero-length chunk) and wait for the response.
    EndBody { connection: ConnectionId },
    /// Abandon the connection without ending its body.
    Close { connection: ConnectionId },
}

/// What a [`Action::Send`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Header,
    Fragment { track_id: u32, sequence: u32, time: u64 },
}

/// Why the transport failed, as the driver saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The TCP (or TLS) connection could not be established.
    Connect,
    /// Connecting took longer than the connect timeout.
    Timeout,
    /// Writing the body failed.
    Write,
    /// The connection closed before a response arrived.
    Closed,
    /// Anything else, described.
    Other,
}

/// What happened, as the driver reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The probe was answered.
    ProbeResponse { connection: ConnectionId, status: u16 },
    /// The POST's connection is up and the body is being read by the transport.
    Connected { connection: ConnectionId },
    /// The server answered the POST. Before the body ended, that is a server abort.
    Response { connection: ConnectionId, status: u16 },
    /// The connection failed.
    Failed { connection: ConnectionId, error: TransportError },
}

/// Why the session stopped without finishing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The probe got a non-2xx answer.
    ProbeRefused { status: u16 },
    /// The probe got no answer in time.
    ProbeTimeout,
    /// A connection failed.
    Transport { error: TransportError },
    /// The server answered before the body ended.
    ServerAbort { status: u16 },
}

/// What the application should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The probe was accepted.
    ProbeAccepted { status: u16 },
    /// The long-running POST is up.
    Connected,
    /// The body ended and the server answered.
    Finished { status: u16 },
    /// The final response did not come in time; the connection was closed.
    FinishedWithoutResponse,
    /// The session cannot continue.
    Failed(Failure),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for `start()`.
    Idle,
    Probing {
        connection: ConnectionId,
        deadline: Duration,
    },
    /// Probe accepted; waiting for the header before opening the POST.
    ReadyToOpen,
    Opening {
        connection: ConnectionId,
    },
    Streaming {
        connection: ConnectionId,
    },
    Ending {
        connection: ConnectionId,
        deadline: Duration,
    },
    Done,
}

/// The POST session of one `Streams(<id>)` URL.
#[derive(Debug)]
pub struct IngestSession {
    config: SessionConfig,
    state: State,
    header: Option<Bytes>,
    /// Fragments not yet handed to the transport.
    queue: VecDeque<Fragment>,
    /// The application asked to end the stream.
    finishing: bool,
    next_connection: u64,
    actions: VecDeque<Action>,
    events: VecDeque<SessionEvent>,
    /// Whether the header has been sent on the current connection.
    header_sent: bool,
}

impl IngestSession {
    pub fn new(config: SessionConfig) -> Self {
        IngestSession {
            config,
            state: State::Idle,
            header: None,
            queue: VecDeque::new(),
            finishing: false,
            next_connection: 0,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            header_sent: false,
        }
    }

    /// Starts with the probe.
    pub fn start(&mut self, now: Duration) {
        if self.state == State::Idle {
            let connection = self.new_connection();
            self.state = State::Probing { connection, deadline: now + self.config.probe_timeout };
            self.actions.push_back(Action::SendProbe { connection });
        }
    }

    /// The header boxes (ftyp, manifest, moov), identical for every connection.
    pub fn set_header(&mut self, header: Bytes, now: Duration) {
        if self.header.is_none() {
            self.header = Some(header);
            self.advance(now);
        }
    }

    /// A fragment ready to go out.
    pub fn push_fragment(&mut self, fragment: Fragment, now: Duration) {
        if self.state == State::Done {
            return;
        }
        self.queue.push_back(fragment);
        self.advance(now);
    }

    /// The application has nothing more to send: end the body once the queue is out.
    pub fn finish(&mut self, now: Duration) {
        self.finishing = true;
        self.advance(now);
    }

    /// Whether the session has stopped (finished or failed).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Fragments not yet handed to the transport.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn handle_input(&mut self, input: Input, now: Duration) {
        match (self.state, input) {
            (State::Probing { connection, .. }, Input::ProbeResponse { connection: c, status }) if c == connection => {
                if (200..300).contains(&status) {
                    self.events.push_back(SessionEvent::ProbeAccepted { status });
                    self.state = State::ReadyToOpen;
                    self.advance(now);
                } else {
                    self.fail(Failure::ProbeRefused { status });
                }
            }
            (State::Probing { connection, .. }, Input::Failed { connection: c, error }) if c == connection => {
                self.fail(Failure::Transport { error });
            }
            (State::Opening { connection }, Input::Connected { connection: c }) if c == connection => {
                self.state = State::Streaming { connection };
                self.events.push_back(SessionEvent::Connected);
                self.advance(now);
            }
            (
                State::Opening { connection } | State::Streaming { connection },
                Input::Response { connection: c, status },
            ) if c == connection => {
                self.fail(Failure::ServerAbort { status });
            }
            (
                State::Opening { connection } | State::Streaming { connection },
                Input::Failed { connection: c, error },
            ) if c == connection => {
                self.fail(Failure::Transport { error });
            }
            (State::Ending { connection, .. }, Input::Response { connection: c, status }) if c == connection => {
                self.state = State::Done;
                if (200..300).contains(&status) {
                    self.events.push_back(SessionEvent::Finished { status });
                } else {
                    self.events.push_back(SessionEvent::Failed(Failure::ServerAbort { status }));
                }
            }
            (State::Ending { connection, .. }, Input::Failed { connection: c, error }) if c == connection => {
                self.fail(Failure::Transport { error });
            }
            // Events of connections the session no longer uses.
            _ => {}
        }
    }

    /// The driver's timer fired.
    pub fn handle_timeout(&mut self, now: Duration) {
        match self.state {
            State::Probing { connection, deadline } if now >= deadline => {
                self.actions.push_back(Action::Close { connection });
                self.fail(Failure::ProbeTimeout);
            }
            State::Ending { connection, deadline } if now >= deadline => {
                self.actions.push_back(Action::Close { connection });
                self.state = State::Done;
                self.events.push_back(SessionEvent::FinishedWithoutResponse);
            }
            _ => {}
        }
    }

    /// When the session wants [`IngestSession::handle_timeout`] called.
    pub fn poll_timeout(&self) -> Option<Duration> {
        match self.state {
            State::Probing { deadline, .. } | State::Ending { deadline, .. } => Some(deadline),
            _ => None,
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    fn new_connection(&mut self) -> ConnectionId {
        self.next_connection += 1;
        ConnectionId(self.next_connection)
    }

    fn fail(&mut self, failure: Failure) {
        if let State::Opening { connection } | State::Streaming { connection } | State::Ending { connection, .. } =
            self.state
        {
            self.actions.push_back(Action::Close { connection });
        }
        self.state = State::Done;
        self.events.push_back(SessionEvent::Failed(failure));
    }

    /// Moves forward as far as the current state allows.
    fn advance(&mut self, now: Duration) {
        match self.state {
            State::ReadyToOpen if self.header.is_some() => {
                let connection = self.new_connection();
                self.header_sent = false;
                self.state = State::Opening { connection };
                self.actions.push_back(Action::OpenPost { connection });
            }
            State::ReadyToOpen if self.finishing => {
                // Nothing was ever produced: there is no stream to send.
                self.state = State::Done;
                self.events.push_back(SessionEvent::FinishedWithoutResponse);
            }
            State::Streaming { connection } => {
                if !self.header_sent {
                    if let Some(h) = &self.header {
                        self.actions.push_back(Action::Send {
                            connection,
                            what: Sent::Header,
                            chunks: alloc::vec![h.clone()],
                        });
                        self.header_sent = true;
                    }
                }
                while let Some(f) = self.queue.pop_front() {
                    let what = Sent::Fragment { track_id: f.track_id, sequence: f.sequence, time: f.timing.time };
                    let chunks = f.wire_chunks().cloned().collect();
                    self.actions.push_back(Action::Send { connection, what, chunks });
                }
                if self.finishing {
                    self.state = State::Ending { connection, deadline: now + self.config.final_response_timeout };
                    self.actions.push_back(Action::EndBody { connection });
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fragment::FragmentTiming;
    use crate::payload::Payload;

    fn frag(track_id: u32, sequence: u32, time: u64) -> Fragment {
        Fragment {
            track_id,
            sequence,
            timing: FragmentTiming { time, duration: 10, decode_time: time, index: None },
            sample_count: 1,
            starts_with_sync: true,
            head: Bytes::from_static(b"moof"),
            payload: Payload::new(),
        }
    }

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn actions(session: &mut IngestSession) -> Vec<Action> {
        core::iter::from_fn(|| session.poll_action()).collect()
    }

    fn events(session: &mut IngestSession) -> Vec<SessionEvent> {
        core::iter::from_fn(|| session.poll_event()).collect()
    }

    #[test]
    fn probe_then_post_then_graceful_end() {
        let mut ses = IngestSession::new(SessionConfig::default());
        ses.start(s(0));
        assert_eq!(actions(&mut ses), [Action::SendProbe { connection: ConnectionId(1) }]);
        // A fragment before the probe answers waits.
        ses.push_fragment(frag(1, 1, 0), s(0));
        assert!(actions(&mut ses).is_empty());
        ses.handle_input(Input::ProbeResponse { connection: ConnectionId(1), status: 200 }, s(1));
        // No header yet: nothing opens.
        assert!(actions(&mut ses).is_empty());
        ses.set_header(Bytes::from_static(b"hdr"), s(1));
        assert_eq!(actions(&mut ses), [Action::OpenPost { connection: ConnectionId(2) }]);
        ses.handle_input(Input::Connected { connection: ConnectionId(2) }, s(1));
        let a = actions(&mut ses);
        assert_eq!(a.len(), 2);
        assert!(matches!(&a[0], Action::Send { what: Sent::Header, chunks, .. } if chunks[0] == "hdr"));
        assert!(matches!(&a[1], Action::Send { what: Sent::Fragment { sequence: 1, .. }, .. }));
        ses.push_fragment(frag(2, 2, 0), s(2));
        assert!(matches!(&actions(&mut ses)[..], [Action::Send { what: Sent::Fragment { sequence: 2, .. }, .. }]));
        ses.finish(s(3));
        assert_eq!(actions(&mut ses), [Action::EndBody { connection: ConnectionId(2) }]);
        assert_eq!(ses.poll_timeout(), Some(s(13)));
        ses.handle_input(Input::Response { connection: ConnectionId(2), status: 200 }, s(4));
        assert!(ses.is_done());
        assert_eq!(
            events(&mut ses),
            [
                SessionEvent::ProbeAccepted { status: 200 },
                SessionEvent::Connected,
                SessionEvent::Finished { status: 200 }
            ]
        );
    }

    #[test]
    fn refused_probe_fails_with_its_status() {
        let mut ses = IngestSession::new(SessionConfig::default());
        ses.start(s(0));
        actions(&mut ses);
        ses.handle_input(Input::ProbeResponse { connection: ConnectionId(1), status: 404 }, s(0));
        assert!(ses.is_done());
        assert_eq!(events(&mut ses), [SessionEvent::Failed(Failure::ProbeRefused { status: 404 })]);
    }

    #[test]
    fn probe_timeout_closes_and_fails() {
        let mut ses = IngestSession::new(SessionConfig::default());
        ses.start(s(0));
        actions(&mut ses);
        ses.handle_timeout(s(9));
        assert!(!ses.is_done());
        ses.handle_timeout(s(10));
        assert_eq!(actions(&mut ses), [Action::Close { connection: ConnectionId(1) }]);
        assert_eq!(events(&mut ses), [SessionEvent::Failed(Failure::ProbeTimeout)]);
    }

    #[test]
    fn early_response_is_a_server_abort() {
        let mut ses = IngestSession::new(SessionConfig::default());
        ses.start(s(0));
        ses.set_header(Bytes::from_static(b"h"), s(0));
        ses.handle_input(Input::ProbeResponse { connection: ConnectionId(1), status: 204 }, s(0));
        ses.handle_input(Input::Connected { connection: ConnectionId(2) }, s(0));
        actions(&mut ses);
        // A stale event from the probe connection changes nothing.
        ses.handle_input(Input::Failed { connection: ConnectionId(1), error: TransportError::Closed }, s(1));
        assert!(!ses.is_done());
        ses.handle_input(Input::Response { connection: ConnectionId(2), status: 500 }, s(1));
        assert_eq!(actions(&mut ses), [Action::Close { connection: ConnectionId(2) }]);
        assert_eq!(events(&mut ses).last(), Some(&SessionEvent::Failed(Failure::ServerAbort { status: 500 })));
    }

    #[test]
    fn missing_final_response_times_out() {
        let mut ses = IngestSession::new(SessionConfig::default());
        ses.start(s(0));
        ses.set_header(Bytes::from_static(b"h"), s(0));
        ses.handle_input(Input::ProbeResponse { connection: ConnectionId(1), status: 200 }, s(0));
        ses.handle_input(Input::Connected { connection: ConnectionId(2) }, s(0));
        ses.finish(s(5));
        actions(&mut ses);
        ses.handle_timeout(s(15));
        assert!(ses.is_done());
        assert_eq!(actions(&mut ses), [Action::Close { connection: ConnectionId(2) }]);
        assert_eq!(events(&mut ses).last(), Some(&SessionEvent::FinishedWithoutResponse));
    }

    #[test]
    fn finishing_before_any_header_ends_without_a_post() {
        let mut ses = IngestSession::new(SessionConfig::default());
        ses.start(s(0));
        ses.handle_input(Input::ProbeResponse { connection: ConnectionId(1), status: 200 }, s(0));
        ses.finish(s(1));
        assert!(ses.is_done());
        assert!(actions(&mut ses).iter().all(|a| !matches!(a, Action::OpenPost { .. })));
    }
}
