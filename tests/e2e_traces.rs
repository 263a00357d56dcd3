//! RED metrics and the service graph end to end: traces `frontend → checkout →
//! payments` produced with kcat keyed by trace id (so every service's spans arrive
//! on many partitions of a separate `cara broker`) go through both trace stages and
//! the one-partition exchange topic. Table `red` holds exact counts and percentiles
//! within hdrhistogram's precision of the exact ones, computed here from the
//! produced spans; table `service_graph` and `GET /api/graph` hold the calls.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::*;

/// A whole minute.
const START_MS: i64 = 1_700_000_040_000;
const MINUTE: i64 = 60_000;
const TRACES: usize = 3_000;

struct Span {
    trace: usize,
    id: &'static str,
    parent: Option<&'static str>,
    service: &'static str,
    start: i64,
    duration_ms: f64,
    ok: bool,
}

/// 3,000 traces 1.2 s apart (one hour, 50 a minute), each `frontend → checkout →
/// payments`, one in twenty failing all the way up.
fn traces() -> Vec<Span> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::new();
    for trace in 0..TRACES {
        let start = START_MS + trace as i64 * 1_200;
        let pay = 5.0 + (next() % 2_000) as f64 / 10.0;
        let checkout = pay + 2.0 + (next() % 300) as f64 / 10.0;
        let front = checkout + 1.0 + (next() % 100) as f64 / 10.0;
        let pay_ok = next() % 20 != 0;
        out.push(Span {
            trace,
            id: "f",
            parent: None,
            service: "frontend",
            start,
            duration_ms: front,
            ok: pay_ok,
        });
        out.push(Span {
            trace,
            id: "c",
            parent: Some("f"),
            service: "checkout",
            start: start + 1,
            duration_ms: checkout,
            ok: pay_ok,
        });
        out.push(Span {
            trace,
            id: "p",
            parent: Some("c"),
            service: "payments",
            start: start + 2,
            duration_ms: pay,
            ok: pay_ok,
        });
    }
    out
}

fn messages(spans: &[Span]) -> Vec<(String, String)> {
    spans
        .iter()
        .map(|s| {
            let parent = s.parent.map_or("null".to_owned(), |p| format!("\"{p}\""));
            let status = if s.ok { "ok" } else { "error" };
            (
                format!("trace-{}", s.trace),
                format!(
                    r#"{{"trace_id":"trace-{}","span_id":"{}","parent_span_id":{parent},"service":"{}","name":"handle","kind":"server","start":{},"duration_ms":{},"status":"{status}"}}"#,
                    s.trace, s.id, s.service, s.start, s.duration_ms
                ),
            )
        })
        .collect()
}

/// hdrhistogram's quantile: the sample of rank max(1, ceil(q·n)), in µs.
fn exact_us(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    (sorted[rank - 1] * 1000.0).round()
}

fn rows(archive: &Path, sql: &str) -> Vec<Vec<String>> {
    sql_rows(archive, sql)
        .into_iter()
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

#[test]
fn red_and_the_service_graph_are_exact_across_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let (_broker, brokers) = start_cara_broker();
    let config = write_config(
        dir.path(),
        "[archive]\nroll_interval = \"1s\"\n[runtime]\nidle_partition_timeout = \"2s\"\n",
    );
    let spans = traces();
    kcat_produce_keyed(&brokers, "telemetry.spans", &messages(&spans));
    // A poison pill on the exchange topic (it stopped every start before): it is
    // dead-lettered like bad input, and the real cells are still counted exactly.
    kcat_produce(
        &brokers,
        "cara.internal.traces",
        &[r#"{"source_topic":"telemetry.spans","source_partition":0,"through_minute":9223372036854775807,"minute":null,"red":[],"edges":[]}"#.to_owned()],
    );
    let (mut run, http) = start_cara_run(&brokers, &archive, &config, "traces");

    // Every partition ends idle and raised to the furthest watermark (last start −
    // 30 s): minutes before that one are final.
    let last_start = spans.iter().map(|s| s.start).max().unwrap();
    let final_minute = (last_start - 30_000).div_euclid(MINUTE);
    let first_minute = START_MS / MINUTE;
    let minutes = (final_minute - first_minute) as usize;
    wait_until(Duration::from_secs(120), "every RED minute", || {
        archive.join("red").is_dir()
            && sql_count(&archive, "SELECT count(*) FROM red") >= (3 * minutes) as i64
            // The graph's file of the last flush lands just after red's.
            && sql_count(&archive, "SELECT count(*) FROM service_graph") >= (2 * minutes) as i64
    });

    // Reference per service and minute.
    let mut by_key: BTreeMap<(&str, i64), (Vec<f64>, u64)> = BTreeMap::new();
    for s in spans
        .iter()
        .filter(|s| s.start.div_euclid(MINUTE) < final_minute)
    {
        let e = by_key
            .entry((s.service, s.start.div_euclid(MINUTE)))
            .or_default();
        e.0.push(s.duration_ms);
        e.1 += u64::from(!s.ok);
    }
    let red = rows(
        &archive,
        "SELECT service, CAST(window_start AS BIGINT) / 60000 AS m, requests, errors, p50_ms, p99_ms, p999_ms \
         FROM red ORDER BY service, m",
    );
    assert_eq!(red.len(), by_key.len());
    for (row, ((service, minute), (durations, errors))) in red.iter().zip(by_key.iter_mut()) {
        assert_eq!(row[0], *service);
        assert_eq!(row[1].parse::<i64>().unwrap(), *minute);
        assert_eq!(row[2].parse::<usize>().unwrap(), durations.len());
        assert_eq!(row[3].parse::<u64>().unwrap(), *errors);
        durations.sort_by(f64::total_cmp);
        for (column, q) in [(4, 0.5), (5, 0.99), (6, 0.999)] {
            let got_us = (row[column].parse::<f64>().unwrap() * 1000.0).round();
            let want_us = exact_us(durations, q);
            assert!(
                got_us >= want_us && got_us <= want_us * 1.001 + 1.0,
                "{service} minute {minute} q{q}: {got_us} µs vs {want_us} µs"
            );
        }
    }

    // The graph: every trace is one call frontend → checkout and one checkout →
    // payments, by the child's start minute; errors are the child's.
    let graph = rows(
        &archive,
        "SELECT caller, callee, CAST(sum(requests) AS BIGINT), CAST(sum(errors) AS BIGINT) \
         FROM service_graph GROUP BY caller, callee ORDER BY caller, callee",
    );
    let counted = |service: &str| -> (u64, u64) {
        by_key
            .iter()
            .filter(|((s, _), _)| *s == service)
            .fold((0, 0), |(n, e), (_, (d, errs))| {
                (n + d.len() as u64, e + errs)
            })
    };
    let (checkout_calls, checkout_errors) = counted("checkout");
    let (payments_calls, payments_errors) = counted("payments");
    assert_eq!(
        graph,
        vec![
            vec![
                "checkout".to_owned(),
                "payments".to_owned(),
                payments_calls.to_string(),
                payments_errors.to_string()
            ],
            vec![
                "frontend".to_owned(),
                "checkout".to_owned(),
                checkout_calls.to_string(),
                checkout_errors.to_string()
            ],
        ]
    );

    // The same graph over HTTP, for the last 15 minutes.
    let (status, body) = http_get(http, "/api/graph?minutes=15");
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let edges = json["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2, "{body}");
    assert_eq!(edges[0]["caller"], "checkout");
    assert_eq!(edges[0]["callee"], "payments");
    let recent_calls = edges[0]["calls"].as_i64().unwrap();
    // 16 minutes of 50 traces (the latest minute and the 15 before it).
    assert_eq!(recent_calls, 16 * 50, "{body}");
    assert_eq!(http_get(http, "/api/graph?colour=red").0, 400);
    assert_eq!(http_get(http, "/api/graph?minutes=999999999").0, 400);
    assert!(run.terminate(Duration::from_secs(30)).success());
    assert_eq!(
        sql_rows(
            &archive,
            "SELECT topic, reason FROM dlq WHERE reason LIKE 'invalid exchange record%'"
        )
        .len(),
        1,
        "the poison pill is dead-lettered with its reason"
    );
}
