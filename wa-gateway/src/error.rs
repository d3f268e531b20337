//! The gateway's errors and their one mapping to gRPC status codes.

use tonic::{Code, Status};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad number, empty message: permanent.
    #[error("{0}")]
    InvalidArgument(String),
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
        let code = match &error {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotOnWhatsApp(_) => Code::NotFound,
            Error::NotLinked(_) => Code::FailedPrecondition,
            Error::Unavailable(_) => Code::Unavailable,
            Error::RateLimited(_) => Code::ResourceExhausted,
            Error::Unsupported(_) => Code::Unimplemented,
            Error::Storage(_) | Error::Io(_) | Error::Internal(_) => Code::Internal,
        };
        Status::new(code, error.to_string())
    }
}
