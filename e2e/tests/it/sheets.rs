//! The logger as a process against the local Google stand-in: a kill in the middle
//! of an upload, and the operator's message in `GET /api/status`.

use std::collections::HashSet;
use std::time::Duration;

use abtrack_e2e::Cluster;
use abtrack_e2e::sheets::{FakeGoogle, Faults};
use serde_json::json;

async fn sheets_env(
    fake: &FakeGoogle,
    url: &str,
    key_dir: &std::path::Path,
    id: &str,
) -> Vec<(String, String)> {
    let key = key_dir.join("sheets-credentials.json");
    fake.write_key(url, &key);
    vec![
        ("SHEETS_CREDENTIALS".into(), key.display().to_string()),
        ("SHEETS_SPREADSHEET_ID".into(), id.into()),
        ("SHEETS_API_URL".into(), url.into()),
        ("SHEETS_BATCH_MAX_AGE_MS".into(), "100".into()),
        ("SHEETS_RETRY_MAX_SECS".into(), "2".into()),
    ]
}

fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logger_killed_in_the_middle_of_an_upload_loses_and_repeats_no_row() {
    let (fake, url) = FakeGoogle::start("sheet-kill").await;
    let key_dir = tempfile::tempdir().unwrap();
    let env = sheets_env(&fake, &url, key_dir.path(), "sheet-kill").await;
    let mut cluster = Cluster::start(&pairs(&env)).await;
    let mut ids = HashSet::new();
    let wait_rows = |n: usize| {
        let fake = fake.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while fake.rows("Log").len() < n {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "fewer than {n} rows arrived"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // A first outcome makes the header and the tab.
    let (_, job) = cluster
        .post(
            "/api/messages",
            json!({ "to": "081234567890", "message": "pertama" }).to_string(),
        )
        .await;
    ids.insert(job["id"].as_str().unwrap().to_owned());
    wait_rows(2).await;
    // Google applies the rows, then the answer is slow: the kill lands in between.
    fake.set_faults(Faults {
        append_answer_delay: Duration::from_secs(30),
        ..Faults::default()
    });
    for n in 0..30 {
        let (code, job) = cluster
            .post(
                "/api/messages",
                json!({ "to": "081234567890", "message": format!("pesan {n}") }).to_string(),
            )
            .await;
        assert_eq!(code, 201);
        ids.insert(job["id"].as_str().unwrap().to_owned());
    }
    wait_rows(3).await;
    cluster.kill("sheets-logger");
    fake.set_faults(Faults::default());
    cluster.spawn("sheets-logger");
    cluster.wait_serving("sheets-logger").await;
    cluster
        .wait_status(Duration::from_secs(60), "every outcome in the sheet", |s| {
            s["queue"]["counts"]["sent"] == 31
                && s["logger"]["backlog"] == 0
                && s["logger"]["state"] == "ok"
        })
        .await;
    // The dispatcher's recorder may still be backing off from the logger's restart:
    // once it holds no outcome the logger has not acknowledged, and the logger's
    // backlog is empty, no row is on its way; then none may have come twice.
    wait_rows(32).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while cluster.unlogged_outcomes() > 0
        || cluster.get("/api/status").await["logger"]["backlog"] != 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "outcomes still on their way to the sheet"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows = fake.rows("Log");
    let sheet_ids: Vec<String> = rows[1..]
        .iter()
        .map(|r| r[1].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        sheet_ids.len(),
        31,
        "one row per job, none twice: {sheet_ids:?}"
    );
    assert_eq!(sheet_ids.into_iter().collect::<HashSet<_>>(), ids);
    assert!(
        cluster
            .log("sheets-logger")
            .contains("already in the sheet"),
        "the restart checked the sheet first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_message_reaches_the_status_api() {
    let (fake, url) = FakeGoogle::start("the-right-sheet").await;
    let key_dir = tempfile::tempdir().unwrap();
    let env = sheets_env(&fake, &url, key_dir.path(), "a-wrong-sheet").await;
    let cluster = Cluster::start(&pairs(&env)).await;
    cluster
        .post(
            "/api/messages",
            json!({ "to": "081234567890", "message": "Halo" }).to_string(),
        )
        .await;
    let status = cluster
        .wait_status(Duration::from_secs(30), "the logger failing", |s| {
            s["logger"]["state"] == "failing"
        })
        .await;
    let error = status["logger"]["lastError"].as_str().unwrap();
    assert!(
        error.contains("spreadsheet a-wrong-sheet was not found (404)"),
        "{error}"
    );
    assert_eq!(status["logger"]["backlog"], 1, "the row is kept");
}
