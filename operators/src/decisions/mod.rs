//! Decisions (issue 14): incidents turned into proposed actions by a policy, run
//! at once when their risk is low, held for a human verdict otherwise, expired and
//! escalated when nobody answers, every step chained in a tamper-evident audit
//! trail.
//!
//! * [`policy`]: the rules (conditions on an incident, the action, its risk).
//! * [`maker`]: the state machine, a pure function of its input records.
//! * [`audit`]: the hash chain and its verification.
//!
//! Everything that comes from outside the data enters as a record
//! ([`DecisionInput`]): an incident transition (from the incident stage), a
//! human's verdict, a tick of the wall clock (the only clock a decision sees: an
//! approval times out when a tick says so), and an action's result. Applied in the
//! order of one log, they give the same decisions and the same audit trail, byte
//! for byte, live or replayed.

pub mod audit;
pub mod maker;
pub mod policy;
pub mod records;
pub mod stage;

use serde::{Deserialize, Serialize};

use crate::incidents::IncidentRecord;
use policy::Risk;

/// One record of the decision stage's input log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum DecisionInput {
    /// An incident transition.
    Incident {
        /// The transition, as on `cara.incidents`.
        incident: IncidentRecord,
    },
    /// A human's verdict on a decision waiting for one.
    Verdict {
        /// The decision.
        decision_id: String,
        /// Approve, or reject.
        verdict: VerdictKind,
        /// Who decided.
        by: String,
        /// Why, in their words.
        #[serde(default)]
        reason: String,
        /// When it was given (wall clock), ms.
        at_ms: i64,
    },
    /// The wall clock read at `at_ms`.
    Tick {
        /// The time, ms.
        at_ms: i64,
    },
    /// What carrying out an approved decision's action gave.
    Result {
        /// The decision.
        decision_id: String,
        /// Whether the action succeeded.
        ok: bool,
        /// What the actuator answered (status, error).
        detail: String,
        /// When the attempt ended (wall clock), ms.
        at_ms: i64,
    },
}

/// A verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    /// Go ahead.
    Approve,
    /// Do not.
    Reject,
}

/// Where a decision stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionState {
    /// Waiting for a verdict.
    Proposed,
    /// To be carried out (by the policy, or by a human).
    Approved,
    /// Refused by a human.
    Rejected,
    /// Nobody answered in time.
    Expired,
    /// Carried out.
    Executed,
    /// Carrying it out failed.
    Failed,
}

impl DecisionState {
    /// As written in records.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionState::Proposed => "proposed",
            DecisionState::Approved => "approved",
            DecisionState::Rejected => "rejected",
            DecisionState::Expired => "expired",
            DecisionState::Executed => "executed",
            DecisionState::Failed => "failed",
        }
    }
}

/// A decision after a state change (DESIGN.md, "Output records").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// `dec-` and the FNV-1a of the incident id and the rule name: deterministic,
    /// and the idempotency key of its action.
    pub id: String,
    /// Event time of this change, ms.
    pub at: i64,
    /// The incident that called for it.
    pub incident_id: String,
    /// The incident's alerts when it was proposed.
    pub alert_ids: Vec<String>,
    /// The action (`rollback`, `page_oncall`, …).
    pub action: String,
    /// How it is carried out (`webhook`, `kafka`, `page`, `ticket`).
    pub kind: String,
    /// What it acts on.
    pub target: String,
    /// Why, for humans.
    pub rationale: String,
    /// Its risk.
    pub risk: Risk,
    /// Whether a human must approve it.
    pub requires_approval: bool,
    /// The policy rule that proposed it.
    pub policy_rule: String,
    /// Where it stands.
    pub state: DecisionState,
    /// `policy` when approved automatically, else the approver; empty before.
    pub approved_by: String,
    /// A verdict's reason, an action's result.
    pub detail: String,
    /// When it expires unanswered, ms (wall clock, as the ticks say).
    pub expires_at: i64,
    /// The expired decision it escalates, if any.
    pub escalation_of: Option<String>,
    /// The audit entry of this change: the previous entry's hash.
    pub prev_hash: String,
    /// The audit entry's hash.
    pub hash: String,
}

/// How decisions are made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionSettings {
    /// The rules, in order.
    pub rules: Vec<policy::PolicyRule>,
    /// Actions at or under this risk are approved by the policy.
    pub auto_approve: Risk,
}
