//! The Firestore queue beyond the shared contract: documents written as the app
//! writes them, malformed ones, pickup by the listener and by the fallback query, and
//! the emulator answering preconditions and transactions as Cloud Firestore does.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use abtrack_dispatcher::firestore::FirestoreQueue;
use abtrack_dispatcher::firestore::doc::{int, null, text};
use abtrack_dispatcher::job::{Finish, JobStatus};
use abtrack_firestore_emulator::TestFirestore;
use firestore::gcloud_sdk::google::firestore::v1::{
    self as pb, Document, Precondition, Value, Write, document_transform::FieldTransform,
    document_transform::field_transform, precondition::ConditionType, value::ValueType,
    write::Operation,
};
use tonic::Code;

use crate::backends::{firestore_queue, fresh_collection, lane, queue_on};
use crate::worker::Harness;

/// Writes a job document as the app does: its own fields plus `createdAt` as the
/// server's request time (unless `created_at` is false).
async fn app_writes(queue: &FirestoreQueue, id: &str, fields: &[(&str, Value)], created_at: bool) {
    let db = queue.db();
    let name = format!("{}/{}/{id}", db.get_documents_path(), queue.collection());
    let write = Write {
        operation: Some(Operation::Update(Document {
            name,
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            ..Default::default()
        })),
        update_transforms: if created_at {
            vec![FieldTransform {
                field_path: "createdAt".into(),
                transform_type: Some(field_transform::TransformType::SetToServerValue(
                    field_transform::ServerValue::RequestTime as i32,
                )),
            }]
        } else {
            vec![]
        },
        current_document: Some(Precondition {
            condition_type: Some(ConditionType::Exists(false)),
        }),
        update_mask: None,
    };
    db.client()
        .get()
        .commit(pb::CommitRequest {
            database: db.get_database_path().clone(),
            writes: vec![write],
            ..Default::default()
        })
        .await
        .unwrap();
}

/// A document's fields, by name.
type Fields = Vec<(&'static str, Value)>;

fn valid(message: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("to", text("081234567890")),
        ("message", text(message)),
        ("status", text("pending")),
    ]
}

fn sent(id: &str) -> Finish {
    Finish::Sent {
        message_id: format!("m-{id}"),
        recipient: "6281234567890@s.whatsapp.net".into(),
        recipient_lid: None,
        sent_at: 1,
    }
}

fn media_map(fields: Vec<(&str, Value)>) -> Value {
    Value {
        value_type: Some(ValueType::MapValue(pb::MapValue {
            fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        })),
    }
}

/// A pending job with `media` and no caption.
fn media_doc(media: Value) -> Fields {
    vec![
        ("to", text("081234567890")),
        ("message", text("")),
        ("status", text("pending")),
        ("media", media),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apps_media_is_read_from_a_url_bytes_or_base64_text() {
    use abtrack_dispatcher::job::{Media, MediaSource};
    let firestore = TestFirestore::from_env();
    let q = firestore_queue(&firestore.host, &fresh_collection()).await;
    let queue = queue_on(Arc::new(q.clone()));
    let pdf = b"%PDF-1.4 rekap".to_vec();
    use base64::Engine as _;
    let docs: Vec<(&str, Value, Media)> = vec![
        (
            "by-url",
            media_map(vec![
                ("url", text("gs://demo.appspot.com/rekap/okt.pdf")),
                ("mimeType", text("application/PDF")),
                ("fileName", text("Rekap Oktober.pdf")),
            ]),
            Media {
                source: MediaSource::Url("gs://demo.appspot.com/rekap/okt.pdf".into()),
                mime_type: Some("application/pdf".into()),
                file_name: Some("Rekap Oktober.pdf".into()),
            },
        ),
        (
            "by-bytes",
            media_map(vec![(
                "data",
                Value {
                    value_type: Some(ValueType::BytesValue(pdf.clone())),
                },
            )]),
            Media {
                source: MediaSource::Inline(pdf.clone().into()),
                mime_type: None,
                file_name: None,
            },
        ),
        (
            "by-base64",
            media_map(vec![
                (
                    "data",
                    text(&base64::engine::general_purpose::STANDARD.encode(&pdf)),
                ),
                ("fileName", null()),
            ]),
            Media {
                source: MediaSource::Inline(pdf.clone().into()),
                mime_type: None,
                file_name: None,
            },
        ),
    ];
    for (id, media, _) in &docs {
        app_writes(&q, id, &media_doc(media.clone()), true).await;
    }
    let mut leased = HashMap::new();
    while let Some(job) = queue
        .lease_next("w", &lane(), 10_000_000_000_000, 10_000_000_100_000)
        .await
        .unwrap()
    {
        assert_eq!(job.message, "", "{}: the caption may be empty", job.id);
        leased.insert(job.id.clone(), job.media.clone());
    }
    for (id, _, want) in docs {
        assert_eq!(leased.get(id), Some(&Some(want)), "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_documents_end_failed_naming_the_field_and_never_stop_the_queue() {
    let firestore = TestFirestore::from_env();
    let q = firestore_queue(&firestore.host, &fresh_collection()).await;
    let queue = queue_on(Arc::new(q.clone()));
    let mut published = queue.events().jobs();
    let long = "x".repeat(65_537);
    let map = Value {
        value_type: Some(ValueType::MapValue(pb::MapValue {
            fields: HashMap::new(),
        })),
    };
    let corpus: Vec<(&str, Fields, &str)> = vec![
        (
            "no-to",
            vec![("message", text("Halo")), ("status", text("pending"))],
            "to: is missing",
        ),
        (
            "number-to",
            vec![
                ("to", int(6281234567890)),
                ("message", text("Halo")),
                ("status", text("pending")),
            ],
            "to: must be a string",
        ),
        (
            "null-message",
            vec![
                ("to", text("081234567890")),
                ("message", null()),
                ("status", text("pending")),
            ],
            "message: is missing",
        ),
        (
            "map-message",
            vec![
                ("to", text("081234567890")),
                ("message", map),
                ("status", text("pending")),
            ],
            "message: must be a string",
        ),
        (
            "long-message",
            vec![
                ("to", text("081234567890")),
                ("message", text(&long)),
                ("status", text("pending")),
            ],
            "message: has 65537 characters",
        ),
        (
            "upper-status",
            vec![
                ("to", text("081234567890")),
                ("message", text("Halo")),
                ("status", text("PENDING")),
            ],
            "status: unknown value \"PENDING\"",
        ),
        (
            "number-status",
            vec![
                ("to", text("081234567890")),
                ("message", text("Halo")),
                ("status", int(1)),
            ],
            "status: must be a string",
        ),
        (
            "text-send-at",
            vec![
                ("to", text("081234567890")),
                ("message", text("Halo")),
                ("status", text("pending")),
                ("sendAt", text("besok")),
            ],
            "sendAt: must be a timestamp",
        ),
        (
            "text-attempts",
            vec![
                ("to", text("081234567890")),
                ("message", text("Halo")),
                ("status", text("pending")),
                ("attempts", text("2")),
            ],
            "attempts: must be a whole number",
        ),
        (
            "media-not-a-map",
            media_doc(text("https://example.org/a.pdf")),
            "media: must be a map",
        ),
        (
            "media-url-and-data",
            media_doc(media_map(vec![
                ("url", text("https://example.org/a.pdf")),
                ("data", text("aGFsbw==")),
            ])),
            "media: give either url or data",
        ),
        (
            "media-ftp",
            media_doc(media_map(vec![("url", text("ftp://example.org/a.pdf"))])),
            "media.url: must start with https://",
        ),
        (
            "media-not-base64",
            media_doc(media_map(vec![("data", text("%%% not base64"))])),
            "media.data: is not base64",
        ),
        (
            "media-number-name",
            media_doc(media_map(vec![
                ("url", text("https://example.org/a.pdf")),
                ("fileName", int(7)),
            ])),
            "media.fileName: must be a string",
        ),
    ];
    let mut valid_ids = Vec::new();
    for (n, (id, fields, _)) in corpus.iter().enumerate() {
        app_writes(&q, id, fields, true).await;
        let ok = format!("valid-{n}");
        app_writes(&q, &ok, &valid(&ok), true).await;
        valid_ids.push(ok);
    }
    // One valid job without createdAt still goes out.
    app_writes(&q, "no-created-at", &valid("no createdAt"), false).await;
    valid_ids.push("no-created-at".into());

    let mut sent_ids = Vec::new();
    while let Some(job) = queue
        .lease_next("w", &lane(), 10_000_000_000_000, 10_000_000_100_000)
        .await
        .unwrap()
    {
        queue
            .finish(&job.id, "w", sent(&job.id), 10_000_000_000_001)
            .await
            .unwrap()
            .unwrap();
        sent_ids.push(job.id);
    }
    // Unknown statuses are found by the sweeper's scan.
    queue.sweep_expired(10_000_000_000_002).await.unwrap();
    sent_ids.sort();
    valid_ids.sort();
    assert_eq!(sent_ids, valid_ids, "every valid job went out, once");
    for (id, _, want) in &corpus {
        let job = queue.get(id).await.unwrap().unwrap();
        let error = job
            .last_error
            .clone()
            .unwrap_or_else(|| panic!("{id}: no lastError: {job:?}"));
        assert_eq!(job.status, JobStatus::Failed, "{id}");
        assert_eq!(error.code, "invalid_document", "{id}");
        assert!(
            error.message.starts_with(want),
            "{id}: {:?} does not start with {want:?}",
            error.message
        );
    }
    let counts = queue.counts().await.unwrap();
    assert_eq!((counts.pending, counts.processing), (0, 0));
    assert_eq!(counts.failed as usize, corpus.len());
    // Each failure was published as it was written, and waits for the logger like
    // any other outcome.
    let mut failed_events = std::collections::HashSet::new();
    while let Ok(job) = published.try_recv() {
        if job.status == JobStatus::Failed {
            failed_events.insert(job.id);
        }
    }
    let unlogged: std::collections::HashSet<_> = queue
        .store()
        .unlogged(1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.status == JobStatus::Failed)
        .map(|j| j.id)
        .collect();
    for (id, ..) in &corpus {
        assert!(failed_events.contains(*id), "{id}: no event published");
        assert!(unlogged.contains(*id), "{id}: not waiting for the logger");
    }
}

async fn wait_for_send(harness: &Harness, id: &str) {
    for _ in 0..400 {
        if harness.calls.lock().unwrap().contains_key(id) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the gateway never received job {id}");
}

fn firestore_env(host: &str, collection: &str) -> Vec<(&'static str, String)> {
    vec![
        ("QUEUE", "firestore".into()),
        ("FIRESTORE_EMULATOR_HOST", host.into()),
        ("FIRESTORE_COLLECTION", collection.into()),
        // No polling: only the listener (or the fallback) can wake the worker.
        ("DISPATCHER_POLL_INTERVAL_SECS", "3600".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_written_by_the_app_is_sent_through_the_listener() {
    let firestore = TestFirestore::from_env();
    let collection = fresh_collection();
    let mut env = firestore_env(&firestore.host, &collection);
    env.push(("FIRESTORE_FALLBACK_POLL_SECS", "3600".into()));
    let harness = Harness::start_with(env).await;
    let q = firestore_queue(&firestore.host, &collection).await;
    for n in 0..3 {
        let id = format!("live-{n}");
        app_writes(&q, &id, &valid("Halo"), true).await;
        wait_for_send(&harness, &id).await;
        assert_eq!(
            harness.finished(&id).await.status,
            abtrack_proto::dispatcher::v1::JobStatus::Sent as i32
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_listen_stream_broken_the_fallback_query_sends_and_the_listener_returns() {
    let firestore = TestFirestore::from_env();
    let Some(emulator) = &firestore.builtin else {
        eprintln!("skipped: breaking listen streams needs the built-in emulator");
        return;
    };
    emulator.set_listen_broken(true);
    let collection = fresh_collection();
    let mut env = firestore_env(&firestore.host, &collection);
    env.push(("FIRESTORE_FALLBACK_POLL_SECS", "1".into()));
    let harness = Harness::start_with(env).await;
    let q = firestore_queue(&firestore.host, &collection).await;
    app_writes(&q, "while-broken", &valid("Halo"), true).await;
    wait_for_send(&harness, "while-broken").await;

    emulator.set_listen_broken(false);
    for _ in 0..400 {
        if emulator.listen_streams() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        emulator.listen_streams() > 0,
        "the listener reconnected by itself"
    );
    app_writes(&q, "after-repair", &valid("Halo"), true).await;
    wait_for_send(&harness, "after-repair").await;
}

fn doc_name(q: &FirestoreQueue, id: &str) -> String {
    format!("{}/{}/{id}", q.db().get_documents_path(), q.collection())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_answers_preconditions_and_conflicts_as_firestore_does() {
    let firestore = TestFirestore::from_env();
    let q = firestore_queue(&firestore.host, &fresh_collection()).await;
    let db = q.db();
    let mut client = db.client().get();
    app_writes(&q, "a", &valid("Halo"), true).await;
    let doc = client
        .get_document(pb::GetDocumentRequest {
            name: doc_name(&q, "a"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let update = |precondition: ConditionType, id: &str| pb::CommitRequest {
        database: db.get_database_path().clone(),
        writes: vec![Write {
            operation: Some(Operation::Update(Document {
                name: doc_name(&q, id),
                fields: HashMap::from([("status".to_owned(), text("processing"))]),
                ..Default::default()
            })),
            update_mask: Some(pb::DocumentMask {
                field_paths: vec!["status".into()],
            }),
            current_document: Some(Precondition {
                condition_type: Some(precondition),
            }),
            update_transforms: vec![],
        }],
        ..Default::default()
    };
    let stamp = doc.update_time.unwrap();
    client
        .commit(update(ConditionType::UpdateTime(stamp), "a"))
        .await
        .unwrap();
    let stale = client
        .commit(update(ConditionType::UpdateTime(stamp), "a"))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition, "{stale:?}");
    let missing = client
        .commit(update(ConditionType::Exists(true), "missing"))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    let exists = client
        .commit(update(ConditionType::Exists(false), "a"))
        .await
        .unwrap_err();
    assert_eq!(exists.code(), Code::AlreadyExists, "{exists:?}");

    // Two transactions read the same document; the second commit conflicts.
    let begin = || {
        let mut client = db.client().get();
        async move {
            client
                .begin_transaction(pb::BeginTransactionRequest {
                    database: db.get_database_path().clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .transaction
        }
    };
    let (t1, t2) = (begin().await, begin().await);
    for t in [&t1, &t2] {
        client
            .get_document(pb::GetDocumentRequest {
                name: doc_name(&q, "a"),
                consistency_selector: Some(
                    pb::get_document_request::ConsistencySelector::Transaction(t.clone()),
                ),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let in_txn = |t: &Vec<u8>| {
        let mut request = update(ConditionType::Exists(true), "a");
        request.transaction = t.clone();
        request
    };
    client.commit(in_txn(&t1)).await.unwrap();
    let conflict = client.commit(in_txn(&t2)).await.unwrap_err();
    assert_eq!(conflict.code(), Code::Aborted, "{conflict:?}");
    let t3 = begin().await;
    client
        .rollback(pb::RollbackRequest {
            database: db.get_database_path().clone(),
            transaction: t3,
            ..Default::default()
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_crashes_the_gateway_ends_failed_on_firestore() {
    let firestore = TestFirestore::from_env();
    let mut env = firestore_env(&firestore.host, &fresh_collection());
    env.push(("DISPATCHER_POLL_INTERVAL_SECS", "1".into()));
    crate::worker::a_job_that_crashes_the_gateway_ends_failed(env).await;
}

/// Takes the job `id` through a lease to `finish` and its logged mark, as the worker
/// and the recorder do.
async fn finish_and_log(queue: &abtrack_dispatcher::queue::Queue, id: &str, finish: Finish) {
    let leased = queue
        .lease_next("d1", &lane(), 10, 1_000_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(leased.id, id);
    let done = queue.finish(id, "d1", finish, 20).await.unwrap().unwrap();
    queue
        .store()
        .mark_logged(vec![(id.to_owned(), done.updated_at)], 30)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_documents_are_moved_or_deleted_once_logged_and_receipts_and_retries_follow() {
    use abtrack_dispatcher::firestore::Finished;
    use abtrack_dispatcher::job::{JobError, NewJob, Receipt};
    use abtrack_dispatcher::queue::Store;
    let firestore = TestFirestore::from_env();
    let collection = fresh_collection();
    let archive = format!("{collection}-done");
    let q = firestore_queue(&firestore.host, &collection)
        .await
        .with_finished(Finished::Move(archive.clone()));
    let queue = queue_on(Arc::new(q.clone()));
    let job = |id: &str| NewJob {
        id: Some(id.into()),
        to: "081234567890".into(),
        message: "Halo".into(),
        send_at: None,
        account: None,
        recipient: None,
        media: None,
    };
    let get = |name: String| {
        let db = q.db().clone();
        async move {
            db.client()
                .get()
                .get_document(pb::GetDocumentRequest {
                    name,
                    ..Default::default()
                })
                .await
                .map(|d| d.into_inner())
        }
    };
    let archived = |id: &str| format!("{}/{archive}/{id}", q.db().get_documents_path());

    queue.enqueue(job("sent"), 1).await.unwrap();
    // Unlogged, the document stays: nothing leaves before the outbox has it.
    let leased = queue
        .lease_next("d1", &lane(), 10, 1_000_000)
        .await
        .unwrap()
        .unwrap();
    queue
        .finish(&leased.id, "d1", sent("sent"), 20)
        .await
        .unwrap();
    assert!(get(doc_name(&q, "sent")).await.is_ok());
    assert_eq!(q.unlogged(10).await.unwrap().len(), 1);
    let done = queue.get("sent").await.unwrap().unwrap();
    q.mark_logged(vec![("sent".into(), done.updated_at)], 30)
        .await
        .unwrap();
    assert_eq!(
        get(doc_name(&q, "sent")).await.unwrap_err().code(),
        Code::NotFound,
        "moved out of the queue's collection"
    );
    let moved = get(archived("sent")).await.unwrap();
    assert!(moved.fields.contains_key("loggedAt") && moved.fields.contains_key("messageId"));
    // The same request again is the moved job, not a new one.
    let repeated = queue.enqueue(job("sent"), 35).await.unwrap();
    assert!(!repeated.created);
    assert_eq!(repeated.job.status, JobStatus::Sent);
    assert_eq!(
        get(doc_name(&q, "sent")).await.unwrap_err().code(),
        Code::NotFound
    );
    // A receipt after the move updates the moved document.
    let read = queue
        .record_receipt("sent", Receipt::Read, 40, 41)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.status, JobStatus::Read);
    assert_eq!(
        queue.get("sent").await.unwrap().unwrap().status,
        JobStatus::Read
    );

    // A failed job moved, then retried from the dashboard: back in the queue, sent.
    queue.enqueue(job("failed"), 2).await.unwrap();
    finish_and_log(
        &queue,
        "failed",
        Finish::Failed(JobError::new("not_on_whatsapp", "no WhatsApp")),
    )
    .await;
    assert!(get(archived("failed")).await.is_ok());
    let retried = queue.retry("failed", 50).await.unwrap();
    assert_eq!(retried.status, JobStatus::Pending);
    assert!(
        get(archived("failed")).await.is_err(),
        "gone from the archive"
    );
    let back = get(doc_name(&q, "failed")).await.unwrap();
    assert!(
        matches!(
            back.fields
                .get("loggedAt")
                .and_then(|v| v.value_type.as_ref()),
            Some(ValueType::NullValue(_))
        ),
        "waits to be logged again: {:?}",
        back.fields
    );
    let again = queue
        .lease_next("d1", &lane(), 60, 1_000_000)
        .await
        .unwrap()
        .unwrap();
    // An operator's retry starts the attempts afresh.
    assert_eq!((again.id.as_str(), again.attempts), ("failed", 1));

    // Delete: the document is gone once logged.
    let deleting = q.clone().with_finished(Finished::Delete);
    let queue = queue_on(Arc::new(deleting.clone()));
    queue
        .finish("failed", "d1", sent("failed"), 70)
        .await
        .unwrap()
        .unwrap();
    queue.enqueue(job("deleted"), 3).await.unwrap();
    finish_and_log(&queue, "deleted", sent("deleted")).await;
    assert_eq!(
        get(doc_name(&q, "deleted")).await.unwrap_err().code(),
        Code::NotFound
    );
    assert!(get(archived("deleted")).await.is_err());
    assert!(queue.get("deleted").await.unwrap().is_none());
}
