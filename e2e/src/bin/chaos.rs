//! The long chaos run: the four binaries as processes, killed and restarted while jobs
//! flow, then the exactly-once checks. See docs/testing.md.
// Test code: a failed unwrap is a failed test, which is what it should be.
#![allow(clippy::unwrap_used)]

use std::process::ExitCode;
use std::time::Duration;

use abtrack_e2e::chaos::{self, Backend, Options};

const USAGE: &str = "\
chaos: kills and restarts the AbTrack Notify services while jobs flow, then checks
that every job was sent exactly once and logged to the sheet exactly once.

USAGE
    cargo run -p abtrack-e2e --bin chaos -- --backend local|firestore|firestore-app-shape|firestore-accounts [OPTIONS]

    Run `cargo build --workspace --bins` first: the run starts the four service
    binaries (dispatcher, wa-gateway, sheets-logger, status-web) from the same
    target folder as this command (or from ABTRACK_BIN_DIR).

OPTIONS
    --backend local|firestore|firestore-app-shape|firestore-accounts
                                the dispatcher's queue: the embedded SQLite queue, or
                                Firestore through the built-in emulator (or the one
                                FIRESTORE_EMULATOR_HOST names, which is not restarted);
                                firestore-app-shape writes the documents in an app's
                                own shape (nested fields, other status words) and
                                configures the mapping for it; firestore-accounts
                                sends from two accounts (two gateways, the kills
                                alternating between them) through three dispatchers
    --jobs N                    jobs written over the run (default 1000)
    --minutes M                 length of the chaos phase, may be fractional
                                (default 10)
    --seed S                    the schedule's seed (default CHAOS_SEED, else random);
                                the seed is printed at start
    --drain-secs D              longest wait after the chaos for every outcome to
                                settle (default 120)
    --record                    write the result into BENCHMARKS.md
    -h, --help                  this text

What is killed (SIGKILL): the gateway every 2-6 s, the dispatcher 5 times and the
logger 3 times (fewer in runs under 150 s and 3 min), and with a Firestore backend
the built-in emulator is stopped and started again once on the same port, keeping
its documents. Exit code 0 when every check passed, 1 when one failed, 64 on a
usage error.
";

struct Args {
    backend: Backend,
    jobs: usize,
    minutes: f64,
    seed: Option<u64>,
    drain: Duration,
    record: bool,
}

fn parse(args: &[String]) -> Result<Option<Args>, String> {
    let mut backend = None;
    let mut jobs = 1000;
    let mut minutes = 10.0;
    let mut seed = None;
    let mut drain = Duration::from_secs(120);
    let mut record = false;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--backend" => {
                let v = value("--backend")?;
                backend =
                    Some(Backend::parse(&v).ok_or_else(|| {
                        format!("--backend: expected local or firestore, got {v:?}")
                    })?);
            }
            "--jobs" => {
                let v = value("--jobs")?;
                jobs =
                    v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("--jobs: expected a whole number above 0, got {v:?}")
                    })?;
            }
            "--minutes" => {
                let v = value("--minutes")?;
                minutes = v
                    .parse::<f64>()
                    .ok()
                    .filter(|m| m.is_finite() && *m >= 0.25 && *m <= 24.0 * 60.0)
                    .ok_or_else(|| {
                        format!("--minutes: expected a number from 0.25 to 1440, got {v:?}")
                    })?;
            }
            "--seed" => {
                let v = value("--seed")?;
                seed = Some(
                    v.parse()
                        .map_err(|_| format!("--seed: expected a whole number, got {v:?}"))?,
                );
            }
            "--drain-secs" => {
                let v = value("--drain-secs")?;
                drain = Duration::from_secs(v.parse().map_err(|_| {
                    format!("--drain-secs: expected a whole number of seconds, got {v:?}")
                })?);
            }
            "--record" => record = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let backend = backend.ok_or("--backend local|firestore is required")?;
    Ok(Some(Args {
        backend,
        jobs,
        minutes,
        seed,
        drain,
        record,
    }))
}

fn record(args: &Args, report: &chaos::Report) {
    let name = format!("chaos-{}", report.backend);
    let backend = match args.backend {
        Backend::Local => "the embedded SQLite queue",
        Backend::Firestore => "Firestore through the built-in emulator (firestore-emulator crate)",
        Backend::FirestoreAppShape => {
            "Firestore through the built-in emulator, documents in an app's own shape (FIRESTORE_FIELD_*, FIRESTORE_STATUS_*)"
        }
        Backend::FirestoreAccounts => {
            "Firestore through the built-in emulator, two accounts (two gateways) and three dispatchers"
        }
    };
    let minutes = if args.minutes.fract() == 0.0 {
        format!("{}", args.minutes as u64)
    } else {
        args.minutes.to_string()
    };
    let body = format!(
        "## Chaos run: {backend}\n\n\
         `cargo build --workspace --bins && cargo run -p abtrack-e2e --bin chaos -- --backend {} --jobs {} --minutes {minutes} --seed {} --record` (debug binaries as processes, gateway in dry-run mode, Sheets logging to the local Google stand-in). What is killed and what is checked: docs/testing.md.\n\n\
         Machine: {}; run {}.\n\n{}",
        report.backend,
        args.jobs,
        report.seed,
        abtrack_e2e::machine(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        report.table()
    );
    abtrack_e2e::write_benchmark_section(&name, &body);
    println!("written to BENCHMARKS.md (section {name})");
}

#[tokio::main]
async fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&argv) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("chaos: {why} (see --help)");
            return ExitCode::from(64);
        }
    };
    let seed = match args.seed.map_or_else(chaos::plan::seed_from_env, Ok) {
        Ok(seed) => seed,
        Err(why) => {
            eprintln!("chaos: {why}");
            return ExitCode::from(64);
        }
    };
    let options = Options {
        backend: args.backend,
        jobs: args.jobs,
        duration: Duration::from_secs_f64(args.minutes * 60.0),
        seed,
        drain_limit: args.drain,
    };
    let report = chaos::run(&options).await;
    println!("\n{}", report.table());
    let failures = report.failures();
    for failure in &failures {
        println!("FAILED: {failure}");
    }
    if args.record {
        record(&args, &report);
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Result<Option<Args>, String> {
        parse(
            &text
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn flags_are_read_and_bad_ones_named() {
        let a = args("--backend firestore --jobs 150 --minutes 0.5 --seed 7 --record")
            .unwrap()
            .unwrap();
        assert_eq!(
            (a.backend, a.jobs, a.minutes, a.seed, a.record),
            (Backend::Firestore, 150, 0.5, Some(7), true)
        );
        assert!(args("--help").unwrap().is_none());
        for (bad, named) in [
            ("--jobs 5", "--backend"),
            ("--backend sqlite", "--backend"),
            ("--backend local --jobs 0", "--jobs"),
            ("--backend local --minutes soon", "--minutes"),
            ("--backend local --seed", "--seed needs a value"),
            ("--backend local --fast", "\"--fast\""),
        ] {
            let err = args(bad).err().unwrap();
            assert!(err.contains(named), "{bad}: {err}");
        }
    }
}
