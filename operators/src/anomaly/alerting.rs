//! Metric operators as one unit of state per source partition: the anomaly operator
//! scoring every series of the partition, the alert rules over its scores, and
//! window aggregates of what it scored ([`super::windows`]). Snapshots are JSON,
//! restored with the current configuration. This is the [`Operator`] the runtime
//! runs on every metrics partition.

use arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};

use super::operator::{AnomalyLimits, AnomalyOperator, SchemaMismatch, ScoredPoint};
use super::windows::{metric_windows_batch, SeriesWindows};
pub use super::windows::{SeriesWindow, WindowSettings};
use super::ScorerConfig;
use crate::alert::{AlertEvaluator, AlertRecord, AlertRule};
use crate::operator::{Emitted, Operator, OperatorError, PartitionContext};
use crate::schema::Table;
use crate::snapshot::{self, SnapshotError};

/// Scoring and alerting of one partition's metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricAlerting {
    anomaly: AnomalyOperator,
    alerts: AlertEvaluator,
    /// Rules the alert states belong to (to notice a changed configuration).
    rules: Vec<AlertRule>,
    #[serde(default)]
    windows: Option<SeriesWindows>,
    /// The watermark as raised by the runtime (`i64::MIN` until it is).
    #[serde(default = "no_watermark")]
    raised_watermark: i64,
    /// Largest event time of a scored point.
    #[serde(default = "no_watermark")]
    max_event_ms: i64,
    #[serde(skip)]
    scored: Vec<ScoredPoint>,
}

fn no_watermark() -> i64 {
    i64::MIN
}

impl MetricAlerting {
    /// Fresh state.
    pub fn new(config: ScorerConfig, limits: AnomalyLimits, rules: Vec<AlertRule>) -> Self {
        MetricAlerting {
            anomaly: AnomalyOperator::new(config, limits),
            alerts: AlertEvaluator::new(rules.clone()),
            rules,
            windows: None,
            raised_watermark: i64::MIN,
            max_event_ms: i64::MIN,
            scored: Vec::new(),
        }
    }

    /// Also aggregates every series in windows (kept if already on with
    /// the same settings, e.g. after a restore).
    pub fn with_windows(mut self, settings: Option<WindowSettings>) -> Self {
        let keep = matches!((&self.windows, settings), (Some(w), Some(s)) if w.settings == s);
        if !keep {
            self.windows = settings.map(SeriesWindows::new);
        }
        self
    }

    /// Points that arrived after their window's watermark (not aggregated).
    pub fn late_points(&self) -> u64 {
        self.windows.as_ref().map_or(0, |w| w.late)
    }

    /// State restored from [`snapshot`](Self::snapshot). The detectors' state is kept;
    /// if the rules changed since, alert states start afresh (a firing alert of a
    /// removed or edited rule is not resolved).
    pub fn restore(
        snapshot: &[u8],
        config: ScorerConfig,
        limits: AnomalyLimits,
        rules: Vec<AlertRule>,
    ) -> Result<Self, SnapshotError> {
        let state: MetricAlerting = snapshot::decode(snapshot)?;
        Ok(state.reconfigured(config, limits, rules))
    }

    /// Accounts the scored series in the process's state budget (see
    /// [`crate::budget`]).
    pub fn share_budget(&mut self, budget: std::sync::Arc<crate::budget::StateBudget>) {
        self.anomaly.share_budget(budget);
    }

    /// Deserialised state with the current configuration applied: the detectors'
    /// state is kept; if the rules changed, alert states start afresh.
    pub fn reconfigured(
        mut self,
        config: ScorerConfig,
        limits: AnomalyLimits,
        rules: Vec<AlertRule>,
    ) -> Self {
        self.anomaly.reconfigure(config, limits);
        if self.rules != rules {
            self.alerts = AlertEvaluator::new(rules.clone());
            self.rules = rules;
        }
        self
    }

    /// Scores a metrics batch in row order and appends the alert transitions.
    pub fn score(
        &mut self,
        batch: &RecordBatch,
        alerts: &mut Vec<AlertRecord>,
    ) -> Result<(), SchemaMismatch> {
        self.score_with_windows(batch, alerts, &mut Vec::new())
    }

    /// Like [`score`](Self::score), also appending the windows the batch closed.
    pub fn score_with_windows(
        &mut self,
        batch: &RecordBatch,
        alerts: &mut Vec<AlertRecord>,
        windows: &mut Vec<SeriesWindow>,
    ) -> Result<(), SchemaMismatch> {
        self.scored.clear();
        self.anomaly.process(batch, &mut self.scored)?;
        for point in &self.scored {
            self.alerts.observe(point, alerts);
            if let Some(w) = self.windows.as_mut() {
                w.add(point, self.raised_watermark);
            }
            self.max_event_ms = self.max_event_ms.max(point.ts_ms);
        }
        self.close(alerts, windows);
        Ok(())
    }

    /// Raises the watermark to `watermark_ms` (never lowers it): series silent as of
    /// then are reported (their firing alerts resolve), those silent long enough
    /// forgotten, and the windows it passes fire, as if a row that late had arrived.
    pub fn raise_watermark(
        &mut self,
        watermark_ms: i64,
        alerts: &mut Vec<AlertRecord>,
        windows: &mut Vec<SeriesWindow>,
    ) {
        if watermark_ms <= self.raised_watermark {
            return;
        }
        self.raised_watermark = watermark_ms;
        self.anomaly.evict_idle(watermark_ms);
        self.close(alerts, windows);
    }

    /// Reports series that fell silent (their firing alerts resolve) and fires the
    /// windows behind the watermark.
    fn close(&mut self, alerts: &mut Vec<AlertRecord>, windows: &mut Vec<SeriesWindow>) {
        for silent in self.anomaly.take_silent() {
            self.alerts.series_silent(&silent, alerts);
        }
        if let Some(w) = self.windows.as_mut() {
            w.fire(self.raised_watermark, windows);
        }
    }

    /// What the anomaly operator counted.
    pub fn counts(&self) -> super::operator::AnomalyCounts {
        self.anomaly.counts()
    }

    /// Series tracked.
    pub fn series(&self) -> usize {
        self.anomaly.series_count()
    }
}

impl Operator for MetricAlerting {
    fn name(&self) -> &'static str {
        "alerting"
    }

    fn tables(&self) -> Vec<Table> {
        vec![Table::Alerts, Table::MetricWindows]
    }

    /// What the anomaly operator reads of a point (the alert rules and windows take
    /// the scored points).
    fn input_columns(&self) -> Option<Vec<&'static str>> {
        Some(super::operator::INPUT_COLUMNS.to_vec())
    }

    fn process(
        &mut self,
        context: &PartitionContext,
        rows: &RecordBatch,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        let late_before = self.late_points();
        let before = self.counts();
        let mut windows = Vec::new();
        self.score_with_windows(rows, &mut out.alerts, &mut windows)?;
        out.late += self.late_points().saturating_sub(late_before);
        let after = self.counts();
        out.over_limit += after
            .refused_by_limit
            .saturating_sub(before.refused_by_limit);
        out.over_budget += after
            .refused_by_budget
            .saturating_sub(before.refused_by_budget);
        push_windows(context, &windows, out)
    }

    fn advance_watermark(
        &mut self,
        context: &PartitionContext,
        watermark_ms: i64,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        let mut windows = Vec::new();
        self.raise_watermark(watermark_ms, &mut out.alerts, &mut windows);
        push_windows(context, &windows, out)
    }

    /// The watermark: that of the windows (largest event time minus their bound)
    /// or the one the runtime raised, whichever is higher; `None` before any point.
    fn watermark(&self) -> Option<i64> {
        let own = match &self.windows {
            Some(w) => w.watermark(i64::MIN),
            None => self.max_event_ms,
        };
        let watermark = own.max(self.raised_watermark);
        (watermark != i64::MIN).then_some(watermark)
    }

    fn snapshot(&self) -> Result<Vec<u8>, OperatorError> {
        Ok(snapshot::encode(self)?)
    }
}

/// Adds the `metric_windows` rows of `windows`, if any.
fn push_windows(
    context: &PartitionContext,
    windows: &[SeriesWindow],
    out: &mut Emitted,
) -> Result<(), OperatorError> {
    if !windows.is_empty() {
        let batch = metric_windows_batch(windows, &context.topic, context.partition)?;
        out.tables.push((Table::MetricWindows, batch));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertStatus;
    use crate::series::{gauge_batch, DerivedPoint};
    use crate::window::WindowSpec;

    use crate::test_rng::hash_unit as noise;

    /// Two series, one point each per minute, with a spike in `api` at point 2500.
    fn batch(points: usize) -> RecordBatch {
        let mut rows = Vec::with_capacity(points * 2);
        for i in 0..points {
            for (s, svc) in ["api", "db"].iter().enumerate() {
                let spike = if *svc == "api" && (2500..2510).contains(&i) {
                    40.0
                } else {
                    0.0
                };
                rows.push(DerivedPoint {
                    ts_ms: 1_700_000_000_000 + i as i64 * 60_000,
                    name: "latency_ms".into(),
                    labels: vec![("service".into(), (*svc).into())],
                    value: 20.0 + noise((i * 2 + s) as u64) + spike,
                    source_row: (i * 2 + s) as i64,
                });
            }
        }
        gauge_batch(&rows, "telemetry.metrics", 0).unwrap()
    }

    fn fresh() -> MetricAlerting {
        MetricAlerting::new(
            ScorerConfig::default(),
            AnomalyLimits::default(),
            vec![AlertRule::default_anomaly()],
        )
    }

    /// Given only the columns it declares, it emits what it emits given them all.
    #[test]
    fn its_declared_input_columns_are_all_it_reads() {
        let full = batch(3000);
        let columns = fresh().input_columns().unwrap();
        let indices: Vec<usize> = columns
            .iter()
            .map(|c| full.schema().index_of(c).unwrap())
            .collect();
        let projected = full.project(&indices).unwrap();
        assert!(projected.num_columns() < full.num_columns());
        let context = PartitionContext {
            topic: "telemetry.metrics".into(),
            partition: 0,
        };
        let run = |rows: &RecordBatch| {
            let mut op = fresh().with_windows(Some(WindowSettings {
                spec: WindowSpec::Tumbling { size_ms: 600_000 },
                out_of_orderness_ms: 0,
                allowed_lateness_ms: 0,
            }));
            let mut out = Emitted::default();
            op.process(&context, rows, &mut out).unwrap();
            (out.alerts, out.tables)
        };
        let (alerts, tables) = run(&full);
        assert!(!alerts.is_empty() && !tables.is_empty());
        assert_eq!(run(&projected), (alerts, tables));
    }

    #[test]
    fn a_firing_alert_resolves_when_its_series_falls_silent() {
        let limits = AnomalyLimits {
            idle_ms: 2 * 3_600_000,
            ..AnomalyLimits::default()
        };
        let mut ops = MetricAlerting::new(
            ScorerConfig::default(),
            limits,
            vec![AlertRule::default_anomaly()],
        );
        // `api` spikes at minute 1990 and then stops; `db` goes on for 7 more hours.
        let mut points = Vec::new();
        for i in 0..2400i64 {
            for (s, service) in ["api", "db"].iter().enumerate() {
                if *service == "api" && i > 1995 {
                    continue;
                }
                let spike = if *service == "api" && i >= 1990 {
                    60.0
                } else {
                    0.0
                };
                points.push(DerivedPoint {
                    ts_ms: 1_700_000_000_000 + i * 60_000,
                    name: "latency_ms".into(),
                    labels: vec![("service".into(), (*service).into())],
                    value: 20.0 + noise((i * 2 + s as i64) as u64) + spike,
                    source_row: i,
                });
            }
        }
        let mut alerts = Vec::new();
        ops.score(
            &gauge_batch(&points, "telemetry.metrics", 0).unwrap(),
            &mut alerts,
        )
        .unwrap();
        let api: Vec<_> = alerts
            .iter()
            .filter(|a| a.labels.contains(&("service".into(), "api".into())))
            .collect();
        let fired = api
            .iter()
            .find(|a| a.status == AlertStatus::Firing)
            .expect("the spike fires");
        let resolved = api
            .iter()
            .find(|a| a.status == AlertStatus::Resolved && a.id == fired.id)
            .expect("the silent series' alert resolves");
        assert!(resolved.summary.contains("went silent"), "{resolved:?}");
        // Resolved at the first eviction step more than the idle limit after its
        // last point (minute 1995).
        let last_ms = 1_700_000_000_000 + 1995 * 60_000;
        assert!(resolved.at > last_ms + limits.idle_ms, "{resolved:?}");
        assert!(
            resolved.at <= last_ms + limits.idle_ms * 5 / 4 + 60_000,
            "{resolved:?}"
        );
        assert_eq!(ops.series(), 2, "silent, not forgotten: its model is kept");
    }

    #[test]
    fn a_spike_fires_then_resolves_for_its_series_only() {
        let mut ops = fresh();
        let mut alerts = Vec::new();
        ops.score(&batch(3000), &mut alerts).unwrap();
        let api: Vec<_> = alerts
            .iter()
            .filter(|a| a.labels.contains(&("service".into(), "api".into())))
            .collect();
        assert!(!api.is_empty(), "no alert for the spike");
        let spike_at = 1_700_000_000_000 + 2500 * 60_000;
        let fired = api
            .iter()
            .find(|a| a.status == AlertStatus::Firing && a.starts_at == spike_at)
            .expect("the spike fires at its first point");
        assert!(api
            .iter()
            .any(|a| a.status == AlertStatus::Resolved && a.id == fired.id));
        assert!(
            alerts
                .iter()
                .all(|a| a.labels.contains(&("service".into(), "api".into()))),
            "db has no anomaly: {alerts:?}"
        );
        assert_eq!(ops.series(), 2);
    }

    #[test]
    fn snapshot_and_restore_in_the_middle_changes_no_alert() {
        let all = batch(3000);
        let mut uninterrupted = fresh();
        let mut expected = Vec::new();
        uninterrupted.score(&all, &mut expected).unwrap();

        let mut first = fresh();
        let mut got = Vec::new();
        let cut = 2 * 2450;
        first.score(&all.slice(0, cut), &mut got).unwrap();
        let snapshot = first.snapshot().unwrap();
        let mut second = MetricAlerting::restore(
            &snapshot,
            ScorerConfig::default(),
            AnomalyLimits::default(),
            vec![AlertRule::default_anomaly()],
        )
        .unwrap();
        second
            .score(&all.slice(cut, all.num_rows() - cut), &mut got)
            .unwrap();
        let key = |a: &AlertRecord| (a.id.clone(), a.status, a.at, a.score.to_bits());
        assert_eq!(
            got.iter().map(key).collect::<Vec<_>>(),
            expected.iter().map(key).collect::<Vec<_>>()
        );
        assert!(!expected.is_empty());
        // Exact: floats survive the JSON snapshot bit for bit (serde_json's
        // float_roundtrip; without it this test fails in the last bits of a score).
        // Deterministic snapshots: the same input gives the same bytes.
        let mut again = fresh();
        again.score(&all.slice(0, cut), &mut Vec::new()).unwrap();
        assert_eq!(again.snapshot().unwrap(), snapshot);
    }

    #[test]
    fn batch_boundaries_and_restores_change_neither_alerts_nor_state() {
        let all = batch(3000);
        let mut whole = fresh();
        let mut expected = Vec::new();
        whole.score(&all, &mut expected).unwrap();
        // The same rows in uneven batches, with a snapshot and restore after each.
        let mut got = Vec::new();
        let mut snapshot = fresh().snapshot().unwrap();
        let mut start = 0;
        for size in [1, 777, 2, 1500, 999].iter().cycle() {
            if start >= all.num_rows() {
                break;
            }
            let len = (*size).min(all.num_rows() - start);
            let mut ops = MetricAlerting::restore(
                &snapshot,
                ScorerConfig::default(),
                AnomalyLimits::default(),
                vec![AlertRule::default_anomaly()],
            )
            .unwrap();
            ops.score(&all.slice(start, len), &mut got).unwrap();
            snapshot = ops.snapshot().unwrap();
            start += len;
        }
        // Rows are batch-relative; everything else must match.
        let unrowed = |list: Vec<AlertRecord>| -> Vec<AlertRecord> {
            list.into_iter()
                .map(|a| AlertRecord { row: 0, ..a })
                .collect()
        };
        assert_eq!(unrowed(got), unrowed(expected));
        assert_eq!(snapshot, whole.snapshot().unwrap());
    }

    #[test]
    fn windows_fire_the_same_whatever_the_batches_and_count_late_points() {
        let settings = WindowSettings {
            spec: WindowSpec::Tumbling { size_ms: 600_000 },
            out_of_orderness_ms: 60_000,
            allowed_lateness_ms: 0,
        };
        let all = batch(3000);
        let mut whole = fresh().with_windows(Some(settings));
        let mut expected = Vec::new();
        whole
            .score_with_windows(&all, &mut Vec::new(), &mut expected)
            .unwrap();
        // 2 series × 3000 one-minute points in epoch-aligned 10-minute windows (the
        // start is 3 min 20 s into one, so 301 per series); the last window of each
        // series waits for a watermark past it.
        assert_eq!(expected.len(), 2 * 300);
        let counted: u64 = expected.iter().map(|w| w.aggregate.count).sum();
        assert!((2 * 2990..2 * 3000).contains(&counted), "{counted}");
        assert!(expected.iter().all(|w| w.aggregate.count <= 10));
        assert!(expected[2..].iter().all(|w| w.aggregate.count == 10));
        let spike = expected
            .iter()
            .find(|w| {
                let t = 1_700_000_000_000 + 2500 * 60_000;
                w.series.contains("api") && w.window.start <= t && t < w.window.end
            })
            .expect("the spike's window");
        assert!(spike.aggregate.max > 60.0 && spike.aggregate.min < 22.0);

        let mut got = Vec::new();
        let mut ops = fresh().with_windows(Some(settings));
        for start in (0..all.num_rows()).step_by(1234) {
            let len = 1234.min(all.num_rows() - start);
            let snapshot = ops.snapshot().unwrap();
            ops = MetricAlerting::restore(
                &snapshot,
                ScorerConfig::default(),
                AnomalyLimits::default(),
                vec![AlertRule::default_anomaly()],
            )
            .unwrap()
            .with_windows(Some(settings));
            ops.score_with_windows(&all.slice(start, len), &mut Vec::new(), &mut got)
                .unwrap();
        }
        assert_eq!(got, expected);
        assert_eq!(ops.late_points(), 0);
    }

    #[test]
    fn a_raised_watermark_fires_open_windows_resolves_silent_series_and_makes_points_late() {
        let limits = AnomalyLimits {
            idle_ms: 3_600_000,
            ..AnomalyLimits::default()
        };
        let settings = WindowSettings {
            spec: WindowSpec::Tumbling { size_ms: 600_000 },
            out_of_orderness_ms: 60_000,
            allowed_lateness_ms: 0,
        };
        let mut ops = MetricAlerting::new(
            ScorerConfig::default(),
            limits,
            vec![AlertRule::default_anomaly()],
        )
        .with_windows(Some(settings));
        let context = PartitionContext {
            topic: "telemetry.metrics".into(),
            partition: 0,
        };
        // 2600 minutes with the `api` spike at 2500..2510: the alert is firing when
        // the rows stop.
        let all = batch(2505);
        let mut out = Emitted::default();
        Operator::process(&mut ops, &context, &all, &mut out).unwrap();
        let firing: Vec<_> = out
            .alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Firing)
            .map(|a| a.id.clone())
            .collect();
        assert!(!firing.is_empty());
        let last_ms = 1_700_000_000_000 + 2504 * 60_000;
        assert_eq!(Operator::watermark(&ops), Some(last_ms - 60_000));

        // Lower or equal watermarks change nothing.
        let mut nothing = Emitted::default();
        Operator::advance_watermark(&mut ops, &context, last_ms - 120_000, &mut nothing).unwrap();
        assert!(nothing.is_empty());

        // The runtime raises it two hours on (the partition went idle).
        let raised = last_ms + 2 * 3_600_000;
        let mut after = Emitted::default();
        Operator::advance_watermark(&mut ops, &context, raised, &mut after).unwrap();
        assert_eq!(Operator::watermark(&ops), Some(raised));
        let resolved: Vec<_> = after
            .alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Resolved)
            .map(|a| a.id.clone())
            .collect();
        assert_eq!(
            resolved, firing,
            "both series went silent; the firing one resolves"
        );
        let [(Table::MetricWindows, windows)] = &after.tables[..] else {
            panic!("one metric_windows batch expected: {:?}", after.tables);
        };
        assert_eq!(windows.num_rows(), 2, "the last open window of each series");
        assert_eq!(ops.series(), 2, "silent series keep their models");

        // A point behind the raised watermark is scored but late for its window.
        let mut late = Emitted::default();
        Operator::process(
            &mut ops,
            &context,
            &all.slice(all.num_rows() - 2, 2),
            &mut late,
        )
        .unwrap();
        assert_eq!(late.late, 2);
        // And the raise survives a snapshot.
        let restored = MetricAlerting::restore(
            &ops.snapshot().unwrap(),
            ScorerConfig::default(),
            limits,
            vec![AlertRule::default_anomaly()],
        )
        .unwrap();
        assert_eq!(Operator::watermark(&restored), Some(raised));
    }

    #[test]
    fn a_corrupt_snapshot_is_an_error_not_a_panic() {
        let fresh = MetricAlerting::new(ScorerConfig::default(), AnomalyLimits::default(), vec![]);
        let encoded = fresh.snapshot().unwrap();
        for corrupt in [
            &b"{not json"[..],
            &encoded[..encoded.len() / 2],
            b"CAS\x01\xc1",
        ] {
            let r = MetricAlerting::restore(
                corrupt,
                ScorerConfig::default(),
                AnomalyLimits::default(),
                vec![],
            );
            assert!(r.is_err(), "{corrupt:?}");
        }
    }
}
