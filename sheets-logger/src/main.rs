//! The `sheets-logger` binary: reads the environment, binds, runs.

use abtrack_proto::config::{Command, startup};
use abtrack_sheets_logger::{Config, config::VARS, run};
use anyhow::Context;

const ABOUT: &str =
    "Outcome logger of AbTrack Notify: a durable outbox of every job outcome, for Google Sheets.";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (command, config) = startup("sheets-logger", ABOUT, VARS, || {
        Config::from_lookup(|key| std::env::var(key).ok())
    });
    if command == Command::Healthcheck {
        abtrack_proto::health::exit_with_grpc_health(
            "sheets-logger",
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
                "failed to listen on {} (is the port taken? set SHEETS_ADDR)",
                config.addr
            )
        })?;
    run(config, listener, abtrack_proto::shutdown_signal())
        .await
        .context("sheets-logger failed")
}
