//! The operator interface the runtime drives: one instance per source partition,
//! fed that partition's rows as Arrow batches in offset order, told when the
//! runtime moves its watermark, and snapshotted into the partition's checkpoint.
//!
//! Owns the contract between operators and the runtime: what goes in (a batch of
//! one input table, a watermark), what comes out ([`Emitted`]: rows of derived
//! tables, alert transitions, annotated input rows) and how state is saved. An
//! operator is plain library code: no threads, clocks or I/O, so the same instance
//! runs live, in a backtest and in a bench.
//!
//! Time: an operator derives its partition's watermark from the rows it sees (largest
//! event time minus its out-of-orderness bound), which makes its output a function of
//! the rows alone. The runtime may *raise* that watermark with
//! [`Operator::advance_watermark`] when the partition has gone idle and the rest of
//! the source has moved on (DESIGN.md, "Time, windows, state"); the raised watermark
//! is part of the state and never goes back.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;

use crate::alert::AlertRecord;
use crate::anomaly::operator::SchemaMismatch;
use crate::schema::Table;
use crate::snapshot::SnapshotError;

/// The source partition an operator instance belongs to; derived rows carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionContext {
    /// Source topic.
    pub topic: Arc<str>,
    /// Source partition.
    pub partition: i32,
}

/// What one operator found late or could not track (see [`Emitted`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PartCounts {
    /// Records behind the operator's watermark.
    pub late: u64,
    /// Records refused by the operator's own state limit.
    pub over_limit: u64,
    /// Records refused by the process's state budget.
    pub over_budget: u64,
}

impl PartCounts {
    /// Whether nothing was counted.
    pub fn is_zero(&self) -> bool {
        *self == PartCounts::default()
    }
}

/// What one call produced.
#[derive(Debug, Default)]
pub struct Emitted {
    /// The input rows with columns the operator fills (e.g. log templates), to be
    /// archived in place of the batch it was given; `None` keeps the batch as is.
    pub rows: Option<RecordBatch>,
    /// Rows of derived tables, in the order produced.
    pub tables: Vec<(Table, RecordBatch)>,
    /// Alert transitions; `row` is the input row that caused each (for a watermark
    /// advance without rows, 0).
    pub alerts: Vec<AlertRecord>,
    /// Records this call found behind the watermark (aggregated nowhere, archived).
    pub late: u64,
    /// Records this call could not track because a state limit was reached (e.g.
    /// points of new series beyond the series limit): archived, not analysed.
    pub over_limit: u64,
    /// Records of new keys this call refused because the process's state budget was
    /// spent (see [`crate::budget`]): archived, not analysed.
    pub over_budget: u64,
    /// The same three counts per part of a [`Stacked`] operator, which moves them
    /// here from the fields above: each part has its own watermark and limits, so a
    /// record may be late for one part and not another, and is counted once for
    /// each part it was late for (never twice in one sum).
    pub by_part: Vec<(&'static str, PartCounts)>,
    /// State the call publishes for the process to serve (not archived), such as
    /// the log templates it touched, for the runtime's catalogue to take by type.
    pub published: Published,
    /// Records for output or exchange topics, produced (and acknowledged) before the
    /// partition's checkpoint, like alerts.
    pub messages: Vec<OutboundMessage>,
}

/// Values an operator publishes for the process to serve (over HTTP, say), of the
/// operator's own types: the part of the runtime that serves one takes it by its
/// type, so this contract names none of them.
#[derive(Default)]
pub struct Published(Vec<Box<dyn Any + Send>>);

impl Published {
    /// Publishes `value`.
    pub fn push<T: Any + Send>(&mut self, value: T) {
        self.0.push(Box::new(value));
    }

    /// Takes every published value of type `T`, in order; the others stay.
    pub fn take<T: Any + Send>(&mut self) -> Vec<T> {
        let mut taken = Vec::new();
        let mut kept = Vec::new();
        for value in self.0.drain(..) {
            match value.downcast::<T>() {
                Ok(value) => taken.push(*value),
                Err(other) => kept.push(other),
            }
        }
        self.0 = kept;
        taken
    }

    /// Whether nothing is published.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Published({} values)", self.0.len())
    }
}

/// Which topic an [`OutboundMessage`] goes to (the runtime maps each to a name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outbound {
    /// Per-minute SLO counts of one source partition, keyed by SLO, on their way
    /// to the operator that combines every partition's (an exchange topic).
    SloPartials,
    /// SLO status records (`cara.slo`).
    SloStatus,
    /// Per-minute RED and service-graph cells of one source partition, to the one
    /// partition where every source's cells are merged (an exchange topic).
    TracePartials,
    /// Per-window template counts of one log partition, to the one partition where
    /// every source's counts meet per service (an exchange topic).
    LogPartials,
    /// Alert transitions and calls of one alert-raising stage, to the one partition
    /// where the incident stage correlates them (an exchange topic).
    AlertPartials,
    /// Incident transitions (`cara.incidents`).
    Incidents,
    /// Records of the decision stage's input log (an exchange topic, one
    /// partition): incidents, verdicts, clock ticks, action results.
    DecisionInputs,
    /// Decision state changes (`cara.decisions`).
    Decisions,
    /// Per-window usage of one metric partition, to the one partition where every
    /// source's usage is billed (an exchange topic).
    CostPartials,
    /// Cost rows (`cara.costs`).
    Costs,
    /// Capacity forecasts (`cara.capacity`).
    Capacity,
}

impl Outbound {
    /// Whether the stream is an exchange between two stages (not an output).
    pub fn is_exchange(self) -> bool {
        !matches!(
            self,
            Outbound::SloStatus
                | Outbound::Incidents
                | Outbound::Decisions
                | Outbound::Costs
                | Outbound::Capacity
        )
    }
}

/// One record for an output or exchange topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    /// Where it goes.
    pub topic: Outbound,
    /// Kafka key (records with one key share a partition, in order).
    pub key: String,
    /// The record, JSON.
    pub payload: Vec<u8>,
}

impl Emitted {
    /// True when the call produced nothing to archive or publish.
    pub fn is_empty(&self) -> bool {
        self.rows.is_none()
            && self.tables.is_empty()
            && self.alerts.is_empty()
            && self.messages.is_empty()
    }

    /// What was counted, per part: [`Emitted::by_part`] for a stack, else the
    /// single operator's counts under `name`; parts that counted nothing left out.
    pub fn counts_by_part(&self, name: &'static str) -> Vec<(&'static str, PartCounts)> {
        let single = PartCounts {
            late: self.late,
            over_limit: self.over_limit,
            over_budget: self.over_budget,
        };
        let mut parts = self.by_part.clone();
        if !single.is_zero() {
            parts.push((name, single));
        }
        parts.retain(|(_, counts)| !counts.is_zero());
        parts
    }

    /// Takes the three counts, leaving zeros.
    fn take_counts(&mut self) -> PartCounts {
        PartCounts {
            late: std::mem::take(&mut self.late),
            over_limit: std::mem::take(&mut self.over_limit),
            over_budget: std::mem::take(&mut self.over_budget),
        }
    }

    /// Adds `counts` to part `name`'s.
    fn add_part_counts(&mut self, name: &'static str, counts: PartCounts) {
        match self.by_part.iter_mut().find(|(n, _)| *n == name) {
            Some((_, sum)) => {
                sum.late += counts.late;
                sum.over_limit += counts.over_limit;
                sum.over_budget += counts.over_budget;
            }
            None => self.by_part.push((name, counts)),
        }
    }
}

/// Why an operator could not process a batch.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// A column is missing or has the wrong type.
    #[error(transparent)]
    Schema(#[from] SchemaMismatch),
    /// Building an output batch failed (a bug: outputs follow the tables' schemas).
    #[error("building output rows: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// The state could not be encoded.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// An event-time operator over the batches of one source partition.
pub trait Operator: Send {
    /// The stage's name: a part's key in a stack's snapshot and the `stage` label
    /// of its counts (`alerting`, `logs`, `slo`, `traces`, ...).
    fn name(&self) -> &'static str;

    /// The derived tables it may write (alerts included when it raises any).
    fn tables(&self) -> Vec<Table> {
        Vec::new()
    }

    /// The columns of its input table it reads, when it knows them: a driver that
    /// reads stored rows may then leave the others out. `None`: all of them.
    fn input_columns(&self) -> Option<Vec<&'static str>> {
        None
    }

    /// Processes a batch of the partition's input table, rows in offset order.
    fn process(
        &mut self,
        context: &PartitionContext,
        rows: &RecordBatch,
        out: &mut Emitted,
    ) -> Result<(), OperatorError>;

    /// Raises the watermark to `watermark_ms` (a no-op when it is not higher) and
    /// emits what that closes: windows that end before it, silent series. The
    /// default does nothing: an operator whose clock is its sources' marks (the
    /// second stages) is not moved by the runtime.
    fn advance_watermark(
        &mut self,
        _context: &PartitionContext,
        _watermark_ms: i64,
        _out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        Ok(())
    }

    /// The current watermark, `None` before the first row.
    fn watermark(&self) -> Option<i64>;

    /// The event time before which it will raise no more alert transitions or
    /// service-graph calls: what the incident stage is told it may apply (see
    /// `incidents::reporter`). The default, its watermark, holds for an operator
    /// that stamps what it raises with the time of a row it has not yet passed. A
    /// combiner that stamps each window's alerts at the window's end promises the
    /// end of the next window it will close: a window later than its watermark,
    /// which is what keeps incidents from waiting a minute for it.
    fn quiet_before(&self) -> Option<i64> {
        self.watermark()
    }

    /// The state, encoded with [`crate::snapshot`] and restored by the operator's
    /// own `restore`.
    fn snapshot(&self) -> Result<Vec<u8>, OperatorError>;
}

/// How much of an [`Emitted`] there was before a call, so that a [`Tap`] sees only
/// what the call added.
#[derive(Debug, Clone, Copy)]
pub struct EmittedFrom {
    /// Alerts before the call.
    pub alerts: usize,
    /// Derived tables before the call.
    pub tables: usize,
    /// Outbound messages before the call.
    pub messages: usize,
}

impl EmittedFrom {
    /// What `out` holds now.
    pub fn of(out: &Emitted) -> EmittedFrom {
        EmittedFrom {
            alerts: out.alerts.len(),
            tables: out.tables.len(),
            messages: out.messages.len(),
        }
    }
}

/// Reads what each call of a wrapped operator emitted (from `from` on) and may add
/// to it: how the dataflow connects a stage to another without the stage knowing
/// (alerts to the incident stage, incidents to the decision stage).
pub trait Tap: Send {
    /// Runs after each `process` and `advance_watermark` of `inner`.
    fn after(
        &mut self,
        inner: &dyn Operator,
        context: &PartitionContext,
        out: &mut Emitted,
        from: EmittedFrom,
    );
}

/// An operator with a [`Tap`] after each call. Name, tables, watermark and state
/// are the wrapped operator's: wrapping changes no snapshot.
pub struct Tapped<T> {
    inner: Box<dyn Operator>,
    tap: T,
}

impl<T: Tap> Tapped<T> {
    /// `inner`, tapped by `tap`.
    pub fn new(inner: Box<dyn Operator>, tap: T) -> Tapped<T> {
        Tapped { inner, tap }
    }
}

impl<T: Tap> Operator for Tapped<T> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn tables(&self) -> Vec<Table> {
        self.inner.tables()
    }

    fn input_columns(&self) -> Option<Vec<&'static str>> {
        self.inner.input_columns()
    }

    fn process(
        &mut self,
        context: &PartitionContext,
        rows: &RecordBatch,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        let from = EmittedFrom::of(out);
        let outcome = self.inner.process(context, rows, out);
        self.tap.after(self.inner.as_ref(), context, out, from);
        outcome
    }

    fn advance_watermark(
        &mut self,
        context: &PartitionContext,
        watermark_ms: i64,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        let from = EmittedFrom::of(out);
        let outcome = self.inner.advance_watermark(context, watermark_ms, out);
        self.tap.after(self.inner.as_ref(), context, out, from);
        outcome
    }

    fn watermark(&self) -> Option<i64> {
        self.inner.watermark()
    }

    fn quiet_before(&self) -> Option<i64> {
        self.inner.quiet_before()
    }

    fn snapshot(&self) -> Result<Vec<u8>, OperatorError> {
        self.inner.snapshot()
    }
}

/// Several operators over the same partition, each seeing every batch; their
/// snapshots are kept side by side under their names.
pub struct Stacked {
    parts: Vec<(&'static str, Box<dyn Operator>)>,
}

impl Stacked {
    /// The operators, in order, each under its [`Operator::name`].
    pub fn new(parts: Vec<Box<dyn Operator>>) -> Self {
        Stacked {
            parts: parts.into_iter().map(|p| (p.name(), p)).collect(),
        }
    }

    /// The parts' snapshots out of a [`Stacked`] snapshot, by name. A stack of an
    /// earlier cara (JSON whose parts are JSON strings) reads too.
    pub fn split_snapshot(snapshot: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, SnapshotError> {
        if !snapshot.starts_with(crate::snapshot::MAGIC) {
            let parts: BTreeMap<String, String> = crate::snapshot::decode(snapshot)?;
            return Ok(parts
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect());
        }
        let parts: BTreeMap<String, serde_bytes::ByteBuf> = crate::snapshot::decode(snapshot)?;
        Ok(parts.into_iter().map(|(k, v)| (k, v.into_vec())).collect())
    }
}

impl Stacked {
    /// Runs `step` on every part in order, moving what each counted into
    /// [`Emitted::by_part`] under its name.
    fn each_part(
        &mut self,
        out: &mut Emitted,
        mut step: impl FnMut(&mut dyn Operator, &mut Emitted) -> Result<(), OperatorError>,
    ) -> Result<(), OperatorError> {
        let outer = out.take_counts();
        let mut outcome = Ok(());
        for (name, part) in &mut self.parts {
            outcome = step(part.as_mut(), out);
            let counts = out.take_counts();
            out.add_part_counts(name, counts);
            if outcome.is_err() {
                break;
            }
        }
        out.late = outer.late;
        out.over_limit = outer.over_limit;
        out.over_budget = outer.over_budget;
        outcome
    }
}

impl Operator for Stacked {
    /// Its parts count under their own names (see [`Emitted::by_part`]).
    fn name(&self) -> &'static str {
        "stack"
    }

    fn tables(&self) -> Vec<Table> {
        let mut tables: Vec<Table> = Vec::new();
        for (_, part) in &self.parts {
            for table in part.tables() {
                if !tables.contains(&table) {
                    tables.push(table);
                }
            }
        }
        tables
    }

    /// Every part's, or `None` when a part reads every column.
    fn input_columns(&self) -> Option<Vec<&'static str>> {
        let mut columns = Vec::new();
        for (_, part) in &self.parts {
            columns.extend(part.input_columns()?);
        }
        columns.sort_unstable();
        columns.dedup();
        Some(columns)
    }

    fn process(
        &mut self,
        context: &PartitionContext,
        rows: &RecordBatch,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        self.each_part(out, |part, out| part.process(context, rows, out))
    }

    fn advance_watermark(
        &mut self,
        context: &PartitionContext,
        watermark_ms: i64,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        self.each_part(out, |part, out| {
            part.advance_watermark(context, watermark_ms, out)
        })
    }

    /// The slowest part's.
    fn watermark(&self) -> Option<i64> {
        self.parts.iter().filter_map(|(_, p)| p.watermark()).min()
    }

    /// The earliest part's.
    fn quiet_before(&self) -> Option<i64> {
        self.parts
            .iter()
            .filter_map(|(_, p)| p.quiet_before())
            .min()
    }

    fn snapshot(&self) -> Result<Vec<u8>, OperatorError> {
        let mut parts = BTreeMap::new();
        for (name, part) in &self.parts {
            parts.insert(*name, serde_bytes::ByteBuf::from(part.snapshot()?));
        }
        Ok(crate::snapshot::encode(&parts)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values are taken by their type, in order; values of other types stay.
    #[test]
    fn published_values_are_taken_by_type() {
        let mut published = Published::default();
        published.push(vec![1u32, 2]);
        published.push("catalogue");
        published.push(vec![3u32]);
        assert_eq!(published.take::<Vec<u32>>(), vec![vec![1, 2], vec![3]]);
        assert!(published.take::<Vec<u32>>().is_empty());
        assert_eq!(published.take::<&str>(), vec!["catalogue"]);
        assert!(published.is_empty());
    }

    #[test]
    fn nothing_emitted_is_empty_and_late_counts_alone_are_not_output() {
        let mut out = Emitted::default();
        assert!(out.is_empty());
        out.late = 3;
        assert!(out.is_empty(), "a late count is telemetry, not output");
        out.tables.push((
            Table::Alerts,
            RecordBatch::new_empty(Table::Alerts.schema()),
        ));
        assert!(!out.is_empty());
    }

    /// A span late for both span stages was counted twice in one sum; now each
    /// part counts it once under its own name.
    #[test]
    fn a_record_late_for_two_parts_is_counted_once_per_part() {
        use crate::slo::spans::tests::{slo, spans};
        use crate::slo::spans::{Sli, SpanSlis, SpanSloCounter};
        use crate::traces::counter::{TraceCounter, TraceSettings};
        let mut stack = Stacked::new(vec![
            Box::new(SpanSloCounter::new(
                SpanSlis(vec![slo("avail", "checkout", Sli::Availability)]),
                30_000,
            )),
            Box::new(TraceCounter::new(TraceSettings::default())),
        ]);
        let context = PartitionContext {
            topic: "telemetry.spans".into(),
            partition: 0,
        };
        let t0 = 1_700_000_040_000;
        let on_time: Vec<_> = (0..10)
            .map(|i| (t0 + i * 30_000, "checkout", "pay", true, 12.0))
            .collect();
        let mut out = Emitted::default();
        stack.process(&context, &spans(&on_time), &mut out).unwrap();
        assert_eq!(out.counts_by_part("main"), vec![], "nothing late yet");
        let mut out = Emitted::default();
        let late = [(t0, "checkout", "pay", false, 12.0)];
        stack.process(&context, &spans(&late), &mut out).unwrap();
        let one_late = PartCounts {
            late: 1,
            ..PartCounts::default()
        };
        assert_eq!(
            out.counts_by_part("main"),
            vec![("slo", one_late), ("traces", one_late)]
        );
        assert_eq!(out.late, 0, "no sum over the parts");
    }

    #[test]
    fn a_stack_splits_into_its_parts_snapshots_in_both_formats() {
        use crate::anomaly::alerting::MetricAlerting;
        use crate::anomaly::operator::AnomalyLimits;
        use crate::anomaly::ScorerConfig;
        let part =
            || MetricAlerting::new(ScorerConfig::default(), AnomalyLimits::default(), vec![]);
        let stack = Stacked::new(vec![Box::new(part())]);
        let own = Operator::snapshot(&part()).unwrap();
        let parts = Stacked::split_snapshot(&Operator::snapshot(&stack).unwrap()).unwrap();
        assert_eq!(parts, BTreeMap::from([("alerting".to_owned(), own)]));
        // A stack of an earlier cara: JSON whose parts are JSON strings.
        let json = serde_json::to_string(&part()).unwrap();
        let legacy = serde_json::to_vec(&BTreeMap::from([("alerting", json.clone())])).unwrap();
        let parts = Stacked::split_snapshot(&legacy).unwrap();
        assert_eq!(parts["alerting"], json.into_bytes());
        assert!(MetricAlerting::restore(
            &parts["alerting"],
            ScorerConfig::default(),
            AnomalyLimits::default(),
            vec![]
        )
        .is_ok());
        // One operator's snapshot is not a stack.
        assert!(Stacked::split_snapshot(&Operator::snapshot(&part()).unwrap()).is_err());
    }
}
