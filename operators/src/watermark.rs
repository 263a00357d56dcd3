//! Event-time watermarks: per source partition, the largest event time seen minus the
//! out-of-orderness bound; for the operator, the minimum over active partitions.
//!
//! A partition that has received nothing for `idle_timeout_ms` of *processing* time
//! stops holding the watermark back (the caller passes processing time in, so this
//! stays pure and testable). The watermark never goes backwards. [`combine`] is the
//! policy itself, shared with the runtime's cross-shard board. [`EventClock`] is the
//! one-partition form every operator keeps: its own rows' clock, raisable by the
//! runtime.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How watermarks are derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatermarkPolicy {
    /// How far behind the largest event time records may still arrive in order.
    pub out_of_orderness_ms: i64,
    /// After this long without records (processing time), a partition is idle.
    pub idle_timeout_ms: i64,
}

impl Default for WatermarkPolicy {
    fn default() -> Self {
        WatermarkPolicy {
            out_of_orderness_ms: 5_000,
            idle_timeout_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct PartitionClock {
    max_event_ms: i64,
    last_seen_processing_ms: i64,
}

/// Watermarks of a set of partitions, keyed by any ordered partition id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarkTracker<P: Ord> {
    policy: WatermarkPolicy,
    partitions: BTreeMap<P, PartitionClock>,
    current: i64,
}

impl<P: Ord + Clone> WatermarkTracker<P> {
    /// A tracker with no partitions; its watermark starts at `i64::MIN`.
    pub fn new(policy: WatermarkPolicy) -> Self {
        WatermarkTracker {
            policy,
            partitions: BTreeMap::new(),
            current: i64::MIN,
        }
    }

    /// Records an event of `partition` at `event_ms`, seen at `now_ms` (processing time).
    pub fn observe(&mut self, partition: P, event_ms: i64, now_ms: i64) {
        let clock = self.partitions.entry(partition).or_insert(PartitionClock {
            max_event_ms: i64::MIN,
            last_seen_processing_ms: now_ms,
        });
        clock.max_event_ms = clock.max_event_ms.max(event_ms);
        clock.last_seen_processing_ms = now_ms;
    }

    /// Forgets a partition (revoked); it no longer holds the watermark back.
    pub fn remove(&mut self, partition: &P) {
        self.partitions.remove(partition);
    }

    /// True when `event_ms` is at or below the current watermark (a late record).
    pub fn is_late(&self, event_ms: i64) -> bool {
        event_ms <= self.current
    }

    /// Advances and returns the watermark as of `now_ms`: the minimum over partitions
    /// active within the idle timeout of (max event time − out-of-orderness); when
    /// every partition is idle, the maximum over all of them. Never decreases.
    pub fn advance(&mut self, now_ms: i64) -> i64 {
        let bound = |c: &PartitionClock| {
            c.max_event_ms
                .saturating_sub(self.policy.out_of_orderness_ms)
        };
        let idle_timeout = self.policy.idle_timeout_ms;
        let candidate = combine(self.partitions.values().map(|c| {
            let idle = now_ms.saturating_sub(c.last_seen_processing_ms) >= idle_timeout;
            (Some(bound(c)), idle)
        }));
        if let Some(candidate) = candidate {
            self.current = self.current.max(candidate);
        }
        self.current
    }

    /// The watermark as last advanced.
    pub fn current(&self) -> i64 {
        self.current
    }
}

/// One partition's event-time clock as an operator keeps it: the largest event time
/// of its rows and the watermark the runtime raised (an idle partition). The
/// watermark is the larger of (largest event time − bound) and the raised one, and
/// never goes back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventClock {
    /// Largest event time seen, ms.
    #[serde(alias = "max_ts")]
    max_event_ms: Option<i64>,
    /// The watermark the runtime raised, ms.
    raised_watermark: Option<i64>,
}

impl EventClock {
    /// Moves the clock with an event at `ts_ms`.
    pub fn saw(&mut self, ts_ms: i64) {
        self.max_event_ms = Some(self.max_event_ms.map_or(ts_ms, |m| m.max(ts_ms)));
    }

    /// The largest event time seen.
    pub fn latest(&self) -> Option<i64> {
        self.max_event_ms
    }

    /// The watermark with `out_of_orderness_ms`; `None` before any event or raise.
    pub fn watermark(&self, out_of_orderness_ms: i64) -> Option<i64> {
        let own = self
            .max_event_ms
            .map(|m| m.saturating_sub(out_of_orderness_ms));
        own.max(self.raised_watermark)
    }

    /// Raises the watermark to `watermark_ms`; `false` (and nothing changes) when
    /// it is not higher than the current one.
    pub fn raise(&mut self, watermark_ms: i64, out_of_orderness_ms: i64) -> bool {
        if self
            .watermark(out_of_orderness_ms)
            .is_some_and(|w| w >= watermark_ms)
        {
            return false;
        }
        self.raised_watermark = Some(watermark_ms);
        true
    }
}

/// The watermark of a set of partitions given as (watermark, idle): the minimum over
/// the active ones; when every partition is idle, the largest. An active partition
/// without a watermark yet holds everything back (`None`), as does an empty set.
pub fn combine(partitions: impl Iterator<Item = (Option<i64>, bool)>) -> Option<i64> {
    let mut active_min: Option<i64> = None;
    let mut any_active = false;
    let mut all_max: Option<i64> = None;
    for (watermark, idle) in partitions {
        if !idle {
            let w = watermark?;
            any_active = true;
            active_min = Some(active_min.map_or(w, |m| m.min(w)));
        }
        if let Some(w) = watermark {
            all_max = Some(all_max.map_or(w, |m| m.max(w)));
        }
    }
    if any_active {
        active_min
    } else {
        all_max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> WatermarkTracker<u32> {
        WatermarkTracker::new(WatermarkPolicy {
            out_of_orderness_ms: 100,
            idle_timeout_ms: 1_000,
        })
    }

    #[test]
    fn an_event_clock_follows_its_rows_and_a_raise_never_lowers_it() {
        let mut c = EventClock::default();
        assert_eq!(c.watermark(100), None);
        c.saw(5_000);
        c.saw(4_000);
        assert_eq!((c.latest(), c.watermark(100)), (Some(5_000), Some(4_900)));
        assert!(!c.raise(4_900, 100), "not higher");
        assert!(c.raise(9_000, 100));
        assert_eq!(c.watermark(100), Some(9_000));
        c.saw(6_000);
        assert_eq!(c.watermark(100), Some(9_000));
        // Snapshots written before the clock was shared named the field `max_ts`.
        let old: EventClock =
            serde_json::from_str(r#"{"max_ts":7,"raised_watermark":null}"#).unwrap();
        assert_eq!(old.latest(), Some(7));
    }

    #[test]
    fn combining_takes_the_slowest_active_partition_or_else_the_furthest_idle_one() {
        let active = [(Some(500), false), (Some(300), false), (Some(100), true)];
        assert_eq!(combine(active.into_iter()), Some(300));
        let unknown = [(Some(500), false), (None, false)];
        assert_eq!(
            combine(unknown.into_iter()),
            None,
            "an active unknown holds back"
        );
        let all_idle = [(Some(500), true), (Some(900), true), (None, true)];
        assert_eq!(combine(all_idle.into_iter()), Some(900));
        assert_eq!(combine(std::iter::empty()), None);
    }

    #[test]
    fn the_slowest_active_partition_holds_the_watermark() {
        let mut t = tracker();
        t.observe(0, 5_000, 0);
        t.observe(1, 2_000, 0);
        assert_eq!(t.advance(10), 1_900);
        t.observe(1, 6_000, 20);
        assert_eq!(t.advance(30), 4_900);
    }

    #[test]
    fn out_of_order_events_do_not_move_it_back() {
        let mut t = tracker();
        t.observe(0, 5_000, 0);
        assert_eq!(t.advance(0), 4_900);
        t.observe(0, 4_950, 1); // within the bound: not late
        assert!(!t.is_late(4_950));
        t.observe(0, 3_000, 2); // beyond it: late
        assert!(t.is_late(3_000));
        assert_eq!(t.advance(3), 4_900);
    }

    #[test]
    fn an_idle_partition_stops_holding_it_back() {
        let mut t = tracker();
        t.observe(0, 10_000, 0);
        t.observe(1, 1_000, 0);
        assert_eq!(t.advance(500), 900);
        t.observe(0, 20_000, 1_500);
        // Partition 1 silent for 1.5 s of processing time: idle.
        assert_eq!(t.advance(1_500), 19_900);
        // It wakes up with old data: the watermark does not go back; its records are late.
        t.observe(1, 2_000, 1_600);
        assert_eq!(t.advance(1_600), 19_900);
        assert!(t.is_late(2_000));
    }

    #[test]
    fn when_everything_is_idle_the_furthest_partition_leads() {
        let mut t = tracker();
        t.observe(0, 10_000, 0);
        t.observe(1, 4_000, 0);
        assert_eq!(t.advance(5_000), 9_900);
        t.remove(&0);
        assert_eq!(t.advance(5_001), 9_900, "never decreases");
    }
}
