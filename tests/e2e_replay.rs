//! `cara backtest replay` against the live run that wrote the archive: the same
//! dataflow replayed from the archive writes the same outputs, row for row (compared
//! by DuckDB, a reader nobody here wrote), and a changed config shows what it would
//! have done.

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use common::*;

/// The derived tables a replay writes, compared with the live ones.
const OUTPUTS: [&str; 8] = [
    "alerts",
    "incidents",
    "metric_windows",
    "log_windows",
    "log_templates",
    "slo",
    "red",
    "service_graph",
];

/// Per table: (rows live, rows replayed, rows only live, rows only replayed).
fn compare(live: &Path, replay: &Path) -> Vec<(String, [i64; 4])> {
    let mut args = vec![live.to_str().unwrap(), replay.to_str().unwrap()];
    args.extend(OUTPUTS);
    let out = python("compare_archives_duckdb.py", &args);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let mut fields = line.split(',');
            let table = fields.next().unwrap().to_owned();
            let counts: Vec<i64> = fields.map(|f| f.parse().unwrap()).collect();
            (table, [counts[0], counts[1], counts[2], counts[3]])
        })
        .collect()
}

/// `cara backtest replay` of `archive` into `out` with `args`: its standard output.
fn replay(archive: &Path, out: &Path, args: &[&OsStr]) -> String {
    let output = cara()
        .args(["backtest", "replay", "--archive"])
        .arg(archive)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn a_replay_reproduces_the_live_outputs_and_a_lower_threshold_adds_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let broker_config = dir.path().join("broker.toml");
    std::fs::write(
        &broker_config,
        "[embedded_broker]\ntelemetry_partitions = 2\noutput_partitions = 1\n",
    )
    .unwrap();
    let (_broker, bootstrap) = start_cara_broker_with(Some(&broker_config));
    let config = write_config(
        dir.path(),
        "[archive]\nroll_interval = \"1s\"\n[runtime]\nidle_partition_timeout = \"2s\"\n\
         [[slo]]\nname = \"checkout-availability\"\nservice = \"checkout\"\nsli = \"availability\"\nobjective = 0.97\n",
    );
    let (mut run, http) = start_cara_run(&bootstrap, &archive, &config, "replay");
    // About six minutes of event time for eight services, produced as fast as the
    // broker takes it.
    let mut gen = cara();
    gen.args([
        "gen",
        "--brokers",
        &bootstrap,
        "--rate",
        "0",
        "--event-rate",
        "200",
        "--count",
        "72000",
        "--services",
        "8",
        "--seed",
        "4",
        "--start",
        "2026-01-01T00:00:00Z",
        "--labels",
    ]);
    let labels = dir.path().join("labels.jsonl");
    gen.arg(&labels);
    let mut producer = Process::spawn("cara-gen", gen);
    assert!(producer.child.wait().unwrap().success());
    wait_until(Duration::from_secs(10), "the generator's summary", || {
        producer.lines().last().is_some_and(|l| l.starts_with('{'))
    });
    let last = producer.lines().last().cloned().unwrap();
    let summary: serde_json::Value = serde_json::from_str(&last).unwrap();
    let produced = ["metrics", "logs", "spans"]
        .map(|k| summary[k].as_i64().unwrap())
        .iter()
        .sum::<i64>();
    wait_until(Duration::from_secs(120), "every record archived", || {
        archived_input_rows(http) as i64 >= produced
    });
    // And the second stages have closed minutes from the exchange topics.
    wait_until(
        Duration::from_secs(60),
        "SLO statuses, RED minutes and log windows",
        || {
            ["slo", "red", "log_windows"].iter().all(|table| {
                metric_sum(
                    http,
                    "cara_archive_rows_total",
                    &format!("table=\"{table}\""),
                ) > 0.0
            })
        },
    );
    // One metric far ahead on partition 0: partition 1, idle, has its watermark
    // raised to partition 0's, which fires its open windows under a raise's stem;
    // and the metric partitions' progress, more than `incidents.max_source_lag`
    // ahead of the combiners', lets the incident stage apply every alert.
    kcat_produce_to_partition(
        &bootstrap,
        "telemetry.metrics",
        0,
        &[r#"{"ts":"2026-01-01T00:30:00Z","name":"late_comer","value":1,"labels":{"service":"cart"}}"#.to_owned()],
    );
    let raised = |archive: &Path| -> Vec<String> {
        let mut stems: Vec<String> = files_under(&archive.join("metric_windows"))
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .filter(|name| name.contains("-watermark-"))
            .collect();
        stems.sort();
        stems
    };
    wait_until(Duration::from_secs(60), "an idle partition's raise", || {
        !raised(&archive).is_empty()
    });
    wait_until(Duration::from_secs(60), "incidents", || {
        metric_sum(http, "cara_archive_rows_total", "table=\"incidents\"") > 0.0
    });
    assert!(run.terminate(Duration::from_secs(30)).success());

    // What the second stages waited for, recorded for the replay to wait alike: the
    // partitions of both span topics (telemetry.spans and otlp_spans, 2 each).
    let counted: serde_json::Value = serde_json::from_slice(
        &std::fs::read(archive.join("_cara").join("topic_partitions.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(counted["spans"], 4, "{counted}");

    // The live config, as the run recorded it beside the archive.
    let same = dir.path().join("same");
    let stdout = replay(&archive, &same, &["--compare".as_ref()]);
    assert!(stdout.contains("_cara/config.toml"), "{stdout}");
    assert!(stdout.contains("no difference"), "{stdout}");
    // The raises the live run recorded are replayed where they happened.
    assert_eq!(raised(&same), raised(&archive));
    let compared = compare(&archive, &same);
    eprintln!("live against replay: {compared:?}");
    assert_eq!(compared.len(), OUTPUTS.len(), "{compared:?}");
    for (table, [live, replayed, only_live, only_replayed]) in &compared {
        assert_eq!(
            (live, only_live, only_replayed),
            (replayed, &0, &0),
            "{table}: {compared:?}"
        );
    }
    let rows = |table: &str| compared.iter().find(|(t, _)| t == table).unwrap().1[0];
    for table in OUTPUTS {
        assert!(rows(table) > 0, "{table} is empty: {compared:?}");
    }

    // A labels file that is not one is reported, naming its line, before any replay.
    let bad = dir.path().join("bad-labels.jsonl");
    std::fs::write(&bad, "{\"id\":\"inc-1\",\"kind\":\"meltdown\"}\n").unwrap();
    let refused = cara()
        .args(["backtest", "replay", "--archive"])
        .arg(&archive)
        .arg("--out")
        .arg(dir.path().join("bad"))
        .arg("--labels")
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("line 1") && stderr.contains("meltdown"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("bad").join("metric_windows").exists(),
        "nothing replayed"
    );

    // A new SLO: the live run sent no exchange records for it, so the replay's own
    // first stages send them to its second stages in process.
    let recorded = std::fs::read_to_string(archive.join("_cara").join("config.toml")).unwrap();
    let with_cart = dir.path().join("cart-slo.toml");
    std::fs::write(
        &with_cart,
        format!(
            "{recorded}\n[[slo]]\nname = \"cart-availability\"\nservice = \"cart\"\nsli = \"availability\"\nobjective = 0.97\n"
        ),
    )
    .unwrap();
    let cart = dir.path().join("cart");
    let stdout = replay(
        &archive,
        &cart,
        &["--config".as_ref(), with_cart.as_os_str()],
    );
    assert!(
        stdout.contains("exchange: the SLO, trace, log or alert settings differ"),
        "{stdout}"
    );
    let statuses = |archive: &Path, slo: &str| {
        sql_count(
            archive,
            &format!("SELECT count(*) FROM slo WHERE slo = '{slo}'"),
        )
    };
    assert_eq!(statuses(&archive, "cart-availability"), 0);
    assert!(statuses(&cart, "cart-availability") > 0, "{stdout}");
    // The SLO both runs have, computed from the replay's own exchange records: its
    // statuses are the live ones (as many, and the same minutes).
    for query in [
        "SELECT count(DISTINCT ts) FROM slo WHERE slo = 'checkout-availability'",
        "SELECT CAST(sum(budget_remaining) * 1000000 AS BIGINT) FROM slo WHERE slo = 'checkout-availability'",
    ] {
        assert_eq!(sql_count(&cart, query), sql_count(&archive, query), "{query}");
    }
    eprintln!(
        "checkout statuses live {}, replayed in process {}",
        statuses(&archive, "checkout-availability"),
        statuses(&cart, "checkout-availability")
    );

    // A time range: only the records from the third minute of event time on.
    let replayed = |args: &[&str], out: &str| -> i64 {
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        let stdout = replay(&archive, &dir.path().join(out), &args);
        let words: Vec<&str> = stdout.split_whitespace().collect();
        let at = words.iter().position(|w| *w == "replayed").unwrap();
        words[at + 1].parse().unwrap()
    };
    let archived: i64 = [
        "metrics",
        "logs",
        "spans",
        "slo_partials",
        "trace_partials",
        "log_partials",
        "alert_partials",
    ]
    .iter()
    .map(|t| sql_count(&archive, &format!("SELECT count(*) FROM {t}")))
    .sum();
    assert_eq!(replayed(&[], "all"), archived);
    let from_third_minute = replayed(&["--from", "2026-01-01T00:03:00Z"], "later");
    assert!(
        from_third_minute > 0 && from_third_minute < archived,
        "{from_third_minute} of {archived}"
    );
    assert_eq!(replayed(&["--to", "2026-01-01T00:00:00Z"], "none"), 0);

    // A lower anomaly threshold, replayed: more alerts than live, none lost.
    assert!(recorded.contains("rules = []"), "{recorded}");
    let lower = dir.path().join("lower.toml");
    std::fs::write(
        &lower,
        recorded.replace(
            "rules = []",
            "rules = [{ name = \"metric_anomaly\", threshold = 0.2 }]",
        ),
    )
    .unwrap();
    let lowered = dir.path().join("lower");
    let stdout = replay(
        &archive,
        &lowered,
        &[
            "--compare".as_ref(),
            "--config".as_ref(),
            lower.as_os_str(),
            "--labels".as_ref(),
            labels.as_os_str(),
        ],
    );
    // The diff, per rule and service (six columns): the anomaly rule gained
    // transitions.
    let added: u64 = stdout
        .lines()
        .filter(|l| l.starts_with("| metric_anomaly |") && l.split('|').count() == 8)
        .map(|l| l.split('|').nth(3).unwrap().trim().parse::<u64>().unwrap())
        .sum();
    assert!(added > 0, "{stdout}");
    let written =
        std::fs::read_to_string(lowered.join("_cara").join("compare").join("alerts.csv")).unwrap();
    assert_eq!(
        written
            .lines()
            .filter(|l| l.starts_with("added,metric_anomaly,"))
            .count() as u64,
        added,
        "{written}"
    );
    let firing = |archive: &Path| {
        sql_count(
            archive,
            "SELECT count(*) FROM alerts WHERE rule = 'metric_anomaly' AND status = 'firing'",
        )
    };
    assert!(
        firing(&lowered) > firing(&archive),
        "lower threshold: {} firing, live {}",
        firing(&lowered),
        firing(&archive)
    );
    let compared = compare(&archive, &lowered);
    eprintln!("live against the lower threshold: {compared:?}");
    let alerts = compared.iter().find(|(t, _)| t == "alerts").unwrap().1;
    assert!(alerts[3] > 0, "alerts only in the replay: {compared:?}");
    // Everything not scored by the anomaly rule (or made of its alerts) is as live.
    for (table, [live, replayed, _, _]) in &compared {
        if table != "alerts" && table != "incidents" {
            assert_eq!(live, replayed, "{table}: {compared:?}");
        }
    }

    // Scored against the generator's labels: cara's counts are DuckDB's, reading the
    // same alerts and labels by the documented rule.
    let all_row: Vec<String> = stdout
        .lines()
        .find(|l| l.starts_with("| all |"))
        .unwrap_or_else(|| panic!("no score against the labels: {stdout}"))
        .split('|')
        .map(|f| f.trim().to_owned())
        .collect();
    let expected = python(
        "score_labels_duckdb.py",
        &[
            labels.to_str().unwrap(),
            lowered.to_str().unwrap(),
            "120000",
        ],
    );
    let expected: Vec<String> = String::from_utf8(expected.stdout)
        .unwrap()
        .trim()
        .split(',')
        .map(str::to_owned)
        .collect();
    let labelled = std::fs::read_to_string(&labels).unwrap().lines().count();
    assert!(labelled >= 1, "the generator labels its incidents");
    assert_eq!(expected[0], labelled.to_string());
    // | all | incidents | detected | alerts | on callers | ...
    assert_eq!(
        &all_row[2..6],
        [&expected[0..3], &expected[4..5]].concat(),
        "cara: {all_row:?}, DuckDB: {expected:?}"
    );
    let false_alarms = format!("false alarms (matching no incident): {}", expected[3]);
    assert!(stdout.contains(&false_alarms), "{stdout}");
    assert!(lowered.join("_cara").join("labels.md").is_file());

    // The report, opened in chromium: no errors, the timeline and a plot per alerting
    // series (the lower threshold's anomaly alerts) drawn with their lines.
    let report = lowered.join("report.html");
    assert!(stdout.contains("report: "), "{stdout}");
    // Kept beside the screenshot for a person to look at.
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::copy(&report, kept.join("replay-report.html")).unwrap();
    let screenshot = kept.join("replay-report.png");
    let seen = browser_screenshot(&report, &screenshot);
    eprintln!("report in chromium: {seen}");
    assert_eq!(seen["title"], "cara backtest replay");
    let tables: Vec<&str> = seen["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert_eq!(tables, ["summary", "rules", "labels", "rule-precision"]);
    let plots = seen["plots"].as_array().unwrap();
    let timeline = plots.iter().find(|p| p["id"] == "timeline").unwrap();
    assert!(timeline["width"].as_i64() >= Some(900) && timeline["height"].as_i64() >= Some(100));
    let series: Vec<_> = plots.iter().filter(|p| p["id"] != "timeline").collect();
    let alerting_series = sql_count(
        &lowered,
        "SELECT count(DISTINCT summary) FROM alerts WHERE kind = 'anomaly' AND status = 'firing'",
    );
    assert_eq!(series.len() as i64, alerting_series.min(12), "{seen}");
    for plot in series {
        // The value and the score lines, each through every point plotted.
        assert!(plot["lines"].as_i64() >= Some(2), "{plot}");
        assert!(plot["height"].as_i64() >= Some(300), "{plot}");
    }
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
}
