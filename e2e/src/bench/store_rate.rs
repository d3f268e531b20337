//! The stores' own limit: how many conditional writes per second each queue store
//! takes, one after the other as a dispatcher issues them, with nothing else running.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use abtrack_dispatcher::firestore::doc::{
    ATTEMPTS, LEASE_EXPIRES_AT, LEASE_OWNER, STATUS, UPDATED_AT, int, text, ts,
};
use abtrack_dispatcher::job::NewJob;
use abtrack_dispatcher::lifecycle::{Event, Rules};
use abtrack_dispatcher::local::LocalQueue;
use abtrack_dispatcher::queue::Store;
use abtrack_proto::time::now_ms;
use firestore::gcloud_sdk::google::firestore::v1::{
    self as pb, Document, DocumentMask, Precondition, Write, precondition::ConditionType,
    write::Operation,
};

use crate::firestore_app::App;

/// Writes per second of `writes` writes that took `elapsed`.
fn rate(writes: usize, elapsed: Duration) -> f64 {
    writes as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// The local queue's lease itself, `writes` times: the dispatcher's own `LocalQueue`
/// on a fresh file (WAL, `synchronous = FULL`, as the dispatcher opens it) runs its
/// conditional `UPDATE ... WHERE status = 'pending' ... RETURNING` on pending rows
/// written beforehand (not timed).
pub async fn sqlite_writes_per_second(writes: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let queue = LocalQueue::open(&dir.path().join("queue.sqlite3")).unwrap();
    for n in 0..writes {
        let job = NewJob {
            id: Some(format!("raw-{n:05}")),
            to: "081234567890".into(),
            message: "Halo".into(),
            send_at: None,
        };
        queue.enqueue(job, now_ms()).await.unwrap();
    }
    let rules = Rules { max_attempts: 5 };
    let started = Instant::now();
    for _ in 0..writes {
        let now = now_ms();
        let lease = Event::Lease {
            owner: "bench".into(),
            until: now + 120_000,
        };
        let leased = queue.lease_next(&lease, now, &rules).await.unwrap();
        assert!(!leased.is_empty(), "a pending row to lease");
    }
    rate(writes, started.elapsed())
}

/// The commit the dispatcher's Firestore queue makes for every change of a job,
/// `writes` times: an update of the lease fields with a field mask, conditional on the
/// document's update time. The documents are written and read beforehand (not timed),
/// one per write, in a collection of their own.
pub async fn emulator_writes_per_second(host: &str, writes: usize) -> f64 {
    let collection = format!("bench-raw-{}", now_ms());
    let app = App::connect(host, &collection).await;
    let db = app.queue().db();
    let mut client = db.client().get();
    let mut docs = Vec::with_capacity(writes);
    for n in 0..writes {
        let id = format!("raw-{n:05}");
        app.write_job(&id, "081234567890", "Halo").await;
        let doc = client
            .get_document(pb::GetDocumentRequest {
                name: format!("{}/{collection}/{id}", db.get_documents_path()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        docs.push(doc);
    }
    let started = Instant::now();
    for doc in docs {
        let now = now_ms();
        let fields = [
            (STATUS, text("processing")),
            (LEASE_OWNER, text("bench")),
            (LEASE_EXPIRES_AT, ts(now + 120_000)),
            (ATTEMPTS, int(1)),
            (UPDATED_AT, ts(now)),
        ];
        let write = Write {
            operation: Some(Operation::Update(Document {
                name: doc.name.clone(),
                fields: fields
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect::<HashMap<_, _>>(),
                ..Default::default()
            })),
            update_mask: Some(DocumentMask {
                field_paths: fields.iter().map(|(k, _)| (*k).to_owned()).collect(),
            }),
            current_document: Some(Precondition {
                condition_type: doc.update_time.map(ConditionType::UpdateTime),
            }),
            update_transforms: vec![],
        };
        client
            .commit(pb::CommitRequest {
                database: db.get_database_path().clone(),
                writes: vec![write],
                ..Default::default()
            })
            .await
            .unwrap();
    }
    rate(writes, started.elapsed())
}
