//! Keeps each service running: a service that exits is started again after a
//! backoff, one whose configuration is wrong (exit code 64) is not, and all stop
//! together.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use abtrack_proto::config::EXIT_USAGE;
use abtrack_proto::retry::Backoff;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::child::{self, Child, Exit};
use crate::record::Record;

/// One service to keep running.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The arguments that make `program` check the running service's health: exit 0
    /// when it is serving.
    pub health_args: Vec<String>,
    pub env: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// The first restart's delay; each further one doubles, up to `restart_max`.
    pub restart_min: Duration,
    pub restart_max: Duration,
    /// A service that ran this long before it exited is restarted after
    /// `restart_min` again.
    pub healthy_run: Duration,
    /// How long a service may take to stop when asked before it is killed.
    pub stop_grace: Duration,
    /// How often a starting service's health is checked.
    pub health_every: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            restart_min: Duration::from_secs(1),
            restart_max: Duration::from_secs(60),
            healthy_run: Duration::from_secs(60),
            // The services finish in-flight work within 10 s.
            stop_grace: Duration::from_secs(15),
            health_every: Duration::from_millis(250),
        }
    }
}

/// What happened to a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// It answers its health check: after being started for the `start`-th time
    /// (0: the first start).
    Healthy { name: String, start: u32 },
    /// It exited and is started again in `restart_in`; `restarts` counts them.
    Exited {
        name: String,
        exit: Exit,
        restart_in: Duration,
        restarts: u32,
    },
    /// It exited with the configuration code: a restart cannot help.
    ConfigurationError { name: String },
    /// Its program could not be started at all.
    CannotStart { name: String, error: String },
}

/// The running services.
pub struct Supervisor {
    events: mpsc::UnboundedReceiver<Event>,
    stopping: CancellationToken,
    services: TaskTracker,
    output: TaskTracker,
    /// Whether the services were asked to stop by the console itself (Windows sends
    /// Ctrl-C and the close event to every process of the window).
    asked_by_console: Arc<std::sync::atomic::AtomicBool>,
}

impl Supervisor {
    /// Starts every service of `specs`, each kept running by its own task; restarts
    /// are written to `record` when given.
    pub fn start(specs: Vec<Spec>, policy: Policy, record: Option<PathBuf>) -> Self {
        let (tx, events) = mpsc::unbounded_channel();
        let stopping = CancellationToken::new();
        let services = TaskTracker::new();
        let output = TaskTracker::new();
        let asked_by_console = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let book = Arc::new(Mutex::new(Record::new(
            specs.iter().map(|s| s.name.as_str()),
        )));
        if let Some(path) = &record {
            write_record(&book, path);
        }
        for spec in specs {
            let keeper = Keeper {
                spec,
                policy,
                events: tx.clone(),
                stopping: stopping.clone(),
                output: output.clone(),
                record: record.clone().map(|path| (book.clone(), path)),
                asked_by_console: asked_by_console.clone(),
            };
            services.spawn(keeper.run());
        }
        services.close();
        Self {
            events,
            stopping,
            services,
            output,
            asked_by_console,
        }
    }

    /// The next thing that happened to a service.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Stops every service (politely, then by force after the grace period) and
    /// waits until they and their output have ended. `by_console`: the console has
    /// already asked them to stop (Windows).
    pub async fn stop(self, by_console: bool) {
        self.asked_by_console
            .store(by_console, std::sync::atomic::Ordering::SeqCst);
        self.stopping.cancel();
        self.services.wait().await;
        self.output.close();
        // The last lines of a stopped service are printed before the launcher's own.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.output.wait()).await;
    }
}

fn write_record(book: &Mutex<Record>, path: &std::path::Path) {
    let record = book.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Err(e) = record.write(path) {
        crate::say(format!(
            "cannot write {} (the dashboard's restart counts): {e}",
            path.display()
        ));
    }
}

struct Keeper {
    spec: Spec,
    policy: Policy,
    events: mpsc::UnboundedSender<Event>,
    stopping: CancellationToken,
    output: TaskTracker,
    record: Option<(Arc<Mutex<Record>>, PathBuf)>,
    asked_by_console: Arc<std::sync::atomic::AtomicBool>,
}

impl Keeper {
    async fn run(self) {
        let name = self.spec.name.clone();
        let mut backoff = Backoff::new(self.policy.restart_min, self.policy.restart_max);
        let mut restarts = 0;
        loop {
            let spawned = child::spawn(
                &name,
                &self.spec.program,
                &self.spec.args,
                &self.spec.env,
                &self.output,
            );
            let mut child = match spawned {
                Ok(child) => child,
                Err(e) => {
                    let error = format!("{}: {e}", self.spec.program.display());
                    let _ = self.events.send(Event::CannotStart { name, error });
                    return;
                }
            };
            let started = Instant::now();
            let Some(exit) = self.watch(&mut child, restarts).await else {
                return;
            };
            if self.stopped_by_console(&exit).await {
                return;
            }
            if exit.code == Some(EXIT_USAGE) {
                let _ = self.events.send(Event::ConfigurationError { name });
                return;
            }
            if started.elapsed() >= self.policy.healthy_run {
                backoff.reset();
            }
            let restart_in = backoff.next_delay();
            restarts += 1;
            if let Some((book, path)) = &self.record {
                book.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .restarted(&name, &exit);
                write_record(book, path);
            }
            let _ = self.events.send(Event::Exited {
                name: name.clone(),
                exit,
                restart_in,
                restarts,
            });
            tokio::select! {
                () = tokio::time::sleep(restart_in) => {}
                () = self.stopping.cancelled() => return,
            }
        }
    }

    /// Runs until the child exits (its end) or the launcher stops (`None`, the child
    /// stopped), reporting its health once it answers.
    async fn watch(&self, child: &mut Child, start: u32) -> Option<Exit> {
        let name = &self.spec.name;
        let healthy = self.wait_healthy();
        tokio::pin!(healthy);
        let mut reported = false;
        loop {
            tokio::select! {
                status = child.wait() => {
                    return Some(match status {
                        Ok(status) => Exit::of(status),
                        Err(e) => Exit::unknown(&e),
                    });
                }
                () = &mut healthy, if !reported => {
                    reported = true;
                    let _ = self.events.send(Event::Healthy { name: name.clone(), start });
                }
                () = self.stopping.cancelled() => {
                    let asked = self.asked_by_console.load(std::sync::atomic::Ordering::SeqCst);
                    child::stop(child, self.policy.stop_grace, asked).await;
                    return None;
                }
            }
        }
    }

    /// Windows sends Ctrl-C and the close event to every process of the console: a
    /// service that exited 0 was told to stop, as the launcher was, so it waits a
    /// moment for the launcher's own stop instead of starting the service again. On
    /// Unix the services have their own process group, and an exit is never that.
    async fn stopped_by_console(&self, exit: &Exit) -> bool {
        if cfg!(windows) && exit.code == Some(0) {
            let wait = tokio::time::sleep(Duration::from_secs(5));
            return tokio::select! {
                () = self.stopping.cancelled() => true,
                () = wait => false,
            };
        }
        false
    }

    async fn wait_healthy(&self) {
        loop {
            let mut check =
                child::quiet(&self.spec.program, &self.spec.health_args, &self.spec.env);
            let answered = tokio::time::timeout(Duration::from_secs(10), check.status()).await;
            if let Ok(Ok(status)) = answered
                && status.success()
            {
                return;
            }
            tokio::time::sleep(self.policy.health_every).await;
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::path::Path;

    use super::*;

    fn policy() -> Policy {
        Policy {
            restart_min: Duration::from_millis(50),
            restart_max: Duration::from_millis(400),
            healthy_run: Duration::from_secs(60),
            stop_grace: Duration::from_secs(10),
            health_every: Duration::from_millis(20),
        }
    }

    /// A service that is a shell script run in `dir`; healthy once `healthy` exits 0.
    fn script(name: &str, dir: &Path, body: &str, healthy: &str) -> Spec {
        let cd = format!("cd '{}' && ", dir.display());
        Spec {
            name: name.to_owned(),
            program: "sh".into(),
            args: vec!["-c".into(), format!("{cd}{body}")],
            health_args: vec!["-c".into(), format!("{cd}{healthy}")],
            env: Vec::new(),
        }
    }

    async fn next(supervisor: &mut Supervisor) -> Event {
        tokio::time::timeout(Duration::from_secs(20), supervisor.next_event())
            .await
            .expect("an event within 20 s")
            .expect("the services still run")
    }

    /// The next event that is not a health report.
    async fn next_exit(supervisor: &mut Supervisor) -> Event {
        loop {
            match next(supervisor).await {
                Event::Healthy { .. } => continue,
                event => return event,
            }
        }
    }

    #[tokio::test]
    async fn a_service_that_exits_is_started_again_after_growing_delays() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("restarts.json");
        let spec = script("flaky", dir.path(), "exit 3", "exit 1");
        let mut supervisor = Supervisor::start(vec![spec], policy(), Some(record.clone()));
        let mut delays = Vec::new();
        for expected in 1..=6 {
            match next_exit(&mut supervisor).await {
                Event::Exited {
                    name,
                    exit,
                    restart_in,
                    restarts,
                } => {
                    assert_eq!(name, "flaky");
                    assert_eq!(restarts, expected);
                    assert_eq!(exit.code, Some(3));
                    assert_eq!(exit.text, "exit code 3");
                    delays.push(restart_in);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        supervisor.stop(false).await;
        let min = policy().restart_min;
        let max = policy().restart_max;
        assert_eq!(delays[0], min, "{delays:?}");
        assert!(delays.iter().all(|d| *d >= min && *d <= max), "{delays:?}");
        assert!(
            delays[5] >= max / 2,
            "the delay grew towards the ceiling: {delays:?}"
        );
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
        assert_eq!(written["services"][0]["restarts"], 6, "{written}");
        assert_eq!(written["services"][0]["lastExitCode"], 3, "{written}");
    }

    #[tokio::test]
    async fn a_service_that_ran_its_healthy_while_waits_the_shortest_delay_again() {
        let dir = tempfile::tempdir().unwrap();
        // Three quick crashes, then runs that last longer than the healthy while.
        let body = "n=$(cat runs 2>/dev/null || echo 0); echo $((n + 1)) > runs; \
                    if [ \"$n\" -ge 3 ]; then sleep 0.5; fi; exit 1";
        let spec = script("steady", dir.path(), body, "exit 1");
        let policy = Policy {
            healthy_run: Duration::from_millis(300),
            ..policy()
        };
        let mut supervisor = Supervisor::start(vec![spec], policy, None);
        let mut delays = Vec::new();
        for _ in 0..4 {
            match next_exit(&mut supervisor).await {
                Event::Exited { restart_in, .. } => delays.push(restart_in),
                other => panic!("unexpected {other:?}"),
            }
        }
        supervisor.stop(false).await;
        assert!(
            delays[2] > policy.restart_min,
            "grown after quick crashes: {delays:?}"
        );
        assert_eq!(
            delays[3], policy.restart_min,
            "reset by a long run: {delays:?}"
        );
    }

    #[tokio::test]
    async fn a_configuration_error_is_not_started_again() {
        let dir = tempfile::tempdir().unwrap();
        let spec = script(
            "misconfigured",
            dir.path(),
            "echo started >> runs; exit 64",
            "exit 1",
        );
        let mut supervisor = Supervisor::start(vec![spec], policy(), None);
        assert_eq!(
            next_exit(&mut supervisor).await,
            Event::ConfigurationError {
                name: "misconfigured".into()
            }
        );
        // Its keeper is done: no restart can come.
        let after = tokio::time::timeout(Duration::from_secs(5), supervisor.next_event()).await;
        assert_eq!(after, Ok(None));
        supervisor.stop(false).await;
        let runs = std::fs::read_to_string(dir.path().join("runs")).unwrap();
        assert_eq!(runs.lines().count(), 1);
    }

    #[tokio::test]
    async fn health_is_reported_after_each_start() {
        let dir = tempfile::tempdir().unwrap();
        // The first run crashes when told to (once it was seen healthy); the second
        // stays.
        let body = "touch up; n=$(cat runs 2>/dev/null || echo 0); echo $((n + 1)) > runs; \
                    if [ \"$n\" = 0 ]; then while [ ! -e crash ]; do sleep 0.02; done; exit 2; fi; \
                    while :; do sleep 0.05; done";
        let spec = script("svc", dir.path(), body, "test -e up");
        let mut supervisor = Supervisor::start(vec![spec], policy(), None);
        assert_eq!(
            next(&mut supervisor).await,
            Event::Healthy {
                name: "svc".into(),
                start: 0
            }
        );
        std::fs::write(dir.path().join("crash"), "").unwrap();
        assert!(matches!(
            next(&mut supervisor).await,
            Event::Exited { restarts: 1, .. }
        ));
        assert_eq!(
            next(&mut supervisor).await,
            Event::Healthy {
                name: "svc".into(),
                start: 1
            }
        );
        supervisor.stop(false).await;
    }

    #[tokio::test]
    async fn stopping_asks_politely_and_kills_what_does_not_listen() {
        let dir = tempfile::tempdir().unwrap();
        let polite = script(
            "polite",
            dir.path(),
            "trap 'touch asked; exit 0' TERM; echo $$ > polite.pid; while :; do sleep 0.05; done",
            "test -e polite.pid",
        );
        let deaf = script(
            "deaf",
            dir.path(),
            "trap '' TERM; echo $$ > deaf.pid; while :; do sleep 0.05; done",
            "test -e deaf.pid",
        );
        let policy = Policy {
            stop_grace: Duration::from_millis(500),
            ..policy()
        };
        let mut supervisor = Supervisor::start(vec![polite, deaf], policy, None);
        for _ in 0..2 {
            assert!(matches!(next(&mut supervisor).await, Event::Healthy { .. }));
        }
        supervisor.stop(false).await;
        assert!(
            dir.path().join("asked").exists(),
            "SIGTERM reached the polite one"
        );
        for name in ["polite", "deaf"] {
            let pid = std::fs::read_to_string(dir.path().join(format!("{name}.pid"))).unwrap();
            let alive = Path::new(&format!("/proc/{}", pid.trim())).exists();
            assert!(!alive, "{name} is gone");
        }
    }

    #[tokio::test]
    async fn a_program_that_cannot_start_is_reported() {
        let spec = Spec {
            name: "missing".into(),
            program: "/nonexistent/abtrack-service".into(),
            args: Vec::new(),
            health_args: Vec::new(),
            env: Vec::new(),
        };
        let mut supervisor = Supervisor::start(vec![spec], policy(), None);
        match next(&mut supervisor).await {
            Event::CannotStart { name, error } => {
                assert_eq!(name, "missing");
                assert!(
                    error.starts_with("/nonexistent/abtrack-service: "),
                    "{error}"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        supervisor.stop(false).await;
    }
}
