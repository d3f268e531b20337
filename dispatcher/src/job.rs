//! The job as the dispatcher sees it, whatever queue holds it, and the rules a new
//! job must pass.

use abtrack_proto::message::check_message;
use abtrack_proto::normalize_recipient;

use crate::error::{Error, Result};

const MAX_ID_CHARS: usize = 128;
/// 9999-12-31T23:59:59.999Z, the last instant RFC 3339 and Firestore can write.
pub const MAX_SEND_AT_MS: i64 = 253_402_300_799_999;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    Pending,
    Processing,
    Sent,
    Delivered,
    Read,
    Failed,
}

impl JobStatus {
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Pending,
        JobStatus::Processing,
        JobStatus::Sent,
        JobStatus::Delivered,
        JobStatus::Read,
        JobStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Processing => "processing",
            JobStatus::Sent => "sent",
            JobStatus::Delivered => "delivered",
            JobStatus::Read => "read",
            JobStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Sent, delivered, read or failed: the job is done unless an operator retries it.
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobStatus::Pending | JobStatus::Processing)
    }
}

/// Why the last attempt did not succeed: a short machine code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub code: String,
    pub message: String,
}

impl JobError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub to: String,
    pub message: String,
    pub status: JobStatus,
    pub attempts: u32,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub next_attempt_at: Option<i64>,
    pub send_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_error: Option<JobError>,
    pub sent_at: Option<i64>,
    pub message_id: Option<String>,
    pub recipient: Option<String>,
    /// The recipient's LID (`…@lid`), when WhatsApp addresses the recipient by one.
    pub recipient_lid: Option<String>,
    pub delivered_at: Option<i64>,
    pub read_at: Option<i64>,
    /// Sent, and no delivery receipt came within the gateway's delivery timeout.
    pub delivery_overdue: bool,
    /// The account that sends it, as the job names it; `None`: the default account.
    pub account: Option<String>,
    /// The image or document it sends, with `message` as the caption.
    pub media: Option<Media>,
}

/// A job's image or document, as the job declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub source: MediaSource,
    pub mime_type: Option<String>,
    pub file_name: Option<String>,
}

/// Where the media's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaSource {
    /// https://, http:// or gs://bucket/path.
    Url(String),
    Inline(bytes::Bytes),
    /// Inline bytes of this size, left unread: a job in a list or a search, which
    /// never needs them. A job read to be sent always has them.
    InlineUnread(u64),
}

impl MediaSource {
    /// The inline bytes' size; 0 for a URL.
    pub fn inline_size(&self) -> u64 {
        match self {
            MediaSource::Url(_) => 0,
            MediaSource::Inline(data) => data.len() as u64,
            MediaSource::InlineUnread(size) => *size,
        }
    }
}

impl Media {
    /// Checks what a job declares; each error names its field (`media.url`, ...).
    pub fn validate(
        url: Option<&str>,
        data: Option<bytes::Bytes>,
        mime_type: Option<&str>,
        file_name: Option<&str>,
    ) -> Result<Self> {
        use abtrack_proto::media;
        let source = match (url.filter(|u| !u.is_empty()), data) {
            (Some(_), Some(_)) => {
                return Err(invalid("media", "give either url or data, not both"));
            }
            (None, None) => return Err(invalid("media", "needs a url or data")),
            (Some(url), None) => {
                media::check_url(url).map_err(|e| invalid("media.url", e))?;
                MediaSource::Url(url.to_owned())
            }
            (None, Some(data)) => {
                media::check_inline(data.len()).map_err(|e| invalid("media.data", e))?;
                MediaSource::Inline(data)
            }
        };
        let declared =
            media::check_declared(mime_type, file_name).map_err(|(field, e)| invalid(field, e))?;
        Ok(Self {
            source,
            mime_type: declared.mime_type,
            file_name: declared.file_name,
        })
    }

    /// The kind its declaration suggests (the gateway decides from the bytes).
    pub fn declared_kind(&self) -> abtrack_proto::media::Kind {
        abtrack_proto::media::Kind::declared(
            self.mime_type.as_deref(),
            self.shown_name().as_deref(),
        )
    }

    /// The name it goes by: the declared file name, else the URL's last part.
    pub fn shown_name(&self) -> Option<String> {
        self.file_name.clone().or_else(|| match &self.source {
            MediaSource::Url(url) => abtrack_proto::media::name_from_url(url).map(str::to_owned),
            MediaSource::Inline(_) | MediaSource::InlineUnread(_) => None,
        })
    }

    /// Its kind and name in a few words, as the log shows it: `document: Rekap.pdf`.
    pub fn summary(&self) -> String {
        let kind = self.declared_kind().as_str();
        match self.shown_name() {
            Some(name) => format!("{kind}: {name}"),
            None => kind.to_owned(),
        }
    }
}

/// Checks a message, which may be blank as the caption of media.
fn check_text(message: &str, media: bool) -> Result<()> {
    let checked = if media {
        abtrack_proto::message::check_caption(message)
    } else {
        check_message(message)
    };
    checked.map_err(|e| invalid("message", e))
}

/// A job that passed validation, ready to be enqueued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// Chosen by the client for idempotent enqueueing, or generated.
    pub id: Option<String>,
    pub to: String,
    pub message: String,
    pub send_at: Option<i64>,
    /// The account that sends it; `None`: the default account.
    pub account: Option<String>,
    /// The recipient as a JID, normalised as the gateway does, when known at the
    /// door: written with the job, so a search by number finds it before it is sent.
    pub recipient: Option<String>,
    pub media: Option<Media>,
}

fn invalid(field: &'static str, reason: impl ToString) -> Error {
    Error::InvalidArgument {
        field,
        reason: reason.to_string(),
    }
}

impl NewJob {
    /// Checks the fields a job needs; each error names its field. Recipients are
    /// checked with the gateway's `default_country_code`.
    pub fn validate(
        id: Option<String>,
        to: &str,
        message: &str,
        send_at: Option<i64>,
        default_country_code: &str,
    ) -> Result<Self> {
        Self::checked(id, to, message, send_at, None, default_country_code)
    }

    /// Checks a job with media: its message is the caption and may be empty.
    pub fn validate_with_media(
        id: Option<String>,
        to: &str,
        message: &str,
        send_at: Option<i64>,
        media: Media,
        default_country_code: &str,
    ) -> Result<Self> {
        Self::checked(id, to, message, send_at, Some(media), default_country_code)
    }

    fn checked(
        id: Option<String>,
        to: &str,
        message: &str,
        send_at: Option<i64>,
        media: Option<Media>,
        default_country_code: &str,
    ) -> Result<Self> {
        if let Some(id) = &id {
            let ok = !id.is_empty()
                && id.chars().count() <= MAX_ID_CHARS
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err(invalid(
                    "id",
                    "use letters, digits, '-' and '_', at most 128 characters",
                ));
            }
        }
        let recipient =
            normalize_recipient(to, default_country_code).map_err(|e| invalid("to", e))?;
        check_text(message, media.is_some())?;
        if send_at.is_some_and(|ms| ms > MAX_SEND_AT_MS) {
            return Err(invalid("sendAt", "must be before the year 10000"));
        }
        Ok(Self {
            id,
            to: to.trim().to_owned(),
            message: message.to_owned(),
            send_at,
            account: None,
            recipient: Some(recipient.to_string()),
            media,
        })
    }

    /// The job for `account` (`None` or empty: the default account), checked as an
    /// account name; whether it is an account this server sends for is the
    /// dispatcher's to say.
    pub fn for_account(mut self, account: Option<&str>) -> Result<Self> {
        self.account = match account.filter(|a| !a.is_empty()) {
            None => None,
            Some(name) => {
                abtrack_proto::account::check(name).map_err(|e| invalid("account", e))?;
                Some(name.to_owned())
            }
        };
        Ok(self)
    }
}

/// Which jobs a search finds: every condition given must hold. Newest `created_at`
/// first (then id, descending).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Search {
    /// Empty: every status.
    pub statuses: Vec<JobStatus>,
    /// The jobs this account sends (for the default account, those naming none too).
    pub account: Option<crate::account::Lane>,
    /// The normalised recipient (a JID, as `recipient` holds it).
    pub recipient: Option<String>,
    pub id: Option<String>,
    /// Created at or after (ms).
    pub created_from: Option<i64>,
    /// Created before (ms).
    pub created_until: Option<i64>,
}

impl Search {
    /// Whether `job` is one this search finds.
    pub fn matches(&self, job: &Job) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&job.status))
            && self
                .account
                .as_ref()
                .is_none_or(|lane| lane.lists(job.account.as_deref()))
            && self
                .recipient
                .as_ref()
                .is_none_or(|r| job.recipient.as_ref() == Some(r))
            && self.id.as_ref().is_none_or(|id| *id == job.id)
            && self.created_from.is_none_or(|from| job.created_at >= from)
            && self
                .created_until
                .is_none_or(|until| job.created_at < until)
    }
}

/// One page of a search, and where the next starts (`None`: nothing more).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub jobs: Vec<Job>,
    /// The id of the last job looked at, which the next page starts after.
    pub next: Option<String>,
}

impl Page {
    /// The error of a page asked for after a job that is gone.
    pub fn cursor_gone(after: &str) -> Error {
        invalid(
            "cursor",
            format!("no job {after:?} to continue after (it was removed); start the search again"),
        )
    }
}

/// How many jobs are in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub pending: u64,
    pub processing: u64,
    pub sent: u64,
    pub delivered: u64,
    pub read: u64,
    pub failed: u64,
    /// Of the `sent` jobs, those whose delivery receipt is overdue.
    pub delivery_overdue: u64,
}

impl Counts {
    pub fn add(&mut self, status: JobStatus, n: u64) {
        match status {
            JobStatus::Pending => self.pending += n,
            JobStatus::Processing => self.processing += n,
            JobStatus::Sent => self.sent += n,
            JobStatus::Delivered => self.delivered += n,
            JobStatus::Read => self.read += n,
            JobStatus::Failed => self.failed += n,
        }
    }

    /// These counts less `other`'s (counted a moment apart, so never below zero).
    pub fn less(self, other: &Counts) -> Counts {
        Counts {
            pending: self.pending.saturating_sub(other.pending),
            processing: self.processing.saturating_sub(other.processing),
            sent: self.sent.saturating_sub(other.sent),
            delivered: self.delivered.saturating_sub(other.delivered),
            read: self.read.saturating_sub(other.read),
            failed: self.failed.saturating_sub(other.failed),
            delivery_overdue: self.delivery_overdue.saturating_sub(other.delivery_overdue),
        }
    }
}

/// The queue's counts and, with several accounts, each account's, the default one
/// first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllCounts {
    pub total: Counts,
    /// Empty with one account (its counts are the total).
    pub accounts: Vec<(String, Counts)>,
}

/// A receipt from the recipient's phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    Delivered,
    Read,
    /// The gateway's notice that no delivery receipt came in time.
    Overdue,
}

/// How an attempt ended, as the queue records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Sent {
        message_id: String,
        recipient: String,
        recipient_lid: Option<String>,
        sent_at: i64,
    },
    /// Permanent: the job ends `failed`.
    Failed(JobError),
    /// Transient: back to `pending` until `next_attempt_at`; the attempt counts.
    Retry {
        error: JobError,
        next_attempt_at: i64,
    },
    /// Not the job's fault (gateway not ready, rate limited): back to `pending`, the
    /// attempt does not count.
    Release {
        error: JobError,
        next_attempt_at: Option<i64>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use abtrack_proto::message::MAX_MESSAGE_CHARS;

    #[test]
    fn validation_names_the_field() {
        let err = |id: Option<&str>, to: &str, msg: &str| {
            NewJob::validate(id.map(str::to_owned), to, msg, None, "62")
                .unwrap_err()
                .to_string()
        };
        assert!(err(None, "", "hi").starts_with("to: recipient is empty"));
        assert!(err(None, "abc", "hi").starts_with("to: "));
        assert_eq!(err(None, "081234567890", "   "), "message: is empty");
        assert!(err(None, "081234567890", &"x".repeat(70_000)).starts_with("message: has 70000"));
        assert!(err(Some("a b"), "081234567890", "hi").starts_with("id: "));
        assert!(err(Some(""), "081234567890", "hi").starts_with("id: "));
        let ok = NewJob::validate(
            Some("job-1_A".into()),
            " 0812-3456-7890 ",
            "Halo 👋",
            None,
            "62",
        )
        .unwrap();
        assert_eq!(ok.to, "0812-3456-7890");
        // Exactly the limit is fine, counted in characters, not bytes.
        assert!(
            NewJob::validate(
                None,
                "081234567890",
                &"é".repeat(MAX_MESSAGE_CHARS),
                None,
                "62"
            )
            .is_ok()
        );
    }

    #[test]
    fn invisible_messages_and_far_future_times_are_refused() {
        let err = |msg: &str, send_at: Option<i64>| {
            NewJob::validate(None, "081234567890", msg, send_at, "62")
                .unwrap_err()
                .to_string()
        };
        assert!(err("\u{200b}\u{200b}", None).starts_with("message: has no visible character"));
        assert!(err(" \u{feff}\u{202e}\n", None).starts_with("message: has no visible"));
        assert!(err("\u{0}\u{7}", None).starts_with("message: has no visible"));
        assert_eq!(
            err("Halo", Some(MAX_SEND_AT_MS + 1)),
            "sendAt: must be before the year 10000"
        );
        // Emoji (with its variation selector), right-to-left text and a joiner inside
        // visible text are messages.
        for ok in ["❤️", "👨\u{200d}👩\u{200d}👧", "مرحبا", "a\u{200b}b"] {
            assert!(
                NewJob::validate(None, "081234567890", ok, None, "62").is_ok(),
                "{ok:?}"
            );
        }
        assert!(NewJob::validate(None, "081234567890", "x", Some(MAX_SEND_AT_MS), "62").is_ok());
    }

    #[test]
    fn an_account_is_a_name_or_the_default() {
        let job = || NewJob::validate(None, "081234567890", "x", None, "62").unwrap();
        assert_eq!(job().for_account(None).unwrap().account, None);
        assert_eq!(job().for_account(Some("")).unwrap().account, None);
        assert_eq!(
            job()
                .for_account(Some("sd-harapan"))
                .unwrap()
                .account
                .as_deref(),
            Some("sd-harapan")
        );
        let err = job().for_account(Some("SD 1")).unwrap_err().to_string();
        assert!(err.starts_with("account: use lowercase"), "{err}");
    }

    #[test]
    fn the_country_code_is_the_gateways() {
        // A Malaysian mobile number written locally: no Indonesian number.
        let local = "012-345 6789";
        assert!(NewJob::validate(None, local, "x", None, "62").is_err());
        assert!(NewJob::validate(None, local, "x", None, "60").is_ok());
    }

    #[test]
    fn statuses_round_trip() {
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(JobStatus::parse("PROCESSING"), None);
        assert!(JobStatus::Read.is_terminal() && !JobStatus::Processing.is_terminal());
    }
}
