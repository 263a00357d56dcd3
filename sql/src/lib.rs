//! # cara-sql
//!
//! Read-only SQL over cara's Parquet archive, with DataFusion.
//!
//! Owns the table registry (`metrics logs spans dlq`, each a Hive-partitioned
//! listing table with `date` and `hour` partition columns so that filters on them
//! prune whole directories), where an archive may be (a directory, or a prefix in
//! an object store read in place), the read-only policy (DDL, DML, `COPY` and other
//! statements are refused), and output formatting (table, CSV, JSON lines).
//!
//! ```no_run
//! # async fn demo() -> cara_sql::Result<()> {
//! let archive = cara_sql::ArchiveQuery::open("cara-archive").await?;
//! let result = archive.query("SELECT count(*) FROM metrics WHERE date = '2026-11-25'").await?;
//! print!("{}", cara_sql::format(&result, cara_sql::OutputFormat::Table)?);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod bounded;
mod format;
mod location;
mod registry;

pub use bounded::MAX_GENERATED_BYTES;
pub use format::{format, OutputFormat};
pub use location::ArchiveLocation;
pub use registry::{ArchiveQuery, QueryLimits, QueryResult};

/// What can go wrong running SQL over the archive.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The statement would change something; the archive is read-only.
    #[error("refused: {0}. `cara sql` is read-only; only queries (SELECT, WITH, EXPLAIN, SHOW, DESCRIBE) run over the archive")]
    ReadOnly(String),
    /// The query went past one of its [`QueryLimits`].
    #[error("{0}")]
    Limit(String),
    /// Planning or execution failed. The message already holds DataFusion's whole
    /// chain of causes, so the error exposes no source of its own: printing the chain
    /// would repeat it.
    #[error("{0}")]
    DataFusion(datafusion::error::DataFusionError),
    /// The archive's object store cannot be used (no such bucket, no credentials,
    /// a scheme no store supports); the message says what to check.
    #[error("{0}")]
    Store(String),
    /// Formatting the result failed.
    #[error("formatting the result: {0}")]
    Format(datafusion::arrow::error::ArrowError),
}

impl From<datafusion::error::DataFusionError> for SqlError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        SqlError::DataFusion(e)
    }
}

impl From<datafusion::arrow::error::ArrowError> for SqlError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        SqlError::Format(e)
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, SqlError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// `cara sql` prints an error with its chain of sources (`{:#}`); a DataFusion
    /// error must appear once in it, not once per level.
    #[tokio::test]
    async fn an_error_says_its_message_once() {
        let dir = tempfile::tempdir().unwrap();
        let archive = ArchiveQuery::open(dir.path()).await.unwrap();
        let error = archive
            .query("SELECT no_such_column FROM metrics")
            .await
            .unwrap_err();
        let mut chain = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        assert_eq!(chain.matches("no_such_column").count(), 1, "{chain}");
    }
}
