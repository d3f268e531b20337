//! Reconnect delays: exponential from a floor to a cap, with random jitter so many
//! gateways that lost the same network do not come back in step.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            failures: 0,
        }
    }

    /// The delay before the next attempt: the ceiling `min * 2^failures` (capped at
    /// `max`), of which the upper half is random ("equal jitter"), never below `min`.
    /// Each delay is thus at least the previous ceiling, so delays grow until they
    /// reach the cap.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let half = ceiling / 2;
        let jitter_ms = half.as_millis() as u64;
        let extra = if jitter_ms == 0 {
            0
        } else {
            rand::rng().random_range(0..=jitter_ms)
        };
        ((ceiling - half) + Duration::from_millis(extra)).max(self.min)
    }

    /// Called after a connection that worked: the next failure starts from `min`.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn max(&self) -> Duration {
        self.max
    }

    fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(31));
        self.min.saturating_mul(factor).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_within_bounds_and_resets() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(60));
        let mut b = Backoff::new(min, max);
        let mut previous = Duration::ZERO;
        for _ in 0..12 {
            let d = b.next_delay();
            assert!(d >= min && d <= max, "{d:?}");
            assert!(d >= previous / 2, "{d:?} after {previous:?}");
            previous = d;
        }
        // Far along, every delay sits in the capped window.
        for _ in 0..50 {
            let d = b.next_delay();
            assert!(d >= max / 2 && d <= max, "{d:?}");
        }
        b.reset();
        assert_eq!(b.next_delay(), min);
    }

    #[test]
    fn each_delay_is_at_least_the_previous_ceiling_until_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1600));
        let delays: Vec<_> = (0..5).map(|_| b.next_delay()).collect();
        for (i, pair) in delays.windows(2).enumerate() {
            let ceiling = Duration::from_millis(100 << i);
            assert!(pair[1] >= ceiling, "{delays:?}");
        }
    }
}
