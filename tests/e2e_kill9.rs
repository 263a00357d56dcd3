//! kill -9 at random moments while telemetry is being produced: after a final clean
//! run, every produced record is in the archive exactly once, and the alerts and the
//! operators' final state equal those of a run that was never interrupted.

mod common;

use std::time::Duration;

use common::*;

/// A small deterministic generator of pauses (no clock, no global RNG).
struct Pauses(u64);

impl Pauses {
    fn next_ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + self.0 % (hi - lo)
    }
}

#[test]
fn kill9_loop_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    // Small, frequent flushes so kills land in every phase of the commit protocol; a
    // short group session so a killed member is replaced quickly and the loop fits
    // many kills.
    let config = write_config(
        dir.path(),
        "[archive]\nroll_interval = \"300ms\"\nroll_bytes = 65536\n\
         [kafka.client_properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n",
    );
    let (_broker, bootstrap) = start_cara_broker();

    let mut gen = cara();
    gen.args([
        "gen",
        "--brokers",
        &bootstrap,
        "--rate",
        "4000",
        "--count",
        "60000",
        "--services",
        "6",
        "--seed",
        "9",
        "--start",
        "2026-01-01T00:00:00Z",
    ]);
    let mut producer = Process::spawn("cara-gen", gen);

    let mut pauses = Pauses(0x5eed_1234_abcd_0001);
    let mut kills = 0;
    while producer.child.try_wait().unwrap().is_none() || kills < 6 {
        let (mut run, _) = start_cara_run(&bootstrap, &archive, &config, "kill9");
        std::thread::sleep(Duration::from_millis(pauses.next_ms(300, 2500)));
        run.kill9();
        kills += 1;
        assert!(kills < 40, "generator never finished");
    }
    let produced = producer
        .lines()
        .last()
        .cloned()
        .expect("gen prints a summary");
    let summary: serde_json::Value = serde_json::from_str(&produced).expect("summary JSON");
    assert!(producer.child.wait().unwrap().success());
    let expected = |k: &str| summary[k].as_i64().unwrap();

    // A final clean run drains the rest, then stops on SIGTERM.
    let (mut run, http) = start_cara_run(&bootstrap, &archive, &config, "kill9");
    let total = expected("metrics") + expected("logs") + expected("spans");
    wait_until(Duration::from_secs(120), "the backlog to drain", || {
        let archived: i64 = ["metrics", "logs", "spans"]
            .iter()
            .map(|t| sql_count(&archive, &format!("SELECT count(*) FROM {t}")))
            .sum();
        archived >= total && metric_sum(http, "cara_consumer_lag", "") == 0.0
    });
    assert!(run.terminate(Duration::from_secs(30)).success());

    eprintln!("{kills} kill -9s; produced {summary}");
    for table in ["metrics", "logs", "spans"] {
        let rows = sql_count(&archive, &format!("SELECT count(*) FROM {table}"));
        let distinct = sql_count(&archive, &format!("SELECT count(*) FROM (SELECT DISTINCT _topic, _partition, _offset, _index FROM {table})"));
        assert_eq!(rows, expected(table), "{table}: rows archived vs produced");
        assert_eq!(distinct, rows, "{table}: duplicated rows");
    }
    assert_eq!(sql_count(&archive, "SELECT count(*) FROM dlq"), 0);
    // No temporary or orphaned files are left: nothing half-written, and nothing
    // still staged once the last run has stopped cleanly.
    let stray: Vec<String> = files_under(&archive)
        .iter()
        .map(|p| p.display().to_string())
        .filter(|p| p.ends_with(".tmp") || p.contains(".intent") || p.contains("/_cara/staging/"))
        .collect();
    assert!(stray.is_empty(), "left behind: {stray:?}");

    // An uninterrupted run over the same topics: same alerts, same operator state.
    let clean = dir.path().join("clean");
    let (mut run, _) = start_cara_run(&bootstrap, &clean, &config, "clean");
    wait_until(
        Duration::from_secs(120),
        "the clean run to archive everything",
        || {
            clean.join("metrics").is_dir()
                && sql_count(&clean, "SELECT count(*) FROM metrics") >= expected("metrics")
        },
    );
    assert!(run.terminate(Duration::from_secs(30)).success());
    let alerts = |archive: &std::path::Path| {
        if !archive.join("alerts").is_dir() {
            return Vec::new();
        }
        sql_rows(
            archive,
            "SELECT id, status, CAST(at AS BIGINT) AS at_ms, score, _partition, _offset, description \
             FROM alerts ORDER BY at_ms, id, status",
        )
    };
    assert_eq!(
        alerts(&archive),
        alerts(&clean),
        "alerts after kill -9s differ"
    );
    let (killed_states, clean_states) = (operator_states(&archive), operator_states(&clean));
    assert!(!clean_states.is_empty() && clean_states.iter().all(|(_, s)| !s.is_empty()));
    assert_eq!(
        killed_states, clean_states,
        "operator state after kill -9s differs"
    );
}
