//! The gateway's resident memory while it sends a large document: the four release
//! binaries, the gateway in WhatsApp mode linked to the mock WhatsApp Web server, one
//! job per size whose PDF the gateway downloads from a local file server, encrypts and
//! uploads to the mock's media host. The gateway's `VmRSS` is sampled every 10 ms from
//! the job's enqueueing until it is `sent`.
//!
//! The gateway must accept the mock's self-made certificates, so the binaries come
//! from the mock-server build ([`COMMAND`]), as for the accounts benchmark.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use abtrack_wa_mock::MockServer;
use serde_json::json;

use crate::Cluster;
use crate::media::{MediaServer, sample_pdf};

/// How to build and run it.
pub const COMMAND: &str = "cargo build --release --target-dir target/bench-mock --features abtrack-wa-gateway/mock-server -p abtrack-wa-gateway -p abtrack-dispatcher -p abtrack-sheets-logger -p abtrack-status-web -p abtrack-e2e --bins && target/bench-mock/release/bench --media";

const PHONE: &str = "6281100000900";
const TO: &str = "6281200000901";
const LIMIT: Duration = Duration::from_secs(300);

/// One document sent.
#[derive(Debug, Clone)]
pub struct Measured {
    pub bytes: usize,
    /// The gateway's VmRSS (KiB) just before the job.
    pub idle_kib: u64,
    /// The most it reached while sending (KiB).
    pub peak_kib: u64,
    /// From enqueueing to `sent`.
    pub took: Duration,
}

/// What the runs found, and the gateway's high-water mark after them all (KiB).
pub struct Runs {
    pub runs: Vec<Measured>,
    pub high_water_kib: u64,
}

/// Sends one PDF of each size in `mib` through one linked system; measures each.
pub async fn measure(mib: &[usize]) -> Runs {
    let mock = MockServer::start(PHONE).await.expect("the mock serves");
    mock.add_contact(TO);
    let server = MediaServer::start().await;
    let env = [
        ("WA_MODE", "whatsapp"),
        ("WA_SERVER_URL", mock.url()),
        ("WA_CLIENT_VERSION", "2.3000.1"),
        ("WA_PRINT_QR", "false"),
        ("WA_MIN_INTERVAL_MS", "0"),
        ("WA_JITTER_MS", "0"),
        ("WA_MEDIA_ALLOW_HTTP", "true"),
        ("WA_MEDIA_ALLOW_PRIVATE", "true"),
        ("WA_MEDIA_MAX_DOCUMENT_MB", "200"),
        ("DISPATCHER_SEND_TIMEOUT_SECS", "300"),
        ("DISPATCHER_LEASE_SECS", "600"),
    ];
    let cluster = Cluster::launch(&env);
    cluster.wait_ready_until("waiting_for_qr").await;
    let code = super::accounts::fresh_qr(cluster.ports["wa-gateway"], &mock).await;
    mock.scan_qr(&code).expect("the phone scans");
    cluster
        .wait_status(LIMIT, "the gateway to connect", |s| {
            s["gateway"]["status"] == "connected"
        })
        .await;
    let pid = cluster.pid("wa-gateway").expect("the gateway runs");
    let rss = || crate::rss_kib(pid).expect("the gateway runs");
    let mut runs = Vec::new();
    for (n, size) in mib.iter().enumerate() {
        let bytes = size << 20;
        let name = format!("rekap-{n}.pdf");
        let pdf = sample_pdf(bytes);
        let len = pdf.len();
        server.put(&name, pdf);
        // The file server's copy is in this process, not the gateway's.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle_kib = rss();
        let started = Instant::now();
        let (code, job) = cluster
            .post(
                "/api/messages",
                json!({ "to": format!("0{}", &TO[2..]), "message": "Rekap", "media": { "url": server.url(&name) } })
                    .to_string(),
            )
            .await;
        assert_eq!(code, 201, "{job}");
        let id = job["id"].as_str().expect("a job id").to_owned();
        let mut peak_kib = idle_kib;
        let mut last_poll = Instant::now();
        loop {
            peak_kib = peak_kib.max(rss());
            if last_poll.elapsed() >= Duration::from_millis(200) {
                last_poll = Instant::now();
                let job = cluster.get(&format!("/api/jobs/{id}")).await;
                match job["status"].as_str() {
                    Some("sent") => break,
                    Some("failed") => panic!("the {size} MiB document failed: {job}"),
                    _ => {}
                }
            }
            assert!(
                started.elapsed() < LIMIT,
                "the {size} MiB document was not sent in time"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let took = started.elapsed();
        let got = mock
            .received()
            .into_iter()
            .filter_map(|r| r.media)
            .any(|m| m.bytes.len() == len);
        assert!(got, "the mock decrypted the {size} MiB document");
        runs.push(Measured {
            bytes: len,
            idle_kib,
            peak_kib,
            took,
        });
    }
    Runs {
        runs,
        // The most the gateway ever held resident: a peak between two samples is
        // not missed.
        high_water_kib: crate::status_kib(pid, "VmHWM:").expect("the gateway runs"),
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The table for `BENCHMARKS.md`.
pub fn markdown(runs: &Runs, measured: &str) -> String {
    let mut out =
        String::from("## Media: the gateway's memory while it sends a large document\n\n");
    let _ = writeln!(
        out,
        "`{COMMAND}`. The four release binaries (local queue), the gateway in WhatsApp mode linked to the mock WhatsApp Web server (`wa-mock`, in the benchmark's process, which also serves the files over HTTP and keeps every upload). One job per size, a PDF by URL: the gateway streams it to its data folder, encrypts it into a second file and uploads that to the mock's HTTPS media host (`Client::upload_stream`), then sends the message and waits for the server's ack. The gateway's `VmRSS` is sampled every 10 ms from the enqueueing until the job is `sent`.\n\nMeasured {measured}.\n"
    );
    out.push_str(
        "| document | gateway before | gateway peak while sending | peak − before | enqueued → sent |\n|---:|---:|---:|---:|---:|\n",
    );
    for run in &runs.runs {
        let _ = writeln!(
            out,
            "| {:.1} MiB | {} | {} | {} | {:.1} s |",
            run.bytes as f64 / f64::from(1 << 20),
            mib(run.idle_kib),
            mib(run.peak_kib),
            mib(run.peak_kib.saturating_sub(run.idle_kib)),
            run.took.as_secs_f64(),
        );
    }
    let _ = writeln!(
        out,
        "\nThe gateway's high-water mark (`VmHWM`, the most it ever held resident since it started, linking included) after all of them: {}.",
        mib(runs.high_water_kib)
    );
    out
}
