//! `cara sql` over an archive in an object store, read in place. An archive `cara run`
//! wrote (metrics produced with kcat into `cara broker`) is copied by boto3 into a
//! bucket of moto, an S3-compatible server we did not write; the same queries then
//! give the same rows over `s3://bucket/prefix` as over the directory: counts, an
//! aggregate per service, the hour partitions and a filter on them, a table with no
//! files. A missing bucket is a clear error naming what to check.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;

const START_MS: i64 = 1_700_000_000_000;
const POINTS: usize = 600;
const SERVICES: [&str; 3] = ["api", "db", "web"];

/// A point a minute per service for ten hours, keyed by service.
fn metrics() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in 0..POINTS {
        for (s, service) in SERVICES.iter().enumerate() {
            let ts = START_MS + i as i64 * 60_000;
            let value = (i * (s + 1) % 97) as f64 + 0.25;
            out.push((
                service.to_string(),
                format!(
                    r#"{{"ts":{ts},"name":"latency_ms","type":"gauge","value":{value},"labels":{{"service":"{service}"}}}}"#
                ),
            ));
        }
    }
    out
}

/// moto's S3 server on a free port; its request log is dropped.
fn start_moto() -> (Process, String) {
    let port = free_port();
    let mut command = Command::new("sh");
    command.args([
        "-c",
        &format!("exec python3 -m moto.server -H 127.0.0.1 -p {port} 2>/dev/null"),
    ]);
    let moto = Process::spawn("moto", command);
    wait_until(Duration::from_secs(60), "moto to listen", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (moto, format!("http://127.0.0.1:{port}"))
}

/// `cara sql --format csv` over `archive` (a directory or a URL), with the store's
/// endpoint and credentials in the environment as a user would set them.
fn cara_sql(archive: &str, endpoint: &str, query: &str) -> Output {
    cara()
        .args(["sql", "--format", "csv", "--archive", archive, query])
        .env("AWS_ACCESS_KEY_ID", "cara-test")
        .env("AWS_SECRET_ACCESS_KEY", "cara-test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT", endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .output()
        .expect("cara sql")
}

fn rows(archive: &str, endpoint: &str, query: &str) -> Vec<String> {
    let out = cara_sql(archive, endpoint, query);
    assert!(
        out.status.success(),
        "cara sql --archive {archive} {query:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn archive_metrics(archive: &Path) {
    let dir = archive.parent().expect("a parent");
    let (_broker, brokers) = start_cara_broker();
    kcat_produce_keyed(&brokers, "telemetry.metrics", &metrics());
    let config = write_config(dir, "[archive]\nroll_interval = \"1s\"\n");
    let (mut run, _http) = start_cara_run(&brokers, archive, &config, "sql-store");
    wait_until(Duration::from_secs(90), "every metric archived", || {
        archive.join("metrics").is_dir()
            && sql_count(archive, "SELECT count(*) FROM metrics")
                == (POINTS * SERVICES.len()) as i64
    });
    assert!(run.terminate(Duration::from_secs(30)).success());
}

#[test]
fn the_archive_in_an_object_store_answers_as_the_directory_does() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("archive");
    archive_metrics(&local);
    let (_moto, endpoint) = start_moto();
    let uploaded = python(
        "s3_upload.py",
        &[
            &endpoint,
            "cara-archive",
            "team/cara",
            &local.to_string_lossy(),
        ],
    );
    let files: usize = String::from_utf8_lossy(&uploaded.stdout)
        .trim()
        .parse()
        .expect("a count of files");
    assert!(files > 3, "uploaded {files} files");

    let local = local.to_string_lossy().into_owned();
    let in_store = "s3://cara-archive/team/cara";
    let partitions = rows(
        &local,
        &endpoint,
        "SELECT date, hour, count(*) AS n FROM metrics GROUP BY date, hour ORDER BY date, hour",
    );
    // Ten hours of minutes: ten or eleven hour partitions, every point in one.
    assert!(partitions.len() >= 11, "{partitions:?}");
    let first = partitions[1].split(',').collect::<Vec<_>>();
    let queries = [
        "SELECT count(*) AS n, sum(value) AS total FROM metrics".to_owned(),
        "SELECT labels['service'] AS service, count(*) AS n, min(ts) AS first, max(value) AS top \
         FROM metrics GROUP BY 1 ORDER BY 1"
            .to_owned(),
        "SELECT date, hour, count(*) AS n FROM metrics GROUP BY date, hour ORDER BY date, hour"
            .to_owned(),
        format!(
            "SELECT count(*) AS n FROM metrics WHERE date = '{}' AND hour = '{}'",
            first[0], first[1]
        ),
        "SELECT count(*) AS n FROM logs".to_owned(),
    ];
    for query in &queries {
        let there = rows(in_store, &endpoint, query);
        assert_eq!(there, rows(&local, &endpoint, query), "{query}");
        assert!(there.len() >= 2, "{query}: {there:?}");
    }
    let expected_total: f64 = metrics()
        .iter()
        .map(|(_, line)| {
            let json: serde_json::Value = serde_json::from_str(line).unwrap();
            json["value"].as_f64().unwrap()
        })
        .sum();
    let totals = rows(in_store, &endpoint, &queries[0]);
    let (n, total) = totals[1].split_once(',').expect("two columns");
    assert_eq!(n, (POINTS * SERVICES.len()).to_string(), "every point");
    assert_eq!(
        total.parse::<f64>().ok(),
        Some(expected_total),
        "{totals:?}"
    );
    assert_eq!(
        rows(in_store, &endpoint, &queries[3])[1],
        first[2],
        "the hour's points"
    );
    assert_eq!(rows(in_store, &endpoint, &queries[4])[1], "0", "no logs");

    // A bucket that does not exist: an error saying so, no rows.
    let out = cara_sql("s3://no-such-bucket/cara", &endpoint, &queries[0]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("s3://no-such-bucket/") && stderr.contains("bucket exists"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
