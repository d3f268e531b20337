//! The shutdown signal every service waits on: Ctrl-C, SIGTERM on Unix, Ctrl-Break
//! or the console window closing on Windows.

use std::future::Future;
use std::time::Duration;

use crate::tasks::Tasks;

/// How long a service may take to finish in-flight work after the signal.
pub const GRACE_PERIOD: Duration = Duration::from_secs(10);

/// Resolves on the first Ctrl-C, SIGTERM (Unix), Ctrl-Break or close event (Windows).
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
    // Windows: Ctrl-Break, and the console window closing (every process of the
    // window is told; it has a few seconds before it is ended).
    #[cfg(windows)]
    let terminate = async {
        use tokio::signal::windows::{ctrl_break, ctrl_close};
        match (ctrl_break(), ctrl_close()) {
            (Ok(mut brk), Ok(mut close)) => {
                tokio::select! {
                    _ = brk.recv() => {}
                    _ = close.recv() => {}
                }
            }
            _ => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(any(unix, windows)))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received");
}

/// Serves a gRPC router on `listener` until `shutdown` resolves. Then it cancels the
/// service's stoppable tasks (so `Watch` streams end) and lets in-flight calls finish
/// for at most the grace period; the caller then finishes what is left and calls
/// [`stop_tasks`].
pub async fn serve_grpc(
    router: tonic::transport::server::Router,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    tasks: Tasks,
) {
    // Small answers go out at once rather than waiting on the peer's delayed ack.
    let incoming = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        |stream| {
            stream.inspect(|s| {
                let _ = s.set_nodelay(true);
            })
        },
    );
    let stopped = tasks.stopping().cancelled_owned();
    let serve = async {
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, stopped).await {
            tracing::error!(error = %e, "gRPC server failed");
        }
    };
    serve_until(serve, shutdown, &tasks).await;
}

/// Runs `serve`, a server that shuts down gracefully once the token of `tasks` is
/// cancelled, until it ends by itself or `shutdown` resolves. Then it cancels the
/// token (loops stop, open streams end) and lets the server finish its calls for at
/// most the grace period.
pub async fn serve_until(
    serve: impl Future<Output = ()>,
    shutdown: impl Future<Output = ()>,
    tasks: &Tasks,
) {
    tokio::pin!(serve);
    tokio::select! {
        () = &mut serve => {}
        () = shutdown => {}
    }
    tasks.stopping().cancel();
    if tokio::time::timeout(GRACE_PERIOD, serve).await.is_err() {
        tracing::warn!(
            grace_secs = GRACE_PERIOD.as_secs(),
            "grace period over, stopping with calls in flight"
        );
    }
}

/// Stops every task of `tasks` and waits, at most the grace period, for them to end:
/// the last step of every service's `run()`.
pub async fn stop_tasks(tasks: &Tasks) {
    if tokio::time::timeout(GRACE_PERIOD, tasks.stop())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = GRACE_PERIOD.as_secs(),
            tasks = tasks.running(),
            "grace period over, stopping with work in flight"
        );
    }
}
