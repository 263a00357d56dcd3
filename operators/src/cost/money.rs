//! Money as integers, and the one rule that splits an amount among owners exactly.
//!
//! Owns: [`Micros`] (millionths of the configured currency), the price of a usage
//! ([`price_micros`]) and [`split_exact`], the largest-remainder split every cost,
//! shared part and idle part goes through, so the owners' amounts always add up to
//! the amount split, to the last micro-unit, whatever the order the usage arrived in.

use std::cmp::Reverse;

/// An amount of money in millionths of the configured currency.
pub type Micros = i64;

/// Micro-units in one unit of the currency.
pub const MICROS_PER_UNIT: f64 = 1_000_000.0;

/// What `usage` price units cost at `price` (currency per price unit), rounded to
/// the nearest micro-unit (half away from zero); 0 for a usage or price that is not
/// a finite non-negative number, and saturating at the largest amount.
///
/// One multiplication of two exactly known numbers, so the same inputs give the same
/// micro-units on every machine.
pub fn price_micros(usage: f64, price: f64) -> Micros {
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if positive(usage) && positive(price) {
        // `as` saturates at i64::MAX (an infinite product included).
        (usage * price * MICROS_PER_UNIT).round() as Micros
    } else {
        0
    }
}

/// `micros` as the exact decimal it is: `0.066667`, `-1.500000`.
pub fn decimal_text(micros: Micros) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    format!("{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
}

/// Splits `total` (at least 0) among the keys of `weights` in proportion to their
/// weights: each key first gets the whole micro-units of its exact share, then the
/// micro-units left over go one each to the keys with the largest remainders (ties
/// to the earlier key in `weights`' order). The parts add up to `total` exactly and
/// each is within one micro-unit of its exact share. Keys of weight 0 get 0; when
/// every weight is 0 (or `total` is not positive), every key gets 0 and nothing is
/// split: the caller decides where an amount nobody used goes.
pub fn split_exact<K: Clone>(total: Micros, weights: &[(K, u128)]) -> Vec<(K, Micros)> {
    let scaled = within_range(weights.iter().map(|(_, w)| *w).collect());
    let sum: u128 = scaled.iter().sum();
    if total <= 0 || sum == 0 {
        return weights.iter().map(|(k, _)| (k.clone(), 0)).collect();
    }
    let total_u = total as u128;
    let mut parts: Vec<(K, Micros)> = Vec::with_capacity(weights.len());
    let mut remainders: Vec<(usize, u128)> = Vec::with_capacity(weights.len());
    let mut given: u128 = 0;
    for (i, ((key, _), weight)) in weights.iter().zip(&scaled).enumerate() {
        let (whole, remainder) = mul_div_rem(total_u, *weight, sum);
        given += whole;
        // Each part is at most `total`, which fits an i64.
        parts.push((key.clone(), whole as Micros));
        remainders.push((i, remainder));
    }
    let left = (total_u - given) as usize; // fewer than the number of keys
    remainders.sort_by_key(|&(i, remainder)| (Reverse(remainder), i));
    for &(i, _) in remainders.iter().take(left) {
        parts[i].1 += 1;
    }
    parts
}

/// The largest a sum of weights may be (see [`mul_div_rem`]).
const MAX_WEIGHT_SUM: u128 = 1 << 120;

/// `weights`, halved (a key of weight above 0 keeping at least 1) until their sum is
/// below [`MAX_WEIGHT_SUM`]: usage that large is never exact to the last unit anyway.
fn within_range(mut weights: Vec<u128>) -> Vec<u128> {
    let too_large = |w: &[u128]| {
        w.iter()
            .try_fold(0u128, |sum, x| sum.checked_add(*x))
            .is_none_or(|sum| sum >= MAX_WEIGHT_SUM)
    };
    while too_large(&weights) {
        for w in &mut weights {
            if *w > 0 {
                *w = (*w >> 8).max(1);
            }
        }
    }
    weights
}

/// `(a * b) / c` and its remainder, for `a` below 2^63, `b <= c` and `c` below
/// [`MAX_WEIGHT_SUM`], without overflowing: `a * b` may pass 2^128 when weights are
/// large, so the product is then divided one bit of `a` at a time.
fn mul_div_rem(a: u128, b: u128, c: u128) -> (u128, u128) {
    match a.checked_mul(b) {
        Some(product) => (product / c, product % c),
        None => {
            // Horner's rule over the bits of a: the running remainder stays below
            // c, and 2c + c fits in a u128 as c < 2^120.
            let (mut quotient, mut remainder) = (0u128, 0u128);
            let b_div = b / c; // 0 unless b == c
            let b_rem = b % c;
            for bit in (0..64).rev() {
                quotient <<= 1;
                remainder <<= 1;
                if (a >> bit) & 1 == 1 {
                    remainder += b_rem;
                }
                while remainder >= c {
                    remainder -= c;
                    quotient += 1;
                }
            }
            (quotient + a * b_div, remainder)
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_split_gives_whole_shares_then_the_largest_remainders() {
        // (total, weights) → parts.
        let table: [(Micros, &[u128], &[Micros]); 7] = [
            // Exact shares need no remainder.
            (100, &[1, 1, 2], &[25, 25, 50]),
            // 10 / 3 = 3.33 each: the one left over goes to the first (a tie).
            (10, &[1, 1, 1], &[4, 3, 3]),
            // 100 by 1:2:4 = 14.29, 28.57, 57.14: remainders .29 .57 .14; one left.
            (100, &[1, 2, 4], &[14, 29, 57]),
            // Zero weight gets nothing, even with micro-units left over.
            (7, &[0, 1, 1], &[0, 4, 3]),
            // Nothing used: nothing split.
            (100, &[0, 0], &[0, 0]),
            (0, &[1, 2], &[0, 0]),
            // One owner takes everything.
            (1_234_567, &[5], &[1_234_567]),
        ];
        for (total, weights, expected) in table {
            let keyed: Vec<(usize, u128)> = weights.iter().copied().enumerate().collect();
            let parts: Vec<Micros> = split_exact(total, &keyed)
                .into_iter()
                .map(|(_, p)| p)
                .collect();
            assert_eq!(parts, expected, "{total} by {weights:?}");
        }
    }

    #[test]
    fn amounts_print_as_exact_decimals() {
        assert_eq!(decimal_text(66_667), "0.066667");
        assert_eq!(decimal_text(12_000_000), "12.000000");
        assert_eq!(decimal_text(-1_500_000), "-1.500000");
        assert_eq!(decimal_text(Micros::MIN), "-9223372036854.775808");
    }

    #[test]
    fn prices_round_to_the_nearest_micro_unit() {
        // 2.5 core-hours at 0.031611 a core-hour: 0.0790275 → 79,028 micro-units.
        assert_eq!(price_micros(2.5, 0.031611), 79_028);
        assert_eq!(price_micros(0.0, 5.0), 0);
        assert_eq!(price_micros(-1.0, 5.0), 0);
        assert_eq!(price_micros(f64::NAN, 5.0), 0);
        assert_eq!(price_micros(1e300, 1e300), Micros::MAX);
    }

    #[test]
    fn weights_too_large_to_multiply_still_split_exactly() {
        let big = u128::MAX / 4; // halved into range first
        let parts = split_exact(Micros::MAX / 2, &[("a", big), ("b", big / 3), ("c", 1)]);
        let sum: Micros = parts.iter().map(|(_, p)| p).sum();
        assert_eq!(sum, Micros::MAX / 2);
        // a : b = 3 : 1.
        let (a, b) = (parts[0].1 as f64, parts[1].1 as f64);
        assert!((a / b - 3.0).abs() < 1e-9, "{parts:?}");
    }

    proptest! {
        /// Whatever the owners and their usage, the parts add up to the total and
        /// each is within one micro-unit of its exact share.
        #[test]
        fn parts_add_up_and_stay_within_a_micro_unit(
            total in 0i64..1_000_000_000_000,
            weights in prop::collection::vec(0u128..1_000_000_000_000_000, 1..40),
        ) {
            let keyed: Vec<(usize, u128)> = weights.iter().copied().enumerate().collect();
            let parts = split_exact(total, &keyed);
            let sum_w: u128 = weights.iter().sum();
            let sum: Micros = parts.iter().map(|(_, p)| p).sum();
            if sum_w == 0 {
                prop_assert_eq!(sum, 0);
            } else {
                prop_assert_eq!(sum, total);
                for ((_, part), weight) in parts.iter().zip(&weights) {
                    let exact = total as f64 * *weight as f64 / sum_w as f64;
                    prop_assert!((*part as f64 - exact).abs() < 1.0 + exact * 1e-12);
                    prop_assert!(*weight > 0 || *part == 0);
                }
            }
        }
    }
}
