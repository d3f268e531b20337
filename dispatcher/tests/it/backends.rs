//! The two queue backends the contract tests run against: the local SQLite queue in
//! a temporary folder, and the Firestore queue on the emulator that
//! `FIRESTORE_EMULATOR_HOST` names (or a built-in one), each test in a collection of
//! its own.

use std::sync::Arc;
use std::time::Duration;

use abtrack_dispatcher::config::FirestoreSettings;
use abtrack_dispatcher::firestore::{FirestoreQueue, connect};
use abtrack_dispatcher::local::LocalQueue;
use abtrack_dispatcher::queue::JobQueue;
use abtrack_firestore_emulator::TestFirestore;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Local,
    Firestore,
}

/// Keeps the storage of a test alive.
pub struct Store {
    _dir: tempfile::TempDir,
    _firestore: Option<TestFirestore>,
}

pub fn settings(host: &str, collection: &str) -> FirestoreSettings {
    FirestoreSettings {
        project_id: "demo-abtrack".into(),
        database_id: "(default)".into(),
        collection: collection.into(),
        credentials: None,
        emulator_host: Some(host.into()),
        fallback_poll: Duration::from_secs(1),
    }
}

/// A collection no other test uses.
pub fn fresh_collection() -> String {
    format!("jobs-{}", uuid::Uuid::new_v4().simple())
}

pub async fn firestore_queue(host: &str, collection: &str) -> FirestoreQueue {
    let db = connect::connect(&settings(host, collection)).await.unwrap();
    FirestoreQueue::new(db, collection)
}

/// Two handles on one store, as two dispatcher processes would have.
pub async fn open_pair(backend: Backend) -> (Arc<dyn JobQueue>, Arc<dyn JobQueue>, Store) {
    let dir = tempfile::tempdir().unwrap();
    match backend {
        Backend::Local => {
            let path = dir.path().join("queue.sqlite3");
            let a = LocalQueue::open(&path).unwrap();
            let b = LocalQueue::open(&path).unwrap();
            (
                Arc::new(a),
                Arc::new(b),
                Store {
                    _dir: dir,
                    _firestore: None,
                },
            )
        }
        Backend::Firestore => {
            let firestore = TestFirestore::from_env();
            let collection = fresh_collection();
            let a = firestore_queue(&firestore.host, &collection).await;
            let b = firestore_queue(&firestore.host, &collection).await;
            (
                Arc::new(a),
                Arc::new(b),
                Store {
                    _dir: dir,
                    _firestore: Some(firestore),
                },
            )
        }
    }
}
