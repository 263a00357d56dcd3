//! Anomaly scoring throughput, in points per second on one core.
//!
//! `cargo bench -p cara-operators --bench anomaly`
//! - `scorer`: the per-series detectors alone (state lookup excluded);
//! - `operator`: the keyed operator over a metrics batch of 1,000 series (series key
//!   building, state lookup, counter handling and scoring), as the runtime calls it.

use arrow::array::RecordBatch;
use cara_operators::anomaly::operator::{AnomalyLimits, AnomalyOperator};
use cara_operators::anomaly::{ScorerConfig, SeriesScorer};
use cara_operators::series::{gauge_batch, DerivedPoint};
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
    let points: Vec<DerivedPoint> = (0..POINTS)
        .map(|i| {
            let series = i % SERIES;
            DerivedPoint {
                ts_ms: 1_700_000_000_000 + (i / SERIES) as i64 * 10_000,
                name: "http_request_duration_seconds".into(),
                labels: vec![
                    ("service".into(), format!("svc-{}", series % 50)),
                    ("instance".into(), format!("i-{series}")),
                ],
                value: value(i),
                source_row: i as i64,
            }
        })
        .collect();
    gauge_batch(&points, "telemetry.metrics", 0).expect("metrics batch matches the schema")
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
