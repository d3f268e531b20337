//! The parts of the snapshot as `GET /api/status` and the dashboard show them
//! (JSON, camelCase): each service's reachability, the WhatsApp connection, the queue
//! and its jobs, the logger, the launcher's restarts and the services' notices.

use serde::Serialize;

use abtrack_proto::dispatcher::v1 as dpb;
use abtrack_proto::gateway::v1 as gpb;
use abtrack_proto::mask_phone;
use abtrack_proto::time::{from_timestamp, rfc3339};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Dispatcher,
    Gateway,
    Logger,
}

impl Service {
    /// The three services status-web watches, in the order it shows them.
    pub const ALL: [Service; 3] = [Service::Dispatcher, Service::Gateway, Service::Logger];

    /// The service by its binary name ([`Service::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The service's binary name.
    pub fn name(self) -> &'static str {
        match self {
            Service::Dispatcher => "dispatcher",
            Service::Gateway => "wa-gateway",
            Service::Logger => "sheets-logger",
        }
    }
}

/// The state of a service that refuses status-web's internal token: it runs, but
/// answers nothing until `ABTRACK_INTERNAL_TOKEN` matches.
pub const REFUSED: &str = "refused: internal token";

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceHealth {
    pub up: bool,
    /// `unknown` (not tried yet), `up`, `down`, or [`REFUSED`].
    pub state: String,
    /// When the service was last seen to change state.
    pub since: Option<String>,
    pub error: Option<String>,
}

impl Default for ServiceHealth {
    fn default() -> Self {
        Self {
            up: false,
            state: "unknown".into(),
            since: None,
            error: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Services {
    pub dispatcher: ServiceHealth,
    pub gateway: ServiceHealth,
    pub logger: ServiceHealth,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayView {
    pub status: String,
    pub mode: String,
    pub detail: String,
    /// Masked.
    pub own_number: String,
    pub push_name: String,
    pub retry_at: Option<String>,
    pub banned_until: Option<String>,
    /// The end of a reach-out time lock WhatsApp put on the account: until then
    /// messages to people who never wrote to it wait.
    pub time_lock_until: Option<String>,
    /// The new chats WhatsApp lets the account open in its current cycle, as it
    /// last said; `None` when it never said.
    pub new_chat_quota: Option<NewChatQuotaView>,
    /// How the gateway paces the account, and its sends of the last 24 hours.
    pub pacing: Option<PacingView>,
    pub since: Option<String>,
    /// Whether a QR code is waiting to be scanned; the code itself is not served here.
    pub qr_available: bool,
    pub qr_expires_at: Option<String>,
    #[serde(skip)]
    pub qr_code: Option<String>,
}

/// One WhatsApp account: its gateway, and whether the dispatcher's jobs for it flow.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    pub name: String,
    /// Its gateway's reachability.
    pub service: ServiceHealth,
    pub gateway: GatewayView,
    /// As the dispatcher last said.
    pub ready: bool,
    pub waiting_reason: String,
    /// The account's jobs by status, as the dispatcher last counted them (with
    /// several accounts only; the default account's include jobs naming none).
    pub counts: Option<CountsView>,
}

/// The gateway's pacing settings and the account's sends of the last 24 hours.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PacingView {
    pub min_interval_ms: u64,
    pub jitter_ms: u64,
    /// Most sends in any 24 hours; 0: no cap.
    pub daily_cap: u32,
    pub sent_last_day: u64,
    /// While the cap is reached: when the next send may go.
    pub cap_frees_at: Option<String>,
}

impl From<&gpb::Pacing> for PacingView {
    fn from(p: &gpb::Pacing) -> Self {
        Self {
            min_interval_ms: p.min_interval_ms,
            jitter_ms: p.jitter_ms,
            daily_cap: p.daily_cap,
            sent_last_day: p.sent_last_day,
            cap_frees_at: ts(&p.cap_frees_at),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NewChatQuotaView {
    pub used: u64,
    pub total: u64,
    pub cycle_ends_at: Option<String>,
}

impl Default for GatewayView {
    fn default() -> Self {
        Self {
            status: "unknown".into(),
            mode: String::new(),
            detail: "the WhatsApp gateway has not been reached yet".into(),
            own_number: String::new(),
            push_name: String::new(),
            retry_at: None,
            banned_until: None,
            time_lock_until: None,
            new_chat_quota: None,
            pacing: None,
            since: None,
            qr_available: false,
            qr_expires_at: None,
            qr_code: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CountsView {
    pub pending: u64,
    pub processing: u64,
    pub sent: u64,
    pub delivered: u64,
    pub read: u64,
    pub failed: u64,
    /// Of the sent jobs, those with no delivery receipt within the gateway's timeout.
    pub delivery_overdue: u64,
}

impl CountsView {
    /// Each status's count, in the order the dashboard and `/metrics` show them.
    pub fn by_status(&self) -> [(&'static str, u64); 6] {
        [
            ("pending", self.pending),
            ("processing", self.processing),
            ("sent", self.sent),
            ("delivered", self.delivered),
            ("read", self.read),
            ("failed", self.failed),
        ]
    }
}

impl From<&dpb::QueueCounts> for CountsView {
    fn from(c: &dpb::QueueCounts) -> Self {
        Self {
            pending: c.pending,
            processing: c.processing,
            sent: c.sent,
            delivered: c.delivered,
            read: c.read,
            failed: c.failed,
            delivery_overdue: c.delivery_overdue,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QueueView {
    pub backend: String,
    pub paused: bool,
    pub gateway_ready: bool,
    pub waiting_reason: String,
    pub counts: CountsView,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LoggerView {
    pub state: String,
    pub backlog: u64,
    pub last_error: String,
    pub detail: String,
    pub last_flush_at: Option<String>,
}

impl Default for LoggerView {
    fn default() -> Self {
        Self {
            state: "unknown".into(),
            backlog: 0,
            last_error: String::new(),
            detail: "the logger has not been reached yet".into(),
            last_flush_at: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobErrorView {
    pub code: String,
    pub message: String,
}

/// A job as the API shows it. The recipient and its LID are masked and the message
/// text is only present when one job is asked for by id.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub id: String,
    pub to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub status: String,
    pub attempts: u32,
    pub recipient: String,
    /// The recipient's LID, masked, when WhatsApp addresses the recipient by one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient_lid: Option<String>,
    pub message_id: String,
    pub last_error: Option<JobErrorView>,
    pub created_at: Option<String>,
    pub send_at: Option<String>,
    pub next_attempt_at: Option<String>,
    pub sent_at: Option<String>,
    pub delivered_at: Option<String>,
    pub read_at: Option<String>,
    pub updated_at: Option<String>,
    /// Sent, and no delivery receipt came within the gateway's timeout.
    pub delivery_overdue: bool,
    /// The account that sends it, when the job names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The job's history, oldest first: only in one job's view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<StepView>>,
    /// The image or document it sends, without its bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaView>,
}

/// A job's media as the API shows it: never the bytes, and a URL without its query
/// (which may carry a signature).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MediaView {
    /// image or document.
    pub kind: String,
    /// url, inline or storage.
    pub source: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mime_type: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub file_name: String,
    /// Inline bytes' size; 0 for a URL.
    pub size: u64,
}

impl From<&dpb::JobMedia> for MediaView {
    fn from(media: &dpb::JobMedia) -> Self {
        Self {
            kind: media.kind.clone(),
            source: media.source.clone(),
            url: media.url.clone(),
            mime_type: media.mime_type.clone(),
            file_name: media.file_name.clone(),
            size: media.size,
        }
    }
}

/// One step of a job's history.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StepView {
    pub at: Option<String>,
    pub kind: String,
    pub attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<JobErrorView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
}

impl From<&dpb::JobStep> for StepView {
    fn from(step: &dpb::JobStep) -> Self {
        Self {
            at: ts(&step.at),
            kind: step.kind.clone(),
            attempt: step.attempt,
            owner: (!step.owner.is_empty()).then(|| step.owner.clone()),
            error: step.error.as_ref().map(|e| JobErrorView {
                code: e.code.clone(),
                message: e.message.clone(),
            }),
            next_attempt_at: ts(&step.next_attempt_at),
        }
    }
}

/// A wire time as the API writes it (RFC 3339).
pub fn ts(t: &Option<prost_types::Timestamp>) -> Option<String> {
    t.as_ref().map(|t| rfc3339(from_timestamp(t)))
}

pub fn job_status_name(status: i32) -> String {
    dpb::JobStatus::try_from(status)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("JOB_STATUS_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| "unknown".into())
}

impl JobView {
    /// The view with the numbers as the job holds them, not masked
    /// (`STATUS_WEB_FULL_NUMBERS`: one job's view and exports only).
    pub fn with_full_numbers(self, job: &dpb::Job) -> Self {
        Self {
            to: job.to.clone(),
            recipient: job.recipient.clone(),
            recipient_lid: (!job.recipient_lid.is_empty()).then(|| job.recipient_lid.clone()),
            ..self
        }
    }

    /// `one_job`: the view of one job asked for, with its message text and history.
    pub fn from_pb(job: &dpb::Job, one_job: bool) -> Self {
        Self {
            id: job.id.clone(),
            to: mask_phone(&job.to),
            message: one_job.then(|| job.message.clone()),
            status: job_status_name(job.status),
            attempts: job.attempts,
            recipient: if job.recipient.is_empty() {
                String::new()
            } else {
                mask_phone(&job.recipient)
            },
            recipient_lid: (!job.recipient_lid.is_empty())
                .then(|| format!("{}@lid", mask_phone(&job.recipient_lid))),
            message_id: job.message_id.clone(),
            last_error: job.last_error.as_ref().map(|e| JobErrorView {
                code: e.code.clone(),
                message: e.message.clone(),
            }),
            created_at: ts(&job.created_at),
            send_at: ts(&job.send_at),
            next_attempt_at: ts(&job.next_attempt_at),
            sent_at: ts(&job.sent_at),
            delivered_at: ts(&job.delivered_at),
            read_at: ts(&job.read_at),
            updated_at: ts(&job.updated_at),
            delivery_overdue: job.delivery_overdue,
            account: (!job.account.is_empty()).then(|| job.account.clone()),
            steps: one_job.then(|| job.steps.iter().map(StepView::from).collect()),
            media: job.media.as_ref().map(MediaView::from),
        }
    }
}

/// What the launcher (`abtrack-notify`) recorded of the services it runs, read from
/// its file by [`crate::restarts`].
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LauncherView {
    /// When the launcher started.
    pub started_at: Option<String>,
    /// In the launcher's order.
    pub services: Vec<ServiceRestartsView>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRestartsView {
    /// The service's binary name, e.g. `wa-gateway`.
    pub name: String,
    /// How many times the launcher restarted it.
    pub restarts: u64,
    /// How its last run ended, in the launcher's words: `exit code 1`, `killed by
    /// signal 9`.
    pub last_exit: Option<String>,
    /// The exit code of its last run, when it had one.
    pub last_exit_code: Option<i64>,
    pub last_restart_at: Option<String>,
}

/// A notice a service shows: a data file that could not be read at start, moved
/// aside and a fresh one started (until an operator dismisses it), or a disk too full
/// to write a data file (while that lasts), as [`crate::notices`] lists it from the
/// service's `Notices` service.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NoticeView {
    /// The service's binary name ([`Service::name`]).
    pub service: &'static str,
    /// Unique within the service.
    pub id: String,
    /// `set_aside` (a damaged file moved aside, until dismissed) or `disk_full` (the
    /// file cannot be written, while that lasts; not dismissable).
    pub kind: &'static str,
    /// The file that could not be read or written, as the service names it.
    pub file: String,
    /// Where that file is kept now (nothing is deleted); empty for `disk_full`.
    pub kept_at: String,
    /// What was wrong, in SQLite's words.
    pub reason: String,
    /// Rows read from the damaged file into the fresh one.
    pub carried_over: u64,
    /// When the service moved the file aside, or first found the disk full.
    pub at: Option<String>,
    /// `at` in milliseconds, to order by.
    #[serde(skip)]
    pub at_ms: Option<i64>,
}
