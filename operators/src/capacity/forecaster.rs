//! A series' forecaster: a small bank of [`Smoother`]s with different smoothing
//! constants run side by side over the series' steps, the one with the smallest
//! recent error at each horizon forecasting that horizon, and prediction intervals
//! from the errors the forecaster actually made at each horizon (the quantile of
//! its last absolute errors, so the interval's coverage is what was measured, not
//! what a normal model assumes). Bounded memory: the seasons, a ring of pending
//! forecasts per horizon and a ring of errors (see [`Forecaster::bytes`]).
//!
//! Owns the step clock of one series (gaps filled with the forecast, a long gap
//! starts over), the warm-up (a first day), the selection and the intervals, and
//! the time to exhaustion of a limit ([`Forecaster::exhaustion`]).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::model::{Slots, Smoother, Smoothing};

/// The bank every series runs: one smoother that follows the level quickly with no
/// trend, one smooth with a fading trend, one that carries a trend on (a disk
/// filling), one slow for long horizons. Chosen on NAB's utilisation series (see
/// BENCHMARKS.md, "Capacity forecasting").
pub const BANK: [Smoothing; 6] = [
    Smoothing {
        alpha: 0.5,
        beta: 0.0,
        gamma_daily: 0.1,
        gamma_weekly: 0.02,
        phi: 1.0,
    },
    Smoothing {
        alpha: 0.15,
        beta: 0.01,
        gamma_daily: 0.1,
        gamma_weekly: 0.02,
        phi: 0.98,
    },
    Smoothing {
        alpha: 0.2,
        beta: 0.02,
        gamma_daily: 0.05,
        gamma_weekly: 0.02,
        phi: 1.0,
    },
    Smoothing {
        alpha: 0.03,
        beta: 0.003,
        gamma_daily: 0.05,
        gamma_weekly: 0.01,
        phi: 1.0,
    },
    Smoothing {
        alpha: 0.0,
        beta: 0.0,
        gamma_daily: 1.0,
        gamma_weekly: 0.0,
        phi: 1.0,
    },
    Smoothing {
        alpha: 0.0,
        beta: 0.0,
        gamma_daily: 0.5,
        gamma_weekly: 0.0,
        phi: 1.0,
    },
];

/// Absolute errors kept per horizon for its interval.
const ERRORS_KEPT: usize = 256;
/// Errors needed before an interval is given.
const ERRORS_NEEDED: usize = 16;
/// Weight of a new error in a smoother's running error at a horizon of `steps`:
/// errors at a long horizon follow each other for as long, so they are averaged
/// over about twice the horizon (and 50 steps at least).
fn error_weight(steps: u32) -> f64 {
    1.0 / (2.0 * f64::from(steps) + 50.0)
}
/// The coverage an interval may be asked for, at least and at most.
const MIN_COVERAGE: f64 = 0.5;
const MAX_COVERAGE: f64 = 0.999;
/// A gap longer than this many days starts the series over.
const LONGEST_GAP_DAYS: i64 = 2;

/// What the forecaster was told to forecast.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastShape {
    /// The step (a bucket), dividing a day.
    pub step_ms: i64,
    /// The horizons reported, in steps, increasing.
    pub horizons: Vec<u32>,
    /// The intervals' coverage (0.9: nine in ten values inside).
    pub coverage: f64,
}

/// A forecast of one value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forecast {
    /// The point forecast.
    pub value: f64,
    /// The interval, when enough errors were seen to measure it.
    pub interval: Option<(f64, f64)>,
}

/// When a limit is forecast to be reached, in steps after the last observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhaustion {
    /// By the point forecast (`None`: not within the look-ahead).
    pub at: Option<u32>,
    /// The earliest: when the interval's upper end reaches it.
    pub earliest: Option<u32>,
    /// The latest: when the interval's lower end reaches it (`None`: not within
    /// the look-ahead).
    pub latest: Option<u32>,
}

/// One horizon's pending forecasts and errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Horizon {
    steps: u32,
    /// The step each slot's forecasts are for (`i64::MIN`: none), in a ring
    /// indexed by the target step modulo `steps` (a slot is refilled the step it
    /// is scored).
    targets: Vec<i64>,
    /// Each smoother's forecast, `bank` per slot of `targets`.
    forecasts: Vec<f32>,
    /// Each smoother's running mean absolute error at this horizon.
    error: Vec<f64>,
    /// The chosen smoother's last absolute errors.
    errors: VecDeque<f32>,
}

impl Horizon {
    fn new(steps: u32, smoothers: usize) -> Horizon {
        let slots = steps.max(1) as usize;
        Horizon {
            steps: steps.max(1),
            targets: vec![i64::MIN; slots],
            forecasts: vec![0.0; slots * smoothers],
            error: vec![0.0; smoothers],
            errors: VecDeque::with_capacity(ERRORS_KEPT),
        }
    }

    /// The smoother with the smallest running error (the first on ties).
    fn best(&self) -> usize {
        let mut best = 0;
        for (i, e) in self.error.iter().enumerate() {
            if *e < self.error[best] {
                best = i;
            }
        }
        best
    }

    /// The absolute error below which `coverage` of the kept errors fall.
    fn quantile(&self, coverage: f64) -> Option<f64> {
        if self.errors.len() < ERRORS_NEEDED {
            return None;
        }
        let mut sorted: Vec<f32> = self.errors.iter().copied().collect();
        sorted.sort_unstable_by(f32::total_cmp);
        let rank = ((coverage * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        Some(f64::from(sorted[rank - 1]))
    }
}

/// A series' forecaster (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecaster {
    step_ms: i64,
    coverage: f64,
    /// The last step observed.
    last: Option<i64>,
    /// The first step observed, and the values of the first two days (gaps
    /// filled), until they are complete and the seasons start from them.
    first: Option<i64>,
    first_days: Vec<f64>,
    /// Whether the seasons were started from the first two days.
    warm: bool,
    /// One per smoothing of the bank; empty before the first value.
    smoothers: Vec<Smoother>,
    horizons: Vec<Horizon>,
    /// The bank's size (the smoothers' constants are [`BANK`]'s or the caller's).
    #[serde(skip)]
    bank: Vec<Smoothing>,
}

impl Forecaster {
    /// A forecaster running [`BANK`].
    pub fn new(shape: &ForecastShape) -> Forecaster {
        Forecaster::with_bank(shape, &BANK)
    }

    /// A forecaster running `bank` (the backtest compares banks).
    pub fn with_bank(shape: &ForecastShape, bank: &[Smoothing]) -> Forecaster {
        let slots = Slots::new(shape.step_ms);
        Forecaster {
            step_ms: slots.step_ms,
            coverage: shape.coverage.clamp(MIN_COVERAGE, MAX_COVERAGE),
            last: None,
            first: None,
            first_days: Vec::with_capacity(2 * slots.per_day),
            warm: false,
            smoothers: Vec::new(),
            horizons: shape
                .horizons
                .iter()
                .map(|h| Horizon::new(*h, bank.len()))
                .collect(),
            bank: bank.to_vec(),
        }
    }

    /// After a restore, the constants the state was built with, and the coverage
    /// `shape` asks for now (the errors kept do not depend on it, so a changed
    /// coverage applies at once).
    pub fn resumed(mut self, bank: &[Smoothing], shape: &ForecastShape) -> Forecaster {
        self.bank = bank.to_vec();
        self.coverage = shape.coverage.clamp(MIN_COVERAGE, MAX_COVERAGE);
        self
    }

    fn slots(&self) -> Slots {
        Slots::new(self.step_ms)
    }

    /// Whether it was built for `shape`'s step and horizons.
    pub fn fits(&self, shape: &ForecastShape) -> bool {
        self.step_ms == Slots::new(shape.step_ms).step_ms
            && self.horizons.len() == shape.horizons.len()
            && self
                .horizons
                .iter()
                .zip(&shape.horizons)
                .all(|(h, steps)| h.steps == (*steps).max(1))
    }

    /// The last step observed.
    pub fn last_step(&self) -> Option<i64> {
        self.last
    }

    /// Whether its seasons were started from two whole days (before that it
    /// forecasts with the seasons it learnt so far).
    pub fn is_warm(&self) -> bool {
        self.warm
    }

    /// Learns `value` at step `n` (a bucket's start over the step). Steps before the
    /// last observed are refused (`false`); skipped steps are filled with the
    /// forecast, and a gap of over two days starts the series over.
    pub fn observe(&mut self, n: i64, value: f64) -> bool {
        if !value.is_finite() {
            return false;
        }
        if let Some(last) = self.last {
            if n <= last {
                return false;
            }
            let per_day = self.slots().per_day as i64;
            if n - last > LONGEST_GAP_DAYS * per_day {
                *self = Forecaster::with_bank(
                    &ForecastShape {
                        step_ms: self.step_ms,
                        horizons: self.horizons.iter().map(|h| h.steps).collect(),
                        coverage: self.coverage,
                    },
                    &self.bank,
                );
            } else {
                for missing in last + 1..n {
                    let filled = self.fill_value(missing);
                    self.learn(missing, filled, false);
                }
            }
        }
        self.learn(n, value, true);
        true
    }

    /// What a skipped step is taken to be: the one-step forecast.
    fn fill_value(&self, n: i64) -> f64 {
        self.forecast_from(1, n - 1).unwrap_or(0.0)
    }

    /// The chosen one-step forecast made at step `n` (before observing `n + 1`).
    fn forecast_from(&self, k: u32, n: i64) -> Option<f64> {
        let best = self.horizon_for(k)?.best();
        let smoother = self.smoothers.get(best)?;
        Some(smoother.forecast(&self.bank[best], &self.slots(), n, k))
    }

    /// The horizon whose errors judge a forecast `k` steps ahead: of those that
    /// have scored a forecast, the shortest at or beyond it, else the longest (a
    /// horizon that has not scored any would pick the bank's first smoother,
    /// which has no trend: for its first hour a filling disk's hour-ahead
    /// forecast was flat); with none scored, by the same rule over all.
    fn horizon_for(&self, k: u32) -> Option<&Horizon> {
        let by_rule = |scored: bool| {
            let mut judging = self
                .horizons
                .iter()
                .filter(move |h| !scored || !h.errors.is_empty());
            let longest = judging.clone().next_back();
            judging.find(|h| h.steps >= k).or(longest)
        };
        by_rule(true).or_else(|| by_rule(false))
    }

    fn learn(&mut self, n: i64, value: f64, scored: bool) {
        let slots = self.slots();
        self.last = Some(n);
        if self.first.is_none() {
            self.first = Some(n);
            self.smoothers = vec![Smoother::starting_at(value, &slots); self.bank.len()];
        }
        self.score_and_update(n, value, scored, &slots);
        if !self.warm {
            self.first_days.push(value);
            if self.first_days.len() == 2 * slots.per_day {
                let first = self.first.unwrap_or(n);
                for (smoother, constants) in self.smoothers.iter_mut().zip(&self.bank) {
                    smoother.start_from_two_days(
                        &self.first_days,
                        first,
                        &slots,
                        constants.beta > 0.0,
                    );
                }
                self.first_days = Vec::new();
                self.warm = true;
            }
        }
    }

    fn score_and_update(&mut self, n: i64, value: f64, scored: bool, slots: &Slots) {
        let slots = *slots;
        let smoothers = &mut self.smoothers;
        let bank = self.bank.len();
        for horizon in &mut self.horizons {
            let slot = (n.rem_euclid(i64::from(horizon.steps))) as usize;
            if horizon.targets[slot] == n && scored {
                let weight = error_weight(horizon.steps);
                let forecasts = &horizon.forecasts[slot * bank..(slot + 1) * bank];
                let chosen = f64::from(forecasts[horizon.best()]);
                for (i, f) in forecasts.iter().enumerate() {
                    let error = (value - f64::from(*f)).abs();
                    horizon.error[i] += weight * (error - horizon.error[i]);
                }
                if horizon.errors.len() == ERRORS_KEPT {
                    horizon.errors.pop_front();
                }
                horizon.errors.push_back((value - chosen).abs() as f32);
            }
        }
        for (smoother, smoothing) in smoothers.iter_mut().zip(&self.bank) {
            smoother.update(smoothing, &slots, n, value);
        }
        for horizon in &mut self.horizons {
            let k = horizon.steps;
            // Step n + k's slot is step n's (the one just scored).
            let slot = n.rem_euclid(i64::from(k)) as usize;
            horizon.targets[slot] = n + i64::from(k);
            let forecasts = &mut horizon.forecasts[slot * bank..(slot + 1) * bank];
            for ((f, s), c) in forecasts.iter_mut().zip(smoothers.iter()).zip(&self.bank) {
                *f = s.forecast(c, &slots, n, k) as f32;
            }
        }
    }

    /// The forecast of the `index`th horizon after the last observed step.
    pub fn forecast(&self, index: usize) -> Option<Forecast> {
        let horizon = self.horizons.get(index)?;
        let n = self.last?;
        let value = self.forecast_from(horizon.steps, n)?;
        let interval = horizon
            .quantile(self.coverage)
            .map(|q| (value - q, value + q));
        Some(Forecast { value, interval })
    }

    /// The measured interval half-widths: (horizon steps, width) of each horizon
    /// that has made enough forecasts that came due, shortest first, up to the
    /// first that has not.
    fn widths(&self) -> Vec<(u32, f64)> {
        self.horizons
            .iter()
            .map_while(|h| h.quantile(self.coverage).map(|q| (h.steps, q)))
            .collect()
    }

    /// When the series is forecast to reach `limit` (from below) within
    /// `lookahead` steps (each step by the smoother chosen at the horizon that
    /// judges it); `None` before it forecasts or measured an interval.
    pub fn exhaustion(&self, limit: f64, lookahead: u32) -> Option<Exhaustion> {
        let n = self.last?;
        let widths = self.widths();
        if widths.is_empty() {
            return None;
        }
        let mut found = Exhaustion {
            at: None,
            earliest: None,
            latest: None,
        };
        for k in 1..=lookahead.max(1) {
            let value = self.forecast_from(k, n)?;
            let half = half_width(&widths, k);
            if found.earliest.is_none() && value + half >= limit {
                found.earliest = Some(k);
            }
            if found.at.is_none() && value >= limit {
                found.at = Some(k);
            }
            if value - half >= limit {
                found.latest = Some(k);
                break;
            }
        }
        Some(found)
    }

    /// Bytes of state it holds.
    pub fn bytes(&self) -> usize {
        let smoothers: usize = self.smoothers.iter().map(Smoother::bytes).sum();
        let horizons: usize = self
            .horizons
            .iter()
            .map(|h| {
                std::mem::size_of::<Horizon>()
                    + 8 * h.targets.len()
                    + 4 * h.forecasts.len()
                    + 8 * h.error.len()
                    + 4 * h.errors.capacity()
            })
            .sum();
        std::mem::size_of::<Self>() + 8 * self.first_days.capacity() + smoothers + horizons
    }
}

/// The interval's half-width `k` steps ahead, from the measured `widths`: linear
/// between the horizons (from 0 at no horizon), and growing in proportion to the
/// horizon past the longest measured.
fn half_width(widths: &[(u32, f64)], k: u32) -> f64 {
    let mut previous = (0u32, 0.0f64);
    for &(steps, q) in widths {
        if k <= steps {
            let span = f64::from(steps - previous.0).max(1.0);
            let along = f64::from(k - previous.0) / span;
            return previous.1 + along * (q - previous.1);
        }
        previous = (steps, q);
    }
    previous.1 * f64::from(k) / f64::from(previous.0.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: i64 = 5 * 60_000;

    fn shape() -> ForecastShape {
        ForecastShape {
            step_ms: STEP,
            horizons: vec![12, 72, 288],
            coverage: 0.9,
        }
    }

    /// A value a day with noise from a fixed-seed generator.
    fn noise(n: i64) -> f64 {
        let x = crate::stable_hash::Fnv1a::of(&n.to_le_bytes()).finish_unit();
        (x - 0.5) * 2.0
    }

    trait Unit {
        fn finish_unit(self) -> f64;
    }
    impl Unit for u64 {
        fn finish_unit(self) -> f64 {
            (self >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    #[test]
    fn it_forecasts_from_the_first_value_and_its_intervals_once_measured() {
        let mut f = Forecaster::new(&shape());
        assert_eq!(f.forecast(0), None);
        assert!(f.observe(0, 7.0));
        let first = f.forecast(0).unwrap();
        assert_eq!((first.value, first.interval), (7.0, None));
        // The hour ahead is scored from step 12 on; 16 errors make an interval.
        for n in 1..12 + 15 {
            f.observe(n, 7.0);
        }
        assert_eq!(f.forecast(0).unwrap().interval, None);
        f.observe(12 + 15, 7.0);
        assert_eq!(f.forecast(0).unwrap().interval, Some((7.0, 7.0)));
        // The seasons start from two whole days.
        for n in 28..575 {
            f.observe(n, 7.0);
        }
        assert!(!f.is_warm());
        f.observe(575, 7.0);
        assert!(f.is_warm());
    }

    #[test]
    fn steps_out_of_order_are_refused_and_gaps_are_filled() {
        let mut f = Forecaster::new(&shape());
        assert!(f.observe(10, 1.0));
        assert!(!f.observe(10, 2.0));
        assert!(!f.observe(9, 2.0));
        assert!(!f.observe(11, f64::NAN));
        // A gap of two days is filled (with the forecast), and counts.
        assert!(f.observe(10 + 576, 1.0));
        assert!(f.is_warm());
        assert_eq!(f.last_step(), Some(586));
        // A gap of over two days starts over.
        assert!(f.observe(586 + 2 * 288 + 1, 1.0));
        assert!(!f.is_warm());
    }

    #[test]
    fn intervals_cover_about_what_they_promise() {
        let mut f = Forecaster::new(&shape());
        let series = |n: i64| {
            40.0 + 10.0 * (n as f64 * std::f64::consts::TAU / 288.0).sin() + 3.0 * noise(n)
        };
        let days = 12;
        let (mut inside, mut scored) = (0, 0);
        let mut pending: Vec<(i64, (f64, f64))> = Vec::new();
        for n in 0..288 * days {
            let value = series(n);
            pending.retain(|(target, (low, high))| {
                if *target == n {
                    scored += 1;
                    inside += usize::from(*low <= value && value <= *high);
                    false
                } else {
                    true
                }
            });
            f.observe(n, value);
            if n > 288 * 4 {
                if let Some(Forecast {
                    interval: Some(interval),
                    ..
                }) = f.forecast(1)
                {
                    pending.push((n + 72, interval));
                }
            }
        }
        let coverage = inside as f64 / scored as f64;
        assert!(scored > 2000, "{scored}");
        assert!((0.8..=0.97).contains(&coverage), "coverage {coverage}");
    }

    #[test]
    fn a_filling_disk_is_forecast_to_fill_when_it_does() {
        // 50 GB growing 1 GB an hour with a daily swing and noise; 100 GB limit.
        let mut f = Forecaster::new(&shape());
        let gb = |n: i64| {
            50.0 + n as f64 / 12.0
                + 2.0 * (n as f64 * std::f64::consts::TAU / 288.0).sin()
                + 0.3 * noise(n)
        };
        let last = 288 * 7 / 2; // a day and a half past the first two
        for n in 0..=last {
            f.observe(n, gb(n));
        }
        let truth = (last + 1..).find(|n| gb(*n) >= 100.0).unwrap() - last;
        let found = f.exhaustion(100.0, 288 * 7).expect("warm, with intervals");
        let (earliest, latest) = (found.earliest.unwrap(), found.latest.unwrap());
        assert!(
            i64::from(earliest) <= truth && truth <= i64::from(latest),
            "{truth} steps, forecast {found:?}"
        );
        let at = i64::from(found.at.unwrap());
        assert!((at - truth).abs() <= 12, "{at} vs {truth}");
        // A limit far above is not reached within the look-ahead.
        let far = f.exhaustion(1e6, 288).unwrap();
        assert_eq!((far.at, far.latest), (None, None));
    }

    #[test]
    fn interval_widths_are_interpolated_and_extrapolated() {
        let widths = [(12, 2.0), (72, 8.0)];
        assert_eq!(half_width(&widths, 6), 1.0);
        assert_eq!(half_width(&widths, 12), 2.0);
        assert_eq!(half_width(&widths, 42), 5.0);
        assert_eq!(half_width(&widths, 144), 16.0);
    }

    #[test]
    fn state_is_bounded_per_series() {
        let mut f = Forecaster::new(&shape());
        for n in 0..288 * 10 {
            f.observe(n, noise(n));
        }
        let bytes = f.bytes();
        assert!(bytes < 32 * 1024, "{bytes} bytes");
        for n in 288 * 10..288 * 20 {
            f.observe(n, noise(n));
        }
        assert_eq!(f.bytes(), bytes);
    }

    #[test]
    fn restore_equals_original() {
        let mut f = Forecaster::new(&shape());
        for n in 0..400 {
            f.observe(n, noise(n));
        }
        let bytes = crate::snapshot::encode(&f).unwrap();
        let mut restored: Forecaster = crate::snapshot::decode(&bytes).unwrap();
        restored = restored.resumed(&BANK, &shape());
        assert_eq!(restored, f);
        for n in 400..800 {
            f.observe(n, noise(n));
            restored.observe(n, noise(n));
        }
        assert_eq!(restored, f);
    }
}
