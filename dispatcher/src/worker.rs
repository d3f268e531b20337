//! The worker loop: one job in flight per account (each account is one gateway). Leases the next due job, sends it
//! through the gateway with a deadline shorter than the lease, and records the outcome
//! while the next job is sent; waits while the queue is paused or the gateway is not
//! ready.

use std::time::Duration;

use tokio::sync::watch;

use abtrack_proto::gateway::v1::{self as pb, SendRequest, gateway_client::GatewayClient};
use abtrack_proto::mask_phone;
use abtrack_proto::retry::Backoff;
use abtrack_proto::tasks::CancellationToken;
use abtrack_proto::time::{from_timestamp, now_ms};
use abtrack_proto::token::TokenChannel;

use crate::account::Lane;
use crate::gateway_link::Readiness;
use crate::job::{Finish, Job, JobError, JobStatus, Media, MediaSource};
use crate::outcome::{Action, backoff, classify};
use crate::queue::Queue;
use crate::storage::{Storage, StorageError};

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub owner: String,
    pub lease: Duration,
    pub send_timeout: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How long a rate-limited job waits before it is due again.
    pub rate_limit_delay: Duration,
    /// The longest the worker sleeps without looking at the queue.
    pub poll_interval: Duration,
    /// Where gs:// media is read; `None`: such jobs fail with the reason.
    pub storage: Option<Storage>,
}

/// Why a job's media cannot be handed to the gateway.
enum MediaError {
    /// The job's fault: it ends `failed`.
    Bad(JobError),
    /// Worth another attempt later.
    Later(JobError),
}

pub struct Worker {
    pub queue: Queue,
    /// The jobs this worker leases: its account's.
    pub lane: Lane,
    pub gateway: GatewayClient<TokenChannel>,
    pub readiness: watch::Receiver<Readiness>,
    pub paused: watch::Receiver<bool>,
    pub settings: WorkerSettings,
}

/// How long to hold back after the gateway said it cannot send, though its `Watch`
/// may still say ready.
const NOT_READY_MIN: Duration = Duration::from_millis(500);
const NOT_READY_MAX: Duration = Duration::from_secs(30);

impl Worker {
    /// Runs until `stop` is cancelled; the job in flight is finished and its outcome
    /// written first.
    ///
    /// The next job is leased as soon as the gateway has answered, and sent while the
    /// outcome before it is written: the outcome's sync to disk overlaps with the
    /// gateway's work instead of adding to every job. At most one outcome waits, and it
    /// is written before the worker idles, holds back or stops.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut hold_back = Backoff::new(NOT_READY_MIN, NOT_READY_MAX);
        let mut next: Option<Job> = None;
        let mut unwritten: Option<(Job, Finish)> = None;
        // The lease after the last answer found nothing: idle without asking again (an
        // enqueue meanwhile leaves its wake-up for the idle wait).
        let mut found_nothing = false;
        loop {
            let job = match next.take() {
                Some(job) => job,
                None => {
                    if let Some((job, finish)) = unwritten.take() {
                        self.record(&job, finish).await;
                    }
                    if stop.is_cancelled() {
                        return;
                    }
                    if !self.can_send() {
                        tokio::select! {
                            _ = self.readiness.changed() => {},
                            _ = self.paused.changed() => {},
                            () = stop.cancelled() => {},
                        }
                        continue;
                    }
                    if std::mem::take(&mut found_nothing) {
                        self.idle(&stop).await;
                        continue;
                    }
                    match self.lease().await {
                        Ok(Some(job)) => job,
                        Ok(None) => {
                            self.idle(&stop).await;
                            continue;
                        }
                        Err(()) => {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            continue;
                        }
                    }
                }
            };
            let previous = async {
                if let Some((job, finish)) = unwritten.take() {
                    self.record(&job, finish).await;
                }
            };
            let ((), (finish, gateway_ok)) = tokio::join!(previous, self.send(&job));
            if !gateway_ok {
                self.record(&job, finish).await;
                tokio::select! {
                    () = tokio::time::sleep(hold_back.next_delay()) => {},
                    () = stop.cancelled() => {},
                }
                continue;
            }
            hold_back.reset();
            if self.can_send()
                && !stop.is_cancelled()
                && let Ok(job) = self.lease().await
            {
                found_nothing = job.is_none();
                next = job;
            }
            unwritten = Some((job, finish));
        }
    }

    fn can_send(&self) -> bool {
        !*self.paused.borrow() && self.readiness.borrow().ready
    }

    /// Leases the oldest due job; `Err` when the queue cannot be read (logged).
    async fn lease(&self) -> Result<Option<Job>, ()> {
        let now = now_ms();
        let lease_until = now + self.settings.lease.as_millis() as i64;
        self.queue
            .lease_next(&self.settings.owner, &self.lane, now, lease_until)
            .await
            .map_err(
                |e| tracing::error!(account = %self.lane.account, error = %e, "cannot lease a job"),
            )
    }

    /// Sleeps until a job may be due: woken by an enqueue, the next scheduled job, a
    /// state change or the poll interval.
    async fn idle(&mut self, stop: &CancellationToken) {
        let now = now_ms();
        let mut sleep = self.settings.poll_interval;
        if let Ok(Some(due)) = self.queue.next_due_at(now).await {
            sleep = sleep.min(Duration::from_millis((due - now).max(0) as u64));
        }
        tokio::select! {
            () = self.queue.woken(&self.lane.account).notified() => {},
            () = tokio::time::sleep(sleep) => {},
            _ = self.readiness.changed() => {},
            _ = self.paused.changed() => {},
            () = stop.cancelled() => {},
        }
    }

    /// The job's media as the gateway takes it; a storage object becomes the URL and
    /// token that read it.
    async fn media(&self, media: &Media) -> Result<pb::Media, MediaError> {
        let source = match &media.source {
            MediaSource::Inline(data) => pb::media::Source::Data(data.to_vec()),
            MediaSource::InlineUnread(_) => {
                return Err(MediaError::Later(JobError::new(
                    "internal",
                    "the job's inline media was not read with it",
                )));
            }
            MediaSource::Url(url) => match abtrack_proto::media::check_url(url) {
                Ok(abtrack_proto::media::Scheme::Storage) => {
                    let storage = self.settings.storage.as_ref().ok_or_else(|| {
                        MediaError::Bad(JobError::new(
                            "bad_media",
                            "media.url names a gs:// object, but this server has no Firebase credential or STORAGE_EMULATOR_HOST to read it with",
                        ))
                    })?;
                    let object = storage.object(url).await.map_err(|e| match e {
                        StorageError::NotAnObject(_) => {
                            MediaError::Bad(JobError::new("bad_media", e.to_string()))
                        }
                        StorageError::NoToken(_) => {
                            MediaError::Later(JobError::new("media_unavailable", e.to_string()))
                        }
                    })?;
                    pb::media::Source::Storage(object)
                }
                _ => pb::media::Source::Url(url.clone()),
            },
        };
        Ok(pb::Media {
            source: Some(source),
            mime_type: media.mime_type.clone().unwrap_or_default(),
            file_name: media.file_name.clone().unwrap_or_default(),
        })
    }

    /// Sends one leased job through the gateway and says how it ended, and whether the
    /// gateway could take it (`false`: the worker should hold back).
    async fn send(&self, job: &Job) -> (Finish, bool) {
        let s = &self.settings;
        let media = match &job.media {
            None => None,
            Some(media) => match self.media(media).await {
                Ok(media) => Some(media),
                Err(MediaError::Bad(error)) => return (Finish::Failed(error), true),
                Err(MediaError::Later(error)) => {
                    let delay = backoff(job.attempts, s.backoff_base, s.backoff_max);
                    let next_attempt_at = now_ms() + delay.as_millis() as i64;
                    return (
                        Finish::Retry {
                            error,
                            next_attempt_at,
                        },
                        true,
                    );
                }
            },
        };
        let mut request = tonic::Request::new(SendRequest {
            job_id: job.id.clone(),
            to: job.to.clone(),
            message: job.message.clone(),
            account: self.lane.account.clone(),
            media,
        });
        request.set_timeout(s.send_timeout);
        let mut gateway = self.gateway.clone();
        let result = gateway.send(request).await;
        let now = now_ms();
        let mut gateway_ok = true;
        let finish = match result {
            Ok(response) => {
                let r = response.into_inner();
                Finish::Sent {
                    message_id: r.message_id,
                    sent_at: r.sent_at.as_ref().map_or(now, from_timestamp),
                    recipient: r.recipient,
                    recipient_lid: Some(r.recipient_lid).filter(|lid| !lid.is_empty()),
                }
            }
            Err(status) => match classify(&status) {
                Action::Permanent(error) => Finish::Failed(error),
                Action::Transient(error) => Finish::Retry {
                    next_attempt_at: now
                        + backoff(job.attempts, s.backoff_base, s.backoff_max).as_millis() as i64,
                    error,
                },
                Action::GatewayNotReady(error) => {
                    gateway_ok = false;
                    Finish::Release {
                        error,
                        next_attempt_at: None,
                    }
                }
                Action::RateLimited { error, retry_at } => Finish::Release {
                    error,
                    next_attempt_at: Some(
                        retry_at
                            .filter(|at| *at > now)
                            .unwrap_or(now + s.rate_limit_delay.as_millis() as i64),
                    ),
                },
            },
        };
        (finish, gateway_ok)
    }

    /// Writes a sent job's outcome and logs it.
    async fn record(&self, job: &Job, finish: Finish) {
        match self.write_outcome(job, finish.clone()).await {
            Ok(Some(written)) => log_outcome(&written, &finish, &self.lane.account),
            Ok(None) => tracing::warn!(
                job_id = %job.id,
                "lease lost before the outcome was written; the gateway's send log keeps the retry from sending twice"
            ),
            Err(e) => tracing::error!(
                job_id = %job.id,
                error = %e,
                "cannot write the outcome; the lease will expire and the job will be retried"
            ),
        }
    }

    /// Writes the outcome, trying again while the queue's store is unreachable (a
    /// Firestore restart, a network blip) for as long as the lease still holds.
    async fn write_outcome(&self, job: &Job, finish: Finish) -> crate::error::Result<Option<Job>> {
        let owner = &self.settings.owner;
        let deadline = job.lease_expires_at.unwrap_or(0);
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            let result = self
                .queue
                .finish(&job.id, owner, finish.clone(), now_ms())
                .await;
            let pause = backoff.next_delay();
            match result {
                Err(e) if now_ms() + (pause.as_millis() as i64) < deadline => {
                    tracing::warn!(job_id = %job.id, error = %e, "cannot write the outcome yet; trying again");
                    tokio::time::sleep(pause).await;
                }
                result => return result,
            }
        }
    }
}

/// Logs the outcome as written: the lifecycle may have ended a retry as failed.
fn log_outcome(job: &Job, finish: &Finish, account: &str) {
    let to = mask_phone(&job.to);
    if let (JobStatus::Failed, Some(e)) = (job.status, &job.last_error) {
        tracing::warn!(job_id = %job.id, account, to = %to, attempt = job.attempts, code = %e.code, "job failed: {}", e.message);
        return;
    }
    match finish {
        Finish::Sent { message_id, .. } => {
            tracing::info!(job_id = %job.id, account, to = %to, attempt = job.attempts, message_id = %message_id, "job sent");
        }
        Finish::Failed(_) => {}
        Finish::Retry {
            error,
            next_attempt_at,
        } => tracing::info!(
            job_id = %job.id, account, to = %to, attempt = job.attempts, code = %error.code,
            retry_in_ms = next_attempt_at - now_ms(), "job will be retried: {}", error.message
        ),
        Finish::Release { error, .. } => tracing::info!(
            job_id = %job.id, account, code = %error.code, "job kept for later: {}", error.message
        ),
    }
}
