//! The logger's configuration, from `SHEETS_*` environment variables and the files the
//! old server's users already have (`sheets-credentials.json`, `config.json`).

use std::net::SocketAddr;
use std::path::PathBuf;

use abtrack_proto::config::{ConfigError, Env, Var};

pub const VARS: &[Var] = &[
    Var {
        name: "SHEETS_ADDR",
        default: "127.0.0.1:50053",
        help: "gRPC listen address",
    },
    Var {
        name: "SHEETS_DATA_DIR",
        default: "data/sheets-logger",
        help: "folder for the durable outbox",
    },
    Var {
        name: "SHEETS_CREDENTIALS",
        default: "sheets-credentials.json",
        help: "Google service account key for Sheets; no file means Sheets logging is disabled",
    },
    Var {
        name: "SHEETS_SPREADSHEET_ID",
        default: "spreadsheetId in config.json",
        help: "the spreadsheet outcomes are appended to",
    },
    Var {
        name: "SHEETS_INCLUDE_MESSAGE",
        default: "false",
        help: "keep the message text in the outbox and the sheet",
    },
];

#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// The credentials file when it exists.
    pub credentials: Option<PathBuf>,
    pub spreadsheet_id: Option<String>,
    pub include_message: bool,
}

impl Config {
    /// Reads the environment; `config.json` in the working folder supplies the
    /// spreadsheet id when the environment does not.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::new(lookup);
        let explicit = env.get("SHEETS_CREDENTIALS");
        let credentials_path = PathBuf::from(
            explicit
                .clone()
                .unwrap_or_else(|| "sheets-credentials.json".into()),
        );
        let credentials = if credentials_path.is_file() {
            Some(credentials_path)
        } else if let Some(path) = explicit {
            return Err(ConfigError::new(
                "SHEETS_CREDENTIALS",
                &path,
                "no such file",
            ));
        } else {
            None
        };
        let spreadsheet_id = match env.get("SHEETS_SPREADSHEET_ID") {
            Some(id) => Some(id),
            None => spreadsheet_id_from_config_json("config.json")?,
        };
        Ok(Self {
            addr: env.addr("SHEETS_ADDR", "127.0.0.1:50053")?,
            data_dir: PathBuf::from(env.string("SHEETS_DATA_DIR", "data/sheets-logger")),
            credentials,
            spreadsheet_id,
            include_message: env.bool("SHEETS_INCLUDE_MESSAGE", false)?,
        })
    }

    pub fn log(&self) {
        tracing::info!(
            addr = %self.addr,
            data_dir = %self.data_dir.display(),
            credentials = ?self.credentials.as_ref().map(|p| p.display().to_string()),
            spreadsheet_id = ?self.spreadsheet_id,
            include_message = self.include_message,
            "configuration"
        );
    }
}

/// The old server's `config.json`: `{"spreadsheetId": "..."}`. A missing file is fine;
/// a malformed one is an error, so a typo is not silently ignored.
fn spreadsheet_id_from_config_json(path: &str) -> Result<Option<String>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ConfigError::new("config.json", path, e.to_string())),
    };
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ConfigError::new("config.json", path, format!("not valid JSON: {e}")))?;
    match value.get("spreadsheetId") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(id)) if !id.trim().is_empty() => {
            Ok(Some(id.trim().to_owned()))
        }
        Some(_) => Err(ConfigError::new(
            "config.json",
            path,
            "spreadsheetId must be a non-empty string",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        Config::from_lookup(|k| map.get(k).map(|v| (*v).to_owned()))
    }

    #[test]
    fn no_credentials_means_disabled_not_an_error() {
        let c = config(&[("SHEETS_SPREADSHEET_ID", "abc")]).unwrap();
        assert_eq!(c.credentials, None);
        assert_eq!(c.spreadsheet_id.as_deref(), Some("abc"));
        assert_eq!(c.addr.port(), 50053);
    }

    #[test]
    fn a_named_credentials_file_must_exist() {
        let err = config(&[("SHEETS_CREDENTIALS", "/nonexistent/key.json")]).unwrap_err();
        assert_eq!(err.name, "SHEETS_CREDENTIALS");
    }

    #[test]
    fn reads_config_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"spreadsheetId": " 1AbC "}"#).unwrap();
        let p = path.to_str().unwrap();
        assert_eq!(
            spreadsheet_id_from_config_json(p).unwrap().as_deref(),
            Some("1AbC")
        );
        std::fs::write(&path, r#"{"spreadsheetId": 5}"#).unwrap();
        assert!(spreadsheet_id_from_config_json(p).is_err());
        std::fs::write(&path, "{not json").unwrap();
        assert!(
            spreadsheet_id_from_config_json(p)
                .unwrap_err()
                .reason
                .contains("not valid JSON")
        );
        assert_eq!(
            spreadsheet_id_from_config_json("/nonexistent/config.json").unwrap(),
            None
        );
    }
}
