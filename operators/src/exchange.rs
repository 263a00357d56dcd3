//! How a second stage admits the records of an exchange topic: the one rule the SLO
//! and trace combiners share.
//!
//! Every first-stage partition (a *source*) sends, per minute it has finished, a
//! record carrying that minute and `through_minute`, the minute before which it
//! will send nothing more. The combiner keeps, per source, the highest
//! `through_minute` applied (its *mark*). A minute is applied only when it is at or
//! after the source's mark, so a source that replays records after a crash counts
//! each minute once; the mark only rises. The combined watermark is the lowest mark,
//! and only once as many sources as the source topic has partitions have reported:
//! before that, a minute could still be missing a partition's share.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A first-stage partition: its topic and partition.
pub type Source = (String, i32);

/// Each source's mark (see the module docs). Serialised as a list of
/// `[source, mark]` pairs in source order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SourceMarks {
    #[serde(with = "crate::map_as_list")]
    marks: BTreeMap<Source, i64>,
}

impl SourceMarks {
    /// Whether `minute` of `source` is to be applied: the source has no mark yet,
    /// or the minute is at or after it.
    pub fn admits(&self, source: &Source, minute: i64) -> bool {
        self.marks.get(source).is_none_or(|mark| minute >= *mark)
    }

    /// Records that `source` has sent everything before `through_minute`; a mark
    /// never goes down (a replayed record carries an older one).
    pub fn advance(&mut self, source: Source, through_minute: i64) {
        let mark = self.marks.entry(source).or_insert(through_minute);
        *mark = (*mark).max(through_minute);
    }

    /// The minute before which every source has sent everything: the lowest mark,
    /// once at least `expected` sources (at least one) have reported.
    pub fn low_mark(&self, expected: usize) -> Option<i64> {
        if self.marks.len() < expected.max(1) {
            return None;
        }
        self.marks.values().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(p: i32) -> Source {
        ("telemetry.spans".to_owned(), p)
    }

    /// The rule as a table: (step, source, minute, through) and what is admitted.
    #[test]
    fn minutes_are_admitted_once_and_the_low_mark_waits_for_every_source() {
        let mut marks = SourceMarks::default();
        assert!(marks.admits(&source(0), 10), "a new source: everything");
        marks.advance(source(0), 11);
        assert!(!marks.admits(&source(0), 10), "a replayed minute");
        assert!(marks.admits(&source(0), 11));
        assert_eq!(marks.low_mark(2), None, "one of two sources reported");
        marks.advance(source(1), 13);
        assert_eq!(marks.low_mark(2), Some(11));
        marks.advance(source(0), 9);
        assert_eq!(
            marks.low_mark(2),
            Some(11),
            "a replay does not lower a mark"
        );
        marks.advance(source(0), 14);
        assert_eq!(marks.low_mark(2), Some(13));
        assert_eq!(
            SourceMarks::default().low_mark(0),
            None,
            "expects one at least"
        );
    }

    #[test]
    fn marks_encode_as_a_list_of_pairs() {
        let mut marks = SourceMarks::default();
        marks.advance(source(1), 5);
        marks.advance(source(0), 7);
        let as_list: Vec<(Source, i64)> = vec![(source(0), 7), (source(1), 5)];
        assert_eq!(
            crate::snapshot::encode(&marks).unwrap(),
            crate::snapshot::encode(&as_list).unwrap()
        );
    }
}
