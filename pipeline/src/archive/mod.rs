//! The Parquet archive: where rows become durable.
//!
//! Owns the on-disk layout (`<root>/<table>/date=YYYY-MM-DD/hour=HH/<file>.parquet`),
//! atomic file writes, and the per-partition commit protocol that makes archiving
//! exactly-once. A flush of a partition:
//!
//! 1. writes its files into the partition's staging directory
//!    (`<root>/_cara/staging/<topic>/<partition>/`, which readers never list) and its
//!    checkpoint (next offset to read, the files' final paths, the state file it
//!    restores from) beside the current one, and the partition's operator state to
//!    a new state file when it moved (see [`state`]);
//! 2. makes both durable;
//! 3. puts the checkpoint in force with a rename, if the partition's [`claim`] is
//!    still this process's, and makes that durable: the commit point;
//! 4. moves the staged files to their final paths.
//!
//! Flushes are committed a round at a time, so steps 2 and 3 cost one sync each
//! for the whole round (`syncfs` on Linux) rather than an fsync per file.
//! On start-up (or when a partition is assigned) [`commit::recover`] rolls the last
//! committed flush forward (publishes its files still staged) and deletes whatever
//! else is staged, which belongs to a flush that never committed; replaying from the
//! checkpoint then writes each record exactly once. Kafka offsets are committed only
//! after step 4.
//!
//! Does not own: decoding, Kafka, or what is in the rows.

pub mod audit_trail;
pub mod claim;
pub mod commit;
pub mod layout;
pub mod state;
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
