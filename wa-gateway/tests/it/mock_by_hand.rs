//! The standalone `wa-mock` program, driven only through its HTTP control API as a
//! person would drive it: the four services as processes, the gateway linked by
//! `POST /scan` (which reads the QR code the gateway shows), recipients with the
//! behaviours a person sets, automatic and held receipts, a dropped connection the
//! gateway heals from, and a control API that refuses other web pages.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use abtrack_e2e::{Cluster, bin_dir};

use crate::mock_cluster::{enqueue, on_the_mock, wait_job};

const WAIT: Duration = Duration::from_secs(90);
const ONLINE: &str = "6281200000091";
const OFFLINE: &str = "6281200000092";
const REFUSING: &str = "6281200000093";
const BY_LID: &str = "6281200000094";

/// A running `wa-mock` process and its two addresses.
struct MockProgram {
    _child: Child,
    whatsapp: String,
    control: String,
    http: reqwest::Client,
}

impl MockProgram {
    /// Starts `wa-mock` on free ports; its first line on stdout names them.
    async fn start() -> Self {
        let mut child = Command::new(bin_dir().join("wa-mock"))
            .args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("wa-mock starts (cargo build --workspace --bins builds it)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("wa-mock names its addresses")
            .unwrap()
            .unwrap();
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .unwrap_or_else(|| panic!("no {key} in {line:?}"))
                .trim_end_matches('/')
                .to_owned()
        };
        Self {
            whatsapp: field("whatsapp="),
            control: field("control="),
            _child: child,
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.control));
        if method != reqwest::Method::GET {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let code = response.status().as_u16();
        (code, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        let (code, body) = self.call(reqwest::Method::GET, path, Value::Null).await;
        assert_eq!(code, 200, "GET {path}: {body}");
        body
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let (code, answer) = self.call(reqwest::Method::POST, path, body).await;
        assert_eq!(code, 200, "POST {path}: {answer}");
        answer
    }

    async fn put(&self, path: &str, body: Value) -> Value {
        let (code, answer) = self.call(reqwest::Method::PUT, path, body).await;
        assert_eq!(code, 200, "PUT {path}: {answer}");
        answer
    }

    /// Polls `GET path` until `done` holds.
    async fn wait(&self, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let body = self.get(path).await;
            if done(&body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_runs_against_the_standalone_mock_by_its_control_api() {
    let mock = MockProgram::start().await;
    mock.put(&format!("/recipients/{ONLINE}"), json!({})).await;
    let offline = mock
        .put(
            &format!("/recipients/{OFFLINE}"),
            json!({ "offline": true }),
        )
        .await;
    assert_eq!(offline["offline"], true, "{offline}");
    mock.put(
        &format!("/recipients/{REFUSING}"),
        json!({ "ack": { "error": { "code": "479" } } }),
    )
    .await;
    let by_lid = mock
        .put(&format!("/recipients/{BY_LID}"), json!({ "lidOnly": true }))
        .await;
    assert!(
        by_lid["lid"].as_str().unwrap().ends_with("@lid"),
        "{by_lid}"
    );

    // Linking: the mock reads the QR code the gateway shows and scans it.
    let cluster = Cluster::start_unlinked(&on_the_mock(&mock.whatsapp, &[])).await;
    let gateway = format!("http://127.0.0.1:{}", cluster.ports["wa-gateway"]);
    mock.wait("/state", "the gateway to wait for a scan", |s| {
        s["waitingForScan"] == 1
    })
    .await;
    mock.post("/scan", json!({ "gateway": gateway })).await;
    cluster
        .wait_status(WAIT, "the gateway to connect", |s| {
            s["gateway"]["status"] == "connected"
        })
        .await;
    let state = mock.get("/state").await;
    assert_eq!(
        (&state["linkedDevices"], &state["online"]),
        (&json!(1), &json!(1)),
        "{state}"
    );

    let online = enqueue(&cluster, ONLINE, "Ananda hadir").await;
    let held = enqueue(&cluster, OFFLINE, "Ananda izin").await;
    let refused = enqueue(&cluster, REFUSING, "Ananda sakit").await;
    let lid = enqueue(&cluster, BY_LID, "Ananda terlambat").await;

    // An online phone confirms by itself; an offline one holds its receipt.
    wait_job(&cluster, &online, "the online job delivered", |j| {
        j["status"] == "delivered"
    })
    .await;
    wait_job(&cluster, &lid, "the LID job delivered", |j| {
        j["status"] == "delivered"
    })
    .await;
    let failed = wait_job(&cluster, &refused, "the refused job failed", |j| {
        j["status"] == "failed"
    })
    .await;
    assert_eq!(failed["lastError"]["code"], "whatsapp_479", "{failed}");
    wait_job(&cluster, &held, "the offline job sent", |j| {
        j["status"] == "sent"
    })
    .await;
    mock.wait(&format!("/recipients/{OFFLINE}"), "the held receipt", |r| {
        r["heldReceipts"] == 1
    })
    .await;
    let released = mock
        .post(&format!("/recipients/{OFFLINE}/release"), json!({}))
        .await;
    assert_eq!(released["released"], 1);
    wait_job(&cluster, &held, "the offline job delivered", |j| {
        j["status"] == "delivered"
    })
    .await;
    let read = mock
        .post(&format!("/recipients/{ONLINE}/read"), json!({}))
        .await;
    assert_eq!(read["read"], 1);
    wait_job(&cluster, &online, "the online job read", |j| {
        j["status"] == "read"
    })
    .await;

    // What each recipient received, with the exact texts.
    let received = mock.get("/received").await;
    let mut texts: Vec<(String, String)> = received
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["to"].as_str().unwrap().to_owned(),
                m["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    texts.sort();
    assert_eq!(
        texts,
        [
            (ONLINE.to_owned(), "Ananda hadir".to_owned()),
            (OFFLINE.to_owned(), "Ananda izin".to_owned()),
            (BY_LID.to_owned(), "Ananda terlambat".to_owned()),
        ]
    );

    // A dropped connection: the gateway logs in again by itself and sends on.
    let logins = mock.get("/state").await["logins"].as_u64().unwrap();
    mock.post("/events/drop", json!({})).await;
    mock.wait("/state", "a new login", |s| {
        s["logins"].as_u64().unwrap() > logins && s["online"] == 1
    })
    .await;
    let after = enqueue(&cluster, ONLINE, "sesudah").await;
    wait_job(&cluster, &after, "the job after the drop", |j| {
        j["status"] == "delivered"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_api_refuses_other_web_pages_and_bad_input() {
    let mock = MockProgram::start().await;
    let url = |path: &str| format!("{}{path}", mock.control);
    let http = &mock.http;
    let status = |r: reqwest::Response| r.status().as_u16();

    // A form post from another page (no JSON content type) and a cross-site fetch.
    let form = http
        .post(url("/events/logout"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(status(form), 415);
    let cross = http
        .get(url("/received"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(status(cross), 403);
    let rebound = http
        .get(url("/state"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(status(rebound), 403);

    // Bad input gets a plain error and changes nothing.
    let (code, body) = mock
        .call(reqwest::Method::PUT, "/recipients/0812", json!({}))
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("8 to 15 digits"),
        "{body}"
    );
    let (code, body) = mock
        .call(
            reqwest::Method::PUT,
            &format!("/recipients/{ONLINE}"),
            json!({ "ack": { "error": { "code": "x" } } }),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = mock
        .call(reqwest::Method::POST, "/events/explode", json!({}))
        .await;
    assert_eq!(code, 404, "{body}");
    let (code, body) = mock.call(reqwest::Method::POST, "/scan", json!({})).await;
    assert_eq!(code, 409, "nobody is waiting to be linked: {body}");
    assert_eq!(mock.get("/recipients").await, json!([]));
}
