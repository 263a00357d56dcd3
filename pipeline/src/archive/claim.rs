//! Claims: which process may put a partition's checkpoint in force.
//!
//! A consumer group gives each partition to one member, but a member can go on
//! flushing a partition the group has already handed on: a process paused past its
//! session (a stopped VM, a long stall), or a broker that completes a rebalance before
//! every member has given its partitions up (tansu 0.6 does; `tests/e2e_group.rs`
//! caught it). Its commit would put in force a checkpoint the new owner has already
//! read, and both would archive the same records. A claim fences it:
//! * when a process is assigned a partition it writes a fresh token to
//!   `<partition>.claim` beside the checkpoint and recovers the partition
//!   ([`commit::recover`]), both under an exclusive lock on that file;
//! * a flush puts its checkpoint in force only under the same lock, and only if the
//!   file still holds the token its partition was claimed with. Otherwise the flush
//!   is refused and changes nothing the new owner reads: its staged checkpoint has a
//!   name of its own, and its staged files and state file are left for the next
//!   recovery of the partition to delete.
//!
//! So a commit either happens before the new owner's recovery, which then resumes
//! after it, or not at all. The lock is `flock`: processes sharing an archive
//! directory on one machine, or on a filesystem whose locks work across machines.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::commit::{self, Recovery};
use super::layout::ArchiveLayout;
use super::{io_err, Result};

/// What a process wrote when it claimed a partition: unique per claim, so a process
/// that loses a partition and gets it back cannot commit a flush from before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToken(String);

impl ClaimToken {
    /// A token no other claim has: process id, the process's start and a counter.
    pub fn fresh() -> ClaimToken {
        static STARTED_NS: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
        static CLAIMS: AtomicU64 = AtomicU64::new(0);
        let started = STARTED_NS.get_or_init(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        });
        ClaimToken(format!(
            "{}-{started:x}-{}",
            std::process::id(),
            CLAIMS.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// The token as written (letters, digits and `-`: usable in file names).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The claim file of a partition, opened and locked exclusively until dropped.
struct Locked {
    file: File,
    path: PathBuf,
}

impl Locked {
    fn acquire(layout: &ArchiveLayout, topic: &str, partition: i32) -> Result<Locked> {
        let path = layout.claim_file(topic, partition);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path))?;
        file.lock().map_err(io_err(&path))?;
        Ok(Locked { file, path })
    }

    fn holder(&mut self) -> Result<String> {
        let mut text = String::new();
        self.file
            .seek(SeekFrom::Start(0))
            .and_then(|_| self.file.read_to_string(&mut text))
            .map_err(io_err(&self.path))?;
        Ok(text)
    }

    fn hold(&mut self, token: &ClaimToken) -> Result<()> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.seek(SeekFrom::Start(0)))
            .and_then(|_| self.file.write_all(token.as_str().as_bytes()))
            .map_err(io_err(&self.path))
    }
}

/// Claims a partition for this process and recovers it (see [`commit::recover`]):
/// from now on only flushes made under the returned token commit.
pub fn claim(
    layout: &ArchiveLayout,
    topic: &str,
    partition: i32,
) -> Result<(ClaimToken, Recovery)> {
    let mut locked = Locked::acquire(layout, topic, partition)?;
    let token = ClaimToken::fresh();
    locked.hold(&token)?;
    let recovery = commit::recover(layout, topic, partition)?;
    Ok((token, recovery))
}

/// Runs `commit` (putting a checkpoint in force) if `token` still holds the
/// partition's claim, under its lock; returns whether it ran.
pub fn commit_if_claimed(
    layout: &ArchiveLayout,
    topic: &str,
    partition: i32,
    token: &ClaimToken,
    commit: impl FnOnce() -> Result<()>,
) -> Result<bool> {
    let mut locked = Locked::acquire(layout, topic, partition)?;
    if locked.holder()? != token.as_str() {
        return Ok(false);
    }
    commit()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::commit::{read_checkpoint, stage_checkpoint, Checkpoint};

    fn checkpoint(next_offset: i64) -> Checkpoint {
        Checkpoint {
            topic: "t".into(),
            partition: 0,
            next_offset,
            files: Vec::new(),
            operator_state: None,
            state: None,
            epoch: 0,
        }
    }

    /// Stages and commits a checkpoint at `next_offset` under `token`.
    fn flush(layout: &ArchiveLayout, token: &ClaimToken, next_offset: i64) -> bool {
        stage_checkpoint(layout, &checkpoint(next_offset), token).unwrap();
        commit_if_claimed(layout, "t", 0, token, || {
            commit::commit_checkpoint(layout, "t", 0, token)
        })
        .unwrap()
    }

    #[test]
    fn a_flush_of_an_owner_that_lost_its_claim_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let layout = ArchiveLayout::new(dir.path());
        let (old, recovery) = claim(&layout, "t", 0).unwrap();
        assert_eq!(recovery.next_offset, None);
        assert!(flush(&layout, &old, 100));

        // The old owner staged its next flush; then the partition moved on.
        stage_checkpoint(&layout, &checkpoint(250), &old).unwrap();
        let (new, recovery) = claim(&layout, "t", 0).unwrap();
        assert_ne!(new, old);
        assert_eq!(recovery.next_offset, Some(100));
        // Its commit is refused, and its staged checkpoint was removed by the
        // new owner's recovery: the new owner's commits are the only ones in force.
        let refused = commit_if_claimed(&layout, "t", 0, &old, || {
            commit::commit_checkpoint(&layout, "t", 0, &old)
        })
        .unwrap();
        assert!(!refused);
        assert_eq!(
            read_checkpoint(&layout, "t", 0)
                .unwrap()
                .unwrap()
                .next_offset,
            100
        );
        assert!(!flush(&layout, &old, 300));
        assert!(flush(&layout, &new, 180));
        assert_eq!(
            read_checkpoint(&layout, "t", 0)
                .unwrap()
                .unwrap()
                .next_offset,
            180
        );
    }

    #[test]
    fn claims_of_one_process_differ() {
        assert_ne!(ClaimToken::fresh(), ClaimToken::fresh());
        assert!(ClaimToken::fresh()
            .as_str()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
