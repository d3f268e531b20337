//! The packaging as a user meets it: docker-compose.yml and the Dockerfile read and
//! checked against the services' own `--help`. start.sh and the launcher: `start.rs`.
#![cfg(target_os = "linux")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use abtrack_e2e::{SERVICES, bin_dir};
use serde_yaml::Value;

pub(super) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e sits in the workspace")
        .to_owned()
}

fn read(name: &str) -> String {
    std::fs::read_to_string(root().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn compose() -> Value {
    let mut value: Value = serde_yaml::from_str(&read("docker-compose.yml")).unwrap();
    value.apply_merge().unwrap();
    value
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("expected a list, found {value:?}"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

fn environment(service: &Value) -> BTreeMap<String, String> {
    service["environment"]
        .as_mapping()
        .expect("environment is a map")
        .iter()
        .map(|(k, v)| {
            let value = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => panic!("{k:?}: unexpected value {other:?}"),
            };
            (k.as_str().unwrap().to_owned(), value)
        })
        .collect()
}

/// The variables a binary's `--help` lists.
fn help_vars(binary: &str) -> BTreeSet<String> {
    let output = Command::new(bin_dir().join(binary))
        .arg("--help")
        .env_clear()
        .output()
        .unwrap_or_else(|e| panic!("{binary} --help: {e} (build the binaries first)"));
    assert!(output.status.success(), "{binary} --help failed");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("    ") && !l.starts_with("     "))
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

fn port_of(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap()
}

#[test]
fn compose_runs_the_four_services_from_one_image_with_one_published_port() {
    let compose = compose();
    let services = &compose["services"];
    let names: BTreeSet<&str> = services
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    let mut expected: BTreeSet<&str> = SERVICES.into_iter().collect();
    expected.insert("firestore-emulator");
    expected.insert("wa-gateway-2");
    assert_eq!(names, expected);

    let image = services["status-web"]["image"].as_str().unwrap();
    let top_volumes: BTreeSet<String> = compose["volumes"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    let mut used_volumes = BTreeSet::new();
    // The second account's gateway is the gateway's binary, data folder and checks.
    fn binary(name: &str) -> &str {
        if name == "wa-gateway-2" {
            "wa-gateway"
        } else {
            name
        }
    }
    for name in SERVICES.into_iter().chain(["wa-gateway-2"]) {
        let s = &services[name];
        let service = binary(name);
        assert_eq!(s["image"].as_str(), Some(image), "{name}: one image");
        assert_eq!(s["build"].as_str(), Some("."), "{name}");
        assert_eq!(strings(&s["command"]), [service], "{name}: its binary");
        assert_eq!(s["restart"].as_str(), Some("unless-stopped"), "{service}");
        assert_eq!(
            strings(&s["healthcheck"]["test"]),
            ["CMD", service, "healthcheck"],
            "{service}: the binary checks itself, no tool in the image"
        );
        assert_eq!(s["working_dir"].as_str(), Some("/config"), "{service}");
        let volumes = strings(&s["volumes"]);
        assert!(
            volumes.iter().any(|v| v == ".:/config:ro"),
            "{service}: the working folder (credentials) mounted read-only: {volumes:?}"
        );
        // Named volumes: the state of the service, in its data folder.
        let named: Vec<(&str, &str)> = volumes
            .iter()
            .filter_map(|v| v.split_once(':'))
            .filter(|(source, _)| !source.starts_with('.') && !source.starts_with('/'))
            .collect();
        let env = environment(s);
        let data_var = match service {
            "wa-gateway" => Some("WA_DATA_DIR"),
            "sheets-logger" => Some("SHEETS_DATA_DIR"),
            "dispatcher" => Some("DISPATCHER_DATA_DIR"),
            _ => None,
        };
        match data_var {
            Some(var) => {
                let dir = format!("/data/{service}");
                assert_eq!(env.get(var), Some(&dir), "{service}: {var}");
                assert_eq!(named.len(), 1, "{service}: one named volume: {named:?}");
                assert_eq!(named[0].1, dir, "{service}: the volume holds {var}");
                assert!(top_volumes.contains(named[0].0), "{service}: declared");
                used_volumes.insert(named[0].0.to_owned());
            }
            None => assert!(named.is_empty(), "status-web keeps no data"),
        }
        assert!(
            env["ABTRACK_INTERNAL_TOKEN"].starts_with("${ABTRACK_INTERNAL_TOKEN:?"),
            "{service}: the internal token is required"
        );
    }
    assert_eq!(used_volumes, top_volumes, "every named volume is used");
    // Each account's gateway session, the logger outbox and the local queue each
    // have a volume.
    assert_eq!(
        used_volumes,
        BTreeSet::from(["outbox", "queue", "wa-session", "wa-session-2"].map(String::from))
    );
    // The second account only with its profile, under its own name.
    let second = &services["wa-gateway-2"];
    assert_eq!(strings(&second["profiles"]), ["second-account"]);
    assert_eq!(
        environment(second)["WA_ACCOUNT"],
        "${WA_ACCOUNT_2:-account-2}"
    );
    assert_eq!(
        environment(&services["wa-gateway"])["WA_ACCOUNT"],
        "${WA_ACCOUNT:-}"
    );
    // The dispatcher and status-web find every account's gateway in one list, by
    // default the one gateway under the default account's name.
    for (client, var) in [
        ("dispatcher", "DISPATCHER_ACCOUNTS"),
        ("status-web", "STATUS_WEB_ACCOUNTS"),
    ] {
        assert_eq!(
            environment(&services[client])[var],
            format!("${{{var}:-default=http://wa-gateway:50052}}"),
            "{client}"
        );
    }
    assert!(read(".env.example").contains("wa-gateway-2:50052"));

    // Exactly one published port: status-web's, on loopback unless told otherwise.
    let mut published = Vec::new();
    for (name, s) in services.as_mapping().unwrap() {
        if let Some(ports) = s.get("ports") {
            for p in strings(ports) {
                published.push((name.as_str().unwrap().to_owned(), p));
            }
        }
        assert!(s.get("network_mode").is_none(), "{name:?}: no host network");
    }
    assert_eq!(
        published,
        [(
            "status-web".to_owned(),
            "${STATUS_WEB_PUBLISH:-127.0.0.1:8080}:8080".to_owned()
        )]
    );
    let web = environment(&services["status-web"]);
    assert_eq!(port_of(&web["STATUS_WEB_ADDR"]), "8080");
    assert!(
        web["STATUS_WEB_PASSWORD"].starts_with("${STATUS_WEB_PASSWORD:?"),
        "the dashboard password is required: {}",
        web["STATUS_WEB_PASSWORD"]
    );

    // Each client's URL names the service and the port that service listens on.
    for (client, url_var, server, addr_var) in [
        (
            "dispatcher",
            "DISPATCHER_LOGGER_URL",
            "sheets-logger",
            "SHEETS_ADDR",
        ),
        (
            "status-web",
            "STATUS_WEB_DISPATCHER_URL",
            "dispatcher",
            "DISPATCHER_ADDR",
        ),
        (
            "status-web",
            "STATUS_WEB_LOGGER_URL",
            "sheets-logger",
            "SHEETS_ADDR",
        ),
    ] {
        let addr = environment(&services[server])[addr_var].clone();
        assert!(addr.starts_with("0.0.0.0:"), "{server} reachable by others");
        assert_eq!(
            environment(&services[client])[url_var],
            format!("http://{server}:{}", port_of(&addr)),
            "{client}: {url_var}"
        );
    }

    // Start order: the services need none, but the first start waits for health; a
    // restarted gateway must not drag the queue down with it.
    let depends = |service: &str| -> BTreeMap<String, (String, bool)> {
        services[service]["depends_on"]
            .as_mapping()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().unwrap().to_owned(),
                            (
                                v["condition"].as_str().unwrap_or("").to_owned(),
                                v["restart"].as_bool().unwrap_or(false),
                            ),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let healthy = |names: &[&str]| -> BTreeMap<String, (String, bool)> {
        names
            .iter()
            .map(|n| ((*n).to_owned(), ("service_healthy".to_owned(), false)))
            .collect()
    };
    assert_eq!(
        depends("status-web"),
        healthy(&["dispatcher", "sheets-logger", "wa-gateway"])
    );
    assert_eq!(
        depends("dispatcher"),
        healthy(&["sheets-logger", "wa-gateway"])
    );
    assert!(depends("wa-gateway").is_empty() && depends("sheets-logger").is_empty());

    // Google's Firestore emulator, only with its profile, on the port .env.example names.
    let emulator = &services["firestore-emulator"];
    assert_eq!(strings(&emulator["profiles"]), ["firestore-emulator"]);
    assert!(
        emulator["image"]
            .as_str()
            .unwrap()
            .starts_with("gcr.io/google.com/cloudsdktool/"),
        "Google's emulator image"
    );
    assert!(strings(&emulator["command"]).contains(&"--host-port=0.0.0.0:8081".to_owned()));
    assert!(read(".env.example").contains("FIRESTORE_EMULATOR_HOST=firestore-emulator:8081"));
    assert!(environment(&services["dispatcher"]).contains_key("FIRESTORE_EMULATOR_HOST"));
}

#[test]
fn every_variable_the_compose_file_sets_is_read_by_a_service() {
    let compose = compose();
    let help: BTreeMap<&str, BTreeSet<String>> =
        SERVICES.iter().map(|s| (*s, help_vars(s))).collect();
    assert!(
        help["dispatcher"].contains("DISPATCHER_ADDR"),
        "--help is parsed"
    );
    let shared: BTreeSet<String> = environment(&compose["x-service"]).into_keys().collect();
    for service in SERVICES {
        for var in environment(&compose["services"][service]).into_keys() {
            if shared.contains(&var) {
                assert!(
                    help.values().any(|vars| vars.contains(&var)),
                    "the shared {var} is read by no service"
                );
            } else {
                assert!(
                    help[service].contains(&var),
                    "{service} sets {var}, which `{service} --help` does not list"
                );
            }
        }
    }
    // Every variable the compose file reads from .env is documented.
    let doc = read("docs/configuration.md");
    let text = read("docker-compose.yml");
    let interpolated: BTreeSet<&str> = text
        .split("${")
        .skip(1)
        .map(|rest| {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect();
    assert!(
        interpolated.contains("STATUS_WEB_PUBLISH"),
        "{interpolated:?}"
    );
    for var in interpolated.iter().chain(&["COMPOSE_PROFILES"]) {
        assert!(doc.contains(*var), "docs/configuration.md explains {var}");
    }
}

/// Dockerfile instructions with continuation lines joined.
fn dockerfile() -> Vec<(String, String)> {
    let text = read("Dockerfile").replace("\\\n", " ");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (op, rest) = l.split_once(' ').unwrap_or((l, ""));
            (op.to_ascii_uppercase(), rest.trim().to_owned())
        })
        .collect()
}

#[test]
fn dockerfile_builds_the_four_binaries_into_a_slim_non_root_image() {
    let lines = dockerfile();
    let of = |op: &str| -> Vec<&str> {
        lines
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, r)| r.as_str())
            .collect()
    };
    let rust_version = read("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap();
    assert_eq!(
        of("FROM"),
        [
            format!("rust:{rust_version}-slim-bookworm AS builder").as_str(),
            "debian:bookworm-slim AS runtime"
        ],
        "two stages: the workspace's toolchain, then a slim runtime"
    );
    let runs = of("RUN");
    let build = runs
        .iter()
        .find(|r| r.contains("cargo build"))
        .expect("the builder builds");
    assert!(
        build.contains("--release") && build.contains("--locked"),
        "{build}"
    );
    let copies = of("COPY");
    let from_builder: Vec<&&str> = copies
        .iter()
        .filter(|c| c.starts_with("--from=builder"))
        .collect();
    assert_eq!(from_builder.len(), 1);
    for service in SERVICES {
        assert!(
            build.contains(&format!("-p abtrack-{service}")),
            "{service}"
        );
        assert!(
            build.contains(&format!("target/release/{service}")),
            "{service}"
        );
        assert!(
            from_builder[0].contains(&format!("/out/{service}")),
            "{service} is copied into the runtime image"
        );
    }
    let user = *of("USER").last().expect("a USER");
    assert_eq!(user, "10001:10001", "the abtrack user, not root");
    let setup = runs
        .iter()
        .find(|r| r.contains("useradd"))
        .expect("the user is created");
    assert!(
        setup.contains("--uid 10001") && setup.contains("abtrack"),
        "{setup}"
    );
    for service in ["dispatcher", "wa-gateway", "sheets-logger"] {
        assert!(setup.contains(&format!("/data/{service}")), "{service}");
    }
    assert!(setup.contains("chown -R abtrack:abtrack /data"), "{setup}");
    assert_eq!(of("WORKDIR").last(), Some(&"/config"));

    let ignore: BTreeSet<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    for kept_out in [
        ".git",
        "target",
        "data",
        ".env",
        "credentials.json",
        "sheets-credentials.json",
        "config.json",
    ] {
        assert!(
            ignore.contains(kept_out),
            ".dockerignore leaves out {kept_out}"
        );
    }

    // start.bat reaches Windows with CRLF line endings.
    assert!(
        read(".gitattributes")
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["start.bat", "text", "eol=crlf"])
    );
    let bat = std::fs::read(root().join("start.bat")).unwrap();
    let lone_lf = bat
        .iter()
        .enumerate()
        .filter(|(i, b)| **b == b'\n' && (*i == 0 || bat[i - 1] != b'\r'))
        .count();
    assert_eq!(lone_lf, 0, "start.bat has CRLF line endings");
}
