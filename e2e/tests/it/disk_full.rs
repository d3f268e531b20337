//! A disk that fills up while jobs arrive: no service exits, what cannot be stored is
//! refused with a clear error (507), the dashboard says "disk full", and once space
//! returns every job that was accepted ends `sent`, each once.
//!
//! The three services' data folders live on a small tmpfs of the test's own (mounting
//! it needs root, as the test command runs in CI), filled up by a ballast file.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use abtrack_e2e::Cluster;
use serde_json::{Value, json};

/// A tmpfs mounted on a folder of its own, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(
            mounted.success(),
            "cannot mount a tmpfs on {} (the full-disk test needs root): {mounted}",
            dir.path().display()
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a ballast file until the disk is full; answers its path.
    fn fill(&self) -> PathBuf {
        let path = self.path().join("ballast");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0xA5u8; 16 * 1024];
        loop {
            match file.write_all(&chunk).and_then(|()| file.sync_all()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        // The last partial chunk may have left a few bytes free: take them too.
        while file.write_all(&[0]).and_then(|()| file.sync_all()).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn disk_full_notices(status: &Value) -> Vec<String> {
    status["notices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["kind"] == "disk_full")
        .map(|n| format!("{}: {}", n["service"], n["file"]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_what_it_cannot_store_and_every_accepted_job_is_sent_once_space_returns()
 {
    let disk = SmallDisk::mount("8m");
    let folder = |service: &str| disk.path().join(service).display().to_string();
    let (dispatcher, gateway, logger) = (
        folder("dispatcher"),
        folder("wa-gateway"),
        folder("sheets-logger"),
    );
    let mut cluster = Cluster::start(&[
        ("DISPATCHER_DATA_DIR", &dispatcher),
        ("WA_DATA_DIR", &gateway),
        ("SHEETS_DATA_DIR", &logger),
        // The dry-run "phone" stays on the big disk: it stands for WhatsApp.
        ("WA_DRY_RUN_FILE", "data/wa-gateway/dry-run.jsonl"),
    ])
    .await;
    let pids: HashMap<&str, u32> = abtrack_e2e::SERVICES
        .iter()
        .map(|s| (*s, cluster.pid(s).unwrap()))
        .collect();

    let mut accepted = Vec::new();
    let mut post = async |cluster: &Cluster, id: String, send_at: Option<String>| {
        let mut body = json!({"to": "0812-3456-7890", "message": "Ananda hadir", "id": id});
        if let Some(at) = send_at {
            body["sendAt"] = json!(at);
        }
        let (code, answer) = cluster.post("/api/messages", body.to_string()).await;
        if code == 201 {
            accepted.push(id);
        }
        (code, answer)
    };
    for i in 0..5 {
        let (code, answer) = post(&cluster, format!("before-{i}"), None).await;
        assert_eq!(code, 201, "{answer}");
    }
    // Accepted now, due while the disk is full: their lease, send log entry and
    // outcome meet the full disk.
    let due = abtrack_proto::time::rfc3339(abtrack_proto::time::now_ms() + 1500);
    for i in 0..5 {
        let (code, answer) = post(&cluster, format!("scheduled-{i}"), Some(due.clone())).await;
        assert_eq!(code, 201, "{answer}");
    }

    let ballast = disk.fill();
    // Jobs keep arriving: the queue takes what it still has room for (SQLite reuses
    // its log's pages), then refuses.
    let mut refused = None;
    for i in 0..2000 {
        let (code, answer) = post(&cluster, format!("full-{i}"), None).await;
        match code {
            201 => {}
            507 => {
                refused = Some(answer);
                break;
            }
            other => panic!("job {i} answered {other}: {answer}"),
        }
    }
    let refused = refused.expect("the full disk refused a job");
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.contains("disk is full") && error.contains("nothing was stored"),
        "{refused}"
    );
    // Refused again while the disk stays full; the dashboard says why.
    let (code, answer) = post(&cluster, "full-again".into(), None).await;
    assert_eq!(code, 507, "{answer}");
    let status = cluster
        .wait_status(Duration::from_secs(20), "a disk-full notice", |s| {
            !disk_full_notices(s).is_empty()
        })
        .await;
    let notices = disk_full_notices(&status);
    assert!(
        notices
            .iter()
            .any(|n| n.contains("dispatcher") && n.contains("queue")),
        "{notices:?}"
    );
    let metrics = cluster.text("/metrics").await;
    assert!(
        metrics.contains("abtrack_disk_full{service=\"dispatcher\"} 1"),
        "{metrics}"
    );
    // The scheduled jobs fall due meanwhile.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let notices = disk_full_notices(&cluster.get("/api/status").await);

    std::fs::remove_file(ballast).unwrap();
    for i in 0..5 {
        let (code, answer) = post(&cluster, format!("after-{i}"), None).await;
        assert_eq!(code, 201, "{answer}");
    }
    cluster.wait_sent(&accepted, Duration::from_secs(90)).await;
    cluster
        .wait_status(
            Duration::from_secs(30),
            "the disk-full notices to end",
            |s| disk_full_notices(s).is_empty(),
        )
        .await;

    let sends = cluster.sends();
    for id in &accepted {
        assert_eq!(sends.get(id), Some(&1), "{id} sent once");
    }
    assert!(!sends.contains_key("full-again"));
    for service in abtrack_e2e::SERVICES {
        assert!(cluster.running(service), "{service} exited");
        assert_eq!(
            cluster.pid(service),
            Some(pids[service]),
            "{service} restarted"
        );
    }
    let logged: Vec<&str> = abtrack_e2e::SERVICES
        .into_iter()
        .filter(|s| cluster.log(s).contains("the disk is full"))
        .collect();
    eprintln!("services that logged a full disk: {logged:?}");
    eprintln!(
        "disk full: {} jobs accepted and sent once each; refused with: {error}; notices while full: {notices:?}",
        accepted.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_disk_is_full_sends_nothing_it_cannot_record_and_catches_up_after() {
    let disk = SmallDisk::mount("4m");
    let gateway = disk.path().join("wa-gateway").display().to_string();
    let mut cluster = Cluster::start(&[
        ("WA_DATA_DIR", &gateway),
        ("WA_DRY_RUN_FILE", "data/wa-gateway/dry-run.jsonl"),
    ])
    .await;
    let gateway_pid = cluster.pid("wa-gateway").unwrap();
    let post = async |cluster: &Cluster, id: &str| {
        let body = json!({"to": "0812-3456-7890", "message": "Ananda hadir", "id": id});
        let (code, answer) = cluster.post("/api/messages", body.to_string()).await;
        assert_eq!(code, 201, "{answer}");
    };
    post(&cluster, "before").await;
    let ballast = disk.fill();
    let ids: Vec<String> = (0..20).map(|i| format!("held-{i}")).collect();
    for id in &ids {
        post(&cluster, id).await;
    }
    // The queue (on the big disk) took them; the gateway cannot record a send, so
    // it sends none of those it could not record, and says why.
    let status = cluster
        .wait_status(
            Duration::from_secs(30),
            "the gateway's disk-full notice",
            |s| {
                disk_full_notices(s)
                    .iter()
                    .any(|n| n.contains("wa-gateway") && n.contains("sends.sqlite3"))
            },
        )
        .await;
    assert!(
        status["notices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["service"] == "wa-gateway"),
        "{status}"
    );
    let held = cluster.get("/api/jobs/held-19").await;
    assert_ne!(held["status"], "sent", "{held}");
    assert_ne!(held["status"], "failed", "{held}");
    let sent_while_full = cluster.dry_run_lines().len();

    std::fs::remove_file(ballast).unwrap();
    cluster.wait_sent(&ids, Duration::from_secs(90)).await;
    cluster
        .wait_status(
            Duration::from_secs(30),
            "the disk-full notice to end",
            |s| disk_full_notices(s).is_empty(),
        )
        .await;
    let sends = cluster.sends();
    for id in ids.iter().map(String::as_str).chain(["before"]) {
        assert_eq!(sends.get(id), Some(&1), "{id} sent once: {sends:?}");
    }
    assert!(cluster.running("wa-gateway"), "the gateway exited");
    assert_eq!(cluster.pid("wa-gateway"), Some(gateway_pid));
    eprintln!(
        "gateway disk full: {} of {} jobs sent before the send log hit the full disk, all sent once after",
        sent_while_full.saturating_sub(1),
        ids.len()
    );
}
