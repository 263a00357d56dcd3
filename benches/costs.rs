//! Cost attribution throughput, in usage points per second on one core.
//!
//! `cargo bench -p cara-operators --bench costs`
//! - `meter`: the first stage over a metrics batch of 1,000,000 points of 1,000
//!   usage series (CPU counters and memory gauges of 20 teams, a point every 10 s),
//!   as the runtime calls it per flush: series key, owner label, metering into
//!   windows, the windows' records;
//! - `bill`: the second stage billing the windows those records carry.

use std::sync::Arc;

use arrow::array::RecordBatch;
use cara_operators::cost::bill::BillSettings;
use cara_operators::cost::partial::CostPartial;
use cara_operators::cost::stage::{CostCombiner, CostMeter, CostSources};
use cara_operators::cost::{CostSettings, Prices, SpreadRule, StaticCapacity, UsageMetrics};
use cara_operators::exchange::{ExchangeRecord, RecordRows};
use cara_operators::operator::{Emitted, Operator, PartitionContext};
use cara_operators::schema::Table;
use cara_operators::series::{gauge_batch, DerivedPoint};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const POINTS: usize = 1_000_000;
const SERIES: usize = 1_000;
const START_MS: i64 = 1_699_999_200_000;

fn settings() -> Arc<CostSettings> {
    Arc::new(CostSettings {
        window_ms: 3_600_000,
        out_of_orderness_ms: 60_000,
        currency: "USD".into(),
        max_gap_ms: 300_000,
        owner_label: "team".into(),
        shared_owners: vec!["team-0".into()],
        service_owners: Default::default(),
        metrics: UsageMetrics::default(),
        capacity: StaticCapacity {
            cpu_cores: Some(1_000.0),
            ..StaticCapacity::default()
        },
        bill: BillSettings {
            prices: Prices::default(),
            shared: SpreadRule::Proportional,
            idle: SpreadRule::Proportional,
        },
        budgets: Default::default(),
        scorer: Default::default(),
        limits: Default::default(),
        policy: Default::default(),
    })
}

/// Point `i`: series `i % SERIES` (even: CPU counter, odd: memory gauge).
fn usage_batch() -> RecordBatch {
    let points: Vec<DerivedPoint> = (0..POINTS)
        .map(|i| {
            let series = i % SERIES;
            let step = (i / SERIES) as i64;
            let (name, value) = match series % 2 {
                0 => ("container_cpu_usage_seconds_total", step as f64 * 2.5),
                _ => (
                    "container_memory_working_set_bytes",
                    1e9 + (i % 7) as f64 * 1e6,
                ),
            };
            DerivedPoint {
                ts_ms: START_MS + step * 10_000,
                name: name.into(),
                labels: vec![
                    ("team".into(), format!("team-{}", series % 20)),
                    ("pod".into(), format!("pod-{}", series / 2)),
                ],
                value,
                source_row: i as i64,
            }
        })
        .collect();
    gauge_batch(&points, "telemetry.metrics", 0).expect("metrics batch matches the schema")
}

fn context() -> PartitionContext {
    PartitionContext {
        topic: "telemetry.metrics".into(),
        partition: 0,
    }
}

fn bench(c: &mut Criterion) {
    let batch = usage_batch();
    let mut group = c.benchmark_group("costs");
    group.sample_size(10);
    group.throughput(Throughput::Elements(POINTS as u64));
    group.bench_function("meter", |b| {
        b.iter_batched(
            || CostMeter::new(settings()),
            |mut meter| {
                let mut out = Emitted::default();
                meter
                    .process(&context(), &batch, &mut out)
                    .expect("metrics batch");
                out.messages.len()
            },
            criterion::BatchSize::LargeInput,
        )
    });
    let mut meter = CostMeter::new(settings());
    let mut out = Emitted::default();
    meter
        .process(&context(), &batch, &mut out)
        .expect("metrics batch");
    let mut rows = RecordRows::new(Table::CostPartials);
    for (offset, message) in out.messages.iter().enumerate() {
        let partial: CostPartial = serde_json::from_slice(&message.payload).expect("a partial");
        let json = String::from_utf8_lossy(&message.payload);
        rows.append(
            &partial.row(),
            &json,
            "cara.internal.costs",
            0,
            offset as i64,
        );
    }
    let exchanged = rows.finish();
    let windows = exchanged.num_rows();
    group.throughput(Throughput::Elements(windows as u64));
    group.bench_function("bill", |b| {
        b.iter_batched(
            || {
                let sources = CostSources {
                    metrics: 1,
                    ..CostSources::default()
                };
                CostCombiner::new(sources, settings())
            },
            |mut combiner| {
                let mut out = Emitted::default();
                combiner
                    .process(&context(), &exchanged, &mut out)
                    .expect("exchange rows");
                out.tables.len()
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
    eprintln!(
        "{windows} window records; state of {} series: {} bytes encoded, {} per series",
        meter.series(),
        meter.snapshot().map_or(0, |s| s.len()),
        meter.snapshot().map_or(0, |s| s.len()) / meter.series().max(1)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
