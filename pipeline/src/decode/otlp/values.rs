//! OpenTelemetry attribute values (`AnyValue`, `KeyValue`) as cara stores them: the
//! service a resource names, a value as label text, a value or an attribute list as
//! JSON, and ids as lower-case hex.

use std::fmt::Write as _;

use cara_operators::stable_hash::Fnv1a;
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

/// Appends `bytes` as lower-case hex (by table: through `format!` the ids of a
/// span were a sixth of its decoding time).
pub(crate) fn push_hex(bytes: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
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
    for kv in attributes {
        if !map.contains_key(&kv.key) {
            map.insert(kv.key.clone(), json_of(kv.value.as_ref()));
        }
    }
    map
}

/// A JSON object written straight into text, in the order fields are added; a key
/// added again is skipped (the first value wins), as in the flat JSON. Cheaper than
/// building a `serde_json::Map` per record and serialising it.
pub(crate) struct ObjectWriter<'r> {
    out: String,
    keys: KeySet<'r>,
}

impl<'r> ObjectWriter<'r> {
    /// An empty object.
    pub fn new() -> Self {
        ObjectWriter {
            out: String::from("{"),
            keys: KeySet::default(),
        }
    }

    /// Adds `key` with the value `write` writes, unless the key is there already.
    pub fn field(&mut self, key: &'r str, write: impl FnOnce(&mut String)) {
        let first = self.keys.is_empty();
        if !self.keys.insert(key) {
            return;
        }
        if !first {
            self.out.push(',');
        }
        push_json_string(key, &mut self.out);
        self.out.push(':');
        write(&mut self.out);
    }

    /// Adds a string field.
    pub fn string(&mut self, key: &'r str, value: &str) {
        self.field(key, |out| push_json_string(value, out));
    }

    /// Adds each attribute but those named `skip`.
    pub fn attributes(&mut self, attributes: &'r [KeyValue], skip: Option<&str>) {
        for kv in attributes {
            if Some(kv.key.as_str()) != skip {
                self.field(&kv.key, |out| push_json(kv.value.as_ref(), out));
            }
        }
    }

    /// Whether no field was added.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The object's text.
    pub fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

/// Writes `s` as a JSON string: the runs between characters to escape are copied
/// whole.
pub(crate) fn push_json_string(s: &str, out: &mut String) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut run = 0;
    // Every byte to escape is ASCII, so the runs end on character boundaries.
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[run..i]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(escaped);
        }
        run = i + 1;
    }
    out.push_str(&s[run..]);
    out.push('"');
}

/// Keys written so far, each with its hash, so that a new key is compared with
/// them by one integer each rather than by a `memcmp` call per pair of keys.
/// Reused (cleared) between records where it can be.
#[derive(Default)]
pub(crate) struct KeySet<'r> {
    keys: Vec<(u64, &'r str)>,
}

impl<'r> KeySet<'r> {
    pub fn clear(&mut self) {
        self.keys.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds `key` unless it is there; whether it was added.
    pub fn insert(&mut self, key: &'r str) -> bool {
        let hash = Fnv1a::of(key.as_bytes());
        if self.find(hash, key) {
            return false;
        }
        self.keys.push((hash, key));
        true
    }

    fn find(&self, hash: u64, key: &str) -> bool {
        self.keys.iter().any(|(h, k)| *h == hash && *k == key)
    }
}

/// Writes a value as JSON: numbers JSON cannot hold (NaN, infinities) as strings,
/// bytes as a hex string.
pub(crate) fn push_json(value: Option<&AnyValue>, out: &mut String) {
    match value.and_then(|v| v.value.as_ref()) {
        None => out.push_str("null"),
        Some(Any::StringValue(s)) => push_json_string(s, out),
        Some(Any::BoolValue(b)) => {
            let _ = write!(out, "{b}");
        }
        Some(Any::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(Any::DoubleValue(d)) if d.is_finite() => {
            let _ = write!(out, "{d}");
        }
        Some(Any::DoubleValue(d)) => push_json_string(&d.to_string(), out),
        Some(Any::BytesValue(b)) => {
            out.push('"');
            push_hex(b, out);
            out.push('"');
        }
        Some(Any::ArrayValue(a)) => {
            out.push('[');
            for (i, v) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json(Some(v), out);
            }
            out.push(']');
        }
        Some(Any::KvlistValue(kv)) => {
            let mut object = ObjectWriter::new();
            object.attributes(&kv.values, None);
            out.push_str(&object.finish());
        }
        Some(Any::StringValueStrindex(i)) => {
            let _ = write!(out, "{i}");
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

    proptest::proptest! {
        /// Any text, escapes and all, reads back as itself.
        #[test]
        fn json_strings_read_back_as_written(text in "\\PC*|[\"\\\\\u{0}-\u{1f}a-zé😀]{0,40}") {
            let mut out = String::new();
            push_json_string(&text, &mut out);
            let read: String = serde_json::from_str(&out).expect("valid JSON");
            proptest::prop_assert_eq!(read, text);
        }

        /// The key set answers as a plain list of keys would.
        #[test]
        fn the_key_set_agrees_with_a_list(keys in proptest::collection::vec("[a-c]{0,3}", 0..24)) {
            let mut set = KeySet::default();
            let mut list: Vec<&str> = Vec::new();
            for key in &keys {
                let added = set.insert(key);
                proptest::prop_assert_eq!(added, !list.contains(&key.as_str()));
                if added {
                    list.push(key);
                }
            }
        }
    }

    /// The writer's text is JSON, and means what `json_of` builds.
    #[test]
    fn the_object_writer_writes_what_serde_json_reads() {
        let attrs = vec![
            kv(
                "quote\"and\\slash\n",
                Any::StringValue("tab\there \u{1}\r é€😀 \u{1f}end".into()),
            ),
            kv("k", Any::IntValue(-3)),
            kv("k", Any::IntValue(9)),
            kv("d", Any::DoubleValue(2.5)),
            kv("inf", Any::DoubleValue(f64::INFINITY)),
            kv("b", Any::BytesValue(vec![0xde, 0xad])),
            kv(
                "list",
                Any::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(Any::BoolValue(false)),
                        },
                        AnyValue { value: None },
                    ],
                }),
            ),
        ];
        let mut writer = ObjectWriter::new();
        writer.attributes(&attrs, Some("d"));
        writer.string("extra", "x");
        let text = writer.finish();
        let read: Json = serde_json::from_str(&text).unwrap();
        let mut expected = object_of(&attrs);
        expected.remove("d");
        expected.insert("extra".into(), Json::from("x"));
        assert_eq!(read, Json::Object(expected), "{text}");
        assert_eq!(ObjectWriter::new().finish(), "{}");
    }

    #[test]
    fn ids_are_lower_case_hex_and_empty_ids_are_unset() {
        assert_eq!(hex_id(&[0x0A, 0xFF]).as_deref(), Some("0aff"));
        assert_eq!(hex_id(&[]), None);
        let every_byte: Vec<u8> = (0..=255).collect();
        let expected: String = every_byte.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex_id(&every_byte), Some(expected));
    }
}
