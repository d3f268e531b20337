//! A data file damaged while its service was stopped: the service starts anyway, keeps
//! the file aside (never deleted), shows a notice until it is dismissed, carries over
//! what can still be read, and jobs flow.

use std::path::Path;
use std::time::Duration;

use abtrack_e2e::Cluster;
use serde_json::{Value, json};

/// Bytes that are no SQLite file (and no other format either).
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn send_one(cluster: &Cluster, id: &str) {
    let body = json!({"to": "0812-3456-7890", "message": "Ananda hadir", "id": id});
    let (code, job) = cluster.post("/api/messages", body.to_string()).await;
    assert_eq!(code, 201, "{job}");
    cluster.wait_sent(&[id], Duration::from_secs(30)).await;
}

/// Waits for the service's notice about `file` and answers it.
async fn notice_for(cluster: &Cluster, service: &str, file: &str) -> Value {
    let status = cluster
        .wait_status(
            Duration::from_secs(30),
            &format!("a notice about {file}"),
            |s| {
                s["notices"].as_array().is_some_and(|n| {
                    n.iter().any(|n| {
                        n["service"] == service
                            && n["file"].as_str().is_some_and(|f| f.ends_with(file))
                    })
                })
            },
        )
        .await;
    status["notices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["service"] == service)
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_send_log_or_outbox_is_kept_aside_and_the_service_starts_fresh() {
    let mut cluster = Cluster::start(&[]).await;
    send_one(&cluster, "before-damage").await;

    for (service, file) in [
        ("wa-gateway", "data/wa-gateway/sends.sqlite3"),
        ("sheets-logger", "data/sheets-logger/outbox.sqlite3"),
    ] {
        cluster.stop(service);
        let path = cluster.dir.path().join(file);
        let garbage = random_bytes(16 * 1024, file.len() as u64);
        std::fs::write(&path, &garbage).unwrap();
        cluster.spawn(service);
        cluster.wait_serving(service).await;

        let name = Path::new(file).file_name().unwrap().to_str().unwrap();
        let notice = notice_for(&cluster, service, name).await;
        let kept = notice["keptAt"].as_str().unwrap();
        let kept = cluster.dir.path().join(kept);
        assert_eq!(
            std::fs::read(&kept).unwrap(),
            garbage,
            "{service}: kept as it was: {notice}"
        );
        assert!(
            notice["reason"]
                .as_str()
                .unwrap()
                .contains("not a database"),
            "{notice}"
        );
        let log = cluster.log(service);
        assert!(
            log.contains("a data file could not be read at start"),
            "{log}"
        );
        assert!(!log.contains("Error: "), "{service} did not exit: {log}");
    }

    // New jobs flow, and the job sent before is not sent again.
    send_one(&cluster, "after-damage").await;
    let sent: Vec<String> = cluster
        .dry_run_lines()
        .iter()
        .map(|l| l["job_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sent, ["before-damage", "after-damage"]);

    // Dismissed, the notices are gone; the kept files stay.
    let notices = cluster.get("/api/status").await["notices"].clone();
    for notice in notices.as_array().unwrap() {
        let body = json!({"service": notice["service"], "id": notice["id"]});
        let (code, answer) = cluster.post("/api/notices/dismiss", body.to_string()).await;
        assert_eq!(code, 200, "{answer}");
        assert!(
            cluster
                .dir
                .path()
                .join(notice["keptAt"].as_str().unwrap())
                .exists()
        );
    }
    cluster
        .wait_status(Duration::from_secs(10), "no notice left", |s| {
            s["notices"].as_array().is_some_and(Vec::is_empty)
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_local_queue_keeps_the_jobs_that_can_still_be_read() {
    let mut cluster = Cluster::start(&[]).await;
    // Jobs that wait for a time far ahead, so they are still in the queue.
    let ids: Vec<String> = (0..400).map(|i| format!("later-{i:03}")).collect();
    let text = "Ananda tidak hadir hari ini tanpa keterangan. ".repeat(8);
    for id in &ids {
        let body = json!({"to": "0812-3456-7890", "message": text, "id": id, "sendAt": "2099-01-01T07:00:00+07:00"});
        let (code, job) = cluster.post("/api/messages", body.to_string()).await;
        assert_eq!(code, 201, "{job}");
    }
    cluster.stop("dispatcher");
    let path = cluster.dir.path().join("data/dispatcher/queue.sqlite3");
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(
        !cluster
            .dir
            .path()
            .join("data/dispatcher/queue.sqlite3-wal")
            .exists(),
        "a stopped dispatcher has folded its log in"
    );
    // Random bytes over one page in the middle of the file.
    let page = 4096;
    let middle = bytes.len() / page / 2 * page;
    bytes[middle..middle + page].copy_from_slice(&random_bytes(page, 7));
    std::fs::write(&path, &bytes).unwrap();

    cluster.spawn("dispatcher");
    cluster.wait_serving("dispatcher").await;
    let notice = notice_for(&cluster, "dispatcher", "queue.sqlite3").await;
    let carried = notice["carriedOver"].as_u64().unwrap();
    assert!(carried > 0 && carried <= 400, "{notice}");
    let kept = cluster.dir.path().join(notice["keptAt"].as_str().unwrap());
    assert_eq!(std::fs::read(&kept).unwrap(), bytes, "kept as it was");

    // A job on the damaged page is gone (404); every other is there as it was.
    let mut still_there = 0;
    for id in &ids {
        let (code, job) = cluster.get_any(&format!("/api/jobs/{id}")).await;
        match code {
            404 => {}
            200 => {
                assert_eq!(job["status"], "pending", "{job}");
                assert_eq!(job["message"], text.as_str(), "{job}");
                still_there += 1;
            }
            _ => panic!("GET /api/jobs/{id}: {code} {job}"),
        }
    }
    eprintln!("local queue: {still_there} of 400 jobs carried over");
    assert_eq!(still_there as u64, carried, "{notice}");
    assert!(still_there >= 300, "most jobs are readable: {still_there}");

    // New jobs flow.
    send_one(&cluster, "after-damage").await;
}
