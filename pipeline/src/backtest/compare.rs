//! The difference between two archives' alerts: what a replay with a changed config
//! would have done differently from the live run (or from another replay).
//!
//! An alert transition is known by its rule, its labels, its status and when its
//! episode started (`starts_at`). The same transition in both archives with any
//! other column different (its id, score, value, end, evidence, source row...) is
//! *changed*; one only in the replay is *added*, one only in the other archive
//! *removed*. Transitions are counted as multisets, so a transition raised twice
//! counts twice.

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::RecordBatch;
use arrow::util::display::array_value_to_string;

use super::episodes::{each_alerts_batch, label_pairs, labels_column, text_column, time_column};
use super::replay::ReplayError;

/// What identifies an alert transition across archives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct AlertKey {
    rule: String,
    service: String,
    labels: String,
    status: String,
    starts_at_ms: i64,
}

/// One transition that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertChange {
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
    /// Rule.
    pub rule: String,
    /// The `service` label, or empty.
    pub service: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// When its episode started, ms.
    pub starts_at_ms: i64,
    /// Its id in the compared archive (empty when added).
    pub id_before: String,
    /// Its id in the replay (empty when removed).
    pub id_after: String,
}

/// Counts of one rule and service.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RuleCounts {
    /// Transitions only in the replay.
    pub added: u64,
    /// Transitions only in the compared archive.
    pub removed: u64,
    /// Transitions in both, with other contents.
    pub changed: u64,
    /// Transitions in both, identical.
    pub same: u64,
}

/// The difference, per rule and service and per transition.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AlertDiff {
    /// Per (rule, service).
    pub by_rule: BTreeMap<(String, String), RuleCounts>,
    /// Every transition that differs, in key order.
    pub changes: Vec<AlertChange>,
}

impl AlertDiff {
    /// Whether both archives hold the same transitions.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The per-transition difference as CSV, with a header.
    pub fn to_csv(&self) -> Result<String, csv::Error> {
        let mut csv = csv::Writer::from_writer(Vec::new());
        csv.write_record([
            "change",
            "rule",
            "service",
            "status",
            "starts_at_ms",
            "id_before",
            "id_after",
        ])?;
        for c in &self.changes {
            csv.write_record([
                c.change,
                &c.rule,
                &c.service,
                &c.status,
                &c.starts_at_ms.to_string(),
                &c.id_before,
                &c.id_after,
            ])?;
        }
        let bytes = csv.into_inner().map_err(|e| e.into_error())?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// Compares the alerts of `before` (the live archive) with those of `after` (a
/// replay's).
pub fn compare_alerts(before: &Path, after: &Path) -> Result<AlertDiff, ReplayError> {
    let before = read_alerts(before)?;
    let mut after = read_alerts(after)?;
    let mut diff = AlertDiff::default();
    for (key, rows) in before {
        let mut replayed = after.remove(&key).unwrap_or_default();
        for (id, content) in rows {
            let counts = diff
                .by_rule
                .entry((key.rule.clone(), key.service.clone()))
                .or_default();
            let change = |change, id_before: &str, id_after: &str| AlertChange {
                change,
                rule: key.rule.clone(),
                service: key.service.clone(),
                status: key.status.clone(),
                starts_at_ms: key.starts_at_ms,
                id_before: id_before.to_owned(),
                id_after: id_after.to_owned(),
            };
            if let Some(i) = replayed.iter().position(|(_, c)| *c == content) {
                replayed.swap_remove(i);
                counts.same += 1;
            } else if replayed.is_empty() {
                counts.removed += 1;
                diff.changes.push(change("removed", &id, ""));
            } else {
                let (other, _) = replayed.swap_remove(0);
                counts.changed += 1;
                diff.changes.push(change("changed", &id, &other));
            }
        }
        after.entry(key).or_default().extend(replayed);
    }
    for (key, rows) in after {
        for (id, _) in rows {
            diff.by_rule
                .entry((key.rule.clone(), key.service.clone()))
                .or_default()
                .added += 1;
            diff.changes.push(AlertChange {
                change: "added",
                rule: key.rule.clone(),
                service: key.service.clone(),
                status: key.status.clone(),
                starts_at_ms: key.starts_at_ms,
                id_before: String::new(),
                id_after: id,
            });
        }
    }
    diff.changes.sort_by(|a, b| {
        (&a.rule, &a.service, a.starts_at_ms, &a.status, a.change).cmp(&(
            &b.rule,
            &b.service,
            b.starts_at_ms,
            &b.status,
            b.change,
        ))
    });
    Ok(diff)
}

/// Every alert transition of `archive`: per key, (id, every column rendered).
fn read_alerts(archive: &Path) -> Result<BTreeMap<AlertKey, Vec<(String, String)>>, ReplayError> {
    let mut alerts: BTreeMap<AlertKey, Vec<(String, String)>> = BTreeMap::new();
    each_alerts_batch(archive, |batch| add_rows(batch, &mut alerts))?;
    Ok(alerts)
}

fn add_rows(
    batch: &RecordBatch,
    alerts: &mut BTreeMap<AlertKey, Vec<(String, String)>>,
) -> Result<(), String> {
    let (id, rule) = (text_column(batch, "id")?, text_column(batch, "rule")?);
    let status = text_column(batch, "status")?;
    let starts_at = time_column(batch, "starts_at")?;
    let labels = labels_column(batch)?;
    for row in 0..batch.num_rows() {
        let service = label_pairs(labels, row)
            .into_iter()
            .find_map(|(k, v)| (k == "service").then_some(v))
            .unwrap_or_default();
        let key = AlertKey {
            rule: rule.value(row).to_owned(),
            service,
            labels: array_value_to_string(labels, row).map_err(|e| e.to_string())?,
            status: status.value(row).to_owned(),
            starts_at_ms: starts_at.value(row),
        };
        let content = batch
            .columns()
            .iter()
            .map(|c| array_value_to_string(c, row))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?
            .join("\u{1f}");
        alerts
            .entry(key)
            .or_default()
            .push((id.value(row).to_owned(), content));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cara_operators::alert::{AlertRecord, AlertStatus};
    use cara_operators::anomaly::{Detector, PointScore};
    use cara_operators::schema::Table;

    use super::*;
    use crate::alerts::{alert_batch, RaisedAlert, SourceRef};
    use crate::archive::layout::ArchiveLayout;
    use crate::archive::writer::ParquetWriter;

    fn alert(id: &str, service: &str, starts_at: i64, score: f64) -> RaisedAlert {
        RaisedAlert {
            record: AlertRecord {
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
                score,
                value: 1.0,
                threshold: 0.35,
                window_start: starts_at,
                window_end: starts_at,
                evidence: PointScore {
                    score,
                    baseline: 1.0,
                    deviation: 0.0,
                    detector: Detector::Level,
                },
                row: 0,
            },
            source: SourceRef {
                topic: Arc::from("telemetry.metrics"),
                partition: 0,
                offset: 7,
            },
        }
    }

    fn archive(dir: &Path, alerts: &[RaisedAlert]) {
        let writer = ParquetWriter::new(ArchiveLayout::new(dir), 1).unwrap();
        for file in writer
            .plan(
                Table::Alerts,
                &alert_batch(alerts),
                "telemetry.metrics-0000-0-9",
            )
            .unwrap()
        {
            writer.write_to(&file, &file.path).unwrap();
        }
    }

    /// The rule as a table: the same transition twice is same, other contents
    /// changed, only in the replay added, only live removed.
    #[test]
    fn transitions_are_same_changed_added_or_removed() {
        let t = 1_764_000_000_000;
        let (live, replay) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        archive(
            live.path(),
            &[
                alert("a", "api", t, 0.5),
                alert("b", "db", t, 0.6),
                alert("c", "web", t, 0.7),
            ],
        );
        archive(
            replay.path(),
            &[
                alert("a", "api", t, 0.5),
                alert("b2", "db", t, 0.9),
                alert("d", "web", t + 60_000, 0.7),
            ],
        );
        let diff = compare_alerts(live.path(), replay.path()).unwrap();
        let changes: Vec<(&str, &str, &str, &str)> = diff
            .changes
            .iter()
            .map(|c| {
                (
                    c.change,
                    c.service.as_str(),
                    c.id_before.as_str(),
                    c.id_after.as_str(),
                )
            })
            .collect();
        assert_eq!(
            changes,
            vec![
                ("changed", "db", "b", "b2"),
                ("removed", "web", "c", ""),
                ("added", "web", "", "d"),
            ]
        );
        let api = diff.by_rule[&("metric_anomaly".to_owned(), "api".to_owned())];
        assert_eq!(
            api,
            RuleCounts {
                same: 1,
                ..RuleCounts::default()
            }
        );
        assert!(compare_alerts(live.path(), live.path()).unwrap().is_empty());
        let csv = diff.to_csv().unwrap();
        assert!(csv.starts_with("change,rule,service"));
        assert!(
            csv.contains("\nremoved,metric_anomaly,web,firing,"),
            "{csv}"
        );
    }
}
