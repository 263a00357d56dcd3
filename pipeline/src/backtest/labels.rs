//! Alerts scored against labelled incidents (the JSON-lines file `cara gen --labels`
//! writes: `id kind service start end`, times in epoch ms): precision, recall, F1 and
//! time to detect, overall and per incident kind, and precision per alert rule.
//!
//! Matching: a firing transition matches an incident when it starts in
//! `[start, end + grace)` and its `service` label names the incident's service (an
//! alert that names no service, such as an SLO's burn, matches by time alone). An
//! incident is detected by its first matching alert; its time to detect is that
//! alert's start minus the incident's start.
//!
//! A fault that slows or fails requests shows on the services calling the faulty
//! one, and the labels name them (`affected`): an alert on one of those, in the same
//! time, is a true *symptom* of the incident (counted with its true alerts and shown
//! apart), never a detection (that takes the faulty service itself).
//!
//! Precision of kind K counts the alerts that matched an incident of kind K against
//! those plus the false alarms (alerts that matched no incident): a false alarm is a
//! false alarm whatever kind of trouble one was looking for. Overall precision is
//! matching alerts over all alerts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::episodes::Episode;
use crate::gen::incidents::{Incident, IncidentKind};

/// A labels file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    /// The file could not be opened or read.
    #[error("reading labels {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not an incident.
    #[error("labels {path} line {line}: {reason} (expected {{\"id\",\"kind\",\"service\",\"start\",\"end\"}}, as `cara gen --labels` writes)")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Why.
        reason: String,
    },
}

/// Reads a labels file: one incident per line, blank lines skipped.
pub fn read_labels(path: &Path) -> Result<Vec<Incident>, LabelsError> {
    let text = std::fs::read_to_string(path).map_err(|source| LabelsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut incidents = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_error = |reason: String| LabelsError::Line {
            path: path.to_path_buf(),
            line: n + 1,
            reason,
        };
        let incident: Incident =
            serde_json::from_str(line).map_err(|e| line_error(e.to_string()))?;
        if incident.end_ms <= incident.start_ms {
            return Err(line_error(format!(
                "incident {} ends ({}) before it starts ({})",
                incident.id, incident.end_ms, incident.start_ms
            )));
        }
        incidents.push(incident);
    }
    Ok(incidents)
}

/// What a firing alert needs for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiredAlert {
    /// Its rule.
    pub rule: String,
    /// Its `service` label, if it has one.
    pub service: Option<String>,
    /// When its episode started, ms.
    pub starts_at_ms: i64,
}

/// How one incident was detected.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// The incident.
    pub incident: Incident,
    /// Delay from its start to the first matching alert, if any.
    pub detected_after_ms: Option<i64>,
}

/// Counts of the incidents of one kind (or of all) and the alerts about them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KindScore {
    /// Incidents labelled.
    pub incidents: usize,
    /// Of which detected.
    pub detected: usize,
    /// Alerts matching one of these incidents.
    pub true_alerts: usize,
    /// Of which symptoms: on a caller the incident shows on, not on its service.
    pub symptom_alerts: usize,
    /// Alerts matching no incident at all.
    pub false_alerts: usize,
    /// Time to detect of each detected incident, ms, ascending.
    pub detect_ms: Vec<i64>,
}

impl KindScore {
    /// True alerts over true alerts and false alarms; `None` without alerts.
    pub fn precision(&self) -> Option<f64> {
        let all = self.true_alerts + self.false_alerts;
        (all > 0).then(|| self.true_alerts as f64 / all as f64)
    }

    /// Detected incidents over incidents; `None` without incidents.
    pub fn recall(&self) -> Option<f64> {
        (self.incidents > 0).then(|| self.detected as f64 / self.incidents as f64)
    }

    /// The harmonic mean of precision and recall (0 when both are 0).
    pub fn f1(&self) -> Option<f64> {
        let (p, r) = (self.precision()?, self.recall()?);
        Some(if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        })
    }

    /// Mean time to detect, ms.
    pub fn mean_detect_ms(&self) -> Option<f64> {
        (!self.detect_ms.is_empty())
            .then(|| self.detect_ms.iter().sum::<i64>() as f64 / self.detect_ms.len() as f64)
    }

    /// Median time to detect (the lower middle of an even count), ms.
    pub fn median_detect_ms(&self) -> Option<i64> {
        let n = self.detect_ms.len();
        (n > 0).then(|| self.detect_ms[(n - 1) / 2])
    }
}

/// Alerts of one rule.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RuleScore {
    /// Firing transitions.
    pub alerts: usize,
    /// Of which matching an incident (its service, or a caller it shows on).
    pub true_alerts: usize,
}

impl RuleScore {
    /// Matching alerts over alerts.
    pub fn precision(&self) -> f64 {
        self.true_alerts as f64 / self.alerts.max(1) as f64
    }
}

/// The whole score.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LabelScore {
    /// Per incident, in the labels' order.
    pub detections: Vec<Detection>,
    /// Every incident and alert.
    pub overall: KindScore,
    /// Per incident kind that was labelled.
    pub by_kind: BTreeMap<IncidentKind, KindScore>,
    /// Per alert rule that fired.
    pub by_rule: BTreeMap<String, RuleScore>,
}

/// Scores `alerts` (firing transitions) against `incidents`.
pub fn score_alerts(alerts: &[FiredAlert], incidents: &[Incident], grace_ms: i64) -> LabelScore {
    let during = |a: &FiredAlert, i: &Incident| {
        a.starts_at_ms >= i.start_ms && a.starts_at_ms < i.end_ms.saturating_add(grace_ms)
    };
    let matches = |a: &FiredAlert, i: &Incident| {
        a.service.as_ref().is_none_or(|s| *s == i.service) && during(a, i)
    };
    let symptom = |a: &FiredAlert, i: &Incident| {
        a.service.as_ref().is_some_and(|s| i.affected.contains(s)) && during(a, i)
    };
    let mut score = LabelScore::default();
    for incident in incidents {
        let detected_after_ms = alerts
            .iter()
            .filter(|a| matches(a, incident))
            .map(|a| a.starts_at_ms - incident.start_ms)
            .min();
        for kind in [
            &mut score.overall,
            score.by_kind.entry(incident.kind).or_default(),
        ] {
            kind.incidents += 1;
            if let Some(after) = detected_after_ms {
                kind.detected += 1;
                kind.detect_ms.push(after);
            }
        }
        score.detections.push(Detection {
            incident: incident.clone(),
            detected_after_ms,
        });
    }
    for alert in alerts {
        let rule = score.by_rule.entry(alert.rule.clone()).or_default();
        rule.alerts += 1;
        let matched = incidents
            .iter()
            .find(|i| matches(alert, i))
            .map(|i| (i, false))
            .or_else(|| {
                incidents
                    .iter()
                    .find(|i| symptom(alert, i))
                    .map(|i| (i, true))
            });
        match matched {
            Some((incident, is_symptom)) => {
                rule.true_alerts += 1;
                let kind = score.by_kind.entry(incident.kind).or_default();
                for counts in [&mut score.overall, kind] {
                    counts.true_alerts += 1;
                    counts.symptom_alerts += usize::from(is_symptom);
                }
            }
            None => {
                score.overall.false_alerts += 1;
                for kind in score.by_kind.values_mut() {
                    kind.false_alerts += 1;
                }
            }
        }
    }
    for kind in std::iter::once(&mut score.overall).chain(score.by_kind.values_mut()) {
        kind.detect_ms.sort_unstable();
    }
    score
}

/// A table: its header and its rows of cells.
pub type Cells = (Vec<&'static str>, Vec<Vec<String>>);

impl LabelScore {
    /// Per incident kind (`all` first): counts, precision, recall, F1, times to
    /// detect.
    pub fn kind_table(&self) -> Cells {
        let ratio = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{v:.2}"));
        let seconds =
            |v: Option<f64>| v.map_or("—".to_owned(), |ms| format!("{:.1} s", ms / 1000.0));
        let header = vec![
            "incidents",
            "count",
            "detected",
            "alerts",
            "on callers",
            "precision",
            "recall",
            "F1",
            "mean time to detect",
            "median time to detect",
        ];
        let rows = std::iter::once(("all", &self.overall))
            .chain(
                self.by_kind
                    .iter()
                    .map(|(kind, score)| (kind.as_str(), score)),
            )
            .map(|(name, k)| {
                vec![
                    name.to_owned(),
                    k.incidents.to_string(),
                    k.detected.to_string(),
                    k.true_alerts.to_string(),
                    k.symptom_alerts.to_string(),
                    ratio(k.precision()),
                    ratio(k.recall()),
                    ratio(k.f1()),
                    seconds(k.mean_detect_ms()),
                    seconds(k.median_detect_ms().map(|ms| ms as f64)),
                ]
            })
            .collect();
        (header, rows)
    }

    /// Per alert rule: alerts, those matching an incident, precision.
    pub fn rule_table(&self) -> Cells {
        let header = vec!["rule", "alerts", "matching an incident", "precision"];
        let rows = self
            .by_rule
            .iter()
            .map(|(rule, r)| {
                vec![
                    rule.clone(),
                    r.alerts.to_string(),
                    r.true_alerts.to_string(),
                    format!("{:.2}", r.precision()),
                ]
            })
            .collect();
        (header, rows)
    }

    /// The incidents no alert detected: id, kind, service, start, how long.
    pub fn missed_table(&self) -> Cells {
        let header = vec!["missed incident", "kind", "service", "start", "lasting"];
        let rows = self
            .detections
            .iter()
            .filter(|d| d.detected_after_ms.is_none())
            .map(|d| {
                let i = &d.incident;
                vec![
                    i.id.clone(),
                    i.kind.as_str().to_owned(),
                    i.service.clone(),
                    crate::gen::model::rfc3339(i.start_ms),
                    format!("{:.0} s", (i.end_ms - i.start_ms) as f64 / 1000.0),
                ]
            })
            .collect();
        (header, rows)
    }

    /// The score as Markdown tables: per kind, the false alarms, per rule, and the
    /// incidents missed (if any).
    pub fn to_markdown(&self) -> String {
        let missed = self.missed_table();
        let missed = match missed.1.is_empty() {
            true => String::new(),
            false => format!("\n{}", markdown(&missed)),
        };
        format!(
            "{}\nfalse alarms (matching no incident): {}\n\n{}{missed}",
            markdown(&self.kind_table()),
            self.overall.false_alerts,
            markdown(&self.rule_table())
        )
    }
}

/// A Markdown table; the first column left-aligned, the others right.
pub(crate) fn markdown((header, rows): &Cells) -> String {
    let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut text = line(&header);
    let align: Vec<String> = (0..header.len())
        .map(|i| if i == 0 { "---" } else { "---:" }.to_owned())
        .collect();
    text.push_str(&line(&align));
    for row in rows {
        text.push_str(&line(row));
    }
    text
}

/// The alerts of `episodes` as matching sees them.
pub fn fired(episodes: &[Episode]) -> Vec<FiredAlert> {
    episodes
        .iter()
        .map(|e| FiredAlert {
            rule: e.rule.clone(),
            service: e.label("service").map(str::to_owned),
            starts_at_ms: e.start_ms,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(id: &str, kind: IncidentKind, service: &str, start: i64, end: i64) -> Incident {
        Incident {
            id: id.into(),
            kind,
            service: service.into(),
            start_ms: start,
            end_ms: end,
            affected: Vec::new(),
        }
    }

    fn fired(rule: &str, service: Option<&str>, at: i64) -> FiredAlert {
        FiredAlert {
            rule: rule.into(),
            service: service.map(Into::into),
            starts_at_ms: at,
        }
    }

    /// The matching rule as a table: service and time window, grace after the end,
    /// alerts without a service by time alone.
    #[test]
    fn alerts_match_incidents_by_service_and_time() {
        let incidents = [
            incident("i1", IncidentKind::LatencySpike, "api", 1_000, 2_000),
            incident("i2", IncidentKind::ErrorBurst, "db", 5_000, 6_000),
            incident("i3", IncidentKind::LatencySpike, "web", 9_000, 9_500),
        ];
        let alerts = [
            fired("anomaly", Some("api"), 1_300), // i1 after 300
            fired("anomaly", Some("api"), 1_100), // i1 after 100: the first
            fired("anomaly", Some("db"), 6_400),  // i2 within grace (500), after 1400
            fired("anomaly", Some("web"), 5_500), // wrong service for i2: false
            fired("slo", None, 5_200),            // no service: i2 by time
            fired("anomaly", Some("api"), 999),   // before i1: false
            fired("anomaly", Some("db"), 6_500),  // grace is half-open: false
        ];
        let score = score_alerts(&alerts, &incidents, 500);
        let detected: Vec<Option<i64>> = score
            .detections
            .iter()
            .map(|d| d.detected_after_ms)
            .collect();
        assert_eq!(detected, vec![Some(100), Some(200), None]);
        let all = &score.overall;
        assert_eq!((all.incidents, all.detected), (3, 2));
        assert_eq!((all.true_alerts, all.false_alerts), (4, 3));
        assert_eq!(all.precision(), Some(4.0 / 7.0));
        assert_eq!(all.recall(), Some(2.0 / 3.0));
        let f1 = 2.0 * (4.0 / 7.0) * (2.0 / 3.0) / (4.0 / 7.0 + 2.0 / 3.0);
        assert!((all.f1().unwrap() - f1).abs() < 1e-12);
        assert_eq!(all.mean_detect_ms(), Some(150.0));
        assert_eq!(all.median_detect_ms(), Some(100));

        let latency = &score.by_kind[&IncidentKind::LatencySpike];
        assert_eq!((latency.incidents, latency.detected), (2, 1));
        // Its two true alerts against every false alarm.
        assert_eq!((latency.true_alerts, latency.false_alerts), (2, 3));
        let errors = &score.by_kind[&IncidentKind::ErrorBurst];
        assert_eq!(
            (errors.true_alerts, errors.detect_ms.as_slice()),
            (2, &[200][..])
        );
        assert_eq!(
            score.by_rule["anomaly"],
            RuleScore {
                alerts: 6,
                true_alerts: 3
            }
        );
        assert_eq!(score.by_rule["slo"].precision(), 1.0);
        let markdown = score.to_markdown();
        assert!(
            markdown.contains("| all | 3 | 2 | 4 | 0 | 0.57 | 0.67 | 0.62 | 0.1 s | 0.1 s |"),
            "{markdown}"
        );
        assert!(
            markdown
                .contains("| latency_spike | 2 | 1 | 2 | 0 | 0.40 | 0.50 | 0.44 | 0.1 s | 0.1 s |"),
            "{markdown}"
        );
    }

    /// An alert on a caller the incident shows on is a true symptom, not a
    /// detection; on any other service, or outside the time, a false alarm.
    #[test]
    fn alerts_on_affected_callers_are_symptoms_not_detections() {
        let mut burst = incident("i1", IncidentKind::ErrorBurst, "db", 1_000, 2_000);
        burst.affected = vec!["api".into(), "web".into()];
        let memory = incident("i2", IncidentKind::LevelShift, "cache", 5_000, 6_000);
        let alerts = [
            fired("anomaly", Some("web"), 1_200),  // symptom of i1
            fired("anomaly", Some("api"), 2_300),  // symptom of i1, within grace
            fired("anomaly", Some("db"), 1_500),   // detects i1 after 500
            fired("anomaly", Some("auth"), 1_100), // not affected: false
            fired("anomaly", Some("api"), 5_100),  // i2 shows on nobody else: false
            fired("anomaly", Some("web"), 2_600),  // after the grace: false
        ];
        let score = score_alerts(&alerts, &[burst, memory], 500);
        let all = &score.overall;
        assert_eq!((all.incidents, all.detected), (2, 1));
        assert_eq!(all.detect_ms, vec![500], "a symptom is no detection");
        assert_eq!(
            (all.true_alerts, all.symptom_alerts, all.false_alerts),
            (3, 2, 3)
        );
        let errors = &score.by_kind[&IncidentKind::ErrorBurst];
        assert_eq!((errors.true_alerts, errors.symptom_alerts), (3, 2));
        assert_eq!(score.by_kind[&IncidentKind::LevelShift].true_alerts, 0);
        assert_eq!(score.by_rule["anomaly"].true_alerts, 3);
        assert!(
            score
                .to_markdown()
                .contains("| error_burst | 1 | 1 | 3 | 2 | 0.50 | 1.00 | 0.67 | 0.5 s | 0.5 s |"),
            "{}",
            score.to_markdown()
        );
    }

    /// Without alerts precision is undefined, without incidents recall.
    #[test]
    fn empty_sides_leave_ratios_undefined() {
        let none = score_alerts(
            &[],
            &[incident("i", IncidentKind::Saturation, "a", 0, 1)],
            0,
        );
        assert_eq!(
            (none.overall.precision(), none.overall.recall()),
            (None, Some(0.0))
        );
        let quiet = score_alerts(&[fired("r", None, 5)], &[], 0);
        assert_eq!(
            (quiet.overall.precision(), quiet.overall.recall()),
            (Some(0.0), None)
        );
        assert_eq!(quiet.overall.f1(), None);
    }

    #[test]
    fn labels_files_are_read_and_their_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.jsonl");
        std::fs::write(
            &path,
            "{\"id\":\"inc-1\",\"kind\":\"error_burst\",\"service\":\"api\",\"start\":10,\"end\":20}\n\n",
        )
        .unwrap();
        let read = read_labels(&path).unwrap();
        assert_eq!(
            read,
            vec![incident("inc-1", IncidentKind::ErrorBurst, "api", 10, 20)]
        );
        std::fs::write(
            &path,
            "{\"id\":\"inc-1\",\"kind\":\"error_burst\",\"service\":\"api\",\"start\":10,\"end\":20}\n{\"id\":\"inc-2\",\"kind\":\"meltdown\",\"service\":\"api\",\"start\":1,\"end\":2}\n",
        )
        .unwrap();
        let error = read_labels(&path).unwrap_err().to_string();
        assert!(
            error.contains("line 2") && error.contains("meltdown"),
            "{error}"
        );
        std::fs::write(
            &path,
            "{\"id\":\"inc-3\",\"kind\":\"error_burst\",\"service\":\"api\",\"start\":20,\"end\":20}\n",
        )
        .unwrap();
        let error = read_labels(&path).unwrap_err().to_string();
        assert!(
            error.contains("line 1") && error.contains("before it starts"),
            "{error}"
        );
    }
}
