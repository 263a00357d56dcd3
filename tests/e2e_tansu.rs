//! The same data path against tansu, a Kafka-compatible broker that is not ours: it
//! keeps everything, creates no topic unless told (cara creates its own through the
//! admin API), and rejects what the mock forgives. Produced with the Python
//! confluent-kafka client; read back with `cara sql`, pyarrow and DuckDB; a stop and
//! restart in the middle neither loses nor repeats a row.

mod common;

use std::time::Duration;

use common::*;

fn produce(dir: &std::path::Path, bootstrap: &str, topic: &str, name: &str, lines: Vec<String>) {
    let path = dir.join(name);
    let spec: Vec<String> = lines
        .iter()
        .map(|l| format!("{{\"payload\":{}}}", serde_json::to_string(l).unwrap()))
        .collect();
    std::fs::write(&path, spec.join("\n") + "\n").unwrap();
    let out = python("produce.py", &[bootstrap, topic, path.to_str().unwrap()]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        lines.len().to_string()
    );
}

fn metrics(range: std::ops::Range<usize>) -> Vec<String> {
    range
        .map(|i| {
            format!(
                r#"{{"ts":{},"name":"queue_depth","value":{i},"labels":{{"service":"q{}"}}}}"#,
                1_764_000_000_000i64 + i as i64 * 100,
                i % 4
            )
        })
        .collect()
}

#[test]
fn tansu_round_trip_with_restart() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let config = write_config(
        dir.path(),
        "[archive]\nroll_interval = \"1s\"\n[kafka]\ntopic_partitions = 3\n",
    );
    let (_tansu, bootstrap) = start_tansu(dir.path());

    // cara creates its topics on the real broker (tansu auto-creates nothing).
    let (mut run, http) = start_cara_run(&bootstrap, &archive, &config, "tansu-e2e");
    produce(
        dir.path(),
        &bootstrap,
        "telemetry.metrics",
        "m1.jsonl",
        metrics(0..2000),
    );
    let logs: Vec<String> = (0..800).map(|i| format!(r#"{{"ts":1764000000000,"service":"s{}","level":"error","message":"disk {i} full"}}"#, i % 3)).collect();
    produce(dir.path(), &bootstrap, "telemetry.logs", "l.jsonl", logs);
    let spans: Vec<String> = (0..600).map(|i| format!(r#"{{"trace_id":"t{i}","span_id":"s{i}","service":"api","name":"GET /","start":1764000000000,"end":1764000000042}}"#)).collect();
    produce(dir.path(), &bootstrap, "telemetry.spans", "s.jsonl", spans);
    produce(
        dir.path(),
        &bootstrap,
        "telemetry.metrics",
        "bad.jsonl",
        vec!["{not json".into(), r#"{"ts":1,"name":"x"}"#.into()],
    );
    wait_until(Duration::from_secs(90), "first batch archived", || {
        archived_input_rows(http) >= 3402.0
    });
    assert!(run.terminate(Duration::from_secs(30)).success());

    // Restart: the checkpoint resumes where the archive ends.
    let (mut run, http) = start_cara_run(&bootstrap, &archive, &config, "tansu-e2e");
    produce(
        dir.path(),
        &bootstrap,
        "telemetry.metrics",
        "m2.jsonl",
        metrics(2000..3000),
    );
    wait_until(Duration::from_secs(90), "second batch archived", || {
        metric_sum(http, "cara_archive_rows_total", "table=\"metrics\"") >= 1000.0
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(run.terminate(Duration::from_secs(30)).success());

    assert_eq!(sql_count(&archive, "SELECT count(*) FROM metrics"), 3000);
    assert_eq!(
        sql_count(
            &archive,
            "SELECT count(DISTINCT CAST(value AS BIGINT)) FROM metrics"
        ),
        3000
    );
    assert_eq!(
        sql_count(&archive, "SELECT count(*) FROM logs WHERE level = 'error'"),
        800
    );
    assert_eq!(
        sql_count(
            &archive,
            "SELECT count(*) FROM spans WHERE duration_ms = 42"
        ),
        600
    );
    assert_eq!(sql_count(&archive, "SELECT count(*) FROM dlq"), 2);
    let out = python("read_archive.py", &[archive.to_str().unwrap()]);
    let counts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for reader in ["pyarrow", "duckdb"] {
        assert_eq!(counts[reader]["metrics"], 3000, "{counts}");
        assert_eq!(counts[reader]["logs"], 800, "{counts}");
        assert_eq!(counts[reader]["spans"], 600, "{counts}");
    }
    let dlq = python("consume_dlq.py", &[&bootstrap, "cara.dlq", "2"]);
    assert_eq!(String::from_utf8_lossy(&dlq.stdout).lines().count(), 2);
}
