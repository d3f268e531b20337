//! Firestore values as Cloud Firestore orders and compares them: type order first
//! (null, booleans, numbers, timestamps, strings, bytes, references, geo points,
//! arrays, maps), then the value; integers and doubles compare as numbers.

use std::cmp::Ordering;
use std::collections::HashMap;

use crate::pb::google::firestore::v1::{Document, MapValue, Value, value::ValueType};

/// The rank of a value's type in Firestore's cross-type order.
fn type_rank(v: &Value) -> u8 {
    match &v.value_type {
        None | Some(ValueType::NullValue(_)) => 0,
        Some(ValueType::BooleanValue(_)) => 1,
        Some(ValueType::IntegerValue(_) | ValueType::DoubleValue(_)) => 2,
        Some(ValueType::TimestampValue(_)) => 3,
        Some(ValueType::StringValue(_)) => 4,
        Some(ValueType::BytesValue(_)) => 5,
        Some(ValueType::ReferenceValue(_)) => 6,
        Some(ValueType::GeoPointValue(_)) => 7,
        Some(ValueType::ArrayValue(_)) => 8,
        Some(ValueType::MapValue(_)) => 9,
        Some(_) => 10,
    }
}

/// Whether two values are of one comparable kind (range filters match only then).
pub fn same_kind(a: &Value, b: &Value) -> bool {
    type_rank(a) == type_rank(b)
}

fn number(v: &ValueType) -> f64 {
    match v {
        ValueType::IntegerValue(i) => *i as f64,
        ValueType::DoubleValue(d) => *d,
        _ => f64::NAN,
    }
}

/// Firestore's total order of values (NaN sorts before every other number).
pub fn compare(a: &Value, b: &Value) -> Ordering {
    let rank = type_rank(a).cmp(&type_rank(b));
    if rank != Ordering::Equal {
        return rank;
    }
    match (&a.value_type, &b.value_type) {
        (Some(ValueType::BooleanValue(x)), Some(ValueType::BooleanValue(y))) => x.cmp(y),
        (Some(ValueType::IntegerValue(x)), Some(ValueType::IntegerValue(y))) => x.cmp(y),
        (Some(x @ (ValueType::IntegerValue(_) | ValueType::DoubleValue(_))), Some(y)) => {
            let (x, y) = (number(x), number(y));
            match (x.is_nan(), y.is_nan()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Less,
                (false, true) => Ordering::Greater,
                _ => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
            }
        }
        (Some(ValueType::TimestampValue(x)), Some(ValueType::TimestampValue(y))) => {
            (x.seconds, x.nanos).cmp(&(y.seconds, y.nanos))
        }
        (Some(ValueType::StringValue(x)), Some(ValueType::StringValue(y))) => x.cmp(y),
        (Some(ValueType::BytesValue(x)), Some(ValueType::BytesValue(y))) => x.cmp(y),
        (Some(ValueType::ReferenceValue(x)), Some(ValueType::ReferenceValue(y))) => {
            x.split('/').cmp(y.split('/'))
        }
        (Some(ValueType::GeoPointValue(x)), Some(ValueType::GeoPointValue(y))) => x
            .latitude
            .partial_cmp(&y.latitude)
            .unwrap_or(Ordering::Equal)
            .then(
                x.longitude
                    .partial_cmp(&y.longitude)
                    .unwrap_or(Ordering::Equal),
            ),
        (Some(ValueType::ArrayValue(x)), Some(ValueType::ArrayValue(y))) => {
            for (l, r) in x.values.iter().zip(&y.values) {
                let c = compare(l, r);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.values.len().cmp(&y.values.len())
        }
        (Some(ValueType::MapValue(x)), Some(ValueType::MapValue(y))) => {
            let mut xs: Vec<_> = x.fields.iter().collect();
            let mut ys: Vec<_> = y.fields.iter().collect();
            xs.sort_by(|l, r| l.0.cmp(r.0));
            ys.sort_by(|l, r| l.0.cmp(r.0));
            for ((lk, lv), (rk, rv)) in xs.iter().zip(&ys) {
                let c = lk.cmp(rk).then_with(|| compare(lv, rv));
                if c != Ordering::Equal {
                    return c;
                }
            }
            xs.len().cmp(&ys.len())
        }
        _ => Ordering::Equal,
    }
}

/// Equality as filters see it: `1 == 1.0`, and NaN equals nothing.
pub fn equals(a: &Value, b: &Value) -> bool {
    if let (Some(x), Some(y)) = (&a.value_type, &b.value_type)
        && (number(x).is_nan() && type_rank(a) == 2 || number(y).is_nan() && type_rank(b) == 2)
    {
        return false;
    }
    same_kind(a, b) && compare(a, b) == Ordering::Equal
}

pub fn is_null(v: &Value) -> bool {
    matches!(v.value_type, None | Some(ValueType::NullValue(_)))
}

pub fn is_nan(v: &Value) -> bool {
    matches!(v.value_type, Some(ValueType::DoubleValue(d)) if d.is_nan())
}

/// Splits a field path on dots, honouring back-quoted segments.
pub fn split_path(path: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '`' => quoted = !quoted,
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    current.push(n);
                }
            }
            '.' if !quoted => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    parts.push(current);
    parts
}

/// The value at `path` in a document, `__name__` being the document's reference.
pub fn field(doc: &Document, path: &str) -> Option<Value> {
    if path == "__name__" {
        return Some(Value {
            value_type: Some(ValueType::ReferenceValue(doc.name.clone())),
        });
    }
    let parts = split_path(path);
    let mut fields = &doc.fields;
    for (i, part) in parts.iter().enumerate() {
        let value = fields.get(part)?;
        if i + 1 == parts.len() {
            return Some(value.clone());
        }
        match &value.value_type {
            Some(ValueType::MapValue(map)) => fields = &map.fields,
            _ => return None,
        }
    }
    None
}

/// Sets (`Some`) or removes (`None`) the value at `path`, creating maps on the way.
pub fn set_field(fields: &mut HashMap<String, Value>, path: &[String], value: Option<Value>) {
    let Some((head, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        match value {
            Some(v) => {
                fields.insert(head.clone(), v);
            }
            None => {
                fields.remove(head);
            }
        }
        return;
    }
    if value.is_none() && !fields.contains_key(head) {
        return;
    }
    let entry = fields.entry(head.clone()).or_insert_with(|| Value {
        value_type: Some(ValueType::MapValue(MapValue::default())),
    });
    if !matches!(entry.value_type, Some(ValueType::MapValue(_))) {
        *entry = Value {
            value_type: Some(ValueType::MapValue(MapValue::default())),
        };
    }
    if let Some(ValueType::MapValue(map)) = &mut entry.value_type {
        set_field(&mut map.fields, rest, value);
    }
}

/// The value at `path` of a field map (for masks and transforms).
pub fn get_in(fields: &HashMap<String, Value>, path: &[String]) -> Option<Value> {
    let (head, rest) = path.split_first()?;
    let value = fields.get(head)?;
    if rest.is_empty() {
        return Some(value.clone());
    }
    match &value.value_type {
        Some(ValueType::MapValue(map)) => get_in(&map.fields, rest),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(i: i64) -> Value {
        Value {
            value_type: Some(ValueType::IntegerValue(i)),
        }
    }
    fn text(s: &str) -> Value {
        Value {
            value_type: Some(ValueType::StringValue(s.into())),
        }
    }

    #[test]
    fn types_order_before_values_and_numbers_mix() {
        assert_eq!(compare(&int(5), &text("a")), Ordering::Less);
        let half = Value {
            value_type: Some(ValueType::DoubleValue(4.5)),
        };
        assert_eq!(compare(&half, &int(5)), Ordering::Less);
        assert!(equals(
            &int(1),
            &Value {
                value_type: Some(ValueType::DoubleValue(1.0))
            }
        ));
        assert!(!equals(&int(1), &text("1")));
    }

    #[test]
    fn nested_paths_are_set_and_read() {
        let mut fields = HashMap::new();
        set_field(
            &mut fields,
            &split_path("lastError.code"),
            Some(text("boom")),
        );
        assert_eq!(
            get_in(&fields, &split_path("lastError.code")),
            Some(text("boom"))
        );
        set_field(&mut fields, &split_path("lastError.code"), None);
        assert_eq!(get_in(&fields, &split_path("lastError.code")), None);
        assert_eq!(
            split_path("`a.b`.c"),
            vec!["a.b".to_owned(), "c".to_owned()]
        );
    }
}
