//! Capacity forecasting: for the utilisation series the config names (CPU, memory,
//! a disk, a queue's depth; by metric name and labels), a forecast with trend and
//! daily and weekly seasons, each configured horizon's predicted value with a
//! measured prediction interval, and the time until the series reaches its limit
//! (a number, or another metric with the same labels: a disk's size), with its
//! interval. When the limit may be reached within the lead time, a `capacity`
//! alert fires; through a decision policy on rule `capacity` it becomes a
//! scale-out recommendation like any incident's.
//!
//! Runs as a part of each metric partition's stack (a series lives on one
//! partition, as for anomaly scoring): points are averaged per step (a bucket),
//! each series' forecaster learns its buckets in event time, and every
//! `report_every` of event time a row per series and horizon goes to table
//! `capacity` and topic `cara.capacity`.
//!
//! - [`model`]: the smoothing equations (double-seasonal Holt–Winters);
//! - [`forecaster`]: a series' bank of smoothers, selection, intervals, exhaustion;
//! - [`stage`]: the dataflow part (series, buckets, rows, alerts).

pub mod forecaster;
pub mod model;
pub mod stage;

pub use forecaster::{Exhaustion, Forecast, ForecastShape, Forecaster};
pub use stage::{CapacityForecasts, CapacityRow};

/// The series to forecast and how (`[capacity]` of the config, validated).
#[derive(Debug, Clone, PartialEq)]
pub struct CapacitySettings {
    /// The bucket: points of a series are averaged per step.
    pub step_ms: i64,
    /// Horizons reported, increasing, each a whole number of steps.
    pub horizons_ms: Vec<i64>,
    /// The intervals' coverage (0.9: nine values in ten inside).
    pub coverage: f64,
    /// A `capacity` alert fires when the limit may be reached this soon.
    pub lead_ms: i64,
    /// How far ahead the time to exhaustion is looked for.
    pub lookahead_ms: i64,
    /// Rows are written once per this much event time (aligned to the epoch).
    pub report_every_ms: i64,
    /// The series forecast.
    pub series: Vec<SeriesSpec>,
}

impl CapacitySettings {
    /// The forecasters' shape.
    pub fn shape(&self) -> ForecastShape {
        ForecastShape {
            step_ms: self.step_ms,
            horizons: self
                .horizons_ms
                .iter()
                .map(|h| (h / self.step_ms.max(1)).clamp(1, i64::from(u32::MAX)) as u32)
                .collect(),
            coverage: self.coverage,
        }
    }

    /// The look-ahead in steps.
    pub fn lookahead_steps(&self) -> u32 {
        (self.lookahead_ms / self.step_ms.max(1)).clamp(1, i64::from(u32::MAX)) as u32
    }
}

/// Which series to forecast and against what limit.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSpec {
    /// The metric.
    pub metric: String,
    /// Labels a series must have (name, value); every series of the metric that
    /// has them is forecast on its own.
    pub labels: Vec<(String, String)>,
    /// What it must stay under.
    pub limit: Limit,
}

impl SeriesSpec {
    /// Whether a point of `metric` with `labels` (sorted or not) is forecast.
    pub fn matches(&self, metric: &str, labels: &[(&str, &str)]) -> bool {
        self.metric == metric
            && self
                .labels
                .iter()
                .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
    }
}

/// A series' limit.
#[derive(Debug, Clone, PartialEq)]
pub enum Limit {
    /// A fixed value (100 for a percentage).
    Value(f64),
    /// The last value of this metric with the series' labels (a disk's size).
    Metric(String),
    /// None: forecasts only.
    None,
}
