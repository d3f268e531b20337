//! The real messenger (`WA_MODE=whatsapp`) on `whatsapp-rust`: one supervised
//! session that links by QR or pair code, reconnects with backoff and heals itself
//! (a session WhatsApp ended or rejected, or a store that cannot be read, is moved
//! aside and a fresh pairing starts).

pub mod acks;
pub mod mapping;
pub mod session;
mod supervisor;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use whatsapp_rust::Client;
use whatsapp_rust::pair_code::PairCodeOptions;
use whatsapp_rust::prelude::MessageBuilderExt;
use whatsapp_rust::send::SendOptions;
use whatsapp_rust::waproto::whatsapp as wa;
use whatsapp_rust::{NodeBuilder, NodeFilter};

use abtrack_proto::time::now_ms;
use abtrack_proto::{Jid, mask_phone};

use crate::error::{Error, Result};
use crate::gateway::status_name;
use crate::messenger::{
    Accepted, ConnectionState, Messenger, MessengerEvent, NumberCheck, Outgoing, Status,
};

/// The `mode` every state of this messenger carries.
pub const MODE: &str = "whatsapp";

/// How long a call waits for the WhatsApp socket before answering `UNAVAILABLE`.
const SOCKET_WAIT: Duration = Duration::from_secs(10);
/// The most a number check may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

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
}

impl WhatsAppMessenger {
    /// Starts the supervisor, which opens the session in `settings.data_dir` and
    /// keeps it connected.
    pub fn start(settings: WhatsAppSettings) -> Self {
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
        );
        tokio::spawn(supervisor.run());
        Self {
            server_ack_timeout,
            state,
            events,
            client,
            commands,
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

/// The error for a call that needs a logged-in session, by state (as the gateway
/// maps states: not linked is `FAILED_PRECONDITION`, the rest `UNAVAILABLE`).
fn not_ready(state: &ConnectionState) -> Error {
    let message = format!(
        "WhatsApp is {}: {}",
        status_name(state.status),
        state.detail
    );
    match state.status {
        Status::WaitingForQr
        | Status::WaitingForPairCode
        | Status::LoggedOut
        | Status::Replaced
        | Status::Outdated => Error::NotLinked(message),
        _ => Error::Unavailable(message),
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
        let answer = tokio::time::timeout(
            CALL_TIMEOUT,
            client
                .contacts()
                .is_on_whatsapp(std::slice::from_ref(&target)),
        )
        .await
        .map_err(|_| Error::Unavailable("the is-on-WhatsApp query timed out".into()))?
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
    async fn send_text(&self, message: &Outgoing) -> Result<Accepted> {
        let to = to_wa_jid(&message.to)?;
        for round in 1..=2 {
            let client = self.connected_client()?;
            let ack =
                client.wait_for_node(NodeFilter::tag("ack").attr("id", message.message_id.clone()));
            // The message id chosen by the gateway goes on the wire, so a resend after
            // a crash is the same message to WhatsApp.
            let options = SendOptions::default().with_message_id(message.message_id.clone());
            let exchange = async {
                let sent = client
                    .send_message_with_options(
                        to.clone(),
                        wa::Message::text(message.text.clone()),
                        options,
                    )
                    .await
                    .map_err(|e| Error::Unavailable(format!("sending failed: {e}")))?;
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
                let error = node
                    .get()
                    .get_attr("error")
                    .map(|v| v.as_str().into_owned());
                return match error {
                    None => Ok(Accepted { at: now_ms() }),
                    Some(code) => {
                        tracing::warn!(job_id = %message.job_id, message_id = %message.message_id, code = %code, "WhatsApp's server refused the message");
                        let retry_at = match code.as_str() {
                            acks::TIME_LOCK => self.time_lock_end(&client).await,
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
            if answers_ping(&client).await {
                continue;
            }
            // The connection is dead on WhatsApp's side: the message may never have
            // left, so it waits for a new connection rather than failing.
            let reason = "WhatsApp accepts the connection but answers nothing on it (no acknowledgement of messages, no answer to a ping); the gateway reconnects by itself. If this lasts, check this computer's internet connection and that the phone is online, or reset the session".to_owned();
            self.reconnect(reason.clone(), round == 1).await?;
            if round == 2 {
                return Err(Error::Unavailable(reason));
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
