//! Benchmark: 100 Socket.IO clients (the official socket.io-client, in Node) on one
//! status-web; each round enqueues a job and times until every client has the
//! update. Prints a table with the fan-out times and status-web's resident memory.
//!
//! ```text
//! cargo build --release --workspace --bins
//! (cd status-web/tests/js && npm ci)
//! cargo run --release -p abtrack-e2e --example fanout
//! ```
//! `CLIENTS` and `ROUNDS` change the defaults (100 and 20).
// Test code: a failed unwrap is a failed test, which is what it should be.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use abtrack_e2e::Cluster;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    let clients: usize = std::env::var("CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let cluster = Cluster::start(&[("RUST_LOG", "warn")]).await;
    let pid = cluster.pid("status-web").expect("status-web runs");
    let idle = rss_kib(pid);

    let js = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../status-web/tests/js");
    let mut child = Command::new("node")
        .arg("fanout.mjs")
        .current_dir(&js)
        .env("BASE", cluster.url(""))
        .env("CLIENTS", clients.to_string())
        .env("ROUNDS", rounds.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cannot run node (and `npm ci` in status-web/tests/js)");
    let mut stdin = child.stdin.take().unwrap();
    let mut connect_ms = 0.0;
    let mut connected = 0;
    let (mut totals, mut spreads) = (Vec::new(), Vec::new());
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["CONNECTED", ms] => {
                connect_ms = ms.parse().unwrap();
                connected = rss_kib(pid);
                writeln!(stdin, "go").unwrap();
            }
            ["ROUND", total, spread] => {
                totals.push(total.parse::<f64>().unwrap());
                spreads.push(spread.parse::<f64>().unwrap());
            }
            ["DONE"] => break,
            _ => eprintln!("{line}"),
        }
    }
    let after = rss_kib(pid);
    let status = child.wait().unwrap();
    assert!(status.success(), "fanout.mjs failed: {status}");
    assert_eq!(totals.len(), rounds, "not every round finished");
    totals.sort_by(f64::total_cmp);
    spreads.sort_by(f64::total_cmp);

    println!(
        "status-web Socket.IO fan-out: {clients} clients, {rounds} rounds (every client got every update)"
    );
    println!("| measure | median | p95 | max |");
    println!("|---|---|---|---|");
    for (name, values) in [
        ("enqueue to last client (ms)", &totals),
        ("first to last client (ms)", &spreads),
    ] {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            percentile(values, 0.5),
            percentile(values, 0.95),
            values[values.len() - 1]
        );
    }
    println!();
    println!("| status-web resident memory | KiB |");
    println!("|---|---|");
    println!("| idle, no clients | {idle} |");
    println!("| {clients} clients connected | {connected} |");
    println!("| after {rounds} rounds | {after} |");
    println!();
    println!("{clients} clients connected in {connect_ms:.0} ms");
}
