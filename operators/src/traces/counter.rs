//! Traces, first stage: on each span partition, per minute of span start, a RED cell
//! per service and operation and an edge cell per (caller, callee) service pair.
//!
//! Owns the cells of minutes not yet final and the join of spans with their parents.
//! Spans are keyed by trace id, so a span's parent is in the same partition; a span
//! waits for a parent not seen yet, and is kept as a possible parent, until the
//! partition's latest span started `edge_ttl_ms` after it, and at most
//! `max_pending_spans` spans are held, the rest counted as dropped: memory (and the
//! checkpoint, which holds them) is bounded whatever the traffic. The watermark is
//! the partition's largest span start minus the out-of-orderness bound, advanced per
//! row (or raised when the partition is idle); a span (or a call found) for a minute
//! already final is late: counted, not added. Each final minute is sent as one
//! [`TracePartial`] record, in minute order; which spans and calls a minute holds
//! depends on the rows alone, not on how they were batched.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use serde::{Deserialize, Serialize};

use super::cell::Cell;
use super::partial::{EdgeCell, RedCell, TracePartial};
use crate::columns;
use crate::map_as_list::hashed::FastMap;
use crate::minutes;
use crate::operator::{
    Emitted, Operator, OperatorError, Outbound, OutboundMessage, PartitionContext,
};
use crate::snapshot::{self, SnapshotError};
use crate::watermark::EventClock;

/// Operation name that stands for every operation of a service beyond the limit.
pub const OTHER_OPERATIONS: &str = "<other>";

/// Tuning of the first stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceSettings {
    /// How far behind the largest span start spans may arrive, ms.
    pub out_of_orderness_ms: i64,
    /// How long (event time) a span waits for its parent, and is kept as a parent.
    pub edge_ttl_ms: i64,
    /// Spans held for the join at most (parents and waiting children together).
    pub max_pending_spans: usize,
    /// Operations per service and minute at most; more are counted under `<other>`.
    pub max_operations: usize,
}

impl Default for TraceSettings {
    fn default() -> Self {
        TraceSettings {
            out_of_orderness_ms: 30_000,
            edge_ttl_ms: 10_000,
            max_pending_spans: 20_000,
            max_operations: 200,
        }
    }
}

/// The cells of one minute.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct MinuteCells {
    #[serde(with = "crate::map_as_list::hashed")]
    red: FastMap<NamePair, Cell>,
    #[serde(with = "crate::map_as_list::hashed")]
    edges: FastMap<NamePair, Cell>,
    /// Operations per service (for the limit).
    #[serde(with = "crate::map_as_list::hashed")]
    operations: FastMap<Arc<str>, usize>,
}

/// A span waiting for its parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Child {
    service: Arc<str>,
    start_ms: i64,
    duration_ms: f64,
    error: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct CounterState {
    #[serde(with = "crate::map_as_list")]
    open: BTreeMap<i64, MinuteCells>,
    sent_through: Option<i64>,
    /// Span starts.
    clock: EventClock,
    /// Possible parents: hash of (trace, span) -> (service, start).
    #[serde(with = "crate::map_as_list::hashed")]
    spans: FastMap<u64, (Arc<str>, i64)>,
    /// Children by the hash of the (trace, span) of the parent they wait for.
    #[serde(with = "crate::map_as_list::hashed")]
    waiting: FastMap<u64, Vec<Child>>,
    waiting_count: usize,
    next_eviction_ms: i64,
    late_spans: u64,
    late_calls: u64,
    dropped_spans: u64,
    orphans: u64,
}

/// What the first stage counted besides its cells.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TraceCounts {
    /// Spans of a minute already final.
    pub late_spans: u64,
    /// Calls found for a minute already final.
    pub late_calls: u64,
    /// Spans not held for the join (the limit was reached).
    pub dropped_spans: u64,
    /// Children whose parent never came within the TTL.
    pub orphans: u64,
}

/// The first trace stage for one span partition.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceCounter {
    settings: TraceSettings,
    state: CounterState,
}

impl TraceCounter {
    /// Fresh state.
    pub fn new(settings: TraceSettings) -> Self {
        TraceCounter {
            settings,
            state: CounterState::default(),
        }
    }

    /// State continuing from [`Operator::snapshot`].
    pub fn restore(snapshot: &[u8], settings: TraceSettings) -> Result<Self, SnapshotError> {
        Ok(TraceCounter {
            settings,
            state: snapshot::decode(snapshot)?,
        })
    }

    /// What was counted besides the cells.
    pub fn counts(&self) -> TraceCounts {
        TraceCounts {
            late_spans: self.state.late_spans,
            late_calls: self.state.late_calls,
            dropped_spans: self.state.dropped_spans,
            orphans: self.state.orphans,
        }
    }

    /// Spans held for the join (the bound on its memory).
    pub fn pending_spans(&self) -> usize {
        self.state.spans.len() + self.state.waiting_count
    }

    fn final_through(&self) -> Option<i64> {
        minutes::final_through(Operator::watermark(self))
    }

    /// Counts a call from `caller` to the child's service, by the child's start.
    fn call(&mut self, caller: &Arc<str>, child: &Child, through: Option<i64>) {
        if **caller == *child.service {
            return;
        }
        let Some(cells) = minutes::open_minute(&mut self.state.open, child.start_ms, through)
        else {
            self.state.late_calls += 1;
            return;
        };
        cells
            .edges
            .entry((caller.clone(), child.service.clone()))
            .or_default()
            .observe(child.duration_ms, child.error);
    }

    /// Forgets spans and waiting children that started more than the TTL before the
    /// latest span, on a schedule of event time (every quarter TTL), so the result
    /// depends on the rows only.
    fn evict_on_schedule(&mut self, start_ms: i64) {
        if start_ms < self.state.next_eviction_ms {
            return;
        }
        let step = (self.settings.edge_ttl_ms / 4).max(1);
        self.state.next_eviction_ms = start_ms.saturating_add(step);
        // Relative to the latest start, not the watermark: a parent and its child
        // start moments apart, and every span held is checkpointed at each flush.
        let Some(latest) = self.state.clock.latest() else {
            return;
        };
        let horizon = latest.saturating_sub(self.settings.edge_ttl_ms);
        self.state.spans.retain(|_, (_, start)| *start >= horizon);
        let mut orphans = 0;
        let mut count = 0;
        self.state.waiting.retain(|_, children| {
            let before = children.len();
            children.retain(|c| c.start_ms >= horizon);
            orphans += (before - children.len()) as u64;
            count += children.len();
            !children.is_empty()
        });
        self.state.orphans += orphans;
        self.state.waiting_count = count;
    }

    /// Sends every minute that became final, one record each, then (if the last
    /// minute sent does not say it already) how far the partition is final.
    fn send_final(&mut self, context: &PartitionContext, out: &mut Emitted) {
        let Some(through) = self.final_through() else {
            return;
        };
        let Some(closed) =
            minutes::take_final(&mut self.state.open, &mut self.state.sent_through, through)
        else {
            return;
        };
        let count = closed.len();
        let record = |minute: Option<i64>, through_minute: i64, cells: MinuteCells| TracePartial {
            source_topic: context.topic.to_string(),
            source_partition: context.partition,
            through_minute,
            minute,
            red: sorted(cells.red)
                .into_iter()
                .map(|((service, operation), cell)| RedCell {
                    service: service.to_string(),
                    operation: operation.to_string(),
                    cell,
                })
                .collect(),
            edges: sorted(cells.edges)
                .into_iter()
                .map(|((caller, callee), cell)| EdgeCell {
                    caller: caller.to_string(),
                    callee: callee.to_string(),
                    cell,
                })
                .collect(),
        };
        for (i, (minute, cells)) in closed.into_iter().enumerate() {
            let through_minute = if i + 1 == count { through } else { minute + 1 };
            push(out, record(Some(minute), through_minute, cells));
        }
        if count == 0 {
            push(out, record(None, through, MinuteCells::default()));
        }
    }
}

/// A pair of names: (service, operation) or (caller, callee).
type NamePair = (Arc<str>, Arc<str>);

/// The cells in key order (records must not depend on hash order).
fn sorted(cells: FastMap<NamePair, Cell>) -> Vec<(NamePair, Cell)> {
    let mut list: Vec<_> = cells.into_iter().collect();
    list.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    list
}

/// The join key of a span: a 64-bit hash of its trace and span ids (no allocation
/// per span; a collision among the spans held is about one in 10¹¹).
fn span_key(trace: &str, span: &str) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x7370_616e).hash_one((trace, span))
}

fn push(out: &mut Emitted, record: TracePartial) {
    out.messages.push(OutboundMessage {
        topic: Outbound::TracePartials,
        // One partition: every source's records meet in one combiner.
        key: String::new(),
        payload: record.to_json(),
    });
}

impl Operator for TraceCounter {
    fn name(&self) -> &'static str {
        "traces"
    }

    fn process(
        &mut self,
        context: &PartitionContext,
        rows: &RecordBatch,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        let start = columns::timestamps(rows, "start")?;
        let duration = columns::floats(rows, "duration_ms")?;
        let trace = columns::strings(rows, "trace_id")?;
        let span = columns::strings(rows, "span_id")?;
        let parent = columns::strings(rows, "parent_span_id")?;
        let service = columns::strings(rows, "service")?;
        let operation = columns::strings(rows, "name")?;
        let status = columns::strings(rows, "status")?;
        let late_before = self.state.late_spans;
        let dropped_before = self.state.dropped_spans;
        // Names shared by the rows of this batch (one allocation each).
        let mut names: std::collections::HashMap<&str, Arc<str>> = std::collections::HashMap::new();
        let max_operations = self.settings.max_operations;
        for row in 0..rows.num_rows() {
            let t = start.value(row);
            let through = self.final_through();
            let error = status.value(row) == "error";
            let duration_ms = duration.value(row);
            let svc = names
                .entry(service.value(row))
                .or_insert_with_key(|s| Arc::from(*s))
                .clone();
            if let Some(cells) = minutes::open_minute(&mut self.state.open, t, through) {
                let op_name = operation.value(row);
                let op = names
                    .entry(op_name)
                    .or_insert_with_key(|s| Arc::from(*s))
                    .clone();
                let key = (svc.clone(), op);
                let key = if cells.red.contains_key(&key) {
                    key
                } else {
                    let ops = cells.operations.entry(svc.clone()).or_default();
                    if *ops >= max_operations {
                        (svc.clone(), Arc::from(OTHER_OPERATIONS))
                    } else {
                        *ops += 1;
                        key
                    }
                };
                cells
                    .red
                    .entry(key)
                    .or_default()
                    .observe(duration_ms, error);
            } else {
                self.state.late_spans += 1;
            }

            // The service graph: join with the parent, either way round.
            let me = span_key(trace.value(row), span.value(row));
            let child = Child {
                service: svc.clone(),
                start_ms: t,
                duration_ms,
                error,
            };
            let held = self.state.spans.len() + self.state.waiting_count;
            if parent.is_valid(row) {
                let parent_key = span_key(trace.value(row), parent.value(row));
                match self.state.spans.get(&parent_key) {
                    Some((caller, _)) => {
                        let caller = caller.clone();
                        self.call(&caller, &child, through);
                    }
                    None if held < self.settings.max_pending_spans => {
                        self.state
                            .waiting
                            .entry(parent_key)
                            .or_default()
                            .push(child);
                        self.state.waiting_count += 1;
                    }
                    None => self.state.dropped_spans += 1,
                }
            }
            if let Some(children) = self.state.waiting.remove(&me) {
                self.state.waiting_count -= children.len();
                for c in &children {
                    self.call(&svc, c, through);
                }
            }
            if self.state.spans.len() + self.state.waiting_count < self.settings.max_pending_spans {
                self.state.spans.insert(me, (svc, t));
            } else {
                self.state.dropped_spans += 1;
            }
            self.state.clock.saw(t);
            self.evict_on_schedule(t);
        }
        out.late += self.state.late_spans - late_before;
        out.over_limit += self.state.dropped_spans - dropped_before;
        self.send_final(context, out);
        Ok(())
    }

    fn advance_watermark(
        &mut self,
        context: &PartitionContext,
        watermark_ms: i64,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        let ooo = self.settings.out_of_orderness_ms;
        if self.state.clock.raise(watermark_ms, ooo) {
            self.send_final(context, out);
        }
        Ok(())
    }

    fn watermark(&self) -> Option<i64> {
        self.state
            .clock
            .watermark(self.settings.out_of_orderness_ms)
    }

    fn snapshot(&self) -> Result<Vec<u8>, OperatorError> {
        Ok(snapshot::encode(&self.state)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span_rows::{span_batch, SpanRecord};

    const T0: i64 = 1_700_000_040_000;

    /// (trace, span, parent, service, start, duration ms, ok)
    type Linked = (
        &'static str,
        &'static str,
        Option<&'static str>,
        &'static str,
        i64,
        f64,
        bool,
    );

    fn linked(rows: &[Linked]) -> RecordBatch {
        let records: Vec<SpanRecord<'_>> = rows
            .iter()
            .map(|(trace, span, parent, service, start, ms, ok)| SpanRecord {
                trace_id: trace,
                span_id: span,
                parent_span_id: *parent,
                service,
                name: "op",
                start_ms: *start,
                duration_ms: *ms,
                ok: *ok,
            })
            .collect();
        span_batch(&records, "telemetry.spans", 0).unwrap()
    }

    fn records(out: &Emitted) -> Vec<TracePartial> {
        out.messages
            .iter()
            .map(|m| serde_json::from_slice(&m.payload).unwrap())
            .collect()
    }

    fn context() -> PartitionContext {
        PartitionContext {
            topic: "telemetry.spans".into(),
            partition: 1,
        }
    }

    #[test]
    fn calls_join_children_with_parents_in_either_order_and_orphans_expire() {
        let mut counter = TraceCounter::new(TraceSettings::default());
        let rows = linked(&[
            // frontend -> checkout -> payments; checkout arrives before its parent.
            ("t1", "c", Some("f"), "checkout", T0 + 10, 40.0, true),
            ("t1", "f", None, "frontend", T0, 60.0, true),
            ("t1", "p", Some("c"), "payments", T0 + 20, 30.0, false),
            // Same service below: not an edge.
            ("t1", "c2", Some("c"), "checkout", T0 + 25, 5.0, true),
            // A child whose parent never comes.
            ("t2", "x", Some("missing"), "search", T0 + 30, 5.0, true),
            // Far later: closes minute 0 and expires the orphan.
            ("t3", "z", None, "frontend", T0 + 5 * 60_000, 1.0, true),
        ]);
        let mut out = Emitted::default();
        counter.process(&context(), &rows, &mut out).unwrap();
        let sent = records(&out);
        let minute0 = sent.iter().find(|r| r.minute == Some(T0 / 60_000)).unwrap();
        let edges: Vec<(&str, &str, u64, u64)> = minute0
            .edges
            .iter()
            .map(|e| {
                (
                    e.caller.as_str(),
                    e.callee.as_str(),
                    e.cell.requests,
                    e.cell.errors,
                )
            })
            .collect();
        assert_eq!(
            edges,
            vec![
                ("checkout", "payments", 1, 1),
                ("frontend", "checkout", 1, 0)
            ]
        );
        assert_eq!(minute0.red.len(), 4, "four services with spans in minute 0");
        assert_eq!(counter.counts().orphans, 1);
        // The last record says how far the partition is final: 4.5 min.
        assert_eq!(sent.last().unwrap().through_minute, (T0 + 270_000) / 60_000);
    }

    #[test]
    fn records_do_not_depend_on_batches_or_restores_and_memory_is_bounded() {
        let settings = TraceSettings {
            max_pending_spans: 50,
            ..TraceSettings::default()
        };
        let names: Vec<String> = (0..400).map(|i| format!("s{i}")).collect();
        let names: &'static [String] = Box::leak(names.into_boxed_slice());
        let all: Vec<Linked> = (0..400)
            .map(|i| {
                let parent = (i % 4 != 0).then(|| names[i - 1].as_str());
                let service = ["a", "b", "c", "d"][i % 4];
                (
                    "t",
                    names[i].as_str(),
                    parent,
                    service,
                    T0 + i as i64 * 700,
                    3.0,
                    i % 9 != 0,
                )
            })
            .collect();
        let minutes = |list: Vec<TracePartial>| -> Vec<(Option<i64>, String)> {
            list.into_iter()
                .filter(|r| r.minute.is_some())
                .map(|r| (r.minute, serde_json::to_string(&(r.red, r.edges)).unwrap()))
                .collect()
        };
        let mut whole = TraceCounter::new(settings);
        let mut out = Emitted::default();
        whole.process(&context(), &linked(&all), &mut out).unwrap();
        let expected = minutes(records(&out));
        assert!(expected.len() >= 3);
        assert!(whole.pending_spans() <= 50);

        let mut got = Vec::new();
        let mut snapshot = TraceCounter::new(settings).snapshot().unwrap();
        for chunk in all.chunks(33) {
            let mut c = TraceCounter::restore(&snapshot, settings).unwrap();
            let mut out = Emitted::default();
            c.process(&context(), &linked(chunk), &mut out).unwrap();
            got.extend(minutes(records(&out)));
            snapshot = c.snapshot().unwrap();
        }
        assert_eq!(got, expected);
        assert_eq!(snapshot, whole.snapshot().unwrap());
    }

    #[test]
    fn spans_beyond_the_join_limit_are_reported_as_over_limit() {
        let settings = TraceSettings {
            max_pending_spans: 10,
            ..TraceSettings::default()
        };
        let names: Vec<String> = (0..60).map(|i| format!("s{i}")).collect();
        let names: &'static [String] = Box::leak(names.into_boxed_slice());
        // Children of parents that never come: each waits for its parent and is
        // held itself, until the limit is reached.
        let orphans: Vec<Linked> = (0..30)
            .map(|i| {
                (
                    "t",
                    names[i].as_str(),
                    Some(names[30 + i].as_str()),
                    "a",
                    T0 + i as i64,
                    1.0,
                    true,
                )
            })
            .collect();
        let mut counter = TraceCounter::new(settings);
        let mut out = Emitted::default();
        counter
            .process(&context(), &linked(&orphans[..4]), &mut out)
            .unwrap();
        assert_eq!(out.over_limit, 0, "eight held spans are within the limit");
        let mut out = Emitted::default();
        counter
            .process(&context(), &linked(&orphans[4..]), &mut out)
            .unwrap();
        assert!(out.over_limit > 0);
        assert_eq!(out.over_limit, counter.counts().dropped_spans);
        assert!(counter.pending_spans() <= 10);
    }
}
