//! Typed access to the columns operators read, by name: a missing column or one of
//! another type is a [`SchemaMismatch`] naming it, never a panic.

use arrow::array::{Array, AsArray, MapArray, PrimitiveArray, RecordBatch, StringArray};
use arrow::datatypes::{Float64Type, Int64Type, TimestampMillisecondType};

use crate::anomaly::operator::SchemaMismatch;

/// A UTF-8 column.
pub fn strings<'a>(
    batch: &'a RecordBatch,
    name: &'static str,
) -> Result<&'a StringArray, SchemaMismatch> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or(SchemaMismatch(name))
}

/// A millisecond timestamp column.
pub fn timestamps<'a>(
    batch: &'a RecordBatch,
    name: &'static str,
) -> Result<&'a PrimitiveArray<TimestampMillisecondType>, SchemaMismatch> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
        .ok_or(SchemaMismatch(name))
}

/// A float column.
pub fn floats<'a>(
    batch: &'a RecordBatch,
    name: &'static str,
) -> Result<&'a PrimitiveArray<Float64Type>, SchemaMismatch> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<Float64Type>())
        .ok_or(SchemaMismatch(name))
}

/// A 64-bit integer column.
pub fn integers<'a>(
    batch: &'a RecordBatch,
    name: &'static str,
) -> Result<&'a PrimitiveArray<Int64Type>, SchemaMismatch> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<Int64Type>())
        .ok_or(SchemaMismatch(name))
}

/// A string-to-string map column (`labels`): the map and its key and value arrays.
pub fn string_map<'a>(
    batch: &'a RecordBatch,
    name: &'static str,
) -> Result<(&'a MapArray, &'a StringArray, &'a StringArray), SchemaMismatch> {
    let map = batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<MapArray>())
        .ok_or(SchemaMismatch(name))?;
    let keys = map
        .keys()
        .as_string_opt::<i32>()
        .ok_or(SchemaMismatch(name))?;
    let values = map
        .values()
        .as_string_opt::<i32>()
        .ok_or(SchemaMismatch(name))?;
    Ok((map, keys, values))
}

/// The columns of a batch of table `metrics` that the metering and forecasting
/// parts read, and each row's labels with the `service` column as label
/// `service`.
pub struct MetricColumns<'a> {
    /// Event times.
    pub ts: &'a PrimitiveArray<TimestampMillisecondType>,
    /// Metric names.
    pub name: &'a StringArray,
    /// Values.
    pub value: &'a PrimitiveArray<Float64Type>,
    /// The `service` column, when the batch has it.
    pub service: Option<&'a StringArray>,
    offsets: &'a [i32],
    keys: &'a StringArray,
    values: &'a StringArray,
}

impl<'a> MetricColumns<'a> {
    /// The columns of `batch`, or the first missing one.
    pub fn of(batch: &'a RecordBatch) -> Result<MetricColumns<'a>, SchemaMismatch> {
        let (labels, keys, values) = string_map(batch, "labels")?;
        Ok(MetricColumns {
            ts: timestamps(batch, "ts")?,
            name: strings(batch, "name")?,
            value: floats(batch, "value")?,
            service: batch
                .column_by_name("service")
                .and_then(|c| c.as_string_opt::<i32>()),
            offsets: labels.value_offsets(),
            keys,
            values,
        })
    }

    /// Row `row`'s service, when it has one.
    pub fn service(&self, row: usize) -> Option<&'a str> {
        self.service
            .filter(|s| s.is_valid(row))
            .map(|s| s.value(row))
    }

    /// Row `row`'s labels, sorted, into `into` (cleared first); with
    /// `with_service`, the service as label `service` unless a label has that name.
    pub fn sorted_labels(
        &self,
        row: usize,
        with_service: bool,
        into: &mut Vec<(&'a str, &'a str)>,
    ) {
        let (start, end) = (self.offsets[row] as usize, self.offsets[row + 1] as usize);
        into.clear();
        into.extend((start..end).map(|i| (self.keys.value(i), self.values.value(i))));
        if with_service && !into.iter().any(|(k, _)| *k == "service") {
            if let Some(service) = self.service(row) {
                into.push(("service", service));
            }
        }
        into.sort_unstable();
    }

    /// Row `row`'s label pairs, in column order.
    pub fn labels(&self, row: usize) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        let (start, end) = (self.offsets[row] as usize, self.offsets[row + 1] as usize);
        (start..end).map(|i| (self.keys.value(i), self.values.value(i)))
    }
}
