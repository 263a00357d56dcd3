//! The Parquet archive: where rows become durable.
//!
//! Owns the on-disk layout (`<root>/<table>/date=YYYY-MM-DD/hour=HH/<file>.parquet`),
//! atomic file writes (temporary file, fsync, rename, fsync of the directory), and the
//! per-partition commit protocol that makes archiving exactly-once:
//!
//! 1. an *intent* listing the files about to be written is stored atomically;
//! 2. the data files are written atomically;
//! 3. the partition's *checkpoint* (next offset to read) is stored atomically;
//! 4. the intent is removed.
//!
//! On start-up (or when a partition is assigned) [`commit::recover`] deletes the files
//! of an intent whose checkpoint never landed, so replaying from the checkpoint writes
//! each record exactly once. Kafka offsets are committed only after step 3.
//!
//! Does not own: decoding, Kafka, or what is in the rows.

pub mod commit;
pub mod layout;
pub mod writer;

use std::io;
use std::path::PathBuf;

/// Archive I/O failure, with the path involved.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A filesystem operation failed.
    #[error("archive I/O on {path}: {source}; check that the archive directory exists, is writable and has free space")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Parquet encoding failed.
    #[error("writing Parquet file {path}: {source}")]
    Parquet {
        /// The file being written.
        path: PathBuf,
        /// The encoder's error.
        source: parquet::errors::ParquetError,
    },
    /// Arrow kernel failed while splitting a batch by hour.
    #[error("splitting a batch by hour: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A checkpoint or intent file is unreadable.
    #[error("corrupt commit file {path}: {detail}; move it away to start that partition from Kafka's committed offset")]
    CorruptCommit {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// Result alias for archive operations.
pub type Result<T> = std::result::Result<T, ArchiveError>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> ArchiveError {
    let path = path.into();
    move |source| ArchiveError::Io { path, source }
}
