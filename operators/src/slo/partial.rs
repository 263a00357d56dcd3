//! The record the two SLO stages exchange: one source partition's final counts of
//! some minutes of one SLO, and how far that partition's counts are final.
//!
//! Wire form: JSON, keyed by SLO name, e.g.
//! `{"slo":"checkout-availability","source_topic":"telemetry.spans","source_partition":3,
//!   "through_minute":28333334,"minutes":[{"minute":28333333,"good":98,"total":100}]}`.
//! `through_minute` is a minute index (ms / 60,000): every minute before it is final
//! for that source, so a record with no minutes still moves the combined watermark.
//! A source sends each minute in exactly one record of its sequence, however its rows
//! were batched, so a receiver that applies only minutes at or after the last
//! `through_minute` it applied counts every minute of every source once, even when
//! a replay after a crash sends records again (regrouped).

use serde::{Deserialize, Serialize};

use crate::time::EventTimeBounds;

/// The most events one minute of one source may count: a trillion. More is a
/// corrupt or forged record, and sums of such counts could overflow.
pub const MAX_MINUTE_EVENTS: u64 = 1 << 40;

/// Counts of one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinuteCounts {
    /// Minute index (event time ms / 60,000).
    pub minute: i64,
    /// Good events.
    pub good: u64,
    /// All events.
    pub total: u64,
}

/// One source partition's final counts for some minutes of one SLO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloPartial {
    /// SLO name (also the record's key).
    pub slo: String,
    /// Source topic.
    pub source_topic: String,
    /// Source partition.
    pub source_partition: i32,
    /// Every minute before this one is final for the source.
    pub through_minute: i64,
    /// Minutes with events that became final since the previous record, in order.
    pub minutes: Vec<MinuteCounts>,
}

impl SloPartial {
    /// The record as sent.
    pub fn to_json(&self) -> Vec<u8> {
        // Plain strings and integers: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Checks what the combining stage relies on: a source, minutes within `bounds`,
    /// each before `through_minute` and in increasing order, good at most total, and
    /// counts that cannot overflow a sum. The exchange topic is a topic like any
    /// other: whoever can produce to it can send anything.
    pub fn validate(&self, bounds: &EventTimeBounds) -> Result<(), String> {
        if self.slo.is_empty() || self.source_topic.is_empty() || self.source_partition < 0 {
            return Err("an SLO partial names no SLO, source topic or partition".into());
        }
        if !bounds.contains_minute(self.through_minute) {
            return Err(format!(
                "through_minute {} is outside the event times accepted",
                self.through_minute
            ));
        }
        let mut previous: Option<i64> = None;
        for m in &self.minutes {
            if m.minute >= self.through_minute || previous.is_some_and(|p| m.minute <= p) {
                return Err(format!(
                    "minute {} is not after the previous one and before through_minute {}",
                    m.minute, self.through_minute
                ));
            }
            if !bounds.contains_minute(m.minute) {
                return Err(format!(
                    "minute {} is outside the event times accepted",
                    m.minute
                ));
            }
            if m.good > m.total || m.total > MAX_MINUTE_EVENTS {
                return Err(format!(
                    "minute {} counts {} good of {} (good must be at most total, total at most {MAX_MINUTE_EVENTS})",
                    m.minute, m.good, m.total
                ));
            }
            previous = Some(m.minute);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form_round_trips_and_refuses_strangers() {
        let p = SloPartial {
            slo: "checkout-availability".into(),
            source_topic: "telemetry.spans".into(),
            source_partition: 3,
            through_minute: 28_333_334,
            minutes: vec![MinuteCounts {
                minute: 28_333_333,
                good: 98,
                total: 100,
            }],
        };
        let json = p.to_json();
        assert_eq!(serde_json::from_slice::<SloPartial>(&json).unwrap(), p);
        assert!(String::from_utf8(json)
            .unwrap()
            .starts_with("{\"slo\":\"checkout-availability\""));
        assert!(serde_json::from_str::<SloPartial>(r#"{"slo":"x","colour":1}"#).is_err());
    }

    #[test]
    fn validation_refuses_what_the_combiner_cannot_trust() {
        let bounds = EventTimeBounds {
            oldest_ms: 0,
            newest_ms: 28_333_334 * 60_000,
        };
        let good = SloPartial {
            slo: "s".into(),
            source_topic: "telemetry.spans".into(),
            source_partition: 0,
            through_minute: 28_333_334,
            minutes: vec![
                MinuteCounts {
                    minute: 28_333_330,
                    good: 1,
                    total: 2,
                },
                MinuteCounts {
                    minute: 28_333_333,
                    good: 0,
                    total: 0,
                },
            ],
        };
        assert_eq!(good.validate(&bounds), Ok(()));
        type Breakage = (&'static str, fn(&mut SloPartial));
        let broken: [Breakage; 7] = [
            ("through far ahead", |p| p.through_minute = i64::MAX),
            ("through before 1970", |p| p.through_minute = -5),
            ("a minute at through", |p| p.minutes[1].minute = 28_333_334),
            ("minutes out of order", |p| p.minutes.swap(0, 1)),
            ("good over total", |p| p.minutes[0].good = 3),
            ("a huge total", |p| p.minutes[0].total = u64::MAX),
            ("no source", |p| p.source_partition = -1),
        ];
        for (what, break_it) in broken {
            let mut p = good.clone();
            break_it(&mut p);
            assert!(p.validate(&bounds).is_err(), "{what}");
        }
    }
}
