//! Scores the capacity forecaster on held-out data: each series is averaged into
//! buckets of its own sampling step, the forecaster learns every bucket in order,
//! and from the end of the training part on, at an origin every hour, its forecast
//! at each horizon is compared with what came, beside the seasonal-naive forecast
//! (the value at the same time of day on the last day observed: "repeating
//! yesterday"). The score is MASE against that forecast (Hyndman & Koehler 2006's
//! scaled error, scaled here by the seasonal-naive errors on the same origins and
//! horizon, so below 1 means better than repeating yesterday) and the coverage of
//! the prediction intervals.
//!
//! Owns the bucketing of a NAB series, the rolling-origin evaluation and the table
//! `cara backtest forecast` prints, for the forecaster's bank and for the
//! alternatives it was chosen against.

use std::fmt::Write as _;

use cara_operators::capacity::forecaster::BANK;
use cara_operators::capacity::model::{Smoothing, DAY_MS, HOUR_MS};
use cara_operators::capacity::{ForecastShape, Forecaster};

use super::nab::NabSeries;

/// The NAB series of utilisation and load the forecast is scored on: every
/// `realAWSCloudwatch` series (CPU, disk writes, network, requests) and the
/// seasonal series of `realKnownCause` and `realTraffic`.
pub fn utilisation_series(name: &str) -> bool {
    name.starts_with("realAWSCloudwatch/")
        || [
            "realKnownCause/nyc_taxi.csv",
            "realKnownCause/cpu_utilization_asg_misconfiguration.csv",
            "realKnownCause/machine_temperature_system_failure.csv",
            "realKnownCause/ec2_request_latency_system_failure.csv",
            "realTraffic/occupancy_6005.csv",
            "realTraffic/speed_6005.csv",
        ]
        .contains(&name)
}

/// How a forecast is scored.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastRun {
    /// The share of each series learnt before the first origin.
    pub train: f64,
    /// Horizons scored.
    pub horizons_ms: Vec<i64>,
    /// Intervals' coverage asked for.
    pub coverage: f64,
}

impl Default for ForecastRun {
    fn default() -> Self {
        ForecastRun {
            train: 0.6,
            horizons_ms: vec![HOUR_MS, 6 * HOUR_MS, 24 * HOUR_MS],
            coverage: 0.9,
        }
    }
}

/// One horizon's sums over the origins of a series.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HorizonScore {
    /// Origins scored (actual, forecast and seasonal-naive all known).
    pub origins: usize,
    /// Sum of the forecast's absolute errors.
    pub model_error: f64,
    /// Sum of the seasonal-naive forecast's absolute errors.
    pub naive_error: f64,
    /// Origins whose actual value fell inside the interval.
    pub inside: usize,
    /// Origins with an interval.
    pub with_interval: usize,
}

impl HorizonScore {
    /// MASE against seasonal naive; `None` without origins or naive errors.
    pub fn mase(&self) -> Option<f64> {
        (self.origins > 0 && self.naive_error > 0.0).then(|| self.model_error / self.naive_error)
    }

    /// The share of actual values inside their interval.
    pub fn coverage(&self) -> Option<f64> {
        (self.with_interval > 0).then(|| self.inside as f64 / self.with_interval as f64)
    }
}

/// A series' scores, one per horizon.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesScore {
    /// `group/file.csv`.
    pub name: String,
    /// The bucket (the series' sampling step).
    pub step_ms: i64,
    /// Buckets with a value.
    pub buckets: usize,
    /// Per horizon of the run.
    pub horizons: Vec<HorizonScore>,
    /// Bytes of forecaster state at the end.
    pub state_bytes: usize,
}

/// The series' step: its median sampling interval, in whole minutes dividing an
/// hour or a day (5 minutes for most of NAB, 30 for the taxi series).
pub fn step_of(times: &[i64]) -> i64 {
    let mut gaps: Vec<i64> = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|g| *g > 0)
        .collect();
    gaps.sort_unstable();
    let median = gaps.get(gaps.len() / 2).copied().unwrap_or(300_000);
    [
        60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000, HOUR_MS,
    ]
    .into_iter()
    .find(|s| *s >= median - median / 10)
    .unwrap_or(HOUR_MS)
}

/// The series averaged per bucket: (first bucket, values by bucket from it).
fn buckets(series: &NabSeries, step_ms: i64) -> (i64, Vec<Option<f64>>) {
    let first = series.times.first().map_or(0, |t| t.div_euclid(step_ms));
    let last = series.times.last().map_or(0, |t| t.div_euclid(step_ms));
    let mut sums = vec![(0.0, 0u32); (last - first + 1).max(0) as usize];
    for (t, v) in series.times.iter().zip(&series.values) {
        if let Some(slot) = sums.get_mut((t.div_euclid(step_ms) - first) as usize) {
            slot.0 += v;
            slot.1 += 1;
        }
    }
    let values = sums
        .into_iter()
        .map(|(sum, n)| (n > 0).then(|| sum / f64::from(n)))
        .collect();
    (first, values)
}

/// Scores `bank` on `series` (see the module docs).
pub fn score_series(series: &NabSeries, run: &ForecastRun, bank: &[Smoothing]) -> SeriesScore {
    let step_ms = step_of(&series.times);
    let (first, values) = buckets(series, step_ms);
    let horizons: Vec<u32> = run
        .horizons_ms
        .iter()
        .map(|h| (h / step_ms).max(1) as u32)
        .collect();
    let mut forecaster = Forecaster::with_bank(
        &ForecastShape {
            step_ms,
            horizons: horizons.clone(),
            coverage: run.coverage,
        },
        bank,
    );
    let per_day = DAY_MS / step_ms;
    let origin_every = (HOUR_MS / step_ms).max(1) as usize;
    let train = (values.len() as f64 * run.train.clamp(0.0, 1.0)) as usize;
    let mut scores = vec![HorizonScore::default(); horizons.len()];
    for (i, value) in values.iter().enumerate() {
        let Some(value) = *value else {
            continue;
        };
        forecaster.observe(first + i as i64, value);
        if i < train || i % origin_every != 0 {
            continue;
        }
        for (index, steps) in horizons.iter().enumerate() {
            let target = i + *steps as usize;
            let days_back = (i64::from(*steps) + per_day - 1) / per_day;
            let naive_at = target as i64 - days_back * per_day;
            let (Some(Some(actual)), Some(Some(naive)), Some(forecast)) = (
                values.get(target),
                usize::try_from(naive_at).ok().and_then(|n| values.get(n)),
                forecaster.forecast(index),
            ) else {
                continue;
            };
            let score = &mut scores[index];
            score.origins += 1;
            score.model_error += (actual - forecast.value).abs();
            score.naive_error += (actual - naive).abs();
            if let Some((low, high)) = forecast.interval {
                score.with_interval += 1;
                score.inside += usize::from(low <= *actual && *actual <= high);
            }
        }
    }
    SeriesScore {
        name: series.name.clone(),
        step_ms,
        buckets: values.iter().filter(|v| v.is_some()).count(),
        horizons: scores,
        state_bytes: forecaster.bytes(),
    }
}

/// The models compared: cara's bank, each of its smoothers alone, and the bank
/// without seasons (Holt's linear method).
pub fn models() -> Vec<(String, Vec<Smoothing>)> {
    let mut models = vec![(
        format!("cara (bank of {}, chosen per horizon)", BANK.len()),
        BANK.to_vec(),
    )];
    for (i, s) in BANK.iter().enumerate() {
        models.push((
            format!(
                "smoother {i} alone (a={}, b={}, daily={}, weekly={}, phi={})",
                s.alpha, s.beta, s.gamma_daily, s.gamma_weekly, s.phi
            ),
            vec![*s],
        ));
    }
    let no_seasons: Vec<Smoothing> = BANK
        .iter()
        .map(|s| Smoothing {
            gamma_daily: 0.0,
            gamma_weekly: 0.0,
            ..*s
        })
        .collect();
    models.push(("bank without seasons (Holt)".to_owned(), no_seasons));
    let no_weekly: Vec<Smoothing> = BANK
        .iter()
        .map(|s| Smoothing {
            gamma_weekly: 0.0,
            ..*s
        })
        .collect();
    models.push(("bank without the weekly season".to_owned(), no_weekly));
    let damped: Vec<Smoothing> = BANK
        .iter()
        .map(|s| Smoothing {
            phi: s.phi.min(0.99),
            ..*s
        })
        .collect();
    models.push((
        "bank with every trend damped (phi <= 0.99)".to_owned(),
        damped,
    ));
    let slow: Vec<Smoothing> = BANK
        .iter()
        .filter(|s| s.beta == 0.0 || s.alpha < 0.1)
        .copied()
        .collect();
    models.push(("bank without the fast trends (1 and 2)".to_owned(), slow));
    models
}

/// The median of the values present.
fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut sorted: Vec<f64> = values.collect();
    sorted.sort_unstable_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied()
}

/// A figure with two decimals, or `-`.
fn figure(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

/// Table cells joined with ` | `.
fn cells(values: impl Iterator<Item = String>) -> String {
    values.collect::<Vec<_>>().join(" | ")
}

/// Each horizon of `run` as `1h`, `6h`, ...
fn hours(run: &ForecastRun) -> Vec<String> {
    run.horizons_ms
        .iter()
        .map(|h| format!("{}h", h / HOUR_MS))
        .collect()
}

/// The per-series table of one model's scores.
pub fn series_table(scores: &[SeriesScore], run: &ForecastRun) -> String {
    let hours = hours(run);
    let mut text = format!(
        "| series | step | buckets | {} | {} |\n| --- | ---: | ---: |{}\n",
        cells(hours.iter().map(|h| format!("MASE {h}"))),
        cells(hours.iter().map(|h| format!("coverage {h}"))),
        " ---: |".repeat(2 * hours.len())
    );
    for score in scores {
        let _ = writeln!(
            text,
            "| {} | {} min | {} | {} | {} |",
            score.name,
            score.step_ms / 60_000,
            score.buckets,
            cells(score.horizons.iter().map(|h| figure(h.mase()))),
            cells(score.horizons.iter().map(|h| figure(h.coverage()))),
        );
    }
    text
}

/// The header of the table of [`summary_row`]s.
pub fn summary_header(run: &ForecastRun) -> String {
    let hours = hours(run);
    format!(
        "| model | {} |\n| --- |{}\n",
        cells(
            hours
                .iter()
                .map(|h| format!("{h}: median MASE (series < 1), coverage"))
        ),
        " --- |".repeat(hours.len())
    )
}

/// One summary row per model: median MASE, series better than seasonal naive,
/// and the coverage over every origin, per horizon.
pub fn summary_row(model: &str, scores: &[SeriesScore]) -> String {
    let horizons = scores.first().map_or(0, |s| s.horizons.len());
    let mut by_horizon = Vec::new();
    for h in 0..horizons {
        let mases: Vec<f64> = scores.iter().filter_map(|s| s.horizons[h].mase()).collect();
        let better = mases.iter().filter(|m| **m < 1.0).count();
        let (inside, with): (usize, usize) = scores
            .iter()
            .map(|s| (s.horizons[h].inside, s.horizons[h].with_interval))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        by_horizon.push(format!(
            "{} ({} of {} < 1), {}",
            figure(median(mases.iter().copied())),
            better,
            mases.len(),
            figure((with > 0).then(|| inside as f64 / with as f64))
        ));
    }
    format!("| {model} | {} |", by_horizon.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cara_operators::eval::nab::LabelledFile;

    fn series(name: &str, step_ms: i64, days: i64, value: impl Fn(i64) -> f64) -> NabSeries {
        let times: Vec<i64> = (0..days * DAY_MS / step_ms)
            .map(|i| 1_400_000_000_000 / step_ms * step_ms + i * step_ms)
            .collect();
        let values = times.iter().map(|t| value(*t)).collect();
        NabSeries {
            name: name.into(),
            labels: LabelledFile {
                rows: times.len(),
                windows: Vec::new(),
            },
            times,
            values,
        }
    }

    #[test]
    fn steps_are_the_sampling_interval() {
        assert_eq!(step_of(&[0, 300_000, 600_000, 900_000]), 300_000);
        assert_eq!(step_of(&[0, 1_800_000, 3_600_000]), 1_800_000);
        assert_eq!(step_of(&[0, 290_000, 600_000, 899_000]), 300_000);
    }

    #[test]
    fn a_seasonal_trending_series_beats_repeating_yesterday() {
        // A daily wave on a rising line: yesterday is always a day's growth behind.
        let wave = |t: i64| {
            let day = t as f64 / DAY_MS as f64;
            50.0 + 5.0 * day + 10.0 * (day * std::f64::consts::TAU).sin()
        };
        let run = ForecastRun::default();
        let score = score_series(&series("wave", 300_000, 10, wave), &run, &BANK);
        for h in &score.horizons {
            assert!(h.origins > 50, "{h:?}");
            let mase = h.mase().unwrap();
            assert!(mase < 0.2, "{mase}");
        }
        // A pure daily wave: repeating yesterday is perfect, and MASE says so
        // (no naive error: no score rather than a division by zero).
        let flat = |t: i64| 10.0 * (t as f64 / DAY_MS as f64 * std::f64::consts::TAU).sin();
        let score = score_series(&series("flat", 300_000, 10, flat), &run, &BANK);
        assert!(score.horizons[2].naive_error < 1e-6);
    }

    #[test]
    fn the_models_compared_include_the_bank_alone_and_without_seasons() {
        let models = models();
        assert_eq!(models[0].1, BANK.to_vec());
        assert!(models
            .iter()
            .any(|(_, bank)| bank.iter().all(|s| s.gamma_daily == 0.0)));
        assert_eq!(models.len(), BANK.len() + 5);
    }
}
