//! What every first SLO stage shares, whatever its SLI reads (spans, counter
//! metrics, log lines): [`SloStage`] is the operator, [`SliRows`] what differs.
//!
//! Owns good and total per SLO and minute of event time in one source partition,
//! the partition's watermark (largest event time minus the out-of-orderness bound,
//! advanced per row, or raised by the runtime when the partition is idle),
//! lateness, and sending each SLO's final minutes as [`SloPartial`] records keyed
//! by SLO name.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::partial::{MinuteCounts, SloPartial};
use super::Counts;
use crate::minutes;
use crate::operator::{
    Emitted, Operator, OperatorError, Outbound, OutboundMessage, PartitionContext,
};
use crate::snapshot::{self, SnapshotError};
use crate::watermark::EventClock;

/// How one kind of SLI reads its input table.
pub trait SliRows: Send {
    /// State the SLI keeps besides the minute counts (e.g. the last value of each
    /// counter), checkpointed with them.
    type State: Serialize + DeserializeOwned + Default + Send;

    /// The SLOs it counts, by name.
    fn names(&self) -> Vec<&str>;

    /// Counts the rows, in order: for each row, [`MinuteCounter::add`] for every
    /// SLO it counts in, with `counter.final_through(out_of_orderness_ms)` taken
    /// before the row, then [`MinuteCounter::saw`] with the row's event time.
    fn count(
        &self,
        state: &mut Self::State,
        rows: &RecordBatch,
        counter: &mut MinuteCounter,
        out_of_orderness_ms: i64,
    ) -> Result<(), OperatorError>;
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct StageState<S> {
    counter: MinuteCounter,
    sli: S,
}

/// The first SLO stage of one input partition for the SLIs `R` reads.
#[derive(Debug, Clone, PartialEq)]
pub struct SloStage<R: SliRows> {
    sli: R,
    out_of_orderness_ms: i64,
    state: StageState<R::State>,
}

impl<R: SliRows> SloStage<R> {
    /// Fresh state.
    pub fn new(sli: R, out_of_orderness_ms: i64) -> Self {
        SloStage {
            sli,
            out_of_orderness_ms,
            state: StageState::default(),
        }
    }

    /// State continuing from [`Operator::snapshot`], with the current SLOs (counts
    /// of removed SLOs are dropped; new ones start empty).
    pub fn restore(
        snapshot: &[u8],
        sli: R,
        out_of_orderness_ms: i64,
    ) -> Result<Self, SnapshotError> {
        let mut state: StageState<R::State> = snapshot::decode(snapshot)?;
        state.counter.retain(&sli.names());
        Ok(SloStage {
            sli,
            out_of_orderness_ms,
            state,
        })
    }

    /// Events that came for a minute already final.
    pub fn late(&self) -> u64 {
        self.state.counter.late()
    }

    fn send_final(&mut self, context: &PartitionContext, out: &mut Emitted) {
        let names = self.sli.names();
        self.state
            .counter
            .send_final(names.into_iter(), self.out_of_orderness_ms, context, out);
    }
}

impl<R: SliRows> Operator for SloStage<R> {
    fn name(&self) -> &'static str {
        "slo"
    }

    fn process(
        &mut self,
        context: &PartitionContext,
        rows: &RecordBatch,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        let late_before = self.state.counter.late();
        self.sli.count(
            &mut self.state.sli,
            rows,
            &mut self.state.counter,
            self.out_of_orderness_ms,
        )?;
        out.late += self.state.counter.late() - late_before;
        self.send_final(context, out);
        Ok(())
    }

    fn advance_watermark(
        &mut self,
        context: &PartitionContext,
        watermark_ms: i64,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        let ooo = self.out_of_orderness_ms;
        if self.state.counter.clock.raise(watermark_ms, ooo) {
            self.send_final(context, out);
        }
        Ok(())
    }

    fn watermark(&self) -> Option<i64> {
        self.state.counter.clock.watermark(self.out_of_orderness_ms)
    }

    fn snapshot(&self) -> Result<Vec<u8>, OperatorError> {
        Ok(snapshot::encode(&self.state)?)
    }
}

/// One SLO's counts in one partition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct PartitionCounts {
    /// Minutes not sent yet, by minute index.
    open: BTreeMap<i64, Counts>,
    /// Minutes before this one were sent; `None` before the first record.
    sent_through: Option<i64>,
}

/// Per-minute counts of some SLOs in one partition (serialised as is).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MinuteCounter {
    /// By SLO name.
    slos: BTreeMap<String, PartitionCounts>,
    clock: EventClock,
    late: u64,
}

impl MinuteCounter {
    /// Drops the counts of SLOs not in `names` (removed from the configuration).
    fn retain(&mut self, names: &[&str]) {
        self.slos.retain(|name, _| names.contains(&name.as_str()));
    }

    /// Events that came for a minute already final.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Minutes before this index are final.
    pub fn final_through(&self, out_of_orderness_ms: i64) -> Option<i64> {
        minutes::final_through(self.clock.watermark(out_of_orderness_ms))
    }

    /// Adds `counts` to `slo`'s minute of `ts_ms`, unless that minute is final as of
    /// `through` (then it is late: counted, not added).
    pub fn add(&mut self, slo: &str, ts_ms: i64, counts: Counts, through: Option<i64>) {
        let entry = match self.slos.get_mut(slo) {
            Some(e) => e,
            None => self.slos.entry(slo.to_owned()).or_default(),
        };
        match minutes::open_minute(&mut entry.open, ts_ms, through) {
            Some(minute) => minute.add(counts),
            None => self.late += 1,
        }
    }

    /// Moves the watermark with an event at `ts_ms` (after its row was counted).
    pub fn saw(&mut self, ts_ms: i64) {
        self.clock.saw(ts_ms);
    }

    /// Sends, per SLO of `names`, the minutes that became final (one record each,
    /// even with no minutes, so the combining stage learns how far this partition
    /// has got).
    fn send_final<'a>(
        &mut self,
        names: impl Iterator<Item = &'a str>,
        out_of_orderness_ms: i64,
        context: &PartitionContext,
        out: &mut Emitted,
    ) {
        let Some(through) = self.final_through(out_of_orderness_ms) else {
            return;
        };
        for name in names {
            let counts = self.slos.entry(name.to_owned()).or_default();
            let Some(closed) =
                minutes::take_final(&mut counts.open, &mut counts.sent_through, through)
            else {
                continue;
            };
            let minutes = closed
                .into_iter()
                .map(|(minute, c)| MinuteCounts {
                    minute,
                    good: c.good,
                    total: c.total,
                })
                .collect();
            let record = SloPartial {
                slo: name.to_owned(),
                source_topic: context.topic.to_string(),
                source_partition: context.partition,
                through_minute: through,
                minutes,
            };
            out.messages.push(OutboundMessage {
                topic: Outbound::SloPartials,
                key: name.to_owned(),
                payload: record.to_json(),
            });
        }
    }
}
