//! Output formats of query results.

use datafusion::arrow::csv::WriterBuilder;
use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches_with_schema;

use crate::{QueryResult, Result};

/// How to print a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// An aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per row.
    Json,
}

impl std::str::FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "table" => Ok(OutputFormat::Table),
            "csv" => Ok(OutputFormat::Csv),
            "json" => Ok(OutputFormat::Json),
            other => Err(format!("unknown format `{other}`; use table, csv or json")),
        }
    }
}

/// Renders a result in `format`. A table always shows its header and ends with the
/// row count; CSV always has its header row, even without rows.
pub fn format(result: &QueryResult, format: OutputFormat) -> Result<String> {
    let batches: &[RecordBatch] = &result.batches;
    match format {
        OutputFormat::Table => {
            let rows = result.row_count();
            Ok(format!(
                "{}\n{rows} row{}\n",
                pretty_format_batches_with_schema(result.schema.clone(), batches)?,
                if rows == 1 { "" } else { "s" }
            ))
        }
        OutputFormat::Csv => {
            let mut buf = Vec::new();
            {
                let mut writer = WriterBuilder::new().with_header(true).build(&mut buf);
                if batches.is_empty() {
                    writer.write(&RecordBatch::new_empty(result.schema.clone()))?;
                }
                for batch in batches {
                    writer.write(batch)?;
                }
            }
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        OutputFormat::Json => {
            let mut buf = Vec::new();
            {
                let mut writer = LineDelimitedWriter::new(&mut buf);
                for batch in batches {
                    writer.write(batch)?;
                }
                writer.finish()?;
            }
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn result(values: &[i64]) -> QueryResult {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "count",
            DataType::Int64,
            false,
        )]));
        let batches = if values.is_empty() {
            Vec::new()
        } else {
            vec![RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from(values.to_vec()))],
            )
            .unwrap()]
        };
        QueryResult { schema, batches }
    }

    #[test]
    fn an_empty_table_shows_its_header_and_zero_rows() {
        let text = format(&result(&[]), OutputFormat::Table).unwrap();
        assert!(text.contains("| count |"), "{text}");
        assert!(text.ends_with("\n0 rows\n"), "{text}");
        assert_eq!(format(&result(&[]), OutputFormat::Csv).unwrap(), "count\n");
        assert_eq!(format(&result(&[]), OutputFormat::Json).unwrap(), "");
    }

    #[test]
    fn rows_are_counted_under_the_table() {
        let text = format(&result(&[7]), OutputFormat::Table).unwrap();
        assert!(
            text.contains("| 7     |") && text.ends_with("\n1 row\n"),
            "{text}"
        );
        let text = format(&result(&[7, 8]), OutputFormat::Table).unwrap();
        assert!(text.ends_with("\n2 rows\n"), "{text}");
        assert_eq!(
            format(&result(&[7, 8]), OutputFormat::Csv).unwrap(),
            "count\n7\n8\n"
        );
    }
}
