//! The decision executor: carries out approved decisions and reports each result
//! as a record on the decision stage's input log, where the stage applies it
//! (`executed` or `failed`) like any other input.
//!
//! It reads `cara.decisions` as any subscriber would (its own consumer group,
//! `<group>-executor`), and for each decision that became `approved`:
//! * `webhook`: HTTP POST of the decision record (JSON) to the policy's URL;
//!   `page` and `ticket`: the same with a paging (PagerDuty Events v2 shape) or
//!   ticket body. Each request carries the decision id as `Idempotency-Key`.
//!   Network errors, 408, 429 and 5xx are retried with exponential backoff
//!   (0.5 s doubling, [`MAX_ATTEMPTS`] attempts); another status fails at once.
//! * `kafka`: the decision record on the policy's topic, keyed by decision id.
//!
//! Its offset is committed only once the result record is acknowledged, so a
//! crash between carrying out an action and reporting it repeats the action with
//! the same idempotency key: at least once, deduplicable by the receiver. Results
//! for a decision already executed are ignored by the stage.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use cara_operators::decisions::records::DecisionEnvelope;
use cara_operators::decisions::stage::decision_input_message;
use cara_operators::decisions::{DecisionInput, DecisionRecord, DecisionState};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::Message;

use crate::config::decisions::ActionKind;
use crate::config::PolicyConfig;
use crate::group_member::member_config;
use crate::outbound::{OutboundSink, OutboundTopics};

/// Attempts of one webhook at most.
pub const MAX_ATTEMPTS: u32 = 6;
/// How long one HTTP request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a result's send may wait for the broker.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How one policy's action is carried out.
#[derive(Debug, Clone)]
pub struct ActionTarget {
    /// Webhook, page, ticket or kafka.
    pub kind: ActionKind,
    /// Where the request goes (webhook, page, ticket).
    pub url: Option<String>,
    /// Where the record goes (kafka).
    pub topic: Option<String>,
}

/// Each policy's action, by policy name.
pub fn targets(policies: &[PolicyConfig]) -> BTreeMap<String, ActionTarget> {
    policies
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                ActionTarget {
                    kind: p.kind,
                    url: p.url.clone(),
                    topic: p.topic.clone(),
                },
            )
        })
        .collect()
}

/// What the executor reads and writes.
#[derive(Debug, Clone)]
pub struct ExecutorSettings {
    /// The consumer group of the pipeline (the executor uses `<group>-executor`).
    pub group_id: String,
    /// `cara.decisions`.
    pub decisions_topic: String,
    /// The outbound topics (the decision exchange, for results).
    pub outbound: OutboundTopics,
    /// Each policy's action.
    pub targets: BTreeMap<String, ActionTarget>,
}

/// Starts the executor thread; it stops when `stop` is set.
pub fn spawn(
    client: &ClientConfig,
    settings: ExecutorSettings,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, KafkaError> {
    let mut config = member_config(client, &format!("{}-executor", settings.group_id));
    config
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer = config.create()?;
    consumer.subscribe(&[&settings.decisions_topic])?;
    // One producer for the `kafka` actions and the results.
    let sink = OutboundSink::new(client.clone(), settings.outbound.clone())?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(REQUEST_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    std::thread::Builder::new()
        .name("executor".into())
        .spawn(move || {
            let mut done: BTreeSet<String> = BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) else {
                    continue;
                };
                let decision = message
                    .payload()
                    .and_then(|p| serde_json::from_slice::<DecisionRecord>(p).ok());
                if let Some(d) = decision.filter(|d| d.state == DecisionState::Approved) {
                    if !done.contains(&d.id) {
                        let (ok, detail) = carry_out(&d, &settings.targets, &agent, &sink, &stop);
                        let result = DecisionEnvelope {
                            source_topic: "executor".into(),
                            source_partition: 0,
                            input: DecisionInput::Result {
                                decision_id: d.id.clone(),
                                ok,
                                detail,
                                at_ms: chrono::Utc::now().timestamp_millis(),
                            },
                        };
                        if let Err(error) =
                            sink.send_all(&[decision_input_message(&result)], SEND_TIMEOUT)
                        {
                            // Not committed: a restarted executor carries it out again,
                            // with the same idempotency key.
                            tracing::warn!(decision = %d.id, %error, "action result not sent");
                            continue;
                        }
                        done.insert(d.id);
                    }
                }
                if let Err(error) = consumer.commit_message(&message, CommitMode::Sync) {
                    tracing::warn!(%error, "executor offset not committed; a restart repeats the action");
                }
            }
        })
        .map_err(|e| KafkaError::ClientCreation(format!("starting the executor thread: {e}")))
}

/// Carries out `d`'s action: whether it succeeded, and what the receiver said.
fn carry_out(
    d: &DecisionRecord,
    targets: &BTreeMap<String, ActionTarget>,
    agent: &ureq::Agent,
    kafka: &OutboundSink,
    stop: &AtomicBool,
) -> (bool, String) {
    let Some(target) = targets.get(&d.policy_rule) else {
        return (
            false,
            format!("policy {} is not in the config any more", d.policy_rule),
        );
    };
    // Strings, integers and enums: serialising cannot fail.
    let record = serde_json::to_vec(d).unwrap_or_default();
    match target.kind {
        ActionKind::Kafka => {
            let topic = target.topic.clone().unwrap_or_default();
            match kafka.send_raw(&topic, &d.id, &record, SEND_TIMEOUT) {
                Ok(()) => (true, format!("record on {topic}")),
                Err(error) => (false, format!("producing to {topic}: {error}")),
            }
        }
        ActionKind::Webhook | ActionKind::Page | ActionKind::Ticket => {
            let url = target.url.clone().unwrap_or_default();
            let body = body_for(target.kind, d, record);
            post_with_retries(agent, &url, &d.id, &body, stop)
        }
    }
}

/// The request body of a `kind` action for `d`.
pub fn body_for(kind: ActionKind, d: &DecisionRecord, record: Vec<u8>) -> Vec<u8> {
    let body = match kind {
        ActionKind::Page => serde_json::json!({
            "event_action": "trigger",
            "dedup_key": d.id,
            "payload": {
                "summary": d.rationale,
                "source": "cara",
                "severity": "critical",
                "custom_details": {"incident": d.incident_id, "action": d.action, "target": d.target},
            },
        }),
        ActionKind::Ticket => serde_json::json!({
            "title": format!("{} on {} ({})", d.action, d.target, d.incident_id),
            "description": d.rationale,
            "idempotency_key": d.id,
            "labels": ["cara", d.policy_rule],
        }),
        ActionKind::Webhook | ActionKind::Kafka => return record,
    };
    body.to_string().into_bytes()
}

/// POSTs `body` to `url` with `Idempotency-Key: key`, retrying transient failures.
fn post_with_retries(
    agent: &ureq::Agent,
    url: &str,
    key: &str,
    body: &[u8],
    stop: &AtomicBool,
) -> (bool, String) {
    let mut backoff = Duration::from_millis(500);
    let mut last = String::new();
    for attempt in 1..=MAX_ATTEMPTS {
        let sent = agent
            .post(url)
            .header("Idempotency-Key", key)
            .content_type("application/json")
            .send(body);
        let retry = match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                last = format!("HTTP {status} from {url} (attempt {attempt})");
                if (200..300).contains(&status) {
                    return (true, last);
                }
                matches!(status, 408 | 429) || status >= 500
            }
            Err(error) => {
                last = format!("{url}: {error} (attempt {attempt})");
                true
            }
        };
        if !retry || stop.load(Ordering::Relaxed) {
            break;
        }
        std::thread::sleep(backoff);
        backoff *= 2;
    }
    (false, last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cara_operators::decisions::policy::Risk;

    #[test]
    fn pages_and_tickets_have_their_preset_bodies_and_webhooks_the_record() {
        let d = DecisionRecord {
            id: "dec-1".into(),
            at: 0,
            incident_id: "inc-1".into(),
            alert_ids: vec![],
            action: "page_oncall".into(),
            kind: "page".into(),
            target: "api".into(),
            rationale: "api is down".into(),
            risk: Risk::Low,
            requires_approval: false,
            policy_rule: "page".into(),
            state: DecisionState::Approved,
            approved_by: "policy".into(),
            detail: String::new(),
            expires_at: 0,
            escalation_of: None,
            prev_hash: String::new(),
            hash: String::new(),
        };
        let json = |kind| -> serde_json::Value {
            serde_json::from_slice(&body_for(kind, &d, b"{\"id\":\"dec-1\"}".to_vec())).unwrap()
        };
        assert_eq!(json(ActionKind::Page)["dedup_key"], "dec-1");
        assert_eq!(json(ActionKind::Page)["payload"]["summary"], "api is down");
        assert_eq!(json(ActionKind::Ticket)["idempotency_key"], "dec-1");
        assert_eq!(
            json(ActionKind::Ticket)["title"],
            "page_oncall on api (inc-1)"
        );
        assert_eq!(json(ActionKind::Webhook)["id"], "dec-1");
    }
}
