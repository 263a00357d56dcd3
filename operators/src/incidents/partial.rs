//! The record every alert-raising stage sends the incident stage: the alert
//! transitions one call of its operator raised, the calls between services it
//! derived (rows of `service_graph`), and how far its event time is final.
//!
//! One record per flush of the sending partition (and per watermark raise that
//! closed something or moved its mark on), in the partition's order. The incident
//! stage takes the marks as its sources' progress (see [`super::stage`]) and the
//! transitions as facts it applies once: an alert id fires once and resolves once,
//! so a record sent again after a crash changes nothing. JSON, e.g.
//! `{"source_topic":"telemetry.metrics","source_partition":2,"through_ms":1700000100000,
//!   "alerts":[{"id":"…","rule":"metric_anomaly",…}],"calls":[{"caller":"web",
//!   "callee":"db","at_ms":1700000100000}]}`.

use serde::{Deserialize, Serialize};

use crate::alert::AlertRecord;
use crate::exchange::{ExchangeRecord, RecordRow};
use crate::schema::Table;
use crate::time::EventTimeBounds;

/// A call from one service to another seen in a window ending at `at_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    /// The calling service.
    pub caller: String,
    /// The called service.
    pub callee: String,
    /// When the call was last seen (its window's end), ms.
    pub at_ms: i64,
}

/// What one call of an alert-raising stage's operator tells the incident stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertPartial {
    /// The stage's source topic.
    pub source_topic: String,
    /// The stage's source partition.
    pub source_partition: i32,
    /// How far the stage has promised quiet after the call
    /// ([`crate::operator::Operator::quiet_before`]: its watermark, or for a
    /// windowed combiner the end of the next window it closes): it raises no alert
    /// transition before this time any more (a later record's transition before
    /// it is taken for a replay of one sent already: ignored, counted in `repeats`).
    pub through_ms: i64,
    /// The alert transitions the call raised, in the order raised.
    pub alerts: Vec<AlertRecord>,
    /// The calls between services it derived.
    pub calls: Vec<Call>,
}

/// Alert transitions and calls one record may carry: far more than one flush
/// raises, and a bound on what a forged record can make the stage hold.
pub const MAX_RECORD_ITEMS: usize = 100_000;

impl AlertPartial {
    /// The record as sent.
    pub fn to_json(&self) -> Vec<u8> {
        // Strings, integers and finite floats (scores are checked by the alert
        // rules): serialising cannot fail; a non-finite float would become null.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl ExchangeRecord for AlertPartial {
    const TABLE: Table = Table::AlertPartials;

    /// A source, times within `bounds`, alerts with ids, calls between named
    /// services, and not more of them than [`MAX_RECORD_ITEMS`].
    fn validate(&self, bounds: &EventTimeBounds) -> Result<(), String> {
        if self.source_topic.is_empty() || self.source_partition < 0 {
            return Err("an alert partial names no source topic or partition".into());
        }
        if !bounds.contains(self.through_ms) {
            return Err(format!(
                "through_ms {} is outside the event times accepted",
                self.through_ms
            ));
        }
        if self.alerts.len() + self.calls.len() > MAX_RECORD_ITEMS {
            return Err(format!(
                "{} alerts and {} calls in one record (at most {MAX_RECORD_ITEMS})",
                self.alerts.len(),
                self.calls.len()
            ));
        }
        for alert in &self.alerts {
            if alert.id.is_empty() {
                return Err(format!("an alert of rule {:?} has no id", alert.rule));
            }
            if !bounds.contains(alert.at) || !bounds.contains(alert.starts_at) {
                return Err(format!(
                    "alert {}: at {} or starts_at {} is outside the event times accepted",
                    alert.id, alert.at, alert.starts_at
                ));
            }
        }
        for call in &self.calls {
            if call.caller.is_empty() || call.callee.is_empty() {
                return Err("a call names no caller or callee".into());
            }
            if !bounds.contains(call.at_ms) {
                return Err(format!(
                    "call {} → {}: at_ms {} is outside the event times accepted",
                    call.caller, call.callee, call.at_ms
                ));
            }
        }
        Ok(())
    }

    fn row(&self) -> RecordRow {
        RecordRow {
            source_topic: self.source_topic.clone(),
            source_partition: self.source_partition,
            through_ms: self.through_ms,
            at_ms: self.alerts.iter().map(|a| a.at).min(),
            counts: vec![self.alerts.len() as i64, self.calls.len() as i64],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertStatus;
    use crate::exchange::read_record;
    use crate::incidents::test_alert;

    const T: i64 = 1_764_000_000_000;

    fn bounds() -> EventTimeBounds {
        EventTimeBounds {
            oldest_ms: T - 86_400_000,
            newest_ms: T + 86_400_000,
        }
    }

    fn partial() -> AlertPartial {
        AlertPartial {
            source_topic: "telemetry.metrics".into(),
            source_partition: 2,
            through_ms: T,
            alerts: vec![test_alert(
                "a1",
                Some("db"),
                AlertStatus::Firing,
                T - 5_000,
                T - 5_000,
            )],
            calls: vec![Call {
                caller: "web".into(),
                callee: "db".into(),
                at_ms: T - 60_000,
            }],
        }
    }

    #[test]
    fn a_record_reads_back_with_its_row() {
        let json = String::from_utf8(partial().to_json()).unwrap();
        let row = read_record::<AlertPartial>(&json, &bounds()).unwrap();
        assert_eq!(row.source_partition, 2);
        assert_eq!(row.through_ms, T);
        assert_eq!(row.at_ms, Some(T - 5_000));
        assert_eq!(row.counts, vec![1, 1]);
        let back: AlertPartial = serde_json::from_str(&json).unwrap();
        assert_eq!(back, partial());
    }

    #[test]
    fn records_the_stage_cannot_trust_are_refused_with_the_reason() {
        let refuse = |edit: fn(&mut AlertPartial)| {
            let mut p = partial();
            edit(&mut p);
            p.validate(&bounds()).unwrap_err()
        };
        assert!(refuse(|p| p.source_topic.clear()).contains("no source"));
        assert!(refuse(|p| p.through_ms = 0).contains("through_ms 0"));
        assert!(refuse(|p| p.alerts[0].id.clear()).contains("has no id"));
        assert!(refuse(|p| p.alerts[0].starts_at = 7).contains("starts_at 7"));
        assert!(refuse(|p| p.calls[0].callee.clear()).contains("no caller or callee"));
        assert!(refuse(|p| p.calls[0].at_ms = -1).contains("at_ms -1"));
        let unknown = r#"{"source_topic":"t","source_partition":0,"through_ms":1,"alerts":[],"calls":[],"extra":1}"#;
        assert!(read_record::<AlertPartial>(unknown, &bounds()).is_err());
    }
}
