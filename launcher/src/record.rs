//! The record of restarts that status-web shows on the dashboard: one small JSON
//! file, replaced whole (written beside it, then renamed over it) at every change.

use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub started_at: String,
    pub services: Vec<ServiceRecord>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRecord {
    pub name: String,
    pub restarts: u32,
    /// How it last ended, in words (`killed by signal 9 (SIGKILL)`).
    pub last_exit: Option<String>,
    pub last_exit_code: Option<i32>,
    pub last_restart_at: Option<String>,
}

impl Record {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            started_at: now(),
            services: names
                .into_iter()
                .map(|name| ServiceRecord {
                    name: name.to_owned(),
                    restarts: 0,
                    last_exit: None,
                    last_exit_code: None,
                    last_restart_at: None,
                })
                .collect(),
        }
    }

    /// Counts a restart of `name` after it ended with `exit`.
    pub fn restarted(&mut self, name: &str, exit: &crate::child::Exit) {
        if let Some(service) = self.services.iter_mut().find(|s| s.name == name) {
            service.restarts += 1;
            service.last_exit = Some(exit.text.clone());
            service.last_exit_code = exit.code;
            service.last_restart_at = Some(now());
        }
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut partial = PathBuf::from(path);
        partial.as_mut_os_string().push(".partial");
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&partial, json)?;
        std::fs::rename(&partial, path)
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::Exit;

    #[test]
    fn a_restart_is_counted_with_how_the_service_ended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("launcher/restarts.json");
        let mut record = Record::new(["wa-gateway", "dispatcher"]);
        record.write(&path).unwrap();
        let exit = Exit {
            code: Some(1),
            text: "exit code 1".into(),
        };
        record.restarted("dispatcher", &exit);
        record.restarted("dispatcher", &exit);
        record.write(&path).unwrap();

        let read: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(read["services"][0]["name"], "wa-gateway");
        assert_eq!(read["services"][0]["restarts"], 0);
        assert!(read["services"][0]["lastExit"].is_null());
        assert_eq!(read["services"][1]["restarts"], 2);
        assert_eq!(read["services"][1]["lastExit"], "exit code 1");
        assert_eq!(read["services"][1]["lastExitCode"], 1);
        assert!(read["services"][1]["lastRestartAt"].is_string());
        assert!(read["startedAt"].is_string());
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["restarts.json"], "no partial file is left");
    }
}
