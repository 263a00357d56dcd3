//! Metering usage and capacity from metric points, in event time, into windows.
//!
//! Owns how a series' points become integer base units of a [`Resource`] per
//! window ([`UsageMeter`]):
//! - a **counter** (CPU-seconds, egress bytes) contributes its increases, a
//!   decrease being a reset (the new value is the increase, as Prometheus'
//!   `increase` counts it); an increase belongs to the window of the point that shows
//!   it. A series' first point shows no increase (what it counted before is unknown);
//! - a **gauge** (memory or disk bytes held, cores or bytes of capacity) is held at
//!   its last value until the next point, at most `max_gap` (a series that stops is
//!   no longer held), and its integral over time is split exactly at window
//!   boundaries, to the millisecond. When the watermark closes a window, every
//!   gauge is credited to the window's end, so it closes with all of its time.
//!
//! Amounts are integers (rounded once per point), so sums over partitions do not
//! depend on arrival order. A window is closed, and handed out once, when the
//! watermark passes its end.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Resource;
use crate::map_as_list::hashed::{new_map, FastMap};

/// What a metered series measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Usage of the resource by the series' owner.
    Usage(Resource),
    /// Capacity of the resource paid for (every series adds to it).
    Capacity(Resource),
    /// CPU used, as a gauge of cores in use (held over time like capacity).
    CpuCores,
}

impl Measure {
    /// The resource measured.
    pub fn resource(self) -> Resource {
        match self {
            Measure::Usage(r) | Measure::Capacity(r) => r,
            Measure::CpuCores => Resource::Cpu,
        }
    }

    /// Whether its points are a counter (else a gauge held over time).
    pub fn is_counter(self) -> bool {
        matches!(
            self,
            Measure::Usage(Resource::Cpu) | Measure::Usage(Resource::Egress)
        )
    }

    /// Base units per metric unit (per unit-millisecond for a gauge): CPU-seconds
    /// to micro core-seconds; cores of capacity held a millisecond to micro
    /// core-seconds; bytes to bytes, or to byte-milliseconds when held.
    fn base_per_unit(self) -> f64 {
        match self {
            Measure::Usage(Resource::Cpu) => 1e6,
            Measure::Capacity(Resource::Cpu) | Measure::CpuCores => 1e3,
            _ => 1.0,
        }
    }
}

/// The usage and capacity of one window, in base units.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowUsage {
    /// Used per resource and owner (`None`: the series had no owner).
    #[serde(with = "crate::map_as_list")]
    pub used: BTreeMap<(Resource, Option<String>), u128>,
    /// Capacity per resource.
    #[serde(with = "crate::map_as_list")]
    pub capacity: BTreeMap<Resource, u128>,
}

impl WindowUsage {
    fn add(&mut self, measure: Measure, owner: Option<&str>, amount: u128) {
        if amount == 0 {
            return;
        }
        let slot = match measure {
            Measure::Usage(r) => self.used.entry((r, owner.map(str::to_owned))).or_default(),
            Measure::CpuCores => self
                .used
                .entry((Resource::Cpu, owner.map(str::to_owned)))
                .or_default(),
            Measure::Capacity(r) => self.capacity.entry(r).or_default(),
        };
        *slot = slot.saturating_add(amount);
    }

    /// Adds everything of `other`.
    pub fn merge(&mut self, other: &WindowUsage) {
        for (key, amount) in &other.used {
            let slot = self.used.entry(key.clone()).or_default();
            *slot = slot.saturating_add(*amount);
        }
        for (resource, amount) in &other.capacity {
            let slot = self.capacity.entry(*resource).or_default();
            *slot = slot.saturating_add(*amount);
        }
    }
}

/// One metered series' state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Metered {
    measure: Measure,
    owner: Option<String>,
    last_ms: i64,
    last_value: f64,
    /// A gauge's integral is counted up to here.
    credited_through_ms: i64,
    /// Base units not yet added to their window's usage: a series adds to one
    /// window for many points in a row, so its amounts are summed here and the
    /// window's map is touched once per series and window, not per point.
    pending: Option<(i64, u128)>,
}

impl Metered {
    /// Adds `amount` to window `window`, moving what is pending for another window
    /// into `open` first.
    fn accumulate(&mut self, open: &mut BTreeMap<i64, WindowUsage>, window: i64, amount: u128) {
        if amount == 0 {
            return;
        }
        match &mut self.pending {
            Some((w, pending)) if *w == window => *pending = pending.saturating_add(amount),
            slot => {
                if let Some((w, pending)) = slot.replace((window, amount)) {
                    open.entry(w)
                        .or_default()
                        .add(self.measure, self.owner.as_deref(), pending);
                }
            }
        }
    }

    /// Moves what is pending into `open` when its window starts before `before`.
    fn settle(&mut self, open: &mut BTreeMap<i64, WindowUsage>, before: i64) {
        if let Some((w, pending)) = self.pending.filter(|(w, _)| *w < before) {
            self.pending = None;
            open.entry(w)
                .or_default()
                .add(self.measure, self.owner.as_deref(), pending);
        }
    }

    /// Credits the gauge, held at its last value from where it was credited to
    /// `until_ms` (at most `max_gap_ms` after its last point), split at window
    /// boundaries; returns how far it is credited.
    fn credit_gauge(
        &mut self,
        open: &mut BTreeMap<i64, WindowUsage>,
        window_ms: i64,
        max_gap_ms: i64,
        until_ms: i64,
    ) -> i64 {
        let end = until_ms.min(self.last_ms.saturating_add(max_gap_ms));
        let mut from = self.credited_through_ms;
        let per_ms = self.last_value.max(0.0) * self.measure.base_per_unit();
        while from < end {
            let start = from.div_euclid(window_ms) * window_ms;
            let to = end.min(start + window_ms);
            let amount = (per_ms * (to - from) as f64).round() as u128;
            self.accumulate(open, start, amount);
            from = to;
        }
        from.max(self.credited_through_ms)
    }
}

/// Meters the usage and capacity series of one partition into windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageMeter {
    window_ms: i64,
    max_gap_ms: i64,
    /// Looked up once per point: a fixed-seed hash map, snapshotted in key order.
    #[serde(with = "crate::map_as_list::hashed_as_map")]
    series: FastMap<String, Metered>,
    #[serde(with = "crate::map_as_list")]
    open: BTreeMap<i64, WindowUsage>,
    /// Everything before this is closed (handed out); later points only.
    closed_through_ms: Option<i64>,
}

impl UsageMeter {
    /// A meter of windows `window_ms` long, holding a gauge at most `max_gap_ms`.
    pub fn new(window_ms: i64, max_gap_ms: i64) -> UsageMeter {
        UsageMeter {
            window_ms: window_ms.max(1),
            max_gap_ms: max_gap_ms.max(0),
            series: new_map(),
            open: BTreeMap::new(),
            closed_through_ms: None,
        }
    }

    /// Series metered.
    pub fn series(&self) -> usize {
        self.series.len()
    }

    /// Meters the point `(ts_ms, value)` of series `key` (its name and labels)
    /// measuring `measure` for `owner` (both taken from the series' first point).
    /// Returns false (and meters nothing) for a point that is not finite, older
    /// than the series' last point, or in a window already closed.
    pub fn observe(
        &mut self,
        key: &str,
        measure: Measure,
        owner: Option<&str>,
        ts_ms: i64,
        value: f64,
    ) -> bool {
        if !value.is_finite() || self.closed_through_ms.is_some_and(|c| ts_ms < c) {
            return false;
        }
        let window_ms = self.window_ms;
        let Some(state) = self.series.get_mut(key) else {
            let first = Metered {
                measure,
                owner: owner.map(str::to_owned),
                last_ms: ts_ms,
                last_value: value,
                credited_through_ms: ts_ms,
                pending: None,
            };
            self.series.insert(key.to_owned(), first);
            return true;
        };
        if ts_ms < state.last_ms {
            return false;
        }
        if state.measure.is_counter() {
            let increase = if value >= state.last_value {
                value - state.last_value
            } else {
                value // a reset
            };
            let amount = (increase * state.measure.base_per_unit()).round() as u128;
            let window = ts_ms.div_euclid(window_ms) * window_ms;
            state.accumulate(&mut self.open, window, amount);
        } else {
            state.credit_gauge(&mut self.open, window_ms, self.max_gap_ms, ts_ms);
        }
        // A point behind the watermark (its window still open) is held from where
        // the watermark credited the previous value to.
        state.credited_through_ms = ts_ms.max(state.credited_through_ms);
        state.last_ms = ts_ms;
        state.last_value = value;
        true
    }

    /// Adds `amount` base units of `resource` used by `owner` in the window holding
    /// `ts_ms`: telemetry volume, counted per event (the caller sums a batch's
    /// events per window and owner first). False, and nothing added, when that
    /// window is closed.
    pub fn add_volume(
        &mut self,
        ts_ms: i64,
        resource: Resource,
        owner: Option<&str>,
        amount: u128,
    ) -> bool {
        if self.closed_through_ms.is_some_and(|c| ts_ms < c) {
            return false;
        }
        let window = self.window_of(ts_ms);
        self.open
            .entry(window)
            .or_default()
            .add(Measure::Usage(resource), owner, amount);
        true
    }

    /// Moves the watermark to `watermark_ms`: the windows that end at or before it
    /// are closed and returned (start, usage), in time order, every gauge credited up
    /// to their end. Only up to their end, never to the watermark itself: the
    /// watermark depends on where a batch ended, a window's end does not, so the
    /// amounts are a function of the points alone (a replay in other batches bills
    /// the same).
    pub fn advance(&mut self, watermark_ms: i64) -> Vec<(i64, WindowUsage)> {
        let close_before = self.window_of(watermark_ms);
        if self.closed_through_ms.is_some_and(|c| close_before <= c) {
            return Vec::new();
        }
        let (window_ms, max_gap_ms) = (self.window_ms, self.max_gap_ms);
        for state in self.series.values_mut() {
            if !state.measure.is_counter() && state.credited_through_ms < close_before {
                let through =
                    state.credit_gauge(&mut self.open, window_ms, max_gap_ms, close_before);
                state.credited_through_ms = through;
            }
            state.settle(&mut self.open, close_before);
        }
        self.closed_through_ms = Some(close_before);
        let still_open = self.open.split_off(&close_before);
        let closed = std::mem::replace(&mut self.open, still_open);
        closed.into_iter().collect()
    }

    /// Windows starting before this are closed (handed out).
    pub fn closed_through(&self) -> Option<i64> {
        self.closed_through_ms
    }

    /// The start of the window holding `ts_ms`.
    pub fn window_of(&self, ts_ms: i64) -> i64 {
        ts_ms.div_euclid(self.window_ms) * self.window_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const MIN: i64 = 60_000;

    fn used(w: &WindowUsage, r: Resource, owner: Option<&str>) -> u128 {
        w.used
            .get(&(r, owner.map(str::to_owned)))
            .copied()
            .unwrap_or(0)
    }

    #[test]
    fn counter_increases_go_to_the_window_of_the_point_that_shows_them() {
        let cpu = Measure::Usage(Resource::Cpu);
        let mut m = UsageMeter::new(HOUR, 5 * MIN);
        // (time, CPU-seconds counter): +30 s, then a reset to 5 (+5), then +10
        // across the hour boundary, counted in the second hour.
        for (ts, v) in [
            (0, 100.0),
            (30 * MIN, 130.0),
            (40 * MIN, 5.0),
            (HOUR + MIN, 15.0),
        ] {
            assert!(m.observe("cpu{team=a}", cpu, Some("a"), ts, v));
        }
        let closed = m.advance(2 * HOUR);
        assert_eq!(closed.len(), 2);
        assert_eq!(closed[0].0, 0);
        assert_eq!(used(&closed[0].1, Resource::Cpu, Some("a")), 35_000_000);
        assert_eq!(closed[1].0, HOUR);
        assert_eq!(used(&closed[1].1, Resource::Cpu, Some("a")), 10_000_000);
    }

    #[test]
    fn a_gauge_is_integrated_to_the_millisecond_across_windows() {
        let memory = Measure::Usage(Resource::Memory);
        let mut m = UsageMeter::new(HOUR, 30 * MIN);
        // 1,000 bytes from 50 min, 3,000 from 70 min; the watermark at 75 min
        // credits 5 minutes of 3,000 so far.
        m.observe("mem", memory, Some("a"), 50 * MIN, 1000.0);
        m.observe("mem", memory, Some("a"), 70 * MIN, 3000.0);
        let closed = m.advance(75 * MIN);
        // Hour 0 closed: 10 min of 1,000 bytes.
        assert_eq!(closed.len(), 1);
        assert_eq!(
            used(&closed[0].1, Resource::Memory, Some("a")),
            1000 * 10 * MIN as u128
        );
        // Hour 1: 10 min of 1,000, then 3,000 until the gauge stops being held, 30
        // min after its last point; nothing in hour 2.
        let closed = m.advance(3 * HOUR);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].0, HOUR);
        let hour1 = used(&closed[0].1, Resource::Memory, Some("a"));
        assert_eq!(hour1, (1000 * 10 * MIN + 3000 * 30 * MIN) as u128);
    }

    #[test]
    fn a_point_behind_the_watermark_counts_from_its_own_time() {
        let memory = Measure::Usage(Resource::Memory);
        let mut m = UsageMeter::new(HOUR, HOUR);
        m.observe("mem", memory, None, 0, 10.0);
        m.advance(20 * MIN);
        // Behind the watermark, in the open hour: 10 until it, 20 from it.
        m.observe("mem", memory, None, 10 * MIN, 20.0);
        let closed = m.advance(HOUR);
        let total = used(&closed[0].1, Resource::Memory, None);
        assert_eq!(total, (10 * 10 * MIN + 20 * 50 * MIN) as u128);
    }

    /// The same points with the watermark moved at other times (as flushes of other
    /// sizes move it) close the same windows with the same amounts.
    #[test]
    fn amounts_do_not_depend_on_when_the_watermark_moved() {
        let memory = Measure::Usage(Resource::Memory);
        let cpu = Measure::Usage(Resource::Cpu);
        let run = |advance_every: i64| {
            let mut m = UsageMeter::new(HOUR, 5 * MIN);
            let mut closed = Vec::new();
            for i in 0..400i64 {
                let ts = i * 37_000;
                m.observe("mem", memory, Some("a"), ts, ((i * 7) % 11) as f64 / 3.0);
                m.observe("cpu", cpu, Some("a"), ts, i as f64 * 0.3);
                if i % advance_every == 0 {
                    // Ahead of the last point, as an idle partition is raised.
                    closed.extend(m.advance(ts + 30_000));
                }
            }
            closed.extend(m.advance(10 * HOUR));
            closed
        };
        let every_point = run(1);
        assert_eq!(every_point.len(), 5);
        assert_eq!(every_point, run(7));
        assert_eq!(every_point, run(1000));
    }

    #[test]
    fn cores_in_use_are_cpu_used_over_time() {
        let mut m = UsageMeter::new(HOUR, HOUR);
        m.observe("cpu", Measure::CpuCores, Some("a"), 0, 0.5);
        m.observe("cpu", Measure::CpuCores, Some("a"), 30 * MIN, 1.5);
        let closed = m.advance(HOUR);
        // Half a core for 30 min, one and a half for 30: a core-hour.
        let used = used(&closed[0].1, Resource::Cpu, Some("a"));
        assert_eq!(Resource::Cpu.in_price_units(used), 1.0);
    }

    #[test]
    fn capacity_adds_up_over_series_and_cpu_cores_become_core_seconds() {
        let cores = Measure::Capacity(Resource::Cpu);
        let mut m = UsageMeter::new(HOUR, HOUR);
        m.observe("node_cpu{node=1}", cores, None, 0, 4.0);
        m.observe("node_cpu{node=2}", cores, None, 0, 8.0);
        let closed = m.advance(HOUR);
        // 12 cores for an hour: 43,200 core-seconds, in micro core-seconds.
        assert_eq!(closed[0].1.capacity[&Resource::Cpu], 43_200_000_000);
        let in_hours = Resource::Cpu.in_price_units(closed[0].1.capacity[&Resource::Cpu]);
        assert_eq!(in_hours, 12.0);
    }

    #[test]
    fn late_old_and_broken_points_are_refused() {
        let egress = Measure::Usage(Resource::Egress);
        let mut m = UsageMeter::new(HOUR, HOUR);
        assert!(m.observe("e", egress, None, HOUR, 1.0));
        assert!(
            !m.observe("e", egress, None, HOUR - 1, 2.0),
            "older than the last"
        );
        assert!(!m.observe("e", egress, None, HOUR + 1, f64::NAN));
        m.advance(2 * HOUR);
        assert!(
            !m.observe("f", egress, None, HOUR + 5, 1.0),
            "window closed"
        );
        assert!(m.observe("f", egress, None, 2 * HOUR, 1.0));
    }

    #[test]
    fn a_restored_meter_continues_exactly() {
        let memory = Measure::Usage(Resource::Memory);
        let cpu = Measure::Usage(Resource::Cpu);
        let feed = |m: &mut UsageMeter, range: std::ops::Range<i64>| {
            for i in range {
                m.observe("mem", memory, Some("a"), i * MIN, (i % 7) as f64 * 100.0);
                m.observe("cpu", cpu, None, i * MIN, i as f64 * 0.5);
            }
        };
        let mut a = UsageMeter::new(HOUR, 5 * MIN);
        feed(&mut a, 0..70);
        a.advance(65 * MIN);
        let mut b: UsageMeter = serde_json::from_slice(&serde_json::to_vec(&a).unwrap()).unwrap();
        assert_eq!(a, b);
        feed(&mut a, 70..200);
        feed(&mut b, 70..200);
        assert_eq!(a.advance(4 * HOUR), b.advance(4 * HOUR));
    }
}
