//! The end checks of a chaos run: sends counted by job id in the gateway's dry-run
//! log, rows counted by job id in the sheet, the final status of every job, and the
//! summary table.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

/// How often each job id occurs, and how many lines could not be read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Occurrences {
    pub by_id: HashMap<String, usize>,
    /// Lines cut short (a process killed in the middle of a write) or without a job id.
    pub unreadable: usize,
}

impl Occurrences {
    /// Counts the job ids of a JSONL text such as the dry-run log.
    pub fn of_jsonl(text: &str) -> Self {
        let mut out = Self::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|v| v["job_id"].as_str().map(str::to_owned))
            {
                Some(id) => *out.by_id.entry(id).or_default() += 1,
                None => out.unreadable += 1,
            }
        }
        out
    }

    /// Counts the job ids of sheet rows (the header row first; the id in column B).
    pub fn of_rows(rows: &[Vec<Value>]) -> Self {
        let mut out = Self::default();
        for row in rows.iter().skip(1) {
            match row.get(1).and_then(Value::as_str) {
                Some(id) => *out.by_id.entry(id.to_owned()).or_default() += 1,
                None => out.unreadable += 1,
            }
        }
        out
    }

    /// Adds the occurrences of another log (another account's gateway).
    pub fn merge(&mut self, other: Occurrences) {
        for (id, n) in other.by_id {
            *self.by_id.entry(id).or_default() += n;
        }
        self.unreadable += other.unreadable;
    }

    pub fn total(&self) -> usize {
        self.by_id.values().sum()
    }

    /// Ids seen more than once, sorted.
    pub fn repeated(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .by_id
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Ids of `expected` never seen, in order.
    pub fn missing<'a>(&self, expected: &'a [String]) -> Vec<&'a str> {
        expected
            .iter()
            .filter(|id| !self.by_id.contains_key(*id))
            .map(String::as_str)
            .collect()
    }

    /// Ids seen that are not in `expected`, sorted.
    pub fn unknown(&self, expected: &[String]) -> Vec<String> {
        let known: std::collections::HashSet<&str> = expected.iter().map(String::as_str).collect();
        let mut ids: Vec<String> = self
            .by_id
            .keys()
            .filter(|id| !known.contains(id.as_str()))
            .cloned()
            .collect();
        ids.sort();
        ids
    }
}

/// Everything a run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub backend: String,
    pub seed: u64,
    pub jobs: usize,
    /// Jobs the run could not write (the queue refused them until the bound).
    pub not_written: Vec<String>,
    pub kills: BTreeMap<String, usize>,
    pub emulator_restarts: usize,
    /// Why the emulator was not restarted, when it was not.
    pub emulator_note: Option<String>,
    pub chaos: Duration,
    pub drain: Duration,
    pub drained: bool,
    pub sends: Occurrences,
    pub rows: Occurrences,
    /// Final status of each job in the queue.
    pub statuses: HashMap<String, String>,
    /// Finished jobs whose outcome the logger has not acknowledged.
    pub unlogged: usize,
    pub outbox_backlog: u64,
    pub ids: Vec<String>,
    /// With several accounts: jobs sent by another account's gateway than their own.
    pub wrong_account: Vec<String>,
}

impl Report {
    pub fn status_count(&self, status: &str) -> usize {
        self.statuses.values().filter(|s| *s == status).count()
    }

    fn sent_count(&self) -> usize {
        ["sent", "delivered", "read"]
            .iter()
            .map(|s| self.status_count(s))
            .sum()
    }

    /// What went wrong; empty when the run passed every check.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        let sample = |ids: &[&str]| -> String {
            let shown: Vec<&str> = ids.iter().take(10).copied().collect();
            let more = ids.len().saturating_sub(shown.len());
            if more > 0 {
                format!("{shown:?} and {more} more")
            } else {
                format!("{shown:?}")
            }
        };
        let owned = |ids: &[String]| sample(&ids.iter().map(String::as_str).collect::<Vec<_>>());
        if !self.not_written.is_empty() {
            out.push(format!(
                "{} jobs could not be written: {}",
                self.not_written.len(),
                owned(&self.not_written)
            ));
        }
        let repeated = self.sends.repeated();
        if !repeated.is_empty() {
            out.push(format!(
                "{} jobs sent more than once: {}",
                repeated.len(),
                owned(&repeated)
            ));
        }
        let missing = self.sends.missing(&self.ids);
        if !missing.is_empty() {
            out.push(format!(
                "{} jobs never sent: {}",
                missing.len(),
                sample(&missing)
            ));
        }
        let unknown = self.sends.unknown(&self.ids);
        if !unknown.is_empty() {
            out.push(format!("sends of unknown jobs: {}", owned(&unknown)));
        }
        if !self.wrong_account.is_empty() {
            out.push(format!(
                "{} jobs sent from another account than their own: {}",
                self.wrong_account.len(),
                owned(&self.wrong_account)
            ));
        }
        let mut not_sent: Vec<String> = self
            .ids
            .iter()
            .filter_map(|id| match self.statuses.get(id).map(String::as_str) {
                Some("sent" | "delivered" | "read") => None,
                Some(other) => Some(format!("{id}: {other}")),
                None => Some(format!("{id}: not in the queue")),
            })
            .collect();
        not_sent.sort();
        if !not_sent.is_empty() {
            out.push(format!(
                "{} jobs not sent in the queue: {}",
                not_sent.len(),
                owned(&not_sent)
            ));
        }
        let repeated = self.rows.repeated();
        if !repeated.is_empty() {
            out.push(format!(
                "{} jobs with more than one sheet row: {}",
                repeated.len(),
                owned(&repeated)
            ));
        }
        let missing = self.rows.missing(&self.ids);
        if !missing.is_empty() {
            out.push(format!(
                "{} jobs without a sheet row: {}",
                missing.len(),
                sample(&missing)
            ));
        }
        let unknown = self.rows.unknown(&self.ids);
        if !unknown.is_empty() {
            out.push(format!("sheet rows of unknown jobs: {}", owned(&unknown)));
        }
        if self.rows.unreadable > 0 {
            out.push(format!(
                "{} sheet rows without a job id",
                self.rows.unreadable
            ));
        }
        if !self.drained {
            out.push(format!(
                "the queue did not settle within the drain bound ({} s): {} outcomes not acknowledged by the logger, {} records in its outbox",
                self.drain.as_secs(),
                self.unlogged,
                self.outbox_backlog
            ));
        }
        out
    }

    pub fn passed(&self) -> bool {
        self.failures().is_empty()
    }

    /// The summary as a Markdown table.
    pub fn table(&self) -> String {
        let kills = |s: &str| self.kills.get(s).copied().unwrap_or(0);
        let emulator = match (&self.emulator_note, self.backend.as_str()) {
            (Some(note), _) => format!("{} ({note})", self.emulator_restarts),
            (None, "firestore" | "firestore-app-shape" | "firestore-accounts") => {
                self.emulator_restarts.to_string()
            }
            (None, _) => "- (no emulator)".into(),
        };
        let rows = [
            ("backend", self.backend.clone()),
            ("seed", self.seed.to_string()),
            ("jobs", self.jobs.to_string()),
            ("chaos phase", format!("{:.1} s", self.chaos.as_secs_f64())),
            (
                "drain (until every outcome is in the sheet)",
                format!("{:.1} s", self.drain.as_secs_f64()),
            ),
            (
                "wa-gateway kills (SIGKILL, every account's)",
                self.kills
                    .iter()
                    .filter(|(s, _)| s.starts_with("wa-gateway"))
                    .map(|(_, n)| n)
                    .sum::<usize>()
                    .to_string(),
            ),
            (
                "dispatcher kills (SIGKILL)",
                kills("dispatcher").to_string(),
            ),
            (
                "sheets-logger kills (SIGKILL)",
                kills("sheets-logger").to_string(),
            ),
            ("emulator restarts", emulator),
            (
                "jobs sent exactly once (dry-run log)",
                self.ids
                    .iter()
                    .filter(|id| self.sends.by_id.get(*id) == Some(&1))
                    .count()
                    .to_string(),
            ),
            ("duplicates", self.sends.repeated().len().to_string()),
            (
                "sent from another account",
                self.wrong_account.len().to_string(),
            ),
            ("missing", self.sends.missing(&self.ids).len().to_string()),
            (
                "torn dry-run lines (a kill mid-write)",
                self.sends.unreadable.to_string(),
            ),
            (
                "final status sent / pending / processing / failed",
                format!(
                    "{} / {} / {} / {}",
                    self.sent_count(),
                    self.status_count("pending"),
                    self.status_count("processing"),
                    self.status_count("failed")
                ),
            ),
            ("Sheets rows", self.rows.total().to_string()),
            (
                "Sheets duplicates / missing",
                format!(
                    "{} / {}",
                    self.rows.repeated().len(),
                    self.rows.missing(&self.ids).len()
                ),
            ),
            (
                "result",
                if self.passed() { "pass" } else { "FAIL" }.to_owned(),
            ),
        ];
        let mut out = String::from("| measure | value |\n|---|---|\n");
        for (k, v) in rows {
            let _ = writeln!(out, "| {k} | {v} |");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("j{i}")).collect()
    }

    #[test]
    fn counts_sends_by_job_id_and_skips_torn_lines() {
        let text = "{\"job_id\":\"j0\",\"message_id\":\"a\"}\n{\"job_id\":\"j1\"}\n{\"job_id\":\"j0\",\"mess\n{\"job_id\":\"j0\"}\n";
        let o = Occurrences::of_jsonl(text);
        assert_eq!(o.by_id["j0"], 2);
        assert_eq!(o.unreadable, 1);
        assert_eq!(o.repeated(), vec!["j0".to_owned()]);
        assert_eq!(o.missing(&ids(3)), vec!["j2"]);
        assert_eq!(o.unknown(&ids(1)), vec!["j1".to_owned()]);
    }

    #[test]
    fn a_clean_run_passes_and_each_fault_is_named() {
        let all = ids(3);
        let sends = all
            .iter()
            .map(|id| json!({ "job_id": id }).to_string())
            .collect::<Vec<_>>()
            .join("\n");
        let mut rows = vec![vec![json!("Time"), json!("Job ID")]];
        rows.extend(all.iter().map(|id| vec![json!("t"), json!(id)]));
        let clean = Report {
            backend: "local".into(),
            jobs: 3,
            drained: true,
            sends: Occurrences::of_jsonl(&sends),
            rows: Occurrences::of_rows(&rows),
            statuses: all.iter().map(|id| (id.clone(), "sent".into())).collect(),
            ids: all.clone(),
            ..Report::default()
        };
        assert!(clean.passed(), "{:?}", clean.failures());
        assert!(clean.table().contains("| duplicates | 0 |"));
        assert!(clean.table().contains("| Sheets rows | 3 |"));

        let mut twice = clean.clone();
        twice.sends.by_id.insert("j1".into(), 2);
        twice.rows.by_id.remove("j2");
        twice.statuses.insert("j0".into(), "processing".into());
        let failures = twice.failures();
        assert_eq!(failures.len(), 3, "{failures:?}");
        assert!(failures[0].contains("sent more than once: [\"j1\"]"));
        assert!(failures[1].contains("j0: processing"));
        assert!(failures[2].contains("without a sheet row: [\"j2\"]"));
        assert!(twice.table().contains("| result | FAIL |"));
    }
}
