//! The yardstick: headless Chromium on `about:blank`, the least the whatsapp-web.js
//! server this project replaces needed before it even loaded WhatsApp Web.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::procfs::{process_tree, tree_rss_kib};

pub const CHROMIUM: &str = "/usr/bin/chromium";

pub const FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// What the Chromium measurement found.
#[derive(Debug, Clone, PartialEq)]
pub enum Chromium {
    /// `/usr/bin/chromium` is not there.
    NotInstalled,
    /// Not asked for.
    Skipped,
    Measured {
        version: String,
        processes: usize,
        rss_kib: u64,
        settle: Duration,
    },
}

/// Starts Chromium, waits `settle`, sums the resident memory of its process tree, and
/// stops every process of that tree.
pub async fn measure(settle: Duration) -> Chromium {
    if !Path::new(CHROMIUM).exists() {
        return Chromium::NotInstalled;
    }
    let version = Command::new(CHROMIUM)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(CHROMIUM)
        .args(FLAGS)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let pid = child.id();
    tokio::time::sleep(settle).await;
    let (processes, rss_kib) = tree_rss_kib(pid);
    // Chromium ends its helpers itself on SIGTERM; whatever is left is killed by id.
    let tree = process_tree(pid);
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !matches!(child.try_wait(), Ok(Some(_))) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    for rest in tree.iter().skip(1) {
        // Only a process that is still one of Chromium's, not a reused id.
        let comm = std::fs::read_to_string(format!("/proc/{rest}/comm")).unwrap_or_default();
        if comm.starts_with("chrom") {
            let _ = Command::new("kill")
                .args(["-KILL", &rest.to_string()])
                .status();
        }
    }
    Chromium::Measured {
        version,
        processes,
        rss_kib,
        settle,
    }
}
