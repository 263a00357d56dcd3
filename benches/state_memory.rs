//! Operator state at high cardinality through the release `cara run`: peak memory,
//! what the state budget held and refused, and what checkpoints cost.
//!
//! `cargo bench --bench state_memory` (series: `CARA_BENCH_SERIES`, default
//! 1,000,000; points per series: `CARA_BENCH_POINTS`, default 1: a series' state is
//! as large after one point as after many).
//!
//! Metric points of that many distinct series (a gauge, one label of its own per
//! series, 100 points per message, spread over the 48 partitions of
//! `telemetry.metrics`) are produced once into the embedded broker, then read by
//! `cara run` twice in one sitting, each into a fresh archive: with the default
//! configuration (`runtime.max_state_bytes` 1 GiB) and with a budget nothing reaches
//! (64 GiB: state bounded only by `anomaly.max_series` per partition, as before the
//! budget existed). Each run ends when every point is archived.

use std::process::Command;
use std::time::{Duration, Instant};

use cara_pipeline::broker::{Advertised, EmbeddedBroker, TopicPlan};
use cara_pipeline::config::Config;
use cara_pipeline::dataflow::Dataflow;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

mod harness;
use harness::{free_port, metric, peak_rss_kib, spawn_cara_run, walk_bytes};

const START_MS: i64 = 1_764_000_000_000;
const PER_MESSAGE: usize = 100;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Produces `points` points of each of `series` series; returns the points.
fn produce(bootstrap: &str, series: usize, points: usize) -> u64 {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let mut produced = 0u64;
    for round in 0..points {
        for (chunk, first) in (0..series).step_by(PER_MESSAGE).enumerate() {
            let records: Vec<String> = (first..(first + PER_MESSAGE).min(series))
                .map(|i| {
                    format!(
                        r#"{{"ts":{},"name":"queue_depth","type":"gauge","value":{},"labels":{{"service":"svc-{}","queue":"q-{i}"}}}}"#,
                        START_MS + round as i64 * 10_000,
                        (i * 7 + round) % 1000,
                        i % 50
                    )
                })
                .collect();
            let payload = format!("[{}]", records.join(","));
            let key = chunk.to_string();
            let mut record = BaseRecord::to("telemetry.metrics")
                .key(&key)
                .payload(&payload);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        producer.poll(Duration::from_millis(10));
                        record = back;
                    }
                }
            }
            produced += (first..(first + PER_MESSAGE).min(series)).len() as u64;
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .expect("every point acknowledged");
    produced
}

struct Measured {
    peak_kib: u64,
    held_bytes: f64,
    refused: f64,
    seconds: f64,
    state_file_bytes: f64,
    state_files: f64,
    flush_seconds: f64,
    archive_bytes: u64,
}

fn run_cara(bootstrap: &str, points: u64, config_text: &str, group: &str) -> Measured {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bench.toml");
    std::fs::write(&config, config_text).expect("config");
    let started = Instant::now();
    let (mut cara, http) = spawn_cara_run(bootstrap, group, &dir.path().join("archive"), &config);
    let deadline = Instant::now() + Duration::from_secs(3600);
    let archived = || metric(http, "cara_archive_rows_total{table=\"metrics\"}");
    while archived() < points as f64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let measured = Measured {
        peak_kib: peak_rss_kib(cara.id()),
        held_bytes: metric(http, "cara_operator_state_used_bytes"),
        refused: metric(http, "cara_over_state_budget_total"),
        seconds: started.elapsed().as_secs_f64(),
        state_file_bytes: metric(http, "cara_operator_state_file_bytes_total"),
        state_files: metric(http, "cara_operator_state_files_total"),
        flush_seconds: metric(http, "cara_flush_seconds_sum"),
        archive_bytes: 0,
    };
    let _ = Command::new("kill")
        .args(["-TERM", &cara.id().to_string()])
        .status();
    let _ = cara.wait();
    Measured {
        archive_bytes: walk_bytes(&dir.path().join("archive")),
        ..measured
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probes harness=false targets with --list
    }
    let series = env_number("CARA_BENCH_SERIES", 1_000_000);
    let points_per_series = env_number("CARA_BENCH_POINTS", 1);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dataflow = Dataflow::declare(&Config::default()).expect("the default dataflow");
    let plan = TopicPlan::of(&dataflow.topics);
    let broker = runtime
        .block_on(EmbeddedBroker::start(
            format!("127.0.0.1:{}", free_port())
                .parse()
                .expect("an address"),
            plan,
            Advertised::MockPort,
        ))
        .expect("broker");
    let bootstrap = broker.direct_bootstrap.clone();
    let produced_at = Instant::now();
    let points = produce(&bootstrap, series, points_per_series);
    eprintln!("produced {points} points in {:.1?}", produced_at.elapsed());
    println!("{series} series, {points_per_series} points each ({points} points), cara's defaults otherwise");
    println!("| runtime.max_state_bytes | peak RSS | state held (estimated) | points refused by the budget | series scored | time to archive all | state files written | state file bytes written | flush seconds (sum) | archive |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (label, extra, group) in [
        ("1 GiB (default)", "", "state-default"),
        (
            "64 GiB (nothing refused)",
            "[runtime]\nmax_state_bytes = 68719476736\n",
            "state-unbounded",
        ),
    ] {
        let m = run_cara(&bootstrap, points, extra, group);
        // A refused series is refused at each of its points.
        let scored = series as f64 - m.refused / points_per_series as f64;
        println!(
            "| {label} | {:.0} MiB | {:.0} MiB | {:.0} | {scored:.0} | {:.0} s | {:.0} | {:.1} MB | {:.1} | {:.1} MB |",
            m.peak_kib as f64 / 1024.0,
            m.held_bytes / (1024.0 * 1024.0),
            m.refused,
            m.seconds,
            m.state_files,
            m.state_file_bytes / 1e6,
            m.flush_seconds,
            m.archive_bytes as f64 / 1e6,
        );
    }
    drop(broker);
}
