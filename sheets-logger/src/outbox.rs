//! The durable outbox: every recorded outcome is committed to SQLite before `Record`
//! is acknowledged, and stays until Google Sheets has acknowledged its row. The keys of
//! rows already in the sheet are remembered for a while, so an outcome recorded again
//! after its row was written (the dispatcher never saw the first `Record` answered) is
//! not written twice.

use std::path::Path;

use abtrack_proto::sqlite::{Db, SetAside};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};

/// Statuses a record may carry.
pub const STATUSES: &[&str] = &["sent", "failed"];

/// How long the key of a row in the sheet is remembered. A dispatcher repeats a
/// `Record` whose answer it did not get as soon as the logger is back, so a repeat
/// comes seconds or minutes later; a month covers a dispatcher that stayed down.
const WRITTEN_KEPT_MS: i64 = 30 * 24 * 3600 * 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub job_id: String,
    pub status: String,
    pub recipient: String,
    pub attempts: u32,
    pub message_id: String,
    pub error_code: String,
    pub error_message: String,
    /// Empty unless the operator enabled message texts.
    pub message: String,
    pub occurred_at: i64,
    /// The WhatsApp account that sent it; empty from a dispatcher that names none.
    pub account: String,
    /// The media's kind and file name (`document: Rekap.pdf`); empty for a text.
    pub media: String,
}

#[derive(Clone)]
pub struct Outbox {
    db: Db,
    set_aside: Option<SetAside>,
}

impl Outbox {
    /// Opens (or creates) the outbox at `path`; a damaged file is moved aside and
    /// its readable records carried over into a fresh one.
    pub fn open(path: &Path) -> Result<Self> {
        let (db, set_aside) = Db::open_healing(
            path,
            std::time::Duration::from_secs(5),
            "CREATE TABLE IF NOT EXISTS outbox (
                seq           INTEGER PRIMARY KEY AUTOINCREMENT,
                job_id        TEXT NOT NULL,
                status        TEXT NOT NULL,
                recipient     TEXT NOT NULL,
                attempts      INTEGER NOT NULL,
                message_id    TEXT NOT NULL,
                error_code    TEXT NOT NULL,
                error_message TEXT NOT NULL,
                message       TEXT NOT NULL,
                occurred_at   INTEGER NOT NULL,
                recorded_at   INTEGER NOT NULL,
                UNIQUE (job_id, status, occurred_at)
            );
            CREATE TABLE IF NOT EXISTS meta (
                key   TEXT PRIMARY KEY,
                value TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS written (
                job_id      TEXT NOT NULL,
                status      TEXT NOT NULL,
                occurred_at INTEGER NOT NULL,
                seq         INTEGER NOT NULL,
                written_at  INTEGER NOT NULL,
                PRIMARY KEY (job_id, status, occurred_at)
            );
            CREATE INDEX IF NOT EXISTS written_by_age ON written (written_at);",
            |db| {
                db.ensure_column("outbox", "account", "TEXT NOT NULL DEFAULT ''", None)?;
                db.ensure_column("outbox", "media", "TEXT NOT NULL DEFAULT ''", None)?;
                Ok(())
            },
            &["outbox", "meta", "written"],
        )?;
        Ok(Self { db, set_aside })
    }

    /// The damaged file this outbox replaced at start, if any.
    pub fn set_aside(&self) -> Option<&SetAside> {
        self.set_aside.as_ref()
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        self.db
            .call(f)
            .await
            .map_err(|e| Error::Internal(format!("outbox task failed: {e}")))?
            .map_err(Error::from)
    }

    /// Commits records, all in one transaction. Returns each one's sequence number and
    /// whether it was already there (the same job, status and time: the same outcome
    /// recorded again), waiting in the outbox or already in the sheet.
    pub async fn insert_all(&self, records: Vec<Record>, now: i64) -> Result<Vec<(u64, bool)>> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let mut answers = Vec::with_capacity(records.len());
            for record in records {
                answers.push(insert(&tx, record, now)?);
            }
            tx.commit()?;
            Ok(answers)
        })
        .await
    }

    /// The oldest `limit` records, in the order they were recorded.
    pub async fn oldest(&self, limit: usize) -> Result<Vec<(u64, Record)>> {
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, job_id, status, recipient, attempts, message_id, error_code, error_message,
                    message, occurred_at, account, media
                 FROM outbox ORDER BY seq LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit as i64], |row| {
                Ok((
                    row.get::<_, i64>(0)? as u64,
                    Record {
                        job_id: row.get(1)?,
                        status: row.get(2)?,
                        recipient: row.get(3)?,
                        attempts: row.get(4)?,
                        message_id: row.get(5)?,
                        error_code: row.get(6)?,
                        error_message: row.get(7)?,
                        message: row.get(8)?,
                        occurred_at: row.get(9)?,
                        account: row.get(10)?,
                        media: row.get(11)?,
                    },
                ))
            })?;
            rows.collect()
        })
        .await
    }

    /// The time the oldest record was recorded, if any.
    pub async fn oldest_recorded_at(&self) -> Result<Option<i64>> {
        self.with(|conn| {
            conn.prepare_cached("SELECT recorded_at FROM outbox ORDER BY seq LIMIT 1")?
                .query_row([], |row| row.get(0))
                .optional()
        })
        .await
    }

    /// Removes records whose rows are in the sheet (Google acknowledged them, or the
    /// sheet was read back), remembers their keys, and clears the in-flight mark.
    pub async fn remove(&self, seqs: Vec<u64>, now: i64) -> Result<()> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut remember = tx.prepare_cached(
                    "INSERT OR IGNORE INTO written (job_id, status, occurred_at, seq, written_at)
                     SELECT job_id, status, occurred_at, seq, ?2 FROM outbox WHERE seq = ?1",
                )?;
                let mut delete = tx.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?;
                for seq in seqs {
                    remember.execute(params![seq as i64, now])?;
                    delete.execute([seq as i64])?;
                }
            }
            tx.prepare_cached("DELETE FROM written WHERE written_at < ?1")?
                .execute([now - WRITTEN_KEPT_MS])?;
            tx.prepare_cached("DELETE FROM meta WHERE key = 'in_flight'")?
                .execute([])?;
            tx.commit()
        })
        .await
    }

    /// Marks that an append is about to be sent: if the process stops before the
    /// answer, the next start checks the sheet before sending these records again.
    pub async fn set_in_flight(&self, in_flight: bool) -> Result<()> {
        self.with(move |conn| {
            if in_flight {
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('in_flight', '1')",
                )?
                .execute([])?;
            } else {
                conn.prepare_cached("DELETE FROM meta WHERE key = 'in_flight'")?
                    .execute([])?;
            }
            Ok(())
        })
        .await
    }

    pub async fn in_flight(&self) -> Result<bool> {
        self.with(|conn| {
            conn.prepare_cached("SELECT 1 FROM meta WHERE key = 'in_flight'")?
                .query_row([], |_| Ok(()))
                .optional()
                .map(|found| found.is_some())
        })
        .await
    }

    /// Removes records recorded before `before` (ms since the epoch); used only while
    /// Sheets logging is off, so the outbox does not grow without end.
    pub async fn prune_recorded_before(&self, before: i64) -> Result<u64> {
        self.with(move |conn| {
            conn.prepare_cached("DELETE FROM outbox WHERE recorded_at < ?1")?
                .execute([before])
        })
        .await
        .map(|n| n as u64)
    }

    /// Records not yet acknowledged by Google Sheets.
    pub async fn backlog(&self) -> Result<u64> {
        self.with(|conn| {
            conn.prepare_cached("SELECT COUNT(*) FROM outbox")?
                .query_row([], |row| row.get::<_, i64>(0))
        })
        .await
        .map(|n| n as u64)
    }
}

/// Adds `record` within `tx` unless it is already there; its sequence number and
/// whether it was.
fn insert(
    tx: &rusqlite::Transaction<'_>,
    record: Record,
    now: i64,
) -> rusqlite::Result<(u64, bool)> {
    let existing: Option<i64> = tx
        .prepare_cached(
            "SELECT seq FROM outbox WHERE job_id = ?1 AND status = ?2 AND occurred_at = ?3
             UNION ALL
             SELECT seq FROM written WHERE job_id = ?1 AND status = ?2 AND occurred_at = ?3",
        )?
        .query_row(
            params![record.job_id, record.status, record.occurred_at],
            |row| row.get(0),
        )
        .optional()?;
    if let Some(seq) = existing {
        return Ok((seq as u64, true));
    }
    tx.prepare_cached(
        "INSERT INTO outbox (job_id, status, recipient, attempts, message_id, error_code,
            error_message, message, occurred_at, recorded_at, account, media)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        record.job_id,
        record.status,
        record.recipient,
        record.attempts,
        record.message_id,
        record.error_code,
        record.error_message,
        record.message,
        record.occurred_at,
        now,
        record.account,
        record.media
    ])?;
    Ok((tx.last_insert_rowid() as u64, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Outbox {
        /// [`Outbox::insert_all`] for one record.
        async fn insert(&self, record: Record, now: i64) -> Result<(u64, bool)> {
            Ok(self.insert_all(vec![record], now).await?.remove(0))
        }
    }

    fn record(job: &str, status: &str, attempts: u32) -> Record {
        Record {
            job_id: job.into(),
            status: status.into(),
            recipient: "6281234567890@s.whatsapp.net".into(),
            attempts,
            message_id: "3EB0".into(),
            error_code: String::new(),
            error_message: String::new(),
            message: String::new(),
            occurred_at: i64::from(attempts) * 1000,
            account: String::new(),
            media: String::new(),
        }
    }

    #[tokio::test]
    async fn records_are_durable_and_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        {
            let outbox = Outbox::open(&path).unwrap();
            assert_eq!(
                outbox.insert(record("a", "sent", 1), 1).await.unwrap(),
                (1, false)
            );
            assert_eq!(
                outbox.insert(record("b", "failed", 3), 1).await.unwrap(),
                (2, false)
            );
            assert_eq!(
                outbox.insert(record("a", "sent", 1), 2).await.unwrap(),
                (1, true)
            );
            // Failed, retried by an operator, failed again later: a second row.
            assert_eq!(
                outbox.insert(record("b", "failed", 1), 2).await.unwrap(),
                (3, false)
            );
        }
        let outbox = Outbox::open(&path).unwrap();
        assert_eq!(outbox.backlog().await.unwrap(), 3);
        // A batch is one commit; a repeat within it or of an earlier record is
        // answered as the repeat it is.
        assert_eq!(
            outbox
                .insert_all(
                    vec![
                        record("c", "sent", 1),
                        record("a", "sent", 1),
                        record("c", "sent", 1),
                    ],
                    3
                )
                .await
                .unwrap(),
            [(4, false), (1, true), (4, true)]
        );
        outbox.remove(vec![4], 3).await.unwrap();
        assert_eq!(outbox.backlog().await.unwrap(), 3);
        let oldest = outbox.oldest(2).await.unwrap();
        assert_eq!(
            oldest.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(oldest[1].1, record("b", "failed", 3));
        outbox.set_in_flight(true).await.unwrap();
        assert!(outbox.in_flight().await.unwrap());
        outbox.remove(vec![1, 2], 3).await.unwrap();
        assert!(!outbox.in_flight().await.unwrap());
        assert_eq!(outbox.backlog().await.unwrap(), 1);
        assert_eq!(outbox.oldest_recorded_at().await.unwrap(), Some(2));
    }

    #[tokio::test]
    async fn an_outcome_recorded_again_after_its_row_was_written_is_a_repeat() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        {
            let outbox = Outbox::open(&path).unwrap();
            outbox.insert(record("a", "sent", 1), 1).await.unwrap();
            outbox.remove(vec![1], 10).await.unwrap();
            // The dispatcher did not get the first answer and records it again.
            assert_eq!(
                outbox.insert(record("a", "sent", 1), 20).await.unwrap(),
                (1, true)
            );
            assert_eq!(outbox.backlog().await.unwrap(), 0);
        }
        // Remembered across a restart; a later outcome of the same job is new.
        let outbox = Outbox::open(&path).unwrap();
        assert_eq!(
            outbox.insert(record("a", "sent", 1), 30).await.unwrap(),
            (1, true)
        );
        assert_eq!(
            outbox.insert(record("a", "failed", 2), 30).await.unwrap(),
            (2, false)
        );
        // Keys are forgotten after a month.
        let month = WRITTEN_KEPT_MS + 11;
        outbox.remove(vec![2], month).await.unwrap();
        assert_eq!(
            outbox.insert(record("a", "sent", 1), month).await.unwrap(),
            (3, false)
        );
        assert_eq!(
            outbox
                .insert(record("a", "failed", 2), month)
                .await
                .unwrap(),
            (2, true)
        );
    }
}
