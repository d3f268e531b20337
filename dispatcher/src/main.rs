//! The `dispatcher` binary: reads the environment, binds, runs.

use abtrack_dispatcher::{Config, config::VARS, run};
use abtrack_proto::config::{Command, startup};
use anyhow::Context;

const ABOUT: &str = "Job queue of AbTrack Notify: leases jobs, sends them one at a time through the gateway, records outcomes.";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (command, config) = startup("dispatcher", ABOUT, VARS, || {
        Config::from_lookup(|key| std::env::var(key).ok())
    });
    if command == Command::Healthcheck {
        abtrack_proto::health::exit_with_grpc_health(
            "dispatcher",
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
                "failed to listen on {} (is the port taken? set DISPATCHER_ADDR)",
                config.addr
            )
        })?;
    run(config, listener, abtrack_proto::shutdown_signal())
        .await
        .context("dispatcher failed")
}
