//! Who gets what: every route and the Socket.IO handshake refuse anonymous
//! requests without leaking data; the login cookie, the API key, the login limit,
//! `/metrics` and the gateway actions.

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, redirect};

use crate::harness::{API_KEY, PAIR_CODE, PASSWORD, System};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap()
}

async fn login(system: &System, password: &str) -> reqwest::Response {
    client()
        .post(system.url("/login"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("password={}&lang=en", password.replace(' ', "+")))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests_get_401_or_the_login_page_and_never_data() {
    let system = System::start().await;
    system.emit_qr("2@SECRET-QR-CODE", std::time::Duration::from_secs(60));
    let http = client();
    let routes = [
        (Method::GET, "/"),
        (Method::GET, "/?lang=en"),
        (Method::GET, "/assets/dashboard.js"),
        (Method::GET, "/assets/socket.io.min.js"),
        (Method::GET, "/metrics"),
        (Method::GET, "/api/status"),
        (Method::GET, "/api/jobs"),
        (Method::GET, "/api/jobs/some-id"),
        (Method::POST, "/api/messages"),
        (Method::POST, "/api/jobs/some-id/retry"),
        (Method::POST, "/api/queue/pause"),
        (Method::POST, "/api/queue/resume"),
        (Method::POST, "/api/gateway/pair-code"),
        (Method::POST, "/api/gateway/logout"),
        (Method::POST, "/api/notices/dismiss"),
        (Method::POST, "/logout"),
        (Method::GET, "/no/such/route"),
        (Method::GET, "/socket.io/?EIO=4&transport=polling"),
        (Method::POST, "/socket.io/?EIO=4&transport=polling&sid=x"),
    ];
    for (method, path) in routes {
        let response = http
            .request(method.clone(), system.url(path))
            .header(header::CONTENT_TYPE, "application/json")
            .body(r#"{"to": "081234567890", "message": "hi", "phone": "62812"}"#)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.text().await.unwrap();
        if status == StatusCode::SEE_OTHER {
            let expected = path.replacen('/', "/login", 1);
            assert_eq!(
                location.as_deref(),
                Some(expected.as_str()),
                "{method} {path}"
            );
            assert!(
                path.starts_with("/?") || path == "/",
                "{method} {path} redirected"
            );
        } else {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
        }
        for secret in ["SECRET", "services", "counts", "<svg", "socket.io"] {
            assert!(
                !body.contains(secret),
                "{method} {path} leaked {secret}: {body}"
            );
        }
    }
    // The Socket.IO WebSocket handshake is refused before any upgrade.
    let mut upgrade = HeaderMap::new();
    upgrade.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    upgrade.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    upgrade.insert("sec-websocket-version", HeaderValue::from_static("13"));
    upgrade.insert(
        "sec-websocket-key",
        HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
    );
    let response = http
        .get(system.url("/socket.io/?EIO=4&transport=websocket"))
        .headers(upgrade)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // A forged cookie and a wrong key do not count.
    for (name, value) in [
        (header::COOKIE, "abtrack_session=0123456789abcdef"),
        (header::AUTHORIZATION, "Bearer not-the-key-at-all"),
    ] {
        let response = http
            .get(system.url("/api/status"))
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // Nothing anonymous had an effect.
    assert_eq!(*system.logouts.lock().unwrap(), 0);
    let status = system
        .wait_for_status("the QR code", |s| s["gateway"]["qrAvailable"] == true)
        .await;
    assert_eq!(status["queue"]["paused"], false);
    assert_eq!(status["queue"]["counts"]["pending"], 0);
    // Public: the health check, the login page and its style sheet.
    let health = http.get(system.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let style = http
        .get(system.url("/assets/dashboard.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(style.status(), StatusCode::OK);
    assert!(style.text().await.unwrap().starts_with(":root"));
    let page = http.get(system.url("/login?lang=id")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(page.contains("Kata sandi"), "{page}");
    assert!(!page.contains("SECRET"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cookie_and_the_api_key_open_everything() {
    let system = System::start().await;
    let http = client();

    let wrong = login(&system, "not the password").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(header::SET_COOKIE).is_none());

    let response = login(&system, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/?lang=en");
    let set_cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(set_cookie.starts_with("abtrack_session="), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    let page = http
        .get(system.url("/?lang=en"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(page.contains("<html lang=\"en\""), "{page}");
    assert!(page.contains("/assets/socket.io.min.js"));
    let script = http
        .get(system.url("/assets/socket.io.min.js"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(script.text().await.unwrap().contains("Socket.IO v4"));

    let status = http
        .get(system.url("/api/status"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), StatusCode::OK);

    let metrics = http
        .get(system.url("/metrics"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let metrics = metrics.text().await.unwrap();
    for line in [
        "abtrack_service_up{service=\"wa-gateway\"} 1",
        "abtrack_gateway_state{state=\"waiting_for_qr\"} 1",
        "abtrack_jobs{status=\"pending\"} 0",
        "# TYPE abtrack_pickup_latency_seconds histogram",
    ] {
        assert!(metrics.contains(line), "missing {line} in:\n{metrics}");
    }

    // The gateway's linking actions.
    let pair = http
        .post(system.url("/api/gateway/pair-code"))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({ "phone": "6281234567890" }))
        .send()
        .await
        .unwrap();
    assert_eq!(pair.status(), StatusCode::OK);
    assert_eq!(
        pair.json::<serde_json::Value>().await.unwrap()["code"],
        PAIR_CODE
    );
    for (body, field) in [
        (r#"{"phone": 62812}"#, "phone"),
        (r#"{}"#, "phone"),
        (r#"{"phone": "0812x"}"#, "phone"),
    ] {
        let bad = http
            .post(system.url("/api/gateway/pair-code"))
            .bearer_auth(API_KEY)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST, "{body}");
        let error: serde_json::Value = bad.json().await.unwrap();
        assert_eq!(error["field"], field, "{body}: {error}");
    }
    let reset = http
        .post(system.url("/api/gateway/logout"))
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), StatusCode::OK);
    assert_eq!(*system.logouts.lock().unwrap(), 1);

    // Logging out ends the session.
    let out = http
        .post(system.url("/logout"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let after = http
        .get(system.url("/api/status"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_attempts_are_limited() {
    let system = System::start().await;
    for _ in 0..abtrack_status_web::auth::LOGIN_ATTEMPTS {
        assert_eq!(
            login(&system, "guess guess").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Even the right password waits now.
    let blocked = login(&system, PASSWORD).await;
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(blocked.headers().contains_key(header::RETRY_AFTER));
    assert!(blocked.headers().get(header::SET_COOKIE).is_none());
}
