//! The outcome logger: every terminal job outcome is committed to a durable local
//! outbox before it is acknowledged, ready to become a row in Google Sheets.
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod grpc;
pub mod outbox;
pub mod state;

use std::future::Future;

use tokio::net::TcpListener;

use abtrack_proto::logger::v1::sheets_logger_server::SheetsLoggerServer;

pub use config::Config;
pub use error::{Error, Result};

use crate::outbox::Outbox;
use crate::state::LoggerState;

/// Runs the logger on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir)?;
    let outbox = Outbox::open(&config.data_dir.join("outbox.sqlite3"))?;
    let state = LoggerState::initial(&config, outbox.backlog().await?);
    tracing::info!(backlog = state.backlog, "{}", state.detail);
    let state = tokio::sync::watch::Sender::new(state);
    let (_health_reporter, health) =
        abtrack_proto::health::serving::<SheetsLoggerServer<grpc::LoggerService>>().await;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "sheets-logger listening");
    let service = grpc::LoggerService::new(outbox, state, config.include_message);
    let router = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(SheetsLoggerServer::new(service));
    abtrack_proto::shutdown::serve_grpc(router, listener, shutdown).await;
    tracing::info!("sheets-logger stopped");
    Ok(())
}
