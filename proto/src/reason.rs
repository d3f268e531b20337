//! What a gRPC error carries beside its code: the precise reason a job gets as its
//! `lastError.code` (`whatsapp_479`, `no_server_ack`) and, for a refusal that ends
//! at a known time (WhatsApp's reach-out time lock), when to try again. Both travel
//! as status metadata, so the status code keeps saying what kind of failure it is.
//! A request refused for one of its fields names the field in gRPC's standard error
//! details (`google.rpc.BadRequest`, through `tonic-types`).

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

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

/// A request refused because of `field`: `code` with the message `field: reason`,
/// and the field as a `BadRequest` field violation, so a caller reads which field
/// without parsing the message.
pub fn field_error(code: Code, field: &str, reason: &str) -> Status {
    Status::with_error_details(
        code,
        format!("{field}: {reason}"),
        ErrorDetails::with_bad_request_violation(field, reason),
    )
}

/// The field `status` names as at fault, if any.
pub fn field(status: &Status) -> Option<String> {
    let violations = status.get_details_bad_request()?.field_violations;
    violations.into_iter().next().map(|v| v.field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_error_names_its_field_in_the_details_and_the_message() {
        let status = field_error(
            Code::InvalidArgument,
            "sendAt",
            "must be before the year 10000",
        );
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "sendAt: must be before the year 10000");
        assert_eq!(field(&status).as_deref(), Some("sendAt"));
        // Through the wire form, as a client gets it.
        let response = status.into_http::<()>();
        let received = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(field(&received).as_deref(), Some("sendAt"));
        // A message shaped like one names no field.
        assert_eq!(field(&Status::invalid_argument("to: not a number")), None);
    }

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
