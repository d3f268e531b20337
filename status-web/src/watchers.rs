//! Keeps the snapshot current: one subscription per service's `Watch` stream,
//! reopened with jittered backoff whenever the service restarts.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tonic::{Request, Status, Streaming};

use abtrack_proto::dispatcher::v1::{self as dpb, dispatcher_client::DispatcherClient};
use abtrack_proto::gateway::v1::{self as gpb, gateway_client::GatewayClient};
use abtrack_proto::logger::v1::{self as lpb, sheets_logger_client::SheetsLoggerClient};
use abtrack_proto::retry::Backoff;
use abtrack_proto::tasks::Tasks;
use abtrack_proto::time::now_ms;
use abtrack_proto::token::{TokenChannel, is_refused};

use crate::snapshot::{RECENT_JOBS, Service, Snapshot};

const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the three subscriptions.
pub fn start(
    snapshot: watch::Sender<Snapshot>,
    dispatcher: DispatcherClient<TokenChannel>,
    gateway: GatewayClient<TokenChannel>,
    logger: SheetsLoggerClient<TokenChannel>,
    tasks: &Tasks,
) {
    let s = snapshot.clone();
    tasks.spawn(keep_watching(
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
    tasks.spawn(keep_watching(
        Service::Gateway,
        snapshot.clone(),
        move || {
            let mut client = gateway.clone();
            async move { Ok(client.watch(gpb::WatchRequest {}).await?.into_inner()) }
        },
        Snapshot::apply_gateway,
    ));
    tasks.spawn(keep_watching(
        Service::Logger,
        snapshot,
        move || {
            let mut client = logger.clone();
            async move { Ok(client.watch(lpb::WatchRequest {}).await?.into_inner()) }
        },
        Snapshot::apply_logger,
    ));
}

/// What went wrong with a service: `Ok(why)` when it refused the internal token (a
/// configuration problem), `Err(why)` for anything else.
fn failure(service: Service, status: &Status) -> Result<String, String> {
    if is_refused(status) {
        Ok(refused_message(service.name(), status))
    } else {
        Err(status.message().to_owned())
    }
}

/// The explanation shown when `service` refuses status-web's internal token.
pub fn refused_message(service: &str, status: &Status) -> String {
    format!(
        "the {service} refused status-web's internal token ({}); set the same {} on every service",
        status.message(),
        abtrack_proto::token::ENV_VAR
    )
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
    let mut backoff = Backoff::new(RECONNECT_MIN, RECONNECT_MAX);
    loop {
        let failure = match open().await {
            Ok(mut stream) => {
                tracing::info!(service = ?service, "watching");
                snapshot.send_modify(|s| {
                    s.set_up(service, true, None, now_ms());
                });
                backoff.reset();
                loop {
                    match stream.message().await {
                        Ok(Some(message)) => snapshot.send_modify(|s| apply(s, message)),
                        Ok(None) => break Err("the service closed its stream".to_owned()),
                        Err(status) => break failure(service, &status),
                    }
                }
            }
            Err(status) => failure(service, &status),
        };
        snapshot.send_if_modified(|s| match &failure {
            Err(error) => {
                let changed = s.set_up(service, false, Some(error.clone()), now_ms());
                if changed {
                    tracing::warn!(service = ?service, error = %error, "service unreachable; retrying");
                }
                changed
            }
            Ok(refused) => {
                let changed = s.set_refused(service, refused.clone(), now_ms());
                if changed {
                    tracing::error!(service = ?service, "{refused}");
                }
                changed
            }
        });
        tokio::time::sleep(backoff.next_delay()).await;
    }
}
