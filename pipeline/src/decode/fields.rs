//! Field extraction shared by the signal decoders: a record's fields read in one pass
//! ([`Record`]: known names by position, the rest into the `extra` column's JSON),
//! typed getters with precise errors, and timestamp parsing.

use simd_json::prelude::*;
use simd_json::{StaticNode, ValueType};

use super::{FieldProblem, SourcePosition};

/// Per-message context every row needs.
pub(crate) struct RowContext<'a> {
    pub pos: &'a SourcePosition<'a>,
    /// The Kafka message timestamp (or the wall clock when it has none).
    pub reference_ms: i64,
    /// How far past `reference_ms` an event time may be.
    pub max_future_skew_ms: i64,
    /// How far before `reference_ms` an event time may be.
    pub max_past_age_ms: i64,
    /// How many hours the message's rows may fall in.
    pub max_hours: u64,
    /// The first and last hour (ms / 3,600,000) the message's rows fall in so far.
    pub hours: std::cell::Cell<Option<(i64, i64)>>,
}

impl<'a> RowContext<'a> {
    /// The context of one message at `pos` under `limits`, no hours noted yet.
    pub(crate) fn new(pos: &'a SourcePosition<'a>, limits: &super::DecodeLimits) -> Self {
        RowContext {
            pos,
            reference_ms: super::reference_ms(pos),
            max_future_skew_ms: limits.max_future_skew_ms,
            max_past_age_ms: limits.max_past_age_ms,
            max_hours: limits.max_hours_per_message,
            hours: std::cell::Cell::new(None),
        }
    }

    /// Refuses a message whose rows fall in more hours than the limit.
    pub(crate) fn check_hours(&self) -> Result<(), super::DecodeError> {
        let hours = hours_in(self.hours.get());
        if hours > self.max_hours {
            return Err(super::DecodeError::TooManyHours {
                hours,
                limit: self.max_hours,
            });
        }
        Ok(())
    }

    /// Notes the time that places a row in the archive (its hour partition).
    pub(crate) fn note_partition_time(&self, ms: i64) {
        let hour = ms.div_euclid(cara_operators::time::HOUR_MS);
        self.hours.set(Some(widen(self.hours.get(), (hour, hour))));
    }
}

/// The first and last hour of `span` and `more` together.
pub(crate) fn widen(span: Option<(i64, i64)>, more: (i64, i64)) -> (i64, i64) {
    match span {
        Some((first, last)) => (first.min(more.0), last.max(more.1)),
        None => more,
    }
}

/// Hours from the first to the last of `span`, both included (0 for none).
pub(crate) fn hours_in(span: Option<(i64, i64)>) -> u64 {
    span.map_or(0, |(first, last)| last.abs_diff(first).saturating_add(1))
}

/// An event time that places its row in the archive (`ts`, a span's `start`).
pub(crate) fn partition_time_ms(
    v: Value<'_, '_>,
    field: &'static str,
    ctx: &RowContext<'_>,
) -> Result<i64, FieldProblem> {
    let ms = timestamp_ms(v, field, ctx)?;
    ctx.note_partition_time(ms);
    Ok(ms)
}

/// A parsed JSON value: a view into the message's tape (`'t`), its strings borrowed
/// from the message itself (`'v`). Copy, and never allocated per node.
pub(crate) type Value<'t, 'v> = simd_json::value::tape::Value<'t, 'v>;

/// The JSON object of one record.
pub(crate) type Object<'t, 'v> = simd_json::value::tape::Object<'t, 'v>;

/// The scalar a value holds (null, boolean, number), if it is one.
fn static_node(v: Value<'_, '_>) -> Option<StaticNode> {
    match v.value_type() {
        ValueType::Null => Some(StaticNode::Null),
        ValueType::Bool => v.as_bool().map(StaticNode::Bool),
        ValueType::I64 => v.as_i64().map(StaticNode::I64),
        ValueType::U64 => v.as_u64().map(StaticNode::U64),
        ValueType::F64 => v.as_f64().map(StaticNode::F64),
        _ => None,
    }
}

/// The JSON type name of a value, for error messages.
pub(crate) fn type_name(v: Value<'_, '_>) -> &'static str {
    match static_node(v) {
        Some(StaticNode::Null) => "null",
        Some(StaticNode::Bool(_)) => "boolean",
        Some(_) => "number",
        None if v.is_str() => "string",
        None if v.is_array() => "array",
        None => "object",
    }
}

pub(crate) fn as_object<'t, 'v>(v: Value<'t, 'v>) -> Result<Object<'t, 'v>, FieldProblem> {
    v.as_object()
        .ok_or_else(|| FieldProblem::NotAnObject(type_name(v)))
}

/// The most fields a signal knows by name.
const MAX_KNOWN: usize = 12;

/// One record's fields, read in a single pass over its keys: those the signal knows
/// by name (`known`, at most [`MAX_KNOWN`]) are kept by position, the others are
/// rendered as the `extra` JSON object. With a duplicated key the first one counts.
pub(crate) struct Record<'t, 'v> {
    known: &'static [&'static str],
    values: [Option<Value<'t, 'v>>; MAX_KNOWN],
    /// Unknown fields as one JSON object; `None` when there are none.
    pub extra: Option<String>,
}

impl<'t, 'v> Record<'t, 'v> {
    /// Reads the object `v` (or says what else it is).
    pub fn read(v: Value<'t, 'v>, known: &'static [&'static str]) -> Result<Self, FieldProblem> {
        debug_assert!(known.len() <= MAX_KNOWN);
        let obj = as_object(v)?;
        let mut values = [None; MAX_KNOWN];
        let mut extra: Option<Vec<u8>> = None;
        for (key, value) in obj.iter() {
            match known.iter().position(|k| same_name(k, key)) {
                Some(slot) if slot < MAX_KNOWN => {
                    values[slot].get_or_insert(value);
                }
                _ => {
                    let buf = extra.get_or_insert_with(|| vec![b'{']);
                    if buf.len() > 1 {
                        buf.push(b',');
                    }
                    push_json_string(buf, key);
                    buf.push(b':');
                    // Writing into a Vec cannot fail.
                    let _ = value.write(buf);
                }
            }
        }
        let extra = extra.and_then(|mut buf| {
            buf.push(b'}');
            // The generator writes valid UTF-8 (strings came from a str, escapes are ASCII).
            String::from_utf8(buf).ok()
        });
        Ok(Record {
            known,
            values,
            extra,
        })
    }

    /// Field `key` (one of the known names), present and not null.
    pub fn present(&self, key: &str) -> Option<Value<'t, 'v>> {
        // Callers pass the very literals `known` holds, so the address usually decides.
        let slot = self
            .known
            .iter()
            .position(|k| std::ptr::eq(k.as_ptr(), key.as_ptr()) || same_name(k, key))?;
        self.values
            .get(slot)
            .copied()
            .flatten()
            .filter(|v| !v.is_null())
    }
}

/// Whether two field names are equal. Names of one record mostly differ in length or
/// first byte, which are checked before the bytes are compared: a library compare per
/// candidate cost more than the rest of matching keys.
#[inline]
fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().first() == b.as_bytes().first() && a == b
}

pub(crate) fn required<'t, 'v>(
    obj: &Record<'t, 'v>,
    key: &'static str,
) -> Result<Value<'t, 'v>, FieldProblem> {
    obj.present(key).ok_or(FieldProblem::Missing(key))
}

fn wrong_type(field: &str, expected: &'static str, got: Value<'_, '_>) -> FieldProblem {
    FieldProblem::WrongType {
        field: field.to_owned(),
        expected,
        got: type_name(got),
    }
}

pub(crate) fn string_value<'v>(
    v: Value<'_, 'v>,
    field: &'static str,
) -> Result<&'v str, FieldProblem> {
    v.into_string()
        .ok_or_else(|| wrong_type(field, "a string", v))
}

pub(crate) fn required_str<'v>(
    obj: &Record<'_, 'v>,
    key: &'static str,
) -> Result<&'v str, FieldProblem> {
    string_value(required(obj, key)?, key)
}

pub(crate) fn optional_str<'v>(
    obj: &Record<'_, 'v>,
    key: &'static str,
) -> Result<Option<&'v str>, FieldProblem> {
    obj.present(key).map(|v| string_value(v, key)).transpose()
}

/// A finite number (integers are widened to f64).
pub(crate) fn finite_number(v: Value<'_, '_>, field: &'static str) -> Result<f64, FieldProblem> {
    let n = match static_node(v) {
        Some(StaticNode::F64(f)) => f,
        Some(StaticNode::I64(i)) => i as f64,
        Some(StaticNode::U64(u)) => u as f64,
        _ => return Err(wrong_type(field, "a number", v)),
    };
    if n.is_finite() {
        Ok(n)
    } else {
        Err(FieldProblem::NotFinite(field))
    }
}

/// An event time: RFC 3339 string or integer epoch milliseconds, not too far ahead.
pub(crate) fn timestamp_ms(
    v: Value<'_, '_>,
    field: &'static str,
    ctx: &RowContext<'_>,
) -> Result<i64, FieldProblem> {
    let ms = match (static_node(v), v.into_string()) {
        (Some(StaticNode::I64(i)), _) => i,
        (Some(StaticNode::U64(u)), _) => {
            i64::try_from(u).map_err(|_| FieldProblem::BadTimestamp {
                field,
                detail: format!("{u} is out of range for epoch milliseconds"),
            })?
        }
        (_, Some(s)) => parse_rfc3339_ms(s).ok_or_else(|| FieldProblem::BadTimestamp {
            field,
            detail: format!("`{s}` is not an RFC 3339 timestamp such as 2024-05-01T12:00:00Z"),
        })?,
        _ => {
            return Err(wrong_type(
                field,
                "an RFC 3339 string or integer epoch milliseconds",
                v,
            ))
        }
    };
    check_event_time(ms, field, ctx)
}

/// Checks an event time, read or derived (a span's end from its duration): in the
/// range of epoch milliseconds the archive can partition, and not too far ahead.
pub(crate) fn check_event_time(
    ms: i64,
    field: &'static str,
    ctx: &RowContext<'_>,
) -> Result<i64, FieldProblem> {
    if cara_operators::time::HourPartition::of_millis(ms).is_none() {
        return Err(FieldProblem::BadTimestamp {
            field,
            detail: format!("{ms} is out of range for epoch milliseconds"),
        });
    }
    if ms < ctx.reference_ms.saturating_sub(ctx.max_past_age_ms) {
        return Err(FieldProblem::FarPast {
            field,
            ts_ms: ms,
            age_ms: ctx.max_past_age_ms,
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
pub(crate) fn check_scalar(v: Value<'_, '_>, key: &str) -> Result<(), FieldProblem> {
    if v.is_str() || static_node(v).is_some() {
        Ok(())
    } else {
        Err(wrong_type(
            &format!("labels.{key}"),
            "a string, number or boolean",
            v,
        ))
    }
}

/// Appends a scalar checked by [`check_scalar`] as text (null stays null); numbers
/// and booleans are rendered into `scratch`.
pub(crate) fn append_scalar_text(
    builder: &mut arrow::array::StringBuilder,
    v: Value<'_, '_>,
    scratch: &mut String,
) {
    use std::fmt::Write;
    match (v.into_string(), static_node(v)) {
        (Some(s), _) => builder.append_value(s),
        (_, Some(StaticNode::Null)) => builder.append_null(),
        (_, Some(s)) => {
            scratch.clear();
            let _ = write!(scratch, "{s}");
            builder.append_value(scratch.as_str());
        }
        // Refused by `check_scalar` before any row is appended.
        _ => builder.append_null(),
    }
}

/// A nested JSON value kept verbatim as text (for `attributes`).
pub(crate) fn json_object_text(
    v: Value<'_, '_>,
    field: &'static str,
) -> Result<String, FieldProblem> {
    if v.is_object() {
        Ok(v.encode())
    } else {
        Err(wrong_type(field, "an object", v))
    }
}

fn push_json_string(buf: &mut Vec<u8>, s: &str) {
    // serde_json's string escaping is exact JSON; writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, s);
}

#[cfg(test)]
mod tests {
    use super::same_name;

    #[test]
    fn names_match_only_when_every_byte_does() {
        assert!(same_name("service", "service"));
        assert!(same_name("", ""));
        assert!(!same_name("service", "services"));
        assert!(!same_name("trace_id", "xrace_id"));
        // Same length and first byte: the remaining bytes decide.
        assert!(!same_name("span_id", "span_ix"));
        assert!(!same_name("ts", ""));
    }
}
