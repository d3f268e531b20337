//! The shared internal token: with `ABTRACK_INTERNAL_TOKEN` set, jobs still flow end
//! to end, every gRPC service refuses calls without it or with another one (health
//! checks stay open), and a dispatcher with the wrong token keeps its jobs waiting
//! instead of failing them.

use std::time::Duration;

use abtrack_e2e::Cluster;
use abtrack_proto::dispatcher::v1::{self as dpb, dispatcher_client::DispatcherClient};
use abtrack_proto::gateway::v1::{self as gpb, gateway_client::GatewayClient};
use abtrack_proto::logger::v1::{self as lpb, sheets_logger_client::SheetsLoggerClient};
use abtrack_proto::token::{InternalToken, TokenChannel, with_token};
use serde_json::json;
use tonic::Code;

const TOKEN: &str = "e2e-Internal~Token_0123456789";
const WRONG: &str = "e2e-Internal~Token_0123456780";

fn call<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(Duration::from_secs(10));
    request
}

fn token(raw: &str) -> InternalToken {
    InternalToken::parse(raw).unwrap()
}

/// One call to each gRPC service over `channel_for(name)`; the status codes in the
/// order dispatcher, wa-gateway, sheets-logger (`Ok` for an answer).
async fn codes(channel_for: impl Fn(&str) -> TokenChannel) -> Vec<Code> {
    let dispatcher = DispatcherClient::new(channel_for("dispatcher"))
        .list_jobs(call(dpb::ListJobsRequest {
            statuses: vec![],
            limit: 1,
            ..Default::default()
        }))
        .await
        .map(|_| ());
    let gateway = GatewayClient::new(channel_for("wa-gateway"))
        .check_number(call(gpb::CheckNumberRequest {
            phone: "081234567890".into(),
        }))
        .await
        .map(|_| ());
    let logger = SheetsLoggerClient::new(channel_for("sheets-logger"))
        .watch(call(lpb::WatchRequest {}))
        .await
        .map(|_| ());
    [dispatcher, gateway, logger]
        .into_iter()
        .map(|r| r.map_or_else(|status| status.code(), |()| Code::Ok))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_goes_end_to_end_with_the_token() {
    let cluster = Cluster::start(&[("ABTRACK_INTERNAL_TOKEN", TOKEN)]).await;
    let (code, job) = cluster
        .post(
            "/api/messages",
            json!({ "to": "0812-3456-7890", "message": "Ananda tiba di sekolah" }).to_string(),
        )
        .await;
    assert_eq!(code, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    cluster.wait_sent(&[&id], Duration::from_secs(30)).await;
    assert_eq!(
        cluster
            .dry_run_lines()
            .iter()
            .filter(|l| l["job_id"] == id.as_str())
            .count(),
        1
    );
    // The dispatcher's Record reached the logger with the token too.
    cluster
        .wait_status(Duration::from_secs(30), "the outcome in the logger", |_| {
            cluster.outbox_records() == 1
        })
        .await;
    let status = cluster.get("/api/status").await;
    for service in ["dispatcher", "gateway", "logger"] {
        assert_eq!(status["services"][service]["state"], "up", "{status:#}");
    }
    for service in ["dispatcher", "wa-gateway", "sheets-logger"] {
        assert!(
            cluster.log(service).contains("internal token set"),
            "{service} does not log that the token is set"
        );
        assert!(
            !cluster.log(service).contains(TOKEN),
            "{service} logged the token"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_the_token_or_with_a_wrong_one_are_refused_but_health_is_open() {
    let cluster = Cluster::start(&[("ABTRACK_INTERNAL_TOKEN", TOKEN)]).await;
    let missing = codes(|name| with_token(cluster.grpc_channel(name), None)).await;
    assert_eq!(missing, vec![Code::Unauthenticated; 3]);
    let wrong = codes(|name| with_token(cluster.grpc_channel(name), Some(&token(WRONG)))).await;
    assert_eq!(wrong, vec![Code::Unauthenticated; 3]);
    let right = codes(|name| cluster.grpc(name)).await;
    assert_eq!(right, vec![Code::Ok; 3]);

    // The messages say which case it was, and never echo a token.
    let status = GatewayClient::new(with_token(
        cluster.grpc_channel("wa-gateway"),
        Some(&token(WRONG)),
    ))
    .send(call(gpb::SendRequest {
        job_id: "refused-1".into(),
        to: "081234567890".into(),
        message: "never sent".into(),
        ..Default::default()
    }))
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "wrong internal token");
    let status = DispatcherClient::new(with_token(cluster.grpc_channel("dispatcher"), None))
        .pause(call(dpb::PauseRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.message(), "missing internal token");
    assert!(cluster.dry_run_lines().is_empty(), "a refused Send sent");
    let paused = cluster.get("/api/status").await["queue"]["paused"].clone();
    assert_eq!(paused, false, "a refused Pause paused the queue");

    for service in ["dispatcher", "wa-gateway", "sheets-logger"] {
        let url = format!("http://127.0.0.1:{}", cluster.ports[service]);
        let serving = abtrack_proto::health::check(&url, Duration::from_secs(5)).await;
        assert_eq!(serving, Ok(true), "{service} health without a token");
        let log = cluster.log(service);
        assert!(log.contains("gRPC call refused"), "{service}: {log}");
        assert!(
            !log.contains(WRONG) && !log.contains(TOKEN),
            "{service} logged a token"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_with_a_wrong_token_keeps_its_jobs_pending() {
    let mut cluster = Cluster::start(&[("ABTRACK_INTERNAL_TOKEN", TOKEN)]).await;
    cluster.kill("dispatcher");
    cluster.spawn_as(
        "dispatcher",
        "dispatcher",
        &[("ABTRACK_INTERNAL_TOKEN", WRONG)],
    );
    cluster.wait_serving("dispatcher").await;

    // status-web's own token is refused now: the dashboard and the API say so.
    let status = cluster
        .wait_status(
            Duration::from_secs(30),
            "status-web to see the dispatcher refuse its token",
            |s| s["services"]["dispatcher"]["state"] == "refused: internal token",
        )
        .await;
    let error = status["services"]["dispatcher"]["error"].as_str().unwrap();
    assert!(error.contains("ABTRACK_INTERNAL_TOKEN"), "{error}");
    assert_eq!(status["services"]["gateway"]["state"], "up");
    let (code, body) = cluster
        .post(
            "/api/messages",
            json!({ "to": "0812-3456-7890", "message": "Halo" }).to_string(),
        )
        .await;
    assert_eq!(code, 502, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.starts_with(
            "the dispatcher refused status-web's internal token (wrong internal token)"
        ) && message.contains("ABTRACK_INTERNAL_TOKEN"),
        "{message}"
    );

    // The dispatcher takes a job from a client with its (wrong) token, but the gateway
    // refuses it: the job waits, no attempt is used, and the reason says why.
    let mut dispatcher = DispatcherClient::new(with_token(
        cluster.grpc_channel("dispatcher"),
        Some(&token(WRONG)),
    ));
    let job = dispatcher
        .enqueue(call(dpb::EnqueueRequest {
            to: "0812-3456-7890".into(),
            message: "Ananda tiba di sekolah".into(),
            send_at: None,
            id: "refused-token-1".into(),
            account: String::new(),
            media: None,
        }))
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let reason = loop {
        let state = dispatcher
            .resume(call(dpb::ResumeRequest {}))
            .await
            .unwrap()
            .into_inner();
        if state.waiting_reason.contains("refused the internal token") {
            assert!(!state.gateway_ready);
            break state.waiting_reason;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no waiting reason about the token: {state:?}\n{}",
            cluster.log("dispatcher")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(reason.contains("ABTRACK_INTERNAL_TOKEN"), "{reason}");
    let held = dispatcher
        .get_job(call(dpb::GetJobRequest { id: job.id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(held.status, dpb::JobStatus::Pending as i32, "{held:?}");
    assert_eq!(held.attempts, 0, "{held:?}");
    assert!(cluster.dry_run_lines().is_empty());

    // With the right token the same job goes out.
    cluster.kill("dispatcher");
    cluster.spawn("dispatcher");
    cluster.wait_serving("dispatcher").await;
    let path = format!("/api/jobs/{}", job.id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let response = cluster.http.get(cluster.url(&path)).send().await.unwrap();
        if response.status().is_success() {
            let view: serde_json::Value = response.json().await.unwrap();
            if view["status"] == "sent" {
                assert_eq!(view["attempts"], 1, "{view}");
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job was not sent after the token was fixed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster
        .wait_status(Duration::from_secs(30), "the dispatcher back up", |s| {
            s["services"]["dispatcher"]["state"] == "up"
        })
        .await;
}
