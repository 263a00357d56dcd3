//! RED metrics of spans: rate, errors and duration per service and operation per
//! tumbling window of event time (issue 4 groundwork).
//!
//! Owns, for the spans of one partition: per window and (service, operation) the
//! request count, the error count and an HDR histogram of durations (microseconds,
//! three significant digits, up to one hour; longer spans count as one hour), and
//! firing windows once the watermark (largest start time seen minus the
//! out-of-orderness bound) passes their end. Spans of fired windows are late:
//! counted, not added. Percentiles are within the histogram's precision of the exact
//! values (one part in a thousand), which the tests check against sorted durations.
//!
//! Not yet: checkpointing (histograms need a serialised form) and merging windows
//! of several partitions (histograms add exactly, so a merge stage can).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

/// Longest duration a histogram distinguishes, µs (one hour).
const MAX_DURATION_US: u64 = 3_600_000_000;

/// Window settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedSettings {
    /// Window length, ms.
    pub window_ms: i64,
    /// How far behind the largest start time spans may arrive, ms.
    pub out_of_orderness_ms: i64,
}

/// One closed window of one service and operation.
#[derive(Debug, Clone, PartialEq)]
pub struct RedWindow {
    /// Service.
    pub service: String,
    /// Operation (span name).
    pub operation: String,
    /// Window start, ms.
    pub window_start: i64,
    /// Window end (exclusive), ms.
    pub window_end: i64,
    /// Spans started in the window.
    pub requests: u64,
    /// Of which with status error.
    pub errors: u64,
    /// Requests per second over the window.
    pub rate_per_s: f64,
    /// `errors / requests`.
    pub error_ratio: f64,
    /// Duration percentiles, ms: p50, p90, p99, p99.9.
    pub p50_ms: f64,
    /// p90, ms.
    pub p90_ms: f64,
    /// p99, ms.
    pub p99_ms: f64,
    /// p99.9, ms.
    pub p999_ms: f64,
    /// Longest, ms (within the histogram's precision).
    pub max_ms: f64,
}

#[derive(Debug, Clone)]
struct Cell {
    requests: u64,
    errors: u64,
    durations: Histogram<u64>,
}

impl Cell {
    fn new() -> Self {
        Cell {
            requests: 0,
            errors: 0,
            // Bounds and precision are constants that hdrhistogram accepts.
            durations: Histogram::new_with_bounds(1, MAX_DURATION_US, 3)
                .expect("valid histogram bounds"),
        }
    }
}

/// Duration in whole microseconds, at least 1 and at most an hour.
fn duration_us(duration_ms: f64) -> u64 {
    if duration_ms.is_nan() {
        return 1;
    }
    (duration_ms * 1000.0)
        .round()
        .clamp(1.0, MAX_DURATION_US as f64) as u64
}

/// RED state of one partition.
#[derive(Debug, Clone)]
pub struct RedAggregator {
    settings: RedSettings,
    open: BTreeMap<i64, BTreeMap<(String, String), Cell>>,
    max_start_ms: Option<i64>,
    late: u64,
}

impl RedAggregator {
    /// Empty state.
    pub fn new(settings: RedSettings) -> Self {
        RedAggregator {
            settings,
            open: BTreeMap::new(),
            max_start_ms: None,
            late: 0,
        }
    }

    /// Spans that arrived after their window fired.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Windows held open right now (the bound on memory, times the keys in each).
    pub fn open_windows(&self) -> usize {
        self.open.len()
    }

    fn watermark(&self) -> Option<i64> {
        self.max_start_ms
            .map(|m| m.saturating_sub(self.settings.out_of_orderness_ms))
    }

    /// Takes in one span; `false` when it was late.
    pub fn observe(
        &mut self,
        start_ms: i64,
        service: &str,
        operation: &str,
        duration_ms: f64,
        error: bool,
    ) -> bool {
        let size = self.settings.window_ms.max(1);
        let window = start_ms.div_euclid(size) * size;
        if self.watermark().is_some_and(|w| window + size <= w) {
            self.late += 1;
            return false;
        }
        let cell = self
            .open
            .entry(window)
            .or_default()
            .entry((service.to_owned(), operation.to_owned()))
            .or_insert_with(Cell::new);
        cell.requests += 1;
        cell.errors += u64::from(error);
        cell.durations.saturating_record(duration_us(duration_ms));
        self.max_start_ms = Some(self.max_start_ms.map_or(start_ms, |m| m.max(start_ms)));
        true
    }

    /// Fires the windows the watermark has passed, oldest first, keys in order.
    pub fn fire(&mut self, out: &mut Vec<RedWindow>) {
        let Some(watermark) = self.watermark() else {
            return;
        };
        let size = self.settings.window_ms.max(1);
        while let Some(entry) = self.open.first_entry() {
            let start = *entry.key();
            if start + size > watermark {
                break;
            }
            for ((service, operation), cell) in entry.remove() {
                let q = |quantile: f64| cell.durations.value_at_quantile(quantile) as f64 / 1000.0;
                out.push(RedWindow {
                    service,
                    operation,
                    window_start: start,
                    window_end: start + size,
                    requests: cell.requests,
                    errors: cell.errors,
                    rate_per_s: cell.requests as f64 / (size as f64 / 1000.0),
                    error_ratio: cell.errors as f64 / cell.requests.max(1) as f64,
                    p50_ms: q(0.5),
                    p90_ms: q(0.9),
                    p99_ms: q(0.99),
                    p999_ms: q(0.999),
                    max_ms: cell.durations.max() as f64 / 1000.0,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_040_000;

    use crate::test_rng::Rng;

    /// The exact quantile as hdrhistogram defines it: the value of rank
    /// `max(1, ceil(q * n))` in sorted order.
    fn exact(sorted: &[u64], q: f64) -> u64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
        sorted[rank - 1]
    }

    #[test]
    fn percentiles_are_within_the_histograms_precision_of_the_exact_values() {
        let settings = RedSettings {
            window_ms: 60_000,
            out_of_orderness_ms: 5_000,
        };
        let mut red = RedAggregator::new(settings);
        let mut rng = Rng(42);
        let mut by_key: BTreeMap<(i64, &str), Vec<u64>> = BTreeMap::new();
        let mut errors: BTreeMap<(i64, &str), u64> = BTreeMap::new();
        for i in 0..60_000i64 {
            let start = T0 + i * 5; // 5 minutes of spans
            let op = if i % 3 == 0 { "GET /cart" } else { "POST /pay" };
            // Heavy-tailed durations: log-uniform from 0.1 ms to 10 s.
            let duration_ms = 0.1 * 10f64.powf(5.0 * rng.unit());
            let error = rng.next().is_multiple_of(50);
            assert!(red.observe(start, "checkout", op, duration_ms, error));
            let window = start - start.rem_euclid(60_000);
            by_key
                .entry((window, op))
                .or_default()
                .push(duration_us(duration_ms));
            *errors.entry((window, op)).or_default() += u64::from(error);
        }
        let mut out = Vec::new();
        red.fire(&mut out);
        // The watermark (last start - 5 s) has passed the first four minutes.
        assert_eq!(out.len(), 8);
        let probe = Cell::new().durations;
        for w in &out {
            let mut sorted = by_key[&(w.window_start, w.operation.as_str())].clone();
            sorted.sort_unstable();
            assert_eq!(w.requests, sorted.len() as u64);
            assert_eq!(w.errors, errors[&(w.window_start, w.operation.as_str())]);
            assert!((w.rate_per_s - sorted.len() as f64 / 60.0).abs() < 1e-9);
            for (q, got_ms) in [
                (0.5, w.p50_ms),
                (0.9, w.p90_ms),
                (0.99, w.p99_ms),
                (0.999, w.p999_ms),
            ] {
                let want = exact(&sorted, q);
                let got = (got_ms * 1000.0).round() as u64;
                // hdrhistogram reports the highest value equivalent to the exact one.
                assert!(
                    got >= want && got <= probe.highest_equivalent(want),
                    "q {q}: {got} µs vs exact {want} µs"
                );
                assert!((got - want) as f64 <= want as f64 * 1e-3 + 1.0);
            }
        }
    }

    #[test]
    fn late_spans_are_counted_and_windows_fire_in_order() {
        let settings = RedSettings {
            window_ms: 10_000,
            out_of_orderness_ms: 2_000,
        };
        let mut red = RedAggregator::new(settings);
        assert!(red.observe(T0, "a", "op", 5.0, false));
        assert!(red.observe(T0 + 13_000, "a", "op", 5.0, true));
        let mut out = Vec::new();
        red.fire(&mut out);
        assert_eq!(
            out.len(),
            1,
            "watermark T0 + 11 s closes the first window only"
        );
        assert_eq!((out[0].requests, out[0].errors), (1, 0));
        assert!(
            !red.observe(T0 + 1_000, "a", "op", 5.0, false),
            "its window fired"
        );
        assert_eq!(red.late(), 1);
        assert_eq!(red.open_windows(), 1);
        // Durations beyond an hour count as an hour; NaN as the shortest.
        assert!(red.observe(T0 + 14_000, "a", "op", 1e12, false));
        assert!(red.observe(T0 + 14_000, "a", "op", f64::NAN, false));
        assert!(red.observe(T0 + 40_000, "a", "op", 1.0, false));
        red.fire(&mut out);
        assert_eq!(
            out.len(),
            2,
            "the empty window between has no row; the last is open"
        );
        assert_eq!(out[1].requests, 3);
        assert!((out[1].max_ms - 3_600_000.0).abs() / 3_600_000.0 < 1e-3);
    }
}
