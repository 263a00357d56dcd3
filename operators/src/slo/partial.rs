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
}
