//! Spans of an `ExportTraceServiceRequest` into table `spans`.
//!
//! Mapping: ids as lower-case hex (an empty parent id is a root span); `service`
//! from the resource's `service.name` (`unknown_service` without one); `kind` from
//! `SpanKind` (`internal`, `server`, `client`, `producer`, `consumer`; null when
//! unspecified); `start`/`end` from the nanosecond fields, `duration_ms` from their
//! exact difference; `status` `error` for `STATUS_CODE_ERROR`, else `ok`. The
//! `attributes` JSON holds the span's attributes, then the resource's (the span's
//! win on a shared key), then `otel.scope.name`, `otel.scope.version`,
//! `otel.status_description`, `otel.trace_state`, the events (`otel.events`: name,
//! time, attributes), the links (`otel.links`: trace and span id, attributes) and
//! the dropped counts, each only when set.

use std::borrow::Cow;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, Span};
use std::fmt::Write as _;

use super::values::{self, ObjectWriter, SERVICE_NAME, UNKNOWN_SERVICE};
use super::{append_all, at, nanos_ms, parse, partition_nanos_ms};
use crate::decode::fields::RowContext;
use crate::decode::span::{SpanRow, SpanRows};
use crate::decode::{DecodeError, FieldProblem};

/// Decodes one message into `rows`; how many spans it added.
pub(crate) fn decode(
    payload: &[u8],
    ctx: &RowContext<'_>,
    rows: &mut SpanRows,
) -> Result<usize, DecodeError> {
    let request: ExportTraceServiceRequest = parse(payload)?;
    let mut parsed = Vec::new();
    for (r, resource_spans) in request.resource_spans.iter().enumerate() {
        let resource: &[KeyValue] = resource_spans
            .resource
            .as_ref()
            .map_or(&[], |r| r.attributes.as_slice());
        let service = values::service_of(resource).unwrap_or(UNKNOWN_SERVICE);
        for (s, scope_spans) in resource_spans.scope_spans.iter().enumerate() {
            for (i, span) in scope_spans.spans.iter().enumerate() {
                let path = || format!("resourceSpans[{r}].scopeSpans[{s}].spans[{i}]");
                let row = span_row(span, service, resource, scope_spans.scope.as_ref(), ctx)
                    .map_err(|p| at(path, p))?;
                parsed.push(row);
            }
        }
    }
    let none = DecodeError::NoOtlpRecords {
        signal: "spans",
        request: "ExportTraceServiceRequest",
    };
    append_all(parsed, ctx, none, |row, index| rows.append(row, ctx, index))
}

fn span_row<'r>(
    span: &'r Span,
    service: &'r str,
    resource: &'r [KeyValue],
    scope: Option<&'r InstrumentationScope>,
    ctx: &RowContext<'_>,
) -> Result<SpanRow<'r>, FieldProblem> {
    let trace_id = values::hex_id(&span.trace_id).ok_or(FieldProblem::Missing("traceId"))?;
    let span_id = values::hex_id(&span.span_id).ok_or(FieldProblem::Missing("spanId"))?;
    let start_ms = partition_nanos_ms(span.start_time_unix_nano, "startTimeUnixNano", ctx)?;
    let end_ms = nanos_ms(span.end_time_unix_nano, "endTimeUnixNano", ctx)?;
    if span.end_time_unix_nano < span.start_time_unix_nano {
        return Err(FieldProblem::EndBeforeStart);
    }
    let duration_ns = span.end_time_unix_nano - span.start_time_unix_nano;
    let status = span.status.as_ref();
    let is_error = status.is_some_and(|s| s.code == StatusCode::Error as i32);
    Ok(SpanRow {
        trace_id: Cow::Owned(trace_id),
        span_id: Cow::Owned(span_id),
        parent_span_id: values::hex_id(&span.parent_span_id).map(Cow::Owned),
        service,
        name: &span.name,
        kind: kind_name(span.kind),
        start_ms,
        end_ms,
        duration_ms: duration_ns as f64 / 1e6,
        status: if is_error { "error" } else { "ok" },
        attributes: Some(attributes(span, resource, scope)),
        extra: None,
    })
}

/// The flat format's name of a `SpanKind`; `None` when unspecified or unknown.
pub(crate) fn kind_name(kind: i32) -> Option<&'static str> {
    match kind {
        1 => Some("internal"),
        2 => Some("server"),
        3 => Some("client"),
        4 => Some("producer"),
        5 => Some("consumer"),
        _ => None,
    }
}

fn attributes<'r>(
    span: &'r Span,
    resource: &'r [KeyValue],
    scope: Option<&'r InstrumentationScope>,
) -> String {
    let mut object = ObjectWriter::new();
    object.attributes(&span.attributes, None);
    object.attributes(resource, Some(SERVICE_NAME));
    write_scope(&mut object, scope);
    if let Some(status) = span.status.as_ref().filter(|s| !s.message.is_empty()) {
        object.string("otel.status_description", &status.message);
    }
    if !span.trace_state.is_empty() {
        object.string("otel.trace_state", &span.trace_state);
    }
    if !span.events.is_empty() {
        object.field("otel.events", |out| {
            let events = span.events.iter().map(|e| {
                let mut event = ObjectWriter::new();
                event.string("name", &e.name);
                event.field("time_unix_nano", |out| {
                    let _ = write!(out, "{}", e.time_unix_nano);
                });
                if !e.attributes.is_empty() {
                    event.field("attributes", |out| push_object(&e.attributes, out));
                }
                event.finish()
            });
            push_array(events, out);
        });
    }
    if !span.links.is_empty() {
        object.field("otel.links", |out| {
            let links = span.links.iter().map(|l| {
                let mut link = ObjectWriter::new();
                link.string("trace_id", &values::hex_id(&l.trace_id).unwrap_or_default());
                link.string("span_id", &values::hex_id(&l.span_id).unwrap_or_default());
                if !l.attributes.is_empty() {
                    link.field("attributes", |out| push_object(&l.attributes, out));
                }
                link.finish()
            });
            push_array(links, out);
        });
    }
    for (key, count) in [
        (
            "otel.dropped_attributes_count",
            span.dropped_attributes_count,
        ),
        ("otel.dropped_events_count", span.dropped_events_count),
        ("otel.dropped_links_count", span.dropped_links_count),
    ] {
        if count > 0 {
            object.field(key, |out| {
                let _ = write!(out, "{count}");
            });
        }
    }
    object.finish()
}

/// Writes attributes as a JSON object.
fn push_object(attributes: &[KeyValue], out: &mut String) {
    let mut object = ObjectWriter::new();
    object.attributes(attributes, None);
    out.push_str(&object.finish());
}

/// Writes JSON texts as an array.
fn push_array(items: impl Iterator<Item = String>, out: &mut String) {
    out.push('[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&item);
    }
    out.push(']');
}

/// The instrumentation scope's name and version, as OpenTelemetry's non-OTLP
/// exporters name them (`otel.scope.name`, `otel.scope.version`), when set.
pub(crate) fn write_scope<'r>(
    object: &mut ObjectWriter<'r>,
    scope: Option<&'r InstrumentationScope>,
) {
    let Some(scope) = scope else { return };
    if !scope.name.is_empty() {
        object.string("otel.scope.name", &scope.name);
    }
    if !scope.version.is_empty() {
        object.string("otel.scope.version", &scope.version);
    }
}
