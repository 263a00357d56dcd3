//! Service level objectives: error budgets and multi-window, multi-burn-rate alerts
//! (Google SRE Workbook, "Alerting on SLOs"), computed in two stages because the
//! events of one SLO arrive on every partition (spans are keyed by trace id):
//!
//! 1. [`spans::SpanSloCounter`] runs on each span partition: good and total spans
//!    per SLO and minute of start time, sent once that partition's watermark has
//!    passed the minute, as [`partial::SloPartial`] records keyed by SLO name on an
//!    exchange topic (Kafka does the repartitioning);
//! 2. [`combine::SloCombiner`] runs on each partition of the exchange topic: it adds
//!    the partial counts of every source partition (each minute of each source once,
//!    whatever a replay re-sends) into one [`tracker::SloTracker`] per SLO, whose
//!    watermark is the minimum over the source partitions, and emits the status
//!    records (`cara.slo`, table `slo`) and burn alerts.
//!
//! Both stages are ordinary [`crate::operator::Operator`]s with checkpointed state.

pub mod combine;
pub mod logs;
pub mod metrics;
pub mod minutes;
pub mod partial;
pub mod spans;
pub mod tables;
pub mod tracker;

pub use tracker::{
    default_burn_rules, BurnRule, Counts, SloSpec, SloSpecError, SloStatus, SloTracker,
    WindowStatus, WINDOWS,
};

/// Milliseconds in a minute, the SLO bucket.
pub(crate) use crate::minutes::MINUTE_MS;
