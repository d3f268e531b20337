//! Brings every finished job's outcome to the logger, at least once: the queue marks
//! which outcomes the logger acknowledged, so a logger that is down or a dispatcher
//! that stops loses nothing; the logger drops repeats.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use abtrack_proto::logger::v1::{
    RecordBatchRequest, RecordRequest, sheets_logger_client::SheetsLoggerClient,
};
use abtrack_proto::retry::Backoff;
use abtrack_proto::tasks::Tasks;
use abtrack_proto::time::{now_ms, to_timestamp};
use abtrack_proto::token::{TokenChannel, is_refused};

use crate::job::{Job, JobStatus, Media};
use crate::queue::Store;

const BATCH: usize = 100;
/// How long the recorder waits after a wake-up before it reads the outcomes, so
/// outcomes written close together reach the logger in one batch (one commit there,
/// one mark here) instead of one call each.
const GATHER: Duration = Duration::from_millis(20);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const IDLE_CHECK: Duration = Duration::from_secs(5);
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Wakes the recorder when an outcome was written.
#[derive(Clone, Default)]
/// Until `start`, nobody runs it: outcomes stay marked unlogged in the store.
pub struct Recorder {
    wake: Arc<Notify>,
}

impl Recorder {
    /// Starts bringing the store's unlogged outcomes to the logger.
    /// Jobs that name no account are recorded as `default_account`'s.
    pub fn start(
        &self,
        client: SheetsLoggerClient<TokenChannel>,
        store: Arc<dyn Store>,
        default_account: String,
        tasks: &Tasks,
    ) {
        tasks.spawn(run(client, store, default_account, Arc::clone(&self.wake)));
    }

    pub fn outcome_written(&self) {
        self.wake.notify_one();
    }
}

async fn run(
    mut client: SheetsLoggerClient<TokenChannel>,
    queue: Arc<dyn Store>,
    default_account: String,
    wake: Arc<Notify>,
) {
    let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
    loop {
        match record_batch(&mut client, queue.as_ref(), &default_account).await {
            Ok(n) if n == BATCH => continue,
            Ok(_) => {
                backoff.reset();
                tokio::select! {
                    () = wake.notified() => tokio::time::sleep(GATHER).await,
                    () = tokio::time::sleep(IDLE_CHECK) => {},
                }
            }
            Err(why) => {
                let retry = backoff.next_delay();
                tracing::warn!(error = %why, retry_ms = retry.as_millis() as u64, "cannot record outcomes; they are kept");
                tokio::time::sleep(retry).await;
            }
        }
    }
}

async fn record_batch(
    client: &mut SheetsLoggerClient<TokenChannel>,
    queue: &dyn Store,
    default_account: &str,
) -> Result<usize, String> {
    let jobs = queue.unlogged(BATCH).await.map_err(|e| e.to_string())?;
    if jobs.is_empty() {
        return Ok(0);
    }
    let mut request = tonic::Request::new(RecordBatchRequest {
        records: jobs
            .iter()
            .map(|job| record_request(job, default_account))
            .collect(),
    });
    request.set_timeout(CALL_TIMEOUT);
    client.record_batch(request).await.map_err(|status| {
        if is_refused(&status) {
            format!(
                "the sheets-logger refused the internal token ({}); set the same {} on every service",
                status.message(),
                abtrack_proto::token::ENV_VAR
            )
        } else {
            format!("logger: {}", status.message())
        }
    })?;
    let n = jobs.len();
    let logged = jobs.into_iter().map(|j| (j.id, j.updated_at)).collect();
    queue
        .mark_logged(logged, now_ms())
        .await
        .map_err(|e| e.to_string())?;
    Ok(n)
}

/// One outcome per attempt: delivered and read are progress of a sent message, so
/// they are recorded as `sent`.
fn record_request(job: &Job, default_account: &str) -> RecordRequest {
    let status = if job.status == JobStatus::Failed {
        "failed"
    } else {
        "sent"
    };
    let error = job
        .last_error
        .clone()
        .unwrap_or_else(|| crate::job::JobError::new("", ""));
    RecordRequest {
        job_id: job.id.clone(),
        status: status.to_owned(),
        recipient: job.recipient.clone().unwrap_or_else(|| job.to.clone()),
        attempts: job.attempts,
        message_id: job.message_id.clone().unwrap_or_default(),
        error_code: if status == "failed" {
            error.code
        } else {
            String::new()
        },
        error_message: if status == "failed" {
            error.message
        } else {
            String::new()
        },
        message: job.message.clone(),
        media: job.media.as_ref().map(Media::summary).unwrap_or_default(),
        occurred_at: Some(to_timestamp(job.sent_at.unwrap_or(job.updated_at))),
        account: job
            .account
            .clone()
            .unwrap_or_else(|| default_account.to_owned()),
    }
}
