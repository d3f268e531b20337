//! Reading the job collection: the queries the queue runs (filters, order, limits),
//! built with the `firestore` crate's query types and run through its fluent select
//! and aggregate calls (with the connection's 10 s request timeout and its retries of
//! a read that failed on the way).

use firestore::gcloud_sdk::google::firestore::v1::{
    self as pb, Document, StructuredQuery, Value, value::ValueType,
};
use firestore::{
    FirestoreQueryCollection, FirestoreQueryCursor, FirestoreQueryFilter,
    FirestoreQueryFilterComposite, FirestoreQueryFilterCompositeOperator,
    FirestoreQueryFilterUnary, FirestoreQueryOrder, FirestoreQueryParams, FirestoreValue,
};

pub(super) use firestore::FirestoreQueryDirection as Direction;
pub(super) use firestore::FirestoreQueryFilterCompare as Compare;
pub(super) type Filter = FirestoreQueryFilter;

use super::FirestoreQueue;
use super::doc::{boolean, text, ts};
use super::mapping::Field;
use crate::error::{Error, Result};
use crate::job::{Counts, JobStatus, Search};

/// `path` compared with `value` by `op`, e.g. `cmp(Compare::LessThan, path, ts(now))`.
pub(super) fn cmp(op: fn(String, FirestoreValue) -> Compare, path: &str, value: Value) -> Filter {
    Filter::Compare(Some(op(path.to_owned(), FirestoreValue::from(value))))
}

pub(super) fn eq(path: &str, value: Value) -> Filter {
    cmp(Compare::Equal, path, value)
}

pub(super) fn is_null_filter(path: &str) -> Filter {
    Filter::Unary(FirestoreQueryFilterUnary::IsNull(path.to_owned()))
}

pub(super) fn and(filters: Vec<Filter>) -> Filter {
    Filter::Composite(FirestoreQueryFilterComposite::new(
        filters,
        FirestoreQueryFilterCompositeOperator::And,
    ))
}

fn array(words: &[&str]) -> Value {
    Value {
        value_type: Some(ValueType::ArrayValue(pb::ArrayValue {
            values: words.iter().map(|w| text(w)).collect(),
        })),
    }
}

fn query_error(what: &str, e: firestore::errors::FirestoreError) -> Error {
    Error::Firestore(format!("{what}: {e}"))
}

/// One query of the job collection.
pub(super) struct Query {
    /// `None`: every document.
    filter: Option<Filter>,
    order: Vec<FirestoreQueryOrder>,
    limit: Option<u32>,
    /// Results start after the document with these values of the ordered fields.
    start_after: Option<Vec<Value>>,
}

impl FirestoreQueue {
    /// The field path of `field` in this collection's documents.
    pub(super) fn path(&self, field: Field) -> &str {
        self.map.path(field)
    }

    /// Documents whose status is one of `list` (an equality when that is one word).
    pub(super) fn status_in(&self, list: &[JobStatus]) -> Filter {
        let words = self.map.words(list);
        match words.as_slice() {
            [word] => eq(self.path(Field::Status), text(word)),
            _ => cmp(Compare::In, self.path(Field::Status), array(&words)),
        }
    }

    /// Documents whose status is none of the words the queue knows.
    pub(super) fn status_unknown(&self) -> Filter {
        let words = self.map.words(&JobStatus::ALL);
        cmp(Compare::NotIn, self.path(Field::Status), array(&words))
    }

    pub(super) fn pending(&self) -> Filter {
        self.status_in(&[JobStatus::Pending])
    }

    pub(super) fn query(
        &self,
        filter: Filter,
        order: &[(&str, Direction)],
        limit: Option<u32>,
    ) -> Query {
        Query {
            filter: Some(filter),
            order: order
                .iter()
                .map(|(path, direction)| FirestoreQueryOrder::from((*path, direction.clone())))
                .collect(),
            limit,
            start_after: None,
        }
    }

    /// The jobs `filter` selects, oldest `createdAt` first, after the document
    /// [`FirestoreQueue::after`] gave `after` for.
    pub(super) fn oldest(&self, filter: Filter, limit: u32, after: Option<Vec<Value>>) -> Query {
        Query {
            start_after: after,
            ..self.query(
                filter,
                &[(self.path(Field::CreatedAt), Direction::Ascending)],
                Some(limit),
            )
        }
    }

    /// The cursor of a document in a query ordered by `field` alone
    /// ([`FirestoreQueue::oldest`], [`FirestoreQueue::newest_changed`]): its value of
    /// `field`, then its name (Firestore's last order, which parts equal values).
    pub(super) fn after(&self, doc: &Document, field: Field) -> Vec<Value> {
        let value = super::doc::value_at(&doc.fields, self.path(field))
            .cloned()
            .unwrap_or_else(super::doc::null);
        let name = Value {
            value_type: Some(ValueType::ReferenceValue(doc.name.clone())),
        };
        vec![value, name]
    }

    /// The pending jobs of `account`, a query only the lanes of accounts other than
    /// the default one run.
    fn of_account(&self, account: &str) -> Query {
        self.oldest(
            and(vec![
                self.pending(),
                eq(self.path(Field::Account), text(account)),
            ]),
            1,
            None,
        )
    }

    /// Jobs held under a lease that ended by `now`.
    pub(super) fn expired_leases(&self, now: i64) -> Query {
        self.query(
            and(vec![
                self.status_in(&[JobStatus::Processing]),
                cmp(
                    Compare::LessThanOrEqual,
                    self.path(Field::LeaseExpiresAt),
                    ts(now),
                ),
            ]),
            &[],
            None,
        )
    }

    /// The pending job whose `field` (send time or retry time) comes first after `now`.
    pub(super) fn next_due(&self, field: Field, now: i64) -> Query {
        let path = self.path(field);
        self.query(
            and(vec![
                self.pending(),
                cmp(Compare::GreaterThan, path, ts(now)),
            ]),
            &[(path, Direction::Ascending)],
            Some(1),
        )
    }

    /// Jobs in `statuses` (and naming `account`), most recently changed first, after
    /// the document [`FirestoreQueue::after`] gave `after` for.
    pub(super) fn newest_changed(
        &self,
        statuses: &[JobStatus],
        account: Option<&str>,
        limit: u32,
        after: Option<Vec<Value>>,
    ) -> Query {
        let filter = match account {
            None => self.status_in(statuses),
            Some(account) => and(vec![
                self.status_in(statuses),
                eq(self.path(Field::Account), text(account)),
            ]),
        };
        Query {
            start_after: after,
            ..self.query(
                filter,
                &[(self.path(Field::UpdatedAt), Direction::Descending)],
                Some(limit),
            )
        }
    }

    /// A search's query: at most one equality (the recipient, else a named account,
    /// else the statuses) and the creation range, newest `createdAt` first, after the
    /// document [`FirestoreQueue::after`] gave `after` for. The search's other
    /// conditions are checked on what it reads.
    pub(super) fn newest_created(
        &self,
        search: &Search,
        limit: u32,
        after: Option<Vec<Value>>,
    ) -> Query {
        let created = self.path(Field::CreatedAt);
        let mut filters = Vec::new();
        if let Some(recipient) = &search.recipient {
            filters.push(eq(self.path(Field::Recipient), text(recipient)));
        } else if let Some(lane) = search.account.as_ref().filter(|l| !l.is_default()) {
            filters.push(eq(self.path(Field::Account), text(&lane.account)));
        } else if !search.statuses.is_empty() {
            filters.push(self.status_in(&search.statuses));
        }
        if let Some(from) = search.created_from {
            filters.push(cmp(Compare::GreaterThanOrEqual, created, ts(from)));
        }
        if let Some(until) = search.created_until {
            filters.push(cmp(Compare::LessThan, created, ts(until)));
        }
        let filter = match filters.len() {
            0 => None,
            1 => filters.pop(),
            _ => Some(and(filters)),
        };
        Query {
            filter,
            order: vec![FirestoreQueryOrder::from((created, Direction::Descending))],
            limit: Some(limit),
            start_after: after,
        }
    }

    /// Documents whose `field` falls in `[from, until)`, and that are `failed` too
    /// when `failed`.
    pub(super) fn time_range(&self, field: Field, failed: bool, from: i64, until: i64) -> Filter {
        let path = self.path(field);
        let mut filters = vec![
            cmp(Compare::GreaterThanOrEqual, path, ts(from)),
            cmp(Compare::LessThan, path, ts(until)),
        ];
        if failed {
            filters.push(self.status_in(&[JobStatus::Failed]));
        }
        and(filters)
    }

    /// The newest failed jobs changed since `from`.
    pub(super) fn newest_failed(&self, from: i64, limit: u32) -> Query {
        let updated = self.path(Field::UpdatedAt);
        self.query(
            and(vec![
                self.status_in(&[JobStatus::Failed]),
                cmp(Compare::GreaterThanOrEqual, updated, ts(from)),
            ]),
            &[(updated, Direction::Descending)],
            Some(limit),
        )
    }

    /// Finished jobs whose outcome the Sheets logger has not taken, oldest first.
    pub(super) fn unlogged_outcomes(&self, limit: u32) -> Query {
        let done = [
            JobStatus::Sent,
            JobStatus::Delivered,
            JobStatus::Read,
            JobStatus::Failed,
        ];
        self.query(
            and(vec![
                self.status_in(&done),
                is_null_filter(self.path(Field::LoggedAt)),
            ]),
            &[(self.path(Field::UpdatedAt), Direction::Ascending)],
            Some(limit),
        )
    }

    /// Runs once each query that needs a composite index. `Error::MissingIndex`
    /// names the first one Firestore cannot serve (it answers `FAILED_PRECONDITION`
    /// to a query without its index); any other failure is left to the queue's own
    /// retries and only logged.
    pub async fn check_indexes(&self, accounts: &crate::account::Accounts) -> Result<()> {
        let now = abtrack_proto::time::now_ms();
        let mut queries = vec![
            ("the jobs to lease", self.oldest(self.pending(), 1, None)),
            ("the expired leases", self.expired_leases(now)),
            ("the next scheduled job", self.next_due(Field::SendAt, now)),
            ("the next retry", self.next_due(Field::NextAttemptAt, now)),
            (
                "the job list",
                self.newest_changed(&JobStatus::ALL, None, 1, None),
            ),
            ("the outcomes to log", self.unlogged_outcomes(1)),
        ];
        // Only the lanes of accounts other than the default one query by account.
        if let Some(other) = accounts.names().get(1) {
            queries.push(("the jobs of one account", self.of_account(other)));
            queries.push((
                "the job list of one account",
                self.newest_changed(&JobStatus::ALL, Some(other), 1, None),
            ));
        }
        for (what, query) in queries {
            let structured = self.structured(Query {
                limit: Some(1),
                ..query
            })?;
            match self.run_raw(structured).await {
                Ok(()) => {}
                Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                    return Err(Error::MissingIndex(format!(
                        "Firestore has no index for {what} in collection {:?}; deploy the ones `dispatcher firestore-indexes` prints (firebase deploy --only firestore:indexes). Firestore said: {}",
                        self.collection,
                        status.message()
                    )));
                }
                Err(status) => {
                    tracing::warn!(code = ?status.code(), error = %status.message(), "cannot check the Firestore indexes; going on");
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The query as the raw calls (`RunQuery`, a listen target) take it.
    fn structured(&self, query: Query) -> Result<StructuredQuery> {
        let mut params =
            FirestoreQueryParams::new(FirestoreQueryCollection::Single(self.collection.clone()));
        params.filter = query.filter;
        if !query.order.is_empty() {
            params = params.with_order_by(query.order);
        }
        if let Some(limit) = query.limit {
            params = params.with_limit(limit);
        }
        StructuredQuery::try_from(params).map_err(|e| query_error("cannot build the query", e))
    }

    /// Runs a query through the raw `RunQuery` call, so its status code is seen.
    async fn run_raw(&self, query: StructuredQuery) -> std::result::Result<(), tonic::Status> {
        let request = super::request(pb::RunQueryRequest {
            parent: self.db.get_documents_path().clone(),
            query_type: Some(pb::run_query_request::QueryType::StructuredQuery(query)),
            ..Default::default()
        });
        let mut stream = self
            .db
            .client()
            .get()
            .run_query(request)
            .await?
            .into_inner();
        while stream.message().await?.is_some() {}
        Ok(())
    }

    /// The documents whose status is `pending`, as a listen target takes the query.
    pub(super) fn pending_query(&self) -> Result<StructuredQuery> {
        self.structured(self.query(self.pending(), &[], None))
    }

    pub(super) async fn run(&self, query: Query) -> Result<Vec<Document>> {
        let Query {
            filter,
            order,
            limit,
            start_after,
        } = query;
        let mut select = self
            .db
            .fluent()
            .select()
            .from(self.collection.as_str())
            .filter(move |_| filter.clone());
        if !order.is_empty() {
            select = select.order(move |_| order.clone());
        }
        if let Some(limit) = limit {
            select = select.limit(limit);
        }
        if let Some(values) = start_after {
            let values = values.into_iter().map(FirestoreValue::from).collect();
            select = select.start_at(FirestoreQueryCursor::AfterValue(values));
        }
        select
            .query()
            .await
            .map_err(|e| query_error("query failed", e))
    }

    /// The jobs in each status: all of them, or those naming `account` (equalities
    /// only, served by the single-field indexes).
    pub(super) async fn count_each(&self, account: Option<&str>) -> Result<Counts> {
        let of_account = |filter: Filter| match account {
            Some(account) => and(vec![filter, eq(self.path(Field::Account), text(account))]),
            None => filter,
        };
        let mut counts = Counts::default();
        for status in JobStatus::ALL {
            let n = self.count(of_account(self.status_in(&[status]))).await?;
            counts.add(status, n);
        }
        counts.delivery_overdue = self
            .count(of_account(and(vec![
                self.status_in(&[JobStatus::Sent]),
                eq(self.path(Field::DeliveryOverdue), boolean(true)),
            ])))
            .await?;
        Ok(counts)
    }

    pub(super) async fn count(&self, filter: Filter) -> Result<u64> {
        let results = self
            .db
            .fluent()
            .select()
            .from(self.collection.as_str())
            .filter(move |_| Some(filter.clone()))
            .aggregate(|a| a.fields([a.field("n").count()]))
            .query()
            .await
            .map_err(|e| query_error("count failed", e))?;
        Ok(results
            .iter()
            .filter_map(|doc| match doc.fields.get("n")?.value_type {
                Some(ValueType::IntegerValue(n)) => Some(n.max(0) as u64),
                _ => None,
            })
            .sum())
    }
}

/// The composite indexes the queries above need, as `firestore.indexes.json` takes
/// them (`firebase deploy --only firestore:indexes`), for `collection` in the shape
/// `mapping` describes. Queries with equalities only are served by Firestore's
/// single-field indexes and need none.
pub fn indexes(collection: &str, mapping: &super::mapping::Mapping) -> serde_json::Value {
    let status = mapping.path(Field::Status);
    let asc = |field| serde_json::json!({ "fieldPath": mapping.path(field), "order": "ASCENDING" });
    let desc =
        |field| serde_json::json!({ "fieldPath": mapping.path(field), "order": "DESCENDING" });
    let plain = |fields: Vec<serde_json::Value>| {
        serde_json::json!({
            "collectionGroup": collection,
            "queryScope": "COLLECTION",
            "fields": fields,
        })
    };
    let index = |fields: Vec<serde_json::Value>| {
        let mut all = vec![serde_json::json!({ "fieldPath": status, "order": "ASCENDING" })];
        all.extend(fields);
        serde_json::json!({
            "collectionGroup": collection,
            "queryScope": "COLLECTION",
            "fields": all,
        })
    };
    serde_json::json!({
        "indexes": [
            // The candidates to lease, oldest first.
            index(vec![asc(Field::CreatedAt)]),
            // Leases that expired.
            index(vec![asc(Field::LeaseExpiresAt)]),
            // When the next scheduled job and the next retry fall due.
            index(vec![asc(Field::SendAt)]),
            index(vec![asc(Field::NextAttemptAt)]),
            // The job list, newest change first.
            index(vec![serde_json::json!({
                "fieldPath": mapping.path(Field::UpdatedAt),
                "order": "DESCENDING"
            })]),
            // Outcomes the Sheets logger has not taken yet, oldest first.
            index(vec![asc(Field::LoggedAt), asc(Field::UpdatedAt)]),
            // The candidates of an account other than the default one.
            index(vec![asc(Field::Account), asc(Field::CreatedAt)]),
            // The job list of an account other than the default one.
            index(vec![
                asc(Field::Account),
                serde_json::json!({
                    "fieldPath": mapping.path(Field::UpdatedAt),
                    "order": "DESCENDING"
                }),
            ]),
            // The stats: the jobs sent in a span that are delivered or read now.
            index(vec![asc(Field::SentAt)]),
            // Searches, newest first: by status, by number, by account.
            index(vec![desc(Field::CreatedAt)]),
            plain(vec![asc(Field::Recipient), desc(Field::CreatedAt)]),
            plain(vec![asc(Field::Account), desc(Field::CreatedAt)]),
        ],
        "fieldOverrides": [],
    })
}

#[cfg(test)]
mod tests {
    use super::super::mapping::Mapping;

    #[test]
    fn the_shipped_indexes_are_the_ones_the_default_queries_need() {
        let shipped: serde_json::Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../firestore.indexes.json"
        )))
        .unwrap();
        assert_eq!(
            shipped,
            super::indexes("notifications", &Mapping::default()),
            "firestore.indexes.json differs from `dispatcher firestore-indexes` with the defaults"
        );
    }
}
