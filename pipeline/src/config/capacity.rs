//! `[capacity]`: capacity forecasting (issue 15): which utilisation series are
//! forecast, against which limits, at which horizons, and how soon a limit must
//! be near for a `capacity` alert; its defaults and validation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use cara_operators::capacity::{CapacitySettings, Limit, SeriesSpec};

use super::{invalid, ConfigError, HumanDuration};

/// Capacity forecasting: runs when at least one series is listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapacityConfig {
    /// Points of a series are averaged per step (a divisor of a day).
    pub step: HumanDuration,
    /// Horizons reported in table `capacity`, each a multiple of the step.
    pub horizons: Vec<HumanDuration>,
    /// The prediction intervals' coverage (0.9: nine values in ten inside).
    pub coverage: f64,
    /// A `capacity` alert fires when a limit may be reached this soon.
    pub lead_time: HumanDuration,
    /// How far ahead the time to exhaustion is looked for.
    pub lookahead: HumanDuration,
    /// Rows are written once per this much event time.
    pub report_every: HumanDuration,
    /// The series forecast (`[[capacity.series]]`).
    pub series: Vec<CapacitySeriesConfig>,
}

/// One forecast metric (every series of it with the labels, each on its own).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CapacitySeriesConfig {
    /// The metric (`disk_used_bytes`).
    pub metric: String,
    /// Labels a series must have (`{ mount = "/data" }`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// A fixed limit (100 for a percentage).
    #[serde(default)]
    pub limit: Option<f64>,
    /// Or the metric holding each series' limit, with the same labels
    /// (`disk_size_bytes`).
    #[serde(default)]
    pub limit_metric: Option<String>,
}

impl Default for CapacityConfig {
    fn default() -> Self {
        let hours = |h: u64| HumanDuration(Duration::from_secs(h * 3600));
        CapacityConfig {
            step: HumanDuration(Duration::from_secs(300)),
            horizons: vec![hours(1), hours(6), hours(24)],
            coverage: 0.9,
            lead_time: hours(24),
            lookahead: hours(7 * 24),
            report_every: hours(1),
            series: Vec::new(),
        }
    }
}

const DAY_MS: i64 = 86_400_000;

fn ms(d: &HumanDuration) -> i64 {
    d.0.as_millis().min(i64::MAX as u128) as i64
}

impl CapacityConfig {
    /// The stage's settings, when a series is listed.
    pub fn settings(&self) -> Option<Arc<CapacitySettings>> {
        if self.series.is_empty() {
            return None;
        }
        Some(Arc::new(CapacitySettings {
            step_ms: ms(&self.step),
            horizons_ms: self.horizons.iter().map(ms).collect(),
            coverage: self.coverage,
            lead_ms: ms(&self.lead_time),
            lookahead_ms: ms(&self.lookahead),
            report_every_ms: ms(&self.report_every),
            series: self
                .series
                .iter()
                .map(|s| SeriesSpec {
                    metric: s.metric.clone(),
                    labels: s
                        .labels
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    limit: match (&s.limit, &s.limit_metric) {
                        (Some(v), _) => Limit::Value(*v),
                        (None, Some(m)) => Limit::Metric(m.clone()),
                        (None, None) => Limit::None,
                    },
                })
                .collect(),
        }))
    }

    /// Refuses what cannot be forecast, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let step = ms(&self.step);
        if step < 1_000 || DAY_MS % step != 0 {
            return Err(invalid(
                "capacity.step",
                "must be at least a second and divide a day (e.g. \"5m\", \"1m\", \"1h\")",
            ));
        }
        if self.horizons.is_empty() {
            return Err(invalid(
                "capacity.horizons",
                "must list at least one horizon (e.g. [\"1h\", \"6h\", \"24h\"])",
            ));
        }
        let mut previous = 0;
        for (i, horizon) in self.horizons.iter().enumerate() {
            let h = ms(horizon);
            if h <= previous || h % step != 0 || h / step > 100_000 {
                return Err(invalid(
                    &format!("capacity.horizons[{i}]"),
                    "horizons must increase, each a multiple of capacity.step and at most 100,000 steps",
                ));
            }
            previous = h;
        }
        if !(0.5..1.0).contains(&self.coverage) {
            return Err(invalid(
                "capacity.coverage",
                format!(
                    "{} is not a coverage: from 0.5 to below 1 (e.g. 0.9)",
                    self.coverage
                ),
            ));
        }
        if ms(&self.lead_time) <= 0 {
            return Err(invalid(
                "capacity.lead_time",
                "must be positive (e.g. \"24h\")",
            ));
        }
        let lookahead = ms(&self.lookahead);
        if lookahead < ms(&self.lead_time) || lookahead / step > 100_000 {
            return Err(invalid(
                "capacity.lookahead",
                "must be at least capacity.lead_time and at most 100,000 steps",
            ));
        }
        if ms(&self.report_every) < step {
            return Err(invalid(
                "capacity.report_every",
                "must be at least capacity.step",
            ));
        }
        for (i, series) in self.series.iter().enumerate() {
            let key = |field: &str| format!("capacity.series[{i}].{field}");
            if series.metric.is_empty() {
                return Err(invalid(
                    &key("metric"),
                    "must name a metric (e.g. \"disk_used_bytes\")",
                ));
            }
            if series.limit.is_some() && series.limit_metric.is_some() {
                return Err(invalid(
                    &key("limit"),
                    "give limit or limit_metric, not both",
                ));
            }
            if series.limit.is_some_and(|l| !l.is_finite()) {
                return Err(invalid(&key("limit"), "must be a finite number"));
            }
            if series.limit_metric.as_deref() == Some(series.metric.as_str())
                || series.limit_metric.as_deref() == Some("")
            {
                return Err(invalid(
                    &key("limit_metric"),
                    "must name another metric than the one forecast (e.g. \"disk_size_bytes\")",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn check(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn no_series_no_stage_and_a_series_gives_its_settings() {
        assert_eq!(Config::default().capacity.settings(), None);
        let config = check(
            "[capacity]\nstep = \"1m\"\nhorizons = [\"1h\"]\n\
             [[capacity.series]]\nmetric = \"disk_used_bytes\"\nlabels = { mount = \"/data\" }\nlimit_metric = \"disk_size_bytes\"\n\
             [[capacity.series]]\nmetric = \"cpu\"\nlimit = 100.0\n",
        )
        .unwrap();
        let settings = config.capacity.settings().unwrap();
        assert_eq!(
            (settings.step_ms, settings.horizons_ms.clone()),
            (60_000, vec![3_600_000])
        );
        assert_eq!(
            settings.series[0].limit,
            Limit::Metric("disk_size_bytes".into())
        );
        assert_eq!(
            settings.series[0].labels,
            vec![("mount".into(), "/data".into())]
        );
        assert_eq!(settings.series[1].limit, Limit::Value(100.0));
        assert_eq!(settings.shape().horizons, vec![60]);
    }

    #[test]
    fn errors_name_the_key() {
        let series = "[[capacity.series]]\nmetric = \"m\"\n";
        for (text, key) in [
            ("[capacity]\nstep = \"7m\"\n", "capacity.step"),
            ("[capacity]\nhorizons = []\n", "capacity.horizons"),
            (
                "[capacity]\nhorizons = [\"6h\", \"1h\"]\n",
                "capacity.horizons[1]",
            ),
            ("[capacity]\nhorizons = [\"7m\"]\n", "capacity.horizons[0]"),
            ("[capacity]\ncoverage = 1.5\n", "capacity.coverage"),
            ("[capacity]\nlookahead = \"1h\"\n", "capacity.lookahead"),
            (
                "[capacity]\nreport_every = \"1m\"\n",
                "capacity.report_every",
            ),
            (
                "[[capacity.series]]\nmetric = \"\"\n",
                "capacity.series[0].metric",
            ),
            (
                "[[capacity.series]]\nmetric = \"m\"\nlimit = 1.0\nlimit_metric = \"n\"\n",
                "capacity.series[0].limit",
            ),
            (
                "[[capacity.series]]\nmetric = \"m\"\nlimit_metric = \"m\"\n",
                "capacity.series[0].limit_metric",
            ),
        ] {
            let error = check(&format!("{text}{series}")).unwrap_err();
            assert!(error.contains(key), "{text}: {error}");
        }
        let unknown = check("[capacity]\nsteps = \"5m\"\n").unwrap_err();
        assert!(unknown.contains("steps"), "{unknown}");
    }
}
