//! Chaos runs: the four binaries as processes in dry-run mode, Sheets logging to the
//! local Google stand-in, jobs written over the whole run while the gateway is killed
//! (SIGKILL) every few seconds, the dispatcher and the logger a few times, and, on the
//! Firestore queue, the emulator restarted once. After a bounded drain every job must
//! have been sent exactly once, none may be left pending or processing, and the sheet
//! must hold exactly one row per job.
//!
//! "Restarting the emulator" means the built-in one (`firestore-emulator` crate, in
//! this process): it stops serving, which cuts every connection and listen stream as a
//! killed process would, and serves again on the same port with the documents it had,
//! as a Firestore back end that went away and came back. An external emulator named
//! by `FIRESTORE_EMULATOR_HOST` is not restarted; the report says so.

pub mod plan;
pub mod tally;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use abtrack_dispatcher::queue::Store as _;
use abtrack_firestore_emulator::TestFirestore;
use serde_json::json;

use crate::Cluster;
use crate::firestore_app::App;
use crate::sheets::FakeGoogle;
use plan::{Action, PlannedJob, Schedule};
use tally::Occurrences;
pub use tally::Report;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The dispatcher's embedded SQLite queue; jobs written through `POST /api/messages`.
    Local,
    /// Firestore through the emulator; jobs written as the web app writes them.
    Firestore,
    /// Firestore, the documents in an app's own shape ([`APP_SHAPE`]): nested
    /// fields, other status words.
    FirestoreAppShape,
    /// Firestore with two accounts, each its own gateway ([`ACCOUNTS`]), and three
    /// dispatchers: the gateway kills alternate between the accounts, and every job
    /// must go out from its own account's gateway.
    FirestoreAccounts,
}

/// The accounts of [`Backend::FirestoreAccounts`], the default one first: a job names
/// the first, the second, or none (the first's).
pub const ACCOUNTS: [&str; 2] = ["sd-harapan", "smp-2"];
/// The second account's gateway, as the cluster names it, and its data folder.
const SECOND_GATEWAY: &str = "wa-gateway-smp-2";
const SECOND_DATA: &str = "data/wa-gateway/smp-2";

/// The account the `i`-th planned job names with several accounts.
fn account_of(i: usize) -> Option<&'static str> {
    match i % 3 {
        0 => None,
        1 => Some(ACCOUNTS[0]),
        _ => Some(ACCOUNTS[1]),
    }
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Firestore => "firestore",
            Self::FirestoreAppShape => "firestore-app-shape",
            Self::FirestoreAccounts => "firestore-accounts",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Local,
            Self::Firestore,
            Self::FirestoreAppShape,
            Self::FirestoreAccounts,
        ]
        .into_iter()
        .find(|b| b.name() == text)
    }

    fn is_firestore(self) -> bool {
        self != Self::Local
    }
}

/// The mapping of [`Backend::FirestoreAppShape`]: the recipient and the text in a
/// map, the status nested in another, the server's fields in a third, and words of
/// the app's own.
pub const APP_SHAPE: &[(&str, &str)] = &[
    ("FIRESTORE_FIELD_TO", "payload.phone"),
    ("FIRESTORE_FIELD_MESSAGE", "payload.body"),
    ("FIRESTORE_FIELD_CREATED_AT", "meta.created"),
    ("FIRESTORE_FIELD_STATUS", "meta.state"),
    ("FIRESTORE_FIELD_ATTEMPTS", "wa.attempts"),
    ("FIRESTORE_FIELD_LEASE_OWNER", "wa.owner"),
    ("FIRESTORE_FIELD_LEASE_EXPIRES_AT", "wa.leaseUntil"),
    ("FIRESTORE_FIELD_LOGGED_AT", "wa.logged"),
    ("FIRESTORE_FIELD_UPDATED_AT", "wa.updated"),
    ("FIRESTORE_STATUS_PENDING", "queued,new"),
    ("FIRESTORE_STATUS_SENT", "terkirim"),
    ("FIRESTORE_STATUS_DELIVERED", "diterima"),
    ("FIRESTORE_STATUS_READ", "dibaca"),
    ("FIRESTORE_STATUS_FAILED", "gagal"),
];

#[derive(Debug, Clone)]
pub struct Options {
    pub backend: Backend,
    pub jobs: usize,
    /// How long services are killed; jobs are written during the first 90% of it.
    pub duration: Duration,
    pub seed: u64,
    /// The longest the run waits after the chaos for every outcome to settle.
    pub drain_limit: Duration,
}

/// The services' settings for the run: short leases and backoffs, so a job a killed
/// dispatcher held is back in seconds rather than the two minutes of the defaults.
/// Ten attempts instead of five: an attempt counts when a gateway kill lands in the
/// middle of that job's send, and the run checks loss and duplication, not the
/// give-up policy. The gateway answers 50 ms after it wrote a message, so some kills
/// land between the write and the answer (its send log must stop the resend).
const SERVICE_ENV: &[(&str, &str)] = &[
    ("DISPATCHER_LEASE_SECS", "6"),
    ("DISPATCHER_SEND_TIMEOUT_SECS", "3"),
    ("DISPATCHER_SWEEP_INTERVAL_SECS", "1"),
    ("DISPATCHER_BACKOFF_BASE_SECS", "1"),
    ("DISPATCHER_BACKOFF_MAX_SECS", "5"),
    ("DISPATCHER_MAX_ATTEMPTS", "10"),
    ("FIRESTORE_FALLBACK_POLL_SECS", "1"),
    ("WA_DRY_RUN_ANSWER_DELAY_MS", "50"),
    ("SHEETS_BATCH_MAX_AGE_MS", "200"),
    ("SHEETS_RETRY_MAX_SECS", "2"),
    ("RUST_LOG", "info"),
];

const SHEET_ID: &str = "chaos-sheet";
const TAB: &str = "Log";
/// How long one job may take to be written while its queue is down.
const WRITE_LIMIT: Duration = Duration::from_secs(60);

/// Where the run reads the queue's final state.
enum Store {
    Local(PathBuf),
    Firestore(Arc<App>),
}

/// The final status of every job, and how many finished ones the logger has not
/// acknowledged; `None` while the store cannot be read (a restart).
async fn snapshot(store: &Store, limit: usize) -> Option<(HashMap<String, String>, usize)> {
    match store {
        Store::Local(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || local_snapshot(&path).ok())
                .await
                .ok()
                .flatten()
        }
        Store::Firestore(app) => {
            let jobs = app.queue().list(&[], None, limit).await.ok()?;
            let unlogged = app.queue().unlogged(limit).await.ok()?.len();
            let statuses = jobs
                .into_iter()
                .map(|j| (j.id, j.status.as_str().to_owned()))
                .collect();
            Some((statuses, unlogged))
        }
    }
}

fn local_snapshot(path: &Path) -> rusqlite::Result<(HashMap<String, String>, usize)> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let mut stmt = conn.prepare(
        "SELECT id, status,
                logged_at IS NULL AND status IN ('sent', 'delivered', 'read', 'failed')
         FROM jobs",
    )?;
    let mut statuses = HashMap::new();
    let mut unlogged = 0;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, bool>(2)?,
        ))
    })?;
    for row in rows {
        let (id, status, not_logged) = row?;
        unlogged += usize::from(not_logged);
        statuses.insert(id, status);
    }
    Ok((statuses, unlogged))
}

/// Records in the logger's outbox; `None` while it cannot be read.
fn outbox_backlog(dir: &Path) -> Option<u64> {
    let path = dir.join("data/sheets-logger/outbox.sqlite3");
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
            .ok()?;
    conn.busy_timeout(Duration::from_secs(5)).ok()?;
    conn.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get::<_, i64>(0))
        .ok()
        .map(|n| n as u64)
}

/// Writes the planned jobs at their moments, each retried until its queue takes it
/// (an existing job with the same id and content counts as taken); returns the ids
/// that could not be written within [`WRITE_LIMIT`].
async fn write_jobs(
    jobs: Vec<PlannedJob>,
    start: tokio::time::Instant,
    writer: Writer,
    accounts: bool,
) -> Vec<String> {
    let mut not_written = Vec::new();
    for (i, job) in jobs.into_iter().enumerate() {
        tokio::time::sleep_until(start + job.at).await;
        let deadline = Instant::now() + WRITE_LIMIT;
        let account = if accounts { account_of(i) } else { None };
        loop {
            if writer.write(&job, account).await {
                break;
            }
            if Instant::now() > deadline {
                not_written.push(job.id.clone());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    not_written
}

enum Writer {
    /// `POST /api/messages` on status-web, as an app using the REST API.
    Api { http: reqwest::Client, url: String },
    /// A job document, as the web app writes it.
    Firestore(Arc<App>),
}

impl Writer {
    async fn write(&self, job: &PlannedJob, account: Option<&str>) -> bool {
        match self {
            Self::Api { http, url } => {
                let body = json!({
                    "id": job.id,
                    "to": job.to,
                    "message": job.message,
                    "account": account,
                });
                let response = http
                    .post(url)
                    .timeout(Duration::from_secs(10))
                    .json(&body)
                    .send()
                    .await;
                match response {
                    // A planned job is valid: a refusal is a failure of the run, not
                    // something to try again.
                    Ok(r) if r.status().is_client_error() => panic!(
                        "status-web refused planned job {}: {}",
                        job.id,
                        r.text().await.unwrap_or_default()
                    ),
                    Ok(r) => r.status().is_success(),
                    Err(_) => false,
                }
            }
            // It retries on its own while the emulator is down.
            Self::Firestore(app) => {
                app.write_job_for(&job.id, &job.to, &job.message, account)
                    .await;
                true
            }
        }
    }
}

/// Runs one chaos scenario and reports what it saw. Prints the seed first, and a
/// progress line every 30 s.
pub async fn run(options: &Options) -> Report {
    let seed = options.seed;
    println!("chaos seed: {seed} (replay with CHAOS_SEED={seed})");
    let mut firestore = options.backend.is_firestore().then(TestFirestore::from_env);
    let restartable = firestore.as_ref().is_some_and(|f| f.builtin.is_some());
    let schedule: Schedule = plan::draw(seed, options.jobs, options.duration, restartable);
    let ids: Vec<String> = schedule.jobs.iter().map(|j| j.id.clone()).collect();

    let (fake, fake_url) = FakeGoogle::start(SHEET_ID).await;
    let key_dir = tempfile::tempdir().expect("a temporary folder");
    let key = key_dir.path().join("sheets-credentials.json");
    fake.write_key(&fake_url, &key);
    let key = key.display().to_string();
    let collection = format!("chaos-{seed:x}");
    let mut env: Vec<(&str, &str)> = SERVICE_ENV.to_vec();
    env.extend([
        ("SHEETS_CREDENTIALS", key.as_str()),
        ("SHEETS_SPREADSHEET_ID", SHEET_ID),
        ("SHEETS_API_URL", fake_url.as_str()),
        ("SHEETS_TAB", TAB),
        ("DISPATCHER_ID", "chaos-dispatcher-0"),
    ]);
    let (mut cluster, store, writer) = match &firestore {
        Some(f) => {
            let shape = if options.backend == Backend::FirestoreAppShape {
                APP_SHAPE
            } else {
                &[]
            };
            env.extend_from_slice(shape);
            if options.backend == Backend::FirestoreAccounts {
                env.push(("WA_ACCOUNT", ACCOUNTS[0]));
            }
            let mut cluster = Cluster::start_firestore(&f.host, &collection, &env).await;
            if options.backend == Backend::FirestoreAccounts {
                with_two_accounts_and_three_dispatchers(&mut cluster).await;
            }
            let app = Arc::new(App::connect_shaped(&f.host, &collection, shape).await);
            (
                cluster,
                Store::Firestore(Arc::clone(&app)),
                Writer::Firestore(app),
            )
        }
        None => {
            let cluster = Cluster::start(&env).await;
            let store = Store::Local(cluster.dir.path().join("data/dispatcher/queue.sqlite3"));
            let writer = Writer::Api {
                http: cluster.http.clone(),
                url: cluster.url("/api/messages"),
            };
            (cluster, store, writer)
        }
    };

    let mut report = Report {
        backend: options.backend.name().into(),
        seed,
        jobs: options.jobs,
        ids: ids.clone(),
        emulator_note: firestore
            .as_ref()
            .filter(|_| !restartable)
            .map(|_| "external emulator, not restarted".into()),
        ..Report::default()
    };
    let started = Instant::now();
    let start = tokio::time::Instant::now();
    let accounts = options.backend == Backend::FirestoreAccounts;
    let writing = tokio::spawn(write_jobs(schedule.jobs.clone(), start, writer, accounts));
    // With two accounts the gateway kills alternate between them; a start brings back
    // the one killed last.
    let mut gateway_kills = 0;
    let mut gateway_down = "wa-gateway";

    let mut dispatcher_generation = 0;
    let mut next_progress = Duration::from_secs(30);
    for (at, action) in &schedule.actions {
        while *at > next_progress {
            tokio::time::sleep_until(start + next_progress).await;
            progress(&cluster, &report, next_progress);
            next_progress += Duration::from_secs(30);
        }
        tokio::time::sleep_until(start + *at).await;
        match action {
            Action::Kill(service) => {
                let mut service = *service;
                if service == "wa-gateway" {
                    if accounts && gateway_kills % 2 == 1 {
                        service = SECOND_GATEWAY;
                    }
                    gateway_kills += 1;
                    gateway_down = service;
                }
                cluster.kill(service);
                *report.kills.entry(service.to_owned()).or_default() += 1;
            }
            Action::Start {
                service: "dispatcher",
                same_id,
            } => {
                if !same_id {
                    dispatcher_generation += 1;
                }
                let id = format!("chaos-dispatcher-{dispatcher_generation}");
                cluster.spawn_as("dispatcher", "dispatcher", &[("DISPATCHER_ID", &id)]);
            }
            Action::Start {
                service: "wa-gateway",
                ..
            } if gateway_down == SECOND_GATEWAY => {
                cluster.spawn_gateway(SECOND_GATEWAY, ACCOUNTS[1]);
            }
            Action::Start { service, .. } => cluster.spawn(service),
            Action::StopEmulator => {
                if let Some(emulator) = firestore.as_mut().and_then(|f| f.builtin.as_mut()) {
                    emulator.stop();
                }
            }
            Action::StartEmulator => {
                if let Some(emulator) = firestore.as_mut().and_then(|f| f.builtin.as_mut()) {
                    restart_emulator(emulator).await;
                    report.emulator_restarts += 1;
                }
            }
        }
    }
    tokio::time::sleep_until(start + options.duration).await;
    report.not_written = writing.await.unwrap_or_else(|e| {
        eprintln!("the job writer stopped: {e}");
        ids.clone()
    });
    report.chaos = started.elapsed();
    for service in ["wa-gateway", "dispatcher", "sheets-logger", "status-web"] {
        cluster.wait_serving(service).await;
    }
    if accounts {
        cluster.wait_serving(SECOND_GATEWAY).await;
    }

    // The drain: until every job is sent, every outcome acknowledged by the logger,
    // its outbox empty and every job in the sheet; nothing is in flight after that.
    let drain_started = Instant::now();
    let mut last = None;
    loop {
        if let Some(snap) = snapshot(&store, options.jobs + 100).await {
            let backlog = outbox_backlog(cluster.dir.path());
            let rows = Occurrences::of_rows(&fake.rows(TAB));
            let all_sent = ids.iter().all(|id| {
                matches!(
                    snap.0.get(id).map(String::as_str),
                    Some("sent" | "delivered" | "read")
                )
            });
            let settled =
                all_sent && snap.1 == 0 && backlog == Some(0) && rows.missing(&ids).is_empty();
            report.unlogged = snap.1;
            report.outbox_backlog = backlog.unwrap_or(u64::MAX);
            last = Some(snap);
            if settled {
                report.drained = true;
                break;
            }
        }
        if drain_started.elapsed() > options.drain_limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    report.drain = drain_started.elapsed();
    report.statuses = last.map(|s| s.0).unwrap_or_default();
    report.rows = Occurrences::of_rows(&fake.rows(TAB));
    for service in crate::SERVICES {
        cluster.kill(service);
    }
    let sent_by = |data: &str| {
        let log = cluster.dir.path().join(data).join("dry-run.jsonl");
        Occurrences::of_jsonl(&std::fs::read_to_string(log).unwrap_or_default())
    };
    report.sends = sent_by("data/wa-gateway");
    if accounts {
        let second = sent_by(SECOND_DATA);
        report.wrong_account = ids
            .iter()
            .enumerate()
            .filter(|(i, id)| {
                let wrong = if account_of(*i) == Some(ACCOUNTS[1]) {
                    &report.sends
                } else {
                    &second
                };
                wrong.by_id.contains_key(*id)
            })
            .map(|(_, id)| id.clone())
            .collect();
        report.sends.merge(second);
    }
    if !report.passed() {
        keep_evidence(&cluster, &report);
    }
    report
}

/// Makes the cluster send for two accounts ([`ACCOUNTS`]) through three dispatchers:
/// starts the second account's gateway, and restarts the dispatcher with both
/// accounts, beside two more.
async fn with_two_accounts_and_three_dispatchers(cluster: &mut Cluster) {
    let second = cluster.spawn_gateway(SECOND_GATEWAY, ACCOUNTS[1]);
    cluster.wait_serving(SECOND_GATEWAY).await;
    let accounts = format!(
        "{}=http://127.0.0.1:{},{}=http://127.0.0.1:{second}",
        ACCOUNTS[0], cluster.ports["wa-gateway"], ACCOUNTS[1]
    );
    cluster.give_accounts("dispatcher", &accounts).await;
    for label in ["chaos-dispatcher-b", "chaos-dispatcher-c"] {
        cluster.spawn_dispatcher(label);
        cluster.wait_serving(label).await;
    }
}

/// Serves again on the same port. The port was just released, so binding it is
/// tried a few times.
async fn restart_emulator(emulator: &mut abtrack_firestore_emulator::Emulator) {
    for attempt in 0.. {
        match emulator.restart() {
            Ok(()) => return,
            Err(e) if attempt < 50 => {
                eprintln!("the emulator cannot bind its port yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the emulator cannot serve again on its port: {e}"),
        }
    }
}

fn progress(cluster: &Cluster, report: &Report, at: Duration) {
    let log = cluster.dir.path().join("data/wa-gateway/dry-run.jsonl");
    let sends = Occurrences::of_jsonl(&std::fs::read_to_string(log).unwrap_or_default());
    let kills: Vec<String> = report
        .kills
        .iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    println!(
        "chaos {} s: {} sends in the dry-run log; kills: {}",
        at.as_secs(),
        sends.total(),
        kills.join(", ")
    );
}

/// Copies the services' logs and data of a failed run to a folder that outlives it.
fn keep_evidence(cluster: &Cluster, report: &Report) {
    let to = std::env::temp_dir().join(format!("abtrack-chaos-{}-{}", report.backend, report.seed));
    match copy_dir(cluster.dir.path(), &to) {
        Ok(()) => eprintln!("logs and data of the failed run: {}", to.display()),
        Err(e) => eprintln!("could not keep the failed run's files: {e}"),
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
