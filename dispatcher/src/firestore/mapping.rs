//! Where a job's fields live in the documents and which words stand for its
//! statuses: the architecture's names unless configured, so an app that already
//! writes jobs in a shape of its own is served without a change to it.

use abtrack_proto::config::{ConfigError, Env, Var};

use crate::job::JobStatus;

/// A job field the queue reads or writes, named by its default field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    To,
    Message,
    CreatedAt,
    SendAt,
    Account,
    Media,
    Status,
    Attempts,
    LeaseOwner,
    LeaseExpiresAt,
    NextAttemptAt,
    LastError,
    SentAt,
    MessageId,
    Recipient,
    RecipientLid,
    DeliveredAt,
    ReadAt,
    DeliveryOverdue,
    UpdatedAt,
    LoggedAt,
    History,
}

macro_rules! field_vars {
    ($($field:ident, $konst:ident, $name:literal, $default:literal, $help:literal;)*) => {
        $(pub const $konst: Var = Var { name: $name, default: $default, help: $help };)*

        impl Field {
            pub const ALL: [Field; 22] = [$(Field::$field),*];

            /// The variable that names this field's place in the documents.
            pub fn var(self) -> Var {
                match self {
                    $(Field::$field => $konst,)*
                }
            }
        }
    };
}

field_vars! {
    To, FIELD_TO, "FIRESTORE_FIELD_TO", "to",
        "field the app writes the recipient's phone number into (a dotted path reaches a nested map, e.g. payload.phone)";
    Message, FIELD_MESSAGE, "FIRESTORE_FIELD_MESSAGE", "message", "field the app writes the message text into";
    CreatedAt, FIELD_CREATED_AT, "FIRESTORE_FIELD_CREATED_AT", "createdAt",
        "field with the job's creation time, the queue order (the document's own creation time when absent)";
    SendAt, FIELD_SEND_AT, "FIRESTORE_FIELD_SEND_AT", "sendAt", "field with the earliest time to send";
    Account, FIELD_ACCOUNT, "FIRESTORE_FIELD_ACCOUNT", "account",
        "field naming the WhatsApp account that sends the job (absent or empty: the default account)";
    Media, FIELD_MEDIA, "FIRESTORE_FIELD_MEDIA", "media",
        "field the app writes an image or document into (a map: url or data, optional mimeType and fileName)";
    Status, FIELD_STATUS, "FIRESTORE_FIELD_STATUS", "status", "field holding the job's status word";
    Attempts, FIELD_ATTEMPTS, "FIRESTORE_FIELD_ATTEMPTS", "attempts", "field the server counts send attempts in";
    LeaseOwner, FIELD_LEASE_OWNER, "FIRESTORE_FIELD_LEASE_OWNER", "leaseOwner", "field naming the dispatcher that holds the job";
    LeaseExpiresAt, FIELD_LEASE_EXPIRES_AT, "FIRESTORE_FIELD_LEASE_EXPIRES_AT", "leaseExpiresAt", "field with the end of that dispatcher's lease";
    NextAttemptAt, FIELD_NEXT_ATTEMPT_AT, "FIRESTORE_FIELD_NEXT_ATTEMPT_AT", "nextAttemptAt", "field with the time of the next retry";
    LastError, FIELD_LAST_ERROR, "FIRESTORE_FIELD_LAST_ERROR", "lastError", "field the last error is written into (a map of code and message)";
    SentAt, FIELD_SENT_AT, "FIRESTORE_FIELD_SENT_AT", "sentAt", "field with the time WhatsApp's server accepted the message";
    MessageId, FIELD_MESSAGE_ID, "FIRESTORE_FIELD_MESSAGE_ID", "messageId", "field with WhatsApp's message id";
    Recipient, FIELD_RECIPIENT, "FIRESTORE_FIELD_RECIPIENT", "recipient", "field with the number the message went to (normalised)";
    RecipientLid, FIELD_RECIPIENT_LID, "FIRESTORE_FIELD_RECIPIENT_LID", "recipientLid", "field with the recipient's LID when WhatsApp addresses it by one";
    DeliveredAt, FIELD_DELIVERED_AT, "FIRESTORE_FIELD_DELIVERED_AT", "deliveredAt", "field with the time of the delivery receipt";
    ReadAt, FIELD_READ_AT, "FIRESTORE_FIELD_READ_AT", "readAt", "field with the time of the read receipt";
    DeliveryOverdue, FIELD_DELIVERY_OVERDUE, "FIRESTORE_FIELD_DELIVERY_OVERDUE", "deliveryOverdue", "field set true when no delivery receipt came in time";
    UpdatedAt, FIELD_UPDATED_AT, "FIRESTORE_FIELD_UPDATED_AT", "updatedAt", "field with the time the server last changed the job";
    LoggedAt, FIELD_LOGGED_AT, "FIRESTORE_FIELD_LOGGED_AT", "loggedAt", "field with the time the Sheets logger took the outcome";
    History, FIELD_HISTORY, "FIRESTORE_FIELD_HISTORY", "history",
        "field the server keeps the job's steps in (a list of maps, the newest 50: each lease, outcome, retry and receipt with its time)";
}

pub const STATUS_PENDING: Var = Var {
    name: "FIRESTORE_STATUS_PENDING",
    default: "pending",
    help: "status words that mean new, to be sent (comma-separated, at most 5; the first is written when a job goes back to waiting)",
};
pub const STATUS_SENT: Var = Var {
    name: "FIRESTORE_STATUS_SENT",
    default: "sent",
    help: "status word written once WhatsApp's server accepted the message",
};
pub const STATUS_DELIVERED: Var = Var {
    name: "FIRESTORE_STATUS_DELIVERED",
    default: "delivered",
    help: "status word written when the recipient's phone received it",
};
pub const STATUS_READ: Var = Var {
    name: "FIRESTORE_STATUS_READ",
    default: "read",
    help: "status word written when the recipient read it",
};
pub const STATUS_FAILED: Var = Var {
    name: "FIRESTORE_STATUS_FAILED",
    default: "failed",
    help: "status word written when the job cannot be sent",
};

/// The word of a job that a dispatcher holds: the lease's own state, never mapped.
pub const PROCESSING: &str = "processing";

/// Firestore's `not-in` takes at most 10 values: the pending words and the five others.
const MAX_PENDING_WORDS: usize = 5;

/// The document field of each job field, and the word of each status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    paths: Vec<String>,
    /// Never empty; the first is the one written.
    pending: Vec<String>,
    sent: String,
    delivered: String,
    read: String,
    failed: String,
}

impl Default for Mapping {
    fn default() -> Self {
        Self {
            paths: Field::ALL
                .iter()
                .map(|f| f.var().default.to_owned())
                .collect(),
            pending: vec![STATUS_PENDING.default.to_owned()],
            sent: STATUS_SENT.default.to_owned(),
            delivered: STATUS_DELIVERED.default.to_owned(),
            read: STATUS_READ.default.to_owned(),
            failed: STATUS_FAILED.default.to_owned(),
        }
    }
}

impl Mapping {
    /// Reads and checks the `FIRESTORE_FIELD_*` and `FIRESTORE_STATUS_*` variables: a
    /// field path must be letters, digits and `_` in dot-separated parts, no two
    /// fields may share or nest in one another's place, and no word may stand for two
    /// statuses.
    pub fn from_env(env: &Env<impl Fn(&str) -> Option<String>>) -> Result<Self, ConfigError> {
        let mut paths: Vec<String> = Vec::with_capacity(Field::ALL.len());
        for field in Field::ALL {
            let var = field.var();
            let path = env.string(var);
            check_path(&path).map_err(|reason| ConfigError::new(var.name, &path, reason))?;
            for (other, taken) in Field::ALL.iter().zip(&paths) {
                if overlaps(taken, &path) {
                    return Err(ConfigError::new(
                        var.name,
                        &path,
                        format!(
                            "the same field as {}={taken:?}; each job field needs a place of its own",
                            other.var().name
                        ),
                    ));
                }
            }
            paths.push(path);
        }
        let pending: Vec<String> = env
            .string(STATUS_PENDING)
            .split(',')
            .map(|w| w.trim().to_owned())
            .collect();
        let mapping = Self {
            paths,
            pending,
            sent: env.string(STATUS_SENT),
            delivered: env.string(STATUS_DELIVERED),
            read: env.string(STATUS_READ),
            failed: env.string(STATUS_FAILED),
        };
        mapping.check_words()?;
        Ok(mapping)
    }

    fn check_words(&self) -> Result<(), ConfigError> {
        if self.pending.len() > MAX_PENDING_WORDS {
            return Err(ConfigError::new(
                STATUS_PENDING.name,
                &self.pending.join(","),
                format!("at most {MAX_PENDING_WORDS} words (Firestore's not-in limit)"),
            ));
        }
        let mut seen: Vec<(&str, &str)> = Vec::new();
        let words = self
            .pending
            .iter()
            .map(|w| (STATUS_PENDING.name, w))
            .chain([
                (STATUS_SENT.name, &self.sent),
                (STATUS_DELIVERED.name, &self.delivered),
                (STATUS_READ.name, &self.read),
                (STATUS_FAILED.name, &self.failed),
            ]);
        for (var, word) in words {
            if word.is_empty() {
                return Err(ConfigError::new(var, word, "a status word cannot be empty"));
            }
            if word == PROCESSING {
                return Err(ConfigError::new(
                    var,
                    word,
                    format!("{PROCESSING:?} is the word of a job a dispatcher holds"),
                ));
            }
            if let Some((other, _)) = seen.iter().find(|(_, w)| *w == word) {
                if *other == var {
                    return Err(ConfigError::new(var, word, "the word is listed twice"));
                }
                return Err(ConfigError::new(
                    var,
                    word,
                    format!("{other} uses the same word; each status needs a word of its own"),
                ));
            }
            seen.push((var, word));
        }
        Ok(())
    }

    /// Where `field` lives in a document: a field path, dots into nested maps.
    pub fn path(&self, field: Field) -> &str {
        &self.paths[field as usize]
    }

    /// The word written for `status`; a job back to waiting gets the first pending word.
    pub fn word(&self, status: JobStatus) -> &str {
        match status {
            JobStatus::Pending => &self.pending[0],
            JobStatus::Processing => PROCESSING,
            JobStatus::Sent => &self.sent,
            JobStatus::Delivered => &self.delivered,
            JobStatus::Read => &self.read,
            JobStatus::Failed => &self.failed,
        }
    }

    /// Every word that stands for one of `statuses` (pending: each pending word).
    pub fn words(&self, statuses: &[JobStatus]) -> Vec<&str> {
        let mut words = Vec::new();
        for status in statuses {
            match status {
                JobStatus::Pending => words.extend(self.pending.iter().map(String::as_str)),
                other => words.push(self.word(*other)),
            }
        }
        words
    }

    /// The status a word stands for.
    pub fn status(&self, word: &str) -> Option<JobStatus> {
        if self.pending.iter().any(|w| w == word) {
            return Some(JobStatus::Pending);
        }
        JobStatus::ALL
            .into_iter()
            .filter(|s| *s != JobStatus::Pending)
            .find(|s| self.word(*s) == word)
    }
}

/// Letters, digits and `_` in dot-separated parts, none starting with a digit or
/// with `__` (Firestore's own): the field paths usable unquoted in a query.
fn check_path(path: &str) -> Result<(), String> {
    let part_ok = |part: &str| {
        let mut chars = part.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !part.starts_with("__")
    };
    if path.split('.').all(part_ok) {
        Ok(())
    } else {
        Err("expected a field name of letters, digits and _ (not starting with a digit or __), or such names joined by dots for a nested field".into())
    }
}

/// Whether two field paths name the same place or one lies inside the other.
fn overlaps(a: &str, b: &str) -> bool {
    let inside = |outer: &str, inner: &str| {
        inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    };
    inside(a, b) || inside(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn mapping(pairs: &[(&str, &str)]) -> Result<Mapping, ConfigError> {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        Mapping::from_env(&Env::new(|k| map.get(k).map(|v| (*v).to_owned())))
    }

    #[test]
    fn the_defaults_are_the_architecture_names() {
        let m = mapping(&[]).unwrap();
        assert_eq!(m, Mapping::default());
        assert_eq!(m.path(Field::To), "to");
        assert_eq!(m.path(Field::LoggedAt), "loggedAt");
        for status in JobStatus::ALL {
            assert_eq!(m.word(status), status.as_str());
            assert_eq!(m.status(status.as_str()), Some(status));
        }
    }

    #[test]
    fn an_app_shape_maps_fields_and_words() {
        let m = mapping(&[
            ("FIRESTORE_FIELD_TO", "payload.phone"),
            ("FIRESTORE_FIELD_MESSAGE", "text"),
            ("FIRESTORE_FIELD_STATUS", "state"),
            ("FIRESTORE_STATUS_PENDING", "queued, new"),
            ("FIRESTORE_STATUS_SENT", "done"),
        ])
        .unwrap();
        assert_eq!(m.path(Field::To), "payload.phone");
        assert_eq!(m.word(JobStatus::Pending), "queued");
        assert_eq!(m.status("new"), Some(JobStatus::Pending));
        assert_eq!(m.status("done"), Some(JobStatus::Sent));
        assert_eq!(m.status("sent"), None);
        assert_eq!(m.status(PROCESSING), Some(JobStatus::Processing));
        assert_eq!(
            m.words(&[JobStatus::Pending, JobStatus::Failed]),
            ["queued", "new", "failed"]
        );
    }

    #[test]
    fn bad_mappings_are_refused_with_their_variable() {
        // The variables set, the one refused, and what its reason says.
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (
                &[("FIRESTORE_FIELD_MESSAGE", "to")],
                "FIRESTORE_FIELD_MESSAGE",
                "the same field as FIRESTORE_FIELD_TO",
            ),
            (
                &[
                    ("FIRESTORE_FIELD_TO", "payload"),
                    ("FIRESTORE_FIELD_MESSAGE", "payload.text"),
                ],
                "FIRESTORE_FIELD_MESSAGE",
                "the same field as FIRESTORE_FIELD_TO",
            ),
            (
                &[("FIRESTORE_FIELD_STATUS", "app-state")],
                "FIRESTORE_FIELD_STATUS",
                "letters, digits and _",
            ),
            (
                &[("FIRESTORE_FIELD_TO", "payload..phone")],
                "FIRESTORE_FIELD_TO",
                "letters, digits and _",
            ),
            (
                &[("FIRESTORE_FIELD_TO", "__name__")],
                "FIRESTORE_FIELD_TO",
                "letters, digits and _",
            ),
            (
                &[
                    ("FIRESTORE_STATUS_SENT", "done"),
                    ("FIRESTORE_STATUS_READ", "done"),
                ],
                "FIRESTORE_STATUS_READ",
                "FIRESTORE_STATUS_SENT uses the same word",
            ),
            (
                &[("FIRESTORE_STATUS_PENDING", "queued,failed")],
                "FIRESTORE_STATUS_FAILED",
                "FIRESTORE_STATUS_PENDING uses the same word",
            ),
            (
                &[("FIRESTORE_STATUS_PENDING", "queued,,new")],
                "FIRESTORE_STATUS_PENDING",
                "cannot be empty",
            ),
            (
                &[("FIRESTORE_STATUS_PENDING", "a,b,c,d,e,f")],
                "FIRESTORE_STATUS_PENDING",
                "at most 5",
            ),
            (
                &[("FIRESTORE_STATUS_FAILED", "processing")],
                "FIRESTORE_STATUS_FAILED",
                "a dispatcher holds",
            ),
        ];
        for (pairs, var, reason) in cases {
            let err = mapping(pairs).unwrap_err();
            assert_eq!(err.name, *var, "{pairs:?}: {err}");
            assert!(err.reason.contains(reason), "{pairs:?}: {err}");
        }
    }
}
