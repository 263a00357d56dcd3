//! SLOs over a pair of counter metrics, first stage: on each metrics partition, per
//! SLO and minute, the increase of the `good` counter and of the `total` counter
//! over every series with the SLO's labels (e.g. `http_requests_ok_total` and
//! `http_requests_total` with `service="api"`).
//!
//! Owns the last value of each counted series, to turn counter samples into
//! increases: a sample below the previous one is a reset (the counter restarted and
//! counted its value since), and a series' first sample only sets the start. An
//! increase is counted in the minute of the sample that shows it, rounded to whole
//! events. Metrics are keyed by service, so a series stays in one partition.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};

use super::minutes::{MinuteCounter, SliRows, SloStage};
use super::{Counts, SloSpec};
use crate::columns;
use crate::operator::OperatorError;

/// An availability SLO over two counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSlo {
    /// Name, objective, period, burn rules.
    pub spec: SloSpec,
    /// Counter of good events.
    pub good_metric: String,
    /// Counter of all events.
    pub total_metric: String,
    /// Labels a series must have (all of them, equal values).
    pub labels: BTreeMap<String, String>,
}

/// The SLOs over counter metrics, as the first stage reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSlis(pub Vec<MetricSlo>);

/// The first SLO stage of one metrics partition.
pub type MetricSloCounter = SloStage<MetricSlis>;

/// The last sample of each counted series (name and sorted labels).
pub type LastSamples = BTreeMap<String, f64>;

/// Which of an SLO's counters a series is.
#[derive(Clone, Copy)]
enum Role {
    Good,
    Total,
}

impl SliRows for MetricSlis {
    type State = LastSamples;

    fn names(&self) -> Vec<&str> {
        self.0.iter().map(|s| s.spec.name.as_str()).collect()
    }

    fn count(
        &self,
        last: &mut LastSamples,
        rows: &RecordBatch,
        counter: &mut MinuteCounter,
        out_of_orderness_ms: i64,
    ) -> Result<(), OperatorError> {
        let ts = columns::timestamps(rows, "ts")?;
        let name = columns::strings(rows, "name")?;
        let value = columns::floats(rows, "value")?;
        let (labels, keys, values) = columns::string_map(rows, "labels")?;
        let offsets = labels.value_offsets();
        let mut row_labels: Vec<(&str, &str)> = Vec::new();
        for row in 0..rows.num_rows() {
            let t = ts.value(row);
            let metric = name.value(row);
            let through = counter.final_through(out_of_orderness_ms);
            let mut key: Option<String> = None;
            for slo in &self.0 {
                let role = if metric == slo.good_metric {
                    Role::Good
                } else if metric == slo.total_metric {
                    Role::Total
                } else {
                    continue;
                };
                if key.is_none() {
                    let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
                    row_labels.clear();
                    row_labels.extend((start..end).map(|i| (keys.value(i), values.value(i))));
                    row_labels.sort_unstable();
                    let mut k = metric.to_owned();
                    for (lk, lv) in &row_labels {
                        k.push('\u{1f}');
                        k.push_str(lk);
                        k.push('=');
                        k.push_str(lv);
                    }
                    key = Some(k);
                }
                let matches = slo
                    .labels
                    .iter()
                    .all(|(k, v)| row_labels.iter().any(|(lk, lv)| lk == k && lv == v));
                // The last sample is per series, not per SLO: read it here, move it
                // after every SLO has counted the row.
                let previous = key.as_ref().and_then(|series| last.get(series)).copied();
                let (true, Some(previous)) = (matches, previous) else {
                    continue;
                };
                let sample = value.value(row);
                let increase = if sample >= previous {
                    sample - previous
                } else {
                    sample
                };
                let events = increase.round().max(0.0) as u64;
                let counts = match role {
                    Role::Good => Counts {
                        good: events,
                        total: 0,
                    },
                    Role::Total => Counts {
                        good: 0,
                        total: events,
                    },
                };
                counter.add(&slo.spec.name, t, counts, through);
            }
            if let Some(series) = key {
                last.insert(series, value.value(row));
            }
            counter.saw(t);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::{Emitted, Operator, PartitionContext};
    use crate::series::{gauge_batch, DerivedPoint};
    use crate::slo::partial::SloPartial;

    const T0: i64 = 1_700_000_040_000;

    fn counter(name: &str, service: &str, ts_ms: i64, value: f64) -> DerivedPoint {
        DerivedPoint {
            ts_ms,
            name: name.into(),
            labels: vec![("service".into(), service.into())],
            value,
            source_row: 0,
        }
    }

    #[test]
    fn increases_of_the_two_counters_become_good_and_total_per_minute() {
        let slo = MetricSlo {
            spec: SloSpec {
                name: "api-availability".into(),
                objective: 0.99,
                period_ms: 30 * 24 * 3_600_000,
                out_of_orderness_ms: 30_000,
                rules: crate::slo::default_burn_rules(),
                service: None,
            },
            good_metric: "requests_ok_total".into(),
            total_metric: "requests_total".into(),
            labels: [("service".to_owned(), "api".to_owned())].into(),
        };
        let mut points = Vec::new();
        // Every 15 s: 100 more requests, 98 of them good; a reset of the total
        // counter at 1:00 (it restarts from 100); another service's counters.
        let (mut ok, mut all) = (1_000.0, 1_000.0);
        for i in 0..12i64 {
            let t = T0 + i * 15_000;
            ok += 98.0;
            all = if i == 4 { 100.0 } else { all + 100.0 };
            points.push(counter("requests_ok_total", "api", t, ok));
            points.push(counter("requests_total", "api", t, all));
            points.push(counter("requests_total", "web", t, 5.0 * i as f64));
        }
        let batch = gauge_batch(&points, "telemetry.metrics", 0).unwrap();
        let mut op = MetricSloCounter::new(MetricSlis(vec![slo]), 30_000);
        let context = PartitionContext {
            topic: "telemetry.metrics".into(),
            partition: 0,
        };
        let mut out = Emitted::default();
        op.process(&context, &batch, &mut out).unwrap();
        let sent: Vec<SloPartial> = out
            .messages
            .iter()
            .map(|m| serde_json::from_slice(&m.payload).unwrap())
            .collect();
        // Watermark 2:45 − 30 s: minutes 0 and 1 are final.
        let minutes = &sent[0].minutes;
        assert_eq!(minutes.len(), 2);
        // Minute 0: samples at 0, 15, 30, 45 s; the first only sets the start.
        assert_eq!((minutes[0].good, minutes[0].total), (3 * 98, 3 * 100));
        // Minute 1: the reset at 1:00 counts its 100, then 3 × 100 more.
        assert_eq!((minutes[1].good, minutes[1].total), (4 * 98, 4 * 100));
    }
}
