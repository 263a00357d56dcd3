use arrow::array::{
    Array, Float64Array, Int64Array, MapArray, StringArray, TimestampMillisecondArray,
};
use proptest::prelude::*;

use super::*;

const NOW: i64 = 1_700_000_000_000;

fn pos(offset: i64) -> SourcePosition<'static> {
    SourcePosition {
        topic: "telemetry.metrics",
        partition: 3,
        offset,
        kafka_ts_ms: Some(NOW),
    }
}

/// The default limits, without the bound on old event times: the tests write small
/// epoch values (1970) for brevity. [`old_event_times_are_refused_by_default`]
/// checks the bound itself.
fn limits() -> DecodeLimits {
    DecodeLimits {
        max_past_age_ms: i64::MAX,
        ..DecodeLimits::default()
    }
}

fn decode_one(signal: Signal, json: &str) -> Result<RecordBatch, DecodeError> {
    let mut d = Decoder::new(signal, limits());
    d.decode(Some(json.as_bytes()), &pos(0))?;
    Ok(d.finish())
}

fn strings<'a>(batch: &'a RecordBatch, col: &str) -> &'a StringArray {
    batch
        .column_by_name(col)
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap()
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, col: &str) -> &'a T {
    batch
        .column_by_name(col)
        .unwrap()
        .as_any()
        .downcast_ref::<T>()
        .unwrap()
}

#[test]
fn metric_fields_land_in_their_columns() {
    let b = decode_one(
        Signal::Metrics,
        r#"{"ts":"2023-11-14T22:13:20.500Z","name":"http_requests_total","value":42,"type":"counter",
            "labels":{"service":"checkout","code":200},"region":"eu"}"#,
    )
    .unwrap();
    assert_eq!(
        column::<TimestampMillisecondArray>(&b, "ts").value(0),
        NOW + 500
    );
    assert_eq!(strings(&b, "name").value(0), "http_requests_total");
    assert_eq!(column::<Float64Array>(&b, "value").value(0), 42.0);
    assert_eq!(strings(&b, "type").value(0), "counter");
    assert_eq!(strings(&b, "service").value(0), "checkout");
    assert_eq!(strings(&b, "extra").value(0), r#"{"region":"eu"}"#);
    let labels = column::<MapArray>(&b, "labels").value(0);
    let keys = labels
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    let values = labels
        .column(1)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    let pairs: Vec<_> = (0..keys.len())
        .map(|i| (keys.value(i), values.value(i)))
        .collect();
    assert!(
        pairs.contains(&("service", "checkout")) && pairs.contains(&("code", "200")),
        "{pairs:?}"
    );
    assert_eq!(column::<Int64Array>(&b, "_offset").value(0), 0);
}

#[test]
fn arrays_give_one_row_per_element_with_their_index() {
    let mut d = Decoder::new(Signal::Metrics, limits());
    let msg =
        format!(r#"[{{"ts":{NOW},"name":"a","value":1}},{{"ts":{NOW},"name":"b","value":2.5}}]"#);
    assert_eq!(d.decode(Some(msg.as_bytes()), &pos(9)).unwrap(), 2);
    let b = d.finish();
    assert_eq!(strings(&b, "name").value(1), "b");
    assert_eq!(strings(&b, "type").value(0), "gauge");
    let index = column::<arrow::array::Int32Array>(&b, "_index");
    assert_eq!((index.value(0), index.value(1)), (0, 1));
    assert!(strings(&b, "extra").is_null(0));
}

#[test]
fn one_bad_element_refuses_the_whole_message_and_appends_nothing() {
    let mut d = Decoder::new(Signal::Metrics, limits());
    let msg =
        format!(r#"[{{"ts":{NOW},"name":"a","value":1}},{{"ts":{NOW},"name":"b","value":"x"}}]"#);
    let err = d.decode(Some(msg.as_bytes()), &pos(1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "element 1: field `value`: expected a number, got string"
    );
    assert_eq!(d.len(), 0);
    assert_eq!(d.finish().num_rows(), 0);
}

#[test]
fn malformed_messages_get_precise_reasons() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "empty"),
        (b"   ", "empty"),
        (b"[]", "empty"),
        (b"{\"ts\":1,", "invalid_json"),
        (b"\xff\xfe\x00binary", "invalid_json"),
        (b"42", "not_an_object"),
        (b"[1]", "not_an_object"),
        (br#"{"name":"a","value":1}"#, "missing_field"),
        (br#"{"ts":1,"name":"a","value":NaN}"#, "invalid_json"),
        (br#"{"ts":1,"name":"a","value":"NaN"}"#, "wrong_type"),
        (br#"{"ts":1,"name":"a","value":1e999}"#, "invalid_json"),
        (
            br#"{"ts":"yesterday","name":"a","value":1}"#,
            "bad_timestamp",
        ),
        (
            br#"{"ts":4102444800000,"name":"a","value":1}"#,
            "far_future",
        ),
        (
            br#"{"ts":1,"name":"a","value":1,"type":"histogram"}"#,
            "not_allowed",
        ),
        (
            br#"{"ts":1,"name":"a","value":1,"labels":{"x":[1]}}"#,
            "wrong_type",
        ),
        (br#"{"ts":1,"name":7,"value":1}"#, "wrong_type"),
    ];
    for (input, kind) in cases {
        let mut d = Decoder::new(Signal::Metrics, limits());
        let err = d.decode(Some(input), &pos(0)).unwrap_err();
        // simd-json may read an overflowing number as infinity instead of failing.
        let kind_ok =
            err.kind() == *kind || (*kind == "invalid_json" && err.kind() == "not_finite");
        assert!(
            kind_ok,
            "{:?}: got {} ({err})",
            String::from_utf8_lossy(input),
            err.kind()
        );
        assert_eq!(d.len(), 0);
    }
    let mut d = Decoder::new(Signal::Metrics, limits());
    assert_eq!(d.decode(None, &pos(0)).unwrap_err(), DecodeError::Empty);
}

#[test]
fn oversize_messages_are_refused_before_parsing() {
    let limits = DecodeLimits {
        max_message_bytes: 64,
        ..limits()
    };
    let mut d = Decoder::new(Signal::Logs, limits);
    let big = format!(
        r#"{{"ts":{NOW},"service":"s","message":"{}"}}"#,
        "x".repeat(100)
    );
    let err = d.decode(Some(big.as_bytes()), &pos(0)).unwrap_err();
    assert!(
        err.to_string().contains("decode.max_message_bytes"),
        "{err}"
    );
}

#[test]
fn future_skew_is_measured_from_the_kafka_timestamp() {
    let mut d = Decoder::new(Signal::Metrics, limits());
    let ok = format!(r#"{{"ts":{},"name":"a","value":1}}"#, NOW + 3_599_000);
    let late = format!(r#"{{"ts":{},"name":"a","value":1}}"#, NOW + 3_601_000);
    assert!(d.decode(Some(ok.as_bytes()), &pos(0)).is_ok());
    assert_eq!(
        d.decode(Some(late.as_bytes()), &pos(1)).unwrap_err().kind(),
        "far_future"
    );
}

#[test]
fn unknown_fields_keep_their_json_with_escapes_and_nesting() {
    let b = decode_one(
        Signal::Spans,
        r#"{"trace_id":"t","span_id":"s","service":"a","name":"GET /","start":1700000000000,"duration_ms":5,"quo\"te":"a\nb","nested":{"x":[1,2.5,null,true]},"n":-3}"#,
    )
    .unwrap();
    let extra: serde_json::Value = serde_json::from_str(strings(&b, "extra").value(0)).unwrap();
    assert_eq!(
        extra,
        serde_json::json!({"quo\"te": "a\nb", "nested": {"x": [1, 2.5, null, true]}, "n": -3})
    );
}

#[test]
fn a_duplicated_key_counts_once_and_the_first_wins() {
    let b = decode_one(
        Signal::Logs,
        r#"{"ts":1700000000000,"service":"first","message":"m","service":"second","x":1,"x":2}"#,
    )
    .unwrap();
    assert_eq!(strings(&b, "service").value(0), "first");
    // Unknown keys are kept as they came, duplicates included.
    assert_eq!(strings(&b, "extra").value(0), r#"{"x":1,"x":2}"#);
}

/// The label pairs of row `row`, in order.
fn label_pairs(batch: &RecordBatch, row: usize) -> Vec<(String, String)> {
    let labels = column::<MapArray>(batch, "labels").value(row);
    let text = |i: usize| {
        labels
            .column(i)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .clone()
    };
    let (keys, values) = (text(0), text(1));
    (0..keys.len())
        .map(|i| (keys.value(i).to_owned(), values.value(i).to_owned()))
        .collect()
}

#[test]
fn a_repeated_label_key_keeps_its_first_value_only() {
    let b = decode_one(
        Signal::Metrics,
        r#"[{"ts":1700000000000,"name":"up","value":1,"labels":{"service":"a","host":"h","service":"b","host":"i"}},
            {"ts":1700000000000,"name":"up","value":1,"labels":{"service":"c","team":"t"}}]"#,
    )
    .unwrap();
    let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    assert_eq!(
        label_pairs(&b, 0),
        [pair("service", "a"), pair("host", "h")]
    );
    assert_eq!(strings(&b, "service").value(0), "a");
    assert_eq!(
        label_pairs(&b, 1),
        [pair("service", "c"), pair("team", "t")]
    );
}

#[test]
fn logs_normalise_levels_and_keep_attributes() {
    let b = decode_one(
        Signal::Logs,
        r#"{"ts":1700000000000,"service":"cart","level":"WARNING","message":"slow","trace_id":"t1","attributes":{"k":1}}"#,
    )
    .unwrap();
    assert_eq!(strings(&b, "level").value(0), "warn");
    assert_eq!(strings(&b, "attributes").value(0), r#"{"k":1}"#);
    assert!(strings(&b, "host").is_null(0));
    let no_level = decode_one(Signal::Logs, r#"{"ts":1,"service":"s","message":"m"}"#).unwrap();
    assert_eq!(strings(&no_level, "level").value(0), "info");
    assert_eq!(strings(&b, "level_text").value(0), "WARNING");
    assert!(strings(&no_level, "level_text").is_null(0));
    // A level cara does not know costs the line nothing: `unknown`, kept as written,
    // and counted.
    let mut decoder = Decoder::new(Signal::Logs, limits());
    for level in [r#""Combo""#, "30", r#""W""#, "null"] {
        let line = format!(r#"{{"ts":1,"service":"s","message":"m","level":{level}}}"#);
        decoder.decode(Some(line.as_bytes()), &pos(0)).unwrap();
    }
    assert_eq!(decoder.take_unknown_levels(), 1);
    assert_eq!(decoder.take_unknown_levels(), 0, "taken once");
    let levels = decoder.finish();
    let texts = |name: &str| -> Vec<Option<String>> {
        let c = strings(&levels, name);
        (0..c.len())
            .map(|i| (!c.is_null(i)).then(|| c.value(i).to_owned()))
            .collect()
    };
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(
        texts("level"),
        vec![some("unknown"), some("info"), some("warn"), some("info")]
    );
    assert_eq!(
        texts("level_text"),
        vec![some("Combo"), some("30"), some("W"), None]
    );
    let numbers = column::<arrow::array::Int32Array>(&levels, "severity_number");
    assert_eq!(numbers.values().to_vec(), vec![0, 9, 13, 9]);
    // Neither a string nor an integer is refused.
    assert_eq!(
        decode_one(
            Signal::Logs,
            r#"{"ts":1,"service":"s","message":"m","level":[3]}"#
        )
        .unwrap_err()
        .kind(),
        "wrong_type"
    );
}

#[test]
fn spans_derive_end_or_duration() {
    let b = decode_one(
        Signal::Spans,
        r#"{"trace_id":"t","span_id":"s","service":"api","name":"GET /","start":1000,"duration_ms":12.5,"status":"error"}"#,
    )
    .unwrap();
    assert_eq!(
        column::<TimestampMillisecondArray>(&b, "end").value(0),
        1013
    );
    assert_eq!(column::<Float64Array>(&b, "duration_ms").value(0), 12.5);
    assert_eq!(strings(&b, "status").value(0), "error");
    assert!(strings(&b, "parent_span_id").is_null(0));
    let b = decode_one(
        Signal::Spans,
        r#"{"trace_id":"t","span_id":"s","parent_span_id":"p","service":"api","name":"GET /","start":"1970-01-01T00:00:01Z","end":1500}"#,
    )
    .unwrap();
    assert_eq!(column::<Float64Array>(&b, "duration_ms").value(0), 500.0);
    assert_eq!(strings(&b, "status").value(0), "ok");
    // A derived end is checked like a given one: in range, not far in the future.
    for (duration, kind) in [("1e300", "bad_timestamp"), ("7200000", "far_future")] {
        let huge = decode_one(
            Signal::Spans,
            &format!(
                r#"{{"trace_id":"t","span_id":"s","service":"a","name":"n","start":{NOW},"duration_ms":{duration}}}"#
            ),
        );
        assert_eq!(huge.unwrap_err().kind(), kind, "duration_ms {duration}");
    }
    let backwards = decode_one(
        Signal::Spans,
        r#"{"trace_id":"t","span_id":"s","service":"a","name":"n","start":10,"end":5}"#,
    );
    assert_eq!(backwards.unwrap_err().kind(), "end_before_start");
    let open = decode_one(
        Signal::Spans,
        r#"{"trace_id":"t","span_id":"s","service":"a","name":"n","start":10}"#,
    );
    assert_eq!(
        open.unwrap_err().to_string(),
        "element 0: missing required field `end`"
    );
}

proptest! {
    /// Whatever the bytes, decoding returns rows or an error: it never panics, and
    /// on error it appends nothing.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        for signal in Signal::ALL {
            let mut d = Decoder::new(signal, limits());
            match d.decode(Some(&bytes), &pos(0)) {
                Ok(n) => prop_assert_eq!(d.len(), n),
                Err(_) => prop_assert_eq!(d.len(), 0),
            }
        }
    }

    /// Metrics built from arbitrary values come back unchanged.
    #[test]
    fn metric_values_round_trip(value in -1e12f64..1e12, ts in 0i64..NOW, name in "[a-z_]{1,20}") {
        let msg = format!(r#"{{"ts":{ts},"name":"{name}","value":{value:?}}}"#);
        let b = decode_one(Signal::Metrics, &msg).unwrap();
        prop_assert_eq!(column::<Float64Array>(&b, "value").value(0), value);
        prop_assert_eq!(column::<TimestampMillisecondArray>(&b, "ts").value(0), ts);
        prop_assert_eq!(strings(&b, "name").value(0), name.as_str());
    }
}

#[test]
fn exchange_records_out_of_range_are_dead_lettered_not_trusted() {
    let minute = NOW / 60_000;
    let trace = |through: i64| {
        format!(
            r#"{{"source_topic":"telemetry.spans","source_partition":1,"through_minute":{through},"minute":null,"red":[],"edges":[]}}"#
        )
    };
    let slo = |through: i64, total: u64| {
        format!(
            r#"{{"slo":"s","source_topic":"telemetry.spans","source_partition":1,"through_minute":{through},
                "minutes":[{{"minute":{},"good":1,"total":{total}}}]}}"#,
            through - 1
        )
    };
    assert!(decode_one(Signal::TracePartials, &trace(minute)).is_ok());
    assert!(decode_one(Signal::SloPartials, &slo(minute, 3)).is_ok());
    for (signal, json) in [
        // The poison pill that stopped `cara run` at every restart.
        (Signal::TracePartials, trace(i64::MAX)),
        (Signal::TracePartials, trace(minute + 24 * 60)),
        (Signal::SloPartials, slo(i64::MAX, 3)),
        (Signal::SloPartials, slo(minute, 0)),
    ] {
        let error = decode_one(signal, &json).unwrap_err();
        assert_eq!(error.kind(), "invalid_exchange_record", "{json}: {error}");
    }
}

#[test]
fn old_event_times_are_refused_by_default() {
    let mut d = Decoder::new(Signal::Metrics, DecodeLimits::default());
    // 1970 (a zeroed clock) against a 2023 message timestamp.
    let error = d
        .decode(Some(br#"{"ts":1000,"name":"up","value":1}"#), &pos(0))
        .unwrap_err();
    assert_eq!(error.kind(), "far_past", "{error}");
    assert!(error.to_string().contains("decode.max_past_age"), "{error}");
    // Ten years back still decodes (benchmarks replayed with fresh timestamps).
    let ten_years = NOW - 10 * 365 * 86_400_000;
    assert!(d
        .decode(
            Some(format!(r#"{{"ts":{ten_years},"name":"up","value":1}}"#).as_bytes()),
            &pos(1)
        )
        .is_ok());
}

#[test]
fn a_message_over_too_many_hours_is_refused_and_a_buffer_says_how_many_it_spans() {
    let hour = 3_600_000;
    let points = |hours: i64| {
        let items: Vec<String> = (0..hours)
            .map(|h| format!(r#"{{"ts":{},"name":"up","value":1}}"#, NOW - h * hour))
            .collect();
        format!("[{}]", items.join(","))
    };
    let mut d = Decoder::new(Signal::Metrics, limits());
    let error = d.decode(Some(points(169).as_bytes()), &pos(0)).unwrap_err();
    assert_eq!(error.kind(), "too_many_hours", "{error}");
    assert!(error.to_string().contains("169 hours"), "{error}");
    assert_eq!((d.len(), d.hours_spanned()), (0, 0), "nothing appended");
    d.decode(Some(points(168).as_bytes()), &pos(1)).unwrap();
    assert_eq!(d.hours_spanned(), 168);
    d.decode(
        Some(format!(r#"{{"ts":{},"name":"up","value":1}}"#, NOW + hour).as_bytes()),
        &pos(2),
    )
    .unwrap();
    assert_eq!(d.hours_spanned(), 169, "the buffer spans both messages");
    d.finish();
    assert_eq!(d.hours_spanned(), 0);
}

/// Loghub 2k (`../shared/datasets/loghub2k`, when present), each system's lines as
/// flat JSON with the system's own level field: every line decodes (none would be
/// dead-lettered), with its level normalised, its severity number, and the level as
/// written kept.
#[test]
fn every_loghub_line_decodes_with_its_own_level() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets/loghub2k");
    if !dir.is_dir() {
        eprintln!("skipped: {} is not here", dir.display());
        return;
    }
    let mut per_level: std::collections::BTreeMap<(String, String), usize> = Default::default();
    let mut lines = 0;
    for system in std::fs::read_dir(&dir).unwrap() {
        let system = system.unwrap();
        let name = system.file_name().to_string_lossy().into_owned();
        let csv_path = system
            .path()
            .join(format!("{name}_2k.log_structured_corrected.csv"));
        let Ok(mut reader) = csv::Reader::from_path(&csv_path) else {
            continue;
        };
        let headers = reader.headers().unwrap().clone();
        let column = |n: &str| headers.iter().position(|h| h == n);
        let (level_at, content_at) = (column("Level"), column("Content").unwrap());
        let mut decoder = Decoder::new(Signal::Logs, limits());
        for (i, record) in reader.records().enumerate() {
            let record = record.unwrap();
            let mut line = serde_json::json!({
                "ts": NOW + i as i64, "service": name, "message": &record[content_at],
            });
            if let Some(at) = level_at {
                line["level"] = serde_json::Value::from(&record[at]);
            }
            let payload = line.to_string();
            decoder
                .decode(Some(payload.as_bytes()), &pos(i as i64))
                .unwrap_or_else(|e| panic!("{name} line {i}: {e}"));
            lines += 1;
        }
        let batch = decoder.finish();
        let (level, text) = (strings(&batch, "level"), strings(&batch, "level_text"));
        for row in 0..batch.num_rows() {
            let written = if text.is_null(row) {
                "-"
            } else {
                text.value(row)
            };
            *per_level
                .entry((written.to_owned(), level.value(row).to_owned()))
                .or_default() += 1;
        }
    }
    assert_eq!(lines, 16 * 2000, "every system's 2,000 lines");
    let count = |written: &str, level: &str| {
        per_level
            .get(&(written.to_owned(), level.to_owned()))
            .copied()
            .unwrap_or_default()
    };
    // Android's logcat letters, BGL's SEVERE, Apache's syslog names, Windows' `Info`.
    assert_eq!(count("E", "error"), 3);
    assert_eq!(count("V", "trace"), 257);
    assert_eq!(count("SEVERE", "error"), 7);
    assert_eq!(count("notice", "info"), 1405);
    assert_eq!(count("Info", "info"), 2000);
    // Linux's `combo` is a facility, not a level: unknown, kept as written.
    assert_eq!(count("combo", "unknown"), 2000);
    let unknown: usize = per_level
        .iter()
        .filter(|((_, level), _)| level == "unknown")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(unknown, 2000, "{per_level:?}");
}
