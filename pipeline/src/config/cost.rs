//! `[cost]`: cost attribution (issue 15): prices, the metrics that meter usage
//! and capacity, who owns a series, and how shared and idle cost are spread; its
//! defaults and validation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use cara_operators::alert::FiringPolicy;
use cara_operators::cost::bill::BillSettings;
use cara_operators::cost::{CostSettings, Prices, SpreadRule, StaticCapacity, UsageMetrics};

use super::{invalid, AnomalyConfig, ConfigError, HumanDuration};

/// Cost attribution.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostConfig {
    /// Attribute costs (table `costs`, topic `cara.costs`).
    pub enabled: bool,
    /// Length of a billing window (a divisor of a day).
    pub window: HumanDuration,
    /// How far behind a metric partition's latest point its points may still come.
    pub out_of_orderness: HumanDuration,
    /// A gauge is held at most this long after its last point.
    pub max_gap: HumanDuration,
    /// The label naming a series' owner (`service`: the point's service).
    pub owner_label: String,
    /// Owners whose usage is shared cost (e.g. `kube-system`).
    pub shared_owners: Vec<String>,
    /// Who owns each service's telemetry (log bytes, spans, active series); an
    /// unlisted service owns its own (`checkout = "team-a"`).
    pub service_owners: BTreeMap<String, String>,
    /// Where shared cost goes: `"proportional"`, `"even"` or `{ to = ["team"] }`.
    pub shared: SpreadRule,
    /// Where idle cost goes, the same way.
    pub idle: SpreadRule,
    /// The currency of the prices.
    pub currency: String,
    /// Price per unit of each resource.
    pub prices: Prices,
    /// The metrics that meter usage and capacity.
    pub metrics: UsageMetrics,
    /// Capacity paid for when no capacity metric says.
    pub capacity: StaticCapacity,
    /// Monthly budget per owner, in the currency (`team-a = 1200.0`): a
    /// `cost_budget` alert fires when the month's forecast passes it.
    pub budgets: BTreeMap<String, f64>,
}

impl Default for CostConfig {
    fn default() -> Self {
        CostConfig {
            enabled: false,
            window: HumanDuration(Duration::from_secs(3600)),
            out_of_orderness: HumanDuration(Duration::from_secs(60)),
            max_gap: HumanDuration(Duration::from_secs(300)),
            owner_label: "team".into(),
            shared_owners: Vec::new(),
            service_owners: BTreeMap::new(),
            shared: SpreadRule::Proportional,
            idle: SpreadRule::Proportional,
            currency: "USD".into(),
            prices: Prices::default(),
            metrics: UsageMetrics::default(),
            capacity: StaticCapacity::default(),
            budgets: BTreeMap::new(),
        }
    }
}

const DAY_MS: i64 = 86_400_000;

fn ms(d: &HumanDuration) -> i64 {
    d.0.as_millis().min(i64::MAX as u128) as i64
}

impl CostConfig {
    /// The stages' settings, when enabled; the owners' cost series are scored with
    /// `[anomaly]`'s tuning.
    pub fn settings(&self, anomaly: &AnomalyConfig) -> Option<Arc<CostSettings>> {
        self.enabled.then(|| {
            Arc::new(CostSettings {
                window_ms: ms(&self.window),
                out_of_orderness_ms: ms(&self.out_of_orderness),
                currency: self.currency.clone(),
                max_gap_ms: ms(&self.max_gap),
                owner_label: self.owner_label.clone(),
                shared_owners: self.shared_owners.clone(),
                service_owners: self.service_owners.clone(),
                metrics: self.metrics.clone(),
                capacity: self.capacity,
                bill: BillSettings {
                    prices: self.prices,
                    shared: self.shared.clone(),
                    idle: self.idle.clone(),
                },
                budgets: self
                    .budgets
                    .iter()
                    .map(|(owner, amount)| (owner.clone(), (amount * 1e6).round() as i64))
                    .collect(),
                scorer: anomaly.scorer,
                limits: anomaly.limits(),
                policy: FiringPolicy::default(),
            })
        })
    }

    /// Refuses what would bill nonsense, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let window = ms(&self.window);
        if window < 60_000 || DAY_MS % window != 0 {
            return Err(invalid(
                "cost.window",
                "must be at least a minute and divide a day (e.g. \"1h\", \"15m\", \"1d\")",
            ));
        }
        if ms(&self.max_gap) <= 0 {
            return Err(invalid("cost.max_gap", "must be positive"));
        }
        if self.owner_label.is_empty() {
            return Err(invalid(
                "cost.owner_label",
                "must name a label (e.g. \"team\")",
            ));
        }
        if self.currency.is_empty() {
            return Err(invalid("cost.currency", "must not be empty (e.g. \"USD\")"));
        }
        for (key, price) in self.prices.named() {
            if !price.is_finite() || price < 0.0 {
                return Err(invalid(
                    &format!("cost.prices.{key}"),
                    format!("{price} is not a price (a finite number, 0 or more)"),
                ));
            }
        }
        let mut names: Vec<(&str, &str)> = Vec::new();
        for (key, metric, _) in self.metrics.named() {
            if metric.is_empty() {
                continue; // not metered
            }
            if let Some((other, _)) = names.iter().find(|(_, m)| *m == metric) {
                return Err(invalid(
                    &format!("cost.metrics.{key}"),
                    format!(
                        "`{metric}` is also cost.metrics.{other}; one metric measures one thing"
                    ),
                ));
            }
            names.push((key, metric));
        }
        let capacities = [
            ("cpu_cores", self.capacity.cpu_cores),
            ("memory_gib", self.capacity.memory_gib),
            ("storage_gib", self.capacity.storage_gib),
        ];
        for (key, value) in capacities {
            if value.is_some_and(|v| !v.is_finite() || v < 0.0) {
                return Err(invalid(
                    &format!("cost.capacity.{key}"),
                    "must be a finite number, 0 or more",
                ));
            }
        }
        for (owner, amount) in &self.budgets {
            // Up to about nine trillion: what fits micro-units in an i64.
            if owner.is_empty() || !amount.is_finite() || !(0.0..9e12).contains(amount) {
                return Err(invalid(
                    &format!("cost.budgets.{owner}"),
                    format!("{amount} is not a budget (an owner, and an amount from 0 to 9e12)"),
                ));
            }
        }
        for (key, rule) in [("cost.shared", &self.shared), ("cost.idle", &self.idle)] {
            if let SpreadRule::To(owners) = rule {
                if owners.is_empty() || owners.iter().any(String::is_empty) {
                    return Err(invalid(key, "`to` must name at least one owner"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn a_full_section_is_read_and_becomes_the_settings() {
        let config = parse(
            r#"
[cost]
enabled = true
window = "15m"
owner_label = "namespace"
shared_owners = ["kube-system"]
shared = "even"
idle = { to = ["platform"] }
currency = "EUR"
[cost.prices]
cpu_core_hour = 0.05
[cost.metrics]
cpu_seconds = "process_cpu_seconds_total"
[cost.capacity]
cpu_cores = 64
[cost.budgets]
team-a = 1200.5
"#,
        )
        .unwrap();
        let s = config.cost.settings(&config.anomaly).unwrap();
        assert_eq!(s.window_ms, 900_000);
        assert_eq!(s.owner_label, "namespace");
        assert_eq!(s.bill.shared, SpreadRule::Even);
        assert_eq!(s.bill.idle, SpreadRule::To(vec!["platform".into()]));
        assert_eq!(s.bill.prices.cpu_core_hour, 0.05);
        assert_eq!(
            s.bill.prices.memory_gib_hour,
            Prices::default().memory_gib_hour
        );
        assert_eq!(s.metrics.cpu_seconds, "process_cpu_seconds_total");
        assert_eq!(s.capacity.cpu_cores, Some(64.0));
        assert_eq!(s.currency, "EUR");
        assert_eq!(s.budgets["team-a"], 1_200_500_000);
        let defaults = parse("").unwrap();
        assert!(
            defaults.cost.settings(&defaults.anomaly).is_none(),
            "off by default"
        );
    }

    #[test]
    fn errors_name_the_key_and_the_reason() {
        let cases = [
            ("[cost]\nwindow = \"7m\"\n", "cost.window"),
            ("[cost]\nwindow = \"10s\"\n", "cost.window"),
            ("[cost]\nowner_label = \"\"\n", "cost.owner_label"),
            (
                "[cost.prices]\ncpu_core_hour = -1.0\n",
                "cost.prices.cpu_core_hour",
            ),
            (
                "[cost.prices]\negress_gib = nan\n",
                "cost.prices.egress_gib",
            ),
            (
                "[cost.metrics]\nmemory_bytes = \"container_cpu_usage_seconds_total\"\n",
                "cost.metrics.memory_bytes",
            ),
            (
                "[cost.capacity]\ncpu_cores = -4.0\n",
                "cost.capacity.cpu_cores",
            ),
            ("[cost]\nidle = { to = [] }\n", "cost.idle"),
            ("[cost.budgets]\nteam-a = -5.0\n", "cost.budgets.team-a"),
            ("[cost]\nprice = 1\n", "price"),
        ];
        for (text, key) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.contains(key), "{text}: {e}");
        }
    }
}
