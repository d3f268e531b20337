//! The dashboard in headless Chromium and the live feed with the official
//! socket.io-client, both driven by Node scripts in `tests/js` (installed with
//! `npm ci` by `./test.sh`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use abtrack_proto::gateway::v1 as gpb;

use crate::harness::{API_KEY, PAIR_CODE, PASSWORD, System, state};

pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// What the launcher writes after restarting two services.
const LAUNCHER_RECORD: &str = include_str!("../fixtures/restarts.json");

fn js_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        dir.join("node_modules/socket.io-client").is_dir()
            && dir.join("node_modules/playwright-core").is_dir(),
        "the Node packages are missing: run `npm ci` in {} (./test.sh does)",
        dir.display()
    );
    dir
}

fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../artifacts")
}

pub fn node(script: &str, system: &System) -> Command {
    let mut command = Command::new("node");
    command
        .arg(script)
        .current_dir(js_dir())
        .env("BASE", &system.base)
        .env("PASSWORD", PASSWORD)
        .env("ARTIFACTS", artifacts())
        .kill_on_drop(true);
    command
}

pub async fn finish(mut child: Child) {
    let status = tokio::time::timeout(STEP_TIMEOUT, child.wait())
        .await
        .expect("the Node script did not exit")
        .unwrap();
    assert!(status.success(), "the Node script failed: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_socket_io_client_is_refused_without_a_session_then_fed() {
    let system = System::start().await;
    system.emit_qr("2@socket-io-check", Duration::from_secs(60));
    let output = tokio::time::timeout(
        STEP_TIMEOUT,
        node("socketio.mjs", &system)
            .stderr(Stdio::inherit())
            .output(),
    )
    .await
    .expect("socketio.mjs did not finish")
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(output.status.success(), "socketio.mjs failed:\n{stdout}");
    for expected in [
        "REFUSED polling without cookie",
        "REFUSED websocket without cookie",
        "REFUSED forged cookie",
        "SNAPSHOT polling+websocket gateway=waiting_for_qr qr=true",
        "SNAPSHOT websocket gateway=waiting_for_qr qr=true",
        "UPDATE polling+websocket job=",
        "UPDATE websocket job=",
        "LOGGED OUT disconnect: io server disconnect",
        "REFUSED after logout",
        "OK",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}

/// A browser script the test talks to: its stdin and its stdout's lines.
pub struct Conversation {
    pub child: Child,
    pub stdin: ChildStdin,
    pub lines: Lines<BufReader<ChildStdout>>,
}

/// Starts `script` (a [`node`] command) in Chromium, talking over stdin and stdout.
pub fn converse(mut script: Command) -> Conversation {
    let mut child = script
        .env("CHROMIUM", chromium())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cannot run node");
    let stdin = child.stdin.take().unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    Conversation {
        child,
        stdin,
        lines,
    }
}

/// The browser: `CHROMIUM`, or Debian's.
pub fn chromium() -> String {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: apt-get install -y chromium (./test.sh does)"
    );
    chromium
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_chromium_links_sends_and_retries() {
    let system = System::start().await;
    let Conversation {
        child,
        mut stdin,
        mut lines,
    } = converse(node("dashboard.mjs", &system));
    let http = reqwest::Client::new();
    let job = |id: String| {
        let http = http.clone();
        let url = system.url(&format!("/api/jobs/{id}"));
        async move {
            http.get(url)
                .bearer_auth(API_KEY)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let status = || async {
        http.get(system.url("/api/status"))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    // The folders the dispatcher's and the logger's damaged files were moved to.
    let mut kept = Vec::new();
    let mut steps = Vec::new();
    loop {
        let line = tokio::time::timeout(STEP_TIMEOUT, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no step from the browser after {steps:?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the browser script ended after {steps:?}"));
        println!("{line}");
        let Some(step) = line.strip_prefix("STEP ") else {
            continue;
        };
        let (name, arg) = step.split_once(' ').unwrap_or((step, ""));
        steps.push(name.to_owned());
        match name {
            "logged-in" => {
                system.emit_qr("2@dashboard-check,abc,def", Duration::from_secs(20));
                stdin.write_all(b"go\n").await.unwrap();
            }
            "pending" => {
                // The gateway is not linked yet, so the job waits.
                assert_eq!(job(arg.into()).await["status"], "pending");
                system.emit(state(gpb::ConnectionStatus::Connected));
                stdin.write_all(b"go\n").await.unwrap();
            }
            "sent" => assert_eq!(job(arg.into()).await["status"], "sent"),
            "failed" => {
                let failed = job(arg.into()).await;
                assert_eq!(failed["status"], "failed");
                assert_eq!(failed["lastError"]["code"], "invalid_argument");
            }
            "retried" => {
                let retried = job(arg.into()).await;
                assert_eq!(retried["status"], "sent");
                assert_eq!(retried["attempts"], 1);
            }
            "qr-seen" => {
                system.emit_qr("2@dashboard-check,rotated", Duration::from_secs(20));
                stdin.write_all(b"go\n").await.unwrap();
            }
            "paused" | "resumed" => {
                let paused = name == "paused";
                let status = system
                    .wait_for_status(name, |s| s["queue"]["paused"] == paused)
                    .await;
                assert_eq!(status["queue"]["paused"], paused);
                stdin.write_all(b"go\n").await.unwrap();
            }
            "attached" => {
                let photo = job(arg.into()).await;
                assert_eq!(photo["status"], "sent", "{photo}");
                assert_eq!(photo["media"]["kind"], "image", "{photo}");
                assert_eq!(photo["media"]["source"], "inline", "{photo}");
                assert_eq!(photo["media"]["fileName"], "kegiatan.png", "{photo}");
                assert_eq!(photo["media"]["mimeType"], "image/png", "{photo}");
                assert_eq!(photo["media"]["size"], 70, "{photo}");
            }
            "pair-code" => assert_eq!(arg, PAIR_CODE),
            "reset" => {
                assert_eq!(*system.logouts.lock().unwrap(), 1);
                let mut locked = state(gpb::ConnectionStatus::Connected);
                if let Some(gpb::gateway_event::Event::State(s)) = &mut locked.event {
                    let until = abtrack_proto::time::now_ms() + 2 * 3600 * 1000;
                    s.time_lock_until = Some(abtrack_proto::time::to_timestamp(until));
                    s.new_chat_quota = Some(gpb::NewChatQuota {
                        used: 250,
                        total: 250,
                        cycle_ends_at: Some(abtrack_proto::time::to_timestamp(until)),
                    });
                }
                system.emit(locked);
                stdin.write_all(b"go\n").await.unwrap();
            }
            "time-lock" => assert!(
                arg.starts_with("WhatsApp limits new chats from this number until ")
                    && arg.contains("parents who never wrote"),
                "{arg}"
            ),
            "new-chats" => assert!(
                arg.starts_with("The new-chat quota is used up (250 of 250) until ")
                    && arg.contains("other contacts keep going"),
                "{arg}"
            ),
            "launcher" => {
                system.write_launcher_file(LAUNCHER_RECORD.as_bytes());
                stdin.write_all(b"go\n").await.unwrap();
            }
            "restarts" => assert!(
                arg.starts_with("wa-gateway restarted 2× · last: killed by signal 9 · ")
                    && arg.contains("2026"),
                "{arg}"
            ),
            "restarts-id" => assert!(
                arg.starts_with("wa-gateway dimulai ulang 2× · terakhir: killed by signal 9 · ")
                    && arg.contains("2026"),
                "{arg}"
            ),
            "notices" => {
                kept.push(system.write_notice(
                    "dispatcher",
                    "20261201T010203.004Z",
                    "queue.sqlite3",
                    3,
                ));
                kept.push(system.write_notice(
                    "logger",
                    "20261201T010204.000Z",
                    "outbox.sqlite3",
                    1,
                ));
                stdin.write_all(b"go\n").await.unwrap();
            }
            "notice" => {
                let expected = format!(
                    "dispatcher: a data file could not be read at start. It was moved aside to {} (nothing was deleted) and a fresh one started; 3 records were carried over. ",
                    kept[0].join("queue.sqlite3").display()
                );
                assert!(
                    arg.starts_with(&expected) && arg.len() > expected.len(),
                    "{arg}"
                );
            }
            "notice-one" => assert!(
                arg.starts_with("sheets-logger: a data file could not be read at start.")
                    && arg.contains("; 1 record was carried over. "),
                "{arg}"
            ),
            "notice-dismissed" => {
                let notices = status().await["notices"].clone();
                assert_eq!(notices.as_array().unwrap().len(), 1, "{notices}");
                assert_eq!(notices[0]["service"], "sheets-logger", "{notices}");
                assert!(kept[0].join("dismissed").is_file());
                assert!(
                    kept[0].join("queue.sqlite3").is_file(),
                    "nothing is deleted"
                );
                stdin.write_all(b"go\n").await.unwrap();
            }
            "notice-id" => {
                let expected = format!(
                    "sheets-logger: Berkas data tidak dapat dibaca saat mulai. Berkas dipindahkan ke {} (tidak ada yang dihapus) dan berkas baru dimulai; 1 catatan dibawa. ",
                    kept[1].join("outbox.sqlite3").display()
                );
                assert!(arg.starts_with(&expected), "{arg}");
            }
            "notices-gone" => {
                assert_eq!(status().await["notices"], serde_json::json!([]));
                assert!(
                    kept[1].join("outbox.sqlite3").is_file(),
                    "nothing is deleted"
                );
                stdin.write_all(b"go\n").await.unwrap();
            }
            "done" => break,
            other => assert_eq!(other, "qr-rotated", "unexpected step"),
        }
    }
    assert_eq!(
        steps,
        [
            "logged-in",
            "qr-seen",
            "qr-rotated",
            "paused",
            "resumed",
            "pending",
            "sent",
            "failed",
            "retried",
            "attached",
            "pair-code",
            "reset",
            "time-lock",
            "new-chats",
            "launcher",
            "restarts",
            "notices",
            "notice",
            "notice-one",
            "notice-dismissed",
            "restarts-id",
            "notice-id",
            "notices-gone",
            "done"
        ]
    );
    drop(stdin);
    finish(child).await;
    for shot in ["dashboard.png", "dashboard-qr.png", "dashboard-phone.png"] {
        let path = artifacts().join(shot);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{} missing or empty", path.display());
    }
}
