//! Archive rows of the two log stages: the template columns of table `logs`, and
//! tables `log_windows` (the combining stage) and `log_templates` (the first).

use std::sync::Arc;

use super::signals::{LogBatchOutput, TemplateState};
use crate::schema::Table;
use arrow::array::{
    ArrayRef, BooleanBuilder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow::error::ArrowError;

/// One closed window of one service's template (a row of `log_windows`).
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateWindow {
    /// Service.
    pub service: String,
    /// Template id.
    pub template_id: i64,
    /// Window start, ms.
    pub window_start: i64,
    /// Window end (exclusive), ms.
    pub window_end: i64,
    /// Lines of the template in the window, over every partition.
    pub lines: u64,
    /// Of which at an error level.
    pub error_lines: u64,
    /// The window is the first the service's catalogue saw the template in.
    pub first_seen: bool,
}

/// `rows` (table `logs`) with the operator's template columns in place of the nulls
/// the decoder left.
pub fn with_template_columns(
    rows: &RecordBatch,
    out: &LogBatchOutput,
) -> Result<RecordBatch, ArrowError> {
    let schema = rows.schema();
    let mut columns = rows.columns().to_vec();
    for (name, column) in [
        ("template_id", &out.template_id),
        ("template", &out.template),
        ("params", &out.params),
    ] {
        let index = schema.index_of(name)?;
        columns[index] = column.clone();
    }
    RecordBatch::try_new(schema, columns)
}

/// Table `log_windows`: one row per service and template per closed window.
pub fn log_windows_batch(
    windows: &[TemplateWindow],
    topic: &str,
    partition: i32,
) -> Result<RecordBatch, ArrowError> {
    let n = windows.len();
    let mut service = StringBuilder::new();
    let mut template_id = Int64Builder::with_capacity(n);
    let mut start = TimestampMillisecondBuilder::with_capacity(n);
    let mut end = TimestampMillisecondBuilder::with_capacity(n);
    let mut lines = Int64Builder::with_capacity(n);
    let mut errors = Int64Builder::with_capacity(n);
    let mut first = BooleanBuilder::with_capacity(n);
    let mut topics = StringBuilder::new();
    let mut partitions = Int32Builder::with_capacity(n);
    for w in windows {
        service.append_value(&w.service);
        template_id.append_value(w.template_id);
        start.append_value(w.window_start);
        end.append_value(w.window_end);
        lines.append_value(i64::try_from(w.lines).unwrap_or(i64::MAX));
        errors.append_value(i64::try_from(w.error_lines).unwrap_or(i64::MAX));
        first.append_value(w.first_seen);
        topics.append_value(topic);
        partitions.append_value(partition);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(service.finish()),
        Arc::new(template_id.finish()),
        Arc::new(start.finish().with_timezone("UTC")),
        Arc::new(end.finish().with_timezone("UTC")),
        Arc::new(lines.finish()),
        Arc::new(errors.finish()),
        Arc::new(first.finish()),
        Arc::new(topics.finish()),
        Arc::new(partitions.finish()),
    ];
    RecordBatch::try_new(Table::LogWindows.schema(), columns)
}

/// Table `log_templates`: one row per template version (`changed` ones only; see
/// `LogBatchOutput::versions`).
pub fn log_templates_batch(
    templates: &[TemplateState],
    topic: &str,
    partition: i32,
) -> Result<RecordBatch, ArrowError> {
    let changed: Vec<&TemplateState> = templates.iter().filter(|t| t.changed).collect();
    let n = changed.len();
    let mut service = StringBuilder::new();
    let mut template_id = Int64Builder::with_capacity(n);
    let mut template = StringBuilder::new();
    let mut version_at = TimestampMillisecondBuilder::with_capacity(n);
    let mut first_seen = TimestampMillisecondBuilder::with_capacity(n);
    let mut count = Int64Builder::with_capacity(n);
    let mut topics = StringBuilder::new();
    let mut partitions = Int32Builder::with_capacity(n);
    for t in changed {
        service.append_value(&t.service);
        template_id.append_value(t.template_id);
        template.append_value(&t.template);
        version_at.append_value(t.last_seen_ms);
        first_seen.append_value(t.first_seen_ms);
        count.append_value(i64::try_from(t.count).unwrap_or(i64::MAX));
        topics.append_value(topic);
        partitions.append_value(partition);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(service.finish()),
        Arc::new(template_id.finish()),
        Arc::new(template.finish()),
        Arc::new(version_at.finish().with_timezone("UTC")),
        Arc::new(first_seen.finish().with_timezone("UTC")),
        Arc::new(count.finish()),
        Arc::new(topics.finish()),
        Arc::new(partitions.finish()),
    ];
    RecordBatch::try_new(Table::LogTemplates.schema(), columns)
}
