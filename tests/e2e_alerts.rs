//! Metric anomaly alerts end to end: metric series produced with kcat into a separate
//! `cara broker`; `cara run` scores them in its shards and writes alerts to table
//! `alerts` and topic `cara.alerts` (read back with kcat). A run killed with -9
//! after some flushes and restarted from its checkpoints (operator state included)
//! ends with exactly the alerts and windowed aggregates (table `metric_windows`) of an
//! uninterrupted run on a broker of its own: same ids, times and scores, and
//! byte-identical alert messages; the incident the spike makes (stage `incidents`,
//! from the alert exchange) is the same in both, in table `incidents` and on topic
//! `cara.incidents`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const START_MS: i64 = 1_700_000_000_000;
const POINTS: usize = 3000;
const SPIKE_AT: usize = 2500;

/// Pseudo-random noise in [0, 1).
fn noise(i: u64) -> f64 {
    let x = i
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Two series a minute apart each: `api` with a spike of six points, `db` without.
fn metrics() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in 0..POINTS {
        for (s, service) in ["api", "db"].iter().enumerate() {
            let spike = if *service == "api" && (SPIKE_AT..SPIKE_AT + 6).contains(&i) {
                50.0
            } else {
                0.0
            };
            let value = 20.0 + noise((i * 2 + s) as u64) + spike;
            let ts = START_MS + i as i64 * 60_000;
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

/// The alerts of an archive, in a stable order, with the score's exact bits.
fn alerts(archive: &Path) -> Vec<String> {
    sql_rows(
        archive,
        "SELECT id, status, CAST(starts_at AS BIGINT) AS starts, CAST(at AS BIGINT) AS at_ms, \
         labels['service'] AS service, score, _offset, description \
         FROM alerts ORDER BY at_ms, id, status",
    )
}

fn run_to_end(brokers: &str, archive: &Path, config: &Path, group: &str) {
    let (mut run, _http) = start_cara_run(brokers, archive, config, group);
    // The archive, not this process's counters: a restarted run archives only the rest.
    wait_until(Duration::from_secs(90), "every metric archived", || {
        archive.join("metrics").is_dir()
            && sql_count(archive, "SELECT count(*) FROM metrics") >= (2 * POINTS) as i64
    });
    // And the incident stage has heard every partition past the spike's incident.
    wait_until(
        Duration::from_secs(60),
        "the spike's incident resolved",
        || {
            archive.join("incidents").is_dir()
                && sql_count(
                    archive,
                    "SELECT count(*) FROM incidents WHERE status = 'resolved'",
                ) >= 1
        },
    );
    assert!(run.terminate(Duration::from_secs(30)).success());
}

#[test]
fn alerts_are_raised_sent_and_identical_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, brokers) = start_cara_broker();
    let all = metrics();
    // The first two thirds now; the rest only after the crash below, so the restart
    // must continue from checkpointed state (the spike is in the last third).
    let cut = all.len() * 2 / 3;
    kcat_produce_keyed(&brokers, "telemetry.metrics", &all[..cut]);
    // Small files, so that a run flushes (and checkpoints operator state) many
    // times; a short group session, so the killed member is replaced quickly.
    let config = write_config(
        dir.path(),
        "[archive]\nroll_interval = \"1s\"\nroll_bytes = 32768\n\
         [kafka.client_properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n",
    );

    // Killed after some flushes, restarted from the checkpoints once the rest is in.
    let crashed = dir.path().join("crashed");
    let (mut run, _http) = start_cara_run(&brokers, &crashed, &config, "crashed");
    wait_until(Duration::from_secs(60), "some metrics archived", || {
        crashed.join("metrics").is_dir()
            && sql_count(&crashed, "SELECT count(*) FROM metrics") >= 500
    });
    run.kill9();
    kcat_produce_keyed(&brokers, "telemetry.metrics", &all[cut..]);
    run_to_end(&brokers, &crashed, &config, "crashed");
    assert_eq!(
        sql_count(&crashed, "SELECT count(*) FROM metrics"),
        (2 * POINTS) as i64
    );

    // Uninterrupted, on a broker of its own (as a second deployment would be: had it
    // shared the first's alert exchange, its incidents would come from what the
    // crashed run sent there).
    let (_clean_broker, clean_brokers) = start_cara_broker();
    kcat_produce_keyed(&clean_brokers, "telemetry.metrics", &all);
    let clean = dir.path().join("clean");
    run_to_end(&clean_brokers, &clean, &config, "clean");
    let expected = alerts(&clean);
    let spike_ms = START_MS + SPIKE_AT as i64 * 60_000;
    let fired: Vec<&String> = expected
        .iter()
        .filter(|r| r.contains(",firing,") && r.contains(&format!(",{spike_ms},")))
        .collect();
    assert_eq!(
        fired.len(),
        1,
        "one alert fires at the spike: {expected:#?}"
    );
    assert!(fired[0].contains(",api,"), "{fired:?}");
    let id = fired[0].split(',').next().unwrap().to_owned();
    assert!(
        expected
            .iter()
            .any(|r| r.starts_with(&format!("{id},resolved,{spike_ms},"))),
        "the spike's alert resolves: {expected:#?}"
    );
    assert!(
        expected.iter().all(|r| !r.contains(",db,")),
        "noise alone raises nothing: {expected:#?}"
    );

    // The topics carry the alerts of both runs, keyed by id: every transition of
    // the table twice (once per run), plus any the crashed run re-sent on replay.
    // Determinism: every message of one transition (same id and status), whichever
    // run sent it and however often, is byte for byte the same record.
    let both = |topic: &str| {
        let mut messages = kcat_messages(&brokers, topic);
        messages.extend(kcat_messages(&clean_brokers, topic));
        messages
    };
    let messages = both("cara.alerts");
    let mut by_transition: std::collections::BTreeMap<(String, String), Vec<&String>> =
        Default::default();
    for (key, value) in &messages {
        let json: serde_json::Value = serde_json::from_str(value).expect("alert JSON");
        let status = json["status"].as_str().unwrap_or_default().to_owned();
        by_transition
            .entry((key.clone(), status))
            .or_default()
            .push(value);
    }
    assert!(!by_transition.is_empty());
    for ((id, status), values) in &by_transition {
        assert!(values.len() >= 2, "{id} {status}: sent by one run only");
        assert!(
            values.iter().all(|v| *v == values[0]),
            "{id} {status}: the runs sent different bytes: {values:#?}"
        );
    }
    let keys: Vec<String> = messages.iter().map(|(key, _)| key.clone()).collect();
    for row in &expected {
        let id = row.split(',').next().unwrap();
        let copies = keys.iter().filter(|k| *k == id).count();
        let transitions = expected.iter().filter(|r| r.starts_with(id)).count();
        assert!(
            copies >= 2 * transitions,
            "{id}: {copies} messages for {transitions} transitions"
        );
    }
    let known: std::collections::BTreeSet<&str> = expected
        .iter()
        .map(|r| r.split(',').next().unwrap())
        .collect();
    assert!(
        keys.iter().all(|k| known.contains(k.as_str())),
        "an alert on the topic is not in the table"
    );

    assert_eq!(alerts(&crashed), expected, "alerts after a crash differ");

    // One incident, opened by the spike's alert with api as its cause, resolved
    // once the alert resolved and the quiet period passed; the same after the crash.
    let incidents = |archive: &Path| {
        sql_rows(
            archive,
            "SELECT id, status, CAST(at AS BIGINT) AS at_ms, CAST(opened_at AS BIGINT), \
             array_to_string(alert_ids, ' '), array_to_string(services, ' '), cause \
             FROM incidents ORDER BY at_ms, id, status",
        )
    };
    let clean_incidents = incidents(&clean);
    assert_eq!(clean_incidents.len(), 2, "{clean_incidents:#?}");
    let incident_id = clean_incidents[0].split(',').next().unwrap().to_owned();
    assert_eq!(
        clean_incidents[0],
        format!("{incident_id},open,{spike_ms},{spike_ms},{id},api,api")
    );
    assert!(
        clean_incidents[1].starts_with(&format!("{incident_id},resolved,")),
        "{clean_incidents:#?}"
    );
    assert_eq!(
        incidents(&crashed),
        clean_incidents,
        "incidents after a crash differ"
    );
    let incident_messages = both("cara.incidents");
    let mut by_status: std::collections::BTreeMap<String, Vec<&String>> = Default::default();
    for (key, value) in &incident_messages {
        assert_eq!(key, &incident_id, "{value}");
        let json: serde_json::Value = serde_json::from_str(value).expect("incident JSON");
        assert_eq!(json["probable_root_cause"][0]["service"], "api", "{value}");
        by_status
            .entry(json["status"].as_str().unwrap_or_default().to_owned())
            .or_default()
            .push(value);
    }
    assert_eq!(by_status.keys().collect::<Vec<_>>(), ["open", "resolved"]);
    for (status, values) in &by_status {
        assert!(values.len() >= 2, "{status}: sent by one run only");
        assert!(
            values.iter().all(|v| *v == values[0]),
            "{status}: the runs sent different bytes: {values:#?}"
        );
    }
    // The windowed aggregates the operators saw: epoch-aligned one-minute windows, one
    // point each (points sit 20 s into a minute). With the watermark 30 s behind the
    // last point (T), the windows ending at T + 40 s and T - 20 s stay open.
    let windows = |archive: &Path| {
        sql_rows(
            archive,
            "SELECT series, CAST(window_start AS BIGINT) AS ws, count, sum, min, max \
             FROM metric_windows ORDER BY series, ws",
        )
    };
    let clean_windows = windows(&clean);
    assert_eq!(clean_windows.len(), 2 * (POINTS - 2));
    assert_eq!(
        sql_count(
            &clean,
            "SELECT CAST(sum(count) AS BIGINT) FROM metric_windows"
        ),
        2 * (POINTS as i64 - 2)
    );
    assert_eq!(
        windows(&crashed),
        clean_windows,
        "windows after a crash differ"
    );
    // And the operators ended in the same state, byte for byte: the restart resumed
    // from the checkpointed state rather than starting afresh.
    let (clean_states, crashed_states) = (operator_states(&clean), operator_states(&crashed));
    assert!(!clean_states.is_empty() && clean_states.iter().all(|(_, s)| !s.is_empty()));
    assert_eq!(
        crashed_states, clean_states,
        "operator state differs after a crash"
    );
}

/// Many series over every partition against a small `runtime.max_state_bytes`: the
/// process scores only the series its one budget covers, counts the points it
/// refused, reports what it holds, and archives every point all the same.
#[test]
fn one_state_budget_bounds_every_partition_and_counts_what_it_refuses() {
    const SERIES: usize = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let (_broker, brokers) = start_cara_broker();
    let points: Vec<(String, String)> = (0..SERIES)
        .map(|i| {
            (
                format!("host-{i}"),
                format!(
                    r#"{{"ts":{START_MS},"name":"cpu_usage","type":"gauge","value":{},"labels":{{"host":"host-{i}"}}}}"#,
                    noise(i as u64)
                ),
            )
        })
        .collect();
    kcat_produce_keyed(&brokers, "telemetry.metrics", &points);
    let budget: f64 = 1024.0 * 1024.0;
    let config = write_config(
        dir.path(),
        "[runtime]\nmax_state_bytes = 1048576\n[archive]\nroll_interval = \"1s\"\n",
    );
    let archive = dir.path().join("archive");
    let (mut run, http) = start_cara_run(&brokers, &archive, &config, "budget");
    wait_until(Duration::from_secs(60), "every point archived", || {
        metric_sum(http, "cara_archive_rows_total", "table=\"metrics\"") >= SERIES as f64
    });
    let used = metric_sum(http, "cara_operator_state_used_bytes", "");
    let refused = metric_sum(http, "cara_over_state_budget_total", "");
    assert_eq!(
        metric_sum(http, "cara_operator_state_budget_bytes", ""),
        budget
    );
    // Held: as many series as the budget covers, never more than it.
    assert!(used <= budget && used > budget * 0.9, "{used} bytes held");
    // About a kilobyte a series: most of the 5,000 were refused, each counted once.
    assert!(
        (3_000.0..4_500.0).contains(&refused),
        "{refused} points refused"
    );
    assert!(run.terminate(Duration::from_secs(30)).success());
    assert_eq!(
        sql_count(&archive, "SELECT count(*) FROM metrics"),
        SERIES as i64
    );
}
