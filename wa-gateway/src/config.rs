//! The gateway's configuration, read from `WA_*` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use abtrack_proto::config::{self, ConfigError, Env, Var};
use abtrack_proto::token::InternalToken;

pub const VARS: &[Var] = &[
    Var {
        name: "WA_ADDR",
        default: "127.0.0.1:50052",
        help: "gRPC listen address",
    },
    Var {
        name: "WA_MODE",
        default: "whatsapp",
        help: "whatsapp: the real WhatsApp session (linked by QR or pair code); dry-run: accept messages and append them to WA_DRY_RUN_FILE, nothing reaches WhatsApp",
    },
    Var {
        name: "WA_DATA_DIR",
        default: "data/wa-gateway",
        help: "folder for the send log (job id -> message id) and the session",
    },
    Var {
        name: "WA_SERVER_URL",
        default: "wss://web.whatsapp.com/ws/chat",
        help: "whatsapp mode: the WebSocket address of the WhatsApp server (tests point it at a local server)",
    },
    Var {
        name: "WA_CLIENT_VERSION",
        default: "",
        help: "whatsapp mode: WhatsApp Web version to announce, e.g. 2.3000.1023456789; empty fetches the current one from web.whatsapp.com once a day",
    },
    Var {
        name: "WA_RECONNECT_MIN_MS",
        default: "1000",
        help: "whatsapp mode: first reconnect delay; each failure doubles it, with random jitter",
    },
    Var {
        name: "WA_RECONNECT_MAX_MS",
        default: "60000",
        help: "whatsapp mode: longest reconnect delay",
    },
    Var {
        name: "WA_SERVER_ACK_TIMEOUT_MS",
        default: "15000",
        help: "whatsapp mode: how long a send waits for WhatsApp's server to acknowledge the message (and a number check for its answer); without an answer it is sent once more under the same message id, then the job fails with no_server_ack",
    },
    Var {
        name: "WA_DELIVERY_TIMEOUT_SECS",
        default: "3600",
        help: "a sent message without a delivery receipt after this long is flagged on its job (deliveryOverdue) and counted on the dashboard; a later receipt still moves it on; 0: never flagged",
    },
    Var {
        name: "WA_PRINT_QR",
        default: "true",
        help: "whatsapp mode: also print each QR code in the terminal (stderr) as a block to scan",
    },
    Var {
        name: "WA_DRY_RUN_FILE",
        default: "<WA_DATA_DIR>/dry-run.jsonl",
        help: "dry-run mode: the JSONL file every accepted message is appended to",
    },
    Var {
        name: "WA_DRY_RUN_NOT_ON_WHATSAPP",
        default: "",
        help: "dry-run mode: comma-separated numbers to report as not on WhatsApp",
    },
    Var {
        name: "WA_DRY_RUN_RECEIPTS",
        default: "false",
        help: "dry-run mode: emit a delivery and a read receipt shortly after each message",
    },
    Var {
        name: "WA_DRY_RUN_ANSWER_DELAY_MS",
        default: "0",
        help: "dry-run mode, crash tests only: wait this long after writing a message, before the send log records it as sent and before answering",
    },
    config::COUNTRY_CODE,
    Var {
        name: "WA_MIN_INTERVAL_MS",
        default: "3000",
        help: "pacing: least time between two sends from this account (0 allowed)",
    },
    Var {
        name: "WA_JITTER_MS",
        default: "2000",
        help: "pacing: random extra wait, up to this much, added to each interval (0 allowed)",
    },
    Var {
        name: "WA_DAILY_CAP",
        default: "0",
        help: "pacing: most sends in any 24 hours; 0 means no cap",
    },
    Var {
        name: "WA_ANSWER_DELAY_MS",
        default: "0",
        help: "crash tests only, both modes: wait this long after a message is sent and recorded in the send log, before answering the caller",
    },
    Var {
        name: "WA_CHECK_CACHE_SECS",
        default: "21600",
        help: "how long an is-on-WhatsApp answer is reused",
    },
];

/// How the gateway talks to WhatsApp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Messages are appended to a JSONL file; nothing is sent.
    DryRun,
    /// The real WhatsApp session through `whatsapp-rust`.
    WhatsApp,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub mode: Mode,
    pub data_dir: PathBuf,
    pub server_url: Option<String>,
    pub client_version: Option<(u32, u32, u32)>,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub server_ack_timeout: Duration,
    /// `None`: never flagged.
    pub delivery_timeout: Option<Duration>,
    pub print_qr: bool,
    pub dry_run_file: PathBuf,
    pub dry_run_not_on_whatsapp: Vec<String>,
    pub dry_run_receipts: bool,
    pub dry_run_answer_delay: Duration,
    pub default_country_code: String,
    pub min_interval: Duration,
    pub jitter: Duration,
    pub daily_cap: u32,
    pub check_cache_ttl: Duration,
    /// Required from callers.
    pub internal_token: Option<InternalToken>,
    pub answer_delay: Duration,
}

impl Config {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::new(lookup);
        let mode = match env.string("WA_MODE", "whatsapp").as_str() {
            "whatsapp" => Mode::WhatsApp,
            "dry-run" => Mode::DryRun,
            other => {
                return Err(ConfigError::new(
                    "WA_MODE",
                    other,
                    "expected whatsapp or dry-run",
                ));
            }
        };
        let server_url = env.get("WA_SERVER_URL").filter(|s| !s.trim().is_empty());
        if let Some(url) = &server_url
            && !(url.starts_with("ws://") || url.starts_with("wss://"))
        {
            return Err(ConfigError::new(
                "WA_SERVER_URL",
                url,
                "expected a ws:// or wss:// address",
            ));
        }
        let client_version = match env
            .get("WA_CLIENT_VERSION")
            .filter(|s| !s.trim().is_empty())
        {
            None => None,
            Some(raw) => Some(parse_version(&raw).ok_or_else(|| {
                ConfigError::new(
                    "WA_CLIENT_VERSION",
                    &raw,
                    "expected three numbers separated by dots, e.g. 2.3000.1023456789",
                )
            })?),
        };
        let reconnect_min = env.millis("WA_RECONNECT_MIN_MS", Duration::from_secs(1))?;
        let reconnect_max = env.millis("WA_RECONNECT_MAX_MS", Duration::from_secs(60))?;
        if reconnect_min.is_zero() {
            return Err(ConfigError::new(
                "WA_RECONNECT_MIN_MS",
                "0",
                "expected at least 1 millisecond",
            ));
        }
        if reconnect_max < reconnect_min {
            return Err(ConfigError::new(
                "WA_RECONNECT_MAX_MS",
                &reconnect_max.as_millis().to_string(),
                "must not be less than WA_RECONNECT_MIN_MS",
            ));
        }
        let data_dir = PathBuf::from(env.string("WA_DATA_DIR", "data/wa-gateway"));
        let dry_run_file = env
            .get("WA_DRY_RUN_FILE")
            .map_or_else(|| data_dir.join("dry-run.jsonl"), PathBuf::from);
        let default_country_code = env.country_code()?;
        let not_on_whatsapp = env
            .string("WA_DRY_RUN_NOT_ON_WHATSAPP", "")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                abtrack_proto::normalize_recipient(s, &default_country_code)
                    .map(|jid| jid.to_string())
                    .map_err(|e| ConfigError::new("WA_DRY_RUN_NOT_ON_WHATSAPP", s, e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let server_ack_timeout = env.millis("WA_SERVER_ACK_TIMEOUT_MS", Duration::from_secs(15))?;
        if server_ack_timeout.is_zero() {
            return Err(ConfigError::new(
                "WA_SERVER_ACK_TIMEOUT_MS",
                "0",
                "must be above 0: a send waits for WhatsApp's answer",
            ));
        }
        Ok(Self {
            addr: env.addr("WA_ADDR", "127.0.0.1:50052")?,
            mode,
            server_url,
            client_version,
            reconnect_min,
            reconnect_max,
            server_ack_timeout,
            delivery_timeout: Some(
                env.secs("WA_DELIVERY_TIMEOUT_SECS", Duration::from_secs(3600))?,
            )
            .filter(|t| !t.is_zero()),
            print_qr: env.bool("WA_PRINT_QR", true)?,
            data_dir,
            dry_run_file,
            dry_run_not_on_whatsapp: not_on_whatsapp,
            dry_run_receipts: env.bool("WA_DRY_RUN_RECEIPTS", false)?,
            dry_run_answer_delay: env.millis("WA_DRY_RUN_ANSWER_DELAY_MS", Duration::ZERO)?,
            default_country_code,
            min_interval: env.millis("WA_MIN_INTERVAL_MS", Duration::from_secs(3))?,
            jitter: env.millis("WA_JITTER_MS", Duration::from_secs(2))?,
            daily_cap: env.parse("WA_DAILY_CAP", 0)?,
            check_cache_ttl: env.secs("WA_CHECK_CACHE_SECS", Duration::from_secs(6 * 3600))?,
            internal_token: InternalToken::from_env(&env)?,
            answer_delay: env.millis("WA_ANSWER_DELAY_MS", Duration::ZERO)?,
        })
    }

    /// Logs every chosen value once at start.
    pub fn log(&self) {
        tracing::info!(
            addr = %self.addr,
            mode = ?self.mode,
            data_dir = %self.data_dir.display(),
            server_url = self.server_url.as_deref().unwrap_or("(the library's default)"),
            client_version = ?self.client_version,
            reconnect_min_ms = self.reconnect_min.as_millis() as u64,
            reconnect_max_ms = self.reconnect_max.as_millis() as u64,
            server_ack_timeout_ms = self.server_ack_timeout.as_millis() as u64,
            delivery_timeout_secs = self.delivery_timeout.map_or(0, |t| t.as_secs()),
            print_qr = self.print_qr,
            dry_run_file = %self.dry_run_file.display(),
            dry_run_receipts = self.dry_run_receipts,
            default_country_code = %self.default_country_code,
            min_interval_ms = self.min_interval.as_millis() as u64,
            jitter_ms = self.jitter.as_millis() as u64,
            daily_cap = self.daily_cap,
            check_cache_secs = self.check_cache_ttl.as_secs(),
            answer_delay_ms = self.answer_delay.as_millis() as u64,
            "configuration"
        );
        abtrack_proto::token::log_startup(self.internal_token.as_ref(), Some(self.addr));
    }
}

/// Parses `2.3000.1023456789`.
fn parse_version(raw: &str) -> Option<(u32, u32, u32)> {
    let mut parts = raw.trim().split('.').map(|p| p.parse::<u32>().ok());
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
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
    fn defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.addr.port(), 50052);
        assert_eq!(c.mode, Mode::WhatsApp);
        assert_eq!(c.server_url, None);
        assert_eq!(c.reconnect_min, Duration::from_secs(1));
        assert_eq!(c.reconnect_max, Duration::from_secs(60));
        assert_eq!(
            c.dry_run_file,
            PathBuf::from("data/wa-gateway/dry-run.jsonl")
        );
        assert_eq!(c.min_interval, Duration::from_secs(3));
        assert_eq!(c.daily_cap, 0);
        assert_eq!(c.answer_delay, Duration::ZERO);
        assert_eq!(c.dry_run_answer_delay, Duration::ZERO);
    }

    #[test]
    fn rejects_bad_values_by_name() {
        assert_eq!(
            config(&[("WA_MODE", "carrier-pigeon")]).unwrap_err().name,
            "WA_MODE"
        );
        assert_eq!(
            config(&[("WA_SERVER_URL", "http://x")]).unwrap_err().name,
            "WA_SERVER_URL"
        );
        assert_eq!(
            config(&[("WA_CLIENT_VERSION", "2.3000")]).unwrap_err().name,
            "WA_CLIENT_VERSION"
        );
        assert_eq!(
            config(&[
                ("WA_RECONNECT_MIN_MS", "5000"),
                ("WA_RECONNECT_MAX_MS", "10")
            ])
            .unwrap_err()
            .name,
            "WA_RECONNECT_MAX_MS"
        );
        assert_eq!(
            config(&[("WA_DEFAULT_COUNTRY_CODE", "0")])
                .unwrap_err()
                .name,
            "WA_DEFAULT_COUNTRY_CODE"
        );
        assert_eq!(
            config(&[("WA_MIN_INTERVAL_MS", "-1")]).unwrap_err().name,
            "WA_MIN_INTERVAL_MS"
        );
        assert_eq!(
            config(&[("WA_DRY_RUN_NOT_ON_WHATSAPP", "0812,abc")])
                .unwrap_err()
                .name,
            "WA_DRY_RUN_NOT_ON_WHATSAPP"
        );
    }

    #[test]
    fn not_on_whatsapp_numbers_are_normalised() {
        let c = config(&[(
            "WA_DRY_RUN_NOT_ON_WHATSAPP",
            "0812-0000-0000, +6281111111111",
        )])
        .unwrap();
        assert_eq!(
            c.dry_run_not_on_whatsapp,
            vec![
                "6281200000000@s.whatsapp.net",
                "6281111111111@s.whatsapp.net"
            ]
        );
    }
}
