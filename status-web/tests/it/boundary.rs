//! The browser boundary, with and without a password: a page from another origin
//! in headless Chromium drives nothing (no reset, no message, no pause, no notice
//! dismissed) and reads nothing; a foreign `Host` gets no data; the dashboard itself,
//! clients without `Origin` and the API key still work.

use std::time::Duration;

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::browser::{Conversation, STEP_TIMEOUT, converse, finish, node};
use crate::harness::{API_KEY, Login, System};

/// The dispatcher's notice another page would like to dismiss.
const NOTICE_ID: &str = "20261201T010203.004Z";

/// What a request to `path` carries: the body that would do something there.
fn body_for(path: &str, message: &str) -> String {
    if path == "/api/notices/dismiss" {
        json!({"service": "dispatcher", "id": NOTICE_ID}).to_string()
    } else {
        json!({"to": "081234567890", "message": message}).to_string()
    }
}

/// A client as an application's server or curl is: no `Origin`, no cookies.
struct Plain {
    http: reqwest::Client,
    login: Login,
}

impl Plain {
    fn new(login: Login) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self { http, login }
    }

    fn request(&self, method: Method, url: String) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match self.login {
            Login::Password => request.bearer_auth(API_KEY),
            Login::Open => request,
        }
    }
}

async fn jobs(system: &System, plain: &Plain) -> Vec<Value> {
    let list: Value = plain
        .request(Method::GET, system.url("/api/jobs?limit=100"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["jobs"].as_array().unwrap().clone()
}

/// The system with a QR code waiting to be scanned (what another page wants most)
/// and a notice of the dispatcher's (one it would like to hide).
async fn with_a_qr_code(login: Login, code: &str) -> System {
    let system = System::start_with(login).await;
    system.emit_qr(code, Duration::from_secs(120));
    system.write_notice("dispatcher", NOTICE_ID, "queue.sqlite3", 1);
    system
        .wait_for_status("the QR code and the notice", |s| {
            s["gateway"]["qrAvailable"] == true && s["notices"][0]["id"] == NOTICE_ID
        })
        .await;
    system
}

/// What the test asserts after the other page's attempts: nothing changed.
async fn untouched(system: &System, plain: &Plain) {
    assert_eq!(*system.logouts.lock().unwrap(), 0, "the session was reset");
    let status = system.wait_for_status("the status", |_| true).await;
    assert_eq!(status["queue"]["paused"], false, "the queue was paused");
    assert_eq!(status["gateway"]["qrAvailable"], true);
    assert_eq!(
        status["notices"][0]["id"], NOTICE_ID,
        "the notice was dismissed"
    );
    let notice = system
        .data_dir("dispatcher")
        .join("damaged")
        .join(NOTICE_ID);
    assert!(
        !notice.join("dismissed").exists(),
        "the notice was dismissed"
    );
    assert_eq!(
        jobs(system, plain).await,
        Vec::<Value>::new(),
        "a job was enqueued"
    );
}

async fn another_page_drives_nothing(login: Login) {
    let system = with_a_qr_code(login, "2@CROSS-SITE-SECRET").await;
    let plain = Plain::new(login);
    let mut script = node("crosssite.mjs", &system);
    script.env("NOTICE", NOTICE_ID);
    if login == Login::Open {
        script.env_remove("PASSWORD");
    }
    let Conversation {
        child,
        mut stdin,
        mut lines,
    } = converse(script);
    let mut results = Vec::new();
    let dashboard_job = loop {
        let line = tokio::time::timeout(STEP_TIMEOUT, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no line from the browser after {results:#?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the browser script ended after {results:#?}"));
        println!("{line}");
        if let Some(result) = line.strip_prefix("RESULT ") {
            results.push(result.to_owned());
        } else if line == "STEP attacked" {
            untouched(&system, &plain).await;
            stdin.write_all(b"go\n").await.unwrap();
        } else if let Some(id) = line.strip_prefix("STEP dashboard ") {
            break id.to_owned();
        }
    };
    drop(stdin);
    finish(child).await;

    let has = |expected: &str| results.iter().any(|r| r.starts_with(expected));
    for expected in [
        "SOCKET websocket connect_error",
        "SOCKET polling connect_error",
        "RAW WEBSOCKET error",
        "READ /api/status failed TypeError",
        "IFRAME dashboard=false",
        "FORM /api/gateway/logout status=403",
        "FORM /api/messages status=403",
        "FORM /api/queue/pause status=403",
        "FORM /api/notices/dismiss status=403",
        "DASHBOARD qr shown",
        "DASHBOARD websocket frames=some",
        "DASHBOARD csp violations=0",
    ] {
        assert!(has(expected), "missing {expected:?} in {results:#?}");
    }
    for forbidden in [
        "SNAPSHOT",
        "RAW WEBSOCKET open",
        "RAW WEBSOCKET message",
        "SOCKET websocket connected",
        "SOCKET polling connected",
    ] {
        assert!(!has(forbidden), "{forbidden:?} in {results:#?}");
    }
    if login == Login::Password {
        assert!(has("logged in"), "{results:#?}");
    }

    // The dashboard itself paused the queue and enqueued one job; nothing else ran.
    let status = system
        .wait_for_status("paused by the dashboard", |s| s["queue"]["paused"] == true)
        .await;
    assert_eq!(status["queue"]["counts"]["pending"], 1);
    assert_eq!(*system.logouts.lock().unwrap(), 0);
    let job: Value = plain
        .request(
            Method::GET,
            system.url(&format!("/api/jobs/{dashboard_job}")),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["message"], "sent from the dashboard", "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_page_in_chromium_drives_nothing_without_a_password() {
    another_page_drives_nothing(Login::Open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_page_in_chromium_drives_nothing_with_a_password() {
    another_page_drives_nothing(Login::Password).await;
}

const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        abtrack_status_web::boundary::CONTENT_SECURITY_POLICY,
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
];

fn assert_security_headers(what: &str, headers: &HeaderMap) {
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(
            headers.get(*name).and_then(|v| v.to_str().ok()),
            Some(*value),
            "{what}: {name}"
        );
    }
    assert!(
        headers.get("access-control-allow-origin").is_none(),
        "{what} granted CORS"
    );
}

async fn clients_without_a_browser_keep_working(login: Login) {
    let system = with_a_qr_code(login, "2@FOREIGN-HOST-SECRET").await;
    let plain = Plain::new(login);
    let port = system.base.rsplit(':').next().unwrap().to_owned();

    // A foreign Host (DNS rebinding) gets a refusal and no data, whatever the route.
    let routes = [
        (Method::GET, "/"),
        (Method::GET, "/login"),
        (Method::GET, "/assets/dashboard.js"),
        (Method::GET, "/metrics"),
        (Method::GET, "/api/status"),
        (Method::GET, "/api/jobs"),
        (Method::GET, "/socket.io/?EIO=4&transport=polling"),
        (Method::POST, "/api/messages"),
        (Method::POST, "/api/queue/pause"),
        (Method::POST, "/api/gateway/logout"),
        (Method::POST, "/api/notices/dismiss"),
    ];
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_owned(),
        format!("localhost:{}", port.parse::<u16>().unwrap() + 1),
    ] {
        for (method, path) in &routes {
            let response = plain
                .request(method.clone(), system.url(path))
                .header(header::HOST, &host)
                .header(header::CONTENT_TYPE, "application/json")
                .body(body_for(path, "rebound"))
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::FORBIDDEN,
                "{method} {path} as {host}"
            );
            assert_security_headers(path, response.headers());
            let body = response.text().await.unwrap();
            assert!(body.contains("STATUS_WEB_ALLOWED_HOSTS"), "{body}");
            for secret in [
                "SECRET",
                "services",
                "counts",
                "<svg",
                "sid",
                "abtrack_jobs",
            ] {
                assert!(
                    !body.contains(secret),
                    "{method} {path} as {host} leaked {secret}: {body}"
                );
            }
        }
    }
    untouched(&system, &plain).await;

    // A foreign Origin is refused on reads and writes alike, with no CORS grant.
    for (method, path) in &routes {
        let response = plain
            .request(method.clone(), system.url(path))
            .header(header::ORIGIN, "http://evil.example")
            .header(header::CONTENT_TYPE, "application/json")
            .body(body_for(path, "cross-origin"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path}");
        assert_security_headers(path, response.headers());
    }
    // A preflight is never granted.
    let preflight = plain
        .request(Method::OPTIONS, system.url("/api/messages"))
        .header(header::ORIGIN, format!("http://127.0.0.1:{port}"))
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(!preflight.status().is_success(), "{}", preflight.status());
    assert_security_headers("OPTIONS /api/messages", preflight.headers());

    // API writes without the JSON type: 415, nothing done.
    for (path, content_type) in [
        ("/api/messages", Some("text/plain")),
        ("/api/messages", None),
        ("/api/queue/pause", None),
        (
            "/api/queue/pause",
            Some("application/x-www-form-urlencoded"),
        ),
        ("/api/gateway/logout", Some("text/plain")),
        ("/api/notices/dismiss", Some("text/plain")),
        ("/api/notices/dismiss", None),
    ] {
        let mut request = plain
            .request(Method::POST, system.url(path))
            .body(body_for(path, "plain"));
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{path} {content_type:?}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "Content-Type must be application/json");
    }
    untouched(&system, &plain).await;

    // A body refused before it is read: the answer says the connection closes, so the
    // same client's next request goes out on a new one and succeeds.
    for _ in 0..5 {
        let oversized = plain
            .request(Method::POST, system.url("/api/messages"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(vec![b'x'; abtrack_status_web::api::MAX_MESSAGE_BODY + 1])
            .send()
            .await
            .unwrap();
        assert_eq!(oversized.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(oversized.headers()[header::CONNECTION], "close");
        let body: Value = oversized.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().starts_with("body: "),
            "{body}"
        );
        let next = plain
            .request(Method::GET, system.url("/api/status"))
            .send()
            .await
            .unwrap();
        assert_eq!(next.status(), StatusCode::OK);
    }

    // Clients without Origin, and the dashboard's own origin, work as before.
    let enqueued = plain
        .request(Method::POST, system.url("/api/messages"))
        .json(&json!({"id": "plain-1", "to": "081234567890", "message": "from curl"}))
        .send()
        .await
        .unwrap();
    assert_eq!(enqueued.status(), StatusCode::CREATED);
    assert_security_headers("POST /api/messages", enqueued.headers());
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let own = plain
            .request(Method::POST, system.url("/api/queue/pause"))
            .header(header::HOST, &host)
            .header(header::ORIGIN, format!("http://{host}"))
            .header(header::CONTENT_TYPE, "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(own.status(), StatusCode::OK, "{host}");
    }
    let resumed = plain
        .request(Method::POST, system.url("/api/queue/resume"))
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), StatusCode::OK);
    let status = system
        .wait_for_status("resumed with one job", |s| {
            s["queue"]["paused"] == false && s["queue"]["counts"]["pending"] == 1
        })
        .await;
    assert_eq!(status["queue"]["counts"]["pending"], 1);
    // Every page and file carries the framing and content headers.
    for path in [
        "/",
        "/login",
        "/assets/dashboard.css",
        "/healthz",
        "/api/status",
    ] {
        let response = plain
            .request(Method::GET, system.url(path))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().as_u16() < 400,
            "{path}: {}",
            response.status()
        );
        assert_security_headers(path, response.headers());
    }
    // Password mode: still nothing without the key.
    if login == Login::Password {
        let anonymous = reqwest::Client::new()
            .post(system.url("/api/queue/pause"))
            .header(header::CONTENT_TYPE, "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        let mut cookie = HeaderMap::new();
        cookie.insert(
            header::COOKIE,
            HeaderValue::from_static("abtrack_session=forged"),
        );
        let forged = reqwest::Client::new()
            .get(system.url("/api/status"))
            .headers(cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_browser_keep_working_and_foreign_hosts_get_nothing_without_a_password() {
    clients_without_a_browser_keep_working(Login::Open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_browser_keep_working_and_foreign_hosts_get_nothing_with_a_password() {
    clients_without_a_browser_keep_working(Login::Password).await;
}
