//! Finding jobs through the API: by a number however it is written, page by page
//! with the cursor, by status and creation time, and the same filter as a CSV file;
//! and the operator's views in Chromium: the search, one job's story, the day's
//! charts and the CSV download.

use reqwest::StatusCode;
use reqwest::header;
use serde_json::{Value, json};

use abtrack_proto::gateway::v1 as gpb;

use crate::browser::{chromium, node};
use crate::harness::{API_KEY, System, state};

async fn get(system: &System, path: &str) -> (StatusCode, reqwest::Response) {
    let response = reqwest::Client::new()
        .get(system.url(path))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    (response.status(), response)
}

async fn get_json(system: &System, path: &str) -> (StatusCode, Value) {
    let (status, response) = get(system, path).await;
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_finds_a_number_however_written_page_by_page_and_exports_it() {
    // The gateway waits for its scan: every job stays pending, in the order written.
    let system = System::start().await;
    let parent = ["0812-3456-7890", "+62 812 3456 7890", "6281234567890"];
    let mut mine = Vec::new();
    for n in 0..12 {
        let to = if n % 2 == 0 {
            parent[n / 2 % 3].to_owned()
        } else {
            format!("08130000{n:04}")
        };
        let response = reqwest::Client::new()
            .post(system.url("/api/messages"))
            .bearer_auth(API_KEY)
            .header(header::CONTENT_TYPE, "application/json")
            .body(json!({"to": to, "message": format!("m{n}")}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let job: Value = response.json().await.unwrap();
        if n % 2 == 0 {
            mine.push(job["id"].as_str().unwrap().to_owned());
        }
        // Each job its own millisecond, so newest first is one order.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    mine.reverse();

    // The parent's jobs, searched in a fourth spelling, four a page.
    let mut found = Vec::new();
    let mut path = "/api/jobs?phone=0812%203456%207890&limit=4".to_owned();
    loop {
        let (code, page) = get_json(&system, &path).await;
        assert_eq!(code, StatusCode::OK, "{page}");
        let jobs = page["jobs"].as_array().unwrap();
        assert!(jobs.len() <= 4);
        for job in jobs {
            assert_eq!(job["recipient"], "62812*****890", "masked: {job}");
            assert!(job.get("message").is_none(), "no message text in a list");
            found.push(job["id"].as_str().unwrap().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(cursor) => {
                path = format!("/api/jobs?phone=0812%203456%207890&limit=4&cursor={cursor}")
            }
            None => break,
        }
    }
    assert_eq!(found, mine, "the parent's six jobs, newest first");

    // By status and creation time: nothing before the first job, all twelve after.
    let (_, all) = get_json(&system, "/api/jobs?status=pending&from=0").await;
    assert_eq!(all["jobs"].as_array().unwrap().len(), 12);
    let (_, none) = get_json(&system, "/api/jobs?status=failed").await;
    assert!(none["jobs"].as_array().unwrap().is_empty());
    assert!(none["nextCursor"].is_null());
    let (_, early) = get_json(&system, "/api/jobs?until=2001-01-01T00:00:00Z").await;
    assert!(early["jobs"].as_array().unwrap().is_empty());

    // Bad filters name their field.
    for (query, field) in [
        ("phone=12", "phone"),
        ("from=yesterday", "from"),
        ("status=lost", "status"),
        ("limit=1001", "limit"),
        ("cursor=nobody", "cursor"),
        ("account=sma-9", "account"),
    ] {
        let (code, error) = get_json(&system, &format!("/api/jobs?{query}")).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{query}: {error}");
        assert_eq!(error["field"], field, "{query}: {error}");
    }

    // The same filter as a CSV file: a header, then the six jobs.
    let (code, response) = get(&system, "/api/jobs.csv?phone=%2B6281234567890").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/csv; charset=utf-8"
    );
    assert!(
        response.headers()[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let text = response.text().await.unwrap();
    let mut rows = csv::Reader::from_reader(text.as_bytes());
    let headers = rows.headers().unwrap().clone();
    assert_eq!(&headers[0], "id");
    assert_eq!(&headers[1], "status");
    let records: Vec<csv::StringRecord> = rows.records().map(Result::unwrap).collect();
    let ids: Vec<&str> = records.iter().map(|r| &r[0]).collect();
    assert_eq!(ids, mine);
    let to = headers.iter().position(|h| h == "to").unwrap();
    let recipient = headers.iter().position(|h| h == "recipient").unwrap();
    for record in &records {
        assert_eq!(&record[1], "pending");
        assert_eq!(&record[recipient], "62812*****890");
        // A number the app wrote with a leading + is kept from being read as a formula.
        assert!(!record[to].starts_with('+'), "{record:?}");
        assert!(record[to].contains("***"), "masked: {record:?}");
    }
    let (code, error) = get_json(&system, "/api/jobs.csv?status=lost").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(error["field"], "status");
}

async fn enqueue(system: &System, to: &str, message: &str) -> String {
    let response = reqwest::Client::new()
        .post(system.url("/api/messages"))
        .bearer_auth(API_KEY)
        .header(header::CONTENT_TYPE, "application/json")
        .body(json!({"to": to, "message": message}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let job: Value = response.json().await.unwrap();
    job["id"].as_str().unwrap().to_owned()
}

async fn wait_job(system: &System, id: &str, status: &str) {
    system
        .wait_for_status(&format!("{id} {status}"), |s| {
            s["recentJobs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|j| j["id"] == id && j["status"] == status)
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_finds_a_job_tells_its_story_draws_the_day_and_exports_it() {
    let system = System::start().await;
    system.emit(state(gpb::ConnectionStatus::Connected));
    // The parent's job refused for now once, then sent and read; another parent's
    // job sent; the parent's second job failed for good.
    let retried = enqueue(&system, "0812-3456-7890", "retry-once").await;
    wait_job(&system, &retried, "sent").await;
    system.emit(gpb::GatewayEvent {
        event: Some(gpb::gateway_event::Event::Receipt(gpb::Receipt {
            job_id: retried.clone(),
            message_id: format!("m-{retried}"),
            kind: gpb::ReceiptKind::Read as i32,
            at: Some(abtrack_proto::time::to_timestamp(
                abtrack_proto::time::now_ms(),
            )),
        })),
    });
    let other = enqueue(&system, "0813-1111-2222", "Halo").await;
    let failed = enqueue(&system, "+62 812 3456 7890", "fail-once").await;
    wait_job(&system, &retried, "read").await;
    wait_job(&system, &other, "sent").await;
    wait_job(&system, &failed, "failed").await;

    for lang in ["en", "id"] {
        let output = tokio::time::timeout(
            crate::browser::STEP_TIMEOUT,
            node("find.mjs", &system)
                .env("CHROMIUM", chromium())
                .env("LANG_PAGE", lang)
                .env("RETRIED", &retried)
                .env("FAILED", &failed)
                .env("OTHER", &other)
                .env("RETRY_FAILED", if lang == "id" { "1" } else { "" })
                .output(),
        )
        .await
        .expect("the browser script did not finish")
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stdout.contains("OK"),
            "{lang}: {stdout}\n{stderr}"
        );
    }
    // Retried from its view in the second run, the failed job went out.
    wait_job(&system, &failed, "sent").await;
}
