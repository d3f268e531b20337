//! The durable job id -> message id log that makes `Send` idempotent across retries
//! and restarts: the intent (with the message id chosen up front) is written before
//! sending, the outcome after.

use std::path::Path;

use abtrack_proto::sqlite::{Db, Durability, SetAside};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};

/// One job's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub job_id: String,
    pub message_id: String,
    pub recipient: String,
    /// Set once the messenger accepted the message; `None` means the intent was
    /// written and the process may have stopped before or during the send.
    pub sent_at: Option<i64>,
    /// The recipient's LID (`…@lid`), when WhatsApp addresses the recipient by one.
    pub recipient_lid: Option<String>,
}

/// A sent message whose delivery receipt is overdue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overdue {
    pub job_id: String,
    pub message_id: String,
}

#[derive(Clone)]
pub struct SendLog {
    db: Db,
    set_aside: Option<SetAside>,
}

impl SendLog {
    /// Opens (or creates) the log at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let (db, set_aside) = Db::open_healing(
            path,
            std::time::Duration::from_secs(5),
            "CREATE TABLE IF NOT EXISTS sends (
                job_id     TEXT PRIMARY KEY,
                message_id TEXT NOT NULL UNIQUE,
                recipient  TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                sent_at    INTEGER
            );
            -- Whether a recipient was written to before (a new chat or not), per send.
            CREATE INDEX IF NOT EXISTS sends_by_recipient ON sends (recipient)
                WHERE sent_at IS NOT NULL;
            -- The sends of the last 24 hours, which the dashboard shows against the cap.
            CREATE INDEX IF NOT EXISTS sends_by_sent_at ON sends (sent_at)
                WHERE sent_at IS NOT NULL;",
            |db| {
                // Delivery tracking came later: messages sent before it are not
                // reported overdue.
                db.ensure_column("sends", "delivered_at", "INTEGER", None)?;
                db.ensure_column(
                    "sends",
                    "overdue_at",
                    "INTEGER",
                    Some("UPDATE sends SET overdue_at = sent_at WHERE sent_at IS NOT NULL;"),
                )?;
                db.ensure_column("sends", "recipient_lid", "TEXT", None)?;
                Ok(())
            },
            &["sends"],
        )?;
        Ok(Self { db, set_aside })
    }

    /// The damaged file this log replaced at start, if any.
    pub fn set_aside(&self) -> Option<&SetAside> {
        self.set_aside.as_ref()
    }

    /// Notes that a receipt (delivered or read) came for `message_id`.
    pub async fn mark_delivered(&self, message_id: &str, at: i64) -> Result<()> {
        let message_id = message_id.to_owned();
        self.with(move |conn| {
            conn.prepare_cached(
                "UPDATE sends SET delivered_at = COALESCE(delivered_at, ?2) WHERE message_id = ?1",
            )?
            .execute(params![message_id, at])
        })
        .await?;
        Ok(())
    }

    /// The messages sent before `sent_before` that have no receipt and were not
    /// reported yet; marks them reported at `now`, so each is reported once.
    pub async fn take_overdue(&self, sent_before: i64, now: i64) -> Result<Vec<Overdue>> {
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(
                "UPDATE sends SET overdue_at = ?2
                 WHERE sent_at IS NOT NULL AND sent_at < ?1
                   AND delivered_at IS NULL AND overdue_at IS NULL
                 RETURNING job_id, message_id",
            )?;
            let rows = stmt
                .query_map(params![sent_before, now], |row| {
                    Ok(Overdue {
                        job_id: row.get(0)?,
                        message_id: row.get(1)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        self.with_at(Durability::Disk, f).await
    }

    /// A lookup by key, on the calling thread ([`Db::read`]).
    async fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        self.db
            .read(move |conn| f(conn))
            .await
            .map_err(|e| Error::Internal(format!("send log task failed: {e}")))?
            .map_err(Error::from)
    }

    async fn with_at<T: Send + 'static>(
        &self,
        durability: Durability,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        self.db
            .call_at(durability, move |conn| f(conn))
            .await
            .map_err(|e| Error::Internal(format!("send log task failed: {e}")))?
            .map_err(Error::from)
    }

    pub async fn get(&self, job_id: &str) -> Result<Option<Entry>> {
        self.read(|conn| {
            conn.prepare_cached("SELECT job_id, message_id, recipient, sent_at, recipient_lid FROM sends WHERE job_id = ?1")?
    .query_row([job_id],
                row_to_entry,
            )
            .optional()
        })
        .await
    }

    /// Whether a message to `recipient` went out before.
    pub async fn has_sent_to(&self, recipient: &str) -> Result<bool> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM sends WHERE recipient = ?1 AND sent_at IS NOT NULL)",
            )?
            .query_row([recipient], |row| row.get(0))
        })
        .await
    }

    pub async fn by_message_id(&self, message_id: &str) -> Result<Option<Entry>> {
        self.read(|conn| {
            conn.prepare_cached("SELECT job_id, message_id, recipient, sent_at, recipient_lid FROM sends WHERE message_id = ?1")?
    .query_row([message_id],
                row_to_entry,
            )
            .optional()
        })
        .await
    }

    /// Writes the intent to send `job_id` as `message_id`. Keeps an existing intent.
    pub async fn write_intent(&self, entry: &Entry, now: i64) -> Result<()> {
        let e = entry.clone();
        self.with(move |conn| {
            conn.prepare_cached("INSERT INTO sends (job_id, message_id, recipient, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (job_id) DO NOTHING")?
    .execute(params![e.job_id, e.message_id, e.recipient, now],
            )
        })
        .await?;
        Ok(())
    }

    /// When each message sent since `since` (ms since the epoch) went out: the pacer's
    /// memory of the last 24 hours survives a restart.
    pub async fn sent_since(&self, since: i64) -> Result<Vec<i64>> {
        self.with(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT sent_at FROM sends WHERE sent_at >= ?1 ORDER BY sent_at")?;
            let times = stmt
                .query_map([since], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<i64>>>()?;
            Ok(times)
        })
        .await
    }

    /// How many messages went out since `since` (ms since the epoch), and, when they
    /// are at least `cap`, when the one that must age out before another may go
    /// went out.
    pub async fn sent_count_since(&self, since: i64, cap: u32) -> Result<(u64, Option<i64>)> {
        self.with(move |conn| {
            let n: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM sends WHERE sent_at >= ?1")?
                .query_row([since], |row| row.get(0))?;
            if cap == 0 || n < i64::from(cap) {
                return Ok((n.max(0) as u64, None));
            }
            let holding: Option<i64> = conn
                .prepare_cached(
                    "SELECT sent_at FROM sends WHERE sent_at >= ?1 ORDER BY sent_at LIMIT 1 OFFSET ?2",
                )?
                .query_row(params![since, n - i64::from(cap)], |row| row.get(0))
                .optional()?;
            Ok((n as u64, holding))
        })
        .await
    }

    /// Records that `job_id` went out at `sent_at`, to the recipient's LID if
    /// WhatsApp addresses the recipient by one.
    ///
    /// Written to the log only ([`Durability::Log`]): the intent before it is on the
    /// disk, and should a power loss undo this mark, a retry sends again under the same
    /// message id, as after any crash between the send and the mark.
    pub async fn mark_sent(
        &self,
        job_id: &str,
        sent_at: i64,
        recipient_lid: Option<&str>,
    ) -> Result<()> {
        let job_id = job_id.to_owned();
        let recipient_lid = recipient_lid.map(str::to_owned);
        self.with_at(Durability::Log, move |conn| {
            conn.prepare_cached(
                "UPDATE sends SET sent_at = ?2, recipient_lid = ?3
                 WHERE job_id = ?1 AND sent_at IS NULL",
            )?
            .execute(params![job_id, sent_at, recipient_lid])
        })
        .await?;
        Ok(())
    }
}

fn row_to_entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        job_id: row.get(0)?,
        message_id: row.get(1)?,
        recipient: row.get(2)?,
        sent_at: row.get(3)?,
        recipient_lid: row.get(4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn intent_then_sent_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sends.sqlite3");
        let entry = Entry {
            job_id: "job-1".into(),
            message_id: "3EB0AA".into(),
            recipient: "6281234567890@s.whatsapp.net".into(),
            sent_at: None,
            recipient_lid: None,
        };
        {
            let log = SendLog::open(&path).unwrap();
            log.write_intent(&entry, 1).await.unwrap();
            // A second intent for the same job keeps the first message id.
            let other = Entry {
                message_id: "OTHER".into(),
                ..entry.clone()
            };
            log.write_intent(&other, 2).await.unwrap();
        }
        let log = SendLog::open(&path).unwrap();
        assert_eq!(log.get("job-1").await.unwrap(), Some(entry.clone()));
        log.mark_sent("job-1", 42, Some("170000000000001@lid"))
            .await
            .unwrap();
        log.mark_sent("job-1", 43, None).await.unwrap();
        let got = log.by_message_id("3EB0AA").await.unwrap().unwrap();
        assert_eq!(got.sent_at, Some(42));
        assert_eq!(got.recipient_lid.as_deref(), Some("170000000000001@lid"));
        assert!(log.has_sent_to(&entry.recipient).await.unwrap());
        assert!(
            !log.has_sent_to("6281234567891@s.whatsapp.net")
                .await
                .unwrap()
        );
        assert_eq!(log.sent_since(42).await.unwrap(), [42]);
        assert!(log.sent_since(43).await.unwrap().is_empty());
        assert_eq!(log.get("nope").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_message_without_a_receipt_is_reported_overdue_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = SendLog::open(&dir.path().join("sends.sqlite3")).unwrap();
        for (job, id) in [("late", "M1"), ("seen", "M2"), ("fresh", "M3")] {
            let entry = Entry {
                job_id: job.into(),
                message_id: id.into(),
                recipient: "6281234567890@s.whatsapp.net".into(),
                sent_at: None,
                recipient_lid: None,
            };
            log.write_intent(&entry, 1).await.unwrap();
        }
        for (job, at) in [("late", 100), ("seen", 100), ("fresh", 900)] {
            log.mark_sent(job, at, None).await.unwrap();
        }
        log.mark_delivered("M2", 150).await.unwrap();
        let overdue = log.take_overdue(500, 1000).await.unwrap();
        assert_eq!(
            overdue,
            [Overdue {
                job_id: "late".into(),
                message_id: "M1".into()
            }]
        );
        assert!(log.take_overdue(500, 1001).await.unwrap().is_empty());
    }
}
