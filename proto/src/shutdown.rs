//! The shutdown signal every service waits on: Ctrl-C, or SIGTERM on Unix.

use std::future::Future;
use std::time::Duration;

/// How long a service may take to finish in-flight work after the signal.
pub const GRACE_PERIOD: Duration = Duration::from_secs(10);

/// Resolves on the first Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received");
}

/// Runs `serve` until it ends by itself, or until `shutdown` resolves and then at most
/// the grace period more.
pub async fn with_grace_period<S>(serve: S, shutdown: tokio::sync::watch::Receiver<bool>)
where
    S: Future<Output = ()>,
{
    tokio::pin!(serve);
    let mut shutdown = shutdown;
    tokio::select! {
        () = &mut serve => return,
        _ = shutdown.wait_for(|stop| *stop) => {},
    }
    if tokio::time::timeout(GRACE_PERIOD, serve).await.is_err() {
        tracing::warn!(
            grace_secs = GRACE_PERIOD.as_secs(),
            "grace period over, stopping with work in flight"
        );
    }
}

/// Serves a gRPC router on `listener` until `shutdown` resolves, then lets in-flight
/// calls finish for at most the grace period.
pub async fn serve_grpc(
    router: tonic::transport::server::Router,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut server_stop = stop_rx.clone();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let serve = async move {
        let stopped = async move {
            let _ = server_stop.wait_for(|stop| *stop).await;
        };
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, stopped).await {
            tracing::error!(error = %e, "gRPC server failed");
        }
    };
    with_grace_period(serve, stop_rx).await;
}
