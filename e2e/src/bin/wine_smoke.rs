//! The Windows build, run the way a Windows user runs it, under wine:
//! `start.bat --dry-run` in a fresh folder holding the five `.exe` files. It checks
//! that all four services become healthy, a job posted to the API ends `sent`, a
//! killed service is started again, and stopping leaves no process behind, and
//! prints each check. Exits 1 at the first check that fails.
//!
//! Usage: `wine-smoke <folder of the Windows .exe files>` (built with
//! `cargo build --target x86_64-pc-windows-gnu`). Needs wine (Debian's `wine64`) and
//! mingw-w64's gcc, which builds `e2e/wine/process_prng.c`: wine 8 lacks
//! `bcryptprimitives.dll!ProcessPrng`, which Rust's standard library calls.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use abtrack_e2e::free_port;
use serde_json::{Value, json};

const BINARIES: [&str; 5] = [
    "abtrack-notify",
    "wa-gateway",
    "sheets-logger",
    "dispatcher",
    "status-web",
];

fn fail(message: impl std::fmt::Display, log: &Path) -> ! {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    eprintln!("wine-smoke: FAILED: {message}\n--- start.bat's window ---\n{text}");
    std::process::exit(1);
}

fn checked(what: &str, since: Instant) {
    println!(
        "wine-smoke: ok: {what} ({:.1} s)",
        since.elapsed().as_secs_f64()
    );
}

fn wine() -> PathBuf {
    ["/usr/bin/wine64", "/usr/lib/wine/wine64", "/usr/bin/wine"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            eprintln!("wine-smoke: wine is not installed (Debian: apt-get install wine64)");
            std::process::exit(1);
        })
}

/// The pids of the processes whose command line names `exe` inside `folder`.
fn pids_of(folder: &Path, exe: &str) -> Vec<u32> {
    let folder = folder.display().to_string().replace('/', "\\");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&folder) && cmdline.contains(&format!("{exe}.exe")) {
            pids.push(pid);
        }
    }
    pids
}

fn signal(name: &str, pid: u32) {
    let _ = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status();
}

fn wait_log(log: &Path, needle: &str, times: usize, limit: Duration, child: &mut Child) {
    let deadline = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches(needle).count() >= times {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            fail(format!("start.bat ended ({status}) before {needle:?}"), log);
        }
        if Instant::now() > deadline {
            fail(format!("{needle:?} not seen within {limit:?}"), log);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn send_job(http: &reqwest::Client, base: &str, id: &str, log: &Path) {
    let body = json!({"to": "0812-3456-7890", "message": "Tes AbTrack Notify", "id": id});
    let response = http
        .post(format!("{base}/api/messages"))
        .json(&body)
        .send()
        .await;
    match response {
        Ok(r) if r.status().as_u16() == 201 => {}
        other => fail(format!("POST /api/messages for {id}: {other:?}"), log),
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job: Value = match http.get(format!("{base}/api/jobs/{id}")).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        if job["status"] == "sent" {
            return;
        }
        if Instant::now() > deadline {
            fail(format!("{id} not sent within 60 s: {job}"), log);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main]
async fn main() {
    let Some(exe_dir) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: wine-smoke <folder of the Windows .exe files>");
        std::process::exit(64);
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let work = tempfile::tempdir().unwrap();
    let folder = work.path().join("AbTrack");
    std::fs::create_dir(&folder).unwrap();
    let log = work.path().join("window.log");
    for binary in BINARIES {
        let name = format!("{binary}.exe");
        if let Err(e) = std::fs::copy(exe_dir.join(&name), folder.join(&name)) {
            fail(format!("{}: {e}", exe_dir.join(&name).display()), &log);
        }
    }
    std::fs::copy(root.join("start.bat"), folder.join("start.bat")).unwrap();
    let shim = Command::new("x86_64-w64-mingw32-gcc")
        .args(["-O2", "-shared", "-o"])
        .arg(folder.join("bcryptprimitives.dll"))
        .arg(root.join("e2e/wine/process_prng.c"))
        .arg(root.join("e2e/wine/process_prng.def"))
        .arg("-ladvapi32")
        .status();
    if !shim.is_ok_and(|s| s.success()) {
        fail(
            "cannot build the ProcessPrng shim with x86_64-w64-mingw32-gcc",
            &log,
        );
    }
    println!("wine-smoke: the ProcessPrng shim is built from e2e/wine/process_prng.c");

    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
    let prefix = work.path().join("wineprefix");
    let env = [
        ("WINEPREFIX", prefix.display().to_string()),
        ("WINEDEBUG", "-all".into()),
        // The shim next to the .exe files, before anything wine has built in.
        ("WINEDLLOVERRIDES", "bcryptprimitives=n".into()),
        ("ABTRACK_NO_BROWSER", "1".into()),
        ("QUEUE", "local".into()),
        ("WA_MIN_INTERVAL_MS", "0".into()),
        ("WA_JITTER_MS", "0".into()),
        ("WA_ADDR", addr(0)),
        ("SHEETS_ADDR", addr(1)),
        ("DISPATCHER_ADDR", addr(2)),
        ("STATUS_WEB_ADDR", addr(3)),
    ];
    let started = Instant::now();
    let boot = Command::new(wine())
        .args(["wineboot", "-i"])
        .envs(env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !boot.is_ok_and(|s| s.success()) {
        fail("wineboot could not make a wine prefix", &log);
    }
    checked("a fresh wine prefix", started);

    let bat = format!("Z:{}", folder.join("start.bat").display()).replace('/', "\\");
    let window = std::fs::File::create(&log).unwrap();
    let started = Instant::now();
    let mut child = Command::new(wine())
        .args(["cmd", "/c", &bat, "--dry-run"])
        .current_dir(&folder)
        .env_clear()
        .envs(std::env::var("PATH").map(|p| ("PATH".to_owned(), p)))
        .envs(std::env::var("HOME").map(|p| ("HOME".to_owned(), p)))
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(window.try_clone().unwrap())
        .stderr(window)
        .spawn()
        .unwrap();
    let healthy = "AbTrack Notify is running: all four services are healthy.";
    wait_log(&log, healthy, 1, Duration::from_secs(180), &mut child);
    checked(
        "start.bat --dry-run: all four services are healthy",
        started,
    );
    for binary in BINARIES {
        if pids_of(&folder, binary).is_empty() {
            fail(format!("{binary}.exe is not running"), &log);
        }
    }

    let http = reqwest::Client::new();
    let base = format!("http://{}", addr(3));
    let started = Instant::now();
    send_job(&http, &base, "wine-1", &log).await;
    checked("a job posted to the API ends sent", started);

    let started = Instant::now();
    for pid in pids_of(&folder, "wa-gateway") {
        signal("KILL", pid);
    }
    let back = "abtrack-notify: wa-gateway is back and healthy";
    wait_log(&log, back, 1, Duration::from_secs(60), &mut child);
    send_job(&http, &base, "wine-2", &log).await;
    checked(
        "a killed wa-gateway is started again, and the next job is sent",
        started,
    );

    // wine turns SIGINT into the console's Ctrl-C for the launcher.
    let started = Instant::now();
    for pid in pids_of(&folder, "abtrack-notify") {
        signal("INT", pid);
    }
    let stopped = "abtrack-notify: all four services are stopped";
    wait_log(&log, stopped, 1, Duration::from_secs(60), &mut child);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left: Vec<&str> = BINARIES
            .into_iter()
            .filter(|b| !pids_of(&folder, b).is_empty())
            .collect();
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            fail(format!("left running after the stop: {left:?}"), &log);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    checked(
        "Ctrl-C stops all four and leaves no process behind",
        started,
    );
    let _ = child.kill();
    let wineserver = ["/usr/bin/wineserver", "/usr/lib/wine/wineserver64"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    if let Some(wineserver) = wineserver {
        let _ = Command::new(wineserver)
            .arg("-k")
            .envs(env.iter().cloned())
            .status();
    }
    let lines =
        std::fs::read_to_string(folder.join("data/wa-gateway/dry-run.jsonl")).unwrap_or_default();
    let sent: Vec<String> = lines
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|l| l["job_id"].as_str().map(str::to_owned))
        .collect();
    if sent != ["wine-1", "wine-2"] {
        fail(format!("the dry-run log holds {sent:?}"), &log);
    }
    println!("wine-smoke: ok: each job is in the dry-run log once");
}
