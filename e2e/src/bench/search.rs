//! Finding a job in a large queue: the whole system (release builds) over a local
//! queue of 100,000 jobs and a Firestore collection of 20,000 on the emulator, each
//! filled with finished jobs spread over 30 days and 5,000 parents. Times the first
//! page of each kind of search and the day's stats through status-web's API,
//! exports one status as CSV, and reads status-web's resident memory before,
//! after the searches and after the export.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use firestore::gcloud_sdk::google::firestore::v1::{MapValue, Value, value::ValueType};

use abtrack_dispatcher::firestore::doc::{int, text, ts};
use abtrack_firestore_emulator::TestFirestore;
use abtrack_proto::time::now_ms;

use crate::Cluster;
use crate::firestore_app::App;

/// How to build and run it.
pub const COMMAND: &str = "cargo build --release --workspace --bins && cargo run --release -p abtrack-e2e --bin bench -- --search";

/// Searches of each kind timed.
const ROUNDS: usize = 20;
/// Parents the jobs go to.
const PARENTS: usize = 5_000;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// The i-th job of a filled queue: when it was created (newest first, spread over
/// 30 days), to which parent, and how it ended.
struct Filled {
    created_at: i64,
    parent: usize,
    /// `sent`, `delivered`, `read` or `failed`.
    status: &'static str,
}

fn filled(i: usize, jobs: usize, now: i64) -> Filled {
    let status = match (i % 20, i % 3) {
        (0, _) => "failed",
        (_, 0) => "read",
        (_, 1) => "delivered",
        _ => "sent",
    };
    Filled {
        created_at: now - (i as i64 * 30 * DAY_MS) / jobs as i64 - 1_000,
        parent: i % PARENTS,
        status,
    }
}

fn parent_number(parent: usize) -> String {
    format!("62812{parent:07}")
}

const REASONS: [&str; 3] = ["not_on_whatsapp", "refused", "invalid_argument"];

/// Fills the local queue at `path` (its schema made by the running dispatcher) in
/// one transaction.
fn fill_local(path: &std::path::Path, jobs: usize, now: i64) {
    let mut conn = rusqlite::Connection::open(path).expect("the queue file opens");
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO jobs (id, to_input, message, status, attempts, created_at, updated_at,
                    sent_at, delivered_at, read_at, recipient, message_id, logged_at,
                    last_error_code, last_error_message)
                 VALUES (?1, ?2, 'Ananda hadir', ?3, 1, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?5, ?11, ?12)",
            )
            .unwrap();
        for i in 0..jobs {
            let f = filled(i, jobs, now);
            let number = parent_number(f.parent);
            let failed = f.status == "failed";
            let sent = (!failed).then_some(f.created_at + 2_000);
            let delivered =
                matches!(f.status, "delivered" | "read").then_some(f.created_at + 10_000);
            let read = (f.status == "read").then_some(f.created_at + 60_000);
            let updated = read.or(delivered).or(sent).unwrap_or(f.created_at + 2_000);
            let code = failed.then(|| REASONS[i / 20 % 3]);
            insert
                .execute(rusqlite::params![
                    format!("job-{i:06}"),
                    format!("0{}", &number[2..]),
                    f.status,
                    f.created_at,
                    updated,
                    sent,
                    delivered,
                    read,
                    format!("{number}@s.whatsapp.net"),
                    sent.map(|_| format!("3EB0{i:016X}")),
                    code,
                    code.map(|c| format!("{c} (filled)")),
                ])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// Fills the collection through the emulator, 500 documents a commit.
async fn fill_firestore(app: &App, jobs: usize, now: i64) {
    let mut batch = Vec::new();
    for i in 0..jobs {
        let f = filled(i, jobs, now);
        let number = parent_number(f.parent);
        let failed = f.status == "failed";
        let mut fields: HashMap<String, Value> = HashMap::from([
            ("to".into(), text(&format!("0{}", &number[2..]))),
            ("message".into(), text("Ananda hadir")),
            ("status".into(), text(f.status)),
            ("attempts".into(), int(1)),
            ("createdAt".into(), ts(f.created_at)),
            ("updatedAt".into(), ts(f.created_at + 60_000)),
            ("loggedAt".into(), ts(f.created_at + 60_000)),
            (
                "recipient".into(),
                text(&format!("{number}@s.whatsapp.net")),
            ),
        ]);
        if failed {
            let code = REASONS[i / 20 % 3];
            let error = HashMap::from([
                ("code".to_owned(), text(code)),
                ("message".to_owned(), text(&format!("{code} (filled)"))),
            ]);
            fields.insert(
                "lastError".into(),
                Value {
                    value_type: Some(ValueType::MapValue(MapValue { fields: error })),
                },
            );
        } else {
            fields.insert("sentAt".into(), ts(f.created_at + 2_000));
            fields.insert("messageId".into(), text(&format!("3EB0{i:016X}")));
        }
        if matches!(f.status, "delivered" | "read") {
            fields.insert("deliveredAt".into(), ts(f.created_at + 10_000));
        }
        if f.status == "read" {
            fields.insert("readAt".into(), ts(f.created_at + 60_000));
        }
        batch.push((format!("job-{i:06}"), fields));
        if batch.len() == 500 {
            app.write_many(std::mem::take(&mut batch)).await;
        }
    }
    if !batch.is_empty() {
        app.write_many(batch).await;
    }
}

/// Milliseconds: median, 95th percentile and slowest.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub median: f64,
    pub p95: f64,
    pub max: f64,
}

impl Timing {
    fn of(mut ms: Vec<f64>) -> Self {
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        Self {
            median: at(0.5),
            p95: at(0.95),
            max: ms[ms.len() - 1],
        }
    }
}

#[derive(Debug, Clone)]
pub struct Measured {
    pub backend: &'static str,
    pub jobs: usize,
    /// The first page of each kind of search, by name.
    pub searches: Vec<(&'static str, Timing)>,
    /// The first `GET /api/stats` (every hour and day counted), then the next five
    /// (the hours and days that ended already counted).
    pub stats_first: f64,
    pub stats: Timing,
    pub csv_rows: usize,
    pub csv_secs: f64,
    /// status-web's VmRSS (KiB): filled and idle, after the searches, after the export.
    pub rss: [u64; 3],
}

/// One search's first page, timed; answers how long and how many jobs came.
async fn timed(cluster: &Cluster, path: &str) -> (f64, usize) {
    let started = Instant::now();
    let page = cluster.get(path).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let jobs = page["jobs"]
        .as_array()
        .unwrap_or_else(|| panic!("{path}: {page}"))
        .len();
    (ms, jobs)
}

async fn measure_on(cluster: &Cluster, backend: &'static str, jobs: usize) -> Measured {
    let rss = || {
        cluster
            .pid("status-web")
            .and_then(crate::rss_kib)
            .expect("status-web runs")
    };
    // One of each first: the first call of a kind warms connections and caches.
    timed(cluster, "/api/jobs").await;
    let rss_idle = rss();
    type Query = fn(usize) -> String;
    let kinds: [(&'static str, Query); 5] = [
        ("a parent's number (0812…)", |r| {
            format!("/api/jobs?phone=0812{:07}", r * 97 % PARENTS)
        }),
        ("a status (failed)", |_| "/api/jobs?status=failed".into()),
        ("everything, newest first", |_| "/api/jobs".into()),
        // An odd parent: every 20th job failed, so a parent whose number is a
        // multiple of 20 has nothing but failures.
        ("a number and a status (read)", |r| {
            format!(
                "/api/jobs?phone=62812{:07}&status=read",
                (r * 89 % PARENTS) | 1
            )
        }),
        ("one day, ten days ago", |_| {
            let day = now_ms() - 10 * DAY_MS;
            format!("/api/jobs?from={}&until={}", day, day + DAY_MS)
        }),
    ];
    let mut searches = Vec::new();
    for (name, query) in kinds {
        let mut ms = Vec::new();
        for round in 0..ROUNDS {
            let (took, found) = timed(cluster, &query(round)).await;
            assert!(found > 0, "{name}: nothing found");
            ms.push(took);
        }
        searches.push((name, Timing::of(ms)));
    }
    let mut stats = Vec::new();
    let mut stats_first = None;
    for _ in 0..6 {
        let started = Instant::now();
        let s = cluster.get("/api/stats?utcOffset=420").await;
        assert!(s["days"].as_array().is_some_and(|d| d.len() == 30), "{s}");
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        match stats_first {
            None => stats_first = Some(ms),
            Some(_) => stats.push(ms),
        }
    }
    let rss_searched = rss();
    let started = Instant::now();
    let csv = cluster.text("/api/jobs.csv?status=read").await;
    let csv_secs = started.elapsed().as_secs_f64();
    let csv_rows = csv.lines().count().saturating_sub(1);
    let expected = (0..jobs)
        .filter(|i| filled(*i, jobs, 0).status == "read")
        .count();
    assert_eq!(csv_rows, expected, "the export holds every read job");
    drop(csv);
    Measured {
        backend,
        jobs,
        searches,
        stats_first: stats_first.unwrap_or_default(),
        stats: Timing::of(stats),
        csv_rows,
        csv_secs,
        rss: [rss_idle, rss_searched, rss()],
    }
}

/// The local queue with `jobs` jobs.
pub async fn local(jobs: usize) -> Measured {
    let cluster = Cluster::start(&[]).await;
    let path = cluster.dir.path().join("data/dispatcher/queue.sqlite3");
    fill_local(&path, jobs, now_ms());
    measure_on(&cluster, "local queue", jobs).await
}

/// A Firestore collection on the emulator with `jobs` jobs.
pub async fn firestore(jobs: usize) -> Measured {
    let emulator = TestFirestore::from_env();
    let collection = format!("bench-search-{}", now_ms());
    let app = App::connect(&emulator.host, &collection).await;
    fill_firestore(&app, jobs, now_ms()).await;
    let cluster = Cluster::start_firestore(&emulator.host, &collection, &[]).await;
    measure_on(&cluster, "Firestore (emulator)", jobs).await
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The tables for `BENCHMARKS.md`.
pub fn markdown(runs: &[Measured], measured: &str) -> String {
    let mut out = String::from("## Finding a job: search, stats and export over a large queue\n\n");
    let _ = writeln!(
        out,
        "`{COMMAND}`. The four release binaries over a queue filled with finished jobs (one in 20 failed, the rest sent, delivered or read) spread over 30 days and {PARENTS} parents; each search is `GET /api/jobs` through status-web (the first page, 50 jobs), timed from the request to the whole answer, {ROUNDS} times each (other parents each time). `GET /api/stats` 6 times: the first counts every hour and day, the next five only the current ones (those that ended are counted once). The export is `GET /api/jobs.csv?status=read`, every row. Memory: status-web's `VmRSS`.\n\nMeasured {measured}.\n"
    );
    for run in runs {
        let _ = writeln!(
            out,
            "### {}, {} jobs\n\n| first page of a search by | median | 95th percentile | slowest |\n|---|---:|---:|---:|",
            run.backend, run.jobs
        );
        for (name, t) in &run.searches {
            let _ = writeln!(
                out,
                "| {name} | {:.1} ms | {:.1} ms | {:.1} ms |",
                t.median, t.p95, t.max
            );
        }
        let _ = writeln!(
            out,
            "| (`GET /api/stats`, 24 hours and 30 days, after the first) | {:.1} ms | {:.1} ms | {:.1} ms |\n\nThe first `GET /api/stats` (every hour and day counted): {:.0} ms.\n",
            run.stats.median, run.stats.p95, run.stats.max, run.stats_first
        );
        let _ = writeln!(
            out,
            "Export: {} rows in {:.1} s. status-web resident memory: {} filled and idle, {} after the searches, {} after the export.\n",
            run.csv_rows,
            run.csv_secs,
            mib(run.rss[0]),
            mib(run.rss[1]),
            mib(run.rss[2]),
        );
    }
    out
}
