//! What the gateway's answer to a `Send` means for the job: the status-code mapping of
//! the architecture, in one place.

use std::time::Duration;

use rand::Rng;
use tonic::Code;

use crate::job::JobError;

/// What to do with a job after a failed `Send`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Bad number, empty message, not on WhatsApp: the job ends `failed`.
    Permanent(JobError),
    /// Try again after a backoff; the attempt counts.
    Transient(JobError),
    /// The gateway is down, not linked, disconnected or refuses the internal token:
    /// keep the job, pause until the gateway is ready again; the attempt does not count.
    GatewayNotReady(JobError),
    /// Pacing, the daily cap, or WhatsApp holding the account back (a reach-out
    /// time lock): try later, at `retry_at` (ms) when the gateway knows it; the
    /// attempt does not count.
    RateLimited {
        error: JobError,
        retry_at: Option<i64>,
    },
}

/// How a call's failure came about, read from the error tonic kept beneath the
/// status (a status the gateway sent has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// The gateway answered with this status.
    Answered,
    /// No connection to the gateway could be made, or the one there was closed
    /// before the request was written: the request never left.
    NotConnected,
    /// The call's own deadline passed.
    TimedOut,
    /// The connection broke while the request was in flight: the gateway may have
    /// stopped in the middle of sending.
    Interrupted,
}

fn cause(status: &tonic::Status) -> Cause {
    let mut source = std::error::Error::source(status);
    let mut seen = false;
    while let Some(error) = source {
        seen = true;
        let never_sent = error
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_canceled);
        if error.is::<tonic::ConnectError>() || never_sent {
            return Cause::NotConnected;
        }
        if error.is::<tonic::TimeoutExpired>() {
            return Cause::TimedOut;
        }
        source = error.source();
    }
    if seen {
        Cause::Interrupted
    } else {
        Cause::Answered
    }
}

/// Maps a gRPC status from the gateway to what happens to the job. The gateway's
/// precise reason (`abtrack_proto::reason`), when it gives one, becomes the error code.
pub fn classify(status: &tonic::Status) -> Action {
    let detail = status.message().to_owned();
    match cause(status) {
        Cause::Answered => {}
        Cause::NotConnected => {
            return Action::GatewayNotReady(JobError::new("unavailable", detail));
        }
        Cause::TimedOut => return Action::Transient(JobError::new("deadline_exceeded", detail)),
        // The attempt counts: a job whose sending brings the gateway down every
        // time must end, not be sent again ahead of every job behind it.
        Cause::Interrupted => {
            return Action::Transient(JobError::new(
                "gateway_interrupted",
                format!(
                    "the connection to the WhatsApp gateway broke while it was sending this job ({detail})"
                ),
            ));
        }
    }
    let error = |default: &str| {
        JobError::new(
            abtrack_proto::reason::reason(status).unwrap_or(default),
            detail.clone(),
        )
    };
    match status.code() {
        Code::InvalidArgument => Action::Permanent(error("invalid_argument")),
        Code::NotFound => Action::Permanent(error("not_on_whatsapp")),
        // WhatsApp's server refused the message for good, or never acknowledged it.
        Code::PermissionDenied => Action::Permanent(error("refused")),
        Code::FailedPrecondition => Action::GatewayNotReady(error("not_linked")),
        Code::Unavailable => Action::GatewayNotReady(error("unavailable")),
        // The gateway refused this dispatcher's internal token: the configuration is
        // wrong, the job is not; it waits like it does for a gateway that is down.
        Code::Unauthenticated => Action::GatewayNotReady(JobError::new(
            "unauthenticated",
            crate::gateway_link::refused_reason(status),
        )),
        // The gateway's disk is full: it cannot record a send, so it sends nothing
        // until space returns; the worker holds back as for a gateway that is down.
        Code::ResourceExhausted
            if abtrack_proto::reason::reason(status) == Some(abtrack_proto::reason::DISK_FULL) =>
        {
            Action::GatewayNotReady(error("disk_full"))
        }
        Code::ResourceExhausted => Action::RateLimited {
            error: error("rate_limited"),
            retry_at: abtrack_proto::reason::retry_at_ms(status),
        },
        Code::DeadlineExceeded => Action::Transient(error("deadline_exceeded")),
        other => Action::Transient(error(&code_name(other))),
    }
}

fn code_name(code: Code) -> String {
    format!("{code:?}")
        .chars()
        .enumerate()
        .flat_map(|(i, c)| {
            let sep = (i > 0 && c.is_ascii_uppercase()).then_some('_');
            sep.into_iter()
                .chain(std::iter::once(c.to_ascii_lowercase()))
        })
        .collect()
}

/// Exponential backoff with jitter for the `attempt`-th retry (1-based): between half
/// and all of `base * 2^(attempt-1)`, capped at `max`.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let ceiling = exp.min(max);
    let half = ceiling / 2;
    let extra_ms = rand::rng().random_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(extra_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Status;

    #[test]
    fn maps_each_code_as_the_architecture_says() {
        let cases = [
            (Code::InvalidArgument, "permanent", "invalid_argument"),
            (Code::NotFound, "permanent", "not_on_whatsapp"),
            (Code::FailedPrecondition, "not_ready", "not_linked"),
            (Code::Unavailable, "not_ready", "unavailable"),
            (Code::Unauthenticated, "not_ready", "unauthenticated"),
            (Code::DeadlineExceeded, "transient", "deadline_exceeded"),
            (Code::ResourceExhausted, "rate_limited", "rate_limited"),
            (Code::PermissionDenied, "permanent", "refused"),
            (Code::Aborted, "transient", "aborted"),
            (Code::Internal, "transient", "internal"),
            (Code::Cancelled, "transient", "cancelled"),
            (Code::Unknown, "transient", "unknown"),
            (Code::DataLoss, "transient", "data_loss"),
        ];
        for (code, kind, error_code) in cases {
            let action = classify(&Status::new(code, "why"));
            let (got_kind, error) = match action {
                Action::Permanent(e) => ("permanent", e),
                Action::Transient(e) => ("transient", e),
                Action::GatewayNotReady(e) => ("not_ready", e),
                Action::RateLimited { error, retry_at } => {
                    assert_eq!(retry_at, None);
                    ("rate_limited", error)
                }
            };
            assert_eq!(
                (got_kind, error.code.as_str()),
                (kind, error_code),
                "{code:?}"
            );
            if code == Code::Unauthenticated {
                assert!(
                    error.message.contains("refused the internal token (why)")
                        && error.message.contains("ABTRACK_INTERNAL_TOKEN"),
                    "{}",
                    error.message
                );
            } else {
                assert_eq!(error.message, "why");
            }
        }
    }

    #[test]
    fn the_gateways_reason_names_the_error_and_a_retry_time_is_kept() {
        use abtrack_proto::reason::with_reason;
        let refused = with_reason(
            Status::permission_denied("479: bad field"),
            "whatsapp_479",
            None,
        );
        assert_eq!(
            classify(&refused),
            Action::Permanent(JobError::new("whatsapp_479", "479: bad field"))
        );
        let locked = with_reason(
            Status::resource_exhausted("time lock"),
            "whatsapp_463",
            Some(1_770_000_000_000),
        );
        assert_eq!(
            classify(&locked),
            Action::RateLimited {
                error: JobError::new("whatsapp_463", "time lock"),
                retry_at: Some(1_770_000_000_000),
            }
        );
        let transient = with_reason(Status::aborted("503"), "whatsapp_503", None);
        assert_eq!(
            classify(&transient),
            Action::Transient(JobError::new("whatsapp_503", "503"))
        );
        // A full disk is not a rate limit: the gateway sends nothing until space
        // returns, so the worker holds back.
        let full = abtrack_proto::sqlite::disk_full_status("the gateway's disk is full");
        assert_eq!(
            classify(&full),
            Action::GatewayNotReady(JobError::new("disk_full", "the gateway's disk is full"))
        );
    }

    #[test]
    fn how_a_call_failed_is_read_from_the_error_beneath_the_status() {
        let kind = |status: Status| match classify(&status) {
            Action::GatewayNotReady(e) | Action::Transient(e) | Action::Permanent(e) => e.code,
            Action::RateLimited { error, .. } => error.code,
        };
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let not_connected = Status::from_error(Box::new(tonic::ConnectError(Box::new(refused))));
        assert_eq!(kind(not_connected), "unavailable");
        let timed_out = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(kind(timed_out), "deadline_exceeded");
        // Anything else beneath: the connection broke with the request in flight.
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(
            kind(Status::from_error(Box::new(reset))),
            "gateway_interrupted"
        );
        // The gateway's own answer has nothing beneath it.
        assert_eq!(
            kind(Status::unavailable("WhatsApp is connecting")),
            "unavailable"
        );
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(600);
        for attempt in 1..=30 {
            let ceiling = (base * 2u32.pow(attempt.min(20) - 1)).min(max);
            for _ in 0..20 {
                let d = backoff(attempt, base, max);
                assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
            }
        }
        assert_eq!(backoff(3, Duration::ZERO, max), Duration::ZERO);
    }
}
