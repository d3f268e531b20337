//! The operator's notices: what a service tells the operator.
//!
//! - A data file that could not be read at start and was moved aside, until they
//!   dismiss it. Each is a `notice.json` in the folder the file was moved to
//!   (`damaged/<UTC time>/`); dismissing it adds a `dismissed` file beside it.
//!   Nothing is deleted, and the notice outlives restarts.
//! - A disk too full to write a data file, while it lasts ([`disk_full`],
//!   [`disk_writable`]). Kept in memory, since the disk cannot take it, and ended by
//!   the next write that succeeds; it cannot be dismissed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::notices::v1 as pb;
use crate::token::{InternalToken, RequireToken};

/// The folder, inside a data folder, that holds the files moved aside.
pub const FOLDER: &str = "damaged";
const NOTICE: &str = "notice.json";
const DISMISSED: &str = "dismissed";

#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    file: String,
    kept_at: String,
    reason: String,
    carried_over: u64,
    at_ms: i64,
}

/// Records the notice for a file moved to `kept_at` (inside its own folder of
/// `damaged/`).
pub fn write(file: &Path, kept_at: &Path, reason: &str, carried_over: u64) -> std::io::Result<()> {
    let stored = Stored {
        file: file.display().to_string(),
        kept_at: kept_at.display().to_string(),
        reason: reason.to_owned(),
        carried_over,
        at_ms: crate::time::now_ms(),
    };
    let folder = kept_at.parent().unwrap_or(Path::new("."));
    let json = serde_json::to_vec_pretty(&stored).map_err(std::io::Error::other)?;
    std::fs::write(folder.join(NOTICE), json)
}

/// The live notices of this process, by id.
static LIVE: Mutex<BTreeMap<String, pb::Notice>> = Mutex::new(BTreeMap::new());

fn disk_full_id(file: &Path) -> String {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    format!("disk-full-{name}")
}

/// Records that `file` cannot be written for lack of space; answers whether that is
/// new (the caller logs it once).
pub fn disk_full(file: &Path, reason: &str) -> bool {
    let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
    let id = disk_full_id(file);
    if live.contains_key(&id) {
        return false;
    }
    let notice = pb::Notice {
        id: id.clone(),
        file: file.display().to_string(),
        kept_at: String::new(),
        reason: reason.to_owned(),
        carried_over: 0,
        at: Some(crate::time::to_timestamp(crate::time::now_ms())),
        kind: pb::notice::Kind::DiskFull.into(),
    };
    live.insert(id, notice);
    true
}

/// Records that `file` was written again; answers whether it had been full.
pub fn disk_writable(file: &Path) -> bool {
    let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
    live.remove(&disk_full_id(file)).is_some()
}

/// The notices of a service: those under the `damaged/` folder of each of its data
/// folders.
#[derive(Debug, Clone)]
pub struct Board {
    dirs: Vec<PathBuf>,
}

impl Board {
    pub fn new(dirs: impl IntoIterator<Item = PathBuf>) -> Self {
        Self {
            dirs: dirs.into_iter().collect(),
        }
    }

    /// Every notice not dismissed, oldest first.
    pub fn list(&self) -> Vec<pb::Notice> {
        let mut notices = Vec::new();
        for dir in &self.dirs {
            let Ok(entries) = std::fs::read_dir(dir.join(FOLDER)) else {
                continue;
            };
            for entry in entries.flatten() {
                let folder = entry.path();
                if folder.join(DISMISSED).exists() {
                    continue;
                }
                let Ok(bytes) = std::fs::read(folder.join(NOTICE)) else {
                    continue;
                };
                let Ok(stored) = serde_json::from_slice::<Stored>(&bytes) else {
                    continue;
                };
                notices.push(pb::Notice {
                    id: entry.file_name().to_string_lossy().into_owned(),
                    file: stored.file,
                    kept_at: stored.kept_at,
                    reason: stored.reason,
                    carried_over: stored.carried_over,
                    at: Some(crate::time::to_timestamp(stored.at_ms)),
                    kind: pb::notice::Kind::SetAside.into(),
                });
            }
        }
        notices.extend(
            LIVE.lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned(),
        );
        notices.sort_by_key(|n| (n.at.map(|t| (t.seconds, t.nanos)), n.id.clone()));
        notices
    }

    /// Dismisses the notice `id`; `false` when there is none by that id.
    pub fn dismiss(&self, id: &str) -> std::io::Result<bool> {
        let plain = !id.is_empty() && !id.contains(['/', '\\']) && id != "." && id != "..";
        if !plain {
            return Ok(false);
        }
        for dir in &self.dirs {
            let folder = dir.join(FOLDER).join(id);
            if folder.join(NOTICE).is_file() {
                std::fs::write(folder.join(DISMISSED), b"dismissed by an operator\n")?;
                tracing::info!(notice = %id, "notice dismissed by an operator");
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[tonic::async_trait]
impl pb::notices_server::Notices for Board {
    async fn list(
        &self,
        _: tonic::Request<pb::ListNoticesRequest>,
    ) -> Result<tonic::Response<pb::ListNoticesResponse>, tonic::Status> {
        let board = self.clone();
        let notices = tokio::task::spawn_blocking(move || board.list())
            .await
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        Ok(tonic::Response::new(pb::ListNoticesResponse { notices }))
    }

    async fn dismiss(
        &self,
        request: tonic::Request<pb::DismissNoticeRequest>,
    ) -> Result<tonic::Response<pb::DismissNoticeResponse>, tonic::Status> {
        let board = self.clone();
        let id = request.into_inner().id;
        let found = tokio::task::spawn_blocking(move || board.dismiss(&id))
            .await
            .map_err(|e| tonic::Status::internal(e.to_string()))?
            .map_err(|e| tonic::Status::internal(format!("cannot dismiss: {e}")))?;
        if !found {
            return Err(tonic::Status::not_found("no such notice"));
        }
        Ok(tonic::Response::new(pb::DismissNoticeResponse {}))
    }
}

/// The notices service of `dirs`, behind the internal token like every other.
pub fn server(
    dirs: impl IntoIterator<Item = PathBuf>,
    token: Option<&InternalToken>,
) -> tonic::service::interceptor::InterceptedService<
    pb::notices_server::NoticesServer<Board>,
    RequireToken,
> {
    crate::token::require(
        pb::notices_server::NoticesServer::new(Board::new(dirs)),
        token,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_is_listed_until_it_is_dismissed() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join(FOLDER).join("20261201T010203.004Z");
        std::fs::create_dir_all(&kept).unwrap();
        let file = dir.path().join("queue.sqlite3");
        write(
            &file,
            &kept.join("queue.sqlite3"),
            "file is not a database",
            3,
        )
        .unwrap();
        let board = Board::new([dir.path().to_owned()]);

        let listed = board.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, "20261201T010203.004Z");
        assert_eq!(listed[0].file, file.display().to_string());
        assert_eq!(listed[0].reason, "file is not a database");
        assert_eq!(listed[0].carried_over, 3);

        for bad in ["", "..", "../x", "nope"] {
            assert!(!board.dismiss(bad).unwrap(), "{bad:?}");
        }
        assert!(board.dismiss("20261201T010203.004Z").unwrap());
        assert!(board.list().is_empty());
        assert!(kept.join("notice.json").exists(), "nothing is deleted");
    }

    #[test]
    fn a_full_disk_is_a_notice_while_it_lasts_and_cannot_be_dismissed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-full-disk-test.sqlite3");
        let board = Board::new([dir.path().to_owned()]);
        let mine = |board: &Board| {
            board
                .list()
                .into_iter()
                .filter(|n| n.file == file.display().to_string())
                .collect::<Vec<_>>()
        };

        assert!(disk_full(&file, "database or disk is full"));
        assert!(!disk_full(&file, "database or disk is full"), "said once");
        let listed = mine(&board);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, "disk-full-a-full-disk-test.sqlite3");
        assert_eq!(listed[0].kind(), pb::notice::Kind::DiskFull);
        assert!(listed[0].kept_at.is_empty());
        assert!(!board.dismiss(&listed[0].id).unwrap());
        assert_eq!(mine(&board).len(), 1);

        assert!(disk_writable(&file));
        assert!(!disk_writable(&file));
        assert!(mine(&board).is_empty());
    }
}
