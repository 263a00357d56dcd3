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
