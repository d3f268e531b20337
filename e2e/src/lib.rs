//! Runs the four AbTrack Notify binaries as processes on free loopback ports, each in
//! a temporary working folder, for end-to-end suites. The binaries come from
//! `ABTRACK_BIN_DIR`, or from the `target` folder these tests were built into.
// Test code: a failed unwrap is a failed test, which is what it should be.
#![allow(clippy::unwrap_used)]
#![forbid(unsafe_code)]

pub mod bench;
pub mod chaos;
pub mod firestore_app;
pub mod media;
pub mod sheets;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub const SERVICES: [&str; 4] = ["wa-gateway", "sheets-logger", "dispatcher", "status-web"];

/// Where the service binaries are.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ABTRACK_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // target/<profile>/deps/<test binary>, or target/<profile>/<bench binary>
    let exe = std::env::current_exe().expect("the running binary has a path");
    let dir = exe.parent().expect("the running binary is in a folder");
    if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir).to_owned()
    } else {
        dir.to_owned()
    }
}

/// Resident memory of a process in KiB (Linux).
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// A KiB figure of a process's `/proc/<pid>/status` (Linux), by its label
/// (`VmRSS:`, `VmHWM:`).
pub fn status_kib(pid: u32, label: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(label))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// What a shell command prints, trimmed; empty when it cannot run.
pub fn shell(command: &str) -> String {
    Command::new("sh")
        .args(["-c", command])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// The machine a benchmark ran on, for `BENCHMARKS.md`.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    format!(
        "{cpu}, {cores} cores, {} GiB memory, {}",
        mem_kib / 1024 / 1024,
        std::env::consts::OS
    )
}

/// Replaces (or appends) the section between `<!-- name:start -->` and
/// `<!-- name:end -->` in `BENCHMARKS.md` at the workspace root.
pub fn write_benchmark_section(name: &str, body: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../BENCHMARKS.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        "# Benchmarks\n\nEach section is written by the command it names; rerun it to refresh the figures.\n".to_owned()
    });
    let (start, end) = (
        format!("<!-- {name}:start -->"),
        format!("<!-- {name}:end -->"),
    );
    let section = format!("{start}\n{}\n{end}", body.trim_end());
    let text = match (text.find(&start), text.find(&end)) {
        (Some(a), Some(b)) if a < b => format!("{}{section}{}", &text[..a], &text[b + end.len()..]),
        _ => format!("{}\n\n{section}\n", text.trim_end()),
    };
    std::fs::write(&path, text).expect("BENCHMARKS.md is writable");
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The four services, started and stopped by the test.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub ports: HashMap<&'static str, u16>,
    /// Ports of the dispatchers started with [`Cluster::spawn_dispatcher`].
    pub extra_ports: HashMap<String, u16>,
    env: Vec<(String, String)>,
    children: HashMap<String, Child>,
    pub http: reqwest::Client,
}

impl Cluster {
    /// Starts all four with zero pacing and waits until each serves. `extra` adds or
    /// overrides environment variables.
    pub async fn start(extra: &[(&str, &str)]) -> Self {
        let cluster = Self::launch(extra);
        cluster.wait_ready().await;
        cluster
    }

    /// Like [`Cluster::start`] for a gateway in WhatsApp mode that still has to be
    /// linked: waits until status-web sees the gateway waiting for a QR code scan.
    pub async fn start_unlinked(extra: &[(&str, &str)]) -> Self {
        let cluster = Self::launch(extra);
        cluster.wait_ready_until("waiting_for_qr").await;
        cluster
    }

    /// Spawns all four with zero pacing and returns at once, without waiting for them
    /// to serve.
    pub fn launch(extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ports: HashMap<&'static str, u16> =
            SERVICES.iter().map(|s| (*s, free_port())).collect();
        let addr = |s: &str| format!("127.0.0.1:{}", ports[s]);
        let url = |s: &str| format!("http://127.0.0.1:{}", ports[s]);
        let mut env: Vec<(String, String)> = vec![
            ("WA_ADDR".into(), addr("wa-gateway")),
            ("SHEETS_ADDR".into(), addr("sheets-logger")),
            ("DISPATCHER_ADDR".into(), addr("dispatcher")),
            ("STATUS_WEB_ADDR".into(), addr("status-web")),
            ("DISPATCHER_GATEWAY_URL".into(), url("wa-gateway")),
            ("DISPATCHER_LOGGER_URL".into(), url("sheets-logger")),
            ("STATUS_WEB_DISPATCHER_URL".into(), url("dispatcher")),
            ("STATUS_WEB_GATEWAY_URL".into(), url("wa-gateway")),
            ("STATUS_WEB_LOGGER_URL".into(), url("sheets-logger")),
            ("WA_MODE".into(), "dry-run".into()),
            ("WA_MIN_INTERVAL_MS".into(), "0".into()),
            ("WA_JITTER_MS".into(), "0".into()),
            ("RUST_LOG".into(), "info".into()),
        ];
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        let mut cluster = Self {
            dir,
            ports,
            extra_ports: HashMap::new(),
            env,
            children: HashMap::new(),
            http: reqwest::Client::new(),
        };
        for service in SERVICES {
            cluster.spawn(service);
        }
        cluster
    }

    /// Waits until each of the four serves and status-web has heard from the others,
    /// the gateway connected.
    pub async fn wait_ready(&self) {
        self.wait_ready_until("connected").await;
    }

    /// Waits until each of the four serves and status-web sees the gateway in
    /// `gateway_status`.
    pub async fn wait_ready_until(&self, gateway_status: &str) {
        let cluster = self;
        for service in SERVICES {
            cluster.wait_serving(service).await;
        }
        let backend = if cluster.env_value("QUEUE") == Some("firestore") {
            "firestore"
        } else {
            "local"
        };
        // status-web has heard from all three.
        cluster
            .wait_status(
                Duration::from_secs(30),
                "status-web to see every service",
                |s| {
                    s["queue"]["backend"] == backend
                        && s["gateway"]["status"] == gateway_status
                        && s["logger"]["state"] != "unknown"
                },
            )
            .await;
    }

    /// Starts all four with the Firestore queue on the emulator at `host` (the
    /// `FIRESTORE_EMULATOR_HOST` form), jobs in `collection`.
    pub async fn start_firestore(host: &str, collection: &str, extra: &[(&str, &str)]) -> Self {
        let mut env = vec![
            ("QUEUE", "firestore"),
            ("FIRESTORE_EMULATOR_HOST", host),
            ("FIRESTORE_COLLECTION", collection),
        ];
        env.extend_from_slice(extra);
        Self::start(&env).await
    }

    fn env_value(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets (or replaces) an environment variable for services spawned from now on.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Starts one service (again), its output appended to `<name>.log`.
    pub fn spawn(&mut self, name: &'static str) {
        self.spawn_as(name, name, &[]);
    }

    /// Starts one more dispatcher process named `label` (its lease owner id, data
    /// folder and log file), on a port of its own; returns that port.
    pub fn spawn_dispatcher(&mut self, label: &str) -> u16 {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let data = format!("data/{label}");
        self.spawn_as(
            "dispatcher",
            label,
            &[
                ("DISPATCHER_ADDR", addr.as_str()),
                ("DISPATCHER_DATA_DIR", data.as_str()),
                ("DISPATCHER_ID", label),
            ],
        );
        self.extra_ports.insert(label.to_owned(), port);
        port
    }

    /// Starts (again) the gateway of one more account, as the launcher does: named
    /// `name`, its data in `data/wa-gateway/<account>`, on the port
    /// `extra_ports[name]` (a free one the first time). Answers the port.
    pub fn spawn_gateway(&mut self, name: &str, account: &str) -> u16 {
        let port = *self
            .extra_ports
            .entry(name.to_owned())
            .or_insert_with(free_port);
        let addr = format!("127.0.0.1:{port}");
        let data = format!("data/wa-gateway/{account}");
        self.spawn_as(
            "wa-gateway",
            name,
            &[
                ("WA_ACCOUNT", account),
                ("WA_ADDR", addr.as_str()),
                ("WA_DATA_DIR", data.as_str()),
            ],
        );
        port
    }

    /// Gives `service` (the dispatcher or status-web) the accounts list `accounts`
    /// (`name=URL,...`) instead of its one gateway's URL: it is (re)started with it,
    /// and so is every later start.
    pub async fn give_accounts(&mut self, service: &'static str, accounts: &str) {
        let (single, list) = match service {
            "dispatcher" => ("DISPATCHER_GATEWAY_URL", "DISPATCHER_ACCOUNTS"),
            "status-web" => ("STATUS_WEB_GATEWAY_URL", "STATUS_WEB_ACCOUNTS"),
            other => panic!("{other} takes no accounts list"),
        };
        self.stop(service);
        self.set_env(single, "");
        self.set_env(list, accounts);
        self.spawn(service);
        self.wait_serving(service).await;
    }

    /// Starts `binary` under the name `name` (its log file and handle), with
    /// `overrides` on top of the cluster's environment.
    pub fn spawn_as(&mut self, binary: &str, name: &str, overrides: &[(&str, &str)]) {
        let binary = bin_dir().join(binary);
        assert!(
            binary.exists(),
            "{} is missing: build the binaries first (cargo build --workspace --bins), or use ./test.sh",
            binary.display()
        );
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .unwrap();
        let child = Command::new(binary)
            .current_dir(self.dir.path())
            .env_clear()
            .envs(std::env::var("PATH").map(|p| ("PATH".to_owned(), p)))
            .envs(self.env.iter().cloned())
            .envs(overrides.iter().map(|(k, v)| (*k, *v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.insert(name.to_owned(), child);
    }

    /// The process id of a running service.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.children.get(name).map(Child::id)
    }

    /// Whether the service started by this cluster is still running (not exited).
    pub fn running(&mut self, name: &str) -> bool {
        self.children
            .get_mut(name)
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Kills one service with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill(&mut self, name: &str) {
        if let Some(mut child) = self.children.remove(name) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops one service with SIGTERM, as an operator's Ctrl-C would, and waits until
    /// it has exited (at most 20 s, then SIGKILL).
    pub fn stop(&mut self, name: &str) {
        let Some(mut child) = self.children.remove(name) else {
            return;
        };
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The port of a service by name, or of a dispatcher from
    /// [`Cluster::spawn_dispatcher`].
    fn port(&self, name: &str) -> u16 {
        self.ports
            .get(name)
            .or_else(|| self.extra_ports.get(name))
            .copied()
            .unwrap_or_else(|| panic!("no service named {name}"))
    }

    /// Waits (at most 30 s) until the service answers its health check.
    pub async fn wait_serving(&self, name: &str) {
        let port = self.port(name);
        for _ in 0..300 {
            let ok = if name == "status-web" {
                self.http
                    .get(format!("http://127.0.0.1:{port}/healthz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            } else {
                abtrack_proto::health::check_with_token(
                    &format!("http://127.0.0.1:{port}"),
                    Duration::from_secs(1),
                    self.internal_token().as_ref(),
                )
                .await
                .unwrap_or(false)
            };
            if ok {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{name} did not start serving:\n{}", self.log(name));
    }

    /// The internal token the services are started with (`ABTRACK_INTERNAL_TOKEN` in
    /// the cluster's environment), if any.
    pub fn internal_token(&self) -> Option<abtrack_proto::token::InternalToken> {
        self.env_value(abtrack_proto::token::ENV_VAR)
            .map(|raw| abtrack_proto::token::InternalToken::parse(raw).expect("a valid token"))
    }

    /// A lazy gRPC channel to a gRPC service by name (`dispatcher`, `wa-gateway`,
    /// `sheets-logger`, or a dispatcher from [`Cluster::spawn_dispatcher`]), sending
    /// nothing but what the caller adds.
    pub fn grpc_channel(&self, name: &str) -> tonic::transport::Channel {
        let port = self.port(name);
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect_lazy()
    }

    /// [`Cluster::grpc_channel`] carrying the cluster's internal token, as the services'
    /// own clients do.
    pub fn grpc(&self, name: &str) -> abtrack_proto::token::TokenChannel {
        abtrack_proto::token::with_token(self.grpc_channel(name), self.internal_token().as_ref())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports["status-web"])
    }

    /// `GET path`, which must succeed.
    async fn get_ok(&self, path: &str) -> reqwest::Response {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response
    }

    pub async fn get(&self, path: &str) -> Value {
        self.get_ok(path).await.json().await.unwrap()
    }

    /// `GET path`, whatever it answers: the status code and the JSON body.
    pub async fn get_any(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A page that is not JSON (`/metrics`).
    pub async fn text(&self, path: &str) -> String {
        self.get_ok(path).await.text().await.unwrap()
    }

    /// Posts raw bytes as JSON; returns the status code and the JSON body.
    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Polls `GET /api/status` until `check` holds (at most `limit`).
    pub async fn wait_status(
        &self,
        limit: Duration,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let status = self.get("/api/status").await;
            if check(&status) {
                return status;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}; last status: {status:#}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until each job of `ids` is `sent`, at most `limit` for all of them.
    pub async fn wait_sent(&self, ids: &[impl AsRef<str>], limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        for id in ids.iter().map(AsRef::as_ref) {
            loop {
                let job = self.get(&format!("/api/jobs/{id}")).await;
                if job["status"] == "sent" {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{id} not sent within {limit:?}: {job}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// How many times the gateway's dry-run file holds each job, by job id.
    pub fn sends(&self) -> HashMap<String, usize> {
        let mut sends = HashMap::new();
        for line in self.dry_run_lines() {
            if let Some(id) = line["job_id"].as_str() {
                *sends.entry(id.to_owned()).or_default() += 1;
            }
        }
        sends
    }

    /// When the gateway wrote each job to the dry-run file, by job id (milliseconds
    /// since the epoch).
    pub fn dry_run_sent_at(&self) -> HashMap<String, i64> {
        self.dry_run_lines()
            .iter()
            .filter_map(|l| {
                Some((
                    l["job_id"].as_str()?.to_owned(),
                    abtrack_proto::time::parse_rfc3339(l["at"].as_str()?)?,
                ))
            })
            .collect()
    }

    /// Every line of the dry-run file.
    pub fn dry_run_lines(&self) -> Vec<Value> {
        self.dry_run_lines_in("data/wa-gateway")
    }

    /// Every line of the dry-run file of the gateway whose data folder is
    /// `data_dir` (relative to the cluster's folder).
    pub fn dry_run_lines_in(&self, data_dir: &str) -> Vec<Value> {
        let path = self.dir.path().join(data_dir).join("dry-run.jsonl");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("a complete JSON line"))
            .collect()
    }

    /// Records in the logger's outbox.
    pub fn outbox_records(&self) -> u64 {
        self.count(
            "data/sheets-logger/outbox.sqlite3",
            "SELECT COUNT(*) FROM outbox",
        )
    }

    /// Finished jobs in the local queue whose outcome the logger has not acknowledged
    /// yet: 0 once every outcome is in the logger's outbox and nothing more is on
    /// its way there.
    pub fn unlogged_outcomes(&self) -> u64 {
        self.count(
            "data/dispatcher/queue.sqlite3",
            "SELECT COUNT(*) FROM jobs WHERE logged_at IS NULL
             AND status IN ('sent', 'delivered', 'read', 'failed')",
        )
    }

    /// The answer of a `COUNT` query on one of the services' SQLite files, opened
    /// read-only.
    fn count(&self, file: &str, sql: &str) -> u64 {
        let conn = rusqlite::Connection::open_with_flags(
            self.dir.path().join(file),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as u64
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let names: Vec<String> = self.children.keys().cloned().collect();
        for name in names {
            self.kill(&name);
        }
        if std::thread::panicking() {
            let extra: Vec<String> = self.extra_ports.keys().cloned().collect();
            for name in SERVICES.iter().map(|s| s.to_string()).chain(extra) {
                let name = name.as_str();
                let log = self.log(name);
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("---- {name} log (last lines) ----");
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}
