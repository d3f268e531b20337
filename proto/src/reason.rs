//! What a gRPC error carries beside its code: the precise reason a job gets as its
//! `lastError.code` (`whatsapp_479`, `no_server_ack`) and, for a refusal that ends
//! at a known time (WhatsApp's reach-out time lock), when to try again. Both travel
//! as status metadata, so the status code keeps saying what kind of failure it is.

use tonic::Status;
use tonic::metadata::MetadataValue;

/// The metadata key of the reason: lower-case letters, digits and `_`.
pub const REASON_KEY: &str = "x-abtrack-reason";
/// The metadata key of the time to try again, in milliseconds since the epoch.
pub const RETRY_AT_KEY: &str = "x-abtrack-retry-at";
/// The reason of a write refused because the service's disk is full
/// (`RESOURCE_EXHAUSTED`, gRPC's code for a full file system): nothing was stored,
/// and the same request succeeds once space is freed.
pub const DISK_FULL: &str = "disk_full";

/// Adds `reason` (and, when known, the time to try again) to `status`.
pub fn with_reason(mut status: Status, reason: &str, retry_at_ms: Option<i64>) -> Status {
    let valid = !reason.is_empty()
        && reason
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid && let Ok(value) = MetadataValue::try_from(reason) {
        status.metadata_mut().insert(REASON_KEY, value);
    }
    if let Some(at) = retry_at_ms {
        status
            .metadata_mut()
            .insert(RETRY_AT_KEY, MetadataValue::from(at));
    }
    status
}

/// The reason `status` carries, if any.
pub fn reason(status: &Status) -> Option<&str> {
    status.metadata().get(REASON_KEY)?.to_str().ok()
}

/// When to try again, if `status` says.
pub fn retry_at_ms(status: &Status) -> Option<i64> {
    status
        .metadata()
        .get(RETRY_AT_KEY)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_retry_times_ride_on_the_status() {
        let status = with_reason(
            Status::permission_denied("refused"),
            "whatsapp_479",
            Some(1_770_000_000_000),
        );
        assert_eq!(reason(&status), Some("whatsapp_479"));
        assert_eq!(retry_at_ms(&status), Some(1_770_000_000_000));
        let plain = with_reason(Status::aborted("x"), "Not A Reason", None);
        assert_eq!(reason(&plain), None);
        assert_eq!(retry_at_ms(&plain), None);
    }
}
