//! Resident memory per WhatsApp account: N gateways (release builds, in WhatsApp mode)
//! each linked to its own phone of the mock WhatsApp Web server and left idle, beside
//! the dispatcher, the logger and status-web sending for all of them.
//!
//! The gateways must accept the mock's self-made certificate, so the binaries come
//! from a build with `abtrack-wa-gateway/mock-server`, in a target folder of its own
//! (see [`COMMAND`]): the release binaries in `target/release` never have it.

use std::fmt::Write as _;
use std::time::Duration;

use abtrack_proto::gateway::v1 as pb;
use abtrack_proto::gateway::v1::gateway_client::GatewayClient;
use abtrack_wa_mock::MockServer;

use crate::Cluster;

/// How to build and run it.
pub const COMMAND: &str = "cargo build --release --target-dir target/bench-mock --features abtrack-wa-gateway/mock-server -p abtrack-wa-gateway -p abtrack-dispatcher -p abtrack-sheets-logger -p abtrack-status-web -p abtrack-e2e --bins && target/bench-mock/release/bench --accounts";

/// How long the linked system is left idle before it is measured.
pub const IDLE: Duration = Duration::from_secs(20);
const LINK_LIMIT: Duration = Duration::from_secs(60);

/// The resident memory of one configuration.
#[derive(Debug, Clone)]
pub struct Measured {
    pub accounts: usize,
    /// Each gateway's VmRSS (KiB), the first account's first.
    pub gateways: Vec<u64>,
    /// The dispatcher, the logger and status-web (KiB).
    pub others: Vec<(&'static str, u64)>,
}

impl Measured {
    pub fn total(&self) -> u64 {
        self.gateways.iter().sum::<u64>() + self.others.iter().map(|(_, k)| k).sum::<u64>()
    }
}

fn phone(i: usize) -> String {
    format!("62811000{i:05}")
}

fn gateway_name(i: usize) -> String {
    if i == 0 {
        "wa-gateway".into()
    } else {
        format!("wa-gateway-{i}")
    }
}

/// The QR code the gateway on `port` shows once the mock renews its pairing round
/// (the code the dashboard draws).
pub async fn fresh_qr(port: u16, mock: &MockServer) -> String {
    let mut client = GatewayClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .expect("the gateway serves");
    let mut events = client
        .watch(pb::WatchRequest::default())
        .await
        .expect("the gateway's Watch")
        .into_inner();
    mock.refresh_pairing();
    let wait = async {
        loop {
            let event = events
                .message()
                .await
                .expect("the stream stays open")
                .expect("the stream stays open");
            if let Some(pb::gateway_event::Event::Qr(qr)) = event.event {
                return qr.code;
            }
        }
    };
    tokio::time::timeout(LINK_LIMIT, wait)
        .await
        .expect("a QR code within the bound")
}

/// Starts the `i`-th account's gateway on a free port; answers the port. A port
/// another process took between its choice and the bind (the gateways' own
/// connections take ports too) makes the gateway exit: it is tried on another.
async fn spawn_gateway(cluster: &mut Cluster, i: usize, account: &str) -> u16 {
    let name = gateway_name(i);
    for _ in 0..5 {
        let port = cluster.spawn_gateway(&name, account);
        tokio::time::sleep(Duration::from_millis(500)).await;
        if cluster.running(&name) {
            return port;
        }
        cluster.extra_ports.remove(&name);
    }
    panic!("{name} could not listen on any of five free ports");
}

/// Runs the system with `accounts` accounts, links each, waits [`IDLE`], measures.
pub async fn measure(accounts: usize) -> Measured {
    let accounts = accounts.max(1);
    let mock = MockServer::start(&phone(0)).await.expect("the mock serves");
    for i in 1..accounts {
        mock.add_phone(&phone(i));
    }
    let env = [
        ("WA_MODE", "whatsapp"),
        ("WA_SERVER_URL", mock.url()),
        ("WA_CLIENT_VERSION", "2.3000.1"),
        ("WA_PRINT_QR", "false"),
        ("WA_ACCOUNT", "account-0"),
    ];
    let mut cluster = Cluster::launch(&env);
    cluster.wait_ready_until("waiting_for_qr").await;
    let mut list = vec![format!(
        "account-0=http://127.0.0.1:{}",
        cluster.ports["wa-gateway"]
    )];
    for i in 1..accounts {
        let account = format!("account-{i}");
        let port = spawn_gateway(&mut cluster, i, &account).await;
        list.push(format!("{account}=http://127.0.0.1:{port}"));
    }
    for i in 0..accounts {
        let name = gateway_name(i);
        cluster.wait_serving(&name).await;
        let port = match i {
            0 => cluster.ports["wa-gateway"],
            _ => cluster.extra_ports[&name],
        };
        let code = fresh_qr(port, &mock).await;
        mock.scan_qr_as(&phone(i), &code).expect("the phone scans");
    }
    assert!(
        mock.wait_for(LINK_LIMIT, |m| m.online() == accounts).await,
        "every account's gateway logs in"
    );
    // The dispatcher and status-web send for and show every account.
    let list = list.join(",");
    for service in ["dispatcher", "status-web"] {
        cluster.give_accounts(service, &list).await;
    }
    cluster
        .wait_status(LINK_LIMIT, "every account ready", |s| {
            s["queue"]["gatewayReady"] == true
                && s["accounts"]
                    .as_array()
                    .is_some_and(|a| a.len() == accounts)
        })
        .await;
    tokio::time::sleep(IDLE).await;
    let rss = |name: &str| {
        cluster
            .pid(name)
            .and_then(crate::rss_kib)
            .unwrap_or_else(|| panic!("{name} is running"))
    };
    Measured {
        accounts,
        gateways: (0..accounts).map(|i| rss(&gateway_name(i))).collect(),
        others: ["dispatcher", "sheets-logger", "status-web"]
            .map(|s| (s, rss(s)))
            .to_vec(),
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The tables for `BENCHMARKS.md`.
pub fn markdown(runs: &[Measured], measured: &str) -> String {
    let mut out = String::from("## Several WhatsApp accounts: resident memory per account\n\n");
    let _ = writeln!(
        out,
        "`{COMMAND}`. Each account is a release `wa-gateway` in WhatsApp mode, linked by its own phone of the mock WhatsApp Web server (`wa-mock`, in the benchmark's process) and connected; the dispatcher (local queue), the logger and status-web send for and show every account. Measured after {} s idle: `VmRSS` of each process.\n\nMeasured {measured}.\n",
        IDLE.as_secs()
    );
    out.push_str("| accounts | gateway, each (min / median / max) | dispatcher | sheets-logger | status-web | whole system |\n|---:|---|---:|---:|---:|---:|\n");
    for run in runs {
        let mut each = run.gateways.clone();
        each.sort_unstable();
        let other = |name: &str| {
            run.others
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0, |(_, k)| *k)
        };
        let _ = writeln!(
            out,
            "| {} | {} / {} / {} | {} | {} | {} | {} |",
            run.accounts,
            mib(each[0]),
            mib(each[each.len() / 2]),
            mib(each[each.len() - 1]),
            mib(other("dispatcher")),
            mib(other("sheets-logger")),
            mib(other("status-web")),
            mib(run.total()),
        );
    }
    if let (Some(first), Some(last)) = (runs.first(), runs.last())
        && last.accounts > first.accounts
    {
        let added = last.accounts - first.accounts;
        let per = (last.total().saturating_sub(first.total())) as f64 / added as f64;
        let _ = writeln!(
            out,
            "\nEach account added costs the whole system {:.1} MiB on average ({} to {} accounts), nearly all of it the account's own gateway.",
            per / 1024.0,
            first.accounts,
            last.accounts
        );
    }
    out
}
