//! `cara run` with no broker configured: the embedded broker at a fixed bootstrap
//! address takes kcat's messages; `--demo` fills the archive by itself; config and
//! SQL errors are clear.

mod common;

use std::time::Duration;

use common::*;

fn embedded_config(dir: &std::path::Path, kafka_port: u16) -> std::path::PathBuf {
    write_config(dir, &format!("[archive]\nroll_interval = \"1s\"\n[embedded_broker]\nlisten = \"127.0.0.1:{kafka_port}\"\n"))
}

fn run_embedded(dir: &std::path::Path, extra: &[&str]) -> (Process, u16, u16) {
    let kafka_port = free_port();
    let http_port = free_port();
    let config = embedded_config(dir, kafka_port);
    let mut cmd = cara();
    cmd.args([
        "run",
        "--http",
        &format!("127.0.0.1:{http_port}"),
        "--archive",
    ])
    .arg(dir.join("archive"))
    .arg("--config")
    .arg(&config)
    .args(extra)
    .env("RUST_LOG", "warn");
    let run = Process::spawn("cara-run", cmd);
    wait_until(Duration::from_secs(60), "embedded run to be ready", || {
        http_get(http_port, "/readyz").0 == 200
    });
    (run, kafka_port, http_port)
}

#[test]
fn kcat_produces_to_the_embedded_broker_through_its_fixed_address() {
    let dir = tempfile::tempdir().unwrap();
    let (mut run, kafka_port, http) = run_embedded(dir.path(), &[]);
    assert!(
        run.output_contains("5 MiB per partition"),
        "start-up must state the broker's limits"
    );
    assert!(run.output_contains(&format!("bootstrap 127.0.0.1:{kafka_port}")));
    let lines: Vec<String> = (0..500)
        .map(|i| {
            format!(
                r#"{{"ts":{},"service":"api","level":"info","message":"line {i}"}}"#,
                1_764_000_000_000i64 + i
            )
        })
        .collect();
    kcat_produce(&format!("127.0.0.1:{kafka_port}"), "telemetry.logs", &lines);
    wait_until(Duration::from_secs(60), "500 logs archived", || {
        metric_sum(http, "cara_archive_rows_total", "table=\"logs\"") >= 500.0
    });
    assert_eq!(http_get(http, "/healthz").0, 200);
    // Lag comes from librdkafka statistics (every 5 s) and drops to zero once all is read.
    wait_until(
        Duration::from_secs(20),
        "consumer lag of telemetry.logs reported as 0",
        || {
            let body = http_get(http, "/metrics").1;
            let lags: Vec<&str> = body
                .lines()
                .filter(|l| l.starts_with("cara_consumer_lag{") && l.contains("telemetry.logs"))
                .collect();
            !lags.is_empty() && lags.iter().all(|l| l.ends_with(" 0"))
        },
    );
    let metrics = http_get(http, "/metrics").1;
    for family in [
        "cara_records_in_total",
        "cara_consumer_lag",
        "cara_archive_bytes_total",
        "cara_flush_seconds_bucket",
        "cara_dlq_records_total",
    ] {
        assert!(metrics.contains(family), "/metrics lacks {family}");
    }
    assert!(run.terminate(Duration::from_secs(30)).success());
    let archive = dir.path().join("archive");
    assert_eq!(sql_count(&archive, "SELECT count(*) FROM logs"), 500);
    assert_eq!(
        sql_count(
            &archive,
            "SELECT count(*) FROM logs WHERE message = 'line 321'"
        ),
        1
    );
    // Partition pruning: the hour directory filters to the same rows.
    assert_eq!(
        sql_count(
            &archive,
            "SELECT count(*) FROM logs WHERE date = '2025-11-24' AND hour = '16'"
        ),
        500
    );
    assert_eq!(
        sql_count(
            &archive,
            "SELECT count(*) FROM logs WHERE date = '2020-01-01'"
        ),
        0
    );
}

#[test]
fn demo_fills_the_archive_on_its_own_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut run, _, http) = run_embedded(dir.path(), &["--demo", "--demo-rate", "3000"]);
    wait_until(Duration::from_secs(60), "demo rows in every table", || {
        ["metrics", "logs", "spans"]
            .iter()
            .all(|t| metric_sum(http, "cara_archive_rows_total", &format!("table=\"{t}\"")) > 0.0)
    });
    assert!(run.terminate(Duration::from_secs(30)).success());
    assert!(run.output_contains("demo:"), "demo announces itself");
    assert!(
        run.output_contains("checkout-availability"),
        "the demo watches SLOs when none are configured"
    );
    let archive = dir.path().join("archive");
    let spans = sql_count(&archive, "SELECT count(*) FROM spans");
    assert!(spans > 0);
    // Spans of one trace link up: every parent id is a span of the same trace.
    let orphans = sql_count(
        &archive,
        "SELECT count(*) FROM spans c WHERE c.parent_span_id IS NOT NULL AND NOT EXISTS \
         (SELECT 1 FROM spans p WHERE p.span_id = c.parent_span_id AND p.trace_id = c.trace_id)",
    );
    // Only spans whose parent was still in flight at shutdown may be unmatched.
    assert!(
        orphans * 10 < spans,
        "{orphans} of {spans} spans lack their parent"
    );
    assert_eq!(
        sql_count(&archive, "SELECT count(*) FROM dlq"),
        0,
        "the generator's records are all valid"
    );
}

/// Every `cara sql "…"` example of the README, in order.
fn readme_sql_examples() -> Vec<String> {
    let readme = std::fs::read_to_string(tests_dir().join("../README.md")).unwrap();
    let mut examples = Vec::new();
    let mut rest = readme.as_str();
    while let Some(at) = rest.find("cara sql \"") {
        rest = &rest[at + "cara sql \"".len()..];
        let end = rest
            .find('"')
            .expect("an example's query ends with a quote");
        examples.push(rest[..end].to_owned());
        rest = &rest[end..];
    }
    examples
}

/// The row count `cara sql` prints under a table (`N rows`).
fn printed_rows(table: &str) -> usize {
    let last = table.lines().last().unwrap_or_default();
    last.split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no row count under the table:\n{table}"))
}

#[test]
fn readme_sql_examples_return_rows_against_the_demo() {
    let examples = readme_sql_examples();
    assert!(
        examples.len() >= 4,
        "the README's SQL examples were not found: {examples:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let (mut run, _, http) = run_embedded(dir.path(), &["--demo"]);
    let archive = dir.path().join("archive");
    let sql = |query: &str| {
        let out = cara()
            .args(["sql", "--archive"])
            .arg(&archive)
            .arg(query)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{query}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // SLO statuses come once a minute of event time has closed, incidents a minute
    // after the demo's first fault (three to five minutes in); the rest sooner.
    let mut waiting = examples.clone();
    wait_until(
        Duration::from_secs(480),
        "every README example to return rows",
        || {
            waiting.retain(|query| printed_rows(&sql(query)) == 0);
            if !waiting.is_empty() {
                eprintln!("README examples without rows yet: {waiting:?}");
            }
            waiting.is_empty()
        },
    );
    // The summary, drawn every 5 s from the output topics, shows it too.
    let open_incident =
        |l: &String| l.starts_with("INCIDENTS: ") && !l.starts_with("INCIDENTS: 0 open");
    wait_until(Duration::from_secs(30), "the summary's incident", || {
        run.lines().iter().any(open_incident)
    });
    // And the demo policy's decisions: the ticket run at once, the rollback waiting
    // for a human, with the command that approves it.
    let waiting =
        |l: &String| l.starts_with("DECISIONS: ") && !l.starts_with("DECISIONS: 0 waiting");
    let executed = |l: &String| l.starts_with("DECISIONS: ") && !l.contains("made: 0 executed");
    wait_until(
        Duration::from_secs(60),
        "a decision waiting, one executed",
        || {
            let lines = run.lines();
            lines.iter().any(waiting) && lines.iter().any(executed)
        },
    );
    // The generator's volume that fills (five hours after the start) is a capacity
    // alert and the demo policy's scale-out of that volume's service (its own
    // incident, even when a fault nearby is open), waiting for a human.
    let scale_out =
        "WITH filling AS (SELECT DISTINCT concat('volume/', labels['service']) AS target \
        FROM alerts WHERE rule = 'capacity' \
        AND labels['__name__'] = 'kubelet_volume_stats_used_bytes') \
        SELECT count(*) FROM decisions d JOIN filling f ON d.target = f.target \
        WHERE d.action = 'scale_out' AND d.state = 'proposed'";
    // The alert comes about five minutes in; its incident waits for the slowest
    // stage's progress (the minute windows), a minute or two, more on a loaded
    // machine.
    wait_until(
        Duration::from_secs(360),
        "the filling volume's scale-out",
        || sql_count(&archive, scale_out) > 0,
    );
    // The demo's rollback is for faults: none for the volume's incident.
    assert_eq!(
        sql_count(
            &archive,
            "SELECT count(*) FROM decisions r JOIN decisions s ON r.incident_id = s.incident_id \
             WHERE r.action = 'rollback' AND s.action = 'scale_out'",
        ),
        0
    );
    assert_eq!(
        sql_count(
            &archive,
            "SELECT count(DISTINCT id) FROM alerts WHERE rule = 'capacity' \
             AND labels['__name__'] = 'kubelet_volume_stats_used_bytes'",
        ),
        1,
        "one volume fills"
    );
    let (status, body) = http_get(http, "/api/templates?service=checkout");
    assert_eq!(status, 200);
    assert!(body.contains("\"service\":\"checkout\""), "{body}");
    assert!(run.terminate(Duration::from_secs(30)).success());
    // Stdout is a pipe here: the summary is plain text, and it tells the story.
    let output = run.lines().join("\n");
    assert!(!output.contains('\x1b'), "no escape codes in a pipe");
    for heading in [
        "INCIDENTS",
        "DECISIONS",
        "FIRING ALERTS",
        "SLOS",
        "LOG TEMPLATES",
        "INJECTED FAULTS",
    ] {
        assert!(
            output.contains(heading),
            "summary lacks {heading}:\n{output}"
        );
    }
    assert!(output.contains("checkout-availability"), "{output}");
    // The incident the README example found, with its ranked causes.
    assert!(
        output.contains("      1. "),
        "no probable cause shown:\n{output}"
    );
    assert!(
        output.contains("rollback deploy/") && output.contains("-t cara.approvals"),
        "no rollback waiting with its approval command:\n{output}"
    );
    // An empty result still prints its header and says so.
    let empty = sql("SELECT service, level FROM logs WHERE service = 'no-such-service'");
    assert!(
        empty.contains("| service | level |") && empty.ends_with("0 rows\n"),
        "{empty}"
    );
    let tables = sql("SHOW TABLES");
    assert!(
        tables.contains("| alerts ") && tables.contains("| slo "),
        "{tables}"
    );
}

#[test]
fn the_apis_require_the_bearer_token_and_the_probes_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let token = "s3cret-token-0123456789";
    let kafka_port = free_port();
    let http = free_port();
    let config = write_config(
        dir.path(),
        &format!(
            "[embedded_broker]\nlisten = \"127.0.0.1:{kafka_port}\"\n[http]\ntoken = \"{token}\"\n"
        ),
    );
    let mut cmd = cara();
    cmd.args(["run", "--http", &format!("127.0.0.1:{http}"), "--archive"])
        .arg(dir.path().join("archive"))
        .arg("--config")
        .arg(&config)
        .env_remove("CARA_HTTP_TOKEN")
        .env("RUST_LOG", "warn");
    let mut run = Process::spawn("cara-run", cmd);
    wait_until(Duration::from_secs(60), "ready", || {
        http_get(http, "/readyz").0 == 200
    });
    assert_eq!(http_get(http, "/healthz").0, 200);
    assert_eq!(http_get(http, "/metrics").0, 200);
    for path in ["/api/templates", "/api/graph"] {
        let (status, body) = http_get(http, path);
        assert_eq!(status, 401, "{path} without a token: {body}");
        assert!(body.contains("Bearer"), "{body}");
        let wrong = http_get_with(
            http,
            path,
            "Authorization: Bearer s3cret-token-0123456780\r\n",
        );
        assert_eq!(wrong.0, 401, "{path} with a wrong token");
        let right = http_get_with(http, path, &format!("Authorization: Bearer {token}\r\n"));
        assert_eq!(right.0, 200, "{path} with the token: {}", right.1);
    }
    assert!(run.terminate(Duration::from_secs(30)).success());

    // Beyond loopback without a token: refused before anything starts.
    let open = dir.path().join("open.toml");
    std::fs::write(&open, "[http]\nlisten = \"0.0.0.0:9898\"\n").unwrap();
    let out = cara()
        .args(["config", "check"])
        .arg(&open)
        .env_remove("CARA_HTTP_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("http.token"), "{err}");
    let out = cara()
        .args(["config", "check"])
        .arg(&open)
        .env("CARA_HTTP_TOKEN", token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config_check =
        |path: &std::path::Path| cara().args(["config", "check"]).arg(path).output().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[archive]\nroll_interval = \"often\"\n").unwrap();
    let out = config_check(&bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("archive.roll_interval") && err.contains("often"),
        "{err}"
    );

    std::fs::write(
        &bad,
        "[kafka]\nbrokers = \"x:1\"\nfavourite_colour = \"blue\"\n",
    )
    .unwrap();
    let out = config_check(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("favourite_colour"),
        "{err}"
    );

    // A dead-letter topic that is also an input would feed dead letters back forever.
    std::fs::write(&bad, "[kafka]\ndlq_topic = \"telemetry.metrics\"\n").unwrap();
    let out = config_check(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("kafka.dlq_topic") && err.contains("distinct"),
        "{err}"
    );

    // A secret read from the environment: `config check` accepts it where the
    // variable is not set; `cara run` and `cara gen` stop naming the key and the
    // variable before talking to any broker.
    let secret = dir.path().join("secret.toml");
    std::fs::write(
        &secret,
        "[kafka.client_properties_env]\n\"sasl.password\" = \"CARA_TEST_UNSET_SECRET\"\n",
    )
    .unwrap();
    let out = config_check(&secret);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let archive = dir.path().join("archive");
    for args in [
        vec!["run", "--brokers", "127.0.0.1:1", "--archive"],
        vec![
            "gen",
            "--brokers",
            "127.0.0.1:1",
            "--count",
            "1",
            "--labels",
        ],
    ] {
        let out = cara()
            .args(&args)
            .arg(&archive)
            .arg("--config")
            .arg(&secret)
            .env_remove("CARA_TEST_UNSET_SECRET")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && err.contains("kafka.client_properties_env.\"sasl.password\"")
                && err.contains("CARA_TEST_UNSET_SECRET is not set"),
            "{args:?}: {err}"
        );
    }

    let good = dir.path().join("good.toml");
    let defaults = cara().args(["config", "defaults"]).output().unwrap();
    std::fs::write(&good, &defaults.stdout).unwrap();
    let out = config_check(&good);
    assert!(
        out.status.success(),
        "defaults must check: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sql_is_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    std::fs::create_dir_all(&archive).unwrap();
    // `cara sql [extra flags] --archive <archive> <statement>`.
    let cara_sql = |extra: &[&str], statement: &str| {
        cara()
            .arg("sql")
            .args(extra)
            .arg("--archive")
            .arg(&archive)
            .arg(statement)
            .output()
            .unwrap()
    };
    for statement in [
        "DROP TABLE metrics",
        "CREATE TABLE x AS SELECT 1",
        "INSERT INTO metrics SELECT * FROM metrics",
        "COPY (SELECT 1) TO '/tmp/cara-should-not-exist.csv'",
        "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let out = cara_sql(&[], statement);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{statement} must be refused");
        assert!(err.contains("read-only"), "{statement}: {err}");
    }
    assert!(!std::path::Path::new("/tmp/cara-should-not-exist.csv").exists());
    // Queries over empty tables answer with zero rows, not an error.
    let out = cara_sql(&["--format", "json"], "SELECT count(*) AS n FROM spans");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"n":0}"#);
    // An error is said once, not once per level of its chain.
    let out = cara_sql(&[], "SELECT no_such_column FROM spans");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.matches("no_such_column").count(), 1, "{err}");
    // A gigabyte string is refused before it is made (it once took 6.9 GB).
    let out = cara_sql(&[], "SELECT length(repeat('x', 1000000000))");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("repeat() would make") && err.contains("64 MiB"),
        "{err}"
    );
}
