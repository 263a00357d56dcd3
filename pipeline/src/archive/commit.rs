//! Per-partition commit files: the checkpoint (next offset to read, the state file
//! holding the operator state, the files its flush wrote) and the staging directory a flush writes into before
//! its checkpoint commits it. See the module docs of `archive` for the protocol.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::claim::ClaimToken;
use super::layout::{
    sync_all_written, sync_dir, temporary_sibling, temporary_sibling_of, write_bytes_atomically,
    ArchiveLayout,
};
use super::state::{self, StateFile};
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
    /// Final paths of the files written by the flush that produced this checkpoint:
    /// recovery publishes those still staged.
    pub files: Vec<PathBuf>,
    /// The operator state of earlier versions of cara, saved inside the checkpoint
    /// (JSON); read, never written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_state: Option<String>,
    /// The file holding the partition's operator state after its last archived
    /// record; in force with this checkpoint, so offset and state never disagree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateFile>,
    /// The partition's archive epoch: raised when the broker's log of the partition
    /// was found to end below the checkpoint (a reset or replaced broker, a recreated
    /// topic), so the new log's offsets name other files than the old one's.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u32,
}

fn is_zero(epoch: &u32) -> bool {
    *epoch == 0
}

/// The intent file of earlier versions of cara: files a flush was about to write in
/// place. Recovery still deletes those of an interrupted flush.
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

fn json_bytes<T: Serialize>(path: &Path, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| ArchiveError::CorruptCommit {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// Reads the checkpoint of a partition, if it has one.
pub fn read_checkpoint(
    layout: &ArchiveLayout,
    topic: &str,
    partition: i32,
) -> Result<Option<Checkpoint>> {
    read_json(&layout.checkpoint_file(topic, partition))
}

/// Stores a checkpoint atomically and durably on its own (outside a flush round).
pub fn write_checkpoint(layout: &ArchiveLayout, checkpoint: &Checkpoint) -> Result<()> {
    let path = layout.checkpoint_file(&checkpoint.topic, checkpoint.partition);
    let bytes = json_bytes(&path, checkpoint)?;
    write_bytes_atomically(&path, &bytes)
}

/// Where the owner of `token` stages a partition's next checkpoint: a name of its own,
/// so an owner that lost the partition never writes over the new owner's.
pub fn staged_checkpoint_file(
    layout: &ArchiveLayout,
    topic: &str,
    partition: i32,
    token: &ClaimToken,
) -> PathBuf {
    temporary_sibling_of(&layout.checkpoint_file(topic, partition), token.as_str())
}

/// Writes a checkpoint beside its final name, not yet in force: the round makes it
/// durable, then [`commit_checkpoint`] puts it in force.
pub fn stage_checkpoint(
    layout: &ArchiveLayout,
    checkpoint: &Checkpoint,
    token: &ClaimToken,
) -> Result<()> {
    let path = layout.checkpoint_file(&checkpoint.topic, checkpoint.partition);
    let bytes = json_bytes(&path, checkpoint)?;
    let staged = staged_checkpoint_file(layout, &checkpoint.topic, checkpoint.partition, token);
    if let Some(dir) = staged.parent() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    fs::write(&staged, bytes).map_err(io_err(&staged))
}

/// Puts a staged checkpoint in force (a rename; durable with the round's next sync).
/// Only under the partition's claim (see [`super::claim::commit_if_claimed`]).
pub fn commit_checkpoint(
    layout: &ArchiveLayout,
    topic: &str,
    partition: i32,
    token: &ClaimToken,
) -> Result<()> {
    let path = layout.checkpoint_file(topic, partition);
    fs::rename(
        staged_checkpoint_file(layout, topic, partition, token),
        &path,
    )
    .map_err(io_err(&path))
}

/// Deletes every staged checkpoint of a partition, whoever staged it.
fn remove_staged_checkpoints(layout: &ArchiveLayout, topic: &str, partition: i32) -> Result<()> {
    let path = layout.checkpoint_file(topic, partition);
    remove_if_present(&temporary_sibling(&path))?;
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    let prefix = format!(".{partition}.checkpoint.json.");
    match fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.map_err(io_err(dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(&prefix) && name.ends_with(".tmp") {
                    remove_if_present(&entry.path())?;
                }
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(dir)(e)),
    }
}

/// Moves a committed flush's staged files to their final paths, where readers see
/// them. Idempotent: a file already moved is skipped. Returns the files moved.
pub fn publish(
    layout: &ArchiveLayout,
    topic: &str,
    partition: i32,
    files: &[PathBuf],
) -> Result<Vec<PathBuf>> {
    let mut moved = Vec::new();
    for file in files {
        let staged = layout.staged_file(topic, partition, file);
        if !staged.exists() {
            continue;
        }
        if let Some(dir) = file.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        fs::rename(&staged, file).map_err(io_err(file))?;
        // A crash between a rename and its sync can leave both names on the same
        // file; renaming one hard link over the other does nothing.
        remove_if_present(&staged)?;
        moved.push(file.clone());
    }
    Ok(moved)
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
    /// Files of the last committed flush that were still staged and are now
    /// published.
    pub published: Vec<PathBuf>,
    /// Files of an interrupted flush (never committed) that were deleted.
    pub removed: Vec<PathBuf>,
    /// Operator state saved with the checkpoint (snapshot bytes).
    pub operator_state: Option<Vec<u8>>,
    /// The state file it was read from.
    pub state_file: Option<StateFile>,
    /// The archive epoch of the checkpoint (0 without one).
    pub epoch: u32,
}

/// Brings a partition's archive to its last checkpoint: that checkpoint's files
/// still staged are published (its commit happened, only the moves were cut short);
/// everything else staged belongs to a flush that never committed and is deleted,
/// and so is a checkpoint never put in force. Nothing of an unfinished flush stays.
pub fn recover(layout: &ArchiveLayout, topic: &str, partition: i32) -> Result<Recovery> {
    remove_staged_checkpoints(layout, topic, partition)?;
    let checkpoint = read_checkpoint(layout, topic, partition)?;
    let next_offset = checkpoint.as_ref().map(|c| c.next_offset);
    let committed_files: &[PathBuf] = checkpoint.as_ref().map_or(&[], |c| &c.files);
    let published = publish(layout, topic, partition, committed_files)?;
    let mut removed = Vec::new();
    let staging = layout.staging_dir(topic, partition);
    match fs::read_dir(&staging) {
        Ok(entries) => {
            for entry in entries {
                let path = entry.map_err(io_err(&staging))?.path();
                if remove_if_present(&path)? {
                    removed.push(path);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&staging)(e)),
    }
    removed.extend(recover_legacy_intent(
        layout,
        topic,
        partition,
        &checkpoint,
    )?);
    if !published.is_empty() || !removed.is_empty() {
        sync_all_written(
            layout.root(),
            published
                .iter()
                .map(PathBuf::as_path)
                .chain([staging.as_path()]),
        )?;
    }
    // State files other than the checkpoint's are of flushes that never committed,
    // or were replaced by a commit whose clean-up a crash cut short.
    let state_file = checkpoint.as_ref().and_then(|c| c.state.clone());
    state::remove_other_states(
        layout,
        topic,
        partition,
        state_file.as_ref().map(|f| f.name.as_str()),
    )?;
    let operator_state = match (&state_file, checkpoint.as_ref()) {
        // Derived state that cannot be read is rebuilt from the data to come; the
        // archived records and the offset are intact, so the partition goes on.
        (Some(file), _) => match state::read_state(layout, topic, partition, file) {
            Ok(bytes) => Some(bytes),
            Err(error) => {
                tracing::error!(topic, partition, %error, "operator state starts afresh");
                None
            }
        },
        (None, Some(c)) => c.operator_state.clone().map(String::into_bytes),
        (None, None) => None,
    };
    Ok(Recovery {
        next_offset,
        published,
        removed,
        epoch: checkpoint.as_ref().map_or(0, |c| c.epoch),
        operator_state,
        state_file,
    })
}

/// Deletes the in-place files of an interrupted flush of an earlier cara, whose
/// intent file named them before writing.
fn recover_legacy_intent(
    layout: &ArchiveLayout,
    topic: &str,
    partition: i32,
    checkpoint: &Option<Checkpoint>,
) -> Result<Vec<PathBuf>> {
    let intent_path = layout.intent_file(topic, partition);
    remove_if_present(&temporary_sibling(&intent_path))?;
    let Some(intent) = read_json::<Intent>(&intent_path)? else {
        return Ok(Vec::new());
    };
    let mut removed = Vec::new();
    let committed_files: &[PathBuf] = checkpoint.as_ref().map_or(&[], |c| &c.files);
    let interrupted = checkpoint
        .as_ref()
        .is_none_or(|c| intent.first_offset >= c.next_offset);
    if interrupted {
        for file in &intent.files {
            remove_if_present(&temporary_sibling(file))?;
            if !committed_files.contains(file) && remove_if_present(file)? {
                removed.push(file.clone());
            }
        }
    }
    remove_if_present(&intent_path)?;
    if let Some(dir) = intent_path.parent() {
        sync_dir(dir)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"x").unwrap();
    }

    fn checkpoint(next_offset: i64, files: Vec<PathBuf>) -> Checkpoint {
        Checkpoint {
            topic: "t".into(),
            partition: 0,
            next_offset,
            files,
            operator_state: Some(r#"{"series":{}}"#.into()),
            state: None,
            epoch: 0,
        }
    }

    fn write_legacy_intent(layout: &ArchiveLayout, first_offset: i64, files: Vec<PathBuf>) {
        let path = layout.intent_file("t", 0);
        touch(&path);
        let intent = Intent {
            first_offset,
            files,
        };
        fs::write(&path, serde_json::to_vec(&intent).unwrap()).unwrap();
    }

    #[test]
    fn checkpoint_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let layout = ArchiveLayout::new(dir.path());
        assert_eq!(read_checkpoint(&layout, "t", 1).unwrap(), None);
        let cp = Checkpoint {
            partition: 1,
            ..checkpoint(42, vec!["a".into()])
        };
        write_checkpoint(&layout, &cp).unwrap();
        assert_eq!(read_checkpoint(&layout, "t", 1).unwrap(), Some(cp.clone()));
        let recovered = recover(&layout, "t", 1).unwrap();
        assert_eq!(recovered.next_offset, Some(42));
        assert_eq!(
            recovered.operator_state,
            cp.operator_state.clone().map(String::into_bytes)
        );
        assert_eq!(recovered.epoch, 0);
        // A later epoch is kept; epoch 0 is not written, so older checkpoints read.
        let later = Checkpoint {
            epoch: 2,
            ..cp.clone()
        };
        write_checkpoint(&layout, &later).unwrap();
        assert_eq!(recover(&layout, "t", 1).unwrap().epoch, 2);
        assert!(!serde_json::to_string(&cp).unwrap().contains("epoch"));
    }

    #[test]
    fn recovery_reads_the_checkpoints_state_file_and_deletes_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let layout = ArchiveLayout::new(dir.path());
        state::write_state(&layout, "t", 0, "old", b"before").unwrap();
        state::write_state(&layout, "t", 0, "current", b"after").unwrap();
        let current = StateFile {
            name: "current".into(),
            bytes: 5,
        };
        // A flush that staged its state and died before its checkpoint committed.
        state::write_state(&layout, "t", 0, "uncommitted", b"never").unwrap();
        write_checkpoint(
            &layout,
            &Checkpoint {
                operator_state: None,
                state: Some(current.clone()),
                ..checkpoint(10, vec![])
            },
        )
        .unwrap();
        let recovery = recover(&layout, "t", 0).unwrap();
        assert_eq!(recovery.operator_state.as_deref(), Some(&b"after"[..]));
        assert_eq!(recovery.state_file, Some(current));
        let left: Vec<_> = fs::read_dir(layout.state_dir("t", 0))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec!["current"]);
        // A state file that went missing costs the state, not the partition.
        fs::remove_file(layout.state_dir("t", 0).join("current")).unwrap();
        let recovery = recover(&layout, "t", 0).unwrap();
        assert_eq!(
            (recovery.next_offset, recovery.operator_state),
            (Some(10), None)
        );
    }

    #[test]
    fn a_staged_checkpoint_is_in_force_only_once_committed() {
        let dir = tempfile::tempdir().unwrap();
        let layout = ArchiveLayout::new(dir.path());
        write_checkpoint(&layout, &checkpoint(10, vec![])).unwrap();
        let token = ClaimToken::fresh();
        stage_checkpoint(&layout, &checkpoint(20, vec![]), &token).unwrap();
        assert_eq!(
            read_checkpoint(&layout, "t", 0)
                .unwrap()
                .unwrap()
                .next_offset,
            10
        );
        commit_checkpoint(&layout, "t", 0, &token).unwrap();
        assert_eq!(
            read_checkpoint(&layout, "t", 0)
                .unwrap()
                .unwrap()
                .next_offset,
            20
        );
        assert!(!staged_checkpoint_file(&layout, "t", 0, &token).exists());
    }

    #[test]
    fn staged_names_are_distinct_per_table_and_hour() {
        let layout = ArchiveLayout::new("/a");
        let logs = PathBuf::from("/a/logs/date=2026-11-26/hour=05/s.parquet");
        let alerts = PathBuf::from("/a/alerts/date=2026-11-26/hour=05/s.parquet");
        let staged = layout.staged_file("t", 3, &logs);
        assert_eq!(
            staged,
            PathBuf::from("/a/_cara/staging/t/3/logs~date=2026-11-26~hour=05~s.parquet")
        );
        assert_ne!(staged, layout.staged_file("t", 3, &alerts));
    }

    #[test]
    fn recovery_publishes_the_staged_files_of_a_committed_flush() {
        let dir = tempfile::tempdir().unwrap();
        let layout = ArchiveLayout::new(dir.path());
        let moved = dir.path().join("logs/date=2026-11-26/hour=05/a.parquet");
        let still_staged = dir.path().join("alerts/date=2026-11-26/hour=05/a.parquet");
        // The checkpoint landed; the crash came after the first of two moves.
        touch(&moved);
        touch(&layout.staged_file("t", 0, &still_staged));
        write_checkpoint(
            &layout,
            &checkpoint(10, vec![moved.clone(), still_staged.clone()]),
        )
        .unwrap();
        let recovery = recover(&layout, "t", 0).unwrap();
        assert_eq!(recovery.published, vec![still_staged.clone()]);
        assert!(recovery.removed.is_empty());
        assert!(moved.exists() && still_staged.exists());
        assert_eq!(fs::read_dir(layout.staging_dir("t", 0)).unwrap().count(), 0);
        // Recovering again changes nothing.
        assert_eq!(
            recover(&layout, "t", 0).unwrap().published,
            Vec::<PathBuf>::new()
        );
    }

    #[test]
    fn recovery_deletes_what_an_uncommitted_flush_staged() {
        let dir = tempfile::tempdir().unwrap();
        let layout = ArchiveLayout::new(dir.path());
        let committed = dir.path().join("spans/date=2026-11-26/hour=05/a.parquet");
        let uncommitted = dir.path().join("spans/date=2026-11-26/hour=05/b.parquet");
        touch(&committed);
        write_checkpoint(&layout, &checkpoint(10, vec![committed.clone()])).unwrap();
        // The next flush staged its file and its checkpoint, then died before the
        // checkpoint was put in force.
        let staged = layout.staged_file("t", 0, &uncommitted);
        touch(&staged);
        let token = ClaimToken::fresh();
        stage_checkpoint(&layout, &checkpoint(20, vec![uncommitted.clone()]), &token).unwrap();
        let recovery = recover(&layout, "t", 0).unwrap();
        assert_eq!(
            recovery,
            Recovery {
                next_offset: Some(10),
                published: vec![],
                removed: vec![staged.clone()],
                operator_state: Some(br#"{"series":{}}"#.to_vec()),
                state_file: None,
                epoch: 0,
            }
        );
        assert!(committed.exists() && !uncommitted.exists() && !staged.exists());
        assert!(!staged_checkpoint_file(&layout, "t", 0, &token).exists());
    }

    #[test]
    fn recovery_honours_an_intent_of_an_earlier_version() {
        let dir = tempfile::tempdir().unwrap();
        let layout = ArchiveLayout::new(dir.path());
        let done = dir.path().join("m/done.parquet");
        let orphan = dir.path().join("m/orphan.parquet");
        let half_written = temporary_sibling(&dir.path().join("m/half.parquet"));
        touch(&done);
        touch(&orphan);
        touch(&half_written);
        write_checkpoint(&layout, &checkpoint(10, vec![done.clone()])).unwrap();
        write_legacy_intent(
            &layout,
            10,
            vec![orphan.clone(), dir.path().join("m/half.parquet")],
        );
        let recovery = recover(&layout, "t", 0).unwrap();
        assert_eq!(recovery.removed, vec![orphan.clone()]);
        assert!(done.exists() && !orphan.exists() && !half_written.exists());
        assert!(!layout.intent_file("t", 0).exists());
    }

    #[test]
    fn a_legacy_intent_whose_checkpoint_landed_keeps_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let layout = ArchiveLayout::new(dir.path());
        let file = dir.path().join("m/f.parquet");
        touch(&file);
        write_legacy_intent(&layout, 10, vec![file.clone()]);
        write_checkpoint(&layout, &checkpoint(20, vec![file.clone()])).unwrap();
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
