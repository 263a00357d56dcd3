//! The OTLP mapping, field by field, in both encodings: every test decodes the same
//! request as protobuf and as OTLP JSON and requires the same rows.

use arrow::array::{Array, Float64Array, MapArray, StringArray, TimestampMillisecondArray};
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, summary_data_point::ValueAtQuantile, AggregationTemporality,
    Exemplar, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;

use crate::decode::{DecodeError, DecodeLimits, Decoder, Signal, SourcePosition, WireFormat};

/// 2023-11-14T22:13:20Z.
const NOW_MS: i64 = 1_700_000_000_000;
const NOW_NS: u64 = NOW_MS as u64 * 1_000_000;

fn pos() -> SourcePosition<'static> {
    SourcePosition {
        topic: "otlp_metrics",
        partition: 2,
        offset: 41,
        kafka_ts_ms: Some(NOW_MS),
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    any(key, Any::StringValue(value.into()))
}

fn any(key: &str, value: Any) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            text("service.name", service),
            text("host.name", "node-7"),
            any("k8s.pod.restarts", Any::IntValue(3)),
        ],
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "shop.http".into(),
        version: "1.2.0".into(),
        ..Default::default()
    })
}

/// Decodes `message` as one OTLP message of `signal`.
fn decode_bytes(signal: Signal, message: &[u8]) -> Result<RecordBatch, DecodeError> {
    let mut decoder = Decoder::with_format(signal, WireFormat::Otlp, DecodeLimits::default());
    decoder.decode(Some(message), &pos())?;
    Ok(decoder.finish())
}

/// Decodes `request` as protobuf and as JSON; both must give the same rows.
fn decode<M: Message + serde::Serialize>(signal: Signal, request: &M) -> RecordBatch {
    let proto = decode_bytes(signal, &request.encode_to_vec()).expect("protobuf decodes");
    let json = serde_json::to_vec(request).unwrap();
    let from_json = decode_bytes(signal, &json).expect("JSON decodes");
    assert_eq!(proto, from_json, "protobuf and JSON give the same rows");
    proto
}

fn strings<'a>(batch: &'a RecordBatch, column: &str) -> &'a StringArray {
    batch
        .column_by_name(column)
        .unwrap()
        .as_any()
        .downcast_ref()
        .unwrap()
}

fn times(batch: &RecordBatch, column: &str) -> Vec<i64> {
    let array: &TimestampMillisecondArray = batch
        .column_by_name(column)
        .unwrap()
        .as_any()
        .downcast_ref()
        .unwrap();
    array.values().to_vec()
}

fn floats(batch: &RecordBatch, column: &str) -> Vec<f64> {
    let array: &Float64Array = batch
        .column_by_name(column)
        .unwrap()
        .as_any()
        .downcast_ref()
        .unwrap();
    array.values().to_vec()
}

fn labels(batch: &RecordBatch, row: usize) -> Vec<(String, String)> {
    let map: &MapArray = batch
        .column_by_name("labels")
        .unwrap()
        .as_any()
        .downcast_ref()
        .unwrap();
    let entries = map.value(row);
    let keys = entries
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    let values = entries
        .column(1)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    (0..keys.len())
        .map(|i| (keys.value(i).to_owned(), values.value(i).to_owned()))
        .collect()
}

fn json(batch: &RecordBatch, column: &str, row: usize) -> serde_json::Value {
    serde_json::from_str(strings(batch, column).value(row)).unwrap()
}

fn number(time_ns: u64, value: f64, attributes: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        time_unix_nano: time_ns,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn metrics_request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("checkout"),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metric(name: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        unit: "ms".into(),
        description: "how long".into(),
        data: Some(data),
        ..Default::default()
    }
}

#[test]
fn gauge_points_keep_attributes_resource_and_service() {
    let mut point = number(NOW_NS + 1_500_000, 0.75, vec![text("route", "/pay")]);
    point.exemplars = vec![Exemplar::default(), Exemplar::default()];
    let int_point = NumberDataPoint {
        time_unix_nano: NOW_NS + 2_000_000,
        value: Some(number_data_point::Value::AsInt(-4)),
        // The point's own `host.name` wins over the resource's.
        attributes: vec![text("host.name", "pod-a")],
        ..Default::default()
    };
    let request = metrics_request(vec![metric(
        "cpu.utilization",
        Data::Gauge(Gauge {
            data_points: vec![point, int_point],
        }),
    )]);
    let mut decoder =
        Decoder::with_format(Signal::Metrics, WireFormat::Otlp, DecodeLimits::default());
    assert_eq!(
        decoder.decode(Some(&request.encode_to_vec()), &pos()),
        Ok(2)
    );
    assert_eq!(decoder.take_unused().exemplars, 2, "exemplars are counted");
    let b = decode(Signal::Metrics, &request);
    assert_eq!(b.num_rows(), 2);
    assert_eq!(times(&b, "ts"), vec![NOW_MS + 1, NOW_MS + 2]);
    assert_eq!(strings(&b, "name").value(0), "cpu.utilization");
    assert_eq!(floats(&b, "value"), vec![0.75, -4.0]);
    assert_eq!(strings(&b, "type").value(0), "gauge");
    assert_eq!(strings(&b, "service").value(1), "checkout");
    let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    assert_eq!(
        labels(&b, 0),
        vec![
            pair("route", "/pay"),
            pair("service", "checkout"),
            pair("host.name", "node-7"),
            pair("k8s.pod.restarts", "3"),
        ]
    );
    assert_eq!(
        labels(&b, 1),
        vec![
            pair("host.name", "pod-a"),
            pair("service", "checkout"),
            pair("k8s.pod.restarts", "3"),
        ]
    );
    assert_eq!(
        json(&b, "extra", 0),
        serde_json::json!({"unit": "ms", "description": "how long",
            "otel.scope.name": "shop.http", "otel.scope.version": "1.2.0"})
    );
    assert_eq!(strings(&b, "_topic").value(0), "otlp_metrics");
}

fn sum(temporality: AggregationTemporality, monotonic: bool, values: &[f64]) -> Metric {
    let points = values
        .iter()
        .enumerate()
        .map(|(i, v)| number(NOW_NS + i as u64 * 10_000_000_000, *v, vec![]))
        .collect();
    metric(
        "requests",
        Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: temporality as i32,
            is_monotonic: monotonic,
        }),
    )
}

#[test]
fn sums_become_counters_or_gauges_and_deltas_accumulate_per_series() {
    use AggregationTemporality::{Cumulative, Delta};
    let cases = [
        (Cumulative, true, "counter", vec![5.0, 9.0]),
        (Cumulative, false, "gauge", vec![5.0, 4.0]),
        (Delta, true, "counter", vec![5.0, 9.0]),
        (Delta, false, "gauge", vec![5.0, 9.0]),
    ];
    for (temporality, monotonic, kind, expected) in cases {
        let values = match (temporality, monotonic) {
            (Delta, _) => [5.0, 4.0],
            (_, true) => [5.0, 9.0],
            _ => [5.0, 4.0],
        };
        let b = decode(
            Signal::Metrics,
            &metrics_request(vec![sum(temporality, monotonic, &values)]),
        );
        assert_eq!(
            strings(&b, "type").value(0),
            kind,
            "{temporality:?} {monotonic}"
        );
        assert_eq!(floats(&b, "value"), expected, "{temporality:?} {monotonic}");
    }
}

#[test]
fn delta_totals_carry_across_messages_and_survive_only_accepted_ones() {
    let mut decoder =
        Decoder::with_format(Signal::Metrics, WireFormat::Otlp, DecodeLimits::default());
    let message = |value: f64| {
        metrics_request(vec![sum(AggregationTemporality::Delta, true, &[value])]).encode_to_vec()
    };
    decoder.decode(Some(&message(3.0)), &pos()).unwrap();
    // A refused message (its second metric has no data) adds nothing to the totals.
    let mut bad = metrics_request(vec![sum(AggregationTemporality::Delta, true, &[100.0])]);
    bad.resource_metrics[0].scope_metrics[0]
        .metrics
        .push(Metric {
            name: "broken".into(),
            ..Default::default()
        });
    let refused = decoder
        .decode(Some(&bad.encode_to_vec()), &pos())
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("metrics[1] `broken`: metric has no data"),
        "{refused}"
    );
    decoder.decode(Some(&message(4.0)), &pos()).unwrap();
    let b = decoder.finish();
    assert_eq!(floats(&b, "value"), vec![3.0, 7.0]);
}

#[test]
fn histograms_give_count_sum_buckets_and_interval_percentiles() {
    let point = |time_ns: u64, counts: Vec<u64>, total: f64| HistogramDataPoint {
        time_unix_nano: time_ns,
        count: counts.iter().sum(),
        sum: Some(total),
        explicit_bounds: vec![100.0, 200.0],
        bucket_counts: counts,
        ..Default::default()
    };
    let request = |p: HistogramDataPoint| {
        metrics_request(vec![metric(
            "latency",
            Data::Histogram(Histogram {
                data_points: vec![p],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            }),
        )])
    };
    let first = decode(
        Signal::Metrics,
        &request(point(NOW_NS, vec![10, 30, 0], 5000.0)),
    );
    let names: Vec<&str> = (0..first.num_rows())
        .map(|i| strings(&first, "name").value(i))
        .collect();
    assert_eq!(
        names,
        vec![
            "latency_count",
            "latency_sum",
            "latency_bucket",
            "latency_bucket",
            "latency_bucket",
            "latency_p50",
            "latency_p90",
            "latency_p99"
        ]
    );
    let values = floats(&first, "value");
    assert_eq!(&values[..5], &[40.0, 5000.0, 10.0, 40.0, 40.0]);
    // p50: rank 20 of 40, the 10th of 30 in (100, 200].
    assert!(
        (values[5] - (100.0 + 100.0 / 3.0)).abs() < 1e-9,
        "{}",
        values[5]
    );
    assert_eq!(labels(&first, 2).last().unwrap().1, "100");
    assert_eq!(
        labels(&first, 4).last().unwrap(),
        &("le".into(), "+Inf".into())
    );
    assert_eq!(strings(&first, "type").value(2), "counter");
    assert_eq!(strings(&first, "type").value(5), "gauge");

    // The percentiles of a cumulative series are those of its increase.
    let mut decoder =
        Decoder::with_format(Signal::Metrics, WireFormat::Otlp, DecodeLimits::default());
    for p in [
        point(NOW_NS, vec![10, 30, 0], 5000.0),
        point(NOW_NS + 10_000_000_000, vec![20, 30, 0], 5500.0),
    ] {
        decoder
            .decode(Some(&request(p).encode_to_vec()), &pos())
            .unwrap();
    }
    let both = decoder.finish();
    let p50: Vec<f64> = (0..both.num_rows())
        .filter(|i| strings(&both, "name").value(*i) == "latency_p50")
        .map(|i| floats(&both, "value")[i])
        .collect();
    // The second interval added 10 values in (0, 100]: its median is 50.
    assert_eq!(p50.len(), 2);
    assert!((p50[1] - 50.0).abs() < 1e-9, "{p50:?}");
}

#[test]
fn summaries_give_count_sum_and_quantile_gauges() {
    let request = metrics_request(vec![metric(
        "rpc",
        Data::Summary(Summary {
            data_points: vec![SummaryDataPoint {
                time_unix_nano: NOW_NS,
                count: 7,
                sum: 70.5,
                quantile_values: vec![
                    ValueAtQuantile {
                        quantile: 0.5,
                        value: 9.0,
                    },
                    ValueAtQuantile {
                        quantile: 0.99,
                        value: 20.0,
                    },
                ],
                ..Default::default()
            }],
        }),
    )]);
    let b = decode(Signal::Metrics, &request);
    assert_eq!(floats(&b, "value"), vec![7.0, 70.5, 9.0, 20.0]);
    assert_eq!(strings(&b, "name").value(2), "rpc");
    assert_eq!(
        labels(&b, 3).last().unwrap(),
        &("quantile".into(), "0.99".into())
    );
}

#[test]
fn points_without_a_recorded_value_or_finite_value_are_counted_not_rows() {
    let mut stale = number(NOW_NS, 1.0, vec![]);
    stale.flags = 1;
    let request = metrics_request(vec![metric(
        "g",
        Data::Gauge(Gauge {
            data_points: vec![
                stale,
                number(NOW_NS, f64::NAN, vec![]),
                number(NOW_NS, 2.0, vec![]),
            ],
        }),
    )]);
    let mut decoder =
        Decoder::with_format(Signal::Metrics, WireFormat::Otlp, DecodeLimits::default());
    assert_eq!(
        decoder.decode(Some(&request.encode_to_vec()), &pos()),
        Ok(1)
    );
    let unused = decoder.take_unused();
    assert_eq!((unused.no_recorded_value, unused.not_finite), (1, 1));
    assert_eq!(decoder.take_unused(), Default::default(), "taken once");
}

fn span(start_ns: u64, end_ns: u64) -> Span {
    Span {
        trace_id: (1..=16).collect(),
        span_id: vec![0xAB; 8],
        parent_span_id: vec![],
        name: "POST /pay".into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: start_ns,
        end_time_unix_nano: end_ns,
        attributes: vec![text("http.route", "/pay"), text("host.name", "span-host")],
        ..Default::default()
    }
}

fn traces_request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource("checkout"),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn spans_map_ids_kind_status_times_and_keep_the_rest_in_attributes() {
    let mut failed = span(NOW_NS, NOW_NS + 12_345_678);
    failed.parent_span_id = vec![0x01; 8];
    failed.kind = span::SpanKind::Client as i32;
    failed.status = Some(Status {
        message: "card declined".into(),
        code: status::StatusCode::Error as i32,
    });
    failed.events = vec![span::Event {
        time_unix_nano: NOW_NS + 5,
        name: "retry".into(),
        ..Default::default()
    }];
    failed.links = vec![span::Link {
        trace_id: vec![0xFF; 16],
        span_id: vec![0x02; 8],
        ..Default::default()
    }];
    let mut unspecified = span(NOW_NS + 1_000_000, NOW_NS + 1_000_000);
    unspecified.kind = 0;
    unspecified.status = Some(Status {
        code: status::StatusCode::Ok as i32,
        ..Default::default()
    });
    let b = decode(
        Signal::Spans,
        &traces_request(vec![span(NOW_NS, NOW_NS + 2_000_000), failed, unspecified]),
    );
    assert_eq!(b.num_rows(), 3);
    assert_eq!(
        strings(&b, "trace_id").value(0),
        "0102030405060708090a0b0c0d0e0f10"
    );
    assert_eq!(strings(&b, "span_id").value(0), "abababababababab");
    assert!(
        strings(&b, "parent_span_id").is_null(0),
        "an empty parent is a root"
    );
    assert_eq!(strings(&b, "parent_span_id").value(1), "0101010101010101");
    assert_eq!(strings(&b, "service").value(0), "checkout");
    assert_eq!(strings(&b, "name").value(0), "POST /pay");
    assert_eq!(strings(&b, "kind").value(0), "server");
    assert_eq!(strings(&b, "kind").value(1), "client");
    assert!(strings(&b, "kind").is_null(2));
    assert_eq!(times(&b, "start"), vec![NOW_MS, NOW_MS, NOW_MS + 1]);
    assert_eq!(times(&b, "end"), vec![NOW_MS + 2, NOW_MS + 12, NOW_MS + 1]);
    assert_eq!(floats(&b, "duration_ms"), vec![2.0, 12.345678, 0.0]);
    let status: Vec<&str> = (0..3).map(|i| strings(&b, "status").value(i)).collect();
    assert_eq!(status, vec!["ok", "error", "ok"]);
    assert_eq!(
        json(&b, "attributes", 0),
        serde_json::json!({"http.route": "/pay", "host.name": "span-host",
            "k8s.pod.restarts": 3, "otel.scope.name": "shop.http",
            "otel.scope.version": "1.2.0"})
    );
    let attributes = json(&b, "attributes", 1);
    assert_eq!(attributes["otel.status_description"], "card declined");
    assert_eq!(
        attributes["otel.events"],
        serde_json::json!([{"name": "retry", "time_unix_nano": NOW_NS + 5}])
    );
    assert_eq!(
        attributes["otel.links"][0]["trace_id"],
        "ffffffffffffffffffffffffffffffff"
    );
}

#[test]
fn a_bad_span_refuses_the_message_with_its_path() {
    let mut missing_id = span(NOW_NS, NOW_NS + 1);
    missing_id.trace_id.clear();
    let backwards = span(NOW_NS + 5_000_000, NOW_NS);
    let unset_time = span(0, NOW_NS);
    let far_future = span(NOW_NS + 86_400_000_000_000, NOW_NS + 86_400_000_000_001);
    for (bad, expected) in [
        (missing_id, "missing required field `traceId`"),
        (backwards, "span ends before it starts"),
        (unset_time, "field `startTimeUnixNano`: unset (0)"),
        (far_future, "ahead of the message timestamp"),
    ] {
        let request = traces_request(vec![span(NOW_NS, NOW_NS + 1), bad]);
        let error = decode_bytes(Signal::Spans, &request.encode_to_vec()).unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("resourceSpans[0].scopeSpans[0].spans[1]: ")
                && text.contains(expected),
            "{text}"
        );
    }
}

fn log(severity_number: i32, severity_text: &str, body: Any) -> LogRecord {
    LogRecord {
        time_unix_nano: NOW_NS + 3_000_000,
        observed_time_unix_nano: NOW_NS + 9_000_000,
        severity_number,
        severity_text: severity_text.into(),
        body: Some(AnyValue { value: Some(body) }),
        attributes: vec![text("user", "u1")],
        trace_id: vec![0xCD; 16],
        span_id: vec![0xEF; 8],
        ..Default::default()
    }
}

fn logs_request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("checkout"),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn log_records_map_severity_body_ids_host_and_attributes() {
    let mut observed_only = log(0, "", Any::StringValue("no time".into()));
    observed_only.time_unix_nano = 0;
    let structured = Any::KvlistValue(opentelemetry_proto::tonic::common::v1::KeyValueList {
        values: vec![any("code", Any::IntValue(503))],
    });
    let b = decode(
        Signal::Logs,
        &logs_request(vec![
            log(17, "ERROR", Any::StringValue("payment failed".into())),
            log(0, "Warning", structured),
            log(0, "SEVERE", Any::BoolValue(true)),
            log(22, "", Any::StringValue("down".into())),
            observed_only,
        ]),
    );
    assert_eq!(b.num_rows(), 5);
    let levels: Vec<&str> = (0..5).map(|i| strings(&b, "level").value(i)).collect();
    assert_eq!(levels, vec!["error", "warn", "error", "fatal", "info"]);
    let messages: Vec<&str> = (0..5).map(|i| strings(&b, "message").value(i)).collect();
    assert_eq!(
        messages,
        vec![
            "payment failed",
            r#"{"code":503}"#,
            "true",
            "down",
            "no time"
        ]
    );
    assert_eq!(
        times(&b, "ts"),
        vec![NOW_MS + 3, NOW_MS + 3, NOW_MS + 3, NOW_MS + 3, NOW_MS + 9]
    );
    assert_eq!(strings(&b, "service").value(0), "checkout");
    assert_eq!(strings(&b, "host").value(0), "node-7");
    assert_eq!(strings(&b, "trace_id").value(0), "cd".repeat(16));
    assert_eq!(
        json(&b, "attributes", 0),
        serde_json::json!({"user": "u1", "host.name": "node-7", "k8s.pod.restarts": 3,
            "otel.scope.name": "shop.http", "otel.scope.version": "1.2.0",
            "otel.span_id": "efefefefefefefef"})
    );
    let texts: Vec<Option<&str>> = (0..5)
        .map(|i| {
            let t = strings(&b, "level_text");
            (!t.is_null(i)).then(|| t.value(i))
        })
        .collect();
    assert_eq!(
        texts,
        vec![Some("ERROR"), Some("Warning"), Some("SEVERE"), None, None]
    );
    let numbers: &arrow::array::Int32Array = b
        .column_by_name("severity_number")
        .unwrap()
        .as_any()
        .downcast_ref()
        .unwrap();
    assert_eq!(numbers.values().to_vec(), vec![17, 13, 17, 22, 9]);
}

#[test]
fn a_resource_without_service_name_is_the_unknown_service() {
    let mut request = logs_request(vec![log(9, "INFO", Any::StringValue("hi".into()))]);
    request.resource_logs[0].resource = None;
    let b = decode(Signal::Logs, &request);
    assert_eq!(strings(&b, "service").value(0), "unknown_service");
    assert!(strings(&b, "host").is_null(0));
}

#[test]
fn wrong_requests_and_bad_bytes_are_refused_with_a_reason() {
    let spans = traces_request(vec![span(NOW_NS, NOW_NS + 1)]);
    // A trace request on the metrics topic: its spans read as metrics without data.
    let error = decode_bytes(Signal::Metrics, &spans.encode_to_vec()).unwrap_err();
    assert!(
        matches!(
            error,
            DecodeError::InvalidProtobuf(_) | DecodeError::Otlp { .. }
        ),
        "{error}"
    );
    // In JSON its fields are unknown to a metrics request: nothing to decode.
    let error = decode_bytes(Signal::Metrics, &serde_json::to_vec(&spans).unwrap()).unwrap_err();
    assert_eq!(error.kind(), "no_otlp_records", "{error}");
    // Truncated protobuf.
    let bytes = spans.encode_to_vec();
    let error = decode_bytes(Signal::Spans, &bytes[..bytes.len() - 3]).unwrap_err();
    assert_eq!(error.kind(), "invalid_protobuf", "{error}");
    // An empty request.
    let empty = ExportLogsServiceRequest::default().encode_to_vec();
    assert_eq!(
        decode_bytes(Signal::Logs, &[empty, vec![0x0A, 0x00]].concat())
            .unwrap_err()
            .kind(),
        "no_otlp_records"
    );
    // Broken JSON.
    let error = decode_bytes(Signal::Logs, br#"{"resourceLogs": [}"#).unwrap_err();
    assert_eq!(error.kind(), "invalid_json", "{error}");
}

#[test]
fn flat_json_topics_are_not_read_as_otlp() {
    let mut decoder = Decoder::new(Signal::Spans, DecodeLimits::default());
    let otlp = serde_json::to_vec(&traces_request(vec![span(NOW_NS, NOW_NS + 1)])).unwrap();
    assert!(decoder.decode(Some(&otlp), &pos()).is_err());
}

/// The golden files (`golden/`): one request per signal made with the official
/// `opentelemetry-proto` package (`golden/make_inputs.py`), as protobuf and as OTLP
/// JSON, and the rows each must give (`golden/SIGNAL.rows`, reviewed by hand;
/// `CARA_UPDATE_GOLDEN=1` rewrites them after a deliberate change of the mapping).
#[test]
fn golden_requests_give_their_golden_rows_in_both_encodings() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/decode/otlp/golden");
    let position = SourcePosition {
        topic: "otlp",
        partition: 0,
        offset: 0,
        kafka_ts_ms: Some(1_800_000_060_000),
    };
    for (name, signal) in [
        ("metrics", Signal::Metrics),
        ("logs", Signal::Logs),
        ("spans", Signal::Spans),
    ] {
        let mut outputs = Vec::new();
        for encoding in ["pb", "json"] {
            let input = std::fs::read(dir.join(format!("{name}.{encoding}"))).unwrap();
            let mut decoder =
                Decoder::with_format(signal, WireFormat::Otlp, DecodeLimits::default());
            decoder
                .decode(Some(&input), &position)
                .unwrap_or_else(|e| panic!("{name}.{encoding}: {e}"));
            let batch = decoder.finish();
            let text = arrow::util::pretty::pretty_format_batches(&[batch])
                .unwrap()
                .to_string();
            outputs.push(text + "\n");
        }
        assert_eq!(outputs[0], outputs[1], "{name}: protobuf and JSON differ");
        let golden = dir.join(format!("{name}.rows"));
        if std::env::var_os("CARA_UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &outputs[0]).unwrap();
        }
        let expected = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e}", golden.display()));
        assert_eq!(
            outputs[0],
            expected,
            "{name}: rows differ from {}",
            golden.display()
        );
    }
}
