//! The record the two log stages exchange: one log partition's lines per service
//! and template in one closed window, or (with no window) how far that partition's
//! windows are final.
//!
//! One record per window, in window order, so the combining stage, applying a
//! record only when its window is at or after the `through_ms` it last applied for
//! that source ([`crate::exchange`]), counts every window of every source once, even
//! when a replay after a crash sends records again. JSON, e.g.
//! `{"source_topic":"telemetry.logs","source_partition":3,"window_ms":60000,
//!   "through_ms":1700000100000,"window_start":1700000040000,"templates":[{"service":"db",
//!   "template_id":812,"template":"connection pool exhausted after <*> retries",
//!   "lines":4,"error_lines":4,"first_error_ms":1700000050000}]}`.

use serde::{Deserialize, Serialize};

use crate::exchange::{validate_window_marks, ExchangeRecord, RecordRow};
use crate::schema::Table;
use crate::slo::partial::MAX_MINUTE_EVENTS;
use crate::time::EventTimeBounds;

/// Lines of one service's template in one window of one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateCount {
    /// Service.
    pub service: String,
    /// Template id (the same in every partition: a hash of service and text).
    pub template_id: i64,
    /// The template's text as the partition's miner has it.
    pub template: String,
    /// Lines in the window.
    pub lines: u64,
    /// Of which at an error level.
    pub error_lines: u64,
    /// Event time of the window's first error-level line, if any.
    pub first_error_ms: Option<i64>,
}

/// One log partition's counts of one closed window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogPartial {
    /// Source topic.
    pub source_topic: String,
    /// Source partition.
    pub source_partition: i32,
    /// Window length, ms (the combining stage refuses other lengths than its own).
    pub window_ms: i64,
    /// Every window starting before this time is final for the source, ms.
    pub through_ms: i64,
    /// Start of the window the counts belong to, ms (`None`: progress only).
    pub window_start: Option<i64>,
    /// Counts, by service and template id.
    pub templates: Vec<TemplateCount>,
}

impl LogPartial {
    /// The record as sent.
    pub fn to_json(&self) -> Vec<u8> {
        // Strings and integers only: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl ExchangeRecord for LogPartial {
    const TABLE: Table = Table::LogPartials;

    /// A source, a positive window length, window-aligned marks within `bounds`,
    /// the window before `through_ms`, and counts that add up.
    fn validate(&self, bounds: &EventTimeBounds) -> Result<(), String> {
        let window = self.window_ms;
        validate_window_marks(
            "a log partial",
            (&self.source_topic, self.source_partition),
            window,
            self.through_ms,
            self.window_start,
            bounds,
        )?;
        let Some(start) = self.window_start else {
            if self.templates.is_empty() {
                return Ok(());
            }
            return Err("template counts without a window".into());
        };
        for t in &self.templates {
            if t.service.is_empty() {
                return Err(format!("template {} names no service", t.template_id));
            }
            if t.lines == 0 || t.error_lines > t.lines || t.lines > MAX_MINUTE_EVENTS {
                return Err(format!(
                    "template {} of {} counts {} error lines of {} (at least one line, errors at most lines)",
                    t.template_id, t.service, t.error_lines, t.lines
                ));
            }
            let in_window = |ms: i64| (start..start.saturating_add(window)).contains(&ms);
            match t.first_error_ms {
                Some(ms) if t.error_lines > 0 && in_window(ms) => {}
                None if t.error_lines == 0 => {}
                _ => {
                    return Err(format!(
                        "template {} of {}: first_error_ms {:?} does not match {} error lines in the window",
                        t.template_id, t.service, t.first_error_ms, t.error_lines
                    ))
                }
            }
        }
        Ok(())
    }

    fn row(&self) -> RecordRow {
        RecordRow {
            source_topic: self.source_topic.clone(),
            source_partition: self.source_partition,
            through_ms: self.through_ms,
            at_ms: self.window_start,
            counts: vec![self.templates.len() as i64],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: i64 = 1_700_000_040_000;

    fn record() -> LogPartial {
        LogPartial {
            source_topic: "telemetry.logs".into(),
            source_partition: 1,
            window_ms: 60_000,
            through_ms: START + 60_000,
            window_start: Some(START),
            templates: vec![TemplateCount {
                service: "db".into(),
                template_id: 812,
                template: "connection pool exhausted after <*> retries".into(),
                lines: 4,
                error_lines: 3,
                first_error_ms: Some(START + 10_000),
            }],
        }
    }

    #[test]
    fn validation_refuses_what_the_combiner_cannot_trust() {
        let bounds = EventTimeBounds {
            oldest_ms: 0,
            newest_ms: START + 120_000,
        };
        assert_eq!(record().validate(&bounds), Ok(()));
        let row = record().row();
        assert_eq!(
            (row.through_ms, row.at_ms, row.counts),
            (START + 60_000, Some(START), vec![1])
        );
        type Breakage = (&'static str, fn(&mut LogPartial));
        let broken: [Breakage; 9] = [
            ("no source", |p| p.source_topic.clear()),
            ("no window length", |p| p.window_ms = 0),
            ("through at the end of time", |p| {
                p.through_ms = i64::MAX - 7
            }),
            ("through off a window start", |p| p.through_ms += 1),
            ("window at through", |p| p.window_start = Some(p.through_ms)),
            ("counts without a window", |p| p.window_start = None),
            ("more errors than lines", |p| p.templates[0].error_lines = 5),
            ("first error outside the window", |p| {
                p.templates[0].first_error_ms = Some(START - 1)
            }),
            ("errors without a first error", |p| {
                p.templates[0].first_error_ms = None
            }),
        ];
        for (what, break_it) in broken {
            let mut p = record();
            break_it(&mut p);
            assert!(p.validate(&bounds).is_err(), "{what}");
        }
        let mut progress = record();
        progress.window_start = None;
        progress.templates.clear();
        assert_eq!(progress.validate(&bounds), Ok(()), "progress only");
        let json = String::from_utf8(record().to_json()).unwrap();
        let back: LogPartial = serde_json::from_str(&json).unwrap();
        assert_eq!(back, record());
    }
}
