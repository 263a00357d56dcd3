//! Scores cara's incidents against labelled faults (issue 14): how many incidents
//! each fault became (one is right; more is *split*), how many faults share one
//! (*merged*), whether the faulty service is ranked first or in the top three of
//! the probable root causes, and how long after the fault began its incident said so.
//!
//! An alert belongs to a fault as in [`super::labels`]: it starts within
//! `[start, end + grace)` and names the fault's service, a caller the fault shows on,
//! or no service. A fault's incidents are the incidents (as they finally stood:
//! merged ones count as the incident that absorbed them) holding one of its alerts;
//! its *primary* incident holds its earliest alert, and that incident's last record
//! gives the ranking. The time to incident is from the fault's start to the first
//! incident record holding one of its alerts with the faulty service ranked first
//! (a ranking that is right only later is counted from then).

use std::collections::{BTreeMap, BTreeSet};

use cara_operators::alert::{AlertRecord, AlertStatus};
use cara_operators::decisions::{DecisionRecord, DecisionState};
use cara_operators::incidents::{IncidentRecord, IncidentStatus};

use super::labels::{markdown, Cells};
use crate::gen::incidents::{Incident as Fault, IncidentKind};
use crate::sample::quantile;

/// How one fault came out.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultOutcome {
    /// The fault.
    pub fault: Fault,
    /// Incidents holding one of its alerts.
    pub incidents: usize,
    /// Other faults whose primary incident is this fault's.
    pub merged_with: usize,
    /// Position (1 = first) of its service among its primary incident's causes.
    pub rank: Option<usize>,
    /// From its start to when the first record ranking its service first was
    /// sent (on the clock of a live run keeping pace with event time: see
    /// [`super::in_process::Outputs::incidents_flush`]), ms.
    pub to_cause_ms: Option<i64>,
    /// From its start to the first decision proposed, after it began, for an
    /// incident holding one of its alerts (on the same clock as `to_cause_ms`), ms.
    pub to_decision_ms: Option<i64>,
}

/// The outcome of every fault, and the incidents that matched none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentScore {
    /// Per fault, in the labels' order.
    pub faults: Vec<FaultOutcome>,
    /// Incidents (as they finally stood) holding no alert of any fault.
    pub false_incidents: usize,
    /// Incidents as they finally stood.
    pub incidents: usize,
    /// For each decision proposed, from the firing alert that opened its incident
    /// to the decision, ascending (see [`alert_to_decision_ms`]); empty when not
    /// measured.
    pub alert_to_decision_ms: Vec<i64>,
}

/// How long each proposed decision took from the alert that triggered it: from
/// the first firing of the alerts its incident opened with to the decision, both
/// on the clock `alerts` and `decisions` carry (the live harness uses the Kafka
/// messages' CreateTime; the in-process run, its flushes of event time). Decisions
/// whose incident's opening alerts are unknown are left out. Ascending.
pub fn alert_to_decision_ms<'a>(
    incidents: &'a [IncidentRecord],
    alerts: impl IntoIterator<Item = (&'a AlertRecord, i64)>,
    decisions: impl IntoIterator<Item = (&'a DecisionRecord, i64)>,
) -> Vec<i64> {
    let mut fired: BTreeMap<&str, i64> = BTreeMap::new();
    for (alert, at) in alerts {
        if alert.status == AlertStatus::Firing {
            fired.entry(&alert.id).or_insert(at);
        }
    }
    let mut opened_by: BTreeMap<&str, &[String]> = BTreeMap::new();
    for record in incidents {
        opened_by.entry(&record.id).or_insert(&record.alert_ids);
    }
    let mut latencies: Vec<i64> = decisions
        .into_iter()
        .filter(|(d, _)| d.state == DecisionState::Proposed)
        .filter_map(|(d, at)| {
            let first = opened_by
                .get(d.incident_id.as_str())?
                .iter()
                .filter_map(|a| fired.get(a.as_str()))
                .min()?;
            Some(at - first)
        })
        .collect();
    latencies.sort_unstable();
    latencies
}

/// Scores `records` (incident transitions in order, each with the time it was sent
/// at on the clock of a live run keeping pace with event time; see
/// [`super::in_process::Outputs::incidents_flush`]) and the decisions proposed for
/// them (likewise) against `faults`.
pub fn score_incidents(
    records: &[(IncidentRecord, i64)],
    decisions: &[(DecisionRecord, i64)],
    alerts: &[AlertRecord],
    faults: &[Fault],
    grace_ms: i64,
) -> IncidentScore {
    let fired: BTreeMap<&str, &AlertRecord> = alerts
        .iter()
        .filter(|a| a.status == AlertStatus::Firing)
        .map(|a| (a.id.as_str(), a))
        .collect();
    let service = |a: &AlertRecord| {
        a.labels
            .iter()
            .find(|(k, _)| k == "service")
            .map(|(_, v)| v.clone())
    };
    let belongs = |a: &AlertRecord, f: &Fault| {
        let during = a.starts_at >= f.start_ms && a.starts_at < f.end_ms.saturating_add(grace_ms);
        during && service(a).is_none_or(|s| s == f.service || f.affected.contains(&s))
    };
    // Each incident as it finally stood, and where merged ones went.
    let mut last: BTreeMap<&str, &IncidentRecord> = BTreeMap::new();
    let mut merged_into: BTreeMap<&str, &str> = BTreeMap::new();
    for (record, _) in records {
        last.insert(&record.id, record);
        if let (IncidentStatus::Merged, Some(into)) = (record.status, &record.merged_into) {
            merged_into.insert(&record.id, into);
        }
    }
    let finally = |start: &str| {
        let mut id = start.to_owned();
        while let Some(next) = merged_into.get(id.as_str()) {
            id = (*next).to_owned();
        }
        id
    };
    let standing: BTreeMap<&str, &IncidentRecord> = last
        .iter()
        .filter(|(_, r)| r.status != IncidentStatus::Merged)
        .map(|(id, r)| (*id, *r))
        .collect();
    let mut primary_of: Vec<Option<String>> = Vec::new();
    let mut outcomes = Vec::new();
    let mut matched: BTreeSet<String> = BTreeSet::new();
    for fault in faults {
        let own: BTreeSet<&str> = fired
            .iter()
            .filter(|(_, a)| belongs(a, fault))
            .map(|(id, _)| *id)
            .collect();
        let holding: BTreeSet<String> = standing
            .iter()
            .filter(|(_, r)| r.alert_ids.iter().any(|a| own.contains(a.as_str())))
            .map(|(id, _)| finally(id))
            .collect();
        let earliest = own.iter().min_by_key(|id| (fired[*id].starts_at, **id));
        let primary = earliest.and_then(|alert| {
            standing
                .values()
                .find(|r| r.alert_ids.iter().any(|a| a == alert))
                .map(|r| r.id.clone())
        });
        let rank = primary.as_ref().and_then(|id| {
            standing[id.as_str()]
                .probable_root_cause
                .iter()
                .position(|c| c.service == fault.service)
                .map(|p| p + 1)
        });
        let to_cause_ms = records
            .iter()
            .filter(|(r, _)| r.status != IncidentStatus::Merged)
            .find(|(r, _)| {
                r.probable_root_cause
                    .first()
                    .is_some_and(|c| c.service == fault.service)
                    && r.alert_ids.iter().any(|a| own.contains(a.as_str()))
            })
            .map(|(r, sent_at)| (*sent_at).max(r.at) - fault.start_ms);
        // Every incident that ever held one of its alerts (merged ones included):
        // a decision names the incident as it was when proposed.
        let ever_holding: BTreeSet<&str> = records
            .iter()
            .filter(|(r, _)| r.alert_ids.iter().any(|a| own.contains(a.as_str())))
            .map(|(r, _)| r.id.as_str())
            .collect();
        let to_decision_ms = decisions
            .iter()
            .filter(|(d, _)| {
                d.state == DecisionState::Proposed && ever_holding.contains(d.incident_id.as_str())
            })
            .map(|(_, sent_at)| sent_at - fault.start_ms)
            // A decision made before the fault began (its incident was already
            // open, for another fault or a false alarm) is not this fault's.
            .filter(|ms| *ms >= 0)
            .min();
        matched.extend(holding.iter().cloned());
        primary_of.push(primary);
        outcomes.push(FaultOutcome {
            fault: fault.clone(),
            incidents: holding.len(),
            merged_with: 0,
            rank,
            to_cause_ms,
            to_decision_ms,
        });
    }
    for (i, primary) in primary_of.iter().enumerate() {
        if let Some(primary) = primary {
            outcomes[i].merged_with = primary_of
                .iter()
                .enumerate()
                .filter(|(j, other)| *j != i && other.as_ref() == Some(primary))
                .count();
        }
    }
    IncidentScore {
        faults: outcomes,
        false_incidents: standing.keys().filter(|id| !matched.contains(**id)).count(),
        incidents: standing.len(),
        alert_to_decision_ms: Vec::new(),
    }
}

impl IncidentScore {
    /// Per fault kind (`all` first): faults, those in an incident, in exactly one,
    /// split, merged, cause ranked first and in the top three, time to the cause.
    pub fn kind_table(&self) -> Cells {
        let header = vec![
            "faults",
            "count",
            "in an incident",
            "exactly one",
            "split",
            "merged",
            "cause first",
            "cause in top 3",
            "mean time to cause",
            "max time to cause",
            "mean time to decision",
            "max time to decision",
        ];
        let mut kinds: BTreeMap<IncidentKind, Vec<&FaultOutcome>> = BTreeMap::new();
        for outcome in &self.faults {
            kinds.entry(outcome.fault.kind).or_default().push(outcome);
        }
        let all: Vec<&FaultOutcome> = self.faults.iter().collect();
        let rows = std::iter::once(("all".to_owned(), all))
            .chain(kinds.into_iter().map(|(k, v)| (k.as_str().to_owned(), v)))
            .map(|(name, outcomes)| {
                let count =
                    |f: &dyn Fn(&FaultOutcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
                let n = outcomes.len();
                let share = |k: usize| match n {
                    0 => "—".to_owned(),
                    n => format!("{k} ({:.2})", k as f64 / n as f64),
                };
                let mean_max = |time: &dyn Fn(&FaultOutcome) -> Option<i64>| {
                    let times: Vec<i64> = outcomes.iter().filter_map(|o| time(o)).collect();
                    let mean = match times.is_empty() {
                        true => "—".to_owned(),
                        false => format!(
                            "{:.1} s",
                            times.iter().sum::<i64>() as f64 / times.len() as f64 / 1000.0
                        ),
                    };
                    let max = times.iter().max().map_or("—".to_owned(), |ms| {
                        format!("{:.1} s", *ms as f64 / 1000.0)
                    });
                    (mean, max)
                };
                let (mean, max) = mean_max(&|o| o.to_cause_ms);
                let (decision_mean, decision_max) = mean_max(&|o| o.to_decision_ms);
                vec![
                    name,
                    n.to_string(),
                    count(&|o| o.incidents > 0).to_string(),
                    count(&|o| o.incidents == 1).to_string(),
                    count(&|o| o.incidents > 1).to_string(),
                    count(&|o| o.merged_with > 0).to_string(),
                    share(count(&|o| o.rank == Some(1))),
                    share(count(&|o| o.rank.is_some_and(|r| r <= 3))),
                    mean,
                    max,
                    decision_mean,
                    decision_max,
                ]
            })
            .collect();
        (header, rows)
    }

    /// The faults not ranked first: fault, kind, service, incidents, rank.
    pub fn misranked_table(&self) -> Cells {
        let header = vec![
            "fault",
            "kind",
            "service",
            "incidents",
            "merged with",
            "rank",
        ];
        let rows = self
            .faults
            .iter()
            .filter(|o| o.rank != Some(1))
            .map(|o| {
                vec![
                    o.fault.id.clone(),
                    o.fault.kind.as_str().to_owned(),
                    o.fault.service.clone(),
                    o.incidents.to_string(),
                    o.merged_with.to_string(),
                    o.rank.map_or("—".to_owned(), |r| r.to_string()),
                ]
            })
            .collect();
        (header, rows)
    }

    /// Both tables and the count of incidents matching no fault, as Markdown.
    pub fn to_markdown(&self) -> String {
        let misranked = self.misranked_table();
        let misranked = match misranked.1.is_empty() {
            true => String::new(),
            false => format!("\n{}", markdown(&misranked)),
        };
        let latency = &self.alert_to_decision_ms;
        let seconds = |q: f64| {
            quantile(latency, q).map_or("—".to_owned(), |ms| {
                format!("{:.1} s", ms as f64 / 1000.0)
            })
        };
        let latency = match latency.is_empty() {
            true => String::new(),
            false => format!(
                "alert → decision: {} decisions, p50 {}, p99 {}, max {}\n",
                latency.len(),
                seconds(0.5),
                seconds(0.99),
                seconds(1.0)
            ),
        };
        format!(
            "{}\nincidents: {}, of which matching no fault: {}\n{latency}{misranked}",
            markdown(&self.kind_table()),
            self.incidents,
            self.false_incidents
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cara_operators::anomaly::{Detector, PointScore};
    use cara_operators::incidents::Cause;

    fn alert(id: &str, service: &str, starts_at: i64) -> AlertRecord {
        AlertRecord {
            id: id.into(),
            rule: "metric_anomaly".into(),
            kind: "anomaly".into(),
            severity: "ticket".into(),
            status: AlertStatus::Firing,
            at: starts_at,
            starts_at,
            ends_at: None,
            labels: vec![("service".into(), service.into())],
            summary: String::new(),
            description: String::new(),
            score: 0.5,
            value: 0.0,
            threshold: 0.35,
            window_start: starts_at,
            window_end: starts_at,
            evidence: PointScore {
                score: 0.5,
                baseline: 0.0,
                deviation: 0.0,
                detector: Detector::Level,
            },
            row: 0,
        }
    }

    fn record(
        id: &str,
        status: IncidentStatus,
        at: i64,
        alerts: &[&str],
        causes: &[&str],
    ) -> IncidentRecord {
        IncidentRecord {
            id: id.into(),
            status,
            at,
            opened_at: at,
            resolved_at: None,
            severity: "ticket".into(),
            alert_ids: alerts.iter().map(|a| a.to_string()).collect(),
            rules: vec![],
            services: vec![],
            probable_root_cause: causes
                .iter()
                .map(|s| Cause {
                    service: s.to_string(),
                    score: 0.5,
                    reasons: vec![],
                })
                .collect(),
            merged_into: None,
            summary: String::new(),
        }
    }

    fn fault(id: &str, service: &str, start: i64, affected: &[&str]) -> Fault {
        Fault {
            id: id.into(),
            kind: IncidentKind::ErrorBurst,
            service: service.into(),
            start_ms: start,
            end_ms: start + 60_000,
            affected: affected.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn decision(incident: &str, state: DecisionState) -> DecisionRecord {
        DecisionRecord {
            id: format!("dec-{incident}"),
            at: 5_000,
            incident_id: incident.into(),
            alert_ids: vec![],
            action: "rollback".into(),
            kind: "webhook".into(),
            target: "db".into(),
            rationale: String::new(),
            risk: cara_operators::decisions::policy::Risk::High,
            requires_approval: true,
            policy_rule: "r".into(),
            state,
            approved_by: String::new(),
            detail: String::new(),
            expires_at: 0,
            escalation_of: None,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn faults_are_counted_as_one_split_or_merged_and_ranked() {
        use IncidentStatus::*;
        let alerts = [
            alert("a1", "web", 1_000),     // f1's caller, first
            alert("a2", "db", 5_000),      // f1 itself
            alert("b1", "cache", 100_000), // f2, in two incidents
            alert("b2", "cache", 110_000),
            alert("z", "batch", 500_000), // nobody's
        ];
        // Sent when the stage's watermark passed them: i1's update a minute later.
        let records = [
            (record("i1", Open, 1_000, &["a1"], &["web"]), 1_000),
            (
                record("i1", Update, 5_000, &["a1", "a2"], &["db", "web"]),
                65_000,
            ),
            (record("i2", Open, 100_000, &["b1"], &["cache"]), 100_000),
            (record("i3", Open, 110_000, &["b2"], &["cache"]), 110_000),
            (record("i4", Open, 500_000, &["z"], &["batch"]), 500_000),
        ];
        let faults = [
            fault("f1", "db", 0, &["web"]),
            fault("f2", "cache", 90_000, &[]),
            fault("f3", "queue", 300_000, &[]),
        ];
        // A decision on i1 (f1's incident), sent when i1's update was.
        let decision = decision("i1", DecisionState::Proposed);
        let score = score_incidents(&records, &[(decision, 65_000)], &alerts, &faults, 60_000);
        let got: Vec<(usize, usize, Option<usize>, Option<i64>)> = score
            .faults
            .iter()
            .map(|o| (o.incidents, o.merged_with, o.rank, o.to_cause_ms))
            .collect();
        assert_eq!(
            got,
            [
                (1, 0, Some(1), Some(65_000)),
                (2, 0, Some(1), Some(10_000)),
                (0, 0, None, None)
            ]
        );
        assert_eq!((score.incidents, score.false_incidents), (4, 1));
        let table = score.to_markdown();
        assert!(
            table.contains("| all | 3 | 2 | 1 | 1 | 0 | 2 (0.67) | 2 (0.67) | 37.5 s | 65.0 s | 65.0 s | 65.0 s |"),
            "{table}"
        );
        assert!(
            table.contains("| f3 | error_burst | queue | 0 | 0 | — |"),
            "{table}"
        );
    }

    #[test]
    fn two_faults_in_one_incident_are_merged_and_a_merged_incident_counts_as_its_survivor() {
        use IncidentStatus::*;
        let alerts = [alert("a", "db", 1_000), alert("b", "api", 2_000)];
        let mut absorbed = record("i2", Merged, 2_000, &["b"], &["api"]);
        absorbed.merged_into = Some("i1".into());
        let records = [
            record("i1", Open, 1_000, &["a"], &["db"]),
            record("i2", Open, 2_000, &["b"], &["api"]),
            absorbed,
            record("i1", Update, 2_000, &["a", "b"], &["db", "api"]),
        ]
        .map(|r| {
            let at = r.at;
            (r, at)
        });
        let faults = [fault("f1", "db", 0, &[]), fault("f2", "api", 0, &[])];
        let score = score_incidents(&records, &[], &alerts, &faults, 0);
        let got: Vec<(usize, usize, Option<usize>)> = score
            .faults
            .iter()
            .map(|o| (o.incidents, o.merged_with, o.rank))
            .collect();
        assert_eq!(got, [(1, 1, Some(1)), (1, 1, Some(2))]);
        assert_eq!(score.incidents, 1);
    }

    /// Each proposal is timed from the first firing of the alerts its incident
    /// opened with, not from alerts that joined later; other states and proposals
    /// on unknown incidents are not timed.
    #[test]
    fn a_decision_is_timed_from_the_alert_that_opened_its_incident() {
        use IncidentStatus::*;
        let mut resolved = alert("a1", "web", 0);
        resolved.status = AlertStatus::Resolved;
        // (alert, the clock when it was sent)
        let alerts = [
            (alert("a1", "web", 0), 10_000),
            (alert("a2", "db", 0), 20_000),
            (resolved, 30_000),
            (alert("b1", "cache", 0), 50_000),
            (alert("b2", "cache", 0), 45_000),
        ];
        let incidents = [
            record("i1", Open, 0, &["a1"], &["web"]),
            record("i1", Update, 0, &["a1", "a2"], &["db"]),
            record("i2", Open, 0, &["b1", "b2"], &["cache"]),
        ];
        let decisions = [
            (decision("i1", DecisionState::Proposed), 40_000),
            (decision("i1", DecisionState::Executed), 90_000),
            (decision("i2", DecisionState::Proposed), 60_000),
            (decision("gone", DecisionState::Proposed), 70_000),
        ];
        let latencies = alert_to_decision_ms(
            &incidents,
            alerts.iter().map(|(a, at)| (a, *at)),
            decisions.iter().map(|(d, at)| (d, *at)),
        );
        // i2 opened with both b1 and b2: timed from b2, sent first.
        assert_eq!(latencies, [15_000, 30_000]);
        let score = IncidentScore {
            alert_to_decision_ms: latencies,
            ..IncidentScore::default()
        };
        assert!(
            score
                .to_markdown()
                .contains("alert → decision: 2 decisions, p50 30.0 s, p99 30.0 s, max 30.0 s"),
            "{}",
            score.to_markdown()
        );
    }
}
