//! # cara-sql
//!
//! Read-only SQL over cara's Parquet archive, with DataFusion.
//!
//! Owns the table registry (`metrics logs spans dlq`, each a Hive-partitioned
//! listing table with `date` and `hour` partition columns so that filters on them
//! prune whole directories), the read-only policy (DDL, DML, `COPY` and other
//! statements are refused), and output formatting (table, CSV, JSON lines).
//!
//! ```no_run
//! # async fn demo() -> cara_sql::Result<()> {
//! let archive = cara_sql::ArchiveQuery::open("cara-archive").await?;
//! let batches = archive.query("SELECT count(*) FROM metrics WHERE date = '2026-11-25'").await?;
//! print!("{}", cara_sql::format(&batches, cara_sql::OutputFormat::Table)?);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod format;
mod registry;

pub use format::{format, OutputFormat};
pub use registry::ArchiveQuery;

/// What can go wrong running SQL over the archive.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The statement would change something; the archive is read-only.
    #[error("refused: {0}. `cara sql` is read-only; only queries (SELECT, WITH, EXPLAIN, SHOW, DESCRIBE) run over the archive")]
    ReadOnly(String),
    /// Planning or execution failed.
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// Formatting the result failed.
    #[error("formatting the result: {0}")]
    Format(#[from] datafusion::arrow::error::ArrowError),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, SqlError>;
