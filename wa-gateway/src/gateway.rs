//! The gateway's core: the send flow (state check, number check, pacing, the
//! idempotency log, the messenger) and the events it publishes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, broadcast, watch};
use tokio::time::Instant;

use abtrack_proto::message::check_message;
use abtrack_proto::status::Sending;
use abtrack_proto::tasks::Tasks;
use abtrack_proto::time::now_ms;
use abtrack_proto::{Jid, mask_phone, normalize_recipient};

use crate::error::{Error, Result};
use crate::media::{Preparer, Request as MediaRequest};
use crate::messenger::{
    ConnectionState, Messenger, MessengerEvent, NumberCheck, Outgoing, ReceiptKind,
};
use crate::pacing::{Pacer, PacingConfig, PacingUse};
use crate::sendlog::{Entry, SendLog};

/// What a send needs at most once its slot has come; a slot later than the deadline
/// minus this is refused up front.
const SEND_TIME: Duration = Duration::from_millis(500);

/// How long before the caller's deadline a send still waiting for WhatsApp's answer
/// is answered, so the answer arrives before the caller gives up.
const ANSWER_MARGIN: Duration = Duration::from_millis(200);

/// An event for `Watch` subscribers (the state travels on its own channel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Qr {
        code: String,
        expires_at: i64,
    },
    PairCode {
        code: String,
        expires_at: i64,
    },
    Receipt {
        job_id: String,
        message_id: String,
        kind: ReceiptKind,
        at: i64,
    },
    /// No delivery receipt came for a sent message within the delivery timeout.
    DeliveryOverdue {
        job_id: String,
        message_id: String,
        at: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOutcome {
    pub message_id: String,
    pub recipient: String,
    pub sent_at: i64,
    pub duplicate: bool,
    /// The recipient's LID (`…@lid`), when WhatsApp addresses the recipient by one.
    pub recipient_lid: Option<String>,
    /// What was sent as media; `None` for a text, and for a job sent before.
    pub media: Option<SentMedia>,
}

/// Media as it was sent, from its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMedia {
    pub kind: abtrack_proto::media::Kind,
    pub mime_type: String,
    pub file_name: Option<String>,
    pub size: u64,
}

pub struct GatewaySettings {
    pub default_country_code: String,
    /// How long ago the sends of the last 24 hours went out, oldest first.
    pub recent_sends: Vec<Duration>,
    pub pacing: PacingConfig,
    pub check_cache_ttl: Duration,
    /// How long after a send a missing delivery receipt is reported; `None` where no
    /// receipts come (dry-run without simulated receipts).
    pub delivery_timeout: Option<Duration>,
    /// Crash-test aid (`WA_ANSWER_DELAY_MS`): how long to wait after a send is recorded
    /// in the send log before answering. Zero in production.
    pub answer_delay: Duration,
    /// Fetches and examines jobs' media.
    pub media: Preparer,
}

#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    messenger: Arc<dyn Messenger>,
    log: SendLog,
    /// Also the lock that keeps one send at a time per session.
    pacer: tokio::sync::Mutex<Pacer>,
    numbers: Mutex<HashMap<String, (NumberCheck, Instant)>>,
    settings: GatewaySettings,
    events: broadcast::Sender<Event>,
    /// The pacing settings and the last 24 hours' sends, as the state reports them.
    pacing_use: watch::Sender<PacingUse>,
    /// Told after each send, so the pacing use is counted again.
    sent: Notify,
    tasks: Tasks,
    /// The sends in flight, which shutdown lets finish.
    sends: Tasks,
}

impl Gateway {
    /// Starts the gateway and the task that turns messenger events into gateway events
    /// (receipts gain their job id from the send log).
    pub fn start(
        messenger: Arc<dyn Messenger>,
        log: SendLog,
        settings: GatewaySettings,
        tasks: &Tasks,
    ) -> Self {
        let pacing = settings.pacing;
        let mut pacer = Pacer::new(pacing);
        pacer.remember(&settings.recent_sends);
        let inner = Arc::new(Inner {
            pacer: tokio::sync::Mutex::new(pacer),
            messenger,
            log,
            numbers: Mutex::new(HashMap::new()),
            settings,
            events: broadcast::Sender::new(1024),
            pacing_use: watch::Sender::new(PacingUse {
                config: pacing,
                sent_last_day: 0,
                cap_frees_at: None,
            }),
            sent: Notify::new(),
            tasks: tasks.clone(),
            sends: Tasks::new(),
        });
        tasks.spawn(forward_events(Arc::clone(&inner)));
        tasks.spawn(keep_pacing_use(Arc::clone(&inner)));
        if let Some(timeout) = inner.settings.delivery_timeout {
            tasks.spawn(report_overdue(Arc::clone(&inner), timeout));
        }
        Self { inner }
    }

    /// Waits, at most the grace period, for the sends in flight to finish (once the
    /// gRPC server stopped taking calls).
    pub async fn finish_sends(&self) {
        let sends = &self.inner.sends;
        if tokio::time::timeout(abtrack_proto::shutdown::GRACE_PERIOD, sends.stop())
            .await
            .is_err()
        {
            tracing::warn!(
                sends = sends.running(),
                "sends still waiting for WhatsApp at shutdown; the send log keeps their retries from sending twice"
            );
        }
    }

    /// The tasks of the service this gateway runs in.
    pub fn tasks(&self) -> &Tasks {
        &self.inner.tasks
    }

    pub fn state(&self) -> watch::Receiver<ConnectionState> {
        self.inner.messenger.state()
    }

    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// The pacing settings and the last 24 hours' sends, counted again after each
    /// send and at least every minute.
    pub fn pacing_use(&self) -> watch::Receiver<PacingUse> {
        self.inner.pacing_use.subscribe()
    }

    /// Sends `text` to `to` for `job_id`, once. The work runs in its own task, so a
    /// caller that gives up (deadline, dropped connection) never cuts a send in half.
    pub async fn send(
        &self,
        job_id: &str,
        to: &str,
        text: &str,
        media: Option<MediaRequest>,
        deadline: Option<Instant>,
    ) -> Result<SendOutcome> {
        let job_id = job_id.trim();
        if job_id.is_empty() {
            return Err(Error::InvalidArgument("job_id is empty".into()));
        }
        let checked = match media {
            None => check_message(text),
            Some(_) => abtrack_proto::message::check_caption(text),
        };
        checked.map_err(|e| Error::InvalidArgument(format!("message {e}")))?;
        let to = normalize_recipient(to, &self.inner.settings.default_country_code)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let inner = Arc::clone(&self.inner);
        let (job_id, text) = (job_id.to_owned(), text.to_owned());
        let task = self
            .inner
            .sends
            .spawn_to_finish(async move { inner.send(job_id, to, text, media, deadline).await });
        // Answers just before the caller's deadline if WhatsApp's server is slow; the
        // task goes on and records the outcome, which a retry then gets.
        let answer = match deadline {
            Some(deadline) => {
                let answer_by = deadline.checked_sub(ANSWER_MARGIN).unwrap_or(deadline);
                tokio::time::timeout_at(answer_by, task)
                .await
                .map_err(|_| {
                    Error::AckPending(
                        "no answer from WhatsApp's server before the deadline; the gateway keeps waiting, and a retry gets the outcome".into(),
                    )
                })?
            }
            None => task.await,
        };
        answer.map_err(|e| Error::Internal(format!("send task failed: {e}")))?
    }

    /// Normalises `phone` and asks the messenger (through a cache) whether it is on
    /// WhatsApp.
    pub async fn check_number(&self, phone: &str) -> Result<(Jid, NumberCheck)> {
        let jid = normalize_recipient(phone, &self.inner.settings.default_country_code)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let check = self.inner.is_on_whatsapp(&jid).await?;
        Ok((jid, check))
    }

    pub async fn request_pair_code(&self, phone: &str) -> Result<String> {
        let invalid = |reason: String| Error::InvalidField {
            field: "phone",
            reason,
        };
        let jid = normalize_recipient(phone, &self.inner.settings.default_country_code)
            .map_err(|e| invalid(e.to_string()))?;
        if jid.is_group() {
            return Err(invalid("a group cannot be linked".into()));
        }
        self.inner.messenger.request_pair_code(jid.user()).await
    }

    pub async fn logout(&self) -> Result<()> {
        tracing::info!("session reset requested");
        self.inner.messenger.logout().await
    }
}

impl Inner {
    async fn send(
        &self,
        job_id: String,
        to: Jid,
        text: String,
        media: Option<MediaRequest>,
        deadline: Option<Instant>,
    ) -> Result<SendOutcome> {
        let mut pacer = self.pacer.lock().await;
        let existing = self.log.get(&job_id).await?;
        if let Some(Entry {
            message_id,
            recipient,
            sent_at: Some(sent_at),
            recipient_lid,
            ..
        }) = existing
        {
            tracing::info!(job_id = %job_id, message_id = %message_id, "job already sent, answering with its message id");
            return Ok(SendOutcome {
                message_id,
                recipient,
                sent_at,
                duplicate: true,
                recipient_lid,
                media: None,
            });
        }
        self.check_state()?;
        let mut recipient_lid = None;
        if !to.is_group() {
            let check = self.is_on_whatsapp(&to).await?;
            if !check.on_whatsapp {
                return Err(Error::NotOnWhatsApp(mask_phone(to.user())));
            }
            recipient_lid = check.lid;
        }
        // Fetched and checked before the pacing turn: a job whose media cannot go
        // takes no send slot.
        let prepared = match &media {
            None => None,
            Some(request) => {
                let prepared = self.settings.media.prepare(request).await.inspect_err(|e| {
                    tracing::warn!(job_id = %job_id, media = %request.identity(), error = %e, "the job's media cannot be sent");
                })?;
                Some(Arc::new(prepared))
            }
        };
        pacer.wait_turn(deadline, SEND_TIME).await.map_err(|late| {
            let why = if late.daily_cap_reached {
                "the daily cap is reached"
            } else {
                "pacing"
            };
            Error::RateLimited(format!(
                "{why}: the next send slot is in {}s, past the deadline",
                late.wait.as_secs()
            ))
        })?;
        let entry = match existing {
            // The intent was written before and the outcome is unknown: send again under
            // the same message id, which the messenger treats as the same message.
            Some(entry) => entry,
            None => {
                let entry = Entry {
                    job_id: job_id.clone(),
                    message_id: message_id_for(&job_id, &to, &text, media.as_ref()),
                    recipient: to.to_string(),
                    sent_at: None,
                    recipient_lid: None,
                };
                self.log.write_intent(&entry, now_ms()).await?;
                entry
            }
        };
        let new_chat = !to.is_group() && !self.log.has_sent_to(&entry.recipient).await?;
        let message = Outgoing {
            job_id: job_id.clone(),
            message_id: entry.message_id.clone(),
            to,
            text,
            new_chat,
            media: prepared.clone(),
        };
        pacer.record_send();
        // Answers once WhatsApp's server accepted the message; a refusal or a
        // missing acknowledgement leaves the intent in the log, so a retry sends
        // under the same message id.
        let accepted = self.messenger.send(&message).await?;
        let sent_at = accepted.at;
        // The message is out: the answer says so even when the mark cannot be written
        // (a full disk). Without the mark, a retry would send again under the same
        // message id, as after a crash before it.
        if let Err(e) = self
            .log
            .mark_sent(&job_id, sent_at, recipient_lid.as_deref())
            .await
        {
            tracing::error!(job_id = %job_id, error = %e, "the message was sent but the send log cannot record it");
        }
        self.sent.notify_one();
        tracing::info!(
            job_id = %job_id,
            message_id = %entry.message_id,
            to = %mask_phone(&entry.recipient),
            "message sent"
        );
        if !self.settings.answer_delay.is_zero() {
            // The window in which the message is out and logged but the caller has no
            // answer yet: a crash here must not send it again.
            tokio::time::sleep(self.settings.answer_delay).await;
        }
        Ok(SendOutcome {
            message_id: entry.message_id,
            recipient: entry.recipient,
            sent_at,
            duplicate: false,
            recipient_lid,
            media: prepared.map(|p| SentMedia {
                kind: p.kind,
                mime_type: p.mime_type.clone(),
                file_name: p.file_name.clone(),
                size: p.size,
            }),
        })
    }

    fn check_state(&self) -> Result<()> {
        let state = self.messenger.state().borrow().clone();
        match state.status.sending() {
            Sending::Ready => Ok(()),
            Sending::NotLinked => Err(Error::NotLinked(format!(
                "WhatsApp is not linked ({}): {}",
                state.status.name(),
                state.detail
            ))),
            Sending::Unavailable => Err(Error::Unavailable(format!(
                "WhatsApp is {}: {}",
                state.status.name(),
                state.detail
            ))),
        }
    }

    async fn is_on_whatsapp(&self, jid: &Jid) -> Result<NumberCheck> {
        let key = jid.to_string();
        let cached = {
            let numbers = self.numbers.lock().unwrap_or_else(|p| p.into_inner());
            numbers.get(&key).cloned()
        };
        if let Some((check, at)) = cached
            && at.elapsed() < self.settings.check_cache_ttl
        {
            return Ok(check);
        }
        let check = self.messenger.is_on_whatsapp(jid).await?;
        let mut numbers = self.numbers.lock().unwrap_or_else(|p| p.into_inner());
        numbers.insert(key, (check.clone(), Instant::now()));
        Ok(check)
    }
}

/// The message id of a job, in the shape WhatsApp Web uses (`3EB0` and 16 upper-case
/// hex digits): derived from the job id, the recipient and the text, so a job sent
/// again after its send log was lost is the same message to WhatsApp, not a second
/// one; a job id reused for another message gets another id. Media counts by its
/// URL or its bytes' digest (a text's id is the same as before media existed).
fn message_id_for(job_id: &str, to: &Jid, text: &str, media: Option<&MediaRequest>) -> String {
    use sha2::{Digest as _, Sha256};
    let mut hash = Sha256::new();
    let media = media.map(MediaRequest::identity);
    for part in [job_id, &to.to_string(), text]
        .into_iter()
        .chain(media.as_deref())
    {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02X}")).collect();
    format!("3EB0{hex}")
}

async fn forward_events(inner: Arc<Inner>) {
    let mut events = inner.messenger.events();
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(skipped = n, "messenger events lagged");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let event = match event {
            MessengerEvent::Qr { code, expires_at } => Event::Qr { code, expires_at },
            MessengerEvent::PairCode { code, expires_at } => Event::PairCode { code, expires_at },
            MessengerEvent::Receipt {
                message_id,
                kind,
                at,
            } => {
                if let Err(e) = inner.log.mark_delivered(&message_id, at).await {
                    tracing::warn!(error = %e, "cannot note a receipt in the send log");
                }
                match inner.log.by_message_id(&message_id).await {
                    Ok(Some(entry)) => Event::Receipt {
                        job_id: entry.job_id,
                        message_id,
                        kind,
                        at,
                    },
                    // A receipt for a message this gateway did not send.
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot look up a receipt's job");
                        continue;
                    }
                }
            }
        };
        let _ = inner.events.send(event);
    }
}

/// Keeps the pacing use current: counted from the send log after each send, at least
/// every minute as sends age out, and when a reached cap frees.
async fn keep_pacing_use(inner: Arc<Inner>) {
    const DAY_MS: i64 = 24 * 3600 * 1000;
    let config = inner.settings.pacing;
    loop {
        let now = now_ms();
        let mut next = Duration::from_secs(60);
        match inner
            .log
            .sent_count_since(now - DAY_MS, config.daily_cap)
            .await
        {
            Ok((sent_last_day, holding)) => {
                let cap_frees_at = holding.map(|at| at + DAY_MS);
                if let Some(at) = cap_frees_at {
                    next = next.min(Duration::from_millis((at - now).max(0) as u64 + 1));
                }
                inner.pacing_use.send_if_modified(|u| {
                    let current = PacingUse {
                        config,
                        sent_last_day,
                        cap_frees_at,
                    };
                    std::mem::replace(u, current) != current
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot count the last day's sends"),
        }
        tokio::select! {
            () = inner.sent.notified() => {}
            () = tokio::time::sleep(next) => {}
        }
    }
}

/// Reports, once each, the sent messages that got no delivery receipt within
/// `timeout`; looks a few times per timeout, at least once a minute.
async fn report_overdue(inner: Arc<Inner>, timeout: Duration) {
    let every = (timeout / 4).clamp(Duration::from_millis(250), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let now = now_ms();
        let cutoff = now - timeout.as_millis() as i64;
        match inner.log.take_overdue(cutoff, now).await {
            Ok(overdue) => {
                for o in overdue {
                    tracing::warn!(job_id = %o.job_id, message_id = %o.message_id, "no delivery receipt in time: the recipient's phone may be off or offline");
                    let _ = inner.events.send(Event::DeliveryOverdue {
                        job_id: o.job_id,
                        message_id: o.message_id,
                        at: now,
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read overdue deliveries"),
        }
    }
}
