//! Metric series: their names, and batches built from derived ones.
//!
//! Owns the text that names a series (`name{k="v",...}`, labels sorted, used by
//! the anomaly operator and the capacity forecasts alike) and turning points that
//! operators compute (log lines per template and window, error ratios, ...) into a
//! batch of table `metrics`' schema, so the anomaly operator scores them exactly
//! like points that arrived on Kafka.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Builder, Int32Builder, Int64Builder, MapBuilder, RecordBatch, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow::error::ArrowError;

use crate::schema::Table;

/// Appends `{k="v",...}` with labels sorted by key, so the same labels in any order
/// name the same series.
/// `sorted` is scratch space, reused from row to row.
pub(crate) fn series_key<'a>(
    key: &mut String,
    labels: impl Iterator<Item = (&'a str, &'a str)>,
    sorted: &mut Vec<(&'a str, &'a str)>,
) {
    sorted.clear();
    sorted.extend(labels);
    if sorted.is_empty() {
        return;
    }
    sorted.sort_unstable();
    key.push('{');
    for (i, &(k, v)) in sorted.iter().enumerate() {
        if i > 0 {
            key.push(',');
        }
        key.push_str(k);
        key.push_str("=\"");
        key.push_str(v);
        key.push('"');
    }
    key.push('}');
}

/// One point of a derived gauge series.
#[derive(Debug, Clone, PartialEq)]
pub struct DerivedPoint {
    /// Event time, ms since the epoch.
    pub ts_ms: i64,
    /// Metric name.
    pub name: String,
    /// Labels (any order; the operator sorts them).
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
    /// Where the point came from, kept in `_offset` (e.g. the row that closed its
    /// window).
    pub source_row: i64,
}

/// A batch of `points` as gauges, in table `metrics`' schema, provenance
/// `_topic = topic`, `_partition = partition`.
pub fn gauge_batch(
    points: &[DerivedPoint],
    topic: &str,
    partition: i32,
) -> Result<RecordBatch, ArrowError> {
    let mut ts = TimestampMillisecondBuilder::new().with_timezone("UTC");
    let mut name = StringBuilder::new();
    let mut value = Float64Builder::new();
    let mut kind = StringBuilder::new();
    let mut service = StringBuilder::new();
    let mut labels = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    let mut extra = StringBuilder::new();
    let mut topics = StringBuilder::new();
    let mut partitions = Int32Builder::new();
    let mut offsets = Int64Builder::new();
    let mut index = Int32Builder::new();
    for (i, point) in points.iter().enumerate() {
        ts.append_value(point.ts_ms);
        name.append_value(&point.name);
        value.append_value(point.value);
        kind.append_value("gauge");
        match point.labels.iter().find(|(k, _)| k == "service") {
            Some((_, s)) => service.append_value(s),
            None => service.append_null(),
        }
        for (k, v) in &point.labels {
            labels.keys().append_value(k);
            labels.values().append_value(v);
        }
        labels.append(true)?;
        extra.append_null();
        topics.append_value(topic);
        partitions.append_value(partition);
        offsets.append_value(point.source_row);
        index.append_value(i32::try_from(i).unwrap_or(i32::MAX));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ts.finish()),
        Arc::new(name.finish()),
        Arc::new(value.finish()),
        Arc::new(kind.finish()),
        Arc::new(service.finish()),
        Arc::new(labels.finish()),
        Arc::new(extra.finish()),
        Arc::new(topics.finish()),
        Arc::new(partitions.finish()),
        Arc::new(offsets.finish()),
        Arc::new(index.finish()),
    ];
    RecordBatch::try_new(Table::Metrics.schema(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, MapArray};
    use arrow::datatypes::{Float64Type, Int64Type};

    #[test]
    fn series_keys_ignore_label_order() {
        let mut a = String::from("up");
        series_key(
            &mut a,
            [("b", "2"), ("a", "1")].into_iter(),
            &mut Vec::new(),
        );
        let mut b = String::from("up");
        series_key(
            &mut b,
            [("a", "1"), ("b", "2")].into_iter(),
            &mut Vec::new(),
        );
        assert_eq!(a, b);
        assert_eq!(a, r#"up{a="1",b="2"}"#);
    }

    #[test]
    fn points_become_gauge_rows_with_their_labels() {
        let points = vec![
            DerivedPoint {
                ts_ms: 60_000,
                name: "log_template_lines".into(),
                labels: vec![
                    ("service".into(), "api".into()),
                    ("template_id".into(), "7".into()),
                ],
                value: 12.0,
                source_row: 41,
            },
            DerivedPoint {
                ts_ms: 60_000,
                name: "log_error_ratio".into(),
                labels: vec![],
                value: 0.25,
                source_row: 42,
            },
        ];
        let batch = gauge_batch(&points, "telemetry.logs", 3).unwrap();
        assert_eq!(batch.num_rows(), 2);
        let values = batch
            .column_by_name("value")
            .unwrap()
            .as_primitive::<Float64Type>();
        assert_eq!(values.values(), &[12.0, 0.25]);
        let offsets = batch
            .column_by_name("_offset")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(offsets.values(), &[41, 42]);
        let service = batch.column_by_name("service").unwrap().as_string::<i32>();
        assert_eq!(service.value(0), "api");
        assert!(service.is_null(1));
        let labels = batch
            .column_by_name("labels")
            .unwrap()
            .as_any()
            .downcast_ref::<MapArray>()
            .unwrap();
        assert_eq!(labels.value_length(0), 2);
        assert_eq!(labels.value_length(1), 0);
    }
}
