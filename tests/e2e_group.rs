//! Three `cara run` processes in one consumer group over one archive: they split the
//! partitions, and while records arrive one is stopped (against `cara broker` killed
//! with -9; against tansu, which never hands a killed member's partitions on, with
//! SIGTERM) and then a second with SIGTERM; the last takes over every partition with
//! its state. Against `cara broker` the second is also frozen (SIGSTOP) past its
//! session in between, so the group hands its partitions on while it still holds
//! them; thawed, it must commit nothing of them (`archive::claim`). Afterwards the
//! archive holds every generated record exactly once, and every table (alerts, SLO
//! statuses, incidents, windows, templates, ...) equals, row for row as DuckDB reads
//! them, that of one process that ran alone over the same records on a second broker
//! of the same kind. The time the survivors took to hold every partition is printed
//! (`benches/BENCHMARKS.md` records it).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Records the generator writes, and how fast (records per second of wall time and
/// of event time: ten minutes of telemetry, with the one incident the generator
/// schedules in it).
const RECORDS: &str = "60000";
const RATE: &str = "2000";
const EVENT_RATE: &str = "100";

fn generate(broker: Broker, brokers: &str, rate: &str) -> Process {
    let mut gen = cara();
    gen.args([
        "gen",
        "--brokers",
        brokers,
        "--rate",
        rate,
        "--event-rate",
        EVENT_RATE,
        "--count",
        RECORDS,
        "--services",
        "6",
        "--seed",
        "9",
        "--start",
        "2026-01-01T00:00:00Z",
    ]);
    if broker == Broker::Tansu {
        // tansu 0.6 answers a fetch that starts inside a batch with the next batch
        // (`benches/tansu_fetch_inside_batch.py`), so a process resuming from a
        // checkpoint inside one would lose its rest: one message per batch here.
        gen.args(["-X", "batch.num.messages=1"]);
    }
    Process::spawn("cara-gen", gen)
}

/// The generator's summary line: records per table.
fn produced(gen: &mut Process) -> serde_json::Value {
    assert!(gen.child.wait().unwrap().success());
    let line = gen.lines().last().cloned().expect("gen prints a summary");
    serde_json::from_str(&line).expect("summary JSON")
}

fn input_rows(archive: &Path) -> i64 {
    ["metrics", "logs", "spans"]
        .iter()
        .filter(|t| archive.join(t).is_dir())
        .map(|t| sql_count(archive, &format!("SELECT count(*) FROM {t}")))
        .sum()
}

/// Rows of the tables the second stages write, which grow after the inputs are in.
fn derived_rows(archive: &Path) -> Vec<(String, i64)> {
    ["slo", "alerts", "incidents"]
        .iter()
        .map(|t| {
            let n = if archive.join(t).is_dir() {
                sql_count(archive, &format!("SELECT count(*) FROM {t}"))
            } else {
                0
            };
            (t.to_string(), n)
        })
        .collect()
}

fn assigned(ports: &[u16]) -> f64 {
    ports
        .iter()
        .map(|p| metric_sum(*p, "cara_assigned_partitions", ""))
        .sum()
}

/// The broker a scenario runs against, and how the first of the three stops.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Broker {
    /// `cara broker`: the first process is killed with -9.
    Cara,
    /// tansu, which never hands a killed member's partitions on (see
    /// `benches/tansu_group_takeover.py`): the first process is stopped with SIGTERM.
    Tansu,
}

impl Broker {
    fn start(self, dir: &Path) -> (Process, String) {
        match self {
            Broker::Cara => start_cara_broker(),
            Broker::Tansu => {
                let data = dir.join(format!("tansu-{}", free_port()));
                std::fs::create_dir_all(&data).unwrap();
                start_tansu(&data)
            }
        }
    }
}

/// The two scenarios share the machine's two cores: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn on_cara_broker_three_processes_a_kill_and_a_stop_change_nothing() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    scenario(Broker::Cara);
}

#[test]
fn on_tansu_three_processes_and_two_stops_change_nothing() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    scenario(Broker::Tansu);
}

fn scenario(broker: Broker) {
    let dir = tempfile::tempdir().unwrap();
    // A 6 s session: the bound on how long a killed member's partitions wait.
    let config = write_config(
        dir.path(),
        "[archive]\nroll_interval = \"500ms\"\nroll_bytes = 65536\n\
         [kafka.client_properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n\
         [[slo]]\nname = \"checkout-availability\"\nservice = \"checkout\"\nsli = \"availability\"\nobjective = 0.99\nperiod = \"30d\"\n\
         [[slo]]\nname = \"checkout-latency\"\nservice = \"checkout\"\nsli = \"latency\"\nthreshold_ms = 300\nobjective = 0.99\nperiod = \"30d\"\n",
    );

    // One process alone, on a broker of its own holding the same records (cara
    // creates its topics where the broker does not).
    let (_alone_broker, alone_brokers) = broker.start(dir.path());
    let alone = dir.path().join("alone");
    let (mut run, http) = start_cara_run(&alone_brokers, &alone, &config, "alone");
    let mut gen = generate(broker, &alone_brokers, "0");
    let summary = produced(&mut gen);
    let total: i64 = ["metrics", "logs", "spans"]
        .iter()
        .map(|t| summary[t].as_i64().unwrap())
        .sum();
    wait_until(
        Duration::from_secs(300),
        "the lone process to archive everything",
        || input_rows(&alone) >= total && metric_sum(http, "cara_consumer_lag", "") == 0.0,
    );
    let partitions = metric_sum(http, "cara_assigned_partitions", "");
    // Its second stages finish once every partition has been idle for the idle
    // timeout (30 s) and was raised to the last watermark: wait until each of them
    // has written and three looks, 5 s apart, agree.
    let mut settled = Vec::new();
    let mut agreeing = 0;
    wait_until(
        Duration::from_secs(180),
        "the lone process's second stages to settle",
        || {
            std::thread::sleep(Duration::from_secs(5));
            let now = derived_rows(&alone);
            agreeing = if now == settled { agreeing + 1 } else { 0 };
            settled = now;
            agreeing >= 2 && settled.iter().all(|(_, rows)| *rows > 0)
        },
    );
    assert!(run.terminate(Duration::from_secs(30)).success());
    eprintln!("alone: {total} records, {partitions} partitions, {settled:?}");
    for (table, rows) in &settled {
        assert!(*rows > 0, "the lone run wrote no {table}: {settled:?}");
    }

    // Three processes in one group, started while the records arrive.
    let (_broker, brokers) = broker.start(dir.path());
    let archive = dir.path().join("group");
    let (mut a, a_http) = start_cara_run(&brokers, &archive, &config, "group");
    let mut gen = generate(broker, &brokers, RATE);
    let (mut b, b_http) = start_cara_run(&brokers, &archive, &config, "group");
    let (mut c, c_http) = start_cara_run(&brokers, &archive, &config, "group");
    wait_until(
        Duration::from_secs(60),
        "the three to split the partitions",
        || {
            let each: Vec<f64> = [a_http, b_http, c_http]
                .iter()
                .map(|p| metric_sum(*p, "cara_assigned_partitions", ""))
                .collect();
            each.iter().all(|n| *n > 0.0) && each.iter().sum::<f64>() == partitions
        },
    );

    wait_until(Duration::from_secs(120), "a third archived", || {
        input_rows(&archive) >= total / 3
    });
    let how = match broker {
        Broker::Cara => {
            a.kill9();
            "kill -9"
        }
        Broker::Tansu => {
            assert!(a.terminate(Duration::from_secs(60)).success());
            "SIGTERM"
        }
    };
    let gone = Instant::now();
    wait_until(
        Duration::from_secs(60),
        "the survivors to take over",
        || assigned(&[b_http, c_http]) == partitions,
    );
    let takeover = gone.elapsed();
    eprintln!(
        "{broker:?}: after {how} the survivors held all {partitions} partitions in {takeover:?}"
    );

    if broker == Broker::Cara {
        // A zombie: b frozen past its session, so the group hands its partitions to
        // c while b still holds rows (and perhaps a flush) of them. Thawed, b goes on
        // until it hears it was dropped; its claims on those partitions are c's now,
        // so nothing it flushes meanwhile is committed.
        signal(b.child.id(), "STOP");
        wait_until(
            Duration::from_secs(60),
            "c to take the frozen one's partitions",
            || assigned(&[c_http]) == partitions,
        );
        signal(b.child.id(), "CONT");
        // Until it hears, b still counts its old partitions; then the two split them.
        wait_until(Duration::from_secs(60), "the thawed one to rejoin", || {
            let b_holds = metric_sum(b_http, "cara_assigned_partitions", "");
            b_holds > 0.0 && b_holds + assigned(&[c_http]) == partitions
        });
    }

    wait_until(Duration::from_secs(180), "two thirds archived", || {
        input_rows(&archive) >= total * 2 / 3
    });
    assert!(b.terminate(Duration::from_secs(60)).success());
    let stopped = Instant::now();
    wait_until(Duration::from_secs(60), "the last one to take over", || {
        assigned(&[c_http]) == partitions
    });
    eprintln!(
        "{broker:?}: after SIGTERM the last process held every partition in {:?}",
        stopped.elapsed()
    );

    let in_group = produced(&mut gen);
    assert_eq!(in_group, summary, "both brokers got the same records");
    wait_until(
        Duration::from_secs(300),
        "the last process to archive everything",
        || input_rows(&archive) >= total && metric_sum(c_http, "cara_consumer_lag", "") == 0.0,
    );
    wait_until(
        Duration::from_secs(180),
        "the group's second stages to catch up",
        || derived_rows(&archive) == settled,
    );
    assert!(c.terminate(Duration::from_secs(30)).success());

    // Exactly once, as DuckDB reads the files, and every table as the lone run's.
    let tables = [
        "metrics",
        "logs",
        "spans",
        "dlq",
        "metric_windows",
        "log_windows",
        "log_templates",
        "red",
        "service_graph",
        "slo",
        // An alert of a second stage names the exchange record that raised it, and
        // how many partials a partition sends depends on when it flushed; the
        // alerts of input records keep their offsets (compared below).
        "alerts:_offset",
        "incidents",
    ];
    let mut args = vec![alone.to_str().unwrap(), archive.to_str().unwrap()];
    args.extend(tables);
    let out = python("compare_archives_duckdb.py", &args);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("table,alone,group,only_alone,only_group\n{report}");
    assert_eq!(report.lines().count(), tables.len(), "{report}");
    for line in report.lines() {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(
            fields[1..],
            [fields[1], fields[1], "0", "0"],
            "{} differs between one process and the group: {line}",
            fields[0]
        );
    }
    let input_alerts = |archive: &Path| {
        sql_rows(
            archive,
            "SELECT id, status, CAST(at AS BIGINT), _topic, _partition, _offset FROM alerts \
             WHERE _topic NOT LIKE 'cara.internal.%' ORDER BY 3, 1, 2",
        )
    };
    let expected = input_alerts(&alone);
    assert!(
        !expected.is_empty(),
        "no alert of an input record to compare"
    );
    assert_eq!(input_alerts(&archive), expected);
    for table in ["metrics", "logs", "spans"] {
        let distinct = sql_count(
            &archive,
            &format!("SELECT count(*) FROM (SELECT DISTINCT _topic, _partition, _offset, _index FROM {table})"),
        );
        assert_eq!(distinct, summary[table].as_i64().unwrap(), "{table}");
    }
    // The takeover waited for the killed member's session (6 s) and one rebalance.
    assert!(
        takeover < Duration::from_secs(30),
        "the survivors took {takeover:?} to hold every partition"
    );
}
