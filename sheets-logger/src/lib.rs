//! The outcome logger: every terminal job outcome is committed to a durable local
//! outbox before it is acknowledged, ready to become a row in Google Sheets.
#![forbid(unsafe_code)]

pub mod config;
pub mod credentials;
pub mod error;
pub mod flusher;
pub mod grpc;
pub mod outbox;
pub mod row;
pub mod sheet;
pub mod state;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use tokio::net::TcpListener;

use abtrack_proto::logger::v1::sheets_logger_server::SheetsLoggerServer;
use abtrack_proto::tasks::Tasks;

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
    let tasks = Tasks::new();
    let outbox = Outbox::open(&config.data_dir.join("outbox.sqlite3"))?;
    let state = LoggerState::initial(&config, outbox.backlog().await?);
    tracing::info!(backlog = state.backlog, "{}", state.detail);
    let state = tokio::sync::watch::Sender::new(state);
    let wake = Arc::new(Notify::new());
    match &config.target {
        Some(target) => {
            let client = sheet::SheetClient::new(
                target.key.clone(),
                &config.api_url,
                &target.spreadsheet_id,
                &config.tab,
            )
            .await
            .map_err(Error::Internal)?;
            let flusher = flusher::Flusher {
                outbox: outbox.clone(),
                client,
                format: row::RowFormat {
                    time_zone: config.time_zone,
                    full_recipient: config.full_recipient,
                    include_message: config.include_message,
                },
                state: state.clone(),
                wake: Arc::clone(&wake),
                settings: flusher::FlushSettings {
                    batch_size: config.batch_size,
                    max_age: config.batch_max_age,
                    retry_min: Duration::from_secs(1).min(config.retry_max),
                    retry_max: config.retry_max,
                },
            };
            tasks.spawn(flusher.run());
        }
        None => {
            if let Some(retention) = config.retention {
                tasks.spawn(prune(outbox.clone(), state.clone(), retention));
            }
        }
    }
    let (_health_reporter, health) =
        abtrack_proto::health::serving::<SheetsLoggerServer<grpc::LoggerService>>().await;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "sheets-logger listening");
    let service =
        grpc::LoggerService::new(outbox, state, config.include_message, wake, tasks.clone());
    let router = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(abtrack_proto::token::require(
            SheetsLoggerServer::new(service),
            config.internal_token.as_ref(),
        ))
        .add_service(abtrack_proto::notice::server(
            [config.data_dir.clone()],
            config.internal_token.as_ref(),
        ));
    abtrack_proto::shutdown::serve_grpc(router, listener, shutdown, tasks.clone()).await;
    abtrack_proto::shutdown::stop_tasks(&tasks).await;
    tracing::info!("sheets-logger stopped");
    Ok(())
}

/// With Sheets logging off, drops records older than the retention period once an
/// hour, so the outbox does not grow without end.
async fn prune(
    outbox: Outbox,
    state: tokio::sync::watch::Sender<LoggerState>,
    retention: Duration,
) {
    let mut ticker = tokio::time::interval(Duration::from_secs(3600));
    loop {
        ticker.tick().await;
        let before = abtrack_proto::time::now_ms() - retention.as_millis() as i64;
        match outbox.prune_recorded_before(before).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(
                    records = n,
                    "dropped outbox records past the retention period"
                );
                if let Ok(backlog) = outbox.backlog().await {
                    state.send_modify(|s| s.backlog = backlog);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot prune the outbox"),
        }
    }
}
