//! Spans through RED plus SLO, in spans per second on one core, and the memory the
//! state takes per SLO and per service edge.
//!
//! `cargo bench -p cara-operators --bench spans`
//! - `first_stage`: what a span partition runs on each flushed batch: the SLO
//!   counter (two SLOs) and the trace counter (RED cells, the parent/child join),
//!   200,000 spans of 20,000 traces (10 spans each over 10 services and 5
//!   operations per service) across 10 minutes;
//! - `second_stage`: the combiners over the exchange records the first stage sends
//!   for those spans from four partitions, in spans of input per second.
//!
//! Memory is printed after the run: an SLO tracker's buckets (30-day period), a
//! stage-2 edge cell, and the first stage's join bound.

use std::hint::black_box;

use arrow::array::RecordBatch;
use cara_operators::exchange::{ExchangeRecord, RecordRows};
use cara_operators::operator::{Emitted, Operator, PartitionContext, Stacked};
use cara_operators::slo::combine::SloCombiner;
use cara_operators::slo::partial::SloPartial;
use cara_operators::slo::spans::{Sli, SpanSlis, SpanSlo, SpanSloCounter};
use cara_operators::slo::tables::PartialRows;
use cara_operators::slo::{default_burn_rules, SloSpec, SloTracker};
use cara_operators::span_rows::{span_batch, SpanRecord};
use cara_operators::traces::combine::{TraceCombiner, TraceScoring};
use cara_operators::traces::counter::{TraceCounter, TraceSettings};
use cara_operators::traces::partial::TracePartial;
use cara_operators::{alert::AlertRule, anomaly::operator::AnomalyLimits, anomaly::ScorerConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

// As in the `cara` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TRACES: usize = 20_000;
const SPANS_PER_TRACE: usize = 10;
const START_MS: i64 = 1_700_000_040_000;
const SERVICES: [&str; 10] = [
    "frontend",
    "checkout",
    "payments",
    "cart",
    "catalog",
    "search",
    "auth",
    "shipping",
    "inventory",
    "email",
];
const OPERATIONS: [&str; 5] = ["GET /a", "GET /b", "POST /c", "PUT /d", "DELETE /e"];

fn noise(i: u64) -> u64 {
    i.wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        >> 33
}

/// Spans of `traces`, one partition's share: a chain of ten services per trace.
fn spans(traces: std::ops::Range<usize>) -> RecordBatch {
    let ids: Vec<String> = (0..TRACES).map(|t| format!("{t:016x}")).collect();
    let span_ids: Vec<String> = (0..SPANS_PER_TRACE).map(|s| format!("s{s}")).collect();
    let mut records = Vec::new();
    for t in traces {
        let start = START_MS + (t as i64 * 600_000) / TRACES as i64;
        for s in 0..SPANS_PER_TRACE {
            let n = noise((t * SPANS_PER_TRACE + s) as u64);
            records.push(SpanRecord {
                trace_id: &ids[t],
                span_id: &span_ids[s],
                parent_span_id: (s > 0).then(|| span_ids[s - 1].as_str()),
                service: SERVICES[s],
                name: OPERATIONS[(n % 5) as usize],
                start_ms: start + s as i64,
                duration_ms: 1.0 + (n % 5_000) as f64 / 10.0,
                ok: !n.is_multiple_of(100),
            });
        }
    }
    span_batch(&records, "telemetry.spans", 0).expect("spans batch matches the schema")
}

fn slos() -> Vec<SpanSlo> {
    let spec = |name: &str| SloSpec {
        name: name.into(),
        objective: 0.999,
        period_ms: 30 * 24 * 3_600_000,
        out_of_orderness_ms: 30_000,
        rules: default_burn_rules(),
        service: Some("checkout".into()),
    };
    vec![
        SpanSlo {
            spec: spec("checkout-availability"),
            service: "checkout".into(),
            operation: None,
            sli: Sli::Availability,
        },
        SpanSlo {
            spec: spec("checkout-latency"),
            service: "checkout".into(),
            operation: None,
            sli: Sli::Latency {
                threshold_ms: 300.0,
            },
        },
    ]
}

fn first_stage() -> Stacked {
    Stacked::new(vec![
        Box::new(SpanSloCounter::new(SpanSlis(slos()), 30_000)),
        Box::new(TraceCounter::new(TraceSettings::default())),
    ])
}

fn scoring() -> TraceScoring {
    TraceScoring {
        scorer: ScorerConfig::default(),
        limits: AnomalyLimits::default(),
        rules: vec![AlertRule::default_anomaly()],
    }
}

/// The exchange records of four partitions, as the two combiners read them.
fn exchange() -> (RecordBatch, RecordBatch) {
    let mut slo_rows = PartialRows::default();
    let mut trace_rows = RecordRows::new(cara_operators::schema::Table::TracePartials);
    let quarter = TRACES / 4;
    let mut offset = 0;
    for p in 0..4 {
        let context = PartitionContext {
            topic: "telemetry.spans".into(),
            partition: p as i32,
        };
        let mut stage = first_stage();
        let mut out = Emitted::default();
        let batch = spans(p * quarter..(p + 1) * quarter);
        stage.process(&context, &batch, &mut out).expect("spans");
        stage
            .advance_watermark(&context, START_MS + 11 * 60_000, &mut out)
            .expect("raise");
        for m in &out.messages {
            if let Ok(record) = serde_json::from_slice::<SloPartial>(&m.payload) {
                slo_rows.append(&record, "cara.internal.slo", 0, offset);
            } else {
                let json = std::str::from_utf8(&m.payload).expect("utf-8");
                let record: TracePartial = serde_json::from_str(json).expect("trace record");
                trace_rows.append(&record.row(), json, "cara.internal.traces", 0, offset);
            }
            offset += 1;
        }
    }
    (slo_rows.finish(), trace_rows.finish())
}

fn bench(c: &mut Criterion) {
    let total = (TRACES * SPANS_PER_TRACE) as u64;
    let batch = spans(0..TRACES);
    let context = PartitionContext {
        topic: "telemetry.spans".into(),
        partition: 0,
    };
    let mut group = c.benchmark_group("spans");
    group.sample_size(10);
    group.throughput(Throughput::Elements(total));
    group.bench_function("first_stage", |b| {
        b.iter_batched(
            first_stage,
            |mut stage| {
                let mut out = Emitted::default();
                stage.process(&context, &batch, &mut out).expect("spans");
                black_box(out.messages.len())
            },
            criterion::BatchSize::LargeInput,
        )
    });
    let (slo_rows, trace_rows) = exchange();
    let exchange_context = PartitionContext {
        topic: "cara.internal".into(),
        partition: 0,
    };
    let specs: Vec<(SloSpec, usize)> = slos().into_iter().map(|s| (s.spec, 4)).collect();
    group.bench_function("second_stage", |b| {
        b.iter_batched(
            || {
                (
                    SloCombiner::new(specs.clone()),
                    TraceCombiner::new(4, scoring()),
                )
            },
            |(mut slo, mut traces)| {
                let mut out = Emitted::default();
                slo.process(&exchange_context, &slo_rows, &mut out)
                    .expect("slo");
                traces
                    .process(&exchange_context, &trace_rows, &mut out)
                    .expect("traces");
                black_box(out.tables.len())
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();

    // Memory.
    let tracker = SloTracker::new(slos()[0].spec.clone());
    eprintln!(
        "SLO state: {} buckets (30-day period) ≈ {} KiB per SLO",
        tracker.buckets(),
        tracker.buckets() * 24 / 1024
    );
    let mut stage = first_stage();
    let mut out = Emitted::default();
    stage.process(&context, &batch, &mut out).expect("spans");
    let snapshot = stage.snapshot().expect("snapshot");
    eprintln!(
        "first stage after {total} spans: {} exchange records, snapshot {} KiB (join bound {} spans)",
        out.messages.len(),
        snapshot.len() / 1024,
        TraceSettings::default().max_pending_spans
    );
    let edges: Vec<(usize, usize)> = out
        .messages
        .iter()
        .filter_map(|m| serde_json::from_slice::<TracePartial>(&m.payload).ok())
        .flat_map(|r| r.edges)
        .map(|e| {
            (
                e.cell.buckets(),
                serde_json::to_vec(&e.cell).map_or(0, |v| v.len()),
            )
        })
        .collect();
    if !edges.is_empty() {
        let buckets = edges.iter().map(|e| e.0).sum::<usize>() / edges.len();
        let bytes = edges.iter().map(|e| e.1).sum::<usize>() / edges.len();
        eprintln!(
            "edge cell per minute: {buckets} histogram buckets on average ≈ {} bytes in memory, {bytes} bytes on the exchange topic",
            buckets * 40 + 64
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
