//! Benchmark: the logger's memory and outbox size while Google Sheets is down for
//! 10,000 records, and the time to drain them once it is back. Prints a table and
//! writes it to BENCHMARKS.md.
//!
//! `cargo build --release --bins && cargo run --release -p abtrack-e2e --bin bench-logger`
// Test code: a failed unwrap is a failed test, which is what it should be.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use abtrack_e2e::sheets::{FakeGoogle, Faults};
use abtrack_e2e::{bin_dir, machine, rss_kib, write_benchmark_section};
use abtrack_proto::logger::v1::{self as pb, sheets_logger_client::SheetsLoggerClient};

const RECORDS: usize = 10_000;

fn file_kib(dir: &std::path::Path) -> u64 {
    ["outbox.sqlite3", "outbox.sqlite3-wal", "outbox.sqlite3-shm"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum::<u64>()
        / 1024
}

#[tokio::main]
async fn main() {
    let (fake, url) = FakeGoogle::start("bench").await;
    fake.set_faults(Faults {
        unavailable_until: Some(tokio::time::Instant::now() + Duration::from_secs(24 * 3600)),
        ..Faults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("sheets-credentials.json");
    fake.write_key(&url, &key);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = dir.path().join("data");
    let mut child = Command::new(bin_dir().join("sheets-logger"))
        .current_dir(dir.path())
        .env("SHEETS_ADDR", format!("127.0.0.1:{port}"))
        .env("SHEETS_CREDENTIALS", &key)
        .env("SHEETS_SPREADSHEET_ID", "bench")
        .env("SHEETS_API_URL", &url)
        .env("SHEETS_DATA_DIR", &data)
        .env("SHEETS_RETRY_MAX_SECS", "1")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("build the binaries first: cargo build --release --bins");
    let pid = child.id();
    let url = format!("http://127.0.0.1:{port}");
    // The logger inherits this environment, so an ABTRACK_INTERNAL_TOKEN set here is
    // required by it: send it too.
    let token =
        abtrack_proto::token::InternalToken::from_env(&abtrack_proto::config::Env::new(|key| {
            std::env::var(key).ok()
        }))
        .expect("a valid ABTRACK_INTERNAL_TOKEN");
    let mut client = loop {
        if let Ok(channel) = tonic::transport::Endpoint::from_shared(url.clone())
            .unwrap()
            .connect()
            .await
        {
            break SheetsLoggerClient::new(abtrack_proto::token::with_token(
                channel,
                token.as_ref(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut rows = vec![(
        "0 (idle)".to_owned(),
        rss_kib(pid).unwrap_or(0),
        file_kib(&data),
    )];
    let started = Instant::now();
    for n in 0..RECORDS {
        client
            .record(pb::RecordRequest {
                job_id: format!("job-{n:05}"),
                status: "sent".into(),
                recipient: "6281234567890@s.whatsapp.net".into(),
                attempts: 1,
                message_id: format!("3EB0{n:016}"),
                message: "Ananda hadir di sekolah pukul 07:02. Terima kasih.".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        if (n + 1) % 2_500 == 0 {
            rows.push((
                format!("{}", n + 1),
                rss_kib(pid).unwrap_or(0),
                file_kib(&data),
            ));
        }
    }
    let record_secs = started.elapsed().as_secs_f64();
    fake.set_faults(Faults::default());
    let drain_started = Instant::now();
    loop {
        let mut watch = client
            .watch(pb::WatchRequest {})
            .await
            .unwrap()
            .into_inner();
        let status = watch.message().await.unwrap().unwrap();
        if status.backlog == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drain_secs = drain_started.elapsed().as_secs_f64();
    rows.push((
        "drained".to_owned(),
        rss_kib(pid).unwrap_or(0),
        file_kib(&data),
    ));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        fake.rows("Log").len(),
        RECORDS + 1,
        "every record reached the sheet"
    );

    let date = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let mut table = String::from(
        "| records in the outbox (Sheets down) | logger RSS (MiB) | outbox files (KiB) |\n|---|---|---|\n",
    );
    for (label, rss, kib) in &rows {
        table.push_str(&format!(
            "| {label} | {:.1} | {kib} |\n",
            *rss as f64 / 1024.0
        ));
    }
    let body = format!(
        "## Sheets logger: a 10,000-record outage\n\nMeasured {date} on {}. Command: `cargo build --release --bins && cargo run --release -p abtrack-e2e --bin bench-logger`.\nThe sheets-logger binary runs as a process against a local Google stand-in that answers 503 until all {RECORDS} records are recorded (one gRPC `Record` at a time, {:.1} s, {:.0} records/s), then recovers.\n\n{table}\nAfter Sheets recovered, the backlog drained in {:.1} s ({} rows per append call). Resident memory is the process's VmRSS; outbox files are the SQLite database with its WAL.\n",
        machine(),
        record_secs,
        RECORDS as f64 / record_secs,
        drain_secs,
        100,
    );
    println!("{body}");
    write_benchmark_section("sheets-logger", &body);
}
