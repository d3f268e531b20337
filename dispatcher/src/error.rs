//! The dispatcher's errors and their one mapping to gRPC status codes.

use tonic::{Code, Status};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field that cannot be taken as it is.
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error("{0}")]
    NotFound(String),
    /// A request field whose value another job already holds.
    #[error("{field}: {reason}")]
    AlreadyExists { field: &'static str, reason: String },
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("queue storage: {0}")]
    Storage(#[from] rusqlite::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("firestore: {0}")]
    Firestore(String),
    /// Firestore cannot serve a query the queue runs: an index is missing.
    #[error("{0}")]
    MissingIndex(String),
    #[error("{0}")]
    Internal(String),
}

impl abtrack_proto::sqlite::StoreError for Error {
    fn sqlite(&self) -> Option<&rusqlite::Error> {
        match self {
            Error::Storage(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        if let Error::Storage(e) = &error
            && abtrack_proto::sqlite::is_disk_full(e)
        {
            return abtrack_proto::sqlite::disk_full_status(format!(
                "the dispatcher's disk is full: the queue cannot store this ({e}); nothing was stored, try again once space is freed"
            ));
        }
        let code = match &error {
            Error::InvalidArgument { field, reason } => {
                return abtrack_proto::reason::field_error(Code::InvalidArgument, field, reason);
            }
            Error::AlreadyExists { field, reason } => {
                return abtrack_proto::reason::field_error(Code::AlreadyExists, field, reason);
            }
            Error::NotFound(_) => Code::NotFound,
            Error::FailedPrecondition(_) | Error::MissingIndex(_) => Code::FailedPrecondition,
            Error::Firestore(_) => Code::Unavailable,
            Error::Storage(_) | Error::Io(_) | Error::Internal(_) => Code::Internal,
        };
        Status::new(code, error.to_string())
    }
}
