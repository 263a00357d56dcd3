//! Traces, second stage: every span partition's cells merged per minute, tables
//! `red` and `service_graph`, and anomaly scoring of each service's latency, error
//! ratio and request rate.
//!
//! Owns the marks of the span partitions (which minutes are applied and which may
//! close follow the exchange rule of [`crate::exchange`]: replays count once, a
//! minute closes when every span partition has passed it), the merged cells of
//! minutes not yet closed, and the scoring state. A closed minute's rows are final. Each closed minute gives, per service, three derived gauges
//! (`service_latency_p99_ms`, `service_error_ratio`, `service_requests_per_s`) that
//! the metric anomaly operator scores like any metric series.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::error::ArrowError;
use serde::{Deserialize, Serialize};

use super::cell::Cell;
use super::partial::TracePartial;
use crate::alert::AlertRule;
use crate::anomaly::alerting::MetricAlerting;
use crate::anomaly::operator::AnomalyLimits;
use crate::anomaly::ScorerConfig;
use crate::exchange::{stored_records, SourceMarks};
use crate::operator::{Emitted, Operator, OperatorError, PartitionContext};
use crate::schema::Table;
use crate::series::{gauge_batch, DerivedPoint};
use crate::snapshot::{self, SnapshotError};

use crate::minutes::{take_final, MINUTE_MS};

/// The merged cells of one minute.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Merged {
    #[serde(with = "crate::map_as_list")]
    red: BTreeMap<(String, String), Cell>,
    #[serde(with = "crate::map_as_list")]
    edges: BTreeMap<(String, String), Cell>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CombinerState {
    /// Which minutes of which span partition are applied (see [`crate::exchange`]).
    applied: SourceMarks,
    #[serde(with = "crate::map_as_list")]
    open: BTreeMap<i64, Merged>,
    /// Minutes before this one are closed.
    closed_through: Option<i64>,
    /// Records of a minute already closed (a source the watermark did not wait for).
    late_records: u64,
    scoring: MetricAlerting,
}

/// How the derived series are scored.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceScoring {
    /// Detector tuning.
    pub scorer: ScorerConfig,
    /// Series limits.
    pub limits: AnomalyLimits,
    /// Alert rules over the derived series.
    pub rules: Vec<AlertRule>,
}

/// The second trace stage (reads the one exchange partition).
#[derive(Debug, Clone, PartialEq)]
pub struct TraceCombiner {
    expected_sources: usize,
    scoring: TraceScoring,
    state: CombinerState,
}

impl TraceCombiner {
    /// Fresh state, waiting for `expected_sources` span partitions.
    pub fn new(expected_sources: usize, scoring: TraceScoring) -> Self {
        let alerting = MetricAlerting::new(scoring.scorer, scoring.limits, scoring.rules.clone());
        TraceCombiner {
            expected_sources,
            scoring,
            state: CombinerState {
                applied: SourceMarks::default(),
                open: BTreeMap::new(),
                closed_through: None,
                late_records: 0,
                scoring: alerting,
            },
        }
    }

    /// State continuing from [`Operator::snapshot`], with the current scoring.
    pub fn restore(
        snapshot: &[u8],
        expected_sources: usize,
        scoring: TraceScoring,
    ) -> Result<Self, SnapshotError> {
        let mut state: CombinerState = snapshot::decode(snapshot)?;
        state.scoring =
            state
                .scoring
                .reconfigured(scoring.scorer, scoring.limits, scoring.rules.clone());
        Ok(TraceCombiner {
            expected_sources,
            scoring,
            state,
        })
    }

    /// Records that came for a closed minute.
    pub fn late_records(&self) -> u64 {
        self.state.late_records
    }

    fn apply(&mut self, record: TracePartial) {
        let TracePartial {
            source_topic,
            source_partition,
            through_minute,
            minute,
            red,
            edges,
        } = record;
        let state = &mut self.state;
        let Some(merged) = state.applied.admit(
            (source_topic, source_partition),
            minute,
            through_minute,
            &mut state.open,
            state.closed_through,
            &mut state.late_records,
        ) else {
            return;
        };
        for r in red {
            merged
                .red
                .entry((r.service, r.operation))
                .or_default()
                .merge(&r.cell);
        }
        for e in edges {
            merged
                .edges
                .entry((e.caller, e.callee))
                .or_default()
                .merge(&e.cell);
        }
    }

    /// Minutes before this one may close.
    fn closable_through(&self) -> Option<i64> {
        self.state.applied.low_mark(self.expected_sources)
    }
}

impl Operator for TraceCombiner {
    fn name(&self) -> &'static str {
        "trace_combiner"
    }

    fn tables(&self) -> Vec<Table> {
        vec![Table::Red, Table::ServiceGraph, Table::Alerts]
    }

    fn process(
        &mut self,
        context: &PartitionContext,
        rows: &RecordBatch,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        for (_, record) in stored_records::<TracePartial>(rows)? {
            self.apply(record);
        }
        let Some(through) = self.closable_through() else {
            return Ok(());
        };
        let Some(closed) = take_final(
            &mut self.state.open,
            &mut self.state.closed_through,
            through,
        )
        .filter(|closed| !closed.is_empty()) else {
            return Ok(());
        };
        out.tables.push((Table::Red, red_batch(&closed)?));
        if closed.values().any(|m| !m.edges.is_empty()) {
            out.tables
                .push((Table::ServiceGraph, graph_batch(&closed)?));
        }
        // Per service and minute: the derived series the anomaly operator scores,
        // stamped at the minute's end (as a rate over a window is, in Prometheus):
        // only then is the minute's value known, so an alert on it starts no earlier
        // than the trouble it reports could have been seen.
        let last_row = rows.num_rows().saturating_sub(1) as i64;
        let mut points = Vec::new();
        for (minute, merged) in &closed {
            let mut by_service: BTreeMap<&str, Cell> = BTreeMap::new();
            for ((service, _), cell) in &merged.red {
                by_service.entry(service).or_default().merge(cell);
            }
            for (service, cell) in by_service {
                let labels = vec![("service".to_owned(), service.to_owned())];
                for (name, value) in [
                    ("service_latency_p99_ms", cell.quantile_ms(0.99)),
                    ("service_error_ratio", cell.error_ratio()),
                    ("service_requests_per_s", cell.requests as f64 / 60.0),
                ] {
                    points.push(DerivedPoint {
                        ts_ms: (minute + 1) * MINUTE_MS,
                        name: name.into(),
                        labels: labels.clone(),
                        value,
                        source_row: last_row,
                    });
                }
            }
        }
        let batch = gauge_batch(&points, &context.topic, context.partition)?;
        let first_alert = out.alerts.len();
        self.state
            .scoring
            .score(&batch, &mut out.alerts)
            .map_err(OperatorError::Schema)?;
        for alert in &mut out.alerts[first_alert..] {
            alert.row = last_row as usize;
        }
        Ok(())
    }

    fn watermark(&self) -> Option<i64> {
        self.closable_through().map(|m| m * MINUTE_MS)
    }

    /// The end of the next minute to close: its RED series and calls are stamped
    /// there, nothing it raises is earlier.
    fn quiet_before(&self) -> Option<i64> {
        self.closable_through()
            .map(|m| m.saturating_add(1).saturating_mul(MINUTE_MS))
    }

    fn snapshot(&self) -> Result<Vec<u8>, OperatorError> {
        Ok(snapshot::encode(&self.state)?)
    }
}

/// Table `red`: per service, operation and minute.
fn red_batch(closed: &BTreeMap<i64, Merged>) -> Result<RecordBatch, ArrowError> {
    let mut rows = CellRows::default();
    for (minute, merged) in closed {
        for ((service, operation), cell) in &merged.red {
            rows.push(service, operation, *minute, cell);
        }
    }
    rows.finish(Table::Red)
}

/// Table `service_graph`: per caller, callee and minute.
fn graph_batch(closed: &BTreeMap<i64, Merged>) -> Result<RecordBatch, ArrowError> {
    let mut rows = CellRows::default();
    for (minute, merged) in closed {
        for ((caller, callee), cell) in &merged.edges {
            rows.push(caller, callee, *minute, cell);
        }
    }
    rows.finish(Table::ServiceGraph)
}

/// The columns `red` and `service_graph` share: two names, the window, then the
/// cell's numbers.
#[derive(Default)]
struct CellRows {
    first: StringBuilder,
    second: StringBuilder,
    start: TimestampMillisecondBuilder,
    end: TimestampMillisecondBuilder,
    requests: Int64Builder,
    errors: Int64Builder,
    rate: Float64Builder,
    error_ratio: Float64Builder,
    p50: Float64Builder,
    p90: Float64Builder,
    p99: Float64Builder,
    p999: Float64Builder,
    max: Float64Builder,
}

impl CellRows {
    fn push(&mut self, first: &str, second: &str, minute: i64, cell: &Cell) {
        self.first.append_value(first);
        self.second.append_value(second);
        self.start.append_value(minute * MINUTE_MS);
        self.end.append_value((minute + 1) * MINUTE_MS);
        self.requests
            .append_value(i64::try_from(cell.requests).unwrap_or(i64::MAX));
        self.errors
            .append_value(i64::try_from(cell.errors).unwrap_or(i64::MAX));
        self.rate.append_value(cell.requests as f64 / 60.0);
        self.error_ratio.append_value(cell.error_ratio());
        let [p50, p90, p99, p999] = cell.quantiles_ms([0.5, 0.9, 0.99, 0.999]);
        self.p50.append_value(p50);
        self.p90.append_value(p90);
        self.p99.append_value(p99);
        self.p999.append_value(p999);
        self.max.append_value(cell.max_ms());
    }

    fn finish(mut self, table: Table) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.first.finish()),
            Arc::new(self.second.finish()),
            Arc::new(self.start.finish().with_timezone("UTC")),
            Arc::new(self.end.finish().with_timezone("UTC")),
            Arc::new(self.requests.finish()),
            Arc::new(self.errors.finish()),
            Arc::new(self.rate.finish()),
            Arc::new(self.error_ratio.finish()),
            Arc::new(self.p50.finish()),
            Arc::new(self.p90.finish()),
            Arc::new(self.p99.finish()),
            Arc::new(self.p999.finish()),
            Arc::new(self.max.finish()),
        ];
        RecordBatch::try_new(table.schema(), columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::{ExchangeRecord, RecordRows};
    use crate::operator::Outbound;
    use crate::slo::spans::tests::spans;
    use crate::traces::counter::{TraceCounter, TraceSettings};
    use arrow::array::AsArray;
    use arrow::datatypes::{Float64Type, Int64Type};

    const T0: i64 = 1_700_000_040_000;

    fn scoring() -> TraceScoring {
        TraceScoring {
            scorer: ScorerConfig::default(),
            limits: AnomalyLimits::default(),
            rules: vec![AlertRule::default_anomaly()],
        }
    }

    #[test]
    fn cells_of_every_partition_merge_into_exact_counts_and_close_when_all_have_passed() {
        let settings = TraceSettings::default();
        let mut counters = [TraceCounter::new(settings), TraceCounter::new(settings)];
        let mut records: Vec<String> = Vec::new();
        let mut all_durations: Vec<f64> = Vec::new();
        for (p, counter) in counters.iter_mut().enumerate() {
            let rows: Vec<_> = (0..300)
                .map(|i| {
                    let d = 5.0 + ((i * 7 + p * 3) % 100) as f64;
                    (T0 + i as i64 * 400, "checkout", "POST /pay", i % 10 != 0, d)
                })
                .collect();
            all_durations.extend(rows.iter().filter(|r| r.0 < T0 + 60_000).map(|r| r.4));
            let context = PartitionContext {
                topic: "telemetry.spans".into(),
                partition: p as i32,
            };
            let mut out = Emitted::default();
            counter.process(&context, &spans(&rows), &mut out).unwrap();
            assert!(out
                .messages
                .iter()
                .all(|m| m.topic == Outbound::TracePartials));
            records.extend(
                out.messages
                    .iter()
                    .map(|m| String::from_utf8(m.payload.clone()).unwrap()),
            );
        }
        let mut rows = RecordRows::new(Table::TracePartials);
        for (i, json) in records.iter().enumerate() {
            let record: TracePartial = serde_json::from_str(json).unwrap();
            rows.append(&record.row(), json, "cara.internal.traces", 0, i as i64);
        }
        let batch = rows.finish();
        let context = PartitionContext {
            topic: "cara.internal.traces".into(),
            partition: 0,
        };
        // Only one source expected too many: nothing closes.
        let mut waiting = TraceCombiner::new(3, scoring());
        let mut out = Emitted::default();
        waiting.process(&context, &batch, &mut out).unwrap();
        assert!(out.tables.is_empty());

        let mut combiner = TraceCombiner::new(2, scoring());
        let mut out = Emitted::default();
        combiner.process(&context, &batch, &mut out).unwrap();
        let (_, red) = out.tables.iter().find(|(t, _)| *t == Table::Red).unwrap();
        // 300 spans over 120 s per partition; watermark 119.6 s - 30 s: minute 0 only.
        assert_eq!(red.num_rows(), 1);
        let requests = red
            .column_by_name("requests")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(requests.value(0), 2 * 150);
        let errors = red
            .column_by_name("errors")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(errors.value(0), 2 * 15);
        all_durations.sort_by(f64::total_cmp);
        let rank = (0.99 * all_durations.len() as f64).ceil() as usize;
        let exact_p99 = all_durations[rank - 1];
        let p99 = red
            .column_by_name("p99_ms")
            .unwrap()
            .as_primitive::<Float64Type>();
        assert!(
            (p99.value(0) - exact_p99).abs() <= exact_p99 * 1e-3 + 1e-3,
            "{} vs {exact_p99}",
            p99.value(0)
        );
        assert_eq!(Operator::watermark(&combiner), Some(T0 + 60_000));
    }

    #[test]
    fn a_latency_spike_in_the_merged_minutes_raises_an_anomaly_alert_on_the_service() {
        use crate::alert::AlertStatus;
        use crate::traces::partial::RedCell;
        // One source; 600 minutes of steady latency for `checkout`, then five slow.
        let mut rows = RecordRows::new(Table::TracePartials);
        let m0 = T0 / 60_000;
        for i in 0..610i64 {
            let slow = i >= 600;
            let mut cell = Cell::new();
            for k in 0..50 {
                let base = 20.0 + (k % 10) as f64 + (i % 3) as f64;
                cell.observe(if slow { base * 8.0 } else { base }, false);
            }
            let record = TracePartial {
                source_topic: "telemetry.spans".into(),
                source_partition: 0,
                through_minute: m0 + i + 1,
                minute: Some(m0 + i),
                red: vec![RedCell {
                    service: "checkout".into(),
                    operation: "POST /pay".into(),
                    cell,
                }],
                edges: vec![],
            };
            let json = String::from_utf8(record.to_json()).unwrap();
            rows.append(&record.row(), &json, "cara.internal.traces", 0, i);
        }
        let mut combiner = TraceCombiner::new(1, scoring());
        let context = PartitionContext {
            topic: "cara.internal.traces".into(),
            partition: 0,
        };
        let mut out = Emitted::default();
        combiner
            .process(&context, &rows.finish(), &mut out)
            .unwrap();
        let fired: Vec<_> = out
            .alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Firing)
            .collect();
        assert!(!fired.is_empty(), "the slow minutes alert");
        let spike_ms = (m0 + 600) * 60_000;
        for a in &fired {
            assert!(a.labels.contains(&("service".into(), "checkout".into())));
            assert!(
                a.starts_at >= spike_ms,
                "nothing fires before the spike: {a:?}"
            );
        }
        assert!(fired.iter().any(|a| a
            .labels
            .contains(&("__name__".into(), "service_latency_p99_ms".into()))));
    }

    /// What the combiner promises the incident stage (`quiet_before`) holds: no
    /// alert and no call it raises later is earlier, and the promise runs a minute
    /// ahead of its watermark (the minute still open is stamped at its end).
    #[test]
    fn nothing_raised_later_is_earlier_than_the_promise() {
        use crate::incidents::partial::AlertPartial;
        use crate::incidents::reporter::ReportsAlerts;
        use crate::traces::partial::{EdgeCell, RedCell};
        let m0 = T0 / 60_000;
        let partial = |source: i32, i: i64| {
            let mut cell = Cell::new();
            for k in 0..50 {
                let base = 20.0 + (k % 10) as f64 + (i % 3) as f64;
                cell.observe(if i >= 90 { base * 8.0 } else { base }, i >= 95);
            }
            TracePartial {
                source_topic: "telemetry.spans".into(),
                source_partition: source,
                through_minute: m0 + i + 1,
                minute: Some(m0 + i),
                red: vec![RedCell {
                    service: "checkout".into(),
                    operation: "POST /pay".into(),
                    cell: cell.clone(),
                }],
                edges: vec![EdgeCell {
                    caller: "web".into(),
                    callee: "checkout".into(),
                    cell,
                }],
            }
        };
        let mut combiner = ReportsAlerts::wrap(Box::new(TraceCombiner::new(2, scoring())));
        let context = PartitionContext {
            topic: "cara.internal.traces".into(),
            partition: 0,
        };
        let (mut raised, mut promised_ahead) = (0, 0);
        let mut promise: Option<i64> = None;
        // The two sources take turns: each call brings one of them a minute on.
        for (offset, (source, i)) in (0..100i64).flat_map(|i| [(0, i), (1, i)]).enumerate() {
            let record = partial(source, i);
            let mut rows = RecordRows::new(Table::TracePartials);
            let json = String::from_utf8(record.to_json()).unwrap();
            rows.append(
                &record.row(),
                &json,
                "cara.internal.traces",
                0,
                offset as i64,
            );
            let mut out = Emitted::default();
            combiner
                .process(&context, &rows.finish(), &mut out)
                .unwrap();
            let sent = out
                .messages
                .iter()
                .map(|m| serde_json::from_slice::<AlertPartial>(&m.payload).unwrap());
            for partial in sent {
                for at in partial
                    .alerts
                    .iter()
                    .map(|a| a.at)
                    .chain(partial.calls.iter().map(|c| c.at_ms))
                {
                    assert!(promise.is_none_or(|p| at >= p), "{at} before {promise:?}");
                    raised += 1;
                }
                promise = Some(partial.through_ms);
            }
            if let (Some(p), Some(w)) = (combiner.quiet_before(), combiner.watermark()) {
                assert_eq!(p, w + 60_000, "a minute ahead of its watermark");
                promised_ahead += 1;
            }
        }
        assert!(raised > 100, "{raised} alerts and calls checked");
        assert!(promised_ahead > 100);
    }
}
