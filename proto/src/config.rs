//! Reading configuration from the environment through a lookup function, so tests pass
//! a map, plus the `--help` text and the exit code every service uses for bad input.

use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Duration;

/// The exit code for bad configuration or usage (`EX_USAGE`).
pub const EXIT_USAGE: i32 = 64;

/// The country code of local numbers, read by the dispatcher (to check jobs) and
/// the gateway (to send them).
pub const COUNTRY_CODE: Var = Var {
    name: "WA_DEFAULT_COUNTRY_CODE",
    default: crate::phone::DEFAULT_COUNTRY_CODE,
    help: "country calling code of local numbers (written with or without their trunk 0); the dispatcher and the wa-gateway read the same variable",
};

/// One environment variable a service reads.
#[derive(Debug, Clone, Copy)]
pub struct Var {
    pub name: &'static str,
    /// Shown in `--help`; empty when there is none.
    pub default: &'static str,
    pub help: &'static str,
}

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{name}={value:?} is invalid: {reason}")]
pub struct ConfigError {
    pub name: String,
    pub value: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(name: &str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Reads typed values through a lookup function; empty values count as unset.
pub struct Env<F> {
    lookup: F,
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    pub fn new(lookup: F) -> Self {
        Self { lookup }
    }

    /// The value exactly as set, untrimmed, even when empty: for values where an
    /// empty or blank setting is a mistake rather than "the default".
    pub fn raw(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    /// The value when set and not blank.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_owned())
    }

    pub fn parse<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|e: T::Err| ConfigError::new(name, &raw, e.to_string())),
        }
    }

    /// A duration given in whole milliseconds.
    pub fn millis(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        let ms: u64 = self.parse(name, default.as_millis() as u64)?;
        Ok(Duration::from_millis(ms))
    }

    /// A duration given in whole seconds.
    pub fn secs(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        let secs: u64 = self.parse(name, default.as_secs())?;
        Ok(Duration::from_secs(secs))
    }

    pub fn bool(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => match raw.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::new(name, &raw, "expected true or false")),
            },
        }
    }

    /// A `host:port` socket address.
    pub fn addr(&self, name: &str, default: &str) -> Result<std::net::SocketAddr, ConfigError> {
        let raw = self.string(name, default);
        raw.parse()
            .map_err(|_| ConfigError::new(name, &raw, "expected an address like 127.0.0.1:8080"))
    }

    /// [`COUNTRY_CODE`]: the calling code of local numbers, one libphonenumber
    /// knows. The gateway and the dispatcher read the same variable, so a number the
    /// dispatcher accepts is one the gateway can send to.
    pub fn country_code(&self) -> Result<String, ConfigError> {
        let var = COUNTRY_CODE;
        let code = self.string(var.name, var.default).trim().to_owned();
        let digits = (1..=3).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit());
        if digits && crate::phone::is_calling_code(&code) {
            Ok(code)
        } else {
            Err(ConfigError::new(
                var.name,
                &code,
                "expected a country calling code, e.g. 62 for Indonesia or 60 for Malaysia",
            ))
        }
    }

    /// An `http://host:port` URL of another service.
    pub fn url(&self, name: &str, default: &str) -> Result<String, ConfigError> {
        let raw = self.string(name, default);
        let rest = raw
            .strip_prefix("http://")
            .or_else(|| raw.strip_prefix("https://"));
        match rest {
            Some(rest) if !rest.is_empty() && !rest.contains(char::is_whitespace) => {
                Ok(raw.trim_end_matches('/').to_owned())
            }
            _ => Err(ConfigError::new(
                name,
                &raw,
                "expected a URL like http://127.0.0.1:50051",
            )),
        }
    }
}

/// What the command line asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run,
    Help,
    Version,
    /// Checks another running instance over grpc.health.v1 and exits 0 when it serves.
    Healthcheck,
}

/// Parses the arguments every service accepts: none, `--help`, `--version`,
/// `healthcheck`.
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let args: Vec<String> = args.into_iter().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => Ok(Command::Run),
        ["-h" | "--help" | "help"] => Ok(Command::Help),
        ["-V" | "--version"] => Ok(Command::Version),
        ["healthcheck"] => Ok(Command::Healthcheck),
        other => Err(format!(
            "unexpected arguments {other:?}; run with --help to see the usage"
        )),
    }
}

/// The `--help` text: what the service does and every variable it reads.
pub fn help_text(binary: &str, about: &str, vars: &[Var]) -> String {
    let mut out = format!(
        "{binary} {}\n{about}\n\nUSAGE:\n    {binary}               run the service\n    {binary} healthcheck   exit 0 when the running service answers its health check\n    {binary} --version     the version\n    {binary} --help        this text\n\nENVIRONMENT (unset or empty means the default):\n",
        env!("CARGO_PKG_VERSION")
    );
    for var in vars.iter().chain(COMMON_VARS) {
        let _ = writeln!(out, "    {}", var.name);
        let _ = writeln!(out, "        {}", var.help);
        if !var.default.is_empty() {
            let _ = writeln!(out, "        default: {}", var.default);
        }
    }
    out
}

/// Variables every service reads.
pub const COMMON_VARS: &[Var] = &[
    Var {
        name: "RUST_LOG",
        default: "info",
        help: "log filter, e.g. debug or dispatcher=debug,info",
    },
    Var {
        name: "LOG_FORMAT",
        default: "text",
        help: "text, or json for one JSON object per line",
    },
    crate::token::VAR,
];

/// Prints one line on stderr and exits with [`EXIT_USAGE`].
pub fn exit_usage(binary: &str, message: impl std::fmt::Display) -> ! {
    eprintln!("{binary}: {message}");
    std::process::exit(EXIT_USAGE)
}

/// What every binary does first: answers `--help` and `--version` and exits, and
/// reads the configuration, exiting with [`EXIT_USAGE`] and one line on stderr when
/// it is bad. Returns what to do (run or healthcheck) and the configuration.
pub fn startup<C>(
    binary: &str,
    about: &str,
    vars: &[Var],
    load: impl FnOnce() -> Result<C, ConfigError>,
) -> (Command, C) {
    let command = parse_args(std::env::args()).unwrap_or_else(|e| exit_usage(binary, e));
    match command {
        Command::Help => {
            print!("{}", help_text(binary, about, vars));
            std::process::exit(0)
        }
        Command::Version => {
            println!("{binary} {}", env!("CARGO_PKG_VERSION"));
            std::process::exit(0)
        }
        Command::Run | Command::Healthcheck => {}
    }
    let config =
        load().unwrap_or_else(|e| exit_usage(binary, format!("invalid configuration: {e}")));
    (command, config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Env<impl Fn(&str) -> Option<String>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Env::new(move |k| map.get(k).cloned())
    }

    #[test]
    fn blank_values_fall_back_to_the_default() {
        let env = env(&[("A", "  "), ("B", " 7 ")]);
        assert_eq!(env.parse::<u32>("A", 3), Ok(3));
        assert_eq!(env.parse::<u32>("B", 3), Ok(7));
        assert_eq!(env.string("MISSING", "x"), "x");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let env = env(&[("N", "ten"), ("U", "ftp://x"), ("F", "maybe")]);
        let err = env.parse::<u32>("N", 1).unwrap_err();
        assert!(err.to_string().starts_with("N=\"ten\" is invalid"), "{err}");
        assert!(env.url("U", "http://a:1").is_err());
        assert!(env.bool("F", true).is_err());
        assert_eq!(env.url("V", "http://a:1/").unwrap(), "http://a:1");
    }

    #[test]
    fn arguments() {
        let args = |a: &[&str]| parse_args(a.iter().map(|s| (*s).to_owned()));
        assert_eq!(args(&["bin"]), Ok(Command::Run));
        assert_eq!(args(&["bin", "--help"]), Ok(Command::Help));
        assert_eq!(args(&["bin", "healthcheck"]), Ok(Command::Healthcheck));
        assert!(args(&["bin", "--frobnicate"]).is_err());
    }
}
