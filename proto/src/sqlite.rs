//! A SQLite database kept durable (WAL, `synchronous = FULL`) and used without
//! blocking the async runtime: every call runs on the blocking pool. A write that a
//! later one makes good again may ask for less ([`Durability::Log`]).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

/// How far a write must have reached when its commit returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The disk (`synchronous = FULL`, every write's default): kept through a power
    /// loss.
    Disk,
    /// The write-ahead log, not yet synced (`synchronous = NORMAL`): kept through a
    /// crash of the process, and made durable by the next `Disk` write, which syncs the
    /// log in order; a power loss or a crash of the machine may undo it. For writes
    /// whose loss only repeats work that is safe to repeat.
    Log,
}

/// Runs `f` with the connection's commits at `durability`, then puts `Disk` back, also
/// when `f` failed.
pub fn at<T>(
    conn: &mut Connection,
    durability: Durability,
    f: impl FnOnce(&mut Connection) -> T,
) -> rusqlite::Result<T> {
    if durability == Durability::Disk {
        return Ok(f(conn));
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let result = f(conn);
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(result)
}

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
        // Room for every statement a store runs, so none is parsed twice.
        conn.set_prepared_statement_cache_capacity(64);
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

    /// [`Db::call`] with the commits of `f` at `durability`.
    pub async fn call_at<T, E>(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<Result<T, E>, String>
    where
        T: Send + 'static,
        E: From<rusqlite::Error> + Send + 'static,
    {
        self.call(move |conn| at(conn, durability, f).map_err(E::from).and_then(|r| r))
            .await
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

    fn synchronous(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_log_write_syncs_less_and_puts_the_disk_back_also_when_it_fails() {
        const NORMAL: i64 = 1;
        const FULL: i64 = 2;
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(
            &dir.path().join("d.sqlite3"),
            Duration::from_secs(1),
            "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY);",
        )
        .unwrap();
        let mut conn = db.conn.lock().unwrap();
        assert_eq!(synchronous(&conn), FULL);
        let during = at(&mut conn, Durability::Log, |c| synchronous(c)).unwrap();
        assert_eq!(during, NORMAL);
        assert_eq!(synchronous(&conn), FULL);
        let failed = at(&mut conn, Durability::Log, |c| {
            c.execute("INSERT INTO missing VALUES (1)", [])
        })
        .unwrap();
        assert!(failed.is_err());
        assert_eq!(synchronous(&conn), FULL);
        let disk = at(&mut conn, Durability::Disk, |c| synchronous(c)).unwrap();
        assert_eq!(disk, FULL);
    }
}
