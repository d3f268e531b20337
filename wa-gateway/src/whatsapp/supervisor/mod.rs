//! The task that owns the WhatsApp client: opens the session store, drives one
//! connection attempt at a time (the library's own reconnect loop is switched off),
//! turns library events into published states, waits out backoff delays, and heals
//! a session that cannot be used by moving it aside and pairing afresh.

mod events;
mod waiting;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use whatsapp_rust::Client;
use whatsapp_rust::bot::Bot;
use whatsapp_rust::store::SqliteStore;
use whatsapp_rust::transport::TokioWebSocketTransportFactory;
use whatsapp_rust::types::events::{Event, EventHandler};

use abtrack_proto::mask_phone;
use abtrack_proto::tasks::Tasks;

use super::mapping::End;
use super::session::SessionDir;
use super::{Command, WhatsAppSettings};
use crate::error::error_chain;
use crate::messenger::{ConnectionState, MessengerEvent, Status};
use abtrack_proto::retry::Backoff;

/// How long a clean disconnect may take when the gateway stops.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The library's pool retries a failing store for 30 s; a store that takes this long
/// is treated as unreadable.
const STORE_OPEN_TIMEOUT: Duration = Duration::from_secs(20);

/// Hands every library event to the supervisor, in order.
struct Forward(mpsc::UnboundedSender<Arc<Event>>);

impl EventHandler for Forward {
    fn handle_event(&self, event: Arc<Event>) {
        let _ = self.0.send(event);
    }
}

/// A client built on the session store, with its event stream.
struct Opened {
    /// Present until the first attempt, which starts the bot's background workers.
    bot: Option<Bot>,
    client: Arc<Client>,
    events: mpsc::UnboundedReceiver<Arc<Event>>,
}

/// What follows a client's life.
enum Next {
    /// The gateway is stopping.
    Stop,
    /// The library shut the client down for good; build a new one on the same store.
    Rebuild,
    /// Move the session aside and pair afresh; `reply` answers a `Logout` request.
    Heal {
        reason: String,
        label: &'static str,
        reply: Option<oneshot::Sender<()>>,
    },
}

/// How a wait ended.
enum Waited {
    Elapsed,
    Logout(oneshot::Sender<()>),
    /// `None` when the messenger was dropped without a shutdown request.
    Stop(Option<oneshot::Sender<()>>),
}

pub(super) struct Supervisor {
    settings: WhatsAppSettings,
    session: SessionDir,
    state: watch::Sender<ConnectionState>,
    events: broadcast::Sender<MessengerEvent>,
    client_slot: Arc<Mutex<Option<Arc<Client>>>>,
    commands: mpsc::Receiver<Command>,
    backoff: Backoff,
    /// A store created from nothing could not be opened either: do not move it
    /// aside again, wait instead.
    fresh_store_failed: bool,
    pair_code_outstanding: bool,
    /// The messenger replaced connections that answered nothing, and nothing has
    /// been answered since: a new login does not reset the reconnect delay.
    unanswered: bool,
    tasks: Tasks,
}

impl Supervisor {
    pub(super) fn new(
        settings: WhatsAppSettings,
        state: watch::Sender<ConnectionState>,
        events: broadcast::Sender<MessengerEvent>,
        client_slot: Arc<Mutex<Option<Arc<Client>>>>,
        commands: mpsc::Receiver<Command>,
        tasks: Tasks,
    ) -> Self {
        Self {
            session: SessionDir::new(&settings.data_dir),
            backoff: Backoff::new(settings.reconnect_min, settings.reconnect_max),
            settings,
            state,
            events,
            client_slot,
            commands,
            fresh_store_failed: false,
            pair_code_outstanding: false,
            unanswered: false,
            tasks,
        }
    }

    pub(super) async fn run(mut self) {
        loop {
            let existed = self.session.exists();
            let opened = match self.open().await {
                Ok(opened) => {
                    self.fresh_store_failed = false;
                    opened
                }
                Err(error) => {
                    if existed && !self.fresh_store_failed {
                        let reason = format!("the session store cannot be opened or read: {error}");
                        if self.move_aside(&reason, "unreadable").await.is_break() {
                            return;
                        }
                    } else {
                        self.fresh_store_failed = true;
                        tracing::error!(
                            store = %self.session.store_path().display(),
                            error = %error,
                            "cannot create a WhatsApp session store"
                        );
                        let reason = format!(
                            "cannot create the session store in {}: {error}",
                            self.session.dir().display()
                        );
                        match self.wait_retry(Status::Disconnected, reason, None).await {
                            Waited::Elapsed => {}
                            Waited::Logout(reply) => {
                                // Whatever is there is moved aside before the next try.
                                let stopped = self
                                    .move_aside("the session was reset on request", "reset")
                                    .await
                                    .is_break();
                                self.fresh_store_failed = false;
                                let _ = reply.send(());
                                if stopped {
                                    return;
                                }
                            }
                            Waited::Stop(reply) => {
                                if let Some(reply) = reply {
                                    let _ = reply.send(());
                                }
                                return;
                            }
                        }
                    }
                    continue;
                }
            };
            match self.drive(opened).await {
                Next::Stop => return,
                Next::Rebuild => {}
                Next::Heal {
                    reason,
                    label,
                    reply,
                } => {
                    let stopped = self.move_aside(&reason, label).await.is_break();
                    if let Some(reply) = reply {
                        let _ = reply.send(());
                    }
                    if stopped {
                        return;
                    }
                }
            }
        }
    }

    /// Opens the store and builds a client that does not reconnect by itself.
    async fn open(&self) -> Result<Opened, String> {
        self.session.prepare().map_err(|e| {
            format!(
                "cannot create the session folder {}: {e}",
                self.session.dir().display()
            )
        })?;
        let session = self.session.clone();
        tokio::task::spawn_blocking(move || session.check_readable())
            .await
            .map_err(|e| format!("the store check failed: {e}"))??;
        let path = self.session.store_path();
        let url = path
            .to_str()
            .ok_or_else(|| format!("the session path {} is not UTF-8", path.display()))?;
        let store = tokio::time::timeout(STORE_OPEN_TIMEOUT, SqliteStore::new(url))
            .await
            .map_err(|_| "opening the store timed out".to_owned())?
            .map_err(|e| error_chain(&e))?;
        let (tx, events) = mpsc::unbounded_channel();
        let mut transport = TokioWebSocketTransportFactory::new();
        if let Some(server) = &self.settings.server_url {
            transport = transport.with_url(server.clone());
        }
        let mut builder = Bot::builder()
            .with_backend(store)
            .with_transport_factory(transport)
            .with_event_handler(Forward(tx))
            .skip_history_sync();
        if let Some(version) = self.settings.client_version {
            builder = builder.with_version(version);
        }
        let bot = builder.build().await.map_err(|e| error_chain(&e))?;
        let client = bot.client();
        // One attempt per run: backoff, healing and pairing rounds are decided here.
        client.enable_auto_reconnect.store(false, Ordering::SeqCst);
        Ok(Opened {
            bot: Some(bot),
            client,
            events,
        })
    }

    /// Runs connection attempts with one client until it must be replaced.
    async fn drive(&mut self, mut opened: Opened) -> Next {
        let client = Arc::clone(&opened.client);
        *self.client_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&client));
        let next = loop {
            self.pair_code_outstanding = false;
            let detail = match client.pn() {
                Some(pn) => format!("connecting to WhatsApp as {}", mask_phone(&pn.user)),
                None => "connecting to WhatsApp to link this gateway (a QR code follows)".into(),
            };
            self.publish(Status::Connecting, detail, |_| {});
            let runner = Arc::clone(&client);
            let mut run: Pin<Box<dyn Future<Output = ()> + Send>> = match opened.bot.take() {
                Some(bot) => Box::pin(bot.spawn()),
                None => Box::pin(async move { runner.run().await }),
            };
            let mut end: Option<End> = None;
            let mut forced: Option<End> = None;
            let mut logout_reply = None;
            loop {
                tokio::select! {
                    () = &mut run => break,
                    Some(event) = opened.events.recv() => {
                        self.on_event(&client, &event, &mut end);
                    }
                    Some(command) = self.commands.recv() => match command {
                        Command::Logout(reply) => {
                            tracing::info!("logging out of WhatsApp on request");
                            if client.is_logged_in() {
                                client.logout().await;
                            } else {
                                client.disconnect().await;
                            }
                            let _ = tokio::time::timeout(STOP_GRACE, &mut run).await;
                            logout_reply = Some(reply);
                            break;
                        }
                        Command::Shutdown(reply) => {
                            client.disconnect().await;
                            let _ = tokio::time::timeout(STOP_GRACE, &mut run).await;
                            let _ = reply.send(());
                            return self.release(Next::Stop);
                        }
                        Command::Answered => {
                            self.unanswered = false;
                            self.backoff.reset();
                        }
                        Command::Reconnect { reason, at_once } => {
                            tracing::warn!(reason = %reason, "replacing a connection that does not answer");
                            self.unanswered |= !at_once;
                            forced = Some(if at_once { End::RetryNow(reason) } else { End::Retry(reason) });
                            // Dropping the transport ends this run (the library's own
                            // reconnecting is off); the loop then connects again.
                            let client = Arc::clone(&client);
                            self.tasks.spawn(async move { client.reconnect_immediately().await });
                        }
                    },
                }
            }
            // Events dispatched while the run ended are already queued.
            while let Ok(event) = opened.events.try_recv() {
                self.on_event(&client, &event, &mut end);
            }
            // A replacement the messenger asked for says why, whatever the library saw.
            if forced.is_some() {
                end = forced;
            }
            let end = end.unwrap_or_else(|| {
                End::Retry(format!(
                    "could not reach WhatsApp at {}, or the connection closed before login",
                    self.server()
                ))
            });
            let shut_down = client.shutdown_signal().is_fired();
            if let Some(reply) = logout_reply {
                break logout_heal(reply);
            }
            let waited = match end {
                End::Heal(reason) => {
                    break Next::Heal {
                        reason,
                        label: "logged-out",
                        reply: None,
                    };
                }
                End::RetryNow(reason) => {
                    tracing::info!(reason = %reason, "reconnecting at once");
                    Waited::Elapsed
                }
                End::Retry(reason) => self.wait_retry(Status::Disconnected, reason, None).await,
                End::Banned { until, reason } => {
                    self.wait_retry(Status::Banned, reason, until).await
                }
                End::Replaced(reason) => self.wait_retry(Status::Replaced, reason, None).await,
                End::Outdated(reason) => self.wait_retry(Status::Outdated, reason, None).await,
            };
            match waited {
                Waited::Elapsed => {}
                Waited::Logout(reply) => break logout_heal(reply),
                Waited::Stop(reply) => {
                    let _ = tokio::time::timeout(STOP_GRACE, client.disconnect()).await;
                    if let Some(reply) = reply {
                        let _ = reply.send(());
                    }
                    return self.release(Next::Stop);
                }
            }
            if shut_down {
                break Next::Rebuild;
            }
        };
        if !client.shutdown_signal().is_fired() {
            let _ = tokio::time::timeout(STOP_GRACE, client.disconnect()).await;
        }
        self.release(next)
    }

    fn release(&self, next: Next) -> Next {
        *self.client_slot.lock().unwrap_or_else(|p| p.into_inner()) = None;
        next
    }

    fn server(&self) -> &str {
        self.settings
            .server_url
            .as_deref()
            .unwrap_or(whatsapp_rust::wacore::net::WHATSAPP_WEB_WS_URL)
    }
}

fn logout_heal(reply: oneshot::Sender<()>) -> Next {
    Next::Heal {
        reason: "the session was reset on request".into(),
        label: "reset",
        reply: Some(reply),
    }
}
