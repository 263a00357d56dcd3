//! The values and anomaly scores of chosen metric series, for the report's plots:
//! each chosen series' partition is read again from the archive and scored by a
//! fresh anomaly operator built from the same settings as the replay's (a series'
//! scores depend only on its partition's rows in offset order, so they are the ones
//! its alerts saw). Memory stays bounded: past [`MAX_POINTS`] a trace halves its
//! resolution (pairs of neighbours merged: mean value, largest score).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cara_operators::anomaly::operator::{AnomalyOperator, ScoredPoint, INPUT_COLUMNS};
use cara_operators::schema::Table;

use crate::archive::layout::ArchiveLayout;
use crate::backtest::replay::{
    list_flushes, partition_range, read_flush_in, EventRange, ReplayError,
};
use crate::dataflow::stages::AlertingSettings;

/// Points a trace keeps at most.
pub const MAX_POINTS: usize = 4096;

/// A metric series: its name and labels (sorted by key).
pub type SeriesId = (String, Vec<(String, String)>);

/// One plotted point: a time, the value scored and its score (or, after merging,
/// the first time, the mean value and the largest score of the points merged).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TracePoint {
    /// Event time, ms.
    pub ts_ms: i64,
    /// The value scored (a counter's per-second rate).
    pub value: f64,
    /// Its anomaly score.
    pub score: f64,
}

/// The trace of one series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    /// Its points in time order.
    pub points: Vec<TracePoint>,
    /// Scored points each kept one stands for (1 until the first halving).
    pub merged: usize,
    /// Points gathered for the next kept one: their merge so far and how many.
    pub(super) pending: Option<(TracePoint, usize)>,
}

impl Trace {
    fn push(&mut self, point: TracePoint) {
        self.merged = self.merged.max(1);
        let (sum, count) = match self.pending.take() {
            Some((sum, count)) => (
                TracePoint {
                    ts_ms: sum.ts_ms,
                    value: sum.value + point.value,
                    score: sum.score.max(point.score),
                },
                count + 1,
            ),
            None => (point, 1),
        };
        if count < self.merged {
            self.pending = Some((sum, count));
            return;
        }
        self.keep(sum, count);
        if self.points.len() >= MAX_POINTS {
            self.points = self
                .points
                .chunks(2)
                .map(|pair| TracePoint {
                    ts_ms: pair[0].ts_ms,
                    value: pair.iter().map(|p| p.value).sum::<f64>() / pair.len() as f64,
                    score: pair.iter().map(|p| p.score).fold(f64::MIN, f64::max),
                })
                .collect();
            self.merged *= 2;
        }
    }

    /// Keeps a merge of `count` points whose values add up to `sum.value`.
    fn keep(&mut self, sum: TracePoint, count: usize) {
        self.points.push(TracePoint {
            value: sum.value / count as f64,
            ..sum
        });
    }

    /// Keeps the points gathered for an incomplete last one.
    fn finish(&mut self) {
        if let Some((sum, count)) = self.pending.take() {
            self.keep(sum, count);
        }
    }
}

/// Where each chosen series lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeriesPlace {
    /// The metrics topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// The series.
    pub series: SeriesId,
}

/// The traces of `chosen`, read from `archive` within `range`.
pub fn score_traces(
    archive: &Path,
    settings: &AlertingSettings,
    chosen: &BTreeSet<SeriesPlace>,
    range: EventRange,
) -> Result<BTreeMap<SeriesPlace, Trace>, ReplayError> {
    let layout = ArchiveLayout::new(archive);
    let mut by_partition: BTreeMap<(&str, i32), Vec<&SeriesPlace>> = BTreeMap::new();
    for place in chosen {
        by_partition
            .entry((place.topic.as_str(), place.partition))
            .or_default()
            .push(place);
    }
    let mut traces: BTreeMap<SeriesPlace, Trace> = BTreeMap::new();
    let table = Table::Metrics;
    for ((topic, partition), places) in by_partition {
        let flushes = list_flushes(&layout.table_dir(table), topic);
        let mut operator = AnomalyOperator::new(settings.scorer, settings.limits);
        let mut scored: Vec<ScoredPoint> = Vec::new();
        for files in flushes.range(partition_range(partition)).map(|(_, f)| f) {
            let rows = read_flush_in(files, table, Some(&INPUT_COLUMNS), range)?;
            scored.clear();
            if operator.process(&rows, &mut scored).is_err() {
                continue;
            }
            for point in &scored {
                let Some(place) = places.iter().find(|p| is_series(point, &p.series)) else {
                    continue;
                };
                traces
                    .entry((*place).clone())
                    .or_default()
                    .push(TracePoint {
                        ts_ms: point.ts_ms,
                        value: point.value,
                        score: point.score.score,
                    });
            }
        }
    }
    traces.values_mut().for_each(Trace::finish);
    Ok(traces)
}

/// Whether `point` belongs to `series`.
fn is_series(point: &ScoredPoint, (name, labels): &SeriesId) -> bool {
    *point.name == **name
        && point.labels.len() == labels.len()
        && point
            .labels
            .iter()
            .zip(labels)
            .all(|((k, v), (key, value))| k == key && v == value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past the limit a trace merges neighbours: first time, mean value, largest
    /// score, each kept point standing for as many as the others.
    #[test]
    fn traces_halve_their_resolution_past_the_limit() {
        let mut trace = Trace::default();
        for i in 0..(MAX_POINTS as i64 * 3 + 1) {
            trace.push(TracePoint {
                ts_ms: i,
                value: i as f64,
                score: if i == 5 { 0.9 } else { 0.1 },
            });
        }
        trace.finish();
        // 4096 points → 2048 of 2; 4096 more (2048 of 2) → 2048 of 4; 4096 more → 1024
        // of 4; the last one alone.
        assert_eq!(trace.merged, 4);
        assert_eq!(trace.points.len(), 2048 + 1024 + 1);
        let last = trace.points[trace.points.len() - 1];
        assert_eq!((last.ts_ms, last.value), (12_288, 12_288.0));
        let first = trace.points[0];
        assert_eq!(first.ts_ms, 0);
        assert_eq!(first.value, 1.5, "mean of 0..4");
        assert_eq!(trace.points[1].score, 0.9, "the spike survives merging");
        assert!(trace.points.windows(2).all(|w| w[0].ts_ms < w[1].ts_ms));
    }
}
