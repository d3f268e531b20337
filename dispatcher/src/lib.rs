//! The dispatcher: the job queue. Takes jobs, leases them, sends them one at a time
//! through the gateway, writes outcomes back, retries, and returns expired leases.
#![forbid(unsafe_code)]

pub mod account;
pub mod config;
pub mod error;
pub mod events;
pub mod firestore;
pub mod gateway_link;
pub mod grpc;
pub mod job;
pub mod lifecycle;
pub mod local;
pub mod logger_link;
pub mod outcome;
pub mod pause;
pub mod queue;
pub mod stats;
pub mod storage;
pub mod worker;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use abtrack_proto::dispatcher::v1::dispatcher_server::DispatcherServer;
use abtrack_proto::gateway::v1::gateway_client::GatewayClient;
use abtrack_proto::logger::v1::sheets_logger_client::SheetsLoggerClient;
use abtrack_proto::tasks::Tasks;
use abtrack_proto::time::now_ms;
use abtrack_proto::token::with_token;

pub use config::Config;
pub use error::{Error, Result};

use crate::account::{Accounts, Wake};
use crate::config::Backend;
use crate::events::{Events, QueueState};
use crate::lifecycle::Rules;
use crate::queue::{Queue, Store};
use crate::worker::{Worker, WorkerSettings};

/// Runs the dispatcher on `listener` until `shutdown` resolves; the job in flight is
/// finished first (within the grace period).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir)?;
    let tasks = Tasks::new();
    let country_code = config.default_country_code.clone();
    tokio::task::spawn_blocking(move || abtrack_proto::phone::warm_up(&country_code));
    let accounts = Accounts::new(config.gateways.iter().map(|g| g.account.clone()).collect());
    let wake = Wake::new(&accounts);
    let store: Arc<dyn Store> = match &config.backend {
        Backend::Local => Arc::new(local::LocalQueue::open(
            &config.data_dir.join("queue.sqlite3"),
        )?),
        Backend::Firestore(settings) => {
            let db = firestore::connect::connect_with_retry(settings).await;
            let queue = firestore::FirestoreQueue::new(db, settings.collection.clone())
                .with_default_country_code(&config.default_country_code)
                .with_mapping(settings.mapping.clone())
                .with_finished(settings.finished.clone());
            queue.check_indexes(&accounts).await?;
            firestore::pickup::start(queue.clone(), wake.clone(), settings.fallback_poll, &tasks);
            Arc::new(queue)
        }
    };
    let events = Events::start(
        Arc::clone(&store),
        QueueState::new(store.backend(), &accounts),
        accounts.clone(),
        &tasks,
    );
    let token = config.internal_token.as_ref();
    let logger =
        SheetsLoggerClient::new(with_token(lazy_channel(&config.logger_url, &tasks)?, token));
    let recorder = logger_link::Recorder::default();
    recorder.start(
        logger,
        Arc::clone(&store),
        accounts.default_name().to_owned(),
        &tasks,
    );
    let rules = Rules {
        max_attempts: config.max_attempts,
    };
    let queue = Queue::new(store, rules, events.clone(), wake, recorder);
    let released = queue.release_owned(&config.owner, now_ms()).await?;
    if !released.is_empty() {
        tracing::warn!(
            count = released.len(),
            owner = %config.owner,
            "jobs this dispatcher held before it restarted are back in the queue"
        );
    }
    let pause = pause::PauseSwitch::load(config.data_dir.join("paused"), events.clone());
    let settings = WorkerSettings {
        owner: config.owner.clone(),
        lease: config.lease,
        send_timeout: config.send_timeout,
        backoff_base: config.backoff_base,
        backoff_max: config.backoff_max,
        rate_limit_delay: config.rate_limit_delay,
        poll_interval: config.poll_interval,
        storage: config.storage.clone(),
    };
    // One worker per account, each with its own gateway: an account that cannot send
    // holds up only its own jobs.
    for (gateway, lane) in config.gateways.iter().zip(accounts.lanes()) {
        let client = GatewayClient::new(with_token(lazy_channel(&gateway.url, &tasks)?, token));
        let readiness =
            gateway_link::watch_gateway(client.clone(), gateway.clone(), queue.clone(), &tasks);
        tasks.spawn(mirror_readiness(
            readiness.clone(),
            gateway.account.clone(),
            events.clone(),
        ));
        let worker = Worker {
            queue: queue.clone(),
            lane,
            gateway: client,
            readiness,
            paused: pause.subscribe(),
            settings: settings.clone(),
        };
        // Not cancelled: the job in flight is finished (within the grace period).
        tasks.spawn_to_finish(worker.run(tasks.stopping()));
    }
    tasks.spawn(sweep(queue.clone(), config.sweep_interval));

    let (_health_reporter, health) =
        abtrack_proto::health::serving::<DispatcherServer<grpc::DispatcherService>>().await;
    let service = grpc::DispatcherService {
        queue,
        pause,
        default_country_code: config.default_country_code.clone(),
        accounts,
        tasks: tasks.clone(),
    };
    let router = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(abtrack_proto::token::require(
            DispatcherServer::new(service),
            config.internal_token.as_ref(),
        ))
        .add_service(abtrack_proto::notice::server(
            [config.data_dir.clone()],
            config.internal_token.as_ref(),
        ));
    tracing::info!(addr = %listener.local_addr()?, "dispatcher listening");
    // A job in flight that does not finish within the grace period keeps its lease,
    // which expires, and the job is sent again (the gateway's log keeps it once).
    abtrack_proto::shutdown::serve_grpc(router, listener, shutdown, tasks.clone()).await;
    abtrack_proto::shutdown::stop_tasks(&tasks).await;
    tracing::info!("dispatcher stopped");
    Ok(())
}

/// A channel whose connection tasks belong to `tasks`.
fn lazy_channel(url: &str, tasks: &Tasks) -> Result<Channel> {
    Ok(Endpoint::from_shared(url.to_owned())
        .map_err(|e| Error::Internal(format!("invalid address {url}: {e}")))?
        .executor(tasks.executor())
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy())
}

/// Keeps the queue state's fields of `account` in step with its gateway's readiness.
async fn mirror_readiness(
    mut readiness: watch::Receiver<gateway_link::Readiness>,
    account: String,
    events: Events,
) {
    loop {
        let current = readiness.borrow_and_update().clone();
        events.update_state(|s| s.set_account(&account, current.ready, &current.reason));
        if readiness.changed().await.is_err() {
            return;
        }
    }
}

/// Returns expired leases to pending: the crash case.
async fn sweep(queue: Queue, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        match queue.sweep_expired(now_ms()).await {
            Ok(jobs) if !jobs.is_empty() => {
                tracing::warn!(count = jobs.len(), "expired leases returned to the queue");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot sweep expired leases"),
        }
    }
}
