//! End-to-end harness: Kafka → Parquet throughput of `cara run` beside a bare
//! librdkafka consumer that merely reads the same topics, in one sitting, plus cara's
//! peak memory.
//!
//! `cargo bench -p cara-pipeline --bench e2e` (records: `CARA_BENCH_RECORDS`, default 1,000,000;
//! `CARA_BENCH_ROLL_INTERVAL`, default 1s, `default` for cara's own; `CARA_BENCH_RUNS`: how many times, default 3).
//! Each run reads with a bare consumer, then with cara twice: the data plane alone
//! (decode, DLQ, exactly-once archive: what issue 2 specifies) and the whole default
//! pipeline; `CARA_BENCH_CONFIG` replaces the two with one configuration (TOML appended
//! to cara's).
//! Both readers are timed from their first record to their last, so consumer-group
//! start-up is excluded from both alike. The records are produced once; each run
//! reads them all again, the bare reader and then cara, each in a fresh consumer
//! group (and cara into a fresh archive), so the machine's drift touches both; the
//! medians of the runs close the report.

use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use cara_pipeline::broker::{Advertised, EmbeddedBroker, TopicPlan};
use cara_pipeline::config::Config;
use cara_pipeline::dataflow::Dataflow;
use cara_pipeline::gen::{self, GenOptions};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

mod harness;
use harness::{
    cpu_seconds, free_port, http_get, metric, parquet_files, peak_rss_kib, spawn_cara_run,
    walk_bytes,
};

const TOPICS: [&str; 3] = ["telemetry.metrics", "telemetry.logs", "telemetry.spans"];

fn bare_consumer(bootstrap: &str, messages: u64, run: usize) -> (Duration, u64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bare-{}-{run}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        // The same fetch tuning cara uses, so both readers fetch alike.
        .set("fetch.queue.backoff.ms", "5")
        .create()
        .expect("consumer");
    consumer.subscribe(&TOPICS).expect("subscribe");
    let (mut seen, mut bytes) = (0u64, 0u64);
    let mut first = None;
    let mut last = Instant::now();
    while seen < messages {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                bytes += m.payload().map_or(0, |p| p.len() as u64);
                seen += 1;
                last = Instant::now();
            }
            _ if first.is_some() && last.elapsed() > Duration::from_secs(10) => {
                panic!("bare consumer read {seen} of {messages} messages; the broker lost the rest (5 MiB per partition)");
            }
            _ => {}
        }
    }
    (last - first.unwrap_or(last), bytes)
}
fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probes harness=false targets with --list
    }
    let records: u64 = std::env::var("CARA_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // The topics `cara run` expects, as its embedded broker creates them.
    let dataflow = Dataflow::declare(&Config::default()).expect("the default dataflow");
    let plan = TopicPlan::of(&dataflow.topics);
    let broker = runtime
        .block_on(EmbeddedBroker::start(
            format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            plan,
            Advertised::MockPort,
        ))
        .expect("broker");
    let bootstrap = broker.direct_bootstrap.clone();

    let options = GenOptions {
        rate: 0,
        event_rate: None,
        count: Some(records),
        duration: None,
        services: 8,
        seed: 1,
        labels: None,
        start_ms: 1_764_000_000_000,
        topics: TOPICS.map(String::from),
        format: cara_pipeline::gen::otlp::GenFormat::FlatJson,
        progress: false,
        first_fault_after: None,
    };
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &bootstrap);
    let produced_at = Instant::now();
    let summary = gen::run(&options, client, &AtomicBool::new(false)).expect("generate");
    eprintln!(
        "produced {} records in {} messages in {:.1?}",
        summary.records(),
        summary.messages,
        produced_at.elapsed()
    );

    let runs: usize = std::env::var("CARA_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let roll_interval =
        std::env::var("CARA_BENCH_ROLL_INTERVAL").unwrap_or_else(|_| "1s".to_owned());
    // What cara runs: by default the data plane alone (what issue 2 specifies) and the
    // whole default pipeline, both beside the same bare run; `CARA_BENCH_CONFIG`
    // instead appends its TOML (e.g. `[logs]\nenabled = false`) to one configuration.
    let pipelines: Vec<(&str, String)> = match std::env::var("CARA_BENCH_CONFIG") {
        Ok(extra) => vec![("CARA_BENCH_CONFIG", extra)],
        Err(_) => vec![
            (
                "data plane",
                "[anomaly]\nenabled = false\n[logs]\nenabled = false\n[traces]\nenabled = false"
                    .to_owned(),
            ),
            ("full pipeline", String::new()),
        ],
    };
    println!(
        "{} records in {} messages; cara with roll_interval {roll_interval}; data plane = decode, \
         DLQ and exactly-once archive only (operators off), full pipeline = cara's defaults",
        summary.records(),
        summary.messages,
    );
    println!("| run | cara | bare read (msg/s) | cara, all decoded (msg/s) | cara, all durable (msg/s) | ratio streaming | ratio durable | bare CPU s (with broker) | cara CPU s | broker CPU s during cara | cara peak RSS | archive |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let messages = summary.messages as f64;
    let mut ratios: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); pipelines.len()];
    let mut payload_bytes = None;
    // With cara's own roll interval (10 s), wait until every record is older than it,
    // as after an outage: that is the backlog a restarted cara catches up on.
    if roll_interval == "default" {
        let age = Duration::from_secs(11);
        eprintln!("waiting until the backlog is {age:?} old");
        std::thread::sleep(age);
    }
    for run in 1..=runs {
        let harness_cpu_before_bare = cpu_seconds("self");
        let (bare_time, bare_bytes) = bare_consumer(&bootstrap, summary.messages, run);
        let bare_cpu = cpu_seconds("self") - harness_cpu_before_bare;
        let bare_rate = messages / bare_time.as_secs_f64();
        let first_bytes = *payload_bytes.get_or_insert(bare_bytes);
        assert_eq!(bare_bytes, first_bytes, "every run reads the same records");
        for (index, (label, extra)) in pipelines.iter().enumerate() {
            // `default`: cara's own roll interval, as users run it.
            let roll = match roll_interval.as_str() {
                "default" => String::new(),
                interval => format!("roll_interval = \"{interval}\"\n"),
            };
            let config = format!("[archive]\n{roll}{extra}\n");
            let cara = run_cara(&bootstrap, &summary, &config, &format!("{run}-{index}"));
            let streaming_rate = messages / cara.streaming.as_secs_f64();
            let durable_rate = messages / cara.durable.as_secs_f64();
            ratios[index].0.push(streaming_rate / bare_rate);
            ratios[index].1.push(durable_rate / bare_rate);
            println!(
                "| {run} | {label} | {bare_rate:.0} | {streaming_rate:.0} | {durable_rate:.0} | {:.2} | {:.2} | {bare_cpu:.1} | {:.1} | {:.1} | {:.0} MiB | {:.1} MB |",
                streaming_rate / bare_rate,
                durable_rate / bare_rate,
                cara.cpu,
                cara.broker_cpu,
                cara.peak_kib as f64 / 1024.0,
                cara.archive_bytes as f64 / 1e6,
            );
            let tables: Vec<String> = cara
                .files
                .iter()
                .map(|(table, (files, bytes))| {
                    format!(
                        "{table} {files} files of {:.0} KB on average",
                        *bytes as f64 / *files as f64 / 1e3
                    )
                })
                .collect();
            eprintln!("  run {run}, {label}: {}", tables.join(", "));
        }
    }
    for ((label, _), (streaming, durable)) in pipelines.iter().zip(&mut ratios) {
        println!(
            "{label}: median of {runs} runs, cara / bare: {:.2} streaming, {:.2} to durable ({:.0} MB of JSON read per run)",
            median(streaming),
            median(durable),
            payload_bytes.unwrap_or(0) as f64 / 1e6
        );
    }
    drop(broker);
}

/// What one `cara run` over the produced records measured.
struct CaraRun {
    /// First record read to every message decoded (flushes run meanwhile).
    streaming: Duration,
    /// First record read to every row durable in Parquet.
    durable: Duration,
    cpu: f64,
    /// The harness (the broker serving cara) meanwhile.
    broker_cpu: f64,
    peak_kib: u64,
    archive_bytes: u64,
    /// Parquet files per table: count and bytes.
    files: std::collections::BTreeMap<String, (u64, u64)>,
}

/// Runs the release `cara run` in consumer group `bench-cara-<run>` until every
/// record is archived, polling `/metrics` every 20 ms.
fn run_cara(bootstrap: &str, summary: &gen::GenSummary, config_text: &str, run: &str) -> CaraRun {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bench.toml");
    std::fs::write(&config, config_text).expect("config");
    let (mut cara, http) = spawn_cara_run(
        bootstrap,
        &format!("bench-cara-{run}"),
        &dir.path().join("archive"),
        &config,
    );
    let harness_cpu_before_cara = cpu_seconds("self");
    let mut first = None;
    let mut all_decoded = None;
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let messages_in = metric(http, "cara_messages_in_total");
        if messages_in > 0.0 {
            first.get_or_insert_with(Instant::now);
        }
        if messages_in >= summary.messages as f64 {
            all_decoded.get_or_insert_with(Instant::now);
        }
        let archived = metric(http, "cara_archive_rows_total");
        if archived >= summary.records() as f64 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let durable = first.map(|f| f.elapsed()).unwrap_or_default();
    let streaming = match (first, all_decoded) {
        (Some(f), Some(d)) => d - f,
        _ => durable,
    };
    if std::env::var_os("CARA_BENCH_DUMP_METRICS").is_some() {
        // Diagnostics: cara's own counters at the end (flush latency, files, alerts).
        for line in http_get(http, "/metrics").lines().filter(|l| {
            l.starts_with("cara_flush_seconds")
                || l.starts_with("cara_archive_files_total")
                || l.starts_with("cara_alerts_total")
                || l.starts_with("cara_archive_bytes_total")
                || l.starts_with("cara_budget_flushes_total")
                || l.starts_with("cara_messages_in_total")
        }) {
            println!("{line}");
        }
    }
    let peak_kib = peak_rss_kib(cara.id());
    let cpu = cpu_seconds(&cara.id().to_string());
    let broker_cpu = cpu_seconds("self") - harness_cpu_before_cara;
    let _ = Command::new("kill")
        .args(["-TERM", &cara.id().to_string()])
        .status();
    let _ = cara.wait();
    CaraRun {
        streaming,
        durable,
        cpu,
        broker_cpu,
        peak_kib,
        archive_bytes: walk_bytes(&dir.path().join("archive")),
        files: parquet_files(&dir.path().join("archive")),
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}
