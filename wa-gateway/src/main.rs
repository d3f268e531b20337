//! The `wa-gateway` binary: reads the environment, binds, runs.

use abtrack_proto::config::{Command, startup};
use abtrack_wa_gateway::{Config, config::VARS, run};
use anyhow::Context;

const ABOUT: &str =
    "WhatsApp gateway of AbTrack Notify: one WhatsApp session, paced idempotent sends.";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (command, config) = startup("wa-gateway", ABOUT, VARS, || {
        Config::from_lookup(|key| std::env::var(key).ok())
    });
    if command == Command::Healthcheck {
        abtrack_proto::health::exit_with_grpc_health(
            "wa-gateway",
            config.addr,
            config.internal_token.as_ref(),
        )
        .await;
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
