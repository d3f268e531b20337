//! The logger's errors and their one mapping to gRPC status codes.

use tonic::{Code, Status};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("outbox: {0}")]
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
                "the logger's disk is full: its outbox cannot store this outcome ({e}); nothing was stored, send it again once space is freed"
            ));
        }
        let code = match &error {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::Storage(_) | Error::Io(_) | Error::Internal(_) => Code::Internal,
        };
        Status::new(code, error.to_string())
    }
}
