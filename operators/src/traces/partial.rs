//! The record the two trace stages exchange: one source partition's final cells of
//! one minute, or (with no minute) how far that partition's minutes are final.
//!
//! One record per minute, in minute order, so a receiver that applies a record only
//! when its minute is at or after the `through_minute` it last applied for that
//! source counts every minute of every source once, even when a replay after a crash
//! sends records again. JSON, e.g.
//! `{"source_topic":"telemetry.spans","source_partition":3,"through_minute":28333334,
//!   "minute":28333333,"red":[{"service":"checkout","operation":"POST /pay",
//!   "cell":{"requests":98,"errors":2,"durations":[[12007,3],...]}}],"edges":[...]}`.

use serde::{Deserialize, Serialize};

use super::cell::Cell;
use crate::exchange::{ExchangeRecord, RecordRow};
use crate::schema::Table;
use crate::slo::partial::MAX_MINUTE_EVENTS;
use crate::time::{EventTimeBounds, MINUTE_MS};

/// RED cell of one service and operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedCell {
    /// Service.
    pub service: String,
    /// Operation (span name).
    pub operation: String,
    /// Spans started in the minute.
    pub cell: Cell,
}

/// Calls from one service to another (a child span whose parent is in another
/// service), by the child's start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeCell {
    /// The parent span's service.
    pub caller: String,
    /// The child span's service.
    pub callee: String,
    /// Calls, errors (child status error), child durations.
    pub cell: Cell,
}

/// One source partition's final cells of one minute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracePartial {
    /// Source topic.
    pub source_topic: String,
    /// Source partition.
    pub source_partition: i32,
    /// Every minute before this one is final for the source.
    pub through_minute: i64,
    /// The minute the cells belong to (`None`: progress only).
    pub minute: Option<i64>,
    /// RED cells, by service and operation.
    pub red: Vec<RedCell>,
    /// Edge cells, by caller and callee.
    pub edges: Vec<EdgeCell>,
}

impl TracePartial {
    /// The record as sent.
    pub fn to_json(&self) -> Vec<u8> {
        // Strings and integers only: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Checks what the combining stage relies on: a source, marks within `bounds`,
    /// the minute before `through_minute`, and cells whose counts add up.
    pub fn validate(&self, bounds: &EventTimeBounds) -> Result<(), String> {
        if self.source_topic.is_empty() || self.source_partition < 0 {
            return Err("a trace partial names no source topic or partition".into());
        }
        if !bounds.contains_minute(self.through_minute) {
            return Err(format!(
                "through_minute {} is outside the event times accepted",
                self.through_minute
            ));
        }
        if let Some(minute) = self.minute {
            if minute >= self.through_minute || !bounds.contains_minute(minute) {
                return Err(format!(
                    "minute {minute} is outside the event times accepted or not before through_minute {}",
                    self.through_minute
                ));
            }
        } else if !self.red.is_empty() || !self.edges.is_empty() {
            return Err("cells without a minute".into());
        }
        let cells = self
            .red
            .iter()
            .map(|c| &c.cell)
            .chain(self.edges.iter().map(|c| &c.cell));
        for cell in cells {
            cell.validate(MAX_MINUTE_EVENTS)?;
        }
        Ok(())
    }
}

impl ExchangeRecord for TracePartial {
    const TABLE: Table = Table::TracePartials;

    fn validate(&self, bounds: &EventTimeBounds) -> Result<(), String> {
        TracePartial::validate(self, bounds)
    }

    fn row(&self) -> RecordRow {
        RecordRow {
            source_topic: self.source_topic.clone(),
            source_partition: self.source_partition,
            through_ms: self.through_minute.saturating_mul(MINUTE_MS),
            at_ms: self.minute.map(|m| m.saturating_mul(MINUTE_MS)),
            counts: vec![self.red.len() as i64, self.edges.len() as i64],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> TracePartial {
        let mut cell = Cell::new();
        cell.observe(12.0, false);
        cell.observe(250.0, true);
        TracePartial {
            source_topic: "telemetry.spans".into(),
            source_partition: 2,
            through_minute: 28_333_334,
            minute: Some(28_333_333),
            red: vec![RedCell {
                service: "checkout".into(),
                operation: "POST /pay".into(),
                cell: cell.clone(),
            }],
            edges: vec![EdgeCell {
                caller: "frontend".into(),
                callee: "checkout".into(),
                cell,
            }],
        }
    }

    #[test]
    fn validation_refuses_what_the_combiner_cannot_trust() {
        let bounds = EventTimeBounds {
            oldest_ms: 0,
            newest_ms: 28_333_334 * 60_000,
        };
        assert_eq!(record().validate(&bounds), Ok(()));
        // The poison pill of issue 18: a mark at the end of time.
        let json = String::from_utf8(record().to_json())
            .unwrap()
            .replace("28333334", "9223372036854775807");
        let poison: TracePartial = serde_json::from_str(&json).unwrap();
        assert!(poison.validate(&bounds).is_err());
        type Breakage = (&'static str, fn(&mut TracePartial));
        let broken: [Breakage; 5] = [
            ("minute at through", |p| p.minute = Some(p.through_minute)),
            ("minute before 1970", |p| p.minute = Some(-3)),
            ("cells without a minute", |p| p.minute = None),
            ("no source", |p| p.source_topic.clear()),
            ("more errors than requests", |p| p.red[0].cell.errors = 5),
        ];
        for (what, break_it) in broken {
            let mut p = record();
            break_it(&mut p);
            assert!(p.validate(&bounds).is_err(), "{what}");
        }
        let mut uncounted = record();
        uncounted.edges[0].cell.requests = 7;
        uncounted.edges[0].cell.errors = 0;
        assert!(
            uncounted.validate(&bounds).is_err(),
            "durations must add up to the requests"
        );
        let progress = TracePartial {
            minute: None,
            red: Vec::new(),
            edges: Vec::new(),
            ..record()
        };
        assert_eq!(progress.validate(&bounds), Ok(()));
    }
}
