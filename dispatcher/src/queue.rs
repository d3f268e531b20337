//! The job queue. [`Store`] is what each backend (the embedded SQLite queue,
//! Firestore) fulfils: it reads jobs and writes the lifecycle's decisions atomically.
//! [`Queue`] is the one way the rest of the dispatcher changes a job: every write goes
//! through it, and it publishes the change, wakes the worker and feeds the logger, so
//! no caller can forget to. Times are milliseconds since the epoch, passed in so tests
//! control them.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::account::{Accounts, Lane, Wake};
use crate::error::Result;
use crate::events::Events;
use crate::job::{AllCounts, Counts, Finish, Job, JobStatus, NewJob, Page, Receipt, Search};
use crate::lifecycle::{Change, Event, Rules, Step};
use crate::logger_link::Recorder;
use crate::stats::{Metric, Reason, SettledCounts, Span, Stats, Totals};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub job: Job,
    /// False when a job with the same client id and content already existed.
    pub created: bool,
}

/// Which jobs a bulk change looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Processing jobs whose lease expired by `now` (and, in Firestore, documents
    /// whose status no queue knows, which would otherwise wait forever).
    ExpiredLeases { now: i64 },
    /// Processing jobs `owner` holds.
    HeldBy { owner: String },
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// "local" or "firestore".
    fn backend(&self) -> &'static str;

    async fn enqueue(&self, job: NewJob, now: i64) -> Result<Enqueued>;

    /// Offers `lane`'s pending jobs, oldest first, to [`Event::Lease`] and writes
    /// each decision; stops at the first job leased. A job that cannot be sent as
    /// stored, or names an account nobody sends for ([`Pick::Unknown`]), gets
    /// [`Event::Malformed`] instead. Returns every change written, the lease last.
    ///
    /// [`Pick::Unknown`]: crate::account::Pick::Unknown
    async fn lease_next(
        &self,
        lease: &Event,
        lane: &Lane,
        now: i64,
        rules: &Rules,
    ) -> Result<Vec<Change>>;

    /// Applies `event` to one job; `None` when it does not apply or the job is gone.
    /// A job another writer keeps changing under every try is an error.
    async fn update(
        &self,
        id: &str,
        event: &Event,
        now: i64,
        rules: &Rules,
    ) -> Result<Option<Change>>;

    /// Applies `event` to every job in `selection`.
    async fn update_all(
        &self,
        selection: &Selection,
        event: &Event,
        now: i64,
        rules: &Rules,
    ) -> Result<Vec<Change>>;

    async fn get(&self, id: &str) -> Result<Option<Job>>;

    /// The job's history, oldest first (at most [`crate::lifecycle::MAX_STEPS`]
    /// steps); empty for a job unknown or never changed.
    async fn steps(&self, id: &str) -> Result<Vec<Step>>;

    /// Newest update first; all statuses when `statuses` is empty; with `lane`, only
    /// the jobs that lane sends (for the default account's, those naming no account
    /// too).
    async fn list(
        &self,
        statuses: &[JobStatus],
        lane: Option<&Lane>,
        limit: usize,
    ) -> Result<Vec<Job>>;

    /// One page of the jobs `search` finds, newest `created_at` first, after the job
    /// `after` names (a page's `next`); at most `limit`.
    async fn search(&self, search: &Search, after: Option<&str>, limit: usize) -> Result<Page>;

    async fn counts(&self) -> Result<Counts>;

    /// How many jobs `metric` counts in each part of `span`.
    async fn histogram(&self, metric: Metric, span: Span) -> Result<Vec<u64>>;

    /// Of the jobs sent in `[from, until)`: how many, and how many of them are now
    /// delivered or read, and read (`failed` is left 0).
    async fn sent_between(&self, from: i64, until: i64) -> Result<Totals>;

    /// The jobs failed since `from` by error code, most common first, at most `limit`.
    async fn failure_reasons(&self, from: i64, limit: usize) -> Result<Vec<Reason>>;

    /// The counts of the jobs that name `account`.
    async fn account_counts(&self, account: &str) -> Result<Counts>;

    /// When the earliest pending job that is not due yet becomes due.
    async fn next_due_at(&self, now: i64) -> Result<Option<i64>>;

    /// Finished jobs whose outcome the logger has not acknowledged yet, oldest first.
    async fn unlogged(&self, limit: usize) -> Result<Vec<Job>>;

    /// Marks the outcomes recorded, each given as its job's id and the `updated_at`
    /// it was read at; a job that changed since is left unmarked.
    async fn mark_logged(&self, outcomes: Vec<(String, i64)>, now: i64) -> Result<()>;
}

/// The queue as the dispatcher uses it: the store, the rules, and everyone who must
/// hear of a change.
#[derive(Clone)]
pub struct Queue {
    store: Arc<dyn Store>,
    rules: Rules,
    events: Events,
    wake: Wake,
    recorder: Recorder,
    /// The stats of hours and days that ended, counted once.
    settled: Arc<SettledCounts>,
}

impl Queue {
    pub fn new(
        store: Arc<dyn Store>,
        rules: Rules,
        events: Events,
        wake: Wake,
        recorder: Recorder,
    ) -> Self {
        Self {
            store,
            rules,
            events,
            wake,
            recorder,
            settled: Arc::default(),
        }
    }

    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// The store itself, for what is not a change of a job (the logger's marks).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Wakes every worker: a job may have become due outside this queue's writes.
    pub fn wake(&self) {
        self.wake.all();
    }

    /// The notice the sleeping worker of `account` waits on.
    pub fn woken(&self, account: &str) -> &Notify {
        self.wake.of(account)
    }

    fn publish(&self, changes: &[Change], now: i64) {
        for change in changes {
            self.events.job_changed(&change.job);
        }
        if changes.iter().any(|c| c.log) {
            self.recorder.outcome_written();
        }
        for change in changes.iter().filter(|c| c.is_due(now)) {
            self.wake.job(change.job.account.as_deref());
        }
    }

    pub async fn enqueue(&self, job: NewJob, now: i64) -> Result<Enqueued> {
        let enqueued = self.store.enqueue(job, now).await?;
        if enqueued.created {
            let change = Change {
                job: enqueued.job.clone(),
                log: false,
                step: None,
            };
            self.publish(&[change], now);
        }
        Ok(enqueued)
    }

    /// Leases the oldest due pending job of `lane` to `owner` until `until` and
    /// counts the attempt. Two owners never hold the same job.
    pub async fn lease_next(
        &self,
        owner: &str,
        lane: &Lane,
        now: i64,
        until: i64,
    ) -> Result<Option<Job>> {
        let lease = Event::Lease {
            owner: owner.to_owned(),
            until,
        };
        // A round may only end jobs (spent or malformed) without leasing one; the
        // jobs behind them are then offered in the next round.
        loop {
            let changes = self
                .store
                .lease_next(&lease, lane, now, &self.rules)
                .await?;
            self.publish(&changes, now);
            if changes.is_empty() {
                return Ok(None);
            }
            if let Some(leased) = changes
                .into_iter()
                .map(|c| c.job)
                .find(|j| j.status == JobStatus::Processing)
            {
                return Ok(Some(leased));
            }
        }
    }

    /// Records how an attempt ended, only while `owner` still holds the lease; `None`
    /// when the lease was lost (expired and taken by the sweeper).
    pub async fn finish(
        &self,
        id: &str,
        owner: &str,
        finish: Finish,
        now: i64,
    ) -> Result<Option<Job>> {
        let event = Event::Finish {
            owner: owner.to_owned(),
            finish,
        };
        self.update(id, &event, now).await
    }

    /// Returns expired leases to pending, or ends them failed once their attempts
    /// are spent.
    pub async fn sweep_expired(&self, now: i64) -> Result<Vec<Job>> {
        let selection = Selection::ExpiredLeases { now };
        self.update_all(&selection, &Event::LeaseExpired, now).await
    }

    /// Takes back the jobs `owner` holds: a dispatcher restarted under the same
    /// `DISPATCHER_ID` returns at once what its previous run left in flight.
    pub async fn release_owned(&self, owner: &str, now: i64) -> Result<Vec<Job>> {
        let selection = Selection::HeldBy {
            owner: owner.to_owned(),
        };
        let event = Event::Restarted {
            owner: owner.to_owned(),
        };
        self.update_all(&selection, &event, now).await
    }

    /// Failed -> pending with a fresh attempt count.
    pub async fn retry(&self, id: &str, now: i64) -> Result<Job> {
        match self.update(id, &Event::Retry, now).await? {
            Some(job) => Ok(job),
            None => Err(crate::Error::NotFound(format!("no job with id {id:?}"))),
        }
    }

    /// `None` when the receipt changes nothing or the job is not in this queue.
    pub async fn record_receipt(
        &self,
        id: &str,
        receipt: Receipt,
        at: i64,
        now: i64,
    ) -> Result<Option<Job>> {
        self.update(id, &Event::Receipt { receipt, at }, now).await
    }

    async fn update(&self, id: &str, event: &Event, now: i64) -> Result<Option<Job>> {
        let change = self.store.update(id, event, now, &self.rules).await?;
        let Some(change) = change else {
            return Ok(None);
        };
        self.publish(std::slice::from_ref(&change), now);
        Ok(Some(change.job))
    }

    async fn update_all(&self, selection: &Selection, event: &Event, now: i64) -> Result<Vec<Job>> {
        let changes = self
            .store
            .update_all(selection, event, now, &self.rules)
            .await?;
        self.publish(&changes, now);
        Ok(changes.into_iter().map(|c| c.job).collect())
    }

    pub async fn get(&self, id: &str) -> Result<Option<Job>> {
        self.store.get(id).await
    }

    pub async fn steps(&self, id: &str) -> Result<Vec<Step>> {
        self.store.steps(id).await
    }

    pub async fn list(
        &self,
        statuses: &[JobStatus],
        lane: Option<&Lane>,
        limit: usize,
    ) -> Result<Vec<Job>> {
        self.store.list(statuses, lane, limit).await
    }

    pub async fn search(&self, search: &Search, after: Option<&str>, limit: usize) -> Result<Page> {
        self.store.search(search, after, limit).await
    }

    pub async fn counts(&self) -> Result<Counts> {
        self.store.counts().await
    }

    /// How the last 24 hours and 30 days went, for an operator `offset` ms from UTC.
    pub async fn stats(&self, now: i64, offset: i64) -> Result<Stats> {
        crate::stats::stats(&*self.store, &self.settled, now, offset).await
    }

    /// The queue's counts and each account's.
    pub async fn all_counts(&self, accounts: &Accounts) -> Result<AllCounts> {
        all_counts(&*self.store, accounts).await
    }

    pub async fn next_due_at(&self, now: i64) -> Result<Option<i64>> {
        self.store.next_due_at(now).await
    }
}

/// The queue's counts and, with several accounts, each account's. The default
/// account's are what the others leave, as jobs naming no account are its own and
/// Firestore cannot count documents lacking a field; jobs naming an account nobody
/// sends for (all `failed`) count there too.
pub async fn all_counts(store: &dyn Store, accounts: &Accounts) -> Result<AllCounts> {
    let total = store.counts().await?;
    let names = accounts.names();
    if names.len() < 2 {
        return Ok(AllCounts {
            total,
            accounts: Vec::new(),
        });
    }
    let mut others = Vec::with_capacity(names.len() - 1);
    let mut rest = total;
    for name in &names[1..] {
        let counts = store.account_counts(name).await?;
        rest = rest.less(&counts);
        others.push((name.clone(), counts));
    }
    let mut each = vec![(names[0].clone(), rest)];
    each.extend(others);
    Ok(AllCounts {
        total,
        accounts: each,
    })
}
