//! A SQLite database kept durable (WAL, `synchronous = FULL`) and used without
//! blocking the async runtime on the disk: a call that syncs runs on the blocking
//! pool. A write that a later one makes good again may ask for less
//! ([`Durability::Log`]); such a write, and a read, take tens of microseconds and run
//! on the calling thread.
//!
//! A call that fails because the disk is full ([`is_disk_full`]) raises the service's
//! live "disk full" notice and logs one line; the next call that writes ends both.
//! The store itself refuses nothing: the caller's error says what was not stored.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

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

/// A data file that could not be used at start, kept aside: the store started with
/// a fresh file and carried over what could still be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    /// Where the file was.
    pub file: PathBuf,
    /// Where it is now: `damaged/<UTC time>/` beside it, with its `-wal` and `-shm`.
    pub kept_at: PathBuf,
    /// What was wrong, in SQLite's words.
    pub reason: String,
    /// Rows read from the damaged file into the fresh one ([`Db::carry_over`]).
    pub carried_over: usize,
}

impl SetAside {
    /// The one line that says what happened.
    fn log(&self) {
        tracing::error!(
            file = %self.file.display(),
            kept_at = %self.kept_at.display(),
            reason = %self.reason,
            carried_over = self.carried_over,
            "a data file could not be read at start: it was moved aside (nothing was deleted), and a fresh one started with the rows that could still be read"
        );
    }
}

/// Whether an error says the file is not a usable database: damaged, or not one at
/// all (overwritten, truncated). Other errors (a full disk, no permission) are not
/// the file's fault and are not healed by moving it.
fn is_damage(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    )
}

/// Whether `error` says the disk is full (`SQLITE_FULL`): the write was not stored,
/// and nothing is wrong with the file. Also SQLite's answer once a database reaches
/// its `max_page_count`.
pub fn is_disk_full(error: &rusqlite::Error) -> bool {
    error.sqlite_error_code() == Some(ErrorCode::DiskFull)
}

/// The gRPC answer for a write refused for lack of space, which `message` explains:
/// `RESOURCE_EXHAUSTED` with the reason [`crate::reason::DISK_FULL`].
pub fn disk_full_status(message: impl Into<String>) -> tonic::Status {
    crate::reason::with_reason(
        tonic::Status::resource_exhausted(message),
        crate::reason::DISK_FULL,
        None,
    )
}

/// An error a store's call can end with, which may be SQLite's own: how [`Db::call`]
/// sees a full disk whatever error type the store uses.
pub trait StoreError {
    /// The SQLite error this is, if it is one.
    fn sqlite(&self) -> Option<&rusqlite::Error>;
}

impl StoreError for rusqlite::Error {
    fn sqlite(&self) -> Option<&rusqlite::Error> {
        Some(self)
    }
}

/// Raises or ends the live "disk full" notice of `file` after a call: raised by a
/// call that failed for lack of space, ended by one that wrote.
fn note_space(file: &Path, full: Option<&rusqlite::Error>, wrote: bool) {
    match full {
        Some(error) if crate::notice::disk_full(file, &error.to_string()) => {
            tracing::error!(
                file = %file.display(),
                error = %error,
                "the disk is full: this data file cannot be written, so what it would store is refused until space is freed"
            );
        }
        Some(_) => {}
        None if wrote && crate::notice::disk_writable(file) => {
            tracing::info!(file = %file.display(), "space returned: the data file is written again");
        }
        None => {}
    }
}

/// Moves `file` and its `-wal` and `-shm` companions into a new
/// `damaged/<UTC time>/` folder beside it; answers the file's new path.
fn set_aside(file: &Path) -> std::io::Result<PathBuf> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let kept = dir.join(crate::notice::FOLDER).join(stamp.to_string());
    std::fs::create_dir_all(&kept)?;
    let name = file.file_name().unwrap_or_default();
    for suffix in ["", "-wal", "-shm"] {
        let mut from = file.as_os_str().to_owned();
        from.push(suffix);
        let mut to = name.to_owned();
        to.push(suffix);
        match std::fs::rename(&from, kept.join(&to)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(kept.join(name))
}

#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    path: Arc<Path>,
}

impl Db {
    /// Opens (or creates) the database at `path` and applies `schema`, which must be
    /// idempotent (`CREATE ... IF NOT EXISTS`).
    pub fn open(path: &Path, busy_timeout: Duration, schema: &str) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        Self::prepare(conn, path, busy_timeout, schema)
    }

    /// [`Db::open`] then `migrate`, healing a damaged file: one that is not a
    /// database, or fails SQLite's quick check, is moved aside
    /// ([`SetAside::kept_at`]), a fresh one is opened and migrated, and the rows of
    /// `tables` that can still be read are carried over into it. Never deletes a file.
    pub fn open_healing(
        path: &Path,
        busy_timeout: Duration,
        schema: &str,
        migrate: impl FnOnce(&Db) -> rusqlite::Result<()>,
        tables: &[&str],
    ) -> rusqlite::Result<(Self, Option<SetAside>)> {
        let reason = match Self::open(path, busy_timeout, schema) {
            Ok(db) => match db.quick_check() {
                Ok(()) => {
                    migrate(&db)?;
                    return Ok((db, None));
                }
                Err(reason) => {
                    drop(db);
                    reason
                }
            },
            Err(e) if is_damage(&e) => e.to_string(),
            Err(e) => return Err(e),
        };
        let kept_at = set_aside(path).map_err(|e| {
            rusqlite::Error::ToSqlConversionFailure(
                format!(
                    "{} is damaged ({reason}) and cannot be moved aside: {e}",
                    path.display()
                )
                .into(),
            )
        })?;
        let db = Self::open(path, busy_timeout, schema)?;
        migrate(&db)?;
        let carried_over = tables.iter().map(|t| db.carry_over(&kept_at, t)).sum();
        let set_aside = SetAside {
            file: path.to_owned(),
            kept_at,
            reason,
            carried_over,
        };
        set_aside.log();
        let notice = crate::notice::write(
            path,
            &set_aside.kept_at,
            &set_aside.reason,
            carried_over as u64,
        );
        if let Err(e) = notice {
            tracing::warn!(error = %e, "cannot record the dashboard's notice of the damaged file");
        }
        Ok((db, Some(set_aside)))
    }

    /// SQLite's quick check of the whole file: `Err` with its first complaint.
    fn quick_check(&self) -> Result<(), String> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let answer: rusqlite::Result<String> =
            conn.query_row("PRAGMA quick_check(1)", [], |row| row.get(0));
        match answer {
            Ok(ok) if ok == "ok" => Ok(()),
            Ok(complaint) => Err(complaint),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Copies every row of `table` that can still be read from the damaged file
    /// `damaged` into this store (rows already here are kept); answers how many were
    /// copied. A damaged page ends a scan, so the table is read from both ends.
    pub fn carry_over(&self, damaged: &Path, table: &str) -> usize {
        let Ok(old) = Connection::open_with_flags(damaged, OpenFlags::SQLITE_OPEN_READ_ONLY) else {
            return 0;
        };
        let mut rows: std::collections::BTreeMap<i64, Vec<rusqlite::types::Value>> =
            Default::default();
        let mut columns = Vec::new();
        for order in ["ASC", "DESC"] {
            let sql = format!("SELECT rowid, * FROM {table} ORDER BY rowid {order}");
            let Ok(mut statement) = old.prepare(&sql) else {
                return 0;
            };
            columns = statement
                .column_names()
                .iter()
                .skip(1)
                .map(|c| (*c).to_owned())
                .collect();
            let Ok(mut found) = statement.query([]) else {
                continue;
            };
            while let Ok(Some(row)) = found.next() {
                let Ok(rowid) = row.get::<_, i64>(0) else {
                    break;
                };
                let values: rusqlite::Result<Vec<rusqlite::types::Value>> =
                    (1..=columns.len()).map(|i| row.get(i)).collect();
                match values {
                    Ok(values) => {
                        rows.insert(rowid, values);
                    }
                    Err(_) => break,
                }
            }
        }
        if columns.is_empty() || rows.is_empty() {
            return 0;
        }
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let placeholders = vec!["?"; columns.len()].join(", ");
        let quoted: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
        let sql = format!(
            "INSERT OR IGNORE INTO {table} ({}) VALUES ({placeholders})",
            quoted.join(", ")
        );
        let Ok(tx) = conn.unchecked_transaction() else {
            return 0;
        };
        let mut copied = 0;
        if let Ok(mut insert) = tx.prepare(&sql) {
            for values in rows.values() {
                if let Ok(n) = insert.execute(rusqlite::params_from_iter(values.iter())) {
                    copied += n;
                }
            }
        }
        if tx.commit().is_err() {
            return 0;
        }
        copied
    }

    fn prepare(
        conn: Connection,
        path: &Path,
        busy_timeout: Duration,
        schema: &str,
    ) -> rusqlite::Result<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(busy_timeout)?;
        // Room for every statement a store runs, so none is parsed twice.
        conn.set_prepared_statement_cache_capacity(64);
        conn.execute_batch(schema)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: Arc::from(path),
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
    /// task itself failed (it panicked); the inner result is `f`'s own. A full disk
    /// is noted (see the module's documentation).
    pub async fn call<T, E>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<Result<T, E>, String>
    where
        T: Send + 'static,
        E: StoreError + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let path = Arc::clone(&self.path);
        tokio::task::spawn_blocking(move || run(&conn, &path, f))
            .await
            .map_err(|e| e.to_string())
    }

    /// Runs `f`, which only reads, on the calling thread: a read takes less time than
    /// handing it to another thread and back costs. It waits while a write on the
    /// blocking pool holds the connection.
    pub async fn read<T, E>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, E>,
    ) -> Result<Result<T, E>, String>
    where
        E: StoreError,
    {
        Ok(run(&self.conn, &self.path, f))
    }

    /// [`Db::call`] with the commits of `f` at `durability`. A write at
    /// [`Durability::Log`] waits for no disk, so it runs on the calling thread, as
    /// [`Db::read`] does.
    pub async fn call_at<T, E>(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<Result<T, E>, String>
    where
        T: Send + 'static,
        E: From<rusqlite::Error> + StoreError + Send + 'static,
    {
        let f =
            move |conn: &mut Connection| at(conn, durability, f).map_err(E::from).and_then(|r| r);
        match durability {
            Durability::Disk => self.call(f).await,
            Durability::Log => self.read(f).await,
        }
    }
}

/// Runs `f` with the connection and notes a full disk.
fn run<T, E: StoreError>(
    conn: &Mutex<Connection>,
    path: &Path,
    f: impl FnOnce(&mut Connection) -> Result<T, E>,
) -> Result<T, E> {
    let mut conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let changes = conn.total_changes();
    let result = f(&mut conn);
    let full = result
        .as_ref()
        .err()
        .and_then(StoreError::sqlite)
        .filter(|e| is_disk_full(e));
    note_space(path, full, conn.total_changes() != changes);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS t (id TEXT PRIMARY KEY, v TEXT NOT NULL);";

    fn rows(db: &Db) -> Vec<(String, String)> {
        let conn = db.conn.lock().unwrap();
        let mut statement = conn.prepare("SELECT id, v FROM t ORDER BY id").unwrap();
        statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn fill(path: &Path, n: usize) -> Vec<(String, String)> {
        let db = Db::open(path, Duration::from_secs(1), SCHEMA).unwrap();
        {
            let conn = db.conn.lock().unwrap();
            let tx = conn.unchecked_transaction().unwrap();
            for i in 0..n {
                tx.execute(
                    "INSERT INTO t (id, v) VALUES (?1, ?2)",
                    (format!("job-{i:05}"), format!("{i}-").repeat(40)),
                )
                .unwrap();
            }
            tx.commit().unwrap();
        }
        let all = rows(&db);
        drop(db);
        all
    }

    #[test]
    fn a_file_of_random_bytes_is_kept_aside_and_a_fresh_store_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.sqlite3");
        let garbage: Vec<u8> = (0..10_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        std::fs::write(&path, &garbage).unwrap();

        let (db, set_aside) =
            Db::open_healing(&path, Duration::from_secs(1), SCHEMA, |_| Ok(()), &["t"]).unwrap();
        let set_aside = set_aside.expect("the file was damaged");
        assert_eq!(set_aside.file, path);
        assert!(
            set_aside.reason.contains("not a database"),
            "{}",
            set_aside.reason
        );
        assert_eq!(
            std::fs::read(&set_aside.kept_at).unwrap(),
            garbage,
            "kept as it was"
        );
        assert_eq!(
            set_aside.kept_at.parent().unwrap().parent().unwrap(),
            dir.path().join("damaged")
        );
        assert_eq!(set_aside.carried_over, 0);
        assert!(rows(&db).is_empty());
        drop(db);

        // The fresh store is a store like any other: opened again, nothing is moved.
        let (_, again) =
            Db::open_healing(&path, Duration::from_secs(1), SCHEMA, |_| Ok(()), &["t"]).unwrap();
        assert_eq!(again, None);
    }

    #[test]
    fn the_readable_rows_of_a_damaged_file_are_carried_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.sqlite3");
        let all = fill(&path, 3000);
        // Garbage over one page in the middle of the file.
        let mut bytes = std::fs::read(&path).unwrap();
        let page = 4096;
        let middle = bytes.len() / page / 2 * page;
        for b in &mut bytes[middle..middle + page] {
            *b = 0xA5;
        }
        std::fs::write(&path, &bytes).unwrap();

        let (db, set_aside) =
            Db::open_healing(&path, Duration::from_secs(1), SCHEMA, |_| Ok(()), &["t"]).unwrap();
        let set_aside = set_aside.expect("the quick check found the damage");
        let carried = set_aside.carried_over;
        let recovered = rows(&db);
        assert_eq!(carried, recovered.len());
        assert!(
            carried > all.len() / 2,
            "most rows are readable: {carried} of {}",
            all.len()
        );
        assert!(carried < all.len(), "one page of rows is lost: {carried}");
        for row in &recovered {
            assert!(all.contains(row), "{row:?} is a row as it was written");
        }
    }

    #[test]
    fn a_sound_file_is_left_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.sqlite3");
        let all = fill(&path, 10);
        let (db, set_aside) =
            Db::open_healing(&path, Duration::from_secs(1), SCHEMA, |_| Ok(()), &["t"]).unwrap();
        assert_eq!(set_aside, None);
        assert_eq!(rows(&db), all);
        assert!(!dir.path().join("damaged").exists());
    }

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

    #[tokio::test]
    async fn a_full_store_refuses_the_write_says_so_once_and_recovers_when_space_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.sqlite3");
        let db = Db::open(&path, Duration::from_secs(1), SCHEMA).unwrap();
        let board = crate::notice::Board::new([dir.path().to_owned()]);
        let disk_full = || {
            board
                .list()
                .into_iter()
                .any(|n| n.file == path.display().to_string())
        };
        let insert = |id: usize| {
            db.call(move |conn| {
                conn.execute(
                    "INSERT INTO t (id, v) VALUES (?1, ?2)",
                    (format!("job-{id}"), "x".repeat(2000)),
                )
            })
        };
        // SQLite's page limit stands in for the disk: past it, writes fail as on a
        // full disk.
        db.call(|conn| {
            let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            conn.query_row(
                &format!("PRAGMA max_page_count = {}", pages + 4),
                [],
                |_| Ok(()),
            )
        })
        .await
        .unwrap()
        .unwrap();
        let mut stored = 0;
        let refused = loop {
            match insert(stored).await.unwrap() {
                Ok(_) => stored += 1,
                Err(e) => break e,
            }
            assert!(stored < 100, "the page limit never refused a write");
        };
        assert!(is_disk_full(&refused), "{refused:?}");
        assert!(disk_full(), "a notice while the disk is full");
        assert!(insert(stored).await.unwrap().is_err(), "still full");
        assert_eq!(rows(&db).len(), stored, "nothing half-stored");

        // A read does not end the notice, a write does.
        assert_eq!(rows(&db).len(), stored);
        db.call(|conn| conn.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)))
            .await
            .unwrap()
            .unwrap();
        assert!(disk_full());
        db.call(|conn| conn.query_row("PRAGMA max_page_count = 1000000", [], |_| Ok(())))
            .await
            .unwrap()
            .unwrap();
        insert(stored).await.unwrap().unwrap();
        assert!(!disk_full(), "space returned");
        assert_eq!(rows(&db).len(), stored + 1);
    }
}
