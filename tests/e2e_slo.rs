//! SLOs end to end: spans of `checkout` with an outage, produced with kcat keyed by
//! trace id (so every SLO's spans arrive on many partitions of a separate
//! `cara broker`), go through both SLO stages and the exchange topic. Every status
//! record (table `slo`, topic `cara.slo`) equals a brute-force computation over the
//! produced spans (exact counts, burn rates and budget to 1e-9), the outage pages
//! and resolves, and a run killed with -9 halfway changes nothing.

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

/// One status row: minute boundary (ms), per window (good, total, burn rate), and
/// the budget remaining.
#[derive(Debug)]
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

/// The status rows the issue defines, computed from the raw spans: for each minute
/// boundary T from the end of the first minute with spans up to `last` (inclusive),
/// per window w: good and total spans with start in [T - w, T), burn rate; budget
/// over [T - 30 d, T).
fn brute_force(spans: &[Span], good: impl Fn(&Span) -> bool, last: i64) -> Vec<Status> {
    let windows = [5, 30, 60, 120, 360, 1_440, 4_320];
    let first = spans
        .iter()
        .map(|s| s.start.div_euclid(MINUTE))
        .min()
        .unwrap()
        + 1;
    let mut rows = Vec::new();
    for boundary in first..=last {
        let t = boundary * MINUTE;
        let count = |from: i64| {
            let inside: Vec<&Span> = spans
                .iter()
                .filter(|s| s.start >= from && s.start < t)
                .collect();
            let g = inside.iter().filter(|s| good(s)).count() as u64;
            (g, inside.len() as u64)
        };
        let windows = windows
            .iter()
            .map(|w| {
                let (g, n) = count(t - w * MINUTE);
                let burn = if n == 0 {
                    0.0
                } else {
                    (1.0 - g as f64 / n as f64) / (1.0 - OBJECTIVE)
                };
                (g, n, burn)
            })
            .collect();
        let (g, n) = count(t - 30 * 1_440 * MINUTE);
        let budget = if n == 0 {
            1.0
        } else {
            1.0 - (n - g) as f64 / ((1.0 - OBJECTIVE) * n as f64)
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
         [[slo]]\nname = \"checkout-latency\"\nservice = \"checkout\"\nsli = \"latency\"\nthreshold_ms = 300\nobjective = 0.99\nperiod = \"30d\"\n",
    );
    let all = spans();
    let half = all.len() / 2;
    kcat_produce_keyed(&brokers, "telemetry.spans", &messages(&all[..half], 0));

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

    // Every partition idles once all is read, and is raised to the furthest
    // watermark (last start − 30 s): statuses up to that minute boundary.
    let last_start = all.iter().map(|s| s.start).max().unwrap();
    let last_boundary = (last_start - 30_000).div_euclid(MINUTE);
    let availability = brute_force(&all, |s| s.ok, last_boundary);
    let latency = brute_force(&all, |s| s.duration_ms < 300.0, last_boundary);
    let (mut run, http) = start_cara_run(&brokers, &archive, &config, "slo");
    wait_until(Duration::from_secs(120), "every SLO status", || {
        sql_count(
            &archive,
            "SELECT count(*) FROM slo WHERE slo = 'checkout-latency'",
        ) >= latency.len() as i64
    });
    assert_eq!(
        sql_count(&archive, "SELECT count(*) FROM spans"),
        all.len() as i64
    );
    let got = archived(&archive, "checkout-availability");
    assert!(same(&got, &availability), "{got:#?}\n{availability:#?}");
    let got = archived(&archive, "checkout-latency");
    assert!(same(&got, &latency), "{got:#?}\n{latency:#?}");
    assert_eq!(metric_sum(http, "cara_late_spans_total", ""), 0.0);

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
