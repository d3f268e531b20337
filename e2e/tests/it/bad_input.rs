//! The bad-input corpus (`e2e/fixtures/bad-input.json`) through the running system:
//! as Firestore documents on the emulator and as bodies of `POST /api/messages` on
//! the local queue. Every refused job names its field and says why, every valid one
//! among them is sent exactly once with its exact text, and no service restarts.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use abtrack_dispatcher::firestore::doc::{int, text};
use abtrack_e2e::Cluster;
use abtrack_e2e::firestore_app::App;
use abtrack_firestore_emulator::TestFirestore;
use base64::Engine;
use firestore::gcloud_sdk::google::firestore::v1::{
    ArrayValue, MapValue, Value as FsValue, value::ValueType,
};
use prost_types::Timestamp;
use serde_json::{Value, json};

const SERVICES: [&str; 4] = ["dispatcher", "wa-gateway", "sheets-logger", "status-web"];

#[derive(Debug)]
struct Case {
    name: String,
    fields: serde_json::Map<String, Value>,
    sent: bool,
    recipient: String,
    field: String,
    reason: String,
}

/// The job cases meant for `backend` ("api" or "firestore").
fn cases(backend: &str) -> Vec<Case> {
    corpus()["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["only"].as_str().is_none_or(|only| only == backend))
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_owned(),
            fields: c["fields"].as_object().unwrap().clone(),
            sent: match c["expect"].as_str().unwrap() {
                "sent" => true,
                "refused" => false,
                other => panic!("unknown expectation {other}"),
            },
            recipient: c["recipient"].as_str().unwrap_or_default().to_owned(),
            field: c["field"].as_str().unwrap_or_default().to_owned(),
            reason: c["reason"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}

fn corpus() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/bad-input.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Expands `{"$repeat": [text, n]}`; other special values are left to the caller.
fn expand(value: &Value) -> Value {
    match value {
        Value::Object(o) if o.contains_key("$repeat") => {
            let parts = o["$repeat"].as_array().unwrap();
            Value::String(
                parts[0]
                    .as_str()
                    .unwrap()
                    .repeat(parts[1].as_u64().unwrap() as usize),
            )
        }
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), expand(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(expand).collect()),
        other => other.clone(),
    }
}

/// A JSON value of the corpus as the Firestore value an app could write.
fn to_firestore(value: &Value) -> FsValue {
    let value_type = match expand(value) {
        Value::Null => ValueType::NullValue(0),
        Value::Bool(b) => ValueType::BooleanValue(b),
        Value::Number(n) if n.is_i64() => ValueType::IntegerValue(n.as_i64().unwrap()),
        Value::Number(n) => ValueType::DoubleValue(n.as_f64().unwrap()),
        Value::String(s) => ValueType::StringValue(s),
        Value::Array(a) => ValueType::ArrayValue(ArrayValue {
            values: a.iter().map(to_firestore).collect(),
        }),
        Value::Object(o) if o.contains_key("$bytes") => ValueType::BytesValue(
            base64::engine::general_purpose::STANDARD
                .decode(o["$bytes"].as_str().unwrap())
                .unwrap(),
        ),
        Value::Object(o) if o.contains_key("$timestamp_secs") => {
            ValueType::TimestampValue(Timestamp {
                seconds: o["$timestamp_secs"].as_i64().unwrap(),
                nanos: 0,
            })
        }
        Value::Object(o) => ValueType::MapValue(MapValue {
            fields: o
                .iter()
                .map(|(k, v)| (k.clone(), to_firestore(v)))
                .collect(),
        }),
    };
    FsValue {
        value_type: Some(value_type),
    }
}

/// Whether the process is still the one started (running, not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

fn pids(cluster: &Cluster) -> HashMap<&'static str, u32> {
    SERVICES
        .iter()
        .map(|s| (*s, cluster.pid(s).unwrap()))
        .collect()
}

/// The four processes started first are still serving: none crashed or restarted.
async fn assert_still_up(cluster: &Cluster, before: &HashMap<&'static str, u32>) {
    for service in SERVICES {
        assert_eq!(cluster.pid(service), Some(before[service]), "{service} pid");
        assert!(alive(before[service]), "{service} exited");
        cluster.wait_serving(service).await;
        assert!(
            !cluster.log(service).contains("panicked"),
            "{service} panicked:\n{}",
            cluster.log(service)
        );
    }
}

/// Each valid job went out once, with its exact text, to the expected recipient.
fn assert_sent_once(cluster: &Cluster, sent: &HashMap<String, (String, String)>) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for line in cluster.dry_run_lines() {
        let id = line["job_id"].as_str().unwrap().to_owned();
        *seen.entry(id.clone()).or_default() += 1;
        let (text, recipient) = sent
            .get(&id)
            .unwrap_or_else(|| panic!("a refused job was sent: {id}"));
        assert!(line["text"].as_str() == Some(text), "{id}: the exact text");
        assert_eq!(line["to"].as_str(), Some(recipient.as_str()), "{id}");
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    let ids: HashSet<&String> = seen.keys().collect();
    let want: HashSet<&String> = sent.keys().collect();
    assert_eq!(ids, want, "every valid job sent");
}

async fn wait_sent(cluster: &Cluster, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while cluster.dry_run_lines().len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} valid jobs sent",
            cluster.dry_run_lines().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_api_bodies_get_400_naming_the_field_and_valid_ones_are_sent_once() {
    let cluster = Cluster::start(&[]).await;
    let before = pids(&cluster);
    let mut sent = HashMap::new();
    for case in cases("api") {
        let mut body = expand(&Value::Object(case.fields.clone()));
        if case.sent && body.get("id").is_none() {
            body["id"] = json!(format!("api-{}", case.name));
        }
        let (status, answer) = cluster
            .post("/api/messages", body.to_string().into_bytes())
            .await;
        if case.sent {
            assert_eq!(status, 201, "{}: {answer}", case.name);
            let message = body["message"].as_str().unwrap().to_owned();
            sent.insert(
                body["id"].as_str().unwrap().to_owned(),
                (message, case.recipient.clone()),
            );
        } else {
            let error = answer["error"].as_str().unwrap_or_default();
            assert_eq!(status, 400, "{}: {answer}", case.name);
            assert_eq!(
                answer["field"],
                case.field.as_str(),
                "{}: {answer}",
                case.name
            );
            assert!(
                error.starts_with(&format!("{}: ", case.field)) && error.contains(&case.reason),
                "{}: {error:?} should name {} and say {:?}",
                case.name,
                case.field,
                case.reason
            );
        }
    }
    for body in corpus()["bodies"].as_array().unwrap() {
        let name = body["name"].as_str().unwrap();
        let raw = match (&body["raw"], body["raw_base64"].as_str()) {
            (_, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
            (raw, None) => expand(raw).as_str().unwrap().as_bytes().to_vec(),
        };
        let (status, answer) = cluster.post("/api/messages", raw).await;
        let error = answer["error"].as_str().unwrap_or_default();
        assert_eq!(
            u64::from(status),
            body["status"].as_u64().unwrap(),
            "{name}: {answer}"
        );
        assert!(
            error.contains(body["reason"].as_str().unwrap()),
            "{name}: {error:?}"
        );
    }
    wait_sent(&cluster, sent.len()).await;
    let status = cluster
        .wait_status(
            Duration::from_secs(30),
            "the valid jobs recorded sent",
            |s| s["queue"]["counts"]["sent"] == sent.len(),
        )
        .await;
    assert_eq!(status["queue"]["counts"]["failed"], 0, "{status:#}");
    assert_sent_once(&cluster, &sent);
    assert_still_up(&cluster, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_firestore_documents_end_failed_naming_the_field_and_valid_ones_are_sent_once() {
    let firestore = TestFirestore::from_env();
    let collection = format!("bad-input-{}", std::process::id());
    let cluster = Cluster::start_firestore(
        &firestore.host,
        &collection,
        &[("DISPATCHER_SWEEP_INTERVAL_SECS", "1")],
    )
    .await;
    let before = pids(&cluster);
    let app = App::connect(&firestore.host, &collection).await;
    let cases = cases("firestore");
    let mut sent = HashMap::new();
    for case in &cases {
        let id = format!("fs-{}", case.name);
        let mut fields: Vec<(&str, FsValue)> = case
            .fields
            .iter()
            .map(|(k, v)| (k.as_str(), to_firestore(v)))
            .collect();
        fields.push(("status", text("pending")));
        app.write_fields(&id, &fields).await;
        if case.sent {
            let message = expand(&case.fields["message"]).as_str().unwrap().to_owned();
            sent.insert(id, (message, case.recipient.clone()));
        }
    }
    let refused = cases.len() - sent.len();
    app.wait_counts(Duration::from_secs(60), "every document finished", |c| {
        c.sent == sent.len() as u64 && c.failed == refused as u64
    })
    .await;
    for case in cases.iter().filter(|c| !c.sent) {
        let job = app.get(&format!("fs-{}", case.name)).await.unwrap();
        let error = job.last_error.unwrap();
        assert_eq!(error.code, "invalid_document", "{}", case.name);
        assert!(
            error.message.starts_with(&format!("{}: ", case.field))
                && error.message.contains(&case.reason),
            "{}: {:?} should name {} and say {:?}",
            case.name,
            error.message,
            case.field,
            case.reason
        );
    }
    assert_sent_once(&cluster, &sent);
    assert_still_up(&cluster, &before).await;
    // The app can still write a plain job after all that, and it goes out.
    app.write_fields(
        "fs-after",
        &[
            ("to", text("081234567890")),
            ("message", text("Halo")),
            ("status", text("pending")),
            ("attempts", int(0)),
        ],
    )
    .await;
    app.wait_counts(Duration::from_secs(30), "the job written after", |c| {
        c.sent == sent.len() as u64 + 1
    })
    .await;
}
