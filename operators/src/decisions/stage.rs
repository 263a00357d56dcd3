//! The decision stage and what feeds it, as operators of the dataflow.
//!
//! ```text
//! IncidentStage ─ ForwardsIncidents ─┐
//! cara.approvals[p] ─ VerdictRelay ──┼─▶ cara.internal.decisions (1 partition) ─▶ DecisionStage
//! the process's clock (ticks) ───────┤        ─▶ tables decisions, audit; cara.decisions
//! the executor (action results) ─────┘
//! ```
//!
//! Every input reaches the one partition of `cara.internal.decisions` as a
//! [`DecisionEnvelope`], is archived there (table `decision_inputs`), and is applied
//! by [`DecisionStage`] in that partition's order, so a replay of the archive makes
//! the same decisions and the same audit trail, byte for byte.

use arrow::array::RecordBatch;

use super::maker::{DecisionMaker, DecisionOutput};
use super::records::{audit_batch, decisions_batch, DecisionEnvelope, VerdictRecord};
use super::{DecisionInput, DecisionSettings};
use crate::columns;
use crate::exchange::stored_records;
use crate::incidents::IncidentRecord;
use crate::operator::{
    Emitted, EmittedFrom, Operator, OperatorError, Outbound, OutboundMessage, PartitionContext,
    Tap, Tapped,
};
use crate::schema::Table;
use crate::snapshot;

/// The message carrying `envelope` to the decision stage.
pub fn decision_input_message(envelope: &DecisionEnvelope) -> OutboundMessage {
    OutboundMessage {
        topic: Outbound::DecisionInputs,
        key: format!("{}/{}", envelope.source_topic, envelope.source_partition),
        payload: envelope.to_json(),
    }
}

/// The tap on the incident stage: each incident transition it sends to
/// `cara.incidents` also goes to the decision stage.
#[derive(Debug, Default)]
pub struct ForwardsIncidents;

impl ForwardsIncidents {
    /// `inner` (the incident stage), forwarding to the decision stage.
    pub fn wrap(inner: Box<dyn Operator>) -> Tapped<ForwardsIncidents> {
        Tapped::new(inner, ForwardsIncidents)
    }
}

impl Tap for ForwardsIncidents {
    fn after(
        &mut self,
        _inner: &dyn Operator,
        context: &PartitionContext,
        out: &mut Emitted,
        from: EmittedFrom,
    ) {
        let forwarded: Vec<OutboundMessage> = out.messages[from.messages..]
            .iter()
            .filter(|m| m.topic == Outbound::Incidents)
            .filter_map(|m| serde_json::from_slice::<IncidentRecord>(&m.payload).ok())
            .map(|incident| {
                decision_input_message(&DecisionEnvelope {
                    source_topic: context.topic.to_string(),
                    source_partition: context.partition,
                    input: DecisionInput::Incident { incident },
                })
            })
            .collect();
        out.messages.extend(forwarded);
    }
}

/// Reads the verdicts of a `cara.approvals` partition (table `approvals`) and
/// sends each to the decision stage, stamped with when it was received.
#[derive(Debug, Default)]
pub struct VerdictRelay {
    /// The latest receipt time relayed.
    latest: Option<i64>,
}

impl VerdictRelay {
    /// Continues from a snapshot (the latest receipt time).
    pub fn restore(bytes: &[u8]) -> Result<VerdictRelay, snapshot::SnapshotError> {
        Ok(VerdictRelay {
            latest: snapshot::decode(bytes)?,
        })
    }
}

impl Operator for VerdictRelay {
    fn name(&self) -> &'static str {
        "verdicts"
    }

    fn process(
        &mut self,
        context: &PartitionContext,
        rows: &RecordBatch,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        let received = columns::timestamps(rows, "received_at")?;
        for (row, v) in stored_records::<VerdictRecord>(rows)? {
            let at_ms = received.value(row);
            self.latest = Some(self.latest.map_or(at_ms, |l| l.max(at_ms)));
            out.messages.push(decision_input_message(&DecisionEnvelope {
                source_topic: context.topic.to_string(),
                source_partition: context.partition,
                input: DecisionInput::Verdict {
                    decision_id: v.decision_id,
                    verdict: v.verdict,
                    by: v.by,
                    reason: v.reason,
                    at_ms,
                },
            }));
        }
        Ok(())
    }

    fn watermark(&self) -> Option<i64> {
        self.latest
    }

    fn snapshot(&self) -> Result<Vec<u8>, OperatorError> {
        Ok(snapshot::encode(&self.latest)?)
    }
}

/// The decision stage: the one partition of `cara.internal.decisions`.
#[derive(Debug)]
pub struct DecisionStage {
    maker: DecisionMaker,
}

impl DecisionStage {
    /// Nothing decided yet; audit entries hashed under `key`.
    pub fn new(settings: DecisionSettings, key: Vec<u8>) -> DecisionStage {
        DecisionStage {
            maker: DecisionMaker::new(settings, key),
        }
    }

    /// Continues from [`Operator::snapshot`].
    pub fn restore(
        bytes: &[u8],
        settings: DecisionSettings,
        key: Vec<u8>,
    ) -> Result<DecisionStage, snapshot::SnapshotError> {
        Ok(DecisionStage {
            maker: DecisionMaker::restore(bytes, settings, key)?,
        })
    }
}

impl Operator for DecisionStage {
    fn name(&self) -> &'static str {
        "decisions"
    }

    fn tables(&self) -> Vec<Table> {
        vec![Table::Decisions, Table::Audit]
    }

    fn process(
        &mut self,
        _context: &PartitionContext,
        rows: &RecordBatch,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        let mut made = DecisionOutput::default();
        for (_, envelope) in stored_records::<DecisionEnvelope>(rows)? {
            self.maker.apply(&envelope.input, &mut made);
        }
        if !made.decisions.is_empty() {
            out.tables
                .push((Table::Decisions, decisions_batch(&made.decisions)?));
        }
        if !made.audit.is_empty() {
            out.tables.push((Table::Audit, audit_batch(&made.audit)?));
        }
        out.messages
            .extend(made.decisions.iter().map(|d| OutboundMessage {
                topic: Outbound::Decisions,
                key: d.id.clone(),
                // Strings, integers and enums: serialising cannot fail.
                payload: serde_json::to_vec(d).unwrap_or_default(),
            }));
        Ok(())
    }

    fn watermark(&self) -> Option<i64> {
        self.maker.now()
    }

    fn snapshot(&self) -> Result<Vec<u8>, OperatorError> {
        Ok(self.maker.snapshot()?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::decisions::audit::verify;
    use crate::decisions::maker::decision_id;
    use crate::decisions::policy::{Conditions, PolicyRule, Risk};
    use crate::decisions::records::audit_entries;
    use crate::decisions::{DecisionRecord, VerdictKind};
    use crate::exchange::{ExchangeRecord, RecordRows};
    use crate::incidents::{Cause, IncidentStatus};

    fn settings() -> DecisionSettings {
        DecisionSettings {
            rules: vec![PolicyRule {
                name: "rollback".into(),
                when: Conditions::default(),
                action: "rollback".into(),
                kind: "webhook".into(),
                target: "{cause}".into(),
                risk: Risk::High,
                approval_timeout_ms: 600_000,
                escalate_to: None,
            }],
            auto_approve: Risk::Low,
        }
    }

    fn rows<T: ExchangeRecord + Serialize>(table: Table, records: &[T]) -> RecordBatch {
        let mut rows = RecordRows::new(table);
        for (offset, r) in records.iter().enumerate() {
            let json = serde_json::to_string(r).unwrap();
            rows.append(
                &r.row_received(1_000 + offset as i64),
                &json,
                "t",
                0,
                offset as i64,
            );
        }
        rows.finish()
    }

    use serde::Serialize;

    #[test]
    fn an_incident_and_a_verdict_through_the_stage_give_records_rows_and_a_chain() {
        let context = PartitionContext {
            topic: Arc::from("cara.internal.decisions"),
            partition: 0,
        };
        let incident = IncidentRecord {
            id: "inc-1".into(),
            status: IncidentStatus::Open,
            at: 500,
            opened_at: 500,
            resolved_at: None,
            severity: "page".into(),
            alert_ids: vec!["a".into()],
            rules: vec!["metric_anomaly".into()],
            services: vec!["db".into()],
            probable_root_cause: vec![Cause {
                service: "db".into(),
                score: 1.0,
                reasons: vec![],
            }],
            merged_into: None,
            summary: String::new(),
        };
        // A verdict as produced on cara.approvals, relayed with its receipt time.
        let id = decision_id("inc-1", "rollback");
        let verdict = VerdictRecord {
            decision_id: id.clone(),
            verdict: VerdictKind::Approve,
            by: "alice".into(),
            reason: String::new(),
        };
        let mut relay = VerdictRelay::default();
        let mut relayed = Emitted::default();
        relay
            .process(&context, &rows(Table::Approvals, &[verdict]), &mut relayed)
            .unwrap();
        assert_eq!(relay.watermark(), Some(1_000));
        let verdict_envelope: DecisionEnvelope =
            serde_json::from_slice(&relayed.messages[0].payload).unwrap();
        let inputs = [
            DecisionEnvelope {
                source_topic: "cara.internal.alerts".into(),
                source_partition: 0,
                input: DecisionInput::Incident { incident },
            },
            verdict_envelope,
        ];
        let mut stage = DecisionStage::new(settings(), b"k".to_vec());
        let mut out = Emitted::default();
        stage
            .process(&context, &rows(Table::DecisionInputs, &inputs), &mut out)
            .unwrap();
        let sent: Vec<DecisionRecord> = out
            .messages
            .iter()
            .map(|m| serde_json::from_slice(&m.payload).unwrap())
            .collect();
        let states: Vec<&str> = sent.iter().map(|d| d.state.as_str()).collect();
        assert_eq!(states, ["proposed", "approved"]);
        assert_eq!(sent[1].approved_by, "alice");
        assert_eq!(sent[1].at, 1_000, "the verdict's receipt time");
        assert!(out
            .messages
            .iter()
            .all(|m| m.key == id && m.topic == Outbound::Decisions));
        let (decisions, audit) = (&out.tables[0], &out.tables[1]);
        assert_eq!((decisions.0, decisions.1.num_rows()), (Table::Decisions, 2));
        let entries = audit_entries(&audit.1).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(verify(&entries, b"k"), Ok(()));
        let restored =
            DecisionStage::restore(&stage.snapshot().unwrap(), settings(), b"k".to_vec()).unwrap();
        assert_eq!(restored.snapshot().unwrap(), stage.snapshot().unwrap());
    }
}
