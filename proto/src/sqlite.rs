//! A SQLite database kept durable (WAL, `synchronous = FULL`) and used without
//! blocking the async runtime: every call runs on the blocking pool.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
}

impl Db {
    /// Opens (or creates) the database at `path` and applies `schema`, which must be
    /// idempotent (`CREATE ... IF NOT EXISTS`).
    pub fn open(path: &Path, busy_timeout: Duration, schema: &str) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(busy_timeout)?;
        conn.execute_batch(schema)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Adds `column` (`definition` is its type and default) to `table` unless it is
    /// there, and then runs `backfill` once: how a data file written by an older
    /// version gains a field. Answers whether the column was added.
    pub fn ensure_column(
        &self,
        table: &str,
        column: &str,
        definition: &str,
        backfill: Option<&str>,
    ) -> rusqlite::Result<bool> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let exists: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2)",
            [table, column],
            |row| row.get(0),
        )?;
        if exists {
            return Ok(false);
        }
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(&format!(
            "ALTER TABLE {table} ADD COLUMN {column} {definition};"
        ))?;
        if let Some(backfill) = backfill {
            tx.execute_batch(backfill)?;
        }
        tx.commit()?;
        Ok(true)
    }

    /// Runs `f` with the connection on the blocking pool. The outer error says the
    /// task itself failed (it panicked); the inner result is `f`'s own.
    pub async fn call<T, E>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<Result<T, E>, String>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_column_is_added_once_and_backfilled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        let schema = "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, a INTEGER);
                      INSERT OR IGNORE INTO t (id, a) VALUES (1, 7);";
        let db = Db::open(&path, Duration::from_secs(1), schema).unwrap();
        assert!(
            db.ensure_column("t", "b", "INTEGER", Some("UPDATE t SET b = a;"))
                .unwrap()
        );
        assert!(
            !db.ensure_column("t", "b", "INTEGER", Some("UPDATE t SET b = 0;"))
                .unwrap()
        );
        drop(db);
        let db = Db::open(&path, Duration::from_secs(1), schema).unwrap();
        assert!(!db.ensure_column("t", "b", "INTEGER", None).unwrap());
        let b: i64 = db
            .conn
            .lock()
            .unwrap()
            .query_row("SELECT b FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(b, 7);
    }
}
