//! The decision state machine: [`DecisionInput`] records in, decision state changes
//! and audit entries out, a pure function of the records and their order.
//!
//! ```text
//! incident (open/update) ─ rule matches ─▶ proposed ─ risk ≤ auto_approve ─▶ approved (by policy)
//!                                          proposed ─ verdict approve ─▶ approved (by whom)
//!                                          proposed ─ verdict reject ──▶ rejected
//!                                          proposed ─ tick ≥ expires_at ─▶ expired ─▶ the escalation rule's decision
//!                                          approved ─ result ok / not ─▶ executed / failed
//! ```
//!
//! The clock is the records' own: each input's time (an incident's event time, a
//! verdict's, a tick's, a result's) moves it forward, and proposals expire when it
//! passes their deadline. A verdict for a decision that is not waiting (unknown,
//! decided, expired) is chained in the audit trail as `verdict_ignored`; a result
//! for one not approved, or received again, changes nothing (an executor retries).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::audit::{AuditChain, AuditEntry};
use super::policy::PolicyRule;
use super::{DecisionInput, DecisionRecord, DecisionSettings, DecisionState, VerdictKind};
use crate::incidents::{IncidentRecord, IncidentStatus};
use crate::stable_hash::Fnv1a;

/// How long (of the decision clock) an incident is remembered as decided by a
/// rule, so that its later updates do not propose the same action again.
pub const DECIDED_REMEMBERED_MS: i64 = 7 * 86_400_000;

/// What the machine keeps between records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct MakerState {
    /// The clock: the latest input time, ms.
    now: i64,
    /// Decisions not final yet (proposed or approved), by id.
    #[serde(with = "crate::map_as_list")]
    open: BTreeMap<String, DecisionRecord>,
    /// The incident each proposed decision was made for (for its escalation).
    #[serde(with = "crate::map_as_list")]
    incidents: BTreeMap<String, IncidentRecord>,
    /// Decision ids made so far, with when (pruned after [`DECIDED_REMEMBERED_MS`]).
    #[serde(with = "crate::map_as_list")]
    made: BTreeMap<String, i64>,
    chain: AuditChain,
    /// Results received for decisions not waiting for one (repeats).
    repeated_results: u64,
}

/// Turns incidents, verdicts, ticks and results into decisions.
#[derive(Clone, PartialEq)]
pub struct DecisionMaker {
    settings: DecisionSettings,
    /// The audit key (not part of the state: it comes from the environment).
    key: Vec<u8>,
    state: MakerState,
}

impl std::fmt::Debug for DecisionMaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionMaker")
            .field("settings", &self.settings)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// What one input produced.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DecisionOutput {
    /// Decision state changes, in order.
    pub decisions: Vec<DecisionRecord>,
    /// Their audit entries, and those of ignored verdicts, in chain order.
    pub audit: Vec<AuditEntry>,
}

impl DecisionMaker {
    /// Nothing decided yet; entries hashed under `key` (empty: unkeyed SHA-256).
    pub fn new(settings: DecisionSettings, key: Vec<u8>) -> DecisionMaker {
        DecisionMaker {
            settings,
            key,
            state: MakerState {
                now: i64::MIN,
                open: BTreeMap::new(),
                incidents: BTreeMap::new(),
                made: BTreeMap::new(),
                chain: AuditChain::default(),
                repeated_results: 0,
            },
        }
    }

    /// Continues from [`DecisionMaker::snapshot`] under the current settings.
    pub fn restore(
        bytes: &[u8],
        settings: DecisionSettings,
        key: Vec<u8>,
    ) -> Result<DecisionMaker, crate::snapshot::SnapshotError> {
        Ok(DecisionMaker {
            settings,
            key,
            state: crate::snapshot::decode(bytes)?,
        })
    }

    /// The state, for a checkpoint.
    pub fn snapshot(&self) -> Result<Vec<u8>, crate::snapshot::SnapshotError> {
        crate::snapshot::encode(&self.state)
    }

    /// Decisions proposed or approved and not final yet.
    pub fn open_decisions(&self) -> usize {
        self.state.open.len()
    }

    /// The audit chain's head: entries appended so far and the last one's hash.
    pub fn audit_head(&self) -> (u64, String) {
        let (next, hash) = self.state.chain.head();
        (next, hash.to_owned())
    }

    /// Results received for decisions not waiting for one.
    pub fn repeated_results(&self) -> u64 {
        self.state.repeated_results
    }

    /// The clock (the latest input time), if any input came.
    pub fn now(&self) -> Option<i64> {
        (self.state.now != i64::MIN).then_some(self.state.now)
    }

    /// Applies one input.
    pub fn apply(&mut self, input: &DecisionInput, out: &mut DecisionOutput) {
        let at = match input {
            DecisionInput::Incident { incident } => incident.at,
            DecisionInput::Verdict { at_ms, .. }
            | DecisionInput::Tick { at_ms }
            | DecisionInput::Result { at_ms, .. } => *at_ms,
        };
        self.state.now = self.state.now.max(at);
        self.expire_due(out);
        match input {
            DecisionInput::Incident { incident } => self.on_incident(incident, out),
            DecisionInput::Verdict {
                decision_id,
                verdict,
                by,
                reason,
                at_ms,
            } => self.on_verdict(decision_id, *verdict, by, reason, *at_ms, out),
            DecisionInput::Tick { .. } => {}
            DecisionInput::Result {
                decision_id,
                ok,
                detail,
                ..
            } => self.on_result(decision_id, *ok, detail, out),
        }
        let forget_before = self.state.now.saturating_sub(DECIDED_REMEMBERED_MS);
        self.state.made.retain(|_, at| *at >= forget_before);
    }

    fn on_incident(&mut self, incident: &IncidentRecord, out: &mut DecisionOutput) {
        if !matches!(
            incident.status,
            IncidentStatus::Open | IncidentStatus::Update
        ) {
            return;
        }
        let rules: Vec<PolicyRule> = self
            .settings
            .rules
            .iter()
            .filter(|r| r.matches(incident))
            .cloned()
            .collect();
        for rule in rules {
            self.propose(&rule, incident, None, out);
        }
    }

    fn propose(
        &mut self,
        rule: &PolicyRule,
        incident: &IncidentRecord,
        escalation_of: Option<&str>,
        out: &mut DecisionOutput,
    ) {
        let id = decision_id(&incident.id, &rule.name);
        if self.state.made.contains_key(&id) {
            return;
        }
        let now = self.state.now;
        self.state.made.insert(id.clone(), now);
        let cause = incident.probable_root_cause.first();
        let target = rule.target_for(incident);
        let requires_approval = rule.risk > self.settings.auto_approve;
        let rationale =
            format!(
            "{}{} ({} alerts on {}); probable cause {}{}; policy {} proposes {} on {} ({} risk{})",
            match escalation_of {
                Some(expired) => format!("escalation of {expired}, unanswered: "),
                None => String::new(),
            },
            incident.id,
            incident.alert_ids.len(),
            incident.services.join(", "),
            cause.map_or("unknown", |c| c.service.as_str()),
            cause
                .and_then(|c| c.reasons.first())
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
            rule.name,
            rule.action,
            target,
            rule.risk.as_str(),
            if requires_approval { ", needs approval" } else { ", approved by the policy" },
        );
        let record = DecisionRecord {
            id: id.clone(),
            at: now,
            incident_id: incident.id.clone(),
            alert_ids: incident.alert_ids.clone(),
            action: rule.action.clone(),
            kind: rule.kind.clone(),
            target,
            rationale,
            risk: rule.risk,
            requires_approval,
            policy_rule: rule.name.clone(),
            state: DecisionState::Proposed,
            approved_by: String::new(),
            detail: String::new(),
            expires_at: now.saturating_add(rule.approval_timeout_ms),
            escalation_of: escalation_of.map(str::to_owned),
            prev_hash: String::new(),
            hash: String::new(),
        };
        self.state.incidents.insert(id.clone(), incident.clone());
        self.change(record, "policy", out);
        if !requires_approval {
            self.transition(&id, DecisionState::Approved, "policy", "", out);
        }
    }

    fn on_verdict(
        &mut self,
        decision_id: &str,
        verdict: VerdictKind,
        by: &str,
        reason: &str,
        at_ms: i64,
        out: &mut DecisionOutput,
    ) {
        let waiting = self
            .state
            .open
            .get(decision_id)
            .is_some_and(|d| d.state == DecisionState::Proposed);
        if !waiting {
            let why = match self.state.open.get(decision_id) {
                Some(d) => format!(
                    "the decision is {}, not waiting for a verdict",
                    d.state.as_str()
                ),
                None => {
                    "no decision waiting under this id (unknown, decided or expired)".to_owned()
                }
            };
            let verdict = serde_json::json!({
                "decision_id": decision_id, "verdict": verdict, "by": by,
                "reason": reason, "at_ms": at_ms, "ignored": why,
            });
            let entry = self.state.chain.append(
                &self.key,
                self.state.now,
                "verdict_ignored",
                decision_id,
                by,
                verdict.to_string(),
            );
            out.audit.push(entry);
            return;
        }
        let state = match verdict {
            VerdictKind::Approve => DecisionState::Approved,
            VerdictKind::Reject => DecisionState::Rejected,
        };
        self.transition(decision_id, state, by, reason, out);
    }

    fn on_result(&mut self, decision_id: &str, ok: bool, detail: &str, out: &mut DecisionOutput) {
        let approved = self
            .state
            .open
            .get(decision_id)
            .is_some_and(|d| d.state == DecisionState::Approved);
        if !approved {
            self.state.repeated_results += 1;
            return;
        }
        let state = match ok {
            true => DecisionState::Executed,
            false => DecisionState::Failed,
        };
        self.transition(decision_id, state, "executor", detail, out);
    }

    /// Expires the proposals whose deadline the clock passed, in deadline order, and
    /// proposes their escalations.
    fn expire_due(&mut self, out: &mut DecisionOutput) {
        let now = self.state.now;
        let mut due: Vec<(i64, String)> = self
            .state
            .open
            .values()
            .filter(|d| d.state == DecisionState::Proposed && d.expires_at <= now)
            .map(|d| (d.expires_at, d.id.clone()))
            .collect();
        due.sort();
        for (expires_at, id) in due {
            let detail = format!(
                "no verdict by {}",
                crate::time::rfc3339_ms::to_text(expires_at)
            );
            let rule = self.state.open.get(&id).map(|d| d.policy_rule.clone());
            let incident = self.state.incidents.get(&id).cloned();
            self.transition(&id, DecisionState::Expired, "clock", &detail, out);
            let escalation = rule
                .and_then(|name| self.settings.rules.iter().find(|r| r.name == name))
                .and_then(|r| r.escalate_to.clone())
                .and_then(|to| self.settings.rules.iter().find(|r| r.name == to).cloned());
            if let (Some(rule), Some(incident)) = (escalation, incident) {
                self.propose(&rule, &incident, Some(&id), out);
            }
        }
    }

    /// Moves decision `id` to `state`, by `by`, with `detail`.
    fn transition(
        &mut self,
        id: &str,
        state: DecisionState,
        by: &str,
        detail: &str,
        out: &mut DecisionOutput,
    ) {
        let Some(mut record) = self.state.open.get(id).cloned() else {
            return;
        };
        record.at = self.state.now;
        record.state = state;
        record.detail = detail.to_owned();
        if state == DecisionState::Approved {
            record.approved_by = by.to_owned();
        }
        self.change(record, by, out);
    }

    /// Chains `record` (a change by `by`) and emits it; keeps it while not final.
    fn change(&mut self, mut record: DecisionRecord, by: &str, out: &mut DecisionOutput) {
        record.prev_hash.clear();
        record.hash.clear();
        // Strings, integers and enums: serialising cannot fail.
        let payload = serde_json::to_string(&record).unwrap_or_default();
        let entry = self.state.chain.append(
            &self.key,
            record.at,
            record.state.as_str(),
            &record.id,
            by,
            payload,
        );
        record.prev_hash = entry.prev_hash.clone();
        record.hash = entry.hash.clone();
        match record.state {
            DecisionState::Proposed | DecisionState::Approved => {
                self.state.open.insert(record.id.clone(), record.clone());
            }
            _ => {
                self.state.open.remove(&record.id);
            }
        }
        if record.state != DecisionState::Proposed {
            self.state.incidents.remove(&record.id);
        }
        out.audit.push(entry);
        out.decisions.push(record);
    }
}

/// The id of the decision `rule` makes for `incident_id`.
pub fn decision_id(incident_id: &str, rule: &str) -> String {
    let key = format!("{incident_id}\u{0}{rule}");
    format!("dec-{:016x}", Fnv1a::of(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::audit::verify;
    use crate::decisions::policy::{Conditions, Risk};
    use crate::incidents::Cause;

    const KEY: &[u8] = b"k";
    const MIN: i64 = 60_000;

    fn rule(name: &str, action: &str, risk: Risk, escalate_to: Option<&str>) -> PolicyRule {
        PolicyRule {
            name: name.into(),
            when: Conditions {
                cause: vec!["payments".into()],
                ..Conditions::default()
            },
            action: action.into(),
            kind: "webhook".into(),
            target: "{cause}".into(),
            risk,
            approval_timeout_ms: 10 * MIN,
            escalate_to: escalate_to.map(str::to_owned),
        }
    }

    fn settings() -> DecisionSettings {
        let mut page = rule("page", "page_oncall", Risk::Low, None);
        page.when.min_alerts = 99; // only ever proposed as an escalation
        DecisionSettings {
            rules: vec![
                rule("ticket", "open_ticket", Risk::Low, None),
                rule("rollback", "rollback", Risk::High, Some("page")),
                page,
            ],
            auto_approve: Risk::Low,
        }
    }

    fn incident(id: &str, status: IncidentStatus, cause: &str, at: i64) -> DecisionInput {
        DecisionInput::Incident {
            incident: IncidentRecord {
                id: id.into(),
                status,
                at,
                opened_at: at,
                resolved_at: None,
                severity: "page".into(),
                alert_ids: vec!["a1".into()],
                rules: vec!["metric_anomaly".into()],
                services: vec![cause.into()],
                probable_root_cause: vec![Cause {
                    service: cause.into(),
                    score: 0.9,
                    reasons: vec!["its alert started first".into()],
                }],
                merged_into: None,
                summary: String::new(),
            },
        }
    }

    fn verdict(id: &str, verdict: VerdictKind, at: i64) -> DecisionInput {
        DecisionInput::Verdict {
            decision_id: id.into(),
            verdict,
            by: "alice".into(),
            reason: "checked the deploy".into(),
            at_ms: at,
        }
    }

    fn run(maker: &mut DecisionMaker, inputs: &[DecisionInput]) -> DecisionOutput {
        let mut out = DecisionOutput::default();
        for input in inputs {
            maker.apply(input, &mut out);
        }
        out
    }

    fn steps(out: &DecisionOutput) -> Vec<(String, &'static str, String)> {
        out.decisions
            .iter()
            .map(|d| (d.action.clone(), d.state.as_str(), d.approved_by.clone()))
            .collect()
    }

    #[test]
    fn low_risk_runs_at_once_high_risk_waits_for_a_human_and_everything_is_chained() {
        let mut maker = DecisionMaker::new(settings(), KEY.to_vec());
        let rollback = decision_id("inc-1", "rollback");
        let out = run(
            &mut maker,
            &[
                incident("inc-1", IncidentStatus::Open, "payments", MIN),
                // An update of the same incident proposes nothing again.
                incident("inc-1", IncidentStatus::Update, "payments", 2 * MIN),
                incident("inc-2", IncidentStatus::Open, "web", 2 * MIN),
                verdict(&rollback, VerdictKind::Approve, 3 * MIN),
                DecisionInput::Result {
                    decision_id: rollback.clone(),
                    ok: true,
                    detail: "HTTP 200".into(),
                    at_ms: 4 * MIN,
                },
                // The executor retried: the same result again changes nothing.
                DecisionInput::Result {
                    decision_id: rollback.clone(),
                    ok: true,
                    detail: "HTTP 200".into(),
                    at_ms: 4 * MIN,
                },
            ],
        );
        let s = |a: &str, st: &'static str, by: &str| (a.to_owned(), st, by.to_owned());
        assert_eq!(
            steps(&out),
            [
                s("open_ticket", "proposed", ""),
                s("open_ticket", "approved", "policy"),
                s("rollback", "proposed", ""),
                s("rollback", "approved", "alice"),
                s("rollback", "executed", "alice"),
            ]
        );
        let proposed = &out.decisions[2];
        assert!(proposed.requires_approval && proposed.risk == Risk::High);
        assert_eq!(proposed.expires_at, MIN + 10 * MIN);
        assert!(
            proposed
                .rationale
                .contains("probable cause payments (its alert started first)"),
            "{}",
            proposed.rationale
        );
        assert_eq!(out.decisions[4].detail, "HTTP 200");
        assert_eq!(maker.repeated_results(), 1);
        assert_eq!(maker.open_decisions(), 1, "the ticket waits for its result");
        // Every change is an audit entry, chained; the records carry their hashes.
        assert_eq!(out.audit.len(), 5);
        assert_eq!(verify(&out.audit, KEY), Ok(()));
        for (record, entry) in out.decisions.iter().zip(&out.audit) {
            assert_eq!(
                (&record.prev_hash, &record.hash),
                (&entry.prev_hash, &entry.hash)
            );
        }
    }

    #[test]
    fn a_rejection_ends_it_and_an_unanswered_one_expires_and_escalates() {
        let mut maker = DecisionMaker::new(settings(), KEY.to_vec());
        let out = run(
            &mut maker,
            &[
                incident("inc-1", IncidentStatus::Open, "payments", MIN),
                incident("inc-2", IncidentStatus::Open, "payments", 2 * MIN),
                verdict(
                    &decision_id("inc-1", "rollback"),
                    VerdictKind::Reject,
                    3 * MIN,
                ),
                // Too early for inc-2's to expire; then a tick after its deadline.
                DecisionInput::Tick { at_ms: 11 * MIN },
                DecisionInput::Tick { at_ms: 12 * MIN },
                // A verdict after the expiry is chained but changes nothing.
                verdict(
                    &decision_id("inc-2", "rollback"),
                    VerdictKind::Approve,
                    13 * MIN,
                ),
            ],
        );
        let states: Vec<(String, &str)> = out
            .decisions
            .iter()
            .map(|d| (format!("{}/{}", d.incident_id, d.action), d.state.as_str()))
            .collect();
        let s = |a: &str, b| (a.to_owned(), b);
        assert_eq!(
            states,
            [
                s("inc-1/open_ticket", "proposed"),
                s("inc-1/open_ticket", "approved"),
                s("inc-1/rollback", "proposed"),
                s("inc-2/open_ticket", "proposed"),
                s("inc-2/open_ticket", "approved"),
                s("inc-2/rollback", "proposed"),
                s("inc-1/rollback", "rejected"),
                s("inc-2/rollback", "expired"),
                s("inc-2/page_oncall", "proposed"),
                s("inc-2/page_oncall", "approved"),
            ]
        );
        let escalation = &out.decisions[8];
        assert_eq!(
            escalation.escalation_of.as_deref(),
            Some(decision_id("inc-2", "rollback").as_str())
        );
        assert_eq!(out.decisions[7].at, 12 * MIN);
        assert_eq!(out.decisions[6].detail, "checked the deploy");
        let last = out.audit.last().unwrap();
        assert_eq!(last.event, "verdict_ignored");
        assert!(
            last.payload.contains("no decision waiting"),
            "{}",
            last.payload
        );
        assert_eq!(out.audit.len(), out.decisions.len() + 1);
        assert_eq!(verify(&out.audit, KEY), Ok(()));
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes_and_a_restored_maker_continues_alike() {
        let inputs = [
            incident("inc-1", IncidentStatus::Open, "payments", MIN),
            DecisionInput::Tick { at_ms: 5 * MIN },
            verdict(
                &decision_id("inc-1", "rollback"),
                VerdictKind::Approve,
                6 * MIN,
            ),
        ];
        let mut whole = DecisionMaker::new(settings(), KEY.to_vec());
        let all = run(&mut whole, &inputs);
        let mut first = DecisionMaker::new(settings(), KEY.to_vec());
        let mut out = run(&mut first, &inputs[..1]);
        let mut restored =
            DecisionMaker::restore(&first.snapshot().unwrap(), settings(), KEY.to_vec()).unwrap();
        assert_eq!(restored, first);
        let rest = run(&mut restored, &inputs[1..]);
        out.decisions.extend(rest.decisions);
        out.audit.extend(rest.audit);
        assert_eq!(out, all);
        assert_eq!(restored.snapshot().unwrap(), whole.snapshot().unwrap());
        let json = |input: &DecisionInput| serde_json::to_string(input).unwrap();
        let back: DecisionInput = serde_json::from_str(&json(&inputs[2])).unwrap();
        assert_eq!(back, inputs[2]);
        assert!(json(&inputs[1]).contains(r#""type":"tick""#));
    }
}
