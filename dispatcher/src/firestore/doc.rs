//! Job documents: the architecture's camelCase fields read into a [`Job`], each
//! checked, so a malformed document is named by its field instead of stopping the
//! queue; and the values the server writes back.

use std::collections::HashMap;

use firestore::gcloud_sdk::google::firestore::v1::{Document, MapValue, Value, value::ValueType};
use prost_types::Timestamp;

use abtrack_proto::message::check_message;

use crate::job::{Job, JobError, JobStatus, MAX_SEND_AT_MS};

pub const TO: &str = "to";
pub const MESSAGE: &str = "message";
pub const STATUS: &str = "status";
pub const CREATED_AT: &str = "createdAt";
pub const SEND_AT: &str = "sendAt";
pub const ATTEMPTS: &str = "attempts";
pub const LEASE_OWNER: &str = "leaseOwner";
pub const LEASE_EXPIRES_AT: &str = "leaseExpiresAt";
pub const NEXT_ATTEMPT_AT: &str = "nextAttemptAt";
pub const LAST_ERROR: &str = "lastError";
pub const SENT_AT: &str = "sentAt";
pub const MESSAGE_ID: &str = "messageId";
pub const RECIPIENT: &str = "recipient";
/// Written by the server: the recipient's LID when WhatsApp addresses it by one.
pub const RECIPIENT_LID: &str = "recipientLid";
pub const DELIVERED_AT: &str = "deliveredAt";
pub const READ_AT: &str = "readAt";
/// Written by the server: sent, no delivery receipt within the gateway's timeout.
pub const DELIVERY_OVERDUE: &str = "deliveryOverdue";
pub const UPDATED_AT: &str = "updatedAt";
/// When the sheets-logger acknowledged the outcome; `null` while it waits.
pub const LOGGED_AT: &str = "loggedAt";

const TIMESTAMP_FIELDS: [&str; 9] = [
    CREATED_AT,
    SEND_AT,
    LEASE_EXPIRES_AT,
    NEXT_ATTEMPT_AT,
    SENT_AT,
    DELIVERED_AT,
    READ_AT,
    UPDATED_AT,
    LOGGED_AT,
];
const STRING_FIELDS: [&str; 3] = [LEASE_OWNER, MESSAGE_ID, RECIPIENT];

/// Why a document cannot be a job: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub field: &'static str,
    pub reason: String,
}

impl Malformed {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
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

/// A boolean field the server writes; anything else reads as `false`.
pub fn get_flag(doc: &Document, field: &str) -> bool {
    matches!(
        doc.fields.get(field).and_then(|v| v.value_type.as_ref()),
        Some(ValueType::BooleanValue(true))
    )
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

fn get_string<'a>(doc: &'a Document, field: &'static str) -> Result<Option<&'a str>, Malformed> {
    match doc.fields.get(field) {
        v if is_null(v) => Ok(None),
        Some(Value {
            value_type: Some(ValueType::StringValue(s)),
        }) => Ok(Some(s)),
        Some(v) => Err(Malformed::new(
            field,
            format!("must be a string, found {}", kind(v)),
        )),
        None => Ok(None),
    }
}

fn get_ts(doc: &Document, field: &'static str) -> Result<Option<i64>, Malformed> {
    match doc.fields.get(field) {
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
                    field,
                    format!(
                        "timestamp out of range ({} s, {} ns); expected a time between the years 1 and 9999",
                        t.seconds, t.nanos
                    ),
                ))
            }
        }
        Some(v) => Err(Malformed::new(
            field,
            format!("must be a timestamp, found {}", kind(v)),
        )),
        None => Ok(None),
    }
}

/// The status a document claims, checked.
pub fn status(doc: &Document) -> Result<JobStatus, Malformed> {
    let status = get_string(doc, STATUS)?.ok_or_else(|| Malformed::new(STATUS, "is missing"))?;
    JobStatus::parse(status).ok_or_else(|| {
        Malformed::new(
            STATUS,
            format!(
                "unknown value {status:?}; expected one of pending, processing, sent, delivered, read, failed"
            ),
        )
    })
}

/// Reads a job document, checking every field the dispatcher relies on; the
/// recipient with the gateway's `default_country_code`.
pub fn parse(doc: &Document, default_country_code: &str) -> Result<Job, Malformed> {
    let job = read(doc)?;
    match abtrack_proto::normalize_recipient(&job.to, default_country_code) {
        Ok(_) => Ok(job),
        Err(e) => Err(Malformed::new(TO, e.to_string())),
    }
}

/// Reads a job document, checking the type of every field and the message, but not
/// whether the recipient is a number.
pub(crate) fn read(doc: &Document) -> Result<Job, Malformed> {
    let status = status(doc)?;
    let to = get_string(doc, TO)?.ok_or_else(|| Malformed::new(TO, "is missing"))?;
    let message = get_string(doc, MESSAGE)?.ok_or_else(|| Malformed::new(MESSAGE, "is missing"))?;
    check_message(message).map_err(|e| Malformed::new(MESSAGE, e))?;
    for field in TIMESTAMP_FIELDS {
        get_ts(doc, field)?;
    }
    for field in STRING_FIELDS {
        get_string(doc, field)?;
    }
    let attempts = match doc.fields.get(ATTEMPTS) {
        v if is_null(v) => 0,
        Some(Value {
            value_type: Some(ValueType::IntegerValue(n)),
        }) if *n >= 0 => u32::try_from(*n).map_err(|_| {
            Malformed::new(
                ATTEMPTS,
                format!("must be a whole number from 0 to {}, found {n}", u32::MAX),
            )
        })?,
        Some(v) => {
            return Err(Malformed::new(
                ATTEMPTS,
                format!("must be a whole number of at least 0, found {}", kind(v)),
            ));
        }
        None => 0,
    };
    let last_error = match doc.fields.get(LAST_ERROR) {
        v if is_null(v) => None,
        Some(Value {
            value_type: Some(ValueType::MapValue(map)),
        }) => {
            let field = |name: &str| match map.fields.get(name).and_then(|v| v.value_type.as_ref())
            {
                Some(ValueType::StringValue(s)) => s.clone(),
                _ => String::new(),
            };
            Some(JobError {
                code: field("code"),
                message: field("message"),
            })
        }
        Some(v) => {
            return Err(Malformed::new(
                LAST_ERROR,
                format!("must be a map of code and message, found {}", kind(v)),
            ));
        }
        None => None,
    };
    let ts = |f| get_ts(doc, f).ok().flatten();
    let string = |f| get_string(doc, f).ok().flatten().map(str::to_owned);
    Ok(Job {
        id: doc_id(doc).to_owned(),
        to: to.to_owned(),
        message: message.to_owned(),
        status,
        attempts,
        lease_owner: string(LEASE_OWNER),
        lease_expires_at: ts(LEASE_EXPIRES_AT),
        next_attempt_at: ts(NEXT_ATTEMPT_AT),
        send_at: ts(SEND_AT),
        created_at: ts(CREATED_AT)
            .or_else(|| doc.create_time.as_ref().map(ts_to_ms))
            .unwrap_or_default(),
        updated_at: ts(UPDATED_AT)
            .or_else(|| doc.update_time.as_ref().map(ts_to_ms))
            .unwrap_or_default(),
        last_error,
        sent_at: ts(SENT_AT),
        message_id: string(MESSAGE_ID),
        recipient: string(RECIPIENT),
        recipient_lid: string(RECIPIENT_LID),
        delivered_at: ts(DELIVERED_AT),
        read_at: ts(READ_AT),
        delivery_overdue: get_flag(doc, DELIVERY_OVERDUE),
    })
}

/// A job for display even when the document is malformed: whatever fields read.
pub fn parse_lenient(doc: &Document) -> Job {
    if let Ok(job) = read(doc) {
        return job;
    }
    let string = |f| {
        get_string(doc, f)
            .ok()
            .flatten()
            .unwrap_or_default()
            .to_owned()
    };
    let ts = |f| get_ts(doc, f).ok().flatten();
    let last_error = match doc
        .fields
        .get(LAST_ERROR)
        .and_then(|v| v.value_type.as_ref())
    {
        Some(ValueType::MapValue(map)) => {
            let field = |name: &str| match map.fields.get(name).and_then(|v| v.value_type.as_ref())
            {
                Some(ValueType::StringValue(s)) => s.clone(),
                _ => String::new(),
            };
            Some(JobError {
                code: field("code"),
                message: field("message"),
            })
        }
        _ => None,
    };
    Job {
        id: doc_id(doc).to_owned(),
        to: string(TO),
        message: string(MESSAGE),
        status: status(doc).unwrap_or(JobStatus::Failed),
        attempts: match doc.fields.get(ATTEMPTS).and_then(|v| v.value_type.as_ref()) {
            Some(ValueType::IntegerValue(n)) => u32::try_from((*n).max(0)).unwrap_or(u32::MAX),
            _ => 0,
        },
        lease_owner: get_string(doc, LEASE_OWNER)
            .ok()
            .flatten()
            .map(str::to_owned),
        lease_expires_at: ts(LEASE_EXPIRES_AT),
        next_attempt_at: ts(NEXT_ATTEMPT_AT),
        send_at: ts(SEND_AT),
        created_at: ts(CREATED_AT)
            .or_else(|| doc.create_time.as_ref().map(ts_to_ms))
            .unwrap_or_default(),
        updated_at: ts(UPDATED_AT)
            .or_else(|| doc.update_time.as_ref().map(ts_to_ms))
            .unwrap_or_default(),
        last_error,
        sent_at: ts(SENT_AT),
        message_id: get_string(doc, MESSAGE_ID)
            .ok()
            .flatten()
            .map(str::to_owned),
        recipient: get_string(doc, RECIPIENT).ok().flatten().map(str::to_owned),
        recipient_lid: get_string(doc, RECIPIENT_LID)
            .ok()
            .flatten()
            .map(str::to_owned),
        delivered_at: ts(DELIVERED_AT),
        read_at: ts(READ_AT),
        delivery_overdue: get_flag(doc, DELIVERY_OVERDUE),
    }
}

/// The fields a decided change writes onto the document it was decided from: the
/// status, the lease and the update time always (so a malformed document's unreadable
/// values are overwritten), every other server field only where it changed.
pub fn changed_fields(old: &Job, new: &Job, log: bool) -> Vec<(&'static str, Value)> {
    let mut fields = vec![
        (STATUS, text(new.status.as_str())),
        (LEASE_OWNER, opt_text(new.lease_owner.as_deref())),
        (LEASE_EXPIRES_AT, opt_ts(new.lease_expires_at)),
        (UPDATED_AT, ts(new.updated_at)),
    ];
    let mut changed = |field, differs: bool, value: Value| {
        if differs {
            fields.push((field, value));
        }
    };
    changed(
        ATTEMPTS,
        old.attempts != new.attempts,
        int(i64::from(new.attempts)),
    );
    changed(
        NEXT_ATTEMPT_AT,
        old.next_attempt_at != new.next_attempt_at,
        opt_ts(new.next_attempt_at),
    );
    changed(
        LAST_ERROR,
        old.last_error != new.last_error,
        error_value(new.last_error.as_ref()),
    );
    changed(SENT_AT, old.sent_at != new.sent_at, opt_ts(new.sent_at));
    changed(
        MESSAGE_ID,
        old.message_id != new.message_id,
        opt_text(new.message_id.as_deref()),
    );
    changed(
        RECIPIENT,
        old.recipient != new.recipient,
        opt_text(new.recipient.as_deref()),
    );
    changed(
        RECIPIENT_LID,
        old.recipient_lid != new.recipient_lid,
        opt_text(new.recipient_lid.as_deref()),
    );
    changed(
        DELIVERED_AT,
        old.delivered_at != new.delivered_at,
        opt_ts(new.delivered_at),
    );
    changed(READ_AT, old.read_at != new.read_at, opt_ts(new.read_at));
    changed(
        DELIVERY_OVERDUE,
        old.delivery_overdue != new.delivery_overdue,
        boolean(new.delivery_overdue),
    );
    changed(LOGGED_AT, log, null());
    fields
}

/// Whether the document has a usable `createdAt` (the queue order).
pub fn has_created_at(doc: &Document) -> bool {
    !is_null(doc.fields.get(CREATED_AT))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    mod properties {
        use super::*;
        use proptest::collection::{hash_map, vec};
        use proptest::prelude::*;

        const FIELDS: [&str; 18] = [
            TO,
            MESSAGE,
            STATUS,
            CREATED_AT,
            SEND_AT,
            ATTEMPTS,
            LEASE_OWNER,
            LEASE_EXPIRES_AT,
            NEXT_ATTEMPT_AT,
            LAST_ERROR,
            SENT_AT,
            MESSAGE_ID,
            RECIPIENT,
            DELIVERED_AT,
            READ_AT,
            UPDATED_AT,
            LOGGED_AT,
            "code",
        ];

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
                4 => proptest::sample::select(FIELDS.to_vec()).prop_map(str::to_owned),
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
                    proptest::sample::select(TIMESTAMP_FIELDS.to_vec()),
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
                        prop_assert!(FIELDS.contains(&malformed.field), "{:?}", malformed);
                        prop_assert!(!malformed.reason.is_empty());
                        let error = malformed.error();
                        prop_assert_eq!(error.code, "invalid_document");
                        prop_assert!(error.message.starts_with(malformed.field));
                    }
                }
                let _ = parse_lenient(&doc);
                let _ = has_created_at(&doc);
                let _ = status(&doc);
            }

            #[test]
            fn extreme_timestamps_and_attempts_are_refused_not_fatal(doc in nearly_good_document()) {
                let stamps_ok = TIMESTAMP_FIELDS.iter().all(|f| match doc.fields.get(*f) {
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
                            malformed.field == ATTEMPTS || TIMESTAMP_FIELDS.contains(&malformed.field),
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
