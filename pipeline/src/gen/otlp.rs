//! The generator's records as the OpenTelemetry Collector's Kafka exporter writes
//! them: each flat-JSON message of the world becomes one export request, as
//! protobuf (`otlp_proto`) or OTLP JSON (`otlp_json`), carrying the same values, so
//! a run in either format feeds cara the same world.
//!
//! Mapping (the inverse of `decode::otlp`): a metric's `service` label becomes the
//! resource's `service.name`, its other labels the point's attributes; a counter a
//! monotonic cumulative sum, a gauge a gauge; a log's level a severity number and
//! text, its host the resource's `host.name`; a span's hex ids bytes, its kind and
//! status the OTLP enums, its `attributes` the span's.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span::SpanKind, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;
use serde_json::Value;

/// How the generator writes its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum GenFormat {
    /// cara's flat JSON.
    #[default]
    #[value(name = "flat_json")]
    FlatJson,
    /// OTLP export requests, protobuf.
    #[value(name = "otlp_proto")]
    OtlpProto,
    /// OTLP export requests, JSON.
    #[value(name = "otlp_json")]
    OtlpJson,
}

impl GenFormat {
    /// The topics of metrics, logs and spans a run in this format writes to by
    /// default: `{prefix}metrics`... for flat JSON, the Collector's names for OTLP.
    pub fn topics(self, flat_prefix: &str) -> [String; 3] {
        match self {
            GenFormat::FlatJson => {
                ["metrics", "logs", "spans"].map(|s| format!("{flat_prefix}{s}"))
            }
            GenFormat::OtlpProto | GenFormat::OtlpJson => {
                ["otlp_metrics", "otlp_logs", "otlp_spans"].map(String::from)
            }
        }
    }

    /// The payload of one flat-JSON message of `signal` (0 metrics, 1 logs, 2
    /// spans) in this format.
    pub fn payload(self, signal: usize, message: &Value) -> Vec<u8> {
        let request = match (self, signal) {
            (GenFormat::FlatJson, _) => return message.to_string().into_bytes(),
            (_, 0) => Request::Metrics(metrics_request(message)),
            (_, 1) => Request::Logs(logs_request(message)),
            _ => Request::Spans(traces_request(message)),
        };
        let json = self == GenFormat::OtlpJson;
        // The generator's own values always serialise.
        match request {
            Request::Metrics(r) if json => serde_json::to_vec(&r).unwrap_or_default(),
            Request::Logs(r) if json => serde_json::to_vec(&r).unwrap_or_default(),
            Request::Spans(r) if json => serde_json::to_vec(&r).unwrap_or_default(),
            Request::Metrics(r) => r.encode_to_vec(),
            Request::Logs(r) => r.encode_to_vec(),
            Request::Spans(r) => r.encode_to_vec(),
        }
    }
}

enum Request {
    Metrics(ExportMetricsServiceRequest),
    Logs(ExportLogsServiceRequest),
    Spans(ExportTraceServiceRequest),
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Any::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

fn scalar(key: &str, value: &Value) -> KeyValue {
    let any = match value {
        Value::String(s) => Any::StringValue(s.clone()),
        Value::Bool(b) => Any::BoolValue(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Any::IntValue(i),
            None => Any::DoubleValue(n.as_f64().unwrap_or_default()),
        },
        other => Any::StringValue(other.to_string()),
    };
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(any) }),
        ..Default::default()
    }
}

fn resource(attributes: Vec<KeyValue>) -> Option<Resource> {
    Some(Resource {
        attributes,
        ..Default::default()
    })
}

/// A flat-JSON time (epoch ms, or RFC 3339) in nanoseconds.
fn nanos(value: &Value) -> u64 {
    let ms = match value {
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .unwrap_or_default(),
        other => other.as_i64().unwrap_or_default(),
    };
    u64::try_from(ms).unwrap_or_default() * 1_000_000
}

fn hex_bytes(value: &Value) -> Vec<u8> {
    let s = value.as_str().unwrap_or_default();
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn metrics_request(message: &Value) -> ExportMetricsServiceRequest {
    let points: Vec<&Value> = match message {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    let service = points
        .first()
        .and_then(|p| p.get("labels"))
        .map_or("", |l| str_of(l, "service"));
    let metrics = points
        .iter()
        .map(|p| {
            let attributes = p
                .get("labels")
                .and_then(Value::as_object)
                .map(|labels| {
                    labels
                        .iter()
                        .filter(|(k, _)| k.as_str() != "service")
                        .map(|(k, v)| scalar(k, v))
                        .collect()
                })
                .unwrap_or_default();
            let point = NumberDataPoint {
                attributes,
                time_unix_nano: nanos(&p["ts"]),
                value: Some(number_data_point::Value::AsDouble(
                    p["value"].as_f64().unwrap_or_default(),
                )),
                ..Default::default()
            };
            let data = if str_of(p, "type") == "counter" {
                Data::Sum(Sum {
                    data_points: vec![point],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                })
            } else {
                Data::Gauge(Gauge {
                    data_points: vec![point],
                })
            };
            Metric {
                name: str_of(p, "name").to_owned(),
                data: Some(data),
                ..Default::default()
            }
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(vec![text("service.name", service)]),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// OpenTelemetry's severity number of a flat-JSON level (the first of its range).
fn severity_number(level: &str) -> i32 {
    match level {
        "trace" => 1,
        "debug" => 5,
        "warn" => 13,
        "error" => 17,
        "fatal" => 21,
        _ => 9,
    }
}

fn logs_request(line: &Value) -> ExportLogsServiceRequest {
    let level = line.get("level").and_then(Value::as_str).unwrap_or("info");
    let mut resource_attributes = vec![text("service.name", str_of(line, "service"))];
    if let Some(host) = line.get("host").and_then(Value::as_str) {
        resource_attributes.push(text("host.name", host));
    }
    let record = LogRecord {
        time_unix_nano: nanos(&line["ts"]),
        severity_number: severity_number(level),
        severity_text: level.to_owned(),
        body: Some(AnyValue {
            value: Some(Any::StringValue(str_of(line, "message").to_owned())),
        }),
        trace_id: hex_bytes(&line["trace_id"]),
        ..Default::default()
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(resource_attributes),
            scope_logs: vec![ScopeLogs {
                log_records: vec![record],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn traces_request(span: &Value) -> ExportTraceServiceRequest {
    let start = nanos(&span["start"]);
    let end = match span.get("end") {
        Some(end) => nanos(end),
        None => start + (span["duration_ms"].as_f64().unwrap_or_default() * 1e6).round() as u64,
    };
    let kind = match str_of(span, "kind") {
        "server" => SpanKind::Server,
        "client" => SpanKind::Client,
        "producer" => SpanKind::Producer,
        "consumer" => SpanKind::Consumer,
        "internal" => SpanKind::Internal,
        _ => SpanKind::Unspecified,
    };
    let code = if str_of(span, "status") == "error" {
        StatusCode::Error
    } else {
        StatusCode::Unset
    };
    let attributes = span
        .get("attributes")
        .and_then(Value::as_object)
        .map(|a| a.iter().map(|(k, v)| scalar(k, v)).collect())
        .unwrap_or_default();
    let otlp_span = Span {
        trace_id: hex_bytes(&span["trace_id"]),
        span_id: hex_bytes(&span["span_id"]),
        parent_span_id: hex_bytes(&span["parent_span_id"]),
        name: str_of(span, "name").to_owned(),
        kind: kind as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes,
        status: Some(Status {
            code: code as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(vec![text("service.name", str_of(span, "service"))]),
            scope_spans: vec![ScopeSpans {
                spans: vec![otlp_span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{DecodeLimits, Decoder, Signal, SourcePosition, WireFormat};
    use arrow::util::pretty::pretty_format_batches;

    /// The rows of one message as text, with the span durations beside them (an
    /// OTLP span's end is kept to the nanosecond, a flat one's to the millisecond:
    /// compared within a nanosecond).
    fn rows(signal: Signal, format: WireFormat, payload: &[u8]) -> (String, Vec<f64>) {
        let mut decoder = Decoder::with_format(signal, format, DecodeLimits::default());
        let pos = SourcePosition {
            topic: "t",
            partition: 0,
            offset: 0,
            kafka_ts_ms: Some(1_764_000_100_000),
        };
        decoder.decode(Some(payload), &pos).unwrap();
        let batch = decoder.finish();
        // The columns both formats fill the same way.
        let keep: Vec<usize> = [
            "ts",
            "name",
            "value",
            "type",
            "service",
            "level",
            "message",
            "trace_id",
            "host",
            "span_id",
            "parent_span_id",
            "kind",
            "start",
            "status",
        ]
        .iter()
        .filter_map(|c| batch.schema().index_of(c).ok())
        .collect();
        let durations = batch
            .column_by_name("duration_ms")
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::Float64Array>())
            .map(|d| d.values().to_vec())
            .unwrap_or_default();
        let batch = batch.project(&keep).unwrap();
        (
            pretty_format_batches(&[batch]).unwrap().to_string(),
            durations,
        )
    }

    /// Every record of a generated world decodes to the same values from OTLP, in
    /// both encodings, as from flat JSON.
    #[test]
    fn a_generated_world_reads_the_same_in_every_format() {
        let mut world = crate::gen::model::World::new(4, 7, 1_764_000_000_000, 2_000.0);
        let mut checked = [0usize; 3];
        for _ in 0..20 {
            let step = world.step(&[]);
            let messages = step
                .metrics
                .iter()
                .map(|(_, v, _)| (0, v))
                .chain(step.logs.iter().map(|(_, v)| (1, v)))
                .chain(step.spans.iter().map(|(_, v)| (2, v)));
            for (signal, message) in messages {
                let kind = [Signal::Metrics, Signal::Logs, Signal::Spans][signal];
                let flat = rows(
                    kind,
                    WireFormat::FlatJson,
                    &GenFormat::FlatJson.payload(signal, message),
                );
                for format in [GenFormat::OtlpProto, GenFormat::OtlpJson] {
                    let otlp = rows(kind, WireFormat::Otlp, &format.payload(signal, message));
                    assert_eq!(flat.0, otlp.0, "{format:?} {message}");
                    assert_eq!(flat.1.len(), otlp.1.len());
                    for (a, b) in flat.1.iter().zip(&otlp.1) {
                        assert!((a - b).abs() < 1e-6, "{format:?} duration {a} vs {b}");
                    }
                }
                checked[signal] += 1;
            }
        }
        assert!(checked.iter().all(|n| *n > 0), "{checked:?}");
    }
}
