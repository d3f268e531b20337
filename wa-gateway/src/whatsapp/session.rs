//! The WhatsApp session's place in the data folder, and how a session that can no
//! longer be used is moved aside: renamed with a timestamp and the reason, never
//! deleted, so an operator can still look at it or put it back.

use std::path::{Path, PathBuf};

/// The session store lives in `<data>/session/`; sessions moved aside go to
/// `<data>/old-sessions/<UTC time>-<reason>/`.
#[derive(Debug, Clone)]
pub struct SessionDir {
    data_dir: PathBuf,
}

impl SessionDir {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.data_dir.join("session")
    }

    /// The SQLite file of `whatsapp-rust` (plus its `-wal` / `-shm` companions).
    pub fn store_path(&self) -> PathBuf {
        self.dir().join("whatsapp.sqlite3")
    }

    pub fn old_sessions_dir(&self) -> PathBuf {
        self.data_dir.join("old-sessions")
    }

    /// Whether anything of a session is there (a first start has nothing).
    pub fn exists(&self) -> bool {
        std::fs::read_dir(self.dir()).is_ok_and(|mut entries| entries.next().is_some())
    }

    /// Reads the store once with SQLite itself, so a damaged or unreadable store is
    /// found at once (the library's connection pool would retry it for 30 seconds).
    /// A store that does not exist yet is fine.
    pub fn check_readable(&self) -> Result<(), String> {
        let path = self.store_path();
        if !path.exists() {
            return Ok(());
        }
        let check = || -> rusqlite::Result<String> {
            let conn = rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
            conn.query_row("PRAGMA quick_check", [], |row| row.get(0))
        };
        match check() {
            Ok(verdict) if verdict == "ok" => Ok(()),
            Ok(verdict) => Err(format!(
                "{}: integrity check says {verdict}",
                path.display()
            )),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Creates the session folder if needed.
    pub fn prepare(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(self.dir())
    }

    /// Moves the whole session folder to `old-sessions/<time>-<reason>`; returns where
    /// it went, or `None` when there was nothing to move.
    pub fn move_aside(&self, reason: &str) -> std::io::Result<Option<PathBuf>> {
        if !self.exists() {
            return Ok(None);
        }
        let old = self.old_sessions_dir();
        std::fs::create_dir_all(&old)?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string();
        let slug: String = reason
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        let mut target = old.join(format!("{stamp}-{slug}"));
        let mut n = 1;
        while target.exists() {
            n += 1;
            target = old.join(format!("{stamp}-{slug}-{n}"));
        }
        std::fs::rename(self.dir(), &target)?;
        Ok(Some(target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_damaged_or_unreadable_store() {
        let data = tempfile::tempdir().unwrap();
        let session = SessionDir::new(data.path());
        assert_eq!(session.check_readable(), Ok(()));
        session.prepare().unwrap();
        std::fs::write(session.store_path(), [0x5a; 4096]).unwrap();
        let error = session.check_readable().unwrap_err();
        assert!(error.contains("not a database"), "{error}");
        std::fs::remove_file(session.store_path()).unwrap();
        std::fs::create_dir(session.store_path()).unwrap();
        assert!(session.check_readable().is_err());
        std::fs::remove_dir(session.store_path()).unwrap();
        rusqlite::Connection::open(session.store_path())
            .unwrap()
            .execute_batch("CREATE TABLE t (x INTEGER);")
            .unwrap();
        assert_eq!(session.check_readable(), Ok(()));
    }

    #[test]
    fn moves_the_folder_aside_and_keeps_every_file() {
        let data = tempfile::tempdir().unwrap();
        let session = SessionDir::new(data.path());
        assert_eq!(session.move_aside("nothing").unwrap(), None);
        session.prepare().unwrap();
        std::fs::write(session.store_path(), b"not a database").unwrap();
        let first = session.move_aside("unreadable").unwrap().unwrap();
        assert!(!session.dir().exists());
        assert_eq!(
            std::fs::read(first.join("whatsapp.sqlite3")).unwrap(),
            b"not a database"
        );
        assert!(
            first
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .ends_with("-unreadable")
        );
        session.prepare().unwrap();
        std::fs::write(session.store_path(), b"second").unwrap();
        let second = session.move_aside("logged out").unwrap().unwrap();
        assert_ne!(first, second);
        assert_eq!(
            std::fs::read_dir(session.old_sessions_dir())
                .unwrap()
                .count(),
            2
        );
    }
}
