//! The job queue contract every backend (the embedded SQLite queue, Firestore)
//! fulfils. Times are milliseconds since the epoch, passed in so tests control them.

use async_trait::async_trait;

use crate::error::Result;
use crate::job::{Counts, Finish, Job, JobStatus, NewJob, Receipt};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub job: Job,
    /// False when a job with the same client id and content already existed.
    pub created: bool,
}

#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// "local" or "firestore".
    fn backend(&self) -> &'static str;

    async fn enqueue(&self, job: NewJob, now: i64) -> Result<Enqueued>;

    /// Leases the oldest due pending job to `owner` until `lease_until` and counts the
    /// attempt. Two owners never hold the same job.
    async fn lease_next(&self, owner: &str, now: i64, lease_until: i64) -> Result<Option<Job>>;

    /// Records how an attempt ended, only while `owner` still holds the lease;
    /// `None` when the lease was lost (expired and taken by the sweeper).
    async fn finish(&self, id: &str, owner: &str, finish: Finish, now: i64) -> Result<Option<Job>>;

    /// Returns expired leases to pending (or to failed once `max_attempts` are used).
    async fn sweep_expired(&self, now: i64, max_attempts: u32) -> Result<Vec<Job>>;

    /// Returns to pending the jobs `owner` holds: a dispatcher restarted under the
    /// same `DISPATCHER_ID` takes back at once what its previous run left in flight.
    async fn release_owned(&self, owner: &str, now: i64) -> Result<Vec<Job>>;

    /// Failed -> pending with a fresh attempt count.
    async fn retry(&self, id: &str, now: i64) -> Result<Job>;

    async fn record_receipt(&self, id: &str, receipt: Receipt, at: i64) -> Result<Option<Job>>;

    async fn get(&self, id: &str) -> Result<Option<Job>>;

    /// Newest update first; all statuses when `statuses` is empty.
    async fn list(&self, statuses: &[JobStatus], limit: usize) -> Result<Vec<Job>>;

    async fn counts(&self) -> Result<Counts>;

    /// When the earliest pending job that is not due yet becomes due.
    async fn next_due_at(&self, now: i64) -> Result<Option<i64>>;

    /// Finished jobs whose outcome the logger has not acknowledged yet, oldest first.
    async fn unlogged(&self, limit: usize) -> Result<Vec<Job>>;

    /// Marks the outcome recorded, unless the job changed since it was read.
    async fn mark_logged(&self, id: &str, updated_at: i64, now: i64) -> Result<()>;
}
