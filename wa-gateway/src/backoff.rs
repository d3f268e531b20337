//! Reconnect delays: exponential from a floor to a cap, with random jitter so many
//! gateways that lost the same network do not come back in step. The supervisor's
//! name for the shared backoff; the tests pin what the supervisor relies on.

pub use abtrack_proto::retry::Backoff;

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
