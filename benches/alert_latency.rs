//! Watermark-to-alert latency of the metric operators, in process.
//!
//! `cargo bench -p cara-operators --bench alert_latency`
//!
//! 2,000 gauge series, one point each per 10 s of event time, arrive in batches of
//! one event-time step (2,000 rows) as a shard hands a partition's rows to
//! `MetricAlerting` (scoring, alert rules, tumbling windows). Twenty series get a
//! spike at random steps after warm-up. A point is behind the watermark as soon as
//! its batch is handed over (the watermark is the largest event time so far minus
//! the out-of-orderness bound, advanced per row); its alert exists when `process`
//! returns. So the latency of an alert is the time of the `process` call of the batch
//! that raised it. Recorded with hdrhistogram (3 significant digits): every batch,
//! and the batches that raised alerts.
//!
//! In the running pipeline a batch is the rows of one flush, so an alert also waits
//! for its flush: at most `archive.roll_interval` (10 s by default) or until
//! `archive.roll_bytes` are buffered.

use std::time::Instant;

use cara_operators::alert::{AlertRule, AlertStatus};
use cara_operators::anomaly::alerting::{MetricAlerting, WindowSettings};
use cara_operators::anomaly::operator::AnomalyLimits;
use cara_operators::anomaly::ScorerConfig;
use cara_operators::series::{gauge_batch, DerivedPoint};
use hdrhistogram::Histogram;

const SERIES: usize = 2_000;
const STEPS: usize = 1_500;
const STEP_MS: i64 = 10_000;

/// Uniform noise in [0, 1): splitmix64 of the index (independent from point to point).
fn noise(i: u64) -> f64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // Spikes: series s spikes for 3 steps from step 400 + 53·k.
    let spiky: Vec<(usize, usize)> = (0..20).map(|k| (k * 97 % SERIES, 400 + 53 * k)).collect();
    let batches: Vec<_> = (0..STEPS)
        .map(|step| {
            let points: Vec<DerivedPoint> = (0..SERIES)
                .map(|s| {
                    let spike = spiky
                        .iter()
                        .any(|(series, at)| *series == s && (*at..at + 3).contains(&step));
                    DerivedPoint {
                        ts_ms: 1_700_000_000_000 + step as i64 * STEP_MS,
                        name: "request_latency_ms".into(),
                        labels: vec![
                            ("service".into(), format!("svc-{}", s % 40)),
                            ("instance".into(), format!("i-{s}")),
                        ],
                        value: 100.0
                            + 5.0 * noise((step * SERIES + s) as u64)
                            + if spike { 400.0 } else { 0.0 },
                        source_row: (step * SERIES + s) as i64,
                    }
                })
                .collect();
            gauge_batch(&points, "telemetry.metrics", 0).expect("batch")
        })
        .collect();

    let mut operator = MetricAlerting::new(
        ScorerConfig::default(),
        AnomalyLimits::default(),
        vec![AlertRule::default_anomaly()],
    )
    .with_windows(Some(WindowSettings {
        spec: cara_operators::window::WindowSpec::Tumbling { size_ms: 60_000 },
        out_of_orderness_ms: 30_000,
        allowed_lateness_ms: 0,
    }));
    let mut every = Histogram::<u64>::new(3).expect("histogram");
    let mut alerting = Histogram::<u64>::new(3).expect("histogram");
    let (mut alerts, mut windows, mut fired) = (Vec::new(), Vec::new(), 0usize);
    let (mut spike_firings, mut noise_firings) = (0usize, 0usize);
    let spiky_instances: Vec<String> = spiky.iter().map(|(s, _)| format!("i-{s}")).collect();
    let started = Instant::now();
    for batch in &batches {
        alerts.clear();
        windows.clear();
        let t = Instant::now();
        operator
            .score_with_windows(batch, &mut alerts, &mut windows)
            .expect("metrics batch");
        let micros = t.elapsed().as_micros() as u64;
        every.record(micros).expect("in range");
        if !alerts.is_empty() {
            alerting.record(micros).expect("in range");
            fired += alerts.len();
        }
        for alert in alerts.iter().filter(|a| a.status == AlertStatus::Firing) {
            let spiky = alert
                .labels
                .iter()
                .any(|(k, v)| k == "instance" && spiky_instances.contains(v));
            if spiky {
                spike_firings += 1;
            } else {
                noise_firings += 1;
                if std::env::var_os("CARA_DEBUG_DETECTOR").is_some() {
                    eprintln!("{:?} {}", alert.evidence.detector, alert.at);
                }
            }
        }
    }
    let total = started.elapsed();
    let points = SERIES * STEPS;
    println!(
        "{points} points in {STEPS} batches of {SERIES} rows: {:.2?} ({:.0} points/s); {fired} alert transitions in {} batches",
        total,
        points as f64 / total.as_secs_f64(),
        alerting.len()
    );
    println!(
        "firing: {spike_firings} in the 20 spiked series, {noise_firings} in the {} noise-only series ({:.2} per 1,000 series-hours)",
        SERIES - 20,
        noise_firings as f64 / ((SERIES - 20) as f64 * STEPS as f64 * STEP_MS as f64 / 3.6e6) * 1000.0
    );
    for (name, h) in [
        ("every batch", &every),
        ("batches raising alerts", &alerting),
    ] {
        println!(
            "{name}: p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max()
        );
    }
}
