//! The anomaly operator: keys metric rows by series, turns counters into rates, and
//! scores every point with the series' [`SeriesScorer`].
//!
//! Owns: the map from series to state, its cardinality limit and idle eviction.
//! Rows must arrive in event-time order per series (the runtime releases them in
//! watermark order); an out-of-order point of a series is skipped and counted.

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::FixedState;

use arrow::array::{Array, AsArray, MapArray, RecordBatch};
use arrow::datatypes::TimestampMillisecondType;
use serde::{Deserialize, Serialize};

use super::{Detector, PointScore, ScorerConfig, SeriesScorer};
use crate::budget::{BudgetShare, StateBudget};

/// What can go wrong reading a batch: only a schema that is not the metrics table's.
#[derive(Debug, thiserror::Error)]
#[error("input column `{0}` is missing or has the wrong type")]
pub struct SchemaMismatch(pub &'static str);

/// The columns of table `metrics` that [`AnomalyOperator::process`] reads.
pub const INPUT_COLUMNS: [&str; 5] = ["ts", "name", "type", "value", "labels"];

/// Labels of a series, sorted by key.
pub type Labels = Arc<[(String, String)]>;

/// One scored point of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredPoint {
    /// The series: metric name and sorted labels, `name{k="v",...}`.
    pub series: Arc<str>,
    /// Metric name.
    pub name: Arc<str>,
    /// Labels, sorted by key.
    pub labels: Labels,
    /// Row of the point in the batch it came from.
    pub row: usize,
    /// Event time (ms since the epoch).
    pub ts_ms: i64,
    /// Event time of the series' point before this one (`None` for its first): how
    /// long this point stands for, so a sparse series' one anomalous point counts
    /// for its whole interval.
    #[serde(default)]
    pub previous_ms: Option<i64>,
    /// The value scored (for counters: the per-second rate).
    pub value: f64,
    /// Score and evidence.
    pub score: PointScore,
}

/// Limits of the operator's state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalyLimits {
    /// Series tracked at most; at the limit a new series takes the place of the
    /// longest-silent one, and is refused (counted) when none is silent.
    pub max_series: usize,
    /// A series without points for this long (event time) is *silent*: its alerts
    /// resolve, its model is kept.
    pub idle_ms: i64,
    /// A series without points for this long (event time) is forgotten, model and
    /// all (at least `idle_ms`).
    pub forget_ms: i64,
}

impl Default for AnomalyLimits {
    fn default() -> Self {
        AnomalyLimits {
            max_series: 100_000,
            idle_ms: 6 * 3_600_000,
            // Two days: series sampled irregularly (NAB's traffic files pause for up
            // to 46 h) resume with their model, as the backtest of one series does.
            forget_ms: 48 * 3_600_000,
        }
    }
}

impl AnomalyLimits {
    /// The silence after which a series is forgotten (never less than `idle_ms`).
    fn forget_after(&self) -> i64 {
        self.forget_ms.max(self.idle_ms)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SeriesState {
    key: Arc<str>,
    name: Arc<str>,
    labels: Labels,
    scorer: SeriesScorer,
    last_ts: i64,
    /// Last raw value of a counter (to compute its rate).
    last_counter: Option<f64>,
    /// Reported silent (idle past `idle_ms`) since its last point.
    #[serde(default)]
    silent: bool,
}

impl SeriesState {
    /// What the series costs in memory, estimated: its struct and hash-map slot, its
    /// key, name and labels, its seasonal buckets, and an allowance for its open
    /// windows and the allocator's rounding.
    fn estimated_bytes(&self) -> u64 {
        const FIXED: usize = std::mem::size_of::<SeriesState>()
            + std::mem::size_of::<Arc<str>>()
            + 2 * 16 // two Arc headers
            + 256; // open windows, allocator rounding
        let labels: usize = self
            .labels
            .iter()
            .map(|(k, v)| k.len() + v.len() + std::mem::size_of::<(String, String)>())
            .sum();
        (FIXED + self.key.len() + self.name.len() + labels + self.scorer.heap_bytes()) as u64
    }
}

/// Counts the operator reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnomalyCounts {
    /// Points scored.
    pub scored: u64,
    /// Points of new series refused at the cardinality limit.
    pub refused_by_limit: u64,
    /// Points older than their series' last point.
    pub out_of_order: u64,
    /// Series forgotten: silent past `forget_ms`, or the longest silent when a new
    /// series needed the room.
    pub evicted: u64,
    /// Points of new series refused because the process's state budget was spent.
    #[serde(default)]
    pub refused_by_budget: u64,
}

/// The keyed anomaly operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyOperator {
    config: ScorerConfig,
    limits: AnomalyLimits,
    /// Keyed with a fixed-seed hash; serialised in key order, so equal state gives
    /// equal snapshot bytes however the map was built (fresh or restored).
    #[serde(serialize_with = "sorted_by_key")]
    series: HashMap<Arc<str>, SeriesState, FixedState>,
    counts: AnomalyCounts,
    /// Event time at which idle series are next looked for; eviction happens at fixed
    /// event-time steps, so it does not depend on how rows were batched.
    #[serde(default)]
    next_eviction_ms: i64,
    /// Series that fell silent in the last calls, as points at the time they were
    /// found silent (value: the event time of their last point); for the alert rules
    /// to resolve.
    #[serde(skip)]
    silent: Vec<ScoredPoint>,
    /// The series' estimated bytes, held in the process's state budget.
    #[serde(skip)]
    budget: BudgetShare,
}

fn sorted_by_key<S: serde::Serializer>(
    map: &HashMap<Arc<str>, SeriesState, FixedState>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let sorted: std::collections::BTreeMap<&Arc<str>, &SeriesState> = map.iter().collect();
    sorted.serialize(serializer)
}

impl AnomalyOperator {
    /// An operator with the given detector tuning and limits.
    pub fn new(config: ScorerConfig, limits: AnomalyLimits) -> AnomalyOperator {
        AnomalyOperator {
            config,
            limits,
            series: HashMap::default(),
            counts: AnomalyCounts::default(),
            next_eviction_ms: i64::MIN,
            silent: Vec::new(),
            budget: BudgetShare::default(),
        }
    }

    /// Accounts the series in `budget` (shared by every partition of the process):
    /// those held now are taken whatever the budget says, new ones only while it
    /// has room.
    pub fn share_budget(&mut self, budget: Arc<StateBudget>) {
        let mut share = BudgetShare::new(budget);
        share.take(self.series.values().map(SeriesState::estimated_bytes).sum());
        self.budget = share;
    }

    /// Applies a new tuning and limits to restored state.
    pub fn reconfigure(&mut self, config: ScorerConfig, limits: AnomalyLimits) {
        self.config = config;
        self.limits = limits;
    }

    /// Series currently tracked.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// What the operator has counted so far.
    pub fn counts(&self) -> AnomalyCounts {
        self.counts
    }

    /// Scores every row of a `metrics` batch, in row order, appending to `out`; reads
    /// only [`INPUT_COLUMNS`].
    pub fn process(
        &mut self,
        batch: &RecordBatch,
        out: &mut Vec<ScoredPoint>,
    ) -> Result<(), SchemaMismatch> {
        let ts = batch
            .column_by_name("ts")
            .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
            .ok_or(SchemaMismatch("ts"))?;
        let name = crate::columns::strings(batch, "name")?;
        let kind = crate::columns::strings(batch, "type")?;
        let value = batch
            .column_by_name("value")
            .and_then(|c| c.as_primitive_opt::<arrow::datatypes::Float64Type>())
            .ok_or(SchemaMismatch("value"))?;
        let labels = batch
            .column_by_name("labels")
            .and_then(|c| c.as_any().downcast_ref::<MapArray>())
            .ok_or(SchemaMismatch("labels"))?;
        let keys = labels
            .keys()
            .as_string_opt::<i32>()
            .ok_or(SchemaMismatch("labels"))?;
        let values = labels
            .values()
            .as_string_opt::<i32>()
            .ok_or(SchemaMismatch("labels"))?;
        let offsets = labels.value_offsets();
        let mut key = String::new();
        let mut sorted = Vec::new();
        for row in 0..batch.num_rows() {
            key.clear();
            key.push_str(name.value(row));
            let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
            crate::series::series_key(
                &mut key,
                (start..end).map(|i| (keys.value(i), values.value(i))),
                &mut sorted,
            );
            let t = ts.value(row);
            let is_counter = kind.is_valid(row) && kind.value(row) == "counter";
            let point = RowPoint {
                row,
                ts_ms: t,
                raw: value.value(row),
                is_counter,
            };
            let labels_of = || {
                let mut l: Vec<(String, String)> = (start..end)
                    .map(|i| (keys.value(i).to_owned(), values.value(i).to_owned()))
                    .collect();
                l.sort_unstable();
                (Arc::from(name.value(row)), Labels::from(l))
            };
            self.observe(&key, point, labels_of, out);
        }
        Ok(())
    }

    fn observe(
        &mut self,
        key: &str,
        point: RowPoint,
        labels_of: impl FnOnce() -> (Arc<str>, Labels),
        out: &mut Vec<ScoredPoint>,
    ) {
        // One lookup for a known series; a new one is admitted (or refused) first.
        let scored = match self.series.get_mut(key) {
            Some(state) => score_point(state, &self.config, &mut self.counts, point, out),
            None => {
                let Some(state) = self.admit(key, labels_of) else {
                    return;
                };
                let state = self.series.entry(state.key.clone()).or_insert(state);
                score_point(state, &self.config, &mut self.counts, point, out)
            }
        };
        if scored {
            self.evict_on_schedule(point.ts_ms, point.row);
        }
    }

    /// The state of a series seen for the first time, unless the cardinality limit or
    /// the state budget refuses it (then counted). At either, silent series make
    /// room, the longest silent first.
    fn admit(
        &mut self,
        key: &str,
        labels_of: impl FnOnce() -> (Arc<str>, Labels),
    ) -> Option<SeriesState> {
        while self.series.len() >= self.limits.max_series {
            if !self.forget_longest_silent() {
                self.counts.refused_by_limit += 1;
                return None;
            }
        }
        let (name, labels) = labels_of();
        let state = SeriesState {
            key: Arc::from(key),
            name,
            labels,
            scorer: SeriesScorer::default(),
            last_ts: i64::MIN,
            last_counter: None,
            silent: false,
        };
        while !self.budget.try_take(state.estimated_bytes()) {
            if !self.forget_longest_silent() {
                self.counts.refused_by_budget += 1;
                return None;
            }
        }
        Some(state)
    }

    /// Forgets the silent series with the oldest last point (ties: the smallest
    /// key); false when no series is silent.
    fn forget_longest_silent(&mut self) -> bool {
        let oldest = self
            .series
            .values()
            .filter(|s| s.silent)
            .min_by(|a, b| (a.last_ts, &a.key).cmp(&(b.last_ts, &b.key)))
            .map(|s| s.key.clone());
        let Some(key) = oldest else {
            return false;
        };
        if let Some(state) = self.series.remove(&key) {
            self.budget.give_back(state.estimated_bytes());
            self.counts.evicted += 1;
        }
        true
    }

    /// Takes the series that fell silent in the last calls (see [`ScoredPoint`]:
    /// `ts_ms` is when they were found silent, `value` the time of the series' last
    /// point, `row` the row whose event time triggered the look).
    pub fn take_silent(&mut self) -> Vec<ScoredPoint> {
        std::mem::take(&mut self.silent)
    }

    /// Every quarter of the idle limit of event time, after the first row past it,
    /// reports series that fell silent and forgets those silent past `forget_ms`
    /// (never the one that just had a point): the schedule depends on the rows only,
    /// not on how they were batched.
    fn evict_on_schedule(&mut self, ts_ms: i64, row: usize) {
        if ts_ms >= self.next_eviction_ms {
            let step = (self.limits.idle_ms / 4).max(1);
            self.evict_idle_at(ts_ms, row);
            self.next_eviction_ms = ts_ms.saturating_add(step);
        }
    }

    /// Reports the series silent past `idle_ms` as of `watermark_ms` (once each) and
    /// forgets those silent past `forget_ms`.
    pub fn evict_idle(&mut self, watermark_ms: i64) {
        self.evict_idle_at(watermark_ms, 0);
    }

    fn evict_idle_at(&mut self, watermark_ms: i64, row: usize) {
        let idle_ms = self.limits.idle_ms;
        let forget_ms = self.limits.forget_after();
        let before = self.series.len();
        let mut fell_silent = Vec::new();
        let budget = &mut self.budget;
        self.series.retain(|_, s| {
            let silence = watermark_ms.saturating_sub(s.last_ts);
            let keep = silence <= forget_ms;
            if !keep {
                budget.give_back(s.estimated_bytes());
            }
            if silence > idle_ms && !s.silent {
                s.silent = true;
                fell_silent.push(ScoredPoint {
                    series: s.key.clone(),
                    name: s.name.clone(),
                    labels: s.labels.clone(),
                    row,
                    ts_ms: watermark_ms,
                    previous_ms: Some(s.last_ts),
                    value: s.last_ts as f64,
                    score: PointScore {
                        score: 0.0,
                        baseline: 0.0,
                        deviation: 0.0,
                        detector: Detector::Warmup,
                    },
                });
            }
            keep
        });
        // The map's order is the hash's; report in key order (deterministic output).
        fell_silent.sort_by(|a, b| a.series.cmp(&b.series));
        self.silent.extend(fell_silent);
        self.counts.evicted += (before - self.series.len()) as u64;
    }
}

/// Scores one point of a series (a counter's first point only sets its start) and
/// appends it; false when nothing was scored (that point, or one out of order).
fn score_point(
    state: &mut SeriesState,
    config: &ScorerConfig,
    counts: &mut AnomalyCounts,
    point: RowPoint,
    out: &mut Vec<ScoredPoint>,
) -> bool {
    let RowPoint {
        row,
        ts_ms,
        raw,
        is_counter,
    } = point;
    let previous_ms = (state.last_ts != i64::MIN).then_some(state.last_ts);
    if ts_ms < state.last_ts {
        counts.out_of_order += 1;
        return false;
    }
    // The point moves the series' last time on: it is no longer silent.
    state.silent = false;
    let value = if is_counter {
        let previous = state.last_counter.replace(raw);
        let elapsed_s = ts_ms.saturating_sub(state.last_ts) as f64 / 1000.0;
        match previous {
            Some(prev) if elapsed_s > 0.0 => {
                // A counter that went down was reset: it counted `raw` since.
                let delta = if raw >= prev { raw - prev } else { raw };
                delta / elapsed_s
            }
            _ => {
                state.last_ts = ts_ms;
                return false;
            }
        }
    } else {
        raw
    };
    state.last_ts = ts_ms;
    let score = state.scorer.score(config, ts_ms, value);
    counts.scored += 1;
    out.push(ScoredPoint {
        series: state.key.clone(),
        name: state.name.clone(),
        labels: state.labels.clone(),
        row,
        ts_ms,
        previous_ms,
        value,
        score,
    });
    true
}

/// One row as the operator sees it.
#[derive(Debug, Clone, Copy)]
struct RowPoint {
    row: usize,
    ts_ms: i64,
    raw: f64,
    is_counter: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::StateBudget;

    fn observe(
        op: &mut AnomalyOperator,
        key: &str,
        ts_ms: i64,
        raw: f64,
        is_counter: bool,
        out: &mut Vec<ScoredPoint>,
    ) {
        let point = RowPoint {
            row: 0,
            ts_ms,
            raw,
            is_counter,
        };
        op.observe(
            key,
            point,
            || (Arc::from(key), Labels::from(Vec::new())),
            out,
        );
    }

    #[test]
    fn idle_series_are_evicted_on_an_event_time_schedule_but_never_at_their_own_point() {
        let hour = 3_600_000;
        let mut op = AnomalyOperator::new(ScorerConfig::default(), AnomalyLimits::default());
        let mut out = Vec::new();
        observe(&mut op, "a", 0, 1.0, false, &mut out);
        observe(&mut op, "b", hour, 1.0, false, &mut out);
        // `a` comes back after a 7 h gap: it keeps its state.
        observe(&mut op, "a", 7 * hour, 1.0, false, &mut out);
        assert_eq!(op.counts().evicted, 0);
        // `b` has been silent for 6 h 30 min when `a`'s next point passes the schedule.
        observe(
            &mut op,
            "a",
            7 * hour + 30 * 60_000 + 1,
            1.0,
            false,
            &mut out,
        );
        assert_eq!(
            (op.series_count(), op.counts().evicted),
            (2, 0),
            "not yet past the step"
        );
        observe(&mut op, "a", 9 * hour, 1.0, false, &mut out);
        // `b` fell silent: reported once, its model kept.
        let silent = op.take_silent();
        assert_eq!(silent.len(), 1);
        assert_eq!(
            (&*silent[0].series, silent[0].previous_ms),
            ("b", Some(hour))
        );
        assert_eq!((op.series_count(), op.counts().evicted), (2, 0));
        observe(&mut op, "a", 10 * hour, 1.0, false, &mut out);
        assert!(op.take_silent().is_empty(), "reported once");
        // Past two days of silence it is forgotten.
        observe(&mut op, "a", 49 * hour + 1, 1.0, false, &mut out);
        assert_eq!((op.series_count(), op.counts().evicted), (1, 1));
        assert!(op.take_silent().is_empty());
    }

    /// A series that resumes after falling silent continues with its model, as
    /// the same points scored alone would (the NAB backtest).
    #[test]
    fn a_silent_series_resumes_with_its_model() {
        let hour = 3_600_000;
        let points: Vec<(i64, f64)> = (0..400)
            .map(|i| {
                let gap = if i >= 200 { 20 * hour } else { 0 };
                (i * 300_000 + gap, 50.0 + ((i * 7919) % 13) as f64)
            })
            .collect();
        let alone = {
            let mut op = AnomalyOperator::new(ScorerConfig::default(), AnomalyLimits::default());
            let mut out = Vec::new();
            for (t, v) in &points {
                observe(&mut op, "s", *t, *v, false, &mut out);
            }
            out.iter().map(|p| p.score.score).collect::<Vec<_>>()
        };
        // With a neighbour on the partition whose points carry time through the gap.
        let mut op = AnomalyOperator::new(ScorerConfig::default(), AnomalyLimits::default());
        let mut out = Vec::new();
        let mut neighbour = 0;
        for (t, v) in &points {
            while neighbour < *t {
                observe(&mut op, "n", neighbour, 1.0, false, &mut Vec::new());
                neighbour += 600_000;
            }
            observe(&mut op, "s", *t, *v, false, &mut out);
        }
        let shared: Vec<f64> = out.iter().map(|p| p.score.score).collect();
        assert_eq!(shared, alone);
        assert_eq!(op.counts().evicted, 0);
    }

    #[test]
    fn counters_are_scored_as_rates_and_resets_handled() {
        let mut op = AnomalyOperator::new(ScorerConfig::default(), AnomalyLimits::default());
        let mut out = Vec::new();
        observe(&mut op, "c", 0, 100.0, true, &mut out);
        observe(&mut op, "c", 10_000, 150.0, true, &mut out);
        observe(&mut op, "c", 20_000, 30.0, true, &mut out); // reset
        let rates: Vec<f64> = out.iter().map(|p| p.value).collect();
        assert_eq!(rates, vec![5.0, 3.0]);
    }

    #[test]
    fn cardinality_limit_refuses_new_series_unless_a_silent_one_makes_room() {
        let limits = AnomalyLimits {
            max_series: 2,
            idle_ms: 1000,
            forget_ms: 5000,
        };
        let mut op = AnomalyOperator::new(ScorerConfig::default(), limits);
        let mut out = Vec::new();
        for s in ["a", "b", "c", "a"] {
            observe(&mut op, s, 5, 1.0, false, &mut out);
        }
        assert_eq!(op.series_count(), 2);
        assert_eq!(op.counts().refused_by_limit, 1);
        assert_eq!(out.len(), 3);
        observe(&mut op, "b", 900, 1.0, false, &mut out);
        op.evict_idle(1500); // a silent for 1495 ms, b for 600 ms
        assert_eq!((op.series_count(), op.counts().evicted), (2, 0));
        assert_eq!(op.take_silent().len(), 1, "a fell silent");
        // `c` takes the place of the silent `a`.
        out.clear();
        observe(&mut op, "c", 1500, 1.0, false, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((op.series_count(), op.counts().evicted), (2, 1));
        assert_eq!(op.counts().refused_by_limit, 1);
        // Neither `b` nor `c` is silent: `d` is refused.
        observe(&mut op, "d", 1600, 1.0, false, &mut out);
        assert_eq!(op.counts().refused_by_limit, 2);
        observe(&mut op, "b", 800, 1.0, false, &mut out);
        assert_eq!(op.counts().out_of_order, 1);
        // Past `forget_ms` both go.
        op.evict_idle(10_000);
        assert_eq!((op.series_count(), op.counts().evicted), (0, 3));
    }

    #[test]
    fn one_budget_bounds_the_series_of_every_partition_and_eviction_frees_it() {
        let limits = AnomalyLimits {
            max_series: 1_000,
            idle_ms: 1000,
            forget_ms: 1000,
        };
        let mut probe = AnomalyOperator::new(ScorerConfig::default(), limits);
        observe(&mut probe, "a", 5, 1.0, false, &mut Vec::new());
        let per_series = probe.budget.held();
        assert!(per_series > 500, "{per_series} bytes per series");
        // Room for three series over two partitions.
        let budget = StateBudget::new(3 * per_series + per_series / 2);
        let (mut p0, mut p1) = (
            AnomalyOperator::new(ScorerConfig::default(), limits),
            AnomalyOperator::new(ScorerConfig::default(), limits),
        );
        p0.share_budget(budget.clone());
        p1.share_budget(budget.clone());
        let mut out = Vec::new();
        for s in ["a", "b"] {
            observe(&mut p0, s, 5, 1.0, false, &mut out);
        }
        for s in ["c", "d", "c"] {
            observe(&mut p1, s, 5, 1.0, false, &mut out);
        }
        assert_eq!((p0.series_count(), p1.series_count()), (2, 1));
        assert_eq!(p1.counts().refused_by_budget, 1, "d refused");
        assert_eq!(p1.counts().refused_by_limit, 0);
        assert_eq!(budget.used(), 3 * per_series);
        // Partition 0 forgets its idle series: partition 1 may now take d.
        p0.evict_idle(2000);
        assert_eq!(budget.used(), per_series);
        out.clear();
        observe(&mut p1, "d", 2001, 1.0, false, &mut out);
        assert_eq!(out.len(), 1, "d scored");
        // (c, idle too, was forgotten by the same call.)
        assert_eq!(p1.series_count(), 1);
        assert_eq!(budget.used(), per_series);
        // A restored operator takes what it holds; dropping it gives it back.
        let restored: AnomalyOperator =
            serde_json::from_str(&serde_json::to_string(&p1).unwrap()).unwrap();
        let mut restored = restored;
        restored.share_budget(budget.clone());
        assert_eq!(budget.used(), 2 * per_series);
        drop(restored);
        drop(p1);
        assert_eq!(budget.used(), 0);
    }
}
