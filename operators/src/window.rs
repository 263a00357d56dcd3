//! Event-time windows: tumbling, sliding and session windows, and a keyed aggregate
//! (count, sum, min, max, mean) that fires when the watermark passes a window's end
//! plus the allowed lateness (DESIGN.md, "Time, windows, state").
//!
//! Records whose every window has already fired are *late*: not aggregated, counted
//! (the archive still keeps them). Output is ordered by window end, then key, so the
//! same input gives the same output.

use std::hash::Hash;

use serde::{Deserialize, Serialize};

use crate::map_as_list::hashed::{new_map, FastMap};

/// A half-open event-time interval `[start, end)` in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    /// First millisecond inside.
    pub start: i64,
    /// First millisecond after.
    pub end: i64,
}

/// How records are grouped in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum WindowSpec {
    /// Fixed, non-overlapping windows of `size_ms`, aligned to the epoch.
    Tumbling {
        /// Length.
        size_ms: i64,
    },
    /// Windows of `size_ms` starting every `slide_ms` (a record is in several).
    Sliding {
        /// Length.
        size_ms: i64,
        /// Distance between starts.
        slide_ms: i64,
    },
    /// Per key, activity separated by gaps of at least `gap_ms`.
    Session {
        /// Inactivity that closes a session.
        gap_ms: i64,
    },
}

impl WindowSpec {
    /// The fixed windows containing `ts` (tumbling, sliding); a session window starts
    /// as `[ts, ts + gap)` and merges with its neighbours.
    pub fn assign(&self, ts: i64, out: &mut Vec<Window>) {
        out.clear();
        match *self {
            WindowSpec::Tumbling { size_ms } => {
                let start = ts - ts.rem_euclid(size_ms);
                out.push(Window {
                    start,
                    end: start + size_ms,
                });
            }
            WindowSpec::Sliding { size_ms, slide_ms } => {
                let last_start = ts - ts.rem_euclid(slide_ms);
                let mut start = last_start;
                while start > ts - size_ms {
                    out.push(Window {
                        start,
                        end: start + size_ms,
                    });
                    start -= slide_ms;
                }
                out.reverse();
            }
            WindowSpec::Session { gap_ms } => out.push(Window {
                start: ts,
                end: ts + gap_ms,
            }),
        }
    }
}

/// Count, sum, min and max of the values in a window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    /// Records.
    pub count: u64,
    /// Sum of values.
    pub sum: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl Default for Aggregate {
    fn default() -> Self {
        Aggregate {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Aggregate {
    fn add(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    fn merge(&mut self, other: &Aggregate) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Mean of the values (NaN for an empty window).
    pub fn mean(&self) -> f64 {
        self.sum / self.count as f64
    }
}

/// A fired window of one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fired<K> {
    /// The key.
    pub key: K,
    /// The window.
    pub window: Window,
    /// Its aggregate.
    pub aggregate: Aggregate,
}

/// What [`WindowedAggregate::add`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// Every window it belongs to had closed: counted as late, not added.
    Late,
    /// Added; its key had open windows already.
    ToOpenKey,
    /// Added; its key had no open window before (its first, or its first since
    /// its windows fired).
    FirstOfKey,
}

impl Added {
    /// Whether the record was added.
    pub fn accepted(self) -> bool {
        self != Added::Late
    }
}

/// Keyed windowed aggregation with allowed lateness; snapshot it with serde.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize + Ord + Hash",
    deserialize = "K: Deserialize<'de> + Ord + Hash"
))]
pub struct WindowedAggregate<K: Ord + Hash> {
    spec: WindowSpec,
    allowed_lateness_ms: i64,
    /// Open windows per key, ordered by start (hashed for the lookup per record;
    /// snapshots as an ordered map).
    #[serde(with = "crate::map_as_list::hashed_as_map")]
    open: FastMap<K, Vec<(Window, Aggregate)>>,
    late: u64,
    #[serde(skip)]
    scratch: Vec<Window>,
}

impl<K: Ord + Hash + Clone> WindowedAggregate<K> {
    /// An empty aggregate.
    pub fn new(spec: WindowSpec, allowed_lateness_ms: i64) -> Self {
        WindowedAggregate {
            spec,
            allowed_lateness_ms,
            open: new_map(),
            late: 0,
            scratch: Vec::new(),
        }
    }

    /// Records dropped as late so far.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// True while `key` has a window not yet fired.
    pub fn has_open(&self, key: &K) -> bool {
        self.open.contains_key(key)
    }

    /// Open windows over all keys (state size).
    pub fn open_windows(&self) -> usize {
        self.open.values().map(Vec::len).sum()
    }

    /// Adds a record; says whether it was late (then it is counted), given
    /// `watermark`, and whether its key had no open window before.
    pub fn add(&mut self, key: &K, ts: i64, value: f64, watermark: i64) -> Added {
        let mut windows = std::mem::take(&mut self.scratch);
        self.spec.assign(ts, &mut windows);
        let closed = |w: &Window| w.end.saturating_add(self.allowed_lateness_ms) <= watermark;
        windows.retain(|w| !closed(w));
        let mut added = Added::Late;
        if !windows.is_empty() {
            let list = match self.open.get_mut(key) {
                Some(list) => {
                    added = Added::ToOpenKey;
                    list
                }
                None => {
                    added = Added::FirstOfKey;
                    self.open.entry(key.clone()).or_default()
                }
            };
            for w in &windows {
                if let WindowSpec::Session { .. } = self.spec {
                    add_to_session(list, *w, value);
                } else {
                    match list.binary_search_by_key(w, |(x, _)| *x) {
                        Ok(i) => list[i].1.add(value),
                        Err(i) => {
                            let mut a = Aggregate::default();
                            a.add(value);
                            list.insert(i, (*w, a));
                        }
                    }
                }
            }
        } else {
            self.late += 1;
        }
        self.scratch = windows;
        added
    }

    /// Removes and returns every window with `end + allowed lateness <= watermark`,
    /// ordered by window end, then key.
    pub fn fire(&mut self, watermark: i64) -> Vec<Fired<K>> {
        let lateness = self.allowed_lateness_ms;
        let mut fired = Vec::new();
        self.open.retain(|key, list| {
            list.retain(|(w, a)| {
                if w.end.saturating_add(lateness) <= watermark {
                    fired.push(Fired {
                        key: key.clone(),
                        window: *w,
                        aggregate: *a,
                    });
                    false
                } else {
                    true
                }
            });
            !list.is_empty()
        });
        fired.sort_by(|a, b| {
            (a.window.end, &a.key, a.window.start).cmp(&(b.window.end, &b.key, b.window.start))
        });
        fired
    }
}

/// Adds `value` in the session window `w`, merging every session it overlaps.
fn add_to_session(list: &mut Vec<(Window, Aggregate)>, w: Window, value: f64) {
    let mut merged = w;
    let mut aggregate = Aggregate::default();
    aggregate.add(value);
    list.retain(|(x, a)| {
        let overlaps = x.start < merged.end && merged.start < x.end;
        if overlaps {
            merged.start = merged.start.min(x.start);
            merged.end = merged.end.max(x.end);
            aggregate.merge(a);
        }
        !overlaps
    });
    // A merge can make the session reach one it did not overlap before.
    let position = list.partition_point(|(x, _)| x.start < merged.start);
    list.insert(position, (merged, aggregate));
    if list.len() > 1 {
        let mut i = 0;
        while i + 1 < list.len() {
            if list[i].0.end > list[i + 1].0.start {
                let (next_w, next_a) = list.remove(i + 1);
                list[i].0.end = list[i].0.end.max(next_w.end);
                list[i].1.merge(&next_a);
            } else {
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(spec: WindowSpec, ts: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        spec.assign(ts, &mut out);
        out.iter().map(|w| (w.start, w.end)).collect()
    }

    #[test]
    fn tumbling_and_sliding_assignment() {
        let tumbling = WindowSpec::Tumbling { size_ms: 10 };
        assert_eq!(windows(tumbling, 25), vec![(20, 30)]);
        assert_eq!(windows(tumbling, -1), vec![(-10, 0)]);
        let sliding = WindowSpec::Sliding {
            size_ms: 30,
            slide_ms: 10,
        };
        assert_eq!(windows(sliding, 25), vec![(0, 30), (10, 40), (20, 50)]);
        assert_eq!(windows(sliding, 30), vec![(10, 40), (20, 50), (30, 60)]);
    }

    #[test]
    fn out_of_order_records_within_lateness_count_and_late_ones_do_not() {
        let mut agg = WindowedAggregate::new(WindowSpec::Tumbling { size_ms: 10 }, 5);
        assert_eq!(agg.add(&"a", 3, 1.0, i64::MIN), Added::FirstOfKey);
        assert_eq!(agg.add(&"a", 12, 2.0, i64::MIN), Added::ToOpenKey);
        assert_eq!(agg.add(&"b", 7, 4.0, i64::MIN), Added::FirstOfKey);
        // Watermark 14: window [0,10) is not due until 15.
        assert!(agg.fire(14).is_empty());
        assert_eq!(
            agg.add(&"a", 9, 3.0, 14),
            Added::ToOpenKey,
            "out of order but within lateness"
        );
        let fired = agg.fire(15);
        assert_eq!(
            fired
                .iter()
                .map(|f| (f.key, f.window.start, f.aggregate.count, f.aggregate.sum))
                .collect::<Vec<_>>(),
            vec![("a", 0, 2, 4.0), ("b", 0, 1, 4.0)]
        );
        assert_eq!(fired[0].aggregate.mean(), 2.0);
        assert_eq!(
            agg.add(&"a", 8, 100.0, 15),
            Added::Late,
            "its window has fired"
        );
        assert_eq!(agg.late(), 1);
        let rest = agg.fire(25);
        assert_eq!(rest.len(), 1);
        assert_eq!((rest[0].aggregate.min, rest[0].aggregate.max), (2.0, 2.0));
        assert_eq!(agg.open_windows(), 0);
    }

    #[test]
    fn sessions_merge_across_gaps_shorter_than_the_gap() {
        let mut agg = WindowedAggregate::new(WindowSpec::Session { gap_ms: 10 }, 0);
        for (ts, v) in [(0, 1.0), (22, 5.0), (5, 2.0)] {
            assert!(agg.add(&1u8, ts, v, i64::MIN).accepted());
        }
        assert_eq!(agg.open_windows(), 2, "[0, 15) and [22, 32): 17 ms apart");
        for (ts, v) in [(14, 3.0), (60, 9.0), (80, 1.0)] {
            assert!(agg.add(&1u8, ts, v, i64::MIN).accepted());
        }
        // 14 bridges the first two into [0, 32); 60 and 80 are 20 ms apart: separate.
        let fired = agg.fire(100);
        let got: Vec<_> = fired
            .iter()
            .map(|f| {
                (
                    f.window.start,
                    f.window.end,
                    f.aggregate.count,
                    f.aggregate.sum,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![(0, 32, 4, 11.0), (60, 70, 1, 9.0), (80, 90, 1, 1.0)]
        );
    }

    #[test]
    fn snapshot_restores_identical_state_and_output() {
        let spec = WindowSpec::Sliding {
            size_ms: 20,
            slide_ms: 5,
        };
        let mut a = WindowedAggregate::new(spec, 0);
        for i in 0..50 {
            a.add(&(i % 3), i * 3, i as f64, i64::MIN);
        }
        let bytes = serde_json::to_vec(&a).unwrap();
        let mut b: WindowedAggregate<i64> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(a.fire(90), b.fire(90));
        assert_eq!(a.fire(1_000), b.fire(1_000));
    }
}
