//! The dispatcher's configuration, read from `DISPATCHER_*` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use abtrack_proto::account::Gateway;
use abtrack_proto::config::{self, ConfigError, Env, Var};
use abtrack_proto::token::InternalToken;

use crate::firestore::Finished;
use crate::firestore::mapping::{self, Mapping};
use crate::storage::Storage;

/// Every variable the dispatcher reads, in `--help` order. Each is a constant below
/// that the parsing reads too, so `--help` shows the name and default in use.
pub const VARS: &[Var] = &[
    ADDR,
    QUEUE,
    CREDENTIALS,
    FIRESTORE_PROJECT_ID,
    FIRESTORE_DATABASE_ID,
    FIRESTORE_COLLECTION,
    FIRESTORE_EMULATOR_HOST,
    STORAGE_EMULATOR_HOST,
    FIRESTORE_FALLBACK_POLL_SECS,
    FIRESTORE_FINISHED,
    FIRESTORE_FINISHED_COLLECTION,
    mapping::FIELD_TO,
    mapping::FIELD_MESSAGE,
    mapping::FIELD_CREATED_AT,
    mapping::FIELD_SEND_AT,
    mapping::FIELD_ACCOUNT,
    mapping::FIELD_MEDIA,
    mapping::FIELD_STATUS,
    mapping::FIELD_ATTEMPTS,
    mapping::FIELD_LEASE_OWNER,
    mapping::FIELD_LEASE_EXPIRES_AT,
    mapping::FIELD_NEXT_ATTEMPT_AT,
    mapping::FIELD_LAST_ERROR,
    mapping::FIELD_SENT_AT,
    mapping::FIELD_MESSAGE_ID,
    mapping::FIELD_RECIPIENT,
    mapping::FIELD_RECIPIENT_LID,
    mapping::FIELD_DELIVERED_AT,
    mapping::FIELD_READ_AT,
    mapping::FIELD_DELIVERY_OVERDUE,
    mapping::FIELD_UPDATED_AT,
    mapping::FIELD_LOGGED_AT,
    mapping::FIELD_HISTORY,
    mapping::STATUS_PENDING,
    mapping::STATUS_SENT,
    mapping::STATUS_DELIVERED,
    mapping::STATUS_READ,
    mapping::STATUS_FAILED,
    DATA_DIR,
    GATEWAY_URL,
    ACCOUNTS,
    LOGGER_URL,
    config::COUNTRY_CODE,
    ID,
    LEASE_SECS,
    SEND_TIMEOUT_SECS,
    MAX_ATTEMPTS,
    BACKOFF_BASE_SECS,
    BACKOFF_MAX_SECS,
    RATE_LIMIT_DELAY_SECS,
    SWEEP_INTERVAL_SECS,
    POLL_INTERVAL_SECS,
];

pub const ADDR: Var = abtrack_proto::addrs::DISPATCHER_ADDR;

pub const QUEUE: Var = Var {
    name: "QUEUE",
    default: "auto",
    help: "job queue backend: local (embedded SQLite) or firestore; auto picks firestore when a Firebase credential or FIRESTORE_EMULATOR_HOST is present",
};

/// Its default is used only when that file exists; a path that is set must exist.
pub const CREDENTIALS: Var = Var {
    name: "GOOGLE_APPLICATION_CREDENTIALS",
    default: "credentials.json",
    help: "Firebase service-account key for Firestore (credentials.json in the working folder is used when present)",
};

/// Unset: the key's `project_id`, or `EMULATOR_PROJECT` with the emulator and no key.
pub const FIRESTORE_PROJECT_ID: Var = Var {
    name: "FIRESTORE_PROJECT_ID",
    default: "<project_id of the credential>",
    help: "Google Cloud project of the Firestore database",
};

pub const FIRESTORE_DATABASE_ID: Var = Var {
    name: "FIRESTORE_DATABASE_ID",
    default: "(default)",
    help: "Firestore database id",
};

pub const FIRESTORE_COLLECTION: Var = Var {
    name: "FIRESTORE_COLLECTION",
    default: "notifications",
    help: "collection holding the job documents",
};

pub const FIRESTORE_EMULATOR_HOST: Var = Var {
    name: "FIRESTORE_EMULATOR_HOST",
    default: "",
    help: "host:port of a Firestore emulator; when set, no credential is needed",
};

pub const STORAGE_EMULATOR_HOST: Var = Var {
    name: "STORAGE_EMULATOR_HOST",
    default: "",
    help: "host:port of a Cloud Storage emulator for gs:// media; otherwise gs:// objects are read from Cloud Storage with the Firebase credential",
};

pub const FIRESTORE_FALLBACK_POLL_SECS: Var = Var {
    name: "FIRESTORE_FALLBACK_POLL_SECS",
    default: "5",
    help: "how often pending jobs are queried while the Firestore listen stream is down",
};

pub const FIRESTORE_FINISHED: Var = Var {
    name: "FIRESTORE_FINISHED",
    default: "keep",
    help: "what becomes of a job document once the Sheets logger holds its outcome: keep (marked loggedAt), move (to FIRESTORE_FINISHED_COLLECTION) or delete",
};

pub const FIRESTORE_FINISHED_COLLECTION: Var = Var {
    name: "FIRESTORE_FINISHED_COLLECTION",
    default: "",
    help: "with FIRESTORE_FINISHED=move: the collection finished job documents are moved to",
};

pub const DATA_DIR: Var = Var {
    name: "DISPATCHER_DATA_DIR",
    default: "data/dispatcher",
    help: "folder for the local queue and the pause switch",
};

pub const GATEWAY_URL: Var = abtrack_proto::addrs::DISPATCHER_GATEWAY_URL;

/// Unset: one account, named `default`, at [`GATEWAY_URL`].
pub const ACCOUNTS: Var = Var {
    name: "DISPATCHER_ACCOUNTS",
    default: "",
    help: "several WhatsApp accounts, each name=gateway URL, comma-separated, the default account (for jobs that name none) first, e.g. sd-harapan=http://127.0.0.1:50052,smp-2=http://10.0.0.7:50052; unset: one account, default, at DISPATCHER_GATEWAY_URL",
};

pub const LOGGER_URL: Var = abtrack_proto::addrs::DISPATCHER_LOGGER_URL;

/// Unset: the host name and the process id, worked out at start.
pub const ID: Var = Var {
    name: "DISPATCHER_ID",
    default: "<hostname>-<pid>",
    help: "lease owner name; unique per running dispatcher",
};

pub const LEASE_SECS: Var = Var {
    name: "DISPATCHER_LEASE_SECS",
    default: "120",
    help: "how long a dispatcher owns a job it took; must exceed the send timeout",
};

pub const SEND_TIMEOUT_SECS: Var = Var {
    name: "DISPATCHER_SEND_TIMEOUT_SECS",
    default: "60",
    help: "deadline of one gateway Send, pacing wait included",
};

pub const MAX_ATTEMPTS: Var = Var {
    name: "DISPATCHER_MAX_ATTEMPTS",
    default: "5",
    help: "attempts before a job that keeps failing transiently ends failed",
};

pub const BACKOFF_BASE_SECS: Var = Var {
    name: "DISPATCHER_BACKOFF_BASE_SECS",
    default: "10",
    help: "first retry delay; doubles each attempt, with jitter",
};

pub const BACKOFF_MAX_SECS: Var = Var {
    name: "DISPATCHER_BACKOFF_MAX_SECS",
    default: "600",
    help: "longest retry delay",
};

pub const RATE_LIMIT_DELAY_SECS: Var = Var {
    name: "DISPATCHER_RATE_LIMIT_DELAY_SECS",
    default: "30",
    help: "how long a job waits when the gateway's pacing or daily cap refuses it",
};

pub const SWEEP_INTERVAL_SECS: Var = Var {
    name: "DISPATCHER_SWEEP_INTERVAL_SECS",
    default: "15",
    help: "how often expired leases are returned to pending",
};

pub const POLL_INTERVAL_SECS: Var = Var {
    name: "DISPATCHER_POLL_INTERVAL_SECS",
    default: "5",
    help: "longest time the worker sleeps without looking at the queue",
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Local,
    Firestore(FirestoreSettings),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirestoreSettings {
    pub project_id: String,
    pub database_id: String,
    pub collection: String,
    /// The service-account key, unless the emulator is used.
    pub credentials: Option<PathBuf>,
    pub emulator_host: Option<String>,
    pub fallback_poll: Duration,
    /// The documents' field names and status words.
    pub mapping: Arc<Mapping>,
    /// What becomes of a document once its outcome is logged.
    pub finished: Finished,
}

/// The project a Firebase emulator is given when none is configured; the `demo-`
/// prefix is the Firebase tools' convention for a project that exists nowhere.
const EMULATOR_PROJECT: &str = "demo-abtrack";

fn firestore_settings(
    env: &Env<impl Fn(&str) -> Option<String>>,
) -> Result<Option<FirestoreSettings>, ConfigError> {
    let emulator_host = env.get(FIRESTORE_EMULATOR_HOST.name);
    let credentials = match env.get(CREDENTIALS.name) {
        Some(path) => {
            let path = PathBuf::from(path);
            if !path.is_file() {
                return Err(ConfigError::new(
                    CREDENTIALS.name,
                    &path.display().to_string(),
                    "no such file",
                ));
            }
            Some(path)
        }
        None => Some(PathBuf::from(CREDENTIALS.default)).filter(|p| p.is_file()),
    };
    if emulator_host.is_none() && credentials.is_none() {
        return Ok(None);
    }
    let from_key = match &credentials {
        Some(path) => read_key(path)?["project_id"].as_str().map(str::to_owned),
        None => None,
    };
    let project_id = match env.get(FIRESTORE_PROJECT_ID.name) {
        Some(id) => id,
        None => match (from_key, &emulator_host) {
            (Some(id), _) => id,
            (None, Some(_)) => EMULATOR_PROJECT.to_owned(),
            (None, None) => {
                return Err(ConfigError::new(
                    FIRESTORE_PROJECT_ID.name,
                    "",
                    format!(
                        "the credential names no project_id; set {}",
                        FIRESTORE_PROJECT_ID.name
                    ),
                ));
            }
        },
    };
    let collection = collection(env)?;
    let finished = finished(env, &collection)?;
    let fallback_poll = env.secs(FIRESTORE_FALLBACK_POLL_SECS)?;
    if fallback_poll.is_zero() {
        return Err(ConfigError::new(
            FIRESTORE_FALLBACK_POLL_SECS.name,
            "0",
            "must be at least 1",
        ));
    }
    Ok(Some(FirestoreSettings {
        project_id,
        database_id: env.string(FIRESTORE_DATABASE_ID),
        collection,
        credentials: if emulator_host.is_some() {
            None
        } else {
            credentials
        },
        emulator_host,
        fallback_poll,
        mapping: Arc::new(Mapping::from_env(env)?),
        finished,
    }))
}

fn finished(
    env: &Env<impl Fn(&str) -> Option<String>>,
    collection: &str,
) -> Result<Finished, ConfigError> {
    let target = env.get(FIRESTORE_FINISHED_COLLECTION.name);
    match (env.string(FIRESTORE_FINISHED).as_str(), target) {
        ("keep", None) => Ok(Finished::Keep),
        ("delete", None) => Ok(Finished::Delete),
        ("move", Some(to)) if to == collection => Err(ConfigError::new(
            FIRESTORE_FINISHED_COLLECTION.name,
            &to,
            format!(
                "must differ from {} ({collection})",
                FIRESTORE_COLLECTION.name
            ),
        )),
        ("move", Some(to)) if to.contains('/') => Err(ConfigError::new(
            FIRESTORE_FINISHED_COLLECTION.name,
            &to,
            "must be a top-level collection id (no '/')",
        )),
        ("move", Some(to)) => Ok(Finished::Move(to)),
        ("move", None) => Err(ConfigError::new(
            FIRESTORE_FINISHED.name,
            "move",
            format!(
                "needs {} (where to move them)",
                FIRESTORE_FINISHED_COLLECTION.name
            ),
        )),
        ("keep" | "delete", Some(to)) => Err(ConfigError::new(
            FIRESTORE_FINISHED_COLLECTION.name,
            &to,
            format!("is used only with {}=move", FIRESTORE_FINISHED.name),
        )),
        (other, _) => Err(ConfigError::new(
            FIRESTORE_FINISHED.name,
            other,
            "expected keep, move or delete",
        )),
    }
}

fn collection(env: &Env<impl Fn(&str) -> Option<String>>) -> Result<String, ConfigError> {
    let collection = env.string(FIRESTORE_COLLECTION);
    if collection.is_empty() || collection.contains('/') {
        return Err(ConfigError::new(
            FIRESTORE_COLLECTION.name,
            &collection,
            "must be a top-level collection id (no '/')",
        ));
    }
    Ok(collection)
}

/// The job collection and its documents' shape, read whether or not Firestore is
/// configured (`dispatcher firestore-indexes` prints the indexes they need).
pub fn firestore_shape(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(String, Arc<Mapping>), ConfigError> {
    let env = Env::new(lookup);
    Ok((collection(&env)?, Arc::new(Mapping::from_env(&env)?)))
}

/// Reads the service-account key, so a truncated or mistyped file is reported as what
/// it is rather than as a missing project id.
fn read_key(path: &std::path::Path) -> Result<serde_json::Value, ConfigError> {
    let shown = path.display().to_string();
    let invalid = |reason: String| ConfigError::new(CREDENTIALS.name, &shown, reason);
    let text =
        std::fs::read_to_string(path).map_err(|e| invalid(format!("cannot read it: {e}")))?;
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(json) if json.is_object() => Ok(json),
        Ok(_) => Err(invalid(format!(
            "{shown} is not a service-account key (not a JSON object)"
        ))),
        Err(e) => Err(invalid(format!(
            "{shown} is not valid JSON ({e}); download the key again (Firebase console: Project settings, Service accounts, Generate new private key)"
        ))),
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub backend: Backend,
    pub data_dir: PathBuf,
    /// Each account and its gateway's URL, the default account first.
    pub gateways: Vec<Gateway>,
    pub logger_url: String,
    pub owner: String,
    pub lease: Duration,
    pub send_timeout: Duration,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub rate_limit_delay: Duration,
    pub sweep_interval: Duration,
    pub poll_interval: Duration,
    /// Checks recipients the way the gateway will normalise them.
    pub default_country_code: String,
    /// Required from callers and sent to the gateway and the logger.
    pub internal_token: Option<InternalToken>,
    /// Where gs:// media is read; `None`: such jobs fail with the reason.
    pub storage: Option<Storage>,
}

impl Config {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::new(lookup);
        let firestore = firestore_settings(&env)?;
        let backend = match (env.string(QUEUE).as_str(), firestore) {
            ("local", _) | ("auto", None) => Backend::Local,
            ("firestore" | "auto", Some(settings)) => Backend::Firestore(settings),
            ("firestore", None) => {
                return Err(ConfigError::new(
                    QUEUE.name,
                    "firestore",
                    format!(
                        "needs {}, {} or {}",
                        CREDENTIALS.default, CREDENTIALS.name, FIRESTORE_EMULATOR_HOST.name
                    ),
                ));
            }
            (other, _) => {
                return Err(ConfigError::new(
                    QUEUE.name,
                    other,
                    "expected local, firestore or auto",
                ));
            }
        };
        let owner = env.get(ID.name).unwrap_or_else(default_owner);
        let config = Self {
            addr: env.addr(ADDR)?,
            backend,
            data_dir: PathBuf::from(env.string(DATA_DIR)),
            gateways: env.gateways(ACCOUNTS, GATEWAY_URL)?,
            logger_url: env.grpc_url(LOGGER_URL)?,
            owner,
            lease: env.secs(LEASE_SECS)?,
            send_timeout: env.secs(SEND_TIMEOUT_SECS)?,
            max_attempts: env.value(MAX_ATTEMPTS)?,
            backoff_base: env.secs(BACKOFF_BASE_SECS)?,
            backoff_max: env.secs(BACKOFF_MAX_SECS)?,
            rate_limit_delay: env.secs(RATE_LIMIT_DELAY_SECS)?,
            sweep_interval: env.secs(SWEEP_INTERVAL_SECS)?,
            poll_interval: env.secs(POLL_INTERVAL_SECS)?,
            default_country_code: env.country_code()?,
            internal_token: InternalToken::from_env(&env)?,
            storage: None,
        };
        let storage = match (env.get(STORAGE_EMULATOR_HOST.name), &config.backend) {
            (Some(host), _) => Some(Storage::emulator(&host)),
            (
                None,
                Backend::Firestore(FirestoreSettings {
                    credentials: Some(key),
                    ..
                }),
            ) => Some(Storage::with_key(key)),
            (None, _) => None,
        };
        let config = Config { storage, ..config };
        if config.send_timeout.is_zero() || config.send_timeout >= config.lease {
            return Err(ConfigError::new(
                SEND_TIMEOUT_SECS.name,
                &config.send_timeout.as_secs().to_string(),
                format!(
                    "must be above 0 and below {} ({}), so a lease never expires during a send",
                    LEASE_SECS.name,
                    config.lease.as_secs()
                ),
            ));
        }
        if config.max_attempts == 0 {
            return Err(ConfigError::new(
                MAX_ATTEMPTS.name,
                "0",
                "must be at least 1",
            ));
        }
        for (var, value) in [
            (SWEEP_INTERVAL_SECS, config.sweep_interval),
            (POLL_INTERVAL_SECS, config.poll_interval),
        ] {
            if value.is_zero() {
                return Err(ConfigError::new(var.name, "0", "must be at least 1"));
            }
        }
        Ok(config)
    }

    pub fn log(&self) {
        tracing::info!(
            addr = %self.addr,
            backend = ?self.backend,
            data_dir = %self.data_dir.display(),
            accounts = %self
                .gateways
                .iter()
                .map(|g| format!("{}={}", g.account, g.url))
                .collect::<Vec<_>>()
                .join(","),
            logger_url = %self.logger_url,
            owner = %self.owner,
            lease_secs = self.lease.as_secs(),
            send_timeout_secs = self.send_timeout.as_secs(),
            max_attempts = self.max_attempts,
            backoff_base_secs = self.backoff_base.as_secs(),
            backoff_max_secs = self.backoff_max.as_secs(),
            rate_limit_delay_secs = self.rate_limit_delay.as_secs(),
            sweep_interval_secs = self.sweep_interval.as_secs(),
            poll_interval_secs = self.poll_interval.as_secs(),
            default_country_code = %self.default_country_code,
            "configuration"
        );
        abtrack_proto::token::log_startup(self.internal_token.as_ref(), Some(self.addr));
    }
}

fn default_owner() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "dispatcher".into());
    format!("{host}-{}", std::process::id())
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
    fn defaults_keep_the_send_inside_the_lease() {
        let c = config(&[]).unwrap();
        assert!(c.send_timeout < c.lease);
        assert_eq!(c.backend, Backend::Local);
        assert_eq!(
            c.gateways,
            [Gateway {
                account: "default".into(),
                url: "http://127.0.0.1:50052".into()
            }]
        );
    }

    #[test]
    fn several_accounts_each_name_their_gateway() {
        let c = config(&[(
            "DISPATCHER_ACCOUNTS",
            " sd-harapan=http://127.0.0.1:50052/, smp-2=http://10.8.0.7:50052 ",
        )])
        .unwrap();
        let listed: Vec<(&str, &str)> = c
            .gateways
            .iter()
            .map(|g| (g.account.as_str(), g.url.as_str()))
            .collect();
        assert_eq!(
            listed,
            [
                ("sd-harapan", "http://127.0.0.1:50052"),
                ("smp-2", "http://10.8.0.7:50052")
            ]
        );
        for (pairs, reason) in [
            (
                &[("DISPATCHER_ACCOUNTS", "sd-harapan")][..],
                "\"sd-harapan\" is not name=URL",
            ),
            (
                &[("DISPATCHER_ACCOUNTS", "SD=http://a:1")],
                "account name \"SD\": use lowercase",
            ),
            (
                &[("DISPATCHER_ACCOUNTS", "a=ftp://a:1")],
                "a: expected a URL",
            ),
            (
                &[("DISPATCHER_ACCOUNTS", "a=http://a:1,a=http://b:1")],
                "account \"a\" is listed twice",
            ),
            (
                &[("DISPATCHER_ACCOUNTS", "a=http://a:1,b=http://a:1")],
                "a and b have the same gateway http://a:1",
            ),
            (&[("DISPATCHER_ACCOUNTS", ",")], "lists no account"),
            (
                &[
                    ("DISPATCHER_ACCOUNTS", "a=http://a:1"),
                    ("DISPATCHER_GATEWAY_URL", "http://b:1"),
                ],
                "set it or DISPATCHER_GATEWAY_URL, not both",
            ),
        ] {
            let err = config(pairs).unwrap_err();
            assert_eq!(err.name, "DISPATCHER_ACCOUNTS", "{pairs:?}");
            assert!(err.reason.starts_with(reason), "{pairs:?}: {}", err.reason);
        }
    }

    #[test]
    fn the_defaults_in_help_are_the_ones_used() {
        // The Firestore variables are read only once Firestore is configured, which
        // the emulator does without a credential file.
        for base in [&[][..], &[(FIRESTORE_EMULATOR_HOST.name, "127.0.0.1:8081")]] {
            config::assert_defaults_are_used(
                VARS,
                &[CREDENTIALS, FIRESTORE_PROJECT_ID, ID],
                base,
                |lookup| Config::from_lookup(lookup),
            );
        }
    }

    #[test]
    fn a_send_timeout_as_long_as_the_lease_is_refused() {
        let err = config(&[
            ("DISPATCHER_LEASE_SECS", "30"),
            ("DISPATCHER_SEND_TIMEOUT_SECS", "30"),
        ])
        .unwrap_err();
        assert_eq!(err.name, "DISPATCHER_SEND_TIMEOUT_SECS");
        assert_eq!(config(&[("QUEUE", "redis")]).unwrap_err().name, "QUEUE");
        assert_eq!(
            config(&[("DISPATCHER_MAX_ATTEMPTS", "0")])
                .unwrap_err()
                .name,
            "DISPATCHER_MAX_ATTEMPTS"
        );
        assert_eq!(
            config(&[("DISPATCHER_GATEWAY_URL", "localhost:1")])
                .unwrap_err()
                .name,
            "DISPATCHER_GATEWAY_URL"
        );
    }

    #[test]
    fn what_becomes_of_finished_documents_is_checked() {
        let emulator = (FIRESTORE_EMULATOR_HOST.name, "127.0.0.1:8081");
        let finished = |pairs: &[(&str, &str)]| {
            let mut all = vec![emulator];
            all.extend_from_slice(pairs);
            config(&all).map(|c| match c.backend {
                Backend::Firestore(f) => f.finished,
                Backend::Local => unreachable!("the emulator makes it Firestore"),
            })
        };
        assert_eq!(finished(&[]), Ok(Finished::Keep));
        assert_eq!(
            finished(&[("FIRESTORE_FINISHED", "delete")]),
            Ok(Finished::Delete)
        );
        assert_eq!(
            finished(&[
                ("FIRESTORE_FINISHED", "move"),
                ("FIRESTORE_FINISHED_COLLECTION", "done")
            ]),
            Ok(Finished::Move("done".into()))
        );
        for (pairs, var) in [
            (&[("FIRESTORE_FINISHED", "move")][..], "FIRESTORE_FINISHED"),
            (&[("FIRESTORE_FINISHED", "archive")], "FIRESTORE_FINISHED"),
            (
                &[
                    ("FIRESTORE_FINISHED", "move"),
                    ("FIRESTORE_FINISHED_COLLECTION", "notifications"),
                ],
                "FIRESTORE_FINISHED_COLLECTION",
            ),
            (
                &[("FIRESTORE_FINISHED_COLLECTION", "done")],
                "FIRESTORE_FINISHED_COLLECTION",
            ),
        ] {
            assert_eq!(finished(pairs).unwrap_err().name, var, "{pairs:?}");
        }
    }

    #[test]
    fn a_malformed_key_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("credentials.json");
        let key_str = key.to_str().unwrap();
        std::fs::write(&key, "{\"type\": \"service_account\",").unwrap();
        let err = config(&[("GOOGLE_APPLICATION_CREDENTIALS", key_str)]).unwrap_err();
        assert_eq!(err.name, "GOOGLE_APPLICATION_CREDENTIALS");
        assert!(err.reason.contains("is not valid JSON"), "{err}");
        std::fs::write(&key, "[]").unwrap();
        let err = config(&[("GOOGLE_APPLICATION_CREDENTIALS", key_str)]).unwrap_err();
        assert!(err.reason.contains("not a JSON object"), "{err}");
        std::fs::write(&key, "{\"project_id\": \"school-1\"}").unwrap();
        let c = config(&[("GOOGLE_APPLICATION_CREDENTIALS", key_str)]).unwrap();
        assert!(matches!(c.backend, Backend::Firestore(ref f) if f.project_id == "school-1"));
    }
}
