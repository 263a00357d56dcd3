//! Incidents (issue 14): alert transitions of every kind correlated, by time and by
//! the service dependency graph the trace stage builds from spans, into incidents
//! that name their probable root cause.
//!
//! * [`graph`]: the calls between services, as last seen, and hop distances.
//! * [`correlate`]: the event-time state machine (open, update, merge, resolve).
//! * [`root_cause`]: the ranking of an incident's services, with reasons in words.
//!
//! This is the grouping issue 13 asks for ("one fault, one alert"): alerts stay
//! one per series on `cara.alerts` (routing and silences keep working per series,
//! as in Alertmanager), and the incident is the group, keyed by the graph rather
//! than by a fixed label set, because a fault shows on its callers' series too.

pub mod correlate;
pub mod graph;
pub mod partial;
pub mod reporter;
pub mod root_cause;
pub mod stage;
pub mod table;

use serde::{Deserialize, Serialize};

pub use correlate::Correlator;
pub use root_cause::Cause;

/// How alerts are correlated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentSettings {
    /// An alert joins an incident if it started at most this long after the
    /// incident's latest onset.
    pub gap_ms: i64,
    /// …and its service is at most this many calls away from one of the
    /// incident's services (0: the same service only).
    pub max_hops: u32,
    /// An incident resolves this long after its last alert resolved.
    pub quiet_ms: i64,
    /// A call not seen for this long no longer connects services.
    pub edge_ttl_ms: i64,
    /// Open incidents kept at most; past it the stalest is closed (counted).
    pub max_open: usize,
    /// The incident stage waits for each alert-raising stage's progress, except one
    /// trailing the most advanced by more than this (event time): a stage with no
    /// input, or far behind, does not hold incidents back; its alerts are applied
    /// late (and counted).
    pub max_source_lag_ms: i64,
}

impl Default for IncidentSettings {
    fn default() -> Self {
        IncidentSettings {
            gap_ms: 5 * 60_000,
            max_hops: 2,
            quiet_ms: 5 * 60_000,
            edge_ttl_ms: 3_600_000,
            max_open: 10_000,
            max_source_lag_ms: 5 * 60_000,
        }
    }
}

/// What happened to an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    /// Its first alert fired.
    Open,
    /// An alert joined it (or another incident merged into it).
    Update,
    /// It was absorbed by the incident `merged_into`.
    Merged,
    /// Its alerts resolved and the quiet period passed.
    Resolved,
}

impl IncidentStatus {
    /// As written in records.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::Update => "update",
            IncidentStatus::Merged => "merged",
            IncidentStatus::Resolved => "resolved",
        }
    }
}

/// An incident transition (DESIGN.md, "Output records"), event time only; as sent
/// to `cara.incidents`, times are RFC 3339 in UTC, as on `cara.alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentRecord {
    /// `inc-` and the FNV-1a of its first alert's id: deterministic, as alert ids are.
    pub id: String,
    /// This transition.
    pub status: IncidentStatus,
    /// Event time of the transition.
    #[serde(with = "crate::time::rfc3339_ms")]
    pub at: i64,
    /// Onset of its first alert.
    #[serde(with = "crate::time::rfc3339_ms")]
    pub opened_at: i64,
    /// Set on `resolved`.
    #[serde(with = "crate::time::rfc3339_ms::option")]
    pub resolved_at: Option<i64>,
    /// The highest severity of its alerts.
    pub severity: String,
    /// Its alerts, by id.
    pub alert_ids: Vec<String>,
    /// The rules that fired in it.
    pub rules: Vec<String>,
    /// The services its alerts name.
    pub services: Vec<String>,
    /// The three most probable causes, best first, with their reasons.
    pub probable_root_cause: Vec<Cause>,
    /// On `merged`: the incident that absorbed it.
    pub merged_into: Option<String>,
    /// One line for humans.
    pub summary: String,
}

/// An alert of rule `metric_anomaly` on `service` (labelled as the anomaly rules
/// label theirs), for the tests of this module.
#[cfg(test)]
pub(crate) fn test_alert(
    id: &str,
    service: Option<&str>,
    status: crate::alert::AlertStatus,
    starts_at: i64,
    at: i64,
) -> crate::alert::AlertRecord {
    use crate::anomaly::{Detector, PointScore};
    let mut labels = vec![("alertname".to_owned(), "metric_anomaly".to_owned())];
    if let Some(service) = service {
        labels.push(("service".into(), service.into()));
    }
    crate::alert::AlertRecord {
        id: id.into(),
        rule: "metric_anomaly".into(),
        kind: "anomaly".into(),
        severity: "ticket".into(),
        status,
        at,
        starts_at,
        ends_at: None,
        labels,
        summary: String::new(),
        description: String::new(),
        score: 0.5,
        value: 1.0,
        threshold: 0.35,
        window_start: starts_at,
        window_end: at,
        evidence: PointScore {
            score: 0.5,
            baseline: 0.0,
            deviation: 5.0,
            detector: Detector::Level,
        },
        row: 0,
    }
}
