//! The archive's tables, registered in a DataFusion session.

use std::path::Path;
use std::sync::Arc;

use cara_operators::schema::Table;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use futures::StreamExt;
use std::time::Duration;

use crate::location::{ArchiveFiles, ArchiveLocation};
use crate::{Result, SqlError};

/// What a query returned: its columns (known even when no row came back) and its rows.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// The result's columns.
    pub schema: SchemaRef,
    /// Its rows, in batches.
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    /// Rows over all batches.
    pub fn row_count(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// What one query may use. A query past any of them fails with a clear error;
/// nothing it started keeps running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Memory of the operators that buffer (sorts, aggregations, joins).
    pub memory_bytes: usize,
    /// Wall time, planning and execution together.
    pub timeout: Duration,
    /// The size of the result held in memory.
    pub max_result_bytes: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            memory_bytes: 1 << 30,
            timeout: Duration::from_secs(300),
            max_result_bytes: 256 << 20,
        }
    }
}

/// A read-only SQL session over one archive, in a directory or an object store.
pub struct ArchiveQuery {
    ctx: SessionContext,
    location: ArchiveLocation,
    limits: QueryLimits,
}

impl ArchiveQuery {
    /// Registers every table found under `root`; tables with no files yet are
    /// registered empty, so queries over them return no rows instead of failing.
    pub async fn open(root: impl AsRef<Path>) -> Result<ArchiveQuery> {
        Self::open_with(root, QueryLimits::default()).await
    }

    /// [`open`](Self::open) with other limits.
    pub async fn open_with(root: impl AsRef<Path>, limits: QueryLimits) -> Result<ArchiveQuery> {
        let location = ArchiveLocation::Local(root.as_ref().to_path_buf());
        Self::open_location(location, limits).await
    }

    /// The archive at `location`, read in place: a directory, or a prefix in an
    /// object store (its tables' files are listed and read there).
    pub async fn open_location(
        location: ArchiveLocation,
        limits: QueryLimits,
    ) -> Result<ArchiveQuery> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory_bytes, 1.0)
            .build_arc()?;
        // information_schema backs SHOW TABLES and SHOW COLUMNS.
        let ctx = SessionContext::new_with_config_rt(
            SessionConfig::new().with_information_schema(true),
            runtime,
        );
        crate::bounded::register(&ctx)?;
        let files = ArchiveFiles::open(&location)?;
        if let ArchiveFiles::Store(archive) = &files {
            ctx.register_object_store(&archive.bucket_url, archive.store.clone());
        }
        for table in Table::ALL {
            if let Some(url) = files.listing_url(table.name()).await? {
                register_listing(&ctx, table, &url).await?;
            } else {
                let mut schema_fields: Vec<_> = table
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone())
                    .collect();
                schema_fields.push(datafusion::arrow::datatypes::Field::new(
                    "date",
                    DataType::Utf8,
                    false,
                ));
                schema_fields.push(datafusion::arrow::datatypes::Field::new(
                    "hour",
                    DataType::Utf8,
                    false,
                ));
                let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(schema_fields));
                let empty = MemTable::try_new(schema, vec![vec![]])?;
                ctx.register_table(table.name(), Arc::new(empty))?;
            }
        }
        Ok(ArchiveQuery {
            ctx,
            location,
            limits,
        })
    }

    /// Where the archive is.
    pub fn location(&self) -> &ArchiveLocation {
        &self.location
    }

    /// Runs one read-only statement and collects its result.
    pub async fn query(&self, sql: &str) -> Result<QueryResult> {
        let limits = self.limits;
        tokio::time::timeout(limits.timeout, self.run(sql))
            .await
            .map_err(|_| SqlError::Limit(format!(
                "the query ran longer than {:?}; narrow it (filters on date and hour prune whole directories) or raise the timeout",
                limits.timeout
            )))?
    }

    async fn run(&self, sql: &str) -> Result<QueryResult> {
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let frame = self
            .ctx
            .sql_with_options(sql, options)
            .await
            .map_err(refusal)?;
        let schema = frame.schema().inner().clone();
        let mut stream = frame.execute_stream().await.map_err(exhausted)?;
        let (mut batches, mut bytes) = (Vec::new(), 0usize);
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(exhausted)?;
            bytes += batch.get_array_memory_size();
            if bytes > self.limits.max_result_bytes {
                return Err(SqlError::Limit(format!(
                    "the result exceeds {} MiB; add a LIMIT, aggregate, or select fewer columns",
                    self.limits.max_result_bytes >> 20
                )));
            }
            batches.push(batch);
        }
        Ok(QueryResult { schema, batches })
    }
}

/// Turns DataFusion's memory refusal into [`SqlError::Limit`] with advice.
fn exhausted(e: DataFusionError) -> SqlError {
    match e.find_root() {
        DataFusionError::ResourcesExhausted(detail) => SqlError::Limit(format!(
            "the query needs more memory than its limit ({detail}); filter on date and hour, aggregate less, or raise the memory limit"
        )),
        _ => SqlError::DataFusion(e),
    }
}

/// Turns DataFusion's policy errors into [`SqlError::ReadOnly`].
fn refusal(e: DataFusionError) -> SqlError {
    let text = e.to_string();
    let policy = [
        "DDL not supported",
        "DML not supported",
        "Statement not supported",
    ];
    match policy.iter().find(|p| text.contains(*p)) {
        Some(p) => SqlError::ReadOnly(p.replace(" not supported", " statements are not allowed")),
        None => SqlError::DataFusion(e),
    }
}

/// Registers `table` as the files under `url` (a directory path or a store URL,
/// ending in `/`).
async fn register_listing(ctx: &SessionContext, table: Table, url: &str) -> Result<()> {
    let url = ListingTableUrl::parse(url)?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![
            ("date".to_owned(), DataType::Utf8),
            ("hour".to_owned(), DataType::Utf8),
        ]);
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(table.schema());
    let listing = ListingTable::try_new(config)?;
    ctx.register_table(table.name(), Arc::new(listing))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, Int64Array, RecordBatch as Batch};

    /// Writes a tiny `dlq` file into `date=D/hour=H` with `rows` rows.
    fn write_dlq(root: &Path, date: &str, hour: &str, rows: usize) {
        use datafusion::arrow::array::{
            BinaryArray, Int32Array, StringArray, TimestampMillisecondArray,
        };
        let dir = root
            .join("dlq")
            .join(format!("date={date}"))
            .join(format!("hour={hour}"));
        std::fs::create_dir_all(&dir).unwrap();
        let n = rows;
        let batch = Batch::try_new(
            Table::Dlq.schema(),
            vec![
                Arc::new(TimestampMillisecondArray::from(vec![0i64; n]).with_timezone("UTC")),
                Arc::new(StringArray::from(vec!["t"; n])),
                Arc::new(Int32Array::from(vec![0; n])),
                Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())),
                Arc::new(StringArray::from(vec!["bad"; n])),
                Arc::new(BinaryArray::from(vec![Some(&b"x"[..]); n])),
                Arc::new(Int64Array::from(vec![1i64; n])),
            ],
        )
        .unwrap();
        let file = std::fs::File::create(dir.join(format!("f-{hour}.parquet"))).unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }

    fn count(result: &QueryResult) -> i64 {
        let column = result.batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(column.len(), 1);
        column.value(0)
    }

    #[tokio::test]
    async fn counts_and_partition_columns() {
        let dir = tempfile::tempdir().unwrap();
        write_dlq(dir.path(), "2026-01-01", "00", 3);
        write_dlq(dir.path(), "2026-01-01", "01", 5);
        let archive = ArchiveQuery::open(dir.path()).await.unwrap();
        assert_eq!(
            count(&archive.query("SELECT count(*) FROM dlq").await.unwrap()),
            8
        );
        assert_eq!(
            count(
                &archive
                    .query("SELECT count(*) FROM dlq WHERE hour = '01'")
                    .await
                    .unwrap()
            ),
            5
        );
        assert_eq!(
            count(&archive.query("SELECT count(*) FROM metrics").await.unwrap()),
            0
        );
    }

    #[tokio::test]
    async fn hour_filters_prune_files() {
        let dir = tempfile::tempdir().unwrap();
        write_dlq(dir.path(), "2026-01-01", "00", 3);
        write_dlq(dir.path(), "2026-01-02", "07", 4);
        let archive = ArchiveQuery::open(dir.path()).await.unwrap();
        let plan = archive
            .query("EXPLAIN SELECT reason FROM dlq WHERE date = '2026-01-02' AND hour = '07'")
            .await
            .unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&plan.batches)
            .unwrap()
            .to_string();
        assert!(text.contains("f-07.parquet"), "{text}");
        assert!(
            !text.contains("f-00.parquet"),
            "the 00 hour must be pruned: {text}"
        );
    }

    #[tokio::test]
    async fn writes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let archive = ArchiveQuery::open(dir.path()).await.unwrap();
        for sql in [
            "DROP TABLE dlq",
            "INSERT INTO dlq SELECT * FROM dlq",
            "COPY dlq TO '/tmp/x.parquet'",
            "CREATE VIEW v AS SELECT 1",
        ] {
            match archive.query(sql).await {
                Err(SqlError::ReadOnly(_)) => {}
                other => panic!("{sql}: expected a read-only refusal, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn show_tables_lists_the_archive_tables() {
        let dir = tempfile::tempdir().unwrap();
        write_dlq(dir.path(), "2026-01-01", "00", 1);
        let archive = ArchiveQuery::open(dir.path()).await.unwrap();
        let result = archive.query("SHOW TABLES").await.unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&result.batches)
            .unwrap()
            .to_string();
        for table in Table::ALL {
            assert!(
                text.contains(&format!("| {} ", table.name())),
                "{} missing: {text}",
                table.name()
            );
        }
        let columns = archive.query("SHOW COLUMNS FROM dlq").await.unwrap();
        assert!(columns.row_count() >= Table::Dlq.schema().fields().len());
    }

    #[tokio::test]
    async fn an_empty_result_keeps_its_columns() {
        let dir = tempfile::tempdir().unwrap();
        let archive = ArchiveQuery::open(dir.path()).await.unwrap();
        let result = archive
            .query("SELECT reason, \"offset\" FROM dlq WHERE \"offset\" > 5")
            .await
            .unwrap();
        assert_eq!(result.row_count(), 0);
        let names: Vec<&str> = result
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, ["reason", "offset"]);
    }

    #[tokio::test]
    async fn runaway_queries_stop_at_their_limits_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let limits = QueryLimits {
            memory_bytes: 16 << 20,
            timeout: Duration::from_secs(2),
            max_result_bytes: 4 << 20,
        };
        let archive = ArchiveQuery::open_with(dir.path(), limits).await.unwrap();
        let started = std::time::Instant::now();
        let slow = archive
            .query("SELECT count(*) FROM generate_series(1, 100000000000)")
            .await;
        assert!(
            matches!(&slow, Err(SqlError::Limit(m)) if m.contains("longer than")),
            "{slow:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        let big = archive
            .query("SELECT value FROM generate_series(1, 10000000)")
            .await;
        assert!(
            matches!(&big, Err(SqlError::Limit(m)) if m.contains("result exceeds 4 MiB")),
            "{big:?}"
        );
        let hungry = archive
            .query("SELECT count(*) FROM generate_series(1, 3000000) a JOIN generate_series(1, 3000000) b ON a.value = b.value")
            .await;
        assert!(
            matches!(&hungry, Err(SqlError::Limit(m)) if m.contains("more memory")),
            "{hungry:?}"
        );
        // Within the limits, the same session still answers.
        let fine = archive
            .query("SELECT count(*) FROM generate_series(1, 1000)")
            .await
            .unwrap();
        assert_eq!(count(&fine), 1000);
    }
}
