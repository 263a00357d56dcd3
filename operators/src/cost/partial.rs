//! The record the two cost stages exchange: one metric partition's usage and
//! capacity in one closed window, or (with no window) how far that partition's
//! windows are final.
//!
//! One record per window, in window order, so the combining stage, applying a
//! record only when its window is at or after the `through_ms` it last applied for
//! that source ([`crate::exchange`]), counts every window of every source once, even
//! when a replay after a crash sends records again. Amounts are integer base units
//! (see [`crate::cost`]). JSON, e.g.
//! `{"source_topic":"telemetry.metrics","source_partition":3,"window_ms":3600000,
//!   "through_ms":1700002800000,"window_start":1699999200000,"used":[{"resource":"cpu",
//!   "owner":"payments","amount":1800000000}],"capacity":[]}`.

use serde::{Deserialize, Serialize};

use super::usage::{UsageMeter, WindowUsage};
use super::CostSettings;
use super::Resource;
use crate::exchange::{validate_window_marks, ExchangeRecord, RecordRow};
use crate::schema::Table;
use crate::time::EventTimeBounds;
use crate::watermark::EventClock;

/// Usage of one resource by one owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsedAmount {
    /// The resource.
    pub resource: Resource,
    /// The owner (`None`: the series had no owner label).
    pub owner: Option<String>,
    /// Base units.
    pub amount: u128,
}

/// Capacity of one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityAmount {
    /// The resource.
    pub resource: Resource,
    /// Base units.
    pub amount: u128,
}

/// Which input a cost record comes from: the combining stage waits for every
/// partition of a group before it bills the resources that group meters, and for
/// no other group (a topic without data must not hold back the others' bills).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum SourceGroup {
    /// Metric partitions: CPU, memory, storage, egress, series.
    #[default]
    Metrics,
    /// Log partitions: log bytes.
    Logs,
    /// Span partitions: spans.
    Spans,
}

impl SourceGroup {
    /// Every group.
    pub const ALL: [SourceGroup; 3] = [SourceGroup::Metrics, SourceGroup::Logs, SourceGroup::Spans];

    /// The resources this group's partitions meter (and only its ledger bills, its
    /// capacity included).
    pub fn resources(self) -> &'static [Resource] {
        match self {
            SourceGroup::Metrics => &[
                Resource::Cpu,
                Resource::Memory,
                Resource::Storage,
                Resource::Egress,
                Resource::Series,
            ],
            SourceGroup::Logs => &[Resource::Logs],
            SourceGroup::Spans => &[Resource::Spans],
        }
    }
}

/// One metric, log or span partition's usage of one closed window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostPartial {
    /// Which input the source partition is.
    #[serde(default)]
    pub group: SourceGroup,
    /// Source topic.
    pub source_topic: String,
    /// Source partition.
    pub source_partition: i32,
    /// Window length, ms (the combining stage refuses other lengths than its own).
    pub window_ms: i64,
    /// Every window starting before this time is final for the source, ms.
    pub through_ms: i64,
    /// Start of the window the amounts belong to, ms (`None`: progress only).
    pub window_start: Option<i64>,
    /// Usage, by resource and owner.
    pub used: Vec<UsedAmount>,
    /// Capacity, by resource.
    pub capacity: Vec<CapacityAmount>,
}

impl CostPartial {
    /// The record of `usage` (`None`: progress only).
    pub fn new(
        group: SourceGroup,
        source: (&str, i32),
        window_ms: i64,
        through_ms: i64,
        window: Option<(i64, WindowUsage)>,
    ) -> CostPartial {
        let (window_start, usage) = match window {
            Some((start, usage)) => (Some(start), usage),
            None => (None, WindowUsage::default()),
        };
        CostPartial {
            group,
            source_topic: source.0.to_owned(),
            source_partition: source.1,
            window_ms,
            through_ms,
            window_start,
            used: usage
                .used
                .into_iter()
                .map(|((resource, owner), amount)| UsedAmount {
                    resource,
                    owner,
                    amount,
                })
                .collect(),
            capacity: usage
                .capacity
                .into_iter()
                .map(|(resource, amount)| CapacityAmount { resource, amount })
                .collect(),
        }
    }

    /// Its amounts, as a window's usage.
    pub fn usage(&self) -> WindowUsage {
        WindowUsage {
            used: self
                .used
                .iter()
                .map(|u| ((u.resource, u.owner.clone()), u.amount))
                .collect(),
            capacity: self
                .capacity
                .iter()
                .map(|c| (c.resource, c.amount))
                .collect(),
        }
    }

    /// The record as sent.
    pub fn to_json(&self) -> Vec<u8> {
        // Strings and integers only: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// What a first cost stage keeps of its partition: the usage of its open windows,
/// its event clock and what it refused. Both first stages (metric partitions, log
/// and span partitions) close windows and report them through it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionMeter {
    /// The usage of the open windows.
    pub meter: UsageMeter,
    clock: EventClock,
    /// Points or events in a window already closed.
    pub late: u64,
}

impl PartitionMeter {
    /// Fresh state.
    pub fn new(settings: &CostSettings) -> PartitionMeter {
        PartitionMeter {
            meter: UsageMeter::new(settings.window_ms, settings.max_gap_ms),
            clock: EventClock::default(),
            late: 0,
        }
    }

    /// Moves the clock with an event at `ts_ms`.
    pub fn saw(&mut self, ts_ms: i64) {
        self.clock.saw(ts_ms);
    }

    /// The partition's watermark.
    pub fn watermark(&self, settings: &CostSettings) -> Option<i64> {
        self.clock.watermark(settings.out_of_orderness_ms)
    }

    /// The records of the windows the watermark closed since the last call (see
    /// [`UsageMeter::advance`]): one per closed window with usage, the last saying
    /// how far the partition is final; a progress record alone when the mark moved
    /// without a window; nothing when it did not move.
    pub fn close(
        &mut self,
        settings: &CostSettings,
        group: SourceGroup,
        source: (&str, i32),
    ) -> Vec<CostPartial> {
        let Some(watermark) = self.watermark(settings) else {
            return Vec::new();
        };
        let window_ms = settings.window_ms;
        let before = self.meter.closed_through();
        let closed = self.meter.advance(watermark);
        let Some(through) = self.meter.closed_through() else {
            return Vec::new();
        };
        if before == Some(through) {
            return Vec::new();
        }
        let count = closed.len();
        let mut records = Vec::with_capacity(count.max(1));
        for (i, (start, usage)) in closed.into_iter().enumerate() {
            let through_ms = if i + 1 == count {
                through
            } else {
                start + window_ms
            };
            let window = Some((start, usage));
            records.push(CostPartial::new(
                group, source, window_ms, through_ms, window,
            ));
        }
        if count == 0 {
            records.push(CostPartial::new(group, source, window_ms, through, None));
        }
        records
    }

    /// Raises the watermark to `watermark_ms` (an idle partition); the records of
    /// what that closes.
    pub fn raise(
        &mut self,
        watermark_ms: i64,
        settings: &CostSettings,
        group: SourceGroup,
        source: (&str, i32),
    ) -> Vec<CostPartial> {
        match self.clock.raise(watermark_ms, settings.out_of_orderness_ms) {
            true => self.close(settings, group, source),
            false => Vec::new(),
        }
    }
}

impl ExchangeRecord for CostPartial {
    const TABLE: Table = Table::CostPartials;

    /// A source, a positive window length, window-aligned marks within `bounds`,
    /// the window before `through_ms`, amounts only with a window, none of them 0.
    fn validate(&self, bounds: &EventTimeBounds) -> Result<(), String> {
        validate_window_marks(
            "a cost partial",
            (&self.source_topic, self.source_partition),
            self.window_ms,
            self.through_ms,
            self.window_start,
            bounds,
        )?;
        let amounts = self.used.len() + self.capacity.len();
        if self.window_start.is_none() && amounts > 0 {
            return Err("amounts without a window".into());
        }
        let zero =
            self.used.iter().any(|u| u.amount == 0) || self.capacity.iter().any(|c| c.amount == 0);
        if zero {
            return Err("an amount of 0 (nothing is sent for nothing)".into());
        }
        if self.used.iter().any(|u| u.owner.as_deref() == Some("")) {
            return Err("an owner that is an empty string".into());
        }
        Ok(())
    }

    fn row(&self) -> RecordRow {
        RecordRow {
            source_topic: self.source_topic.clone(),
            source_partition: self.source_partition,
            through_ms: self.through_ms,
            at_ms: self.window_start,
            counts: vec![(self.used.len() + self.capacity.len()) as i64],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: i64 = 1_699_999_200_000;
    const HOUR: i64 = 3_600_000;

    fn record() -> CostPartial {
        let mut usage = WindowUsage::default();
        usage
            .used
            .insert((Resource::Cpu, Some("payments".into())), 1_800_000_000);
        // Above 2^64: amounts are u128 and travel exactly.
        usage
            .used
            .insert((Resource::Memory, None), 40_000_000_000_000_000_000);
        usage.capacity.insert(Resource::Cpu, 14_400_000_000);
        CostPartial::new(
            SourceGroup::Metrics,
            ("telemetry.metrics", 3),
            HOUR,
            START + HOUR,
            Some((START, usage)),
        )
    }

    #[test]
    fn validation_refuses_what_the_combiner_cannot_trust() {
        let bounds = EventTimeBounds {
            oldest_ms: 0,
            newest_ms: START + 2 * HOUR,
        };
        assert_eq!(record().validate(&bounds), Ok(()));
        let row = record().row();
        assert_eq!(
            (row.through_ms, row.at_ms, row.counts),
            (START + HOUR, Some(START), vec![3])
        );
        type Breakage = (&'static str, fn(&mut CostPartial));
        let broken: [Breakage; 8] = [
            ("no source", |p| p.source_topic.clear()),
            ("no window length", |p| p.window_ms = 0),
            ("through at the end of time", |p| {
                p.through_ms = i64::MAX - 7
            }),
            ("through off a window start", |p| p.through_ms += 1),
            ("window at through", |p| p.window_start = Some(p.through_ms)),
            ("amounts without a window", |p| p.window_start = None),
            ("an amount of 0", |p| p.used[0].amount = 0),
            ("an empty owner", |p| p.used[0].owner = Some(String::new())),
        ];
        for (what, break_it) in broken {
            let mut p = record();
            break_it(&mut p);
            assert!(p.validate(&bounds).is_err(), "{what}");
        }
        let progress = CostPartial::new(
            SourceGroup::Metrics,
            ("telemetry.metrics", 3),
            HOUR,
            START,
            None,
        );
        assert_eq!(progress.validate(&bounds), Ok(()), "progress only");
    }

    #[test]
    fn the_record_round_trips_exactly() {
        let json = String::from_utf8(record().to_json()).unwrap();
        assert!(json.contains("40000000000000000000"), "{json}");
        let back: CostPartial = serde_json::from_str(&json).unwrap();
        assert_eq!(back, record());
        assert_eq!(back.usage(), record().usage());
    }
}
