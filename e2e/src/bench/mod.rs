//! The whole-system benchmark behind `cargo run --release -p abtrack-e2e --bin bench`:
//! throughput with pacing off against each queue store's own write rate, pickup
//! latency, resident memory (beside headless Chromium), start-up time and CPU time per
//! job, all in one run on one machine. `docs/benchmarks.md` says what each figure means.

pub mod accounts;
pub mod chromium;
pub mod load;
pub mod media;
pub mod procfs;
pub mod report;
pub mod search;
pub mod startup;
pub mod store_rate;
pub mod watcher;

use std::time::Duration;

use abtrack_firestore_emulator::TestFirestore;

pub use chromium::Chromium;
pub use load::{Backend, LoadRun, ServiceFigures};
pub use report::Report;
pub use startup::Startup;

/// Writes to the queue store per job while a backlog drains: the lease, the outcome
/// and the mark that the logger has the outcome (the dispatcher's
/// `Queue::lease_next`, `Queue::finish`, `Store::mark_logged`). The job's creation is
/// one more write, made before the clock starts.
pub const WRITES_PER_JOB: usize = 3;

/// Dispatchers sharing one Firestore collection in the shared-collection figure.
pub const SHARED_DISPATCHERS: usize = 3;

/// The fewest jobs the stores' own rates are measured over.
const MIN_STORE_JOBS: usize = 200;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Jobs per measurement (latency and backlog, each backend).
    pub jobs: usize,
    /// Launches timed for the start-up figure.
    pub startup_runs: usize,
    /// How long Chromium is left to settle before it is measured; `None` skips it.
    pub chromium_settle: Option<Duration>,
}

impl Options {
    /// The full run: 500 jobs, 5 launches, Chromium measured after 10 s.
    pub fn full() -> Self {
        Self {
            jobs: 500,
            startup_runs: 5,
            chromium_settle: Some(Duration::from_secs(10)),
        }
    }

    /// A short run to see that everything works: 20 jobs, 1 launch, Chromium after 3 s.
    pub fn quick() -> Self {
        Self {
            jobs: 20,
            startup_runs: 1,
            chromium_settle: Some(Duration::from_secs(3)),
        }
    }
}

/// Runs every measurement, one after the other; progress goes to stderr.
pub async fn run(options: &Options) -> Report {
    let jobs = options.jobs.max(1);
    let firestore = TestFirestore::from_env();
    let emulator = match &firestore.builtin {
        Some(_) => "the built-in emulator (firestore-emulator crate)".to_owned(),
        None => format!("the emulator at {}", firestore.host),
    };

    let mut startups = Vec::new();
    for n in 1..=options.startup_runs.max(1) {
        eprintln!("start-up, launch {n}...");
        startups.push(startup::measure().await);
    }
    eprintln!("local queue: {jobs} jobs one at a time, then a backlog of {jobs}...");
    let local = load::run(Backend::Local, jobs).await;
    eprintln!("Firestore queue: {jobs} jobs one at a time, then a backlog of {jobs}...");
    let fs = load::run(Backend::Firestore(&firestore), jobs).await;
    eprintln!(
        "Firestore queue, {SHARED_DISPATCHERS} dispatchers on one collection, {jobs} jobs..."
    );
    let (shared, shared_writes) =
        load::shared_collection(&firestore, jobs, SHARED_DISPATCHERS).await;
    if let Some(emulator) = &firestore.builtin {
        emulator.clear();
    }
    let store_jobs = jobs.max(MIN_STORE_JOBS);
    eprintln!("the queue stores alone, {store_jobs} jobs each...");
    let sqlite_rate = store_rate::sqlite_jobs_per_second(store_jobs).await;
    let emulator_rate = store_rate::emulator_jobs_per_second(&firestore.host, store_jobs).await;
    let chromium = match options.chromium_settle {
        Some(settle) => {
            eprintln!("headless Chromium...");
            chromium::measure(settle).await
        }
        None => Chromium::Skipped,
    };
    let dir = crate::bin_dir();
    let binaries = match (dir.parent().and_then(|p| p.file_name()), dir.file_name()) {
        (Some(parent), Some(name)) => {
            format!("{}/{}", parent.to_string_lossy(), name.to_string_lossy())
        }
        _ => dir.display().to_string(),
    };
    Report {
        jobs,
        binaries,
        store_jobs,
        emulator,
        startups,
        local,
        firestore: fs,
        firestore_shared_jobs_per_s: shared,
        firestore_shared_writes: shared_writes,
        sqlite_jobs_per_s: sqlite_rate,
        emulator_jobs_per_s: emulator_rate,
        chromium,
    }
}
