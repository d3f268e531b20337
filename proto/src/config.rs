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

/// One environment variable a service reads: declared once, as a constant, so its
/// `--help` entry and its parsing share the name and the default.
#[derive(Debug, Clone, Copy)]
pub struct Var {
    pub name: &'static str,
    /// Shown in `--help`; empty when there is none. The typed [`Env`] readers parse it
    /// when the variable is unset, so what `--help` shows is what is used; a
    /// variable whose default is a description (`<hostname>-<pid>`) is read with
    /// [`Env::get`] and works its fallback out in code.
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
///
/// The readers that fall back to a default take the [`Var`], never a name and a
/// default of their own, so the fallback can only be the one `--help` shows.
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

    /// The value when set and not blank, without any default: for variables whose
    /// fallback is worked out in code.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// The value of `var`, or its default when unset.
    pub fn string(&self, var: Var) -> String {
        self.get(var.name).unwrap_or_else(|| var.default.to_owned())
    }

    /// Parses the value of `var`, or its default when unset, with the same parser.
    /// A default that does not parse is a bug rather than bad input, so it panics;
    /// each service's tests load every default (see [`assert_defaults_are_used`]).
    fn read<T>(
        &self,
        var: Var,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.get(var.name) {
            Some(raw) => parse(&raw).map_err(|reason| ConfigError::new(var.name, &raw, reason)),
            None => Ok(parse(var.default).unwrap_or_else(|reason| {
                panic!(
                    "the default of {} ({:?}) does not parse: {reason}",
                    var.name, var.default
                )
            })),
        }
    }

    /// Any [`FromStr`] value, e.g. a count.
    pub fn value<T>(&self, var: Var) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.read(var, |raw| raw.parse().map_err(|e: T::Err| e.to_string()))
    }

    /// A duration given in whole milliseconds.
    pub fn millis(&self, var: Var) -> Result<Duration, ConfigError> {
        self.value(var).map(Duration::from_millis)
    }

    /// A duration given in whole seconds.
    pub fn secs(&self, var: Var) -> Result<Duration, ConfigError> {
        self.value(var).map(Duration::from_secs)
    }

    /// `true`, `1`, `yes`, `on` or `false`, `0`, `no`, `off`, in any case.
    pub fn bool(&self, var: Var) -> Result<bool, ConfigError> {
        self.read(var, |raw| match raw.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err("expected true or false".to_owned()),
        })
    }

    /// A `host:port` socket address.
    pub fn addr(&self, var: Var) -> Result<std::net::SocketAddr, ConfigError> {
        self.read(var, |raw| {
            raw.parse()
                .map_err(|_| "expected an address like 127.0.0.1:8080".to_owned())
        })
    }

    /// [`COUNTRY_CODE`]: the calling code of local numbers, one libphonenumber
    /// knows. The gateway and the dispatcher read the same variable, so a number the
    /// dispatcher accepts is one the gateway can send to.
    pub fn country_code(&self) -> Result<String, ConfigError> {
        self.read(COUNTRY_CODE, |code| {
            let digits = (1..=3).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit());
            if digits && crate::phone::is_calling_code(code) {
                Ok(code.to_owned())
            } else {
                Err(
                    "expected a country calling code, e.g. 62 for Indonesia or 60 for Malaysia"
                        .to_owned(),
                )
            }
        })
    }

    /// An `http://` or `https://` URL of a web service, without a trailing `/`.
    pub fn url(&self, var: Var) -> Result<String, ConfigError> {
        self.read(var, web_url)
    }

    /// The `http://host:port` URL of another AbTrack Notify service ([`grpc_url`]).
    pub fn grpc_url(&self, var: Var) -> Result<String, ConfigError> {
        self.read(var, grpc_url)
    }

    /// Every account's gateway: the list in `list`
    /// ([`crate::account::parse_gateways`]), or, unset, one account named
    /// [`crate::account::DEFAULT`] at the URL in `single`. Setting both is refused.
    pub fn gateways(
        &self,
        list: Var,
        single: Var,
    ) -> Result<Vec<crate::account::Gateway>, ConfigError> {
        let Some(value) = self.get(list.name) else {
            return Ok(vec![crate::account::Gateway {
                account: crate::account::DEFAULT.to_owned(),
                url: self.grpc_url(single)?,
            }]);
        };
        if self.get(single.name).is_some() {
            return Err(ConfigError::new(
                list.name,
                &value,
                format!(
                    "set it or {}, not both (the accounts list each gateway's URL)",
                    single.name
                ),
            ));
        }
        crate::account::parse_gateways(&value)
            .map_err(|reason| ConfigError::new(list.name, &value, reason))
    }
}

/// The URL of another AbTrack Notify service's gRPC server, `http://host:port`,
/// returned without a trailing `/`. The services speak plain gRPC to each other (no
/// TLS in this build), so an `https://` URL, which could never connect, is refused.
pub fn grpc_url(raw: &str) -> Result<String, String> {
    if raw.starts_with("https://") {
        return Err(
            "https:// is not supported: the services speak plain gRPC to each other; across machines, carry it through an encrypted tunnel (docs/accounts.md)"
                .into(),
        );
    }
    web_url(raw)
}

/// An `http://` or `https://` URL, returned without a trailing `/`.
pub fn web_url(raw: &str) -> Result<String, String> {
    let rest = raw
        .strip_prefix("http://")
        .or_else(|| raw.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.contains(char::is_whitespace) => {
            Ok(raw.trim_end_matches('/').to_owned())
        }
        _ => Err("expected a URL like http://127.0.0.1:50051".to_owned()),
    }
}

/// For each service's tests: checks that setting a variable to the default its
/// `--help` shows loads the same configuration as leaving it unset, so `--help`
/// cannot show one default while the parsing uses another, and that the defaults
/// alone (on top of `base`) are a valid configuration. Configurations are compared
/// by their `Debug` text. Left out: the variables set in `base`, and `computed`,
/// those whose unset meaning is worked out in code (a description such as
/// `<hostname>-<pid>`, or a file used only when present). Panics, naming the
/// variable, at the first difference.
#[track_caller]
pub fn assert_defaults_are_used<C: std::fmt::Debug>(
    vars: &[Var],
    computed: &[Var],
    base: &[(&str, &str)],
    load: impl Fn(&dyn Fn(&str) -> Option<String>) -> Result<C, ConfigError>,
) {
    let listed = |name: &str| vars.iter().filter(|v| v.name == name).count();
    for var in vars {
        assert_eq!(listed(var.name), 1, "{} is listed more than once", var.name);
    }
    for var in computed {
        assert_eq!(listed(var.name), 1, "{} is not in the list", var.name);
    }
    let from_base = |key: &str| {
        base.iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| (*value).to_owned())
    };
    let unset = match load(&from_base) {
        Ok(config) => format!("{config:?}"),
        Err(e) => panic!("the defaults are not a valid configuration: {e}"),
    };
    let skipped = |var: &Var| {
        computed.iter().any(|c| c.name == var.name) || base.iter().any(|(n, _)| *n == var.name)
    };
    for var in vars.iter().filter(|var| !skipped(var)) {
        let with_default = |key: &str| {
            if key == var.name {
                Some(var.default.to_owned())
            } else {
                from_base(key)
            }
        };
        match load(&with_default) {
            Ok(config) => assert_eq!(
                format!("{config:?}"),
                unset,
                "{}={:?}, its --help default, loads another configuration than leaving it unset",
                var.name,
                var.default
            ),
            Err(e) => panic!("{}'s --help default is refused: {e}", var.name),
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
    /// A command of this service alone (one of the [`Extra`] it declared).
    Extra(&'static str),
}

/// A command one service adds to the ones every service has, shown in `--help`.
#[derive(Debug, Clone, Copy)]
pub struct Extra {
    pub name: &'static str,
    pub help: &'static str,
}

/// Parses the arguments every service accepts: none, `--help`, `--version`,
/// `healthcheck`, and the service's own `extra` commands.
pub fn parse_args(
    args: impl IntoIterator<Item = String>,
    extra: &[Extra],
) -> Result<Command, String> {
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
        [name] if let Some(e) = extra.iter().find(|e| e.name == *name) => {
            Ok(Command::Extra(e.name))
        }
        other => Err(format!(
            "unexpected arguments {other:?}; run with --help to see the usage"
        )),
    }
}

/// The `--help` text: what the service does, its commands and every variable it
/// reads.
pub fn help_text(binary: &str, about: &str, vars: &[Var], extra: &[Extra]) -> String {
    let mut out = format!(
        "{binary} {}\n{about}\n\nUSAGE:\n    {binary}               run the service\n    {binary} healthcheck   exit 0 when the running service answers its health check\n",
        env!("CARGO_PKG_VERSION")
    );
    for e in extra {
        let _ = writeln!(out, "    {binary} {}\n        {}", e.name, e.help);
    }
    let _ = write!(
        out,
        "    {binary} --version     the version\n    {binary} --help        this text\n\nENVIRONMENT (unset or empty means the default):\n"
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

/// The log filter, read by [`crate::telemetry::init`].
pub const RUST_LOG: Var = Var {
    name: "RUST_LOG",
    default: "info",
    help: "log filter, e.g. debug or dispatcher=debug,info",
};

/// The log line format, read by [`crate::telemetry::init`].
pub const LOG_FORMAT: Var = Var {
    name: "LOG_FORMAT",
    default: "text",
    help: "text, or json for one JSON object per line",
};

/// Variables every service reads.
pub const COMMON_VARS: &[Var] = &[RUST_LOG, LOG_FORMAT, crate::token::VAR];

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
    startup_with(binary, about, vars, &[], load)
}

/// [`startup`] for a service with commands of its own.
pub fn startup_with<C>(
    binary: &str,
    about: &str,
    vars: &[Var],
    extra: &[Extra],
    load: impl FnOnce() -> Result<C, ConfigError>,
) -> (Command, C) {
    let command = parse_args(std::env::args(), extra).unwrap_or_else(|e| exit_usage(binary, e));
    match command {
        Command::Help => {
            print!("{}", help_text(binary, about, vars, extra));
            std::process::exit(0)
        }
        Command::Version => {
            println!("{binary} {}", env!("CARGO_PKG_VERSION"));
            std::process::exit(0)
        }
        Command::Run | Command::Healthcheck | Command::Extra(_) => {}
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

    const fn var(name: &'static str, default: &'static str) -> Var {
        Var {
            name,
            default,
            help: "",
        }
    }

    #[test]
    fn blank_values_fall_back_to_the_default() {
        let env = env(&[("A", "  "), ("B", " 7 ")]);
        assert_eq!(env.value::<u32>(var("A", "3")), Ok(3));
        assert_eq!(env.value::<u32>(var("B", "3")), Ok(7));
        assert_eq!(env.string(var("MISSING", "x")), "x");
        assert_eq!(
            env.secs(var("MISSING", "120")),
            Ok(Duration::from_secs(120))
        );
        assert_eq!(
            env.millis(var("MISSING", "2000")),
            Ok(Duration::from_secs(2))
        );
        assert_eq!(env.bool(var("MISSING", "on")), Ok(true));
        assert_eq!(
            env.url(var("MISSING", "http://a:1/")).unwrap(),
            "http://a:1"
        );
        assert_eq!(env.country_code().unwrap(), COUNTRY_CODE.default);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let env = env(&[
            ("N", "ten"),
            ("U", "ftp://x"),
            ("F", "maybe"),
            ("S", " x:1 "),
        ]);
        let err = env.value::<u32>(var("N", "1")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "N=\"ten\" is invalid: invalid digit found in string"
        );
        assert_eq!(
            env.url(var("U", "http://a:1")).unwrap_err().to_string(),
            "U=\"ftp://x\" is invalid: expected a URL like http://127.0.0.1:50051"
        );
        assert!(
            grpc_url("https://gw.sekolah.id:443")
                .unwrap_err()
                .starts_with("https:// is not supported")
        );
        assert_eq!(grpc_url("http://gw:50052/"), Ok("http://gw:50052".into()));
        assert_eq!(
            env.bool(var("F", "true")).unwrap_err().to_string(),
            "F=\"maybe\" is invalid: expected true or false"
        );
        assert_eq!(
            env.addr(var("S", "127.0.0.1:1")).unwrap_err().to_string(),
            "S=\"x:1\" is invalid: expected an address like 127.0.0.1:8080"
        );
    }

    #[test]
    #[should_panic(expected = "the default of N (\"ten\") does not parse")]
    fn a_default_that_does_not_parse_is_a_bug() {
        let _ = env(&[]).value::<u32>(var("N", "ten"));
    }

    const SHOWN: Var = var("SHOWN", "5");

    /// A configuration of one number whose parsing ignores the default `--help` shows.
    fn load_lying(lookup: &dyn Fn(&str) -> Option<String>) -> Result<u32, ConfigError> {
        let env = Env::new(lookup);
        match env.get(SHOWN.name) {
            Some(_) => env.value(SHOWN),
            None => Ok(6),
        }
    }

    fn load_honest(lookup: &dyn Fn(&str) -> Option<String>) -> Result<u32, ConfigError> {
        Env::new(lookup).value(SHOWN)
    }

    #[test]
    fn the_default_shown_is_the_one_used() {
        assert_defaults_are_used(&[SHOWN], &[], &[], load_honest);
        assert_defaults_are_used(&[SHOWN], &[SHOWN], &[], load_lying);
        assert_defaults_are_used(&[SHOWN], &[], &[("SHOWN", "7")], load_lying);
    }

    #[test]
    #[should_panic(expected = "SHOWN=\"5\", its --help default, loads another configuration")]
    fn a_default_the_parsing_ignores_fails_the_check() {
        assert_defaults_are_used(&[SHOWN], &[], &[], load_lying);
    }

    #[test]
    fn the_country_code_default_is_used() {
        assert_defaults_are_used(&[COUNTRY_CODE], &[], &[], |lookup| {
            Env::new(lookup).country_code()
        });
    }

    #[test]
    fn arguments() {
        const PRINT: Extra = Extra {
            name: "print",
            help: "prints",
        };
        let args = |a: &[&str]| parse_args(a.iter().map(|s| (*s).to_owned()), &[PRINT]);
        assert_eq!(args(&["bin"]), Ok(Command::Run));
        assert_eq!(args(&["bin", "--help"]), Ok(Command::Help));
        assert_eq!(args(&["bin", "healthcheck"]), Ok(Command::Healthcheck));
        assert_eq!(args(&["bin", "print"]), Ok(Command::Extra("print")));
        assert!(args(&["bin", "--frobnicate"]).is_err());
        assert!(parse_args(["bin".to_owned(), "print".to_owned()], &[]).is_err());
        let help = help_text("bin", "about", &[], &[PRINT]);
        assert!(help.contains("    bin print\n        prints\n"), "{help}");
    }
}
