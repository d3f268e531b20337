//! How the day and the month went: per hour of the last 24 hours and per day of the
//! last 30 (days in the operator's time), the messages sent, delivered, read and the
//! jobs failed; the share of the sent ones delivered and read; the most common
//! failure reasons. Counted by the queue (one grouped query in the local queue,
//! count queries in Firestore), never by reading every job into memory.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::Result;
use crate::queue::Store;

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;
const HOURS: usize = 24;
const DAYS: usize = 30;
/// The most failure reasons the stats name.
const MAX_REASONS: usize = 10;

/// What a histogram counts, each by its own time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Messages WhatsApp's server accepted, by `sent_at`.
    Sent,
    /// Delivery receipts, by `delivered_at`.
    Delivered,
    /// Read receipts, by `read_at`.
    Read,
    /// Jobs that ended failed, by their last change.
    Failed,
}

impl Metric {
    pub const ALL: [Metric; 4] = [
        Metric::Sent,
        Metric::Delivered,
        Metric::Read,
        Metric::Failed,
    ];
}

/// `count` consecutive spans of `width` ms from `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub from: i64,
    pub width: i64,
    pub count: usize,
}

impl Span {
    pub fn until(&self) -> i64 {
        self.from + self.width * self.count as i64
    }

    /// The last 24 hours for `now`, the current hour last; hours start where the
    /// operator's clock (`offset` ms from UTC) says.
    pub fn hours(now: i64, offset: i64) -> Self {
        let current = (now + offset).div_euclid(HOUR_MS) * HOUR_MS - offset;
        Self {
            from: current - (HOURS as i64 - 1) * HOUR_MS,
            width: HOUR_MS,
            count: HOURS,
        }
    }

    /// The last 30 days for `now`, today last, in the operator's time.
    pub fn days(now: i64, offset: i64) -> Self {
        let today = (now + offset).div_euclid(DAY_MS) * DAY_MS - offset;
        Self {
            from: today - (DAYS as i64 - 1) * DAY_MS,
            width: DAY_MS,
            count: DAYS,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    pub start: i64,
    pub sent: u64,
    pub delivered: u64,
    pub read: u64,
    pub failed: u64,
}

/// Of the jobs sent in a span: how many, how many of them are delivered (or read)
/// and read now; and the jobs failed in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub sent: u64,
    pub delivered: u64,
    pub read: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub code: String,
    pub count: u64,
    /// The message of the newest such failure.
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub hours: Vec<Bucket>,
    pub days: Vec<Bucket>,
    pub reasons: Vec<Reason>,
    pub last_day: Totals,
    pub last_month: Totals,
    pub at: i64,
}

/// How long after an hour or day ended its counts may still change: a receipt is
/// counted by the time WhatsApp gives it, which may lag a little behind the clock.
const SETTLED_MS: i64 = 10 * 60 * 1000;

/// The counts of hours and days that ended, which no longer change: every event is
/// counted by its own time, which is now when it happens. A refresh then counts only
/// the current hour and day again (in Firestore, a handful of count queries instead
/// of one per hour and day).
#[derive(Debug, Default)]
pub struct SettledCounts(Mutex<HashMap<(Metric, i64, i64), u64>>);

impl SettledCounts {
    fn get(&self, key: (Metric, i64, i64)) -> Option<u64> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .copied()
    }

    /// Keeps `n` for a part that ended, forgetting those older than 31 days.
    fn keep(&self, key: (Metric, i64, i64), n: u64, now: i64) {
        let mut settled = self.0.lock().unwrap_or_else(|p| p.into_inner());
        settled.retain(|(_, from, _), _| *from > now - 31 * DAY_MS);
        settled.insert(key, n);
    }
}

/// Counts the stats at `now` for an operator `offset` ms from UTC.
pub async fn stats(
    store: &dyn Store,
    settled: &SettledCounts,
    now: i64,
    offset: i64,
) -> Result<Stats> {
    let hours = buckets(store, settled, Span::hours(now, offset), now).await?;
    let days_span = Span::days(now, offset);
    let days = buckets(store, settled, days_span, now).await?;
    let totals = |buckets: &[Bucket], sent_then: Totals| Totals {
        failed: buckets.iter().map(|b| b.failed).sum(),
        ..sent_then
    };
    let last_day = totals(&hours, store.sent_between(now - DAY_MS, now + 1).await?);
    let last_month = totals(&days, store.sent_between(days_span.from, now + 1).await?);
    let reasons = store.failure_reasons(days_span.from, MAX_REASONS).await?;
    Ok(Stats {
        hours,
        days,
        reasons,
        last_day,
        last_month,
        at: now,
    })
}

/// Each part of `span`, its settled counts from `settled`, the others counted.
async fn buckets(
    store: &dyn Store,
    settled: &SettledCounts,
    span: Span,
    now: i64,
) -> Result<Vec<Bucket>> {
    let start = |i: usize| span.from + span.width * i as i64;
    let ended = |i: usize| start(i) + span.width <= now - SETTLED_MS;
    let mut buckets: Vec<Bucket> = (0..span.count)
        .map(|i| Bucket {
            start: start(i),
            ..Bucket::default()
        })
        .collect();
    for metric in Metric::ALL {
        let key = |i: usize| (metric, start(i), span.width);
        // The settled parts come first; the rest is counted in one histogram.
        let known = (0..span.count)
            .take_while(|i| ended(*i) && settled.get(key(*i)).is_some())
            .count();
        let rest = Span {
            from: start(known),
            width: span.width,
            count: span.count - known,
        };
        let mut counts: Vec<u64> = (0..known).filter_map(|i| settled.get(key(i))).collect();
        if rest.count > 0 {
            counts.extend(store.histogram(metric, rest).await?);
        }
        for (i, n) in counts.iter().enumerate().skip(known) {
            if ended(i) {
                settled.keep(key(i), *n, now);
            }
        }
        for (bucket, n) in buckets.iter_mut().zip(counts) {
            match metric {
                Metric::Sent => bucket.sent = n,
                Metric::Delivered => bucket.delivered = n,
                Metric::Read => bucket.read = n,
                Metric::Failed => bucket.failed = n,
            }
        }
    }
    Ok(buckets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_and_days_start_where_the_operators_clock_says() {
        // 2026-12-05T17:30:00Z is 00:30 on the 6th in Jakarta (UTC+7).
        let now = 1_796_491_800_000;
        let wib = 7 * HOUR_MS;
        let hours = Span::hours(now, wib);
        assert_eq!(hours.until() - hours.from, 24 * HOUR_MS);
        assert_eq!(
            hours.until(),
            1_796_493_600_000,
            "the current hour ends at 18:00Z"
        );
        let days = Span::days(now, wib);
        // Today in Jakarta began at 17:00Z.
        assert_eq!(days.until(), 1_796_490_000_000 + DAY_MS);
        assert_eq!(days.count, 30);
        // In UTC the same instant is still the 5th.
        assert_eq!(Span::days(now, 0).until(), 1_796_428_800_000 + DAY_MS);
        // A half-hour offset (India) moves the hours too.
        let ist = Span::hours(now, 5 * HOUR_MS + HOUR_MS / 2);
        assert_eq!(ist.until(), now + HOUR_MS);
    }
}
