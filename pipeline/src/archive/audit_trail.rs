//! The audit trail as archived (table `audit`), read back in chain order and
//! verified: what `cara audit verify` runs.
//!
//! The decision stage writes its entries flush after flush, each flush's under a
//! file stem naming its offsets (zero-padded) in hour directories of the entries'
//! time, which never goes back: so the files in path order, and the rows of each
//! in order, are the chain's order. Nothing sorts by `seq`: a reordered entry must
//! show as one.

use std::path::{Path, PathBuf};

use cara_operators::decisions::audit::{verify, AuditBreak, AuditEntry};
use cara_operators::decisions::records::audit_entries;
use cara_operators::schema::Table;

use super::layout::ArchiveLayout;

/// Why the trail could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TrailError {
    /// A file could not be opened or decoded.
    #[error("reading {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// An entry with where it is stored.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    /// The file.
    pub file: PathBuf,
    /// Its row in the file.
    pub row: usize,
    /// The entry.
    pub entry: AuditEntry,
}

/// Every entry of the archive's trail, in stored order.
pub fn read_trail(archive: &Path) -> Result<Vec<StoredEntry>, TrailError> {
    let dir = ArchiveLayout::new(archive).table_dir(Table::Audit);
    let mut trail = Vec::new();
    for path in crate::backtest::replay::parquet_files(&dir) {
        let fail = |reason: String| TrailError::Read {
            path: path.clone(),
            reason,
        };
        let batches =
            crate::backtest::replay::read_parquet(&path).map_err(|e| fail(e.to_string()))?;
        let mut row = 0;
        for batch in batches {
            let entries = audit_entries(&batch).map_err(|e| fail(e.to_string()))?;
            for entry in entries {
                trail.push(StoredEntry {
                    file: path.clone(),
                    row,
                    entry,
                });
                row += 1;
            }
        }
    }
    Ok(trail)
}

/// The first break in `trail` under `key`, with the index of the stored entry it
/// names.
pub fn verify_trail(trail: &[StoredEntry], key: &[u8]) -> Result<(), (AuditBreak, usize)> {
    let entries: Vec<AuditEntry> = trail.iter().map(|s| s.entry.clone()).collect();
    verify(&entries, key).map_err(|broken| {
        let position = match &broken {
            AuditBreak::Altered { position, .. }
            | AuditBreak::Dropped { position, .. }
            | AuditBreak::Reordered { position, .. }
            | AuditBreak::Inserted { position, .. } => *position,
        };
        (broken, position)
    })
}

/// The audit chain's head as the decision stage last checkpointed it (entries
/// appended, last hash), read from the archive's checkpoint of `topic` (the
/// decision exchange) partition 0: what the trail must reach, so that entries
/// dropped from its end are seen. `None` without a checkpoint.
pub fn checkpointed_head(archive: &Path, topic: &str) -> Option<(u64, String)> {
    use cara_operators::decisions::maker::DecisionMaker;
    use cara_operators::decisions::policy::Risk;
    use cara_operators::decisions::DecisionSettings;
    let layout = ArchiveLayout::new(archive);
    let checkpoint = super::commit::read_checkpoint(&layout, topic, 0).ok()??;
    let file = checkpoint.state?;
    let bytes = super::state::read_state(&layout, topic, 0, &file).ok()?;
    let settings = DecisionSettings {
        rules: Vec::new(),
        auto_approve: Risk::Low,
    };
    let maker = DecisionMaker::restore(&bytes, settings, Vec::new()).ok()?;
    Some(maker.audit_head())
}
