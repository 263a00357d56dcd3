//! What a checkpoint costs at 10k, 100k and 1M series: bytes written per flush and
//! per series, the time to save them durably, and the time to restore them.
//!
//! `cargo bench --bench checkpoint` (series counts: `CARA_BENCH_SERIES`, a comma
//! list, default `10000,100000,1000000`).
//!
//! One metrics partition holds every series (the worst case for one file; a topic
//! of many partitions writes the same bytes in total). Its operators are the
//! runtime's (a stack of the anomaly scorer and its alert rules, default settings,
//! the series limit raised to the series count), fed a point an hour for 26 hours
//! per series, with values of full precision (a day-old series' state is its
//! largest: every seasonal bucket holds values). Three
//! ways of saving are timed, each durable (written and fsynced) through the
//! archive's own functions:
//! - `json in checkpoint`: the format before state files, the operator state as
//!   JSON, inside the stack's JSON, inside the checkpoint's JSON, all rewritten at
//!   every flush;
//! - `state file, moved`: a flush whose state moved writes the encoded state to a
//!   compressed state file and a checkpoint naming it;
//! - `state file, unchanged`: a flush whose state did not move writes only the
//!   checkpoint, naming the previous file.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cara_operators::alert::AlertRule;
use cara_operators::anomaly::alerting::MetricAlerting;
use cara_operators::anomaly::operator::AnomalyLimits;
use cara_operators::anomaly::ScorerConfig;
use cara_operators::operator::{Operator, Stacked};
use cara_operators::series::{gauge_batch, DerivedPoint};
use cara_pipeline::archive::commit::{self, Checkpoint};
use cara_pipeline::archive::layout::ArchiveLayout;
use cara_pipeline::archive::state::{self, StateFile};

const TOPIC: &str = "telemetry.metrics";
const BATCH: usize = 100_000;

fn alerting(series: usize) -> MetricAlerting {
    MetricAlerting::new(
        ScorerConfig::default(),
        AnomalyLimits {
            max_series: series,
            ..AnomalyLimits::default()
        },
        vec![AlertRule::default_anomaly()],
    )
}

/// A value with a full mantissa, as measured values have (regular ones would
/// flatter the compression).
fn noisy(series: usize, round: i64) -> f64 {
    let x = (series as u64 ^ (round as u64) << 40)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    50.0 + ((x >> 11) as f64 / (1u64 << 53) as f64) * 4.0
}

/// Points per series: hourly for a day and two hours, so that every seasonal
/// bucket and both calibrations hold values (a series' largest state).
const ROUNDS: i64 = 26;

/// The scorer after [`ROUNDS`] points of each of `series` series, as the runtime
/// feeds it.
fn fed(series: usize) -> MetricAlerting {
    let mut operator = alerting(series);
    for round in 0..ROUNDS {
        for start in (0..series).step_by(BATCH) {
            let points: Vec<DerivedPoint> = (start..(start + BATCH).min(series))
                .map(|i| DerivedPoint {
                    ts_ms: 1_700_000_000_000 + round * 3_600_000,
                    name: "http_request_duration_seconds".into(),
                    labels: vec![
                        ("service".into(), format!("svc-{}", i % 50)),
                        ("instance".into(), format!("i-{i}")),
                    ],
                    value: noisy(i, round),
                    source_row: i as i64,
                })
                .collect();
            let batch = gauge_batch(&points, TOPIC, 0).expect("the metrics schema");
            operator
                .score(&batch, &mut Vec::new())
                .expect("the metrics schema");
        }
    }
    operator
}

fn checkpoint(next_offset: i64) -> Checkpoint {
    Checkpoint {
        topic: TOPIC.into(),
        partition: 0,
        next_offset,
        files: vec![ArchiveLayout::new("/archive")
            .root()
            .join("metrics/date=2023-11-14/hour=22/telemetry.metrics-0000-1-2.parquet")],
        operator_state: None,
        state: None,
        epoch: 0,
    }
}

/// Equal saved state (the operators also hold the last batch's scores, never saved).
fn same_state(a: &MetricAlerting, b: &MetricAlerting) -> bool {
    a.snapshot().ok() == b.snapshot().ok()
}

fn file_size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

struct Saved {
    bytes: u64,
    save: Duration,
    restore: Duration,
}

/// The format before state files: JSON in JSON in the checkpoint.
fn json_in_checkpoint(layout: &ArchiveLayout, operator: &MetricAlerting) -> Saved {
    let started = Instant::now();
    let part = serde_json::to_string(operator).expect("state as JSON");
    let stack = serde_json::to_string(&BTreeMap::from([("alerting", part)])).expect("JSON");
    commit::write_checkpoint(
        layout,
        &Checkpoint {
            operator_state: Some(stack),
            ..checkpoint(1)
        },
    )
    .expect("checkpoint written");
    let save = started.elapsed();
    let started = Instant::now();
    let read = commit::read_checkpoint(layout, TOPIC, 0)
        .expect("checkpoint read")
        .and_then(|c| c.operator_state)
        .expect("state in the checkpoint");
    let parts: BTreeMap<String, String> = serde_json::from_str(&read).expect("a stack");
    let restored: MetricAlerting = serde_json::from_str(&parts["alerting"]).expect("the state");
    let restore = started.elapsed();
    assert!(
        same_state(&restored, operator),
        "JSON restored another state"
    );
    Saved {
        bytes: file_size(&layout.checkpoint_file(TOPIC, 0)),
        save,
        restore,
    }
}

/// A flush whose state moved: a new state file, then the checkpoint naming it.
fn state_file_moved(layout: &ArchiveLayout, stack: &Stacked, operator: &MetricAlerting) -> Saved {
    let started = Instant::now();
    let encoded = stack.snapshot().expect("state encoded");
    let file = StateFile::for_flush("telemetry.metrics-0000-1-2", encoded.len());
    let (path, file_bytes) =
        state::write_state(layout, TOPIC, 0, &file.name, &encoded).expect("state written");
    std::fs::File::open(&path)
        .and_then(|f| f.sync_all())
        .expect("state synced");
    commit::write_checkpoint(
        layout,
        &Checkpoint {
            state: Some(file.clone()),
            ..checkpoint(3)
        },
    )
    .expect("checkpoint written");
    let save = started.elapsed();
    let started = Instant::now();
    let recovery = commit::recover(layout, TOPIC, 0).expect("recovered");
    let bytes = recovery.operator_state.expect("state restored");
    let parts = Stacked::split_snapshot(&bytes).expect("a stack");
    let restored = MetricAlerting::restore(
        &parts["alerting"],
        ScorerConfig::default(),
        AnomalyLimits {
            max_series: operator.series(),
            ..AnomalyLimits::default()
        },
        vec![AlertRule::default_anomaly()],
    )
    .expect("the state");
    let restore = started.elapsed();
    assert!(
        same_state(&restored, operator),
        "the state file restored another state"
    );
    Saved {
        bytes: file_bytes + file_size(&layout.checkpoint_file(TOPIC, 0)),
        save,
        restore,
    }
}

/// A flush whose state did not move: the checkpoint names the earlier file.
fn state_file_unchanged(layout: &ArchiveLayout) -> Saved {
    let previous = commit::read_checkpoint(layout, TOPIC, 0)
        .expect("checkpoint read")
        .and_then(|c| c.state);
    let started = Instant::now();
    commit::write_checkpoint(
        layout,
        &Checkpoint {
            state: previous,
            ..checkpoint(4)
        },
    )
    .expect("checkpoint written");
    Saved {
        bytes: file_size(&layout.checkpoint_file(TOPIC, 0)),
        save: started.elapsed(),
        restore: Duration::ZERO,
    }
}

fn main() {
    let counts: Vec<usize> = std::env::var("CARA_BENCH_SERIES")
        .unwrap_or_else(|_| "10000,100000,1000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!("| series | how | bytes per flush | bytes per series | save (ms) | restore (ms) |");
    println!("|---:|---|---:|---:|---:|---:|");
    for series in counts {
        let operator = fed(series);
        assert_eq!(operator.series(), series);
        let stack = Stacked::new(vec![Box::new(operator.clone())]);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let layout = ArchiveLayout::new(dir.path());
        let rows = [
            ("json in checkpoint", json_in_checkpoint(&layout, &operator)),
            (
                "state file, moved",
                state_file_moved(&layout, &stack, &operator),
            ),
            ("state file, unchanged", state_file_unchanged(&layout)),
        ];
        for (how, saved) in rows {
            println!(
                "| {series} | {how} | {} | {:.1} | {:.1} | {:.1} |",
                saved.bytes,
                saved.bytes as f64 / series as f64,
                saved.save.as_secs_f64() * 1e3,
                saved.restore.as_secs_f64() * 1e3,
            );
        }
    }
}
