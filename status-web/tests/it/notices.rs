//! The services' notices (`abtrack.notices.v1.Notices`) reaching `GET /api/status`
//! and `/metrics`, and `POST /api/notices/dismiss`: a notice of the real dispatcher
//! and one of the real sheets-logger show, oldest first, until dismissed; the files
//! stay; bad requests name their field; another page cannot dismiss one. The scripted
//! gateway serves no `Notices`: its failing listing is skipped, the others still show.

use reqwest::header;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{API_KEY, System};

const QUEUE_ID: &str = "20261201T010203.004Z";
const OUTBOX_ID: &str = "20250101T000000.000Z";

fn assert_counts(text: &str, dispatcher: u64, gateway: u64, logger: u64) {
    for (service, n) in [
        ("dispatcher", dispatcher),
        ("wa-gateway", gateway),
        ("sheets-logger", logger),
    ] {
        let line = format!("abtrack_notices{{service=\"{service}\"}} {n}\n");
        assert!(text.contains(&line), "missing {line:?} in:\n{text}");
    }
}

async fn dismiss(system: &System, body: Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(system.url("/api/notices/dismiss"))
        .bearer_auth(API_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn status_now(system: &System) -> Value {
    reqwest::Client::new()
        .get(system.url("/api/status"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn ids(status: &Value) -> Vec<(String, String)> {
    status["notices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["service"].as_str().unwrap().to_owned(),
                n["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_shows_until_it_is_dismissed_and_its_files_stay() {
    let system = System::start().await;

    // None yet: an empty list, and zero for every service.
    let status = system.wait_for_status("the first status", |_| true).await;
    assert_eq!(status["notices"], json!([]), "{status}");
    let text = system.metrics().await;
    assert!(text.contains("# TYPE abtrack_notices gauge\n"), "{text}");
    assert_counts(&text, 0, 0, 0);

    // The dispatcher's queue, moved aside now; the logger's outbox, recorded by hand
    // as `abtrack_proto::notice::write` does, long before.
    let queue = system.write_notice("dispatcher", QUEUE_ID, "queue.sqlite3", 3);
    let logger = system.data_dir("logger");
    let outbox = logger.join("damaged").join(OUTBOX_ID);
    std::fs::create_dir_all(&outbox).unwrap();
    std::fs::write(outbox.join("outbox.sqlite3"), b"garbage").unwrap();
    let stored = json!({
        "file": logger.join("outbox.sqlite3").display().to_string(),
        "kept_at": outbox.join("outbox.sqlite3").display().to_string(),
        "reason": "database disk image is malformed",
        "carried_over": 0,
        "at_ms": 1_735_689_600_000_i64
    });
    std::fs::write(outbox.join("notice.json"), stored.to_string()).unwrap();

    let status = system
        .wait_for_status("both notices", |s| {
            s["notices"].as_array().is_some_and(|n| n.len() == 2)
        })
        .await;
    let notices = status["notices"].as_array().unwrap();
    assert_eq!(
        notices[0],
        json!({
            "service": "sheets-logger",
            "id": OUTBOX_ID,
            "kind": "set_aside",
            "file": logger.join("outbox.sqlite3").display().to_string(),
            "keptAt": outbox.join("outbox.sqlite3").display().to_string(),
            "reason": "database disk image is malformed",
            "carriedOver": 0,
            "at": "2025-01-01T00:00:00.000Z"
        }),
        "oldest first: {status}"
    );
    let dispatcher = system.data_dir("dispatcher");
    let mut first = notices[1].clone();
    let at = first.as_object_mut().unwrap().remove("at").unwrap();
    assert_eq!(
        first,
        json!({
            "service": "dispatcher",
            "id": QUEUE_ID,
            "kind": "set_aside",
            "file": dispatcher.join("queue.sqlite3").display().to_string(),
            "keptAt": queue.join("queue.sqlite3").display().to_string(),
            "reason": "file is not a database",
            "carriedOver": 3
        })
    );
    let at = at.as_str().unwrap();
    assert!(
        abtrack_proto::time::parse_rfc3339(at).is_some() && at.ends_with('Z') && at.len() == 24,
        "{at}"
    );
    // The gateway's listing fails (the scripted one serves no `Notices`); the
    // services themselves are reported as before.
    assert_eq!(status["services"]["gateway"]["up"], true);
    assert_counts(&system.metrics().await, 1, 0, 1);

    // Bad requests name their field, and dismiss nothing.
    for (body, field) in [
        (json!({"service": "whatsapp", "id": QUEUE_ID}), "service"),
        (json!({"id": QUEUE_ID}), "service"),
        (json!({"service": "dispatcher"}), "id"),
        (json!({"service": "dispatcher", "id": ""}), "id"),
    ] {
        let (code, answer) = dismiss(&system, body.clone()).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["field"], field, "{body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().starts_with(field),
            "{answer}"
        );
    }
    let (code, answer) = dismiss(&system, json!({"service": "dispatcher", "id": "nope"})).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("nope"),
        "{answer}"
    );
    // The logger's notice is not the dispatcher's.
    let (code, _) = dismiss(&system, json!({"service": "dispatcher", "id": OUTBOX_ID})).await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    // Another page cannot dismiss one, nor can a call without the JSON type or the key.
    let plain = reqwest::Client::new();
    let body = json!({"service": "dispatcher", "id": QUEUE_ID}).to_string();
    let foreign = plain
        .request(Method::POST, system.url("/api/notices/dismiss"))
        .bearer_auth(API_KEY)
        .header(header::ORIGIN, "http://evil.example")
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    let form = plain
        .post(system.url("/api/notices/dismiss"))
        .bearer_auth(API_KEY)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let anonymous = plain
        .post(system.url("/api/notices/dismiss"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(ids(&status_now(&system).await).len(), 2);
    assert!(!queue.join("dismissed").exists());

    // Dismissed: gone from the very next status, the files still there.
    let (code, answer) = dismiss(&system, json!({"service": "dispatcher", "id": QUEUE_ID})).await;
    assert_eq!(code, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"dismissed": true}));
    assert_eq!(
        ids(&status_now(&system).await),
        [("sheets-logger".to_owned(), OUTBOX_ID.to_owned())]
    );
    for kept in ["queue.sqlite3", "notice.json", "dismissed"] {
        assert!(queue.join(kept).is_file(), "{kept} in {}", queue.display());
    }
    assert_counts(&system.metrics().await, 0, 0, 1);

    let (code, _) = dismiss(
        &system,
        json!({"service": "sheets-logger", "id": OUTBOX_ID}),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(status_now(&system).await["notices"], json!([]));
    assert!(outbox.join("outbox.sqlite3").is_file());
    assert_counts(&system.metrics().await, 0, 0, 0);
}
