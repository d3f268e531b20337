//! status-web's configuration, read from `STATUS_WEB_*` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;

use abtrack_proto::account::Gateway;
use abtrack_proto::config::{ConfigError, Env, Var};
use abtrack_proto::token::InternalToken;

use crate::boundary::AllowedHost;

/// Every variable status-web reads, in `--help` order. Each is a constant below that
/// the parsing reads too, so `--help` shows the name and default in use.
pub const VARS: &[Var] = &[
    ADDR,
    DISPATCHER_URL,
    GATEWAY_URL,
    ACCOUNTS,
    LOGGER_URL,
    PASSWORD,
    ALLOWED_HOSTS,
    API_KEY,
    FULL_NUMBERS,
    LAUNCHER_FILE,
];

pub const ADDR: Var = abtrack_proto::addrs::STATUS_WEB_ADDR;

pub const DISPATCHER_URL: Var = abtrack_proto::addrs::STATUS_WEB_DISPATCHER_URL;

pub const GATEWAY_URL: Var = abtrack_proto::addrs::STATUS_WEB_GATEWAY_URL;

pub const LOGGER_URL: Var = abtrack_proto::addrs::STATUS_WEB_LOGGER_URL;

/// Unset: one account, named `default`, at [`GATEWAY_URL`].
pub const ACCOUNTS: Var = Var {
    name: "STATUS_WEB_ACCOUNTS",
    default: "",
    help: "several WhatsApp accounts, each name=gateway URL, comma-separated, the default account first (as DISPATCHER_ACCOUNTS); the dashboard shows each; unset: one account, default, at STATUS_WEB_GATEWAY_URL",
};

pub const PASSWORD: Var = Var {
    name: "STATUS_WEB_PASSWORD",
    default: "",
    help: "dashboard password (at least 8 characters); without it there is no login and STATUS_WEB_ADDR must be a loopback address",
};

pub const ALLOWED_HOSTS: Var = Var {
    name: "STATUS_WEB_ALLOWED_HOSTS",
    default: "",
    help: "more names the dashboard answers to, comma-separated (`notify.school.example`, `pc-tu:8080`): the names people type to reach it over the network or through a reverse proxy; loopback names and IP addresses on the listen port need none",
};

pub const API_KEY: Var = Var {
    name: "STATUS_WEB_API_KEY",
    default: "",
    help: "key for API clients, sent as `Authorization: Bearer <key>` (at least 16 characters); only used with STATUS_WEB_PASSWORD",
};

pub const FULL_NUMBERS: Var = Var {
    name: "STATUS_WEB_FULL_NUMBERS",
    default: "false",
    help: "show full phone numbers in one job's view and in CSV exports (everywhere else, and in logs, they stay masked)",
};

pub const LAUNCHER_FILE: Var = abtrack_proto::addrs::LAUNCHER_FILE;

const MIN_PASSWORD: usize = 8;
const MIN_API_KEY: usize = 16;

#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub dispatcher_url: String,
    /// Each account and its gateway's URL, the default account first.
    pub gateways: Vec<Gateway>,
    pub logger_url: String,
    /// `None`: no login, loopback only.
    pub password: Option<String>,
    pub api_key: Option<String>,
    /// Names the dashboard answers to beyond its own address and loopback.
    pub allowed_hosts: Vec<AllowedHost>,
    /// Sent to the three gRPC services.
    pub internal_token: Option<InternalToken>,
    /// The launcher's record of restarts, read every 2 s; `None`: no launcher.
    pub launcher_file: Option<PathBuf>,
    /// Full numbers in one job's view and in exports.
    pub full_numbers: bool,
}

impl Config {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::new(lookup);
        let addr = env.addr(ADDR)?;
        let password = env.get(PASSWORD.name);
        if let Some(p) = &password
            && p.chars().count() < MIN_PASSWORD
        {
            return Err(ConfigError::new(
                PASSWORD.name,
                "****",
                format!("must be at least {MIN_PASSWORD} characters"),
            ));
        }
        let api_key = env.get(API_KEY.name);
        if let Some(k) = &api_key
            && k.chars().count() < MIN_API_KEY
        {
            return Err(ConfigError::new(
                API_KEY.name,
                "****",
                format!("must be at least {MIN_API_KEY} characters"),
            ));
        }
        if api_key.is_some() && password.is_none() {
            return Err(ConfigError::new(
                API_KEY.name,
                "****",
                format!(
                    "needs {} too: without a password there is no authentication at all",
                    PASSWORD.name
                ),
            ));
        }
        if password.is_none() && !addr.ip().is_loopback() {
            return Err(ConfigError::new(
                ADDR.name,
                &addr.to_string(),
                format!(
                    "without {password} the dashboard shows the WhatsApp QR code to anyone, so it only listens on loopback (127.0.0.1 or [::1]); set {password}",
                    password = PASSWORD.name
                ),
            ));
        }
        let allowed_hosts = env
            .string(ALLOWED_HOSTS)
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                AllowedHost::parse(entry)
                    .map_err(|reason| ConfigError::new(ALLOWED_HOSTS.name, entry, reason))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            addr,
            allowed_hosts,
            dispatcher_url: env.grpc_url(DISPATCHER_URL)?,
            gateways: env.gateways(ACCOUNTS, GATEWAY_URL)?,
            logger_url: env.grpc_url(LOGGER_URL)?,
            password,
            api_key,
            internal_token: InternalToken::from_env(&env)?,
            launcher_file: Some(env.string(LAUNCHER_FILE))
                .filter(|path| !path.is_empty())
                .map(PathBuf::from),
            full_numbers: env.bool(FULL_NUMBERS)?,
        })
    }

    pub fn log(&self) {
        tracing::info!(
            addr = %self.addr,
            dispatcher_url = %self.dispatcher_url,
            accounts = %self
                .gateways
                .iter()
                .map(|g| format!("{}={}", g.account, g.url))
                .collect::<Vec<_>>()
                .join(","),
            logger_url = %self.logger_url,
            password = if self.password.is_some() { "****" } else { "(none)" },
            api_key = if self.api_key.is_some() { "****" } else { "(none)" },
            allowed_hosts = %self
                .allowed_hosts
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            launcher_file = %self
                .launcher_file
                .as_ref()
                .map_or_else(|| "(none)".into(), |p| p.display().to_string()),
            full_numbers = self.full_numbers,
            "configuration"
        );
        abtrack_proto::token::log_startup(self.internal_token.as_ref(), None);
        if self.password.is_none() {
            tracing::warn!(
                addr = %self.addr,
                "no STATUS_WEB_PASSWORD: no login, so listening on loopback only; set STATUS_WEB_PASSWORD to serve other machines"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_in_help_are_the_ones_used() {
        abtrack_proto::config::assert_defaults_are_used(VARS, &[], &[], |lookup| {
            Config::from_lookup(lookup)
        });
    }

    #[test]
    fn defaults_and_errors() {
        let c = Config::from_lookup(|_| None).unwrap();
        assert_eq!(c.addr.port(), 8080);
        let err = Config::from_lookup(|k| (k == "STATUS_WEB_GATEWAY_URL").then(|| "nope".into()))
            .unwrap_err();
        assert_eq!(err.name, "STATUS_WEB_GATEWAY_URL");
    }

    #[test]
    fn the_launcher_file_is_optional() {
        assert_eq!(with(&[]).unwrap().launcher_file, None);
        assert_eq!(
            with(&[("STATUS_WEB_LAUNCHER_FILE", "  ")])
                .unwrap()
                .launcher_file,
            None
        );
        let c = with(&[("STATUS_WEB_LAUNCHER_FILE", "data/launcher.json")]).unwrap();
        assert_eq!(c.launcher_file, Some(PathBuf::from("data/launcher.json")));
    }

    fn with(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| {
            pairs
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn non_loopback_needs_a_password() {
        let err = with(&[("STATUS_WEB_ADDR", "0.0.0.0:8080")]).unwrap_err();
        assert_eq!(err.name, "STATUS_WEB_ADDR");
        assert!(err.reason.contains("STATUS_WEB_PASSWORD"), "{err}");
        assert!(with(&[("STATUS_WEB_ADDR", "[::1]:8080")]).is_ok());
        let c = with(&[
            ("STATUS_WEB_ADDR", "0.0.0.0:8080"),
            ("STATUS_WEB_PASSWORD", "long enough"),
        ])
        .unwrap();
        assert_eq!(c.password.as_deref(), Some("long enough"));
    }

    #[test]
    fn allowed_hosts_are_a_list_of_names() {
        let c = with(&[(
            "STATUS_WEB_ALLOWED_HOSTS",
            " notify.school.example , PC-TU:8080,",
        )])
        .unwrap();
        let names: Vec<String> = c.allowed_hosts.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["notify.school.example", "pc-tu:8080"]);
        let err =
            with(&[("STATUS_WEB_ALLOWED_HOSTS", "https://notify.school.example")]).unwrap_err();
        assert_eq!(err.name, "STATUS_WEB_ALLOWED_HOSTS");
        assert!(err.reason.contains("without http://"), "{err}");
    }

    #[test]
    fn secrets_are_checked_and_never_echoed() {
        let err = with(&[("STATUS_WEB_PASSWORD", "short")]).unwrap_err();
        assert_eq!(err.name, "STATUS_WEB_PASSWORD");
        assert!(!err.to_string().contains("short"));
        let err = with(&[("STATUS_WEB_API_KEY", "0123456789abcdef")]).unwrap_err();
        assert_eq!(err.name, "STATUS_WEB_API_KEY");
        let err = with(&[
            ("STATUS_WEB_PASSWORD", "long enough"),
            ("STATUS_WEB_API_KEY", "tiny"),
        ])
        .unwrap_err();
        assert_eq!(err.name, "STATUS_WEB_API_KEY");
    }
}
