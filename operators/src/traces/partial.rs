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
}
