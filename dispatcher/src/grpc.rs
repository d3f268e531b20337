//! The gRPC adapter: wire types in, domain calls, wire types out.

use std::pin::Pin;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use abtrack_proto::dispatcher::v1 as pb;
use abtrack_proto::tasks::Tasks;
use abtrack_proto::time::{from_timestamp, now_ms, opt_timestamp, to_timestamp};

use crate::account::{Accounts, Lane};
use crate::error::Error;
use crate::events::QueueState;
use crate::job::{AllCounts, Counts, Job, JobStatus, Media, MediaSource, NewJob, Search};
use crate::lifecycle::Step;
use crate::pause::PauseSwitch;
use crate::queue::Queue;
use crate::stats::{Bucket, Stats, Totals};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

/// A request's page size: 0 means [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`].
fn limit(asked: u32) -> usize {
    match asked as usize {
        0 => DEFAULT_LIMIT,
        n => n.min(MAX_LIMIT),
    }
}

fn statuses_from_pb(list: Vec<i32>) -> Result<Vec<JobStatus>, Error> {
    list.into_iter().map(status_from_pb).collect()
}

pub struct DispatcherService {
    pub queue: Queue,
    /// Runs each `Watch` stream's feeder, so shutdown ends open streams.
    pub tasks: Tasks,
    pub pause: PauseSwitch,
    pub default_country_code: String,
    pub accounts: Accounts,
}

impl DispatcherService {
    /// The lane of a request's `account`: `None` when empty; an unknown name is
    /// refused, naming the accounts.
    fn lane(&self, account: &str) -> Result<Option<Lane>, Error> {
        let account = account.trim();
        if account.is_empty() {
            return Ok(None);
        }
        self.accounts
            .lane(account)
            .map(Some)
            .ok_or_else(|| Error::InvalidArgument {
                field: "account",
                reason: self.accounts.unknown(account),
            })
    }
}

/// Checks an enqueue request with the gateway's default country code, for one of
/// `accounts`.
fn new_job(
    req: pb::EnqueueRequest,
    default_country_code: &str,
    accounts: &Accounts,
) -> Result<NewJob, Error> {
    let id = Some(req.id.trim().to_owned()).filter(|id| !id.is_empty());
    let send_at = req.send_at.as_ref().map(from_timestamp);
    let job = match req.media {
        None => NewJob::validate(id, &req.to, &req.message, send_at, default_country_code)?,
        Some(media) => {
            let data = (!media.data.is_empty()).then(|| bytes::Bytes::from(media.data));
            let media = Media::validate(
                Some(media.url.trim()),
                data,
                Some(&media.mime_type),
                Some(&media.file_name),
            )?;
            NewJob::validate_with_media(
                id,
                &req.to,
                &req.message,
                send_at,
                media,
                default_country_code,
            )?
        }
    }
    .for_account(Some(req.account.trim()))?;
    if let Some(account) = &job.account
        && !accounts.knows(account)
    {
        return Err(Error::InvalidArgument {
            field: "account",
            reason: accounts.unknown(account),
        });
    }
    Ok(job)
}

fn status_to_pb(status: JobStatus) -> pb::JobStatus {
    match status {
        JobStatus::Pending => pb::JobStatus::Pending,
        JobStatus::Processing => pb::JobStatus::Processing,
        JobStatus::Sent => pb::JobStatus::Sent,
        JobStatus::Delivered => pb::JobStatus::Delivered,
        JobStatus::Read => pb::JobStatus::Read,
        JobStatus::Failed => pb::JobStatus::Failed,
    }
}

fn status_from_pb(value: i32) -> Result<JobStatus, Error> {
    match pb::JobStatus::try_from(value) {
        Ok(pb::JobStatus::Pending) => Ok(JobStatus::Pending),
        Ok(pb::JobStatus::Processing) => Ok(JobStatus::Processing),
        Ok(pb::JobStatus::Sent) => Ok(JobStatus::Sent),
        Ok(pb::JobStatus::Delivered) => Ok(JobStatus::Delivered),
        Ok(pb::JobStatus::Read) => Ok(JobStatus::Read),
        Ok(pb::JobStatus::Failed) => Ok(JobStatus::Failed),
        _ => Err(Error::InvalidArgument {
            field: "statuses",
            reason: format!("unknown status {value}"),
        }),
    }
}

impl From<&Job> for pb::Job {
    fn from(job: &Job) -> Self {
        pb::Job {
            id: job.id.clone(),
            to: job.to.clone(),
            message: job.message.clone(),
            status: status_to_pb(job.status) as i32,
            attempts: job.attempts,
            recipient: job.recipient.clone().unwrap_or_default(),
            message_id: job.message_id.clone().unwrap_or_default(),
            last_error: job.last_error.as_ref().map(|e| pb::JobError {
                code: e.code.clone(),
                message: e.message.clone(),
            }),
            created_at: Some(to_timestamp(job.created_at)),
            send_at: opt_timestamp(job.send_at),
            next_attempt_at: opt_timestamp(job.next_attempt_at),
            sent_at: opt_timestamp(job.sent_at),
            delivered_at: opt_timestamp(job.delivered_at),
            read_at: opt_timestamp(job.read_at),
            updated_at: Some(to_timestamp(job.updated_at)),
            lease_owner: job.lease_owner.clone().unwrap_or_default(),
            lease_expires_at: opt_timestamp(job.lease_expires_at),
            delivery_overdue: job.delivery_overdue,
            recipient_lid: job.recipient_lid.clone().unwrap_or_default(),
            account: job.account.clone().unwrap_or_default(),
            steps: Vec::new(),
            media: job.media.as_ref().map(pb::JobMedia::from),
        }
    }
}

impl From<&Media> for pb::JobMedia {
    fn from(media: &Media) -> Self {
        let (source, url, size) = match &media.source {
            MediaSource::Url(url) => {
                let source = match abtrack_proto::media::check_url(url) {
                    Ok(abtrack_proto::media::Scheme::Storage) => "storage",
                    _ => "url",
                };
                (source, abtrack_proto::media::shown_url(url).to_owned(), 0)
            }
            MediaSource::Inline(_) | MediaSource::InlineUnread(_) => {
                ("inline", String::new(), media.source.inline_size())
            }
        };
        pb::JobMedia {
            source: source.to_owned(),
            url,
            mime_type: media.mime_type.clone().unwrap_or_default(),
            file_name: media.shown_name().unwrap_or_default(),
            size,
            kind: media.declared_kind().as_str().to_owned(),
        }
    }
}

impl From<&Step> for pb::JobStep {
    fn from(step: &Step) -> Self {
        pb::JobStep {
            at: Some(to_timestamp(step.at)),
            kind: step.kind.as_str().to_owned(),
            attempt: step.attempt,
            owner: step.owner.clone().unwrap_or_default(),
            error: step.error.as_ref().map(|e| pb::JobError {
                code: e.code.clone(),
                message: e.message.clone(),
            }),
            next_attempt_at: opt_timestamp(step.next_attempt_at),
        }
    }
}

impl From<&Stats> for pb::Stats {
    fn from(s: &Stats) -> Self {
        let bucket = |b: &Bucket| pb::StatsBucket {
            start: Some(to_timestamp(b.start)),
            sent: b.sent,
            delivered: b.delivered,
            read: b.read,
            failed: b.failed,
        };
        let totals = |t: &Totals| pb::StatsTotals {
            sent: t.sent,
            delivered: t.delivered,
            read: t.read,
            failed: t.failed,
        };
        pb::Stats {
            hours: s.hours.iter().map(bucket).collect(),
            days: s.days.iter().map(bucket).collect(),
            reasons: s
                .reasons
                .iter()
                .map(|r| pb::FailureReason {
                    code: r.code.clone(),
                    count: r.count,
                    message: r.message.clone(),
                })
                .collect(),
            last_day: Some(totals(&s.last_day)),
            last_month: Some(totals(&s.last_month)),
            at: Some(to_timestamp(s.at)),
        }
    }
}

impl From<Counts> for pb::QueueCounts {
    fn from(c: Counts) -> Self {
        pb::QueueCounts {
            pending: c.pending,
            processing: c.processing,
            sent: c.sent,
            delivered: c.delivered,
            read: c.read,
            failed: c.failed,
            delivery_overdue: c.delivery_overdue,
            accounts: Vec::new(),
        }
    }
}

impl From<&AllCounts> for pb::QueueCounts {
    fn from(c: &AllCounts) -> Self {
        pb::QueueCounts {
            accounts: c
                .accounts
                .iter()
                .map(|(name, counts)| pb::AccountCounts {
                    name: name.clone(),
                    counts: Some((*counts).into()),
                })
                .collect(),
            ..c.total.into()
        }
    }
}

impl From<&QueueState> for pb::QueueState {
    fn from(s: &QueueState) -> Self {
        pb::QueueState {
            paused: s.paused,
            gateway_ready: s.gateway_ready,
            waiting_reason: s.waiting_reason.clone(),
            backend: s.backend.to_owned(),
            accounts: s
                .accounts
                .iter()
                .map(|a| pb::AccountState {
                    name: a.name.clone(),
                    ready: a.ready,
                    waiting_reason: a.waiting_reason.clone(),
                })
                .collect(),
        }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::DispatcherEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::dispatcher_server::Dispatcher for DispatcherService {
    async fn enqueue(
        &self,
        request: Request<pb::EnqueueRequest>,
    ) -> Result<Response<pb::EnqueueResponse>, Status> {
        let new = new_job(
            request.into_inner(),
            &self.default_country_code,
            &self.accounts,
        )?;
        let enqueued = self.queue.enqueue(new, now_ms()).await?;
        if enqueued.created {
            tracing::info!(job_id = %enqueued.job.id, "job enqueued");
        }
        Ok(Response::new(pb::EnqueueResponse {
            job: Some(pb::Job::from(&enqueued.job)),
            created: enqueued.created,
        }))
    }

    async fn retry(&self, request: Request<pb::RetryRequest>) -> Result<Response<pb::Job>, Status> {
        let job = self
            .queue
            .retry(request.into_inner().id.trim(), now_ms())
            .await?;
        tracing::info!(job_id = %job.id, "failed job returned to the queue");
        Ok(Response::new(pb::Job::from(&job)))
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let id = request.into_inner().id;
        let job = self
            .queue
            .get(id.trim())
            .await?
            .ok_or_else(|| Error::NotFound(format!("no job with id {id:?}")))?;
        let steps = self.queue.steps(&job.id).await?;
        Ok(Response::new(pb::Job {
            steps: steps.iter().map(pb::JobStep::from).collect(),
            ..pb::Job::from(&job)
        }))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let req = request.into_inner();
        let statuses = statuses_from_pb(req.statuses)?;
        let limit = limit(req.limit);
        let lane = self.lane(&req.account)?;
        let jobs = self.queue.list(&statuses, lane.as_ref(), limit).await?;
        let counts = self.queue.all_counts(&self.accounts).await?;
        Ok(Response::new(pb::ListJobsResponse {
            jobs: jobs.iter().map(pb::Job::from).collect(),
            counts: Some((&counts).into()),
        }))
    }

    async fn search_jobs(
        &self,
        request: Request<pb::SearchJobsRequest>,
    ) -> Result<Response<pb::SearchJobsResponse>, Status> {
        let req = request.into_inner();
        let statuses = statuses_from_pb(req.statuses)?;
        let phone = req.phone.trim();
        let recipient = if phone.is_empty() {
            None
        } else {
            let jid = abtrack_proto::normalize_recipient(phone, &self.default_country_code)
                .map_err(|e| Error::InvalidArgument {
                    field: "phone",
                    reason: e.to_string(),
                })?;
            Some(jid.to_string())
        };
        let search = Search {
            statuses,
            account: self.lane(&req.account)?,
            recipient,
            id: Some(req.id.trim().to_owned()).filter(|id| !id.is_empty()),
            created_from: req.created_from.as_ref().map(from_timestamp),
            created_until: req.created_until.as_ref().map(from_timestamp),
        };
        let limit = limit(req.limit);
        let cursor = req.cursor.trim();
        let page = self
            .queue
            .search(&search, (!cursor.is_empty()).then_some(cursor), limit)
            .await?;
        Ok(Response::new(pb::SearchJobsResponse {
            jobs: page.jobs.iter().map(pb::Job::from).collect(),
            next_cursor: page.next.unwrap_or_default(),
        }))
    }

    async fn get_stats(
        &self,
        request: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::Stats>, Status> {
        let minutes = request.into_inner().utc_offset_minutes;
        if !(-14 * 60..=14 * 60).contains(&minutes) {
            return Err(Error::InvalidArgument {
                field: "utc_offset_minutes",
                reason: format!("{minutes} is not an offset from UTC; expected -840 to 840"),
            }
            .into());
        }
        let stats = self
            .queue
            .stats(now_ms(), i64::from(minutes) * 60_000)
            .await?;
        Ok(Response::new(pb::Stats::from(&stats)))
    }

    async fn pause(
        &self,
        _request: Request<pb::PauseRequest>,
    ) -> Result<Response<pb::QueueState>, Status> {
        self.pause.set(true).await?;
        Ok(Response::new(pb::QueueState::from(
            &*self.queue.events().state().borrow(),
        )))
    }

    async fn resume(
        &self,
        _request: Request<pb::ResumeRequest>,
    ) -> Result<Response<pb::QueueState>, Status> {
        self.pause.set(false).await?;
        self.queue.wake();
        Ok(Response::new(pb::QueueState::from(
            &*self.queue.events().state().borrow(),
        )))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        _request: Request<pb::WatchRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(256);
        let events = self.queue.events().clone();
        self.tasks.spawn(async move {
            use pb::dispatcher_event::Event as E;
            let mut state = events.state();
            let mut counts = events.counts();
            let mut jobs = events.jobs();
            let send = |event: E| {
                let tx = tx.clone();
                async move {
                    tx.send(Ok(pb::DispatcherEvent { event: Some(event) }))
                        .await
                        .is_ok()
                }
            };
            let first_state = pb::QueueState::from(&*state.borrow_and_update());
            let first_counts = pb::QueueCounts::from(&*counts.borrow_and_update());
            if !send(E::State(first_state)).await || !send(E::Counts(first_counts)).await {
                return;
            }
            loop {
                let event = tokio::select! {
                    changed = state.changed() => match changed {
                        Ok(()) => E::State(pb::QueueState::from(&*state.borrow_and_update())),
                        Err(_) => return,
                    },
                    changed = counts.changed() => match changed {
                        Ok(()) => E::Counts(pb::QueueCounts::from(&*counts.borrow_and_update())),
                        Err(_) => return,
                    },
                    job = jobs.recv() => match job {
                        Ok(job) => E::Job(pb::Job::from(&job)),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(skipped = n, "a watcher fell behind on job events");
                            continue;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    () = tx.closed() => return,
                };
                if !send(event).await {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
