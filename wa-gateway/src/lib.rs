//! The WhatsApp gateway: owns the account's one session and sends messages through
//! it, paced per account and idempotent on the job id.
#![forbid(unsafe_code)]

pub mod config;
pub mod dry_run;
pub mod error;
pub mod gateway;
pub mod grpc;
pub mod media;
pub mod messenger;
pub mod pacing;
pub mod sendlog;
pub mod whatsapp;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use abtrack_proto::gateway::v1::gateway_server::GatewayServer;
use abtrack_proto::tasks::Tasks;

pub use config::Config;
pub use error::{Error, Result};

use crate::config::Mode;
use crate::gateway::{Gateway, GatewaySettings};
use crate::messenger::Messenger;
use crate::pacing::PacingConfig;
use crate::sendlog::SendLog;

/// Runs the gateway on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir)?;
    let tasks = Tasks::new();
    let country_code = config.default_country_code.clone();
    tokio::task::spawn_blocking(move || abtrack_proto::phone::warm_up(&country_code));
    let mut whatsapp = None;
    let log = SendLog::open(&config.data_dir.join("sends.sqlite3"))?;
    let messenger: Arc<dyn Messenger> = match config.mode {
        Mode::WhatsApp => {
            #[cfg(feature = "mock-server")]
            tracing::warn!(
                "built with the mock-server feature: WhatsApp's certificate is not checked; for runs against wa-mock only, never for real use"
            );
            let m = Arc::new(whatsapp::WhatsAppMessenger::start(
                whatsapp::WhatsAppSettings {
                    data_dir: config.data_dir.clone(),
                    server_url: config.server_url.clone(),
                    client_version: config.client_version,
                    reconnect_min: config.reconnect_min,
                    reconnect_max: config.reconnect_max,
                    server_ack_timeout: config.server_ack_timeout,
                    print_qr: config.print_qr,
                },
                &tasks,
            ));
            whatsapp = Some(Arc::clone(&m));
            m
        }
        Mode::DryRun => {
            let m = dry_run::DryRunMessenger::open(
                &config.dry_run_file,
                config.dry_run_not_on_whatsapp.clone(),
                config.dry_run_receipts,
            )?
            .with_answer_delay(config.dry_run_answer_delay)
            .with_tasks(&tasks);
            tracing::warn!(
                file = %m.path().display(),
                "dry-run mode: messages are written to a file, nothing reaches WhatsApp"
            );
            Arc::new(m)
        }
    };
    let now = abtrack_proto::time::now_ms();
    let recent_sends = log
        .sent_since(now - 24 * 3600 * 1000)
        .await?
        .into_iter()
        .map(|at| std::time::Duration::from_millis((now - at).max(0) as u64))
        .collect();
    let gateway = Gateway::start(
        messenger,
        log,
        GatewaySettings {
            default_country_code: config.default_country_code.clone(),
            recent_sends,
            pacing: PacingConfig {
                min_interval: config.min_interval,
                jitter: config.jitter,
                daily_cap: config.daily_cap,
            },
            check_cache_ttl: config.check_cache_ttl,
            // Without receipts every message would look overdue.
            delivery_timeout: match config.mode {
                Mode::WhatsApp => config.delivery_timeout,
                Mode::DryRun if config.dry_run_receipts => config.delivery_timeout,
                Mode::DryRun => None,
            },
            answer_delay: config.answer_delay,
            media: media::Preparer::new(config.media.clone(), config.data_dir.join("media"))?,
        },
        &tasks,
    );
    let (_health_reporter, health) =
        abtrack_proto::health::serving::<GatewayServer<grpc::GatewayService>>().await;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "wa-gateway listening");
    let router = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(abtrack_proto::token::require(
            GatewayServer::new(grpc::GatewayService::new(
                gateway.clone(),
                config.account.clone(),
            )),
            config.internal_token.as_ref(),
        ))
        .add_service(abtrack_proto::notice::server(
            [config.data_dir.clone()],
            config.internal_token.as_ref(),
        ));
    abtrack_proto::shutdown::serve_grpc(router, listener, shutdown, tasks.clone()).await;
    // Sends still waiting for WhatsApp's answer finish on the connection first; then
    // the session disconnects cleanly, flushing its store.
    gateway.finish_sends().await;
    if let Some(whatsapp) = whatsapp {
        whatsapp.shutdown().await;
    }
    abtrack_proto::shutdown::stop_tasks(&tasks).await;
    tracing::info!("wa-gateway stopped");
    Ok(())
}
