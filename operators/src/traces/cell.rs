//! One cell of trace statistics: spans (or calls), errors, and the durations as
//! HDR histogram buckets (microseconds, three significant digits, up to one hour;
//! longer spans count as one hour). Cells merge exactly (bucket by bucket), so the
//! partitions' cells of one minute combine into the cell a single consumer would
//! have built; percentiles are hdrhistogram's own, within its precision of the exact
//! values (one part in a thousand), which the tests check against sorted durations.
//!
//! Buckets are kept sparse (bucket → count, keyed by the bucket's highest equivalent
//! value): a dense three-digit histogram over an hour is about 190 KB, and a cell
//! exists per service, operation, minute and partition; the sparse form costs a few
//! bytes per distinct bucket. The dense histogram is built only to read percentiles.
//! The serialised form, `[[value, count], ...]`, restores the same buckets: it is
//! used in checkpoints and exchange records.

use std::sync::OnceLock;

use hdrhistogram::Histogram;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::map_as_list::hashed::FastMap;

/// Longest duration a histogram distinguishes, µs (one hour).
const MAX_DURATION_US: u64 = 3_600_000_000;

/// Spans, errors and durations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cell {
    /// Spans (requests, calls).
    pub requests: u64,
    /// Of which with status error.
    pub errors: u64,
    /// Count per bucket, by the bucket's highest equivalent value (µs).
    buckets: FastMap<u64, u64>,
}

fn empty_histogram() -> Histogram<u64> {
    // Bounds and precision are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, MAX_DURATION_US, 3).expect("valid histogram bounds")
}

/// The bucket layout every cell shares (only its arithmetic is used).
fn layout() -> &'static Histogram<u64> {
    static LAYOUT: OnceLock<Histogram<u64>> = OnceLock::new();
    LAYOUT.get_or_init(empty_histogram)
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

impl Cell {
    /// An empty cell.
    pub fn new() -> Self {
        Cell::default()
    }

    /// Counts one span.
    pub fn observe(&mut self, duration_ms: f64, error: bool) {
        self.requests += 1;
        self.errors += u64::from(error);
        let bucket = layout().highest_equivalent(duration_us(duration_ms));
        *self.buckets.entry(bucket).or_default() += 1;
    }

    /// Adds another cell's spans.
    pub fn merge(&mut self, other: &Cell) {
        self.requests += other.requests;
        self.errors += other.errors;
        for (bucket, count) in &other.buckets {
            *self.buckets.entry(*bucket).or_default() += count;
        }
    }

    /// The durations as a dense histogram (for reading percentiles).
    fn histogram(&self) -> Histogram<u64> {
        let mut h = empty_histogram();
        for (bucket, count) in &self.buckets {
            // Every bucket value is within the bounds: it came from them.
            let _ = h.record_n(*bucket, *count);
        }
        h
    }

    /// The duration at each of `quantiles`, ms (hdrhistogram's definition: the
    /// highest value equivalent to the sample of rank `max(1, ceil(q·n))`).
    pub fn quantiles_ms<const N: usize>(&self, quantiles: [f64; N]) -> [f64; N] {
        let h = self.histogram();
        quantiles.map(|q| h.value_at_quantile(q) as f64 / 1000.0)
    }

    /// The duration at `quantile`, ms.
    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        self.quantiles_ms([quantile])[0]
    }

    /// The longest duration, ms (the highest value of its bucket).
    pub fn max_ms(&self) -> f64 {
        self.buckets
            .keys()
            .max()
            .map_or(0.0, |v| *v as f64 / 1000.0)
    }

    /// `errors / requests` (0 without requests).
    pub fn error_ratio(&self) -> f64 {
        self.errors as f64 / self.requests.max(1) as f64
    }

    /// Checks a cell that came from outside: errors at most requests, and the
    /// duration buckets summing to the requests, which are at most `max_requests`.
    pub fn validate(&self, max_requests: u64) -> Result<(), String> {
        let counted = self
            .buckets
            .values()
            .try_fold(0u64, |sum, count| sum.checked_add(*count));
        if self.requests > max_requests
            || self.errors > self.requests
            || counted != Some(self.requests)
        {
            return Err(format!(
                "a cell of {} requests, {} errors and {} durations (errors at most requests, one duration per request, at most {max_requests})",
                self.requests,
                self.errors,
                counted.map_or_else(|| "overflowing".to_owned(), |c| c.to_string())
            ));
        }
        Ok(())
    }

    /// Distinct buckets held (a cell's memory is about 40 bytes per bucket).
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }
}

#[derive(Serialize, Deserialize)]
struct CellForm {
    requests: u64,
    errors: u64,
    durations: Vec<(u64, u64)>,
}

impl Serialize for Cell {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        CellForm {
            requests: self.requests,
            errors: self.errors,
            durations: {
                let mut pairs: Vec<(u64, u64)> =
                    self.buckets.iter().map(|(v, c)| (*v, *c)).collect();
                pairs.sort_unstable();
                pairs
            },
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Cell {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let form = CellForm::deserialize(deserializer)?;
        let mut buckets = FastMap::default();
        for (value, count) in form.durations {
            if value == 0 || value > layout().highest_equivalent(MAX_DURATION_US) {
                return Err(serde::de::Error::custom(format!(
                    "duration bucket {value} µs is outside 1 µs..1 h"
                )));
            }
            *buckets
                .entry(layout().highest_equivalent(value))
                .or_default() += count;
        }
        Ok(Cell {
            requests: form.requests,
            errors: form.errors,
            buckets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use crate::test_rng::Rng;

    /// The exact quantile as hdrhistogram defines it: the value of rank
    /// `max(1, ceil(q * n))` in sorted order.
    fn exact(sorted: &[u64], q: f64) -> u64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
        sorted[rank - 1]
    }

    #[test]
    fn merged_cells_give_percentiles_within_the_histograms_precision_of_the_exact_values() {
        // Four "partitions" of one operation's spans, merged.
        let mut rng = Rng(42);
        let mut parts = vec![Cell::new(); 4];
        let mut all = Vec::new();
        let mut errors = 0;
        for i in 0..60_000usize {
            // Heavy-tailed durations: log-uniform from 0.1 ms to 10 s.
            let duration_ms = 0.1 * 10f64.powf(5.0 * rng.unit());
            let error = rng.next().is_multiple_of(50);
            parts[i % 4].observe(duration_ms, error);
            all.push(duration_us(duration_ms));
            errors += u64::from(error);
        }
        let mut merged = Cell::new();
        for p in &parts {
            merged.merge(p);
        }
        all.sort_unstable();
        assert_eq!((merged.requests, merged.errors), (60_000, errors));
        let probe = layout();
        for q in [0.5, 0.9, 0.99, 0.999] {
            let want = exact(&all, q);
            let got = (merged.quantile_ms(q) * 1000.0).round() as u64;
            // hdrhistogram reports the highest value equivalent to the exact one.
            assert!(
                got >= want && got <= probe.highest_equivalent(want),
                "q {q}: {got} µs vs exact {want} µs"
            );
            assert!((got - want) as f64 <= want as f64 * 1e-3 + 1.0);
        }
    }

    #[test]
    fn cells_round_trip_through_their_serialised_form_bucket_for_bucket() {
        let mut rng = Rng(9);
        let mut cell = Cell::new();
        for _ in 0..5_000 {
            cell.observe(rng.unit() * 2_000.0, rng.next().is_multiple_of(9));
        }
        // Beyond an hour counts as an hour; NaN as the shortest.
        cell.observe(1e12, false);
        cell.observe(f64::NAN, false);
        let json = serde_json::to_string(&cell).unwrap();
        let back: Cell = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cell);
        assert!((back.max_ms() - 3_600_000.0).abs() / 3_600_000.0 < 1e-3);
        let by_bucket: BTreeMap<u64, u64> = serde_json::from_str::<CellForm>(&json)
            .unwrap()
            .durations
            .into_iter()
            .collect();
        assert_eq!(by_bucket.values().sum::<u64>(), 5_002);
    }
}
