//! Errors of the mock server.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("websocket error: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the connection is closed")]
    Closed,
    #[error("{0}")]
    Phone(String),
    #[error("cannot set up the media host's TLS: {0}")]
    Tls(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
