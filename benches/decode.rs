//! Decode throughput per signal, in events per second on one core: realistic messages
//! from the generator's model, decoded into Arrow batches of 8192 rows.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use cara_pipeline::decode::{DecodeLimits, Decoder, Signal, SourcePosition};
use cara_pipeline::gen::model::World;

/// The allocator the `cara` binary runs with, so the bench measures what production does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// (signal, messages, records in them) from a seeded simulation.
fn corpus() -> Vec<(Signal, Vec<Vec<u8>>, u64)> {
    let mut world = World::new(8, 7, 1_764_000_000_000, 500.0);
    let (mut metrics, mut logs, mut spans) = (Vec::new(), Vec::new(), Vec::new());
    let mut metric_points = 0u64;
    while metric_points < 50_000 || logs.len() < 50_000 || spans.len() < 50_000 {
        let out = world.step(&[]);
        for (_, points, n) in out.metrics {
            // Metrics travel one point per message, the common case for producers.
            if let serde_json::Value::Array(points) = points {
                for p in points {
                    metrics.push(p.to_string().into_bytes());
                }
            }
            metric_points += n as u64;
            if metric_points >= 50_000 {
                break;
            }
        }
        logs.extend(
            out.logs
                .into_iter()
                .map(|(_, v)| v.to_string().into_bytes()),
        );
        spans.extend(
            out.spans
                .into_iter()
                .map(|(_, v)| v.to_string().into_bytes()),
        );
    }
    let n = |v: &Vec<Vec<u8>>| v.len() as u64;
    vec![
        (Signal::Metrics, metrics.clone(), n(&metrics)),
        (Signal::Logs, logs.clone(), n(&logs)),
        (Signal::Spans, spans.clone(), n(&spans)),
    ]
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.sample_size(20);
    for (signal, messages, records) in corpus() {
        let bytes: usize = messages.iter().map(Vec::len).sum();
        eprintln!(
            "{}: {} messages, {:.0} bytes/message",
            signal.name(),
            messages.len(),
            bytes as f64 / messages.len() as f64
        );
        group.throughput(Throughput::Elements(records));
        group.bench_with_input(
            BenchmarkId::from_parameter(signal.name()),
            &messages,
            |b, messages| {
                let mut decoder = Decoder::new(
                    signal,
                    DecodeLimits {
                        max_future_skew_ms: i64::MAX / 4,
                        ..DecodeLimits::default()
                    },
                );
                b.iter(|| {
                    for (offset, message) in messages.iter().enumerate() {
                        let pos = SourcePosition {
                            topic: "bench",
                            partition: 0,
                            offset: offset as i64,
                            kafka_ts_ms: Some(1_764_000_000_000),
                        };
                        // Every message is valid; an error would show as missing rows below.
                        let _ = decoder.decode(Some(message), &pos);
                        if decoder.len() >= 8192 {
                            std::hint::black_box(decoder.finish());
                        }
                    }
                    std::hint::black_box(decoder.finish())
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
