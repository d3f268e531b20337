//! The web app's side of the Firestore queue for the suites: writes job documents
//! as the app does (`createdAt` as the server's request time) and reads them back.

use abtrack_dispatcher::config::FirestoreSettings;
use abtrack_dispatcher::firestore::doc::{set_at, text};
use abtrack_dispatcher::firestore::mapping::{Field, Mapping};
use abtrack_dispatcher::firestore::{FirestoreQueue, connect};
use abtrack_dispatcher::job::{Counts, Job, JobStatus};
use abtrack_dispatcher::queue::Store;
use firestore::gcloud_sdk::google::firestore::v1::{
    self as pb, Document, Precondition, Value, Write, document_transform::FieldTransform,
    document_transform::field_transform, precondition::ConditionType, write::Operation,
};
use std::collections::HashMap;
use std::time::Duration;

/// A client of one collection on the emulator at `host`.
pub struct App {
    queue: FirestoreQueue,
}

impl App {
    pub async fn connect(host: &str, collection: &str) -> Self {
        Self::connect_shaped(host, collection, &[]).await
    }

    /// A client of a collection whose documents have the shape the dispatcher's
    /// `FIRESTORE_FIELD_*` / `FIRESTORE_STATUS_*` variables in `env` describe (its
    /// reads of jobs and counts, and the jobs it writes, go through that mapping).
    pub async fn connect_shaped(host: &str, collection: &str, env: &[(&str, &str)]) -> Self {
        let lookup = |key: &str| {
            env.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_owned())
        };
        let mapping =
            Mapping::from_env(&abtrack_proto::config::Env::new(lookup)).expect("a valid mapping");
        let settings = FirestoreSettings {
            project_id: "demo-abtrack".into(),
            database_id: "(default)".into(),
            collection: collection.into(),
            credentials: None,
            emulator_host: Some(host.into()),
            fallback_poll: Duration::from_secs(1),
            mapping: Default::default(),
            finished: Default::default(),
        };
        let db = connect::connect(&settings).await.unwrap();
        Self {
            queue: FirestoreQueue::new(db, collection).with_mapping(mapping),
        }
    }

    /// Writes a pending job document with the given id in the collection's shape
    /// (recipient, message, the first pending word, and the creation time as the
    /// server's request time), retrying while the emulator is unreachable (a
    /// restart); an existing document counts as written.
    pub async fn write_job(&self, id: &str, to: &str, message: &str) {
        self.write_job_for(id, to, message, None).await;
    }

    /// [`App::write_job`] naming the account that sends it.
    pub async fn write_job_for(&self, id: &str, to: &str, message: &str, account: Option<&str>) {
        let m = self.queue.mapping();
        let mut fields = HashMap::new();
        set_at(&mut fields, m.path(Field::To), text(to));
        set_at(&mut fields, m.path(Field::Message), text(message));
        if let Some(account) = account {
            set_at(&mut fields, m.path(Field::Account), text(account));
        }
        set_at(
            &mut fields,
            m.path(Field::Status),
            text(m.word(JobStatus::Pending)),
        );
        let created_at = request_time(m.path(Field::CreatedAt));
        self.create(id, fields, vec![created_at]).await;
    }

    /// Writes a document with exactly these fields plus `createdAt`.
    pub async fn write_fields(&self, id: &str, fields: &[(&str, Value)]) {
        let fields = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        self.create(id, fields, vec![request_time("createdAt")])
            .await;
    }

    /// Writes a document with exactly these top-level fields (maps nest), as an app
    /// with a shape of its own does.
    pub async fn write_document(&self, id: &str, fields: HashMap<String, Value>) {
        self.create(id, fields, vec![]).await;
    }

    /// Writes documents with exactly these fields in one commit (at most 500, as
    /// Firestore takes them), replacing any there.
    pub async fn write_many(&self, docs: Vec<(String, HashMap<String, Value>)>) {
        let db = self.queue.db();
        let writes = docs
            .into_iter()
            .map(|(id, fields)| Write {
                operation: Some(Operation::Update(Document {
                    name: self.name(&id),
                    fields,
                    ..Default::default()
                })),
                update_transforms: vec![],
                current_document: None,
                update_mask: None,
            })
            .collect();
        db.client()
            .get()
            .commit(pb::CommitRequest {
                database: db.get_database_path().clone(),
                writes,
                ..Default::default()
            })
            .await
            .expect("the emulator takes the documents");
    }

    /// Creates the document, retrying while the emulator is unreachable (a restart);
    /// an existing document counts as written.
    async fn create(
        &self,
        id: &str,
        fields: HashMap<String, Value>,
        update_transforms: Vec<FieldTransform>,
    ) {
        let db = self.queue.db();
        let write = Write {
            operation: Some(Operation::Update(Document {
                name: self.name(id),
                fields,
                ..Default::default()
            })),
            update_transforms,
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

    fn name(&self, id: &str) -> String {
        format!(
            "{}/{}/{id}",
            self.queue.db().get_documents_path(),
            self.queue.collection()
        )
    }

    /// The document as it is stored, every field included; `None` when there is none.
    pub async fn document(&self, id: &str) -> Option<Document> {
        let got = self
            .queue
            .db()
            .client()
            .get()
            .get_document(pb::GetDocumentRequest {
                name: self.name(id),
                ..Default::default()
            })
            .await;
        match got {
            Ok(doc) => Some(doc.into_inner()),
            Err(status) if status.code() == tonic::Code::NotFound => None,
            Err(status) => panic!("cannot read {id}: {status}"),
        }
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
            .list(
                &[abtrack_dispatcher::job::JobStatus::Processing],
                None,
                1000,
            )
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

/// Sets `path` to the time the emulator receives the write (`serverTimestamp()`).
fn request_time(path: &str) -> FieldTransform {
    FieldTransform {
        field_path: path.to_owned(),
        transform_type: Some(field_transform::TransformType::SetToServerValue(
            field_transform::ServerValue::RequestTime as i32,
        )),
    }
}
