//! Per-partition commit files: the checkpoint (next offset to read) and the intent
//! (files a flush in progress is writing). See the module docs of `archive` for the
//! protocol.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::layout::{sync_dir, temporary_sibling, write_atomically, ArchiveLayout};
use super::{io_err, ArchiveError, Result};

/// The durable position of one source partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Kafka topic.
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// The first offset not yet in the archive.
    pub next_offset: i64,
    /// Files written by the flush that produced this checkpoint.
    pub files: Vec<PathBuf>,
    /// The partition's operator state after its last archived record (JSON), saved
    /// in the same atomic write as the offset so the two never disagree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_state: Option<String>,
}

/// Files a flush is about to write for offsets starting at `first_offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    /// First offset the flush covers.
    pub first_offset: i64,
    /// Final paths of its files.
    pub files: Vec<PathBuf>,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ArchiveError::CorruptCommit {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| ArchiveError::CorruptCommit {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    write_atomically(path, |f| f.write_all(&bytes).map_err(io_err(path)))
}

/// Reads the checkpoint of a partition, if it has one.
pub fn read_checkpoint(
    layout: &ArchiveLayout,
    topic: &str,
    partition: i32,
) -> Result<Option<Checkpoint>> {
    read_json(&layout.checkpoint_file(topic, partition))
}

/// Stores a checkpoint atomically.
pub fn write_checkpoint(layout: &ArchiveLayout, checkpoint: &Checkpoint) -> Result<()> {
    write_json(
        &layout.checkpoint_file(&checkpoint.topic, checkpoint.partition),
        checkpoint,
    )
}

/// Stores an intent atomically.
pub fn write_intent(
    layout: &ArchiveLayout,
    topic: &str,
    partition: i32,
    intent: &Intent,
) -> Result<()> {
    write_json(&layout.intent_file(topic, partition), intent)
}

/// Removes the intent once its checkpoint is durable.
pub fn clear_intent(layout: &ArchiveLayout, topic: &str, partition: i32) -> Result<()> {
    let path = layout.intent_file(topic, partition);
    remove_if_present(&path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// What recovery found for a partition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovery {
    /// The offset to resume from, when the archive has a checkpoint.
    pub next_offset: Option<i64>,
    /// Files of an interrupted flush that were deleted.
    pub removed: Vec<PathBuf>,
    /// Operator state saved with the checkpoint.
    pub operator_state: Option<String>,
}

/// Brings a partition's archive state to its last checkpoint: the files of an
/// interrupted flush (an intent at or after the checkpoint) are deleted, and so are
/// the temporary files a process killed mid-write left (of those files, of the
/// intent, of the checkpoint): nothing of an unfinished write stays visible.
pub fn recover(layout: &ArchiveLayout, topic: &str, partition: i32) -> Result<Recovery> {
    for own in [
        layout.checkpoint_file(topic, partition),
        layout.intent_file(topic, partition),
    ] {
        remove_if_present(&temporary_sibling(&own))?;
    }
    let checkpoint = read_checkpoint(layout, topic, partition)?;
    let next_offset = checkpoint.as_ref().map(|c| c.next_offset);
    let operator_state = checkpoint.as_ref().and_then(|c| c.operator_state.clone());
    let mut removed = Vec::new();
    if let Some(intent) = read_json::<Intent>(&layout.intent_file(topic, partition))? {
        let committed_files: &[PathBuf] = checkpoint.as_ref().map_or(&[], |c| &c.files);
        let interrupted = next_offset.is_none_or(|next| intent.first_offset >= next);
        if interrupted {
            for file in &intent.files {
                remove_if_present(&temporary_sibling(file))?;
                if committed_files.contains(file) {
                    continue;
                }
                if remove_if_present(file)? {
                    removed.push(file.clone());
                    if let Some(dir) = file.parent() {
                        sync_dir(dir)?;
                    }
                }
            }
        }
        clear_intent(layout, topic, partition)?;
    }
    Ok(Recovery {
        next_offset,
        removed,
        operator_state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"x").unwrap();
    }

    #[test]
    fn checkpoint_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let layout = ArchiveLayout::new(dir.path());
        assert_eq!(read_checkpoint(&layout, "t", 1).unwrap(), None);
        let cp = Checkpoint {
            topic: "t".into(),
            partition: 1,
            next_offset: 42,
            files: vec!["a".into()],
            operator_state: Some(r#"{"series":{}}"#.into()),
        };
        write_checkpoint(&layout, &cp).unwrap();
        assert_eq!(read_checkpoint(&layout, "t", 1).unwrap(), Some(cp.clone()));
        let recovered = recover(&layout, "t", 1).unwrap();
        assert_eq!(recovered.next_offset, Some(42));
        assert_eq!(recovered.operator_state, cp.operator_state);
    }

    #[test]
    fn recovery_deletes_the_temporary_files_of_writes_killed_midway() {
        let dir = tempfile::tempdir().unwrap();
        let layout = ArchiveLayout::new(dir.path());
        let written = dir.path().join("m/a.parquet");
        let half_written = temporary_sibling(&dir.path().join("m/b.parquet"));
        touch(&written);
        touch(&half_written);
        write_intent(
            &layout,
            "t",
            0,
            &Intent {
                first_offset: 0,
                files: vec![written.clone(), dir.path().join("m/b.parquet")],
            },
        )
        .unwrap();
        // A checkpoint write killed before its rename.
        let checkpoint_tmp = temporary_sibling(&layout.checkpoint_file("t", 0));
        touch(&checkpoint_tmp);
        let recovery = recover(&layout, "t", 0).unwrap();
        assert_eq!(recovery.removed, vec![written.clone()]);
        assert!(!written.exists() && !half_written.exists() && !checkpoint_tmp.exists());
        assert_eq!(recovery.next_offset, None);
    }

    #[test]
    fn recovery_deletes_files_of_an_interrupted_flush() {
        let dir = tempfile::tempdir().unwrap();
        let layout = ArchiveLayout::new(dir.path());
        let done = dir.path().join("m/done.parquet");
        let orphan = dir.path().join("m/orphan.parquet");
        touch(&done);
        touch(&orphan);
        write_checkpoint(
            &layout,
            &Checkpoint {
                topic: "t".into(),
                partition: 0,
                next_offset: 10,
                files: vec![done.clone()],
                operator_state: None,
            },
        )
        .unwrap();
        write_intent(
            &layout,
            "t",
            0,
            &Intent {
                first_offset: 10,
                files: vec![orphan.clone()],
            },
        )
        .unwrap();
        let recovery = recover(&layout, "t", 0).unwrap();
        assert_eq!(
            recovery,
            Recovery {
                next_offset: Some(10),
                removed: vec![orphan.clone()],
                operator_state: None,
            }
        );
        assert!(done.exists());
        assert!(!orphan.exists());
        assert!(!layout.intent_file("t", 0).exists());
    }

    #[test]
    fn recovery_keeps_files_whose_checkpoint_landed() {
        let dir = tempfile::tempdir().unwrap();
        let layout = ArchiveLayout::new(dir.path());
        let file = dir.path().join("m/f.parquet");
        touch(&file);
        // Crash after the checkpoint but before the intent was cleared.
        write_intent(
            &layout,
            "t",
            0,
            &Intent {
                first_offset: 10,
                files: vec![file.clone()],
            },
        )
        .unwrap();
        write_checkpoint(
            &layout,
            &Checkpoint {
                topic: "t".into(),
                partition: 0,
                next_offset: 20,
                files: vec![file.clone()],
                operator_state: None,
            },
        )
        .unwrap();
        let recovery = recover(&layout, "t", 0).unwrap();
        assert_eq!(recovery.next_offset, Some(20));
        assert!(recovery.removed.is_empty());
        assert!(file.exists());
    }

    #[test]
    fn corrupt_checkpoint_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let layout = ArchiveLayout::new(dir.path());
        let path = layout.checkpoint_file("t", 0);
        touch(&path);
        let err = read_checkpoint(&layout, "t", 0).unwrap_err().to_string();
        assert!(err.contains("0.checkpoint.json"), "{err}");
    }
}
