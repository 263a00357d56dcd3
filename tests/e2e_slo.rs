//! SLOs end to end: spans of `checkout` with an outage, produced with kcat keyed by
//! trace id (so every SLO's spans arrive on many partitions of a separate
//! `cara broker`), go through both SLO stages and the exchange topic; so do log
//! lines of the same requests (an SLO over log levels) and the `api` service's
//! request counters (an SLO over two counter metrics). Every status
//! record (table `slo`, topic `cara.slo`) equals a brute-force computation over the
//! produced spans (exact counts, burn rates and budget to 1e-9), the outage pages
//! and resolves, a run killed with -9 halfway changes nothing, and DuckDB reads the
//! same statuses from the Parquet files.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// A whole minute.
const START_MS: i64 = 1_700_000_040_000;
const MINUTE: i64 = 60_000;
const MINUTES: i64 = 100;
const OBJECTIVE: f64 = 0.99;
/// The outage: most spans fail in these minutes.
const OUTAGE: std::ops::Range<i64> = 40..52;

struct Span {
    start: i64,
    ok: bool,
    duration_ms: f64,
}

/// About 60 spans a minute, 20 s of disorder, failing during the outage.
fn spans() -> Vec<Span> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::new();
    let mut t = START_MS;
    while t < START_MS + MINUTES * MINUTE {
        t += 500 + (next() % 1_000) as i64;
        let minute = (t - START_MS) / MINUTE;
        let ok = if OUTAGE.contains(&minute) {
            next() % 10 < 2
        } else {
            next() % 500 != 0
        };
        let jitter = (next() % 20_000) as i64;
        let duration_ms = 50.0 + (next() % 400) as f64;
        out.push(Span {
            start: t - jitter,
            ok,
            duration_ms,
        });
    }
    out
}

/// Counter samples of `api` every 10 s (good and total requests, failing during
/// the outage), as messages keyed by service, and the events they show: each
/// sample after the first counts its increase in its own minute.
fn counters() -> (Vec<(String, String)>, Vec<Event>) {
    let (mut good, mut total) = (5_000u64, 5_000u64);
    let (mut messages, mut events) = (Vec::new(), Vec::new());
    for i in 0..(MINUTES * 6) {
        let ts = START_MS + i * 10_000 + 3_000;
        let minute = i / 6;
        let n = 20 + (i % 7) as u64;
        let g = if OUTAGE.contains(&minute) {
            n * 3 / 10
        } else {
            n - u64::from(i % 50 == 0)
        };
        if i > 0 {
            good += g;
            total += n;
            events.push((ts, g, n));
        }
        for (name, value) in [("requests_ok_total", good), ("requests_total", total)] {
            messages.push((
                "api".to_owned(),
                format!(
                    r#"{{"ts":{ts},"name":"{name}","type":"counter","value":{value},"labels":{{"service":"api"}}}}"#
                ),
            ));
        }
    }
    (messages, events)
}

/// One log line per span of `checkout`, an error line for a failed one, keyed by
/// trace id like the spans.
fn log_lines(spans: &[Span]) -> Vec<(String, String)> {
    spans
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let level = if s.ok { "info" } else { "error" };
            (
                format!("trace-{i}"),
                format!(
                    r#"{{"ts":{},"service":"checkout","level":"{level}","message":"payment {i} handled"}}"#,
                    s.start
                ),
            )
        })
        .collect()
}

fn messages(spans: &[Span], from: usize) -> Vec<(String, String)> {
    spans
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let i = i + from;
            let status = if s.ok { "ok" } else { "error" };
            (
                format!("trace-{i}"),
                format!(
                    r#"{{"trace_id":"trace-{i}","span_id":"s{i}","service":"checkout","name":"POST /pay","kind":"server","start":{},"duration_ms":{},"status":"{status}"}}"#,
                    s.start, s.duration_ms
                ),
            )
        })
        .collect()
}

/// An SLI event as the reference counts it: (event time, good, total).
type Event = (i64, u64, u64);

/// One status row: minute boundary (ms), per window (good, total, burn rate), and
/// the budget remaining.
#[derive(Debug, Clone)]
struct Status {
    ts: i64,
    windows: Vec<(u64, u64, f64)>,
    budget: f64,
}

/// Counts equal, floats within 1e-9.
fn same(a: &[Status], b: &[Status]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.ts == y.ts
                && (x.budget - y.budget).abs() < 1e-9
                && x.windows
                    .iter()
                    .zip(&y.windows)
                    .all(|(p, q)| p.0 == q.0 && p.1 == q.1 && (p.2 - q.2).abs() < 1e-9)
        })
}

/// The status rows the issue defines, computed from raw events `(time, good,
/// total)`: for each minute boundary T from the end of the first minute with events
/// up to `last` (inclusive), per window w: good and total of the events in
/// [T - w, T), burn rate; budget over [T - 30 d, T).
fn brute_force(events: &[Event], last: i64) -> Vec<Status> {
    let windows = [5, 30, 60, 120, 360, 1_440, 4_320];
    let first = events.iter().map(|e| e.0.div_euclid(MINUTE)).min().unwrap() + 1;
    let mut rows = Vec::new();
    for boundary in first..=last {
        let t = boundary * MINUTE;
        let count = |from: i64| {
            events
                .iter()
                .filter(|e| e.0 >= from && e.0 < t)
                .fold((0u64, 0u64), |(g, n), e| (g + e.1, n + e.2))
        };
        let windows = windows
            .iter()
            .map(|w| {
                let (g, n) = count(t - w * MINUTE);
                let burn = if n == 0 {
                    0.0
                } else {
                    n.saturating_sub(g) as f64 / n as f64 / (1.0 - OBJECTIVE)
                };
                (g, n, burn)
            })
            .collect();
        let (g, n) = count(t - 30 * 1_440 * MINUTE);
        let budget = if n == 0 {
            1.0
        } else {
            1.0 - n.saturating_sub(g) as f64 / ((1.0 - OBJECTIVE) * n as f64)
        };
        rows.push(Status {
            ts: t,
            windows,
            budget,
        });
    }
    rows
}

/// The archived status rows of one SLO.
fn archived(archive: &Path, slo: &str) -> Vec<Status> {
    let windows = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"];
    let columns: Vec<String> = windows
        .iter()
        .map(|w| {
            format!("windows['{w}']['good'], windows['{w}']['total'], windows['{w}']['burn_rate']")
        })
        .collect();
    sql_rows(
        archive,
        &format!(
            "SELECT CAST(ts AS BIGINT) AS t, {}, budget_remaining FROM slo \
             WHERE slo = '{slo}' ORDER BY t",
            columns.join(", ")
        ),
    )
    .into_iter()
    .map(|line| {
        let fields: Vec<&str> = line.split(',').collect();
        let windows = fields[1..fields.len() - 1]
            .chunks(3)
            .map(|c| {
                (
                    c[0].parse().unwrap(),
                    c[1].parse().unwrap(),
                    c[2].parse().unwrap(),
                )
            })
            .collect();
        Status {
            ts: fields[0].parse().unwrap(),
            windows,
            budget: fields[fields.len() - 1].parse().unwrap(),
        }
    })
    .collect()
}

#[test]
fn slo_statuses_equal_brute_force_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let (_broker, brokers) = start_cara_broker();
    let config = write_config(
        dir.path(),
        "[archive]\nroll_interval = \"1s\"\n\
         [runtime]\nidle_partition_timeout = \"2s\"\n\
         [kafka.client_properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n\
         [[slo]]\nname = \"checkout-availability\"\nservice = \"checkout\"\nsli = \"availability\"\nobjective = 0.99\nperiod = \"30d\"\n\
         [[slo]]\nname = \"checkout-latency\"\nservice = \"checkout\"\nsli = \"latency\"\nthreshold_ms = 300\nobjective = 0.99\nperiod = \"30d\"\n\
         [[slo]]\nname = \"api-requests\"\nsource = \"metrics\"\ngood_metric = \"requests_ok_total\"\ntotal_metric = \"requests_total\"\nlabels = { service = \"api\" }\nsli = \"availability\"\nobjective = 0.99\n\
         [[slo]]\nname = \"checkout-logs\"\nsource = \"logs\"\nservice = \"checkout\"\nsli = \"availability\"\nobjective = 0.99\n",
    );
    let all = spans();
    let half = all.len() / 2;
    kcat_produce_keyed(&brokers, "telemetry.spans", &messages(&all[..half], 0));
    let (counter_messages, counter_events) = counters();
    let counter_half = counter_messages.len() / 2;
    kcat_produce_keyed(
        &brokers,
        "telemetry.metrics",
        &counter_messages[..counter_half],
    );
    let lines = log_lines(&all);
    kcat_produce_keyed(&brokers, "telemetry.logs", &lines[..half]);

    // A first run, killed once some statuses are out.
    let (mut run, _http) = start_cara_run(&brokers, &archive, &config, "slo");
    wait_until(Duration::from_secs(90), "first SLO statuses", || {
        archive.join("slo").is_dir()
            && sql_count(
                &archive,
                "SELECT count(*) FROM slo WHERE slo = 'checkout-availability'",
            ) >= 20
    });
    run.kill9();
    kcat_produce_keyed(&brokers, "telemetry.spans", &messages(&all[half..], half));
    kcat_produce_keyed(
        &brokers,
        "telemetry.metrics",
        &counter_messages[counter_half..],
    );
    kcat_produce_keyed(&brokers, "telemetry.logs", &lines[half..]);

    // Every partition idles once all is read, and is raised to the furthest
    // watermark (last start − 30 s): statuses up to that minute boundary.
    let last_start = all.iter().map(|s| s.start).max().unwrap();
    let last_boundary = (last_start - 30_000).div_euclid(MINUTE);
    let events = |good: &dyn Fn(&Span) -> bool| -> Vec<Event> {
        all.iter()
            .map(|s| (s.start, u64::from(good(s)), 1))
            .collect()
    };
    let availability = brute_force(&events(&|s| s.ok), last_boundary);
    let latency = brute_force(&events(&|s| s.duration_ms < 300.0), last_boundary);
    // Logs carry the spans' times and outcomes.
    let logs = availability.clone();
    let last_sample = counter_events.last().unwrap().0;
    let requests = brute_force(&counter_events, (last_sample - 30_000).div_euclid(MINUTE));
    let (mut run, http) = start_cara_run(&brokers, &archive, &config, "slo");
    // Each SLO's statuses come from the combiner of its own exchange partition:
    // wait for all of them.
    let expected = [
        ("checkout-availability", availability.len()),
        ("checkout-latency", latency.len()),
        ("api-requests", requests.len()),
        ("checkout-logs", logs.len()),
    ];
    wait_until(Duration::from_secs(120), "every SLO status", || {
        expected.iter().all(|(slo, n)| {
            sql_count(
                &archive,
                &format!("SELECT count(*) FROM slo WHERE slo = '{slo}'"),
            ) >= *n as i64
        })
    });
    assert_eq!(
        sql_count(&archive, "SELECT count(*) FROM spans"),
        all.len() as i64
    );
    let got = archived(&archive, "checkout-availability");
    assert!(same(&got, &availability), "{got:#?}\n{availability:#?}");
    let got = archived(&archive, "checkout-latency");
    assert!(same(&got, &latency), "{got:#?}\n{latency:#?}");
    let got = archived(&archive, "api-requests");
    assert!(same(&got, &requests), "{got:#?}\n{requests:#?}");
    let got = archived(&archive, "checkout-logs");
    assert!(same(&got, &logs), "{got:#?}\n{logs:#?}");
    assert_eq!(
        metric_sum(http, "cara_late_records_total", "topic=\"telemetry.spans\""),
        0.0
    );

    // The outage pages, then resolves, once; the alerts carry the SLO's name.
    let burns = sql_rows(
        &archive,
        "SELECT severity, status, CAST(at AS BIGINT) AS at_ms FROM alerts \
         WHERE kind = 'slo_burn' AND labels['slo'] = 'checkout-availability' \
         AND severity = 'page' ORDER BY at_ms, status",
    );
    assert_eq!(burns.len(), 2, "{burns:#?}");
    assert!(burns[0].starts_with("page,firing,") && burns[1].starts_with("page,resolved,"));
    let fired_at: i64 = burns[0].rsplit(',').next().unwrap().parse().unwrap();
    let outage_start = START_MS + OUTAGE.start * MINUTE;
    assert!(
        (outage_start..outage_start + 10 * MINUTE).contains(&fired_at),
        "paged at {fired_at}, the outage started at {outage_start}"
    );

    // DuckDB reads the same statuses, nested windows included.
    let duck = python(
        "slo_duckdb.py",
        &[archive.to_str().unwrap(), "checkout-availability"],
    );
    let duck: Vec<Vec<String>> = String::from_utf8_lossy(&duck.stdout)
        .lines()
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    assert_eq!(duck.len(), availability.len());
    for (row, reference) in duck.iter().zip(&availability) {
        assert_eq!(row[0].parse::<i64>().unwrap(), reference.ts);
        assert_eq!(row[1].parse::<u64>().unwrap(), reference.windows[0].0);
        assert_eq!(row[2].parse::<u64>().unwrap(), reference.windows[0].1);
        assert!((row[3].parse::<f64>().unwrap() - reference.windows[2].2).abs() < 1e-9);
        assert_eq!(row[4].parse::<u64>().unwrap(), reference.windows[6].1);
        assert!((row[5].parse::<f64>().unwrap() - reference.budget).abs() < 1e-9);
    }

    // `cara.slo` carries the records in the issue's shape, keyed by SLO.
    let records = kcat_messages(&brokers, "cara.slo");
    let on_topic: Vec<serde_json::Value> = records
        .iter()
        .filter(|(k, _)| k == "checkout-availability")
        .map(|(_, v)| serde_json::from_str(v).unwrap())
        .collect();
    assert!(on_topic.len() >= availability.len());
    let last = on_topic
        .iter()
        .find(|r| r["ts"].as_i64() == Some(last_boundary * MINUTE))
        .expect("the last status on the topic");
    let reference = availability.last().unwrap();
    assert_eq!(
        last["windows"]["5m"]["good"].as_u64(),
        Some(reference.windows[0].0)
    );
    assert_eq!(
        last["windows"]["3d"]["total"].as_u64(),
        Some(reference.windows[6].1)
    );
    let budget = last["budget_remaining"].as_f64().unwrap();
    assert!((budget - reference.budget).abs() < 1e-9);
    assert!(run.terminate(Duration::from_secs(30)).success());
}
