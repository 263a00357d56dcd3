//! Operator state files: a partition's operator state after a flush, kept beside its
//! checkpoint rather than inside it.
//!
//! Owns where state files live (`<root>/_cara/state/<topic>/<partition>/`), their
//! encoding on disk (the operators' snapshot bytes, zstd-compressed with a content
//! checksum) and their clean-up. A flush writes a state file only when the state
//! moved since the last one; a checkpoint names the file it restores from, so an
//! unchanged state costs the checkpoint a file name, not a copy. A state file is
//! written under a name no other flush uses (the flush's file stem), made durable
//! with the flush's data files (step 2 of the commit), and in force once the
//! checkpoint naming it is; the file it replaces is deleted after that commit, and
//! recovery deletes any file its checkpoint does not name (of a flush that never
//! committed, or a deletion a crash cut short).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::layout::ArchiveLayout;
use super::{io_err, ArchiveError, Result};

/// zstd level for state files: level 1 compresses operator state (repeated field
/// layouts, small integers, zero buckets) to about a third at several hundred MB/s.
const COMPRESSION_LEVEL: i32 = 1;

/// The state file a checkpoint restores from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    /// File name in the partition's state directory.
    pub name: String,
    /// Size of the encoded state (before compression).
    pub bytes: u64,
}

impl StateFile {
    /// The state file the flush with file stem `stem` (unique per flush, see
    /// [`super::layout::input_file_stem`]) saves `bytes` of encoded state to.
    pub fn for_flush(stem: &str, bytes: usize) -> StateFile {
        StateFile {
            name: format!("{stem}.state.zst"),
            bytes: bytes as u64,
        }
    }
}

impl ArchiveLayout {
    /// `<root>/_cara/state/<topic>/<partition>`.
    pub fn state_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.root()
            .join("_cara")
            .join("state")
            .join(topic)
            .join(partition.to_string())
    }
}

/// Writes `state` (snapshot bytes) as the partition's state file `name`, not yet
/// durable (the flush's sync makes it so); returns its path and size.
pub fn write_state(
    layout: &ArchiveLayout,
    topic: &str,
    partition: i32,
    name: &str,
    state: &[u8],
) -> Result<(PathBuf, u64)> {
    let dir = layout.state_dir(topic, partition);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let path = dir.join(name);
    let compressed = compress(state).map_err(io_err(&path))?;
    fs::write(&path, &compressed).map_err(io_err(&path))?;
    Ok((path, compressed.len() as u64))
}

fn compress(state: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = zstd::Encoder::new(Vec::with_capacity(state.len() / 3), COMPRESSION_LEVEL)?;
    encoder.include_checksum(true)?;
    encoder.include_contentsize(true)?;
    encoder.set_pledged_src_size(Some(state.len() as u64))?;
    encoder.write_all(state)?;
    encoder.finish()
}

/// Reads the snapshot bytes of the partition's state file `file`.
pub fn read_state(
    layout: &ArchiveLayout,
    topic: &str,
    partition: i32,
    file: &StateFile,
) -> Result<Vec<u8>> {
    let path = layout.state_dir(topic, partition).join(&file.name);
    let compressed = fs::read(&path).map_err(|e| ArchiveError::CorruptCommit {
        path: path.clone(),
        detail: format!("the checkpoint's state file cannot be read: {e}"),
    })?;
    let mut state = Vec::with_capacity(usize::try_from(file.bytes).unwrap_or(0).min(1 << 30));
    zstd::stream::copy_decode(compressed.as_slice(), &mut state).map_err(|e| {
        ArchiveError::CorruptCommit {
            path: path.clone(),
            detail: format!("not a complete state file: {e}"),
        }
    })?;
    Ok(state)
}

/// Deletes the partition's state files other than `keep`; returns how many.
pub fn remove_other_states(
    layout: &ArchiveLayout,
    topic: &str,
    partition: i32,
    keep: Option<&str>,
) -> Result<usize> {
    let dir = layout.state_dir(topic, partition);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(&dir)(e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(io_err(&dir))?;
        if keep.is_some_and(|k| entry.file_name() == k) {
            continue;
        }
        remove_state(&entry.path())?;
        removed += 1;
    }
    Ok(removed)
}

/// Deletes one state file (a no-op when it is gone already).
pub fn remove_state(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some_state() -> Vec<u8> {
        // Operator state looks like this: structure repeated per series.
        (0..10_000u32)
            .flat_map(|i| [0x93, 0xcb, 0, 0, 0, 0, (i % 7) as u8, 0, 0, 0, 0x01])
            .collect()
    }

    #[test]
    fn state_round_trips_compressed_and_described() {
        let dir = tempfile::tempdir().unwrap();
        let layout = ArchiveLayout::new(dir.path());
        let state = some_state();
        let file = StateFile::for_flush(
            "t-0003-00000000000000000000-00000000000000000041",
            state.len(),
        );
        assert_eq!(
            file.name,
            "t-0003-00000000000000000000-00000000000000000041.state.zst"
        );
        let (path, written) = write_state(&layout, "t", 3, &file.name, &state).unwrap();
        assert_eq!(path, dir.path().join("_cara/state/t/3").join(&file.name));
        assert_eq!(written, fs::metadata(&path).unwrap().len());
        assert!(written * 10 < file.bytes, "{written} of {file:?}");
        assert_eq!(read_state(&layout, "t", 3, &file).unwrap(), state);
    }

    #[test]
    fn a_damaged_or_missing_state_file_is_a_corrupt_commit_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let layout = ArchiveLayout::new(dir.path());
        let file = StateFile::for_flush("t-0000-0-0", some_state().len());
        let (path, _) = write_state(&layout, "t", 0, &file.name, &some_state()).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let err = read_state(&layout, "t", 0, &file).unwrap_err().to_string();
        assert!(err.contains("not a complete state file"), "{err}");
        fs::remove_file(&path).unwrap();
        let err = read_state(&layout, "t", 0, &file).unwrap_err().to_string();
        assert!(
            err.contains(&file.name) && err.contains("cannot be read"),
            "{err}"
        );
    }

    #[test]
    fn clean_up_keeps_only_the_named_file() {
        let dir = tempfile::tempdir().unwrap();
        let layout = ArchiveLayout::new(dir.path());
        for offset in [10, 20, 30] {
            write_state(&layout, "t", 0, &format!("{offset}.state.zst"), b"x").unwrap();
        }
        let keep = "20.state.zst".to_owned();
        assert_eq!(
            remove_other_states(&layout, "t", 0, Some(&keep)).unwrap(),
            2
        );
        let left: Vec<_> = fs::read_dir(layout.state_dir("t", 0))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec![keep]);
        assert_eq!(remove_other_states(&layout, "t", 9, None).unwrap(), 0);
    }
}
