//! Alert rule state: turns a stream of scores of one series into firing and resolved
//! transitions, with a for-duration and hysteresis, in event time only.
//!
//! A series goes *pending* when its score reaches the threshold, *fires* once it has
//! stayed at or above the threshold for `for_ms`, and *resolves* once its score has
//! stayed below `threshold * resolve_ratio` for `resolve_after_ms`. The gap between
//! the two levels and the quiet period stop an alert from flapping.

use serde::{Deserialize, Serialize};

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
    /// …once the score has stayed there this long.
    pub resolve_after_ms: i64,
}

impl Default for FiringPolicy {
    fn default() -> Self {
        FiringPolicy {
            threshold: 0.35,
            for_ms: 0,
            resolve_ratio: 0.9,
            resolve_after_ms: 60 * 60_000,
        }
    }
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
    /// Event time the score first reached the threshold in the current run.
    pending_since: Option<i64>,
    /// Event time the alert fired, while firing.
    firing_since: Option<i64>,
    /// Event time the score last dropped below the resolve level, while firing.
    quiet_since: Option<i64>,
}

impl AlertState {
    /// True while the alert fires.
    pub fn is_firing(&self) -> bool {
        self.firing_since.is_some()
    }

    /// When the current firing started.
    pub fn firing_since(&self) -> Option<i64> {
        self.firing_since
    }

    /// Takes the score of the point at `ts_ms`; returns the transition it causes.
    pub fn observe(&mut self, policy: &FiringPolicy, ts_ms: i64, score: f64) -> Option<Transition> {
        if self.firing_since.is_some() {
            if score < policy.threshold * policy.resolve_ratio {
                let quiet_since = *self.quiet_since.get_or_insert(ts_ms);
                if ts_ms - quiet_since >= policy.resolve_after_ms {
                    *self = AlertState::default();
                    return Some(Transition::Resolved);
                }
            } else {
                self.quiet_since = None;
            }
            return None;
        }
        if score >= policy.threshold {
            let since = *self.pending_since.get_or_insert(ts_ms);
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
        scores
            .iter()
            .filter_map(|(t, s)| state.observe(policy, *t, *s).map(|tr| (*t, tr)))
            .collect()
    }

    #[test]
    fn fires_after_the_for_duration_and_not_on_a_blip() {
        let policy = FiringPolicy {
            threshold: 0.9,
            for_ms: 20,
            resolve_ratio: 0.5,
            resolve_after_ms: 0,
        };
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
            vec![(40, Transition::Fired), (50, Transition::Resolved)]
        );
    }

    #[test]
    fn hysteresis_and_quiet_period_prevent_flapping() {
        let policy = FiringPolicy {
            threshold: 0.9,
            for_ms: 0,
            resolve_ratio: 0.5,
            resolve_after_ms: 30,
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
}
