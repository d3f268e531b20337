//! The logger's configuration, from `SHEETS_*` environment variables and the files the
//! old server's users already have (`sheets-credentials.json`, `config.json`).

use std::net::SocketAddr;
use std::path::PathBuf;

use std::time::Duration;

use chrono_tz::Tz;
use google_sheets4::yup_oauth2::ServiceAccountKey;

use abtrack_proto::config::{ConfigError, Env, Var};
use abtrack_proto::token::InternalToken;

use crate::credentials::read_key;

/// Every variable the logger reads, in `--help` order. Each is a constant below that
/// the parsing reads too, so `--help` shows the name and default in use.
pub const VARS: &[Var] = &[
    ADDR,
    DATA_DIR,
    CREDENTIALS,
    SPREADSHEET_ID,
    TAB,
    TIME_ZONE,
    FULL_RECIPIENT,
    INCLUDE_MESSAGE,
    BATCH_SIZE,
    BATCH_MAX_AGE_MS,
    RETRY_MAX_SECS,
    OUTBOX_RETENTION_DAYS,
    API_URL,
];

pub const ADDR: Var = abtrack_proto::addrs::SHEETS_ADDR;

pub const DATA_DIR: Var = Var {
    name: "SHEETS_DATA_DIR",
    default: "data/sheets-logger",
    help: "folder for the durable outbox",
};

/// Its default is used only when that file exists; a path that is set must exist.
pub const CREDENTIALS: Var = Var {
    name: "SHEETS_CREDENTIALS",
    default: "sheets-credentials.json",
    help: "Google service account key for Sheets; no file means Sheets logging is disabled",
};

/// Unset: read from `config.json`, as the old server did.
pub const SPREADSHEET_ID: Var = Var {
    name: "SHEETS_SPREADSHEET_ID",
    default: "spreadsheetId in config.json",
    help: "the spreadsheet outcomes are appended to",
};

pub const TAB: Var = Var {
    name: "SHEETS_TAB",
    default: "Log",
    help: "the tab (sheet) rows go to; created when missing",
};

pub const TIME_ZONE: Var = Var {
    name: "SHEETS_TIME_ZONE",
    default: "Asia/Jakarta",
    help: "IANA time zone of the Time column",
};

pub const FULL_RECIPIENT: Var = Var {
    name: "SHEETS_FULL_RECIPIENT",
    default: "false",
    help: "write the full phone number instead of a masked one (62812****789)",
};

pub const INCLUDE_MESSAGE: Var = Var {
    name: "SHEETS_INCLUDE_MESSAGE",
    default: "false",
    help: "keep the message text in the outbox and write it to the sheet",
};

pub const BATCH_SIZE: Var = Var {
    name: "SHEETS_BATCH_SIZE",
    default: "100",
    help: "most rows per append call",
};

pub const BATCH_MAX_AGE_MS: Var = Var {
    name: "SHEETS_BATCH_MAX_AGE_MS",
    default: "2000",
    help: "a smaller batch is sent once its oldest record is this old",
};

pub const RETRY_MAX_SECS: Var = Var {
    name: "SHEETS_RETRY_MAX_SECS",
    default: "300",
    help: "longest wait between two upload attempts while Sheets fails",
};

pub const OUTBOX_RETENTION_DAYS: Var = Var {
    name: "SHEETS_OUTBOX_RETENTION_DAYS",
    default: "30",
    help: "with Sheets logging off, records older than this leave the outbox (0 keeps them all)",
};

pub const API_URL: Var = Var {
    name: "SHEETS_API_URL",
    default: "https://sheets.googleapis.com",
    help: "root URL of the Google Sheets API (a local server in tests)",
};

/// Where rows go when Sheets logging is on.
#[derive(Debug, Clone)]
pub struct SheetTarget {
    pub credentials_path: PathBuf,
    pub key: ServiceAccountKey,
    pub spreadsheet_id: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// Set when both a credential and a spreadsheet id are present.
    pub target: Option<SheetTarget>,
    /// Why Sheets logging is off, when it is.
    pub disabled_reason: Option<String>,
    pub tab: String,
    pub time_zone: Tz,
    pub full_recipient: bool,
    pub include_message: bool,
    pub batch_size: usize,
    pub batch_max_age: Duration,
    pub retry_max: Duration,
    pub retention: Option<Duration>,
    pub api_url: String,
    /// Required from callers.
    pub internal_token: Option<InternalToken>,
}

impl Config {
    /// Reads the environment; `config.json` in the working folder supplies the
    /// spreadsheet id when the environment does not.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::new(lookup);
        let explicit = env.get(CREDENTIALS.name);
        let credentials_path = PathBuf::from(env.string(CREDENTIALS));
        let credentials = if credentials_path.is_file() {
            let key = read_key(&credentials_path).map_err(|e| {
                ConfigError::new(CREDENTIALS.name, &credentials_path.display().to_string(), e)
            })?;
            Some((credentials_path, key))
        } else if let Some(path) = explicit {
            return Err(ConfigError::new(CREDENTIALS.name, &path, "no such file"));
        } else {
            None
        };
        let spreadsheet_id = match env.get(SPREADSHEET_ID.name) {
            Some(id) => Some(id),
            None => spreadsheet_id_from_config_json("config.json")?,
        };
        let (target, disabled_reason) = match (credentials, spreadsheet_id) {
            (Some((credentials_path, key)), Some(spreadsheet_id)) => (
                Some(SheetTarget {
                    credentials_path,
                    key,
                    spreadsheet_id,
                }),
                None,
            ),
            (None, _) => (None, Some(format!("no {}", CREDENTIALS.default))),
            (Some(_), None) => (
                None,
                Some(format!(
                    "no spreadsheet id (set {} or spreadsheetId in config.json)",
                    SPREADSHEET_ID.name
                )),
            ),
        };
        let zone = env.string(TIME_ZONE);
        let time_zone: Tz = zone.parse().map_err(|_| {
            ConfigError::new(
                TIME_ZONE.name,
                &zone,
                "expected an IANA time zone like Asia/Jakarta",
            )
        })?;
        let tab = env.string(TAB);
        if tab.len() > 100
            || tab
                .chars()
                .any(|c| matches!(c, '[' | ']' | '*' | '?' | '/' | '\\' | ':'))
        {
            return Err(ConfigError::new(
                TAB.name,
                &tab,
                "a tab name has at most 100 characters and none of [ ] * ? / \\ :",
            ));
        }
        let batch_size: usize = env.value(BATCH_SIZE)?;
        if !(1..=10_000).contains(&batch_size) {
            return Err(ConfigError::new(
                BATCH_SIZE.name,
                &batch_size.to_string(),
                "must be between 1 and 10000",
            ));
        }
        let retention_days: u64 = env.value(OUTBOX_RETENTION_DAYS)?;
        Ok(Self {
            addr: env.addr(ADDR)?,
            data_dir: PathBuf::from(env.string(DATA_DIR)),
            target,
            disabled_reason,
            tab,
            time_zone,
            full_recipient: env.bool(FULL_RECIPIENT)?,
            include_message: env.bool(INCLUDE_MESSAGE)?,
            batch_size,
            batch_max_age: env.millis(BATCH_MAX_AGE_MS)?,
            retry_max: env.secs(RETRY_MAX_SECS)?.max(Duration::from_secs(1)),
            retention: (retention_days > 0)
                .then(|| Duration::from_secs(retention_days * 24 * 3600)),
            api_url: env.url(API_URL)?,
            internal_token: InternalToken::from_env(&env)?,
        })
    }

    pub fn log(&self) {
        tracing::info!(
            addr = %self.addr,
            data_dir = %self.data_dir.display(),
            credentials = ?self.target.as_ref().map(|t| t.credentials_path.display().to_string()),
            service_account = ?self.target.as_ref().map(|t| t.key.client_email.clone()),
            spreadsheet_id = ?self.target.as_ref().map(|t| t.spreadsheet_id.clone()),
            tab = %self.tab,
            time_zone = %self.time_zone,
            full_recipient = self.full_recipient,
            include_message = self.include_message,
            batch_size = self.batch_size,
            batch_max_age_ms = self.batch_max_age.as_millis() as u64,
            retry_max_secs = self.retry_max.as_secs(),
            retention_days = self.retention.map(|r| r.as_secs() / 86_400),
            api_url = %self.api_url,
            "configuration"
        );
        abtrack_proto::token::log_startup(self.internal_token.as_ref(), Some(self.addr));
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
        assert!(c.target.is_none());
        assert_eq!(
            c.disabled_reason.as_deref(),
            Some("no sheets-credentials.json")
        );
        assert_eq!(c.addr.port(), 50053);
        assert_eq!(c.time_zone, chrono_tz::Asia::Jakarta);
        assert_eq!(c.tab, "Log");
    }

    #[test]
    fn the_defaults_in_help_are_the_ones_used() {
        abtrack_proto::config::assert_defaults_are_used(
            VARS,
            &[CREDENTIALS, SPREADSHEET_ID],
            &[],
            |lookup| Config::from_lookup(lookup),
        );
    }

    #[test]
    fn bad_settings_name_their_variable() {
        for (name, value) in [
            ("SHEETS_TIME_ZONE", "Mars/Olympus"),
            ("SHEETS_TAB", "a/b"),
            ("SHEETS_BATCH_SIZE", "0"),
            ("SHEETS_API_URL", "sheets.example"),
        ] {
            assert_eq!(config(&[(name, value)]).unwrap_err().name, name);
        }
    }

    #[test]
    fn a_malformed_key_file_is_a_configuration_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        std::fs::write(&path, "{\"type\": ").unwrap();
        let err = config(&[("SHEETS_CREDENTIALS", path.to_str().unwrap())]).unwrap_err();
        assert!(
            err.reason.contains("not a Google service account key"),
            "{err}"
        );
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
