//! What a partition's operators emitted, planned as the files of its flush: the
//! derived tables, and the alerts with the source position of the row that raised
//! each. One function for the live shards and the archive replay, so that both
//! write the same rows under the same file names.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use cara_operators::alert::AlertRecord;
use cara_operators::schema::Table;

use crate::alerts::{alert_batch, RaisedAlert, SourceRef};
use crate::archive::writer::{ParquetWriter, PlannedFile};
use crate::archive::ArchiveError;

/// Where outputs are planned: the partition, the flush's file stem, and the rows
/// the operators were given (`None` for a watermark raise, whose alerts take
/// `fallback_offset`).
pub(crate) struct OutputPlace<'a> {
    pub topic: &'a Arc<str>,
    pub partition: i32,
    pub stem: &'a str,
    pub rows: Option<&'a RecordBatch>,
    pub fallback_offset: i64,
}

/// Plans `tables` and `alerts` into `plan` (one file per table and hour, named by
/// the stem); returns the alerts with their source positions.
pub(crate) fn plan_outputs(
    writer: &ParquetWriter,
    tables: &[(Table, RecordBatch)],
    alerts: Vec<AlertRecord>,
    at: &OutputPlace<'_>,
    plan: &mut Vec<PlannedFile>,
) -> Result<Vec<RaisedAlert>, ArchiveError> {
    for (table, batch) in tables {
        plan.extend(writer.plan(*table, batch, at.stem)?);
    }
    let alerts = raise(alerts, at.rows, at.fallback_offset, at.topic, at.partition);
    if !alerts.is_empty() {
        plan.extend(writer.plan(Table::Alerts, &alert_batch(&alerts), at.stem)?);
    }
    Ok(alerts)
}

/// Attaches the source position of each alert's triggering row in `rows`; alerts
/// without one (a watermark raised on an idle partition) get `fallback_offset`.
fn raise(
    records: Vec<AlertRecord>,
    rows: Option<&RecordBatch>,
    fallback_offset: i64,
    topic: &Arc<str>,
    partition: i32,
) -> Vec<RaisedAlert> {
    let offsets = rows
        .and_then(|r| r.column_by_name("_offset"))
        .and_then(|c| c.as_primitive_opt::<Int64Type>());
    records
        .into_iter()
        .map(|record| {
            let offset = offsets
                .filter(|o| record.row < o.len())
                .map_or(fallback_offset, |o| o.value(record.row));
            RaisedAlert {
                record,
                source: SourceRef {
                    topic: topic.clone(),
                    partition,
                    offset,
                },
            }
        })
        .collect()
}
