//! The SLOs of the config (`[[slo]]`): where each one's events come from (spans,
//! two counters, log lines), what makes an event good, its objective, period and
//! burn-rate rules; their validation (errors name `slo[i].field`) and the form the
//! operators take them in ([`SloDefinition`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use cara_operators::slo::logs::LogSlo;
use cara_operators::slo::metrics::MetricSlo;
use cara_operators::slo::spans::{Sli, SpanSlo};
use cara_operators::slo::{default_burn_rules, BurnRule, SloSpec, SloSpecError};

use super::{invalid, ConfigError, HumanDuration};

/// What makes a span good for an SLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SliKind {
    /// Status `ok`.
    Availability,
    /// Duration strictly under `threshold_ms`.
    Latency,
}

/// Where an SLO's events come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SloSource {
    /// Spans of `service` (and `operation`): status or duration.
    #[default]
    Spans,
    /// Two counters: increases of `good_metric` over those of `total_metric`.
    Metrics,
    /// Log lines of `service`: those not at an error level are good.
    Logs,
}

/// One SLO (`[[slo]]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    /// Name: the key of its records on `cara.slo` and the `slo` label of its alerts.
    pub name: String,
    /// `spans` (the default), `metrics` or `logs`.
    #[serde(default)]
    pub source: SloSource,
    /// Spans or log lines of this service count (for metrics: a `service` label
    /// matcher).
    #[serde(default)]
    pub service: Option<String>,
    /// Only spans of this operation (span name), when set.
    #[serde(default)]
    pub operation: Option<String>,
    /// `availability` (good = status ok; for metrics, the good counter; for logs,
    /// not an error level) or `latency` (spans only: good = duration under
    /// `threshold_ms`).
    pub sli: SliKind,
    /// Latency threshold, ms (latency SLIs only).
    #[serde(default)]
    pub threshold_ms: Option<f64>,
    /// Counter of good events (metrics only).
    #[serde(default)]
    pub good_metric: Option<String>,
    /// Counter of all events (metrics only).
    #[serde(default)]
    pub total_metric: Option<String>,
    /// Label matchers of the two counters (metrics only).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Target share of good events, in (0, 1), e.g. 0.999.
    pub objective: f64,
    /// Rolling period of the error budget.
    #[serde(default = "default_slo_period")]
    pub period: HumanDuration,
    /// How far behind a partition's latest event its events may still arrive.
    #[serde(default = "default_slo_out_of_orderness")]
    pub out_of_orderness: HumanDuration,
    /// Burn-rate alert conditions; none means the SRE Workbook's four (page on
    /// 1h & 5m > 14.4 or 6h & 30m > 6; ticket on 1d & 2h > 3 or 3d & 6h > 1).
    #[serde(default)]
    pub rules: Option<Vec<BurnRule>>,
}

/// An SLO as the operators take it, by source.
#[derive(Debug, Clone, PartialEq)]
pub enum SloDefinition {
    /// Over spans.
    Spans(SpanSlo),
    /// Over two counters.
    Metrics(MetricSlo),
    /// Over log lines.
    Logs(LogSlo),
}

fn default_slo_period() -> HumanDuration {
    HumanDuration(Duration::from_secs(30 * 24 * 3600))
}

fn default_slo_out_of_orderness() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

impl SloConfig {
    /// Name, objective, period, rules and the service it watches.
    pub fn spec(&self) -> SloSpec {
        let ms = |d: &HumanDuration| d.0.as_millis().min(i64::MAX as u128) as i64;
        SloSpec {
            name: self.name.clone(),
            objective: self.objective,
            period_ms: ms(&self.period),
            out_of_orderness_ms: ms(&self.out_of_orderness),
            rules: self.rules.clone().unwrap_or_else(default_burn_rules),
            // A metrics SLO may name its service among its label matchers.
            service: self
                .service
                .clone()
                .or_else(|| self.labels.get("service").cloned()),
        }
    }

    /// The operators' form of this SLO (validate first).
    pub fn definition(&self) -> SloDefinition {
        let service = self.service.clone().unwrap_or_default();
        match self.source {
            SloSource::Spans => SloDefinition::Spans(SpanSlo {
                spec: self.spec(),
                service,
                operation: self.operation.clone(),
                sli: match self.sli {
                    SliKind::Availability => Sli::Availability,
                    SliKind::Latency => Sli::Latency {
                        threshold_ms: self.threshold_ms.unwrap_or(0.0),
                    },
                },
            }),
            SloSource::Metrics => {
                let mut labels = self.labels.clone();
                if let Some(service) = &self.service {
                    labels.insert("service".into(), service.clone());
                }
                SloDefinition::Metrics(MetricSlo {
                    spec: self.spec(),
                    good_metric: self.good_metric.clone().unwrap_or_default(),
                    total_metric: self.total_metric.clone().unwrap_or_default(),
                    labels,
                })
            }
            SloSource::Logs => SloDefinition::Logs(LogSlo {
                spec: self.spec(),
                service,
            }),
        }
    }

    /// The span form (for SLOs with `source = "spans"`).
    pub fn span_slo(&self) -> Option<SpanSlo> {
        match self.definition() {
            SloDefinition::Spans(s) => Some(s),
            _ => None,
        }
    }

    pub(super) fn validate(&self, index: usize, seen: &[SloConfig]) -> Result<(), ConfigError> {
        let key = |field: &str| format!("slo[{index}].{field}");
        if self.name.is_empty() {
            return Err(invalid(&key("name"), "must not be empty"));
        }
        if seen.iter().any(|s| s.name == self.name) {
            return Err(invalid(
                &key("name"),
                format!("`{}` names two SLOs; names must be unique", self.name),
            ));
        }
        let only_for =
            |field: &str, what: &str| Err(invalid(&key(field), format!("only for {what}")));
        match self.source {
            SloSource::Spans | SloSource::Logs => {
                if self.service.as_deref().is_none_or(str::is_empty) {
                    return Err(invalid(
                        &key("service"),
                        "names the service whose events count",
                    ));
                }
                if self.good_metric.is_some() || self.total_metric.is_some() {
                    return only_for("good_metric", "source = \"metrics\"");
                }
                if !self.labels.is_empty() {
                    return only_for("labels", "source = \"metrics\"");
                }
            }
            SloSource::Metrics => {
                for (field, value) in [
                    ("good_metric", &self.good_metric),
                    ("total_metric", &self.total_metric),
                ] {
                    if value.as_deref().is_none_or(str::is_empty) {
                        return Err(invalid(&key(field), "names a counter; source = \"metrics\" needs good_metric and total_metric"));
                    }
                }
            }
        }
        if self.source != SloSource::Spans && self.operation.is_some() {
            return only_for("operation", "source = \"spans\"");
        }
        if self.source != SloSource::Spans && self.sli == SliKind::Latency {
            return Err(invalid(
                &key("sli"),
                "latency SLIs need source = \"spans\" (span durations)",
            ));
        }
        match (self.sli, self.threshold_ms) {
            (SliKind::Latency, None) => {
                return Err(invalid(
                    &key("threshold_ms"),
                    "a latency SLI needs threshold_ms (good = duration strictly under it)",
                ))
            }
            (SliKind::Latency, Some(t)) if !(t > 0.0 && t.is_finite()) => {
                return Err(invalid(
                    &key("threshold_ms"),
                    format!("{t} must be positive"),
                ))
            }
            (SliKind::Availability, Some(_)) => {
                return only_for("threshold_ms", "sli = \"latency\"");
            }
            _ => {}
        }
        self.spec().validate().map_err(|e| match e {
            SloSpecError::Invalid { field, reason } => invalid(&key(field), reason),
        })
    }
}
