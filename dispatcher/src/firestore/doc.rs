//! Job documents: a document read into a [`Job`] through the [`Mapping`] (the
//! architecture's camelCase fields unless configured), each field checked, so a
//! malformed document is named by its field instead of stopping the queue; and the
//! values the server writes back, at the mapped places.

use std::collections::HashMap;

use firestore::gcloud_sdk::google::firestore::v1::{Document, MapValue, Value, value::ValueType};
use prost_types::Timestamp;

use abtrack_proto::message::check_message;

use super::mapping::{self, Field, Mapping};
use crate::job::{Job, JobError, JobStatus, MAX_SEND_AT_MS, Media, MediaSource, NewJob};
use crate::lifecycle::{MAX_STEPS, Step, StepKind};

/// The default field names, for writers of documents in the default shape.
pub const TO: &str = mapping::FIELD_TO.default;
pub const MESSAGE: &str = mapping::FIELD_MESSAGE.default;
pub const STATUS: &str = mapping::FIELD_STATUS.default;
pub const CREATED_AT: &str = mapping::FIELD_CREATED_AT.default;
pub const SEND_AT: &str = mapping::FIELD_SEND_AT.default;
pub const ATTEMPTS: &str = mapping::FIELD_ATTEMPTS.default;
pub const LOGGED_AT: &str = mapping::FIELD_LOGGED_AT.default;

const TIMESTAMP_FIELDS: [Field; 9] = [
    Field::CreatedAt,
    Field::SendAt,
    Field::LeaseExpiresAt,
    Field::NextAttemptAt,
    Field::SentAt,
    Field::DeliveredAt,
    Field::ReadAt,
    Field::UpdatedAt,
    Field::LoggedAt,
];
const STRING_FIELDS: [Field; 4] = [
    Field::Account,
    Field::LeaseOwner,
    Field::MessageId,
    Field::Recipient,
];

/// Why a document cannot be a job: the field (as the documents name it) and what is
/// wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub field: String,
    pub reason: String,
}

impl Malformed {
    fn new(field: &str, reason: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    pub fn error(&self) -> JobError {
        JobError::new(
            "invalid_document",
            format!("{}: {}", self.field, self.reason),
        )
    }
}

pub fn ms_to_ts(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Milliseconds of a timestamp; saturates instead of overflowing for the extreme
/// values only a corrupt document or a non-Firestore writer can hold.
pub fn ts_to_ms(t: &Timestamp) -> i64 {
    t.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(t.nanos) / 1_000_000)
}

/// Firestore's timestamp range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
const MIN_SECONDS: i64 = -62_135_596_800;
const MAX_SECONDS: i64 = MAX_SEND_AT_MS.div_euclid(1000);

pub fn ts(ms: i64) -> Value {
    Value {
        value_type: Some(ValueType::TimestampValue(ms_to_ts(ms))),
    }
}

pub fn boolean(b: bool) -> Value {
    Value {
        value_type: Some(ValueType::BooleanValue(b)),
    }
}

pub fn text(s: &str) -> Value {
    Value {
        value_type: Some(ValueType::StringValue(s.to_owned())),
    }
}

pub fn int(i: i64) -> Value {
    Value {
        value_type: Some(ValueType::IntegerValue(i)),
    }
}

pub fn null() -> Value {
    Value {
        value_type: Some(ValueType::NullValue(0)),
    }
}

pub fn opt_ts(ms: Option<i64>) -> Value {
    ms.map_or_else(null, ts)
}

pub fn opt_text(s: Option<&str>) -> Value {
    s.map_or_else(null, text)
}

pub fn error_value(error: Option<&JobError>) -> Value {
    match error {
        None => null(),
        Some(e) => Value {
            value_type: Some(ValueType::MapValue(MapValue {
                fields: HashMap::from([
                    ("code".to_owned(), text(&e.code)),
                    ("message".to_owned(), text(&e.message)),
                ]),
            })),
        },
    }
}

fn kind(v: &Value) -> &'static str {
    match &v.value_type {
        None | Some(ValueType::NullValue(_)) => "null",
        Some(ValueType::BooleanValue(_)) => "a boolean",
        Some(ValueType::IntegerValue(_)) => "an integer",
        Some(ValueType::DoubleValue(_)) => "a number",
        Some(ValueType::TimestampValue(_)) => "a timestamp",
        Some(ValueType::StringValue(_)) => "a string",
        Some(ValueType::BytesValue(_)) => "bytes",
        Some(ValueType::ReferenceValue(_)) => "a reference",
        Some(ValueType::GeoPointValue(_)) => "a geo point",
        Some(ValueType::ArrayValue(_)) => "an array",
        Some(ValueType::MapValue(_)) => "a map",
        Some(_) => "an expression",
    }
}

pub fn is_null(v: Option<&Value>) -> bool {
    v.is_none_or(|v| matches!(v.value_type, None | Some(ValueType::NullValue(_))))
}

/// The document's id: the last segment of its name.
pub fn doc_id(doc: &Document) -> &str {
    doc.name.rsplit('/').next().unwrap_or_default()
}

/// The value at a field path: `a.b` is field `b` of the map in field `a`.
pub fn value_at<'a>(fields: &'a HashMap<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut value = fields.get(parts.next()?)?;
    for part in parts {
        match &value.value_type {
            Some(ValueType::MapValue(map)) => value = map.fields.get(part)?,
            _ => return None,
        }
    }
    Some(value)
}

/// Puts `value` at a field path, making the maps on the way (a field that is not a
/// map is replaced, as a Firestore update with that path in its mask does).
pub fn set_at(fields: &mut HashMap<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            fields.insert(path.to_owned(), value);
        }
        Some((head, rest)) => {
            let entry = fields.entry(head.to_owned()).or_insert_with(|| Value {
                value_type: Some(ValueType::MapValue(MapValue::default())),
            });
            if !matches!(entry.value_type, Some(ValueType::MapValue(_))) {
                entry.value_type = Some(ValueType::MapValue(MapValue::default()));
            }
            if let Some(ValueType::MapValue(map)) = &mut entry.value_type {
                set_at(&mut map.fields, rest, value);
            }
        }
    }
}

fn map_value(fields: Vec<(&str, Value)>) -> Value {
    Value {
        value_type: Some(ValueType::MapValue(MapValue {
            fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        })),
    }
}

/// A job's media as the documents keep it: `url` or `data` (bytes), `mimeType` and
/// `fileName` when declared.
fn media_value(media: &Media) -> Value {
    let mut fields = vec![match &media.source {
        MediaSource::Url(url) => ("url", text(url)),
        MediaSource::Inline(data) => (
            "data",
            Value {
                value_type: Some(ValueType::BytesValue(data.to_vec())),
            },
        ),
        // Never in a new job (only listed jobs leave their bytes unread); written as
        // missing data, the job would fail naming it rather than send nothing.
        MediaSource::InlineUnread(_) => ("data", null()),
    }];
    if let Some(mime) = &media.mime_type {
        fields.push(("mimeType", text(mime)));
    }
    if let Some(name) = &media.file_name {
        fields.push(("fileName", text(name)));
    }
    map_value(fields)
}

/// One step as the history field keeps it.
fn step_value(step: &Step) -> Value {
    let mut fields = vec![
        ("at", ts(step.at)),
        ("kind", text(step.kind.as_str())),
        ("attempt", int(i64::from(step.attempt))),
    ];
    if let Some(owner) = &step.owner {
        fields.push(("owner", text(owner)));
    }
    if step.error.is_some() {
        fields.push(("error", error_value(step.error.as_ref())));
    }
    if let Some(at) = step.next_attempt_at {
        fields.push(("nextAttemptAt", ts(at)));
    }
    map_value(fields)
}

/// A step read back; `None` for an entry this server did not write.
fn step_from(value: &Value) -> Option<Step> {
    let Some(ValueType::MapValue(map)) = &value.value_type else {
        return None;
    };
    let get = |name: &str| map.fields.get(name).and_then(|v| v.value_type.as_ref());
    let time = |name: &str| match get(name) {
        Some(ValueType::TimestampValue(t)) => Some(ts_to_ms(t)),
        _ => None,
    };
    let string = |name: &str| match get(name) {
        Some(ValueType::StringValue(s)) => Some(s.clone()),
        _ => None,
    };
    let error = match get("error") {
        Some(ValueType::MapValue(e)) => {
            let part = |name: &str| match e.fields.get(name).and_then(|v| v.value_type.as_ref()) {
                Some(ValueType::StringValue(s)) => s.clone(),
                _ => String::new(),
            };
            Some(JobError {
                code: part("code"),
                message: part("message"),
            })
        }
        _ => None,
    };
    Some(Step {
        at: time("at")?,
        kind: StepKind::parse(&string("kind")?)?,
        attempt: match get("attempt") {
            Some(ValueType::IntegerValue(n)) => u32::try_from(*n).unwrap_or(0),
            _ => 0,
        },
        owner: string("owner"),
        error,
        next_attempt_at: time("nextAttemptAt"),
    })
}

/// Reading a document's fields and writing a job's through the mapping.
impl Mapping {
    /// The steps of the document's history this server can read, oldest first.
    pub fn steps(&self, doc: &Document) -> Vec<Step> {
        match self
            .value(doc, Field::History)
            .and_then(|v| v.value_type.as_ref())
        {
            Some(ValueType::ArrayValue(list)) => list.values.iter().filter_map(step_from).collect(),
            _ => Vec::new(),
        }
    }

    /// The document's history with `step` added, its oldest entries dropped past
    /// [`MAX_STEPS`]; anything but a list there is replaced.
    pub fn history_with(&self, doc: &Document, step: &Step) -> Value {
        let mut values = match self
            .value(doc, Field::History)
            .and_then(|v| v.value_type.as_ref())
        {
            Some(ValueType::ArrayValue(list)) => list.values.clone(),
            _ => Vec::new(),
        };
        values.push(step_value(step));
        let extra = values.len().saturating_sub(MAX_STEPS);
        values.drain(..extra);
        Value {
            value_type: Some(ValueType::ArrayValue(
                firestore::gcloud_sdk::google::firestore::v1::ArrayValue { values },
            )),
        }
    }

    fn value<'a>(&self, doc: &'a Document, field: Field) -> Option<&'a Value> {
        value_at(&doc.fields, self.path(field))
    }

    /// Whether the field is absent or null.
    pub fn is_unset(&self, doc: &Document, field: Field) -> bool {
        is_null(self.value(doc, field))
    }

    fn get_string<'a>(
        &self,
        doc: &'a Document,
        field: Field,
    ) -> Result<Option<&'a str>, Malformed> {
        match self.value(doc, field) {
            v if is_null(v) => Ok(None),
            Some(Value {
                value_type: Some(ValueType::StringValue(s)),
            }) => Ok(Some(s)),
            Some(v) => Err(Malformed::new(
                self.path(field),
                format!("must be a string, found {}", kind(v)),
            )),
            None => Ok(None),
        }
    }

    fn get_ts(&self, doc: &Document, field: Field) -> Result<Option<i64>, Malformed> {
        match self.value(doc, field) {
            v if is_null(v) => Ok(None),
            Some(Value {
                value_type: Some(ValueType::TimestampValue(t)),
            }) => {
                if (MIN_SECONDS..=MAX_SECONDS).contains(&t.seconds)
                    && (0..1_000_000_000).contains(&t.nanos)
                {
                    Ok(Some(ts_to_ms(t)))
                } else {
                    Err(Malformed::new(
                        self.path(field),
                        format!(
                            "timestamp out of range ({} s, {} ns); expected a time between the years 1 and 9999",
                            t.seconds, t.nanos
                        ),
                    ))
                }
            }
            Some(v) => Err(Malformed::new(
                self.path(field),
                format!("must be a timestamp, found {}", kind(v)),
            )),
            None => Ok(None),
        }
    }

    /// A boolean field the server writes; anything else reads as `false`.
    fn get_flag(&self, doc: &Document, field: Field) -> bool {
        matches!(
            self.value(doc, field).and_then(|v| v.value_type.as_ref()),
            Some(ValueType::BooleanValue(true))
        )
    }

    fn get_error(&self, doc: &Document) -> Result<Option<JobError>, Malformed> {
        match self.value(doc, Field::LastError) {
            v if is_null(v) => Ok(None),
            Some(Value {
                value_type: Some(ValueType::MapValue(map)),
            }) => {
                let field =
                    |name: &str| match map.fields.get(name).and_then(|v| v.value_type.as_ref()) {
                        Some(ValueType::StringValue(s)) => s.clone(),
                        _ => String::new(),
                    };
                Ok(Some(JobError {
                    code: field("code"),
                    message: field("message"),
                }))
            }
            Some(v) => Err(Malformed::new(
                self.path(Field::LastError),
                format!("must be a map of code and message, found {}", kind(v)),
            )),
            None => Ok(None),
        }
    }

    fn get_attempts(&self, doc: &Document) -> Result<u32, Malformed> {
        let path = self.path(Field::Attempts);
        match self.value(doc, Field::Attempts) {
            v if is_null(v) => Ok(0),
            Some(Value {
                value_type: Some(ValueType::IntegerValue(n)),
            }) if *n >= 0 => u32::try_from(*n).map_err(|_| {
                Malformed::new(
                    path,
                    format!("must be a whole number from 0 to {}, found {n}", u32::MAX),
                )
            }),
            Some(v) => Err(Malformed::new(
                path,
                format!("must be a whole number of at least 0, found {}", kind(v)),
            )),
            None => Ok(0),
        }
    }

    /// The status a document claims, checked.
    pub fn status_of(&self, doc: &Document) -> Result<JobStatus, Malformed> {
        let path = self.path(Field::Status);
        let word = self
            .get_string(doc, Field::Status)?
            .ok_or_else(|| Malformed::new(path, "is missing"))?;
        self.status(word).ok_or_else(|| {
            Malformed::new(
                path,
                format!(
                    "unknown value {word:?}; expected one of {}",
                    self.words(&JobStatus::ALL).join(", ")
                ),
            )
        })
    }

    /// Reads a job document, checking every field the dispatcher relies on; the
    /// recipient with the gateway's `default_country_code`.
    pub fn parse(&self, doc: &Document, default_country_code: &str) -> Result<Job, Malformed> {
        let job = self.read(doc)?;
        match abtrack_proto::normalize_recipient(&job.to, default_country_code) {
            Ok(_) => Ok(job),
            Err(e) => Err(Malformed::new(self.path(Field::To), e.to_string())),
        }
    }

    /// Reads a job document, checking the type of every field and the message, but
    /// not whether the recipient is a number.
    pub(crate) fn read(&self, doc: &Document) -> Result<Job, Malformed> {
        let status = self.status_of(doc)?;
        let required = |field| {
            self.get_string(doc, field)?
                .ok_or_else(|| Malformed::new(self.path(field), "is missing"))
        };
        let to = required(Field::To)?;
        let message = required(Field::Message)?;
        let media = self.get_media(doc)?;
        let checked = match media {
            None => check_message(message),
            Some(_) => abtrack_proto::message::check_caption(message),
        };
        checked.map_err(|e| Malformed::new(self.path(Field::Message), e))?;
        for field in TIMESTAMP_FIELDS {
            self.get_ts(doc, field)?;
        }
        for field in STRING_FIELDS {
            self.get_string(doc, field)?;
        }
        let attempts = self.get_attempts(doc)?;
        let last_error = self.get_error(doc)?;
        let mut job = self.job(doc, to, message, status, attempts, last_error);
        job.media = media;
        Ok(job)
    }

    /// The media a document declares: a map of `url` (https://, http:// or gs://) or
    /// `data` (bytes, or base64 text), and optional `mimeType` and `fileName`.
    fn get_media(&self, doc: &Document) -> Result<Option<Media>, Malformed> {
        let path = self.path(Field::Media);
        let map = match self.value(doc, Field::Media) {
            v if is_null(v) => return Ok(None),
            Some(Value {
                value_type: Some(ValueType::MapValue(map)),
            }) => map,
            Some(v) => {
                return Err(Malformed::new(
                    path,
                    format!(
                        "must be a map of url or data, mimeType and fileName, found {}",
                        kind(v)
                    ),
                ));
            }
            None => return Ok(None),
        };
        let string = |name: &str| -> Result<Option<&str>, Malformed> {
            match map.fields.get(name) {
                v if is_null(v) => Ok(None),
                Some(Value {
                    value_type: Some(ValueType::StringValue(s)),
                }) => Ok(Some(s)),
                Some(v) => Err(Malformed::new(
                    &format!("{path}.{name}"),
                    format!("must be a string, found {}", kind(v)),
                )),
                None => Ok(None),
            }
        };
        let data = match map.fields.get("data") {
            v if is_null(v) => None,
            Some(Value {
                value_type: Some(ValueType::BytesValue(bytes)),
            }) => Some(bytes::Bytes::from(bytes.clone())),
            Some(Value {
                value_type: Some(ValueType::StringValue(text)),
            }) => {
                use base64::Engine as _;
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|e| {
                        Malformed::new(&format!("{path}.data"), format!("is not base64: {e}"))
                    })?;
                Some(bytes::Bytes::from(decoded))
            }
            Some(v) => {
                return Err(Malformed::new(
                    &format!("{path}.data"),
                    format!("must be bytes or base64 text, found {}", kind(v)),
                ));
            }
            None => None,
        };
        Media::validate(
            string("url")?,
            data,
            string("mimeType")?,
            string("fileName")?,
        )
        .map(Some)
        .map_err(|e| match e {
            crate::error::Error::InvalidArgument { field, reason } => {
                let sub = field.strip_prefix("media").unwrap_or(field);
                Malformed::new(&format!("{path}{sub}"), reason)
            }
            other => Malformed::new(path, other.to_string()),
        })
    }

    /// A job for display even when the document is malformed: whatever fields read.
    pub fn parse_lenient(&self, doc: &Document) -> Job {
        if let Ok(job) = self.read(doc) {
            return job;
        }
        let string = |f| self.get_string(doc, f).ok().flatten().unwrap_or_default();
        let attempts = match self
            .value(doc, Field::Attempts)
            .and_then(|v| v.value_type.as_ref())
        {
            Some(ValueType::IntegerValue(n)) => u32::try_from((*n).max(0)).unwrap_or(u32::MAX),
            _ => 0,
        };
        self.job(
            doc,
            string(Field::To),
            string(Field::Message),
            self.status_of(doc).unwrap_or(JobStatus::Failed),
            attempts,
            self.get_error(doc).ok().flatten(),
        )
    }

    /// The job of a document whose required fields are already read; the optional
    /// ones that do not read are left out.
    fn job(
        &self,
        doc: &Document,
        to: &str,
        message: &str,
        status: JobStatus,
        attempts: u32,
        last_error: Option<JobError>,
    ) -> Job {
        let ts = |f| self.get_ts(doc, f).ok().flatten();
        let string = |f| self.get_string(doc, f).ok().flatten().map(str::to_owned);
        Job {
            id: doc_id(doc).to_owned(),
            to: to.to_owned(),
            message: message.to_owned(),
            status,
            attempts,
            lease_owner: string(Field::LeaseOwner),
            lease_expires_at: ts(Field::LeaseExpiresAt),
            next_attempt_at: ts(Field::NextAttemptAt),
            send_at: ts(Field::SendAt),
            created_at: ts(Field::CreatedAt)
                .or_else(|| doc.create_time.as_ref().map(ts_to_ms))
                .unwrap_or_default(),
            updated_at: ts(Field::UpdatedAt)
                .or_else(|| doc.update_time.as_ref().map(ts_to_ms))
                .unwrap_or_default(),
            last_error,
            sent_at: ts(Field::SentAt),
            message_id: string(Field::MessageId),
            recipient: string(Field::Recipient),
            recipient_lid: string(Field::RecipientLid),
            delivered_at: ts(Field::DeliveredAt),
            read_at: ts(Field::ReadAt),
            delivery_overdue: self.get_flag(doc, Field::DeliveryOverdue),
            account: self.account(doc).map(str::to_owned),
            // Read with the required fields (`read`), where a bad one is an error.
            media: None,
        }
    }

    /// The account a job document names; `None` when it names none (absent, null,
    /// empty, or not a string, which [`Mapping::read`] reports).
    pub fn account<'a>(&self, doc: &'a Document) -> Option<&'a str> {
        self.get_string(doc, Field::Account)
            .ok()
            .flatten()
            .filter(|a| !a.is_empty())
    }

    /// The fields of a job created through the API: recipient, message, the first
    /// pending word, the creation time, no attempts yet, and the send time if any.
    pub fn new_fields(&self, job: &NewJob, now: i64) -> HashMap<String, Value> {
        let mut fields = HashMap::new();
        let mut set = |field, value| set_at(&mut fields, self.path(field), value);
        set(Field::To, text(&job.to));
        set(Field::Message, text(&job.message));
        if let Some(account) = &job.account {
            set(Field::Account, text(account));
        }
        if let Some(recipient) = &job.recipient {
            set(Field::Recipient, text(recipient));
        }
        if let Some(media) = &job.media {
            set(Field::Media, media_value(media));
        }
        set(Field::Status, text(self.word(JobStatus::Pending)));
        set(Field::CreatedAt, ts(now));
        set(Field::UpdatedAt, ts(now));
        set(Field::Attempts, int(0));
        if let Some(send_at) = job.send_at {
            set(Field::SendAt, ts(send_at));
        }
        fields
    }

    /// The fields a decided change writes onto the document it was decided from: the
    /// status, the lease and the update time always (so a malformed document's
    /// unreadable values are overwritten), every other server field only where it
    /// changed.
    pub fn changed_fields(&self, old: &Job, new: &Job, log: bool) -> Vec<(&str, Value)> {
        let mut fields = vec![
            (self.path(Field::Status), text(self.word(new.status))),
            (
                self.path(Field::LeaseOwner),
                opt_text(new.lease_owner.as_deref()),
            ),
            (
                self.path(Field::LeaseExpiresAt),
                opt_ts(new.lease_expires_at),
            ),
            (self.path(Field::UpdatedAt), ts(new.updated_at)),
        ];
        let mut changed = |field, differs: bool, value: Value| {
            if differs {
                fields.push((self.path(field), value));
            }
        };
        changed(
            Field::Attempts,
            old.attempts != new.attempts,
            int(i64::from(new.attempts)),
        );
        changed(
            Field::NextAttemptAt,
            old.next_attempt_at != new.next_attempt_at,
            opt_ts(new.next_attempt_at),
        );
        changed(
            Field::LastError,
            old.last_error != new.last_error,
            error_value(new.last_error.as_ref()),
        );
        changed(
            Field::SentAt,
            old.sent_at != new.sent_at,
            opt_ts(new.sent_at),
        );
        changed(
            Field::MessageId,
            old.message_id != new.message_id,
            opt_text(new.message_id.as_deref()),
        );
        changed(
            Field::Recipient,
            old.recipient != new.recipient,
            opt_text(new.recipient.as_deref()),
        );
        changed(
            Field::RecipientLid,
            old.recipient_lid != new.recipient_lid,
            opt_text(new.recipient_lid.as_deref()),
        );
        changed(
            Field::DeliveredAt,
            old.delivered_at != new.delivered_at,
            opt_ts(new.delivered_at),
        );
        changed(
            Field::ReadAt,
            old.read_at != new.read_at,
            opt_ts(new.read_at),
        );
        changed(
            Field::DeliveryOverdue,
            old.delivery_overdue != new.delivery_overdue,
            boolean(new.delivery_overdue),
        );
        changed(Field::LoggedAt, log, null());
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(doc: &Document, country_code: &str) -> Result<Job, Malformed> {
        Mapping::default().parse(doc, country_code)
    }

    fn parse_lenient(doc: &Document) -> Job {
        Mapping::default().parse_lenient(doc)
    }

    /// The default names of the timestamp fields.
    fn timestamp_fields() -> Vec<&'static str> {
        TIMESTAMP_FIELDS.iter().map(|f| f.var().default).collect()
    }

    fn doc(fields: &[(&str, Value)]) -> Document {
        Document {
            name: "projects/p/databases/(default)/documents/notifications/j1".into(),
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            create_time: Some(ms_to_ts(5)),
            update_time: Some(ms_to_ts(6)),
        }
    }

    #[test]
    fn each_malformed_field_is_named() {
        let good = [
            (TO, text("081234567890")),
            (MESSAGE, text("Halo")),
            (STATUS, text("pending")),
        ];
        let job = parse(&doc(&good), "62").unwrap();
        assert_eq!(
            (job.id.as_str(), job.created_at, job.attempts),
            ("j1", 5, 0)
        );
        let cases: Vec<(Vec<(&str, Value)>, &str)> = vec![
            (
                vec![(MESSAGE, text("Halo")), (STATUS, text("pending"))],
                "to: is missing",
            ),
            (
                vec![
                    (TO, int(62812)),
                    (MESSAGE, text("Halo")),
                    (STATUS, text("pending")),
                ],
                "to: must be a string, found an integer",
            ),
            (
                vec![(TO, text("081234567890")), (STATUS, text("pending"))],
                "message: is missing",
            ),
            (
                vec![
                    (TO, text("081234567890")),
                    (MESSAGE, text(&"x".repeat(65_537))),
                    (STATUS, text("pending")),
                ],
                "message: has 65537 characters",
            ),
            (
                vec![
                    (TO, text("081234567890")),
                    (MESSAGE, text("Halo")),
                    (STATUS, text("PENDING")),
                ],
                "status: unknown value \"PENDING\"",
            ),
            (
                vec![
                    (TO, text("081234567890")),
                    (MESSAGE, text("Halo")),
                    (STATUS, text("pending")),
                    (SEND_AT, text("tomorrow")),
                ],
                "sendAt: must be a timestamp, found a string",
            ),
            (
                vec![
                    (TO, text("081234567890")),
                    (MESSAGE, text("Halo")),
                    (STATUS, text("pending")),
                    (ATTEMPTS, text("1")),
                ],
                "attempts: must be a whole number",
            ),
        ];
        for (fields, want) in cases {
            let err = parse(&doc(&fields), "62").unwrap_err().error();
            assert!(err.message.starts_with(want), "{} != {want}", err.message);
            assert_eq!(err.code, "invalid_document");
        }
    }

    #[test]
    fn timestamps_round_trip_in_milliseconds() {
        for ms in [0, 1, 999, 1_700_000_000_123, -1] {
            assert_eq!(ts_to_ms(&ms_to_ts(ms)), ms);
        }
    }

    #[test]
    fn the_history_keeps_the_newest_steps_and_reads_them_back() {
        let map = Mapping::default();
        let step = |at: i64| Step {
            at,
            kind: StepKind::RetryLater,
            attempt: 1,
            owner: None,
            error: Some(JobError::new("e", "why")),
            next_attempt_at: Some(at + 10),
        };
        let mut d = doc(&[]);
        assert!(map.steps(&d).is_empty());
        for at in 0..(MAX_STEPS as i64 + 5) {
            let history = map.history_with(&d, &step(at));
            d.fields.insert("history".into(), history);
        }
        let steps = map.steps(&d);
        assert_eq!(steps.len(), MAX_STEPS);
        assert_eq!(steps[0], step(5), "the oldest steps went");
        assert_eq!(steps[MAX_STEPS - 1], step(MAX_STEPS as i64 + 4));
        // Something else in the field is replaced, an entry not written here skipped.
        d.fields.insert("history".into(), text("x"));
        assert_eq!(map.steps(&map_doc(&map, &d, &step(1))), [step(1)]);
        let mut odd = doc(&[]);
        odd.fields.insert(
            "history".into(),
            Value {
                value_type: Some(ValueType::ArrayValue(
                    firestore::gcloud_sdk::google::firestore::v1::ArrayValue {
                        values: vec![text("x"), step_value(&step(2))],
                    },
                )),
            },
        );
        assert_eq!(map.steps(&odd), [step(2)]);
    }

    /// `d` with `step` added to its history.
    fn map_doc(map: &Mapping, d: &Document, step: &Step) -> Document {
        let mut d = d.clone();
        let history = map.history_with(&d, step);
        d.fields.insert("history".into(), history);
        d
    }

    mod properties {
        use super::*;
        use proptest::collection::{hash_map, vec};
        use proptest::prelude::*;

        /// Every field a job has, by its default name, and the error's `code`.
        fn fields() -> Vec<&'static str> {
            let mut fields: Vec<&str> = Field::ALL.iter().map(|f| f.var().default).collect();
            fields.push("code");
            fields
        }

        fn of(value_type: ValueType) -> Value {
            Value {
                value_type: Some(value_type),
            }
        }

        /// Any timestamp, the extreme ones included.
        fn timestamp() -> impl Strategy<Value = Timestamp> {
            prop_oneof![
                (any::<i64>(), any::<i32>())
                    .prop_map(|(seconds, nanos)| Timestamp { seconds, nanos }),
                (MIN_SECONDS..=MAX_SECONDS, 0..1_000_000_000i32)
                    .prop_map(|(seconds, nanos)| Timestamp { seconds, nanos }),
                Just(Timestamp {
                    seconds: i64::MAX,
                    nanos: i32::MAX
                }),
                Just(Timestamp {
                    seconds: i64::MIN,
                    nanos: i32::MIN
                }),
            ]
        }

        /// Strings a job document may hold, sensible or not.
        fn string() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                Just("081234567890".to_owned()),
                Just("6281234567890@s.whatsapp.net".to_owned()),
                prop_oneof![
                    Just("pending"),
                    Just("processing"),
                    Just("sent"),
                    Just("delivered"),
                    Just("read"),
                    Just("failed")
                ]
                .prop_map(str::to_owned),
                "[0-9+ -]{0,20}",
            ]
        }

        fn value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value { value_type: None }),
                Just(null()),
                any::<bool>().prop_map(|b| of(ValueType::BooleanValue(b))),
                any::<i64>().prop_map(int),
                any::<f64>().prop_map(|d| of(ValueType::DoubleValue(d))),
                timestamp().prop_map(|t| of(ValueType::TimestampValue(t))),
                string().prop_map(|s| text(&s)),
                vec(any::<u8>(), 0..8).prop_map(|b| of(ValueType::BytesValue(b))),
            ];
            leaf.prop_recursive(2, 12, 4, |inner| {
                prop_oneof![
                    vec(inner.clone(), 0..4).prop_map(|values| of(ValueType::ArrayValue(
                        firestore::gcloud_sdk::google::firestore::v1::ArrayValue { values }
                    ))),
                    hash_map(
                        prop_oneof![
                            Just("code".to_owned()),
                            Just("message".to_owned()),
                            "[a-z]{1,6}"
                        ],
                        inner,
                        0..4
                    )
                    .prop_map(|fields| of(ValueType::MapValue(MapValue { fields }))),
                ]
            })
        }

        fn field_name() -> impl Strategy<Value = String> {
            prop_oneof![
                4 => proptest::sample::select(fields()).prop_map(str::to_owned),
                1 => "[a-zA-Z]{1,10}",
            ]
        }

        fn document() -> impl Strategy<Value = Document> {
            (
                hash_map(field_name(), value(), 0..14),
                proptest::option::of(timestamp()),
                proptest::option::of(timestamp()),
                prop_oneof![
                    Just("projects/p/databases/(default)/documents/n/j1".to_owned()),
                    any::<String>()
                ],
            )
                .prop_map(|(fields, create_time, update_time, name)| Document {
                    name,
                    fields,
                    create_time,
                    update_time,
                })
        }

        /// A document that is a good job but for its timestamps and attempts, which
        /// take any value.
        fn nearly_good_document() -> impl Strategy<Value = Document> {
            (
                hash_map(
                    proptest::sample::select(timestamp_fields()),
                    timestamp().prop_map(|t| of(ValueType::TimestampValue(t))),
                    0..9,
                ),
                proptest::option::of(any::<i64>()),
                proptest::option::of(timestamp()),
            )
                .prop_map(|(stamps, attempts, update_time)| {
                    let mut fields: HashMap<String, Value> =
                        stamps.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                    fields.insert(TO.into(), text("0812-3456-7890"));
                    fields.insert(MESSAGE.into(), text("Halo"));
                    fields.insert(STATUS.into(), text("pending"));
                    if let Some(n) = attempts {
                        fields.insert(ATTEMPTS.into(), int(n));
                    }
                    Document {
                        name: "projects/p/databases/(default)/documents/n/j1".into(),
                        fields,
                        create_time: None,
                        update_time,
                    }
                })
        }

        fn in_range(t: &Timestamp) -> bool {
            (MIN_SECONDS..=MAX_SECONDS).contains(&t.seconds)
                && (0..1_000_000_000).contains(&t.nanos)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]

            #[test]
            fn any_document_parses_or_names_what_is_wrong(doc in document()) {
                match parse(&doc, "62") {
                    Ok(job) => {
                        prop_assert_eq!(job.id.as_str(), doc_id(&doc));
                        prop_assert!(JobStatus::parse(job.status.as_str()).is_some());
                    }
                    Err(malformed) => {
                        prop_assert!(fields().contains(&malformed.field.as_str()), "{:?}", malformed);
                        prop_assert!(!malformed.reason.is_empty());
                        let error = malformed.error();
                        prop_assert_eq!(error.code, "invalid_document");
                        prop_assert!(error.message.starts_with(&malformed.field));
                    }
                }
                let _ = parse_lenient(&doc);
                let _ = Mapping::default().status_of(&doc);
            }

            #[test]
            fn extreme_timestamps_and_attempts_are_refused_not_fatal(doc in nearly_good_document()) {
                let stamps_ok = timestamp_fields().iter().all(|f| match doc.fields.get(*f) {
                    Some(Value { value_type: Some(ValueType::TimestampValue(t)) }) => in_range(t),
                    _ => true,
                });
                let attempts_ok = match doc.fields.get(ATTEMPTS) {
                    Some(Value { value_type: Some(ValueType::IntegerValue(n)) }) => u32::try_from(*n).is_ok(),
                    _ => true,
                };
                match parse(&doc, "62") {
                    Ok(job) => {
                        prop_assert!(stamps_ok && attempts_ok, "accepted {:?}", doc.fields);
                        if let Some(Value { value_type: Some(ValueType::IntegerValue(n)) }) = doc.fields.get(ATTEMPTS) {
                            prop_assert_eq!(i64::from(job.attempts), *n);
                        }
                    }
                    Err(malformed) => {
                        prop_assert!(!(stamps_ok && attempts_ok), "refused a good document: {:?}", malformed);
                        prop_assert!(
                            malformed.field == ATTEMPTS || timestamp_fields().contains(&malformed.field.as_str()),
                            "{:?}",
                            malformed
                        );
                        prop_assert!(!malformed.reason.is_empty());
                    }
                }
                let lenient = parse_lenient(&doc);
                prop_assert_eq!(lenient.to, "0812-3456-7890");
            }
        }
    }
}
