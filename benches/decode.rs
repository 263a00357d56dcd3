//! Decode throughput per signal and wire format, in records (metric points, log
//! lines, spans) per second on one core: realistic messages from the generator's
//! model, as flat JSON and as OTLP (protobuf and JSON), decoded into Arrow batches of
//! 8192 rows.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use cara_pipeline::decode::{DecodeLimits, Decoder, Signal, SourcePosition, WireFormat};
use cara_pipeline::gen::model::World;
use cara_pipeline::gen::otlp::GenFormat;

/// The allocator the `cara` binary runs with, so the bench measures what production does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One corpus: a name, the signal and format, the messages, and the records in them.
struct Case {
    name: String,
    signal: Signal,
    format: WireFormat,
    messages: Vec<Vec<u8>>,
    records: u64,
}

/// How many generator messages one batched OTLP request holds (the Collector's batch
/// processor sends thousands of records per request; concatenated protobuf requests
/// are one request with their resources concatenated).
const OTLP_BATCH: usize = 64;

/// Every signal from a seeded simulation, as flat JSON (metrics one point per
/// message, the common case for producers), and as OTLP protobuf and JSON requests,
/// one per generator message (metrics: a service's five points) and batched.
fn corpus() -> Vec<Case> {
    let mut world = World::new(8, 7, 1_764_000_000_000, 500.0);
    // (signal index, flat message, records) per generator message.
    let mut generated: [Vec<(serde_json::Value, u64)>; 3] = Default::default();
    let enough = |g: &[Vec<(serde_json::Value, u64)>; 3]| {
        g.iter()
            .all(|v| v.iter().map(|(_, n)| n).sum::<u64>() >= 50_000)
    };
    while !enough(&generated) {
        let out = world.step(&[]);
        generated[0].extend(out.metrics.into_iter().map(|(_, v, n)| (v, n as u64)));
        generated[1].extend(out.logs.into_iter().map(|(_, v)| (v, 1)));
        generated[2].extend(out.spans.into_iter().map(|(_, v)| (v, 1)));
    }
    let signals = [Signal::Metrics, Signal::Logs, Signal::Spans];
    let mut cases = Vec::new();
    for (index, messages) in generated.iter().enumerate() {
        let signal = signals[index];
        let records: u64 = messages.iter().map(|(_, n)| n).sum();
        let flat: Vec<Vec<u8>> = messages
            .iter()
            .flat_map(|(v, _)| match v {
                serde_json::Value::Array(points) => points.clone(),
                one => vec![one.clone()],
            })
            .map(|v| v.to_string().into_bytes())
            .collect();
        let encoded = |format: GenFormat| -> Vec<Vec<u8>> {
            messages
                .iter()
                .map(|(v, _)| format.payload(index, v))
                .collect()
        };
        let proto = encoded(GenFormat::OtlpProto);
        let batched: Vec<Vec<u8>> = proto.chunks(OTLP_BATCH).map(|c| c.concat()).collect();
        for (format_name, format, messages) in [
            ("flat_json", WireFormat::FlatJson, flat),
            ("otlp_proto", WireFormat::Otlp, proto),
            ("otlp_proto_batched", WireFormat::Otlp, batched),
            ("otlp_json", WireFormat::Otlp, encoded(GenFormat::OtlpJson)),
        ] {
            cases.push(Case {
                name: format!("{}/{format_name}", signal.name()),
                signal,
                format,
                messages,
                records,
            });
        }
    }
    cases
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.sample_size(20);
    for case in corpus() {
        let bytes: usize = case.messages.iter().map(Vec::len).sum();
        eprintln!(
            "{}: {} messages, {:.0} bytes/message, {} records",
            case.name,
            case.messages.len(),
            bytes as f64 / case.messages.len() as f64,
            case.records
        );
        let limits = DecodeLimits {
            max_future_skew_ms: i64::MAX / 4,
            ..DecodeLimits::default()
        };
        // Every message must decode: a refused one would flatter the figure.
        let mut check = Decoder::with_format(case.signal, case.format, limits);
        let decoded: usize = case
            .messages
            .iter()
            .enumerate()
            .map(|(offset, message)| {
                check
                    .decode(Some(message), &position(offset))
                    .expect("every bench message decodes")
            })
            .sum();
        assert!(
            decoded as u64 >= case.records,
            "{}: {decoded} rows",
            case.name
        );
        group.throughput(Throughput::Elements(case.records));
        group.bench_with_input(
            BenchmarkId::from_parameter(&case.name),
            &case.messages,
            |b, messages| {
                let mut decoder = Decoder::with_format(case.signal, case.format, limits);
                b.iter(|| decode_all(&mut decoder, messages));
            },
        );
    }
    group.finish();
}

/// Decodes a whole corpus into batches of 8192 rows, as production does.
fn decode_all(decoder: &mut Decoder, messages: &[Vec<u8>]) {
    for (offset, message) in messages.iter().enumerate() {
        let _ = decoder.decode(Some(message), &position(offset));
        if decoder.len() >= 8192 {
            std::hint::black_box(decoder.finish());
        }
    }
    std::hint::black_box(decoder.finish());
}

/// With `CARA_BENCH_PAIRED=<rounds>`: each round decodes every form of a signal
/// once, one after the other, and the ratio to flat JSON is taken within the round;
/// the medians over rounds are printed. Pairs measured seconds apart see the same
/// machine, which criterion's one-case-after-another figures do not on a VM whose
/// speed drifts by a third within minutes.
fn paired(_: &mut Criterion) {
    let Some(rounds) = std::env::var("CARA_BENCH_PAIRED")
        .ok()
        .and_then(|r| r.parse::<usize>().ok())
    else {
        return;
    };
    let limits = DecodeLimits {
        max_future_skew_ms: i64::MAX / 4,
        ..DecodeLimits::default()
    };
    let cases = corpus();
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!("paired rounds: {rounds}; per form: median records/s, median ratio to flat JSON in the same round");
    for signal in [Signal::Metrics, Signal::Logs, Signal::Spans] {
        let forms: Vec<&Case> = cases.iter().filter(|c| c.signal == signal).collect();
        let mut seconds = vec![Vec::new(); forms.len()];
        for _ in 0..rounds {
            for (i, case) in forms.iter().enumerate() {
                let mut decoder = Decoder::with_format(case.signal, case.format, limits);
                let started = std::time::Instant::now();
                decode_all(&mut decoder, &case.messages);
                seconds[i].push(started.elapsed().as_secs_f64());
            }
        }
        for (i, case) in forms.iter().enumerate() {
            let rate = median(seconds[i].iter().map(|s| case.records as f64 / s).collect());
            let ratio = median(
                seconds[0]
                    .iter()
                    .zip(&seconds[i])
                    .map(|(flat, this)| flat / this)
                    .collect(),
            );
            println!(
                "{:<28} {:>6.2} M/s {:>6.2}x flat",
                case.name,
                rate / 1e6,
                ratio
            );
        }
    }
}

fn position(offset: usize) -> SourcePosition<'static> {
    SourcePosition {
        topic: "bench",
        partition: 0,
        offset: offset as i64,
        kafka_ts_ms: Some(1_764_000_000_000),
    }
}

criterion_group!(benches, decode, paired);
criterion_main!(benches);
