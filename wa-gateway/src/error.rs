//! The gateway's errors and their one mapping to gRPC status codes.

use tonic::{Code, Status};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a refusal from WhatsApp's server means for the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Sending again cannot help: the job ends `failed`.
    Permanent,
    /// Sending again later may work: retried, and the attempt counts.
    Transient,
    /// WhatsApp holds the account back (a time lock, a cap, a rate limit): the job
    /// waits, without spending an attempt.
    Held,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad number, empty message: permanent.
    #[error("{0}")]
    InvalidArgument(String),
    /// A request field that cannot be taken as it is (the number to link): named in
    /// the answer's details.
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    /// The number is not on WhatsApp: permanent.
    #[error("{0} is not on WhatsApp")]
    NotOnWhatsApp(String),
    /// Not linked or logged out: the dispatcher pauses and keeps the job.
    #[error("{0}")]
    NotLinked(String),
    /// Disconnected: retry.
    #[error("{0}")]
    Unavailable(String),
    /// Pacing or the daily cap: retry later.
    #[error("{0}")]
    RateLimited(String),
    /// WhatsApp's server answered the message with an error, or never answered.
    /// `reason` becomes the job's error code (`whatsapp_479`, `no_server_ack`).
    #[error("{message}")]
    Refused {
        reason: String,
        message: String,
        refusal: Refusal,
        /// When to try again (ms since the epoch), when WhatsApp says.
        retry_at: Option<i64>,
    },
    /// The message is out but WhatsApp's server has not answered yet, and the
    /// caller's deadline is near; the gateway keeps waiting for the answer.
    #[error("{0}")]
    AckPending(String),
    /// The job's media cannot be sent as it is (refused address, HTTP error, too
    /// large, a type the bytes contradict): permanent, reason `bad_media`.
    #[error("{0}")]
    BadMedia(String),
    /// The media could not be fetched or uploaded now (a timeout, a server error):
    /// retried, reason `media_unavailable`.
    #[error("{0}")]
    MediaUnavailable(String),
    /// The operation does not exist in this mode.
    #[error("{0}")]
    Unsupported(String),
    #[error("send log: {0}")]
    Storage(#[from] rusqlite::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Internal(String),
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        if let Error::Storage(e) = &error
            && abtrack_proto::sqlite::is_disk_full(e)
        {
            return abtrack_proto::sqlite::disk_full_status(format!(
                "the gateway's disk is full: its send log cannot record the message ({e}), so it was not sent; it is sent once space is freed"
            ));
        }
        let code = match &error {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::InvalidField { field, reason } => {
                return abtrack_proto::reason::field_error(Code::InvalidArgument, field, reason);
            }
            Error::NotOnWhatsApp(_) => Code::NotFound,
            Error::NotLinked(_) => Code::FailedPrecondition,
            Error::Unavailable(_) => Code::Unavailable,
            Error::RateLimited(_) => Code::ResourceExhausted,
            Error::Refused {
                reason,
                refusal,
                retry_at,
                ..
            } => {
                let code = match refusal {
                    Refusal::Permanent => Code::PermissionDenied,
                    Refusal::Transient => Code::Aborted,
                    Refusal::Held => Code::ResourceExhausted,
                };
                return abtrack_proto::reason::with_reason(
                    Status::new(code, error.to_string()),
                    reason,
                    *retry_at,
                );
            }
            Error::BadMedia(_) => {
                return abtrack_proto::reason::with_reason(
                    Status::new(Code::InvalidArgument, error.to_string()),
                    "bad_media",
                    None,
                );
            }
            Error::MediaUnavailable(_) => {
                return abtrack_proto::reason::with_reason(
                    Status::new(Code::Aborted, error.to_string()),
                    "media_unavailable",
                    None,
                );
            }
            Error::AckPending(_) => Code::DeadlineExceeded,
            Error::Unsupported(_) => Code::Unimplemented,
            Error::Storage(_) | Error::Io(_) | Error::Internal(_) => Code::Internal,
        };
        Status::new(code, error.to_string())
    }
}

/// The error with its causes, as one line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
