//! The one backoff of every loop that retries until it succeeds (reconnects, flushes,
//! calls that must get through): `backon`'s exponential delays, jittered, with a floor
//! and a cap, so all services wait alike.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Delays for one run of failures: a ceiling that doubles from `min` to `max`, each
/// delay a random point in the upper half of its ceiling ("equal jitter"), never
/// below `min`. The first delay is `min` itself and none exceeds `max`; the jitter
/// spreads out clients that lost the same server, so they do not return in step.
///
/// It never runs out; [`reset`](Self::reset) after a success starts again from `min`.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    delays: ExponentialBackoff,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        let max = max.max(min);
        Self {
            min,
            max,
            delays: exponential(min, max).build(),
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        // No limit on attempts, so `None` never comes. The clamp keeps f32 rounding
        // inside the bounds and raises the first delay (half to all of `min`) to `min`.
        let delay = self.delays.next().unwrap_or(self.max);
        delay.clamp(self.min, self.max)
    }

    /// Called after an attempt that worked: the next failure waits `min` again.
    pub fn reset(&mut self) {
        self.delays = exponential(self.min, self.max).build();
    }

    pub fn max(&self) -> Duration {
        self.max
    }

    /// The delays as the endless `backon::Backoff` that `Retryable::retry` takes.
    pub fn delays(mut self) -> impl backon::Backoff {
        std::iter::repeat_with(move || self.next_delay())
    }
}

/// backon's jitter adds up to the whole delay again, so the builder works at half
/// the bounds: its ceiling `c / 2` doubles towards `max / 2`, and its delays land
/// between `c / 2` and `c`. No limit on attempts: these loops never give up.
fn exponential(min: Duration, max: Duration) -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(min / 2)
        .with_max_delay(max / 2)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_the_floor_grows_to_the_cap_and_resets() {
        let (min, max) = (Duration::from_millis(200), Duration::from_secs(5));
        let mut b = Backoff::new(min, max);
        assert_eq!(b.next_delay(), min);
        let mut ceiling = min;
        for _ in 0..10 {
            ceiling = (ceiling * 2).min(max);
            let d = b.next_delay();
            // A few nanoseconds of f32 rounding either way.
            let slack = Duration::from_micros(1);
            assert!(
                d + slack >= ceiling / 2 && d <= ceiling + slack,
                "{d:?} under {ceiling:?}"
            );
        }
        for _ in 0..50 {
            let d = b.next_delay();
            assert!(d >= max / 2 && d <= max, "{d:?}");
        }
        b.reset();
        assert_eq!(b.next_delay(), min);
    }

    #[test]
    fn delays_are_random() {
        let run = || {
            let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
            b.delays().skip(1).take(8).collect::<Vec<_>>()
        };
        assert_ne!(run(), run());
    }

    #[test]
    fn a_cap_below_the_floor_is_the_floor() {
        let min = Duration::from_secs(2);
        let b = Backoff::new(min, Duration::from_secs(1));
        assert_eq!(b.max(), min);
        assert!(b.delays().take(5).all(|d| d == min));
    }

    #[test]
    fn a_zero_floor_and_cap_never_wait() {
        let b = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert!(b.delays().take(5).all(|d| d.is_zero()));
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
