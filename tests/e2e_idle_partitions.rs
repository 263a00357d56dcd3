//! Idle partitions end to end: two partitions of `telemetry.metrics` in a separate
//! `cara broker`, one of which stops early. Its last windows close anyway, once it has
//! been idle for `runtime.idle_partition_timeout` and its watermark is raised to the
//! topic's; the busy partition, which leads, is not raised. The raise is checkpointed:
//! a restart neither repeats nor loses a window. A series beyond the per-partition
//! series limit is archived, not scored, and counted.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// A whole minute.
const START_MS: i64 = 1_700_000_040_000;

/// One point per minute, 20 s into the minute, for `minutes + 1` minutes.
fn series(service: &str, minutes: i64) -> Vec<String> {
    (0..=minutes)
        .map(|m| {
            let ts = START_MS + m * 60_000 + 20_000;
            let value = 10.0 + (m % 7) as f64;
            format!(
                r#"{{"ts":{ts},"name":"queue_depth","type":"gauge","value":{value},"labels":{{"service":"{service}"}}}}"#
            )
        })
        .collect()
}

/// (window start in minutes from the start, count) of a series' archived windows.
fn windows(archive: &Path, service: &str) -> Vec<String> {
    sql_rows(
        archive,
        &format!(
            "SELECT (CAST(window_start AS BIGINT) - {START_MS}) / 60000 AS minute, count \
             FROM metric_windows WHERE labels['service'] = '{service}' ORDER BY minute"
        ),
    )
}

#[test]
fn an_idle_partition_closes_its_windows_at_the_topics_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, brokers) = start_cara_broker();
    kcat_produce_to_partition(&brokers, "telemetry.metrics", 0, &series("busy", 60));
    // A second series in the busy partition, past its one-series limit: archived,
    // not scored, and reported.
    kcat_produce_to_partition(&brokers, "telemetry.metrics", 0, &series("extra", 5));
    kcat_produce_to_partition(&brokers, "telemetry.metrics", 1, &series("quiet", 10));
    let config = write_config(
        dir.path(),
        "[archive]\nroll_interval = \"1s\"\n\
         [kafka.client_properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n\
         [runtime]\nidle_partition_timeout = \"2s\"\n\
         [anomaly]\nmax_series = 1\n\
         [anomaly.windows]\nsize = \"1m\"\nout_of_orderness = \"30s\"\n",
    );
    let archive = dir.path().join("archive");
    let (mut run, http) = start_cara_run(&brokers, &archive, &config, "idle");
    // Without the raise, `quiet` keeps its last two windows open for ever: its own
    // watermark (last point − 30 s) is inside minute 10.
    wait_until(
        Duration::from_secs(60),
        "the quiet partition's last window",
        || archive.join("metric_windows").is_dir() && windows(&archive, "quiet").len() == 11,
    );
    let quiet: Vec<String> = (0..=10).map(|m| format!("{m},1")).collect();
    assert_eq!(windows(&archive, "quiet"), quiet);
    let raises = metric_sum(
        http,
        "cara_idle_watermark_raises_total",
        "topic=\"telemetry.metrics\",partition=\"1\"",
    );
    assert!(raises >= 1.0, "{raises}");
    // `busy` leads the topic: only its own watermark closes its windows, so its last
    // two (minutes 59 and 60) stay open.
    let busy: Vec<String> = (0..59).map(|m| format!("{m},1")).collect();
    assert_eq!(windows(&archive, "busy"), busy);
    assert_eq!(
        metric_sum(http, "cara_over_state_limit_total", "telemetry.metrics"),
        6.0,
        "the points of the series over the limit are counted"
    );
    assert!(windows(&archive, "extra").is_empty());
    assert_eq!(
        sql_count(&archive, "SELECT count(*) FROM metrics"),
        61 + 6 + 11
    );
    assert!(run.terminate(Duration::from_secs(30)).success());

    // Restarted from the checkpoints: the raised watermark is part of the state, so
    // going idle again (after 2 s) closes nothing twice and raises nothing.
    let (mut again, http) = start_cara_run(&brokers, &archive, &config, "idle");
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        windows(&archive, "quiet"),
        quiet,
        "a window repeated or lost"
    );
    assert_eq!(windows(&archive, "busy"), busy);
    assert_eq!(
        metric_sum(
            http,
            "cara_idle_watermark_raises_total",
            "topic=\"telemetry.metrics\",partition=\"1\"",
        ),
        0.0,
        "the raise was not checkpointed"
    );
    assert!(again.terminate(Duration::from_secs(30)).success());
}
