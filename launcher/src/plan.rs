//! What the launcher runs: the four binaries, the addresses they listen on, the
//! environment each one gets, and the checks made before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use abtrack_proto::addrs;
use abtrack_proto::config::{EXIT_USAGE, Env, Var};

pub const BIN_DIR: Var = Var {
    name: "ABTRACK_BIN_DIR",
    default: "",
    help: "folder holding the four service binaries; unset: the folder abtrack-notify is in",
};

pub const NO_BROWSER: Var = Var {
    name: "ABTRACK_NO_BROWSER",
    default: "",
    help: "set to anything to not open the dashboard in a browser",
};

pub const ACCOUNTS: Var = Var {
    name: "ABTRACK_ACCOUNTS",
    default: "",
    help: "several WhatsApp accounts (numbers): their names, comma-separated, the default one first (e.g. sd-harapan,smp-2); one wa-gateway runs for each: the first on WA_ADDR with its data in WA_DATA_DIR, the others on WA_ADDR's port + 10, + 20, ... with their data in WA_DATA_DIR/<name>; unset: one account",
};

/// How far apart the ports of the accounts' gateways are.
pub const ACCOUNT_PORT_STEP: u16 = 10;

/// The record's place under the working folder, beside the services' own data.
pub const RECORD_PATH: &str = "data/launcher/restarts.json";

/// The exit code for a missing program (`EX_UNAVAILABLE`).
pub const EXIT_UNAVAILABLE: i32 = 69;

/// The services, in the order they start.
pub const SERVICES: [(&str, Var); 4] = [
    ("wa-gateway", addrs::WA_ADDR),
    ("sheets-logger", addrs::SHEETS_ADDR),
    ("dispatcher", addrs::DISPATCHER_ADDR),
    ("status-web", addrs::STATUS_WEB_ADDR),
];

/// Why nothing was started: a line for the operator and the exit code.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: i32,
    pub message: String,
}

impl Refusal {
    fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub program: PathBuf,
    /// The variable holding its listen address, named in messages about the port.
    pub addr_var: Var,
    pub addr: SocketAddr,
    /// Its own settings, on top of the plan's (an account's gateway: its name,
    /// address and data folder).
    pub env: Vec<(String, String)>,
}

impl Service {
    /// Everything it is started with on top of the launcher's own environment.
    pub fn env(&self, plan: &[(String, String)]) -> Vec<(String, String)> {
        plan.iter().chain(&self.env).cloned().collect()
    }
}

/// `ABTRACK_ACCOUNTS`: the account names, the default one first; empty when unset.
fn accounts(env: &Env<impl Fn(&str) -> Option<String>>) -> Result<Vec<String>, Refusal> {
    let Some(list) = env.get(ACCOUNTS.name) else {
        return Ok(Vec::new());
    };
    let refuse = |reason: String| {
        Refusal::new(
            EXIT_USAGE,
            format!("{}={list:?} is invalid: {reason}", ACCOUNTS.name),
        )
    };
    let mut names: Vec<String> = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        abtrack_proto::account::check(name)
            .map_err(|e| refuse(format!("account name {name:?}: {e}")))?;
        // The first account's data folder holds these two of its own.
        if ["session", "old-sessions"].contains(&name) {
            return Err(refuse(format!(
                "{name:?} is the name of a folder in the gateway's data; choose another"
            )));
        }
        if names.iter().any(|n| n == name) {
            return Err(refuse(format!("account {name:?} is listed twice")));
        }
        names.push(name.to_owned());
    }
    if names.is_empty() {
        return Err(refuse("lists no account".into()));
    }
    Ok(names)
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub services: Vec<Service>,
    /// Set for every service, on top of the launcher's own environment.
    pub env: Vec<(String, String)>,
    pub dashboard: String,
    pub dry_run: bool,
    pub open_browser: bool,
    /// Where the gateway writes dry-run messages, for the start-up banner.
    pub dry_run_file: String,
}

impl Plan {
    /// How many services run, in words while there are few: "four" with one account.
    pub fn count(&self) -> String {
        match self.services.len() {
            4 => "four".into(),
            5 => "five".into(),
            6 => "six".into(),
            n => n.to_string(),
        }
    }

    /// The plan for `lookup`'s environment. `own_dir` is the launcher's own folder,
    /// where the binaries of a release archive are.
    pub fn new(
        lookup: impl Fn(&str) -> Option<String>,
        dry_run: bool,
        own_dir: &Path,
    ) -> Result<Self, Refusal> {
        let env = Env::new(&lookup);
        let bin_dir = env.get(BIN_DIR.name).map(PathBuf::from);
        let dir = bin_dir.clone().unwrap_or_else(|| own_dir.to_owned());
        let program = |name: &str| dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        let names = SERVICES.map(|(name, _)| name).join(", ");
        if SERVICES.iter().any(|(name, _)| !program(name).is_file()) {
            return Err(match &bin_dir {
                Some(dir) => Refusal::new(
                    EXIT_USAGE,
                    format!(
                        "{}={} does not hold the four binaries ({names})",
                        BIN_DIR.name,
                        dir.display()
                    ),
                ),
                None => Refusal::new(
                    EXIT_UNAVAILABLE,
                    format!(
                        "the four binaries ({names}) are not in {}, the folder of abtrack-notify",
                        dir.display()
                    ),
                ),
            });
        }

        let accounts = accounts(&env)?;
        let gateway_data = env
            .get("WA_DATA_DIR")
            .unwrap_or_else(|| "data/wa-gateway".into());
        let mut services = Vec::new();
        let mut vars = Vec::new();
        for (name, var) in SERVICES {
            let addr = env
                .addr(var)
                .map_err(|e| Refusal::new(EXIT_USAGE, e.to_string()))?;
            vars.push((var.name.to_owned(), addr.to_string()));
            let own_account = match (name, accounts.first()) {
                ("wa-gateway", Some(first)) => vec![("WA_ACCOUNT".to_owned(), first.clone())],
                _ => Vec::new(),
            };
            services.push(Service {
                name: name.to_owned(),
                program: program(name),
                addr_var: var,
                addr,
                env: own_account,
            });
            if name != "wa-gateway" {
                continue;
            }
            // The other accounts' gateways, beside the first.
            for (i, account) in accounts.iter().enumerate().skip(1) {
                let mut addr = addr;
                let port = u16::try_from(i)
                    .ok()
                    .and_then(|i| i.checked_mul(ACCOUNT_PORT_STEP))
                    .and_then(|step| addr.port().checked_add(step))
                    .ok_or_else(|| {
                        Refusal::new(
                            EXIT_USAGE,
                            format!(
                                "{} lists too many accounts for {}'s port {}",
                                ACCOUNTS.name,
                                var.name,
                                addr.port()
                            ),
                        )
                    })?;
                addr.set_port(port);
                let data = format!("{gateway_data}/{account}");
                services.push(Service {
                    name: format!("wa-gateway-{account}"),
                    program: program(name),
                    addr_var: var,
                    addr,
                    env: vec![
                        ("WA_ACCOUNT".into(), account.clone()),
                        (var.name.into(), addr.to_string()),
                        ("WA_DATA_DIR".into(), data.clone()),
                        ("WA_DRY_RUN_FILE".into(), format!("{data}/dry-run.jsonl")),
                    ],
                });
            }
        }
        let addr_of = |var: Var| {
            services
                .iter()
                .find(|s| s.addr_var.name == var.name)
                .map(|s| addrs::local(s.addr))
        };
        for (client, server) in addrs::CLIENTS {
            // With accounts, the dispatcher and status-web get every gateway in one
            // list instead: the launcher's (ABTRACK_ACCOUNTS), or one set by hand
            // (gateways on other machines).
            let listed = [
                (addrs::DISPATCHER_GATEWAY_URL, "DISPATCHER_ACCOUNTS"),
                (addrs::STATUS_WEB_GATEWAY_URL, "STATUS_WEB_ACCOUNTS"),
            ]
            .iter()
            .any(|(var, list)| {
                var.name == client.name && (!accounts.is_empty() || env.get(list).is_some())
            });
            if listed {
                continue;
            }
            let url = match env.get(client.name) {
                Some(url) => url,
                None => format!(
                    "http://{}",
                    addr_of(*server).unwrap_or(server_default(*server))
                ),
            };
            vars.push((client.name.to_owned(), url));
        }
        if !accounts.is_empty() {
            let gateways: Vec<String> = services
                .iter()
                .filter_map(|s| {
                    let account = s.env.iter().find(|(k, _)| k == "WA_ACCOUNT")?;
                    Some(format!("{}=http://{}", account.1, addrs::local(s.addr)))
                })
                .collect();
            for var in ["DISPATCHER_ACCOUNTS", "STATUS_WEB_ACCOUNTS"] {
                vars.push((var.into(), gateways.join(",")));
            }
        }
        if dry_run {
            vars.push(("WA_MODE".into(), "dry-run".into()));
        }
        vars.push((addrs::LAUNCHER_FILE.name.into(), RECORD_PATH.into()));

        let dashboard = format!(
            "http://{}/",
            addr_of(addrs::STATUS_WEB_ADDR).unwrap_or(server_default(addrs::STATUS_WEB_ADDR))
        );
        let dry_run_file = env
            .get("WA_DRY_RUN_FILE")
            .unwrap_or_else(|| format!("{gateway_data}/dry-run.jsonl"));
        Ok(Self {
            services,
            env: vars,
            dashboard,
            dry_run: dry_run || env.get("WA_MODE").as_deref() == Some("dry-run"),
            open_browser: env.get(NO_BROWSER.name).is_none(),
            dry_run_file,
        })
    }

    /// Refuses to start when a service's configuration is bad, or when its port is
    /// taken (by an AbTrack Notify already running, or by another program).
    pub async fn preflight(&self) -> Result<(), Refusal> {
        for service in &self.services {
            // `<binary> healthcheck` reads the configuration first (the credential and
            // config files included) and exits 64 when it is bad; then it asks a running
            // instance, so 0 means one is already serving on that address.
            let env = service.env(&self.env);
            let output = crate::child::quiet(&service.program, &["healthcheck".into()], &env)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .output();
            let output = match tokio::time::timeout(Duration::from_secs(20), output).await {
                Ok(Ok(output)) => output,
                Ok(Err(e)) => {
                    return Err(Refusal::new(
                        EXIT_UNAVAILABLE,
                        format!("cannot run {}: {e}", service.program.display()),
                    ));
                }
                Err(_) => {
                    return Err(Refusal::new(
                        1,
                        format!("`{} healthcheck` did not answer within 20 s", service.name),
                    ));
                }
            };
            let port = service.addr.port();
            let var = service.addr_var.name;
            match output.status.code() {
                Some(EXIT_USAGE) => {
                    let said = String::from_utf8_lossy(&output.stderr);
                    return Err(Refusal::new(
                        EXIT_USAGE,
                        format!(
                            "{}\n{} cannot start with this configuration (the line above names the variable or file to fix)",
                            said.trim_end(),
                            service.name
                        ),
                    ));
                }
                Some(0) => {
                    return Err(Refusal::new(
                        1,
                        format!(
                            "port {port} is already in use: AbTrack Notify's {} is already running on {} (stop it, or set {var} to another address)",
                            service.name, service.addr
                        ),
                    ));
                }
                _ => {}
            }
            let local = addrs::local(service.addr);
            let connect = tokio::net::TcpStream::connect(local);
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), connect).await {
                return Err(Refusal::new(
                    1,
                    format!(
                        "port {port} is already in use by another program ({} needs {}; stop that program, or set {var} to another address)",
                        service.name, service.addr
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn server_default(var: Var) -> SocketAddr {
    var.default.parse().expect("the default addresses parse")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn folder_with_binaries() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, _) in SERVICES {
            let path = dir
                .path()
                .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
            std::fs::write(path, "").unwrap();
        }
        dir
    }

    fn plan(vars: &[(&str, &str)], dir: &Path) -> Result<Plan, Refusal> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Plan::new(|k| vars.get(k).cloned(), false, dir)
    }

    fn value<'a>(plan: &'a Plan, name: &str) -> &'a str {
        plan.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{name} is not set: {:?}", plan.env))
    }

    #[test]
    fn each_client_follows_the_address_its_server_was_given() {
        let dir = folder_with_binaries();
        let plan = plan(
            &[
                ("WA_ADDR", "0.0.0.0:6000"),
                ("STATUS_WEB_ADDR", "127.0.0.1:9000"),
                ("STATUS_WEB_LOGGER_URL", "http://logger.lan:7000"),
            ],
            dir.path(),
        )
        .unwrap();
        for (name, expected) in [
            ("WA_ADDR", "0.0.0.0:6000"),
            ("DISPATCHER_GATEWAY_URL", "http://127.0.0.1:6000"),
            ("STATUS_WEB_GATEWAY_URL", "http://127.0.0.1:6000"),
            ("DISPATCHER_LOGGER_URL", "http://127.0.0.1:50053"),
            ("STATUS_WEB_LOGGER_URL", "http://logger.lan:7000"),
            ("STATUS_WEB_DISPATCHER_URL", "http://127.0.0.1:50051"),
        ] {
            assert_eq!(value(&plan, name), expected, "{name}");
        }
        assert_eq!(value(&plan, addrs::LAUNCHER_FILE.name), RECORD_PATH);
        assert_eq!(plan.dashboard, "http://127.0.0.1:9000/");
        assert!(plan.open_browser);
        assert!(!plan.dry_run);
    }

    #[test]
    fn each_account_gets_a_gateway_and_the_dispatcher_gets_them_all() {
        let dir = folder_with_binaries();
        let plan = plan(
            &[
                (ACCOUNTS.name, "sd-harapan, smp-2,sma-3"),
                ("WA_ADDR", "0.0.0.0:6000"),
            ],
            dir.path(),
        )
        .unwrap();
        let gateways: Vec<(&str, String)> = plan
            .services
            .iter()
            .filter(|s| s.name.starts_with("wa-gateway"))
            .map(|s| (s.name.as_str(), s.addr.to_string()))
            .collect();
        assert_eq!(
            gateways,
            [
                ("wa-gateway", "0.0.0.0:6000".to_owned()),
                ("wa-gateway-smp-2", "0.0.0.0:6010".to_owned()),
                ("wa-gateway-sma-3", "0.0.0.0:6020".to_owned()),
            ]
        );
        // They start first, before the dispatcher that sends through them.
        assert_eq!(plan.services[2].name, "wa-gateway-sma-3");
        let own = |name: &str, key: &str| {
            let service = plan.services.iter().find(|s| s.name == name).unwrap();
            service
                .env(&plan.env)
                .into_iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
        };
        // The first account keeps the data folder a single account has.
        assert_eq!(
            own("wa-gateway", "WA_ACCOUNT").as_deref(),
            Some("sd-harapan")
        );
        assert_eq!(own("wa-gateway", "WA_DATA_DIR"), None);
        assert_eq!(
            own("wa-gateway-smp-2", "WA_ACCOUNT").as_deref(),
            Some("smp-2")
        );
        assert_eq!(
            own("wa-gateway-smp-2", "WA_DATA_DIR").as_deref(),
            Some("data/wa-gateway/smp-2")
        );
        assert_eq!(
            own("wa-gateway-smp-2", "WA_DRY_RUN_FILE").as_deref(),
            Some("data/wa-gateway/smp-2/dry-run.jsonl")
        );
        assert_eq!(
            own("wa-gateway-smp-2", "WA_ADDR").as_deref(),
            Some("0.0.0.0:6010")
        );
        assert_eq!(
            value(&plan, "DISPATCHER_ACCOUNTS"),
            "sd-harapan=http://127.0.0.1:6000,smp-2=http://127.0.0.1:6010,sma-3=http://127.0.0.1:6020"
        );
        assert_eq!(
            value(&plan, "STATUS_WEB_ACCOUNTS"),
            value(&plan, "DISPATCHER_ACCOUNTS")
        );
        assert!(plan.env.iter().all(|(k, _)| !k.ends_with("_GATEWAY_URL")));

        // Without the variable, one gateway and the single address, as before.
        let single = super::tests::plan(&[], dir.path()).unwrap();
        assert_eq!(single.services.len(), 4);
        assert!(single.services.iter().all(|s| s.env.is_empty()));
        assert!(single.env.iter().all(|(k, _)| k != "DISPATCHER_ACCOUNTS"));
    }

    #[test]
    fn accounts_listed_by_hand_take_the_place_of_the_gateway_urls() {
        let dir = folder_with_binaries();
        let list = "sd-harapan=http://127.0.0.1:50052,smp-2=http://10.8.0.7:50052";
        let plan = plan(
            &[
                ("WA_ACCOUNT", "sd-harapan"),
                ("DISPATCHER_ACCOUNTS", list),
                ("STATUS_WEB_ACCOUNTS", list),
            ],
            dir.path(),
        )
        .unwrap();
        // One local gateway; the lists reach the services from the environment.
        assert_eq!(plan.services.len(), 4);
        assert!(plan.env.iter().all(|(k, _)| !k.ends_with("_GATEWAY_URL")));
        assert!(plan.env.iter().all(|(k, _)| !k.ends_with("_ACCOUNTS")));
    }

    #[test]
    fn bad_account_lists_are_refused_naming_the_variable() {
        let dir = folder_with_binaries();
        for (list, reason) in [
            ("SD", "account name \"SD\": use lowercase"),
            ("a,b,a", "account \"a\" is listed twice"),
            ("a,session", "\"session\" is the name of a folder"),
            (" , ", "lists no account"),
        ] {
            let refusal = plan(&[(ACCOUNTS.name, list)], dir.path()).unwrap_err();
            assert_eq!(refusal.code, EXIT_USAGE);
            assert!(
                refusal.message.starts_with("ABTRACK_ACCOUNTS=")
                    && refusal.message.contains(reason),
                "{list}: {}",
                refusal.message
            );
        }
        let many: Vec<String> = (0..8).map(|i| format!("a{i}")).collect();
        let refusal = plan(
            &[
                (ACCOUNTS.name, &many.join(",")),
                ("WA_ADDR", "127.0.0.1:65500"),
            ],
            dir.path(),
        )
        .unwrap_err();
        assert!(
            refusal.message.contains("too many accounts"),
            "{}",
            refusal.message
        );
    }

    #[test]
    fn missing_binaries_are_named_with_the_folder() {
        let empty = tempfile::tempdir().unwrap();
        let refusal = plan(&[], empty.path()).unwrap_err();
        assert_eq!(refusal.code, EXIT_UNAVAILABLE);
        assert!(
            refusal.message.contains("are not in"),
            "{}",
            refusal.message
        );
        let given = empty.path().display().to_string();
        let refusal = plan(&[(BIN_DIR.name, &given)], Path::new("/")).unwrap_err();
        assert_eq!(refusal.code, EXIT_USAGE);
        assert!(
            refusal
                .message
                .starts_with(&format!("ABTRACK_BIN_DIR={given} does not hold")),
            "{}",
            refusal.message
        );
    }

    #[test]
    fn a_bad_address_is_refused_with_its_variable() {
        let dir = folder_with_binaries();
        let refusal = plan(&[("SHEETS_ADDR", "localhost")], dir.path()).unwrap_err();
        assert_eq!(refusal.code, EXIT_USAGE);
        assert!(
            refusal.message.starts_with("SHEETS_ADDR="),
            "{}",
            refusal.message
        );
    }

    #[test]
    fn dry_run_and_no_browser_are_passed_on() {
        let dir = folder_with_binaries();
        let vars: HashMap<&str, &str> = [(NO_BROWSER.name, "1"), ("WA_DATA_DIR", "d")].into();
        let plan = Plan::new(|k| vars.get(k).map(|v| (*v).to_owned()), true, dir.path()).unwrap();
        assert_eq!(value(&plan, "WA_MODE"), "dry-run");
        assert!(plan.dry_run && !plan.open_browser);
        assert_eq!(plan.dry_run_file, "d/dry-run.jsonl");
    }
}
