//! Log intelligence end to end: log lines of three services produced with kcat into
//! a separate `cara broker`; `cara run` mines their templates in its shards. Checks
//! the template columns of table `logs` (grouping, text, parameters), the windowed
//! counts of table `log_windows` (written where every partition's counts meet)
//! against counts computed here, table
//! `log_templates`, `GET /api/templates`, the `log_pattern` alert of a new
//! error-level template (table `alerts` and topic `cara.alerts`), the same grouping
//! read by DuckDB, and that template ids survive a restart (the miner's state rides
//! in the checkpoint).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

/// A whole minute, so windows line up with the minutes below.
const START_MS: i64 = 1_700_000_040_000;

/// One log line: (service, level, message, ts) and the template it must get.
struct Line {
    service: &'static str,
    level: &'static str,
    message: String,
    ts: i64,
    template: &'static str,
}

impl Line {
    fn json(&self) -> (String, String) {
        (
            self.service.to_owned(),
            format!(
                r#"{{"ts":{},"service":"{}","level":"{}","message":"{}"}}"#,
                self.ts, self.service, self.level, self.message
            ),
        )
    }
}

/// Minutes `minutes` of traffic: 30 lines a minute per template, one second apart.
fn traffic(minutes: std::ops::Range<i64>, with_new_template: bool) -> Vec<Line> {
    let mut lines = Vec::new();
    for m in minutes {
        for k in 0..30i64 {
            let ts = START_MS + m * 60_000 + k * 1_000;
            lines.push(Line {
                service: "api",
                level: "info",
                message: format!("GET /orders/{} returned 200 in {} ms", k * 7 + m, k + 3),
                ts,
                template: "GET <*> returned <*> in <*> ms",
            });
            lines.push(Line {
                service: "api",
                level: "info",
                message: format!("user u{k} logged in from 10.0.{m}.{k}"),
                ts,
                template: "user <*> logged in from <*>",
            });
            lines.push(Line {
                service: "db",
                level: "info",
                message: format!("checkpoint {m}-{k} complete after {}ms", k * 11),
                ts,
                template: "checkpoint <*> complete after <*>",
            });
            lines.push(Line {
                service: "web",
                level: "warn",
                message: format!("cache warmed for region eu-west-{}", k % 3),
                ts,
                template: "cache warmed for region <*>",
            });
            if m >= 5 && k == 10 {
                lines.push(Line {
                    service: "db",
                    level: "error",
                    message: format!("connection pool exhausted after {m} retries"),
                    ts,
                    template: "connection pool exhausted after <*> retries",
                });
            }
            if with_new_template && k % 5 == 0 {
                lines.push(Line {
                    service: "api",
                    level: "info",
                    message: format!("payment {k} declined by issuer"),
                    ts,
                    template: "payment <*> declined by issuer",
                });
            }
        }
    }
    lines
}

fn produce(brokers: &str, lines: &[Line]) {
    let messages: Vec<(String, String)> = lines.iter().map(Line::json).collect();
    kcat_produce_keyed(brokers, "telemetry.logs", &messages);
}

fn run_until_archived(
    brokers: &str,
    archive: &std::path::Path,
    config: &std::path::Path,
    rows: i64,
) -> (Process, u16) {
    let (run, http) = start_cara_run(brokers, archive, config, "logs-e2e");
    wait_until(Duration::from_secs(90), "every log line archived", || {
        archive.join("logs").is_dir() && sql_count(archive, "SELECT count(*) FROM logs") >= rows
    });
    (run, http)
}

#[test]
fn templates_windows_alerts_and_ids_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let (_broker, brokers) = start_cara_broker();
    // Three services keyed over many partitions: the idle ones must report (raised
    // watermarks) before the log combiner closes a window.
    let config = write_config(
        dir.path(),
        "[archive]\nroll_interval = \"1s\"\n[runtime]\nidle_partition_timeout = \"2s\"\n",
    );

    let first = traffic(0..20, false);
    produce(&brokers, &first);
    let (mut run, http) = run_until_archived(&brokers, &archive, &config, first.len() as i64);

    // Every line got the template it must, and each template is one id.
    let expected: BTreeMap<(String, String), usize> =
        first.iter().fold(BTreeMap::new(), |mut m, l| {
            *m.entry((l.service.to_owned(), l.template.to_owned()))
                .or_default() += 1;
            m
        });
    let grouped = sql_rows(
        &archive,
        "SELECT service, template, count(*) AS n, count(DISTINCT template_id) AS ids \
         FROM logs GROUP BY service, template ORDER BY service, template",
    );
    let want: Vec<String> = expected
        .iter()
        .map(|((s, t), n)| format!("{s},{t},{n},1"))
        .collect();
    assert_eq!(grouped, want);
    assert_eq!(
        sql_count(
            &archive,
            "SELECT count(*) FROM logs WHERE template_id IS NULL"
        ),
        0
    );
    // DuckDB reads the same grouping, parameters included, from the Parquet files.
    let duck = python("log_templates_duckdb.py", &[archive.to_str().unwrap()]);
    let duck: Vec<String> = String::from_utf8_lossy(&duck.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let firsts = ["/orders/0", "u0", "0-0", "5", "eu-west-0"];
    let want_duck: Vec<String> = expected
        .iter()
        .zip(firsts)
        .map(|(((s, t), n), first)| format!("{s},{t},{n},{first}"))
        .collect();
    assert_eq!(duck, want_duck);
    // Parameters are the variable parts, in order.
    let params = sql_rows(
        &archive,
        &format!(
            "SELECT array_to_string(params, '|') FROM logs WHERE CAST(ts AS BIGINT) = {} \
             AND template LIKE 'user%'",
            START_MS + 3 * 60_000 + 4_000
        ),
    );
    assert_eq!(params, ["u4|10.0.3.4"]);

    // The live catalogue: api's templates with their counts, most frequent first.
    let (status, body) = http_get(http, "/api/templates?service=api");
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let listed: Vec<(String, u64)> = json["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["template"].as_str().unwrap().to_owned(),
                t["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("GET <*> returned <*> in <*> ms".to_owned(), 600),
            ("user <*> logged in from <*>".to_owned(), 600)
        ]
    );
    assert_eq!(http_get(http, "/api/templates?colour=red").0, 400);
    assert_eq!(
        metric_sum(http, "cara_log_templates_created_total", ""),
        expected.len() as f64
    );
    // Windows: the watermark trails the last line (minute 19, second 29) by 30 s, so
    // minutes 0..=17 close once every partition reported to the log combiner; their
    // counts are exactly the lines of each minute, over every partition.
    let last_closed = START_MS + 17 * 60_000;
    wait_until(Duration::from_secs(90), "minute 17's windows", || {
        archive.join("log_windows").is_dir()
            && sql_count(
                &archive,
                &format!(
                    "SELECT count(*) FROM log_windows WHERE CAST(window_start AS BIGINT) = {last_closed}"
                ),
            ) >= 5
    });
    assert!(run.terminate(Duration::from_secs(30)).success());
    let windows = sql_rows(
        &archive,
        "SELECT w.service, t.template, CAST(w.window_start AS BIGINT) AS ws, w.lines, w.error_lines \
         FROM log_windows w JOIN (SELECT DISTINCT template_id, template FROM log_templates) t \
         ON w.template_id = t.template_id ORDER BY w.service, t.template, ws",
    );
    let mut counted: BTreeMap<(String, String, i64), (u64, u64)> = BTreeMap::new();
    for l in &first {
        let minute = (l.ts - START_MS) / 60_000;
        if minute <= 17 {
            let e = counted
                .entry((
                    l.service.to_owned(),
                    l.template.to_owned(),
                    START_MS + minute * 60_000,
                ))
                .or_default();
            e.0 += 1;
            e.1 += u64::from(l.level == "error");
        }
    }
    let want: Vec<String> = counted
        .iter()
        .map(|((s, t, ws), (n, e))| format!("{s},{t},{ws},{n},{e}"))
        .collect();
    assert_eq!(windows, want);
    assert_eq!(
        sql_count(
            &archive,
            "SELECT count(DISTINCT template_id) FROM log_templates"
        ),
        expected.len() as i64
    );

    // The new error-level template alerted once, from its first line, and resolved
    // when the next window closed; the alert is on the topic too.
    let first_error = first.iter().find(|l| l.level == "error").unwrap().ts;
    let alerts = sql_rows(
        &archive,
        "SELECT rule, kind, status, CAST(starts_at AS BIGINT), labels['service'], id FROM alerts \
         WHERE kind = 'log_pattern' ORDER BY status",
    );
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    assert!(alerts[0].starts_with(&format!(
        "log_new_error_template,log_pattern,firing,{first_error},db,"
    )));
    assert!(alerts[1].starts_with(&format!(
        "log_new_error_template,log_pattern,resolved,{first_error},db,"
    )));
    let id = alerts[0].rsplit(',').next().unwrap().to_owned();
    assert!(kcat_keys(&brokers, "cara.alerts").contains(&id));

    // A restart continues with the checkpointed miner: known templates keep their ids.
    let second = traffic(20..25, true);
    produce(&brokers, &second);
    let total = (first.len() + second.len()) as i64;
    let (mut run, _http) = run_until_archived(&brokers, &archive, &config, total);
    assert!(run.terminate(Duration::from_secs(30)).success());
    assert_eq!(sql_count(&archive, "SELECT count(*) FROM logs"), total);
    let ids = sql_rows(
        &archive,
        "SELECT template, count(DISTINCT template_id) FROM logs WHERE service = 'api' \
         GROUP BY template ORDER BY template",
    );
    assert_eq!(
        ids,
        [
            "GET <*> returned <*> in <*> ms,1",
            "payment <*> declined by issuer,1",
            "user <*> logged in from <*>,1"
        ]
    );
}
