//! Encodes Arrow batches as zstd Parquet files, split by the hour of each row.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, TimestampMillisecondArray, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use cara_operators::schema::Table;
use cara_operators::time::{HourPartition, HOUR_MS};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::layout::ArchiveLayout;
use super::{ArchiveError, Result};

/// A file the writer made durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// The table it belongs to.
    pub table: Table,
    /// Where it is.
    pub path: PathBuf,
    /// Rows in it.
    pub rows: usize,
    /// Its size on disk.
    pub bytes: u64,
}

/// A file the writer will write: rows of one table and one hour partition.
#[derive(Debug, Clone)]
pub struct PlannedFile {
    /// The table.
    pub table: Table,
    /// Its final path.
    pub path: PathBuf,
    /// Its rows.
    pub batch: RecordBatch,
}

/// Splits a batch into one batch per hour partition of `table`'s time column.
pub fn split_by_hour(
    table: Table,
    batch: &RecordBatch,
) -> Result<Vec<(HourPartition, RecordBatch)>> {
    let column = batch
        .column_by_name(table.time_column())
        .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
        .ok_or_else(|| {
            arrow::error::ArrowError::SchemaError(format!(
                "table {} has no millisecond time column {}",
                table.name(),
                table.time_column()
            ))
        })?;
    let mut rows_by_hour: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
    for (row, ts) in column.values().iter().enumerate() {
        rows_by_hour
            .entry(ts.div_euclid(HOUR_MS))
            .or_default()
            .push(row as u32);
    }
    let single = rows_by_hour.len() == 1;
    rows_by_hour
        .into_iter()
        .map(|(hour, rows)| {
            let partition = HourPartition::of_millis(hour * HOUR_MS).ok_or_else(|| {
                arrow::error::ArrowError::ComputeError(format!("hour {hour} out of range"))
            })?;
            let part = if single {
                batch.clone()
            } else {
                take_record_batch(batch, &UInt32Array::from(rows))?
            };
            Ok((partition, part))
        })
        .collect()
}

/// How `table`'s files are encoded. Dictionaries only where values repeat: they cost
/// encode time and buy nothing on ids, timestamps and free text. Statistics per
/// column chunk (what DataFusion prunes row groups with), except on the strings
/// that do not repeat (messages, ids, `extra`): their minimum and maximum span
/// nearly every value, so they prune nothing, and keeping them costs a comparison of
/// every value with both (6% of the flush worker's time). Times, offsets and
/// counts mostly step by small amounts, so they are delta encoded, which leaves zstd
/// a byte or two per value instead of eight.
fn table_properties(table: Table, level: ZstdLevel) -> WriterProperties {
    let mut properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(128 * 1024))
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::Chunk);
    let repetitive = table.repetitive_columns();
    for column in repetitive {
        let path = ColumnPath::new(column.split('.').map(str::to_owned).collect());
        properties = properties.set_column_dictionary_enabled(path, true);
    }
    for field in table.schema().fields() {
        let integer = matches!(
            field.data_type(),
            DataType::Int32 | DataType::Int64 | DataType::Timestamp(_, _)
        );
        let text = matches!(
            field.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary | DataType::LargeBinary
        );
        if text && !repetitive.contains(&field.name().as_str()) {
            properties = properties.set_column_statistics_enabled(
                ColumnPath::from(field.name().as_str()),
                EnabledStatistics::None,
            );
        }
        if integer && !repetitive.contains(&field.name().as_str()) {
            properties = properties.set_column_encoding(
                ColumnPath::from(field.name().as_str()),
                Encoding::DELTA_BINARY_PACKED,
            );
        }
    }
    properties.build()
}

/// Encodes batches as Parquet files in the archive.
#[derive(Debug, Clone)]
pub struct ParquetWriter {
    layout: ArchiveLayout,
    /// Writer settings per table (columns of the same name differ between tables).
    properties: BTreeMap<Table, WriterProperties>,
}

impl ParquetWriter {
    /// A writer into `layout` using zstd at `zstd_level`.
    pub fn new(layout: ArchiveLayout, zstd_level: i32) -> Result<ParquetWriter> {
        let level = ZstdLevel::try_new(zstd_level).map_err(|source| ArchiveError::Parquet {
            path: layout.root().to_path_buf(),
            source,
        })?;
        let properties = Table::ALL
            .into_iter()
            .map(|table| (table, table_properties(table, level)))
            .collect();
        Ok(ParquetWriter { layout, properties })
    }

    /// The layout written into.
    pub fn layout(&self) -> &ArchiveLayout {
        &self.layout
    }

    /// The final paths `batch` will be written to, one per hour partition it covers.
    pub fn plan(&self, table: Table, batch: &RecordBatch, stem: &str) -> Result<Vec<PlannedFile>> {
        Ok(split_by_hour(table, batch)?
            .into_iter()
            .map(|(hour, batch)| PlannedFile {
                table,
                path: self.layout.data_file(table, hour, stem),
                batch,
            })
            .collect())
    }

    /// Encodes one planned file at `at` (its staging path; the commit protocol
    /// makes it durable and moves it to `planned.path`). The returned file names
    /// its final path.
    pub fn write_to(&self, planned: &PlannedFile, at: &Path) -> Result<WrittenFile> {
        let parquet_err = |source| ArchiveError::Parquet {
            path: at.to_path_buf(),
            source,
        };
        if let Some(dir) = at.parent() {
            std::fs::create_dir_all(dir).map_err(super::io_err(dir))?;
        }
        let file = File::create(at).map_err(super::io_err(at))?;
        // The Parquet writer buffers its output itself.
        let mut writer = ArrowWriter::try_new(
            file,
            planned.batch.schema(),
            self.properties.get(&planned.table).cloned(),
        )
        .map_err(parquet_err)?;
        writer.write(&planned.batch).map_err(parquet_err)?;
        let file = writer.into_inner().map_err(parquet_err)?;
        let bytes = file
            .metadata()
            .map(|m| m.len())
            .map_err(super::io_err(at))?;
        Ok(WrittenFile {
            table: planned.table,
            path: planned.path.clone(),
            rows: planned.batch.num_rows(),
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{DecodeLimits, Decoder, Signal, SourcePosition};
    use parquet::basic::Encoding;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    fn metrics_batch(rows: i64) -> RecordBatch {
        let mut decoder = Decoder::new(Signal::Metrics, DecodeLimits::default());
        for offset in 0..rows {
            let pos = SourcePosition {
                topic: "telemetry.metrics",
                partition: 0,
                offset,
                kafka_ts_ms: None,
            };
            let msg = format!(
                r#"{{"ts":{},"name":"cpu","value":{offset},"labels":{{"service":"checkout","host":"h{}"}}}}"#,
                1_700_000_000_000 + offset,
                offset % 3
            );
            decoder.decode(Some(msg.as_bytes()), &pos).unwrap();
        }
        decoder.finish()
    }

    #[test]
    fn every_table_gets_encodings_its_column_types_support() {
        // Settings are per table: a column name can have another type elsewhere, and
        // the encoder panics on delta encoding of anything but integers.
        let writer = ParquetWriter::new(ArchiveLayout::new("/unused"), 3).unwrap();
        let mut delta_columns = 0;
        for table in Table::ALL {
            let schema = parquet::arrow::ArrowSchemaConverter::new()
                .convert(&table.schema())
                .unwrap();
            let properties = &writer.properties[&table];
            for column in schema.columns() {
                if properties.encoding(column.path()) == Some(Encoding::DELTA_BINARY_PACKED) {
                    delta_columns += 1;
                    assert!(
                        matches!(
                            column.physical_type(),
                            parquet::basic::Type::INT32 | parquet::basic::Type::INT64
                        ),
                        "{}.{} is {:?}",
                        table.name(),
                        column.path(),
                        column.physical_type()
                    );
                }
            }
        }
        assert!(delta_columns > Table::ALL.len(), "{delta_columns}");
    }

    #[test]
    fn dictionaries_only_on_repetitive_columns() {
        let dir = tempfile::tempdir().unwrap();
        let writer = ParquetWriter::new(ArchiveLayout::new(dir.path()), 3).unwrap();
        let batch = metrics_batch(500);
        let planned = writer.plan(Table::Metrics, &batch, "stem").unwrap();
        assert_eq!(planned.len(), 1);
        let written = writer.write_to(&planned[0], &planned[0].path).unwrap();
        assert_eq!(written.rows, 500);
        let reader =
            SerializedFileReader::new(std::fs::File::open(&written.path).unwrap()).unwrap();
        let row_group = reader.metadata().row_group(0);
        let dictionary = |path: &str| {
            let column = row_group
                .columns()
                .iter()
                .find(|c| c.column_path().string() == path)
                .unwrap_or_else(|| panic!("no column {path}"));
            column.encodings().any(|e| e == Encoding::RLE_DICTIONARY)
        };
        for repetitive in Table::Metrics.repetitive_columns() {
            assert!(
                dictionary(repetitive),
                "{repetitive} should be dictionary encoded"
            );
        }
        for unique in ["ts", "value", "_offset"] {
            assert!(
                !dictionary(unique),
                "{unique} should not be dictionary encoded"
            );
        }
        let encodings = |path: &str| -> Vec<Encoding> {
            row_group
                .columns()
                .iter()
                .find(|c| c.column_path().string() == path)
                .map(|c| c.encodings().collect())
                .unwrap_or_default()
        };
        for delta in ["ts", "_offset", "_index"] {
            assert!(
                encodings(delta).contains(&Encoding::DELTA_BINARY_PACKED),
                "{delta}: {:?}",
                encodings(delta)
            );
        }
        assert!(!encodings("value").contains(&Encoding::DELTA_BINARY_PACKED));
        // Chunk statistics remain where readers can prune with them…
        let statistics = |path: &str| {
            row_group
                .columns()
                .iter()
                .find(|c| c.column_path().string() == path)
                .and_then(|c| c.statistics().cloned())
        };
        for pruned in ["ts", "name", "service", "_offset"] {
            let s = statistics(pruned).unwrap_or_else(|| panic!("{pruned} statistics"));
            assert!(s.min_bytes_opt().is_some(), "{pruned}");
        }
        // …and are left out on strings that do not repeat.
        assert!(statistics("extra").is_none());
    }
}
