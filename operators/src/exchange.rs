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
//! before that, a minute could still be missing a partition's share. (A mark is any
//! ordered time unit: the SLO and trace stages count minutes, the log stages
//! milliseconds of their window starts.)
//!
//! Also owns how an exchange record that travels whole (JSON) becomes a row of its
//! table ([`ExchangeRecord`], [`RecordRows`]): the trace and log stages' records.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::schema::Table;
use crate::time::EventTimeBounds;

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

    /// Applies the rule to one record of `source` whose contents belong to `at`
    /// (`None`: progress only) and that says `source` has sent everything before
    /// `through`: the cell of `open` its contents are to be merged into, or `None`
    /// when they are not (a replay, or `at` already closed: before `closed_through`,
    /// counted in `late_records`); the source's mark then advances. The combiners
    /// keep these pieces as fields of their own, so their snapshots keep their layout.
    pub fn admit<'a, C: Default>(
        &mut self,
        source: Source,
        at: Option<i64>,
        through: i64,
        open: &'a mut BTreeMap<i64, C>,
        closed_through: Option<i64>,
        late_records: &mut u64,
    ) -> Option<&'a mut C> {
        let cell = match at {
            Some(at) if self.admits(&source, at) => {
                if closed_through.is_some_and(|closed| at < closed) {
                    *late_records += 1;
                    None
                } else {
                    Some(open.entry(at).or_default())
                }
            }
            _ => None,
        };
        self.advance(source, through);
        cell
    }

    /// Records that `source` has sent everything before `through_minute`; a mark
    /// never goes down (a replayed record carries an older one).
    pub fn advance(&mut self, source: Source, through_minute: i64) {
        let mark = self.marks.entry(source).or_insert(through_minute);
        *mark = (*mark).max(through_minute);
    }

    /// The highest mark of any source.
    pub fn high_mark(&self) -> Option<i64> {
        self.marks.values().max().copied()
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

/// Checks the marks of a windowed exchange record (`what`, e.g. "a log partial"):
/// a source, a positive window length, `through_ms` a window start within `bounds`,
/// and `window_start`, when the record has one, a window start within `bounds`
/// before `through_ms`. What the record carries besides is its own to check.
pub fn validate_window_marks(
    what: &str,
    source: (&str, i32),
    window_ms: i64,
    through_ms: i64,
    window_start: Option<i64>,
    bounds: &EventTimeBounds,
) -> Result<(), String> {
    if source.0.is_empty() || source.1 < 0 {
        return Err(format!("{what} names no source topic or partition"));
    }
    if window_ms <= 0 {
        return Err(format!("window_ms {window_ms} must be positive"));
    }
    if !bounds.contains(through_ms) || through_ms % window_ms != 0 {
        return Err(format!(
            "through_ms {through_ms} is outside the event times accepted or not a window start"
        ));
    }
    match window_start {
        Some(start)
            if start >= through_ms || !bounds.contains(start) || start % window_ms != 0 =>
        {
            Err(format!(
                "window_start {start} is outside the event times accepted, not a window start or not before through_ms {through_ms}"
            ))
        }
        _ => Ok(()),
    }
}

/// An exchange record that travels whole: its table, what the combining stage
/// relies on, and what its row says of it.
pub trait ExchangeRecord: DeserializeOwned {
    /// The table its rows go to (columns: source, `through`, a time, counts, the
    /// record, provenance; see [`RecordRows`]).
    const TABLE: Table;

    /// Checks what the combining stage relies on (marks within `bounds`, counts
    /// that add up); the reason when it does not hold.
    fn validate(&self, bounds: &EventTimeBounds) -> Result<(), String>;

    /// What its row says of it.
    fn row(&self) -> RecordRow;

    /// Its row, for a record the broker received at `received_ms` (the Kafka
    /// timestamp, else the wall clock when it was read): the same as
    /// [`ExchangeRecord::row`] for cara's own records, which carry their times.
    fn row_received(&self, received_ms: i64) -> RecordRow {
        let _ = received_ms;
        self.row()
    }
}

/// The columns of a whole exchange record's row besides the record and provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRow {
    /// Source topic.
    pub source_topic: String,
    /// Source partition.
    pub source_partition: i32,
    /// Everything before this time is final for the source, ms.
    pub through_ms: i64,
    /// The time its contents belong to, ms (`None`: progress only).
    pub at_ms: Option<i64>,
    /// The table's count columns, in order.
    pub counts: Vec<i64>,
}

/// Why an exchange record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Not JSON of the record's shape.
    #[error("{0}")]
    Json(String),
    /// Parsed, but not a record the combining stage can trust.
    #[error("{0}")]
    Invalid(String),
}

/// The records of type `T` in the `record` column of archived rows (a table of
/// whole exchange records), with their row numbers, in row order. The decoder
/// archived only records that parsed and validated; a row that does not parse any
/// more is skipped rather than stopping the stage that reads it.
pub fn stored_records<'a, T: DeserializeOwned + 'a>(
    rows: &'a RecordBatch,
) -> Result<impl Iterator<Item = (usize, T)> + 'a, crate::anomaly::operator::SchemaMismatch> {
    let records = crate::columns::strings(rows, "record")?;
    Ok((0..rows.num_rows())
        .filter_map(move |row| Some((row, serde_json::from_str::<T>(records.value(row)).ok()?))))
}

/// Parses and validates a record of type `T` from `json`; its row.
pub fn read_record<T: ExchangeRecord>(
    json: &str,
    bounds: &EventTimeBounds,
) -> Result<RecordRow, RecordError> {
    let record: T = serde_json::from_str(json).map_err(|e| RecordError::Json(e.to_string()))?;
    record.validate(bounds).map_err(RecordError::Invalid)?;
    Ok(record.row())
}

/// [`read_record`] for a record received at `received_ms` (see
/// [`ExchangeRecord::row_received`]).
pub fn read_received<T: ExchangeRecord>(
    json: &str,
    bounds: &EventTimeBounds,
    received_ms: i64,
) -> Result<RecordRow, RecordError> {
    let record: T = serde_json::from_str(json).map_err(|e| RecordError::Json(e.to_string()))?;
    record.validate(bounds).map_err(RecordError::Invalid)?;
    Ok(record.row_received(received_ms))
}

/// Rows of a table of whole exchange records: `source_topic`, `source_partition`,
/// `through`, a nullable time, the table's count columns, `record` (the JSON), and
/// provenance.
#[derive(Debug)]
pub struct RecordRows {
    table: Table,
    source_topic: StringBuilder,
    source_partition: Int32Builder,
    through: TimestampMillisecondBuilder,
    at: TimestampMillisecondBuilder,
    counts: Vec<Int64Builder>,
    record: StringBuilder,
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    index: Int32Builder,
}

/// Columns of such a table that are not counts: source topic and partition,
/// through, the time, the record, and four of provenance.
const NON_COUNT_COLUMNS: usize = 9;

impl RecordRows {
    /// Empty rows of `table`.
    pub fn new(table: Table) -> RecordRows {
        let counts = table
            .schema()
            .fields()
            .len()
            .saturating_sub(NON_COUNT_COLUMNS);
        RecordRows {
            table,
            source_topic: StringBuilder::new(),
            source_partition: Int32Builder::new(),
            through: TimestampMillisecondBuilder::new(),
            at: TimestampMillisecondBuilder::new(),
            counts: (0..counts).map(|_| Int64Builder::new()).collect(),
            record: StringBuilder::new(),
            topic: StringBuilder::new(),
            partition: Int32Builder::new(),
            offset: Int64Builder::new(),
            index: Int32Builder::new(),
        }
    }

    /// Appends the record `json` (whose row is `row`), read at
    /// `topic`/`partition`/`offset`. Counts beyond the table's are ignored, missing
    /// ones are 0.
    pub fn append(
        &mut self,
        row: &RecordRow,
        json: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) {
        self.source_topic.append_value(&row.source_topic);
        self.source_partition.append_value(row.source_partition);
        self.through.append_value(row.through_ms);
        self.at.append_option(row.at_ms);
        for (i, column) in self.counts.iter_mut().enumerate() {
            column.append_value(row.counts.get(i).copied().unwrap_or(0));
        }
        self.record.append_value(json);
        self.topic.append_value(topic);
        self.partition.append_value(partition);
        self.offset.append_value(offset);
        self.index.append_value(0);
    }

    /// Rows appended so far.
    pub fn len(&self) -> usize {
        arrow::array::ArrayBuilder::len(&self.offset)
    }

    /// True before the first row.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batch, leaving the builder empty.
    pub fn finish(&mut self) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.source_topic.finish()),
            Arc::new(self.source_partition.finish()),
            Arc::new(self.through.finish().with_timezone("UTC")),
            Arc::new(self.at.finish().with_timezone("UTC")),
        ];
        columns.extend(
            self.counts
                .iter_mut()
                .map(|c| Arc::new(c.finish()) as ArrayRef),
        );
        columns.extend([
            Arc::new(self.record.finish()) as ArrayRef,
            Arc::new(self.topic.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.index.finish()),
        ]);
        // Every column is built above in the schema's order and types.
        RecordBatch::try_new(self.table.schema(), columns).unwrap_or_else(|e| {
            panic!("{} columns do not match the schema: {e}", self.table.name())
        })
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

    /// A record's contents go to their open cell once; a replay goes nowhere, a
    /// record of a closed minute is counted late, progress only moves the mark.
    #[test]
    fn admit_gives_the_cell_once_and_counts_late_records() {
        let mut marks = SourceMarks::default();
        let mut open: BTreeMap<i64, u32> = BTreeMap::new();
        let mut late = 0;
        let mut add = |marks: &mut SourceMarks, p, at, through, closed| {
            if let Some(cell) = marks.admit(source(p), at, through, &mut open, closed, &mut late) {
                *cell += 1;
            }
        };
        add(&mut marks, 0, Some(10), 11, None);
        add(&mut marks, 0, Some(10), 11, None); // replayed
        add(&mut marks, 1, Some(10), 11, None);
        add(&mut marks, 1, None, 13, None); // progress
        add(&mut marks, 2, Some(9), 10, Some(10)); // closed already
        assert_eq!(open.into_iter().collect::<Vec<_>>(), [(10, 2)]);
        assert_eq!(late, 1);
        assert_eq!(marks.low_mark(3), Some(10));
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
