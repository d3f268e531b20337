//! A gateway server on a free port with a messenger the test chooses.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{broadcast, oneshot, watch};
use tonic::transport::Channel;

use abtrack_proto::Jid;
use abtrack_proto::gateway::v1::gateway_client::GatewayClient;
use abtrack_proto::gateway::v1::gateway_server::GatewayServer;
use abtrack_proto::tasks::Tasks;
use abtrack_wa_gateway::dry_run::DryRunMessenger;
use abtrack_wa_gateway::gateway::{Gateway, GatewaySettings};
use abtrack_wa_gateway::grpc::GatewayService;
use abtrack_wa_gateway::messenger::{
    Accepted, ConnectionState, Messenger, MessengerEvent, NumberCheck, Outgoing,
};
use abtrack_wa_gateway::pacing::PacingConfig;
use abtrack_wa_gateway::sendlog::SendLog;

/// The dry-run messenger, made slow on demand: each send waits `delay` first.
pub struct SlowMessenger {
    pub inner: DryRunMessenger,
    pub delay: Duration,
    pub calls: AtomicUsize,
}

#[async_trait]
impl Messenger for SlowMessenger {
    fn state(&self) -> watch::Receiver<ConnectionState> {
        self.inner.state()
    }
    fn events(&self) -> broadcast::Receiver<MessengerEvent> {
        self.inner.events()
    }
    async fn is_on_whatsapp(&self, jid: &Jid) -> abtrack_wa_gateway::Result<NumberCheck> {
        self.inner.is_on_whatsapp(jid).await
    }
    async fn send(&self, message: &Outgoing) -> abtrack_wa_gateway::Result<Accepted> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.inner.send(message).await
    }
    async fn request_pair_code(&self, phone: &str) -> abtrack_wa_gateway::Result<String> {
        self.inner.request_pair_code(phone).await
    }
    async fn logout(&self) -> abtrack_wa_gateway::Result<()> {
        self.inner.logout().await
    }
}

pub struct TestGateway {
    pub client: GatewayClient<Channel>,
    pub jsonl: PathBuf,
    pub data: PathBuf,
    pub messenger: Arc<SlowMessenger>,
    _stop: oneshot::Sender<()>,
}

pub struct Options {
    pub delay: Duration,
    pub min_interval: Duration,
    pub daily_cap: u32,
    pub not_on_whatsapp: Vec<String>,
    pub receipts: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            min_interval: Duration::ZERO,
            daily_cap: 0,
            not_on_whatsapp: vec![],
            receipts: false,
        }
    }
}

impl TestGateway {
    pub async fn start(dir: &Path, options: Options) -> Self {
        // As `run` does at start: the first number does not pay for the numbering plans.
        abtrack_proto::phone::warm_up("62");
        let jsonl = dir.join("dry-run.jsonl");
        let inner =
            DryRunMessenger::open(&jsonl, options.not_on_whatsapp, options.receipts).unwrap();
        let messenger = Arc::new(SlowMessenger {
            inner,
            delay: options.delay,
            calls: AtomicUsize::new(0),
        });
        let log = SendLog::open(&dir.join("sends.sqlite3")).unwrap();
        let tasks = Tasks::new();
        let gateway = Gateway::start(
            Arc::clone(&messenger) as Arc<dyn Messenger>,
            log,
            GatewaySettings {
                default_country_code: "62".into(),
                recent_sends: Vec::new(),
                pacing: PacingConfig {
                    min_interval: options.min_interval,
                    jitter: Duration::ZERO,
                    daily_cap: options.daily_cap,
                },
                check_cache_ttl: Duration::from_secs(60),
                delivery_timeout: None,
                answer_delay: Duration::ZERO,
                media: abtrack_wa_gateway::media::Preparer::new(
                    abtrack_wa_gateway::config::MediaLimits {
                        allow_http: true,
                        allow_private: true,
                        ..Default::default()
                    },
                    dir.join("media"),
                )
                .unwrap(),
            },
            &tasks,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let router = tonic::transport::Server::builder().add_service(GatewayServer::new(
            GatewayService::new(gateway, "sd-harapan"),
        ));
        tokio::spawn(abtrack_proto::shutdown::serve_grpc(
            router,
            listener,
            async move {
                let _ = stopped.await;
            },
            tasks,
        ));
        let client = GatewayClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        Self {
            client,
            jsonl,
            data: dir.to_owned(),
            messenger,
            _stop: stop,
        }
    }

    /// The job ids in the dry-run file, one per line.
    pub fn sent_job_ids(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.jsonl).unwrap_or_default();
        text.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["job_id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }
}
