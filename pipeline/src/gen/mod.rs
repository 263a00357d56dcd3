//! `cara gen`: a seeded generator of realistic metrics, logs and spans for a set of
//! services with a call graph, with injected incidents whose ground truth is written
//! to a labels file (JSON lines: `id kind service start end`, times in epoch ms).
//!
//! Event time starts at `start_ms` and advances with the simulated traffic, so a run
//! with the same seed, start and count produces the same records.

pub mod incidents;
pub mod model;
pub mod otlp;
pub mod resources;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use serde::Serialize;

use crate::delivery::{producer_properties, DeliveryTracker};
use incidents::Incident;
use model::World;

/// The seed `cara run --demo` generates with: one whose eight services all serve
/// traffic (a random call graph can leave a service without callers).
pub const DEMO_SEED: u64 = 4;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Records per second (0: as fast as possible).
    pub rate: u64,
    /// Records per second of event time, when not `rate` (see [`nominal_rate`]).
    pub event_rate: Option<u64>,
    /// Stop after this many records.
    pub count: Option<u64>,
    /// Stop after this much wall time.
    pub duration: Option<Duration>,
    /// Number of services.
    pub services: usize,
    /// Random seed.
    pub seed: u64,
    /// Where to write the incident labels.
    pub labels: Option<PathBuf>,
    /// Event time of the first record.
    pub start_ms: i64,
    /// Topics of metrics, logs and spans.
    pub topics: [String; 3],
    /// How the records are written.
    pub format: otlp::GenFormat,
    /// Show a progress bar.
    pub progress: bool,
    /// Bring the planned incidents forward (keeping their spacing) so the first
    /// begins this long after the start: the demo shows a fault within minutes.
    pub first_fault_after: Option<Duration>,
}

/// What a run produced.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct GenSummary {
    /// Metric points.
    pub metrics: u64,
    /// Log lines.
    pub logs: u64,
    /// Spans.
    pub spans: u64,
    /// Kafka messages.
    pub messages: u64,
    /// Incidents injected (that began before the run ended).
    pub incidents: u64,
    /// Event time of the last record.
    pub last_event_ms: i64,
}

impl GenSummary {
    /// All records.
    pub fn records(&self) -> u64 {
        self.metrics + self.logs + self.spans
    }
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// Producing to Kafka failed.
    #[error("producing to Kafka: {0}; is the broker reachable and do the telemetry topics exist?")]
    Kafka(#[from] KafkaError),
    /// Some messages were not acknowledged.
    #[error("{0} messages were not acknowledged by the broker")]
    Undelivered(u64),
    /// The labels file could not be written.
    #[error("writing labels file {path}: {source}")]
    Labels {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The Kafka producer settings the generator uses on top of `client`.
pub fn producer_config(client: ClientConfig) -> ClientConfig {
    let mut client = producer_properties(client);
    client
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("enable.idempotence", "true");
    client
}

/// Produces records until the count or duration is reached, or `stop` is set.
pub fn run(
    options: &GenOptions,
    client: ClientConfig,
    stop: &AtomicBool,
) -> Result<GenSummary, GenError> {
    let producer: ThreadedProducer<DeliveryTracker> =
        producer_config(client).create_with_context(DeliveryTracker::new("generator"))?;
    let mut world = world(options);
    let plan = planned_incidents(options, &world);

    let bar = progress_bar(options);
    let started = Instant::now();
    let mut summary = GenSummary::default();
    let limit = options.count.unwrap_or(u64::MAX);
    'outer: while summary.records() < limit && !stop.load(Ordering::Relaxed) {
        if options.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        let step = world.step(&plan);
        let metrics = step.metrics.into_iter().map(|(k, v, n)| (0, k, v, n));
        let logs = step.logs.into_iter().map(|(k, v)| (1, k, v, 1));
        let spans = step.spans.into_iter().map(|(k, v)| (2, k, v, 1));
        for (topic, key, value, records) in metrics.chain(logs).chain(spans) {
            if summary.records() >= limit {
                break 'outer;
            }
            let payload = options.format.payload(topic, &value);
            send(&producer, &options.topics[topic], &key, &payload)?;
            summary.messages += 1;
            let counter = match topic {
                0 => &mut summary.metrics,
                1 => &mut summary.logs,
                _ => &mut summary.spans,
            };
            *counter += records as u64;
        }
        summary.last_event_ms = world.now_ms();
        bar.set_position(summary.records());
        if options.rate > 0 {
            let due = Duration::from_secs_f64(summary.records() as f64 / options.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    producer.flush(Duration::from_secs(60))?;
    bar.finish_and_clear();
    let failed = producer.context().failures();
    if failed > 0 {
        return Err(GenError::Undelivered(failed));
    }
    let begun: Vec<&Incident> = plan
        .iter()
        .filter(|i| i.start_ms <= summary.last_event_ms)
        .collect();
    summary.incidents = begun.len() as u64;
    if let Some(path) = &options.labels {
        incidents::write_json_lines(path, &begun).map_err(|source| GenError::Labels {
            path: path.clone(),
            source,
        })?;
    }
    Ok(summary)
}

/// The incidents a run with `options` injects into `world` (built from the same
/// options): over its count or duration of event time, or an hour when it has neither.
pub fn planned_incidents(options: &GenOptions, world: &World) -> Vec<Incident> {
    let expected_span_ms = match (options.count, options.duration) {
        (Some(count), _) => (count as f64 / nominal_rate(options) * 1000.0) as i64,
        (None, Some(d)) => d.as_millis() as i64,
        (None, None) => 3_600_000,
    };
    let mut plan = plan_incidents(world, options.seed, options.start_ms, expected_span_ms);
    if let (Some(after), Some(first)) = (options.first_fault_after, plan.first()) {
        let wanted = options.start_ms + after.as_millis() as i64;
        let earlier_by = (first.start_ms - wanted).max(0);
        for incident in &mut plan {
            incident.start_ms -= earlier_by;
            incident.end_ms -= earlier_by;
        }
    }
    plan
}

/// The records per second event time advances by: `event_rate`, else `rate`, or
/// 10,000 when unpaced.
pub fn nominal_rate(options: &GenOptions) -> f64 {
    match (options.event_rate, options.rate) {
        (Some(event_rate), _) => event_rate as f64,
        (None, 0) => 10_000.0,
        (None, rate) => rate as f64,
    }
}

/// The world a run with `options` simulates.
pub fn world(options: &GenOptions) -> World {
    World::new(
        options.services,
        options.seed,
        options.start_ms,
        nominal_rate(options),
    )
}

/// The incidents a generator run with `seed` injects over `span_ms` from `start_ms`
/// (the same plan `run` writes to the labels file), each with the callers it shows on.
pub fn plan_incidents(world: &World, seed: u64, start_ms: i64, span_ms: i64) -> Vec<Incident> {
    let targets: Vec<(String, bool)> = world
        .services
        .iter()
        .zip(world.served())
        .map(|(s, served)| (s.name.clone(), served))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut plan = incidents::schedule(&mut rng, &targets, start_ms, span_ms);
    let callers = world.callers();
    for incident in plan.iter_mut().filter(|i| i.kind.reaches_callers()) {
        if let Some(index) = targets.iter().position(|(n, _)| *n == incident.service) {
            incident.affected = callers[index]
                .iter()
                .map(|&c| targets[c].0.clone())
                .collect();
        }
    }
    plan
}

fn send(
    producer: &ThreadedProducer<DeliveryTracker>,
    topic: &str,
    key: &str,
    payload: &[u8],
) -> Result<(), KafkaError> {
    let mut record = BaseRecord::to(topic).key(key).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                std::thread::sleep(Duration::from_millis(5));
                record = back;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

fn progress_bar(options: &GenOptions) -> indicatif::ProgressBar {
    if !options.progress {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match options.count {
        Some(count) => indicatif::ProgressBar::new(count),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} {pos}/{len} records [{elapsed_precise}] {per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(first_fault_after: Option<Duration>) -> GenOptions {
        GenOptions {
            rate: 2_000,
            event_rate: None,
            count: None,
            duration: None,
            services: 8,
            seed: DEMO_SEED,
            labels: None,
            start_ms: 1_764_000_000_000,
            topics: ["m", "l", "s"].map(String::from),
            format: otlp::GenFormat::FlatJson,
            progress: false,
            first_fault_after,
        }
    }

    /// The demo's faults come forward so the first begins after 150 s; their kinds,
    /// services, lengths and spacing stay those of the plan.
    #[test]
    fn the_first_fault_can_be_brought_forward_keeping_the_plan() {
        let planned = |o: &GenOptions| planned_incidents(o, &world(o));
        let plain = planned(&options(None));
        let early = planned(&options(Some(Duration::from_secs(150))));
        assert!(plain.len() >= 5, "an hour of faults: {}", plain.len());
        let start = options(None).start_ms;
        assert!(
            plain[0].start_ms - start > 300_000,
            "{}",
            plain[0].start_ms - start
        );
        assert_eq!(early[0].start_ms - start, 150_000);
        let shift = plain[0].start_ms - early[0].start_ms;
        for (p, e) in plain.iter().zip(&early) {
            assert_eq!(
                (&p.kind, &p.service, &p.affected),
                (&e.kind, &e.service, &e.affected)
            );
            assert_eq!(
                (p.start_ms - shift, p.end_ms - shift),
                (e.start_ms, e.end_ms)
            );
        }
        // Never pushed later.
        let late = planned(&options(Some(Duration::from_secs(3_000))));
        assert_eq!(late[0].start_ms, plain[0].start_ms);
    }
}
