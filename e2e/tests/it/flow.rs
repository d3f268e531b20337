//! Jobs through the whole system, and bad input at the door.

use std::collections::HashSet;
use std::time::Duration;

use abtrack_e2e::Cluster;
use serde_json::{Value, json};

fn count(status: &Value, name: &str) -> u64 {
    status["queue"]["counts"][name].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_jobs_are_each_sent_once_and_logged() {
    let cluster = Cluster::start(&[]).await;
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in 0..8 {
        let http = cluster.http.clone();
        let url = cluster.url("/api/messages");
        tasks.spawn(async move {
            let mut ids = Vec::new();
            for i in 0..25 {
                let n = chunk * 25 + i;
                let body = json!({ "to": format!("0812-3456-{n:04}"), "message": format!("Ananda hadir, pesan {n}") });
                let response = http.post(&url).json(&body).send().await.unwrap();
                assert_eq!(response.status().as_u16(), 201);
                let job: Value = response.json().await.unwrap();
                ids.push(job["id"].as_str().unwrap().to_owned());
            }
            ids
        });
    }
    let mut ids = HashSet::new();
    while let Some(chunk) = tasks.join_next().await {
        ids.extend(chunk.unwrap());
    }
    assert_eq!(ids.len(), 200);

    let status = cluster
        .wait_status(Duration::from_secs(60), "200 sent jobs", |s| {
            count(s, "sent") == 200
        })
        .await;
    assert_eq!(
        (
            count(&status, "pending"),
            count(&status, "processing"),
            count(&status, "failed")
        ),
        (0, 0, 0)
    );
    assert_eq!(status["services"]["gateway"]["up"], true);
    assert_eq!(status["gateway"]["mode"], "dry-run");

    let lines = cluster.dry_run_lines();
    let sent: Vec<&str> = lines
        .iter()
        .map(|l| l["job_id"].as_str().unwrap())
        .collect();
    let unique: HashSet<String> = sent.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(sent.len(), 200, "one line per job");
    assert_eq!(unique, ids, "exactly the enqueued jobs");
    let to_62 = lines
        .iter()
        .all(|l| l["to"].as_str().unwrap().starts_with("628123456"));
    assert!(
        to_62,
        "local numbers were normalised with the default country code"
    );

    // The logger's outbox holds one record per job (the recorder runs behind).
    for _ in 0..100 {
        if cluster.outbox_records() == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cluster.outbox_records(), 200);
    let status = cluster
        .wait_status(Duration::from_secs(10), "the logger backlog", |s| {
            s["logger"]["backlog"] == 200
        })
        .await;
    assert_eq!(status["logger"]["state"], "disabled");
    let jobs = cluster.get("/api/jobs?status=sent&limit=1000").await;
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 200);
    cluster
        .wait_status(Duration::from_secs(10), "200 sent in the counts", |s| {
            s["queue"]["counts"]["sent"] == 200
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_the_field_named_and_nothing_is_enqueued() {
    let cluster = Cluster::start(&[]).await;
    let huge = "x".repeat(70 * 1024);
    let cases: Vec<(String, Option<&str>, &str)> = vec![
        (
            json!({ "message": "Halo" }).to_string(),
            Some("to"),
            "to: is required",
        ),
        (
            json!({ "to": null, "message": "Halo" }).to_string(),
            Some("to"),
            "to: is required",
        ),
        (
            json!({ "to": 6281234567890u64, "message": "Halo" }).to_string(),
            Some("to"),
            "to: must be a string",
        ),
        (
            json!({ "to": "abc", "message": "Halo" }).to_string(),
            Some("to"),
            "to: recipient contains 'a'",
        ),
        (
            json!({ "to": "0812", "message": "Halo" }).to_string(),
            Some("to"),
            "to: recipient (4 digits) is not a valid phone number",
        ),
        (
            json!({ "to": "081234567890" }).to_string(),
            Some("message"),
            "message: is required",
        ),
        (
            json!({ "to": "081234567890", "message": "" }).to_string(),
            Some("message"),
            "message: is empty",
        ),
        (
            json!({ "to": "081234567890", "message": " \n\t " }).to_string(),
            Some("message"),
            "message: is empty",
        ),
        (
            json!({ "to": "081234567890", "message": huge }).to_string(),
            Some("message"),
            "message: has 71680 characters",
        ),
        (
            json!({ "to": "081234567890", "message": ["Halo"] }).to_string(),
            Some("message"),
            "message: must be a string",
        ),
        (
            json!({ "to": "081234567890", "message": "Halo", "sendAt": "besok" }).to_string(),
            Some("sendAt"),
            "sendAt:",
        ),
        (
            json!({ "to": "081234567890", "message": "Halo", "id": "a b" }).to_string(),
            Some("id"),
            "id:",
        ),
        (
            json!({ "to": "081234567890", "message": "Halo", "phone": "1" }).to_string(),
            Some("phone"),
            "phone: unknown field",
        ),
        (
            "{\"to\": \"081234567890\", \"message\": ".to_owned(),
            None,
            "body is not valid JSON",
        ),
        ("not json at all".to_owned(), None, "body is not valid JSON"),
        (
            "[\"081234567890\", \"Halo\"]".to_owned(),
            None,
            "body must be a JSON object",
        ),
        (String::new(), None, "body is not valid JSON"),
    ];
    for (body, field, message) in &cases {
        let (code, answer) = cluster.post("/api/messages", body.clone()).await;
        assert_eq!(code, 400, "{body:.80}: {answer}");
        assert_eq!(answer["field"].as_str(), *field, "{body:.80}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.starts_with(message), "{body:.80}: {error}");
    }
    let (code, _) = cluster
        .post("/api/messages", vec![0xff, 0xfe, 0x00, 0x01])
        .await;
    assert_eq!(code, 400, "binary garbage");
    let jobs = cluster.get("/api/jobs").await;
    assert_eq!(
        jobs["jobs"].as_array().unwrap().len(),
        0,
        "nothing was enqueued"
    );
    // The services are all still up and a good job still goes out.
    let (code, job) = cluster
        .post(
            "/api/messages",
            json!({ "to": "+62 812-3456-7890", "message": "Halo" }).to_string(),
        )
        .await;
    assert_eq!(code, 201, "{job}");
    cluster
        .wait_status(Duration::from_secs(20), "the good job sent", |s| {
            count(s, "sent") == 1
        })
        .await;
    let (code, answer) = cluster.post("/api/nope", "{}").await;
    assert_eq!(code, 404, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_reach_the_job_and_an_unknown_number_fails_with_its_reason() {
    let cluster = Cluster::start(&[
        ("WA_DRY_RUN_RECEIPTS", "true"),
        ("WA_DRY_RUN_NOT_ON_WHATSAPP", "0812-0000-0000"),
    ])
    .await;
    let (_, read) = cluster
        .post(
            "/api/messages",
            json!({ "to": "081234567890", "message": "Halo" }).to_string(),
        )
        .await;
    let (_, unknown) = cluster
        .post(
            "/api/messages",
            json!({ "to": "081200000000", "message": "Halo" }).to_string(),
        )
        .await;
    let id = read["id"].as_str().unwrap();
    cluster
        .wait_status(Duration::from_secs(20), "one read, one failed", |s| {
            count(s, "read") == 1 && count(s, "failed") == 1
        })
        .await;
    let job = cluster.get(&format!("/api/jobs/{id}")).await;
    assert_eq!(job["status"], "read");
    assert!(
        job["deliveredAt"].is_string() && job["readAt"].is_string() && job["sentAt"].is_string(),
        "{job}"
    );
    assert_eq!(job["message"], "Halo", "one job by id carries its text");
    let failed = cluster
        .get(&format!("/api/jobs/{}", unknown["id"].as_str().unwrap()))
        .await;
    assert_eq!(failed["lastError"]["code"], "not_on_whatsapp", "{failed}");
    assert!(
        failed["lastError"]["message"]
            .as_str()
            .unwrap()
            .contains("is not on WhatsApp")
    );
    // An operator retry returns it to the queue, where it fails again for the same reason.
    let (code, retried) = cluster
        .post(
            &format!("/api/jobs/{}/retry", unknown["id"].as_str().unwrap()),
            "",
        )
        .await;
    assert_eq!(code, 200, "{retried}");
    let (code, refused) = cluster.post(&format!("/api/jobs/{id}/retry"), "").await;
    assert_eq!(code, 409, "{refused}");
}
