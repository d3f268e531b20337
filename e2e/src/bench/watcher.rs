//! Follows a dispatcher's `Watch` stream, so the benchmark learns the moment a job is
//! sent without polling the queue (which would add load of its own).

use std::collections::HashMap;
use std::time::Duration;

use abtrack_proto::dispatcher::v1::{
    self as pb, dispatcher_client::DispatcherClient, dispatcher_event::Event,
};
use abtrack_proto::time::from_timestamp;
use tokio::sync::watch;

/// What the stream has shown so far.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Sent jobs: id -> `created_at` (ms) as the queue recorded it.
    pub sent: HashMap<String, i64>,
    /// The `sent` figure of the latest queue counts.
    pub counts_sent: u64,
}

impl Seen {
    /// Sent jobs whose id starts with `prefix`.
    pub fn sent_with_prefix(&self, prefix: &str) -> usize {
        self.sent.keys().filter(|id| id.starts_with(prefix)).count()
    }
}

pub struct Watcher {
    seen: watch::Receiver<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    /// Subscribes to the dispatcher at `url`.
    pub async fn start(url: &str) -> Self {
        let mut client = DispatcherClient::connect(url.to_owned())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the dispatcher at {url}: {e}"));
        let mut stream = client
            .watch(pb::WatchRequest {})
            .await
            .expect("the dispatcher's Watch stream")
            .into_inner();
        let (tx, seen) = watch::channel(Seen::default());
        let task = tokio::spawn(async move {
            while let Ok(Some(event)) = stream.message().await {
                match event.event {
                    Some(Event::Job(job)) if is_sent(job.status) => tx.send_modify(|s| {
                        let created = job.created_at.as_ref().map_or(0, from_timestamp);
                        s.sent.insert(job.id, created);
                    }),
                    Some(Event::Counts(counts)) => tx.send_modify(|s| {
                        s.counts_sent = counts.sent + counts.delivered + counts.read;
                    }),
                    _ => {}
                }
            }
        });
        Self { seen, task }
    }

    /// Waits (at most `limit`) until `check` holds; panics naming `what` otherwise.
    pub async fn wait(&self, limit: Duration, what: &str, check: impl FnMut(&Seen) -> bool) {
        let mut seen = self.seen.clone();
        match tokio::time::timeout(limit, seen.wait_for(check)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => panic!("the dispatcher's Watch stream ended while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }

    pub fn seen(&self) -> Seen {
        self.seen.borrow().clone()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn is_sent(status: i32) -> bool {
    [
        pb::JobStatus::Sent,
        pb::JobStatus::Delivered,
        pb::JobStatus::Read,
    ]
    .iter()
    .any(|s| *s as i32 == status)
}
