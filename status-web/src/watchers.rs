//! Keeps the snapshot current: one subscription per service's `Watch` stream,
//! reopened with backoff whenever the service restarts.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tonic::transport::Channel;
use tonic::{Request, Status, Streaming};

use abtrack_proto::dispatcher::v1::{self as dpb, dispatcher_client::DispatcherClient};
use abtrack_proto::gateway::v1::{self as gpb, gateway_client::GatewayClient};
use abtrack_proto::logger::v1::{self as lpb, sheets_logger_client::SheetsLoggerClient};
use abtrack_proto::time::now_ms;

use crate::snapshot::{RECENT_JOBS, Service, Snapshot};

const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the three subscriptions.
pub fn start(
    snapshot: watch::Sender<Snapshot>,
    dispatcher: DispatcherClient<Channel>,
    gateway: GatewayClient<Channel>,
    logger: SheetsLoggerClient<Channel>,
) {
    let s = snapshot.clone();
    tokio::spawn(keep_watching(
        Service::Dispatcher,
        snapshot.clone(),
        move || {
            let (mut client, s) = (dispatcher.clone(), s.clone());
            async move {
                // Seed the recent jobs, then follow the changes.
                let mut list = Request::new(dpb::ListJobsRequest {
                    statuses: vec![],
                    limit: RECENT_JOBS as u32,
                });
                list.set_timeout(CALL_TIMEOUT);
                let jobs = client.list_jobs(list).await?.into_inner().jobs;
                s.send_modify(|snap| {
                    for job in jobs.iter().rev() {
                        snap.upsert_job(job);
                    }
                });
                Ok(client.watch(dpb::WatchRequest {}).await?.into_inner())
            }
        },
        Snapshot::apply_dispatcher,
    ));
    tokio::spawn(keep_watching(
        Service::Gateway,
        snapshot.clone(),
        move || {
            let mut client = gateway.clone();
            async move { Ok(client.watch(gpb::WatchRequest {}).await?.into_inner()) }
        },
        Snapshot::apply_gateway,
    ));
    tokio::spawn(keep_watching(
        Service::Logger,
        snapshot,
        move || {
            let mut client = logger.clone();
            async move { Ok(client.watch(lpb::WatchRequest {}).await?.into_inner()) }
        },
        Snapshot::apply_logger,
    ));
}

async fn keep_watching<T, Open, Fut>(
    service: Service,
    snapshot: watch::Sender<Snapshot>,
    open: Open,
    apply: fn(&mut Snapshot, T),
) where
    Open: Fn() -> Fut,
    Fut: Future<Output = Result<Streaming<T>, Status>>,
{
    let mut delay = RECONNECT_MIN;
    loop {
        let error = match open().await {
            Ok(mut stream) => {
                tracing::info!(service = ?service, "watching");
                snapshot.send_modify(|s| {
                    s.set_up(service, true, None, now_ms());
                });
                delay = RECONNECT_MIN;
                loop {
                    match stream.message().await {
                        Ok(Some(message)) => snapshot.send_modify(|s| apply(s, message)),
                        Ok(None) => break "the service closed its stream".to_owned(),
                        Err(status) => break status.message().to_owned(),
                    }
                }
            }
            Err(status) => status.message().to_owned(),
        };
        snapshot.send_if_modified(|s| {
            let changed = s.set_up(service, false, Some(error.clone()), now_ms());
            if changed {
                tracing::warn!(service = ?service, error = %error, "service unreachable; retrying");
            }
            changed
        });
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RECONNECT_MAX);
    }
}
