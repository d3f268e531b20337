//! Composite indexes, enforced as Cloud Firestore does when asked to: a query that
//! orders or ranges on one field and filters on another (or orders on several)
//! needs a composite index, and without one it fails with `FAILED_PRECONDITION`
//! "The query requires an index". Queries with equalities only, or a single field
//! ordered or ranged alone, are served by the automatic single-field indexes. Google's
//! emulator does not enforce indexes; this one does once [`Indexes`] are set, so a
//! test can show what a service does against a database missing one.

use tonic::Status;

use crate::pb::google::firestore::v1::structured_query::{
    Direction, filter::FilterType, unary_filter,
};
use crate::pb::google::firestore::v1::{StructuredQuery, structured_query};
use crate::query::INEQUALITIES;

/// One composite index: a collection group and its fields, each ascending or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompositeIndex {
    pub collection_group: String,
    /// Field paths with `true` for descending.
    pub fields: Vec<(String, bool)>,
}

/// The composite indexes a database has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Indexes(pub Vec<CompositeIndex>);

impl Indexes {
    /// Reads the `indexes` of a `firestore.indexes.json` file.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let json: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for index in json["indexes"].as_array().ok_or("no indexes array")? {
            let group = index["collectionGroup"]
                .as_str()
                .ok_or("an index without collectionGroup")?;
            let mut fields = Vec::new();
            for f in index["fields"]
                .as_array()
                .ok_or("an index without fields")?
            {
                let path = f["fieldPath"].as_str().ok_or("a field without fieldPath")?;
                fields.push((path.to_owned(), f["order"] == "DESCENDING"));
            }
            out.push(CompositeIndex {
                collection_group: group.to_owned(),
                fields,
            });
        }
        Ok(Self(out))
    }

    /// `Ok` when the query can be served; the error Cloud Firestore gives otherwise.
    pub fn check(&self, query: &StructuredQuery) -> Result<(), Status> {
        let Some(needed) = needed(query) else {
            return Ok(());
        };
        let served = self.0.iter().any(|index| {
            query
                .from
                .iter()
                .any(|c| c.collection_id == index.collection_group)
                && needed.served_by(&index.fields)
        });
        if served {
            return Ok(());
        }
        let collection = query
            .from
            .first()
            .map(|c| c.collection_id.as_str())
            .unwrap_or_default();
        Err(Status::failed_precondition(format!(
            "The query requires an index. You can create it here: https://console.firebase.google.com/project/-/firestore/indexes?create_composite=collection:{collection},fields:{}",
            needed.describe()
        )))
    }
}

/// What an index must hold for a query: its equality fields in any order, then its
/// ordered fields in order.
struct Needed {
    equalities: Vec<String>,
    ordered: Vec<(String, bool)>,
}

impl Needed {
    fn served_by(&self, fields: &[(String, bool)]) -> bool {
        let n = self.equalities.len();
        fields.len() == n + self.ordered.len()
            && fields[..n]
                .iter()
                .all(|(path, descending)| !descending && self.equalities.contains(path))
            && fields[n..] == self.ordered[..]
    }

    fn describe(&self) -> String {
        self.equalities
            .iter()
            .map(|p| format!("{p} ASC"))
            .chain(
                self.ordered
                    .iter()
                    .map(|(p, d)| format!("{p} {}", if *d { "DESC" } else { "ASC" })),
            )
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The composite index a query needs, or `None` when single-field indexes serve it.
fn needed(query: &StructuredQuery) -> Option<Needed> {
    let mut equalities = Vec::new();
    let mut ranges = Vec::new();
    if let Some(filter) = &query.r#where {
        collect(filter, &mut equalities, &mut ranges);
    }
    let mut ordered: Vec<(String, bool)> = query
        .order_by
        .iter()
        .filter_map(|o| {
            let path = o.field.as_ref()?.field_path.clone();
            (path != "__name__").then_some((path, o.direction == Direction::Descending as i32))
        })
        .collect();
    for path in ranges {
        if !ordered.iter().any(|(p, _)| *p == path) {
            ordered.push((path, false));
        }
    }
    equalities.retain(|e| !ordered.iter().any(|(p, _)| p == e));
    equalities.sort();
    equalities.dedup();
    let single_field = equalities.is_empty() && ordered.len() <= 1;
    (!ordered.is_empty() && !single_field).then_some(Needed {
        equalities,
        ordered,
    })
}

fn collect(filter: &structured_query::Filter, eq: &mut Vec<String>, range: &mut Vec<String>) {
    match &filter.filter_type {
        Some(FilterType::CompositeFilter(c)) => {
            for f in &c.filters {
                collect(f, eq, range);
            }
        }
        Some(FilterType::FieldFilter(f)) => {
            let path = f
                .field
                .as_ref()
                .map(|r| r.field_path.clone())
                .unwrap_or_default();
            if INEQUALITIES.iter().any(|op| *op as i32 == f.op) {
                range.push(path);
            } else {
                eq.push(path);
            }
        }
        Some(FilterType::UnaryFilter(u)) => {
            if let Some(unary_filter::OperandType::Field(f)) = &u.operand_type {
                match unary_filter::Operator::try_from(u.op) {
                    Ok(unary_filter::Operator::IsNull | unary_filter::Operator::IsNan) => {
                        eq.push(f.field_path.clone());
                    }
                    _ => range.push(f.field_path.clone()),
                }
            }
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::google::firestore::v1::structured_query::{
        CollectionSelector, FieldFilter, FieldReference, Filter, Order, field_filter,
    };

    fn field_filter(path: &str, op: field_filter::Operator) -> Filter {
        Filter {
            filter_type: Some(FilterType::FieldFilter(FieldFilter {
                field: Some(FieldReference {
                    field_path: path.into(),
                }),
                op: op as i32,
                value: None,
            })),
        }
    }

    fn query(filters: Vec<Filter>, order: &[(&str, bool)]) -> StructuredQuery {
        use crate::pb::google::firestore::v1::structured_query::{
            CompositeFilter, composite_filter,
        };
        StructuredQuery {
            from: vec![CollectionSelector {
                collection_id: "jobs".into(),
                all_descendants: false,
            }],
            r#where: Some(Filter {
                filter_type: Some(FilterType::CompositeFilter(CompositeFilter {
                    op: composite_filter::Operator::And as i32,
                    filters,
                })),
            }),
            order_by: order
                .iter()
                .map(|(p, d)| Order {
                    field: Some(FieldReference {
                        field_path: (*p).into(),
                    }),
                    direction: if *d {
                        Direction::Descending
                    } else {
                        Direction::Ascending
                    } as i32,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn an_equality_with_an_order_on_another_field_needs_its_index() {
        use field_filter::Operator::*;
        let indexes = Indexes(vec![CompositeIndex {
            collection_group: "jobs".into(),
            fields: vec![("status".into(), false), ("updatedAt".into(), true)],
        }]);
        let listed = query(vec![field_filter("status", In)], &[("updatedAt", true)]);
        assert!(indexes.check(&listed).is_ok());
        let ascending = query(vec![field_filter("status", In)], &[("updatedAt", false)]);
        let err = indexes.check(&ascending).unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert!(
            err.message().contains("status ASC,updatedAt ASC"),
            "{}",
            err.message()
        );
        let ranged = query(
            vec![
                field_filter("status", Equal),
                field_filter("leaseExpiresAt", LessThan),
            ],
            &[],
        );
        assert!(indexes.check(&ranged).is_err());
        // Served by single-field indexes: equalities only, one field ranged alone.
        let equalities = query(
            vec![field_filter("status", Equal), field_filter("owner", Equal)],
            &[],
        );
        assert!(Indexes::default().check(&equalities).is_ok());
        let alone = query(vec![field_filter("status", NotIn)], &[]);
        assert!(Indexes::default().check(&alone).is_ok());
    }
}
