//! Real-time pickup: a Firestore listen stream on `status == "pending"` wakes the
//! worker the moment a job document is written. While the stream is down, a periodic
//! wake-up makes the worker query the queue instead (the fallback), and the stream is
//! opened again with a growing, jittered pause until it holds.

use abtrack_proto::retry::Backoff;
use abtrack_proto::tasks::Tasks;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use firestore::gcloud_sdk::google::firestore::v1::{
    ListenRequest, Target, listen_request, listen_response::ResponseType, target,
    target_change::TargetChangeType,
};
use tokio::sync::mpsc;

use crate::account::Wake;
use tokio_stream::wrappers::ReceiverStream;

use super::FirestoreQueue;

const TARGET_ID: i32 = 0x5043;
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Whether the listen stream is up, shared with the fallback.
#[derive(Clone, Default)]
pub struct ListenHealth(Arc<AtomicBool>);

impl ListenHealth {
    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, up: bool) {
        self.0.store(up, Ordering::Relaxed);
    }
}

/// Starts the listener and the fallback; both run until the service stops.
pub fn start(
    queue: FirestoreQueue,
    wake: Wake,
    fallback_every: Duration,
    tasks: &Tasks,
) -> ListenHealth {
    let health = ListenHealth::default();
    tasks.spawn(listen_loop(queue, wake.clone(), health.clone()));
    tasks.spawn(fallback(wake, health.clone(), fallback_every));
    health
}

async fn fallback(wake: Wake, health: ListenHealth, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if !health.is_up() {
            wake.all();
        }
    }
}

async fn listen_loop(queue: FirestoreQueue, wake: Wake, health: ListenHealth) {
    let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
    loop {
        let ended = listen_once(&queue, &wake, &health).await;
        // A stream that went live was a success: the next pause starts short again.
        if health.is_up() {
            backoff.reset();
        }
        let pause = backoff.next_delay();
        match ended {
            Ok(()) => tracing::warn!("Firestore listen stream ended; reopening it"),
            Err(status) => tracing::warn!(
                code = ?status.code(),
                error = %status.message(),
                retry_in_ms = pause.as_millis() as u64,
                "Firestore listen stream broke; pending jobs are queried periodically until it is back"
            ),
        }
        health.set(false);
        // Whatever was written while the stream was down is looked for at once.
        wake.all();
        tokio::time::sleep(pause).await;
    }
}

/// One listen stream, until it ends or fails.
async fn listen_once(
    queue: &FirestoreQueue,
    wake: &Wake,
    health: &ListenHealth,
) -> Result<(), tonic::Status> {
    let db = queue.db();
    let query = queue
        .pending_query()
        .map_err(|e| tonic::Status::internal(e.to_string()))?;
    let (tx, rx) = mpsc::channel(1);
    let add = ListenRequest {
        database: db.get_database_path().clone(),
        labels: Default::default(),
        target_change: Some(listen_request::TargetChange::AddTarget(Target {
            target_id: TARGET_ID,
            once: false,
            expected_count: None,
            target_type: Some(target::TargetType::Query(target::QueryTarget {
                parent: db.get_documents_path().clone(),
                query_type: Some(target::query_target::QueryType::StructuredQuery(query)),
            })),
            resume_type: None,
        })),
        ..Default::default()
    };
    tx.send(add)
        .await
        .map_err(|_| tonic::Status::internal("listen request channel closed"))?;
    let mut client = db.client().get();
    // The sender stays alive for as long as the stream is read: dropping it would
    // half-close the request stream.
    let mut stream = client
        .listen(tonic::Request::new(ReceiverStream::new(rx)))
        .await?
        .into_inner();
    while let Some(response) = stream.message().await? {
        match response.response_type {
            Some(ResponseType::TargetChange(change)) => {
                if change.target_change_type == TargetChangeType::Current as i32 {
                    if !health.is_up() {
                        tracing::info!(
                            "Firestore listen stream is live; jobs are picked up as they are written"
                        );
                    }
                    health.set(true);
                    wake.all();
                } else if change.target_change_type == TargetChangeType::Remove as i32 {
                    return Err(change
                        .cause
                        .map(|c| tonic::Status::new(tonic::Code::from(c.code), c.message))
                        .unwrap_or_else(|| tonic::Status::aborted("listen target removed")));
                }
            }
            Some(ResponseType::DocumentChange(change))
                if change.target_ids.contains(&TARGET_ID) =>
            {
                let account = change.document.as_ref().and_then(|d| queue.account_of(d));
                wake.job(account);
            }
            _ => {}
        }
    }
    drop(tx);
    Ok(())
}
