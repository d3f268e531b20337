//! The packaging as a user meets it: docker-compose.yml and the Dockerfile read and
//! checked against the services' own `--help`, and start.sh run from a fresh folder
//! (dry-run, local queue, free ports) the way a user runs it.
#![cfg(target_os = "linux")]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use abtrack_e2e::{SERVICES, bin_dir};
use serde_json::{Value as Json, json};
use serde_yaml::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e sits in the workspace")
        .to_owned()
}

fn read(name: &str) -> String {
    std::fs::read_to_string(root().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn compose() -> Value {
    let mut value: Value = serde_yaml::from_str(&read("docker-compose.yml")).unwrap();
    value.apply_merge().unwrap();
    value
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("expected a list, found {value:?}"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

fn environment(service: &Value) -> BTreeMap<String, String> {
    service["environment"]
        .as_mapping()
        .expect("environment is a map")
        .iter()
        .map(|(k, v)| {
            let value = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => panic!("{k:?}: unexpected value {other:?}"),
            };
            (k.as_str().unwrap().to_owned(), value)
        })
        .collect()
}

/// The variables a binary's `--help` lists.
fn help_vars(binary: &str) -> BTreeSet<String> {
    let output = Command::new(bin_dir().join(binary))
        .arg("--help")
        .env_clear()
        .output()
        .unwrap_or_else(|e| panic!("{binary} --help: {e} (build the binaries first)"));
    assert!(output.status.success(), "{binary} --help failed");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("    ") && !l.starts_with("     "))
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

fn port_of(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap()
}

#[test]
fn compose_runs_the_four_services_from_one_image_with_one_published_port() {
    let compose = compose();
    let services = &compose["services"];
    let names: BTreeSet<&str> = services
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    let mut expected: BTreeSet<&str> = SERVICES.into_iter().collect();
    expected.insert("firestore-emulator");
    assert_eq!(names, expected);

    let image = services["status-web"]["image"].as_str().unwrap();
    let top_volumes: BTreeSet<String> = compose["volumes"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    let mut used_volumes = BTreeSet::new();
    for service in SERVICES {
        let s = &services[service];
        assert_eq!(s["image"].as_str(), Some(image), "{service}: one image");
        assert_eq!(s["build"].as_str(), Some("."), "{service}");
        assert_eq!(strings(&s["command"]), [service], "{service}: its binary");
        assert_eq!(s["restart"].as_str(), Some("unless-stopped"), "{service}");
        assert_eq!(
            strings(&s["healthcheck"]["test"]),
            ["CMD", service, "healthcheck"],
            "{service}: the binary checks itself, no tool in the image"
        );
        assert_eq!(s["working_dir"].as_str(), Some("/config"), "{service}");
        let volumes = strings(&s["volumes"]);
        assert!(
            volumes.iter().any(|v| v == ".:/config:ro"),
            "{service}: the working folder (credentials) mounted read-only: {volumes:?}"
        );
        // Named volumes: the state of the service, in its data folder.
        let named: Vec<(&str, &str)> = volumes
            .iter()
            .filter_map(|v| v.split_once(':'))
            .filter(|(source, _)| !source.starts_with('.') && !source.starts_with('/'))
            .collect();
        let env = environment(s);
        let data_var = match service {
            "wa-gateway" => Some("WA_DATA_DIR"),
            "sheets-logger" => Some("SHEETS_DATA_DIR"),
            "dispatcher" => Some("DISPATCHER_DATA_DIR"),
            _ => None,
        };
        match data_var {
            Some(var) => {
                let dir = format!("/data/{service}");
                assert_eq!(env.get(var), Some(&dir), "{service}: {var}");
                assert_eq!(named.len(), 1, "{service}: one named volume: {named:?}");
                assert_eq!(named[0].1, dir, "{service}: the volume holds {var}");
                assert!(top_volumes.contains(named[0].0), "{service}: declared");
                used_volumes.insert(named[0].0.to_owned());
            }
            None => assert!(named.is_empty(), "status-web keeps no data"),
        }
        assert!(
            env["ABTRACK_INTERNAL_TOKEN"].starts_with("${ABTRACK_INTERNAL_TOKEN:?"),
            "{service}: the internal token is required"
        );
    }
    assert_eq!(used_volumes, top_volumes, "every named volume is used");
    // The gateway session, the logger outbox and the local queue each have a volume.
    assert_eq!(
        used_volumes,
        BTreeSet::from(["outbox", "queue", "wa-session"].map(String::from))
    );

    // Exactly one published port: status-web's, on loopback unless told otherwise.
    let mut published = Vec::new();
    for (name, s) in services.as_mapping().unwrap() {
        if let Some(ports) = s.get("ports") {
            for p in strings(ports) {
                published.push((name.as_str().unwrap().to_owned(), p));
            }
        }
        assert!(s.get("network_mode").is_none(), "{name:?}: no host network");
    }
    assert_eq!(
        published,
        [(
            "status-web".to_owned(),
            "${STATUS_WEB_PUBLISH:-127.0.0.1:8080}:8080".to_owned()
        )]
    );
    let web = environment(&services["status-web"]);
    assert_eq!(port_of(&web["STATUS_WEB_ADDR"]), "8080");
    assert!(
        web["STATUS_WEB_PASSWORD"].starts_with("${STATUS_WEB_PASSWORD:?"),
        "the dashboard password is required: {}",
        web["STATUS_WEB_PASSWORD"]
    );

    // Each client's URL names the service and the port that service listens on.
    for (client, url_var, server, addr_var) in [
        (
            "dispatcher",
            "DISPATCHER_GATEWAY_URL",
            "wa-gateway",
            "WA_ADDR",
        ),
        (
            "dispatcher",
            "DISPATCHER_LOGGER_URL",
            "sheets-logger",
            "SHEETS_ADDR",
        ),
        (
            "status-web",
            "STATUS_WEB_DISPATCHER_URL",
            "dispatcher",
            "DISPATCHER_ADDR",
        ),
        (
            "status-web",
            "STATUS_WEB_GATEWAY_URL",
            "wa-gateway",
            "WA_ADDR",
        ),
        (
            "status-web",
            "STATUS_WEB_LOGGER_URL",
            "sheets-logger",
            "SHEETS_ADDR",
        ),
    ] {
        let addr = environment(&services[server])[addr_var].clone();
        assert!(addr.starts_with("0.0.0.0:"), "{server} reachable by others");
        assert_eq!(
            environment(&services[client])[url_var],
            format!("http://{server}:{}", port_of(&addr)),
            "{client}: {url_var}"
        );
    }

    // Start order: the services need none, but the first start waits for health; a
    // restarted gateway must not drag the queue down with it.
    let depends = |service: &str| -> BTreeMap<String, (String, bool)> {
        services[service]["depends_on"]
            .as_mapping()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().unwrap().to_owned(),
                            (
                                v["condition"].as_str().unwrap_or("").to_owned(),
                                v["restart"].as_bool().unwrap_or(false),
                            ),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let healthy = |names: &[&str]| -> BTreeMap<String, (String, bool)> {
        names
            .iter()
            .map(|n| ((*n).to_owned(), ("service_healthy".to_owned(), false)))
            .collect()
    };
    assert_eq!(
        depends("status-web"),
        healthy(&["dispatcher", "sheets-logger", "wa-gateway"])
    );
    assert_eq!(
        depends("dispatcher"),
        healthy(&["sheets-logger", "wa-gateway"])
    );
    assert!(depends("wa-gateway").is_empty() && depends("sheets-logger").is_empty());

    // Google's Firestore emulator, only with its profile, on the port .env.example names.
    let emulator = &services["firestore-emulator"];
    assert_eq!(strings(&emulator["profiles"]), ["firestore-emulator"]);
    assert!(
        emulator["image"]
            .as_str()
            .unwrap()
            .starts_with("gcr.io/google.com/cloudsdktool/"),
        "Google's emulator image"
    );
    assert!(strings(&emulator["command"]).contains(&"--host-port=0.0.0.0:8081".to_owned()));
    assert!(read(".env.example").contains("FIRESTORE_EMULATOR_HOST=firestore-emulator:8081"));
    assert!(environment(&services["dispatcher"]).contains_key("FIRESTORE_EMULATOR_HOST"));
}

#[test]
fn every_variable_the_compose_file_sets_is_read_by_a_service() {
    let compose = compose();
    let help: BTreeMap<&str, BTreeSet<String>> =
        SERVICES.iter().map(|s| (*s, help_vars(s))).collect();
    assert!(
        help["dispatcher"].contains("DISPATCHER_ADDR"),
        "--help is parsed"
    );
    let shared: BTreeSet<String> = environment(&compose["x-service"]).into_keys().collect();
    for service in SERVICES {
        for var in environment(&compose["services"][service]).into_keys() {
            if shared.contains(&var) {
                assert!(
                    help.values().any(|vars| vars.contains(&var)),
                    "the shared {var} is read by no service"
                );
            } else {
                assert!(
                    help[service].contains(&var),
                    "{service} sets {var}, which `{service} --help` does not list"
                );
            }
        }
    }
    // Every variable the compose file reads from .env is documented.
    let doc = read("docs/configuration.md");
    let text = read("docker-compose.yml");
    let interpolated: BTreeSet<&str> = text
        .split("${")
        .skip(1)
        .map(|rest| {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect();
    assert!(
        interpolated.contains("STATUS_WEB_PUBLISH"),
        "{interpolated:?}"
    );
    for var in interpolated.iter().chain(&["COMPOSE_PROFILES"]) {
        assert!(doc.contains(*var), "docs/configuration.md explains {var}");
    }
}

/// Dockerfile instructions with continuation lines joined.
fn dockerfile() -> Vec<(String, String)> {
    let text = read("Dockerfile").replace("\\\n", " ");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (op, rest) = l.split_once(' ').unwrap_or((l, ""));
            (op.to_ascii_uppercase(), rest.trim().to_owned())
        })
        .collect()
}

#[test]
fn dockerfile_builds_the_four_binaries_into_a_slim_non_root_image() {
    let lines = dockerfile();
    let of = |op: &str| -> Vec<&str> {
        lines
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, r)| r.as_str())
            .collect()
    };
    let rust_version = read("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap();
    assert_eq!(
        of("FROM"),
        [
            format!("rust:{rust_version}-slim-bookworm AS builder").as_str(),
            "debian:bookworm-slim AS runtime"
        ],
        "two stages: the workspace's toolchain, then a slim runtime"
    );
    let runs = of("RUN");
    let build = runs
        .iter()
        .find(|r| r.contains("cargo build"))
        .expect("the builder builds");
    assert!(
        build.contains("--release") && build.contains("--locked"),
        "{build}"
    );
    let copies = of("COPY");
    let from_builder: Vec<&&str> = copies
        .iter()
        .filter(|c| c.starts_with("--from=builder"))
        .collect();
    assert_eq!(from_builder.len(), 1);
    for service in SERVICES {
        assert!(
            build.contains(&format!("-p abtrack-{service}")),
            "{service}"
        );
        assert!(
            build.contains(&format!("target/release/{service}")),
            "{service}"
        );
        assert!(
            from_builder[0].contains(&format!("/out/{service}")),
            "{service} is copied into the runtime image"
        );
    }
    let user = *of("USER").last().expect("a USER");
    assert_eq!(user, "10001:10001", "the abtrack user, not root");
    let setup = runs
        .iter()
        .find(|r| r.contains("useradd"))
        .expect("the user is created");
    assert!(
        setup.contains("--uid 10001") && setup.contains("abtrack"),
        "{setup}"
    );
    for service in ["dispatcher", "wa-gateway", "sheets-logger"] {
        assert!(setup.contains(&format!("/data/{service}")), "{service}");
    }
    assert!(setup.contains("chown -R abtrack:abtrack /data"), "{setup}");
    assert_eq!(of("WORKDIR").last(), Some(&"/config"));

    let ignore: BTreeSet<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    for kept_out in [
        ".git",
        "target",
        "data",
        ".env",
        "credentials.json",
        "sheets-credentials.json",
        "config.json",
    ] {
        assert!(
            ignore.contains(kept_out),
            ".dockerignore leaves out {kept_out}"
        );
    }

    // start.bat reaches Windows with CRLF line endings.
    assert!(
        read(".gitattributes")
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["start.bat", "text", "eol=crlf"])
    );
    let bat = std::fs::read(root().join("start.bat")).unwrap();
    let lone_lf = bat
        .iter()
        .enumerate()
        .filter(|(i, b)| **b == b'\n' && (*i == 0 || bat[i - 1] != b'\r'))
        .count();
    assert_eq!(lone_lf, 0, "start.bat has CRLF line endings");
}

// ---- start.sh -------------------------------------------------------------------------

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !folder.log().contains(&dashboard) {
        if let Some(status) = script.try_wait().unwrap() {
            panic!("start.sh ended ({status}):\n{}", folder.log());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no dashboard announced:\n{}",
            folder.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    let response = http
        .post(format!("{base}/api/messages"))
        .json(&json!({"to": "0812-3456-7890", "message": "Ananda hadir pukul 07:02", "id": "start-sh-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let job: Json = http
            .get(format!("{base}/api/jobs/start-sh-1"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if job["status"] == "sent" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job not sent: {job}\n{}",
            folder.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
        let path = folder.path().join(service);
        std::fs::remove_dir(&path).unwrap();
        std::os::unix::fs::symlink(bin_dir().join(service), &path).unwrap();
    }
    let mut script = folder.spawn(&["--dry-run"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !folder.log().contains("all four services are healthy") {
        if let Some(status) = script.try_wait().unwrap() {
            panic!("start.sh ended ({status}):\n{}", folder.log());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not started:\n{}",
            folder.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
