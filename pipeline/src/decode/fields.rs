//! Field extraction shared by the signal decoders: typed getters with precise
//! errors, timestamp parsing, and the `extra` column for unknown fields.

use std::borrow::Cow;

use simd_json::prelude::*;
use simd_json::{BorrowedValue, StaticNode};

use super::{FieldProblem, SourcePosition};

/// Per-message context every row needs.
pub(crate) struct RowContext<'a> {
    pub pos: &'a SourcePosition<'a>,
    /// The Kafka message timestamp (or the wall clock when it has none).
    pub reference_ms: i64,
    /// How far past `reference_ms` an event time may be.
    pub max_future_skew_ms: i64,
}

/// The JSON object of one record.
pub(crate) type Object<'v> = simd_json::value::borrowed::Object<'v>;

/// The JSON type name of a value, for error messages.
pub(crate) fn type_name(v: &BorrowedValue<'_>) -> &'static str {
    match v {
        BorrowedValue::Static(StaticNode::Null) => "null",
        BorrowedValue::Static(StaticNode::Bool(_)) => "boolean",
        BorrowedValue::Static(_) => "number",
        BorrowedValue::String(_) => "string",
        BorrowedValue::Array(_) => "array",
        BorrowedValue::Object(_) => "object",
    }
}

pub(crate) fn as_object<'v>(v: &'v BorrowedValue<'v>) -> Result<&'v Object<'v>, FieldProblem> {
    match v {
        BorrowedValue::Object(o) => Ok(o),
        other => Err(FieldProblem::NotAnObject(type_name(other))),
    }
}

/// Present and not null.
pub(crate) fn present<'v>(obj: &'v Object<'v>, key: &str) -> Option<&'v BorrowedValue<'v>> {
    obj.get(key).filter(|v| !v.is_null())
}

pub(crate) fn required<'v>(
    obj: &'v Object<'v>,
    key: &'static str,
) -> Result<&'v BorrowedValue<'v>, FieldProblem> {
    present(obj, key).ok_or(FieldProblem::Missing(key))
}

fn wrong_type(field: &str, expected: &'static str, got: &BorrowedValue<'_>) -> FieldProblem {
    FieldProblem::WrongType {
        field: field.to_owned(),
        expected,
        got: type_name(got),
    }
}

pub(crate) fn string_value<'v>(
    v: &'v BorrowedValue<'v>,
    field: &'static str,
) -> Result<&'v str, FieldProblem> {
    match v {
        BorrowedValue::String(s) => Ok(s.as_ref()),
        other => Err(wrong_type(field, "a string", other)),
    }
}

pub(crate) fn required_str<'v>(
    obj: &'v Object<'v>,
    key: &'static str,
) -> Result<&'v str, FieldProblem> {
    string_value(required(obj, key)?, key)
}

pub(crate) fn optional_str<'v>(
    obj: &'v Object<'v>,
    key: &'static str,
) -> Result<Option<&'v str>, FieldProblem> {
    present(obj, key).map(|v| string_value(v, key)).transpose()
}

/// A finite number (integers are widened to f64).
pub(crate) fn finite_number(
    v: &BorrowedValue<'_>,
    field: &'static str,
) -> Result<f64, FieldProblem> {
    let n = match v {
        BorrowedValue::Static(StaticNode::F64(f)) => *f,
        BorrowedValue::Static(StaticNode::I64(i)) => *i as f64,
        BorrowedValue::Static(StaticNode::U64(u)) => *u as f64,
        other => return Err(wrong_type(field, "a number", other)),
    };
    if n.is_finite() {
        Ok(n)
    } else {
        Err(FieldProblem::NotFinite(field))
    }
}

/// An event time: RFC 3339 string or integer epoch milliseconds, not too far ahead.
pub(crate) fn timestamp_ms(
    v: &BorrowedValue<'_>,
    field: &'static str,
    ctx: &RowContext<'_>,
) -> Result<i64, FieldProblem> {
    let ms = match v {
        BorrowedValue::Static(StaticNode::I64(i)) => *i,
        BorrowedValue::Static(StaticNode::U64(u)) => {
            i64::try_from(*u).map_err(|_| FieldProblem::BadTimestamp {
                field,
                detail: format!("{u} is out of range for epoch milliseconds"),
            })?
        }
        BorrowedValue::String(s) => {
            parse_rfc3339_ms(s).ok_or_else(|| FieldProblem::BadTimestamp {
                field,
                detail: format!("`{s}` is not an RFC 3339 timestamp such as 2024-05-01T12:00:00Z"),
            })?
        }
        other => {
            return Err(wrong_type(
                field,
                "an RFC 3339 string or integer epoch milliseconds",
                other,
            ))
        }
    };
    if cara_operators::time::HourPartition::of_millis(ms).is_none() {
        return Err(FieldProblem::BadTimestamp {
            field,
            detail: format!("{ms} is out of range for epoch milliseconds"),
        });
    }
    if ms > ctx.reference_ms.saturating_add(ctx.max_future_skew_ms) {
        return Err(FieldProblem::FarFuture {
            field,
            ts_ms: ms,
            skew_ms: ctx.max_future_skew_ms,
        });
    }
    Ok(ms)
}

fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Checks that a label value is a scalar (string, number, boolean or null).
pub(crate) fn check_scalar(v: &BorrowedValue<'_>, key: &str) -> Result<(), FieldProblem> {
    match v {
        BorrowedValue::String(_) | BorrowedValue::Static(_) => Ok(()),
        other => Err(wrong_type(
            &format!("labels.{key}"),
            "a string, number or boolean",
            other,
        )),
    }
}

/// Appends a scalar checked by [`check_scalar`] as text (null stays null); numbers
/// and booleans are rendered into `scratch`.
pub(crate) fn append_scalar_text(
    builder: &mut arrow::array::StringBuilder,
    v: &BorrowedValue<'_>,
    scratch: &mut String,
) {
    use std::fmt::Write;
    match v {
        BorrowedValue::String(s) => builder.append_value(s.as_ref()),
        BorrowedValue::Static(StaticNode::Null) => builder.append_null(),
        BorrowedValue::Static(s) => {
            scratch.clear();
            let _ = write!(scratch, "{s}");
            builder.append_value(scratch.as_str());
        }
        // Refused by `check_scalar` before any row is appended.
        _ => builder.append_null(),
    }
}

/// Unknown fields of a record, serialized as one JSON object; `None` when there are none.
pub(crate) fn extra_json(obj: &Object<'_>, known: &[&str]) -> Option<String> {
    let mut out: Option<String> = None;
    for (key, value) in obj.iter() {
        if known.contains(&key.as_ref()) {
            continue;
        }
        let buf = out.get_or_insert_with(|| String::from("{"));
        if buf.len() > 1 {
            buf.push(',');
        }
        push_json_string(buf, key);
        buf.push(':');
        buf.push_str(&value.encode());
    }
    if let Some(buf) = out.as_mut() {
        buf.push('}');
    }
    out
}

/// A nested JSON value kept verbatim as text (for `attributes`).
pub(crate) fn json_object_text(
    v: &BorrowedValue<'_>,
    field: &'static str,
) -> Result<String, FieldProblem> {
    match v {
        BorrowedValue::Object(_) => Ok(v.encode()),
        other => Err(wrong_type(field, "an object", other)),
    }
}

fn push_json_string(buf: &mut String, s: &str) {
    let v = BorrowedValue::String(Cow::Borrowed(s));
    buf.push_str(&v.encode());
}
