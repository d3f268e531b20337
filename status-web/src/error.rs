//! API errors: a status code and a JSON body `{"error": "...", "field": "..."}` that
//! names the field at fault when there is one.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub field: Option<String>,
    pub message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub fn bad_request(field: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            field: None,
            message: message.into(),
        }
    }
}

impl ApiError {
    /// A service's gRPC answer. A refused internal token is a 502 that names the
    /// service and the variable to fix.
    pub fn from_service(service: crate::snapshot::Service, status: tonic::Status) -> Self {
        if abtrack_proto::token::is_refused(&status) {
            return Self {
                status: StatusCode::BAD_GATEWAY,
                field: None,
                message: crate::watchers::refused_message(service.name(), &status),
            };
        }
        Self::from(status)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: &self.message,
            field: self.field.as_deref(),
        };
        (self.status, Json(body)).into_response()
    }
}

/// Maps a service's gRPC answer to HTTP. A refusal that names its field in the
/// status details (`abtrack_proto::reason::field_error`) keeps naming it.
impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        use tonic::Code;
        let code = match status.code() {
            Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => StatusCode::CONFLICT,
            // The service's disk is full: nothing was stored (RFC 4918's 507).
            Code::ResourceExhausted
                if abtrack_proto::reason::reason(&status)
                    == Some(abtrack_proto::reason::DISK_FULL) =>
            {
                StatusCode::INSUFFICIENT_STORAGE
            }
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            // A service refused status-web's internal token: status-web is set up
            // wrong, not the caller.
            Code::Unauthenticated => StatusCode::BAD_GATEWAY,
            _ => StatusCode::BAD_GATEWAY,
        };
        let message = status.message().to_owned();
        let field = abtrack_proto::reason::field(&status);
        let message = if code == StatusCode::SERVICE_UNAVAILABLE {
            format!("service unavailable: {message}")
        } else {
            message
        };
        Self {
            status: code,
            field,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Service;

    #[test]
    fn a_refused_token_is_a_bad_gateway_that_names_the_service() {
        let err = ApiError::from_service(
            Service::Dispatcher,
            tonic::Status::unauthenticated("wrong internal token"),
        );
        assert_eq!(err.status, StatusCode::BAD_GATEWAY);
        assert_eq!(err.field, None);
        assert!(
            err.message.starts_with(
                "the dispatcher refused status-web's internal token (wrong internal token)"
            ) && err.message.contains("ABTRACK_INTERNAL_TOKEN"),
            "{}",
            err.message
        );
        let other = ApiError::from_service(Service::Gateway, tonic::Status::not_found("x: gone"));
        assert_eq!(other.status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn a_refused_field_is_named_from_the_details_not_from_the_message() {
        let refused = abtrack_proto::reason::field_error(
            tonic::Code::InvalidArgument,
            "sendAt",
            "must be before the year 10000",
        );
        let err = ApiError::from(refused);
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.field.as_deref(), Some("sendAt"));
        assert_eq!(err.message, "sendAt: must be before the year 10000");
        let taken = abtrack_proto::reason::field_error(
            tonic::Code::AlreadyExists,
            "id",
            "a different job with id \"a\" already exists",
        );
        let err = ApiError::from(taken);
        assert_eq!(err.status, StatusCode::CONFLICT);
        assert_eq!(err.field.as_deref(), Some("id"));
        // A message that only looks like one names no field.
        let err = ApiError::from(tonic::Status::invalid_argument("to: not a number"));
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.field, None);
    }

    #[test]
    fn a_full_disk_is_insufficient_storage_and_a_rate_limit_too_many_requests() {
        let full = abtrack_proto::reason::with_reason(
            tonic::Status::resource_exhausted("the dispatcher's disk is full"),
            abtrack_proto::reason::DISK_FULL,
            None,
        );
        let err = ApiError::from(full);
        assert_eq!(err.status, StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(err.message, "the dispatcher's disk is full");
        let limited = ApiError::from(tonic::Status::resource_exhausted("slow down"));
        assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    }
}
