//! The boundary to WhatsApp: what the gateway needs from a messenger, and the
//! connection state it reports.

use async_trait::async_trait;
use tokio::sync::{broadcast, watch};

use std::sync::Arc;

use abtrack_proto::Jid;

use crate::media::Prepared;

use crate::error::Result;

/// Where the WhatsApp session stands: the contract's own statuses, with their one
/// name and meaning (`abtrack_proto::status`).
pub use abtrack_proto::gateway::v1::ConnectionStatus as Status;

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
    /// The new chats WhatsApp lets the account open, as it last said; `None` when
    /// it never said (no quota on the account, or not asked yet).
    pub new_chat_quota: Option<NewChatQuota>,
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
            new_chat_quota: None,
            since: abtrack_proto::time::now_ms(),
        }
    }
}

/// How many new chats (chats with people who never wrote to the account) WhatsApp
/// lets the account open in its current cycle, and how many it opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewChatQuota {
    pub used: u64,
    pub total: u64,
    /// When the cycle ends and the quota starts afresh (ms since the epoch).
    pub cycle_ends_at: Option<i64>,
}

impl NewChatQuota {
    /// Whether no new chat may be opened now: the quota is used up and its cycle
    /// has not ended.
    pub fn used_up(&self, now: i64) -> bool {
        self.total > 0 && self.used >= self.total && self.cycle_ends_at.is_none_or(|end| end > now)
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
    /// The first message to this recipient from this gateway: it opens a new chat,
    /// which WhatsApp may count against the account's new-chat quota.
    pub new_chat: bool,
    /// An image or document on disk, sent with `text` as its caption.
    pub media: Option<Arc<Prepared>>,
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

/// One WhatsApp account. Implementations must treat a repeated `send` with the
/// same message id as the same message, and answer only once WhatsApp's server
/// accepted it (or with the error it gave).
#[async_trait]
pub trait Messenger: Send + Sync + 'static {
    fn state(&self) -> watch::Receiver<ConnectionState>;
    fn events(&self) -> broadcast::Receiver<MessengerEvent>;
    async fn is_on_whatsapp(&self, jid: &Jid) -> Result<NumberCheck>;
    async fn send(&self, message: &Outgoing) -> Result<Accepted>;
    async fn request_pair_code(&self, phone_digits: &str) -> Result<String>;
    async fn logout(&self) -> Result<()>;
}
