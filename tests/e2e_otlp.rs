//! OpenTelemetry in, as a team with a Collector would send it: spans, metrics of
//! every kind and logs recorded with the real OpenTelemetry Python SDK, serialised
//! as the Collector's Kafka exporter writes them (`otlp_proto` and `otlp_json`),
//! produced with confluent-kafka to `cara broker` and to tansu; `cara run` with no
//! OTLP configuration archives them, and DuckDB reads every field back as the
//! README's mapping says (tests/clients/otlp_sdk.py holds the expectations).

mod common;

use std::time::Duration;

use common::*;

fn produce_and_check(bootstrap: &str, dir: &std::path::Path, group: &str) {
    let archive = dir.join("archive");
    let config = write_config(dir, "[archive]\nroll_interval = \"1s\"\n");
    let (mut run, http) = start_cara_run(bootstrap, &archive, &config, group);
    let expected = dir.join("expected.json");
    let produced: serde_json::Value = serde_json::from_slice(
        &python(
            "otlp_sdk.py",
            &["produce", bootstrap, expected.to_str().unwrap()],
        )
        .stdout,
    )
    .expect("otlp_sdk.py produce prints a summary");
    let rows = |table: &str| {
        metric_sum(
            http,
            "cara_archive_rows_total",
            &format!("table=\"{table}\""),
        )
    };
    let want = |key: &str| produced[key].as_f64().unwrap();
    wait_until(
        Duration::from_secs(90),
        "every OTLP row to be archived",
        || {
            rows("spans") >= want("spans")
                && rows("logs") >= want("logs")
                && rows("metrics") >= want("metric_rows")
        },
    );
    assert_eq!(rows("dlq"), 0.0, "no OTLP message is dead-lettered");
    let status = run.terminate(Duration::from_secs(30));
    assert!(status.success(), "cara run exited with {status} on SIGTERM");
    let checked = python(
        "otlp_sdk.py",
        &[
            "check",
            archive.to_str().unwrap(),
            expected.to_str().unwrap(),
        ],
    );
    let summary: serde_json::Value = serde_json::from_slice(&checked.stdout).unwrap();
    assert_eq!(summary["spans"].as_f64(), Some(want("spans")));
    assert_eq!(summary["metric_rows"].as_f64(), Some(want("metric_rows")));
    // cara sql reads the same rows.
    assert_eq!(
        sql_count(
            &archive,
            "SELECT count(*) FROM spans WHERE _topic = 'otlp_spans'"
        ) as f64,
        want("spans")
    );
}

#[test]
fn sdk_telemetry_through_cara_broker_is_archived_field_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, bootstrap) = start_cara_broker();
    produce_and_check(&bootstrap, dir.path(), "e2e-otlp");
}

#[test]
fn sdk_telemetry_through_tansu_is_archived_field_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let (_tansu, bootstrap) = start_tansu(dir.path());
    produce_and_check(&bootstrap, dir.path(), "e2e-otlp-tansu");
}
