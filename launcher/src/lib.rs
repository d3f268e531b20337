//! The launcher that `start.sh` and `start.bat` run: it starts the four services,
//! prefixes their output with their names, says when all are healthy, restarts a
//! service that exits (after a backoff), and stops all of them together.
#![forbid(unsafe_code)]

pub mod child;
pub mod plan;
pub mod record;
pub mod signal;
pub mod supervisor;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use abtrack_proto::config::EXIT_USAGE;

use crate::plan::Plan;
use crate::signal::Signals;
use crate::supervisor::{Event, Policy, Spec, Supervisor};

/// How long the four may take to become healthy at the first start.
pub const START_LIMIT: Duration = Duration::from_secs(60);

const USAGE: &str = "usage: abtrack-notify [--dry-run]
Runs the four AbTrack Notify services (wa-gateway, sheets-logger, dispatcher,
status-web) in this window, restarts one that exits, and stops all four on Ctrl-C
or when the window closes. Data goes to ./data.

  --dry-run  nothing reaches WhatsApp: messages are appended to data/wa-gateway/dry-run.jsonl

Environment (besides every service variable of docs/configuration.md):";

/// One line of the launcher's own, written whole in one call, so that a service's
/// line printed at the same moment never lands inside it.
pub(crate) fn say(message: impl std::fmt::Display) {
    write_whole(&format!("abtrack-notify: {message}\n"));
}

fn write_whole(text: &str) {
    use std::io::Write as _;
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

fn usage() -> String {
    let mut text = USAGE.to_owned();
    for var in [plan::BIN_DIR, plan::NO_BROWSER, plan::ACCOUNTS] {
        text.push_str(&format!("\n  {:<20}{}", var.name, var.help));
    }
    text
}

/// Runs the launcher with its command-line arguments; returns the exit code.
pub async fn run(args: impl IntoIterator<Item = String>) -> i32 {
    let mut dry_run = false;
    for arg in args {
        match arg.as_str() {
            "--dry-run" => dry_run = true,
            "-h" | "--help" => {
                println!("{}", usage());
                return 0;
            }
            other => {
                say(format!("unknown option {other} (try --help)"));
                return EXIT_USAGE;
            }
        }
    }
    let mut signals = match Signals::register() {
        Ok(signals) => signals,
        Err(e) => {
            say(format!("cannot listen for Ctrl-C: {e}"));
            return 1;
        }
    };
    let own_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let plan = match Plan::new(|k| std::env::var(k).ok(), dry_run, &own_dir) {
        Ok(plan) => plan,
        Err(refusal) => {
            say(refusal.message);
            return refusal.code;
        }
    };
    if let Err(refusal) = plan.preflight().await {
        say(refusal.message);
        return refusal.code;
    }
    supervise(&plan, &mut signals, Policy::default()).await
}

/// Runs the plan's services until a stop request, or a service whose configuration
/// is wrong; returns the exit code.
pub async fn supervise(plan: &Plan, signals: &mut Signals, policy: Policy) -> i32 {
    let specs = plan
        .services
        .iter()
        .map(|service| Spec {
            name: service.name.clone(),
            program: service.program.clone(),
            args: Vec::new(),
            health_args: vec!["healthcheck".into()],
            env: service.env(&plan.env),
        })
        .collect();
    let mut supervisor = Supervisor::start(specs, policy, Some(plan::RECORD_PATH.into()));
    let mut healthy = BTreeSet::new();
    let mut announced = false;
    let start_limit = tokio::time::sleep(START_LIMIT);
    tokio::pin!(start_limit);

    let (code, by_console) = loop {
        tokio::select! {
            stop = signals.recv() => {
                say(format!("{}: stopping the {} services...", stop.describe(), plan.count()));
                break (stop.exit_code(), true);
            }
            () = &mut start_limit, if !announced => {
                let late: Vec<&str> = plan
                    .services
                    .iter()
                    .map(|s| s.name.as_str())
                    .filter(|name| !healthy.contains(*name))
                    .collect();
                say(format!(
                    "{} did not become healthy within {} s; see the [{}] lines above. Stopping the {} services...",
                    late.join(", "),
                    START_LIMIT.as_secs(),
                    late.first().copied().unwrap_or_default(),
                    plan.count()
                ));
                break (1, false);
            }
            event = supervisor.next_event() => match event {
                Some(Event::Healthy { name, start }) => {
                    if start > 0 {
                        say(format!("{name} is back and healthy"));
                    }
                    healthy.insert(name);
                    if !announced && healthy.len() == plan.services.len() {
                        announced = true;
                        announce(plan);
                    }
                }
                Some(Event::Exited { name, exit, restart_in, restarts }) => {
                    say(format!(
                        "{name} exited: {}; starting it again in {:.1} s (restart {restarts})",
                        exit.text,
                        restart_in.as_secs_f64()
                    ));
                }
                Some(Event::ConfigurationError { name }) => {
                    say(format!(
                        "{name} stopped with exit code {EXIT_USAGE}: its configuration is wrong (see the [{name}] lines above), and starting it again cannot fix that. Stopping the other services..."
                    ));
                    break (EXIT_USAGE, false);
                }
                Some(Event::CannotStart { name, error }) => {
                    say(format!("cannot start {name}: {error}. Stopping the other services..."));
                    break (plan::EXIT_UNAVAILABLE, false);
                }
                None => break (1, false),
            }
        }
    };
    supervisor.stop(by_console).await;
    say(format!("all {} services are stopped", plan.count()));
    code
}

fn announce(plan: &Plan) {
    let mut lines = vec![
        String::new(),
        format!(
            "AbTrack Notify is running: all {} services are healthy.",
            plan.count()
        ),
        format!("  Dashboard: {}", plan.dashboard),
    ];
    if std::env::var_os("STATUS_WEB_PASSWORD").is_some_and(|p| !p.is_empty()) {
        lines.push("  (log in with STATUS_WEB_PASSWORD)".into());
    }
    if plan.dry_run {
        lines.push(format!(
            "  Dry run: nothing reaches WhatsApp; messages go to {}",
            plan.dry_run_file
        ));
    } else {
        lines.push("  To link WhatsApp, scan the QR code shown on the dashboard (also printed above as [wa-gateway] lines).".into());
    }
    lines.push(if cfg!(windows) {
        format!(
            "  To stop all {} services: close this window, or press Ctrl-C.",
            plan.count()
        )
    } else {
        format!("  Press Ctrl-C to stop all {} services.", plan.count())
    });
    lines.push(String::new());
    write_whole(&(lines.join("\n") + "\n"));
    if plan.open_browser && can_open_browser() {
        let _ = opener::open_browser(&plan.dashboard);
    }
}

/// A browser can be opened: always on Windows and macOS, on other systems only in
/// a graphical session.
fn can_open_browser() -> bool {
    cfg!(any(windows, target_os = "macos"))
        || std::env::var_os("DISPLAY").is_some()
        || std::env::var_os("WAYLAND_DISPLAY").is_some()
}
