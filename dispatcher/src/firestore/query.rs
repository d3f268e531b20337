//! Reading the job collection: the queries the queue runs (filters, order, limits),
//! built with the `firestore` crate's query types and run through its fluent select
//! and aggregate calls (with the connection's 10 s request timeout and its retries of
//! a read that failed on the way).

use firestore::gcloud_sdk::google::firestore::v1::{
    self as pb, Document, StructuredQuery, Value, value::ValueType,
};
use firestore::{
    FirestoreQueryCollection, FirestoreQueryFilter, FirestoreQueryFilterComposite,
    FirestoreQueryFilterCompositeOperator, FirestoreQueryFilterUnary, FirestoreQueryOrder,
    FirestoreQueryParams, FirestoreValue,
};

pub(super) use firestore::FirestoreQueryDirection as Direction;
pub(super) use firestore::FirestoreQueryFilterCompare as Compare;
pub(super) type Filter = FirestoreQueryFilter;

use super::FirestoreQueue;
use super::doc::{STATUS, text};
use crate::error::{Error, Result};
use crate::job::JobStatus;

/// `path` compared with `value` by `op`, e.g. `cmp(Compare::In, STATUS, statuses(…))`.
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

pub(super) fn statuses(list: &[JobStatus]) -> Value {
    Value {
        value_type: Some(ValueType::ArrayValue(pb::ArrayValue {
            values: list.iter().map(|s| text(s.as_str())).collect(),
        })),
    }
}

pub(super) fn pending() -> Filter {
    eq(STATUS, text(JobStatus::Pending.as_str()))
}

fn query_error(what: &str, e: firestore::errors::FirestoreError) -> Error {
    Error::Firestore(format!("{what}: {e}"))
}

/// One query of the job collection.
pub(super) struct Query {
    filter: Filter,
    order: Vec<FirestoreQueryOrder>,
    limit: Option<u32>,
}

impl FirestoreQueue {
    pub(super) fn query(
        &self,
        filter: Filter,
        order: &[(&str, Direction)],
        limit: Option<u32>,
    ) -> Query {
        Query {
            filter,
            order: order
                .iter()
                .map(|(path, direction)| FirestoreQueryOrder::from((*path, direction.clone())))
                .collect(),
            limit,
        }
    }

    /// The documents whose status is `pending`, as a listen target takes the query.
    pub(super) fn pending_query(&self) -> Result<StructuredQuery> {
        let params =
            FirestoreQueryParams::new(FirestoreQueryCollection::Single(self.collection.clone()))
                .with_filter(pending());
        StructuredQuery::try_from(params).map_err(|e| query_error("cannot build the query", e))
    }

    pub(super) async fn run(&self, query: Query) -> Result<Vec<Document>> {
        let Query {
            filter,
            order,
            limit,
        } = query;
        let mut select = self
            .db
            .fluent()
            .select()
            .from(self.collection.as_str())
            .filter(move |_| Some(filter.clone()));
        if !order.is_empty() {
            select = select.order(move |_| order.clone());
        }
        if let Some(limit) = limit {
            select = select.limit(limit);
        }
        select
            .query()
            .await
            .map_err(|e| query_error("query failed", e))
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
