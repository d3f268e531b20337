//! Several WhatsApp accounts: one card each in the status and on the dashboard, each
//! account's own QR code, pair code, session reset, pacing and job counts, and jobs
//! naming an account.

use reqwest::StatusCode;
use reqwest::header;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use abtrack_proto::gateway::v1 as gpb;

use crate::browser::{Conversation, STEP_TIMEOUT, converse, finish, node};
use crate::harness::{API_KEY, PAIR_CODE, SECOND, System, state};

async fn post(system: &System, path: &str, body: Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(system.url(path))
        .bearer_auth(API_KEY)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `status`, the account's daily cap of 2 used up for another hour.
fn capped(status: gpb::ConnectionStatus) -> gpb::GatewayEvent {
    let mut event = state(status);
    if let Some(gpb::gateway_event::Event::State(state)) = &mut event.event {
        state.pacing = Some(gpb::Pacing {
            min_interval_ms: 3000,
            jitter_ms: 2000,
            daily_cap: 2,
            sent_last_day: 2,
            cap_frees_at: Some(abtrack_proto::time::to_timestamp(
                abtrack_proto::time::now_ms() + 3_600_000,
            )),
        });
    }
    event
}

/// Sends a job for the second account and waits until it is sent.
async fn send_for_second(system: &System) -> String {
    let (code, job) = post(
        system,
        "/api/messages",
        json!({"to": "0812-3456-7890", "message": "Halo", "account": SECOND}),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{job}");
    assert_eq!(job["account"], SECOND);
    let id = job["id"].as_str().unwrap().to_owned();
    system
        .wait_for_status("the second account's job sent", |s| {
            s["recentJobs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|j| j["id"] == id.as_str() && j["status"] == "sent")
        })
        .await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_account_has_its_own_state_pair_code_reset_and_jobs() {
    let system = System::start_two_accounts().await;
    let second = system.second.as_ref().unwrap();
    second.emit(capped(gpb::ConnectionStatus::Connected));
    let status = system
        .wait_for_status("the second account connected and ready", |s| {
            s["accounts"][1]["gateway"]["status"] == "connected"
                && s["accounts"][1]["ready"] == true
        })
        .await;
    let accounts = status["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 2);
    assert_eq!(accounts[0]["name"], "default");
    assert_eq!(accounts[1]["name"], SECOND);
    assert!(
        accounts.iter().all(|a| a["service"]["up"] == true),
        "{status}"
    );
    // The default account still waits for its scan, in its card and the old fields.
    assert_eq!(accounts[0]["gateway"]["status"], "waiting_for_qr");
    assert_eq!(status["gateway"]["status"], "waiting_for_qr");
    assert_eq!(accounts[0]["ready"], false);
    assert!(
        accounts[0]["waitingReason"]
            .as_str()
            .unwrap()
            .starts_with("WhatsApp is"),
        "{status}"
    );
    assert!(
        status["queue"]["waitingReason"]
            .as_str()
            .unwrap()
            .starts_with("default: "),
        "{status}"
    );

    let metrics = system.metrics().await;
    for line in [
        "abtrack_account_ready{account=\"default\"} 0\n",
        "abtrack_account_ready{account=\"smp-2\"} 1\n",
        "abtrack_account_connected{account=\"smp-2\"} 1\n",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }

    // Each account's pacing, as its gateway reports it.
    assert_eq!(
        accounts[1]["gateway"]["pacing"]["sentLastDay"], 2,
        "{status}"
    );
    assert_eq!(accounts[1]["gateway"]["pacing"]["dailyCap"], 2);
    assert_eq!(accounts[1]["gateway"]["pacing"]["minIntervalMs"], 3000);
    assert!(accounts[1]["gateway"]["pacing"]["capFreesAt"].is_string());
    assert!(accounts[0]["gateway"]["pacing"].is_null(), "{status}");
    for line in [
        "abtrack_account_sent_last_day{account=\"smp-2\"} 2\n",
        "abtrack_account_daily_cap{account=\"smp-2\"} 2\n",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }

    // A job for the second account goes out through its gateway while the default
    // account's waits; each account counts its own.
    let (code, waiting) = post(
        &system,
        "/api/messages",
        json!({"to": "0812-3456-7890", "message": "Halo"}),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{waiting}");
    let id = send_for_second(&system).await;
    let status = system
        .wait_for_status("each account's counts", |s| {
            s["accounts"][1]["counts"]["sent"] == 1 && s["accounts"][0]["counts"]["pending"] == 1
        })
        .await;
    assert_eq!(status["accounts"][1]["counts"]["pending"], 0, "{status}");
    assert_eq!(status["accounts"][0]["counts"]["sent"], 0, "{status}");
    assert_eq!(status["queue"]["counts"]["sent"], 1);
    assert_eq!(status["queue"]["counts"]["pending"], 1);
    let metrics = system.metrics().await;
    for line in [
        "abtrack_account_jobs{account=\"smp-2\",status=\"sent\"} 1\n",
        "abtrack_account_jobs{account=\"default\",status=\"pending\"} 1\n",
        "abtrack_account_jobs{account=\"default\",status=\"sent\"} 0\n",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    let jobs = reqwest::Client::new()
        .get(system.url(&format!("/api/jobs/{}", waiting["id"].as_str().unwrap())))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(jobs["status"], "pending", "{jobs}");

    // The job list of one account.
    let list = |query: &'static str| {
        let url = system.url(&format!("/api/jobs?{query}"));
        async move {
            let response = reqwest::Client::new()
                .get(url)
                .bearer_auth(API_KEY)
                .send()
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    let (code, listed) = list("account=smp-2").await;
    assert_eq!(code, StatusCode::OK, "{listed}");
    let ids: Vec<&str> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    let (_, listed) = list("account=default").await;
    assert_eq!(listed["jobs"][0]["id"], waiting["id"]);
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 1);
    let (code, error) = list("account=sma-9").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["field"], "account");

    // Pair code and reset reach the account asked for.
    let (code, pair) = post(
        &system,
        &format!("/api/gateway/pair-code?account={SECOND}"),
        json!({"phone": "6281234567890"}),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{pair}");
    assert_eq!(pair["code"], PAIR_CODE);
    let (code, _) = post(
        &system,
        &format!("/api/gateway/logout?account={SECOND}"),
        json!({}),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(*second.logouts.lock().unwrap(), 1);
    assert_eq!(*system.logouts.lock().unwrap(), 0);
    let (code, error) = post(&system, "/api/gateway/logout?account=sma-9", json!({})).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(error["field"], "account");
    assert_eq!(
        error["error"],
        "account: no account \"sma-9\"; the accounts are: default, smp-2"
    );
    assert_eq!(*system.logouts.lock().unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_card_per_account_and_resets_the_one_asked() {
    let system = System::start_two_accounts().await;
    let second = system.second.as_ref().unwrap();
    second.emit(capped(gpb::ConnectionStatus::Connected));
    send_for_second(&system).await;
    let Conversation {
        child,
        mut stdin,
        mut lines,
    } = converse(node("accounts.mjs", &system));
    let mut steps = Vec::new();
    loop {
        let line = tokio::time::timeout(STEP_TIMEOUT, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no step from the browser after {steps:?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the browser script ended after {steps:?}"));
        println!("{line}");
        let Some(step) = line.strip_prefix("STEP ") else {
            if line == "OK" {
                break;
            }
            continue;
        };
        steps.push(step.to_owned());
        match step {
            "cards" => {
                second.emit(capped(gpb::ConnectionStatus::WaitingForQr));
                second.emit(gpb::GatewayEvent {
                    event: Some(gpb::gateway_event::Event::Qr(gpb::QrCode {
                        code: "2@second-account,abc".into(),
                        expires_at: Some(abtrack_proto::time::to_timestamp(
                            abtrack_proto::time::now_ms() + 60_000,
                        )),
                    })),
                });
                stdin.write_all(b"go\n").await.unwrap();
            }
            "qr-seen" => {}
            "reset" => {
                assert_eq!(*second.logouts.lock().unwrap(), 1);
                assert_eq!(*system.logouts.lock().unwrap(), 0);
                stdin.write_all(b"go\n").await.unwrap();
            }
            other => panic!("unexpected step {other}"),
        }
    }
    finish(child).await;
    assert_eq!(steps, ["cards", "qr-seen", "reset"]);
}
