//! The `status-web` binary: reads the environment, binds, runs.

use std::time::Duration;

use abtrack_proto::config::{Command, startup};
use abtrack_status_web::{Config, config::VARS, run};
use anyhow::Context;

const ABOUT: &str =
    "Status server of AbTrack Notify: the aggregated state of every service and the REST API.";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (command, config) = startup("status-web", ABOUT, VARS, || {
        Config::from_lookup(|key| std::env::var(key).ok())
    });
    if command == Command::Healthcheck {
        std::process::exit(healthcheck(config.addr).await);
    }
    abtrack_proto::telemetry::init();
    config.log();
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| {
            format!(
                "failed to listen on {} (is the port taken? set STATUS_WEB_ADDR)",
                config.addr
            )
        })?;
    run(config, listener, abtrack_proto::shutdown_signal())
        .await
        .context("status-web failed")
}

/// `GET /healthz` over a plain TCP connection: no HTTP client needed in the image.
async fn healthcheck(addr: std::net::SocketAddr) -> i32 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = abtrack_proto::health::local_addr(addr);
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(
                format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response.starts_with(b"HTTP/1.1 200"))
    };
    match tokio::time::timeout(Duration::from_secs(3), attempt).await {
        Ok(Ok(true)) => 0,
        Ok(Ok(false)) => {
            eprintln!("status-web: unhealthy: /healthz did not answer 200");
            1
        }
        Ok(Err(e)) => {
            eprintln!("status-web: unhealthy: {e}");
            1
        }
        Err(_) => {
            eprintln!("status-web: unhealthy: no answer within 3 s");
            1
        }
    }
}
