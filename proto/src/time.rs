//! Time as the services exchange it: milliseconds since the Unix epoch inside, protobuf
//! `Timestamp` on the wire, RFC 3339 in JSON.

use chrono::{DateTime, SecondsFormat, Utc};
use prost_types::Timestamp;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub fn to_timestamp(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub fn from_timestamp(ts: &Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(ts.nanos) / 1_000_000)
}

pub fn opt_timestamp(ms: Option<i64>) -> Option<Timestamp> {
    ms.map(to_timestamp)
}

/// RFC 3339 in UTC with milliseconds, e.g. `2026-11-24T06:08:56.123Z`.
pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an RFC 3339 date-time into milliseconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_including_before_epoch() {
        for ms in [0, 1, 999, 1_000, 1_764_000_000_123, -1, -1_001] {
            assert_eq!(from_timestamp(&to_timestamp(ms)), ms);
        }
    }

    #[test]
    fn rfc3339_round_trips() {
        let ms = 1_764_000_000_123;
        assert_eq!(rfc3339(ms), "2025-11-24T16:00:00.123Z");
        assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms));
        assert_eq!(parse_rfc3339("2025-11-24T23:00:00.123+07:00"), Some(ms));
        assert_eq!(parse_rfc3339("tomorrow"), None);
    }
}
