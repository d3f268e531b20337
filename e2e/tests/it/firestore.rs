//! The Firestore queue with the binaries as processes: the app only writes job
//! documents into the emulator; dispatchers share the collection, die, and see the
//! emulator restart, and every job is still sent exactly once.

use std::collections::HashSet;
use std::time::Duration;

use abtrack_dispatcher::firestore::doc::{int, text};
use abtrack_e2e::Cluster;
use abtrack_e2e::firestore_app::App;
use abtrack_firestore_emulator::TestFirestore;

/// A collection of its own, so the tests can share an external emulator.
fn collection() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("e2e-{}-{nanos}", std::process::id())
}

fn assert_each_once(cluster: &Cluster, ids: &HashSet<String>) {
    let sends = cluster.sends();
    let twice: Vec<_> = sends.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    let sent: HashSet<String> = sends.into_keys().collect();
    assert_eq!(&sent, ids, "every job sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_dispatchers_on_one_collection_send_each_of_300_jobs_once() {
    let firestore = TestFirestore::from_env();
    let collection = collection();
    let mut cluster = Cluster::start_firestore(&firestore.host, &collection, &[]).await;
    for label in ["dispatcher-b", "dispatcher-c"] {
        cluster.spawn_dispatcher(label);
        cluster.wait_serving(label).await;
    }
    let app = App::connect(&firestore.host, &collection).await;
    let mut ids = HashSet::new();
    for n in 0..300 {
        let id = format!("job-{n:03}");
        app.write_job(&id, "081234567890", &format!("pesan {n}"))
            .await;
        ids.insert(id);
    }
    app.wait_counts(Duration::from_secs(120), "all 300 sent", |c| c.sent == 300)
        .await;
    // The six counts are separate queries; read them again now that all is still.
    let counts = app.counts().await;
    assert_eq!(
        (counts.pending, counts.processing, counts.failed),
        (0, 0, 0)
    );
    assert_each_once(&cluster, &ids);
    for name in ["dispatcher", "dispatcher-b", "dispatcher-c"] {
        assert!(
            cluster.log(name).contains("job sent"),
            "{name} took part in the sending"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_killed_holding_a_lease_is_replaced_and_its_job_sent_once() {
    let firestore = TestFirestore::from_env();
    let collection = collection();
    let mut cluster = Cluster::start_firestore(
        &firestore.host,
        &collection,
        &[
            // Sends take a while, so the dispatcher is killed in the middle of one:
            // each answer comes a second after the message is written, and the
            // moments between two leases are a few milliseconds.
            ("WA_MIN_INTERVAL_MS", "700"),
            ("WA_DRY_RUN_ANSWER_DELAY_MS", "1000"),
            ("DISPATCHER_ID", "doomed"),
            ("DISPATCHER_LEASE_SECS", "4"),
            ("DISPATCHER_SEND_TIMEOUT_SECS", "2"),
            ("DISPATCHER_SWEEP_INTERVAL_SECS", "1"),
        ],
    )
    .await;
    let app = App::connect(&firestore.host, &collection).await;
    let mut ids = HashSet::new();
    for n in 0..8 {
        let id = format!("job-{n}");
        app.write_job(&id, "081234567890", &format!("pesan {n}"))
            .await;
        ids.insert(id);
    }
    // Kill the dispatcher the moment it holds a lease.
    let mut held = Vec::new();
    for _ in 0..1000 {
        held = app.held_by("doomed").await;
        if !held.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!held.is_empty(), "the dispatcher took a job");
    cluster.kill("dispatcher");
    let orphaned = app.held_by("doomed").await;
    assert!(
        !orphaned.is_empty(),
        "the killed dispatcher left a job in processing"
    );

    cluster.spawn_dispatcher("rescuer");
    cluster.wait_serving("rescuer").await;
    app.wait_counts(Duration::from_secs(60), "all 8 sent", |c| c.sent == 8)
        .await;
    for job in orphaned {
        let job = app.get(&job.id).await.unwrap();
        assert_eq!(
            job.attempts, 2,
            "leased again after the lease expired: {job:?}"
        );
    }
    assert_each_once(&cluster, &ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_restarted_mid_run_loses_no_job_and_the_queue_resumes() {
    let mut firestore = TestFirestore::from_env();
    let Some(emulator) = firestore.builtin.as_mut() else {
        eprintln!("skipped: restarting the emulator needs the built-in one");
        return;
    };
    let host = emulator.host();
    let collection = collection();
    let cluster = Cluster::start_firestore(
        &host,
        &collection,
        &[
            ("WA_MIN_INTERVAL_MS", "20"),
            // A lease whose write reached the emulator just before the restart, but
            // whose answer did not, comes back when it expires.
            ("DISPATCHER_LEASE_SECS", "6"),
            ("DISPATCHER_SEND_TIMEOUT_SECS", "3"),
            ("DISPATCHER_SWEEP_INTERVAL_SECS", "1"),
            ("DISPATCHER_POLL_INTERVAL_SECS", "3600"),
            ("FIRESTORE_FALLBACK_POLL_SECS", "1"),
        ],
    )
    .await;
    let app = App::connect(&host, &collection).await;
    let mut ids = HashSet::new();
    for n in 0..60 {
        let id = format!("before-{n}");
        app.write_job(&id, "081234567890", &format!("pesan {n}"))
            .await;
        ids.insert(id);
    }
    app.wait_counts(Duration::from_secs(30), "some sent", |c| c.sent >= 5)
        .await;
    emulator.restart().unwrap();
    for n in 0..40 {
        let id = format!("after-{n}");
        app.write_job(&id, "081234567890", &format!("pesan {n}"))
            .await;
        ids.insert(id);
    }
    app.wait_counts(Duration::from_secs(90), "all 100 sent", |c| c.sent == 100)
        .await;
    let counts = app.counts().await;
    assert_eq!(
        (counts.pending, counts.processing, counts.failed),
        (0, 0, 0)
    );
    assert_each_once(&cluster, &ids);
    assert!(
        cluster.log("dispatcher").contains("listen stream broke"),
        "the dispatcher saw the emulator go away"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_documents_end_failed_while_valid_ones_around_them_are_sent() {
    let firestore = TestFirestore::from_env();
    let collection = collection();
    let cluster = Cluster::start_firestore(
        &firestore.host,
        &collection,
        &[("DISPATCHER_SWEEP_INTERVAL_SECS", "1")],
    )
    .await;
    let app = App::connect(&firestore.host, &collection).await;
    let long = "x".repeat(65_537);
    let corpus = [
        (
            "no-to",
            vec![("message", text("Halo")), ("status", text("pending"))],
            "to: is missing",
        ),
        (
            "number-to",
            vec![
                ("to", int(628123)),
                ("message", text("Halo")),
                ("status", text("pending")),
            ],
            "to: must be a string",
        ),
        (
            "long",
            vec![
                ("to", text("081234567890")),
                ("message", text(&long)),
                ("status", text("pending")),
            ],
            "message: has 65537 characters",
        ),
        (
            "odd-status",
            vec![
                ("to", text("081234567890")),
                ("message", text("Halo")),
                ("status", text("queued")),
            ],
            "status: unknown value \"queued\"",
        ),
        (
            "odd-attempts",
            vec![
                ("to", text("081234567890")),
                ("message", text("Halo")),
                ("status", text("pending")),
                ("attempts", text("one")),
            ],
            "attempts: must be a whole number",
        ),
    ];
    let mut ids = HashSet::new();
    for (n, (id, fields, _)) in corpus.iter().enumerate() {
        app.write_fields(id, fields).await;
        let valid = format!("valid-{n}");
        app.write_job(&valid, "081234567890", "Halo").await;
        ids.insert(valid);
    }
    app.wait_counts(Duration::from_secs(30), "every job finished", |c| {
        c.sent == ids.len() as u64 && c.failed == corpus.len() as u64
    })
    .await;
    for (id, _, want) in &corpus {
        let job = app.get(id).await.unwrap();
        let error = job.last_error.unwrap();
        assert!(error.message.starts_with(want), "{id}: {}", error.message);
    }
    assert_each_once(&cluster, &ids);
}
