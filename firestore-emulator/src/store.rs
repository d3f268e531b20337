//! The documents, their versions and the open transactions, behind one mutex. Every
//! write set is applied atomically with the preconditions Cloud Firestore checks;
//! a transaction whose reads changed before its commit is aborted.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use prost_types::Timestamp;
use tokio::sync::watch;
use tonic::Status;

use crate::pb::google::firestore::v1::{
    Document, Precondition, Value, Write, WriteResult, document_transform::field_transform,
    precondition::ConditionType, value::ValueType, write::Operation,
};
use crate::values::{get_in, set_field, split_path};

#[derive(Debug, Default)]
struct Transaction {
    /// The version each document had when the transaction read it (`None`: missing).
    reads: HashMap<String, Option<Timestamp>>,
}

#[derive(Debug, Default)]
pub struct State {
    pub docs: BTreeMap<String, Document>,
    transactions: HashMap<Vec<u8>, Transaction>,
    last_time: (i64, i32),
    next_transaction: u64,
    /// Document writes applied since the start, for benchmarks.
    pub writes: u64,
    /// The composite indexes queries need, when enforced.
    pub indexes: Option<crate::indexes::Indexes>,
}

/// The shared store: documents plus a counter that listeners watch for changes.
#[derive(Clone)]
pub struct Store {
    state: Arc<Mutex<State>>,
    version: watch::Sender<u64>,
    /// Listen streams open now.
    pub listens: Arc<AtomicUsize>,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            version: watch::channel(0).0,
            listens: Arc::default(),
        }
    }
}

fn ts_key(t: &Timestamp) -> (i64, i32) {
    (t.seconds, t.nanos)
}

impl State {
    /// A fresh commit time, strictly after every earlier one.
    fn tick(&mut self) -> Timestamp {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        // Microsecond precision, as Firestore's update times.
        let mut t = (now.as_secs() as i64, (now.subsec_micros() * 1_000) as i32);
        if t <= self.last_time {
            let (s, n) = self.last_time;
            t = if n + 1_000 >= 1_000_000_000 {
                (s + 1, 0)
            } else {
                (s, n + 1_000)
            };
        }
        self.last_time = t;
        Timestamp {
            seconds: t.0,
            nanos: t.1,
        }
    }

    pub fn read_time(&self) -> Timestamp {
        Timestamp {
            seconds: self.last_time.0,
            nanos: self.last_time.1,
        }
    }

    /// Notes that a transaction read `name` at its current version.
    pub fn record_read(&mut self, transaction: &[u8], name: &str) -> Result<(), Status> {
        let version = self.docs.get(name).and_then(|d| d.update_time);
        let txn = self
            .transactions
            .get_mut(transaction)
            .ok_or_else(|| Status::invalid_argument("transaction is not valid or has expired"))?;
        txn.reads.entry(name.to_owned()).or_insert(version);
        Ok(())
    }

    pub fn begin(&mut self) -> Vec<u8> {
        self.next_transaction += 1;
        let id = format!("txn-{}-{}", self.next_transaction, uuid::Uuid::new_v4()).into_bytes();
        self.transactions.insert(id.clone(), Transaction::default());
        id
    }

    pub fn rollback(&mut self, transaction: &[u8]) -> Result<(), Status> {
        self.transactions
            .remove(transaction)
            .map(|_| ())
            .ok_or_else(|| Status::invalid_argument("transaction is not valid or has expired"))
    }

    /// Applies `writes` atomically (all or none), in a transaction when one is given.
    pub fn commit(
        &mut self,
        writes: &[Write],
        transaction: Option<&[u8]>,
    ) -> Result<(Timestamp, Vec<WriteResult>), Status> {
        if let Some(id) = transaction {
            let txn = self.transactions.remove(id).ok_or_else(|| {
                Status::invalid_argument("transaction is not valid or has expired")
            })?;
            for (name, version) in &txn.reads {
                let now = self.docs.get(name).and_then(|d| d.update_time);
                if now.as_ref().map(ts_key) != version.as_ref().map(ts_key) {
                    return Err(Status::aborted(
                        "transaction lock timeout or contention: a document read in this transaction was changed",
                    ));
                }
            }
        }
        let commit_time = self.tick();
        let mut staged: BTreeMap<String, Option<Document>> = BTreeMap::new();
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            let name = match &write.operation {
                Some(Operation::Update(doc)) => doc.name.clone(),
                Some(Operation::Delete(name)) => name.clone(),
                Some(Operation::Transform(t)) => t.document.clone(),
                None => return Err(Status::invalid_argument("write has no operation")),
            };
            check_name(&name)?;
            let current = match staged.get(&name) {
                Some(doc) => doc.clone(),
                None => self.docs.get(&name).cloned(),
            };
            check_precondition(write.current_document.as_ref(), current.as_ref())?;
            let (next, transform_results) = match &write.operation {
                Some(Operation::Delete(_)) => (None, Vec::new()),
                Some(Operation::Update(doc)) => {
                    let mut fields = match (&write.update_mask, &current) {
                        (Some(_), Some(cur)) => cur.fields.clone(),
                        _ => HashMap::new(),
                    };
                    match &write.update_mask {
                        Some(mask) => {
                            for path in &mask.field_paths {
                                let path = split_path(path);
                                set_field(&mut fields, &path, get_in(&doc.fields, &path));
                            }
                        }
                        None => fields = doc.fields.clone(),
                    }
                    let results = transform(&mut fields, &write.update_transforms, &commit_time)?;
                    (Some(fields), results)
                }
                Some(Operation::Transform(t)) => {
                    let mut fields = current
                        .as_ref()
                        .map(|d| d.fields.clone())
                        .unwrap_or_default();
                    let results = transform(&mut fields, &t.field_transforms, &commit_time)?;
                    (Some(fields), results)
                }
                None => unreachable!("checked above"),
            };
            let next = next.map(|fields| Document {
                name: name.clone(),
                fields,
                create_time: Some(
                    current
                        .as_ref()
                        .and_then(|c| c.create_time)
                        .unwrap_or(commit_time),
                ),
                update_time: Some(commit_time),
            });
            results.push(WriteResult {
                update_time: Some(commit_time),
                transform_results,
            });
            staged.insert(name, next);
        }
        for (name, doc) in staged {
            match doc {
                Some(doc) => {
                    self.docs.insert(name, doc);
                }
                None => {
                    self.docs.remove(&name);
                }
            }
        }
        self.writes += writes.len() as u64;
        Ok((commit_time, results))
    }
}

fn check_name(name: &str) -> Result<(), Status> {
    let ok = name
        .split_once("/documents/")
        .is_some_and(|(_, path)| path.split('/').count() % 2 == 0 && !path.contains("//"));
    if ok {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "invalid document name {name:?}"
        )))
    }
}

fn check_precondition(
    precondition: Option<&Precondition>,
    current: Option<&Document>,
) -> Result<(), Status> {
    match precondition.and_then(|p| p.condition_type.as_ref()) {
        None => Ok(()),
        Some(ConditionType::Exists(true)) if current.is_none() => {
            Err(Status::not_found("no document to update"))
        }
        Some(ConditionType::Exists(false)) if current.is_some() => {
            Err(Status::already_exists("document already exists"))
        }
        Some(ConditionType::Exists(_)) => Ok(()),
        Some(ConditionType::UpdateTime(want)) => {
            let have = current.and_then(|d| d.update_time.as_ref()).map(ts_key);
            if have == Some(ts_key(want)) {
                Ok(())
            } else {
                Err(Status::failed_precondition(
                    "the stored version does not match the required base version",
                ))
            }
        }
    }
}

fn transform(
    fields: &mut HashMap<String, Value>,
    transforms: &[crate::pb::google::firestore::v1::document_transform::FieldTransform],
    commit_time: &Timestamp,
) -> Result<Vec<Value>, Status> {
    let mut results = Vec::new();
    for t in transforms {
        let path = split_path(&t.field_path);
        let value = match &t.transform_type {
            Some(field_transform::TransformType::SetToServerValue(v))
                if *v == field_transform::ServerValue::RequestTime as i32 =>
            {
                Value {
                    value_type: Some(ValueType::TimestampValue(*commit_time)),
                }
            }
            Some(field_transform::TransformType::Increment(by)) => {
                let current = get_in(fields, &path).and_then(|v| v.value_type);
                let value_type = match (current, &by.value_type) {
                    (Some(ValueType::IntegerValue(a)), Some(ValueType::IntegerValue(b))) => {
                        ValueType::IntegerValue(a.saturating_add(*b))
                    }
                    (Some(ValueType::IntegerValue(a)), Some(ValueType::DoubleValue(b))) => {
                        ValueType::DoubleValue(a as f64 + b)
                    }
                    (Some(ValueType::DoubleValue(a)), Some(ValueType::IntegerValue(b))) => {
                        ValueType::DoubleValue(a + *b as f64)
                    }
                    (Some(ValueType::DoubleValue(a)), Some(ValueType::DoubleValue(b))) => {
                        ValueType::DoubleValue(a + b)
                    }
                    (_, Some(b)) => b.clone(),
                    (_, None) => return Err(Status::invalid_argument("increment without a value")),
                };
                Value {
                    value_type: Some(value_type),
                }
            }
            _ => {
                return Err(Status::unimplemented(
                    "only REQUEST_TIME and increment transforms are supported by this emulator",
                ));
            }
        };
        set_field(fields, &path, Some(value.clone()));
        results.push(value);
    }
    Ok(results)
}

impl Store {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells every listener that documents changed.
    pub fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Removes every document and transaction.
    pub fn clear(&self) {
        let mut state = self.lock();
        state.docs.clear();
        state.transactions.clear();
        drop(state);
        self.changed();
    }
}
