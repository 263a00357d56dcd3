//! Alert rule state: turns a stream of scores of one series into firing and resolved
//! transitions, with a for-duration and hysteresis, in event time only.
//!
//! A series goes *pending* when its score reaches the threshold, *fires* once it has
//! been at or above the threshold for `for_ms` (counted from its last normal point, so
//! a sparse series' single point stands for its whole interval), and *resolves* once
//! its score has stayed below `threshold * resolve_ratio` for `resolve_after_ms` and
//! `resolve_after_points` points. The gap between the two levels and the quiet period
//! stop an alert from flapping.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::anomaly::operator::ScoredPoint;
use crate::anomaly::{Detector, PointScore};

/// When a rule fires and resolves.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FiringPolicy {
    /// Score at or above which a series is anomalous.
    pub threshold: f64,
    /// How long (event time) the score must stay anomalous before the alert fires.
    pub for_ms: i64,
    /// The alert resolves below `threshold * resolve_ratio`…
    pub resolve_ratio: f64,
    /// …once the score has stayed there this long…
    pub resolve_after_ms: i64,
    /// …and for at least this many points: the quiet period is evidence, so a
    /// sparse series (a point every 5 minutes) needs as many quiet points to resolve
    /// as a dense one, and a dense one (a point a second) is not held for an hour.
    pub resolve_after_points: u32,
}

impl Default for FiringPolicy {
    fn default() -> Self {
        FiringPolicy {
            threshold: 0.35,
            // Five seconds anomalous, counted from the last normal point: a dense
            // series' one-point blip does not page, a sparse series' one anomalous
            // point does (BENCHMARKS.md, "Alert quality").
            for_ms: 5_000,
            resolve_ratio: 0.9,
            // Two minutes and 13 points: an hour of 5-minute points (as NAB's series
            // have; NAB scores the same as with the hour alone), two minutes of
            // 1-second ones, where ten kept an alert firing through the next fault
            // on the same service (BENCHMARKS.md, "Alert quality").
            resolve_after_ms: 2 * 60_000,
            resolve_after_points: 13,
        }
    }
}

/// An alert rule: which series it watches and when it fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRule {
    /// Rule name (`alertname`).
    pub name: String,
    /// Metric name to match: exact, or a prefix when it ends in `*`; `None` matches all.
    pub metric: Option<String>,
    /// Labels a series must carry with exactly these values.
    pub labels: BTreeMap<String, String>,
    /// `page`, `ticket` or `info`.
    pub severity: String,
    /// When it fires and resolves.
    pub policy: FiringPolicy,
}

impl AlertRule {
    /// The rule cara applies when none is configured: every series, default policy.
    pub fn default_anomaly() -> AlertRule {
        AlertRule {
            name: "metric_anomaly".into(),
            metric: None,
            labels: BTreeMap::new(),
            severity: "ticket".into(),
            policy: FiringPolicy::default(),
        }
    }

    /// True when the rule watches the series.
    pub fn matches(&self, name: &str, labels: &[(String, String)]) -> bool {
        let name_ok = match self.metric.as_deref() {
            None => true,
            Some(pattern) => match pattern.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == pattern,
            },
        };
        name_ok
            && self
                .labels
                .iter()
                .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
    }
}

/// Firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// Started firing.
    Firing,
    /// Stopped firing.
    Resolved,
}

impl AlertStatus {
    /// As written in records.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// How severe a severity is: `page` > `ticket` > `info` > anything else.
pub fn severity_rank(severity: &str) -> u8 {
    match severity {
        "page" => 3,
        "ticket" => 2,
        "info" => 1,
        _ => 0,
    }
}

/// An alert record (DESIGN.md, "Output records"), with event-time fields only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// Deterministic: the same rule, series and start give the same id.
    pub id: String,
    /// Rule name.
    pub rule: String,
    /// Always `anomaly` for these rules.
    pub kind: String,
    /// Severity of the rule.
    pub severity: String,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// Event time of this transition.
    pub at: i64,
    /// When the alert started firing.
    pub starts_at: i64,
    /// When it resolved (resolved records only).
    pub ends_at: Option<i64>,
    /// `alertname`, `__name__` and the series labels.
    pub labels: Vec<(String, String)>,
    /// One line for humans.
    pub summary: String,
    /// What was seen, for humans.
    pub description: String,
    /// Score of the point that caused the transition.
    pub score: f64,
    /// Its value.
    pub value: f64,
    /// The rule's threshold.
    pub threshold: f64,
    /// Start of the anomalous stretch (first point at or above the threshold).
    pub window_start: i64,
    /// End of it so far (the transition's point).
    pub window_end: i64,
    /// The detector's evidence for the transition's point.
    pub evidence: PointScore,
    /// Row of the point in its batch (the caller turns it into a source position).
    #[serde(skip)]
    pub row: usize,
}

/// One rule's state for one series: only pending or firing series are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RuleState {
    state: AlertState,
    window_start: i64,
}

/// Applies alert rules to scored points, keeping each rule's state per series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvaluator {
    rules: Vec<AlertRule>,
    /// By series, then rule index; ordered, so snapshots are deterministic (and
    /// string-keyed, so they serialise as JSON objects).
    states: BTreeMap<Arc<str>, BTreeMap<usize, RuleState>>,
}

impl AlertEvaluator {
    /// An evaluator of `rules`.
    pub fn new(rules: Vec<AlertRule>) -> AlertEvaluator {
        AlertEvaluator {
            rules,
            states: BTreeMap::new(),
        }
    }

    /// Alerts currently firing.
    pub fn firing(&self) -> usize {
        self.states
            .values()
            .flat_map(BTreeMap::values)
            .filter(|s| s.state.is_firing())
            .count()
    }

    /// Takes a scored point; appends the records of the transitions it causes.
    pub fn observe(&mut self, point: &ScoredPoint, out: &mut Vec<AlertRecord>) {
        for (index, rule) in self.rules.iter().enumerate() {
            if !rule.matches(&point.name, &point.labels) {
                continue;
            }
            let score = point.score.score;
            let existing = self
                .states
                .get(&point.series)
                .is_some_and(|rules| rules.contains_key(&index));
            if !existing && score < rule.policy.threshold {
                continue;
            }
            let series_states = self.states.entry(point.series.clone()).or_default();
            let entry = series_states.entry(index).or_insert(RuleState {
                state: AlertState::default(),
                window_start: point.ts_ms,
            });
            // Resolving forgets when the firing started: the resolved record must
            // carry the same start (and so the same id) as the fired one.
            let fired_at = entry.state.firing_since();
            let transition =
                entry
                    .state
                    .observe(&rule.policy, point.ts_ms, point.previous_ms, score);
            let firing_since = entry.state.firing_since();
            let window_start = entry.window_start;
            match transition {
                Some(Transition::Fired) => {
                    let starts_at = firing_since.unwrap_or(point.ts_ms);
                    out.push(record(
                        rule,
                        point,
                        AlertStatus::Firing,
                        starts_at,
                        window_start,
                    ));
                }
                Some(Transition::Resolved) => {
                    out.push(record(
                        rule,
                        point,
                        AlertStatus::Resolved,
                        fired_at.unwrap_or(window_start),
                        window_start,
                    ));
                    series_states.remove(&index);
                }
                None => {
                    if !entry.state.is_firing() && !entry.state.is_pending() {
                        series_states.remove(&index);
                    }
                }
            }
            if series_states.is_empty() {
                self.states.remove(&point.series);
            }
        }
    }

    /// A series fell silent (evicted after its idle limit): its firing alerts resolve
    /// at `silent.ts_ms`, and its pending ones are dropped, so no alert outlives the
    /// series it watches.
    pub fn series_silent(&mut self, silent: &ScoredPoint, out: &mut Vec<AlertRecord>) {
        let Some(series_states) = self.states.remove(&silent.series) else {
            return;
        };
        for (index, entry) in series_states {
            let (Some(rule), Some(fired_at)) = (self.rules.get(index), entry.state.firing_since())
            else {
                continue;
            };
            let mut resolved = record(
                rule,
                silent,
                AlertStatus::Resolved,
                fired_at,
                entry.window_start,
            );
            resolved.summary = format!("{} went silent; resolved", silent.series);
            resolved.description = format!(
                "no point since {} ms: silent past its idle limit (its model is kept until it is forgotten)",
                silent.value
            );
            resolved.value = 0.0;
            out.push(resolved);
        }
    }
}

fn record(
    rule: &AlertRule,
    point: &ScoredPoint,
    status: AlertStatus,
    starts_at: i64,
    window_start: i64,
) -> AlertRecord {
    let mut labels = vec![
        ("alertname".to_owned(), rule.name.clone()),
        ("__name__".to_owned(), point.name.to_string()),
    ];
    labels.extend(point.labels.iter().cloned());
    let detector = match point.score.detector {
        Detector::Warmup => "warmup",
        Detector::Level => "the recent level",
        Detector::Daily => "the usual value at this hour",
        Detector::Shift => "a sustained shift",
    };
    let (summary, ends_at) = match status {
        AlertStatus::Firing => (format!("{} is anomalous", point.series), None),
        AlertStatus::Resolved => (
            format!("{} is back to normal", point.series),
            Some(point.ts_ms),
        ),
    };
    AlertRecord {
        id: alert_id(&rule.name, &point.series, starts_at),
        rule: rule.name.clone(),
        kind: "anomaly".into(),
        severity: rule.severity.clone(),
        status,
        at: point.ts_ms,
        starts_at,
        ends_at,
        labels,
        summary,
        description: format!(
            "value {:.6} against {:.6} expected from {detector} ({:.1} deviations, score {:.3}, threshold {})",
            point.value, point.score.baseline, point.score.deviation, point.score.score, rule.policy.threshold
        ),
        score: point.score.score,
        value: point.value,
        threshold: rule.policy.threshold,
        window_start,
        window_end: point.ts_ms,
        evidence: point.score,
        row: point.row,
    }
}

/// A stable id: FNV-1a (64 bit) of rule, series and start, in hex. The same inputs
/// give the same id in every process and version of cara.
pub fn alert_id(rule: &str, series: &str, starts_at: i64) -> String {
    let hash = crate::stable_hash::Fnv1a::default()
        .feed(rule.as_bytes())
        .feed(&[0])
        .feed(series.as_bytes())
        .feed(&[0])
        .feed(&starts_at.to_le_bytes())
        .finish();
    format!("{hash:016x}")
}

/// A change of an alert's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// The alert started firing at this event time.
    Fired,
    /// The alert resolved at this event time.
    Resolved,
}

/// The state of one series under one rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    /// Since when the series is anomalous: the event time of its last normal point
    /// before the score reached the threshold (that point's own for a first point).
    pending_since: Option<i64>,
    /// Event time the alert fired, while firing.
    firing_since: Option<i64>,
    /// Event time the score last dropped below the resolve level, while firing.
    quiet_since: Option<i64>,
    /// Points below the resolve level since then (that one included).
    #[serde(default)]
    quiet_points: u32,
}

impl AlertState {
    /// True while the alert fires.
    pub fn is_firing(&self) -> bool {
        self.firing_since.is_some()
    }

    /// True while the score is above the threshold but the for-duration has not passed.
    pub fn is_pending(&self) -> bool {
        self.pending_since.is_some()
    }

    /// When the current firing started.
    pub fn firing_since(&self) -> Option<i64> {
        self.firing_since
    }

    /// Takes the score of the point at `ts_ms` (the series' previous point was at
    /// `previous_ms`); returns the transition it causes.
    ///
    /// A series turns anomalous at its last normal point: pending counts from the
    /// previous point, since nothing is known of the series in between. A dense
    /// series (a point a second) must stay anomalous for `for_ms` to fire; a sparse
    /// one (a point every 5 minutes) fires on its first anomalous point once
    /// `for_ms` is shorter than its interval.
    pub fn observe(
        &mut self,
        policy: &FiringPolicy,
        ts_ms: i64,
        previous_ms: Option<i64>,
        score: f64,
    ) -> Option<Transition> {
        if self.firing_since.is_some() {
            if score < policy.threshold * policy.resolve_ratio {
                let quiet_since = *self.quiet_since.get_or_insert(ts_ms);
                self.quiet_points = self.quiet_points.saturating_add(1);
                if ts_ms - quiet_since >= policy.resolve_after_ms
                    && self.quiet_points >= policy.resolve_after_points
                {
                    *self = AlertState::default();
                    return Some(Transition::Resolved);
                }
            } else {
                self.quiet_since = None;
                self.quiet_points = 0;
            }
            return None;
        }
        if score >= policy.threshold {
            let since = *self
                .pending_since
                .get_or_insert(previous_ms.unwrap_or(ts_ms).min(ts_ms));
            if ts_ms - since >= policy.for_ms {
                self.firing_since = Some(ts_ms);
                self.pending_since = None;
                return Some(Transition::Fired);
            }
        } else {
            self.pending_since = None;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(policy: &FiringPolicy, scores: &[(i64, f64)]) -> Vec<(i64, Transition)> {
        let mut state = AlertState::default();
        let mut previous = None;
        scores
            .iter()
            .filter_map(|(t, s)| {
                let transition = state.observe(policy, *t, previous, *s);
                previous = Some(*t);
                transition.map(|tr| (*t, tr))
            })
            .collect()
    }

    fn point(series: &str, ts_ms: i64, score: f64) -> ScoredPoint {
        ScoredPoint {
            series: Arc::from(series),
            name: Arc::from("latency"),
            labels: Arc::from(vec![("service".to_owned(), "api".to_owned())]),
            row: ts_ms as usize,
            ts_ms,
            previous_ms: None,
            value: score * 100.0,
            score: PointScore {
                score,
                baseline: 1.0,
                deviation: 9.0,
                detector: Detector::Level,
            },
        }
    }

    #[test]
    fn evaluator_emits_firing_then_resolved_with_one_deterministic_id() {
        let mut rule = AlertRule::default_anomaly();
        rule.policy = FiringPolicy {
            threshold: 0.5,
            for_ms: 0,
            resolve_ratio: 1.0,
            resolve_after_ms: 20,
            resolve_after_points: 0,
        };
        let mut other = AlertRule::default_anomaly();
        other.name = "db_only".into();
        other.labels.insert("service".into(), "db".into());
        let mut evaluator = AlertEvaluator::new(vec![rule, other]);
        let mut out = Vec::new();
        for (t, s) in [
            (0, 0.1),
            (10, 0.7),
            (20, 0.9),
            (30, 0.2),
            (40, 0.1),
            (50, 0.1),
        ] {
            evaluator.observe(&point("latency{service=\"api\"}", t, s), &mut out);
        }
        let got: Vec<_> = out
            .iter()
            .map(|a| (a.status, a.at, a.starts_at, a.ends_at, a.rule.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (AlertStatus::Firing, 10, 10, None, "metric_anomaly"),
                (AlertStatus::Resolved, 50, 10, Some(50), "metric_anomaly"),
            ]
        );
        assert_eq!(out[0].id, out[1].id);
        assert_eq!(
            out[0].id,
            alert_id("metric_anomaly", "latency{service=\"api\"}", 10)
        );
        assert_ne!(
            out[0].id,
            alert_id("metric_anomaly", "latency{service=\"api\"}", 11)
        );
        assert!(out[0]
            .labels
            .contains(&("alertname".into(), "metric_anomaly".into())));
        assert_eq!(evaluator.firing(), 0);
        assert!(
            evaluator.states.is_empty(),
            "resolved series leave no state"
        );
    }

    /// With a pending period the stretch begins before the alert fires: the
    /// resolved record still names the fired one (same start, same id), and so
    /// does the one a silent series resolves with.
    #[test]
    fn a_resolution_after_a_pending_period_names_the_alert_that_fired() {
        let mut rule = AlertRule::default_anomaly();
        rule.policy = FiringPolicy {
            threshold: 0.5,
            for_ms: 20,
            resolve_ratio: 1.0,
            resolve_after_ms: 20,
            resolve_after_points: 0,
        };
        let mut evaluator = AlertEvaluator::new(vec![rule]);
        let mut out = Vec::new();
        let series = "cpu{service=\"cart\"}";
        for (t, s) in [
            (0, 0.1),
            (10, 0.7),
            (20, 0.8),
            (30, 0.9),
            (40, 0.2),
            (60, 0.1),
        ] {
            let mut p = point(series, t, s);
            p.previous_ms = (t > 0).then_some(t - 10);
            evaluator.observe(&p, &mut out);
        }
        let got: Vec<_> = out
            .iter()
            .map(|a| (a.status, a.at, a.starts_at, a.window_start))
            .collect();
        // Anomalous from the last normal point (0), firing 20 ms on, at 20; the
        // stretch of scores above the threshold began at 10.
        assert_eq!(
            got,
            [
                (AlertStatus::Firing, 20, 20, 10),
                (AlertStatus::Resolved, 60, 20, 10),
            ]
        );
        assert_eq!(out[0].id, out[1].id, "the resolution names the fired alert");
        assert_eq!(out[0].id, alert_id("metric_anomaly", series, 20));

        // The same stretch, then silence: resolved under the fired id too.
        let mut silent_out = Vec::new();
        for (t, s) in [(100, 0.7), (110, 0.8), (120, 0.9), (130, 0.9)] {
            let mut p = point(series, t, s);
            p.previous_ms = Some(t - 10);
            evaluator.observe(&p, &mut silent_out);
        }
        evaluator.series_silent(&point(series, 500, 0.0), &mut silent_out);
        let ids: Vec<_> = silent_out
            .iter()
            .map(|a| (a.status, a.starts_at, a.id.clone()))
            .collect();
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert_eq!(
            (ids[0].0, ids[1].0),
            (AlertStatus::Firing, AlertStatus::Resolved)
        );
        assert_eq!((ids[0].1, &ids[0].2), (ids[1].1, &ids[1].2));
    }

    #[test]
    fn rules_match_metric_names_and_labels() {
        let mut rule = AlertRule::default_anomaly();
        rule.metric = Some("http_*".into());
        rule.labels.insert("service".into(), "api".into());
        let labels = vec![("service".to_owned(), "api".to_owned())];
        assert!(rule.matches("http_latency", &labels));
        assert!(!rule.matches("grpc_latency", &labels));
        assert!(!rule.matches("http_latency", &[("service".into(), "db".into())]));
        rule.metric = Some("http_latency".into());
        assert!(!rule.matches("http_latency_p99", &labels));
    }

    #[test]
    fn fires_after_the_for_duration_and_not_on_a_blip() {
        let policy = FiringPolicy {
            threshold: 0.9,
            for_ms: 20,
            resolve_ratio: 0.5,
            resolve_after_ms: 0,
            resolve_after_points: 0,
        };
        // Anomalous from 10 (the last normal point) on: 20 of it at 30.
        let scores = [
            (0, 0.95),
            (10, 0.1),
            (20, 0.95),
            (30, 0.96),
            (40, 0.97),
            (50, 0.2),
        ];
        assert_eq!(
            run(&policy, &scores),
            vec![(30, Transition::Fired), (50, Transition::Resolved)]
        );
        // A sparse series: one anomalous point stands for its whole interval.
        let sparse = [(0, 0.1), (100, 0.95), (200, 0.1)];
        assert_eq!(
            run(&policy, &sparse),
            vec![(100, Transition::Fired), (200, Transition::Resolved)]
        );
        // A series' first point has no interval behind it.
        assert_eq!(run(&policy, &[(0, 0.95), (10, 0.1)]), vec![]);
    }

    #[test]
    fn hysteresis_and_quiet_period_prevent_flapping() {
        let policy = FiringPolicy {
            threshold: 0.9,
            for_ms: 0,
            resolve_ratio: 0.5,
            resolve_after_ms: 30,
            resolve_after_points: 0,
        };
        // 0.6 is below the threshold but above the resolve level: still firing.
        let scores = [
            (0, 0.95),
            (10, 0.6),
            (20, 0.3),
            (30, 0.92),
            (40, 0.3),
            (60, 0.3),
            (70, 0.2),
            (80, 0.95),
        ];
        assert_eq!(
            run(&policy, &scores),
            vec![
                (0, Transition::Fired),
                (70, Transition::Resolved),
                (80, Transition::Fired)
            ]
        );
    }

    /// Quiet time and quiet points must both pass: a sparse series resolves after
    /// its quiet time, a dense one only after enough quiet points, and a point at
    /// the resolve level starts the count again.
    #[test]
    fn resolving_takes_both_the_quiet_time_and_the_quiet_points() {
        let policy = FiringPolicy {
            threshold: 0.9,
            for_ms: 0,
            resolve_ratio: 0.5,
            resolve_after_ms: 30,
            resolve_after_points: 4,
        };
        // Sparse: 4 quiet points take 60 (> 30): resolves at the 4th.
        let sparse = [(0, 0.95), (20, 0.1), (40, 0.1), (60, 0.1), (80, 0.1)];
        assert_eq!(
            run(&policy, &sparse),
            vec![(0, Transition::Fired), (80, Transition::Resolved)]
        );
        // Dense: 30 of quiet time pass at the 4th quiet point too, but a loud point
        // in between restarts both counts.
        let dense = [
            (0, 0.95),
            (1, 0.1),
            (2, 0.1),
            (3, 0.1),
            (4, 0.6),
            (5, 0.1),
            (10, 0.1),
            (20, 0.1),
            (34, 0.1),
            (35, 0.1),
            (36, 0.1),
        ];
        assert_eq!(
            run(&policy, &dense),
            vec![(0, Transition::Fired), (35, Transition::Resolved)]
        );
        let time_only = FiringPolicy {
            resolve_after_points: 0,
            ..policy
        };
        assert_eq!(
            run(&time_only, &dense),
            vec![(0, Transition::Fired), (35, Transition::Resolved)]
        );
        assert_eq!(
            run(&time_only, &sparse),
            vec![(0, Transition::Fired), (60, Transition::Resolved)]
        );
    }
}
