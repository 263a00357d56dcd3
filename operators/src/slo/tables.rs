//! Rows of the SLO tables: `slo_partials` (the exchanged per-minute counts, as the
//! combining stage reads them) and `slo` (status records).

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, Float64Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    StructArray, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Fields};
use arrow::error::ArrowError;

use super::partial::SloPartial;
use super::{SloStatus, MINUTE_MS, WINDOWS};
use crate::schema::{slo_window_type, Table};

/// Builds table `slo_partials` from exchange records, one row per minute.
#[derive(Debug, Default)]
pub struct PartialRows {
    slo: StringBuilder,
    source_topic: StringBuilder,
    source_partition: Int32Builder,
    through: TimestampMillisecondBuilder,
    minute: TimestampMillisecondBuilder,
    good: Int64Builder,
    total: Int64Builder,
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    index: Int32Builder,
}

impl PartialRows {
    /// Appends the rows of `record`, read from `topic`/`partition` at `offset`.
    pub fn append(&mut self, record: &SloPartial, topic: &str, partition: i32, offset: i64) {
        let mut row = |minute: Option<(i64, u64, u64)>, index: i32| {
            self.slo.append_value(&record.slo);
            self.source_topic.append_value(&record.source_topic);
            self.source_partition.append_value(record.source_partition);
            self.through
                .append_value(record.through_minute.saturating_mul(MINUTE_MS));
            match minute {
                Some((m, good, total)) => {
                    self.minute.append_value(m.saturating_mul(MINUTE_MS));
                    self.good
                        .append_value(i64::try_from(good).unwrap_or(i64::MAX));
                    self.total
                        .append_value(i64::try_from(total).unwrap_or(i64::MAX));
                }
                None => {
                    self.minute.append_null();
                    self.good.append_null();
                    self.total.append_null();
                }
            }
            self.topic.append_value(topic);
            self.partition.append_value(partition);
            self.offset.append_value(offset);
            self.index.append_value(index);
        };
        if record.minutes.is_empty() {
            row(None, 0);
        }
        for (i, m) in record.minutes.iter().enumerate() {
            row(
                Some((m.minute, m.good, m.total)),
                i32::try_from(i).unwrap_or(i32::MAX),
            );
        }
    }

    /// Rows appended so far.
    pub fn len(&self) -> usize {
        self.source_partition.len()
    }

    /// True before the first row.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batch, leaving the builder empty.
    pub fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.slo.finish()),
            Arc::new(self.source_topic.finish()),
            Arc::new(self.source_partition.finish()),
            Arc::new(self.through.finish().with_timezone("UTC")),
            Arc::new(self.minute.finish().with_timezone("UTC")),
            Arc::new(self.good.finish()),
            Arc::new(self.total.finish()),
            Arc::new(self.topic.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.index.finish()),
        ];
        // Every column is built above in the schema's order and types.
        RecordBatch::try_new(Table::SloPartials.schema(), columns)
            .unwrap_or_else(|e| panic!("slo_partials columns do not match the schema: {e}"))
    }
}

/// Table `slo`: one row per status record.
pub fn slo_batch(statuses: &[SloStatus]) -> Result<RecordBatch, ArrowError> {
    let n = statuses.len();
    let mut slo = StringBuilder::new();
    let mut ts = TimestampMillisecondBuilder::with_capacity(n);
    let mut budget = Float64Builder::with_capacity(n);
    let mut windows: Vec<(Int64Builder, Int64Builder, Float64Builder)> = WINDOWS
        .iter()
        .map(|_| {
            (
                Int64Builder::with_capacity(n),
                Int64Builder::with_capacity(n),
                Float64Builder::with_capacity(n),
            )
        })
        .collect();
    for status in statuses {
        slo.append_value(&status.slo);
        ts.append_value(status.ts);
        budget.append_value(status.budget_remaining);
        for ((name, _), (good, total, burn)) in WINDOWS.iter().zip(windows.iter_mut()) {
            let w = status
                .windows
                .get(*name)
                .copied()
                .unwrap_or(super::WindowStatus {
                    good: 0,
                    total: 0,
                    burn_rate: 0.0,
                });
            good.append_value(i64::try_from(w.good).unwrap_or(i64::MAX));
            total.append_value(i64::try_from(w.total).unwrap_or(i64::MAX));
            burn.append_value(w.burn_rate);
        }
    }
    let DataType::Struct(window_fields) = slo_window_type() else {
        unreachable!("slo_window_type is a struct")
    };
    let mut per_window: Vec<ArrayRef> = Vec::with_capacity(WINDOWS.len());
    for (good, total, burn) in windows.iter_mut() {
        let fields: Vec<ArrayRef> = vec![
            Arc::new(good.finish()),
            Arc::new(total.finish()),
            Arc::new(burn.finish()),
        ];
        per_window.push(Arc::new(StructArray::try_new(
            window_fields.clone(),
            fields,
            None,
        )?));
    }
    let schema = Table::Slo.schema();
    let windows_field = schema.field_with_name("windows")?;
    let DataType::Struct(all_fields) = windows_field.data_type() else {
        unreachable!("windows is a struct")
    };
    let all_fields: Fields = all_fields.clone();
    let windows = StructArray::try_new(all_fields, per_window, None)?;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(slo.finish()),
        Arc::new(ts.finish().with_timezone("UTC")),
        Arc::new(windows),
        Arc::new(budget.finish()),
    ];
    RecordBatch::try_new(schema, columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slo::partial::MinuteCounts;
    use crate::slo::WindowStatus;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int64Type};
    use std::collections::BTreeMap;

    #[test]
    fn partial_records_become_one_row_per_minute_or_one_progress_row() {
        let mut rows = PartialRows::default();
        let record = |minutes: Vec<MinuteCounts>| SloPartial {
            slo: "a".into(),
            source_topic: "telemetry.spans".into(),
            source_partition: 2,
            through_minute: 10,
            minutes,
        };
        rows.append(&record(vec![]), "cara.internal.slo", 0, 7);
        rows.append(
            &record(vec![
                MinuteCounts {
                    minute: 8,
                    good: 1,
                    total: 2,
                },
                MinuteCounts {
                    minute: 9,
                    good: 3,
                    total: 3,
                },
            ]),
            "cara.internal.slo",
            0,
            8,
        );
        let batch = rows.finish();
        assert_eq!(batch.num_rows(), 3);
        let minute = batch.column_by_name("minute").unwrap();
        assert!(minute.is_null(0) && !minute.is_null(1));
        let total = batch
            .column_by_name("total")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!((total.value(1), total.value(2)), (2, 3));
        assert!(rows.is_empty());
    }

    #[test]
    fn status_rows_nest_every_window() {
        let windows: BTreeMap<String, WindowStatus> = WINDOWS
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                let w = WindowStatus {
                    good: i as u64,
                    total: 10,
                    burn_rate: i as f64 / 2.0,
                };
                ((*name).to_owned(), w)
            })
            .collect();
        let batch = slo_batch(&[SloStatus {
            slo: "a".into(),
            ts: 120_000,
            windows,
            budget_remaining: 0.25,
        }])
        .unwrap();
        let windows = batch.column_by_name("windows").unwrap().as_struct();
        let one_hour = windows.column_by_name("1h").unwrap().as_struct();
        let burn = one_hour
            .column_by_name("burn_rate")
            .unwrap()
            .as_primitive::<Float64Type>();
        assert_eq!(burn.value(0), 1.0, "1h is the third window");
    }
}
