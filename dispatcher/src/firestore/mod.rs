//! The Firestore job queue: one document per job in a collection. Every change of a
//! job is a write conditional on the document's update time, so any number of
//! dispatchers share one collection and never own the same job; a lost race is seen
//! as a failed precondition and the next candidate is tried.

pub mod connect;
pub mod doc;
pub mod mapping;
pub mod pickup;
mod query;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use firestore::FirestoreDb;
use firestore::gcloud_sdk::google::firestore::v1::{
    self as pb, Document, DocumentMask, Precondition, Value, Write, precondition::ConditionType,
    write::Operation,
};
use tonic::Code;

use crate::account::{Lane, Pick};
use crate::error::{Error, Result};
use crate::job::{Counts, Job, JobError, JobStatus, NewJob, Page, Search};
use crate::lifecycle::{self, Change, Event, Rules, Step};
use crate::queue::{Enqueued, Selection, Store};
use crate::stats::{Metric, Reason, Span, Totals};
use doc::*;
use mapping::{Field, Mapping};
use query::*;

pub use query::indexes;

/// How long one Firestore call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Pending documents read per lease attempt.
const CANDIDATES: u32 = 50;
/// Pages of [`CANDIDATES`] the default account's lane reads past other accounts'
/// pending jobs before it gives up for this round.
const MAX_PAGES: usize = 20;
/// Lease attempts lost to other dispatchers before giving up for this round.
const MAX_ROUNDS: usize = 20;
/// How many of the newest failures the failure reasons are counted among.
const REASONS_READ: u32 = 1000;

/// What becomes of a job's document once the Sheets logger holds its outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Finished {
    /// Kept where it is, marked `loggedAt` (receipts still update it).
    #[default]
    Keep,
    /// Deleted (receipts that arrive later find nothing to update).
    Delete,
    /// Moved to this collection under the same id, marked `loggedAt`; receipts and a
    /// retry from the dashboard find it there, and a retried job moves back.
    Move(String),
}

#[derive(Clone)]
pub struct FirestoreQueue {
    db: FirestoreDb,
    collection: String,
    /// Checks each document's recipient as the gateway will normalise it.
    default_country_code: String,
    /// Where the job fields are in the documents, and the status words.
    map: Arc<Mapping>,
    finished: Finished,
}

fn status_of(code: Code) -> bool {
    matches!(
        code,
        Code::FailedPrecondition | Code::NotFound | Code::Aborted
    )
}

/// The precondition of every write: the document is as it was read.
fn unchanged(doc: &Document) -> Precondition {
    Precondition {
        condition_type: Some(match doc.update_time {
            Some(t) => ConditionType::UpdateTime(t),
            None => ConditionType::Exists(true),
        }),
    }
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

impl FirestoreQueue {
    pub fn new(db: FirestoreDb, collection: impl Into<String>) -> Self {
        Self {
            db,
            collection: collection.into(),
            default_country_code: abtrack_proto::phone::DEFAULT_COUNTRY_CODE.into(),
            map: Arc::default(),
            finished: Finished::Keep,
        }
    }

    /// Sets what becomes of a document once its outcome is logged.
    pub fn with_finished(mut self, finished: Finished) -> Self {
        self.finished = finished;
        self
    }

    /// Reads and writes the documents in the shape `mapping` describes.
    pub fn with_mapping(mut self, mapping: impl Into<Arc<Mapping>>) -> Self {
        self.map = mapping.into();
        self
    }

    pub fn mapping(&self) -> &Mapping {
        &self.map
    }

    /// The account a job document names, if any.
    pub fn account_of<'a>(&self, doc: &'a Document) -> Option<&'a str> {
        self.map.account(doc)
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
        self.name_in(&self.collection, id)
    }

    fn name_in(&self, collection: &str, id: &str) -> String {
        format!("{}/{collection}/{id}", self.db.get_documents_path())
    }

    async fn get_doc(&self, id: &str) -> Result<Option<Document>> {
        self.get_named(self.name(id)).await
    }

    async fn get_named(&self, name: String) -> Result<Option<Document>> {
        let mut client = self.db.client().get();
        match client
            .get_document(request(pb::GetDocumentRequest {
                name,
                ..Default::default()
            }))
            .await
        {
            Ok(doc) => Ok(Some(doc.into_inner())),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(firestore_error("read failed", status)),
        }
    }

    /// The job's document: in the queue's collection, else (with `Finished::Move`)
    /// among the moved ones; `true` when it was found there.
    async fn find(&self, id: &str) -> Result<Option<(Document, bool)>> {
        if let Some(doc) = self.get_doc(id).await? {
            return Ok(Some((doc, false)));
        }
        Ok(self.moved_doc(id).await?.map(|doc| (doc, true)))
    }

    /// The job's document among the moved ones (`Finished::Move`); `None` otherwise.
    async fn moved_doc(&self, id: &str) -> Result<Option<Document>> {
        match &self.finished {
            Finished::Move(to) => self.get_named(self.name_in(to, id)).await,
            Finished::Keep | Finished::Delete => Ok(None),
        }
    }

    /// Applies `writes` in one commit; `None` when a precondition failed (another
    /// writer came first, or a document is gone or already there).
    async fn commit(&self, writes: Vec<Write>) -> Result<Option<pb::CommitResponse>> {
        let mut client = self.db.client().get();
        let response = client
            .commit(request(pb::CommitRequest {
                database: self.db.get_database_path().clone(),
                writes,
                ..Default::default()
            }))
            .await;
        match response {
            Ok(response) => Ok(Some(response.into_inner())),
            Err(status) if status_of(status.code()) => Ok(None),
            Err(status) => Err(firestore_error("write failed", status)),
        }
    }

    /// Deletes `doc` if it is unchanged since it was read.
    fn delete_write(doc: &Document) -> Write {
        Write {
            operation: Some(Operation::Delete(doc.name.clone())),
            update_mask: None,
            update_transforms: vec![],
            current_document: Some(unchanged(doc)),
        }
    }

    /// Writes `fields` as the whole document `name`, which must not exist yet.
    fn create_write(name: String, fields: HashMap<String, Value>) -> Write {
        Write {
            operation: Some(Operation::Update(Document {
                name,
                fields,
                ..Default::default()
            })),
            update_mask: None,
            update_transforms: vec![],
            current_document: Some(Precondition {
                condition_type: Some(ConditionType::Exists(false)),
            }),
        }
    }

    /// Moves `doc` to `name` with `fields` set on it, in one commit that fails when
    /// `doc` changed since it was read; `false` then.
    async fn move_doc(
        &self,
        doc: &Document,
        name: String,
        fields: Vec<(&str, Value)>,
    ) -> Result<bool> {
        let mut all = doc.fields.clone();
        for (path, value) in fields {
            set_at(&mut all, path, value);
        }
        let writes = vec![Self::create_write(name, all), Self::delete_write(doc)];
        Ok(self.commit(writes).await?.is_some())
    }

    /// Writes `fields` onto `doc` only if it is unchanged since it was read; `None`
    /// when another writer changed it first (or it is gone).
    async fn patch(&self, doc: &Document, fields: Vec<(&str, Value)>) -> Result<Option<Document>> {
        let mask = DocumentMask {
            field_paths: fields.iter().map(|(k, _)| (*k).to_owned()).collect(),
        };
        let mut nested = HashMap::new();
        for (path, value) in &fields {
            set_at(&mut nested, path, value.clone());
        }
        let write = Write {
            operation: Some(Operation::Update(Document {
                name: doc.name.clone(),
                fields: nested,
                create_time: None,
                update_time: None,
            })),
            update_mask: Some(mask),
            update_transforms: vec![],
            current_document: Some(unchanged(doc)),
        };
        let Some(response) = self.commit(vec![write]).await? else {
            return Ok(None);
        };
        let mut next = doc.clone();
        for (path, value) in fields {
            set_at(&mut next.fields, path, value);
        }
        next.update_time = response
            .write_results
            .first()
            .and_then(|r| r.update_time)
            .or(response.commit_time);
        Ok(Some(next))
    }

    /// Asks the lifecycle what `event` does to the job `doc` holds and writes the
    /// answer if the document is unchanged since it was read; `Applied::Conflict`
    /// when another writer came first.
    async fn apply(
        &self,
        doc: &Document,
        job: &Job,
        event: &Event,
        now: i64,
        rules: &Rules,
    ) -> Result<Applied> {
        let Some(change) = lifecycle::decide(job, event, now, rules)? else {
            return Ok(Applied::Nothing);
        };
        self.write_change(doc, job, change).await
    }

    /// The fields a decided change writes onto the document it was decided from: the
    /// job's changed fields, and its step added to the history. A document the app
    /// wrote without them also gets, once, what a search needs: its creation time
    /// (the document's own, the queue order already) and its recipient, normalised.
    fn change_fields(&self, doc: &Document, job: &Job, change: &Change) -> Vec<(&str, Value)> {
        let mut fields = self.map.changed_fields(job, &change.job, change.log);
        if let Some(step) = &change.step {
            fields.push((self.path(Field::History), self.map.history_with(doc, step)));
        }
        if self.map.is_unset(doc, Field::CreatedAt) {
            fields.push((self.path(Field::CreatedAt), ts(change.job.created_at)));
        }
        if change.job.recipient.is_none()
            && self.map.is_unset(doc, Field::Recipient)
            && let Ok(jid) =
                abtrack_proto::normalize_recipient(&change.job.to, &self.default_country_code)
        {
            fields.push((self.path(Field::Recipient), text(&jid.to_string())));
        }
        fields
    }

    /// Writes a decided change onto the document it was decided from.
    async fn write_change(&self, doc: &Document, job: &Job, change: Change) -> Result<Applied> {
        let fields = self.change_fields(doc, job, &change);
        Ok(match self.patch(doc, fields).await? {
            Some(_) => Applied::Written(Box::new(change)),
            None => Applied::Conflict,
        })
    }

    /// Ends a document that cannot be a job `failed`, naming the field.
    async fn fail_malformed(
        &self,
        doc: &Document,
        malformed: Malformed,
        now: i64,
        rules: &Rules,
    ) -> Result<Applied> {
        let error = malformed.error();
        tracing::warn!(job_id = %doc_id(doc), "job document is malformed: {}", error.message);
        let event = Event::Malformed(error);
        self.apply(doc, &self.map.parse_lenient(doc), &event, now, rules)
            .await
    }

    /// Applies `event` to a document moved out of the queue after its outcome was
    /// logged: in place while the job stays finished (a receipt), or back into the
    /// queue's collection, in the same commit that removes it, when the job waits
    /// again (a retry).
    async fn apply_moved(
        &self,
        doc: &Document,
        event: &Event,
        now: i64,
        rules: &Rules,
    ) -> Result<Applied> {
        let job = self.map.parse_lenient(doc);
        let Some(change) = lifecycle::decide(&job, event, now, rules)? else {
            return Ok(Applied::Nothing);
        };
        if change.job.status.is_terminal() {
            return self.write_change(doc, &job, change).await;
        }
        let mut fields = self.change_fields(doc, &job, &change);
        fields.push((self.path(Field::LoggedAt), null()));
        Ok(if self.move_doc(doc, self.name(&job.id), fields).await? {
            Applied::Written(Box::new(change))
        } else {
            Applied::Conflict
        })
    }

    /// `lane`'s pending documents, oldest `createdAt` first; documents without
    /// `createdAt` take their creation time as their place.
    ///
    /// Another account's lane queries its account's documents. The default lane
    /// reads every pending document (Firestore cannot query for a field that is
    /// absent, and jobs naming no account are the default lane's) and leaves out the
    /// other lanes' ones, paging on past them, up to [`MAX_PAGES`] pages, when a page
    /// held none of its own: another account's backlog does not hide its jobs.
    async fn candidates(&self, lane: &Lane) -> Result<Vec<Document>> {
        let filter = if lane.is_default() {
            self.pending()
        } else {
            and(vec![
                self.pending(),
                eq(self.path(Field::Account), text(&lane.account)),
            ])
        };
        let mine = |d: &Document| lane.pick(self.map.account(d)) != Pick::Skip;
        let (mut page, any) = tokio::try_join!(
            self.run(self.oldest(filter.clone(), CANDIDATES, None)),
            self.run(self.query(filter.clone(), &[], Some(CANDIDATES))),
        )?;
        let mut docs = Vec::new();
        for pages in 1.. {
            let full = page.len() == CANDIDATES as usize;
            let after = page.last().map(|d| self.after(d, Field::CreatedAt));
            docs.extend(page.into_iter().filter(|d| mine(d)));
            if !docs.is_empty() || !full || pages == MAX_PAGES {
                break;
            }
            page = self
                .run(self.oldest(filter.clone(), CANDIDATES, after))
                .await?;
        }
        docs.extend(
            any.into_iter()
                .filter(|d| self.map.is_unset(d, Field::CreatedAt) && mine(d)),
        );
        let key = |d: &Document| self.map.read(d).map(|j| j.created_at).unwrap_or(i64::MIN);
        docs.sort_by_key(key);
        Ok(docs)
    }

    /// Documents whose status is not one the queue knows would wait forever: they
    /// end failed, naming the field.
    async fn fail_unknown_statuses(&self, now: i64, rules: &Rules) -> Result<Vec<Change>> {
        let unknown = self
            .run(self.query(self.status_unknown(), &[], Some(100)))
            .await?;
        let mut changes = Vec::new();
        for doc in unknown {
            if let Err(malformed) = self.map.status_of(&doc)
                && let Applied::Written(change) =
                    self.fail_malformed(&doc, malformed, now, rules).await?
            {
                changes.push(*change);
            }
        }
        Ok(changes)
    }
}

/// What became of a decided change.
enum Applied {
    Written(Box<Change>),
    /// The lifecycle decided nothing applies.
    Nothing,
    /// Another writer changed the document first.
    Conflict,
}

#[async_trait]
impl Store for FirestoreQueue {
    fn backend(&self) -> &'static str {
        "firestore"
    }

    async fn enqueue(&self, job: NewJob, now: i64) -> Result<Enqueued> {
        let id = job
            .id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        // A repeated request for a job already moved out after its outcome is that job.
        // (Without the move the create below finds it; the gateway's send log keeps
        // even a job id repeated after a delete from being sent twice.)
        if let Some(doc) = self.moved_doc(&id).await? {
            let existing = self.map.parse_lenient(&doc);
            lifecycle::same_job(&existing, &job)?;
            return Ok(Enqueued {
                job: existing,
                created: false,
            });
        }
        let fields = self.map.new_fields(&job, now);
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
                job: self.map.parse_lenient(&doc.into_inner()),
                created: true,
            }),
            Err(status) if status.code() == Code::AlreadyExists => {
                let existing = self
                    .get_doc(&id)
                    .await?
                    .map(|d| self.map.parse_lenient(&d))
                    .ok_or_else(|| Error::Firestore(format!("job {id:?} vanished")))?;
                lifecycle::same_job(&existing, &job)?;
                Ok(Enqueued {
                    job: existing,
                    created: false,
                })
            }
            Err(status) => Err(firestore_error("cannot create the job", status)),
        }
    }

    async fn lease_next(
        &self,
        lease: &Event,
        lane: &Lane,
        now: i64,
        rules: &Rules,
    ) -> Result<Vec<Change>> {
        let mut changes = Vec::new();
        for _ in 0..MAX_ROUNDS {
            let mut lost_race = false;
            for doc in self.candidates(lane).await? {
                let applied = match self.map.parse(&doc, &self.default_country_code) {
                    Err(malformed) => self.fail_malformed(&doc, malformed, now, rules).await?,
                    Ok(job) => match lane.pick(job.account.as_deref()) {
                        Pick::Take => self.apply(&doc, &job, lease, now, rules).await?,
                        Pick::Skip => continue,
                        Pick::Unknown(error) => {
                            let event = Event::Malformed(error);
                            self.apply(&doc, &job, &event, now, rules).await?
                        }
                    },
                };
                match applied {
                    Applied::Written(change) => {
                        let leased = change.job.status == JobStatus::Processing;
                        changes.push(*change);
                        if leased {
                            return Ok(changes);
                        }
                    }
                    Applied::Conflict => lost_race = true,
                    Applied::Nothing => {}
                }
            }
            if !lost_race {
                break;
            }
        }
        Ok(changes)
    }

    async fn update(
        &self,
        id: &str,
        event: &Event,
        now: i64,
        rules: &Rules,
    ) -> Result<Option<Change>> {
        for _ in 0..MAX_ROUNDS {
            let Some((doc, moved)) = self.find(id).await? else {
                return Ok(None);
            };
            let applied = if moved {
                self.apply_moved(&doc, event, now, rules).await?
            } else {
                self.apply(&doc, &self.map.parse_lenient(&doc), event, now, rules)
                    .await?
            };
            match applied {
                Applied::Written(change) => return Ok(Some(*change)),
                Applied::Nothing => return Ok(None),
                Applied::Conflict => {}
            }
        }
        Err(Error::Firestore(format!(
            "job {id:?} kept changing; gave up after {MAX_ROUNDS} tries"
        )))
    }

    async fn update_all(
        &self,
        selection: &Selection,
        event: &Event,
        now: i64,
        rules: &Rules,
    ) -> Result<Vec<Change>> {
        let query = match selection {
            Selection::ExpiredLeases { now } => self.expired_leases(*now),
            Selection::HeldBy { owner } => self.query(
                and(vec![
                    self.status_in(&[JobStatus::Processing]),
                    eq(self.path(Field::LeaseOwner), text(owner)),
                ]),
                &[],
                None,
            ),
        };
        let mut changes = Vec::new();
        for doc in self.run(query).await? {
            // A document another writer changed meanwhile is left to the next round.
            if let Applied::Written(change) = self
                .apply(&doc, &self.map.parse_lenient(&doc), event, now, rules)
                .await?
            {
                changes.push(*change);
            }
        }
        if let Selection::ExpiredLeases { .. } = selection {
            changes.extend(self.fail_unknown_statuses(now, rules).await?);
        }
        Ok(changes)
    }

    async fn get(&self, id: &str) -> Result<Option<Job>> {
        Ok(self
            .find(id)
            .await?
            .map(|(d, _)| self.map.parse_lenient(&d)))
    }

    async fn steps(&self, id: &str) -> Result<Vec<Step>> {
        Ok(self
            .find(id)
            .await?
            .map(|(d, _)| self.map.steps(&d))
            .unwrap_or_default())
    }

    /// The default account's lane reads every job and keeps those naming no other
    /// account (Firestore cannot query for an absent field), paging on, up to
    /// [`MAX_PAGES`] pages, until it has `limit`.
    async fn list(
        &self,
        statuses_wanted: &[JobStatus],
        lane: Option<&Lane>,
        limit: usize,
    ) -> Result<Vec<Job>> {
        // IN keeps the query an equality on `status`, served by the (status,
        // updatedAt) index.
        let wanted = if statuses_wanted.is_empty() {
            &JobStatus::ALL[..]
        } else {
            statuses_wanted
        };
        let limit = limit.min(u32::MAX as usize) as u32;
        let Some(lane) = lane else {
            let docs = self
                .run(self.newest_changed(wanted, None, limit, None))
                .await?;
            return Ok(docs.iter().map(|d| self.map.parse_lenient(d)).collect());
        };
        if !lane.is_default() {
            let docs = self
                .run(self.newest_changed(wanted, Some(&lane.account), limit, None))
                .await?;
            return Ok(docs.iter().map(|d| self.map.parse_lenient(d)).collect());
        }
        let mut jobs = Vec::new();
        let mut after = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .run(self.newest_changed(wanted, None, limit, after))
                .await?;
            let full = page.len() == limit as usize;
            after = page.last().map(|d| self.after(d, Field::UpdatedAt));
            jobs.extend(
                page.iter()
                    .map(|d| self.map.parse_lenient(d))
                    .filter(|j| lane.lists(j.account.as_deref())),
            );
            if jobs.len() >= limit as usize || !full {
                break;
            }
        }
        jobs.truncate(limit as usize);
        Ok(jobs)
    }

    /// Reads pages of the query [`FirestoreQueue::newest_created`] builds (one
    /// condition of the search, the creation range), keeps the jobs that meet the
    /// rest, and stops at `limit` jobs or after [`MAX_PAGES`] pages, answering where
    /// the next page starts. A search by id reads that one document.
    async fn search(&self, search: &Search, after: Option<&str>, limit: usize) -> Result<Page> {
        if let Some(id) = &search.id {
            let job = match after {
                Some(_) => None,
                None => self
                    .find(id)
                    .await?
                    .map(|(d, _)| self.map.parse_lenient(&d)),
            };
            return Ok(Page {
                jobs: job.filter(|j| search.matches(j)).into_iter().collect(),
                next: None,
            });
        }
        let mut cursor = match after {
            None => None,
            Some(id) => match self.get_doc(id).await? {
                Some(doc) => Some(self.after(&doc, Field::CreatedAt)),
                None => return Err(Page::cursor_gone(id)),
            },
        };
        let page_size = limit.clamp(1, u32::MAX as usize) as u32;
        let mut jobs = Vec::new();
        let mut last_read = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .run(self.newest_created(search, page_size, cursor.take()))
                .await?;
            let full = page.len() == page_size as usize;
            for doc in &page {
                let job = self.map.parse_lenient(doc);
                cursor = Some(self.after(doc, Field::CreatedAt));
                last_read = Some(job.id.clone());
                if search.matches(&job) {
                    jobs.push(job);
                    if jobs.len() == limit {
                        let next = jobs.last().map(|j| j.id.clone());
                        return Ok(Page { jobs, next });
                    }
                }
            }
            if !full {
                return Ok(Page { jobs, next: None });
            }
        }
        // Read as far as one answer may: the next page starts after the last one read.
        Ok(Page {
            jobs,
            next: last_read,
        })
    }

    /// One count query per part of the span, up to 30 at a time.
    async fn histogram(&self, metric: Metric, span: Span) -> Result<Vec<u64>> {
        let (field, failed) = match metric {
            Metric::Sent => (Field::SentAt, false),
            Metric::Delivered => (Field::DeliveredAt, false),
            Metric::Read => (Field::ReadAt, false),
            Metric::Failed => (Field::UpdatedAt, true),
        };
        let mut parts = tokio::task::JoinSet::new();
        for i in 0..span.count {
            let queue = self.clone();
            let from = span.from + span.width * i as i64;
            parts.spawn(async move {
                let filter = queue.time_range(field, failed, from, from + span.width);
                (i, queue.count(filter).await)
            });
        }
        let mut counts = vec![0; span.count];
        while let Some(part) = parts.join_next().await {
            let (i, n) = part.map_err(|e| Error::Internal(format!("a count failed: {e}")))?;
            counts[i] = n?;
        }
        Ok(counts)
    }

    async fn sent_between(&self, from: i64, until: i64) -> Result<Totals> {
        let sent = |statuses: &[JobStatus]| {
            let mut filter = vec![
                cmp(
                    Compare::GreaterThanOrEqual,
                    self.path(Field::SentAt),
                    ts(from),
                ),
                cmp(Compare::LessThan, self.path(Field::SentAt), ts(until)),
            ];
            if !statuses.is_empty() {
                filter.push(self.status_in(statuses));
            }
            self.count(and(filter))
        };
        Ok(Totals {
            sent: sent(&[]).await?,
            delivered: sent(&[JobStatus::Delivered, JobStatus::Read]).await?,
            read: sent(&[JobStatus::Read]).await?,
            failed: 0,
        })
    }

    /// Counted among the newest [`REASONS_READ`] failures since `from` (Firestore
    /// cannot group).
    async fn failure_reasons(&self, from: i64, limit: usize) -> Result<Vec<Reason>> {
        let docs = self.run(self.newest_failed(from, REASONS_READ)).await?;
        let mut reasons: Vec<Reason> = Vec::new();
        for job in docs.iter().map(|d| self.map.parse_lenient(d)) {
            let error = job.last_error.unwrap_or_else(|| JobError::new("", ""));
            match reasons.iter_mut().find(|r| r.code == error.code) {
                Some(reason) => reason.count += 1,
                // Newest first: the first of a code is its newest.
                None => reasons.push(Reason {
                    code: error.code,
                    count: 1,
                    message: error.message,
                }),
            }
        }
        reasons.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.code.cmp(&b.code)));
        reasons.truncate(limit);
        Ok(reasons)
    }

    async fn counts(&self) -> Result<Counts> {
        self.count_each(None).await
    }

    async fn account_counts(&self, account: &str) -> Result<Counts> {
        self.count_each(Some(account)).await
    }

    async fn next_due_at(&self, now: i64) -> Result<Option<i64>> {
        let mut due = None;
        for field in [Field::SendAt, Field::NextAttemptAt] {
            let docs = self.run(self.next_due(field, now)).await?;
            if let Some(job) = docs.first().map(|d| self.map.parse_lenient(d)) {
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
        let docs = self
            .run(self.unlogged_outcomes(limit.min(u32::MAX as usize) as u32))
            .await?;
        Ok(docs.iter().map(|d| self.map.parse_lenient(d)).collect())
    }

    async fn mark_logged(&self, outcomes: Vec<(String, i64)>, now: i64) -> Result<()> {
        for (id, updated_at) in outcomes {
            // Every dispatcher on the collection records the outcomes it finds: one
            // marked (or moved, or deleted) by another since is left as it is.
            let Some(doc) = self.get_doc(&id).await? else {
                continue;
            };
            if self.map.parse_lenient(&doc).updated_at != updated_at
                || !self.map.is_unset(&doc, Field::LoggedAt)
            {
                continue;
            }
            let logged = vec![(self.path(Field::LoggedAt), ts(now))];
            match &self.finished {
                Finished::Keep => {
                    self.patch(&doc, logged).await?;
                }
                Finished::Delete => {
                    self.commit(vec![Self::delete_write(&doc)]).await?;
                }
                Finished::Move(to) => {
                    self.move_doc(&doc, self.name_in(to, &id), logged).await?;
                }
            }
        }
        Ok(())
    }
}
