//! The web app's side of the Firestore queue for the suites: writes job documents
//! as the app does (`createdAt` as the server's request time) and reads them back.

use abtrack_dispatcher::config::FirestoreSettings;
use abtrack_dispatcher::firestore::doc::text;
use abtrack_dispatcher::firestore::{FirestoreQueue, connect};
use abtrack_dispatcher::job::{Counts, Job};
use abtrack_dispatcher::queue::Store;
use firestore::gcloud_sdk::google::firestore::v1::{
    self as pb, Document, Precondition, Value, Write, document_transform::FieldTransform,
    document_transform::field_transform, precondition::ConditionType, write::Operation,
};
use std::time::Duration;

/// A client of one collection on the emulator at `host`.
pub struct App {
    queue: FirestoreQueue,
}

impl App {
    pub async fn connect(host: &str, collection: &str) -> Self {
        let settings = FirestoreSettings {
            project_id: "demo-abtrack".into(),
            database_id: "(default)".into(),
            collection: collection.into(),
            credentials: None,
            emulator_host: Some(host.into()),
            fallback_poll: Duration::from_secs(1),
        };
        let db = connect::connect(&settings).await.unwrap();
        Self {
            queue: FirestoreQueue::new(db, collection),
        }
    }

    /// Writes a pending job document with the given id, retrying while the emulator
    /// is unreachable (a restart); an existing document counts as written.
    pub async fn write_job(&self, id: &str, to: &str, message: &str) {
        self.write_fields(
            id,
            &[
                ("to", text(to)),
                ("message", text(message)),
                ("status", text("pending")),
            ],
        )
        .await;
    }

    /// Writes a document with exactly these fields plus `createdAt`.
    pub async fn write_fields(&self, id: &str, fields: &[(&str, Value)]) {
        let db = self.queue.db();
        let name = format!(
            "{}/{}/{id}",
            db.get_documents_path(),
            self.queue.collection()
        );
        let write = Write {
            operation: Some(Operation::Update(Document {
                name,
                fields: fields
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
                ..Default::default()
            })),
            update_transforms: vec![FieldTransform {
                field_path: "createdAt".into(),
                transform_type: Some(field_transform::TransformType::SetToServerValue(
                    field_transform::ServerValue::RequestTime as i32,
                )),
            }],
            current_document: Some(Precondition {
                condition_type: Some(ConditionType::Exists(false)),
            }),
            update_mask: None,
        };
        for _ in 0..100 {
            let result = db
                .client()
                .get()
                .commit(pb::CommitRequest {
                    database: db.get_database_path().clone(),
                    writes: vec![write.clone()],
                    ..Default::default()
                })
                .await;
            match result {
                Ok(_) => return,
                Err(status) if status.code() == tonic::Code::AlreadyExists => return,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        panic!("could not write job {id}");
    }

    pub fn queue(&self) -> &FirestoreQueue {
        &self.queue
    }

    pub async fn counts(&self) -> Counts {
        self.queue.counts().await.unwrap()
    }

    pub async fn get(&self, id: &str) -> Option<Job> {
        self.queue.get(id).await.unwrap()
    }

    /// Jobs in `processing` held by `owner`.
    pub async fn held_by(&self, owner: &str) -> Vec<Job> {
        self.queue
            .list(&[abtrack_dispatcher::job::JobStatus::Processing], 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|j| j.lease_owner.as_deref() == Some(owner))
            .collect()
    }

    /// Polls the counts until `check` holds (at most `limit`).
    pub async fn wait_counts(
        &self,
        limit: Duration,
        what: &str,
        check: impl Fn(&Counts) -> bool,
    ) -> Counts {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Ok(counts) = self.queue.counts().await
                && check(&counts)
            {
                return counts;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; last counts: {:?}",
                    self.queue.counts().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
