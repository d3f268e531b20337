//! The boundary to WhatsApp: what the gateway needs from a messenger, and the
//! connection state it reports.

use async_trait::async_trait;
use tokio::sync::{broadcast, watch};

use abtrack_proto::Jid;

use crate::error::Result;

/// Where the WhatsApp session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Starting,
    WaitingForQr,
    WaitingForPairCode,
    Connecting,
    Connected,
    Disconnected,
    LoggedOut,
    Banned,
    Replaced,
    Outdated,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionState {
    pub status: Status,
    /// "dry-run" or "whatsapp".
    pub mode: &'static str,
    /// Reason or next step in plain language.
    pub detail: String,
    pub own_number: String,
    pub push_name: String,
    pub retry_at: Option<i64>,
    pub banned_until: Option<i64>,
    /// The end of a reach-out time lock on the account (ms), while one is known.
    pub time_lock_until: Option<i64>,
    /// When this state began (ms since the epoch).
    pub since: i64,
}

impl ConnectionState {
    pub fn new(status: Status, mode: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            mode,
            detail: detail.into(),
            own_number: String::new(),
            push_name: String::new(),
            retry_at: None,
            banned_until: None,
            time_lock_until: None,
            since: abtrack_proto::time::now_ms(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    Delivered,
    Read,
}

/// Something the messenger reports besides its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessengerEvent {
    Qr {
        code: String,
        expires_at: i64,
    },
    PairCode {
        code: String,
        expires_at: i64,
    },
    Receipt {
        message_id: String,
        kind: ReceiptKind,
        at: i64,
    },
}

/// A message ready to go: recipient normalised, message id chosen.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub job_id: String,
    pub message_id: String,
    pub to: Jid,
    pub text: String,
}

/// What WhatsApp says about a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberCheck {
    pub on_whatsapp: bool,
    /// The account's LID (`…@lid`), when WhatsApp addresses it by one; the client
    /// learns the number-to-LID mapping from the same answer and sends by it.
    pub lid: Option<String>,
}

/// WhatsApp's server accepted a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// When the gateway had the server's acknowledgement (ms since the epoch).
    pub at: i64,
}

/// One WhatsApp account. Implementations must treat a repeated `send_text` with the
/// same message id as the same message, and answer only once WhatsApp's server
/// accepted it (or with the error it gave).
#[async_trait]
pub trait Messenger: Send + Sync + 'static {
    fn state(&self) -> watch::Receiver<ConnectionState>;
    fn events(&self) -> broadcast::Receiver<MessengerEvent>;
    async fn is_on_whatsapp(&self, jid: &Jid) -> Result<NumberCheck>;
    async fn send_text(&self, message: &Outgoing) -> Result<Accepted>;
    async fn request_pair_code(&self, phone_digits: &str) -> Result<String>;
    async fn logout(&self) -> Result<()>;
}
