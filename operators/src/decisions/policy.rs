//! Policy: which incidents call for which action, at which risk. A rule matches an
//! incident transition when every condition it sets holds (an unset condition holds
//! for all); rules are tried in the order configured and each proposes at most one
//! decision per incident.

use serde::{Deserialize, Serialize};

use crate::alert::severity_rank;
use crate::incidents::IncidentRecord;

/// How risky an action is: low-risk actions at or under the configured level run
/// without a human.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    /// Reversible and local (a ticket, a page, a cache flush).
    Low,
    /// Changes a running service (scale out, restart one instance).
    Medium,
    /// Hard to undo or wide (roll back a release, fail over).
    High,
}

impl Risk {
    /// As written in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        }
    }
}

/// What an incident must show for a rule to apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Conditions {
    /// The probable root cause (the top-ranked service) is one of these.
    pub cause: Vec<String>,
    /// At least one of the incident's services is one of these.
    pub services: Vec<String>,
    /// At least one of its alerts' rules is one of these.
    pub rules: Vec<String>,
    /// None of its alerts' rules is one of these (a rollback is no answer to a
    /// `capacity` forecast).
    pub except_rules: Vec<String>,
    /// Its severity is at least this (`info` < `ticket` < `page`).
    pub min_severity: Option<String>,
    /// It holds at least this many alerts.
    pub min_alerts: usize,
}

/// One policy rule, as the decision stage needs it (how the action is carried out,
/// URL or topic, is the executor's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRule {
    /// Its name, recorded in each decision it makes.
    pub name: String,
    /// When it applies.
    pub when: Conditions,
    /// The action proposed (`rollback`, `scale_out`, `page_oncall`, …).
    pub action: String,
    /// How it is carried out: `webhook`, `kafka`, `page` or `ticket`.
    pub kind: String,
    /// What it acts on; `{cause}` and `{incident}` are replaced.
    pub target: String,
    /// Its risk.
    pub risk: Risk,
    /// A decision waiting for a human expires this long after it was proposed.
    pub approval_timeout_ms: i64,
    /// On expiry, the rule (by name) whose action is then proposed instead.
    pub escalate_to: Option<String>,
}

impl PolicyRule {
    /// Whether `incident` meets every condition.
    pub fn matches(&self, incident: &IncidentRecord) -> bool {
        let w = &self.when;
        let cause = incident
            .probable_root_cause
            .first()
            .map(|c| c.service.as_str());
        let any_of = |wanted: &[String], have: &[String]| {
            wanted.is_empty() || have.iter().any(|h| wanted.contains(h))
        };
        (w.cause.is_empty() || cause.is_some_and(|c| w.cause.iter().any(|x| x == c)))
            && any_of(&w.services, &incident.services)
            && any_of(&w.rules, &incident.rules)
            && !incident.rules.iter().any(|r| w.except_rules.contains(r))
            && w.min_severity
                .as_deref()
                .is_none_or(|min| severity_rank(&incident.severity) >= severity_rank(min))
            && incident.alert_ids.len() >= w.min_alerts
    }

    /// The target for `incident`.
    pub fn target_for(&self, incident: &IncidentRecord) -> String {
        let cause = incident
            .probable_root_cause
            .first()
            .map_or("", |c| c.service.as_str());
        self.target
            .replace("{cause}", cause)
            .replace("{incident}", &incident.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incidents::{Cause, IncidentStatus};

    pub(crate) fn incident(cause: &str, severity: &str, rules: &[&str]) -> IncidentRecord {
        IncidentRecord {
            id: "inc-1".into(),
            status: IncidentStatus::Open,
            at: 0,
            opened_at: 0,
            resolved_at: None,
            severity: severity.into(),
            alert_ids: vec!["a1".into(), "a2".into()],
            rules: rules.iter().map(|r| r.to_string()).collect(),
            services: vec![cause.into(), "web".into()],
            probable_root_cause: vec![Cause {
                service: cause.into(),
                score: 0.9,
                reasons: vec![],
            }],
            merged_into: None,
            summary: String::new(),
        }
    }

    fn rule(when: Conditions) -> PolicyRule {
        PolicyRule {
            name: "r".into(),
            when,
            action: "rollback".into(),
            kind: "webhook".into(),
            target: "deploy/{cause} for {incident}".into(),
            risk: Risk::High,
            approval_timeout_ms: 60_000,
            escalate_to: None,
        }
    }

    /// Conditions read like a table: what each requires, and an incident of
    /// payments at `ticket` with an SLO burn among its alerts.
    #[test]
    fn every_condition_must_hold_and_unset_ones_hold_for_all() {
        let inc = incident("payments", "ticket", &["slo_burn", "metric_anomaly"]);
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases = [
            (Conditions::default(), true),
            (
                Conditions {
                    cause: strings(&["payments"]),
                    ..Default::default()
                },
                true,
            ),
            (
                Conditions {
                    cause: strings(&["web"]),
                    ..Default::default()
                },
                false,
            ),
            (
                Conditions {
                    services: strings(&["web"]),
                    ..Default::default()
                },
                true,
            ),
            (
                Conditions {
                    services: strings(&["db"]),
                    ..Default::default()
                },
                false,
            ),
            (
                Conditions {
                    rules: strings(&["slo_burn"]),
                    ..Default::default()
                },
                true,
            ),
            (
                Conditions {
                    rules: strings(&["log_pattern"]),
                    ..Default::default()
                },
                false,
            ),
            (
                Conditions {
                    except_rules: strings(&["capacity", "slo_burn"]),
                    ..Default::default()
                },
                false,
            ),
            (
                Conditions {
                    except_rules: strings(&["capacity"]),
                    ..Default::default()
                },
                true,
            ),
            (
                Conditions {
                    min_severity: Some("ticket".into()),
                    ..Default::default()
                },
                true,
            ),
            (
                Conditions {
                    min_severity: Some("page".into()),
                    ..Default::default()
                },
                false,
            ),
            (
                Conditions {
                    min_alerts: 2,
                    ..Default::default()
                },
                true,
            ),
            (
                Conditions {
                    min_alerts: 3,
                    ..Default::default()
                },
                false,
            ),
        ];
        for (when, expected) in cases {
            assert_eq!(rule(when.clone()).matches(&inc), expected, "{when:?}");
        }
        assert_eq!(
            rule(Conditions::default()).target_for(&inc),
            "deploy/payments for inc-1"
        );
        assert!(Risk::Low < Risk::Medium && Risk::Medium < Risk::High);
    }
}
