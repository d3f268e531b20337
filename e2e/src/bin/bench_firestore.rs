//! Benchmarks the Firestore queue against the built-in emulator (or the one
//! `FIRESTORE_EMULATOR_HOST` names) with the service binaries as processes: pickup
//! latency (document written -> the gateway's dry-run send), and throughput as a
//! ratio to the emulator's own rate of the same conditional lease writes. Prints a
//! table and writes it as the "Firestore queue" section of BENCHMARKS.md.
//!
//! `cargo build --release --workspace --bins && cargo run --release -p abtrack-e2e --bin bench-firestore`
// Test code: a failed unwrap is a failed test, which is what it should be.
#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use abtrack_dispatcher::firestore::doc::{int, text, ts};
use abtrack_e2e::firestore_app::App;
use abtrack_e2e::{Cluster, shell};
use abtrack_firestore_emulator::TestFirestore;
use abtrack_proto::time::now_ms;
use firestore::gcloud_sdk::google::firestore::v1::{
    self as pb, Document, DocumentMask, Precondition, Write, precondition::ConditionType,
    write::Operation,
};

const LATENCY_JOBS: usize = 500;
const THROUGHPUT_JOBS: usize = 500;

fn percentile(sorted: &[i64], p: f64) -> i64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn collection(label: &str) -> String {
    format!("bench-{label}-{}", now_ms())
}

/// Writes one job at a time and waits for its send: the pickup latency of an idle queue.
async fn latency(host: &str) -> Vec<i64> {
    let collection = collection("latency");
    let cluster = Cluster::start_firestore(host, &collection, &[]).await;
    let app = App::connect(host, &collection).await;
    let mut latencies = Vec::with_capacity(LATENCY_JOBS);
    let log = cluster.dir.path().join("data/wa-gateway/dry-run.jsonl");
    let mut seen = 0;
    for n in 0..LATENCY_JOBS {
        let id = format!("lat-{n:04}");
        app.write_job(&id, "081234567890", "Halo").await;
        let written = now_ms();
        let deadline = Instant::now() + Duration::from_secs(30);
        let at = loop {
            // The log is parsed only when it grew, so the polling stays cheap.
            let len = std::fs::metadata(&log).map_or(0, |m| m.len());
            if len != seen {
                seen = len;
                if let Some(at) = cluster.dry_run_sent_at().get(&id) {
                    break *at;
                }
            }
            assert!(Instant::now() < deadline, "job {id} was not sent");
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        latencies.push((at - written).max(0));
    }
    latencies.sort_unstable();
    latencies
}

/// Writes all jobs at once, then times until the last is sent; jobs per second.
async fn throughput(host: &str, dispatchers: usize) -> f64 {
    let collection = collection("throughput");
    let mut cluster = Cluster::start_firestore(host, &collection, &[]).await;
    for i in 1..dispatchers {
        let label = format!("dispatcher-{i}");
        cluster.spawn_dispatcher(&label);
        cluster.wait_serving(&label).await;
    }
    let app = App::connect(host, &collection).await;
    let started = Instant::now();
    for n in 0..THROUGHPUT_JOBS {
        app.write_job(&format!("tp-{n:04}"), "081234567890", "Halo")
            .await;
    }
    app.wait_counts(Duration::from_secs(600), "every job sent", |c| {
        c.sent == THROUGHPUT_JOBS as u64
    })
    .await;
    THROUGHPUT_JOBS as f64 / started.elapsed().as_secs_f64()
}

/// The emulator's own rate of the lease write: read the document, then write it
/// conditional on its update time; writes per second.
async fn emulator_rate(host: &str) -> f64 {
    let collection = collection("raw");
    let app = App::connect(host, &collection).await;
    for n in 0..THROUGHPUT_JOBS {
        app.write_job(&format!("raw-{n:04}"), "081234567890", "Halo")
            .await;
    }
    let db = app.queue().db();
    let mut client = db.client().get();
    let started = Instant::now();
    for n in 0..THROUGHPUT_JOBS {
        let name = format!("{}/{collection}/raw-{n:04}", db.get_documents_path());
        let doc = client
            .get_document(pb::GetDocumentRequest {
                name: name.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let fields = [
            ("status", text("processing")),
            ("leaseOwner", text("bench")),
            ("leaseExpiresAt", ts(now_ms() + 120_000)),
            ("attempts", int(1)),
            ("updatedAt", ts(now_ms())),
        ];
        client
            .commit(pb::CommitRequest {
                database: db.get_database_path().clone(),
                writes: vec![Write {
                    operation: Some(Operation::Update(Document {
                        name,
                        fields: fields
                            .iter()
                            .map(|(k, v)| ((*k).to_owned(), v.clone()))
                            .collect(),
                        ..Default::default()
                    })),
                    update_mask: Some(DocumentMask {
                        field_paths: fields.iter().map(|(k, _)| (*k).to_owned()).collect(),
                    }),
                    current_document: Some(Precondition {
                        condition_type: doc.update_time.map(ConditionType::UpdateTime),
                    }),
                    update_transforms: vec![],
                }],
                ..Default::default()
            })
            .await
            .unwrap();
    }
    THROUGHPUT_JOBS as f64 / started.elapsed().as_secs_f64()
}

fn write_section(section: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../BENCHMARKS.md");
    let current = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".to_owned());
    let heading = "## Firestore queue";
    let updated = match current.find(heading) {
        Some(start) => {
            let rest = &current[start + heading.len()..];
            let end = rest
                .find("\n## ")
                .map_or(current.len(), |i| start + heading.len() + i + 1);
            format!("{}{section}{}", &current[..start], &current[end..])
        }
        None => format!(
            "{}\n{section}",
            current.trim_end_matches('\n').to_owned() + "\n"
        ),
    };
    std::fs::write(&path, updated).expect("BENCHMARKS.md is writable");
    println!("wrote {}", path.display());
}

#[tokio::main]
async fn main() {
    let firestore = TestFirestore::from_env();
    let host = firestore.host.clone();
    let emulator = if firestore.builtin.is_some() {
        "built-in emulator (firestore-emulator crate)".to_owned()
    } else {
        format!("emulator at {host}")
    };
    eprintln!("pickup latency over {LATENCY_JOBS} jobs...");
    let lat = latency(&host).await;
    eprintln!("emulator conditional-write rate...");
    let raw = emulator_rate(&host).await;
    eprintln!("throughput, 1 dispatcher...");
    let one = throughput(&host, 1).await;
    eprintln!("throughput, 3 dispatchers...");
    let three = throughput(&host, 3).await;

    let mut s = String::new();
    let _ = writeln!(s, "## Firestore queue\n");
    let _ = writeln!(
        s,
        "`cargo run --release -p abtrack-e2e --bin bench-firestore` (release binaries as processes, \
         {emulator}, wa-gateway in dry-run with no pacing, one machine).\n"
    );
    let _ = writeln!(
        s,
        "Machine: {} cores (`nproc`), {} GiB memory (`free -g`), {}; run {}.\n",
        shell("nproc"),
        shell("free -g | awk '/^Mem:/ {print $2}'"),
        shell("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs"),
        shell("date -u '+%Y-%m-%d %H:%M UTC'"),
    );
    let _ = writeln!(s, "| measure | value |\n|---|---|");
    let _ = writeln!(
        s,
        "| pickup latency p50 (document written -> gateway send, {LATENCY_JOBS} jobs one at a time) | {} ms |",
        percentile(&lat, 0.50)
    );
    let _ = writeln!(s, "| pickup latency p99 | {} ms |", percentile(&lat, 0.99));
    let _ = writeln!(s, "| pickup latency max | {} ms |", lat[lat.len() - 1]);
    let _ = writeln!(
        s,
        "| emulator rate of the lease write alone (read + conditional update, sequential) | {raw:.0} writes/s |"
    );
    let _ = writeln!(
        s,
        "| throughput, 1 dispatcher ({THROUGHPUT_JOBS} jobs written at once -> all sent) | {one:.1} jobs/s ({:.2} x the emulator's write rate) |",
        one / raw
    );
    let _ = writeln!(
        s,
        "| throughput, 3 dispatchers on one collection | {three:.1} jobs/s ({:.2} x the emulator's write rate) |",
        three / raw
    );
    let _ = writeln!(
        s,
        "\nA job costs more than one lease write: two candidate queries, the lease write, the outcome \
         (read + conditional write), the outcome-log mark and the listener's change events, and each \
         dispatcher sends one job at a time; the ratio says how much of the store's raw write rate one \
         sent job uses."
    );
    println!("{s}");
    write_section(&s);
}
