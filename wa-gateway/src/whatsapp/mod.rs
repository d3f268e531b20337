//! The real messenger (`WA_MODE=whatsapp`) on `whatsapp-rust`: one supervised
//! session that links by QR or pair code, reconnects with backoff and heals itself
//! (a session WhatsApp ended or rejected, or a store that cannot be read, is moved
//! aside and a fresh pairing starts).

pub mod acks;
pub mod mapping;
pub mod session;
mod supervisor;
mod upload;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use whatsapp_rust::Client;
use whatsapp_rust::pair_code::PairCodeOptions;
use whatsapp_rust::prelude::MessageBuilderExt;
use whatsapp_rust::send::{SendError, SendOptions};
use whatsapp_rust::waproto::whatsapp as wa;
use whatsapp_rust::{MexRequest, NodeBuilder, NodeFilter};

use abtrack_proto::tasks::Tasks;
use abtrack_proto::time::now_ms;
use abtrack_proto::{Jid, mask_numbers, mask_phone};

use crate::error::{Error, Refusal, Result};
use crate::messenger::{
    Accepted, ConnectionState, Messenger, MessengerEvent, NewChatQuota, NumberCheck, Outgoing,
    Status,
};
use abtrack_proto::status::Sending;

/// The `mode` every state of this messenger carries.
pub const MODE: &str = "whatsapp";

/// How long a call waits for the WhatsApp socket before answering `UNAVAILABLE`.
const SOCKET_WAIT: Duration = Duration::from_secs(10);

/// Why a connection is replaced, and what the operator can do if that lasts.
const DEAD_CONNECTION: &str = "WhatsApp accepts the connection but answers nothing on it (no acknowledgement of messages, no answer to a ping); the gateway reconnects by itself. If this lasts, check this computer's internet connection and that the phone is online, or reset the session";

#[derive(Debug, Clone)]
pub struct WhatsAppSettings {
    pub data_dir: PathBuf,
    /// `None`: the library's default server.
    pub server_url: Option<String>,
    /// `None`: the library fetches the current WhatsApp Web version.
    pub client_version: Option<(u32, u32, u32)>,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// How long a send waits for the server's acknowledgement before sending once
    /// more under the same message id.
    pub server_ack_timeout: Duration,
    /// Also print each QR code on stderr as a block.
    pub print_qr: bool,
}

/// What the supervisor is asked to do from outside.
enum Command {
    Logout(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
    /// The connection looks open but WhatsApp answers nothing on it: drop it and
    /// connect again, at once or after the usual backoff.
    Reconnect {
        reason: String,
        at_once: bool,
    },
    /// WhatsApp answered again after connections that did not: reconnecting may
    /// start from the shortest delay again.
    Answered,
}

/// How long a ping may take on a connection suspected dead.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

pub struct WhatsAppMessenger {
    server_ack_timeout: Duration,
    state: watch::Sender<ConnectionState>,
    events: broadcast::Sender<MessengerEvent>,
    /// The current client, while one exists.
    client: Arc<Mutex<Option<Arc<Client>>>>,
    commands: mpsc::Sender<Command>,
    /// When WhatsApp last gave no new-chat quota: asked again only after
    /// [`QUOTA_UNKNOWN_FOR`], so sends do not wait on a query that has no answer.
    quota_unknown_since: Mutex<Option<i64>>,
    /// Connections in a row on which WhatsApp answered nothing (no ack, no ping).
    dead_streak: std::sync::atomic::AtomicU32,
}

/// How long a missing new-chat quota answer is believed.
const QUOTA_UNKNOWN_FOR: i64 = 10 * 60 * 1000;

impl WhatsAppMessenger {
    /// Starts the supervisor, which opens the session in `settings.data_dir` and
    /// keeps it connected.
    pub fn start(settings: WhatsAppSettings, tasks: &Tasks) -> Self {
        let state = watch::Sender::new(ConnectionState::new(
            Status::Starting,
            MODE,
            format!(
                "opening the WhatsApp session in {}",
                session::SessionDir::new(&settings.data_dir).dir().display()
            ),
        ));
        let events = broadcast::Sender::new(1024);
        let client = Arc::new(Mutex::new(None));
        let (commands, receiver) = mpsc::channel(8);
        let server_ack_timeout = settings.server_ack_timeout;
        let supervisor = supervisor::Supervisor::new(
            settings,
            state.clone(),
            events.clone(),
            Arc::clone(&client),
            receiver,
            tasks.clone(),
        );
        // Not cancelled: it ends on `shutdown`, which flushes the session store.
        tasks.spawn_to_finish(supervisor.run());
        Self {
            server_ack_timeout,
            state,
            events,
            client,
            commands,
            quota_unknown_since: Mutex::new(None),
            dead_streak: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// Disconnects cleanly (flushing the session store) and stops the supervisor.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Asks WhatsApp whether the account is under a reach-out time lock and until
    /// when; publishes the lock's end with the state (the dashboard shows it) and
    /// answers it, so the refused message waits exactly that long.
    async fn time_lock_end(&self, client: &Client) -> Option<i64> {
        let lock = match tokio::time::timeout(PING_TIMEOUT, client.mex().fetch_reachout_timelock())
            .await
        {
            Ok(Ok(lock)) => lock,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the reach-out time lock");
                return None;
            }
            Err(_) => {
                tracing::warn!("no answer to the reach-out time-lock query");
                return None;
            }
        };
        let until = lock
            .time_enforcement_ends
            .as_deref()
            .and_then(|secs| secs.trim().parse::<i64>().ok())
            .map(|secs| secs.saturating_mul(1000))
            .filter(|until| lock.is_active == Some(true) && *until > now_ms());
        if let Some(until) = until {
            tracing::warn!(
                until = %abtrack_proto::time::rfc3339(until),
                enforcement = lock.enforcement_type.as_deref().unwrap_or(""),
                "WhatsApp put this account under a reach-out time lock: messages to people who never wrote to it wait until it ends"
            );
        }
        self.state
            .send_if_modified(|s| std::mem::replace(&mut s.time_lock_until, until) != until);
        until
    }

    /// Asks WhatsApp how many new chats the account may open in its current cycle and
    /// how many it opened (`WAWebMexFetchNewChatMessageCappingInfoJobQuery`, whose
    /// types the library generates); publishes the answer with the state. `None`
    /// when WhatsApp gives no quota or does not answer in time; then it is asked
    /// again only after a while, unless `now` (WhatsApp just said the quota is used
    /// up).
    async fn read_new_chat_quota(&self, client: &Client, now: bool) -> Option<NewChatQuota> {
        let unknown_since = *self
            .quota_unknown_since
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !now && unknown_since.is_some_and(|t| now_ms() - t < QUOTA_UNKNOWN_FOR) {
            return None;
        }
        let answer = self.ask_new_chat_quota(client).await;
        let quota = answer.flatten();
        *self
            .quota_unknown_since
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = quota.is_none().then(now_ms);
        if let Some(quota) = answer {
            // An answer without a quota clears the one shown.
            self.state
                .send_if_modified(|s| std::mem::replace(&mut s.new_chat_quota, quota) != quota);
        }
        quota
    }

    /// `None`: no answer; `Some(None)`: WhatsApp answered with no quota.
    async fn ask_new_chat_quota(&self, client: &Client) -> Option<Option<NewChatQuota>> {
        use whatsapp_rust::wacore::iq::mex_operations::fetch_new_chat_message_capping_info as capping;
        let request = MexRequest::new(
            capping::NAME,
            capping::DOC_ID,
            capping::Variables::default(),
        );
        let data = match tokio::time::timeout(PING_TIMEOUT, client.mex().query(request)).await {
            Ok(Ok(response)) => response.data?,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot read the new-chat quota");
                return None;
            }
            Err(_) => {
                tracing::debug!("no answer to the new-chat quota query");
                return None;
            }
        };
        let Some(info) = serde_json::from_value::<capping::Response>(data)
            .ok()?
            .xwa2_message_capping_info
        else {
            return Some(None);
        };
        let count = |value: Option<String>| value.and_then(|v| v.trim().parse().ok());
        Some(Some(NewChatQuota {
            used: count(info.used_quota)?,
            total: count(info.total_quota)?,
            cycle_ends_at: info.cycle_end_timestamp.map(epoch_ms),
        }))
    }

    /// Before a message that opens a new chat: refuses it for now when the account's
    /// new-chat quota is used up, so it waits for the cycle's end instead of
    /// provoking a refusal or a reach-out time lock.
    async fn hold_if_quota_used_up(&self, client: &Client, message: &Outgoing) -> Result<()> {
        let known = self.state.borrow().new_chat_quota;
        let Some(quota) = (match known {
            Some(quota) => Some(quota),
            None => self.read_new_chat_quota(client, false).await,
        }) else {
            return Ok(());
        };
        if !quota.used_up(now_ms()) {
            return Ok(());
        }
        tracing::info!(job_id = %message.job_id, used = quota.used, total = quota.total, "the new-chat quota is used up: a message to a new chat waits");
        let until = quota
            .cycle_ends_at
            .map_or_else(|| "its cycle ends".to_owned(), abtrack_proto::time::rfc3339);
        Err(Error::Refused {
            reason: "new_chat_quota".into(),
            message: format!(
                "this account has opened the {} new chats WhatsApp allows it until {until}; messages to people it never wrote to wait until then, the others go on",
                quota.total
            ),
            refusal: Refusal::Held,
            retry_at: quota.cycle_ends_at,
        })
    }

    /// Has the supervisor replace the connection, and waits (as long as a send waits
    /// for an ack) until a new one is logged in; `UNAVAILABLE` when none is.
    async fn reconnect(&self, reason: String, at_once: bool) -> Result<()> {
        let asked = now_ms();
        let mut states = self.state.subscribe();
        self.commands
            .send(Command::Reconnect {
                reason: reason.clone(),
                at_once,
            })
            .await
            .map_err(|_| Error::Internal("the session supervisor has stopped".into()))?;
        let connected_again = states.wait_for(|s| s.status == Status::Connected && s.since > asked);
        match tokio::time::timeout(self.server_ack_timeout, connected_again).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(Error::Unavailable(reason)),
        }
    }

    /// WhatsApp left a query or a message unanswered: when the connection does not
    /// answer a ping either, it is dead on WhatsApp's side and is replaced (the
    /// first time at once, then after growing delays); answers whether it was.
    async fn replace_if_dead(&self, client: &Client) -> Result<bool> {
        if answers_ping(client).await {
            return Ok(false);
        }
        let dead = self.dead_streak.fetch_add(1, Ordering::SeqCst) + 1;
        self.reconnect(DEAD_CONNECTION.to_owned(), dead == 1)
            .await?;
        Ok(true)
    }

    /// The client, if the session is logged in; otherwise the error `Send` and
    /// `CheckNumber` answer with.
    fn connected_client(&self) -> Result<Arc<Client>> {
        let state = self.state.borrow().clone();
        if state.status != Status::Connected {
            return Err(not_ready(&state));
        }
        let client = self
            .client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        client.ok_or_else(|| Error::Unavailable("the WhatsApp client is restarting".into()))
    }
}

/// Whether WhatsApp's server answers a ping on this connection.
async fn answers_ping(client: &Client) -> bool {
    let ping = NodeBuilder::new("iq")
        .attr("xmlns", "w:p")
        .attr("type", "get")
        .attr("to", "s.whatsapp.net")
        .children([NodeBuilder::new("ping").build()])
        .build();
    client.send_iq_node(ping, Some(PING_TIMEOUT)).await.is_ok()
}

/// The error for a call that needs a logged-in session, by what the state means
/// for sending (not linked is `FAILED_PRECONDITION`, the rest `UNAVAILABLE`).
fn not_ready(state: &ConnectionState) -> Error {
    let message = format!("WhatsApp is {}: {}", state.status.name(), state.detail);
    match state.status.sending() {
        Sending::NotLinked => Error::NotLinked(message),
        Sending::Ready | Sending::Unavailable => Error::Unavailable(message),
    }
}

/// What a failed `send_message` means for the job: a connection problem waits for
/// the connection; a request the library refuses fails; anything else (the message
/// could not be encrypted or encoded, for example without keys for the recipient's
/// phone) is retried with its attempts counted, so it cannot wait for ever.
fn send_failed(e: SendError) -> Error {
    let text = mask_numbers(&e.to_string());
    match e {
        SendError::Client(_) | SendError::NotLoggedIn | SendError::Iq(_) => {
            Error::Unavailable(format!("sending failed: {text}"))
        }
        SendError::InvalidRequest(_) => {
            Error::InvalidArgument(format!("WhatsApp's client refuses this message: {text}"))
        }
        _ => Error::Refused {
            reason: "send_failed".into(),
            message: format!("the message could not be prepared for sending: {text}"),
            refusal: Refusal::Transient,
            retry_at: None,
        },
    }
}

/// WhatsApp's epoch timestamps are in seconds; a value too large for that is read
/// as milliseconds.
fn epoch_ms(value: i64) -> i64 {
    if value > 100_000_000_000 {
        value
    } else {
        value.saturating_mul(1000)
    }
}

fn to_wa_jid(jid: &Jid) -> Result<whatsapp_rust::Jid> {
    jid.to_string()
        .parse()
        .map_err(|e| Error::InvalidArgument(format!("recipient {}: {e}", mask_phone(jid.user()))))
}

#[async_trait]
impl Messenger for WhatsAppMessenger {
    fn state(&self) -> watch::Receiver<ConnectionState> {
        self.state.subscribe()
    }

    fn events(&self) -> broadcast::Receiver<MessengerEvent> {
        self.events.subscribe()
    }

    async fn is_on_whatsapp(&self, jid: &Jid) -> Result<NumberCheck> {
        let client = self.connected_client()?;
        let target = to_wa_jid(jid)?;
        // Bounded like a send's ack: on a dead connection the query never returns.
        let contacts = client.contacts();
        let query = contacts.is_on_whatsapp(std::slice::from_ref(&target));
        let Ok(answer) = tokio::time::timeout(self.server_ack_timeout, query).await else {
            tracing::warn!(phone = %mask_phone(jid.user()), "no answer to the is-on-WhatsApp query");
            if self.replace_if_dead(&client).await? {
                return Err(Error::Unavailable(DEAD_CONNECTION.into()));
            }
            return Err(Error::Unavailable(
                "WhatsApp did not answer whether the number is on WhatsApp in time".into(),
            ));
        };
        let answer = answer
            .map_err(|e| Error::Unavailable(format!("the is-on-WhatsApp query failed: {e}")))?;
        // One number was asked; the answer may name it by its LID instead, or give
        // the LID beside it. The client keeps the mapping and encrypts for the LID.
        let registered = answer.iter().find(|r| r.is_registered);
        Ok(NumberCheck {
            on_whatsapp: registered.is_some(),
            lid: registered
                .and_then(|r| {
                    r.lid
                        .clone()
                        .or_else(|| r.jid.is_lid().then(|| r.jid.clone()))
                })
                .map(|lid| lid.to_non_ad().to_string()),
        })
    }

    /// Sends, then waits for the server's `<ack>` of the message id. `send_message`
    /// returns as soon as the stanza is written, and answers `Ok` even when the
    /// server refuses it, so only the ack says whether WhatsApp took the message.
    /// Without an ack in time the gateway pings the server: a connection that does
    /// not answer is replaced first; then the message goes once more under the same
    /// id (the server and the recipient's phone treat it as the same message).
    async fn send(&self, message: &Outgoing) -> Result<Accepted> {
        let to = to_wa_jid(&message.to)?;
        if message.new_chat {
            let client = self.connected_client()?;
            self.hold_if_quota_used_up(&client, message).await?;
        }
        // Uploaded once per send: a resend after no answer carries the same media.
        let content = match &message.media {
            None => wa::Message::text(message.text.clone()),
            Some(media) => {
                let client = self.connected_client()?;
                upload::media_message(&client, media, &message.text).await?
            }
        };
        for round in 1..=2 {
            let client = self.connected_client()?;
            let ack =
                client.wait_for_node(NodeFilter::tag("ack").attr("id", message.message_id.clone()));
            // The message id chosen by the gateway goes on the wire, so a resend after
            // a crash is the same message to WhatsApp.
            let options = SendOptions::default().with_message_id(message.message_id.clone());
            let exchange = async {
                let sent = client
                    .send_message_with_options(to.clone(), content.clone(), options)
                    .await
                    .map_err(send_failed)?;
                if sent.message_id != message.message_id {
                    return Err(Error::Internal(format!(
                        "the library sent under message id {} instead of {}",
                        sent.message_id, message.message_id
                    )));
                }
                Ok(ack.await)
            };
            // Sending asks the server about the recipient's devices and keys first, so
            // a dead connection can hold the send itself: the bound covers both. The
            // connection closing before an answer counts as no answer.
            if let Ok(answer) = tokio::time::timeout(self.server_ack_timeout, exchange).await
                && let Ok(node) = answer?
            {
                if self.dead_streak.swap(0, Ordering::SeqCst) > 0 {
                    let _ = self.commands.try_send(Command::Answered);
                }
                let error = node
                    .get()
                    .get_attr("error")
                    .map(|v| v.as_str().into_owned());
                return match error {
                    None => {
                        let at = now_ms();
                        if message.new_chat {
                            // The quota's use just grew by one.
                            self.read_new_chat_quota(&client, false).await;
                        }
                        Ok(Accepted { at })
                    }
                    Some(code) => {
                        tracing::warn!(job_id = %message.job_id, message_id = %message.message_id, code = %code, "WhatsApp's server refused the message");
                        let retry_at = match code.as_str() {
                            acks::TIME_LOCK => self.time_lock_end(&client).await,
                            acks::NEW_CHAT_CAP => self
                                .read_new_chat_quota(&client, true)
                                .await
                                .and_then(|q| q.cycle_ends_at)
                                .filter(|end| *end > now_ms()),
                            _ => None,
                        };
                        Err(acks::refused(&code, retry_at))
                    }
                };
            }
            tracing::warn!(
                job_id = %message.job_id,
                message_id = %message.message_id,
                round,
                "no acknowledgement from WhatsApp's server"
            );
            // A connection dead on WhatsApp's side is replaced: the message may never
            // have left, so it waits for a new connection rather than failing.
            if !self.replace_if_dead(&client).await? {
                continue;
            }
            if round == 2 {
                return Err(Error::Unavailable(DEAD_CONNECTION.into()));
            }
        }
        Err(acks::no_server_ack(2 * self.server_ack_timeout.as_secs()))
    }

    async fn request_pair_code(&self, phone_digits: &str) -> Result<String> {
        let state = self.state.borrow().clone();
        if state.status == Status::Connected {
            return Err(Error::NotLinked(
                "this gateway is already linked; reset the session (Logout) to link another phone"
                    .into(),
            ));
        }
        let client = self
            .client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| Error::Unavailable("the WhatsApp client is starting".into()))?;
        // Waits for the socket while an attempt is under way; answers at once when the
        // attempt fails.
        let mut states = self.state.subscribe();
        let failed = async {
            loop {
                let current = states.borrow_and_update().clone();
                if !matches!(
                    current.status,
                    Status::Starting
                        | Status::Connecting
                        | Status::WaitingForQr
                        | Status::WaitingForPairCode
                ) {
                    return current;
                }
                if states.changed().await.is_err() {
                    return current;
                }
            }
        };
        tokio::select! {
            ready = client.wait_for_socket(SOCKET_WAIT) => {
                ready.map_err(|_| Error::Unavailable("no connection to WhatsApp yet; try again".into()))?;
            }
            state = failed => return Err(match not_ready(&state) {
                Error::NotLinked(m) => Error::Unavailable(m),
                other => other,
            }),
        }
        if client.is_logged_in() {
            return Err(Error::NotLinked("this gateway is already linked".into()));
        }
        tracing::info!(phone = %mask_phone(phone_digits), "pair code requested");
        client
            .pair_with_code(PairCodeOptions {
                phone_number: phone_digits.to_owned(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Unavailable(format!("WhatsApp gave no pair code: {e}")))
    }

    async fn logout(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Logout(tx))
            .await
            .map_err(|_| Error::Internal("the session supervisor has stopped".into()))?;
        rx.await
            .map_err(|_| Error::Internal("the session supervisor has stopped".into()))
    }
}
