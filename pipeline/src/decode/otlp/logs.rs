//! Log records of an `ExportLogsServiceRequest` into table `logs`.
//!
//! Mapping: `ts` from `timeUnixNano`, or `observedTimeUnixNano` when the record has
//! no time of its own; `service` from the resource's `service.name`
//! (`unknown_service` without one); `level` from the severity number's range
//! (1–4 trace, 5–8 debug, 9–12 info, 13–16 warn, 17–20 error, 21–24 fatal), or
//! else from the severity text as the flat JSON reads a level, or `info` when the
//! record has neither; `message` from the body (a string as it is, any other value
//! as JSON); `trace_id` as lower-case hex; `host` from the resource's `host.name`.
//! The `attributes` JSON holds the record's attributes, then the resource's, then
//! `otel.scope.name`, `otel.scope.version`, `otel.span_id`, `otel.event_name` and
//! `otel.dropped_attributes_count`, each only when set. The severity text is
//! `level_text`, the number `severity_number` (from the text when the record has
//! none).

use std::borrow::Cow;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use std::fmt::Write as _;

use super::traces::write_scope;
use super::values::{self, ObjectWriter, SERVICE_NAME, UNKNOWN_SERVICE};
use super::{append_all, at, parse, partition_nanos_ms};
use crate::decode::fields::RowContext;
use crate::decode::log::{self, Level, LogRow, LogRows, LEVELS};
use crate::decode::{DecodeError, FieldProblem};

/// Decodes one message into `rows`; how many log records it added.
pub(crate) fn decode(
    payload: &[u8],
    ctx: &RowContext<'_>,
    rows: &mut LogRows,
) -> Result<usize, DecodeError> {
    let request: ExportLogsServiceRequest = parse(payload)?;
    let mut parsed = Vec::new();
    for (r, resource_logs) in request.resource_logs.iter().enumerate() {
        let resource: &[KeyValue] = resource_logs
            .resource
            .as_ref()
            .map_or(&[], |r| r.attributes.as_slice());
        let service = values::service_of(resource).unwrap_or(UNKNOWN_SERVICE);
        let host = values::string_attribute(resource, "host.name");
        for (s, scope_logs) in resource_logs.scope_logs.iter().enumerate() {
            for (i, record) in scope_logs.log_records.iter().enumerate() {
                let path = || format!("resourceLogs[{r}].scopeLogs[{s}].logRecords[{i}]");
                let row = log_row(
                    record,
                    service,
                    host,
                    resource,
                    scope_logs.scope.as_ref(),
                    ctx,
                )
                .map_err(|p| at(path, p))?;
                parsed.push(row);
            }
        }
    }
    let none = DecodeError::NoOtlpRecords {
        signal: "log records",
        request: "ExportLogsServiceRequest",
    };
    append_all(parsed, ctx, none, |row, index| rows.append(row, ctx, index))
}

fn log_row<'r>(
    record: &'r LogRecord,
    service: &'r str,
    host: Option<&'r str>,
    resource: &'r [KeyValue],
    scope: Option<&'r InstrumentationScope>,
    ctx: &RowContext<'_>,
) -> Result<LogRow<'r>, FieldProblem> {
    let ts_ms = match (record.time_unix_nano, record.observed_time_unix_nano) {
        (0, 0) => {
            return Err(FieldProblem::BadTimestamp {
                field: "timeUnixNano",
                detail: "unset (0), and so is observedTimeUnixNano".into(),
            })
        }
        (0, observed) => partition_nanos_ms(observed, "observedTimeUnixNano", ctx)?,
        (time, _) => partition_nanos_ms(time, "timeUnixNano", ctx)?,
    };
    let message = match record.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(Any::StringValue(s)) => Cow::Borrowed(s.as_str()),
        None => Cow::Borrowed(""),
        Some(_) => {
            let mut text = String::new();
            values::push_json(record.body.as_ref(), &mut text);
            Cow::Owned(text)
        }
    };
    Ok(LogRow {
        ts_ms,
        service,
        level: level(record.severity_number, &record.severity_text),
        message,
        trace_id: values::hex_id(&record.trace_id).map(Cow::Owned),
        host,
        attributes: Some(attributes(record, resource, scope)),
        extra: None,
    })
}

/// The level of a severity number (OpenTelemetry's log data model), else of the
/// severity text (read as a flat-JSON level is); `info` when the record has
/// neither. The text is kept as written.
pub(crate) fn level(severity_number: i32, severity_text: &str) -> Level<'_> {
    let text = (!severity_text.is_empty()).then_some(Cow::Borrowed(severity_text));
    match severity_number {
        1..=24 => Level {
            normalised: LEVELS[((severity_number - 1) / 4) as usize],
            severity_number,
            text,
        },
        _ => log::level(text),
    }
}

fn attributes<'r>(
    record: &'r LogRecord,
    resource: &'r [KeyValue],
    scope: Option<&'r InstrumentationScope>,
) -> String {
    let mut object = ObjectWriter::new();
    object.attributes(&record.attributes, None);
    object.attributes(resource, Some(SERVICE_NAME));
    write_scope(&mut object, scope);
    if let Some(span_id) = values::hex_id(&record.span_id) {
        object.string("otel.span_id", &span_id);
    }
    if !record.event_name.is_empty() {
        object.string("otel.event_name", &record.event_name);
    }
    if record.dropped_attributes_count > 0 {
        object.field("otel.dropped_attributes_count", |out| {
            let _ = write!(out, "{}", record.dropped_attributes_count);
        });
    }
    object.finish()
}
