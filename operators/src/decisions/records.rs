//! The records that reach the decision stage, and the rows it writes.
//!
//! * [`VerdictRecord`]: a verdict as a person (or a tool) produces it on
//!   `cara.approvals`: `{"decision_id":"dec-…","verdict":"approve","by":"alice",
//!   "reason":"…"}`; its time is when the broker received it.
//! * [`DecisionEnvelope`]: one record of the decision stage's input log
//!   (`cara.internal.decisions`): a [`DecisionInput`] and the stage or process that
//!   sent it.
//! * [`decisions_batch`], [`audit_batch`]: rows of tables `decisions` and `audit`.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Int64Builder, ListBuilder, RecordBatch, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow::error::ArrowError;
use serde::{Deserialize, Serialize};

use super::audit::AuditEntry;
use super::{DecisionInput, DecisionRecord, VerdictKind};
use crate::exchange::{ExchangeRecord, RecordRow};
use crate::schema::Table;
use crate::time::EventTimeBounds;

/// Longest decision id, approver name or reason a verdict may carry.
const MAX_FIELD_CHARS: usize = 2_000;

/// A verdict as given on `cara.approvals`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictRecord {
    /// The decision it answers.
    pub decision_id: String,
    /// `approve` or `reject`.
    pub verdict: VerdictKind,
    /// Who gives it.
    pub by: String,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

impl ExchangeRecord for VerdictRecord {
    const TABLE: Table = Table::Approvals;

    /// A decision id and an approver, none of its texts over 2,000 characters.
    fn validate(&self, _bounds: &EventTimeBounds) -> Result<(), String> {
        if self.decision_id.trim().is_empty() {
            return Err("a verdict names no decision_id".into());
        }
        if self.by.trim().is_empty() {
            return Err("a verdict must say who gives it (`by`)".into());
        }
        for (field, text) in [
            ("decision_id", &self.decision_id),
            ("by", &self.by),
            ("reason", &self.reason),
        ] {
            if text.chars().count() > MAX_FIELD_CHARS {
                return Err(format!(
                    "{field} is longer than {MAX_FIELD_CHARS} characters"
                ));
            }
        }
        Ok(())
    }

    fn row(&self) -> RecordRow {
        self.row_received(0)
    }

    /// Decision id, approve (1) or reject (0), and the time received twice (the
    /// columns `received_at` and `at` of table `approvals`).
    fn row_received(&self, received_ms: i64) -> RecordRow {
        RecordRow {
            source_topic: self.decision_id.clone(),
            source_partition: i32::from(self.verdict == VerdictKind::Approve),
            through_ms: received_ms,
            at_ms: Some(received_ms),
            counts: Vec::new(),
        }
    }
}

/// One record of the decision stage's input log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionEnvelope {
    /// Who sent it: a topic (the incident exchange, `cara.approvals`) or `clock`.
    pub source_topic: String,
    /// Its partition (0 for the clock).
    pub source_partition: i32,
    /// The input.
    pub input: DecisionInput,
}

impl DecisionEnvelope {
    /// The record as sent.
    pub fn to_json(&self) -> Vec<u8> {
        // Strings, integers and finite scores: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The input's time, ms.
    pub fn at(&self) -> i64 {
        match &self.input {
            DecisionInput::Incident { incident } => incident.at,
            DecisionInput::Verdict { at_ms, .. }
            | DecisionInput::Tick { at_ms }
            | DecisionInput::Result { at_ms, .. } => *at_ms,
        }
    }
}

impl ExchangeRecord for DecisionEnvelope {
    const TABLE: Table = Table::DecisionInputs;

    /// A source and a time within `bounds`.
    fn validate(&self, bounds: &EventTimeBounds) -> Result<(), String> {
        if self.source_topic.is_empty() || self.source_partition < 0 {
            return Err("a decision input names no source".into());
        }
        if !bounds.contains(self.at()) {
            return Err(format!(
                "time {} is outside the event times accepted",
                self.at()
            ));
        }
        if let DecisionInput::Verdict {
            decision_id, by, ..
        } = &self.input
        {
            if decision_id.is_empty() || by.is_empty() {
                return Err("a verdict names no decision or approver".into());
            }
        }
        Ok(())
    }

    fn row(&self) -> RecordRow {
        RecordRow {
            source_topic: self.source_topic.clone(),
            source_partition: self.source_partition,
            through_ms: self.at(),
            at_ms: Some(self.at()),
            counts: Vec::new(),
        }
    }
}

/// Rows of table `decisions`.
pub fn decisions_batch(records: &[DecisionRecord]) -> Result<RecordBatch, ArrowError> {
    let ts = || TimestampMillisecondBuilder::new().with_timezone("UTC");
    let text = StringBuilder::new;
    let (mut id, mut at, mut incident, mut alerts) =
        (text(), ts(), text(), ListBuilder::new(StringBuilder::new()));
    let (mut action, mut kind, mut target, mut rationale, mut risk) =
        (text(), text(), text(), text(), text());
    let mut requires = BooleanBuilder::new();
    let (mut rule, mut state, mut by, mut detail) = (text(), text(), text(), text());
    let (mut expires, mut escalation, mut prev, mut hash) = (ts(), text(), text(), text());
    for r in records {
        id.append_value(&r.id);
        at.append_value(r.at);
        incident.append_value(&r.incident_id);
        for a in &r.alert_ids {
            alerts.values().append_value(a);
        }
        alerts.append(true);
        action.append_value(&r.action);
        kind.append_value(&r.kind);
        target.append_value(&r.target);
        rationale.append_value(&r.rationale);
        risk.append_value(r.risk.as_str());
        requires.append_value(r.requires_approval);
        rule.append_value(&r.policy_rule);
        state.append_value(r.state.as_str());
        by.append_value(&r.approved_by);
        detail.append_value(&r.detail);
        expires.append_value(r.expires_at);
        escalation.append_option(r.escalation_of.as_deref());
        prev.append_value(&r.prev_hash);
        hash.append_value(&r.hash);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(at.finish()),
        Arc::new(incident.finish()),
        Arc::new(alerts.finish()),
        Arc::new(action.finish()),
        Arc::new(kind.finish()),
        Arc::new(target.finish()),
        Arc::new(rationale.finish()),
        Arc::new(risk.finish()),
        Arc::new(requires.finish()),
        Arc::new(rule.finish()),
        Arc::new(state.finish()),
        Arc::new(by.finish()),
        Arc::new(detail.finish()),
        Arc::new(expires.finish()),
        Arc::new(escalation.finish()),
        Arc::new(prev.finish()),
        Arc::new(hash.finish()),
    ];
    RecordBatch::try_new(Table::Decisions.schema(), columns)
}

/// Rows of table `audit`, in chain order.
pub fn audit_batch(entries: &[AuditEntry]) -> Result<RecordBatch, ArrowError> {
    let mut seq = Int64Builder::new();
    let mut at = TimestampMillisecondBuilder::new().with_timezone("UTC");
    let text = StringBuilder::new;
    let (mut event, mut decision, mut by, mut payload, mut prev, mut hash) =
        (text(), text(), text(), text(), text(), text());
    for e in entries {
        seq.append_value(i64::try_from(e.seq).unwrap_or(i64::MAX));
        at.append_value(e.at);
        event.append_value(&e.event);
        decision.append_value(&e.decision_id);
        by.append_value(&e.by);
        payload.append_value(&e.payload);
        prev.append_value(&e.prev_hash);
        hash.append_value(&e.hash);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(seq.finish()),
        Arc::new(at.finish()),
        Arc::new(event.finish()),
        Arc::new(decision.finish()),
        Arc::new(by.finish()),
        Arc::new(payload.finish()),
        Arc::new(prev.finish()),
        Arc::new(hash.finish()),
    ];
    RecordBatch::try_new(Table::Audit.schema(), columns)
}

/// The audit entries of rows of table `audit`, in row order.
pub fn audit_entries(
    rows: &RecordBatch,
) -> Result<Vec<AuditEntry>, crate::anomaly::operator::SchemaMismatch> {
    use crate::columns;
    let seq = columns::integers(rows, "seq")?;
    let at = columns::timestamps(rows, "at")?;
    let text = |name| columns::strings(rows, name);
    let (event, decision, by, payload, prev, hash) = (
        text("event")?,
        text("decision_id")?,
        text("by")?,
        text("payload")?,
        text("prev_hash")?,
        text("hash")?,
    );
    Ok((0..rows.num_rows())
        .map(|row| AuditEntry {
            seq: u64::try_from(seq.value(row)).unwrap_or(u64::MAX),
            at: at.value(row),
            event: event.value(row).to_owned(),
            decision_id: decision.value(row).to_owned(),
            by: by.value(row).to_owned(),
            payload: payload.value(row).to_owned(),
            prev_hash: prev.value(row).to_owned(),
            hash: hash.value(row).to_owned(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::audit::{verify, AuditChain};
    use crate::exchange::read_received;

    fn bounds() -> EventTimeBounds {
        EventTimeBounds {
            oldest_ms: 0,
            newest_ms: i64::MAX / 2,
        }
    }

    #[test]
    fn a_verdict_is_stamped_with_when_it_was_received_and_checked() {
        let json = r#"{"decision_id":"dec-1","verdict":"approve","by":"alice","reason":"ok"}"#;
        let row = read_received::<VerdictRecord>(json, &bounds(), 1_764_000_000_000).unwrap();
        assert_eq!(
            (row.source_topic.as_str(), row.source_partition),
            ("dec-1", 1)
        );
        assert_eq!(row.at_ms, Some(1_764_000_000_000));
        let reject = r#"{"decision_id":"dec-1","verdict":"reject","by":"bob"}"#;
        assert_eq!(
            read_received::<VerdictRecord>(reject, &bounds(), 5)
                .unwrap()
                .source_partition,
            0
        );
        for bad in [
            r#"{"decision_id":"","verdict":"approve","by":"a"}"#,
            r#"{"decision_id":"d","verdict":"approve","by":" "}"#,
            r#"{"decision_id":"d","verdict":"maybe","by":"a"}"#,
            r#"{"decision_id":"d","verdict":"approve","by":"a","extra":1}"#,
        ] {
            assert!(
                read_received::<VerdictRecord>(bad, &bounds(), 5).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn audit_rows_read_back_into_the_entries_that_verify() {
        let mut chain = AuditChain::default();
        let entries: Vec<AuditEntry> = (0..3)
            .map(|i| {
                chain.append(
                    b"k",
                    1_000 * i,
                    "proposed",
                    "dec-1",
                    "policy",
                    format!("{{\"i\":{i}}}"),
                )
            })
            .collect();
        let batch = audit_batch(&entries).unwrap();
        let back = audit_entries(&batch).unwrap();
        assert_eq!(back, entries);
        assert_eq!(verify(&back, b"k"), Ok(()));
        let envelope = DecisionEnvelope {
            source_topic: "clock".into(),
            source_partition: 0,
            input: DecisionInput::Tick { at_ms: 42 },
        };
        let json = String::from_utf8(envelope.to_json()).unwrap();
        assert_eq!(
            json,
            r#"{"source_topic":"clock","source_partition":0,"input":{"type":"tick","at_ms":42}}"#
        );
        let row = read_received::<DecisionEnvelope>(&json, &bounds(), 7).unwrap();
        assert_eq!((row.through_ms, row.at_ms), (42, Some(42)));
    }
}
