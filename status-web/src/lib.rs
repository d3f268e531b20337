//! status-web: subscribes to every service's `Watch` stream, keeps one aggregated
//! snapshot, and serves it with the REST API.
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod error;
pub mod snapshot;
pub mod watchers;

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use abtrack_proto::dispatcher::v1::dispatcher_client::DispatcherClient;
use abtrack_proto::gateway::v1::gateway_client::GatewayClient;
use abtrack_proto::logger::v1::sheets_logger_client::SheetsLoggerClient;

pub use config::Config;

use crate::snapshot::Snapshot;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid service address {0}: {1}")]
    Address(String, String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Clone)]
pub struct AppState {
    pub snapshot: watch::Receiver<Snapshot>,
    pub dispatcher: DispatcherClient<Channel>,
    pub gateway: GatewayClient<Channel>,
}

fn lazy_channel(url: &str) -> Result<Channel> {
    Ok(Endpoint::from_shared(url.to_owned())
        .map_err(|e| Error::Address(url.to_owned(), e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy())
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/api/status", get(api::status))
        .route("/api/messages", post(api::enqueue))
        .route("/api/jobs", get(api::list_jobs))
        .route("/api/jobs/{id}", get(api::get_job))
        .route("/api/jobs/{id}/retry", post(api::retry_job))
        .route("/api/queue/pause", post(api::pause))
        .route("/api/queue/resume", post(api::resume))
        .fallback(api::not_found)
        .with_state(state)
}

/// Serves on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let dispatcher = DispatcherClient::new(lazy_channel(&config.dispatcher_url)?);
    let gateway = GatewayClient::new(lazy_channel(&config.gateway_url)?);
    let logger = SheetsLoggerClient::new(lazy_channel(&config.logger_url)?);
    let (snapshot_tx, snapshot) = watch::channel(Snapshot::default());
    watchers::start(snapshot_tx, dispatcher.clone(), gateway.clone(), logger);
    let app = router(AppState {
        snapshot,
        dispatcher,
        gateway,
    });
    tracing::info!(addr = %listener.local_addr()?, "status-web listening: open http://{}/api/status", listener.local_addr()?);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut server_stop = stop_rx.clone();
    let serve = async move {
        let stopped = async move {
            let _ = server_stop.wait_for(|stop| *stop).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!(error = %e, "HTTP server failed");
        }
    };
    abtrack_proto::shutdown::with_grace_period(serve, stop_rx).await;
    tracing::info!("status-web stopped");
    Ok(())
}
