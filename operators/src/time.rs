//! Event time: milliseconds since the Unix epoch, and the hour partition a time falls in.
//!
//! Owns the mapping from an event time to the archive's `date=YYYY-MM-DD/hour=HH`
//! partition. Parsing of wire timestamps belongs to the decoders, not here.
//!
//! ```
//! use cara_operators::time::HourPartition;
//! let p = HourPartition::of_millis(1_700_000_000_000).unwrap();
//! assert_eq!(p.to_string(), "date=2023-11-14/hour=22");
//! ```

use std::fmt;

use chrono::{DateTime, Datelike, Timelike, Utc};

/// Milliseconds in one hour.
pub const HOUR_MS: i64 = 3_600_000;

/// The event times the archive can partition: chrono's range of dates, in ms.
pub static REPRESENTABLE_MS: std::sync::LazyLock<std::ops::RangeInclusive<i64>> =
    std::sync::LazyLock::new(|| {
        DateTime::<Utc>::MIN_UTC.timestamp_millis()..=DateTime::<Utc>::MAX_UTC.timestamp_millis()
    });

/// Milliseconds in one minute.
pub const MINUTE_MS: i64 = 60_000;

/// The event times a record may carry, both ends included: what the decoders accept
/// and what records between cara's stages are checked against, so no value from
/// outside reaches the arithmetic of windows, minutes and hours out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTimeBounds {
    /// The oldest event time accepted, ms.
    pub oldest_ms: i64,
    /// The newest event time accepted, ms.
    pub newest_ms: i64,
}

impl EventTimeBounds {
    /// True when `ms` is within the bounds.
    pub fn contains(&self, ms: i64) -> bool {
        (self.oldest_ms..=self.newest_ms).contains(&ms)
    }

    /// True when minute index `minute` (ms / 60,000) is within the bounds, or is the
    /// minute just after the newest: a "through" mark says every minute before it is
    /// final, so it may stand one past the last minute with events.
    pub fn contains_minute(&self, minute: i64) -> bool {
        let oldest = crate::minutes::minute_of(self.oldest_ms);
        let newest = crate::minutes::minute_of(self.newest_ms).saturating_add(1);
        (oldest..=newest).contains(&minute)
    }
}

/// An hour-aligned archive partition, identified by its first millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HourPartition {
    start_ms: i64,
}

impl HourPartition {
    /// The partition holding event time `ms`, or `None` when `ms` is outside the
    /// range chrono can represent.
    pub fn of_millis(ms: i64) -> Option<HourPartition> {
        // Checked against the bounds, not by building a date: this runs per row.
        if !REPRESENTABLE_MS.contains(&ms) {
            return None;
        }
        Some(HourPartition {
            start_ms: ms.div_euclid(HOUR_MS) * HOUR_MS,
        })
    }

    /// The first millisecond of the hour.
    pub fn start_ms(self) -> i64 {
        self.start_ms
    }

    /// The `date=YYYY-MM-DD` directory name.
    pub fn date_dir(self) -> String {
        let t = self.datetime();
        format!("date={:04}-{:02}-{:02}", t.year(), t.month(), t.day())
    }

    /// The `hour=HH` directory name.
    pub fn hour_dir(self) -> String {
        format!("hour={:02}", self.datetime().hour())
    }

    fn datetime(self) -> DateTime<Utc> {
        // The constructor checked that the range is representable.
        DateTime::<Utc>::from_timestamp_millis(self.start_ms).unwrap_or_default()
    }
}

impl fmt::Display for HourPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.date_dir(), self.hour_dir())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_time_bounds_include_both_ends_and_the_minute_after() {
        let bounds = EventTimeBounds {
            oldest_ms: 120_000,
            newest_ms: 300_500,
        };
        assert!(bounds.contains(120_000) && bounds.contains(300_500));
        assert!(!bounds.contains(119_999) && !bounds.contains(300_501));
        assert!(!bounds.contains_minute(1));
        assert!(bounds.contains_minute(2) && bounds.contains_minute(5));
        assert!(bounds.contains_minute(6), "through the newest minute");
        assert!(!bounds.contains_minute(7) && !bounds.contains_minute(i64::MAX));
    }

    #[test]
    fn partition_floors_to_the_hour() {
        let a = HourPartition::of_millis(1_700_000_000_000).unwrap();
        let b = HourPartition::of_millis(a.start_ms() + HOUR_MS - 1).unwrap();
        let c = HourPartition::of_millis(a.start_ms() + HOUR_MS).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(c.to_string(), "date=2023-11-14/hour=23");
    }

    #[test]
    fn negative_times_floor_downwards() {
        let p = HourPartition::of_millis(-1).unwrap();
        assert_eq!(p.start_ms(), -HOUR_MS);
        assert_eq!(p.to_string(), "date=1969-12-31/hour=23");
    }

    #[test]
    fn unrepresentable_times_are_refused() {
        assert!(HourPartition::of_millis(i64::MAX).is_none());
        assert!(HourPartition::of_millis(i64::MIN).is_none());
        // Exactly at the bounds chrono can represent, and one past them.
        let (min, max) = (
            DateTime::<Utc>::MIN_UTC.timestamp_millis(),
            DateTime::<Utc>::MAX_UTC.timestamp_millis(),
        );
        for ms in [min, max] {
            let p = HourPartition::of_millis(ms).expect("representable");
            assert!(!p.date_dir().is_empty());
        }
        assert!(HourPartition::of_millis(min - 1).is_none());
        assert!(HourPartition::of_millis(max + 1).is_none());
    }
}

/// Serde for an event time (ms) written as RFC 3339 with milliseconds in UTC
/// (`2026-12-01T10:00:00.000Z`), as the output topics carry times; use with
/// `#[serde(with = "crate::time::rfc3339_ms")]`.
pub mod rfc3339_ms {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    /// The time as text (an unrepresentable one as its number of ms).
    pub fn to_text(ms: i64) -> String {
        DateTime::<Utc>::from_timestamp_millis(ms)
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
            .unwrap_or_else(|| ms.to_string())
    }

    /// Writes `ms` as text.
    pub fn serialize<S: Serializer>(ms: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&to_text(*ms))
    }

    /// Reads RFC 3339 text back into ms.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        let text = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.timestamp_millis())
            .map_err(|e| D::Error::custom(format!("{text:?} is not an RFC 3339 time: {e}")))
    }

    /// The same for an optional time (`null` when absent).
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        /// Writes `ms` as text, or null.
        pub fn serialize<S: Serializer>(
            ms: &Option<i64>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match ms {
                Some(ms) => serializer.serialize_some(&super::to_text(*ms)),
                None => serializer.serialize_none(),
            }
        }

        /// Reads text or null.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<i64>, D::Error> {
            #[derive(Deserialize)]
            struct Time(#[serde(with = "super")] i64);
            Ok(Option::<Time>::deserialize(deserializer)?.map(|t| t.0))
        }
    }
}
