//! The two queue backends the contract tests run against: the local SQLite queue in
//! a temporary folder, and the Firestore queue on the emulator that
//! `FIRESTORE_EMULATOR_HOST` names (or a built-in one), each test in a collection of
//! its own.

use std::sync::Arc;
use std::time::Duration;

use abtrack_dispatcher::account::{Accounts, Lane, Wake};
use abtrack_dispatcher::config::FirestoreSettings;
use abtrack_dispatcher::events::{Events, QueueState};
use abtrack_dispatcher::firestore::{FirestoreQueue, connect};
use abtrack_dispatcher::lifecycle::Rules;
use abtrack_dispatcher::local::LocalQueue;
use abtrack_dispatcher::logger_link::Recorder;
use abtrack_dispatcher::queue::{Queue, Store};
use abtrack_firestore_emulator::TestFirestore;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Local,
    Firestore,
}

/// Keeps the storage of a test alive.
pub struct Storage {
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
        mapping: Default::default(),
        finished: Default::default(),
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

/// The rules the contract tests run under.
pub const RULES: Rules = Rules { max_attempts: 2 };

/// A queue on `store` as the dispatcher builds it, for the one default account, with
/// no logger attached.
pub fn queue_on(store: Arc<dyn Store>) -> Queue {
    queue_for(store, &Accounts::single())
}

/// A queue on `store` for `accounts`, with no logger attached.
pub fn queue_for(store: Arc<dyn Store>, accounts: &Accounts) -> Queue {
    let events = Events::start(
        Arc::clone(&store),
        QueueState::new(store.backend(), accounts),
        accounts.clone(),
        &Default::default(),
    );
    Queue::new(
        store,
        RULES,
        events,
        Wake::new(accounts),
        Recorder::default(),
    )
}

/// The lane of the one default account.
pub fn lane() -> Lane {
    Accounts::single().lanes().remove(0)
}

/// Two handles on one store, as two dispatcher processes would have.
pub async fn open_pair(backend: Backend) -> (Queue, Queue, Storage) {
    open_pair_for(backend, &Accounts::single()).await
}

/// Two handles on one store, as two dispatchers sending for `accounts` would have.
pub async fn open_pair_for(backend: Backend, accounts: &Accounts) -> (Queue, Queue, Storage) {
    let dir = tempfile::tempdir().unwrap();
    match backend {
        Backend::Local => {
            let path = dir.path().join("queue.sqlite3");
            let a = LocalQueue::open(&path).unwrap();
            let b = LocalQueue::open(&path).unwrap();
            (
                queue_for(Arc::new(a), accounts),
                queue_for(Arc::new(b), accounts),
                Storage {
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
                queue_for(Arc::new(a), accounts),
                queue_for(Arc::new(b), accounts),
                Storage {
                    _dir: dir,
                    _firestore: Some(firestore),
                },
            )
        }
    }
}
