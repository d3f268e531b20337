//! The gRPC adapter: wire types in, domain calls, wire types out.

use std::pin::Pin;

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use abtrack_proto::logger::v1 as pb;
use abtrack_proto::mask_phone;
use abtrack_proto::tasks::Tasks;
use abtrack_proto::time::{from_timestamp, now_ms, opt_timestamp};

use crate::error::Error;
use crate::outbox::{Outbox, Record, STATUSES};
use crate::state::{LoggerState, Mode};

pub struct LoggerService {
    outbox: Outbox,
    state: watch::Sender<LoggerState>,
    include_message: bool,
    /// Tells the flusher a record arrived.
    flusher: Arc<Notify>,
    /// Runs each `Watch` stream's feeder, so shutdown ends open streams.
    tasks: Tasks,
}

impl LoggerService {
    pub fn new(
        outbox: Outbox,
        state: watch::Sender<LoggerState>,
        include_message: bool,
        flusher: Arc<Notify>,
        tasks: Tasks,
    ) -> Self {
        Self {
            outbox,
            state,
            include_message,
            flusher,
            tasks,
        }
    }
}

impl TryFrom<pb::RecordRequest> for Record {
    type Error = Error;

    fn try_from(req: pb::RecordRequest) -> Result<Self, Error> {
        if req.job_id.trim().is_empty() {
            return Err(Error::InvalidArgument("job_id is empty".into()));
        }
        if !STATUSES.contains(&req.status.as_str()) {
            return Err(Error::InvalidArgument(format!(
                "status {:?} is not one of {}",
                req.status,
                STATUSES.join(", ")
            )));
        }
        Ok(Record {
            job_id: req.job_id,
            status: req.status,
            recipient: req.recipient,
            attempts: req.attempts,
            message_id: req.message_id,
            error_code: req.error_code,
            error_message: req.error_message,
            message: req.message,
            occurred_at: req.occurred_at.as_ref().map_or_else(now_ms, from_timestamp),
            account: req.account,
            media: req.media,
        })
    }
}

impl LoggerService {
    /// Commits `records` to the outbox at once and tells the flusher and the
    /// logger's state about the new ones.
    async fn store(&self, mut records: Vec<Record>) -> Result<Vec<pb::RecordResponse>, Error> {
        if !self.include_message {
            for record in &mut records {
                record.message.clear();
            }
        }
        let keys: Vec<_> = records
            .iter()
            .map(|r| (r.job_id.clone(), r.status.clone(), r.recipient.clone()))
            .collect();
        let answers = self.outbox.insert_all(records, now_ms()).await?;
        if answers.iter().any(|(_, duplicate)| !duplicate) {
            let backlog = self.outbox.backlog().await?;
            self.state.send_modify(|s| s.backlog = backlog);
            self.flusher.notify_one();
        }
        Ok(keys
            .into_iter()
            .zip(answers)
            .map(|((job_id, status, recipient), (sequence, duplicate))| {
                tracing::debug!(job_id = %job_id, status = %status, to = %mask_phone(&recipient), sequence, duplicate, "outcome recorded");
                pb::RecordResponse {
                    sequence,
                    duplicate,
                }
            })
            .collect())
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::LoggerStatus, Status>> + Send>>;

#[tonic::async_trait]
impl pb::sheets_logger_server::SheetsLogger for LoggerService {
    async fn record(
        &self,
        request: Request<pb::RecordRequest>,
    ) -> Result<Response<pb::RecordResponse>, Status> {
        let record = Record::try_from(request.into_inner())?;
        let mut results = self.store(vec![record]).await?;
        Ok(Response::new(results.remove(0)))
    }

    async fn record_batch(
        &self,
        request: Request<pb::RecordBatchRequest>,
    ) -> Result<Response<pb::RecordBatchResponse>, Status> {
        let records = request
            .into_inner()
            .records
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                Record::try_from(r).map_err(|e| match e {
                    Error::InvalidArgument(why) => {
                        Error::InvalidArgument(format!("records[{i}].{why}"))
                    }
                    other => other,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let results = self.store(records).await?;
        Ok(Response::new(pb::RecordBatchResponse { results }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        _request: Request<pb::WatchRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(16);
        let mut state = self.state.subscribe();
        self.tasks.spawn(async move {
            loop {
                let current = state.borrow_and_update().clone();
                if tx.send(Ok(to_pb(&current))).await.is_err() {
                    return;
                }
                tokio::select! {
                    changed = state.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn to_pb(state: &LoggerState) -> pb::LoggerStatus {
    pb::LoggerStatus {
        state: match state.mode {
            Mode::Disabled => pb::LoggerState::Disabled,
            Mode::Ok => pb::LoggerState::Ok,
            Mode::Failing => pb::LoggerState::Failing,
        } as i32,
        backlog: state.backlog,
        last_error: state.last_error.clone(),
        detail: state.detail.clone(),
        last_flush_at: opt_timestamp(state.last_flush_at),
    }
}
