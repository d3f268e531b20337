//! The `wa-gateway` binary: reads the environment, binds, runs.

use std::time::Duration;

use abtrack_proto::config::{Command, exit_usage, help_text, parse_args};
use abtrack_wa_gateway::{Config, config::VARS, run};
use anyhow::Context;

const ABOUT: &str =
    "WhatsApp gateway of AbTrack Notify: one WhatsApp session, paced idempotent sends.";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = parse_args(std::env::args()).unwrap_or_else(|e| exit_usage("wa-gateway", e));
    if command == Command::Help {
        print!("{}", help_text("wa-gateway", ABOUT, VARS));
        return Ok(());
    }
    if command == Command::Version {
        println!("wa-gateway {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    let config = Config::from_lookup(|k| std::env::var(k).ok())
        .unwrap_or_else(|e| exit_usage("wa-gateway", format!("invalid configuration: {e}")));
    if command == Command::Healthcheck {
        let url = format!("http://{}", abtrack_proto::health::local_addr(config.addr));
        match abtrack_proto::health::check(&url, Duration::from_secs(3)).await {
            Ok(true) => std::process::exit(0),
            Ok(false) => exit_unhealthy("not serving"),
            Err(e) => exit_unhealthy(&e),
        }
    }
    abtrack_proto::telemetry::init();
    config.log();
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| {
            format!(
                "failed to listen on {} (is the port taken? set WA_ADDR)",
                config.addr
            )
        })?;
    run(config, listener, abtrack_proto::shutdown_signal())
        .await
        .context("wa-gateway failed")
}

fn exit_unhealthy(why: &str) -> ! {
    eprintln!("wa-gateway: unhealthy: {why}");
    std::process::exit(1)
}
