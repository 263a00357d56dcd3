//! OpenTelemetry attribute values (`AnyValue`, `KeyValue`) as cara stores them: the
//! service a resource names, a value as label text, a value or an attribute list as
//! JSON, and ids as lower-case hex.

use std::fmt::Write as _;

use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use serde_json::{Map, Value as Json};

/// The resource attribute that names the service (OpenTelemetry semantic conventions).
pub(crate) const SERVICE_NAME: &str = "service.name";

/// What a resource without `service.name` is called (the SDKs' default prefix).
pub(crate) const UNKNOWN_SERVICE: &str = "unknown_service";

/// The string value of `key` among `attributes`, if it has one.
pub(crate) fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Any::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

/// The service a resource's attributes name, if any.
pub(crate) fn service_of(resource: &[KeyValue]) -> Option<&str> {
    string_attribute(resource, SERVICE_NAME)
}

/// Appends `bytes` as lower-case hex.
pub(crate) fn push_hex(bytes: &[u8], out: &mut String) {
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
}

/// `bytes` as lower-case hex; `None` when empty (an unset id).
pub(crate) fn hex_id(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(bytes, &mut out);
    Some(out)
}

/// Writes a value as label text into `out` (cleared first): strings as they are,
/// numbers and booleans as JSON writes them, bytes as hex, arrays and maps as JSON.
/// `None` for an empty value.
pub(crate) fn label_text<'a>(value: Option<&'a AnyValue>, out: &'a mut String) -> Option<&'a str> {
    out.clear();
    match value?.value.as_ref()? {
        Any::StringValue(s) => return Some(s.as_str()),
        Any::BoolValue(b) => {
            let _ = write!(out, "{b}");
        }
        Any::IntValue(i) => {
            let _ = write!(out, "{i}");
        }
        Any::DoubleValue(d) => {
            let _ = write!(out, "{d}");
        }
        Any::BytesValue(b) => push_hex(b, out),
        other @ (Any::ArrayValue(_) | Any::KvlistValue(_) | Any::StringValueStrindex(_)) => {
            out.push_str(&json_of_any(other).to_string());
        }
    }
    Some(out.as_str())
}

/// A value as JSON: numbers that JSON cannot hold (NaN, infinities) as strings.
pub(crate) fn json_of(value: Option<&AnyValue>) -> Json {
    value
        .and_then(|v| v.value.as_ref())
        .map_or(Json::Null, json_of_any)
}

fn json_of_any(value: &Any) -> Json {
    match value {
        Any::StringValue(s) => Json::String(s.clone()),
        Any::BoolValue(b) => Json::Bool(*b),
        Any::IntValue(i) => Json::from(*i),
        Any::DoubleValue(d) => serde_json::Number::from_f64(*d)
            .map_or_else(|| Json::String(d.to_string()), Json::Number),
        Any::BytesValue(b) => Json::String(hex_id(b).unwrap_or_default()),
        Any::ArrayValue(a) => Json::Array(a.values.iter().map(|v| json_of(Some(v))).collect()),
        Any::KvlistValue(kv) => Json::Object(object_of(&kv.values)),
        // Dictionary-encoded strings belong to the profiles signal, never to these.
        Any::StringValueStrindex(i) => Json::from(*i),
    }
}

/// Attributes as a JSON object; a repeated key keeps its first value.
pub(crate) fn object_of(attributes: &[KeyValue]) -> Map<String, Json> {
    let mut map = Map::new();
    insert_all(&mut map, attributes);
    map
}

/// Inserts attributes whose keys are not in `map` yet (the first value wins).
pub(crate) fn insert_all(map: &mut Map<String, Json>, attributes: &[KeyValue]) {
    for kv in attributes {
        if !map.contains_key(&kv.key) {
            map.insert(kv.key.clone(), json_of(kv.value.as_ref()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

    fn kv(key: &str, value: Any) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    #[test]
    fn label_text_renders_every_kind_of_value() {
        let mut scratch = String::new();
        let cases = [
            (Any::StringValue("eu-1".into()), "eu-1"),
            (Any::BoolValue(true), "true"),
            (Any::IntValue(-42), "-42"),
            (Any::DoubleValue(0.25), "0.25"),
            (Any::BytesValue(vec![0xab, 0x01]), "ab01"),
            (
                Any::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(Any::IntValue(1)),
                    }],
                }),
                "[1]",
            ),
            (
                Any::KvlistValue(KeyValueList {
                    values: vec![kv("a", Any::StringValue("b".into()))],
                }),
                r#"{"a":"b"}"#,
            ),
        ];
        for (value, text) in cases {
            let any = AnyValue { value: Some(value) };
            assert_eq!(label_text(Some(&any), &mut scratch), Some(text));
        }
        assert_eq!(label_text(None, &mut scratch), None);
    }

    #[test]
    fn service_comes_from_a_string_service_name_only() {
        let attrs = vec![
            kv("host.name", Any::StringValue("h1".into())),
            kv(SERVICE_NAME, Any::StringValue("checkout".into())),
        ];
        assert_eq!(service_of(&attrs), Some("checkout"));
        assert_eq!(service_of(&[kv(SERVICE_NAME, Any::IntValue(3))]), None);
        assert_eq!(service_of(&[]), None);
    }

    #[test]
    fn json_keeps_the_first_of_a_repeated_key_and_stringifies_nan() {
        let attrs = vec![
            kv("k", Any::IntValue(1)),
            kv("k", Any::IntValue(2)),
            kv("x", Any::DoubleValue(f64::NAN)),
        ];
        assert_eq!(
            Json::Object(object_of(&attrs)).to_string(),
            r#"{"k":1,"x":"NaN"}"#
        );
    }

    #[test]
    fn ids_are_lower_case_hex_and_empty_ids_are_unset() {
        assert_eq!(hex_id(&[0x0A, 0xFF]).as_deref(), Some("0aff"));
        assert_eq!(hex_id(&[]), None);
    }
}
