//! The aggregated state of the whole system, as `GET /api/status` serves it: each
//! service's reachability, the WhatsApp connection, the queue and the logger, and
//! the most recent jobs.

mod view;

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use abtrack_proto::dispatcher::v1 as dpb;
use abtrack_proto::gateway::v1 as gpb;
use abtrack_proto::logger::v1 as lpb;
use abtrack_proto::mask_phone;
use abtrack_proto::time::{from_timestamp, rfc3339};

pub use view::*;

/// How many recent jobs the snapshot keeps.
pub const RECENT_JOBS: usize = 50;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub services: Services,
    /// The default account's gateway (the first of `accounts`).
    pub gateway: GatewayView,
    /// Every account, the default one first.
    pub accounts: Vec<AccountView>,
    pub queue: QueueView,
    pub logger: LoggerView,
    /// Most recently changed first.
    pub recent_jobs: VecDeque<JobView>,
    /// The notices of the three services not yet dismissed, oldest first; a service
    /// that cannot be asked keeps the ones last listed.
    pub notices: Vec<NoticeView>,
    /// The launcher's record of service restarts (`STATUS_WEB_LAUNCHER_FILE`); absent
    /// without a launcher or while its file is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launcher: Option<LauncherView>,
    /// Counted from the job events seen since start, for `/metrics`.
    #[serde(skip)]
    pub stats: Stats,
}

/// Upper bounds (seconds) of the pickup latency histogram's buckets.
pub const PICKUP_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Jobs seen turning `sent`.
    pub sends: u64,
    /// Jobs seen turning `failed`, by error code.
    pub failures: BTreeMap<String, u64>,
    /// Seconds from a job being due (created, or its `sendAt`) to its first lease;
    /// counts per bucket of [`PICKUP_BUCKETS`] (not cumulative).
    pub pickup_buckets: [u64; PICKUP_BUCKETS.len()],
    pub pickup_count: u64,
    pub pickup_sum: f64,
}

impl Stats {
    fn observe(&mut self, previous: Option<&str>, job: &dpb::Job) {
        let status = job_status_name(job.status);
        if previous == Some(status.as_str()) {
            return;
        }
        match status.as_str() {
            "sent" => self.sends += 1,
            "failed" => {
                let code = job
                    .last_error
                    .as_ref()
                    .map(|e| e.code.clone())
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| "unknown".into());
                *self.failures.entry(code).or_default() += 1;
            }
            "processing" if job.attempts == 1 => {
                let due = [&job.created_at, &job.send_at]
                    .into_iter()
                    .flatten()
                    .map(from_timestamp)
                    .max();
                if let (Some(due), Some(leased)) = (due, job.updated_at.as_ref()) {
                    let seconds = (from_timestamp(leased) - due).max(0) as f64 / 1000.0;
                    self.pickup_count += 1;
                    self.pickup_sum += seconds;
                    if let Some(i) = PICKUP_BUCKETS.iter().position(|b| seconds <= *b) {
                        self.pickup_buckets[i] += 1;
                    }
                }
            }
            _ => {}
        }
    }
}

impl Snapshot {
    pub fn service_mut(&mut self, service: Service) -> &mut ServiceHealth {
        match service {
            Service::Dispatcher => &mut self.services.dispatcher,
            Service::Gateway => &mut self.services.gateway,
            Service::Logger => &mut self.services.logger,
        }
    }

    /// Marks a service up or down; returns whether that changed.
    pub fn set_up(&mut self, service: Service, up: bool, error: Option<String>, now: i64) -> bool {
        self.set_state(service, if up { "up" } else { "down" }, error, now)
    }

    /// Marks a service as refusing status-web's internal token; returns whether that
    /// changed.
    pub fn set_refused(&mut self, service: Service, error: String, now: i64) -> bool {
        self.set_state(service, REFUSED, Some(error), now)
    }

    fn set_state(
        &mut self,
        service: Service,
        state: &str,
        error: Option<String>,
        now: i64,
    ) -> bool {
        if service == Service::Gateway {
            return self.set_gateway_state(0, state, error, now);
        }
        set_health(self.service_mut(service), state, error, now)
    }

    /// An empty snapshot for these accounts (names, the default one first).
    pub fn for_accounts(names: &[String]) -> Self {
        Self {
            accounts: names
                .iter()
                .map(|name| AccountView {
                    name: name.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    /// Marks the gateway of the `i`-th account up or down; returns whether that
    /// changed.
    pub fn set_gateway_up(&mut self, i: usize, up: bool, error: Option<String>, now: i64) -> bool {
        self.set_gateway_state(i, if up { "up" } else { "down" }, error, now)
    }

    /// Marks the gateway of the `i`-th account as refusing the internal token.
    pub fn set_gateway_refused(&mut self, i: usize, error: String, now: i64) -> bool {
        self.set_gateway_state(i, REFUSED, Some(error), now)
    }

    /// The first account's gateway is also the one `gateway` and
    /// `services.gateway` show.
    fn set_gateway_state(
        &mut self,
        i: usize,
        state: &str,
        error: Option<String>,
        now: i64,
    ) -> bool {
        let mut changed = false;
        if let Some(account) = self.accounts.get_mut(i) {
            changed |= set_gateway_health(
                &mut account.service,
                &mut account.gateway,
                state,
                error.clone(),
                now,
            );
        }
        if i == 0 {
            changed |= set_gateway_health(
                &mut self.services.gateway,
                &mut self.gateway,
                state,
                error,
                now,
            );
        }
        changed
    }

    /// The default account's gateway event.
    pub fn apply_gateway(&mut self, event: gpb::GatewayEvent) {
        self.apply_account_gateway(0, event);
    }

    /// An event of the `i`-th account's gateway.
    pub fn apply_account_gateway(&mut self, i: usize, event: gpb::GatewayEvent) {
        if let Some(account) = self.accounts.get_mut(i) {
            apply_gateway_event(&mut account.gateway, event.clone());
        }
        if i == 0 {
            apply_gateway_event(&mut self.gateway, event);
        }
    }

    pub fn apply_dispatcher(&mut self, event: dpb::DispatcherEvent) {
        use dpb::dispatcher_event::Event as E;
        match event.event {
            Some(E::State(s)) => {
                self.queue.backend = s.backend;
                self.queue.paused = s.paused;
                self.queue.gateway_ready = s.gateway_ready;
                self.queue.waiting_reason = s.waiting_reason;
                for state in s.accounts {
                    if let Some(account) = self.accounts.iter_mut().find(|a| a.name == state.name) {
                        account.ready = state.ready;
                        account.waiting_reason = state.waiting_reason;
                    }
                }
            }
            Some(E::Counts(c)) => {
                self.queue.counts = CountsView::from(&c);
                for account in &mut self.accounts {
                    account.counts = c
                        .accounts
                        .iter()
                        .find(|a| a.name == account.name)
                        .and_then(|a| a.counts.as_ref())
                        .map(CountsView::from);
                }
            }
            Some(E::Job(job)) => {
                let previous = self
                    .recent_jobs
                    .iter()
                    .find(|j| j.id == job.id)
                    .map(|j| j.status.clone());
                self.stats.observe(previous.as_deref(), &job);
                self.upsert_job(&job);
            }
            None => {}
        }
    }

    /// Puts a job first in the recent list (replacing its older version).
    pub fn upsert_job(&mut self, job: &dpb::Job) {
        self.recent_jobs.retain(|j| j.id != job.id);
        self.recent_jobs.push_front(JobView::from_pb(job, false));
        self.recent_jobs.truncate(RECENT_JOBS);
    }

    pub fn apply_logger(&mut self, status: lpb::LoggerStatus) {
        self.logger = LoggerView {
            state: lpb::LoggerState::try_from(status.state)
                .map(|s| {
                    s.as_str_name()
                        .trim_start_matches("LOGGER_STATE_")
                        .to_ascii_lowercase()
                })
                .unwrap_or_else(|_| "unknown".into()),
            backlog: status.backlog,
            last_error: status.last_error,
            detail: status.detail,
            last_flush_at: ts(&status.last_flush_at),
        };
    }
}

/// Sets a service's state; returns whether it changed.
fn set_health(health: &mut ServiceHealth, state: &str, error: Option<String>, now: i64) -> bool {
    let changed = health.state != state || health.since.is_none();
    if changed {
        health.since = Some(rfc3339(now));
    }
    health.up = state == "up";
    health.state = state.to_owned();
    health.error = error;
    changed
}

/// Sets a gateway's state: one that is not up has no QR code to show.
fn set_gateway_health(
    health: &mut ServiceHealth,
    gateway: &mut GatewayView,
    state: &str,
    error: Option<String>,
    now: i64,
) -> bool {
    let changed = set_health(health, state, error, now);
    if !health.up {
        gateway.qr_available = false;
        gateway.qr_code = None;
    }
    changed
}

fn apply_gateway_event(g: &mut GatewayView, event: gpb::GatewayEvent) {
    use gpb::gateway_event::Event as E;
    match event.event {
        Some(E::State(state)) => {
            let status = gpb::ConnectionStatus::try_from(state.status)
                .unwrap_or(gpb::ConnectionStatus::Unspecified);
            let waiting_for_qr = status == gpb::ConnectionStatus::WaitingForQr;
            g.status = status.name().to_owned();
            g.mode = state.mode;
            g.detail = state.detail;
            g.own_number = if state.own_number.is_empty() {
                String::new()
            } else {
                mask_phone(&state.own_number)
            };
            g.push_name = state.push_name;
            g.retry_at = ts(&state.retry_at);
            g.banned_until = ts(&state.banned_until);
            g.time_lock_until = ts(&state.time_lock_until);
            g.new_chat_quota = state.new_chat_quota.map(|q| NewChatQuotaView {
                used: q.used,
                total: q.total,
                cycle_ends_at: ts(&q.cycle_ends_at),
            });
            g.pacing = state.pacing.as_ref().map(PacingView::from);
            g.since = ts(&state.since);
            if !waiting_for_qr {
                g.qr_available = false;
                g.qr_code = None;
                g.qr_expires_at = None;
            }
        }
        Some(E::Qr(qr)) => {
            g.qr_available = true;
            g.qr_expires_at = ts(&qr.expires_at);
            g.qr_code = Some(qr.code);
        }
        // Pair codes and receipts reach the jobs through the dispatcher.
        Some(E::PairCode(_)) | Some(E::Receipt(_)) | None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_numbers_only_where_asked() {
        let job = dpb::Job {
            id: "j".into(),
            to: "0812-3456-7890".into(),
            recipient: "6281234567890@s.whatsapp.net".into(),
            ..Default::default()
        };
        let masked = JobView::from_pb(&job, true);
        assert!(
            masked.to.contains('*') && masked.recipient.contains('*'),
            "{masked:?}"
        );
        let full = masked.with_full_numbers(&job);
        assert_eq!(
            (full.to.as_str(), full.recipient.as_str()),
            ("0812-3456-7890", "6281234567890@s.whatsapp.net")
        );
    }

    fn job(id: &str, status: dpb::JobStatus) -> dpb::Job {
        dpb::Job {
            id: id.into(),
            to: "081234567890".into(),
            status: status as i32,
            ..Default::default()
        }
    }

    #[test]
    fn recent_jobs_keep_the_newest_version_first_and_at_most_50() {
        let mut s = Snapshot::default();
        for i in 0..60 {
            s.upsert_job(&job(&format!("j{i}"), dpb::JobStatus::Pending));
        }
        s.upsert_job(&job("j30", dpb::JobStatus::Sent));
        assert_eq!(s.recent_jobs.len(), RECENT_JOBS);
        assert_eq!(s.recent_jobs[0].id, "j30");
        assert_eq!(s.recent_jobs[0].status, "sent");
        assert_eq!(s.recent_jobs[0].to, "08123****890");
        assert_eq!(s.recent_jobs.iter().filter(|j| j.id == "j30").count(), 1);
    }

    #[test]
    fn the_qr_code_never_serialises() {
        let mut s = Snapshot::default();
        s.apply_gateway(gpb::GatewayEvent {
            event: Some(gpb::gateway_event::Event::Qr(gpb::QrCode {
                code: "2@SECRET".into(),
                expires_at: None,
            })),
        });
        assert!(s.gateway.qr_available);
        let json = serde_json::to_string(&s).unwrap();
        assert!(!json.contains("SECRET"));
        s.set_up(Service::Gateway, false, Some("down".into()), 0);
        assert!(!s.gateway.qr_available);
    }

    #[test]
    fn a_refused_token_is_its_own_state() {
        let mut s = Snapshot::default();
        assert_eq!(s.services.logger.state, "unknown");
        assert!(s.set_up(Service::Logger, true, None, 0));
        assert_eq!(s.services.logger.state, "up");
        assert!(s.set_refused(Service::Logger, "wrong internal token".into(), 1));
        assert!(!s.services.logger.up);
        assert_eq!(s.services.logger.state, REFUSED);
        assert!(!s.set_refused(Service::Logger, "wrong internal token".into(), 2));
        assert!(s.set_up(Service::Logger, false, Some("gone".into()), 3));
        assert_eq!(s.services.logger.state, "down");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["services"]["logger"]["state"], "down");
        assert_eq!(json["services"]["dispatcher"]["state"], "unknown");
    }

    #[test]
    fn the_launcher_is_absent_without_a_record_and_camel_case_with_one() {
        let mut s = Snapshot::default();
        let json = serde_json::to_value(&s).unwrap();
        assert!(json.get("launcher").is_none(), "{json}");
        s.launcher = Some(LauncherView {
            started_at: Some("2026-12-01T23:30:00.000Z".into()),
            services: vec![ServiceRestartsView {
                name: "wa-gateway".into(),
                restarts: 2,
                last_exit: Some("killed by signal 9".into()),
                last_exit_code: None,
                last_restart_at: Some("2026-12-01T23:31:02.000Z".into()),
            }],
        });
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json["launcher"],
            serde_json::json!({
                "startedAt": "2026-12-01T23:30:00.000Z",
                "services": [{
                    "name": "wa-gateway",
                    "restarts": 2,
                    "lastExit": "killed by signal 9",
                    "lastExitCode": null,
                    "lastRestartAt": "2026-12-01T23:31:02.000Z"
                }]
            })
        );
        // The other fields are as before.
        for field in ["services", "gateway", "queue", "logger", "recentJobs"] {
            assert!(json.get(field).is_some(), "{field} in {json}");
        }
    }
}
