//! The `dispatcher` binary: reads the environment, binds, runs.

use abtrack_dispatcher::config::VARS;
use abtrack_dispatcher::{Config, run};
use abtrack_proto::config::{Command, Extra, startup_with};
use anyhow::Context;

const ABOUT: &str = "Job queue of AbTrack Notify: leases jobs, sends them one at a time through the gateway, records outcomes.";

const FIRESTORE_INDEXES: Extra = Extra {
    name: "firestore-indexes",
    help: "print the Firestore indexes the queue needs for the configured collection and field names (firestore.indexes.json)",
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (command, config) = startup_with("dispatcher", ABOUT, VARS, &[FIRESTORE_INDEXES], || {
        Config::from_lookup(|key| std::env::var(key).ok())
    });
    match command {
        Command::Healthcheck => {
            abtrack_proto::health::exit_with_grpc_health(
                "dispatcher",
                config.addr,
                config.internal_token.as_ref(),
            )
            .await
        }
        Command::Extra(_) => {
            // Read whether or not Firestore is configured: the indexes are often
            // printed before the service account exists.
            let (collection, mapping) =
                abtrack_dispatcher::config::firestore_shape(|key| std::env::var(key).ok())
                    .unwrap_or_else(|e| {
                        abtrack_proto::config::exit_usage(
                            "dispatcher",
                            format!("invalid configuration: {e}"),
                        )
                    });
            let indexes = abtrack_dispatcher::firestore::indexes(&collection, &mapping);
            println!("{}", serde_json::to_string_pretty(&indexes)?);
            return Ok(());
        }
        Command::Run | Command::Help | Command::Version => {}
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
    match run(config, listener, abtrack_proto::shutdown_signal()).await {
        // The database does not match the configuration: starting again cannot help.
        Err(abtrack_dispatcher::Error::MissingIndex(line)) => {
            abtrack_proto::config::exit_usage("dispatcher", line)
        }
        result => result.context("dispatcher failed"),
    }
}
