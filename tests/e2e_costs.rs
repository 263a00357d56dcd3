//! Cost attribution end to end: CPU counters and memory gauges of three teams
//! produced with kcat into a separate `cara broker`; `cara run` with `[cost]`
//! meters them (and the active series, a telemetry cost) on every metric partition,
//! bills each hour where the partitions' usage meets, and writes table `costs` (read back with `cara sql` and DuckDB) and
//! topic `cara.costs` (read back with kcat). The figures are computed by hand in
//! the test: the rows equal them to the micro-unit and add up to the bill; a
//! `kill -9` and restart in the middle bills exactly as a clean run.
//!
//! The same run forecasts the teams' memory (`[capacity]`): table `capacity` and
//! topic `cara.capacity` hold a forecast per team, horizon and hour, the same
//! after the kill.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// A whole hour.
const START_MS: i64 = 1_699_999_200_000;
const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;

/// 4 cores at 0.05 a core-hour (0.20 an hour), memory at 0.01 a GiB-hour;
/// kube-system's use is shared; a's monthly budget is 0.10 (its first hour's
/// rate forecasts far more), b's 1,000. Idle partitions report after 2 s.
const CONFIG: &str = "[archive]\nroll_interval = \"1s\"\n\
    [runtime]\nidle_partition_timeout = \"2s\"\n\
    [cost]\nenabled = true\nshared_owners = [\"kube-system\"]\n\
    [cost.prices]\ncpu_core_hour = 0.05\nmemory_gib_hour = 0.01\nlogs_gib = 1000.0\n\
    [cost.service_owners]\ncheckout = \"a\"\n\
    [cost.capacity]\ncpu_cores = 4\n\
    [cost.budgets]\na = 0.1\nb = 1000.0\n\
    [[capacity.series]]\nmetric = \"container_memory_working_set_bytes\"\nlimit = 4294967296.0\n";

/// Minutes `minutes` of points: per team a CPU-seconds counter (a half core for
/// a, a core for b, a quarter for kube-system) and a memory gauge (2 GiB for a,
/// 1 GiB for b), keyed by series so each stays on its partition.
fn usage(minutes: std::ops::Range<i64>) -> Vec<(String, String)> {
    let mut messages = Vec::new();
    for m in minutes {
        let ts = START_MS + m * MIN;
        for (team, cores, gib) in [("a", 0.5, 2.0), ("b", 1.0, 1.0), ("kube-system", 0.25, 0.0)] {
            let cpu = m as f64 * 60.0 * cores;
            messages.push((
                format!("cpu-{team}"),
                format!(
                    r#"{{"ts":{ts},"name":"container_cpu_usage_seconds_total","type":"counter","value":{cpu},"labels":{{"team":"{team}"}}}}"#
                ),
            ));
            if gib > 0.0 {
                let bytes = gib * 1024.0 * 1024.0 * 1024.0;
                messages.push((
                    format!("mem-{team}"),
                    format!(
                        r#"{{"ts":{ts},"name":"container_memory_working_set_bytes","type":"gauge","value":{bytes},"labels":{{"team":"{team}"}}}}"#
                    ),
                ));
            }
        }
    }
    messages
}

/// Minutes `minutes` of checkout's log lines, one a minute with a message of
/// exactly 100 bytes, on one partition.
fn log_lines(minutes: std::ops::Range<i64>) -> Vec<(String, String)> {
    minutes
        .map(|m| {
            let ts = START_MS + m * MIN;
            (
                "checkout".to_owned(),
                format!(
                    r#"{{"ts":{ts},"service":"checkout","level":"info","message":"{m:0100}"}}"#
                ),
            )
        })
        .collect()
}

/// Produces minutes `minutes` of usage points and log lines.
fn produce(brokers: &str, minutes: std::ops::Range<i64>) {
    kcat_produce_keyed(brokers, "telemetry.metrics", &usage(minutes.clone()));
    kcat_produce_keyed(brokers, "telemetry.logs", &log_lines(minutes));
}

/// Every `costs` row as (hour, owner, resource, total in micro-units).
fn costs(archive: &Path) -> Vec<String> {
    sql_rows(
        archive,
        &format!(
            "SELECT (CAST(window_start AS BIGINT) - {START_MS}) / {HOUR} AS hour, owner, resource, \
             CAST(total * 1000000 AS BIGINT) AS micros FROM costs ORDER BY hour, resource, owner"
        ),
    )
}

/// Every `capacity` row as (team, minutes after the start, horizon in hours,
/// predicted bytes, limit, whether an exhaustion is forecast).
fn forecasts(archive: &Path) -> Vec<String> {
    sql_rows(
        archive,
        &format!(
            "SELECT replace(labels, '\"', ''), (CAST(at AS BIGINT) - {START_MS}) / {MIN} AS minute, horizon_ms / {HOUR}, \
             CAST(round(predicted) AS BIGINT), CAST(\"limit\" AS BIGINT), exhaustion_at IS NULL \
             FROM capacity ORDER BY labels, minute, horizon_ms"
        ),
    )
}

/// Runs `cara run` until the first two hours are billed: per hour CPU and memory
/// for a and b, a's logs and the shared series, 12 rows (the log and metric
/// partitions bill their resources each when they have passed an hour).
fn billed(brokers: &str, archive: &Path, config: &Path, group: &str) -> (Process, u16) {
    let (run, http) = start_cara_run(brokers, archive, config, group);
    wait_until(Duration::from_secs(90), "two hours billed", || {
        archive.join("costs").is_dir()
            && sql_count(archive, "SELECT count(*) FROM costs") >= 12
            && archive.join("capacity").is_dir()
            && sql_count(archive, "SELECT count(*) FROM capacity") >= 24
    });
    (run, http)
}

#[test]
fn hours_are_billed_exactly_to_their_owners_and_the_same_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), CONFIG);

    // A clean run: three hours of points (the third keeps the second open until
    // the watermark passes it).
    let clean = dir.path().join("clean");
    let (_broker, brokers) = start_cara_broker();
    produce(&brokers, 0..181);
    let (mut run, http) = billed(&brokers, &clean, &config, "costs-clean");

    // Hour 0: the counters' first points show no increase, so a used 59 × 30 s,
    // b 59 × 60 s, kube-system 59 × 15 s. Hour 1 by hand (200,000 micro-units of
    // CPU): a 0.5 core-hours = 25,000, b 1.0 = 50,000, shared 0.25 = 12,500, idle
    // 2.25 = 112,500; shared and idle go 1 : 2 to a and b: 4,166.67 → 4,167 (the
    // larger remainder takes the micro-unit left) and 8,333; 37,500 and 75,000.
    // Memory of hour 1: 2 and 1 GiB-hours at 0.01, as used (no capacity). The five
    // series were active all hour, 5 series-hours at 0.0001; they name no service,
    // so nobody owns them and their cost stays shared. checkout's 60 log lines of
    // 100 bytes, a's by cost.service_owners, at 1,000 a GiB: 6,000 × 10^9 / 2^30 =
    // 5,587.9 → 5,588 micro-units.
    let rows = costs(&clean);
    let hour1: Vec<&str> = rows
        .iter()
        .filter(|r| r.starts_with("1,"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        hour1,
        [
            "1,a,cpu,66667",
            "1,b,cpu,133333",
            "1,a,logs,5588",
            "1,a,memory,20000",
            "1,b,memory,10000",
            "1,(shared),series,500",
        ]
    );
    // Every hour's CPU rows add up to its bill: 4 cores for an hour.
    let bills = sql_rows(
        &clean,
        "SELECT CAST(sum(total) * 1000000 AS BIGINT) FROM costs WHERE resource = 'cpu' \
         GROUP BY window_start ORDER BY window_start",
    );
    assert_eq!(bills, ["200000", "200000"]);
    let owners = sql_rows(&clean, "SELECT DISTINCT owner FROM costs ORDER BY owner");
    assert_eq!(
        owners,
        ["(shared)", "a", "b"],
        "kube-system's use is shared, not billed to it"
    );

    // DuckDB reads the exact decimals.
    let duck = python("costs_duckdb.py", &[clean.to_str().unwrap()]);
    let duck = String::from_utf8_lossy(&duck.stdout).into_owned();
    let a_cpu_hour1 = format!("{},a,cpu,0.066667,DECIMAL(18,6)", START_MS + HOUR);
    assert!(duck.lines().any(|l| l == a_cpu_hour1), "{duck}");

    // Per team over both hours, from the API. Hour 0 by hand: a used 1,770
    // core-seconds, b 3,540, kube-system 885 (shared), 8,205 idle; the 200,000
    // micro-units split 24,583.3 / 49,166.7 / 12,291.7 / 113,958.3, the two
    // micro-units left go to the largest remainders (b, shared, by order), and
    // shared (12,292) and idle go 1 : 2: a 24,583 + 4,097 + 37,986 = 66,666, b
    // 133,334. With hour 1 and 2 GiB-hours (1 for b) of memory a hour: a 0.173333,
    // b 0.286667; a's log lines 2 × 0.005588 more, and the unowned series (0.0005
    // an hour): 0.472176 in all.
    let (status, body) = http_get(
        http,
        &format!(
            "/api/costs?by=team&from={START_MS}&to={}",
            START_MS + 2 * HOUR
        ),
    );
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let per_team: Vec<(String, String)> = answer["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["owner"].as_str().unwrap().to_owned(),
                g["total"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        per_team,
        [
            ("(shared)".to_owned(), "0.001000".to_owned()),
            ("a".to_owned(), "0.184509".to_owned()),
            ("b".to_owned(), "0.286667".to_owned())
        ]
    );
    assert_eq!(answer["total"], "0.472176");
    let (status, body) = http_get(http, "/api/costs?by=service");
    assert_eq!(status, 400, "{body}");

    // a's budget: one alert, at the end of its first billed hour, in table alerts.
    let budget = sql_rows(
        &clean,
        "SELECT status, labels['owner'], CAST(at AS BIGINT), value > threshold FROM alerts \
         WHERE kind = 'cost_budget'",
    );
    assert_eq!(budget, [format!("firing,a,{},true", START_MS + HOUR)]);

    // The same rows on cara.costs, keyed by owner, money as exact decimals.
    let records = kcat_messages(&brokers, "cara.costs");
    assert_eq!(records.len(), rows.len(), "{records:?}");
    let b_cpu = records
        .iter()
        .map(|(key, value)| {
            (
                key,
                serde_json::from_str::<serde_json::Value>(value).unwrap(),
            )
        })
        .find(|(key, v)| *key == "b" && v["resource"] == "cpu" && v["total"] == "0.133333");
    assert!(b_cpu.is_some(), "{records:?}");

    // Memory forecasts: each team's 5-minute buckets, a report when the first
    // closes (minute 5) and at each hour (60, 120, 180), three horizons each; a
    // flat 2 GiB (1 for b) is forecast flat, under the 4 GiB limit for a week.
    let capacity = forecasts(&clean);
    assert_eq!(capacity.len(), 2 * 4 * 3, "{capacity:#?}");
    let mut expected = Vec::new();
    for (team, bytes) in [("a", 2_147_483_648u64), ("b", 1_073_741_824)] {
        for minute in [5, 60, 120, 180] {
            for hours in [1, 6, 24] {
                expected.push(format!(
                    "{{team:{team}}},{minute},{hours},{bytes},4294967296,true"
                ));
            }
        }
    }
    assert_eq!(capacity, expected);
    let records = kcat_messages(&brokers, "cara.capacity");
    assert_eq!(records.len(), capacity.len(), "{records:?}");
    let a_at_hour_one = records.iter().find_map(|(key, value)| {
        let record: serde_json::Value = serde_json::from_str(value).ok()?;
        (key == "container_memory_working_set_bytes{team=\"a\"}"
            && record["horizon_ms"] == HOUR
            && record["labels"]["team"] == "a")
            .then_some(record)
    });
    let a = a_at_hour_one.expect("a's forecasts on cara.capacity");
    assert_eq!(a["limit"], 4294967296.0);
    assert_eq!(a["exhaustion_at"], serde_json::Value::Null);
    assert!(run.terminate(Duration::from_secs(30)).success());

    // Killed in the middle of the second hour, restarted: the same rows.
    let killed = dir.path().join("killed");
    let (_broker2, brokers2) = start_cara_broker();
    produce(&brokers2, 0..90);
    let (mut first, http) = start_cara_run(&brokers2, &killed, &config, "costs-kill");
    wait_until(Duration::from_secs(60), "the first hour billed", || {
        metric_sum(http, "cara_archive_rows_total", "table=\"metrics\"") >= 90.0 * 5.0
            && killed.join("costs").is_dir()
    });
    first.kill9();
    produce(&brokers2, 90..181);
    let (mut second, _) = billed(&brokers2, &killed, &config, "costs-kill");
    assert_eq!(costs(&killed), rows);
    assert_eq!(forecasts(&killed), capacity);
    assert!(second.terminate(Duration::from_secs(30)).success());
}
