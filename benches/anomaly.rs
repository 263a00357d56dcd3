//! Anomaly scoring throughput, in points per second on one core.
//!
//! `cargo bench -p cara-operators --bench anomaly`
//! - `scorer`: the per-series detectors alone (state lookup excluded);
//! - `operator`: the keyed operator over a metrics batch of 1,000 series (series key
//!   building, state lookup, counter handling and scoring), as the runtime calls it.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Builder, Int32Builder, Int64Builder, MapBuilder, RecordBatch, StringBuilder,
    TimestampMillisecondBuilder,
};
use cara_operators::anomaly::operator::{AnomalyLimits, AnomalyOperator};
use cara_operators::anomaly::{ScorerConfig, SeriesScorer};
use cara_operators::schema::Table;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const POINTS: usize = 1_000_000;
const SERIES: usize = 1_000;

fn value(i: usize) -> f64 {
    let x = (i as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    50.0 + ((x >> 11) as f64 / (1u64 << 53) as f64) * 4.0
}

fn metrics_batch() -> RecordBatch {
    let schema = Table::Metrics.schema();
    let mut ts = TimestampMillisecondBuilder::new().with_timezone("UTC");
    let mut name = StringBuilder::new();
    let mut val = Float64Builder::new();
    let mut kind = StringBuilder::new();
    let mut service = StringBuilder::new();
    let mut labels = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    let mut extra = StringBuilder::new();
    let mut topic = StringBuilder::new();
    let mut partition = Int32Builder::new();
    let mut offset = Int64Builder::new();
    let mut index = Int32Builder::new();
    for i in 0..POINTS {
        let series = i % SERIES;
        ts.append_value(1_700_000_000_000 + (i / SERIES) as i64 * 10_000);
        name.append_value("http_request_duration_seconds");
        val.append_value(value(i));
        kind.append_value("gauge");
        service.append_value(format!("svc-{}", series % 50));
        labels.keys().append_value("service");
        labels.values().append_value(format!("svc-{}", series % 50));
        labels.keys().append_value("instance");
        labels.values().append_value(format!("i-{series}"));
        labels.append(true).expect("labels");
        extra.append_null();
        topic.append_value("telemetry.metrics");
        partition.append_value(0);
        offset.append_value(i as i64);
        index.append_value(0);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ts.finish()),
        Arc::new(name.finish()),
        Arc::new(val.finish()),
        Arc::new(kind.finish()),
        Arc::new(service.finish()),
        Arc::new(labels.finish()),
        Arc::new(extra.finish()),
        Arc::new(topic.finish()),
        Arc::new(partition.finish()),
        Arc::new(offset.finish()),
        Arc::new(index.finish()),
    ];
    RecordBatch::try_new(schema, columns).expect("metrics batch matches the schema")
}

fn bench(c: &mut Criterion) {
    let config = ScorerConfig::default();
    let mut group = c.benchmark_group("anomaly");
    group.sample_size(10);
    group.throughput(Throughput::Elements(POINTS as u64));
    group.bench_function("scorer", |b| {
        b.iter_batched(
            || vec![SeriesScorer::default(); SERIES],
            |mut scorers| {
                let mut sum = 0.0;
                for i in 0..POINTS {
                    let ts = 1_700_000_000_000 + (i / SERIES) as i64 * 10_000;
                    sum += scorers[i % SERIES].score(&config, ts, value(i)).score;
                }
                sum
            },
            criterion::BatchSize::LargeInput,
        )
    });
    let batch = metrics_batch();
    group.bench_function("operator", |b| {
        b.iter_batched(
            || {
                (
                    AnomalyOperator::new(config, AnomalyLimits::default()),
                    Vec::with_capacity(POINTS),
                )
            },
            |(mut operator, mut out)| {
                operator.process(&batch, &mut out).expect("metrics batch");
                out.len()
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
    let state = state_bytes(&SeriesScorer::default());
    eprintln!("state per series: {state} bytes in memory");
}

/// In-memory size of one series' scorer: the struct plus its seasonal buckets.
fn state_bytes(scorer: &SeriesScorer) -> usize {
    std::mem::size_of_val(scorer) + scorer.heap_bytes()
}

criterion_group!(benches, bench);
criterion_main!(benches);
