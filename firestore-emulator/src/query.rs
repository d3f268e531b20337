//! Structured queries over the stored documents: collection selection, field,
//! unary and composite filters, ordering (documents missing an ordered field are
//! left out, as in Firestore), cursors, offset and limit.

use std::cmp::Ordering;

use tonic::Status;

use crate::pb::google::firestore::v1::structured_query::{
    self, Direction, composite_filter, field_filter, filter::FilterType, unary_filter,
};
use crate::pb::google::firestore::v1::{Document, StructuredQuery, Value, value::ValueType};
use crate::values::{compare, equals, field, is_nan, is_null, same_kind};

/// A query checked once, ready to run against any set of documents.
#[derive(Debug, Clone)]
pub struct Query {
    parent: String,
    collections: Vec<(String, bool)>,
    filter: Option<structured_query::Filter>,
    order: Vec<(String, bool)>,
    /// Where the results start and end: values of the ordered fields, in order, and
    /// Firestore's `before` flag.
    start_at: Option<(Vec<Value>, bool)>,
    end_at: Option<(Vec<Value>, bool)>,
    offset: usize,
    limit: Option<usize>,
}

/// The field operators that range over values rather than match them.
pub(crate) const INEQUALITIES: [field_filter::Operator; 6] = [
    field_filter::Operator::LessThan,
    field_filter::Operator::LessThanOrEqual,
    field_filter::Operator::GreaterThan,
    field_filter::Operator::GreaterThanOrEqual,
    field_filter::Operator::NotEqual,
    field_filter::Operator::NotIn,
];

impl Query {
    pub fn new(parent: &str, q: &StructuredQuery) -> Result<Self, Status> {
        if q.find_nearest.is_some() {
            return Err(Status::unimplemented(
                "vector search is not supported by this emulator",
            ));
        }
        if q.from.is_empty() {
            return Err(Status::invalid_argument("query has no collection"));
        }
        let mut order: Vec<(String, bool)> = q
            .order_by
            .iter()
            .map(|o| {
                (
                    o.field
                        .as_ref()
                        .map(|f| f.field_path.clone())
                        .unwrap_or_default(),
                    o.direction == Direction::Descending as i32,
                )
            })
            .collect();
        if order.is_empty()
            && let Some(filter) = &q.r#where
            && let Some(path) = first_inequality(filter)
        {
            order.push((path, false));
        }
        if !order.iter().any(|(p, _)| p == "__name__") {
            let descending = order.last().is_some_and(|(_, d)| *d);
            order.push(("__name__".into(), descending));
        }
        Ok(Self {
            parent: parent.trim_end_matches('/').to_owned(),
            collections: q
                .from
                .iter()
                .map(|c| (c.collection_id.clone(), c.all_descendants))
                .collect(),
            filter: q.r#where.clone(),
            start_at: cursor(q.start_at.as_ref(), &order)?,
            end_at: cursor(q.end_at.as_ref(), &order)?,
            order,
            offset: q.offset.max(0) as usize,
            limit: q.limit.map(|l| l.max(0) as usize),
        })
    }

    /// Whether a document is in the query's result set, ignoring offset and limit.
    pub fn matches(&self, doc: &Document) -> Result<bool, Status> {
        let Some(rest) = doc
            .name
            .strip_prefix(&self.parent)
            .and_then(|r| r.strip_prefix('/'))
        else {
            return Ok(false);
        };
        let segments: Vec<&str> = rest.split('/').collect();
        let in_collection = self.collections.iter().any(|(id, all)| {
            if *all {
                segments.len() >= 2 && segments[segments.len() - 2] == id
            } else {
                segments.len() == 2 && segments[0] == id
            }
        });
        if !in_collection {
            return Ok(false);
        }
        if self
            .order
            .iter()
            .any(|(path, _)| field(doc, path).is_none())
        {
            return Ok(false);
        }
        match &self.filter {
            Some(filter) => eval(filter, doc),
            None => Ok(true),
        }
    }

    pub fn compare(&self, a: &Document, b: &Document) -> Ordering {
        for (path, descending) in &self.order {
            let (x, y) = (field(a, path), field(b, path));
            let c = match (x, y) {
                (Some(x), Some(y)) => compare(&x, &y),
                _ => Ordering::Equal,
            };
            let c = if *descending { c.reverse() } else { c };
            if c != Ordering::Equal {
                return c;
            }
        }
        Ordering::Equal
    }

    /// Where a document sorts against a cursor's values, over as many ordered fields
    /// as the cursor has values.
    fn to_cursor(&self, doc: &Document, values: &[Value]) -> Ordering {
        for ((path, descending), value) in self.order.iter().zip(values) {
            let c = field(doc, path).map_or(Ordering::Equal, |x| compare(&x, value));
            let c = if *descending { c.reverse() } else { c };
            if c != Ordering::Equal {
                return c;
            }
        }
        Ordering::Equal
    }

    /// Runs the query over `docs`: matching, ordered, cursors, offset and limit applied.
    pub fn run<'a>(
        &self,
        docs: impl Iterator<Item = &'a Document>,
    ) -> Result<Vec<Document>, Status> {
        let mut out = Vec::new();
        for doc in docs {
            if self.matches(doc)? {
                out.push(doc.clone());
            }
        }
        out.sort_by(|a, b| self.compare(a, b));
        // A cursor's `before` says whether a document at its values is in: at the
        // start it is (start at), or is not (start after); at the end it is not (end
        // before), or is (end at).
        if let Some((values, before)) = &self.start_at {
            out.retain(|d| match self.to_cursor(d, values) {
                Ordering::Greater => true,
                Ordering::Equal => *before,
                Ordering::Less => false,
            });
        }
        if let Some((values, before)) = &self.end_at {
            out.retain(|d| match self.to_cursor(d, values) {
                Ordering::Less => true,
                Ordering::Equal => !*before,
                Ordering::Greater => false,
            });
        }
        let out = out.into_iter().skip(self.offset);
        Ok(match self.limit {
            Some(limit) => out.take(limit).collect(),
            None => out.collect(),
        })
    }
}

/// A cursor as the query keeps it; more values than ordered fields is an error, as
/// in Firestore.
fn cursor(
    cursor: Option<&crate::pb::google::firestore::v1::Cursor>,
    order: &[(String, bool)],
) -> Result<Option<(Vec<Value>, bool)>, Status> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    if cursor.values.len() > order.len() {
        return Err(Status::invalid_argument(
            "a cursor has more values than the query has ordered fields",
        ));
    }
    Ok(Some((cursor.values.clone(), cursor.before)))
}

fn first_inequality(filter: &structured_query::Filter) -> Option<String> {
    match filter.filter_type.as_ref()? {
        FilterType::FieldFilter(f) => INEQUALITIES
            .iter()
            .any(|op| *op as i32 == f.op)
            .then(|| f.field.as_ref().map(|r| r.field_path.clone()))
            .flatten(),
        FilterType::CompositeFilter(c) => c.filters.iter().find_map(first_inequality),
        FilterType::UnaryFilter(_) => None,
    }
}

fn eval(filter: &structured_query::Filter, doc: &Document) -> Result<bool, Status> {
    match &filter.filter_type {
        None => Ok(true),
        Some(FilterType::CompositeFilter(c)) => {
            let and = match composite_filter::Operator::try_from(c.op) {
                Ok(composite_filter::Operator::And) => true,
                Ok(composite_filter::Operator::Or) => false,
                _ => return Err(Status::invalid_argument("unknown composite operator")),
            };
            for f in &c.filters {
                let hit = eval(f, doc)?;
                if hit != and {
                    return Ok(hit);
                }
            }
            Ok(and)
        }
        Some(FilterType::UnaryFilter(u)) => {
            let Some(unary_filter::OperandType::Field(path)) = &u.operand_type else {
                return Err(Status::invalid_argument("unary filter without a field"));
            };
            let value = field(doc, &path.field_path);
            Ok(match unary_filter::Operator::try_from(u.op) {
                Ok(unary_filter::Operator::IsNull) => value.is_some_and(|v| is_null(&v)),
                Ok(unary_filter::Operator::IsNotNull) => value.is_some_and(|v| !is_null(&v)),
                Ok(unary_filter::Operator::IsNan) => value.is_some_and(|v| is_nan(&v)),
                Ok(unary_filter::Operator::IsNotNan) => {
                    value.is_some_and(|v| !is_nan(&v) && !is_null(&v))
                }
                _ => return Err(Status::invalid_argument("unknown unary operator")),
            })
        }
        Some(FilterType::FieldFilter(f)) => {
            let path = f
                .field
                .as_ref()
                .map(|r| r.field_path.as_str())
                .unwrap_or("");
            let operand = f
                .value
                .clone()
                .ok_or_else(|| Status::invalid_argument("field filter without a value"))?;
            let Some(value) = field(doc, path) else {
                return Ok(false);
            };
            let list = |v: &Value| match &v.value_type {
                Some(ValueType::ArrayValue(a)) => Ok(a.values.clone()),
                _ => Err(Status::invalid_argument("IN and NOT_IN take an array")),
            };
            use field_filter::Operator as Op;
            let range = |want: &[Ordering]| {
                same_kind(&value, &operand)
                    && !is_nan(&value)
                    && want.contains(&compare(&value, &operand))
            };
            Ok(match Op::try_from(f.op) {
                Ok(Op::Equal) => equals(&value, &operand),
                Ok(Op::NotEqual) => !is_null(&value) && !equals(&value, &operand),
                Ok(Op::LessThan) => range(&[Ordering::Less]),
                Ok(Op::LessThanOrEqual) => range(&[Ordering::Less, Ordering::Equal]),
                Ok(Op::GreaterThan) => range(&[Ordering::Greater]),
                Ok(Op::GreaterThanOrEqual) => range(&[Ordering::Greater, Ordering::Equal]),
                Ok(Op::In) => list(&operand)?.iter().any(|o| equals(&value, o)),
                Ok(Op::NotIn) => {
                    !is_null(&value) && !list(&operand)?.iter().any(|o| equals(&value, o))
                }
                Ok(Op::ArrayContains) => match &value.value_type {
                    Some(ValueType::ArrayValue(a)) => a.values.iter().any(|v| equals(v, &operand)),
                    _ => false,
                },
                Ok(Op::ArrayContainsAny) => match &value.value_type {
                    Some(ValueType::ArrayValue(a)) => {
                        let wanted = list(&operand)?;
                        a.values.iter().any(|v| wanted.iter().any(|w| equals(v, w)))
                    }
                    _ => false,
                },
                _ => return Err(Status::invalid_argument("unknown field filter operator")),
            })
        }
    }
}
