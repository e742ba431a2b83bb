// SPDX-License-Identifier: MPL-2.0
//! The one driver skeleton every uploader runs on, and the one way a streaming thread waits for
//! it.
//!
//! A sans-IO session of the core (a [`Machine`]) sits behind a mutex in [`Shared`]. The driver
//! task loops: it takes the session's actions and has the [`Transport`] carry them out, hands
//! its events to the element, sleeps until the session's next timer, the transport's next tick,
//! a network event or a nudge, and tells the session what happened. Nothing waits on the network
//! while holding the lock, and a streaming thread never waits on a socket: it only ever blocks
//! in [`Shared::block_until`], for a condition of the session, bounded and cancellable.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use fmp4ingest_core::ingest_url::IngestUrl;
use tokio::sync::{Notify, mpsc};

use crate::http::Client;
use crate::runtime::RUNTIME;

/// A sans-IO session, as the driver sees it.
pub trait Machine: Send + 'static {
    type Action: Send + 'static;
    type Event: Send + 'static;
    fn poll_action(&mut self, now: Duration) -> Option<Self::Action>;
    fn poll_event(&mut self) -> Option<Self::Event>;
    fn poll_timeout(&self) -> Option<Duration>;
    fn handle_timeout(&mut self, now: Duration);
    /// Nothing more will happen unless told (done; or, for a stream of short POSTs, idle).
    fn settled(&self) -> bool;
}

/// Work the driver waits for before it goes on (a connection being reset and closed).
pub type Pending = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What carries out a session's actions on the network.
pub trait Transport: Send + 'static {
    type Machine: Machine;
    /// What the transport's request tasks report.
    type Net: Send + 'static;
    /// Carries out `action`; work to finish before the next one is returned.
    fn perform(&mut self, action: <Self::Machine as Machine>::Action, net: &Net<Self::Net>) -> Option<Pending>;
    /// A request task reported `event`.
    fn on_net(&mut self, event: Self::Net, net: &Net<Self::Net>);
    /// Hands a session event to the element.
    fn report(&mut self, event: <Self::Machine as Machine>::Event);
    /// When [`Transport::tick`] is due next, if ever.
    fn next_tick(&self) -> Option<Instant> {
        None
    }
    /// Periodic work (reading the kernel's counters of open connections).
    fn tick(&mut self) {}
}

/// Where request tasks send their events.
pub type Net<E> = mpsc::UnboundedSender<E>;

/// Where an uploader's requests go, and how.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The URL, without credentials (they go in the Authorization header).
    pub url: IngestUrl,
    pub client: Client,
    /// Follow a redirect of the probe (the requests after it go where it ended up).
    pub follow_redirects: bool,
}

/// What an uploader tells the element.
#[derive(Debug, Clone)]
pub enum Report<E> {
    /// A session event, with the transport's own words for the last failure (e.g.
    /// "connection refused").
    Session { event: E, detail: Option<String> },
    /// The probe was redirected; the requests go to `to` (both without credentials).
    Redirected { from: String, to: String, status: u16 },
}

pub type ReportFn<E> = Arc<dyn Fn(Report<E>) + Send + Sync>;

/// The session and what wakes those who wait on it.
pub struct Shared<M> {
    machine: Mutex<M>,
    /// Wakes the driver task.
    wake: Notify,
    /// Wakes everyone blocked in [`Shared::block_until`]: the session may have changed.
    changed: Notify,
    /// Asks the driver for a tick now.
    tick_now: Notify,
    /// Tasks waiting for the session to have something for them (request bodies), by key.
    wakers: Mutex<Vec<(u64, Waker)>>,
    /// Counts the changes made from outside the driver.
    generation: AtomicU64,
    /// The generation at which the driver found the session settled and had handed every event
    /// to the element (`u64::MAX`: not settled), so that a thread waiting for the end sees the
    /// failure that ended it, and never a settled state older than its own last change.
    settled_at: AtomicU64,
    epoch: Instant,
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    Ready,
    TimedOut,
    Cancelled,
}

/// How often a blocked thread looks at the session again at the latest: the session may give
/// up without anything else moving.
const RECHECK: Duration = Duration::from_millis(250);

impl<M: Machine> Shared<M> {
    pub fn new(machine: M) -> Arc<Self> {
        Arc::new(Shared {
            machine: Mutex::new(machine),
            wake: Notify::new(),
            changed: Notify::new(),
            tick_now: Notify::new(),
            wakers: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
            settled_at: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
        })
    }

    /// The session's clock: time since the driver's epoch.
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    pub fn instant(&self, at: Duration) -> Instant {
        self.epoch + at
    }

    fn lock(&self) -> MutexGuard<'_, M> {
        self.machine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the session, then wakes whoever may have something new to do. The session
    /// counts as unsettled until the driver has looked at it again.
    pub fn with<R>(&self, f: impl FnOnce(&mut M, Duration) -> R) -> R {
        let r = self.changing(f);
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_one();
        r
    }

    /// [`Shared::with`] for the driver itself, which is awake already: a nudge of its own
    /// would have it loop without end.
    fn changing<R>(&self, f: impl FnOnce(&mut M, Duration) -> R) -> R {
        let now = self.now();
        let r = f(&mut self.lock(), now);
        self.changed.notify_waiters();
        for (_, w) in self.wakers.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            w.wake();
        }
        r
    }

    /// Runs `f` on the session without waking anyone: for a request task that takes what the
    /// session gives it (and says what changed itself, see [`Shared::nudge`]).
    pub fn quietly<R>(&self, f: impl FnOnce(&mut M, Duration) -> R) -> R {
        let now = self.now();
        f(&mut self.lock(), now)
    }

    /// Reads the session.
    pub fn peek<R>(&self, f: impl FnOnce(&M) -> R) -> R {
        f(&self.lock())
    }

    /// Whether the session was settled when the driver last reported its events (see
    /// [`Machine::settled`]).
    pub fn settled(&self) -> bool {
        self.settled_at.load(Ordering::Acquire) == self.generation.load(Ordering::Acquire)
    }

    /// Wakes the threads blocked on the session, and the driver with `driver`.
    pub fn nudge(&self, driver: bool) {
        if driver {
            self.wake.notify_one();
        }
        self.changed.notify_waiters();
    }

    /// Asks the driver for a tick now (see [`Transport::tick`]).
    pub fn tick_now(&self) {
        self.tick_now.notify_one();
    }

    /// Wakes `waker` at the session's next change.
    pub fn register(&self, key: u64, waker: &Waker) {
        let mut wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        match wakers.iter_mut().find(|(k, _)| *k == key) {
            Some((_, w)) => w.clone_from(waker),
            None => wakers.push((key, waker.clone())),
        }
    }

    pub fn unregister(&self, key: u64) {
        self.wakers.lock().unwrap_or_else(|e| e.into_inner()).retain(|(k, _)| *k != key);
    }

    /// Blocks the calling (non-runtime) thread until `ready` holds (of this, see
    /// [`Shared::peek`] and [`Shared::settled`]), `limit` passes, or `cancelled()` holds; `cancel`
    /// is notified (notify_waiters) whenever `cancelled` may have changed.
    pub fn block_until(
        &self,
        ready: impl Fn(&Self) -> bool,
        limit: Option<Duration>,
        cancel: &Notify,
        cancelled: impl Fn() -> bool,
    ) -> WaitOutcome {
        if ready(self) {
            return WaitOutcome::Ready;
        }
        let deadline = limit.map(|l| tokio::time::Instant::now() + l);
        RUNTIME.block_on(async {
            loop {
                let changed = self.changed.notified();
                let woken = cancel.notified();
                tokio::pin!(changed, woken);
                // Register before checking, so that a notification in between is not lost.
                changed.as_mut().enable();
                woken.as_mut().enable();
                if ready(self) {
                    return WaitOutcome::Ready;
                }
                if cancelled() {
                    return WaitOutcome::Cancelled;
                }
                let until = deadline
                    .map_or(tokio::time::Instant::now() + RECHECK, |d| d.min(tokio::time::Instant::now() + RECHECK));
                tokio::select! {
                    _ = changed => {}
                    _ = woken => {}
                    _ = tokio::time::sleep_until(until) => {
                        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) && !ready(self) {
                            return WaitOutcome::TimedOut;
                        }
                    }
                }
            }
        })
    }
}

/// Runs `transport` for the session in `shared` until the task is aborted.
pub async fn run<T: Transport>(shared: Arc<Shared<T::Machine>>, mut transport: T) {
    let (net_tx, mut net_rx) = mpsc::unbounded_channel::<T::Net>();
    loop {
        let generation = shared.generation.load(Ordering::Acquire);
        let (actions, events, timeout) = shared.changing(|m, now| {
            let actions: Vec<_> = std::iter::from_fn(|| m.poll_action(now)).collect();
            let events: Vec<_> = std::iter::from_fn(|| m.poll_event()).collect();
            (actions, events, m.poll_timeout())
        });
        for a in actions {
            if let Some(work) = transport.perform(a, &net_tx) {
                work.await;
            }
        }
        for e in events {
            transport.report(e);
        }
        let settled_at = if shared.peek(Machine::settled) { generation } else { u64::MAX };
        if shared.settled_at.swap(settled_at, Ordering::AcqRel) != settled_at {
            shared.changed.notify_waiters();
        }
        if transport.next_tick().is_some_and(|t| Instant::now() >= t) {
            transport.tick();
        }
        let wake_at = [timeout.map(|t| shared.instant(t)), transport.next_tick()].into_iter().flatten().min();
        let sleep = async {
            match wake_at {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = shared.tick_now.notified() => transport.tick(),
            _ = sleep => {
                if timeout.is_some_and(|t| shared.now() >= t) {
                    shared.changing(|m, now| m.handle_timeout(now));
                }
            }
            Some(ev) = net_rx.recv() => transport.on_net(ev, &net_tx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session that is done after `n` timeouts, one every 10 ms.
    struct Countdown {
        left: u32,
        next: Duration,
    }

    impl Machine for Countdown {
        type Action = ();
        type Event = u32;
        fn poll_action(&mut self, _now: Duration) -> Option<()> {
            None
        }
        fn poll_event(&mut self) -> Option<u32> {
            None
        }
        fn poll_timeout(&self) -> Option<Duration> {
            (self.left > 0).then_some(self.next)
        }
        fn handle_timeout(&mut self, now: Duration) {
            if now >= self.next && self.left > 0 {
                self.left -= 1;
                self.next = now + Duration::from_millis(10);
            }
        }
        fn settled(&self) -> bool {
            self.left == 0
        }
    }

    struct Nothing;

    impl Transport for Nothing {
        type Machine = Countdown;
        type Net = ();
        fn perform(&mut self, _: (), _: &Net<()>) -> Option<Pending> {
            None
        }
        fn on_net(&mut self, _: (), _: &Net<()>) {}
        fn report(&mut self, _: u32) {}
    }

    #[test]
    fn a_thread_waits_for_the_session_with_a_limit_and_a_cancel() {
        let shared = Shared::new(Countdown { left: 5, next: Duration::ZERO });
        let task = RUNTIME.spawn(run(shared.clone(), Nothing));
        let cancel = Notify::new();
        let started = Instant::now();
        assert_eq!(
            shared.block_until(Shared::settled, Some(Duration::from_secs(10)), &cancel, || false),
            WaitOutcome::Ready
        );
        assert_eq!(shared.peek(|m| m.left), 0);
        assert!(started.elapsed() < Duration::from_secs(5));
        // A condition that never holds: the limit.
        let started = Instant::now();
        let r = shared.block_until(|s| s.peek(|m| m.left == 7), Some(Duration::from_millis(300)), &cancel, || false);
        assert_eq!(r, WaitOutcome::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(300));
        // Cancelled from another thread.
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cancel = Arc::new(Notify::new());
        let (f, c) = (flag.clone(), cancel.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            f.store(true, std::sync::atomic::Ordering::SeqCst);
            c.notify_waiters();
        });
        let r = shared.block_until(
            |s| s.peek(|m| m.left == 7),
            None,
            &cancel,
            || flag.load(std::sync::atomic::Ordering::SeqCst),
        );
        assert_eq!(r, WaitOutcome::Cancelled);
        task.abort();
    }
}
