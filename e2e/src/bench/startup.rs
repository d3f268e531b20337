//! Start-up time: from spawning the four processes until each answers its readiness
//! check (gRPC health for the three gRPC services, `GET /healthz` for status-web),
//! asked every few milliseconds.

use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::{Cluster, SERVICES};

/// How often each service is asked whether it serves.
pub const POLL_EVERY: Duration = Duration::from_millis(2);
/// A service that does not serve within this is a failed run.
const LIMIT: Duration = Duration::from_secs(30);

/// One launch: the time until each service served, in `SERVICES` order.
#[derive(Debug, Clone)]
pub struct Startup {
    pub services: Vec<(&'static str, Duration)>,
}

impl Startup {
    /// Until the last of the four served.
    pub fn all(&self) -> Duration {
        self.services
            .iter()
            .map(|(_, d)| *d)
            .max()
            .unwrap_or_default()
    }
}

async fn serves(http: &reqwest::Client, name: &str, port: u16) -> bool {
    if name == "status-web" {
        http.get(format!("http://127.0.0.1:{port}/healthz"))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    } else {
        abtrack_proto::health::check(&format!("http://127.0.0.1:{port}"), Duration::from_secs(1))
            .await
            .unwrap_or(false)
    }
}

/// Launches the four (local queue, dry-run gateway) and times each until it serves.
pub async fn measure() -> Startup {
    let started = Instant::now();
    let cluster = Cluster::launch(&[]);
    let mut polls = JoinSet::new();
    for name in SERVICES {
        let port = cluster.ports[name];
        let http = cluster.http.clone();
        polls.spawn(async move {
            loop {
                if serves(&http, name, port).await {
                    return (name, started.elapsed());
                }
                assert!(
                    started.elapsed() < LIMIT,
                    "{name} did not serve within {LIMIT:?}"
                );
                tokio::time::sleep(POLL_EVERY).await;
            }
        });
    }
    let mut times = Vec::new();
    while let Some(result) = polls.join_next().await {
        match result {
            Ok(time) => times.push(time),
            Err(e) => panic!("{e}\n{}", logs(&cluster)),
        }
    }
    times.sort_by_key(|(name, _)| SERVICES.iter().position(|s| s == name));
    drop(cluster);
    Startup { services: times }
}

fn logs(cluster: &Cluster) -> String {
    SERVICES
        .iter()
        .map(|s| format!("---- {s} ----\n{}", cluster.log(s)))
        .collect()
}
