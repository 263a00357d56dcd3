//! End to end against `cara broker` running as its own process: kcat and the Python
//! confluent-kafka client produce good records and a malformed corpus; `cara run`
//! archives them; `cara sql`, pyarrow and DuckDB all count exactly what was produced,
//! and every malformed message is in the DLQ topic and table with its reason.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::*;

const NOW_MS: i64 = 1_764_000_000_000;

/// A metric point; every hundredth repeats its `service` label key (the first wins).
fn metric(i: usize) -> String {
    format!(
        r#"{{"ts":{},"name":"cpu_usage","value":{}.5,"type":"gauge","labels":{{"service":"svc{}","host":"h{}"{}}}}}"#,
        NOW_MS + i as i64 * 1000,
        i,
        i % 7,
        i % 3,
        if i.is_multiple_of(100) {
            r#","service":"again""#
        } else {
            ""
        }
    )
}

fn log(i: usize) -> String {
    format!(
        r#"{{"ts":"2025-11-24T16:00:{:02}.000Z","service":"svc{}","level":"{}","message":"request {} done","zone":"z{}"}}"#,
        i % 60,
        i % 5,
        ["info", "error", "WARN"][i % 3],
        i,
        i % 2
    )
}

fn span(i: usize) -> String {
    format!(
        r#"{{"trace_id":"t{}","span_id":"s{i}","parent_span_id":null,"service":"svc{}","name":"GET /x","kind":"server","start":{},"duration_ms":{}.25,"status":"{}"}}"#,
        i / 4,
        i % 4,
        NOW_MS + i as i64,
        i % 50,
        if i.is_multiple_of(10) { "error" } else { "ok" }
    )
}

/// The malformed corpus: (payload spec for produce.py, expected error class).
fn malformed() -> Vec<(serde_like::Spec, &'static str)> {
    use serde_like::Spec::*;
    vec![
        (
            Text(r#"{"ts":1764000000000,"name":"cpu","val"#.into()),
            "invalid JSON",
        ),
        (
            Text(r#"{"ts":1764000000000,"name":"cpu","value":"high"}"#.into()),
            "expected a number",
        ),
        (
            Text(r#"{"ts":true,"name":"cpu","value":1}"#.into()),
            "field `ts`",
        ),
        (
            Bytes(vec![0x00, 0xff, 0xfe, 0x80, 0x01, 0x02]),
            "invalid JSON",
        ),
        (Text(String::new()), "empty message"),
        (Null, "empty message"),
        (
            Text(format!(
                r#"{{"ts":1764000000000,"name":"big","value":1,"pad":"{}"}}"#,
                "x".repeat(70_000)
            )),
            "exceeds the limit",
        ),
        (
            Text(r#"{"ts":1764000000000,"name":"cpu","value":NaN}"#.into()),
            "invalid JSON",
        ),
        (
            Text(r#"{"ts":"9999-12-31T23:59:59Z","name":"cpu","value":1}"#.into()),
            "ahead of the message timestamp",
        ),
        (
            Text(r#"[{"ts":1764000000000,"name":"a","value":1},{"name":"b","value":2}]"#.into()),
            "missing required field `ts`",
        ),
        (Text("[]".into()), "empty message"),
        (Text("\"just a string\"".into()), "expected a JSON object"),
        // A zeroed clock: 1970 against a message timestamp of today.
        (
            Text(r#"{"ts":1000,"name":"cpu","value":1}"#.into()),
            "decode.max_past_age",
        ),
        // 200 records in 200 different hours: 200 files from one message.
        (
            Text(format!(
                "[{}]",
                (0..200)
                    .map(|h| format!(
                        r#"{{"ts":{},"name":"cpu","value":1}}"#,
                        1_764_000_000_000i64 - h * 3_600_000
                    ))
                    .collect::<Vec<_>>()
                    .join(",")
            )),
            "decode.max_hours_per_message",
        ),
    ]
}

mod serde_like {
    /// One message for produce.py.
    pub enum Spec {
        Text(String),
        Bytes(Vec<u8>),
        Null,
    }

    impl Spec {
        pub fn to_line(&self) -> String {
            match self {
                Spec::Text(t) => format!("{{\"payload\":{}}}", json_string(t)),
                Spec::Bytes(b) => format!("{{\"b64\":\"{}\"}}", base64(b)),
                Spec::Null => "{\"payload\":null}".into(),
            }
        }
    }

    pub fn json_string(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    fn base64(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

fn write_spec(path: &Path, lines: impl IntoIterator<Item = String>) {
    let text: Vec<String> = lines.into_iter().collect();
    std::fs::write(path, text.join("\n") + "\n").unwrap();
}

#[test]
fn third_party_clients_into_cara_broker_are_archived_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let config = write_config(
        dir.path(),
        "[archive]\nroll_interval = \"1s\"\n[decode]\nmax_message_bytes = 65536\n",
    );
    let (_broker, bootstrap) = start_cara_broker();
    let (mut run, http) = start_cara_run(&bootstrap, &archive, &config, "e2e-clients");

    // kcat: 3000 metric points, as 2000 single objects and 500 two-element arrays.
    let mut metric_lines: Vec<String> = (0..2000).map(metric).collect();
    metric_lines
        .extend((0..500).map(|i| format!("[{},{}]", metric(2000 + 2 * i), metric(2001 + 2 * i))));
    kcat_produce(&bootstrap, "telemetry.metrics", &metric_lines);

    // Python confluent-kafka: 1500 logs, 1200 spans, with the malformed corpus
    // interleaved among the spans.
    let logs = dir.path().join("logs.jsonl");
    write_spec(
        &logs,
        (0..1500).map(|i| serde_like::Spec::Text(log(i)).to_line()),
    );
    let acked: usize = String::from_utf8_lossy(
        &python(
            "produce.py",
            &[&bootstrap, "telemetry.logs", logs.to_str().unwrap()],
        )
        .stdout,
    )
    .trim()
    .parse()
    .unwrap();
    assert_eq!(acked, 1500);
    let corpus = malformed();
    let spans = dir.path().join("spans.jsonl");
    let mut lines = Vec::new();
    for i in 0..1200 {
        lines.push(serde_like::Spec::Text(span(i)).to_line());
        if i % 100 == 50 {
            lines.push(corpus[(i / 100) % corpus.len()].0.to_line());
        }
    }
    write_spec(&spans, lines);
    python(
        "produce.py",
        &[&bootstrap, "telemetry.spans", spans.to_str().unwrap()],
    );
    let bad_metrics = dir.path().join("bad.jsonl");
    write_spec(&bad_metrics, corpus.iter().map(|(s, _)| s.to_line()));
    // All on partition 0, so offsets give the order they were produced in.
    python(
        "produce.py",
        &[
            &bootstrap,
            "telemetry.metrics",
            bad_metrics.to_str().unwrap(),
            "0",
        ],
    );
    let expected_dlq = 12 + corpus.len();

    wait_until(Duration::from_secs(90), "every row to be archived", || {
        archived_input_rows(http) as usize >= 3000 + 1500 + 1200 + expected_dlq
    });
    let status = run.terminate(Duration::from_secs(30));
    assert!(status.success(), "cara run exited with {status} on SIGTERM");

    // cara sql counts what was produced, exactly.
    assert_eq!(sql_count(&archive, "SELECT count(*) FROM metrics"), 3000);
    assert_eq!(sql_count(&archive, "SELECT count(*) FROM logs"), 1500);
    assert_eq!(sql_count(&archive, "SELECT count(*) FROM spans"), 1200);
    assert_eq!(
        sql_count(&archive, "SELECT count(*) FROM dlq"),
        expected_dlq as i64
    );
    assert_eq!(
        sql_count(
            &archive,
            "SELECT count(*) FROM (SELECT DISTINCT _partition, _offset, _index FROM metrics)"
        ),
        3000
    );
    assert_eq!(
        sql_count(
            &archive,
            "SELECT count(*) FROM metrics WHERE labels['service'] = 'svc3'"
        ),
        (0..3000).filter(|i| i % 7 == 3).count() as i64
    );
    assert_eq!(
        sql_count(
            &archive,
            "SELECT count(*) FROM metrics WHERE array_has(map_values(labels), 'again')"
        ),
        0,
        "a repeated label key keeps its first value only"
    );
    assert_eq!(
        sql_count(&archive, "SELECT count(*) FROM logs WHERE level = 'warn'"),
        500
    );
    assert_eq!(
        sql_count(
            &archive,
            "SELECT count(*) FROM logs WHERE extra = '{\"zone\":\"z1\"}'"
        ),
        750
    );
    assert_eq!(
        sql_count(
            &archive,
            "SELECT count(*) FROM spans WHERE status = 'error'"
        ),
        120
    );
    assert_eq!(
        sql_count(
            &archive,
            "SELECT CAST(sum(value) AS BIGINT) FROM metrics WHERE name = 'cpu_usage'"
        ),
        (0..3000i64).sum::<i64>() + 1500
    );

    // Every malformed message is in the dlq table with the reason that fits it.
    let reasons = sql_rows(
        &archive,
        "SELECT reason FROM dlq WHERE topic = 'telemetry.metrics' ORDER BY \"offset\"",
    );
    assert_eq!(reasons.len(), corpus.len());
    for ((_, expected), reason) in corpus.iter().zip(&reasons) {
        assert!(
            reason.contains(expected),
            "reason {reason:?} should mention {expected:?}"
        );
    }
    let sizes = sql_rows(
        &archive,
        "SELECT payload_bytes FROM dlq WHERE topic = 'telemetry.metrics' ORDER BY \"offset\"",
    );
    assert_eq!(sizes[3], "6", "binary payload kept byte for byte");
    assert!(
        sizes[6].parse::<i64>().unwrap() > 70_000,
        "oversize payload kept whole"
    );

    // Readers nobody here wrote agree.
    let out = python("read_archive.py", &[archive.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    for reader in ["pyarrow", "duckdb"] {
        let counts = parse_counts(&text, reader);
        assert_eq!(counts.get("metrics"), Some(&3000), "{reader}: {text}");
        assert_eq!(counts.get("logs"), Some(&1500), "{reader}: {text}");
        assert_eq!(counts.get("spans"), Some(&1200), "{reader}: {text}");
        assert_eq!(
            counts.get("dlq"),
            Some(&(expected_dlq as i64)),
            "{reader}: {text}"
        );
    }
    // Every labels map is read whole, those with a repeated key included.
    assert_eq!(
        parse_counts(&text, "maps").get("metrics"),
        Some(&3000),
        "{text}"
    );

    // The dead-letter topic holds each malformed message with its reason header.
    let dlq = python(
        "consume_dlq.py",
        &[&bootstrap, "cara.dlq", &expected_dlq.to_string()],
    );
    let dlq_lines: Vec<String> = String::from_utf8_lossy(&dlq.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(dlq_lines.len(), expected_dlq, "{dlq_lines:?}");
    assert!(
        dlq_lines.iter().all(|l| l.contains("\"reason\": \"")),
        "{dlq_lines:?}"
    );
}

/// Reads `{"reader": {"table": n, ...}}` from read_archive.py's output.
fn parse_counts(json: &str, reader: &str) -> BTreeMap<String, i64> {
    let value: serde_json::Value = serde_json::from_str(json).expect("read_archive.py prints JSON");
    value[reader]
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_i64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// A `cara broker` config with one partition per telemetry topic, so offsets are
/// the order records were produced in.
fn one_partition_broker_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("broker.toml");
    std::fs::write(&path, "[embedded_broker]\ntelemetry_partitions = 1\n").unwrap();
    path
}

/// Log line `i`, padded with `fill` to about a kilobyte.
fn padded_log(i: usize, fill: char) -> String {
    format!(
        r#"{{"ts":1764000000000,"service":"s","message":"{i:06} {}"}}"#,
        fill.to_string().repeat(1000)
    )
}

/// The mock broker keeps only 5 MiB per partition. Records it deleted before cara read
/// them are counted as skipped offsets, and everything it still had is archived:
/// archived + skipped = produced.
#[test]
fn records_lost_to_broker_retention_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let broker_config = one_partition_broker_config(dir.path());
    let (_broker, bootstrap) = start_cara_broker_with(Some(&broker_config));
    let config = write_config(dir.path(), "[archive]\nroll_interval = \"500ms\"\n");
    let line = |i: usize| padded_log(i, 'y');

    // A first run reads and checkpoints 10 records, then stops.
    let (mut run, http) = start_cara_run(&bootstrap, &archive, &config, "retention");
    kcat_produce(
        &bootstrap,
        "telemetry.logs",
        &(0..10).map(line).collect::<Vec<_>>(),
    );
    wait_until(Duration::from_secs(60), "10 logs archived", || {
        metric_sum(http, "cara_archive_rows_total", "table=\"logs\"") >= 10.0
    });
    assert!(run.terminate(Duration::from_secs(30)).success());

    // While cara is down, 12 MiB arrive: more than the broker keeps.
    let backlog: Vec<String> = (10..12_010).map(line).collect();
    kcat_produce(&bootstrap, "telemetry.logs", &backlog);

    let (mut run, http) = start_cara_run(&bootstrap, &archive, &config, "retention");
    wait_until(
        Duration::from_secs(60),
        "the skipped offsets to be reported",
        || metric_sum(http, "cara_offsets_skipped_total", "telemetry.logs") > 0.0,
    );
    std::thread::sleep(Duration::from_secs(3));
    let skipped = metric_sum(http, "cara_offsets_skipped_total", "telemetry.logs") as i64;
    assert!(run.terminate(Duration::from_secs(30)).success());
    let archived = sql_count(&archive, "SELECT count(*) FROM logs");
    assert!(
        skipped > 1000,
        "most of the backlog was deleted by the broker, got {skipped}"
    );
    assert_eq!(
        archived + skipped,
        12_010,
        "archived {archived} + skipped {skipped}"
    );
    // What survived is the newest part of the backlog, contiguous up to the end.
    assert_eq!(sql_count(&archive, "SELECT max(_offset) FROM logs"), 12_009);
    assert_eq!(
        sql_count(&archive, "SELECT count(DISTINCT _offset) FROM logs"),
        archived
    );
}

/// Records the broker deleted before cara's first fetch of a partition count as lost
/// too: a partition never archived is expected from offset 0.
#[test]
fn records_lost_before_the_first_fetch_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let broker_config = one_partition_broker_config(dir.path());
    let (_broker, bootstrap) = start_cara_broker_with(Some(&broker_config));
    // 12 MiB before cara ever runs: more than the broker keeps.
    let backlog: Vec<String> = (0..12_000).map(|i| padded_log(i, 'z')).collect();
    kcat_produce(&bootstrap, "telemetry.logs", &backlog);
    let config = write_config(dir.path(), "[archive]\nroll_interval = \"500ms\"\n");
    let (mut run, http) = start_cara_run(&bootstrap, &archive, &config, "first-fetch");
    wait_until(Duration::from_secs(60), "everything read", || {
        let skipped = metric_sum(http, "cara_offsets_skipped_total", "telemetry.logs");
        let archived = metric_sum(http, "cara_archive_rows_total", "table=\"logs\"");
        skipped > 0.0 && skipped + archived >= 12_000.0
    });
    let skipped = metric_sum(http, "cara_offsets_skipped_total", "telemetry.logs") as i64;
    assert!(run.terminate(Duration::from_secs(30)).success());
    let archived = sql_count(&archive, "SELECT count(*) FROM logs");
    assert_eq!(
        archived + skipped,
        12_000,
        "archived {archived} + skipped {skipped}"
    );
    assert_eq!(
        sql_count(&archive, "SELECT min(_offset) FROM logs"),
        skipped
    );
}

/// A one-partition `cara broker` at a fixed address that a test can replace with an
/// empty one, and a pipeline config that flushes every 500 ms.
struct BrokerReset {
    _dir: tempfile::TempDir,
    archive: std::path::PathBuf,
    broker_config: std::path::PathBuf,
    bootstrap: String,
    config: std::path::PathBuf,
}

impl BrokerReset {
    fn new() -> BrokerReset {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("archive");
        let broker_config = one_partition_broker_config(dir.path());
        let config = write_config(dir.path(), "[archive]\nroll_interval = \"500ms\"\n");
        BrokerReset {
            archive,
            broker_config,
            bootstrap: format!("127.0.0.1:{}", free_port()),
            config,
            _dir: dir,
        }
    }

    /// A new, empty `cara broker` on the fixed address.
    fn broker(&self) -> Process {
        start_cara_broker_at(&self.bootstrap, Some(&self.broker_config))
    }

    /// Log lines `lines` of `epoch` into the logs topic.
    fn produce(&self, epoch: usize, lines: std::ops::Range<usize>) {
        let lines: Vec<String> = lines
            .map(|i| {
                format!(
                    r#"{{"ts":1764000000000,"service":"s","message":"epoch {epoch} line {i}"}}"#
                )
            })
            .collect();
        kcat_produce(&self.bootstrap, "telemetry.logs", &lines);
    }

    /// `cara run` in `group`, once it has archived the first epoch's 100 lines.
    fn run_after_first_epoch(&self, group: &str) -> (Process, u16) {
        let (run, http) = start_cara_run(&self.bootstrap, &self.archive, &self.config, group);
        wait_until(Duration::from_secs(60), "100 logs archived", || {
            metric_sum(http, "cara_archive_rows_total", "table=\"logs\"") >= 100.0
        });
        (run, http)
    }
}

/// A broker replaced by an empty one on the same address (or a recreated topic): the
/// partition's log now ends below its checkpoint. The restarted pipeline says so and
/// archives the new log as a new epoch; nothing new is taken for already archived,
/// and nothing old is overwritten.
#[test]
fn a_reset_broker_starts_a_new_archive_epoch_and_loses_nothing() {
    let reset = BrokerReset::new();
    let (archive, bootstrap, config) = (&reset.archive, &reset.bootstrap, &reset.config);
    let mut broker = reset.broker();
    reset.produce(0, 0..100);
    let (mut run, _) = reset.run_after_first_epoch("reset");
    assert!(run.terminate(Duration::from_secs(30)).success());

    // The broker is replaced by an empty one; 40 new records land at offsets 0..39.
    broker.kill9();
    let _broker = reset.broker();
    reset.produce(1, 0..40);
    let (mut run, http) = start_cara_run(bootstrap, archive, config, "reset");
    wait_until(Duration::from_secs(60), "the 40 new logs archived", || {
        metric_sum(http, "cara_archive_rows_total", "table=\"logs\"") >= 40.0
    });
    assert_eq!(
        metric_sum(http, "cara_partition_log_resets_total", "telemetry.logs"),
        1.0
    );
    let (status, body) = http_get(http, "/readyz");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("notice: telemetry.logs/0") && body.contains("-e0001-"),
        "{body}"
    );
    assert!(run.terminate(Duration::from_secs(30)).success());
    assert_eq!(sql_count(archive, "SELECT count(*) FROM logs"), 140);
    assert_eq!(
        sql_count(
            archive,
            "SELECT count(*) FROM logs WHERE message LIKE 'epoch 1 %'"
        ),
        40
    );
    let epoch_files = sql_count(
        archive,
        "SELECT count(DISTINCT _offset) FROM logs WHERE message LIKE 'epoch 1 %' AND _offset < 40",
    );
    assert_eq!(
        epoch_files, 40,
        "the new log's offsets, kept beside the old ones"
    );

    // A third run resumes the new epoch at its checkpoint: no reset, nothing twice.
    reset.produce(1, 40..50);
    let (mut run, http) = start_cara_run(bootstrap, archive, config, "reset");
    wait_until(Duration::from_secs(60), "10 more logs archived", || {
        metric_sum(http, "cara_archive_rows_total", "table=\"logs\"") >= 10.0
    });
    assert_eq!(metric_sum(http, "cara_partition_log_resets_total", ""), 0.0);
    assert!(run.terminate(Duration::from_secs(30)).success());
    assert_eq!(sql_count(archive, "SELECT count(*) FROM logs"), 150);
    let names: Vec<String> = files_under(&archive.join("logs"))
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.contains("telemetry.logs-0000-e0001-")),
        "{names:?}"
    );
}

/// The broker replaced under a running pipeline: `cara broker` advertises its fixed
/// address, as a real Kafka keeps its advertised listener, so the running consumer
/// reaches the new broker, rejoins its group and archives the new log as a new epoch
/// without a restart, reporting the reset.
#[test]
fn a_running_pipeline_follows_a_replaced_broker_into_a_new_epoch() {
    let reset = BrokerReset::new();
    let mut broker = reset.broker();
    reset.produce(0, 0..100);
    let (mut run, http) = reset.run_after_first_epoch("replaced");

    broker.kill9();
    let _broker = reset.broker();
    reset.produce(1, 0..40);
    // Well within the group's session timeout (45 s): the reset is taken from the
    // data, not from a rebalance.
    wait_until(Duration::from_secs(30), "the 40 new logs archived", || {
        metric_sum(http, "cara_archive_rows_total", "table=\"logs\"") >= 140.0
    });
    // Ready again once no broker error is recent, with the reset as a notice.
    wait_until(Duration::from_secs(60), "ready again", || {
        http_get(http, "/readyz").0 == 200
    });
    let (_, body) = http_get(http, "/readyz");
    assert!(body.contains("notice: telemetry.logs/0"), "{body}");
    assert_eq!(
        metric_sum(http, "cara_partition_log_resets_total", "telemetry.logs"),
        1.0
    );
    assert!(run.terminate(Duration::from_secs(30)).success());
    assert_eq!(sql_count(&reset.archive, "SELECT count(*) FROM logs"), 140);
    assert_eq!(
        sql_count(
            &reset.archive,
            "SELECT count(*) FROM logs WHERE message LIKE 'epoch 1 %'"
        ),
        40
    );
}

/// Produces `lines` log lines into `telemetry.logs` stamped an hour ago (the Kafka
/// timestamps the Python client sets), as a backlog after an outage.
fn produce_hour_old_backlog(dir: &Path, bootstrap: &str, lines: usize) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let backlog = dir.join("backlog.jsonl");
    write_spec(
        &backlog,
        (0..lines).map(|i| {
            format!(
                "{{\"payload\":{},\"timestamp_ms\":{}}}",
                serde_like::json_string(&log(i)),
                now_ms - 3_600_000 + i as i64
            )
        }),
    );
    python(
        "produce.py",
        &[bootstrap, "telemetry.logs", backlog.to_str().unwrap()],
    );
}

/// A backlog of at least a 64th of `roll_bytes` is archived the moment cara has read it
/// all, not even a quarter of the interval later: all of it, though the producer's
/// sticky partitioner put most lines in one or two partitions and only a few in
/// others (stragglers that alone would be a small backlog).
#[test]
fn a_large_backlog_is_archived_at_once_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let (_broker, bootstrap) = start_cara_broker();
    // 64 KiB files: the 3000 lines (about 330 KB) are far more than a 64th (1 KiB);
    // a quarter of the interval would be 30 s.
    let config = write_config(
        dir.path(),
        "[archive]\nroll_interval = \"120s\"\nroll_bytes = 65536\n",
    );
    produce_hour_old_backlog(dir.path(), &bootstrap, 3000);
    let (mut run, http) = start_cara_run(&bootstrap, &archive, &config, "large-backlog");
    // Well before the quarter (30 s) would have flushed what the size rule left.
    wait_until(Duration::from_secs(20), "the backlog archived", || {
        metric_sum(http, "cara_archive_rows_total", "table=\"logs\"") >= 3000.0
    });
    assert_eq!(sql_count(&archive, "SELECT count(*) FROM logs"), 3000);
    assert!(run.terminate(Duration::from_secs(30)).success());
}

/// A backlog (records older than the roll interval when read, as after an outage) is
/// archived as soon as cara has read it, not a roll interval later; fresh records still
/// wait for the interval, so a steady stream keeps its file sizes.
#[test]
fn a_backlog_is_archived_once_read_and_fresh_records_wait_for_the_roll_interval() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let (_broker, bootstrap) = start_cara_broker();
    // A drained backlog this small (under a 64th of roll_bytes in a shard) waits a
    // quarter of the interval (10 s), a larger one nothing; anything else all of it.
    let config = write_config(dir.path(), "[archive]\nroll_interval = \"40s\"\n");
    produce_hour_old_backlog(dir.path(), &bootstrap, 3000);

    let (mut run, http) = start_cara_run(&bootstrap, &archive, &config, "backlog");
    // Well before the 40 s interval would have flushed it.
    wait_until(Duration::from_secs(28), "the backlog archived", || {
        metric_sum(http, "cara_archive_rows_total", "table=\"logs\"") >= 3000.0
    });
    assert_eq!(sql_count(&archive, "SELECT count(*) FROM logs"), 3000);

    // Fresh records (kcat stamps them now) wait for the interval: none archived yet.
    kcat_produce(
        &bootstrap,
        "telemetry.logs",
        &(3000..3010).map(log).collect::<Vec<_>>(),
    );
    wait_until(Duration::from_secs(30), "the fresh records read", || {
        metric_sum(http, "cara_records_in_total", "telemetry.logs") >= 3010.0
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        metric_sum(http, "cara_archive_rows_total", "table=\"logs\""),
        3000.0,
        "fresh records must not be flushed before the roll interval"
    );
    // Shutdown flushes them.
    assert!(run.terminate(Duration::from_secs(30)).success());
    assert_eq!(sql_count(&archive, "SELECT count(*) FROM logs"), 3010);
}
