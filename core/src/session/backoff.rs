// SPDX-License-Identifier: MPL-2.0
//! Retry delays: at once, then exponential from the initial delay up to a cap, each with ±25 %
//! jitter so that many encoders cut off together do not come back in step (docs/protocol.md §3.6:
//! unlimited retries, backoff unspecified by the public texts).
//!
//! The jitter comes from a small PRNG seeded by the driver, so that the core reads no entropy
//! and tests are reproducible.

use core::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    cap: Duration,
    state: u64,
}

impl Backoff {
    pub fn new(initial: Duration, cap: Duration, seed: u64) -> Self {
        // xorshift must not start at 0
        Backoff { initial, cap: cap.max(initial), state: seed | 1 }
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    /// The delay before retry number `attempt` (1 = the first retry after a failure).
    pub fn delay(&mut self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let shift = (attempt - 2).min(20);
        let base = self.initial.saturating_mul(1 << shift).min(self.cap);
        // ±25 %: a factor in [0.75, 1.25] in thousandths.
        let factor = 750 + self.next_random() % 501;
        let nanos = base.as_nanos() * u128::from(factor) / 1000;
        let d = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        d.min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_once_then_exponential_with_jitter_and_a_cap() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(4), 42);
        assert_eq!(b.delay(1), Duration::ZERO);
        let d2 = b.delay(2);
        assert!(d2 >= Duration::from_millis(375) && d2 <= Duration::from_millis(625), "{d2:?}");
        let d3 = b.delay(3);
        assert!(d3 >= Duration::from_millis(750) && d3 <= Duration::from_millis(1250), "{d3:?}");
        for n in 6..100 {
            let d = b.delay(n);
            assert!(d >= Duration::from_secs(3) && d <= Duration::from_secs(4), "{n}: {d:?}");
        }
    }

    #[test]
    fn jitter_differs_between_seeds() {
        let mut a = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), 1);
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), 2);
        let da: alloc::vec::Vec<_> = (2..10).map(|n| a.delay(n)).collect();
        let db: alloc::vec::Vec<_> = (2..10).map(|n| b.delay(n)).collect();
        assert_ne!(da, db);
    }
}
