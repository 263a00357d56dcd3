//! Paths in the archive and atomic file replacement.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use cara_operators::schema::Table;
use cara_operators::time::HourPartition;

use super::{io_err, Result};

/// The archive's root directory and the paths under it.
#[derive(Debug, Clone)]
pub struct ArchiveLayout {
    root: PathBuf,
}

impl ArchiveLayout {
    /// A layout rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> ArchiveLayout {
        ArchiveLayout { root: root.into() }
    }

    /// The archive root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<table>`.
    pub fn table_dir(&self, table: Table) -> PathBuf {
        self.root.join(table.name())
    }

    /// `<root>/<table>/date=.../hour=.../<stem>.parquet`.
    pub fn data_file(&self, table: Table, hour: HourPartition, stem: &str) -> PathBuf {
        self.table_dir(table)
            .join(hour.date_dir())
            .join(hour.hour_dir())
            .join(format!("{stem}.parquet"))
    }

    /// Directory of a source partition's commit files.
    fn commit_dir(&self, topic: &str) -> PathBuf {
        self.root.join("_cara").join("offsets").join(topic)
    }

    /// The config the last `cara run` on this archive ran with (what a replay
    /// uses by default), its HTTP token left out.
    pub fn run_config_file(&self) -> PathBuf {
        self.root.join("_cara").join("config.toml")
    }

    /// The partitions of each input topic the last `cara run` on this archive
    /// counted (its second stages wait for all of them; a replay waits alike).
    pub fn topic_partitions_file(&self) -> PathBuf {
        self.root.join("_cara").join("topic_partitions.json")
    }

    /// `<root>/_cara/offsets/<topic>/<partition>.checkpoint.json`.
    pub fn checkpoint_file(&self, topic: &str, partition: i32) -> PathBuf {
        self.commit_dir(topic)
            .join(format!("{partition}.checkpoint.json"))
    }

    /// `<root>/_cara/offsets/<topic>/<partition>.claim`: which process may commit the
    /// partition (see [`super::claim`]).
    pub fn claim_file(&self, topic: &str, partition: i32) -> PathBuf {
        self.commit_dir(topic).join(format!("{partition}.claim"))
    }

    /// `<root>/_cara/offsets/<topic>/<partition>.intent.json`: the intent files of
    /// earlier versions of cara, which recovery still honours.
    pub fn intent_file(&self, topic: &str, partition: i32) -> PathBuf {
        self.commit_dir(topic)
            .join(format!("{partition}.intent.json"))
    }

    /// `<root>/_cara/staging/<topic>/<partition>`: where a partition's flush writes
    /// its files before its checkpoint commits them (readers never look there).
    pub fn staging_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.root
            .join("_cara")
            .join("staging")
            .join(topic)
            .join(partition.to_string())
    }

    /// Where `final_path` is staged: in the partition's staging directory, named by
    /// its path under the root with `~` for `/`, so staged names never collide.
    pub fn staged_file(&self, topic: &str, partition: i32, final_path: &Path) -> PathBuf {
        let relative = final_path.strip_prefix(&self.root).unwrap_or(final_path);
        let name: Vec<String> = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        self.staging_dir(topic, partition).join(name.join("~"))
    }
}

/// The file stem for rows of `topic`/`partition` covering offsets `first..=last` of
/// archive epoch `epoch`.
///
/// Offsets are zero-padded so names sort in offset order. Epoch 0 (a partition
/// whose log never went back) adds nothing; a later epoch is named after the
/// partition (`-e0001`), so a new log's offsets never name an old log's file.
pub fn input_file_stem(topic: &str, partition: i32, epoch: u32, first: i64, last: i64) -> String {
    format!(
        "{}-{first:020}-{last:020}",
        partition_prefix(topic, partition, epoch)
    )
}

fn partition_prefix(topic: &str, partition: i32, epoch: u32) -> String {
    match epoch {
        0 => format!("{topic}-{partition:04}"),
        e => format!("{topic}-{partition:04}-e{e:04}"),
    }
}

/// The file stem for rows an idle partition's operator emitted when its watermark
/// was raised to `watermark_ms`, with `next_offset` the partition's next offset. It
/// sorts after the files of the offsets before and never equals an input stem.
pub fn idle_file_stem(
    topic: &str,
    partition: i32,
    epoch: u32,
    next_offset: i64,
    watermark_ms: i64,
) -> String {
    format!(
        "{}-{next_offset:020}-watermark-{watermark_ms:020}",
        partition_prefix(topic, partition, epoch)
    )
}

/// Writes a file atomically: `write` fills a temporary sibling of its own (named by
/// process and call, so processes sharing the archive may write the same file at
/// once, as the processes of one consumer group do with `_cara/config.toml`), which is
/// fsynced and renamed over `path`; then the directory is fsynced so the rename is
/// durable. The last rename wins.
pub fn write_atomically<T>(path: &Path, write: impl FnOnce(&mut File) -> Result<T>) -> Result<T> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let writer = format!(
        "{}.{}",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    );
    let tmp = temporary_sibling_of(path, &writer);
    let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
    let out = write(&mut file)?;
    file.flush().map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(dir)?;
    Ok(out)
}

/// Writes `bytes` to `path` atomically and durably (see [`write_atomically`]).
pub fn write_bytes_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(path, |f| f.write_all(bytes).map_err(io_err(path)))
}

/// Where [`write_atomically`] writes `path` before renaming it: a hidden sibling that
/// a process killed mid-write leaves behind (recovery removes it).
pub fn temporary_sibling(path: &Path) -> PathBuf {
    temporary_sibling_of(path, "")
}

/// [`temporary_sibling`] of one writer among several (`.<name>.<writer>.tmp`).
pub fn temporary_sibling_of(path: &Path, writer: &str) -> PathBuf {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match writer {
        "" => dir.join(format!(".{file_name}.tmp")),
        writer => dir.join(format!(".{file_name}.{writer}.tmp")),
    }
}

/// Makes everything written so far on the filesystem holding `root` durable, file
/// contents and directory entries alike: one `syncfs` on Linux, which costs one
/// journal commit where an fsync per file costs one each. Elsewhere, `files` and the
/// directories holding them are fsynced one by one.
pub fn sync_all_written<'a>(root: &Path, files: impl IntoIterator<Item = &'a Path>) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        let _ = &files;
        let handle = File::open(root).map_err(io_err(root))?;
        rustix::fs::syncfs(&handle).map_err(|e| io_err(root)(e.into()))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let mut dirs = std::collections::BTreeSet::new();
        for file in files {
            File::open(file)
                .and_then(|f| f.sync_all())
                .map_err(io_err(file))?;
            if let Some(dir) = file.parent() {
                dirs.insert(dir.to_path_buf());
            }
        }
        dirs.iter().try_for_each(|dir| sync_dir(dir))
    }
}

/// Fsyncs a directory so that renames and removals in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_files_follow_the_hive_layout() {
        let layout = ArchiveLayout::new("/a");
        let hour = HourPartition::of_millis(1_700_000_000_000).unwrap();
        let stem = input_file_stem("telemetry.metrics", 3, 0, 10, 99);
        assert_eq!(
            layout.data_file(Table::Metrics, hour, &stem),
            PathBuf::from("/a/metrics/date=2023-11-14/hour=22/telemetry.metrics-0003-00000000000000000010-00000000000000000099.parquet")
        );
        // A later epoch of the partition: the same offsets, another file.
        assert_eq!(
            input_file_stem("telemetry.metrics", 3, 1, 10, 99),
            "telemetry.metrics-0003-e0001-00000000000000000010-00000000000000000099"
        );
        assert_eq!(
            idle_file_stem("t", 3, 2, 10, 60_000),
            "t-0003-e0002-00000000000000000010-watermark-00000000000000060000"
        );
    }

    #[test]
    fn atomic_write_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x/y.json");
        write_atomically(&path, |f| f.write_all(b"one").map_err(io_err("t"))).unwrap();
        write_atomically(&path, |f| f.write_all(b"two").map_err(io_err("t"))).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path().join("x"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("y.json")]);
    }

    #[test]
    fn writers_of_one_file_at_once_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("_cara/config.toml");
        std::thread::scope(|scope| {
            for n in 0..8u8 {
                let path = &path;
                scope.spawn(move || {
                    for _ in 0..50 {
                        write_atomically(path, |f| {
                            f.write_all(&[b'0' + n; 4096]).map_err(io_err("t"))
                        })
                        .unwrap();
                    }
                });
            }
        });
        // One writer's whole content, and nothing left beside it.
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 4096);
        assert!(bytes.iter().all(|b| *b == bytes[0]));
        assert_eq!(fs::read_dir(dir.path().join("_cara")).unwrap().count(), 1);
    }

    #[test]
    fn failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("y.json");
        write_atomically(&path, |f| f.write_all(b"old").map_err(io_err("t"))).unwrap();
        let failed: Result<()> = write_atomically(&path, |f| {
            f.write_all(b"partial").map_err(io_err("t"))?;
            Err(io_err("t")(std::io::Error::other("disk full")))
        });
        assert!(failed.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
    }
}
