//! The archive's tables, registered in a DataFusion session.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cara_operators::schema::Table;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::context::{SQLOptions, SessionContext};

use crate::{Result, SqlError};

/// A read-only SQL session over one archive directory.
pub struct ArchiveQuery {
    ctx: SessionContext,
    root: PathBuf,
}

impl ArchiveQuery {
    /// Registers every table found under `root`; tables with no files yet are
    /// registered empty, so queries over them return no rows instead of failing.
    pub async fn open(root: impl AsRef<Path>) -> Result<ArchiveQuery> {
        let root = root.as_ref().to_path_buf();
        let ctx = SessionContext::new();
        for table in Table::ALL {
            let dir = root.join(table.name());
            if has_parquet(&dir) {
                register_listing(&ctx, table, &dir).await?;
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
        Ok(ArchiveQuery { ctx, root })
    }

    /// The archive root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Runs one read-only statement and collects its result.
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let frame = self
            .ctx
            .sql_with_options(sql, options)
            .await
            .map_err(refusal)?;
        Ok(frame.collect().await?)
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

fn has_parquet(dir: &Path) -> bool {
    fn walk(dir: &Path, depth: usize) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        entries.flatten().any(|e| {
            let path = e.path();
            if path.is_dir() {
                depth < 3 && walk(&path, depth + 1)
            } else {
                path.extension().is_some_and(|x| x == "parquet")
            }
        })
    }
    walk(dir, 0)
}

async fn register_listing(ctx: &SessionContext, table: Table, dir: &Path) -> Result<()> {
    let url = ListingTableUrl::parse(format!("{}/", dir.display()))?;
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
