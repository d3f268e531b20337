//! A running system for the tests: the real dispatcher and sheets-logger, a
//! scripted gateway, and status-web with a password and an API key, or in the
//! no-password mode of a dashboard on the operator's own PC.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tonic::Status;

use abtrack_proto::gateway::v1::{self as gpb, gateway_server::GatewayServer};
use abtrack_test_support::ScriptedGateway;

pub const PASSWORD: &str = "correct horse battery";
pub const API_KEY: &str = "test-api-key-0123456789";
pub use abtrack_test_support::PAIR_CODE;
/// The launcher's record of restarts, in the system's folder.
const LAUNCHER_FILE: &str = "launcher-restarts.json";

pub struct System {
    /// `http://127.0.0.1:port` of status-web.
    pub base: String,
    events: watch::Sender<Vec<gpb::GatewayEvent>>,
    pub logouts: Arc<Mutex<u32>>,
    /// With [`System::start_two_accounts`]: the second account's gateway.
    pub second: Option<SecondAccount>,
    /// The services' data, and the launcher's record of restarts.
    dir: tempfile::TempDir,
    _stops: Vec<oneshot::Sender<()>>,
}

/// The second account's scripted gateway.
pub struct SecondAccount {
    events: watch::Sender<Vec<gpb::GatewayEvent>>,
    pub logouts: Arc<Mutex<u32>>,
}

impl SecondAccount {
    pub fn emit(&self, event: gpb::GatewayEvent) {
        self.events.send_modify(|events| events.push(event));
    }
}

/// The name of the second account of [`System::start_two_accounts`]; the first is
/// `default`.
pub const SECOND: &str = "smp-2";

/// A scripted gateway serving until the system stops: its URL, events and logouts.
async fn scripted_gateway(
    stops: &mut Vec<oneshot::Sender<()>>,
) -> (
    String,
    watch::Sender<Vec<gpb::GatewayEvent>>,
    Arc<Mutex<u32>>,
) {
    let (events, events_rx) = watch::channel(vec![state(gpb::ConnectionStatus::WaitingForQr)]);
    // Sends succeed, except that a message `fail-once` is refused as invalid the
    // first time (a permanent failure) and accepted after a retry, and a message
    // `retry-once` is refused for now the first time (the dispatcher tries again).
    let gateway = ScriptedGateway::new(events_rx, |request, call| async move {
        if request.message == "fail-once" && call == 1 {
            return Err(Status::invalid_argument("recipient refused by the script"));
        }
        if request.message == "retry-once" && call == 1 {
            return Err(Status::aborted("refused for now by the script"));
        }
        Ok(())
    });
    let logouts = Arc::clone(&gateway.logouts);
    let (gl, gateway_url) = listener().await;
    let router = tonic::transport::Server::builder().add_service(GatewayServer::new(gateway));
    tokio::spawn(abtrack_proto::shutdown::serve_grpc(
        router,
        gl,
        stopper(stops),
        Default::default(),
    ));
    (gateway_url, events, logouts)
}

async fn listener() -> (tokio::net::TcpListener, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

fn stopper(stops: &mut Vec<oneshot::Sender<()>>) -> impl Future<Output = ()> + Send + 'static {
    let (tx, rx) = oneshot::channel::<()>();
    stops.push(tx);
    async move {
        let _ = rx.await;
    }
}

/// How status-web lets people in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// `STATUS_WEB_PASSWORD` and `STATUS_WEB_API_KEY` set.
    Password,
    /// Neither: no login, loopback only.
    Open,
}

/// The scripted gateway's connection state `status`.
pub fn state(status: gpb::ConnectionStatus) -> gpb::GatewayEvent {
    ScriptedGateway::state(status)
}

impl System {
    /// Starts everything with a password, the gateway waiting for a QR scan.
    pub async fn start() -> Self {
        Self::start_with(Login::Password).await
    }

    /// Starts everything, the gateway waiting for a QR scan.
    pub async fn start_with(login: Login) -> Self {
        Self::start_system(login, false).await
    }

    /// Starts everything with a password and two accounts, `default` and
    /// [`SECOND`], each gateway waiting for a QR scan.
    pub async fn start_two_accounts() -> Self {
        Self::start_system(Login::Password, true).await
    }

    async fn start_system(login: Login, two_accounts: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut stops = Vec::new();
        let (gateway_url, events, logouts) = scripted_gateway(&mut stops).await;
        let (second, accounts) = if two_accounts {
            let (url, events, logouts) = scripted_gateway(&mut stops).await;
            let accounts = format!("default={gateway_url},{SECOND}={url}");
            (Some(SecondAccount { events, logouts }), Some(accounts))
        } else {
            (None, None)
        };
        // The gateways as the dispatcher and status-web are told of them.
        let gateway_vars = |one: &'static str, several: &'static str| match &accounts {
            Some(list) => (several, list.clone()),
            None => (one, gateway_url.clone()),
        };

        let (ll, logger_url) = listener().await;
        let data = dir.path().join("logger");
        let logger_config = abtrack_sheets_logger::Config::from_lookup(|k| match k {
            "SHEETS_DATA_DIR" => Some(data.display().to_string()),
            _ => None,
        })
        .unwrap();
        tokio::spawn(abtrack_sheets_logger::run(
            logger_config,
            ll,
            stopper(&mut stops),
        ));

        let (dl, dispatcher_url) = listener().await;
        let env: HashMap<&str, String> = HashMap::from([
            (
                "DISPATCHER_DATA_DIR",
                dir.path().join("dispatcher").display().to_string(),
            ),
            gateway_vars("DISPATCHER_GATEWAY_URL", "DISPATCHER_ACCOUNTS"),
            ("DISPATCHER_LOGGER_URL", logger_url.clone()),
            ("DISPATCHER_LEASE_SECS", "10".into()),
            ("DISPATCHER_SEND_TIMEOUT_SECS", "2".into()),
            ("DISPATCHER_MAX_ATTEMPTS", "3".into()),
            ("DISPATCHER_BACKOFF_BASE_SECS", "0".into()),
            ("DISPATCHER_RATE_LIMIT_DELAY_SECS", "0".into()),
            ("DISPATCHER_POLL_INTERVAL_SECS", "1".into()),
        ]);
        let config = abtrack_dispatcher::Config::from_lookup(|k| env.get(k).cloned()).unwrap();
        tokio::spawn(abtrack_dispatcher::run(config, dl, stopper(&mut stops)));

        let (sl, base) = listener().await;
        // As the launcher sets it; the file only exists once a test writes it.
        let mut env: HashMap<&str, String> = HashMap::from([
            ("STATUS_WEB_DISPATCHER_URL", dispatcher_url),
            gateway_vars("STATUS_WEB_GATEWAY_URL", "STATUS_WEB_ACCOUNTS"),
            ("STATUS_WEB_LOGGER_URL", logger_url),
            (
                "STATUS_WEB_LAUNCHER_FILE",
                dir.path().join(LAUNCHER_FILE).display().to_string(),
            ),
        ]);
        if login == Login::Password {
            env.insert("STATUS_WEB_PASSWORD", PASSWORD.into());
            env.insert("STATUS_WEB_API_KEY", API_KEY.into());
        }
        let config = abtrack_status_web::Config::from_lookup(|k| env.get(k).cloned()).unwrap();
        tokio::spawn(abtrack_status_web::run(config, sl, stopper(&mut stops)));

        let system = Self {
            base,
            events,
            logouts,
            second,
            dir,
            _stops: stops,
        };
        system
            .wait_for_status("every service up", |s| {
                ["dispatcher", "gateway", "logger"]
                    .iter()
                    .all(|k| s["services"][k]["up"] == true)
            })
            .await;
        system
    }

    /// Appends events to the gateway's Watch streams.
    pub fn emit(&self, event: gpb::GatewayEvent) {
        self.events.send_modify(|events| events.push(event));
    }

    pub fn emit_qr(&self, code: &str, expires_in: Duration) {
        let expires = abtrack_proto::time::now_ms() + expires_in.as_millis() as i64;
        self.emit(gpb::GatewayEvent {
            event: Some(gpb::gateway_event::Event::Qr(gpb::QrCode {
                code: code.into(),
                expires_at: Some(abtrack_proto::time::to_timestamp(expires)),
            })),
        });
    }

    /// Replaces the launcher's record of restarts as the launcher does: written
    /// beside it, then renamed over it.
    pub fn write_launcher_file(&self, content: &[u8]) {
        let path = self.dir.path().join(LAUNCHER_FILE);
        let partial = self.dir.path().join(format!("{LAUNCHER_FILE}.partial"));
        std::fs::write(&partial, content).unwrap();
        std::fs::rename(&partial, path).unwrap();
    }

    /// The data folder of a service the system runs for real: `dispatcher` or
    /// `logger`.
    pub fn data_dir(&self, service: &str) -> PathBuf {
        assert!(
            ["dispatcher", "logger"].contains(&service),
            "no data folder for {service}"
        );
        self.dir.path().join(service)
    }

    /// Does what a service does when its data file `name` cannot be read at start:
    /// moves it to `damaged/<id>/` (here: writes a broken file there) and records the
    /// notice beside it. Returns that folder.
    pub fn write_notice(&self, service: &str, id: &str, name: &str, carried_over: u64) -> PathBuf {
        let data = self.data_dir(service);
        let folder = data.join(abtrack_proto::notice::FOLDER).join(id);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(name), b"not a database").unwrap();
        abtrack_proto::notice::write(
            &data.join(name),
            &folder.join(name),
            "file is not a database",
            carried_over,
        )
        .unwrap();
        folder
    }

    pub fn remove_launcher_file(&self) {
        std::fs::remove_file(self.dir.path().join(LAUNCHER_FILE)).unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET /metrics` with the API key.
    pub async fn metrics(&self) -> String {
        reqwest::Client::new()
            .get(self.url("/metrics"))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Polls `GET /api/status` (with the API key) until `ready` holds, for at most 20 s.
    pub async fn wait_for_status(
        &self,
        what: &str,
        ready: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let client = reqwest::Client::new();
        let mut last = serde_json::Value::Null;
        for _ in 0..400 {
            if let Ok(r) = client
                .get(self.url("/api/status"))
                .bearer_auth(API_KEY)
                .send()
                .await
                && r.status().is_success()
            {
                last = r.json().await.unwrap();
                if ready(&last) {
                    return last;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}; last status: {last}");
    }
}
