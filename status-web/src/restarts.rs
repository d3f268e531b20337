//! The launcher's record of service restarts: a small JSON file the launcher
//! (`abtrack-notify`) rewrites atomically (write to a temporary file, then rename)
//! whenever it restarts a service. status-web reads it every [`POLL`] and puts it in
//! the snapshot (`launcher` in `GET /api/status`, the Services card, `/metrics`).
//!
//! A missing file means no launcher data. A file that cannot be read or is not a
//! record leaves the last one read in place and is logged once per distinct problem.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncReadExt as _;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use abtrack_proto::tasks::Tasks;
use abtrack_proto::time::{parse_rfc3339, rfc3339};

use crate::snapshot::{LauncherView, ServiceRestartsView, Snapshot};

/// How often the file is read.
pub const POLL: Duration = Duration::from_secs(2);

/// A record of four services is a few hundred bytes; anything much larger is not one.
pub const MAX_SIZE: u64 = 64 * 1024;

/// The file, as the launcher writes it. Unknown fields are ignored, missing optional
/// ones default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LauncherFile {
    /// When the launcher started (RFC 3339).
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub services: Vec<ServiceRecord>,
}

/// One service the launcher runs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRecord {
    /// The service's binary name, e.g. `wa-gateway`.
    pub name: String,
    /// How many times the launcher restarted it.
    #[serde(default)]
    pub restarts: u64,
    /// How its last run ended, in the launcher's words (`exit code 1`, `killed by
    /// signal 9`).
    #[serde(default)]
    pub last_exit: Option<String>,
    /// The exit code of its last run, when it had one (Windows codes can exceed `i32`).
    #[serde(default)]
    pub last_exit_code: Option<i64>,
    /// When it was last restarted (RFC 3339).
    #[serde(default)]
    pub last_restart_at: Option<String>,
}

/// A time from the file in the snapshot's own format (UTC, milliseconds); one that
/// does not parse is left out.
fn normalized(time: Option<String>) -> Option<String> {
    time.as_deref().and_then(parse_rfc3339).map(rfc3339)
}

impl LauncherFile {
    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The record as the snapshot shows it: times normalised, and a service named
    /// twice shown once (its first entry), so `/metrics` has one series per service.
    pub fn view(self) -> LauncherView {
        let mut seen = BTreeSet::new();
        LauncherView {
            started_at: normalized(self.started_at),
            services: self
                .services
                .into_iter()
                .filter(|s| seen.insert(s.name.clone()))
                .map(|s| ServiceRestartsView {
                    name: s.name,
                    restarts: s.restarts,
                    last_exit: s.last_exit.filter(|e| !e.trim().is_empty()),
                    last_exit_code: s.last_exit_code,
                    last_restart_at: normalized(s.last_restart_at),
                })
                .collect(),
        }
    }
}

/// Reads the record: `Ok(None)` when there is no file, `Err` with the reason when it
/// cannot be read or is not a record.
pub async fn read(path: &Path) -> Result<Option<LauncherView>, String> {
    let file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open it: {e}")),
    };
    let mut bytes = Vec::new();
    file.take(MAX_SIZE + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX_SIZE {
        return Err(format!("it is larger than {MAX_SIZE} bytes"));
    }
    let file = LauncherFile::parse(&bytes).map_err(|e| format!("not a launcher record: {e}"))?;
    Ok(Some(file.view()))
}

/// What one read did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The snapshot changed (a live update goes out).
    Changed,
    /// The same as last time: nothing sent.
    Unchanged,
    /// Unreadable or invalid: the snapshot keeps what it had. `logged` is true when
    /// this problem differs from the last one, so it was logged now.
    Failed { logged: bool },
}

/// Reads the file into the snapshot, remembering what it last logged.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    /// The problem last logged; `None` once the file reads fine again.
    problem: Option<String>,
    /// Whether the file was there at the last good read; `None` before the first.
    present: Option<bool>,
}

impl Follower {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            problem: None,
            present: None,
        }
    }

    /// Reads the file once and stores it into `snapshot` when it changed.
    pub async fn poll(&mut self, snapshot: &watch::Sender<Snapshot>) -> Outcome {
        let path = self.path.display();
        let view = match read(&self.path).await {
            Ok(view) => view,
            Err(problem) => {
                let logged = self.problem.as_ref() != Some(&problem);
                if logged {
                    tracing::warn!(
                        path = %path,
                        error = %problem,
                        "cannot use the launcher's record of restarts (STATUS_WEB_LAUNCHER_FILE); showing the last one read"
                    );
                    self.problem = Some(problem);
                }
                return Outcome::Failed { logged };
            }
        };
        if self.problem.take().is_some() {
            tracing::info!(path = %path, "the launcher's record of restarts reads fine again");
        }
        let present = view.is_some();
        if self.present != Some(present) {
            if present {
                tracing::info!(path = %path, "reading the launcher's record of restarts");
            } else {
                tracing::info!(
                    path = %path,
                    "no launcher record of restarts there (yet); restarts show once the launcher writes it"
                );
            }
            self.present = Some(present);
        }
        let changed = snapshot.send_if_modified(|s| {
            if s.launcher == view {
                false
            } else {
                s.launcher = view;
                true
            }
        });
        if changed {
            Outcome::Changed
        } else {
            Outcome::Unchanged
        }
    }
}

/// Starts reading `path` every [`POLL`] until the service stops.
pub fn start(path: PathBuf, snapshot: watch::Sender<Snapshot>, tasks: &Tasks) {
    tasks.spawn(follow(Follower::new(path), snapshot, POLL));
}

async fn follow(mut follower: Follower, snapshot: watch::Sender<Snapshot>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        follower.poll(&snapshot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the launcher writes after restarting two services.
    const EXAMPLE: &str = include_str!("../tests/fixtures/restarts.json");

    /// Replaces the file the way the launcher does: a temporary file, then a rename.
    fn write(path: &Path, content: &[u8]) {
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, content).unwrap();
        std::fs::rename(&temporary, path).unwrap();
    }

    #[test]
    fn the_launchers_file_parses_ignoring_unknown_fields() {
        let view = LauncherFile::parse(EXAMPLE.as_bytes()).unwrap().view();
        assert_eq!(view.started_at.as_deref(), Some("2026-12-01T23:30:00.000Z"));
        assert_eq!(view.services.len(), 4);
        let gateway = &view.services[0];
        assert_eq!(gateway.name, "wa-gateway");
        assert_eq!(gateway.restarts, 2);
        assert_eq!(gateway.last_exit.as_deref(), Some("killed by signal 9"));
        assert_eq!(gateway.last_exit_code, None);
        assert_eq!(
            gateway.last_restart_at.as_deref(),
            Some("2026-12-01T23:31:02.000Z")
        );
        assert_eq!(view.services[3].last_exit_code, Some(1));

        // Extra fields are ignored, optional ones default, a service named twice
        // counts once, a time that does not parse is left out.
        let view = LauncherFile::parse(
            br#"{"version": 7, "services": [
                {"name": "dispatcher", "pid": 4242},
                {"name": "wa-gateway", "restarts": 1, "lastRestartAt": "yesterday", "lastExitCode": 3221225477},
                {"name": "dispatcher", "restarts": 9}
            ]}"#,
        )
        .unwrap()
        .view();
        assert_eq!(view.started_at, None);
        assert_eq!(view.services.len(), 2);
        assert_eq!(view.services[0].restarts, 0);
        assert_eq!(view.services[0].last_exit, None);
        assert_eq!(view.services[1].last_restart_at, None);
        assert_eq!(view.services[1].last_exit_code, Some(3_221_225_477));
        assert_eq!(
            LauncherFile::parse(b"{}").unwrap().view(),
            LauncherView::default()
        );
        assert!(LauncherFile::parse(br#"{"services": [{"restarts": 1}]}"#).is_err());
        assert!(LauncherFile::parse(br#"{"services": [{"name": "x", "restarts": -1}]}"#).is_err());
    }

    #[tokio::test]
    async fn a_bad_file_keeps_the_last_record_and_is_logged_once_per_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("launcher.json");
        let (tx, mut rx) = watch::channel(Snapshot::default());
        let mut follower = Follower::new(path.clone());

        // No file: no launcher data, and nothing to send.
        assert_eq!(follower.poll(&tx).await, Outcome::Unchanged);
        assert!(!rx.has_changed().unwrap());
        assert_eq!(rx.borrow().launcher, None);

        // Garbage before any good read: still none, logged once.
        write(&path, b"\xff\xfe\x00garbage{{");
        assert_eq!(follower.poll(&tx).await, Outcome::Failed { logged: true });
        assert_eq!(follower.poll(&tx).await, Outcome::Failed { logged: false });
        assert!(!rx.has_changed().unwrap());
        assert_eq!(rx.borrow().launcher, None);

        // A good file is picked up; reading it again sends nothing.
        write(&path, EXAMPLE.as_bytes());
        assert_eq!(follower.poll(&tx).await, Outcome::Changed);
        assert!(rx.has_changed().unwrap());
        let first = rx.borrow_and_update().launcher.clone().unwrap();
        assert_eq!(first.services[0].restarts, 2);
        assert_eq!(follower.poll(&tx).await, Outcome::Unchanged);
        assert!(!rx.has_changed().unwrap());

        // Broken again: the last record stays; a different problem is logged again,
        // the same one after a good read too.
        write(&path, b"garbage");
        assert_eq!(follower.poll(&tx).await, Outcome::Failed { logged: true });
        write(&path, br#"{"services": "many"}"#);
        assert_eq!(follower.poll(&tx).await, Outcome::Failed { logged: true });
        assert_eq!(follower.poll(&tx).await, Outcome::Failed { logged: false });
        assert_eq!(rx.borrow().launcher.as_ref(), Some(&first));
        assert!(!rx.has_changed().unwrap());

        // Too large is refused before parsing.
        write(&path, &vec![b' '; MAX_SIZE as usize + 1]);
        assert_eq!(follower.poll(&tx).await, Outcome::Failed { logged: true });
        assert_eq!(rx.borrow().launcher.as_ref(), Some(&first));

        // A later valid file is picked up.
        write(
            &path,
            EXAMPLE
                .replace("\"restarts\": 2", "\"restarts\": 3")
                .as_bytes(),
        );
        assert_eq!(follower.poll(&tx).await, Outcome::Changed);
        assert_eq!(
            rx.borrow_and_update().launcher.as_ref().unwrap().services[0].restarts,
            3
        );

        // The file gone: the launcher is gone too.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(follower.poll(&tx).await, Outcome::Changed);
        assert_eq!(rx.borrow_and_update().launcher, None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_task_follows_the_file_and_stops_with_the_service() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("launcher.json");
        let (tx, mut rx) = watch::channel(Snapshot::default());
        let tasks = Tasks::new();
        start(path.clone(), tx, &tasks);
        assert_eq!(tasks.running(), 1);

        write(&path, EXAMPLE.as_bytes());
        let seen = rx.wait_for(|s| s.launcher.is_some()).await.unwrap();
        assert_eq!(seen.launcher.as_ref().unwrap().services.len(), 4);
        drop(seen);

        write(&path, b"\x00\x01 not json");
        write(
            &path,
            EXAMPLE
                .replace("\"restarts\": 1", "\"restarts\": 5")
                .as_bytes(),
        );
        rx.wait_for(|s| {
            s.launcher
                .as_ref()
                .is_some_and(|l| l.services[3].restarts == 5)
        })
        .await
        .unwrap();

        std::fs::remove_file(&path).unwrap();
        rx.wait_for(|s| s.launcher.is_none()).await.unwrap();

        tasks.stop().await;
        assert_eq!(tasks.running(), 0);
    }
}
