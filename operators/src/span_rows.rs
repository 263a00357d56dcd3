//! Span batches built from span records: the `spans` table as operators read it,
//! for backtests, benchmarks and tests that feed spans without the decoder.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow::error::ArrowError;

use crate::schema::Table;

/// One span.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpanRecord<'a> {
    /// Trace id.
    pub trace_id: &'a str,
    /// Span id (unique within its trace).
    pub span_id: &'a str,
    /// The parent's span id; `None` for a root.
    pub parent_span_id: Option<&'a str>,
    /// Service.
    pub service: &'a str,
    /// Operation.
    pub name: &'a str,
    /// Start, ms since the epoch.
    pub start_ms: i64,
    /// Duration, ms.
    pub duration_ms: f64,
    /// Status ok (else error).
    pub ok: bool,
}

/// A batch of table `spans` (kind `server`, no attributes), provenance
/// `_topic = topic`, `_partition = partition`, offsets in order from 0.
pub fn span_batch(
    spans: &[SpanRecord<'_>],
    topic: &str,
    partition: i32,
) -> Result<RecordBatch, ArrowError> {
    let n = spans.len();
    let mut trace = StringBuilder::new();
    let mut span = StringBuilder::new();
    let mut parent = StringBuilder::new();
    let mut service = StringBuilder::new();
    let mut name = StringBuilder::new();
    let mut kind = StringBuilder::new();
    let mut start = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut end = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut duration = Float64Builder::with_capacity(n);
    let mut status = StringBuilder::new();
    let mut attributes = StringBuilder::new();
    let mut extra = StringBuilder::new();
    let mut topics = StringBuilder::new();
    let mut partitions = Int32Builder::with_capacity(n);
    let mut offsets = Int64Builder::with_capacity(n);
    let mut index = Int32Builder::with_capacity(n);
    for (i, s) in spans.iter().enumerate() {
        trace.append_value(s.trace_id);
        span.append_value(s.span_id);
        parent.append_option(s.parent_span_id);
        service.append_value(s.service);
        name.append_value(s.name);
        kind.append_value("server");
        start.append_value(s.start_ms);
        end.append_value(s.start_ms + s.duration_ms.max(0.0).ceil() as i64);
        duration.append_value(s.duration_ms);
        status.append_value(if s.ok { "ok" } else { "error" });
        attributes.append_null();
        extra.append_null();
        topics.append_value(topic);
        partitions.append_value(partition);
        offsets.append_value(i as i64);
        index.append_value(0);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(trace.finish()),
        Arc::new(span.finish()),
        Arc::new(parent.finish()),
        Arc::new(service.finish()),
        Arc::new(name.finish()),
        Arc::new(kind.finish()),
        Arc::new(start.finish()),
        Arc::new(end.finish()),
        Arc::new(duration.finish()),
        Arc::new(status.finish()),
        Arc::new(attributes.finish()),
        Arc::new(extra.finish()),
        Arc::new(topics.finish()),
        Arc::new(partitions.finish()),
        Arc::new(offsets.finish()),
        Arc::new(index.finish()),
    ];
    RecordBatch::try_new(Table::Spans.schema(), columns)
}
