//! The `google.firestore.v1.Firestore` gRPC service over the in-memory store: the
//! calls the `firestore` crate makes (documents, commits, transactions, queries,
//! aggregation counts and listeners).

use std::collections::HashMap;
use std::pin::Pin;

use prost_types::Timestamp;
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::pb::google::firestore::v1::{self as pb, firestore_server::Firestore};
use crate::pb::google::firestore::v1::{
    Document, Precondition, Value, Write, precondition::ConditionType, value::ValueType,
    write::Operation,
};
use crate::query::Query;
use crate::store::Store;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[derive(Clone)]
pub struct Service {
    pub store: Store,
    /// True while listen streams are refused (to test the fallback path).
    pub listen_broken: watch::Receiver<bool>,
}

fn stream_of<T: Send + 'static>(items: Vec<Result<T, Status>>) -> BoxStream<T> {
    Box::pin(tokio_stream::iter(items))
}

/// Applies a document mask to a returned document.
fn masked(mut doc: Document, mask: Option<&pb::DocumentMask>) -> Document {
    if let Some(mask) = mask {
        let mut fields = HashMap::new();
        for path in &mask.field_paths {
            let path = crate::values::split_path(path);
            if let Some(v) = crate::values::get_in(&doc.fields, &path) {
                crate::values::set_field(&mut fields, &path, Some(v));
            }
        }
        doc.fields = fields;
    }
    doc
}

impl Service {
    fn commit_one(&self, write: Write) -> Result<Timestamp, Status> {
        let result = self.store.lock().commit(&[write], None);
        let (time, _) = result?;
        self.store.changed();
        Ok(time)
    }

    fn get_stored(&self, name: &str) -> Option<Document> {
        self.store.lock().docs.get(name).cloned()
    }

    /// Runs a structured query in the consistency mode asked for; returns the
    /// documents, the read time and a transaction begun for it, if any.
    fn query(
        &self,
        parent: &str,
        query: &pb::StructuredQuery,
        transaction: Option<Vec<u8>>,
        begin: bool,
    ) -> Result<(Vec<Document>, Timestamp, Vec<u8>), Status> {
        let q = Query::new(parent, query)?;
        let mut state = self.store.lock();
        if let Some(indexes) = &state.indexes {
            indexes.check(query)?;
        }
        let docs = q.run(state.docs.values())?;
        let new_txn = if begin { state.begin() } else { Vec::new() };
        let txn = transaction.or_else(|| begin.then(|| new_txn.clone()));
        if let Some(txn) = txn {
            for doc in &docs {
                state.record_read(&txn, &doc.name)?;
            }
        }
        Ok((docs, state.read_time(), new_txn))
    }
}

#[tonic::async_trait]
impl Firestore for Service {
    async fn get_document(
        &self,
        request: Request<pb::GetDocumentRequest>,
    ) -> Result<Response<Document>, Status> {
        let req = request.into_inner();
        if let Some(pb::get_document_request::ConsistencySelector::Transaction(txn)) =
            &req.consistency_selector
        {
            self.store.lock().record_read(txn, &req.name)?;
        }
        let doc = self
            .get_stored(&req.name)
            .ok_or_else(|| Status::not_found(format!("no entity to get: {}", req.name)))?;
        Ok(Response::new(masked(doc, req.mask.as_ref())))
    }

    async fn create_document(
        &self,
        request: Request<pb::CreateDocumentRequest>,
    ) -> Result<Response<Document>, Status> {
        let req = request.into_inner();
        let id = if req.document_id.is_empty() {
            uuid::Uuid::new_v4().simple().to_string()[..20].to_owned()
        } else {
            req.document_id.clone()
        };
        let name = format!("{}/{}/{}", req.parent, req.collection_id, id);
        let mut doc = req.document.unwrap_or_default();
        doc.name = name.clone();
        self.commit_one(Write {
            operation: Some(Operation::Update(doc)),
            current_document: Some(Precondition {
                condition_type: Some(ConditionType::Exists(false)),
            }),
            ..Default::default()
        })?;
        let doc = self
            .get_stored(&name)
            .ok_or_else(|| Status::internal("created document vanished"))?;
        Ok(Response::new(masked(doc, req.mask.as_ref())))
    }

    async fn update_document(
        &self,
        request: Request<pb::UpdateDocumentRequest>,
    ) -> Result<Response<Document>, Status> {
        let req = request.into_inner();
        let doc = req
            .document
            .ok_or_else(|| Status::invalid_argument("document is required"))?;
        let name = doc.name.clone();
        self.commit_one(Write {
            operation: Some(Operation::Update(doc)),
            update_mask: req.update_mask,
            current_document: req.current_document,
            ..Default::default()
        })?;
        let doc = self
            .get_stored(&name)
            .ok_or_else(|| Status::internal("updated document vanished"))?;
        Ok(Response::new(masked(doc, req.mask.as_ref())))
    }

    async fn delete_document(
        &self,
        request: Request<pb::DeleteDocumentRequest>,
    ) -> Result<Response<()>, Status> {
        let req = request.into_inner();
        self.commit_one(Write {
            operation: Some(Operation::Delete(req.name)),
            current_document: req.current_document,
            ..Default::default()
        })?;
        Ok(Response::new(()))
    }

    async fn batch_get_documents(
        &self,
        request: Request<pb::BatchGetDocumentsRequest>,
    ) -> Result<Response<BoxStream<pb::BatchGetDocumentsResponse>>, Status> {
        use pb::batch_get_documents_request::ConsistencySelector as Sel;
        use pb::batch_get_documents_response::Result as Found;
        let req = request.into_inner();
        let mut state = self.store.lock();
        let (txn, new_txn) = match &req.consistency_selector {
            Some(Sel::Transaction(t)) => (Some(t.clone()), Vec::new()),
            Some(Sel::NewTransaction(_)) => {
                let t = state.begin();
                (Some(t.clone()), t)
            }
            _ => (None, Vec::new()),
        };
        let read_time = state.read_time();
        let mut out = Vec::new();
        for (i, name) in req.documents.iter().enumerate() {
            if let Some(txn) = &txn {
                state.record_read(txn, name)?;
            }
            let result = match state.docs.get(name) {
                Some(doc) => Found::Found(masked(doc.clone(), req.mask.as_ref())),
                None => Found::Missing(name.clone()),
            };
            out.push(Ok(pb::BatchGetDocumentsResponse {
                result: Some(result),
                transaction: if i == 0 { new_txn.clone() } else { Vec::new() },
                read_time: Some(read_time),
            }));
        }
        if out.is_empty() && !new_txn.is_empty() {
            out.push(Ok(pb::BatchGetDocumentsResponse {
                result: None,
                transaction: new_txn,
                read_time: Some(read_time),
            }));
        }
        Ok(Response::new(stream_of(out)))
    }

    async fn begin_transaction(
        &self,
        _request: Request<pb::BeginTransactionRequest>,
    ) -> Result<Response<pb::BeginTransactionResponse>, Status> {
        let transaction = self.store.lock().begin();
        Ok(Response::new(pb::BeginTransactionResponse { transaction }))
    }

    async fn commit(
        &self,
        request: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitResponse>, Status> {
        let req = request.into_inner();
        let txn = (!req.transaction.is_empty()).then_some(req.transaction.as_slice());
        let result = self.store.lock().commit(&req.writes, txn);
        let (commit_time, write_results) = result?;
        self.store.changed();
        Ok(Response::new(pb::CommitResponse {
            write_results,
            commit_time: Some(commit_time),
        }))
    }

    async fn rollback(
        &self,
        request: Request<pb::RollbackRequest>,
    ) -> Result<Response<()>, Status> {
        self.store
            .lock()
            .rollback(&request.into_inner().transaction)?;
        Ok(Response::new(()))
    }

    async fn run_query(
        &self,
        request: Request<pb::RunQueryRequest>,
    ) -> Result<Response<BoxStream<pb::RunQueryResponse>>, Status> {
        use pb::run_query_request::ConsistencySelector as Sel;
        let req = request.into_inner();
        let Some(pb::run_query_request::QueryType::StructuredQuery(query)) = &req.query_type else {
            return Err(Status::invalid_argument("a structured query is required"));
        };
        let (txn, begin) = match &req.consistency_selector {
            Some(Sel::Transaction(t)) => (Some(t.clone()), false),
            Some(Sel::NewTransaction(_)) => (None, true),
            _ => (None, false),
        };
        let (docs, read_time, new_txn) = self.query(&req.parent, query, txn, begin)?;
        let mut out: Vec<_> = docs
            .into_iter()
            .map(|doc| {
                Ok(pb::RunQueryResponse {
                    document: Some(doc),
                    read_time: Some(read_time),
                    ..Default::default()
                })
            })
            .collect();
        if out.is_empty() {
            out.push(Ok(pb::RunQueryResponse {
                read_time: Some(read_time),
                ..Default::default()
            }));
        }
        if let Some(Ok(first)) = out.first_mut() {
            first.transaction = new_txn;
        }
        Ok(Response::new(stream_of(out)))
    }

    async fn run_aggregation_query(
        &self,
        request: Request<pb::RunAggregationQueryRequest>,
    ) -> Result<Response<BoxStream<pb::RunAggregationQueryResponse>>, Status> {
        use pb::structured_aggregation_query::aggregation::Operator;
        let req = request.into_inner();
        let Some(pb::run_aggregation_query_request::QueryType::StructuredAggregationQuery(agg)) =
            &req.query_type
        else {
            return Err(Status::invalid_argument("an aggregation query is required"));
        };
        let Some(pb::structured_aggregation_query::QueryType::StructuredQuery(query)) =
            &agg.query_type
        else {
            return Err(Status::invalid_argument("an aggregation needs a query"));
        };
        let (docs, read_time, _) = self.query(&req.parent, query, None, false)?;
        let mut fields = HashMap::new();
        for a in &agg.aggregations {
            let Some(Operator::Count(count)) = &a.operator else {
                return Err(Status::unimplemented(
                    "only COUNT aggregations are supported by this emulator",
                ));
            };
            let n = docs.len() as i64;
            let n = count.up_to.map_or(n, |up| n.min(up));
            fields.insert(
                a.alias.clone(),
                Value {
                    value_type: Some(ValueType::IntegerValue(n)),
                },
            );
        }
        Ok(Response::new(stream_of(vec![Ok(
            pb::RunAggregationQueryResponse {
                result: Some(pb::AggregationResult {
                    aggregate_fields: fields,
                }),
                read_time: Some(read_time),
                ..Default::default()
            },
        )])))
    }

    async fn listen(
        &self,
        request: Request<Streaming<pb::ListenRequest>>,
    ) -> Result<Response<BoxStream<pb::ListenResponse>>, Status> {
        if *self.listen_broken.borrow() {
            return Err(Status::unavailable("listen streams are refused"));
        }
        let (tx, rx) = mpsc::channel(256);
        let listen = crate::listen::Listen {
            store: self.store.clone(),
            broken: self.listen_broken.clone(),
            tx,
        };
        tokio::spawn(listen.run(request.into_inner()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
