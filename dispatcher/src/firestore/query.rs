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
use super::doc::text;
use super::mapping::Field;
use crate::error::{Error, Result};
use crate::job::JobStatus;

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
    filter: Filter,
    order: Vec<FirestoreQueryOrder>,
    limit: Option<u32>,
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
                .with_filter(self.pending());
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

/// The composite indexes the queries above need, as `firestore.indexes.json` takes
/// them (`firebase deploy --only firestore:indexes`), for `collection` in the shape
/// `mapping` describes. Queries with equalities only are served by Firestore's
/// single-field indexes and need none.
pub fn indexes(collection: &str, mapping: &super::mapping::Mapping) -> serde_json::Value {
    let status = mapping.path(Field::Status);
    let asc = |field| serde_json::json!({ "fieldPath": mapping.path(field), "order": "ASCENDING" });
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
