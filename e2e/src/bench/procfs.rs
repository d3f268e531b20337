//! Reads what the benchmarks measure from Linux's `/proc`: resident memory, CPU time
//! and process trees.

use std::collections::HashMap;

pub use crate::rss_kib;

/// The fields of `/proc/<pid>/stat` after the command name, which may itself hold
/// spaces and parentheses.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// CPU time the process has used so far, user plus system (`utime + stime`, all its
/// threads, the ended ones included), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let fields = stat_fields(pid)?;
    // After the name: state (field 3 of proc(5)) is index 0, utime (14) index 11,
    // stime (15) index 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100, Linux's value, if that fails).
pub fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

fn parent_of(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// `pid` and every process below it, found through the parent ids in `/proc`.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            if let Some(parent) = parent_of(child) {
                children.entry(parent).or_default().push(child);
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        if let Some(below) = children.get(&tree[i]) {
            tree.extend(below);
        }
        i += 1;
    }
    tree
}

/// Resident memory summed over `pid`'s process tree, in KiB, and how many processes
/// it counted.
pub fn tree_rss_kib(pid: u32) -> (usize, u64) {
    let rss: Vec<u64> = process_tree(pid).into_iter().filter_map(rss_kib).collect();
    (rss.len(), rss.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn reads_a_process_tree_with_its_memory_and_cpu_time() {
        // A shell with two children of its own.
        let mut shell = Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid = shell.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let tree = loop {
            let tree = process_tree(pid);
            if tree.len() == 3 || std::time::Instant::now() > deadline {
                break tree;
            }
            std::thread::yield_now();
        };
        let (count, kib) = tree_rss_kib(pid);
        for child in &tree {
            let _ = Command::new("kill").arg(child.to_string()).status();
        }
        let _ = shell.wait();
        assert_eq!(tree.len(), 3, "the shell and its two sleeps: {tree:?}");
        assert_eq!(tree[0], pid);
        assert_eq!(count, 3);
        assert!(kib > 0);
        let me = std::process::id();
        assert!(cpu_ticks(me).is_some());
        assert!(rss_kib(me).unwrap() > 0);
        assert!(ticks_per_second() > 0);
    }
}
