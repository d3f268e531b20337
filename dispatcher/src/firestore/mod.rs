//! The Firestore job queue: one document per job in a collection. Every change of a
//! job is a write conditional on the document's update time, so any number of
//! dispatchers share one collection and never own the same job; a lost race is seen
//! as a failed precondition and the next candidate is tried.

pub mod connect;
pub mod doc;
pub mod pickup;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use firestore::FirestoreDb;
use firestore::gcloud_sdk::google::firestore::v1::{
    self as pb, Document, DocumentMask, Precondition, StructuredQuery, Value, Write,
    precondition::ConditionType,
    structured_aggregation_query::{self, Aggregation, aggregation},
    structured_query::{
        self, CollectionSelector, Direction, FieldReference, Filter, Order, composite_filter,
        field_filter, filter::FilterType, unary_filter,
    },
    value::ValueType,
    write::Operation,
};
use tonic::Code;

use crate::error::{Error, Result};
use crate::job::{Counts, Finish, Job, JobError, JobStatus, NewJob, Receipt};
use crate::queue::{Enqueued, JobQueue};
use doc::*;

/// How long one Firestore call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Pending documents read per lease attempt.
const CANDIDATES: i32 = 50;
/// Lease attempts lost to other dispatchers before giving up for this round.
const MAX_ROUNDS: usize = 20;

#[derive(Clone)]
pub struct FirestoreQueue {
    db: FirestoreDb,
    collection: String,
    /// Checks each document's recipient as the gateway will normalise it.
    default_country_code: String,
}

fn status_of(code: Code) -> bool {
    matches!(
        code,
        Code::FailedPrecondition | Code::NotFound | Code::Aborted
    )
}

fn firestore_error(what: &str, status: tonic::Status) -> Error {
    Error::Firestore(format!(
        "{what}: {} ({:?})",
        status.message(),
        status.code()
    ))
}

fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_TIMEOUT);
    request
}

fn field_ref(path: &str) -> FieldReference {
    FieldReference {
        field_path: path.to_owned(),
    }
}

fn cmp(path: &str, op: field_filter::Operator, value: Value) -> Filter {
    Filter {
        filter_type: Some(FilterType::FieldFilter(structured_query::FieldFilter {
            field: Some(field_ref(path)),
            op: op as i32,
            value: Some(value),
        })),
    }
}

fn eq(path: &str, value: Value) -> Filter {
    cmp(path, field_filter::Operator::Equal, value)
}

fn is_null_filter(path: &str) -> Filter {
    Filter {
        filter_type: Some(FilterType::UnaryFilter(structured_query::UnaryFilter {
            op: unary_filter::Operator::IsNull as i32,
            operand_type: Some(unary_filter::OperandType::Field(field_ref(path))),
        })),
    }
}

fn and(filters: Vec<Filter>) -> Filter {
    Filter {
        filter_type: Some(FilterType::CompositeFilter(
            structured_query::CompositeFilter {
                op: composite_filter::Operator::And as i32,
                filters,
            },
        )),
    }
}

fn statuses(list: &[JobStatus]) -> Value {
    Value {
        value_type: Some(ValueType::ArrayValue(pb::ArrayValue {
            values: list.iter().map(|s| text(s.as_str())).collect(),
        })),
    }
}

fn pending() -> Filter {
    eq(STATUS, text(JobStatus::Pending.as_str()))
}

impl FirestoreQueue {
    pub fn new(db: FirestoreDb, collection: impl Into<String>) -> Self {
        Self {
            db,
            collection: collection.into(),
            default_country_code: "62".into(),
        }
    }

    /// Sets the gateway's `WA_DEFAULT_COUNTRY_CODE` (62 unless set).
    pub fn with_default_country_code(mut self, code: &str) -> Self {
        code.clone_into(&mut self.default_country_code);
        self
    }

    pub fn db(&self) -> &FirestoreDb {
        &self.db
    }

    pub fn collection(&self) -> &str {
        &self.collection
    }

    fn name(&self, id: &str) -> String {
        format!("{}/{}/{id}", self.db.get_documents_path(), self.collection)
    }

    fn query(
        &self,
        filter: Filter,
        order: &[(&str, Direction)],
        limit: Option<i32>,
    ) -> StructuredQuery {
        StructuredQuery {
            from: vec![CollectionSelector {
                collection_id: self.collection.clone(),
                all_descendants: false,
            }],
            r#where: Some(filter),
            order_by: order
                .iter()
                .map(|(path, direction)| Order {
                    field: Some(field_ref(path)),
                    direction: *direction as i32,
                })
                .collect(),
            limit,
            ..Default::default()
        }
    }

    async fn run(&self, query: StructuredQuery) -> Result<Vec<Document>> {
        let mut client = self.db.client().get();
        let mut stream = client
            .run_query(request(pb::RunQueryRequest {
                parent: self.db.get_documents_path().clone(),
                query_type: Some(pb::run_query_request::QueryType::StructuredQuery(query)),
                ..Default::default()
            }))
            .await
            .map_err(|e| firestore_error("query failed", e))?
            .into_inner();
        let mut docs = Vec::new();
        while let Some(response) = stream
            .message()
            .await
            .map_err(|e| firestore_error("query failed", e))?
        {
            docs.extend(response.document);
        }
        Ok(docs)
    }

    async fn count(&self, filter: Filter) -> Result<u64> {
        let mut client = self.db.client().get();
        let query = pb::StructuredAggregationQuery {
            aggregations: vec![Aggregation {
                alias: "n".into(),
                operator: Some(aggregation::Operator::Count(aggregation::Count {
                    up_to: None,
                })),
            }],
            query_type: Some(structured_aggregation_query::QueryType::StructuredQuery(
                self.query(filter, &[], None),
            )),
        };
        let mut stream = client
            .run_aggregation_query(request(pb::RunAggregationQueryRequest {
                parent: self.db.get_documents_path().clone(),
                query_type: Some(
                    pb::run_aggregation_query_request::QueryType::StructuredAggregationQuery(query),
                ),
                ..Default::default()
            }))
            .await
            .map_err(|e| firestore_error("count failed", e))?
            .into_inner();
        let mut n = 0;
        while let Some(response) = stream
            .message()
            .await
            .map_err(|e| firestore_error("count failed", e))?
        {
            if let Some(ValueType::IntegerValue(c)) = response
                .result
                .and_then(|r| r.aggregate_fields.get("n").cloned())
                .and_then(|v| v.value_type)
            {
                n += c.max(0) as u64;
            }
        }
        Ok(n)
    }

    async fn get_doc(&self, id: &str) -> Result<Option<Document>> {
        let mut client = self.db.client().get();
        match client
            .get_document(request(pb::GetDocumentRequest {
                name: self.name(id),
                ..Default::default()
            }))
            .await
        {
            Ok(doc) => Ok(Some(doc.into_inner())),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(firestore_error("read failed", status)),
        }
    }

    /// Writes `fields` onto `doc` only if it is unchanged since it was read; `None`
    /// when another writer changed it first (or it is gone).
    async fn patch(&self, doc: &Document, fields: Vec<(&str, Value)>) -> Result<Option<Document>> {
        let mut client = self.db.client().get();
        let mask = DocumentMask {
            field_paths: fields.iter().map(|(k, _)| (*k).to_owned()).collect(),
        };
        let fields: HashMap<String, Value> =
            fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let write = Write {
            operation: Some(Operation::Update(Document {
                name: doc.name.clone(),
                fields: fields.clone(),
                create_time: None,
                update_time: None,
            })),
            update_mask: Some(mask),
            update_transforms: vec![],
            current_document: Some(Precondition {
                condition_type: Some(match doc.update_time {
                    Some(t) => ConditionType::UpdateTime(t),
                    None => ConditionType::Exists(true),
                }),
            }),
        };
        let response = client
            .commit(request(pb::CommitRequest {
                database: self.db.get_database_path().clone(),
                writes: vec![write],
                ..Default::default()
            }))
            .await;
        match response {
            Ok(response) => {
                let response = response.into_inner();
                let mut next = doc.clone();
                next.fields.extend(fields);
                next.update_time = response
                    .write_results
                    .first()
                    .and_then(|r| r.update_time)
                    .or(response.commit_time);
                Ok(Some(next))
            }
            Err(status) if status_of(status.code()) => Ok(None),
            Err(status) => Err(firestore_error("write failed", status)),
        }
    }

    /// Ends a malformed document `failed`, naming the field; `None` if it changed.
    async fn fail_malformed(
        &self,
        doc: &Document,
        error: JobError,
        now: i64,
    ) -> Result<Option<Job>> {
        tracing::warn!(job_id = %doc_id(doc), "job document is malformed: {}", error.message);
        let fields = vec![
            (STATUS, text(JobStatus::Failed.as_str())),
            (LAST_ERROR, error_value(Some(&error))),
            (LEASE_OWNER, null()),
            (LEASE_EXPIRES_AT, null()),
            (UPDATED_AT, ts(now)),
            (LOGGED_AT, null()),
        ];
        Ok(self.patch(doc, fields).await?.map(|d| parse_lenient(&d)))
    }

    /// Pending documents, oldest `createdAt` first; documents without `createdAt`
    /// take their creation time as their place.
    async fn candidates(&self) -> Result<Vec<Document>> {
        let (ordered, any) = tokio::try_join!(
            self.run(self.query(
                pending(),
                &[(CREATED_AT, Direction::Ascending)],
                Some(CANDIDATES)
            )),
            self.run(self.query(pending(), &[], Some(CANDIDATES))),
        )?;
        let mut docs = ordered;
        docs.extend(any.into_iter().filter(|d| !has_created_at(d)));
        let key = |d: &Document| doc::read(d).map(|j| j.created_at).unwrap_or(i64::MIN);
        docs.sort_by_key(key);
        Ok(docs)
    }

    /// Re-reads and rewrites a job while it keeps changing under us (receipts).
    async fn update_job(
        &self,
        id: &str,
        change: impl Fn(&Job) -> Option<Vec<(&'static str, Value)>>,
    ) -> Result<Option<Job>> {
        for _ in 0..MAX_ROUNDS {
            let Some(doc) = self.get_doc(id).await? else {
                return Ok(None);
            };
            let job = parse_lenient(&doc);
            let Some(fields) = change(&job) else {
                return Ok(None);
            };
            if let Some(doc) = self.patch(&doc, fields).await? {
                return Ok(Some(parse_lenient(&doc)));
            }
        }
        Err(Error::Firestore(format!(
            "job {id:?} kept changing; gave up after {MAX_ROUNDS} tries"
        )))
    }

    /// Writes `fields` on each document still matching, collecting the jobs changed.
    async fn rewrite_all(
        &self,
        docs: Vec<Document>,
        fields: impl Fn(&Job) -> Vec<(&'static str, Value)>,
    ) -> Result<Vec<Job>> {
        let mut out = Vec::new();
        for doc in docs {
            let job = parse_lenient(&doc);
            if let Some(doc) = self.patch(&doc, fields(&job)).await? {
                out.push(parse_lenient(&doc));
            }
        }
        Ok(out)
    }
}

fn cleared_lease() -> [(&'static str, Value); 2] {
    [(LEASE_OWNER, null()), (LEASE_EXPIRES_AT, null())]
}

#[async_trait]
impl JobQueue for FirestoreQueue {
    fn backend(&self) -> &'static str {
        "firestore"
    }

    async fn enqueue(&self, job: NewJob, now: i64) -> Result<Enqueued> {
        let id = job
            .id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut fields = HashMap::from([
            (TO.to_owned(), text(&job.to)),
            (MESSAGE.to_owned(), text(&job.message)),
            (STATUS.to_owned(), text(JobStatus::Pending.as_str())),
            (CREATED_AT.to_owned(), ts(now)),
            (UPDATED_AT.to_owned(), ts(now)),
            (ATTEMPTS.to_owned(), int(0)),
        ]);
        if let Some(send_at) = job.send_at {
            fields.insert(SEND_AT.to_owned(), ts(send_at));
        }
        let mut client = self.db.client().get();
        let created = client
            .create_document(request(pb::CreateDocumentRequest {
                parent: self.db.get_documents_path().clone(),
                collection_id: self.collection.clone(),
                document_id: id.clone(),
                document: Some(Document {
                    fields,
                    ..Default::default()
                }),
                ..Default::default()
            }))
            .await;
        match created {
            Ok(doc) => Ok(Enqueued {
                job: parse_lenient(&doc.into_inner()),
                created: true,
            }),
            Err(status) if status.code() == Code::AlreadyExists => {
                let existing = self
                    .get_doc(&id)
                    .await?
                    .map(|d| parse_lenient(&d))
                    .ok_or_else(|| Error::Firestore(format!("job {id:?} vanished")))?;
                if existing.to == job.to
                    && existing.message == job.message
                    && existing.send_at == job.send_at
                {
                    Ok(Enqueued {
                        job: existing,
                        created: false,
                    })
                } else {
                    Err(Error::AlreadyExists(format!(
                        "id: a different job with id {id:?} already exists"
                    )))
                }
            }
            Err(status) => Err(firestore_error("cannot create the job", status)),
        }
    }

    async fn lease_next(&self, owner: &str, now: i64, lease_until: i64) -> Result<Option<Job>> {
        for _ in 0..MAX_ROUNDS {
            let mut lost_race = false;
            for doc in self.candidates().await? {
                let job = match parse(&doc, &self.default_country_code) {
                    Ok(job) => job,
                    Err(malformed) => {
                        self.fail_malformed(&doc, malformed.error(), now).await?;
                        continue;
                    }
                };
                let due =
                    job.send_at.unwrap_or(0) <= now && job.next_attempt_at.unwrap_or(0) <= now;
                if !due {
                    continue;
                }
                let fields = vec![
                    (STATUS, text(JobStatus::Processing.as_str())),
                    (LEASE_OWNER, text(owner)),
                    (LEASE_EXPIRES_AT, ts(lease_until)),
                    (ATTEMPTS, int(i64::from(job.attempts) + 1)),
                    (UPDATED_AT, ts(now)),
                ];
                match self.patch(&doc, fields).await? {
                    Some(doc) => return Ok(Some(parse_lenient(&doc))),
                    None => lost_race = true,
                }
            }
            if !lost_race {
                return Ok(None);
            }
        }
        Ok(None)
    }

    async fn finish(&self, id: &str, owner: &str, finish: Finish, now: i64) -> Result<Option<Job>> {
        self.update_job(id, |job| {
            if job.status != JobStatus::Processing || job.lease_owner.as_deref() != Some(owner) {
                return None;
            }
            let mut fields: Vec<(&'static str, Value)> = cleared_lease().into();
            fields.push((UPDATED_AT, ts(now)));
            match &finish {
                Finish::Sent {
                    message_id,
                    recipient,
                    recipient_lid,
                    sent_at,
                } => {
                    let status = if job.read_at.is_some() {
                        JobStatus::Read
                    } else if job.delivered_at.is_some() {
                        JobStatus::Delivered
                    } else {
                        JobStatus::Sent
                    };
                    fields.extend([
                        (STATUS, text(status.as_str())),
                        (SENT_AT, ts(*sent_at)),
                        (MESSAGE_ID, text(message_id)),
                        (RECIPIENT, text(recipient)),
                        (
                            RECIPIENT_LID,
                            recipient_lid.as_deref().map_or_else(null, text),
                        ),
                        (NEXT_ATTEMPT_AT, null()),
                        (LAST_ERROR, null()),
                        (LOGGED_AT, null()),
                    ]);
                }
                Finish::Failed(error) => fields.extend([
                    (STATUS, text(JobStatus::Failed.as_str())),
                    (NEXT_ATTEMPT_AT, null()),
                    (LAST_ERROR, error_value(Some(error))),
                    (LOGGED_AT, null()),
                ]),
                Finish::Retry {
                    error,
                    next_attempt_at,
                } => fields.extend([
                    (STATUS, text(JobStatus::Pending.as_str())),
                    (NEXT_ATTEMPT_AT, ts(*next_attempt_at)),
                    (LAST_ERROR, error_value(Some(error))),
                ]),
                Finish::Release {
                    error,
                    next_attempt_at,
                } => fields.extend([
                    (STATUS, text(JobStatus::Pending.as_str())),
                    (NEXT_ATTEMPT_AT, opt_ts(*next_attempt_at)),
                    (ATTEMPTS, int(i64::from(job.attempts.saturating_sub(1)))),
                    (LAST_ERROR, error_value(Some(error))),
                ]),
            }
            Some(fields)
        })
        .await
    }

    async fn sweep_expired(&self, now: i64, max_attempts: u32) -> Result<Vec<Job>> {
        let expired = self
            .run(self.query(
                and(vec![
                    eq(STATUS, text(JobStatus::Processing.as_str())),
                    cmp(
                        LEASE_EXPIRES_AT,
                        field_filter::Operator::LessThanOrEqual,
                        ts(now),
                    ),
                ]),
                &[],
                None,
            ))
            .await?;
        let mut swept = self
            .rewrite_all(expired, |job| {
                let status = if job.attempts >= max_attempts {
                    JobStatus::Failed
                } else {
                    JobStatus::Pending
                };
                let mut fields: Vec<(&'static str, Value)> = cleared_lease().into();
                fields.extend([
                    (STATUS, text(status.as_str())),
                    (UPDATED_AT, ts(now)),
                    (LOGGED_AT, null()),
                    (
                        LAST_ERROR,
                        error_value(Some(&JobError::new(
                            "lease_expired",
                            "the dispatcher holding this job stopped before recording its outcome",
                        ))),
                    ),
                ]);
                fields
            })
            .await?;
        // Documents whose status is not one the queue knows would wait forever: they
        // end failed, naming the field.
        let unknown = self
            .run(self.query(
                cmp(
                    STATUS,
                    field_filter::Operator::NotIn,
                    statuses(&JobStatus::ALL),
                ),
                &[],
                Some(100),
            ))
            .await?;
        for doc in unknown {
            if let Err(malformed) = status(&doc)
                && let Some(job) = self.fail_malformed(&doc, malformed.error(), now).await?
            {
                swept.push(job);
            }
        }
        Ok(swept)
    }

    async fn release_owned(&self, owner: &str, now: i64) -> Result<Vec<Job>> {
        let held = self
            .run(self.query(
                and(vec![
                    eq(STATUS, text(JobStatus::Processing.as_str())),
                    eq(LEASE_OWNER, text(owner)),
                ]),
                &[],
                None,
            ))
            .await?;
        self.rewrite_all(held, |_| {
            let mut fields: Vec<(&'static str, Value)> = cleared_lease().into();
            fields.extend([
                (STATUS, text(JobStatus::Pending.as_str())),
                (UPDATED_AT, ts(now)),
                (
                    LAST_ERROR,
                    error_value(Some(&JobError::new(
                        "restarted",
                        "the dispatcher restarted while sending this job",
                    ))),
                ),
            ]);
            fields
        })
        .await
    }

    async fn retry(&self, id: &str, now: i64) -> Result<Job> {
        for _ in 0..MAX_ROUNDS {
            let doc = self
                .get_doc(id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("no job with id {id:?}")))?;
            let job = parse_lenient(&doc);
            if job.status != JobStatus::Failed {
                return Err(Error::FailedPrecondition(format!(
                    "job {id:?} is {}; only failed jobs can be retried",
                    job.status.as_str()
                )));
            }
            let mut fields: Vec<(&'static str, Value)> = cleared_lease().into();
            fields.extend([
                (STATUS, text(JobStatus::Pending.as_str())),
                (ATTEMPTS, int(0)),
                (NEXT_ATTEMPT_AT, null()),
                (LAST_ERROR, null()),
                (UPDATED_AT, ts(now)),
            ]);
            if let Some(doc) = self.patch(&doc, fields).await? {
                return Ok(parse_lenient(&doc));
            }
        }
        Err(Error::Firestore(format!("job {id:?} kept changing")))
    }

    async fn record_receipt(&self, id: &str, receipt: Receipt, at: i64) -> Result<Option<Job>> {
        let now = abtrack_proto::time::now_ms();
        self.update_job(id, |job| {
            let mut fields = vec![(UPDATED_AT, ts(now))];
            // The overdue flag only goes on a job still `sent`; a receipt clears it.
            if receipt != Receipt::Overdue && job.delivery_overdue {
                fields.push((DELIVERY_OVERDUE, boolean(false)));
            }
            match receipt {
                Receipt::Overdue => {
                    if job.status != JobStatus::Sent || job.delivery_overdue {
                        return None;
                    }
                    fields.push((DELIVERY_OVERDUE, boolean(true)));
                }
                Receipt::Delivered => {
                    fields.push((DELIVERED_AT, ts(job.delivered_at.unwrap_or(at))));
                    if job.status == JobStatus::Sent {
                        fields.push((STATUS, text(JobStatus::Delivered.as_str())));
                    }
                }
                Receipt::Read => {
                    fields.push((READ_AT, ts(job.read_at.unwrap_or(at))));
                    fields.push((DELIVERED_AT, ts(job.delivered_at.unwrap_or(at))));
                    if matches!(job.status, JobStatus::Sent | JobStatus::Delivered) {
                        fields.push((STATUS, text(JobStatus::Read.as_str())));
                    }
                }
            }
            Some(fields)
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<Job>> {
        Ok(self.get_doc(id).await?.map(|d| parse_lenient(&d)))
    }

    async fn list(&self, statuses_wanted: &[JobStatus], limit: usize) -> Result<Vec<Job>> {
        // IN keeps the query an equality on `status`, served by the (status,
        // updatedAt) index.
        let wanted = if statuses_wanted.is_empty() {
            &JobStatus::ALL[..]
        } else {
            statuses_wanted
        };
        let filter = cmp(STATUS, field_filter::Operator::In, statuses(wanted));
        let docs = self
            .run(self.query(
                filter,
                &[(UPDATED_AT, Direction::Descending)],
                Some(limit.min(i32::MAX as usize) as i32),
            ))
            .await?;
        Ok(docs.iter().map(parse_lenient).collect())
    }

    async fn counts(&self) -> Result<Counts> {
        let mut counts = Counts::default();
        for status in JobStatus::ALL {
            let n = self.count(eq(STATUS, text(status.as_str()))).await?;
            counts.add(status, n);
        }
        counts.delivery_overdue = self
            .count(and(vec![
                eq(STATUS, text(JobStatus::Sent.as_str())),
                eq(DELIVERY_OVERDUE, boolean(true)),
            ]))
            .await?;
        Ok(counts)
    }

    async fn next_due_at(&self, now: i64) -> Result<Option<i64>> {
        let mut due = None;
        for field in [SEND_AT, NEXT_ATTEMPT_AT] {
            let docs = self
                .run(self.query(
                    and(vec![
                        pending(),
                        cmp(field, field_filter::Operator::GreaterThan, ts(now)),
                    ]),
                    &[(field, Direction::Ascending)],
                    Some(1),
                ))
                .await?;
            if let Some(job) = docs.first().map(parse_lenient) {
                let at = job
                    .send_at
                    .unwrap_or(0)
                    .max(job.next_attempt_at.unwrap_or(0));
                due = Some(due.map_or(at, |d: i64| d.min(at)));
            }
        }
        Ok(due)
    }

    async fn unlogged(&self, limit: usize) -> Result<Vec<Job>> {
        let done = [
            JobStatus::Sent,
            JobStatus::Delivered,
            JobStatus::Read,
            JobStatus::Failed,
        ];
        let docs = self
            .run(self.query(
                and(vec![
                    cmp(STATUS, field_filter::Operator::In, statuses(&done)),
                    is_null_filter(LOGGED_AT),
                ]),
                &[(UPDATED_AT, Direction::Ascending)],
                Some(limit.min(i32::MAX as usize) as i32),
            ))
            .await?;
        Ok(docs.iter().map(parse_lenient).collect())
    }

    async fn mark_logged(&self, id: &str, updated_at: i64, now: i64) -> Result<()> {
        if let Some(doc) = self.get_doc(id).await?
            && parse_lenient(&doc).updated_at == updated_at
        {
            self.patch(&doc, vec![(LOGGED_AT, ts(now))]).await?;
        }
        Ok(())
    }
}
