//! The whole-system benchmark's library on a few jobs: every measurement runs and the
//! report is complete and well formed. Nothing here judges the figures themselves.

use std::time::Duration;

use abtrack_e2e::SERVICES;
use abtrack_e2e::bench::{self, Chromium, LoadRun, Options};

const JOBS: usize = 5;

fn check_run(run: &LoadRun, backend: &str) {
    assert_eq!(run.backend, backend);
    assert_eq!(run.jobs, JOBS);
    assert_eq!(run.latency_ms.len(), JOBS, "{backend}: one latency per job");
    assert!(
        run.latency_ms.windows(2).all(|w| w[0] <= w[1]),
        "{backend}: latencies sorted"
    );
    assert!(run.drain > Duration::ZERO);
    assert!(run.jobs_per_second().is_finite() && run.jobs_per_second() > 0.0);
    let names: Vec<&str> = run.services.iter().map(|s| s.name).collect();
    assert_eq!(names, SERVICES, "{backend}: every service, in order");
    for s in &run.services {
        assert!(s.idle_rss_kib > 0, "{backend}: {} idle RSS read", s.name);
        assert!(
            s.peak_rss_kib > 0,
            "{backend}: {} RSS under load read",
            s.name
        );
        assert!(s.cpu_ms.is_finite() && s.cpu_ms >= 0.0);
    }
    assert_eq!(
        run.idle_total_kib,
        run.services.iter().map(|s| s.idle_rss_kib).sum::<u64>()
    );
    assert!(run.peak_total_kib > 0);
}

/// Every table row has as many cells as its header, and no cell is empty or a
/// non-number where a figure belongs.
fn check_tables(markdown: &str) -> usize {
    let mut tables = 0;
    let mut columns = None;
    for line in markdown.lines() {
        if !line.starts_with('|') {
            columns = None;
            continue;
        }
        assert!(line.ends_with('|'), "a complete row: {line}");
        let cells: Vec<&str> = line[1..line.len() - 1].split('|').map(str::trim).collect();
        match columns {
            None => {
                columns = Some(cells.len());
                tables += 1;
            }
            Some(n) => assert_eq!(cells.len(), n, "as many cells as the header: {line}"),
        }
        for cell in cells {
            assert!(!cell.is_empty(), "no empty cell: {line}");
            let lower = cell.to_lowercase();
            assert!(
                !lower.contains("nan") && !lower.contains("inf"),
                "a figure: {line}"
            );
        }
    }
    tables
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_measures_everything_and_writes_complete_tables() {
    let options = Options {
        jobs: JOBS,
        startup_runs: 2,
        chromium_settle: None,
    };
    let report = bench::run(&options).await;

    check_run(&report.local, "local");
    check_run(&report.firestore, "firestore");
    assert!(report.sqlite_jobs_per_s.is_finite() && report.sqlite_jobs_per_s > 0.0);
    assert!(report.emulator_jobs_per_s.is_finite() && report.emulator_jobs_per_s > 0.0);
    assert!(report.store_jobs >= JOBS);
    assert_eq!(
        report.local.store_writes, None,
        "SQLite writes are not counted"
    );
    if let Some(writes) = report.firestore.store_writes {
        // The lease, the outcome and the logger's mark, once each: a lease lost to a
        // conflict or an outcome written twice would show here.
        assert_eq!(
            writes,
            (bench::WRITES_PER_JOB * JOBS) as u64,
            "Firestore writes while {JOBS} jobs drained"
        );
    }
    assert!(
        report.firestore_shared_jobs_per_s.is_finite() && report.firestore_shared_jobs_per_s > 0.0
    );
    if let Some(writes) = report.firestore_shared_writes {
        // Three dispatchers racing for the same documents: a lost race is a refused
        // write, never an applied one, so still three per job.
        assert_eq!(
            writes,
            (bench::WRITES_PER_JOB * JOBS) as u64,
            "Firestore writes while {JOBS} jobs drained through {} dispatchers",
            bench::SHARED_DISPATCHERS
        );
    }
    assert_eq!(report.startups.len(), 2);
    for startup in &report.startups {
        let names: Vec<&str> = startup.services.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, SERVICES, "a start-up time for every service");
        assert_eq!(
            startup.all(),
            startup.services.iter().map(|(_, d)| *d).max().unwrap()
        );
    }
    assert_eq!(report.chromium, Chromium::Skipped);
    assert!(
        report.binaries.starts_with("target/"),
        "{}",
        report.binaries
    );

    let markdown = report.markdown("the command", "today on this machine");
    assert!(markdown.starts_with("## "), "a section heading first");
    assert!(markdown.contains("Command: `the command`. Measured today on this machine."));
    assert_eq!(
        check_tables(&markdown),
        5,
        "throughput, latency, memory, start-up, CPU"
    );
    for needle in [
        "| local (SQLite) |",
        "| Firestore (emulator) |",
        "| Firestore, 3 dispatchers on one collection (jobs written while they run) |",
        "| the four together |",
        "| all four |",
        "not measured (skipped)",
    ] {
        assert!(markdown.contains(needle), "{needle:?} in:\n{markdown}");
    }
    for service in SERVICES {
        assert_eq!(
            markdown.matches(&format!("| {service} |")).count(),
            3,
            "{service} in the memory, start-up and CPU tables"
        );
    }
}
