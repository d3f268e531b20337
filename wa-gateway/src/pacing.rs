//! Paces sends per WhatsApp account: a minimum interval plus random jitter between
//! two sends, and an optional cap on sends in any 24 hours, because bursts get
//! numbers banned.

use std::collections::VecDeque;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

const DAY: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacingConfig {
    pub min_interval: Duration,
    pub jitter: Duration,
    /// 0 means no cap.
    pub daily_cap: u32,
}

/// The account's pacing as its state reports it: the settings, and the sends of the
/// last 24 hours against the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacingUse {
    pub config: PacingConfig,
    /// Messages WhatsApp's server accepted in the last 24 hours (the send log's count).
    pub sent_last_day: u64,
    /// While the cap is reached: when the oldest counted send ages out (ms since the
    /// epoch).
    pub cap_frees_at: Option<i64>,
}

/// Why a send cannot happen in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLate {
    /// How long from now the next slot is.
    pub wait: Duration,
    pub daily_cap_reached: bool,
}

/// The account's send slots. The caller serialises sends (one at a time per session),
/// so the pacer needs no lock of its own.
#[derive(Debug)]
pub struct Pacer {
    config: PacingConfig,
    /// The earliest time the next send may start.
    next_slot: Option<Instant>,
    /// Start times of the sends in the last 24 hours (only kept with a cap).
    recent: VecDeque<Instant>,
}

impl Pacer {
    pub fn new(config: PacingConfig) -> Self {
        Self {
            config,
            next_slot: None,
            recent: VecDeque::new(),
        }
    }

    /// Remembers sends made before a restart, given as how long ago each was (oldest
    /// first), so the daily cap and the interval hold across restarts.
    pub fn remember(&mut self, ago: &[Duration]) {
        let now = Instant::now();
        let Some(last) = ago.last() else { return };
        let last_start = now.checked_sub(*last).unwrap_or(now);
        self.next_slot = Some(last_start + self.config.min_interval);
        if self.config.daily_cap > 0 {
            self.recent = ago
                .iter()
                .filter(|a| **a < DAY)
                .map(|a| now.checked_sub(*a).unwrap_or(now))
                .collect();
        }
    }

    /// When the next send may start, and whether the daily cap is what holds it.
    fn next_start(&mut self, now: Instant) -> (Instant, bool) {
        let mut start = self.next_slot.map_or(now, |slot| slot.max(now));
        let mut capped = false;
        if self.config.daily_cap > 0 {
            while self.recent.front().is_some_and(|t| *t + DAY <= now) {
                self.recent.pop_front();
            }
            if self.recent.len() >= self.config.daily_cap as usize {
                let freed = self.recent[self.recent.len() - self.config.daily_cap as usize] + DAY;
                if freed > start {
                    start = freed;
                    capped = true;
                }
            }
        }
        (start, capped)
    }

    /// Waits for the next slot, unless the slot is past `deadline` (minus the time a
    /// send itself needs): then answers at once with how long it would have been.
    pub async fn wait_turn(
        &mut self,
        deadline: Option<Instant>,
        send_time: Duration,
    ) -> Result<(), TooLate> {
        let now = Instant::now();
        let (start, capped) = self.next_start(now);
        if let Some(deadline) = deadline
            && start + send_time > deadline
        {
            return Err(TooLate {
                wait: start - now,
                daily_cap_reached: capped,
            });
        }
        tokio::time::sleep_until(start).await;
        Ok(())
    }

    /// Records that a send started now; the next slot is one interval plus jitter on.
    pub fn record_send(&mut self) {
        let now = Instant::now();
        let jitter = if self.config.jitter.is_zero() {
            Duration::ZERO
        } else {
            let ms = self.config.jitter.as_millis() as u64;
            Duration::from_millis(rand::rng().random_range(0..=ms))
        };
        self.next_slot = Some(now + self.config.min_interval + jitter);
        if self.config.daily_cap > 0 {
            self.recent.push_back(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacer(min_ms: u64, jitter_ms: u64, cap: u32) -> Pacer {
        Pacer::new(PacingConfig {
            min_interval: Duration::from_millis(min_ms),
            jitter: Duration::from_millis(jitter_ms),
            daily_cap: cap,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn spaces_sends_by_the_interval_plus_jitter() {
        let mut p = pacer(3000, 2000, 0);
        let start = Instant::now();
        let mut starts = Vec::new();
        for _ in 0..20 {
            p.wait_turn(None, Duration::ZERO).await.unwrap();
            starts.push(Instant::now());
            p.record_send();
        }
        assert_eq!(starts[0], start, "the first send does not wait");
        for pair in starts.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap >= Duration::from_secs(3), "gap {gap:?}");
            assert!(gap <= Duration::from_secs(5), "gap {gap:?}");
        }
        let distinct: std::collections::HashSet<_> =
            starts.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(distinct.len() > 1, "jitter varies the gaps");
    }

    #[tokio::test(start_paused = true)]
    async fn sends_before_a_restart_still_count() {
        let mut p = pacer(10_000, 0, 2);
        // Two sends, 2 hours and 4 seconds ago: the cap of 2 is reached.
        p.remember(&[Duration::from_secs(7200), Duration::from_secs(4)]);
        let now = Instant::now();
        let err = p
            .wait_turn(Some(now + Duration::from_secs(60)), Duration::ZERO)
            .await
            .unwrap_err();
        assert!(err.daily_cap_reached);
        assert_eq!(err.wait, DAY - Duration::from_secs(7200));
        let mut q = pacer(10_000, 0, 0);
        q.remember(&[Duration::from_secs(4)]);
        q.wait_turn(None, Duration::ZERO).await.unwrap();
        assert_eq!(
            Instant::now(),
            now + Duration::from_secs(6),
            "the interval counts from the last send"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn zero_pacing_never_waits() {
        let mut p = pacer(0, 0, 0);
        let start = Instant::now();
        for _ in 0..1000 {
            p.wait_turn(Some(start), Duration::ZERO).await.unwrap();
            p.record_send();
        }
        assert_eq!(Instant::now(), start);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_past_the_deadline_is_refused_without_waiting() {
        let mut p = pacer(10_000, 0, 0);
        p.wait_turn(None, Duration::ZERO).await.unwrap();
        p.record_send();
        let now = Instant::now();
        let err = p
            .wait_turn(
                Some(now + Duration::from_secs(5)),
                Duration::from_millis(500),
            )
            .await
            .unwrap_err();
        assert_eq!(err.wait, Duration::from_secs(10));
        assert!(!err.daily_cap_reached);
        assert_eq!(Instant::now(), now, "refusal does not wait");
        // A deadline that leaves room is waited for.
        p.wait_turn(
            Some(now + Duration::from_secs(11)),
            Duration::from_millis(500),
        )
        .await
        .unwrap();
        assert_eq!(Instant::now(), now + Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn the_daily_cap_holds_sends_for_24_hours() {
        let mut p = pacer(0, 0, 3);
        let start = Instant::now();
        for _ in 0..3 {
            p.wait_turn(None, Duration::ZERO).await.unwrap();
            p.record_send();
        }
        let err = p
            .wait_turn(Some(start + Duration::from_secs(60)), Duration::ZERO)
            .await
            .unwrap_err();
        assert!(err.daily_cap_reached);
        assert_eq!(err.wait, DAY);
        // Without a deadline the fourth send waits for the first to age out.
        p.wait_turn(None, Duration::ZERO).await.unwrap();
        assert_eq!(Instant::now(), start + DAY);
        p.record_send();
    }
}
