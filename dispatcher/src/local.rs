//! The embedded local queue: the job table in SQLite (WAL), for running without
//! Firebase. Any number of dispatcher processes may share one file; SQLite's write
//! lock makes each lease a single atomic statement.

use std::path::Path;

use abtrack_proto::sqlite::Db;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::{Error, Result};
use crate::job::{Counts, Finish, Job, JobError, JobStatus, NewJob, Receipt};
use crate::queue::{Enqueued, JobQueue};

const COLUMNS: &str = "id, to_input, message, status, attempts, lease_owner, lease_expires_at,
    next_attempt_at, send_at, created_at, updated_at, last_error_code, last_error_message,
    sent_at, message_id, recipient, delivered_at, read_at, delivery_overdue, recipient_lid";

#[derive(Clone)]
pub struct LocalQueue {
    db: Db,
}

impl LocalQueue {
    pub fn open(path: &Path) -> Result<Self> {
        let db = Db::open(
            path,
            std::time::Duration::from_secs(10),
            "CREATE TABLE IF NOT EXISTS jobs (
                id                 TEXT PRIMARY KEY,
                to_input           TEXT NOT NULL,
                message            TEXT NOT NULL,
                status             TEXT NOT NULL,
                attempts           INTEGER NOT NULL DEFAULT 0,
                lease_owner        TEXT,
                lease_expires_at   INTEGER,
                next_attempt_at    INTEGER,
                send_at            INTEGER,
                created_at         INTEGER NOT NULL,
                updated_at         INTEGER NOT NULL,
                last_error_code    TEXT,
                last_error_message TEXT,
                sent_at            INTEGER,
                message_id         TEXT,
                recipient          TEXT,
                delivered_at       INTEGER,
                read_at            INTEGER,
                logged_at          INTEGER
            );
            CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, created_at);
            CREATE INDEX IF NOT EXISTS jobs_by_update ON jobs (updated_at);
            CREATE INDEX IF NOT EXISTS jobs_unlogged ON jobs (updated_at)
                WHERE logged_at IS NULL AND status IN ('sent', 'delivered', 'read', 'failed');",
        )?;
        db.ensure_column(
            "jobs",
            "delivery_overdue",
            "INTEGER NOT NULL DEFAULT 0",
            None,
        )?;
        db.ensure_column("jobs", "recipient_lid", "TEXT", None)?;
        Ok(Self { db })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.db
            .call(f)
            .await
            .map_err(|e| Error::Internal(format!("queue task failed: {e}")))?
    }
}

fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    let status: String = row.get(3)?;
    let code: Option<String> = row.get(11)?;
    let message: Option<String> = row.get(12)?;
    Ok(Job {
        id: row.get(0)?,
        to: row.get(1)?,
        message: row.get(2)?,
        // Only this module writes the column, always from `JobStatus::as_str`.
        status: JobStatus::parse(&status).unwrap_or(JobStatus::Failed),
        attempts: row.get(4)?,
        lease_owner: row.get(5)?,
        lease_expires_at: row.get(6)?,
        next_attempt_at: row.get(7)?,
        send_at: row.get(8)?,
        created_at: row.get(9)?,
        updated_at: row.get(10)?,
        last_error: code.map(|code| JobError {
            code,
            message: message.unwrap_or_default(),
        }),
        sent_at: row.get(13)?,
        message_id: row.get(14)?,
        recipient: row.get(15)?,
        delivered_at: row.get(16)?,
        read_at: row.get(17)?,
        delivery_overdue: row.get(18)?,
        recipient_lid: row.get(19)?,
    })
}

fn get_job(conn: &Connection, id: &str) -> Result<Option<Job>> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
            [id],
            job_from_row,
        )
        .optional()?)
}

#[async_trait]
impl JobQueue for LocalQueue {
    fn backend(&self) -> &'static str {
        "local"
    }

    async fn enqueue(&self, job: NewJob, now: i64) -> Result<Enqueued> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            if let Some(id) = &job.id
                && let Some(existing) = get_job(&tx, id)?
            {
                if existing.to == job.to
                    && existing.message == job.message
                    && existing.send_at == job.send_at
                {
                    return Ok(Enqueued {
                        job: existing,
                        created: false,
                    });
                }
                return Err(Error::AlreadyExists(format!(
                    "id: a different job with id {id:?} already exists"
                )));
            }
            let id = job.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            tx.execute(
                "INSERT INTO jobs (id, to_input, message, status, send_at, created_at, updated_at)
                 VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?5)",
                params![id, job.to, job.message, job.send_at, now],
            )?;
            let created = get_job(&tx, &id)?
                .ok_or_else(|| Error::Internal("inserted job vanished".into()))?;
            tx.commit()?;
            Ok(Enqueued {
                job: created,
                created: true,
            })
        })
        .await
    }

    async fn lease_next(&self, owner: &str, now: i64, lease_until: i64) -> Result<Option<Job>> {
        let owner = owner.to_owned();
        self.with(move |conn| {
            let sql = format!(
                "UPDATE jobs SET status = 'processing', lease_owner = ?1, lease_expires_at = ?2,
                    attempts = attempts + 1, updated_at = ?3
                 WHERE id = (
                    SELECT id FROM jobs
                    WHERE status = 'pending'
                      AND COALESCE(send_at, 0) <= ?3 AND COALESCE(next_attempt_at, 0) <= ?3
                    ORDER BY created_at, rowid LIMIT 1
                 ) AND status = 'pending'
                 RETURNING {COLUMNS}"
            );
            Ok(conn
                .query_row(&sql, params![owner, lease_until, now], job_from_row)
                .optional()?)
        })
        .await
    }

    async fn finish(&self, id: &str, owner: &str, finish: Finish, now: i64) -> Result<Option<Job>> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.with(move |conn| {
            let held = "WHERE id = ?1 AND status = 'processing' AND lease_owner = ?2";
            let clear = "lease_owner = NULL, lease_expires_at = NULL";
            let changed = match finish {
                Finish::Sent { message_id, recipient, recipient_lid, sent_at } => conn.execute(
                    &format!(
                        "UPDATE jobs SET {clear}, updated_at = ?3, sent_at = ?4, message_id = ?5,
                            recipient = ?6, recipient_lid = ?7, next_attempt_at = NULL, logged_at = NULL,
                            last_error_code = NULL, last_error_message = NULL,
                            status = CASE WHEN read_at IS NOT NULL THEN 'read'
                                          WHEN delivered_at IS NOT NULL THEN 'delivered'
                                          ELSE 'sent' END
                         {held}"
                    ),
                    params![id, owner, now, sent_at, message_id, recipient, recipient_lid],
                )?,
                Finish::Failed(error) => conn.execute(
                    &format!(
                        "UPDATE jobs SET status = 'failed', {clear}, updated_at = ?3, next_attempt_at = NULL,
                            last_error_code = ?4, last_error_message = ?5, logged_at = NULL
                         {held}"
                    ),
                    params![id, owner, now, error.code, error.message],
                )?,
                Finish::Retry { error, next_attempt_at } => conn.execute(
                    &format!(
                        "UPDATE jobs SET status = 'pending', {clear}, updated_at = ?3, next_attempt_at = ?4,
                            last_error_code = ?5, last_error_message = ?6
                         {held}"
                    ),
                    params![id, owner, now, next_attempt_at, error.code, error.message],
                )?,
                Finish::Release { error, next_attempt_at } => conn.execute(
                    &format!(
                        "UPDATE jobs SET status = 'pending', {clear}, updated_at = ?3, next_attempt_at = ?4,
                            attempts = MAX(attempts - 1, 0), last_error_code = ?5, last_error_message = ?6
                         {held}"
                    ),
                    params![id, owner, now, next_attempt_at, error.code, error.message],
                )?,
            };
            if changed == 0 {
                return Ok(None);
            }
            get_job(conn, &id)
        })
        .await
    }

    async fn sweep_expired(&self, now: i64, max_attempts: u32) -> Result<Vec<Job>> {
        self.with(move |conn| {
            let sql = format!(
                "UPDATE jobs SET
                    status = CASE WHEN attempts >= ?2 THEN 'failed' ELSE 'pending' END,
                    lease_owner = NULL, lease_expires_at = NULL, updated_at = ?1, logged_at = NULL,
                    last_error_code = 'lease_expired',
                    last_error_message = 'the dispatcher holding this job stopped before recording its outcome'
                 WHERE status = 'processing' AND lease_expires_at <= ?1
                 RETURNING {COLUMNS}"
            );
            let mut stmt = conn.prepare(&sql)?;
            let jobs = stmt
                .query_map(params![now, max_attempts], job_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(jobs)
        })
        .await
    }

    async fn release_owned(&self, owner: &str, now: i64) -> Result<Vec<Job>> {
        let owner = owner.to_owned();
        self.with(move |conn| {
            let sql = format!(
                "UPDATE jobs SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL,
                    updated_at = ?2, last_error_code = 'restarted',
                    last_error_message = 'the dispatcher restarted while sending this job'
                 WHERE status = 'processing' AND lease_owner = ?1
                 RETURNING {COLUMNS}"
            );
            let mut stmt = conn.prepare(&sql)?;
            let jobs = stmt
                .query_map(params![owner, now], job_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(jobs)
        })
        .await
    }

    async fn retry(&self, id: &str, now: i64) -> Result<Job> {
        let id = id.to_owned();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let job = get_job(&tx, &id)?
                .ok_or_else(|| Error::NotFound(format!("no job with id {id:?}")))?;
            if job.status != JobStatus::Failed {
                return Err(Error::FailedPrecondition(format!(
                    "job {id:?} is {}; only failed jobs can be retried",
                    job.status.as_str()
                )));
            }
            tx.execute(
                "UPDATE jobs SET status = 'pending', attempts = 0, next_attempt_at = NULL,
                    last_error_code = NULL, last_error_message = NULL, updated_at = ?2
                 WHERE id = ?1",
                params![id, now],
            )?;
            let job =
                get_job(&tx, &id)?.ok_or_else(|| Error::Internal("retried job vanished".into()))?;
            tx.commit()?;
            Ok(job)
        })
        .await
    }

    async fn record_receipt(&self, id: &str, receipt: Receipt, at: i64) -> Result<Option<Job>> {
        let id = id.to_owned();
        self.with(move |conn| {
            // A receipt may overtake the send outcome; the timestamps are kept and the
            // status follows when the outcome is written.
            let now = abtrack_proto::time::now_ms();
            // The overdue flag only goes on a job still `sent`; a receipt clears it.
            let sql = match receipt {
                Receipt::Delivered => {
                    "UPDATE jobs SET delivered_at = COALESCE(delivered_at, ?2), updated_at = ?3,
                        delivery_overdue = 0,
                        status = CASE WHEN status = 'sent' THEN 'delivered' ELSE status END
                     WHERE id = ?1"
                }
                Receipt::Read => {
                    "UPDATE jobs SET read_at = COALESCE(read_at, ?2), updated_at = ?3,
                        delivered_at = COALESCE(delivered_at, ?2), delivery_overdue = 0,
                        status = CASE WHEN status IN ('sent', 'delivered') THEN 'read' ELSE status END
                     WHERE id = ?1"
                }
                Receipt::Overdue => {
                    "UPDATE jobs SET delivery_overdue = 1, updated_at = ?2
                     WHERE id = ?1 AND status = 'sent' AND delivery_overdue = 0"
                }
            };
            let changed = match receipt {
                Receipt::Overdue => conn.execute(sql, params![id, now])?,
                Receipt::Delivered | Receipt::Read => conn.execute(sql, params![id, at, now])?,
            };
            if changed == 0 {
                return Ok(None);
            }
            get_job(conn, &id)
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<Job>> {
        let id = id.to_owned();
        self.with(move |conn| get_job(conn, &id)).await
    }

    async fn list(&self, statuses: &[JobStatus], limit: usize) -> Result<Vec<Job>> {
        let statuses: Vec<&'static str> = statuses.iter().map(|s| s.as_str()).collect();
        self.with(move |conn| {
            let filter = if statuses.is_empty() {
                String::new()
            } else {
                let marks = vec!["?"; statuses.len()].join(", ");
                format!("WHERE status IN ({marks})")
            };
            let sql = format!(
                "SELECT {COLUMNS} FROM jobs {filter} ORDER BY updated_at DESC, rowid DESC LIMIT {limit}"
            );
            let mut stmt = conn.prepare(&sql)?;
            let jobs = stmt
                .query_map(rusqlite::params_from_iter(statuses.iter()), job_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(jobs)
        })
        .await
    }

    async fn counts(&self) -> Result<Counts> {
        self.with(|conn| {
            let mut stmt = conn.prepare("SELECT status, COUNT(*) FROM jobs GROUP BY status")?;
            let mut counts = Counts::default();
            let rows = stmt.query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })?;
            for row in rows {
                let (status, n) = row?;
                if let Some(status) = JobStatus::parse(&status) {
                    counts.add(status, n as u64);
                }
            }
            let overdue: i64 = conn.query_row(
                "SELECT COUNT(*) FROM jobs WHERE status = 'sent' AND delivery_overdue = 1",
                [],
                |row| row.get(0),
            )?;
            counts.delivery_overdue = overdue as u64;
            Ok(counts)
        })
        .await
    }

    async fn next_due_at(&self, now: i64) -> Result<Option<i64>> {
        self.with(move |conn| {
            Ok(conn.query_row(
                "SELECT MIN(MAX(COALESCE(send_at, 0), COALESCE(next_attempt_at, 0))) FROM jobs
                 WHERE status = 'pending' AND MAX(COALESCE(send_at, 0), COALESCE(next_attempt_at, 0)) > ?1",
                [now],
                |row| row.get::<_, Option<i64>>(0),
            )?)
        })
        .await
    }

    async fn unlogged(&self, limit: usize) -> Result<Vec<Job>> {
        self.with(move |conn| {
            let sql = format!(
                "SELECT {COLUMNS} FROM jobs
                 WHERE status IN ('sent', 'delivered', 'read', 'failed') AND logged_at IS NULL
                 ORDER BY updated_at LIMIT {limit}"
            );
            let mut stmt = conn.prepare(&sql)?;
            let jobs = stmt
                .query_map([], job_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(jobs)
        })
        .await
    }

    async fn mark_logged(&self, id: &str, updated_at: i64, now: i64) -> Result<()> {
        let id = id.to_owned();
        self.with(move |conn| {
            conn.execute(
                "UPDATE jobs SET logged_at = ?3 WHERE id = ?1 AND updated_at = ?2",
                params![id, updated_at, now],
            )?;
            Ok(())
        })
        .await
    }
}
