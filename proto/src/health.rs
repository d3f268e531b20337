//! grpc.health.v1 wiring shared by the gRPC services.

use std::time::Duration;

use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;

use crate::token::InternalToken;

/// A health service that reports `service` (and the whole server) as serving.
pub async fn serving<S: tonic::server::NamedService>() -> (HealthReporter, HealthServer<impl Health>)
{
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter.set_serving::<S>().await;
    (reporter, service)
}

/// Waits, at most `within`, until the server at `url` answers that it is serving.
pub async fn wait_serving(url: &str, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if check(url, Duration::from_secs(1)).await == Ok(true) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Asks the server at `url` whether it is serving (the empty service name: the whole
/// server). Used by the `healthcheck` subcommands and by tests waiting for readiness.
pub async fn check(url: &str, timeout: Duration) -> Result<bool, String> {
    check_with_token(url, timeout, None).await
}

/// [`check`], sending the internal token like every other client of the services; the
/// health service answers without one too.
pub async fn check_with_token(
    url: &str,
    timeout: Duration,
    token: Option<&InternalToken>,
) -> Result<bool, String> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("invalid address {url}: {e}"))?
        .connect_timeout(timeout)
        .timeout(timeout);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let mut client = HealthClient::new(crate::token::with_token(channel, token));
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    request.set_timeout(timeout);
    let response = client
        .check(request)
        .await
        .map_err(|status| format!("health check failed: {}", status.message()))?;
    Ok(response.into_inner().status == ServingStatus::Serving as i32)
}

/// The address to reach a server bound to `addr` from the same machine: a wildcard
/// bind (`0.0.0.0`, `::`) is reached on loopback.
pub fn local_addr(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    let ip = if addr.ip().is_unspecified() {
        match addr {
            std::net::SocketAddr::V4(_) => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            std::net::SocketAddr::V6(_) => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        }
    } else {
        addr.ip()
    };
    std::net::SocketAddr::new(ip, addr.port())
}

/// The `healthcheck` subcommand of a gRPC service: exits 0 when the service listening
/// on `addr` answers that it is serving, 1 otherwise.
pub async fn exit_with_grpc_health(
    binary: &str,
    addr: std::net::SocketAddr,
    token: Option<&InternalToken>,
) -> ! {
    let url = format!("http://{}", local_addr(addr));
    match check_with_token(&url, Duration::from_secs(3), token).await {
        Ok(true) => std::process::exit(0),
        Ok(false) => eprintln!("{binary}: unhealthy: not serving"),
        Err(e) => eprintln!("{binary}: unhealthy: {e}"),
    }
    std::process::exit(1)
}
