//! What the end-to-end harnesses share: ports, `/metrics` samples and a process's
//! CPU time and peak memory, read from `/proc`. Each harness uses what it needs.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Starts the release `cara run` against `bootstrap` in consumer group `group`, its
/// archive at `archive`, its configuration `config`, logging warnings only; returns
/// the process and its HTTP port.
pub fn spawn_cara_run(bootstrap: &str, group: &str, archive: &Path, config: &Path) -> (Child, u16) {
    let http = free_port();
    let cara = Command::new(env!("CARGO_BIN_EXE_cara"))
        .args(["run", "--brokers", bootstrap, "--group", group, "--http"])
        .arg(format!("127.0.0.1:{http}"))
        .arg("--archive")
        .arg(archive)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("cara binary");
    (cara, http)
}

/// A free local TCP port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// The raw HTTP response to `GET path` on localhost (empty when nothing listens).
pub fn http_get(port: u16, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = write!(s, "GET {path} HTTP/1.0\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The sum of every sample of a Prometheus metric whose line starts with `name`.
pub fn metric(port: u16, name: &str) -> f64 {
    http_get(port, "/metrics")
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>()
        + 0.0 // an empty sum is -0.0
}

/// CPU seconds (user + system) a process has used so far, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are 14th and 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Clock ticks are 100 per second on Linux for every architecture we run on.
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident memory of a process (`VmHWM`), KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The files under `dir` that `keep` accepts: how many, and their bytes.
fn files_under(dir: &std::path::Path, keep: &dyn Fn(&std::path::Path) -> bool) -> (u64, u64) {
    let mut found = (0, 0);
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            let (files, bytes) = files_under(&path, keep);
            found.0 += files;
            found.1 += bytes;
        } else if keep(&path) {
            found.0 += 1;
            found.1 += entry.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    found
}

/// The Parquet files of an archive per table (its top directory): count and bytes.
#[allow(dead_code)]
pub fn parquet_files(archive: &std::path::Path) -> std::collections::BTreeMap<String, (u64, u64)> {
    let parquet = |path: &std::path::Path| path.extension().is_some_and(|e| e == "parquet");
    std::fs::read_dir(archive)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('_'))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                files_under(&e.path(), &parquet),
            )
        })
        .filter(|(_, (files, _))| *files > 0)
        .collect()
}

/// Bytes of the files under `dir`.
pub fn walk_bytes(dir: &std::path::Path) -> u64 {
    files_under(dir, &|_| true).1
}
