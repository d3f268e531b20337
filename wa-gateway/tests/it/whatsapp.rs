//! The real WhatsApp client (`WA_MODE=whatsapp`) pointed at local servers that are
//! not WhatsApp: one that accepts TCP and closes, one that speaks WebSocket and then
//! sends garbage. And a damaged session store, in the gateway run as a process.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::Channel;

use abtrack_proto::gateway::v1 as pb;
use abtrack_proto::gateway::v1::gateway_client::GatewayClient;
use abtrack_wa_gateway::Config;

/// How long the fake servers hold a connection before ending it, so a watcher sees
/// the `connecting` state that precedes each failure.
const HOLD: Duration = Duration::from_millis(150);
/// Bound on every wait for a state.
const WAIT: Duration = Duration::from_secs(30);

/// A server that accepts TCP connections and closes them; counts connections.
async fn closing_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                tokio::time::sleep(HOLD).await;
                drop(stream);
            });
        }
    });
    (format!("ws://{addr}/ws/chat"), accepted)
}

/// A server that completes the WebSocket upgrade, then answers the client's first
/// frame with a binary frame of garbage; counts upgrades.
async fn garbage_websocket_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upgraded = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&upgraded);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let count = Arc::clone(&count);
            tokio::spawn(async move {
                if upgrade(stream, &count).await.is_err() {
                    // The client left first; nothing to do.
                }
            });
        }
    });
    (format!("ws://{addr}/ws/chat"), upgraded)
}

async fn upgrade(mut stream: TcpStream, count: &AtomicUsize) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&request);
    let key = text
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    let accept = base64::engine::general_purpose::STANDARD.encode(Sha1::digest(
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    ));
    stream
        .write_all(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    count.fetch_add(1, Ordering::SeqCst);
    // The client's noise hello, then garbage back (an unmasked binary frame).
    let _ = stream.read(&mut buf).await?;
    let garbage: Vec<u8> = (0..96u8).map(|i| i.wrapping_mul(37) ^ 0xA5).collect();
    let mut frame = vec![0x82, garbage.len() as u8];
    frame.extend_from_slice(&garbage);
    stream.write_all(&frame).await?;
    tokio::time::sleep(HOLD).await;
    Ok(())
}

fn whatsapp_config(data: &Path, server_url: &str) -> Config {
    let data = data.display().to_string();
    let map: HashMap<&str, String> = [
        ("WA_MODE", "whatsapp".to_owned()),
        ("WA_DATA_DIR", data),
        ("WA_SERVER_URL", server_url.to_owned()),
        // No version fetch from web.whatsapp.com.
        ("WA_CLIENT_VERSION", "2.3000.1".to_owned()),
        ("WA_RECONNECT_MIN_MS", "50".to_owned()),
        ("WA_RECONNECT_MAX_MS", "800".to_owned()),
        ("WA_PRINT_QR", "false".to_owned()),
    ]
    .into_iter()
    .collect();
    Config::from_lookup(|k| map.get(k).cloned()).unwrap()
}

struct Running {
    client: GatewayClient<Channel>,
    task: tokio::task::JoinHandle<abtrack_wa_gateway::Result<()>>,
    _stop: oneshot::Sender<()>,
}

async fn start(config: Config) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(abtrack_wa_gateway::run(config, listener, async move {
        let _ = stopped.await;
    }));
    let client = GatewayClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    Running {
        client,
        task,
        _stop: stop,
    }
}

async fn states(client: &mut GatewayClient<Channel>) -> tonic::Streaming<pb::GatewayEvent> {
    client
        .watch(pb::WatchRequest::default())
        .await
        .unwrap()
        .into_inner()
}

/// The next connection state on the stream (other events are skipped).
async fn next_state(stream: &mut tonic::Streaming<pb::GatewayEvent>) -> pb::ConnectionState {
    loop {
        let event = tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("a state within the bound")
            .unwrap()
            .expect("the stream stays open");
        if let Some(pb::gateway_event::Event::State(state)) = event.event {
            return state;
        }
    }
}

fn ms(t: &Option<prost_types::Timestamp>) -> i64 {
    let t = t.as_ref().expect("a timestamp");
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

/// Follows the states until `cycles` disconnections with a retry time were seen;
/// checks each is preceded by `connecting` and returns the retry delays.
async fn disconnect_cycles(
    stream: &mut tonic::Streaming<pb::GatewayEvent>,
    cycles: usize,
) -> Vec<i64> {
    let mut delays = Vec::new();
    let mut connecting_seen = false;
    while delays.len() < cycles {
        let state = next_state(stream).await;
        assert_eq!(state.mode, "whatsapp");
        match state.status() {
            pb::ConnectionStatus::Connecting => connecting_seen = true,
            pb::ConnectionStatus::Disconnected => {
                assert!(connecting_seen, "disconnected without connecting first");
                connecting_seen = false;
                assert!(!state.detail.is_empty());
                delays.push(ms(&state.retry_at) - ms(&state.since));
            }
            // A session being moved aside (a damaged store, a reset) passes here.
            pb::ConnectionStatus::Starting | pb::ConnectionStatus::LoggedOut => {}
            other => panic!("unexpected state {other:?}: {}", state.detail),
        }
    }
    delays
}

async fn assert_unavailable(client: &mut GatewayClient<Channel>) {
    let mut send = tonic::Request::new(pb::SendRequest {
        job_id: "offline-1".into(),
        to: "081234567890".into(),
        message: "Ananda hadir".into(),
        ..Default::default()
    });
    send.set_timeout(Duration::from_secs(10));
    let status = client.send(send).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let check = client
        .check_number(pb::CheckNumberRequest {
            phone: "081234567890".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(check.code(), Code::Unavailable, "{check:?}");
}

fn assert_growing(delays: &[i64]) {
    for pair in delays.windows(2) {
        assert!(pair[1] >= pair[0], "backoff shrank: {delays:?}");
    }
    assert!(
        delays.last() > delays.first(),
        "backoff did not grow: {delays:?}"
    );
    assert!(delays.iter().all(|d| (50..=800).contains(d)), "{delays:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_closes_the_connection_gives_growing_backoff_and_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let (url, accepted) = closing_server().await;
    let mut gw = start(whatsapp_config(dir.path(), &url)).await;
    let mut stream = states(&mut gw.client).await;
    let delays = disconnect_cycles(&mut stream, 5).await;
    assert_growing(&delays);
    assert!(accepted.load(Ordering::SeqCst) >= 5);
    assert_unavailable(&mut gw.client).await;
    // Still up, still retrying.
    disconnect_cycles(&mut stream, 2).await;
    assert!(!gw.task.is_finished());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_server_that_sends_garbage_gives_growing_backoff_and_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let (url, upgraded) = garbage_websocket_server().await;
    let mut gw = start(whatsapp_config(dir.path(), &url)).await;
    let mut stream = states(&mut gw.client).await;
    let delays = disconnect_cycles(&mut stream, 5).await;
    assert_growing(&delays);
    assert!(
        upgraded.load(Ordering::SeqCst) >= 5,
        "the client spoke WebSocket"
    );
    assert_unavailable(&mut gw.client).await;
    disconnect_cycles(&mut stream, 2).await;
    assert!(!gw.task.is_finished());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_code_and_logout_without_a_server_answer_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _) = closing_server().await;
    let mut gw = start(whatsapp_config(dir.path(), &url)).await;
    let mut stream = states(&mut gw.client).await;
    disconnect_cycles(&mut stream, 1).await;
    let status = gw
        .client
        .request_pair_code(pb::RequestPairCodeRequest {
            phone: "081234567890".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let bad = gw
        .client
        .request_pair_code(pb::RequestPairCodeRequest {
            phone: "not a number".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    // A reset keeps the old session and starts over.
    gw.client.logout(pb::LogoutRequest {}).await.unwrap();
    let kept: Vec<_> = std::fs::read_dir(dir.path().join("old-sessions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].join("whatsapp.sqlite3").exists());
    assert!(kept[0].to_str().unwrap().ends_with("-reset"));
    disconnect_cycles(&mut stream, 1).await;
}

/// The gateway binary as a process, its output in `<dir>/gateway.log`.
struct Process {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_gateway(data: &Path, addr: &str, server_url: &str) -> Process {
    let log = data.join("gateway.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_wa-gateway"))
        .env_clear()
        .env("WA_MODE", "whatsapp")
        .env("WA_ADDR", addr)
        .env("WA_DATA_DIR", data)
        .env("WA_SERVER_URL", server_url)
        .env("WA_CLIENT_VERSION", "2.3000.1")
        .env("WA_RECONNECT_MIN_MS", "50")
        .env("WA_RECONNECT_MAX_MS", "800")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    Process { child, log }
}

async fn connect_with_bound(addr: &str) -> GatewayClient<Channel> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(client) = GatewayClient::connect(format!("http://{addr}")).await {
            return client;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway did not start serving"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts the gateway on a damaged session store; checks that it serves, moved the
/// store aside unchanged, reached `connecting` on a fresh store, and said so.
async fn heals_a_damaged_store(damage: impl FnOnce(&Path) -> Option<Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("session");
    std::fs::create_dir_all(&session).unwrap();
    let original = damage(&session.join("whatsapp.sqlite3"));
    let (url, _) = closing_server().await;
    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let process = spawn_gateway(dir.path(), &addr, &url);
    let mut client = connect_with_bound(&addr).await;
    let mut stream = states(&mut client).await;
    disconnect_cycles(&mut stream, 1).await;

    let kept: Vec<_> = std::fs::read_dir(dir.path().join("old-sessions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let kept_store = kept[0].join("whatsapp.sqlite3");
    match original {
        Some(bytes) => assert_eq!(std::fs::read(&kept_store).unwrap(), bytes),
        None => assert!(kept_store.is_dir()),
    }
    // A fresh store took its place.
    assert!(session.join("whatsapp.sqlite3").is_file());
    let log = std::fs::read_to_string(&process.log).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("moved the WhatsApp session aside"))
        .unwrap_or_else(|| panic!("no line says what happened:\n{log}"));
    assert!(line.contains("cannot be opened or read"), "{line}");
    assert!(line.contains(kept[0].to_str().unwrap()), "{line}");
    assert!(line.contains("starting a fresh pairing"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_random_bytes_is_kept_aside_and_pairing_starts_fresh() {
    heals_a_damaged_store(|store| {
        let bytes: Vec<u8> = (0..8192u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(store, &bytes).unwrap();
        Some(bytes)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_store_is_kept_aside_and_pairing_starts_fresh() {
    // Tests run as root, for whom file permissions do not stop reads: a folder where
    // the file should be is unreadable as a database for anyone.
    heals_a_damaged_store(|store| {
        std::fs::create_dir(store).unwrap();
        std::fs::write(store.join("note"), b"not a database").unwrap();
        None
    })
    .await;
}
