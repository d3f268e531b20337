//! Measures the resident memory of the real WhatsApp messenger over 100 reconnect
//! cycles against a local server that accepts TCP and closes, then 100 against one
//! that speaks WebSocket and sends garbage. Linux only (reads /proc/self/status).
//!
//! cargo run --release -p abtrack-wa-gateway --example reconnect_memory
// Test code: a failed unwrap is a failed test, which is what it should be.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use abtrack_wa_gateway::messenger::Messenger;
use abtrack_wa_gateway::whatsapp::{WhatsAppMessenger, WhatsAppSettings};

const CYCLES: usize = 100;
const SAMPLES: [usize; 6] = [1, 10, 25, 50, 75, 100];

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn closing_server(count: Arc<AtomicUsize>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    format!("ws://{addr}/ws/chat")
}

async fn garbage_server(count: Arc<AtomicUsize>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let count = Arc::clone(&count);
            tokio::spawn(async move {
                let _ = garbage(stream).await;
                count.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    format!("ws://{addr}/ws/chat")
}

async fn garbage(mut stream: TcpStream) -> std::io::Result<()> {
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
        .write_all(format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").as_bytes())
        .await?;
    let _ = stream.read(&mut buf).await?;
    let garbage: Vec<u8> = (0..96u8).map(|i| i.wrapping_mul(37) ^ 0xA5).collect();
    let mut frame = vec![0x82, garbage.len() as u8];
    frame.extend_from_slice(&garbage);
    stream.write_all(&frame).await
}

async fn measure(name: &str, url: String, count: Arc<AtomicUsize>) {
    let dir = tempfile::tempdir().unwrap();
    let messenger = WhatsAppMessenger::start(
        WhatsAppSettings {
            data_dir: dir.path().to_owned(),
            server_url: Some(url),
            client_version: Some((2, 3000, 1)),
            reconnect_min: Duration::from_millis(5),
            reconnect_max: Duration::from_millis(10),
            server_ack_timeout: Duration::from_secs(15),
            print_qr: false,
        },
        &Default::default(),
    );
    let state = messenger.state();
    let started = Instant::now();
    let mut next = 0;
    println!("{name}");
    println!("| cycle | VmRSS (KiB) | state |");
    println!("|---:|---:|---|");
    while next < SAMPLES.len() {
        let done = count.load(Ordering::SeqCst);
        if done >= SAMPLES[next] {
            let status = state.borrow().status;
            println!("| {done} | {} | {status:?} |", rss_kib());
            next += 1;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "too slow: {done} cycles"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("{CYCLES} cycles in {:?}\n", started.elapsed());
    messenger.shutdown().await;
}

#[tokio::main]
async fn main() {
    let count = Arc::new(AtomicUsize::new(0));
    let url = closing_server(Arc::clone(&count)).await;
    measure("TCP accepted then closed", url, count).await;
    let count = Arc::new(AtomicUsize::new(0));
    let url = garbage_server(Arc::clone(&count)).await;
    measure("WebSocket upgrade then garbage", url, count).await;
}
