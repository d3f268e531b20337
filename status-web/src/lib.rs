//! status-web: subscribes to every service's `Watch` stream, keeps one aggregated
//! snapshot, and serves it to browsers (the dashboard, live over Socket.IO), to
//! API clients (the REST API) and to Prometheus (`/metrics`).
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod boundary;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod i18n;
pub mod jobs;
pub mod live;
pub mod metrics;
pub mod notices;
pub mod restarts;
pub mod snapshot;
pub mod stats;
pub mod watchers;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use socketioxide::SocketIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use abtrack_proto::tasks::Tasks;
use abtrack_proto::token::{TokenChannel, with_token};

use abtrack_proto::dispatcher::v1::dispatcher_client::DispatcherClient;
use abtrack_proto::gateway::v1::gateway_client::GatewayClient;
use abtrack_proto::logger::v1::sheets_logger_client::SheetsLoggerClient;
use abtrack_proto::notices::v1::notices_client::NoticesClient;

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
    pub boundary: boundary::Boundary,
    pub auth: auth::Auth,
    pub snapshot: watch::Receiver<Snapshot>,
    pub dispatcher: DispatcherClient<TokenChannel>,
    /// Each account's gateway, the default account's first.
    pub gateways: Vec<(String, GatewayClient<TokenChannel>)>,
    /// The three services' notices, and what lists them into the snapshot.
    pub notices: notices::Notices,
    /// The service's tasks: the live feed's, the watchers', the launcher file's reader, the notices' poller.
    pub tasks: Tasks,
    /// Full numbers in one job's view and in exports (`STATUS_WEB_FULL_NUMBERS`).
    pub full_numbers: bool,
}

/// A channel whose connection tasks belong to `tasks`.
fn lazy_channel(url: &str, tasks: &Tasks) -> Result<Channel> {
    Ok(Endpoint::from_shared(url.to_owned())
        .map_err(|e| Error::Address(url.to_owned(), e.to_string()))?
        .executor(tasks.executor())
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy())
}

/// Every route, the Socket.IO endpoint (`/socket.io/`) and, around all of them, the
/// authentication check and, outermost, the browser boundary. Starts the live feed,
/// so it needs a Tokio runtime.
pub fn router(state: AppState) -> Router {
    let (socket_layer, io) = SocketIo::builder()
        .ping_interval(Duration::from_secs(20))
        .build_layer();
    live::start(io, state.clone());
    Router::new()
        .route("/", get(dashboard::page))
        .route("/assets/dashboard.js", get(dashboard::script))
        .route("/assets/dashboard.css", get(dashboard::style))
        .route("/assets/socket.io.min.js", get(dashboard::socket_io))
        .route("/assets/chart.umd.min.js", get(dashboard::chart_js))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/metrics", get(metrics::metrics))
        .route("/api/gateway/pair-code", post(api::pair_code))
        .route("/api/gateway/logout", post(api::reset_session))
        .route("/healthz", get(api::healthz))
        .route("/api/status", get(api::status))
        .route(
            "/api/messages",
            // Inline media travels as base64 in the body.
            post(api::enqueue).layer(axum::extract::DefaultBodyLimit::max(api::MAX_MESSAGE_BODY)),
        )
        .route("/api/jobs", get(jobs::list_jobs))
        .route("/api/jobs.csv", get(jobs::export_csv))
        .route("/api/stats", get(stats::stats))
        .route("/api/jobs/{id}", get(api::get_job))
        .route("/api/jobs/{id}/retry", post(api::retry_job))
        .route("/api/queue/pause", post(api::pause))
        .route("/api/queue/resume", post(api::resume))
        .route("/api/notices/dismiss", post(api::dismiss_notice))
        .fallback(api::not_found)
        .layer(socket_layer)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            boundary::guard,
        ))
        .with_state(state)
}

/// Serves on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let tasks = Tasks::new();
    let token = config.internal_token.as_ref();
    let channel = |url: &str| Ok::<_, Error>(with_token(lazy_channel(url, &tasks)?, token));
    // One channel per service, shared by its clients.
    let dispatcher_channel = channel(&config.dispatcher_url)?;
    let logger_channel = channel(&config.logger_url)?;
    let dispatcher = DispatcherClient::new(dispatcher_channel.clone());
    // Each channel lives only in its clients: its connection task ends with them.
    let mut gateways: Vec<(String, GatewayClient<TokenChannel>)> = Vec::new();
    let mut default_gateway = None;
    for gateway in &config.gateways {
        let channel = channel(&gateway.url)?;
        default_gateway.get_or_insert_with(|| channel.clone());
        gateways.push((gateway.account.clone(), GatewayClient::new(channel)));
    }
    // The configuration always names one account at least.
    let default_gateway = default_gateway.ok_or_else(|| {
        Error::Address(
            config::ACCOUNTS.name.into(),
            "lists no WhatsApp account".into(),
        )
    })?;
    let logger = SheetsLoggerClient::new(logger_channel.clone());
    let names: Vec<String> = gateways.iter().map(|(name, _)| name.clone()).collect();
    let (snapshot_tx, snapshot) = watch::channel(Snapshot::for_accounts(&names));
    if let Some(path) = &config.launcher_file {
        restarts::start(path.clone(), snapshot_tx.clone(), &tasks);
    }
    let notices = notices::Notices::new(
        snapshot_tx.clone(),
        NoticesClient::new(dispatcher_channel),
        // The default account's gateway.
        NoticesClient::new(default_gateway),
        NoticesClient::new(logger_channel),
    );
    notices::start(notices.clone(), &tasks);
    watchers::start(
        snapshot_tx,
        dispatcher.clone(),
        gateways.iter().map(|(_, client)| client.clone()).collect(),
        logger,
        &tasks,
    );
    let addr = listener.local_addr()?;
    let app = router(AppState {
        boundary: boundary::Boundary::new(addr, config.allowed_hosts.clone()),
        auth: auth::Auth::new(config.password.clone(), config.api_key.clone()),
        snapshot,
        dispatcher,
        gateways,
        notices,
        tasks: tasks.clone(),
        full_numbers: config.full_numbers,
    });
    tracing::info!(%addr, "status-web listening: open http://{addr}/ for the dashboard");
    // Small answers go out at once rather than waiting on the browser's delayed ack.
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
        let _ = stream.set_nodelay(true);
    });
    let serve = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(tasks.stopping().cancelled_owned());
    let serve = async {
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    };
    // The cancelled token also ends the live feed and the watchers.
    abtrack_proto::shutdown::serve_until(serve, shutdown, &tasks).await;
    abtrack_proto::shutdown::stop_tasks(&tasks).await;
    tracing::info!("status-web stopped");
    Ok(())
}
