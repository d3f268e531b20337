//! A service stopping and coming back, and bad configuration.

use std::collections::HashSet;
use std::time::Duration;

use abtrack_e2e::{Cluster, bin_dir};
use serde_json::{Value, json};

fn count(status: &Value, name: &str) -> u64 {
    status["queue"]["counts"][name].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_gateway_stopped_jobs_wait_and_go_out_when_it_returns() {
    let mut cluster = Cluster::start(&[]).await;
    cluster.kill("wa-gateway");
    let status = cluster
        .wait_status(Duration::from_secs(20), "the gateway seen down", |s| {
            s["services"]["gateway"]["up"] == false && s["queue"]["gatewayReady"] == false
        })
        .await;
    assert!(
        status["queue"]["waitingReason"]
            .as_str()
            .unwrap()
            .contains("not reachable"),
        "{status:#}"
    );

    let mut ids = HashSet::new();
    for n in 0..20 {
        let (code, job) = cluster
            .post(
                "/api/messages",
                json!({ "to": "081234567890", "message": format!("pesan {n}") }).to_string(),
            )
            .await;
        assert_eq!(
            code, 201,
            "enqueueing works while the gateway is down: {job}"
        );
        ids.insert(job["id"].as_str().unwrap().to_owned());
    }
    // The dispatcher keeps them: pending, no attempt spent (and each is sent on its
    // first attempt below, so none was spent meanwhile either).
    every_job_is(&cluster, "pending", 0).await;

    cluster.spawn("wa-gateway");
    cluster.wait_serving("wa-gateway").await;
    let status = cluster
        .wait_status(
            Duration::from_secs(30),
            "all 20 sent after the gateway returned",
            |s| count(s, "sent") == 20,
        )
        .await;
    assert_eq!(status["queue"]["gatewayReady"], true);
    let sent: Vec<String> = cluster
        .dry_run_lines()
        .iter()
        .map(|l| l["job_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sent.len(), 20);
    assert_eq!(sent.into_iter().collect::<HashSet<_>>(), ids);
    every_job_is(&cluster, "sent", 1).await;
}

/// Every job the dashboard lists has `status` after `attempts` attempts.
async fn every_job_is(cluster: &Cluster, status: &str, attempts: u64) {
    let jobs = cluster.get("/api/jobs?limit=100").await;
    for job in jobs["jobs"].as_array().unwrap() {
        assert_eq!(
            (job["status"].as_str(), job["attempts"].as_u64()),
            (Some(status), Some(attempts)),
            "{job}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_killed_and_restarted_loses_and_repeats_nothing() {
    let mut cluster = Cluster::start(&[
        ("WA_MIN_INTERVAL_MS", "20"),
        ("DISPATCHER_LEASE_SECS", "4"),
        ("DISPATCHER_SEND_TIMEOUT_SECS", "2"),
        ("DISPATCHER_SWEEP_INTERVAL_SECS", "1"),
    ])
    .await;
    let mut ids = HashSet::new();
    for n in 0..60 {
        let (_, job) = cluster
            .post(
                "/api/messages",
                json!({ "to": "081234567890", "message": format!("pesan {n}") }).to_string(),
            )
            .await;
        ids.insert(job["id"].as_str().unwrap().to_owned());
    }
    cluster
        .wait_status(Duration::from_secs(20), "some sent", |s| {
            count(s, "sent") >= 5
        })
        .await;
    cluster.kill("dispatcher");
    cluster.spawn("dispatcher");
    cluster.wait_serving("dispatcher").await;
    // A job leased by the killed process comes back only after its lease expires
    // (DISPATCHER_LEASE_SECS), so the wait allows for it.
    cluster
        .wait_status(Duration::from_secs(30), "all 60 sent", |s| {
            count(s, "sent") == 60
        })
        .await;
    let sent: Vec<String> = cluster
        .dry_run_lines()
        .iter()
        .map(|l| l["job_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sent.len(), 60, "each job once");
    assert_eq!(sent.into_iter().collect::<HashSet<_>>(), ids);
}

#[test]
fn bad_configuration_exits_64_with_one_line_naming_the_variable() {
    let cases = [
        ("dispatcher", "DISPATCHER_SEND_TIMEOUT_SECS", "500"),
        ("wa-gateway", "WA_MODE", "carrier-pigeon"),
        ("sheets-logger", "SHEETS_ADDR", "nowhere"),
        ("status-web", "STATUS_WEB_DISPATCHER_URL", "localhost"),
        // Without STATUS_WEB_PASSWORD only loopback is allowed.
        ("status-web", "STATUS_WEB_ADDR", "0.0.0.0:8080"),
    ];
    for (binary, var, value) in cases {
        let output = std::process::Command::new(bin_dir().join(binary))
            .env_remove("STATUS_WEB_PASSWORD")
            .env(var, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(64), "{binary}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{binary}: {stderr}");
        assert!(stderr.contains(var), "{binary}: {stderr}");
    }
    let reference = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ))
    .unwrap();
    for binary in abtrack_e2e::SERVICES {
        let output = std::process::Command::new(bin_dir().join(binary))
            .arg("--help")
            .output()
            .unwrap();
        assert!(output.status.success());
        let help = String::from_utf8(output.stdout).unwrap();
        assert!(
            help.contains("RUST_LOG") && help.contains("ENVIRONMENT"),
            "{binary}: {help}"
        );
        // Every variable --help lists is in the configuration reference.
        let environment = help.split("ENVIRONMENT").nth(1).unwrap();
        for line in environment.lines() {
            let name = line.trim();
            if line.starts_with("    ") && !line.starts_with("        ") && !name.is_empty() {
                assert!(
                    reference.contains(name),
                    "docs/configuration.md does not mention {name} ({binary})"
                );
            }
        }
    }
}
