//! The benchmark's figures and their Markdown tables, as printed and as written into
//! `BENCHMARKS.md`.

use std::fmt::Write as _;
use std::time::Duration;

use super::startup::{POLL_EVERY, Startup};
use super::{Chromium, LoadRun, SHARED_DISPATCHERS, WRITES_PER_JOB};
use crate::SERVICES;

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub jobs: usize,
    /// Jobs the stores' own rates were measured over.
    pub store_jobs: usize,
    /// Which Firestore emulator, in words.
    pub emulator: String,
    /// Where the service binaries came from, e.g. `target/release`.
    pub binaries: String,
    pub startups: Vec<Startup>,
    pub local: LoadRun,
    pub firestore: LoadRun,
    /// Jobs per second with `SHARED_DISPATCHERS` dispatchers on one collection.
    pub firestore_shared_jobs_per_s: f64,
    /// Document writes while they drained, besides the jobs' creation (counted by the
    /// built-in emulator).
    pub firestore_shared_writes: Option<u64>,
    /// Jobs per second each store takes alone (`store_rate`).
    pub sqlite_jobs_per_s: f64,
    pub emulator_jobs_per_s: f64,
    pub chromium: Chromium,
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// The `p`-th quantile (0..=1) of sorted values, nearest rank.
pub fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Report {
    fn throughput_row(s: &mut String, name: &str, run: &LoadRun, store_jobs_per_s: f64) {
        let writes = match run.store_writes {
            Some(writes) => format!("{:.2} (counted)", writes as f64 / run.jobs as f64),
            None => format!("{WRITES_PER_JOB}"),
        };
        let _ = writeln!(
            s,
            "| {name} | {:.1} | {:.2} | {store_jobs_per_s:.1} | {:.2} | {writes} |",
            run.jobs_per_second(),
            run.drain.as_secs_f64(),
            run.jobs_per_second() / store_jobs_per_s,
        );
    }

    fn startup_times(&self, service: Option<&str>) -> Vec<Duration> {
        let mut times: Vec<Duration> = self
            .startups
            .iter()
            .map(|s| match service {
                Some(name) => s
                    .services
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, d)| *d)
                    .unwrap_or_default(),
                None => s.all(),
            })
            .collect();
        times.sort_unstable();
        times
    }

    /// The Markdown section (from its `##` heading), with `command` and `measured`
    /// (date and machine) in its opening lines.
    pub fn markdown(&self, command: &str, measured: &str) -> String {
        let mut s = String::new();
        let (local, fs) = (&self.local, &self.firestore);
        let jobs = self.jobs;
        let _ = writeln!(
            s,
            "## The whole system: throughput, pickup latency, memory, start-up, CPU per job\n"
        );
        let _ = writeln!(
            s,
            "Command: `{command}`. Measured {measured}. The four binaries of `{}` run as \
             processes, the gateway in dry-run mode with pacing off \
             (`WA_MIN_INTERVAL_MS=0`, `WA_JITTER_MS=0`); Firestore is {}. The machine is \
             shared with other work, so the figures are indicative. What each figure means \
             and how it is measured: [docs/benchmarks.md](docs/benchmarks.md).\n",
            self.binaries, self.emulator
        );

        let _ = writeln!(s, "### Throughput with pacing off\n");
        let _ = writeln!(
            s,
            "| queue | jobs/s (backlog of {jobs}) | drain (s) | the store alone (jobs/s) | \
             ratio | store writes per job |\n|---|---|---|---|---|---|"
        );
        Self::throughput_row(&mut s, "local (SQLite)", local, self.sqlite_jobs_per_s);
        Self::throughput_row(&mut s, "Firestore (emulator)", fs, self.emulator_jobs_per_s);
        let shared = self.firestore_shared_jobs_per_s;
        let writes = match self.firestore_shared_writes {
            Some(writes) => format!("{:.2} (counted)", writes as f64 / jobs as f64),
            None => format!("{WRITES_PER_JOB}"),
        };
        let _ = writeln!(
            s,
            "| Firestore, {SHARED_DISPATCHERS} dispatchers on one collection (jobs written while \
             they run) | {shared:.1} | {:.2} | {:.1} | {:.2} | {writes} |",
            jobs as f64 / shared.max(1e-9),
            self.emulator_jobs_per_s,
            shared / self.emulator_jobs_per_s,
        );
        let _ = writeln!(
            s,
            "\nThe store alone: the dispatcher's own queue code takes {} jobs through their \
             {WRITES_PER_JOB} writes (the lease, the outcome, the mark that the logger has the \
             outcome), one job after the other, with the reads they need and nothing else \
             running. Ratio = jobs/s / the store alone: 1 when the queue store is the \
             bottleneck. Store writes per job: document writes the built-in emulator \
             applied during the drain, per job (counted), or the queue's own {WRITES_PER_JOB}.\n",
            self.store_jobs
        );

        let _ = writeln!(
            s,
            "### Pickup latency (job written -> gateway send, {jobs} jobs one at a time)\n"
        );
        let _ = writeln!(
            s,
            "| queue | p50 (ms) | p99 (ms) | max (ms) |\n|---|---|---|---|"
        );
        for (name, run) in [("local (SQLite)", local), ("Firestore (emulator)", fs)] {
            let l = &run.latency_ms;
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} |",
                percentile(l, 0.50),
                percentile(l, 0.99),
                l.last().copied().unwrap_or_default()
            );
        }

        let _ = writeln!(s, "\n### Resident memory (MiB, VmRSS)\n");
        let _ = writeln!(
            s,
            "| process | idle, local | under load, local | idle, Firestore | under load, Firestore |\n\
             |---|---|---|---|---|"
        );
        for (i, name) in SERVICES.iter().enumerate() {
            let (l, f) = (&local.services[i], &fs.services[i]);
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {} |",
                mib(l.idle_rss_kib),
                mib(l.peak_rss_kib),
                mib(f.idle_rss_kib),
                mib(f.peak_rss_kib)
            );
        }
        let _ = writeln!(
            s,
            "| the four together | {} | {} | {} | {} |",
            mib(local.idle_total_kib),
            mib(local.peak_total_kib),
            mib(fs.idle_total_kib),
            mib(fs.peak_total_kib)
        );
        let chromium = match &self.chromium {
            Chromium::NotInstalled => "not installed".to_owned(),
            Chromium::Skipped => "not measured (skipped)".to_owned(),
            Chromium::Measured {
                version,
                processes,
                rss_kib,
                settle,
            } => format!(
                "{} MiB ({version}, {processes} processes, after {} s)",
                mib(*rss_kib),
                settle.as_secs()
            ),
        };
        let _ = writeln!(
            s,
            "\nBeside it, headless Chromium on `about:blank` (RSS summed over its process \
             tree): {chromium}.\n"
        );

        let _ = writeln!(
            s,
            "### Start-up (launch -> serving, polled every {} ms, {} launch{})\n",
            POLL_EVERY.as_millis(),
            self.startups.len(),
            if self.startups.len() == 1 { "" } else { "es" }
        );
        let _ = writeln!(s, "| service | median (ms) | max (ms) |\n|---|---|---|");
        for name in SERVICES.iter().map(Some).chain([None]) {
            let times = self.startup_times(name.copied());
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                name.unwrap_or(&"all four"),
                ms(percentile(&times, 0.5)),
                ms(times.last().copied().unwrap_or_default())
            );
        }

        let _ = writeln!(
            s,
            "\n### CPU time per job (utime + stime while the backlog of {jobs} drains)\n"
        );
        let _ = writeln!(
            s,
            "| process | local (ms/job) | Firestore (ms/job) |\n|---|---|---|"
        );
        let per_job = |cpu_ms: f64, run: &LoadRun| format!("{:.2}", cpu_ms / run.jobs as f64);
        for (i, name) in SERVICES.iter().enumerate() {
            let _ = writeln!(
                s,
                "| {name} | {} | {} |",
                per_job(local.services[i].cpu_ms, local),
                per_job(fs.services[i].cpu_ms, fs)
            );
        }
        let _ = writeln!(
            s,
            "| the four together | {} | {} |",
            per_job(local.cpu_ms_total(), local),
            per_job(fs.cpu_ms_total(), fs)
        );
        let _ = writeln!(
            s,
            "\nThe Firestore emulator runs inside the benchmark process: its CPU time is not \
             in these figures."
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&v, 1.0), 100);
        assert_eq!(percentile(&[7i64], 0.99), 7);
        assert_eq!(percentile::<i64>(&[], 0.5), 0);
    }
}
