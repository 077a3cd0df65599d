//! Capped exponential backoff with jitter, as a pure function so its bounds can be tested.

use std::time::Duration;

/// Delay before reconnect attempt `attempt` (0 = first retry): `base * 2^attempt`, capped at
/// `max`, then scaled by a jitter factor in [0.5, 1.0] so a fleet of gateways that lost the
/// same broker does not reconnect in lock step. `jitter` is a uniform sample in [0, 1).
pub fn backoff(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX));
    let capped = exp.min(max);
    let factor = 0.5 + 0.5 * jitter.clamp(0.0, 1.0);
    capped.mul_f64(factor)
}

/// Reconnect state of one link; `next_delay` advances, `reset` after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    attempt: u32,
    base: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            attempt: 0,
            base,
            max,
        }
    }

    /// The delay to wait now; the next one will be longer (until the cap).
    pub fn next_delay(&mut self) -> Duration {
        let d = backoff(self.attempt, self.base, self.max, fastrand::f64());
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn doubles_until_the_cap() {
        let max = Duration::from_secs(30);
        assert_eq!(backoff(0, S, max, 1.0), S);
        assert_eq!(backoff(1, S, max, 1.0), 2 * S);
        assert_eq!(backoff(4, S, max, 1.0), 16 * S);
        assert_eq!(backoff(5, S, max, 1.0), max);
        assert_eq!(backoff(u32::MAX, S, max, 1.0), max);
    }

    #[test]
    fn jitter_stays_within_half_and_full() {
        let max = Duration::from_secs(30);
        for attempt in 0..40 {
            for j in [0.0, 0.3, 0.99, -1.0, 7.0] {
                let d = backoff(attempt, S, max, j);
                let full = backoff(attempt, S, max, 1.0);
                assert!(
                    d <= full && d >= full / 2,
                    "attempt {attempt} jitter {j}: {d:?}"
                );
                assert!(d <= max);
            }
        }
    }

    #[test]
    fn state_advances_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let first = b.next_delay();
        assert!(first <= Duration::from_millis(100));
        for _ in 0..10 {
            assert!(b.next_delay() <= Duration::from_secs(1));
        }
        assert_eq!(b.attempts(), 11);
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
