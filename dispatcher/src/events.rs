//! The dispatcher's live view for `Watch`: job changes as they happen, queue counts
//! (coalesced), and the queue state (paused, gateway ready).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, broadcast, watch};

use abtrack_proto::tasks::Tasks;

use crate::account::Accounts;
use crate::gateway_link::NOT_YET;
use crate::job::{AllCounts, Job};
use crate::queue::{Store, all_counts};

/// How often counts are recomputed at most while jobs change.
const COUNTS_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueState {
    pub paused: bool,
    /// Every account's gateway is ready.
    pub gateway_ready: bool,
    /// Why some account's jobs do not flow; empty when they all do.
    pub waiting_reason: String,
    pub backend: &'static str,
    /// Each account, the default one first.
    pub accounts: Vec<AccountState>,
}

/// Whether one account's jobs flow, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountState {
    pub name: String,
    pub ready: bool,
    pub waiting_reason: String,
}

impl QueueState {
    /// Running, every account waiting for its gateway's first answer.
    pub fn new(backend: &'static str, accounts: &Accounts) -> Self {
        let mut state = Self {
            paused: false,
            gateway_ready: false,
            waiting_reason: String::new(),
            backend,
            accounts: accounts
                .names()
                .iter()
                .map(|name| AccountState {
                    name: name.clone(),
                    ready: false,
                    waiting_reason: NOT_YET.into(),
                })
                .collect(),
        };
        state.set_account(accounts.default_name(), false, NOT_YET);
        state
    }

    /// Sets one account's readiness, and the summary of all of them: ready when
    /// every account is, and each waiting account's reason (named when there are
    /// several).
    pub fn set_account(&mut self, name: &str, ready: bool, reason: &str) {
        if let Some(account) = self.accounts.iter_mut().find(|a| a.name == name) {
            account.ready = ready;
            account.waiting_reason = reason.to_owned();
        }
        self.gateway_ready = self.accounts.iter().all(|a| a.ready);
        let several = self.accounts.len() > 1;
        self.waiting_reason = self
            .accounts
            .iter()
            .filter(|a| !a.ready)
            .map(|a| {
                if several {
                    format!("{}: {}", a.name, a.waiting_reason)
                } else {
                    a.waiting_reason.clone()
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
    }
}

#[derive(Clone)]
pub struct Events {
    jobs: broadcast::Sender<Job>,
    counts: watch::Sender<AllCounts>,
    state: watch::Sender<QueueState>,
    dirty: Arc<Notify>,
}

impl Events {
    /// Starts the task that keeps the counts (the queue's and each account's) current.
    pub fn start(
        queue: Arc<dyn Store>,
        initial: QueueState,
        accounts: Accounts,
        tasks: &Tasks,
    ) -> Self {
        let events = Self {
            jobs: broadcast::Sender::new(4096),
            counts: watch::Sender::new(AllCounts::default()),
            state: watch::Sender::new(initial),
            dirty: Arc::new(Notify::new()),
        };
        tasks.spawn(keep_counts(
            queue,
            accounts,
            events.counts.clone(),
            Arc::clone(&events.dirty),
        ));
        events.dirty.notify_one();
        events
    }

    /// Publishes a job change (without its message text).
    pub fn job_changed(&self, job: &Job) {
        let mut job = job.clone();
        job.message.clear();
        let _ = self.jobs.send(job);
        self.dirty.notify_one();
    }

    pub fn jobs(&self) -> broadcast::Receiver<Job> {
        self.jobs.subscribe()
    }

    pub fn counts(&self) -> watch::Receiver<AllCounts> {
        self.counts.subscribe()
    }

    pub fn state(&self) -> watch::Receiver<QueueState> {
        self.state.subscribe()
    }

    pub fn update_state(&self, f: impl FnOnce(&mut QueueState)) {
        self.state.send_if_modified(|state| {
            let before = state.clone();
            f(state);
            *state != before
        });
    }
}

async fn keep_counts(
    queue: Arc<dyn Store>,
    accounts: Accounts,
    counts: watch::Sender<AllCounts>,
    dirty: Arc<Notify>,
) {
    loop {
        dirty.notified().await;
        match all_counts(&*queue, &accounts).await {
            Ok(current) => {
                counts.send_if_modified(|c| {
                    let changed = *c != current;
                    *c = current;
                    changed
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot count jobs"),
        }
        tokio::time::sleep(COUNTS_INTERVAL).await;
    }
}
