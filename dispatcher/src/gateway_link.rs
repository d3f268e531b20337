//! The dispatcher's view of one account's gateway: a `Watch` subscription, kept open
//! with reconnects, that says whether the account's jobs can flow and brings receipts
//! onto the jobs.

use std::time::Duration;

use tokio::sync::watch;

use abtrack_proto::account::Gateway;
use abtrack_proto::gateway::v1::{self as pb, gateway_client::GatewayClient};
use abtrack_proto::retry::Backoff;
use abtrack_proto::tasks::Tasks;
use abtrack_proto::time::{from_timestamp, now_ms};
use abtrack_proto::token::{TokenChannel, is_refused};

use crate::job::Receipt;
use crate::queue::Queue;

const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Whether the gateway can send now, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub reason: String,
}

/// The reason an account waits before its gateway has answered.
pub const NOT_YET: &str = "waiting for the WhatsApp gateway";

/// Watches the gateway until the process ends; returns the readiness it keeps current.
pub fn watch_gateway(
    client: GatewayClient<TokenChannel>,
    watched: Gateway,
    queue: Queue,
    tasks: &Tasks,
) -> watch::Receiver<Readiness> {
    let (tx, rx) = watch::channel(Readiness {
        ready: false,
        reason: NOT_YET.into(),
    });
    tasks.spawn(run(client, watched, queue, tx));
    rx
}

async fn run(
    mut client: GatewayClient<TokenChannel>,
    watched: Gateway,
    queue: Queue,
    tx: watch::Sender<Readiness>,
) {
    let mut backoff = Backoff::new(RECONNECT_MIN, RECONNECT_MAX);
    loop {
        let mut refused = None;
        match client.watch(pb::WatchRequest {}).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                tracing::info!(account = %watched.account, "watching the gateway");
                loop {
                    match stream.message().await {
                        Ok(Some(event)) => {
                            backoff.reset();
                            handle(event, &watched, &tx, &queue).await;
                        }
                        Ok(None) => break,
                        Err(status) => {
                            tracing::debug!(error = %status.message(), "gateway watch ended");
                            refused = is_refused(&status).then_some(status);
                            break;
                        }
                    }
                }
            }
            Err(status) => {
                tracing::debug!(error = %status.message(), "cannot watch the gateway");
                refused = is_refused(&status).then_some(status);
            }
        }
        let reason = match refused {
            Some(status) => refused_reason(&status),
            None => "the WhatsApp gateway is not reachable".into(),
        };
        set(&tx, &watched.account, false, reason);
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// The waiting reason when the gateway refuses this dispatcher's internal token: a
/// configuration problem for the operator, not something a retry fixes.
pub fn refused_reason(status: &tonic::Status) -> String {
    format!(
        "the WhatsApp gateway refused the internal token ({}); set the same {} on every service",
        status.message(),
        abtrack_proto::token::ENV_VAR
    )
}

fn set(tx: &watch::Sender<Readiness>, account: &str, ready: bool, reason: String) {
    tx.send_if_modified(|r| {
        let changed = r.ready != ready || r.reason != reason;
        if changed {
            if ready {
                tracing::info!(account, "gateway ready, jobs flow");
            } else {
                tracing::warn!(account, reason = %reason, "gateway not ready, jobs wait");
            }
        }
        *r = Readiness { ready, reason };
        changed
    });
}

async fn handle(
    event: pb::GatewayEvent,
    watched: &Gateway,
    tx: &watch::Sender<Readiness>,
    queue: &Queue,
) {
    use pb::gateway_event::Event as E;
    match event.event {
        Some(E::State(state)) => {
            let account = &watched.account;
            let (ready, reason) = if !state.account.is_empty() && state.account != *account {
                // Sending there would send this account's jobs from another number.
                let reason = format!(
                    "the gateway at {} holds account {:?}, not {account:?}; correct {} or that gateway's WA_ACCOUNT",
                    watched.url,
                    state.account,
                    crate::config::ACCOUNTS.name
                );
                (false, reason)
            } else if state.status == pb::ConnectionStatus::Connected as i32 {
                (true, String::new())
            } else {
                let name = pb::ConnectionStatus::name_of(state.status);
                (false, format!("WhatsApp is {name}: {}", state.detail))
            };
            set(tx, account, ready, reason);
        }
        Some(E::Receipt(receipt)) => {
            let kind = match pb::ReceiptKind::try_from(receipt.kind) {
                Ok(pb::ReceiptKind::Delivered) => Receipt::Delivered,
                Ok(pb::ReceiptKind::Read) => Receipt::Read,
                Ok(pb::ReceiptKind::DeliveryOverdue) => Receipt::Overdue,
                _ => return,
            };
            let at = receipt.at.as_ref().map_or_else(now_ms, from_timestamp);
            match queue
                .record_receipt(&receipt.job_id, kind, at, now_ms())
                .await
            {
                Ok(Some(_)) => {}
                Ok(None) => {
                    tracing::debug!(job_id = %receipt.job_id, "receipt already known, or for a job this queue does not hold")
                }
                Err(e) => {
                    tracing::warn!(job_id = %receipt.job_id, error = %e, "cannot record a receipt")
                }
            }
        }
        Some(E::Qr(_)) | Some(E::PairCode(_)) | None => {}
    }
}
