//! cara's side of the windowed-aggregate peer benchmark against Apache Flink
//! (`benches/peers/flink_tumbling.py`): the same 10 s tumbling-window COUNT and AVG per
//! key over the same CSV of `key,value,ts_ms` events, with a 5 s out-of-orderness
//! watermark, on one thread.
//!
//! `CARA_PEER_EVENTS=events.csv cargo bench -p cara-operators --bench window_peer`
//! (without the variable it generates 5,000,000 events like the Python generator in
//! BENCHMARKS.md and writes them to a temporary file first).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::time::Instant;

use cara_operators::watermark::{WatermarkPolicy, WatermarkTracker};
use cara_operators::window::{WindowSpec, WindowedAggregate};

fn generate(path: &std::path::Path) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("events file"));
    let mut state: u64 = 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut ts: i64 = 1_700_000_000_000;
    for _ in 0..5_000_000 {
        ts += (next() % 5) as i64;
        let t = ts - (next() % 2001) as i64;
        let key = next() % 1000;
        let value = (next() % 100_000) as f64 / 1000.0;
        writeln!(out, "k{key},{value:.3},{t}").expect("write");
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let path = match std::env::var("CARA_PEER_EVENTS") {
        Ok(p) => std::path::PathBuf::from(p),
        Err(_) => {
            let p = std::env::temp_dir().join("cara-window-peer-events.csv");
            generate(&p);
            p
        }
    };
    let started = Instant::now();
    let file = std::fs::File::open(&path).expect("events file");
    let mut keys: HashMap<String, u32> = HashMap::new();
    let mut aggregate = WindowedAggregate::<u32>::new(WindowSpec::Tumbling { size_ms: 10_000 }, 0);
    let mut watermarks = WatermarkTracker::new(WatermarkPolicy {
        out_of_orderness_ms: 5_000,
        idle_timeout_ms: i64::MAX,
    });
    let (mut events, mut late, mut fired, mut rows) = (0u64, 0u64, 0u64, 0u64);
    let mut watermark = i64::MIN;
    let mut line = String::new();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
        let mut fields = line.trim_end().split(',');
        let (Some(key), Some(value), Some(ts)) = (fields.next(), fields.next(), fields.next())
        else {
            line.clear();
            continue;
        };
        let (Ok(value), Ok(ts)) = (value.parse::<f64>(), ts.parse::<i64>()) else {
            line.clear();
            continue;
        };
        let next_id = keys.len() as u32;
        let id = match keys.get(key) {
            Some(id) => *id,
            None => *keys.entry(key.to_owned()).or_insert(next_id),
        };
        events += 1;
        watermarks.observe(0u8, ts, 0);
        if !aggregate.add(&id, ts, value, watermark).accepted() {
            late += 1;
        }
        // Advance the watermark and fire every 1,000 events (Flink emits watermarks
        // periodically, not per record, too).
        if events % 1000 == 0 {
            watermark = watermarks.advance(0);
            for f in aggregate.fire(watermark) {
                fired += 1;
                rows += f.aggregate.count;
                std::hint::black_box(f.aggregate.mean());
            }
        }
        line.clear();
    }
    for f in aggregate.fire(i64::MAX) {
        fired += 1;
        rows += f.aggregate.count;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "cara: {events} events in {elapsed:.2} s, {:.0} events/s on one thread; {fired} windows, {rows} rows aggregated, {late} late",
        events as f64 / elapsed
    );
}
