//! start.sh and the launcher it runs, as a user meets them: run from a fresh folder
//! (dry-run, local queue, free ports), services killed and started again, and
//! everything stopped together.
#![cfg(target_os = "linux")]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use abtrack_e2e::{SERVICES, bin_dir, free_port};
use serde_json::{Value as Json, json};

use super::package::root;

/// The launcher's binary, which start.sh runs.
const LAUNCHER: &str = "abtrack-notify";

/// A folder holding a copy of start.sh, as a release archive or a checkout holds it.
struct Folder {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Folder {
    fn new(ports: &BTreeMap<&str, u16>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(root().join("start.sh"), dir.path().join("start.sh")).unwrap();
        let addr = |s: &str| format!("127.0.0.1:{}", ports[s]);
        let env = vec![
            ("ABTRACK_BIN_DIR".into(), bin_dir().display().to_string()),
            ("ABTRACK_NO_BROWSER".into(), "1".into()),
            ("WA_ADDR".into(), addr("wa-gateway")),
            ("SHEETS_ADDR".into(), addr("sheets-logger")),
            ("DISPATCHER_ADDR".into(), addr("dispatcher")),
            ("STATUS_WEB_ADDR".into(), addr("status-web")),
            ("QUEUE".into(), "local".into()),
            ("WA_MIN_INTERVAL_MS".into(), "0".into()),
            ("WA_JITTER_MS".into(), "0".into()),
        ];
        Self { dir, env }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.path().join("start.log")
    }

    /// Runs `./start.sh args` in the folder, its output in `start.log`. Only PATH and
    /// the folder's variables reach it, so the caller's own settings cannot leak in.
    fn spawn(&self, args: &[&str]) -> Child {
        let log = File::create(self.log_path()).unwrap();
        Command::new(self.path().join("start.sh"))
            .args(args)
            .current_dir(self.path())
            .env_clear()
            .envs(std::env::var("PATH").map(|p| ("PATH".to_owned(), p)))
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Runs start.sh to its end (at most 60 s).
    async fn run(&self, args: &[&str]) -> ExitStatus {
        let mut child = self.spawn(args);
        exit_of(&mut child, Duration::from_secs(60), &self.log()).await
    }
}

async fn exit_of(child: &mut Child, limit: Duration, context: &str) -> ExitStatus {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if tokio::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("start.sh did not end within {limit:?}:\n{context}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The parent pid and state of a process, from /proc.
fn stat(pid: u32) -> Option<(u32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 2..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// Sends a signal with bash's own `kill` (bash is there wherever start.sh runs).
fn signal(name: &str, pid: u32) -> ExitStatus {
    Command::new("bash")
        .args(["-c", &format!("kill -{name} {pid}")])
        .status()
        .unwrap()
}

fn running(pid: u32) -> bool {
    stat(pid).is_some_and(|(_, state)| state != 'Z')
}

/// Every process below `root`, with its command name.
fn descendants(root: u32) -> BTreeMap<u32, String> {
    let mut parent = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some((ppid, _)) = stat(pid) {
            parent.insert(pid, ppid);
        }
    }
    let mut found = BTreeMap::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (&pid, &ppid) in &parent {
            if ppid == p && !found.contains_key(&pid) {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                found.insert(pid, comm.trim().to_owned());
                frontier.push(pid);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_sh_runs_the_four_sends_a_job_and_leaves_no_process_behind() {
    let ports: BTreeMap<&str, u16> = SERVICES.iter().map(|s| (*s, free_port())).collect();
    let folder = Folder::new(&ports);
    let mut script = folder.spawn(&["--dry-run"]);
    let script_pid = script.id();

    // The announcement comes only once all four answer their health checks.
    let announced = "AbTrack Notify is running: all four services are healthy.";
    let dashboard = format!("Dashboard: http://127.0.0.1:{}/", ports["status-web"]);
    wait_for(&folder, &mut script, &dashboard, 1, Duration::from_secs(60)).await;
    assert!(folder.log().contains(announced), "{}", folder.log());
    for service in ["wa-gateway", "sheets-logger", "dispatcher"] {
        let url = format!("http://127.0.0.1:{}", ports[service]);
        assert_eq!(
            abtrack_proto::health::check(&url, Duration::from_secs(3)).await,
            Ok(true),
            "{service} is healthy"
        );
    }
    let base = format!("http://127.0.0.1:{}", ports["status-web"]);
    let http = reqwest::Client::new();
    let healthz = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(healthz.status().as_u16(), 200);

    // The four services are the script's own children.
    let processes = descendants(script_pid);
    let services: BTreeSet<&str> = processes
        .values()
        .map(String::as_str)
        .filter(|c| SERVICES.contains(c))
        .collect();
    assert_eq!(
        services,
        SERVICES.into_iter().collect::<BTreeSet<_>>(),
        "{processes:?}"
    );

    // A job through the REST API, sent in dry-run.
    send_one(&http, &base, "start-sh-1", &folder).await;
    let dry_run =
        std::fs::read_to_string(folder.path().join("data/wa-gateway/dry-run.jsonl")).unwrap();
    let lines: Vec<Json> = dry_run
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{dry_run}");
    assert_eq!(lines[0]["job_id"], "start-sh-1");
    assert_eq!(lines[0]["to"], "6281234567890@s.whatsapp.net");

    // A second start on the same ports is refused, naming the port, and leaves the
    // first one alone.
    let second = Folder::new(&ports);
    let status = second.run(&["--dry-run"]).await;
    assert_eq!(status.code(), Some(1), "{}", second.log());
    let wa_port = ports["wa-gateway"];
    assert!(
        second
            .log()
            .contains(&format!("port {wa_port} is already in use")),
        "{}",
        second.log()
    );
    assert!(second.log().contains("WA_ADDR"), "{}", second.log());
    assert!(!second.path().join("data").exists(), "nothing was started");
    // The four services, not the script's own short-lived helpers (its `sleep`s).
    let stopped: Vec<_> = processes
        .iter()
        .filter(|(pid, name)| SERVICES.contains(&name.as_str()) && !running(**pid))
        .collect();
    assert!(
        stopped.is_empty(),
        "the first instance is untouched; stopped: {stopped:?}\n{}",
        folder.log()
    );

    // Ctrl-C: the script stops all four, and nothing it started is left.
    let interrupted = signal("INT", script_pid);
    assert!(interrupted.success());
    let status = exit_of(&mut script, Duration::from_secs(30), &folder.log()).await;
    assert_eq!(status.code(), Some(130), "{}", folder.log());
    let left: Vec<(&u32, &String)> = processes.iter().filter(|(pid, _)| running(**pid)).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let log = folder.log();
    assert!(log.contains("all four services are stopped"), "{log}");
    for service in SERVICES {
        assert!(
            log.contains(&format!("[{service}]")) && log.contains(&format!("{service} stopped")),
            "{service} shut down cleanly:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_sh_names_a_port_another_program_holds() {
    let ports: BTreeMap<&str, u16> = SERVICES.iter().map(|s| (*s, free_port())).collect();
    let holder = std::net::TcpListener::bind(("127.0.0.1", ports["status-web"])).unwrap();
    let folder = Folder::new(&ports);
    let status = folder.run(&["--dry-run"]).await;
    drop(holder);
    let log = folder.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "port {} is already in use by another program",
            ports["status-web"]
        )),
        "{log}"
    );
    assert!(log.contains("STATUS_WEB_ADDR"), "{log}");
    assert!(!log.contains("listening"), "no service was started: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_sh_refuses_malformed_credential_files_with_exit_64() {
    let ports: BTreeMap<&str, u16> = SERVICES.iter().map(|s| (*s, free_port())).collect();
    let mut folder = Folder::new(&ports);
    // The default queue choice, so credentials.json is read as a user's would be.
    folder.env.retain(|(k, _)| k != "QUEUE");
    let truncated = "{\"type\": \"service_account\", \"project_id\": \"school\",";
    for (file, expected) in [
        ("credentials.json", "credentials.json is not valid JSON"),
        (
            "sheets-credentials.json",
            "sheets-credentials.json is not a Google service account key",
        ),
        (
            "config.json",
            "config.json=\"config.json\" is invalid: not valid JSON",
        ),
    ] {
        let path = folder.path().join(file);
        std::fs::write(&path, truncated).unwrap();
        let status = folder.run(&[]).await;
        let log = folder.log();
        assert_eq!(status.code(), Some(64), "{file}: {log}");
        assert!(log.contains(expected), "{file}: {log}");
        assert!(
            log.contains("cannot start with this configuration"),
            "{file}: {log}"
        );
        assert!(!log.contains("listening"), "{file}: nothing started: {log}");
        std::fs::remove_file(path).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_sh_uses_the_binaries_next_to_it_not_crate_folders() {
    let ports: BTreeMap<&str, u16> = SERVICES.iter().map(|s| (*s, free_port())).collect();
    let mut folder = Folder::new(&ports);
    folder.env.retain(|(k, _)| k != "ABTRACK_BIN_DIR");

    // Folders named like the binaries, as in a source checkout, and no sources.
    for service in SERVICES {
        std::fs::create_dir(folder.path().join(service)).unwrap();
    }
    let status = folder.run(&["--dry-run"]).await;
    let log = folder.log();
    assert_eq!(status.code(), Some(69), "{log}");
    assert!(log.contains("are not next to start.sh"), "{log}");

    // The layout of a release archive: the four binaries next to the script.
    for service in SERVICES {
        std::fs::remove_dir(folder.path().join(service)).unwrap();
    }
    for binary in SERVICES.into_iter().chain([LAUNCHER]) {
        let path = folder.path().join(binary);
        std::os::unix::fs::symlink(bin_dir().join(binary), &path).unwrap();
    }
    let mut script = folder.spawn(&["--dry-run"]);
    let healthy = "all four services are healthy";
    wait_for(&folder, &mut script, healthy, 1, Duration::from_secs(60)).await;
    assert!(!folder.log().contains("building"), "nothing was built");
    let processes = descendants(script.id());
    let names: BTreeSet<&str> = processes.values().map(String::as_str).collect();
    assert!(
        SERVICES.iter().all(|s| names.contains(s)),
        "the four run: {processes:?}"
    );
    let terminated = signal("TERM", script.id());
    assert!(terminated.success());
    let status = exit_of(&mut script, Duration::from_secs(30), &folder.log()).await;
    assert_eq!(status.code(), Some(143), "{}", folder.log());
    assert!(processes.keys().all(|pid| !running(*pid)), "{processes:?}");
    assert!(folder.log().contains("all four services are stopped"));
}

// ---- the launcher keeps the services running -------------------------------------------

/// Waits until `needle` is in the log `times` times (at most `limit`); panics when the
/// script ends first.
async fn wait_for(
    folder: &Folder,
    script: &mut Child,
    needle: &str,
    times: usize,
    limit: Duration,
) {
    let deadline = tokio::time::Instant::now() + limit;
    while folder.log().matches(needle).count() < times {
        if let Some(status) = script.try_wait().unwrap() {
            panic!(
                "start.sh ended ({status}) before {needle:?}:\n{}",
                folder.log()
            );
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{needle:?} not seen {times} times within {limit:?}:\n{}",
            folder.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// start.sh with `args` in a new folder, once all four services are healthy.
async fn started(args: &[&str]) -> (Folder, Child, BTreeMap<&'static str, u16>) {
    let ports: BTreeMap<&str, u16> = SERVICES.iter().map(|s| (*s, free_port())).collect();
    let folder = Folder::new(&ports);
    let mut script = folder.spawn(args);
    wait_for(
        &folder,
        &mut script,
        "all four services are healthy",
        1,
        Duration::from_secs(60),
    )
    .await;
    (folder, script, ports)
}

/// The pid of each service the script runs.
fn service_pids(script: u32) -> BTreeMap<String, u32> {
    descendants(script)
        .into_iter()
        .filter(|(pid, name)| SERVICES.contains(&name.as_str()) && running(*pid))
        .map(|(pid, name)| (name, pid))
        .collect()
}

/// Stops the script with Ctrl-C and checks that nothing it started is left.
async fn interrupt(folder: &Folder, mut script: Child) {
    let processes = descendants(script.id());
    assert!(signal("INT", script.id()).success());
    let status = exit_of(&mut script, Duration::from_secs(30), &folder.log()).await;
    assert_eq!(status.code(), Some(130), "{}", folder.log());
    let left: Vec<_> = processes.iter().filter(|(pid, _)| running(**pid)).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

async fn post_job(http: &reqwest::Client, base: &str, id: &str, to: &str) {
    let response = http
        .post(format!("{base}/api/messages"))
        .json(&json!({"to": to, "message": "Ananda hadir", "id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201, "{id}");
}

/// Posts one job and waits until it is `sent`.
async fn send_one(http: &reqwest::Client, base: &str, id: &str, folder: &Folder) {
    post_job(http, base, id, "0812-3456-7890").await;
    let ids = [id.to_owned()];
    wait_sent(http, base, &ids, Duration::from_secs(30), || folder.log()).await;
}

async fn get_json(http: &reqwest::Client, url: &str) -> Json {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

/// Waits until every job of `ids` is `sent` (at most `limit`).
async fn wait_sent(
    http: &reqwest::Client,
    base: &str,
    ids: &[String],
    limit: Duration,
    log: impl Fn() -> String,
) {
    let deadline = tokio::time::Instant::now() + limit;
    for id in ids {
        loop {
            let job = get_json(http, &format!("{base}/api/jobs/{id}")).await;
            if job["status"] == "sent" {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job not sent: {job}\n{}",
                log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// How many times each job id is in the dry-run log (a line torn by a kill is not a send).
fn dry_run_sends(folder: &Folder) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(folder.path().join("data/wa-gateway/dry-run.jsonl"))
        .unwrap_or_default();
    let mut sends = BTreeMap::new();
    for line in text.lines() {
        if let Ok(line) = serde_json::from_str::<Json>(line) {
            *sends
                .entry(line["job_id"].as_str().unwrap_or_default().to_owned())
                .or_insert(0) += 1;
        }
    }
    sends
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_sh_runs_one_gateway_per_account_and_each_sends_its_own_jobs() {
    let ports: BTreeMap<&str, u16> = SERVICES.iter().map(|s| (*s, free_port())).collect();
    let mut folder = Folder::new(&ports);
    folder
        .env
        .push(("ABTRACK_ACCOUNTS".into(), "sd-harapan,smp-2".into()));
    let mut script = folder.spawn(&["--dry-run"]);
    wait_for(
        &folder,
        &mut script,
        "all five services are healthy",
        1,
        Duration::from_secs(60),
    )
    .await;
    let base = format!("http://127.0.0.1:{}", ports["status-web"]);
    let http = reqwest::Client::new();
    for (id, account) in [("for-sd", None), ("for-smp", Some("smp-2"))] {
        let mut body = json!({"to": "0812-3456-7890", "message": "Ananda hadir", "id": id});
        if let Some(account) = account {
            body["account"] = json!(account);
        }
        let response = http
            .post(format!("{base}/api/messages"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201, "{id}");
    }
    let ids = ["for-sd".to_owned(), "for-smp".to_owned()];
    wait_sent(&http, &base, &ids, Duration::from_secs(30), || folder.log()).await;
    // The first account keeps the single account's folder; the other has its own.
    assert_eq!(
        dry_run_sends(&folder),
        BTreeMap::from([("for-sd".into(), 1)])
    );
    let smp =
        std::fs::read_to_string(folder.path().join("data/wa-gateway/smp-2/dry-run.jsonl")).unwrap();
    assert_eq!(smp.lines().count(), 1);
    assert!(smp.contains("\"job_id\":\"for-smp\""), "{smp}");
    let log = folder.log();
    assert!(log.contains("[wa-gateway-smp-2] "), "{log}");
    interrupt(&folder, script).await;
    assert!(folder.log().contains("all five services are stopped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_service_is_started_again_and_the_others_are_left_alone() {
    let (folder, mut script, ports) = started(&["--dry-run"]).await;
    let base = format!("http://127.0.0.1:{}", ports["status-web"]);
    let http = reqwest::Client::new();

    for service in SERVICES {
        let before = service_pids(script.id());
        assert_eq!(before.len(), 4, "{before:?}");
        let killed = tokio::time::Instant::now();
        assert!(signal("KILL", before[service]).success());
        let back = format!("abtrack-notify: {service} is back and healthy");
        wait_for(&folder, &mut script, &back, 1, Duration::from_secs(30)).await;
        eprintln!(
            "{service}: killed, back and healthy after {:?}",
            killed.elapsed()
        );
        let after = service_pids(script.id());
        assert_ne!(
            after[service], before[service],
            "{service} is a new process"
        );
        for other in SERVICES.iter().filter(|s| **s != service) {
            assert_eq!(
                after[*other], before[*other],
                "{other} was left alone when {service} was killed"
            );
        }
        assert!(
            folder.log().contains(&format!(
                "abtrack-notify: {service} exited: killed by signal 9 (SIGKILL); starting it again in 1.0 s (restart 1)"
            )),
            "{}",
            folder.log()
        );
    }

    // The dashboard shows each service's restart.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = get_json(&http, &format!("{base}/api/status")).await;
        let services = status["launcher"]["services"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let restarted = services
            .iter()
            .filter(|s| s["restarts"] == 1 && s["lastExit"] == "killed by signal 9 (SIGKILL)")
            .count();
        if restarted == 4 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "restarts not shown: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Jobs still flow through the four new processes.
    send_one(&http, &base, "after-kills", &folder).await;
    interrupt(&folder, script).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_posted_while_the_gateway_is_killed_five_times_are_each_sent_once() {
    let (folder, mut script, ports) = started(&["--dry-run"]).await;
    let base = format!("http://127.0.0.1:{}", ports["status-web"]);
    let http = reqwest::Client::new();
    let ids: Vec<String> = (0..100).map(|i| format!("kill-{i:03}")).collect();
    let mut kills = 0;
    for (i, id) in ids.iter().enumerate() {
        if i % 20 == 10 {
            // Killed only once it is back from the kill before, so each kill hits a
            // gateway that was sending.
            if kills > 0 {
                let back = "abtrack-notify: wa-gateway is back and healthy";
                wait_for(&folder, &mut script, back, kills, Duration::from_secs(60)).await;
            }
            let gateway = service_pids(script.id())["wa-gateway"];
            assert!(signal("KILL", gateway).success());
            kills += 1;
        }
        post_job(&http, &base, id, &format!("0812-3456-{:04}", 7000 + i)).await;
    }
    assert_eq!(kills, 5);
    wait_sent(&http, &base, &ids, Duration::from_secs(120), || {
        folder.log()
    })
    .await;

    let sends = dry_run_sends(&folder);
    for id in &ids {
        assert_eq!(sends.get(id), Some(&1), "{id} sent once: {sends:?}");
    }
    assert_eq!(sends.len(), 100, "nothing else was sent: {sends:?}");
    let restarts = folder
        .log()
        .matches("abtrack-notify: wa-gateway exited")
        .count();
    assert_eq!(restarts, 5, "{}", folder.log());
    interrupt(&folder, script).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_exits_with_64_stops_everything_without_a_restart_loop() {
    let (folder, mut script, _) = started(&["--dry-run"]).await;
    let processes = descendants(script.id());
    // The operator breaks the logger's credential file while it runs; it is read
    // again when the logger starts again.
    let truncated = "{\"type\": \"service_account\", \"project_id\": \"school\",";
    std::fs::write(folder.path().join("sheets-credentials.json"), truncated).unwrap();
    let logger = service_pids(script.id())["sheets-logger"];
    assert!(signal("KILL", logger).success());

    let status = exit_of(&mut script, Duration::from_secs(60), &folder.log()).await;
    let log = folder.log();
    assert_eq!(status.code(), Some(64), "{log}");
    assert!(
        log.contains("sheets-credentials.json is not a Google service account key"),
        "{log}"
    );
    assert!(
        log.contains(
            "abtrack-notify: sheets-logger stopped with exit code 64: its configuration is wrong"
        ),
        "{log}"
    );
    assert_eq!(
        log.matches("abtrack-notify: sheets-logger exited").count(),
        1,
        "one restart, no loop: {log}"
    );
    assert!(
        log.contains("abtrack-notify: all four services are stopped"),
        "{log}"
    );
    let left: Vec<_> = processes.iter().filter(|(pid, _)| running(**pid)).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
