//! End-to-end harness: Kafka → Parquet throughput of `cara run` beside a bare
//! librdkafka consumer that merely reads the same topics, in one sitting, plus cara's
//! peak memory.
//!
//! `cargo bench -p cara-pipeline --bench e2e` (records: `CARA_BENCH_RECORDS`, default 1,000,000;
//! `CARA_BENCH_CONFIG`: TOML appended to cara's configuration).
//! Both readers are timed from their first record to their last, so consumer-group
//! start-up is excluded from both alike.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use cara_pipeline::broker::{EmbeddedBroker, TopicPlan};
use cara_pipeline::gen::{self, GenOptions};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

const TOPICS: [&str; 3] = ["telemetry.metrics", "telemetry.logs", "telemetry.spans"];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn http_get(port: u16, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = write!(s, "GET {path} HTTP/1.0\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn metric(port: u16, name: &str) -> f64 {
    http_get(port, "/metrics")
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn bare_consumer(bootstrap: &str, messages: u64) -> (Duration, u64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bare-{}", std::process::id()))
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

/// CPU seconds (user + system) a process has used so far, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are 14th and 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Clock ticks are 100 per second on Linux for every architecture we run on.
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
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
    let plan = TopicPlan::for_config(&cara_pipeline::config::Config::default());
    let broker = runtime
        .block_on(EmbeddedBroker::start(
            format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            plan,
        ))
        .expect("broker");
    let bootstrap = broker.direct_bootstrap.clone();

    let options = GenOptions {
        rate: 0,
        count: Some(records),
        duration: None,
        services: 8,
        seed: 1,
        labels: None,
        start_ms: 1_764_000_000_000,
        topics: TOPICS.map(String::from),
        progress: false,
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

    let harness_cpu_before_bare = cpu_seconds("self");
    let (bare_time, bare_bytes) = bare_consumer(&bootstrap, summary.messages);
    let bare_cpu = cpu_seconds("self") - harness_cpu_before_bare;

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bench.toml");
    let roll_interval =
        std::env::var("CARA_BENCH_ROLL_INTERVAL").unwrap_or_else(|_| "1s".to_owned());
    // `CARA_BENCH_CONFIG` appends TOML (e.g. `[logs]\nenabled = false`) to compare.
    let extra = std::env::var("CARA_BENCH_CONFIG").unwrap_or_default();
    std::fs::write(
        &config,
        format!("[archive]\nroll_interval = \"{roll_interval}\"\n{extra}\n"),
    )
    .expect("config");
    let http = free_port();
    let mut cara = Command::new(env!("CARGO_BIN_EXE_cara"))
        .args([
            "run",
            "--brokers",
            &bootstrap,
            "--group",
            "bench-cara",
            "--http",
            &format!("127.0.0.1:{http}"),
            "--archive",
        ])
        .arg(dir.path().join("archive"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("cara binary");
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
    let durable_time = first.map(|f| f.elapsed()).unwrap_or_default();
    let streaming_time = match (first, all_decoded) {
        (Some(f), Some(d)) => d - f,
        _ => durable_time,
    };
    if std::env::var_os("CARA_BENCH_DUMP_METRICS").is_some() {
        // Diagnostics: cara's own counters at the end (flush latency, files, alerts).
        for line in http_get(http, "/metrics").lines().filter(|l| {
            l.starts_with("cara_flush_seconds")
                || l.starts_with("cara_archive_files_total")
                || l.starts_with("cara_alerts_total")
                || l.starts_with("cara_archive_bytes_total")
        }) {
            println!("{line}");
        }
    }
    let peak = peak_rss_kib(cara.id());
    let cara_cpu = cpu_seconds(&cara.id().to_string());
    let broker_cpu_during_cara = cpu_seconds("self") - harness_cpu_before_cara;
    let _ = Command::new("kill")
        .args(["-TERM", &cara.id().to_string()])
        .status();
    let _ = cara.wait();
    let archive_bytes: u64 = walk_bytes(&dir.path().join("archive"));

    println!("| reader | messages | records | seconds | messages/s | records/s |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let row = |label: &str, seconds: f64| {
        println!(
            "| {label} | {} | {} | {seconds:.2} | {:.0} | {:.0} |",
            summary.messages,
            summary.records(),
            summary.messages as f64 / seconds,
            summary.records() as f64 / seconds
        );
        summary.messages as f64 / seconds
    };
    let bare_rate = row(
        &format!(
            "bare librdkafka consumer (read only, {:.0} MB)",
            bare_bytes as f64 / 1e6
        ),
        bare_time.as_secs_f64(),
    );
    let streaming_rate = row(
        "cara run: first record to all decoded (flushing as it goes)",
        streaming_time.as_secs_f64(),
    );
    let durable_rate = row(
        "cara run: first record to all durable in Parquet",
        durable_time.as_secs_f64(),
    );
    println!(
        "ratio cara / bare: {:.2} streaming, {:.2} to durable (the latter includes up to one roll_interval, {roll_interval} here); cara peak RSS {:.0} MiB; archive {:.1} MB",
        streaming_rate / bare_rate,
        durable_rate / bare_rate,
        peak as f64 / 1024.0,
        archive_bytes as f64 / 1e6
    );
    println!(
        "CPU seconds: bare reader + broker {bare_cpu:.1}; cara {cara_cpu:.1} plus broker and harness {broker_cpu_during_cara:.1}"
    );
    drop(broker);
}

fn walk_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            if e.path().is_dir() {
                walk_bytes(&e.path())
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}
