//! The Windows build, run the way a Windows user runs it: `start.bat --dry-run` in a
//! fresh folder holding the five `.exe` files, on Windows itself or, on Linux, under
//! wine. It checks that all four services become healthy, a job posted to the API ends
//! `sent`, a killed service is started again and the next job is sent, and stopping
//! leaves no process behind, and prints each check. Exits 1 at the first check that
//! fails, showing the window's output.
//!
//! The stop is the one each platform can show:
//! - on Windows, the launcher is killed by force (`TerminateProcess`, as Task
//!   Manager's "End task" does): its job object must end the four services with it;
//! - under wine, Ctrl-C (wine turns SIGINT into the console's Ctrl-C): the launcher
//!   stops the four and exits. Wine 8 does not end a job object's processes when its
//!   owner is killed, so the forced stop is shown on Windows only.
//!
//! Usage: `windows-smoke <folder of the Windows .exe files>`. On Linux it needs wine
//! (Debian's `wine64`) and mingw-w64's gcc, which builds `e2e/wine/process_prng.c`:
//! wine 8 lacks `bcryptprimitives.dll!ProcessPrng`, which Rust's standard library calls.
// Test code: a failed unwrap is a failed test, which is what it should be.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use abtrack_e2e::free_port;
use serde_json::{Value, json};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, Signal, System, UpdateKind};

const BINARIES: [&str; 5] = [
    "abtrack-notify",
    "wa-gateway",
    "sheets-logger",
    "dispatcher",
    "status-web",
];

const LAUNCHER: &str = BINARIES[0];

fn fail(message: impl std::fmt::Display, log: &Path) -> ! {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    eprintln!("windows-smoke: FAILED: {message}\n--- start.bat's window ---\n{text}");
    std::process::exit(1);
}

fn checked(what: &str, since: Instant) {
    println!(
        "windows-smoke: ok: {what} ({:.1} s)",
        since.elapsed().as_secs_f64()
    );
}

/// Where the `.exe` files run: on Windows itself, or under wine.
struct Host {
    /// wine's program on Linux; none on Windows.
    wine: Option<PathBuf>,
    /// The variables of every process of the run.
    env: Vec<(&'static str, String)>,
}

impl Host {
    fn new(env: Vec<(&'static str, String)>) -> Self {
        if cfg!(windows) {
            return Self { wine: None, env };
        }
        let wine = ["/usr/bin/wine64", "/usr/lib/wine/wine64", "/usr/bin/wine"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| {
                eprintln!("windows-smoke: wine is not installed (Debian: apt-get install wine64)");
                std::process::exit(1);
            });
        Self {
            wine: Some(wine),
            env,
        }
    }

    /// `program` as this host runs a Windows program, with the run's variables. Under
    /// wine only PATH and HOME are kept from this process's own environment; Windows
    /// needs its own variables (`SystemRoot` among them), so there all are kept.
    fn command(&self, program: &str) -> Command {
        let mut command = match &self.wine {
            Some(wine) => {
                let mut command = Command::new(wine);
                command.arg(program).env_clear();
                for kept in ["PATH", "HOME"] {
                    if let Ok(value) = std::env::var(kept) {
                        command.env(kept, value);
                    }
                }
                command
            }
            None => Command::new(program),
        };
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// A path of this machine as the Windows programs see it.
    fn windows_path(&self, path: &Path) -> String {
        match self.wine {
            Some(_) => format!("Z:{}", path.display()).replace('/', "\\"),
            None => path.display().to_string(),
        }
    }
}

/// The processes of the run's folder, found by the folder's unique name in their
/// program path or command line: what is running, and ending one.
struct Processes {
    system: System,
    folder_name: String,
}

impl Processes {
    fn new(folder: &Path) -> Self {
        let folder_name = folder.file_name().unwrap().to_string_lossy().to_lowercase();
        Self {
            system: System::new(),
            folder_name,
        }
    }

    /// The folder's running processes, each with its binary: one look at the
    /// process table.
    fn running(&mut self) -> Vec<(&'static str, Pid)> {
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing()
                .with_exe(UpdateKind::Always)
                .with_cmd(UpdateKind::Always),
        );
        let mut running = Vec::new();
        for (pid, process) in self.system.processes() {
            // Linux lists each thread too; the process is enough.
            if process.thread_kind().is_some() {
                continue;
            }
            // Under wine the program is wine's own and the command line names the
            // `.exe`; on Windows the program is the `.exe`.
            let mut text = process
                .exe()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            for arg in process.cmd() {
                text.push(' ');
                text.push_str(&arg.to_string_lossy());
            }
            let text = text.to_lowercase();
            if !text.contains(&self.folder_name) {
                continue;
            }
            if let Some(binary) = BINARIES
                .into_iter()
                .find(|b| text.contains(&format!("{b}.exe")))
            {
                running.push((binary, *pid));
            }
        }
        running
    }

    /// Sends `signal` to every process of `binary`; on Windows, [`Signal::Kill`] is
    /// `TerminateProcess`. Answers how many got it.
    fn signal(&mut self, binary: &str, signal: Signal) -> usize {
        let pids: Vec<Pid> = self
            .running()
            .into_iter()
            .filter(|(b, _)| *b == binary)
            .map(|(_, pid)| pid)
            .collect();
        pids.iter()
            .filter_map(|pid| self.system.process(*pid))
            .filter(|process| process.kill_with(signal) == Some(true))
            .count()
    }

    /// The binaries with a process running.
    fn present(&mut self) -> Vec<&'static str> {
        let running = self.running();
        BINARIES
            .into_iter()
            .filter(|b| running.iter().any(|(r, _)| r == b))
            .collect()
    }
}

fn wait_log(log: &Path, needle: &str, limit: Duration, child: &mut Child) {
    let deadline = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
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

/// Waits at most 20 s for no process of the folder to be left.
fn wait_none_left(processes: &mut Processes, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = processes.present();
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            fail(format!("left running after the stop: {left:?}"), log);
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

/// Under wine: builds the `ProcessPrng` stand-in next to the `.exe` files and makes
/// the fresh wine prefix.
fn prepare_wine(host: &Host, root: &Path, folder: &Path, log: &Path) {
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
            log,
        );
    }
    println!("windows-smoke: the ProcessPrng shim is built from e2e/wine/process_prng.c");
    let started = Instant::now();
    let boot = host
        .command("wineboot")
        .arg("-i")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !boot.is_ok_and(|s| s.success()) {
        fail("wineboot could not make a wine prefix", log);
    }
    checked("a fresh wine prefix", started);
}

/// Under wine: ends the prefix's wineserver, and with it whatever is left.
fn end_wine(host: &Host) {
    let wineserver = ["/usr/bin/wineserver", "/usr/lib/wine/wineserver64"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    if let Some(wineserver) = wineserver {
        let _ = Command::new(wineserver)
            .arg("-k")
            .envs(host.env.iter().map(|(k, v)| (k, v)))
            .status();
    }
}

#[tokio::main]
async fn main() {
    let Some(exe_dir) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: windows-smoke <folder of the Windows .exe files>");
        std::process::exit(64);
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let work = tempfile::tempdir().unwrap();
    // A name of its own, by which the run's processes are found.
    let folder = tempfile::Builder::new()
        .prefix("AbTrack-")
        .tempdir_in(work.path())
        .unwrap()
        .keep();
    let log = work.path().join("window.log");
    for binary in BINARIES {
        let name = format!("{binary}.exe");
        if let Err(e) = std::fs::copy(exe_dir.join(&name), folder.join(&name)) {
            fail(format!("{}: {e}", exe_dir.join(&name).display()), &log);
        }
    }
    std::fs::copy(root.join("start.bat"), folder.join("start.bat")).unwrap();

    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
    let mut env = vec![
        ("ABTRACK_NO_BROWSER", "1".to_owned()),
        ("QUEUE", "local".into()),
        ("WA_MIN_INTERVAL_MS", "0".into()),
        ("WA_JITTER_MS", "0".into()),
        ("WA_ADDR", addr(0)),
        ("SHEETS_ADDR", addr(1)),
        ("DISPATCHER_ADDR", addr(2)),
        ("STATUS_WEB_ADDR", addr(3)),
    ];
    if !cfg!(windows) {
        env.extend([
            (
                "WINEPREFIX",
                work.path().join("wineprefix").display().to_string(),
            ),
            ("WINEDEBUG", "-all".into()),
            // The shim next to the .exe files, before anything wine has built in.
            ("WINEDLLOVERRIDES", "bcryptprimitives=n".into()),
        ]);
    }
    let host = Host::new(env);
    if host.wine.is_some() {
        prepare_wine(&host, root, &folder, &log);
    }

    let bat = host.windows_path(&folder.join("start.bat"));
    let window = std::fs::File::create(&log).unwrap();
    let started = Instant::now();
    let mut child = host
        .command("cmd")
        .args(["/c", &bat, "--dry-run"])
        .current_dir(&folder)
        .stdin(Stdio::null())
        .stdout(window.try_clone().unwrap())
        .stderr(window)
        .spawn()
        .unwrap();
    let healthy = "AbTrack Notify is running: all four services are healthy.";
    wait_log(&log, healthy, Duration::from_secs(180), &mut child);
    let mut processes = Processes::new(&folder);
    let present = processes.present();
    if present.len() < BINARIES.len() {
        fail(format!("only these are running: {present:?}"), &log);
    }
    checked(
        "start.bat --dry-run: all four services are healthy",
        started,
    );

    let http = reqwest::Client::new();
    let base = format!("http://{}", addr(3));
    let started = Instant::now();
    send_job(&http, &base, "windows-1", &log).await;
    checked("a job posted to the API ends sent", started);

    let started = Instant::now();
    if processes.signal("wa-gateway", Signal::Kill) == 0 {
        fail("wa-gateway.exe could not be killed", &log);
    }
    let back = "abtrack-notify: wa-gateway is back and healthy";
    wait_log(&log, back, Duration::from_secs(60), &mut child);
    send_job(&http, &base, "windows-2", &log).await;
    checked(
        "a killed wa-gateway is started again, and the next job is sent",
        started,
    );

    let started = Instant::now();
    if host.wine.is_some() {
        // wine turns SIGINT into the console's Ctrl-C for the launcher.
        processes.signal(LAUNCHER, Signal::Interrupt);
        let stopped = "abtrack-notify: all four services are stopped";
        wait_log(&log, stopped, Duration::from_secs(60), &mut child);
        wait_none_left(&mut processes, &log);
        checked(
            "Ctrl-C stops all four and leaves no process behind",
            started,
        );
    } else {
        if processes.signal(LAUNCHER, Signal::Kill) == 0 {
            fail("abtrack-notify.exe could not be killed", &log);
        }
        wait_none_left(&mut processes, &log);
        checked(
            "the launcher killed by force (End task) takes all four with it: no process is left",
            started,
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    if host.wine.is_some() {
        end_wine(&host);
    }

    let lines =
        std::fs::read_to_string(folder.join("data/wa-gateway/dry-run.jsonl")).unwrap_or_default();
    let sent: Vec<String> = lines
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|l| l["job_id"].as_str().map(str::to_owned))
        .collect();
    if sent != ["windows-1", "windows-2"] {
        fail(format!("the dry-run log holds {sent:?}"), &log);
    }
    println!("windows-smoke: ok: each job is in the dry-run log once");
}
