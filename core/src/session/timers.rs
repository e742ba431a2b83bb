// SPDX-License-Identifier: MPL-2.0
//! The session's timers, in one table.
//!
//! Every deadline the session has lives here, set or cleared at each transition, so that
//! [`super::IngestSession::poll_timeout`] (the earliest) and
//! [`super::IngestSession::handle_timeout`] (those due) read the same thing and cannot disagree.

use core::time::Duration;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Connecting, or the probe's answer (`connect-timeout`).
    Connect,
    /// No progress while data waits (the send timeout).
    Stall,
    /// An abandoned connection's last reading is awaited no longer.
    Close,
    /// The next attempt after a failure.
    Backoff,
    /// The server's answer to the end of the body.
    FinalResponse,
    /// A fragment held back (pacing after an outage, the send delay) may go.
    Release,
    /// The session gives up: the retry time limit, or the end of the stream's deadline.
    GiveUp,
}

const ALL: [Timer; 7] =
    [Timer::Connect, Timer::Stall, Timer::Close, Timer::Backoff, Timer::FinalResponse, Timer::Release, Timer::GiveUp];

/// Each timer's deadline, if set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timers([Option<Duration>; ALL.len()]);

impl Timers {
    pub fn set(&mut self, timer: Timer, at: Option<Duration>) {
        self.0[timer as usize] = at;
    }

    pub fn get(&self, timer: Timer) -> Option<Duration> {
        self.0[timer as usize]
    }

    pub fn clear(&mut self, timer: Timer) {
        self.set(timer, None);
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Duration> {
        self.0.iter().flatten().min().copied()
    }

    /// The timers due at `now`, in the table's order.
    pub fn due(&self, now: Duration) -> impl Iterator<Item = Timer> + '_ {
        ALL.into_iter().filter(move |t| self.get(*t).is_some_and(|at| at <= now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn the_earliest_is_next_and_due_ones_come_in_order() {
        let mut t = Timers::default();
        assert_eq!(t.next(), None);
        t.set(Timer::GiveUp, Some(Duration::from_secs(30)));
        t.set(Timer::Stall, Some(Duration::from_secs(3)));
        t.set(Timer::Connect, Some(Duration::from_secs(10)));
        assert_eq!(t.next(), Some(Duration::from_secs(3)));
        let due: Vec<Timer> = t.due(Duration::from_secs(10)).collect();
        assert_eq!(due, [Timer::Connect, Timer::Stall]);
        t.clear(Timer::Stall);
        assert_eq!(t.next(), Some(Duration::from_secs(10)));
    }
}
