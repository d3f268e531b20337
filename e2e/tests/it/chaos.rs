//! The short chaos run, one per queue backend: 150 jobs over 40 s while the gateway is
//! killed every 2–6 s, the dispatcher twice and the logger once (and, on Firestore,
//! the emulator restarted once); every job sent exactly once, none left pending or
//! processing, one sheet row each; on Firestore once more with the documents in an
//! app's own shape, and once with two accounts (each its own gateway, the kills
//! alternating between them) and three dispatchers, every job sent from its own
//! account. `CHAOS_SEED` replays a schedule. The long run is
//! `cargo run -p abtrack-e2e --bin chaos` (docs/testing.md).

use std::time::Duration;

use abtrack_e2e::chaos::{self, Backend, Options};

async fn short_run(backend: Backend) {
    let options = Options {
        backend,
        jobs: 150,
        duration: Duration::from_secs(40),
        seed: chaos::plan::seed_from_env().unwrap(),
        drain_limit: Duration::from_secs(60),
    };
    let report = chaos::run(&options).await;
    println!("{}", report.table());
    let failures = report.failures();
    assert!(
        failures.is_empty(),
        "chaos run failed (replay with CHAOS_SEED={}):\n{}\n{}",
        report.seed,
        failures.join("\n"),
        report.table()
    );
    let gateway_kills: usize = report
        .kills
        .iter()
        .filter(|(s, _)| s.starts_with("wa-gateway"))
        .map(|(_, n)| n)
        .sum();
    assert!(gateway_kills >= 5, "{}", report.table());
    if backend == Backend::FirestoreAccounts {
        assert!(report.kills["wa-gateway-smp-2"] >= 2, "{}", report.table());
    }
    assert_eq!(report.kills["dispatcher"], 2);
    assert_eq!(report.kills["sheets-logger"], 1);
    assert_eq!(report.rows.total(), 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_queue_survives_kills_and_sends_each_job_once() {
    short_run(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firestore_queue_survives_kills_and_an_emulator_restart_and_sends_each_job_once() {
    short_run(Backend::Firestore).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firestore_documents_in_an_apps_own_shape_are_each_sent_once_through_the_same_chaos() {
    short_run(Backend::FirestoreAppShape).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_and_three_dispatchers_send_each_job_once_from_its_own_account() {
    short_run(Backend::FirestoreAccounts).await;
}
