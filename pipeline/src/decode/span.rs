//! Spans: `{"trace_id", "span_id", "parent_span_id", "service", "name", "kind",
//! "start", "end" | "duration_ms", "status", "attributes"}` into table `spans`.
//! Either `end` or `duration_ms` must be given; the other is derived.

use std::borrow::Cow;
use std::sync::Arc;

use super::fields::{self, RowContext, Value};
use super::provenance::ProvenanceColumns;
use super::FieldProblem;
use arrow::array::{
    ArrayBuilder, ArrayRef, Float64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::record_batch::RecordBatch;
use cara_operators::schema::Table;

const KNOWN: &[&str] = &[
    "trace_id",
    "span_id",
    "parent_span_id",
    "service",
    "name",
    "kind",
    "start",
    "end",
    "duration_ms",
    "status",
    "attributes",
];

/// One validated span: borrowed from a flat-JSON message, or from an OTLP request
/// (whose binary ids become hex text, hence the `Cow`s).
pub(crate) struct SpanRow<'v> {
    pub trace_id: Cow<'v, str>,
    pub span_id: Cow<'v, str>,
    pub parent_span_id: Option<Cow<'v, str>>,
    pub service: &'v str,
    pub name: &'v str,
    pub kind: Option<&'v str>,
    pub start_ms: i64,
    pub end_ms: i64,
    pub duration_ms: f64,
    pub status: &'static str,
    pub attributes: Option<String>,
    pub extra: Option<String>,
}

pub(crate) fn parse<'v>(
    v: Value<'_, 'v>,
    ctx: &RowContext<'_>,
) -> Result<SpanRow<'v>, FieldProblem> {
    let mut record = fields::Record::read(v, KNOWN)?;
    let extra = record.extra.take();
    let obj = &record;
    let start_ms = fields::partition_time_ms(fields::required(obj, "start")?, "start", ctx)?;
    let (end_ms, duration_ms) = match (obj.present("end"), obj.present("duration_ms")) {
        (Some(end), _) => {
            let end_ms = fields::timestamp_ms(end, "end", ctx)?;
            (end_ms, (end_ms - start_ms) as f64)
        }
        (None, Some(d)) => {
            let d = fields::finite_number(d, "duration_ms")?;
            if d < 0.0 {
                return Err(FieldProblem::EndBeforeStart);
            }
            // The derived end obeys the same range and skew as a given one.
            let end_ms = start_ms.saturating_add(d.ceil() as i64);
            (fields::check_event_time(end_ms, "duration_ms", ctx)?, d)
        }
        (None, None) => return Err(FieldProblem::Missing("end")),
    };
    if end_ms < start_ms {
        return Err(FieldProblem::EndBeforeStart);
    }
    let status = match fields::optional_str(obj, "status")? {
        None | Some("ok") | Some("OK") | Some("unset") | Some("UNSET") => "ok",
        Some("error") | Some("ERROR") => "error",
        Some(other) => {
            return Err(FieldProblem::NotAllowed {
                field: "status",
                value: other.to_owned(),
                allowed: "ok, error, unset",
            })
        }
    };
    Ok(SpanRow {
        trace_id: Cow::Borrowed(fields::required_str(obj, "trace_id")?),
        span_id: Cow::Borrowed(fields::required_str(obj, "span_id")?),
        parent_span_id: fields::optional_str(obj, "parent_span_id")?.map(Cow::Borrowed),
        service: fields::required_str(obj, "service")?,
        name: fields::required_str(obj, "name")?,
        kind: fields::optional_str(obj, "kind")?,
        start_ms,
        end_ms,
        duration_ms,
        status,
        attributes: obj
            .present("attributes")
            .map(|a| fields::json_object_text(a, "attributes"))
            .transpose()?,
        extra,
    })
}

#[derive(Default)]
pub(crate) struct SpanRows {
    trace_id: StringBuilder,
    span_id: StringBuilder,
    parent_span_id: StringBuilder,
    service: StringBuilder,
    name: StringBuilder,
    kind: StringBuilder,
    start: TimestampMillisecondBuilder,
    end: TimestampMillisecondBuilder,
    duration_ms: Float64Builder,
    status: StringBuilder,
    attributes: StringBuilder,
    extra: StringBuilder,
    provenance: ProvenanceColumns,
}

impl SpanRows {
    pub fn append(&mut self, row: SpanRow<'_>, ctx: &RowContext<'_>, index: i32) {
        self.trace_id.append_value(row.trace_id);
        self.span_id.append_value(row.span_id);
        self.parent_span_id.append_option(row.parent_span_id);
        self.service.append_value(row.service);
        self.name.append_value(row.name);
        self.kind.append_option(row.kind);
        self.start.append_value(row.start_ms);
        self.end.append_value(row.end_ms);
        self.duration_ms.append_value(row.duration_ms);
        self.status.append_value(row.status);
        self.attributes.append_option(row.attributes);
        self.extra.append_option(row.extra);
        self.provenance.append(ctx.pos, index);
    }

    pub fn len(&self) -> usize {
        self.trace_id.len()
    }

    pub fn finish(&mut self) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.parent_span_id.finish()),
            Arc::new(self.service.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.start.finish().with_timezone("UTC")),
            Arc::new(self.end.finish().with_timezone("UTC")),
            Arc::new(self.duration_ms.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.attributes.finish()),
            Arc::new(self.extra.finish()),
        ];
        columns.extend(self.provenance.finish());
        super::batch(Table::Spans, columns)
    }
}
