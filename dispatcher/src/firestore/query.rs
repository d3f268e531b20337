//! Reading the job collection: the structured queries the queue runs (filters,
//! order, limits) and the two ways it reads them, documents and counts.

use firestore::gcloud_sdk::google::firestore::v1::{
    self as pb, Document, StructuredQuery, Value,
    structured_aggregation_query::{self, Aggregation, aggregation},
    structured_query::{
        self, CollectionSelector, Direction, FieldReference, Filter, Order, composite_filter,
        field_filter, filter::FilterType, unary_filter,
    },
    value::ValueType,
};

use super::doc::{STATUS, text};
use super::{FirestoreQueue, firestore_error, request};
use crate::error::Result;
use crate::job::JobStatus;

pub(super) fn field_ref(path: &str) -> FieldReference {
    FieldReference {
        field_path: path.to_owned(),
    }
}

pub(super) fn cmp(path: &str, op: field_filter::Operator, value: Value) -> Filter {
    Filter {
        filter_type: Some(FilterType::FieldFilter(structured_query::FieldFilter {
            field: Some(field_ref(path)),
            op: op as i32,
            value: Some(value),
        })),
    }
}

pub(super) fn eq(path: &str, value: Value) -> Filter {
    cmp(path, field_filter::Operator::Equal, value)
}

pub(super) fn is_null_filter(path: &str) -> Filter {
    Filter {
        filter_type: Some(FilterType::UnaryFilter(structured_query::UnaryFilter {
            op: unary_filter::Operator::IsNull as i32,
            operand_type: Some(unary_filter::OperandType::Field(field_ref(path))),
        })),
    }
}

pub(super) fn and(filters: Vec<Filter>) -> Filter {
    Filter {
        filter_type: Some(FilterType::CompositeFilter(
            structured_query::CompositeFilter {
                op: composite_filter::Operator::And as i32,
                filters,
            },
        )),
    }
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

impl FirestoreQueue {
    pub(super) fn query(
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

    pub(super) async fn run(&self, query: StructuredQuery) -> Result<Vec<Document>> {
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

    pub(super) async fn count(&self, filter: Filter) -> Result<u64> {
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
}
