//! The whole-system benchmark: throughput with pacing off (and its ratio to the queue
//! store's own write rate), pickup latency, resident memory beside headless Chromium,
//! start-up time and CPU time per job. Prints the tables and writes them as the
//! "system" section of BENCHMARKS.md (not with `--quick`).
//!
//! `cargo build --release --workspace --bins && cargo run --release -p abtrack-e2e --bin bench [-- --jobs N] [--quick]`
// Test code: a failed unwrap is a failed test, which is what it should be.
#![allow(clippy::unwrap_used)]

use abtrack_e2e::bench::{self, Options};
use abtrack_e2e::{machine, shell, write_benchmark_section};

const USAGE: &str = "usage: bench [--jobs N] [--quick] | bench --accounts [N,N,...] | bench --search [LOCAL,FIRESTORE] | bench --media [MIB,MIB,...]
  --jobs N       jobs per measurement (default 500; 20 with --quick)
  --quick        a short run (1 launch timed, Chromium after 3 s) that only prints
  --accounts     instead: resident memory with N WhatsApp accounts linked to the mock
                 (default 1,5,20), written as the \"accounts\" section; build first with
                 the command docs/benchmarks.md gives (the gateways need the mock-server
                 feature)
  --search       instead: searches, stats and a CSV export over a local queue of LOCAL
                 jobs and a Firestore collection of FIRESTORE (default 100000,20000),
                 written as the \"search\" section
  --media        instead: the gateway's resident memory while it sends a PDF of each
                 size (MiB, default 1,10,50) through the mock, written as the \"media\"
                 section; build as for --accounts";

/// `--media`: the document sizes (MiB).
fn media_option() -> Result<Option<Vec<usize>>, String> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("--media") {
        return Ok(None);
    }
    let Some(list) = args.next() else {
        return Ok(Some(vec![1, 10, 50]));
    };
    list.split(',')
        .map(|n| {
            n.trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or(format!(
                    "--media {list:?}: expected sizes from 1 to 100 (MiB)"
                ))
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// `--search`: the jobs in the local queue and in the Firestore collection.
fn search_option() -> Result<Option<(usize, usize)>, String> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("--search") {
        return Ok(None);
    }
    let Some(list) = args.next() else {
        return Ok(Some((100_000, 20_000)));
    };
    let sizes: Vec<usize> = list
        .split(',')
        .map(|n| {
            n.trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (100..=1_000_000).contains(n))
        })
        .collect::<Option<_>>()
        .ok_or(format!(
            "--search {list:?}: expected two numbers from 100 to 1000000"
        ))?;
    match sizes.as_slice() {
        [local, firestore] => Ok(Some((*local, *firestore))),
        _ => Err(format!("--search {list:?}: expected LOCAL,FIRESTORE")),
    }
}

/// `--accounts`: the account counts to measure.
fn accounts_option() -> Result<Option<Vec<usize>>, String> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("--accounts") {
        return Ok(None);
    }
    let counts = match args.next() {
        None => vec![1, 5, 20],
        Some(list) => list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=50).contains(n))
                    .ok_or(format!(
                        "--accounts {list:?}: expected numbers from 1 to 50"
                    ))
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(Some(counts))
}

fn options() -> Result<(Options, bool), String> {
    let mut args = std::env::args().skip(1);
    let mut jobs = None;
    let mut quick = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--jobs" => {
                let n = args.next().ok_or("--jobs needs a number")?;
                jobs = Some(
                    n.parse::<usize>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or(format!("--jobs {n:?} is not a positive number"))?,
                );
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let mut options = if quick {
        Options::quick()
    } else {
        Options::full()
    };
    if let Some(jobs) = jobs {
        options.jobs = jobs;
    }
    Ok((options, quick))
}

#[tokio::main]
async fn main() {
    match accounts_option() {
        Ok(Some(counts)) => return accounts(&counts).await,
        Ok(None) => {}
        Err(why) => {
            eprintln!("bench: {why}\n{USAGE}");
            std::process::exit(64);
        }
    }
    match media_option() {
        Ok(Some(sizes)) => return media(&sizes).await,
        Ok(None) => {}
        Err(why) => {
            eprintln!("bench: {why}\n{USAGE}");
            std::process::exit(64);
        }
    }
    match search_option() {
        Ok(Some((local, firestore))) => return search(local, firestore).await,
        Ok(None) => {}
        Err(why) => {
            eprintln!("bench: {why}\n{USAGE}");
            std::process::exit(64);
        }
    }
    let (options, quick) = match options() {
        Ok(o) => o,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("bench: {why}");
            }
            eprintln!("{USAGE}");
            std::process::exit(if why.is_empty() { 0 } else { 64 });
        }
    };
    let report = bench::run(&options).await;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = if args.is_empty() {
        String::new()
    } else {
        format!(" -- {}", args.join(" "))
    };
    let command = format!(
        "cargo build --release --workspace --bins && cargo run --release -p abtrack-e2e --bin bench{args}"
    );
    let measured = measured();
    let section = report.markdown(&command, &measured);
    println!("{section}");
    if quick {
        eprintln!("--quick: BENCHMARKS.md is left as it is");
    } else {
        write_benchmark_section("system", &section);
        eprintln!("wrote the \"system\" section of BENCHMARKS.md");
    }
}

/// Resident memory with each number of accounts in `counts`, one after the other.
async fn accounts(counts: &[usize]) {
    let mut runs = Vec::new();
    for n in counts {
        eprintln!(
            "{n} accounts: linking each to the mock, then {} s idle...",
            bench::accounts::IDLE.as_secs()
        );
        runs.push(bench::accounts::measure(*n).await);
    }
    let measured = measured();
    let section = bench::accounts::markdown(&runs, &measured);
    println!("{section}");
    write_benchmark_section("accounts", &section);
    eprintln!("wrote the \"accounts\" section of BENCHMARKS.md");
}

/// Searches, stats and an export over a local queue of `local` jobs and a Firestore
/// collection of `firestore`.
async fn search(local: usize, firestore: usize) {
    eprintln!("local queue: filling {local} jobs, then searching...");
    let mut runs = vec![bench::search::local(local).await];
    eprintln!("Firestore emulator: filling {firestore} jobs, then searching...");
    runs.push(bench::search::firestore(firestore).await);
    let section = bench::search::markdown(&runs, &measured());
    println!("{section}");
    write_benchmark_section("search", &section);
    eprintln!("wrote the \"search\" section of BENCHMARKS.md");
}

/// The gateway's memory while it sends a document of each size in `sizes` (MiB).
async fn media(sizes: &[usize]) {
    eprintln!("linking a gateway to the mock, then sending {sizes:?} MiB documents...");
    let runs = bench::media::measure(sizes).await;
    let section = bench::media::markdown(&runs, &measured());
    println!("{section}");
    write_benchmark_section("media", &section);
    eprintln!("wrote the \"media\" section of BENCHMARKS.md");
}

/// When, where and at which commit the figures were measured.
fn measured() -> String {
    let commit = shell("git rev-parse --short HEAD 2>/dev/null");
    format!(
        "{} on {}{}",
        shell("date -u '+%Y-%m-%d %H:%M UTC'"),
        machine(),
        if commit.is_empty() {
            String::new()
        } else {
            format!(", at commit {commit}")
        }
    )
}
