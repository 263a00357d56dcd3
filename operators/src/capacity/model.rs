//! One forecasting model: additive Holt–Winters with a damped trend and two
//! seasons, daily (one slot per step) and weekly (one slot per hour of the week, on
//! top of the daily one), after Taylor's double-seasonal exponential smoothing
//! (J. W. Taylor, "Short-term electricity demand forecasting using double seasonal
//! exponential smoothing", JORS 54(8), 2003), with the weekly season kept at an
//! hour's resolution so its memory does not grow with a finer step.
//!
//! Owns a smoother's state and its update and forecast equations; which smoothing
//! constants to run and how to choose between them is [`super::forecaster`]'s.

use serde::{Deserialize, Serialize};

/// Milliseconds in an hour.
pub const HOUR_MS: i64 = 3_600_000;
/// Milliseconds in a day.
pub const DAY_MS: i64 = 24 * HOUR_MS;
/// Hours in a week: the weekly season's slots.
pub const WEEK_HOURS: usize = 7 * 24;

/// The smoothing constants of one smoother: how fast the level, the trend and the
/// two seasons follow what is observed, and how much of the trend carries on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Smoothing {
    /// Level (0..1).
    pub alpha: f64,
    /// Trend (0..1; 0 keeps no trend).
    pub beta: f64,
    /// Daily season (0..1).
    pub gamma_daily: f64,
    /// Weekly season (0..1; 0 keeps none).
    pub gamma_weekly: f64,
    /// Trend damping (≤ 1; 1 is a straight line, below 1 the trend fades with the
    /// horizon).
    pub phi: f64,
}

impl Smoothing {
    /// The trend's weight `k` steps ahead: `phi + phi² + … + phi^k`.
    pub fn trend_steps(&self, k: u32) -> f64 {
        if self.phi >= 1.0 {
            f64::from(k)
        } else {
            self.phi * (1.0 - self.phi.powi(k as i32)) / (1.0 - self.phi)
        }
    }
}

/// Where step `n` (a bucket's start divided by the step) falls in each season.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slots {
    /// Steps per day (the daily season's length).
    pub per_day: usize,
    /// The step's length.
    pub step_ms: i64,
}

impl Slots {
    /// The slots of a step of `step_ms` (which divides a day: checked by the config).
    pub fn new(step_ms: i64) -> Slots {
        let step_ms = step_ms.clamp(1, DAY_MS);
        Slots {
            per_day: (DAY_MS / step_ms).max(1) as usize,
            step_ms,
        }
    }

    /// Step `n`'s daily slot.
    pub fn daily(&self, n: i64) -> usize {
        n.rem_euclid(self.per_day as i64) as usize
    }

    /// Step `n`'s hour of the week.
    pub fn weekly(&self, n: i64) -> usize {
        (n.saturating_mul(self.step_ms).div_euclid(HOUR_MS)).rem_euclid(WEEK_HOURS as i64) as usize
    }
}

/// One smoother's state (seasons as `f32`: their precision is far below the
/// noise they model, and they are most of a series' memory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Smoother {
    level: f64,
    trend: f64,
    daily: Vec<f32>,
    weekly: Vec<f32>,
}

impl Smoother {
    /// A smoother that knows one value: its level, no trend, no seasons yet (it
    /// forecasts from the first value and learns the seasons as they come).
    pub fn starting_at(value: f64, slots: &Slots) -> Smoother {
        Smoother {
            level: value,
            trend: 0.0,
            daily: vec![0.0; slots.per_day],
            weekly: vec![0.0; WEEK_HOURS],
        }
    }

    /// Starts over from two whole days of values, `days[i]` at step `first + i`,
    /// the classical way (Holt–Winters' initial values from the first two
    /// seasons): the trend from one day's mean to the next (none when
    /// `with_trend` is false), the daily season each slot's mean departure from
    /// that line, the level the line at the last step. The weekly season is kept.
    pub fn start_from_two_days(
        &mut self,
        days: &[f64],
        first: i64,
        slots: &Slots,
        with_trend: bool,
    ) {
        let d = slots.per_day;
        if days.len() < 2 * d {
            return;
        }
        let mean = |day: &[f64]| day.iter().sum::<f64>() / d as f64;
        let (m1, m2) = (mean(&days[..d]), mean(&days[d..2 * d]));
        let slope = if with_trend {
            (m2 - m1) / d as f64
        } else {
            0.0
        };
        // The line through both days' means at their middles.
        let middle = (d as f64 - 1.0) / 2.0;
        let line = |i: usize| m1 + slope * (i as f64 - middle);
        let slots_held = self.daily.len();
        for i in 0..d {
            let departure = (days[i] - line(i) + days[i + d] - line(i + d)) / 2.0;
            self.daily[slots.daily(first + i as i64) % slots_held] = departure as f32;
        }
        self.level = line(2 * d - 1);
        self.trend = slope;
    }

    /// The forecast `k` steps after step `n` (the last observed).
    pub fn forecast(&self, smoothing: &Smoothing, slots: &Slots, n: i64, k: u32) -> f64 {
        let target = n + i64::from(k);
        self.level
            + self.trend * smoothing.trend_steps(k)
            + f64::from(self.daily[slots.daily(target) % self.daily.len()])
            + f64::from(self.weekly[slots.weekly(target)])
    }

    /// Learns `value`, observed at step `n`.
    pub fn update(&mut self, smoothing: &Smoothing, slots: &Slots, n: i64, value: f64) {
        let day_slot = slots.daily(n) % self.daily.len();
        let week_slot = slots.weekly(n);
        let (daily, weekly) = (
            f64::from(self.daily[day_slot]),
            f64::from(self.weekly[week_slot]),
        );
        let Smoothing {
            alpha,
            beta,
            gamma_daily,
            gamma_weekly,
            phi,
        } = *smoothing;
        let previous = self.level;
        self.level =
            alpha * (value - daily - weekly) + (1.0 - alpha) * (previous + phi * self.trend);
        self.trend = beta * (self.level - previous) + (1.0 - beta) * phi * self.trend;
        let daily = gamma_daily * (value - self.level - weekly) + (1.0 - gamma_daily) * daily;
        let weekly = gamma_weekly * (value - self.level - daily) + (1.0 - gamma_weekly) * weekly;
        self.daily[day_slot] = daily as f32;
        self.weekly[week_slot] = weekly as f32;
    }

    /// Bytes of state it holds.
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>() + 4 * (self.daily.len() + self.weekly.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: i64 = 5 * 60_000;

    fn smoothing(beta: f64, phi: f64) -> Smoothing {
        Smoothing {
            alpha: 0.2,
            beta,
            gamma_daily: 0.1,
            gamma_weekly: 0.0,
            phi,
        }
    }

    #[test]
    fn the_trend_weight_is_the_horizon_undamped_and_bounded_damped() {
        assert_eq!(smoothing(0.1, 1.0).trend_steps(12), 12.0);
        let damped = smoothing(0.1, 0.9);
        assert!((damped.trend_steps(1) - 0.9).abs() < 1e-12);
        assert!((damped.trend_steps(2) - (0.9 + 0.81)).abs() < 1e-12);
        assert!(damped.trend_steps(10_000) < 9.0 + 1e-9);
    }

    #[test]
    fn slots_follow_the_day_and_the_hour_of_the_week() {
        let slots = Slots::new(STEP);
        assert_eq!(slots.per_day, 288);
        assert_eq!(
            (slots.daily(0), slots.daily(287), slots.daily(288)),
            (0, 287, 0)
        );
        // Twelve five-minute steps to the hour; 2,016 to the week.
        assert_eq!((slots.weekly(11), slots.weekly(12)), (0, 1));
        assert_eq!(slots.weekly(2016), 0);
        assert_eq!(slots.daily(-1), 287);
    }

    /// A smoother started from the series' first two days (from step 100, not
    /// at a day's start), then fed up to `last`.
    fn fed(series: impl Fn(i64) -> f64, fit: &Smoothing, last: i64) -> Smoother {
        let slots = Slots::new(STEP);
        let first = 100;
        let days: Vec<f64> = (first..first + 576).map(&series).collect();
        let mut smoother = Smoother::starting_at(days[0], &slots);
        smoother.start_from_two_days(&days, first, &slots, fit.beta > 0.0);
        for n in first + 576..=last {
            smoother.update(fit, &slots, n, series(n));
        }
        smoother
    }

    #[test]
    fn a_straight_line_is_learnt_and_carried_on() {
        let slots = Slots::new(STEP);
        let line = |n: i64| 100.0 + 0.5 * n as f64;
        let last = 288 * 8;
        let fit = smoothing(0.1, 1.0);
        let smoother = fed(line, &fit, last);
        let ahead = smoother.forecast(&fit, &slots, last, 288);
        let truth = line(last + 288);
        assert!((ahead - truth).abs() < 1e-6 * truth, "{ahead} vs {truth}");
        // With no trend kept, the forecast stays near the last level instead.
        let no_trend = smoothing(0.0, 1.0);
        let flat = fed(line, &no_trend, last);
        assert!(flat.forecast(&no_trend, &slots, last, 288) < truth - 100.0);
    }

    #[test]
    fn a_daily_shape_is_forecast_a_day_ahead() {
        let slots = Slots::new(STEP);
        let shape = |n: i64| 50.0 + 20.0 * (2.0 * std::f64::consts::PI * n as f64 / 288.0).sin();
        let fit = smoothing(0.01, 0.98);
        let last = 288 * 3;
        let smoother = fed(shape, &fit, last);
        for k in [1, 72, 144, 288] {
            let got = smoother.forecast(&fit, &slots, last, k);
            let want = shape(last + i64::from(k));
            assert!((got - want).abs() < 0.5, "k={k}: {got} vs {want}");
        }
    }
}
