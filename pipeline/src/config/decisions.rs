//! `[decisions]` and `[[policy]]`: which incidents call for which action, at which
//! risk, and what runs without a human (issue 14), with their validation.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use cara_operators::decisions::policy::{Conditions, PolicyRule, Risk};
use cara_operators::decisions::DecisionSettings;

use super::{invalid, ConfigError, HumanDuration};

/// How decisions are made and audited.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionsConfig {
    /// Actions at or under this risk run without a human (`low`, `medium`, `high`).
    pub auto_approve: Risk,
    /// The environment variable holding the audit trail's HMAC key; unset or
    /// empty, entries are hashed without a key (an appended forgery whose hash was
    /// recomputed could then not be told from a real entry).
    pub audit_key_env: String,
    /// How often the process reads the wall clock into the decision stage's input
    /// (the ticks that expire unanswered decisions).
    pub tick_interval: HumanDuration,
}

impl Default for DecisionsConfig {
    fn default() -> Self {
        DecisionsConfig {
            auto_approve: Risk::Low,
            audit_key_env: "CARA_AUDIT_KEY".into(),
            tick_interval: HumanDuration(Duration::from_secs(10)),
        }
    }
}

/// How an action is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// HTTP POST of the decision as JSON to `url`.
    Webhook,
    /// A record on `topic`, for an external actuator.
    Kafka,
    /// A webhook with a paging body.
    Page,
    /// A webhook with a ticket body.
    Ticket,
}

impl ActionKind {
    fn as_str(self) -> &'static str {
        match self {
            ActionKind::Webhook => "webhook",
            ActionKind::Kafka => "kafka",
            ActionKind::Page => "page",
            ActionKind::Ticket => "ticket",
        }
    }
}

/// One `[[policy]]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Unique name, recorded in its decisions.
    pub name: String,
    /// Conditions on the incident (all that are set must hold).
    #[serde(default)]
    pub when: Conditions,
    /// The action proposed (`rollback`, `scale_out`, `page_oncall`, …).
    pub action: String,
    /// How it is carried out.
    pub kind: ActionKind,
    /// Where a webhook, page or ticket goes (http or https).
    #[serde(default)]
    pub url: Option<String>,
    /// Where a `kafka` action's record goes.
    #[serde(default)]
    pub topic: Option<String>,
    /// What it acts on; `{cause}` and `{incident}` are replaced.
    #[serde(default = "default_target")]
    pub target: String,
    /// Its risk.
    pub risk: Risk,
    /// How long a decision waits for a verdict before it expires.
    #[serde(default = "default_timeout")]
    pub approval_timeout: HumanDuration,
    /// The policy (by name) whose action is proposed when a decision expires.
    #[serde(default)]
    pub escalate_to: Option<String>,
}

fn default_target() -> String {
    "{cause}".into()
}

fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(15 * 60))
}

impl DecisionsConfig {
    /// Refuses a tick interval too short or too long to expire decisions sensibly.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let tick = self.tick_interval.0;
        if tick < Duration::from_secs(1) || tick > Duration::from_secs(300) {
            return Err(invalid(
                "decisions.tick_interval",
                "must be between 1s and 5m (unanswered decisions expire at a tick)",
            ));
        }
        Ok(())
    }

    /// The audit key from the environment variable `audit_key_env` (empty when it
    /// is unset).
    pub fn audit_key(&self) -> Vec<u8> {
        std::env::var(&self.audit_key_env)
            .map(String::into_bytes)
            .unwrap_or_default()
    }

    /// The decision stage's settings for `policies`; `None` without any.
    pub fn settings(&self, policies: &[PolicyConfig]) -> Option<DecisionSettings> {
        if policies.is_empty() {
            return None;
        }
        let rules = policies
            .iter()
            .map(|p| PolicyRule {
                name: p.name.clone(),
                when: p.when.clone(),
                action: p.action.clone(),
                kind: p.kind.as_str().to_owned(),
                target: p.target.clone(),
                risk: p.risk,
                approval_timeout_ms: p.approval_timeout.0.as_millis().min(i64::MAX as u128) as i64,
                escalate_to: p.escalate_to.clone(),
            })
            .collect();
        Some(DecisionSettings {
            rules,
            auto_approve: self.auto_approve,
        })
    }
}

/// Refuses a policy that could not be carried out or refers to nothing, naming
/// the key (`policy[i].field`).
pub fn validate_policies(policies: &[PolicyConfig]) -> Result<(), ConfigError> {
    // Names first: the other checks refer to policies by name.
    for (i, p) in policies.iter().enumerate() {
        let key = format!("policy[{i}].name");
        if p.name.trim().is_empty() {
            return Err(invalid(&key, "must not be empty"));
        }
        if policies[..i].iter().any(|q| q.name == p.name) {
            return Err(invalid(
                &key,
                format!("`{}` names two policies; names must be unique", p.name),
            ));
        }
    }
    for (i, p) in policies.iter().enumerate() {
        let key = |field: &str| format!("policy[{i}].{field}");
        if p.action.trim().is_empty() {
            return Err(invalid(&key("action"), "must not be empty"));
        }
        match p.kind {
            ActionKind::Kafka => {
                let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
                match p.topic.as_deref() {
                    Some(t) if !t.is_empty() && t.len() <= 249 && t.chars().all(legal) => {}
                    Some(t) => {
                        return Err(invalid(
                            &key("topic"),
                            format!("`{t}` is not a legal Kafka topic name"),
                        ))
                    }
                    None => {
                        return Err(invalid(
                            &key("topic"),
                            "a kafka action needs the topic its records go to",
                        ))
                    }
                }
            }
            ActionKind::Webhook | ActionKind::Page | ActionKind::Ticket => match p.url.as_deref() {
                Some(u) if u.starts_with("http://") || u.starts_with("https://") => {}
                Some(u) => {
                    return Err(invalid(
                        &key("url"),
                        format!("`{u}` is not an http:// or https:// URL"),
                    ))
                }
                None => {
                    return Err(invalid(
                        &key("url"),
                        format!("a {} action needs the URL it posts to", p.kind.as_str()),
                    ))
                }
            },
        }
        if p.approval_timeout.0 < Duration::from_secs(60) {
            return Err(invalid(&key("approval_timeout"), "must be at least 1m"));
        }
        if let Some(severity) = &p.when.min_severity {
            if !matches!(severity.as_str(), "info" | "ticket" | "page") {
                return Err(invalid(
                    &key("when.min_severity"),
                    format!("`{severity}` is not one of info, ticket, page"),
                ));
            }
        }
        if let Some(to) = &p.escalate_to {
            if to == &p.name || !policies.iter().any(|q| &q.name == to) {
                return Err(invalid(
                    &key("escalate_to"),
                    format!("`{to}` names no other policy"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const GOOD: &str = r#"
[[policy]]
name = "rollback"
when = { cause = ["payments"], min_severity = "page" }
action = "rollback"
kind = "webhook"
url = "http://127.0.0.1:9/rollback"
risk = "high"
approval_timeout = "10m"
escalate_to = "page"

[[policy]]
name = "page"
when = { min_alerts = 99 }
action = "page_oncall"
kind = "kafka"
topic = "ops.pages"
risk = "low"
"#;

    #[test]
    fn policies_become_rules_and_every_mistake_names_its_key() {
        let config = Config::from_toml(GOOD).expect("valid");
        let settings = config
            .decisions
            .settings(&config.policies)
            .expect("two policies");
        assert_eq!(settings.rules.len(), 2);
        assert_eq!(settings.rules[0].approval_timeout_ms, 600_000);
        assert_eq!(settings.rules[0].kind, "webhook");
        assert_eq!(settings.rules[0].target, "{cause}");
        assert_eq!(settings.rules[1].approval_timeout_ms, 900_000);
        assert_eq!(Config::default().decisions.settings(&[]), None);
        let cases = [
            (
                "url = \"http://127.0.0.1:9/rollback\"",
                "url = \"ftp://x\"",
                "policy[0].url",
            ),
            (
                "url = \"http://127.0.0.1:9/rollback\"\n",
                "",
                "policy[0].url",
            ),
            (
                "topic = \"ops.pages\"",
                "topic = \"bad topic\"",
                "policy[1].topic",
            ),
            (
                "escalate_to = \"page\"",
                "escalate_to = \"nobody\"",
                "policy[0].escalate_to",
            ),
            (
                "approval_timeout = \"10m\"",
                "approval_timeout = \"5s\"",
                "policy[0].approval_timeout",
            ),
            (
                "min_severity = \"page\"",
                "min_severity = \"urgent\"",
                "policy[0].when.min_severity",
            ),
            ("name = \"page\"", "name = \"rollback\"", "policy[1].name"),
            ("risk = \"high\"", "risk = \"extreme\"", "policy"),
            ("kind = \"webhook\"", "kind = \"email\"", "policy"),
        ];
        for (from, to, key) in cases {
            let text = GOOD.replacen(from, to, 1);
            let error = Config::from_toml(&text).expect_err(to).to_string();
            assert!(error.contains(key), "{to}: {error}");
        }
    }
}
