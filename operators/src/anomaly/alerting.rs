//! Metric alerting as one unit of operator state per source partition: the anomaly
//! operator scoring every series of the partition, and the alert rules over its
//! scores. Snapshots are JSON, restored with the current configuration.

use arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};

use super::operator::{AnomalyLimits, AnomalyOperator, SchemaMismatch, ScoredPoint};
use super::ScorerConfig;
use crate::alert::{AlertEvaluator, AlertRecord, AlertRule};

/// Why a snapshot could not be restored.
#[derive(Debug, thiserror::Error)]
#[error("operator snapshot: {0}")]
pub struct SnapshotError(String);

/// Scoring and alerting of one partition's metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricAlerting {
    anomaly: AnomalyOperator,
    alerts: AlertEvaluator,
    /// Rules the alert states belong to (to notice a changed configuration).
    rules: Vec<AlertRule>,
    #[serde(skip)]
    scored: Vec<ScoredPoint>,
}

impl MetricAlerting {
    /// Fresh state.
    pub fn new(config: ScorerConfig, limits: AnomalyLimits, rules: Vec<AlertRule>) -> Self {
        MetricAlerting {
            anomaly: AnomalyOperator::new(config, limits),
            alerts: AlertEvaluator::new(rules.clone()),
            rules,
            scored: Vec::new(),
        }
    }

    /// State restored from [`snapshot`](Self::snapshot). The detectors' state is kept;
    /// if the rules changed since, alert states start afresh (a firing alert of a
    /// removed or edited rule is not resolved).
    pub fn restore(
        snapshot: &str,
        config: ScorerConfig,
        limits: AnomalyLimits,
        rules: Vec<AlertRule>,
    ) -> Result<Self, SnapshotError> {
        let mut state: MetricAlerting =
            serde_json::from_str(snapshot).map_err(|e| SnapshotError(e.to_string()))?;
        state.anomaly.reconfigure(config, limits);
        if state.rules != rules {
            state.alerts = AlertEvaluator::new(rules.clone());
            state.rules = rules;
        }
        Ok(state)
    }

    /// The state as JSON.
    pub fn snapshot(&self) -> String {
        // Every field is plain data (numbers, strings, maps with string keys), which
        // serde_json always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Scores a metrics batch in row order and appends the alert transitions.
    pub fn process(
        &mut self,
        batch: &RecordBatch,
        alerts: &mut Vec<AlertRecord>,
    ) -> Result<(), SchemaMismatch> {
        self.scored.clear();
        self.anomaly.process(batch, &mut self.scored)?;
        for point in &self.scored {
            self.alerts.observe(point, alerts);
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, Float64Builder, Int32Builder, Int64Builder, MapBuilder, StringBuilder,
        TimestampMillisecondBuilder,
    };

    use super::*;
    use crate::alert::AlertStatus;
    use crate::schema::Table;

    /// Pseudo-random noise in [0, 1) (a multiplicative hash of the index).
    fn noise(i: u64) -> f64 {
        let x = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Two series, one point each per minute, with a spike in `api` at point 2500.
    fn batch(points: usize) -> RecordBatch {
        let mut ts = TimestampMillisecondBuilder::new().with_timezone("UTC");
        let mut name = StringBuilder::new();
        let mut value = Float64Builder::new();
        let mut kind = StringBuilder::new();
        let mut service = StringBuilder::new();
        let mut labels = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        let mut extra = StringBuilder::new();
        let mut topic = StringBuilder::new();
        let mut partition = Int32Builder::new();
        let mut offset = Int64Builder::new();
        let mut index = Int32Builder::new();
        for i in 0..points {
            for (s, svc) in ["api", "db"].iter().enumerate() {
                let wobble = noise((i * 2 + s) as u64);
                let spike = if *svc == "api" && (2500..2510).contains(&i) {
                    40.0
                } else {
                    0.0
                };
                ts.append_value(1_700_000_000_000 + i as i64 * 60_000);
                name.append_value("latency_ms");
                value.append_value(20.0 + wobble + spike);
                kind.append_value("gauge");
                service.append_value(*svc);
                labels.keys().append_value("service");
                labels.values().append_value(*svc);
                labels.append(true).unwrap();
                extra.append_null();
                topic.append_value("telemetry.metrics");
                partition.append_value(0);
                offset.append_value((i * 2 + s) as i64);
                index.append_value(0);
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(ts.finish()),
            Arc::new(name.finish()),
            Arc::new(value.finish()),
            Arc::new(kind.finish()),
            Arc::new(service.finish()),
            Arc::new(labels.finish()),
            Arc::new(extra.finish()),
            Arc::new(topic.finish()),
            Arc::new(partition.finish()),
            Arc::new(offset.finish()),
            Arc::new(index.finish()),
        ];
        RecordBatch::try_new(Table::Metrics.schema(), columns).unwrap()
    }

    fn fresh() -> MetricAlerting {
        MetricAlerting::new(
            ScorerConfig::default(),
            AnomalyLimits::default(),
            vec![AlertRule::default_anomaly()],
        )
    }

    #[test]
    fn a_spike_fires_then_resolves_for_its_series_only() {
        let mut ops = fresh();
        let mut alerts = Vec::new();
        ops.process(&batch(3000), &mut alerts).unwrap();
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
        uninterrupted.process(&all, &mut expected).unwrap();

        let mut first = fresh();
        let mut got = Vec::new();
        let cut = 2 * 2450;
        first.process(&all.slice(0, cut), &mut got).unwrap();
        let snapshot = first.snapshot();
        let mut second = MetricAlerting::restore(
            &snapshot,
            ScorerConfig::default(),
            AnomalyLimits::default(),
            vec![AlertRule::default_anomaly()],
        )
        .unwrap();
        second
            .process(&all.slice(cut, all.num_rows() - cut), &mut got)
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
        again.process(&all.slice(0, cut), &mut Vec::new()).unwrap();
        assert_eq!(again.snapshot(), snapshot);
    }

    #[test]
    fn batch_boundaries_and_restores_change_neither_alerts_nor_state() {
        let all = batch(3000);
        let mut whole = fresh();
        let mut expected = Vec::new();
        whole.process(&all, &mut expected).unwrap();
        // The same rows in uneven batches, with a snapshot and restore after each.
        let mut got = Vec::new();
        let mut snapshot = fresh().snapshot();
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
            ops.process(&all.slice(start, len), &mut got).unwrap();
            snapshot = ops.snapshot();
            start += len;
        }
        // Rows are batch-relative; everything else must match.
        let unrowed = |list: Vec<AlertRecord>| -> Vec<AlertRecord> {
            list.into_iter()
                .map(|a| AlertRecord { row: 0, ..a })
                .collect()
        };
        assert_eq!(unrowed(got), unrowed(expected));
        assert_eq!(snapshot, whole.snapshot());
    }

    #[test]
    fn a_corrupt_snapshot_is_an_error_not_a_panic() {
        let r = MetricAlerting::restore(
            "{not json",
            ScorerConfig::default(),
            AnomalyLimits::default(),
            vec![],
        );
        assert!(r.is_err());
    }
}
