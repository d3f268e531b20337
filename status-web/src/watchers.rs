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

/// What one subscription reports on: a service, or the gateway of the `i`-th account.
#[derive(Debug, Clone, Copy)]
enum Target {
    Service(Service),
    Gateway(usize),
}

impl Target {
    fn service(self) -> Service {
        match self {
            Target::Service(service) => service,
            Target::Gateway(_) => Service::Gateway,
        }
    }

    fn set_up(self, s: &mut Snapshot, up: bool, error: Option<String>, now: i64) -> bool {
        match self {
            Target::Service(service) => s.set_up(service, up, error, now),
            Target::Gateway(i) => s.set_gateway_up(i, up, error, now),
        }
    }

    fn set_refused(self, s: &mut Snapshot, error: String, now: i64) -> bool {
        match self {
            Target::Service(service) => s.set_refused(service, error, now),
            Target::Gateway(i) => s.set_gateway_refused(i, error, now),
        }
    }
}

/// Starts the subscriptions: the dispatcher, each account's gateway, the logger.
pub fn start(
    snapshot: watch::Sender<Snapshot>,
    dispatcher: DispatcherClient<TokenChannel>,
    gateways: Vec<GatewayClient<TokenChannel>>,
    logger: SheetsLoggerClient<TokenChannel>,
    tasks: &Tasks,
) {
    let s = snapshot.clone();
    tasks.spawn(keep_watching(
        Target::Service(Service::Dispatcher),
        snapshot.clone(),
        move || {
            let (mut client, s) = (dispatcher.clone(), s.clone());
            async move {
                // Seed the recent jobs, then follow the changes.
                let mut list = Request::new(dpb::ListJobsRequest {
                    statuses: vec![],
                    limit: RECENT_JOBS as u32,
                    ..Default::default()
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
    for (i, gateway) in gateways.into_iter().enumerate() {
        tasks.spawn(keep_watching(
            Target::Gateway(i),
            snapshot.clone(),
            move || {
                let mut client = gateway.clone();
                async move { Ok(client.watch(gpb::WatchRequest {}).await?.into_inner()) }
            },
            move |s: &mut Snapshot, event| s.apply_account_gateway(i, event),
        ));
    }
    tasks.spawn(keep_watching(
        Target::Service(Service::Logger),
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
    target: Target,
    snapshot: watch::Sender<Snapshot>,
    open: Open,
    apply: impl Fn(&mut Snapshot, T),
) where
    Open: Fn() -> Fut,
    Fut: Future<Output = Result<Streaming<T>, Status>>,
{
    let service = target.service();
    let mut backoff = Backoff::new(RECONNECT_MIN, RECONNECT_MAX);
    loop {
        let failure = match open().await {
            Ok(mut stream) => {
                tracing::info!(service = ?target, "watching");
                snapshot.send_modify(|s| {
                    target.set_up(s, true, None, now_ms());
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
                let changed = target.set_up(s, false, Some(error.clone()), now_ms());
                if changed {
                    tracing::warn!(service = ?target, error = %error, "service unreachable; retrying");
                }
                changed
            }
            Ok(refused) => {
                let changed = target.set_refused(s, refused.clone(), now_ms());
                if changed {
                    tracing::error!(service = ?target, "{refused}");
                }
                changed
            }
        });
        tokio::time::sleep(backoff.next_delay()).await;
    }
}
