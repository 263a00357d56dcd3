//! The two cost stages as operators of the dataflow.
//!
//! - [`CostMeter`], a part of every metric partition's stack: meters the usage and
//!   capacity series the config names ([`super::UsageMetrics`]) by owner (the
//!   `owner_label` label, or the `service` column when that is the label) into
//!   windows, and sends each closed window's usage to the cost exchange (one record
//!   per window, then progress; [`super::partial`]).
//! - [`CostCombiner`], on the one exchange partition: admits the records by the
//!   exchange rule ([`crate::exchange`]: a replay counts once, a window closes when
//!   every metric partition has passed it), bills each closed window
//!   ([`super::ledger`]), writes table `costs` and topic `cara.costs`, and raises
//!   the budget and cost-anomaly alerts ([`super::alerts`]).
//!
//! Both are functions of their input rows in order; their state round-trips through
//! [`Operator::snapshot`].

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Decimal128Builder, Float64Builder, RecordBatch, StringBuilder,
    TimestampMillisecondBuilder,
};
use serde::{Deserialize, Serialize};

use super::alerts::CostAlerts;
use super::ledger::{CostLedger, CostRow};
use super::money::decimal_text as decimal;
use super::partial::{CostPartial, PartitionMeter, SourceGroup};
use super::CostSettings;
use super::Resource;
use crate::columns;
use crate::exchange::{stored_records, SourceMarks};
use crate::map_as_list::hashed::{new_map, FastMap};
use crate::operator::{
    Emitted, Operator, OperatorError, Outbound, OutboundMessage, PartitionContext,
};
use crate::schema::{money_type, Table};
use crate::snapshot::{self, SnapshotError};
use crate::stable_hash::Fnv1a;

/// What a metric partition's meter keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct MeterState {
    /// The windows' usage and the clock; `late` counts the points refused (behind
    /// their series' last point or in a closed window).
    part: PartitionMeter,
    /// Every series' (a hash of its name, service and labels) last window counted
    /// as active: a series is billed a window's worth of series-time once per window
    /// it has points in.
    #[serde(with = "crate::map_as_list::hashed_as_map")]
    active_in: FastMap<u64, i64>,
}

/// The first cost stage: a metric partition's usage per window (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct CostMeter {
    settings: Arc<CostSettings>,
    state: MeterState,
}

impl CostMeter {
    /// Fresh state.
    pub fn new(settings: Arc<CostSettings>) -> CostMeter {
        CostMeter {
            state: MeterState {
                part: PartitionMeter::new(&settings),
                active_in: new_map(),
            },
            settings,
        }
    }

    /// State continuing from [`Operator::snapshot`].
    pub fn restore(snapshot: &[u8], settings: Arc<CostSettings>) -> Result<Self, SnapshotError> {
        Ok(CostMeter {
            settings,
            state: snapshot::decode(snapshot)?,
        })
    }

    /// Series metered.
    pub fn series(&self) -> usize {
        self.state.part.meter.series()
    }

    /// Meters the rows' usage and capacity points.
    fn meter(&mut self, rows: &RecordBatch) -> Result<(), OperatorError> {
        let columns = columns::MetricColumns::of(rows)?;
        let (ts, name, value) = (columns.ts, columns.name, columns.value);
        let owner_label = self.settings.owner_label.as_str();
        let window_ms = self.settings.window_ms;
        let mut row_labels: Vec<(&str, &str)> = Vec::new();
        let mut key = String::new();
        // Series-time per (window, service) of the series active in this batch.
        let mut active: BTreeMap<(i64, Option<&str>), u128> = BTreeMap::new();
        for row in 0..rows.num_rows() {
            let t = ts.value(row);
            self.state.part.saw(t);
            let metric = name.value(row);
            let row_service = columns.service(row);
            // The series, hashed in any label order (labels are summed, not sorted).
            let series = columns.labels(row).fold(
                Fnv1a::of(metric.as_bytes()) ^ row_service.map_or(0, |s| Fnv1a::of(s.as_bytes())),
                |h, (key, value)| {
                    let label = Fnv1a::default()
                        .feed(key.as_bytes())
                        .feed(&[0])
                        .feed(value.as_bytes())
                        .finish();
                    h.wrapping_add(label)
                },
            );
            let window = t.div_euclid(window_ms) * window_ms;
            let open = self
                .state
                .part
                .meter
                .closed_through()
                .is_none_or(|c| window >= c);
            let last = self.state.active_in.entry(series).or_insert(i64::MIN);
            if open && *last < window {
                *last = window;
                *active.entry((window, row_service)).or_default() += window_ms as u128;
            }
            let Some(measure) = self.settings.metrics.measure_of(metric) else {
                continue;
            };
            columns.sorted_labels(row, false, &mut row_labels);
            let owner = match owner_label {
                "service" => row_service,
                label => row_labels
                    .iter()
                    .find(|(k, _)| *k == label)
                    .map(|(_, v)| *v),
            }
            .filter(|o| !o.is_empty());
            key.clear();
            key.push_str(metric);
            if let Some(s) = row_service {
                key.push_str("\u{1f}service=");
                key.push_str(s);
            }
            for (k, v) in &row_labels {
                key.push('\u{1f}');
                key.push_str(k);
                key.push('=');
                key.push_str(v);
            }
            if !self
                .state
                .part
                .meter
                .observe(&key, measure, owner, t, value.value(row))
            {
                self.state.part.late += 1;
            }
        }
        for ((window, service), series_ms) in active {
            let owner = service.map(|s| self.settings.telemetry_owner(s));
            self.state
                .part
                .meter
                .add_volume(window, Resource::Series, owner, series_ms);
        }
        Ok(())
    }

    /// Forgets the series not seen in the last closed window (they count again when
    /// they come back); returns `closed`.
    fn forget_inactive(&mut self, closed: Vec<CostPartial>) -> Vec<CostPartial> {
        let window = self.settings.window_ms;
        if let Some(through) = self.state.part.meter.closed_through() {
            self.state
                .active_in
                .retain(|_, last| *last >= through - window);
        }
        closed
    }
}

/// Puts `partials` on the cost exchange (one partition: every source's records meet
/// in one combiner).
pub(crate) fn send(partials: &[CostPartial], out: &mut Emitted) {
    out.messages
        .extend(partials.iter().map(|partial| OutboundMessage {
            topic: Outbound::CostPartials,
            key: String::new(),
            payload: partial.to_json(),
        }));
}

impl Operator for CostMeter {
    fn name(&self) -> &'static str {
        "cost"
    }

    fn input_columns(&self) -> Option<Vec<&'static str>> {
        Some(vec!["ts", "name", "value", "labels", "service"])
    }

    fn process(
        &mut self,
        context: &PartitionContext,
        rows: &RecordBatch,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        let late_before = self.state.part.late;
        self.meter(rows)?;
        out.late += self.state.part.late - late_before;
        let source = (context.topic.as_ref(), context.partition);
        let closed = self
            .state
            .part
            .close(&self.settings, SourceGroup::Metrics, source);
        send(&self.forget_inactive(closed), out);
        Ok(())
    }

    fn advance_watermark(
        &mut self,
        context: &PartitionContext,
        watermark_ms: i64,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        let source = (context.topic.as_ref(), context.partition);
        let group = SourceGroup::Metrics;
        let closed = self
            .state
            .part
            .raise(watermark_ms, &self.settings, group, source);
        send(&self.forget_inactive(closed), out);
        Ok(())
    }

    fn watermark(&self) -> Option<i64> {
        self.state.part.watermark(&self.settings)
    }

    fn snapshot(&self) -> Result<Vec<u8>, OperatorError> {
        Ok(snapshot::encode(&self.state)?)
    }
}

/// One source group's side of the combining stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct GroupLedger {
    /// Which windows of which partition of the group are applied.
    applied: SourceMarks,
    ledger: CostLedger,
    /// Windows starting before this are billed.
    closed_through: Option<i64>,
}

/// What the combining stage keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CombinerState {
    #[serde(with = "crate::map_as_list")]
    groups: BTreeMap<SourceGroup, GroupLedger>,
    /// Records of a window already billed.
    late_records: u64,
    /// Records of another window length than the configured one.
    mismatched_records: u64,
    alerts: CostAlerts,
}

/// How many partitions each source group has (a group's resources are billed once
/// all of them have passed a window).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CostSources {
    /// Metric partitions.
    pub metrics: usize,
    /// Log partitions.
    pub logs: usize,
    /// Span partitions.
    pub spans: usize,
}

impl CostSources {
    fn of(&self, group: SourceGroup) -> usize {
        match group {
            SourceGroup::Metrics => self.metrics,
            SourceGroup::Logs => self.logs,
            SourceGroup::Spans => self.spans,
        }
    }
}

/// The second cost stage (reads the one exchange partition; see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct CostCombiner {
    sources: CostSources,
    settings: Arc<CostSettings>,
    state: CombinerState,
}

impl CostCombiner {
    /// Fresh state, waiting for `sources` partitions of each group.
    pub fn new(sources: CostSources, settings: Arc<CostSettings>) -> CostCombiner {
        CostCombiner {
            sources,
            state: CombinerState {
                groups: BTreeMap::new(),
                late_records: 0,
                mismatched_records: 0,
                alerts: CostAlerts::new(&settings),
            },
            settings,
        }
    }

    /// State continuing from [`Operator::snapshot`], with the current settings.
    pub fn restore(
        snapshot: &[u8],
        sources: CostSources,
        settings: Arc<CostSettings>,
    ) -> Result<Self, SnapshotError> {
        let mut state: CombinerState = snapshot::decode(snapshot)?;
        state.alerts = state.alerts.reconfigured(&settings);
        Ok(CostCombiner {
            sources,
            settings,
            state,
        })
    }

    /// Records refused for another window length than the configured one.
    pub fn mismatched_records(&self) -> u64 {
        self.state.mismatched_records
    }

    fn apply(&mut self, record: CostPartial) {
        if record.window_ms != self.settings.window_ms {
            self.state.mismatched_records += 1;
            return;
        }
        let usage = record.usage();
        let group = self.state.groups.entry(record.group).or_default();
        if let Some(open) = group.applied.admit(
            (record.source_topic, record.source_partition),
            record.window_start,
            record.through_ms,
            &mut group.ledger.open,
            group.closed_through,
            &mut self.state.late_records,
        ) {
            open.merge(&usage);
        }
    }

    /// Bills the windows each group has closed since the last call, group by group.
    fn close(&mut self) -> Vec<CostRow> {
        let mut rows = Vec::new();
        for (group, side) in &mut self.state.groups {
            let Some(through) = side.applied.low_mark(self.sources.of(*group)) else {
                continue;
            };
            if side.closed_through.is_some_and(|c| through <= c) {
                continue;
            }
            side.closed_through = Some(through);
            rows.extend(
                side.ledger
                    .close(through, &self.settings, group.resources()),
            );
        }
        rows.sort_by_key(|r| r.window_start_ms);
        rows
    }
}

impl Operator for CostCombiner {
    fn name(&self) -> &'static str {
        "cost_combiner"
    }

    fn tables(&self) -> Vec<Table> {
        vec![Table::Costs, Table::Alerts]
    }

    fn process(
        &mut self,
        context: &PartitionContext,
        rows: &RecordBatch,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        let late_before = self.state.late_records;
        let exchange_rows = rows.num_rows();
        for (_, record) in stored_records::<CostPartial>(rows)? {
            self.apply(record);
        }
        out.late += self.state.late_records - late_before;
        let rows = self.close();
        if rows.is_empty() {
            return Ok(());
        }
        out.tables
            .push((Table::Costs, costs_batch(&rows, &self.settings.currency)?));
        out.messages.extend(rows.iter().map(|row| OutboundMessage {
            topic: Outbound::Costs,
            key: row.owner.clone(),
            payload: cost_json(row, &self.settings.currency),
        }));
        let last_row = exchange_rows.saturating_sub(1);
        let alerts = self.state.alerts.observe(
            &rows,
            &self.settings,
            (&context.topic, context.partition),
            last_row,
        )?;
        out.alerts.extend(alerts);
        Ok(())
    }

    /// Every window starting before this is billed, for every group with data
    /// (the least advanced such group's mark).
    fn watermark(&self) -> Option<i64> {
        self.state
            .groups
            .iter()
            .filter_map(|(group, side)| side.applied.low_mark(self.sources.of(*group)))
            .min()
    }

    fn snapshot(&self) -> Result<Vec<u8>, OperatorError> {
        Ok(snapshot::encode(&self.state)?)
    }
}

/// A cost row as sent on `cara.costs`: money as exact decimal strings.
fn cost_json(row: &CostRow, currency: &str) -> Vec<u8> {
    let record = serde_json::json!({
        "window_start": crate::time::rfc3339_ms::to_text(row.window_start_ms),
        "window_end": crate::time::rfc3339_ms::to_text(row.window_end_ms),
        "owner": row.owner,
        "resource": row.resource.name(),
        "usage": row.usage,
        "unit": row.unit,
        "cost": decimal(row.cost),
        "shared": decimal(row.shared),
        "idle": decimal(row.idle),
        "total": decimal(row.total()),
        "currency": currency,
    });
    serde_json::to_vec(&record).unwrap_or_default()
}

/// Rows of table `costs`.
pub fn costs_batch(rows: &[CostRow], currency: &str) -> Result<RecordBatch, OperatorError> {
    let mut start = TimestampMillisecondBuilder::new().with_timezone("UTC");
    let mut end = TimestampMillisecondBuilder::new().with_timezone("UTC");
    let mut owner = StringBuilder::new();
    let mut resource = StringBuilder::new();
    let mut usage = Float64Builder::new();
    let mut unit = StringBuilder::new();
    let money = || Decimal128Builder::new().with_data_type(money_type());
    let (mut cost, mut shared, mut idle, mut total) = (money(), money(), money(), money());
    let mut currencies = StringBuilder::new();
    for row in rows {
        start.append_value(row.window_start_ms);
        end.append_value(row.window_end_ms);
        owner.append_value(&row.owner);
        resource.append_value(row.resource.name());
        usage.append_value(row.usage);
        unit.append_value(row.unit);
        cost.append_value(i128::from(row.cost));
        shared.append_value(i128::from(row.shared));
        idle.append_value(i128::from(row.idle));
        total.append_value(i128::from(row.cost) + i128::from(row.shared) + i128::from(row.idle));
        currencies.append_value(currency);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(start.finish()),
        Arc::new(end.finish()),
        Arc::new(owner.finish()),
        Arc::new(resource.finish()),
        Arc::new(usage.finish()),
        Arc::new(unit.finish()),
        Arc::new(cost.finish()),
        Arc::new(shared.finish()),
        Arc::new(idle.finish()),
        Arc::new(total.finish()),
        Arc::new(currencies.finish()),
    ];
    Ok(RecordBatch::try_new(Table::Costs.schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use arrow::array::{Decimal128Array, StringArray};

    use super::*;
    use crate::cost::ledger::tests::settings;
    use crate::cost::Resource;
    use crate::exchange::{ExchangeRecord, RecordRows};
    use crate::series::{gauge_batch, DerivedPoint};
    use arrow::array::AsArray;

    const HOUR: i64 = 3_600_000;
    const MIN: i64 = 60_000;
    const EXCHANGE: &str = "cara.internal.costs";

    /// `partitions` metric partitions, and log and span partitions that send nothing.
    fn metrics(partitions: usize) -> CostSources {
        CostSources {
            metrics: partitions,
            logs: 3,
            spans: 3,
        }
    }

    /// Three teams' CPU counters and memory gauges, a point a minute for three hours,
    /// and one node's 8 cores; `other` is a series no cost metric names.
    fn points() -> Vec<DerivedPoint> {
        let mut points = Vec::new();
        let label = |team: &str| vec![("team".to_string(), team.to_string())];
        for minute in 0..=180i64 {
            let ts = minute * MIN;
            for (i, team) in ["a", "b", "kube-system"].iter().enumerate() {
                let cpu = minute as f64 * 30.0 * (i + 1) as f64;
                let name = "container_cpu_usage_seconds_total";
                points.push(point(ts, name, label(team), cpu));
                let name = "container_memory_working_set_bytes";
                points.push(point(ts, name, label(team), 2e9 * (i + 1) as f64));
            }
            let node = vec![("node".to_string(), "n1".to_string())];
            points.push(point(
                ts,
                "kube_node_status_allocatable_cpu_cores",
                node,
                8.0,
            ));
            points.push(point(ts, "other", label("a"), 1.0));
        }
        points
    }

    fn point(ts_ms: i64, name: &str, labels: Vec<(String, String)>, value: f64) -> DerivedPoint {
        DerivedPoint {
            ts_ms,
            name: name.into(),
            labels,
            value,
            source_row: 0,
        }
    }

    /// Every point through `partitions` meters (a series keeps its partition), in
    /// batches of ten minutes; the partials each sent, in order.
    fn metered(partitions: usize) -> Vec<CostPartial> {
        let settings = Arc::new(settings());
        let mut meters: Vec<CostMeter> = (0..partitions)
            .map(|_| CostMeter::new(settings.clone()))
            .collect();
        let mut sent = Vec::new();
        let all = points();
        for chunk in all.chunks(all.len() / 18) {
            for (p, meter) in meters.iter_mut().enumerate() {
                let mine: Vec<DerivedPoint> = chunk
                    .iter()
                    .filter(|pt| {
                        crate::stable_hash::Fnv1a::of(pt.labels[0].1.as_bytes()) as usize
                            % partitions
                            == p
                    })
                    .cloned()
                    .collect();
                let context = PartitionContext {
                    topic: "telemetry.metrics".into(),
                    partition: p as i32,
                };
                let batch = gauge_batch(&mine, "telemetry.metrics", p as i32).unwrap();
                let mut out = Emitted::default();
                meter.process(&context, &batch, &mut out).unwrap();
                sent.extend(out.messages.iter().map(|m| {
                    assert_eq!(m.topic, Outbound::CostPartials);
                    serde_json::from_slice::<CostPartial>(&m.payload).unwrap()
                }));
            }
        }
        sent
    }

    fn combine(combiner: &mut CostCombiner, partials: &[CostPartial]) -> Emitted {
        let mut rows = RecordRows::new(Table::CostPartials);
        for (offset, p) in partials.iter().enumerate() {
            let json = String::from_utf8(p.to_json()).unwrap();
            rows.append(&p.row(), &json, EXCHANGE, 0, offset as i64);
        }
        let context = PartitionContext {
            topic: EXCHANGE.into(),
            partition: 0,
        };
        let mut out = Emitted::default();
        combiner
            .process(&context, &rows.finish(), &mut out)
            .unwrap();
        out
    }

    /// (window start, owner, resource, total micro-units) of every `costs` row.
    fn costs(out: &Emitted) -> Vec<(i64, String, String, i128)> {
        let mut rows = Vec::new();
        for (_, batch) in out.tables.iter().filter(|(t, _)| *t == Table::Costs) {
            let start = batch
                .column(0)
                .as_primitive::<arrow::datatypes::TimestampMillisecondType>();
            let owner = batch
                .column_by_name("owner")
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            let resource = batch
                .column_by_name("resource")
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            let total = batch
                .column_by_name("total")
                .unwrap()
                .as_any()
                .downcast_ref::<Decimal128Array>()
                .unwrap();
            for row in 0..batch.num_rows() {
                rows.push((
                    start.value(row),
                    owner.value(row).to_owned(),
                    resource.value(row).to_owned(),
                    total.value(row),
                ));
            }
        }
        rows
    }

    #[test]
    fn usage_metered_on_two_partitions_bills_as_on_one() {
        let one = metered(1);
        let two = metered(2);
        // Progress from the first batch (the source reports in), then two hours
        // closed (the watermark trails by a minute).
        let windows: Vec<Option<i64>> = one.iter().map(|p| p.window_start).collect();
        assert_eq!(windows, vec![None, Some(0), Some(HOUR)]);
        let bill_one = combine(
            &mut CostCombiner::new(metrics(1), Arc::new(settings())),
            &one,
        );
        let bill_two = combine(
            &mut CostCombiner::new(metrics(2), Arc::new(settings())),
            &two,
        );
        assert_eq!(costs(&bill_one), costs(&bill_two));
        // CPU at the node's 8 cores for an hour: 252,888 micro-units, split between
        // a and b (kube-system's use is shared); memory billed as used.
        let first_cpu: i128 = costs(&bill_one)
            .iter()
            .filter(|(start, _, resource, _)| *start == 0 && resource == "cpu")
            .map(|(_, _, _, total)| total)
            .sum();
        assert_eq!(first_cpu, 252_888);
        let owners: std::collections::BTreeSet<String> =
            costs(&bill_one).into_iter().map(|(_, o, _, _)| o).collect();
        // The eight series name no service: their series-hours are nobody's.
        assert_eq!(
            owners,
            ["(shared)".to_string(), "a".to_string(), "b".to_string()].into()
        );
        let series: Vec<i128> = costs(&bill_one)
            .iter()
            .filter(|(_, _, resource, _)| resource == "series")
            .map(|(_, _, _, total)| *total)
            .collect();
        assert_eq!(
            series,
            vec![800, 800],
            "8 series-hours at 0.0001, each hour"
        );
        // Every row is also a record for cara.costs, keyed by owner.
        assert_eq!(
            bill_one.messages.len(),
            costs(&bill_one).len(),
            "{:?}",
            bill_one.messages
        );
        let first: serde_json::Value =
            serde_json::from_slice(&bill_one.messages[0].payload).unwrap();
        assert_eq!(first["currency"], "USD");
        assert!(first["total"].as_str().unwrap().contains('.'), "{first}");
    }

    /// A log partition's window is billed for its logs only: the configured CPU
    /// capacity is paid for once, by the metric partitions' ledger (a second CPU bill,
    /// all idle, came from the log ledger before).
    #[test]
    fn each_group_bills_its_own_resources_and_capacity_once() {
        let mut logs = crate::cost::usage::WindowUsage::default();
        logs.used
            .insert((Resource::Logs, Some("a".into())), 1 << 30);
        let log_partial = CostPartial::new(
            SourceGroup::Logs,
            ("telemetry.logs", 0),
            HOUR,
            HOUR,
            Some((0, logs)),
        );
        let sources = CostSources {
            metrics: 1,
            logs: 1,
            spans: 0,
        };
        let mut combiner = CostCombiner::new(sources, Arc::new(settings()));
        let mut partials = metered(1);
        partials.push(log_partial);
        let billed = costs(&combine(&mut combiner, &partials));
        let hour0 = |resource: &str| -> i128 {
            billed
                .iter()
                .filter(|(start, _, r, _)| *start == 0 && r == resource)
                .map(|(_, _, _, total)| total)
                .sum()
        };
        assert_eq!(hour0("cpu"), 252_888, "8 cores for an hour, once");
        // A GiB of logs at 0.50.
        assert_eq!(hour0("logs"), 500_000);
    }

    #[test]
    fn nothing_is_billed_before_every_partition_reported_and_replays_count_once() {
        let two = metered(2);
        let from_0: Vec<CostPartial> = two
            .iter()
            .filter(|p| p.source_partition == 0)
            .cloned()
            .collect();
        let mut combiner = CostCombiner::new(metrics(2), Arc::new(settings()));
        assert!(costs(&combine(&mut combiner, &from_0)).is_empty());
        let rest: Vec<CostPartial> = two
            .iter()
            .filter(|p| p.source_partition == 1)
            .cloned()
            .collect();
        let billed = costs(&combine(&mut combiner, &rest));
        assert!(!billed.is_empty());
        // Both partitions again, as after a crash: nothing more.
        assert!(costs(&combine(&mut combiner, &two)).is_empty());
        let mut fresh = CostCombiner::new(metrics(2), Arc::new(settings()));
        assert_eq!(costs(&combine(&mut fresh, &two)), billed);
    }

    #[test]
    fn restored_stages_continue_exactly() {
        let settings = Arc::new(settings());
        let mut meter = CostMeter::new(settings.clone());
        let all = points();
        let (head, tail) = all.split_at(all.len() / 2);
        let context = PartitionContext {
            topic: "telemetry.metrics".into(),
            partition: 0,
        };
        let run = |meter: &mut CostMeter, pts: &[DerivedPoint]| {
            let mut out = Emitted::default();
            let batch = gauge_batch(pts, "telemetry.metrics", 0).unwrap();
            meter.process(&context, &batch, &mut out).unwrap();
            out.messages
        };
        run(&mut meter, head);
        let mut restored =
            CostMeter::restore(&meter.snapshot().unwrap(), settings.clone()).unwrap();
        assert_eq!(restored, meter);
        assert_eq!(run(&mut meter, tail), run(&mut restored, tail));
        assert_eq!(meter.series(), 7);

        let partials = metered(1);
        let mut combiner = CostCombiner::new(metrics(1), settings.clone());
        combine(&mut combiner, &partials[..1]);
        let mut again =
            CostCombiner::restore(&combiner.snapshot().unwrap(), metrics(1), settings).unwrap();
        assert_eq!(again, combiner);
        assert_eq!(
            costs(&combine(&mut combiner, &partials[1..])),
            costs(&combine(&mut again, &partials[1..]))
        );
    }

    #[test]
    fn an_idle_partition_reports_progress_when_its_watermark_is_raised() {
        let mut meter = CostMeter::new(Arc::new(settings()));
        let context = PartitionContext {
            topic: "telemetry.metrics".into(),
            partition: 7,
        };
        let mut out = Emitted::default();
        meter
            .advance_watermark(&context, 2 * HOUR + 5, &mut out)
            .unwrap();
        let sent: Vec<CostPartial> = out
            .messages
            .iter()
            .map(|m| serde_json::from_slice(&m.payload).unwrap())
            .collect();
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].window_start, sent[0].through_ms), (None, 2 * HOUR));
        assert_eq!(
            sent[0].validate(&crate::time::EventTimeBounds {
                oldest_ms: 0,
                newest_ms: 3 * HOUR
            }),
            Ok(())
        );
        // Not raised again: nothing more.
        let mut out = Emitted::default();
        meter
            .advance_watermark(&context, 2 * HOUR + 5, &mut out)
            .unwrap();
        assert!(out.messages.is_empty());
    }
}
