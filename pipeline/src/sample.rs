//! Quantiles of a measured sample, the one rule every report here uses: the
//! nearest rank on the sorted values (no interpolation, so a reported p99 is a
//! value that was measured).

/// The `q` quantile (0 to 1) of `sorted` (ascending): the value at rank
/// `round((n - 1) * q)`; `None` when empty.
pub fn quantile(sorted: &[i64], q: f64) -> Option<i64> {
    let last = sorted.len().checked_sub(1)?;
    let index = (last as f64 * q.clamp(0.0, 1.0)).round() as usize;
    sorted.get(index).copied()
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_are_measured_values_by_nearest_rank() {
        let hundred: Vec<i64> = (1..=100).collect();
        // (q, expected): rank round(99 q) of 1..=100.
        for (q, expected) in [(0.0, 1), (0.5, 51), (0.9, 90), (0.99, 99), (1.0, 100)] {
            assert_eq!(quantile(&hundred, q), Some(expected), "q {q}");
        }
        assert_eq!(quantile(&[7], 0.99), Some(7));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[1, 2], 5.0), Some(2), "q above 1 is the maximum");
    }
}
