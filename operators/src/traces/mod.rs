//! Traces: RED metrics (rate, errors, duration percentiles) per service and
//! operation, and the service dependency graph (caller, callee, calls, errors,
//! latency), per minute of span start time, in two stages like SLOs (the spans of a
//! service arrive on every partition; the spans of one trace on one):
//!
//! 1. [`counter::TraceCounter`] runs on each span partition: per minute, a
//!    [`cell::Cell`] (count, errors, HDR histogram of durations) per service and
//!    operation, and per cross-service edge found by joining each span with its
//!    parent; a minute is sent, once the partition's watermark has passed it, as a
//!    [`partial::TracePartial`] record on an exchange topic with one partition;
//! 2. [`combine::TraceCombiner`] reads that partition: it merges every source's
//!    cells (histograms add exactly; each minute of each source once, whatever a
//!    replay re-sends), closes a minute when every source partition has passed it,
//!    writes tables `red` and `service_graph`, and scores each service's latency,
//!    error ratio and rate with the metric anomaly operator.

pub mod cell;
pub mod combine;
pub mod counter;
pub mod partial;
