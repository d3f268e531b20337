//! The embedded local queue: the job table in SQLite (WAL), for running without
//! Firebase. Any number of dispatcher processes may share one file; SQLite's write
//! lock makes each lease a single atomic statement.

use std::path::Path;

use abtrack_proto::sqlite::{Db, Durability, SetAside};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Params, Row, TransactionBehavior, params};

use crate::account::{Lane, Pick};
use crate::error::{Error, Result};
use crate::job::{Counts, Job, JobError, JobStatus, Media, MediaSource, NewJob, Page, Search};
use crate::lifecycle::{self, Change, Event, MAX_STEPS, Rules, Step, StepKind};
use crate::queue::{Enqueued, Selection, Store};
use crate::stats::{Metric, Reason, Span, Totals};

/// A job's columns, in the order [`job_from_row`] reads them, with `$data` for the
/// inline media.
macro_rules! job_columns {
    ($data:literal) => {
        concat!(
            "id, to_input, message, status, attempts, lease_owner, lease_expires_at,
            next_attempt_at, send_at, created_at, updated_at, last_error_code,
            last_error_message, sent_at, message_id, recipient, delivered_at, read_at,
            delivery_overdue, recipient_lid, account, media_url, ",
            $data,
            ", media_mime_type, media_file_name"
        )
    };
}

const COLUMNS: &str = job_columns!("media_data");

/// [`COLUMNS`] for lists and searches: the inline media's size instead of its bytes,
/// which a page of jobs never needs (up to 3 MiB each).
const LIST_COLUMNS: &str = job_columns!("length(media_data)");

#[derive(Clone)]
pub struct LocalQueue {
    db: Db,
    set_aside: Option<SetAside>,
}

impl LocalQueue {
    /// Opens (or creates) the queue at `path`; a damaged file is moved aside and its
    /// readable jobs carried over into a fresh one.
    pub fn open(path: &Path) -> Result<Self> {
        let (db, set_aside) = Db::open_healing(
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
            -- The stats: each kind of event by its time.
            CREATE INDEX IF NOT EXISTS jobs_by_sent ON jobs (sent_at) WHERE sent_at IS NOT NULL;
            CREATE INDEX IF NOT EXISTS jobs_by_delivered ON jobs (delivered_at)
                WHERE delivered_at IS NOT NULL;
            CREATE INDEX IF NOT EXISTS jobs_by_read ON jobs (read_at) WHERE read_at IS NOT NULL;
            CREATE INDEX IF NOT EXISTS jobs_failed ON jobs (updated_at) WHERE status = 'failed';
            -- Searches: newest first, by number.
            CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created_at, id);
            CREATE INDEX IF NOT EXISTS jobs_by_recipient ON jobs (recipient, created_at, id);
            CREATE INDEX IF NOT EXISTS jobs_unlogged ON jobs (updated_at)
                WHERE logged_at IS NULL AND status IN ('sent', 'delivered', 'read', 'failed');
            -- Each job's history, the newest MAX_STEPS steps per job. A damaged file's
            -- steps are not carried over: its jobs are, with their fields.
            CREATE TABLE IF NOT EXISTS job_steps (
                job_id          TEXT NOT NULL,
                at              INTEGER NOT NULL,
                kind            TEXT NOT NULL,
                attempt         INTEGER NOT NULL,
                owner           TEXT,
                error_code      TEXT,
                error_message   TEXT,
                next_attempt_at INTEGER
            );
            CREATE INDEX IF NOT EXISTS job_steps_by_job ON job_steps (job_id);",
            |db| {
                db.ensure_column(
                    "jobs",
                    "delivery_overdue",
                    "INTEGER NOT NULL DEFAULT 0",
                    None,
                )?;
                db.ensure_column("jobs", "recipient_lid", "TEXT", None)?;
                for column in ["media_url", "media_mime_type", "media_file_name"] {
                    db.ensure_column("jobs", column, "TEXT", None)?;
                }
                db.ensure_column("jobs", "media_data", "BLOB", None)?;
                db.ensure_column(
                    "jobs",
                    "account",
                    "TEXT",
                    Some("CREATE INDEX jobs_by_account ON jobs (account, status, created_at);"),
                )?;
                Ok(())
            },
            &["jobs"],
        )?;
        Ok(Self { db, set_aside })
    }

    /// The damaged file this queue replaced at start, if any: its jobs that could
    /// still be read were carried over.
    pub fn set_aside(&self) -> Option<&SetAside> {
        self.set_aside.as_ref()
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.with_at(Durability::Disk, f).await
    }

    /// A short read on the calling thread ([`Db::read`]); reads whose cost grows with
    /// the queue (counts, lists) go through [`LocalQueue::with`].
    async fn read<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        self.db
            .read(f)
            .await
            .map_err(|e| Error::Internal(format!("queue task failed: {e}")))?
    }

    async fn with_at<T: Send + 'static>(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.db
            .call_at(durability, f)
            .await
            .map_err(|e| Error::Internal(format!("queue task failed: {e}")))?
    }
}

/// The jobs in each status: all of them, or those naming `account`.
fn count(conn: &Connection, account: Option<&str>) -> rusqlite::Result<Counts> {
    let (filter, values) = match account {
        Some(account) => ("WHERE account = ?1", vec![account]),
        None => ("", vec![]),
    };
    let mut counts = Counts::default();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT status, COUNT(*) FROM jobs {filter} GROUP BY status"
    ))?;
    let rows = stmt.query_map(rusqlite::params_from_iter(&values), |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (status, n) = row?;
        if let Some(status) = JobStatus::parse(&status) {
            counts.add(status, n as u64);
        }
    }
    let and = if account.is_some() {
        "AND account = ?1"
    } else {
        ""
    };
    let overdue: i64 = conn
        .prepare_cached(&format!(
            "SELECT COUNT(*) FROM jobs WHERE status = 'sent' AND delivery_overdue = 1 {and}"
        ))?
        .query_row(rusqlite::params_from_iter(&values), |row| row.get(0))?;
    counts.delivery_overdue = overdue as u64;
    Ok(counts)
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
        last_error: error_from_columns(code, message),
        sent_at: row.get(13)?,
        message_id: row.get(14)?,
        recipient: row.get(15)?,
        delivered_at: row.get(16)?,
        read_at: row.get(17)?,
        delivery_overdue: row.get(18)?,
        recipient_lid: row.get(19)?,
        account: row.get(20)?,
        media: media_from_columns(row.get(21)?, row.get(22)?, row.get(23)?, row.get(24)?),
    })
}

/// The media of a row: a URL or inline bytes (or, from [`LIST_COLUMNS`], their
/// size), with what the job declared.
fn media_from_columns(
    url: Option<String>,
    data: rusqlite::types::Value,
    mime_type: Option<String>,
    file_name: Option<String>,
) -> Option<Media> {
    use rusqlite::types::Value;
    let source = match (url, data) {
        (Some(url), _) => MediaSource::Url(url),
        (None, Value::Blob(data)) => MediaSource::Inline(data.into()),
        (None, Value::Integer(size)) => MediaSource::InlineUnread(size.max(0) as u64),
        (None, _) => return None,
    };
    Some(Media {
        source,
        mime_type,
        file_name,
    })
}

fn get_job(conn: &Connection, id: &str) -> Result<Option<Job>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"))?
        .query_row([id], job_from_row)
        .optional()?)
}

fn select(conn: &Connection, filter: &str, params: impl Params) -> Result<Vec<Job>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM jobs {filter}"))?;
    let jobs = stmt
        .query_map(params, job_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(jobs)
}

/// An error as its code and message columns hold it.
fn error_columns(error: Option<&JobError>) -> (Option<&str>, Option<&str>) {
    match error {
        Some(e) => (Some(e.code.as_str()), Some(e.message.as_str())),
        None => (None, None),
    }
}

/// The error its code and message columns hold, if any.
fn error_from_columns(code: Option<String>, message: Option<String>) -> Option<JobError> {
    code.map(|code| JobError {
        code,
        message: message.unwrap_or_default(),
    })
}

/// Asks the lifecycle what `event` does to `job` and writes the answer, inside the
/// caller's write transaction.
fn apply(
    conn: &Connection,
    job: &Job,
    event: &Event,
    now: i64,
    rules: &Rules,
) -> Result<Option<Change>> {
    let Some(change) = lifecycle::decide(job, event, now, rules)? else {
        return Ok(None);
    };
    let j = &change.job;
    let (code, message) = error_columns(j.last_error.as_ref());
    conn.prepare_cached(
        "UPDATE jobs SET status = ?2, attempts = ?3, lease_owner = ?4, lease_expires_at = ?5,
            next_attempt_at = ?6, updated_at = ?7, last_error_code = ?8, last_error_message = ?9,
            sent_at = ?10, message_id = ?11, recipient = ?12, recipient_lid = ?13,
            delivered_at = ?14, read_at = ?15, delivery_overdue = ?16,
            logged_at = CASE WHEN ?17 THEN NULL ELSE logged_at END
         WHERE id = ?1",
    )?
    .execute(params![
        j.id,
        j.status.as_str(),
        j.attempts,
        j.lease_owner,
        j.lease_expires_at,
        j.next_attempt_at,
        j.updated_at,
        code,
        message,
        j.sent_at,
        j.message_id,
        j.recipient,
        j.recipient_lid,
        j.delivered_at,
        j.read_at,
        j.delivery_overdue,
        change.log,
    ])?;
    if let Some(step) = &change.step {
        record_step(conn, &j.id, step)?;
    }
    Ok(Some(change))
}

/// Adds `step` to the job's history, dropping its oldest steps past [`MAX_STEPS`].
fn record_step(conn: &Connection, id: &str, step: &Step) -> Result<()> {
    let (code, message) = error_columns(step.error.as_ref());
    conn.prepare_cached(
        "INSERT INTO job_steps (job_id, at, kind, attempt, owner, error_code, error_message,
            next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        id,
        step.at,
        step.kind.as_str(),
        step.attempt,
        step.owner,
        code,
        message,
        step.next_attempt_at,
    ])?;
    conn.prepare_cached(
        "DELETE FROM job_steps WHERE job_id = ?1 AND rowid NOT IN
            (SELECT rowid FROM job_steps WHERE job_id = ?1 ORDER BY rowid DESC LIMIT ?2)",
    )?
    .execute(params![id, MAX_STEPS as i64])?;
    Ok(())
}

fn steps_of(conn: &Connection, id: &str) -> Result<Vec<Step>> {
    let mut stmt = conn.prepare_cached(
        "SELECT at, kind, attempt, owner, error_code, error_message, next_attempt_at
         FROM job_steps WHERE job_id = ?1 ORDER BY rowid",
    )?;
    let steps = stmt
        .query_map([id], |row| {
            let kind: String = row.get(1)?;
            let code: Option<String> = row.get(4)?;
            let message: Option<String> = row.get(5)?;
            // Only this module writes the column, always from `StepKind::as_str`.
            let Some(kind) = StepKind::parse(&kind) else {
                return Ok(None);
            };
            Ok(Some(Step {
                at: row.get(0)?,
                kind,
                attempt: row.get(2)?,
                owner: row.get(3)?,
                error: error_from_columns(code, message),
                next_attempt_at: row.get(6)?,
            }))
        })?
        .filter_map(|step| step.transpose())
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(steps)
}

#[async_trait]
impl Store for LocalQueue {
    fn backend(&self) -> &'static str {
        "local"
    }

    async fn enqueue(&self, job: NewJob, now: i64) -> Result<Enqueued> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            if let Some(id) = &job.id
                && let Some(existing) = get_job(&tx, id)?
            {
                lifecycle::same_job(&existing, &job)?;
                return Ok(Enqueued {
                    job: existing,
                    created: false,
                });
            }
            let id = job.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let media = job.media;
            tx.prepare_cached(
                "INSERT INTO jobs (id, to_input, message, status, send_at, created_at, updated_at,
                    account, recipient, media_url, media_data, media_mime_type, media_file_name)
                 VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                id,
                job.to,
                job.message,
                job.send_at,
                now,
                job.account,
                job.recipient,
                media.as_ref().and_then(|m| match &m.source {
                    MediaSource::Url(url) => Some(url.as_str()),
                    _ => None,
                }),
                // A new job's inline media always has its bytes.
                media.as_ref().and_then(|m| match &m.source {
                    MediaSource::Inline(data) => Some(data.as_ref()),
                    _ => None,
                }),
                media.as_ref().and_then(|m| m.mime_type.as_deref()),
                media.as_ref().and_then(|m| m.file_name.as_deref()),
            ])?;
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

    /// The lease is written to the log only ([`Durability::Log`]): should a power
    /// loss undo it, the job is pending again, and the gateway's send log (on the disk
    /// before anything is sent) keeps a second lease from sending it twice. The outcome
    /// that follows is written to the disk, and takes the lease with it.
    ///
    /// The default account's lane reads every job that names no other account it
    /// knows, so it also ends the jobs naming an account nobody sends for.
    async fn lease_next(
        &self,
        lease: &Event,
        lane: &Lane,
        now: i64,
        rules: &Rules,
    ) -> Result<Vec<Change>> {
        let (lease, lane, rules) = (lease.clone(), lane.clone(), *rules);
        self.with_at(Durability::Log, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // ?1 is the time; the account names follow.
            let names = if lane.is_default() {
                lane.others()
            } else {
                vec![lane.account.as_str()]
            };
            let marks: Vec<String> = (2..names.len() + 2).map(|i| format!("?{i}")).collect();
            let accounts = if lane.is_default() {
                format!("(account IS NULL OR account NOT IN ({}))", marks.join(", "))
            } else {
                "account = ?2".to_owned()
            };
            let sql = format!(
                "WHERE status = 'pending' AND {accounts}
                   AND COALESCE(send_at, 0) <= ?1 AND COALESCE(next_attempt_at, 0) <= ?1
                 ORDER BY created_at, rowid LIMIT 20"
            );
            let mut values = vec![rusqlite::types::Value::from(now)];
            values.extend(
                names
                    .iter()
                    .map(|n| rusqlite::types::Value::from(n.to_string())),
            );
            let candidates = select(&tx, &sql, rusqlite::params_from_iter(values))?;
            let mut changes = Vec::new();
            for job in candidates {
                let event = match lane.pick(job.account.as_deref()) {
                    Pick::Take => &lease,
                    Pick::Skip => continue,
                    Pick::Unknown(error) => &Event::Malformed(error),
                };
                if let Some(change) = apply(&tx, &job, event, now, &rules)? {
                    let leased = change.job.status == JobStatus::Processing;
                    changes.push(change);
                    if leased {
                        break;
                    }
                }
            }
            tx.commit()?;
            Ok(changes)
        })
        .await
    }

    async fn update(
        &self,
        id: &str,
        event: &Event,
        now: i64,
        rules: &Rules,
    ) -> Result<Option<Change>> {
        let (id, event, rules) = (id.to_owned(), event.clone(), *rules);
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(job) = get_job(&tx, &id)? else {
                return Ok(None);
            };
            let change = apply(&tx, &job, &event, now, &rules)?;
            tx.commit()?;
            Ok(change)
        })
        .await
    }

    async fn update_all(
        &self,
        selection: &Selection,
        event: &Event,
        now: i64,
        rules: &Rules,
    ) -> Result<Vec<Change>> {
        let (selection, event, rules) = (selection.clone(), event.clone(), *rules);
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let jobs = match &selection {
                Selection::ExpiredLeases { now } => select(
                    &tx,
                    "WHERE status = 'processing' AND lease_expires_at <= ?1",
                    params![now],
                )?,
                Selection::HeldBy { owner } => select(
                    &tx,
                    "WHERE status = 'processing' AND lease_owner = ?1",
                    params![owner],
                )?,
            };
            let mut changes = Vec::new();
            for job in jobs {
                changes.extend(apply(&tx, &job, &event, now, &rules)?);
            }
            tx.commit()?;
            Ok(changes)
        })
        .await
    }

    async fn steps(&self, id: &str) -> Result<Vec<Step>> {
        self.read(|conn| steps_of(conn, id)).await
    }

    async fn get(&self, id: &str) -> Result<Option<Job>> {
        self.read(|conn| get_job(conn, id)).await
    }

    async fn list(
        &self,
        statuses: &[JobStatus],
        lane: Option<&Lane>,
        limit: usize,
    ) -> Result<Vec<Job>> {
        let mut values: Vec<rusqlite::types::Value> = statuses
            .iter()
            .map(|s| rusqlite::types::Value::from(s.as_str().to_owned()))
            .collect();
        let mut filters = Vec::new();
        if !statuses.is_empty() {
            filters.push(format!(
                "status IN ({})",
                vec!["?"; statuses.len()].join(", ")
            ));
        }
        if let Some(lane) = lane {
            values.push(rusqlite::types::Value::from(lane.account.clone()));
            filters.push(if lane.is_default() {
                "(account IS NULL OR account = ?)".to_owned()
            } else {
                "account = ?".to_owned()
            });
        }
        self.with(move |conn| {
            let filter = if filters.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", filters.join(" AND "))
            };
            let sql = format!(
                "SELECT {LIST_COLUMNS} FROM jobs {filter} ORDER BY updated_at DESC, rowid DESC LIMIT {limit}"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let jobs = stmt
                .query_map(rusqlite::params_from_iter(values), job_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(jobs)
        })
        .await
    }

    async fn search(&self, search: &Search, after: Option<&str>, limit: usize) -> Result<Page> {
        let (search, after) = (search.clone(), after.map(str::to_owned));
        self.with(move |conn| {
            use rusqlite::types::Value;
            let mut conditions = Vec::new();
            let mut values: Vec<Value> = Vec::new();
            if !search.statuses.is_empty() {
                // The words come from `JobStatus::as_str`, never from the request.
                let list = search
                    .statuses
                    .iter()
                    .map(|s| format!("'{}'", s.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ");
                conditions.push(format!("status IN ({list})"));
            }
            let mut bind = |condition: &str, value: Value| {
                values.push(value);
                conditions.push(condition.replace('?', &format!("?{}", values.len())));
            };
            if let Some(lane) = &search.account {
                if lane.is_default() {
                    bind("(account IS NULL OR account = ?)", lane.account.clone().into());
                } else {
                    bind("account = ?", lane.account.clone().into());
                }
            }
            if let Some(recipient) = &search.recipient {
                bind("recipient = ?", recipient.clone().into());
            }
            if let Some(id) = &search.id {
                bind("id = ?", id.clone().into());
            }
            if let Some(from) = search.created_from {
                bind("created_at >= ?", from.into());
            }
            if let Some(until) = search.created_until {
                bind("created_at < ?", until.into());
            }
            if let Some(after) = &after {
                let Some(last) = get_job(conn, after)? else {
                    return Err(Page::cursor_gone(after));
                };
                values.push(last.created_at.into());
                values.push(last.id.into());
                let (a, b) = (values.len() - 1, values.len());
                conditions.push(format!("(created_at, id) < (?{a}, ?{b})"));
            }
            let filter = if conditions.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", conditions.join(" AND "))
            };
            let sql = format!(
                "SELECT {LIST_COLUMNS} FROM jobs {filter} ORDER BY created_at DESC, id DESC LIMIT {limit}"
            );
            let jobs = conn
                .prepare_cached(&sql)?
                .query_map(rusqlite::params_from_iter(values), job_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let next = (jobs.len() == limit)
                .then(|| jobs.last().map(|j| j.id.clone()))
                .flatten();
            Ok(Page { jobs, next })
        })
        .await
    }

    async fn histogram(&self, metric: Metric, span: Span) -> Result<Vec<u64>> {
        let (time, only) = match metric {
            Metric::Sent => ("sent_at", ""),
            Metric::Delivered => ("delivered_at", ""),
            Metric::Read => ("read_at", ""),
            Metric::Failed => ("updated_at", "AND status = 'failed'"),
        };
        self.with(move |conn| {
            let sql = format!(
                "SELECT ({time} - ?1) / ?2, COUNT(*) FROM jobs
                 WHERE {time} >= ?1 AND {time} < ?3 {only} GROUP BY 1"
            );
            let mut counts = vec![0; span.count];
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![span.from, span.width, span.until()], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
            })?;
            for row in rows {
                let (i, n) = row?;
                if let Some(count) = usize::try_from(i).ok().and_then(|i| counts.get_mut(i)) {
                    *count = n as u64;
                }
            }
            Ok(counts)
        })
        .await
    }

    async fn sent_between(&self, from: i64, until: i64) -> Result<Totals> {
        self.with(move |conn| {
            let (sent, delivered, read) = conn
                .prepare_cached(
                    "SELECT COUNT(*), COUNT(CASE WHEN status IN ('delivered', 'read') THEN 1 END),
                        COUNT(CASE WHEN status = 'read' THEN 1 END)
                     FROM jobs WHERE sent_at >= ?1 AND sent_at < ?2",
                )?
                .query_row(params![from, until], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, i64>(2)?,
                    ))
                })?;
            Ok(Totals {
                sent: sent as u64,
                delivered: delivered as u64,
                read: read as u64,
                failed: 0,
            })
        })
        .await
    }

    async fn failure_reasons(&self, from: i64, limit: usize) -> Result<Vec<Reason>> {
        self.with(move |conn| {
            // The newest failure of each code gives its message.
            let mut stmt = conn.prepare_cached(
                "SELECT COALESCE(last_error_code, ''), COUNT(*),
                    (SELECT last_error_message FROM jobs AS newest
                     WHERE newest.status = 'failed' AND newest.updated_at >= ?1
                       AND COALESCE(newest.last_error_code, '') = COALESCE(jobs.last_error_code, '')
                     ORDER BY newest.updated_at DESC LIMIT 1)
                 FROM jobs WHERE status = 'failed' AND updated_at >= ?1
                 GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?2",
            )?;
            let reasons = stmt
                .query_map(params![from, limit as i64], |row| {
                    Ok(Reason {
                        code: row.get(0)?,
                        count: row.get::<_, i64>(1)? as u64,
                        message: row.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(reasons)
        })
        .await
    }

    async fn counts(&self) -> Result<Counts> {
        self.with(|conn| Ok(count(conn, None)?)).await
    }

    async fn account_counts(&self, account: &str) -> Result<Counts> {
        let account = account.to_owned();
        self.with(move |conn| Ok(count(conn, Some(&account))?))
            .await
    }

    async fn next_due_at(&self, now: i64) -> Result<Option<i64>> {
        self.read(move |conn| {
            Ok(conn.prepare_cached("SELECT MIN(MAX(COALESCE(send_at, 0), COALESCE(next_attempt_at, 0))) FROM jobs
                 WHERE status = 'pending' AND MAX(COALESCE(send_at, 0), COALESCE(next_attempt_at, 0)) > ?1")?
    .query_row([now],
                |row| row.get::<_, Option<i64>>(0),
            )?)
        })
        .await
    }

    async fn unlogged(&self, limit: usize) -> Result<Vec<Job>> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {LIST_COLUMNS} FROM jobs
                 WHERE status IN ('sent', 'delivered', 'read', 'failed') AND logged_at IS NULL
                 ORDER BY updated_at LIMIT {limit}"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let jobs = stmt
                .query_map([], job_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(jobs)
        })
        .await
    }

    /// Written to the log only: should a power loss undo the mark, the outcome is
    /// handed to the logger again, which keeps one row per job, status and time.
    async fn mark_logged(&self, outcomes: Vec<(String, i64)>, now: i64) -> Result<()> {
        self.with_at(Durability::Log, move |conn| {
            let tx = conn.transaction()?;
            {
                let mut mark = tx.prepare_cached(
                    "UPDATE jobs SET logged_at = ?3 WHERE id = ?1 AND updated_at = ?2",
                )?;
                for (id, updated_at) in outcomes {
                    mark.execute(params![id, updated_at, now])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}
