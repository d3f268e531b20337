//! The gateway's configuration, read from `WA_*` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use abtrack_proto::config::{self, ConfigError, Env, Var};
use abtrack_proto::token::InternalToken;

/// Every variable the gateway reads, in `--help` order. Each is a constant below
/// that the parsing reads too, so `--help` shows the name and default in use.
pub const VARS: &[Var] = &[
    ADDR,
    ACCOUNT,
    MODE,
    DATA_DIR,
    SERVER_URL,
    CLIENT_VERSION,
    RECONNECT_MIN_MS,
    RECONNECT_MAX_MS,
    SERVER_ACK_TIMEOUT_MS,
    DELIVERY_TIMEOUT_SECS,
    PRINT_QR,
    DRY_RUN_FILE,
    DRY_RUN_NOT_ON_WHATSAPP,
    DRY_RUN_RECEIPTS,
    DRY_RUN_ANSWER_DELAY_MS,
    config::COUNTRY_CODE,
    MIN_INTERVAL_MS,
    JITTER_MS,
    DAILY_CAP,
    ANSWER_DELAY_MS,
    CHECK_CACHE_SECS,
    MEDIA_MAX_IMAGE_MB,
    MEDIA_MAX_DOCUMENT_MB,
    MEDIA_DOWNLOAD_TIMEOUT_SECS,
    MEDIA_MAX_REDIRECTS,
    MEDIA_ALLOW_HTTP,
    MEDIA_ALLOW_PRIVATE,
];

pub const ADDR: Var = abtrack_proto::addrs::WA_ADDR;

pub const ACCOUNT: Var = Var {
    name: "WA_ACCOUNT",
    default: abtrack_proto::account::DEFAULT,
    help: "the name of the WhatsApp account (number) this gateway holds: lowercase letters, digits and '-'; jobs naming this account are sent here",
};

pub const MODE: Var = Var {
    name: "WA_MODE",
    default: "whatsapp",
    help: "whatsapp: the real WhatsApp session (linked by QR or pair code); dry-run: accept messages and append them to WA_DRY_RUN_FILE, nothing reaches WhatsApp",
};

pub const DATA_DIR: Var = Var {
    name: "WA_DATA_DIR",
    default: "data/wa-gateway",
    help: "folder for the send log (job id -> message id) and the session",
};

/// Unset: the library connects to its own address, which is the default shown.
pub const SERVER_URL: Var = Var {
    name: "WA_SERVER_URL",
    default: whatsapp_rust::wacore::net::WHATSAPP_WEB_WS_URL,
    help: "whatsapp mode: the WebSocket address of the WhatsApp server (tests point it at a local server)",
};

pub const CLIENT_VERSION: Var = Var {
    name: "WA_CLIENT_VERSION",
    default: "",
    help: "whatsapp mode: WhatsApp Web version to announce, e.g. 2.3000.1023456789; empty fetches the current one from web.whatsapp.com once a day",
};

pub const RECONNECT_MIN_MS: Var = Var {
    name: "WA_RECONNECT_MIN_MS",
    default: "1000",
    help: "whatsapp mode: first reconnect delay; each failure doubles it, with random jitter",
};

pub const RECONNECT_MAX_MS: Var = Var {
    name: "WA_RECONNECT_MAX_MS",
    default: "60000",
    help: "whatsapp mode: longest reconnect delay",
};

pub const SERVER_ACK_TIMEOUT_MS: Var = Var {
    name: "WA_SERVER_ACK_TIMEOUT_MS",
    default: "15000",
    help: "whatsapp mode: how long a send waits for WhatsApp's server to acknowledge the message (and a number check for its answer); without an answer it is sent once more under the same message id, then the job fails with no_server_ack",
};

pub const DELIVERY_TIMEOUT_SECS: Var = Var {
    name: "WA_DELIVERY_TIMEOUT_SECS",
    default: "3600",
    help: "a sent message without a delivery receipt after this long is flagged on its job (deliveryOverdue) and counted on the dashboard; a later receipt still moves it on; 0: never flagged",
};

pub const PRINT_QR: Var = Var {
    name: "WA_PRINT_QR",
    default: "true",
    help: "whatsapp mode: also print each QR code in the terminal (stderr) as a block to scan",
};

/// Unset: `dry-run.jsonl` in the data folder, worked out from [`DATA_DIR`].
pub const DRY_RUN_FILE: Var = Var {
    name: "WA_DRY_RUN_FILE",
    default: "<WA_DATA_DIR>/dry-run.jsonl",
    help: "dry-run mode: the JSONL file every accepted message is appended to",
};

pub const DRY_RUN_NOT_ON_WHATSAPP: Var = Var {
    name: "WA_DRY_RUN_NOT_ON_WHATSAPP",
    default: "",
    help: "dry-run mode: comma-separated numbers to report as not on WhatsApp",
};

pub const DRY_RUN_RECEIPTS: Var = Var {
    name: "WA_DRY_RUN_RECEIPTS",
    default: "false",
    help: "dry-run mode: emit a delivery and a read receipt shortly after each message",
};

pub const DRY_RUN_ANSWER_DELAY_MS: Var = Var {
    name: "WA_DRY_RUN_ANSWER_DELAY_MS",
    default: "0",
    help: "dry-run mode, crash tests only: wait this long after writing a message, before the send log records it as sent and before answering",
};

pub const MIN_INTERVAL_MS: Var = Var {
    name: "WA_MIN_INTERVAL_MS",
    default: "3000",
    help: "pacing: least time between two sends from this account (0 allowed)",
};

pub const JITTER_MS: Var = Var {
    name: "WA_JITTER_MS",
    default: "2000",
    help: "pacing: random extra wait, up to this much, added to each interval (0 allowed)",
};

pub const DAILY_CAP: Var = Var {
    name: "WA_DAILY_CAP",
    default: "0",
    help: "pacing: most sends in any 24 hours; 0 means no cap",
};

pub const ANSWER_DELAY_MS: Var = Var {
    name: "WA_ANSWER_DELAY_MS",
    default: "0",
    help: "crash tests only, both modes: wait this long after a message is sent and recorded in the send log, before answering the caller",
};

pub const CHECK_CACHE_SECS: Var = Var {
    name: "WA_CHECK_CACHE_SECS",
    default: "21600",
    help: "how long an is-on-WhatsApp answer is reused",
};

/// How the gateway talks to WhatsApp.
pub const MEDIA_MAX_IMAGE_MB: Var = Var {
    name: "WA_MEDIA_MAX_IMAGE_MB",
    default: "16",
    help: "media: largest photo sent (MiB; WhatsApp's own limit); a larger image fails its job",
};

pub const MEDIA_MAX_DOCUMENT_MB: Var = Var {
    name: "WA_MEDIA_MAX_DOCUMENT_MB",
    default: "100",
    help: "media: largest document sent (MiB); a download that grows past it is stopped and its job fails",
};

pub const MEDIA_DOWNLOAD_TIMEOUT_SECS: Var = Var {
    name: "WA_MEDIA_DOWNLOAD_TIMEOUT_SECS",
    default: "120",
    help: "media: longest a media URL's download may take (a slower one is retried later)",
};

pub const MEDIA_MAX_REDIRECTS: Var = Var {
    name: "WA_MEDIA_MAX_REDIRECTS",
    default: "5",
    help: "media: most redirects a media URL may take",
};

pub const MEDIA_ALLOW_HTTP: Var = Var {
    name: "WA_MEDIA_ALLOW_HTTP",
    default: "false",
    help: "media: also fetch plain http:// URLs (otherwise only https://)",
};

pub const MEDIA_ALLOW_PRIVATE: Var = Var {
    name: "WA_MEDIA_ALLOW_PRIVATE",
    default: "false",
    help: "media: also fetch from loopback, private and link-local addresses (otherwise a job cannot make the gateway reach its neighbours)",
};

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
    pub account: String,
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
    pub media: MediaLimits,
}

/// What the gateway fetches for a job's media, and how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaLimits {
    pub max_image_bytes: u64,
    pub max_document_bytes: u64,
    pub download_timeout: Duration,
    pub max_redirects: usize,
    pub allow_http: bool,
    pub allow_private: bool,
}

impl Default for MediaLimits {
    fn default() -> Self {
        Self {
            max_image_bytes: 16 << 20,
            max_document_bytes: 100 << 20,
            download_timeout: Duration::from_secs(120),
            max_redirects: 5,
            allow_http: false,
            allow_private: false,
        }
    }
}

impl Config {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::new(lookup);
        let mode = match env.string(MODE).as_str() {
            "whatsapp" => Mode::WhatsApp,
            "dry-run" => Mode::DryRun,
            other => {
                return Err(ConfigError::new(
                    MODE.name,
                    other,
                    "expected whatsapp or dry-run",
                ));
            }
        };
        let server_url = env.get(SERVER_URL.name);
        if let Some(url) = &server_url
            && !(url.starts_with("ws://") || url.starts_with("wss://"))
        {
            return Err(ConfigError::new(
                SERVER_URL.name,
                url,
                "expected a ws:// or wss:// address",
            ));
        }
        let client_version = match env.get(CLIENT_VERSION.name) {
            None => None,
            Some(raw) => Some(parse_version(&raw).ok_or_else(|| {
                ConfigError::new(
                    CLIENT_VERSION.name,
                    &raw,
                    "expected three numbers separated by dots, e.g. 2.3000.1023456789",
                )
            })?),
        };
        let reconnect_min = env.millis(RECONNECT_MIN_MS)?;
        let reconnect_max = env.millis(RECONNECT_MAX_MS)?;
        if reconnect_min.is_zero() {
            return Err(ConfigError::new(
                RECONNECT_MIN_MS.name,
                "0",
                "expected at least 1 millisecond",
            ));
        }
        if reconnect_max < reconnect_min {
            return Err(ConfigError::new(
                RECONNECT_MAX_MS.name,
                &reconnect_max.as_millis().to_string(),
                format!("must not be less than {}", RECONNECT_MIN_MS.name),
            ));
        }
        let data_dir = PathBuf::from(env.string(DATA_DIR));
        let dry_run_file = env
            .get(DRY_RUN_FILE.name)
            .map_or_else(|| data_dir.join("dry-run.jsonl"), PathBuf::from);
        let default_country_code = env.country_code()?;
        let not_on_whatsapp = env
            .string(DRY_RUN_NOT_ON_WHATSAPP)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                abtrack_proto::normalize_recipient(s, &default_country_code)
                    .map(|jid| jid.to_string())
                    .map_err(|e| ConfigError::new(DRY_RUN_NOT_ON_WHATSAPP.name, s, e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let server_ack_timeout = env.millis(SERVER_ACK_TIMEOUT_MS)?;
        if server_ack_timeout.is_zero() {
            return Err(ConfigError::new(
                SERVER_ACK_TIMEOUT_MS.name,
                "0",
                "must be above 0: a send waits for WhatsApp's answer",
            ));
        }
        let account = env.string(ACCOUNT);
        abtrack_proto::account::check(&account)
            .map_err(|reason| ConfigError::new(ACCOUNT.name, &account, reason))?;
        Ok(Self {
            addr: env.addr(ADDR)?,
            account,
            mode,
            server_url,
            client_version,
            reconnect_min,
            reconnect_max,
            server_ack_timeout,
            delivery_timeout: Some(env.secs(DELIVERY_TIMEOUT_SECS)?).filter(|t| !t.is_zero()),
            print_qr: env.bool(PRINT_QR)?,
            data_dir,
            dry_run_file,
            dry_run_not_on_whatsapp: not_on_whatsapp,
            dry_run_receipts: env.bool(DRY_RUN_RECEIPTS)?,
            dry_run_answer_delay: env.millis(DRY_RUN_ANSWER_DELAY_MS)?,
            default_country_code,
            min_interval: env.millis(MIN_INTERVAL_MS)?,
            jitter: env.millis(JITTER_MS)?,
            daily_cap: env.value(DAILY_CAP)?,
            check_cache_ttl: env.secs(CHECK_CACHE_SECS)?,
            internal_token: InternalToken::from_env(&env)?,
            answer_delay: env.millis(ANSWER_DELAY_MS)?,
            media: media_limits(&env)?,
        })
    }

    /// Logs every chosen value once at start.
    pub fn log(&self) {
        tracing::info!(
            addr = %self.addr,
            account = %self.account,
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
            media = ?self.media,
            "configuration"
        );
        abtrack_proto::token::log_startup(self.internal_token.as_ref(), Some(self.addr));
    }
}

/// Parses `2.3000.1023456789`.
fn media_limits(env: &Env<impl Fn(&str) -> Option<String>>) -> Result<MediaLimits, ConfigError> {
    let mib = |var: Var| -> Result<u64, ConfigError> {
        let value: u64 = env.value(var)?;
        if value == 0 || value > 2048 {
            return Err(ConfigError::new(
                var.name,
                &value.to_string(),
                "expected 1 to 2048 (MiB)",
            ));
        }
        Ok(value << 20)
    };
    let download_timeout = env.secs(MEDIA_DOWNLOAD_TIMEOUT_SECS)?;
    if download_timeout.is_zero() {
        return Err(ConfigError::new(
            MEDIA_DOWNLOAD_TIMEOUT_SECS.name,
            "0",
            "must be at least 1",
        ));
    }
    Ok(MediaLimits {
        max_image_bytes: mib(MEDIA_MAX_IMAGE_MB)?,
        max_document_bytes: mib(MEDIA_MAX_DOCUMENT_MB)?,
        download_timeout,
        max_redirects: env.value(MEDIA_MAX_REDIRECTS)?,
        allow_http: env.bool(MEDIA_ALLOW_HTTP)?,
        allow_private: env.bool(MEDIA_ALLOW_PRIVATE)?,
    })
}

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
        assert_eq!(c.account, "default");
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
    fn the_defaults_in_help_are_the_ones_used() {
        config::assert_defaults_are_used(VARS, &[SERVER_URL, DRY_RUN_FILE], &[], |lookup| {
            Config::from_lookup(lookup)
        });
    }

    #[test]
    fn rejects_bad_values_by_name() {
        assert_eq!(
            config(&[("WA_ACCOUNT", "SD Harapan")]).unwrap_err().name,
            "WA_ACCOUNT"
        );
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
