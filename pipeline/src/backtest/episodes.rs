//! Alert episodes read back from an archive's `alerts` table: each firing transition
//! paired with the resolved transition that ends it.

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::{Array, AsArray, Int64Array, MapArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type};

use super::replay::{parquet_files, read_parquet, ReplayError};

/// One alert from firing to resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    /// Its rule.
    pub rule: String,
    /// `anomaly`, `slo_burn`, ...
    pub kind: String,
    /// Its labels, as the alert carries them.
    pub labels: Vec<(String, String)>,
    /// The input topic and partition of the row that fired it.
    pub topic: String,
    /// See `topic`.
    pub partition: i32,
    /// When it started, ms.
    pub start_ms: i64,
    /// When it resolved, ms (`None`: still firing when the archive ends).
    pub end_ms: Option<i64>,
    /// The rule's threshold.
    pub threshold: f64,
}

impl Episode {
    /// The label `key`, if the alert has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Where the timeline draws it: its service, else its SLO, else its rule.
    pub fn lane(&self) -> String {
        match (self.label("service"), self.label("slo")) {
            (Some(service), _) => service.to_owned(),
            (None, Some(slo)) => format!("slo {slo}"),
            (None, None) => self.rule.clone(),
        }
    }

    /// The metric series it watches (name, labels without the alert's own), for an
    /// anomaly alert.
    pub fn series(&self) -> Option<(String, Vec<(String, String)>)> {
        if self.kind != "anomaly" {
            return None;
        }
        let name = self.label("__name__")?.to_owned();
        let labels = self
            .labels
            .iter()
            .filter(|(k, _)| k != "alertname" && k != "__name__")
            .cloned()
            .collect();
        Some((name, labels))
    }
}

/// One transition as archived.
struct Transition {
    firing: bool,
    at_ms: i64,
    episode: Episode,
}

/// The alert episodes of the archive at `archive`, in start order.
pub fn read_episodes(archive: &Path) -> Result<Vec<Episode>, ReplayError> {
    let mut transitions = Vec::new();
    each_alerts_batch(archive, |batch| add_transitions(batch, &mut transitions))?;
    Ok(pair(transitions))
}

/// Calls `each` with every batch of the `alerts` table of the archive at `archive`
/// (a batch it refuses is reported as a read error of its file).
pub(crate) fn each_alerts_batch(
    archive: &Path,
    mut each: impl FnMut(&RecordBatch) -> Result<(), String>,
) -> Result<(), ReplayError> {
    for path in parquet_files(&archive.join("alerts")) {
        for batch in read_parquet(&path)? {
            each(&batch).map_err(|reason| ReplayError::Read {
                path: path.clone(),
                reason,
            })?;
        }
    }
    Ok(())
}

/// Text column `name` of an alerts batch.
pub(crate) fn text_column<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a StringArray, String> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| format!("alerts without a text column {name}"))
}

/// Time column `name` of an alerts batch, in ms.
pub(crate) fn time_column(batch: &RecordBatch, name: &str) -> Result<Int64Array, String> {
    batch
        .column_by_name(name)
        .and_then(|c| arrow::compute::cast(c, &DataType::Int64).ok())
        .map(|c| c.as_primitive::<Int64Type>().clone())
        .ok_or_else(|| format!("alerts without a time column {name}"))
}

/// The `labels` column of an alerts batch.
pub(crate) fn labels_column(batch: &RecordBatch) -> Result<&MapArray, String> {
    batch
        .column_by_name("labels")
        .and_then(|c| c.as_map_opt())
        .ok_or_else(|| "alerts without labels".to_owned())
}

/// Firing and resolved transitions of one rule and label set, in time order, paired.
fn pair(mut transitions: Vec<Transition>) -> Vec<Episode> {
    transitions.sort_by_key(|t| (t.at_ms, !t.firing));
    let mut open: BTreeMap<(String, Vec<(String, String)>), usize> = BTreeMap::new();
    let mut episodes: Vec<Episode> = Vec::new();
    for t in transitions {
        let key = (t.episode.rule.clone(), t.episode.labels.clone());
        if t.firing {
            open.insert(key, episodes.len());
            episodes.push(t.episode);
        } else if let Some(index) = open.remove(&key) {
            episodes[index].end_ms = Some(t.at_ms);
        }
    }
    episodes.sort_by_key(|e| e.start_ms);
    episodes
}

fn add_transitions(batch: &RecordBatch, out: &mut Vec<Transition>) -> Result<(), String> {
    let (rule, kind) = (text_column(batch, "rule")?, text_column(batch, "kind")?);
    let (status, topic) = (text_column(batch, "status")?, text_column(batch, "_topic")?);
    let (at, starts_at) = (time_column(batch, "at")?, time_column(batch, "starts_at")?);
    let partition = batch
        .column_by_name("_partition")
        .and_then(|c| c.as_primitive_opt::<Int32Type>())
        .ok_or("alerts without _partition")?;
    let threshold = batch
        .column_by_name("threshold")
        .and_then(|c| c.as_primitive_opt::<Float64Type>())
        .ok_or("alerts without threshold")?;
    let labels = labels_column(batch)?;
    for row in 0..batch.num_rows() {
        out.push(Transition {
            firing: status.value(row) == "firing",
            at_ms: at.value(row),
            episode: Episode {
                rule: rule.value(row).to_owned(),
                kind: kind.value(row).to_owned(),
                labels: label_pairs(labels, row),
                topic: topic.value(row).to_owned(),
                partition: partition.value(row),
                start_ms: starts_at.value(row),
                end_ms: None,
                threshold: threshold.value(row),
            },
        });
    }
    Ok(())
}

/// The labels of row `row` of a labels map column.
pub(crate) fn label_pairs(labels: &MapArray, row: usize) -> Vec<(String, String)> {
    let entries = labels.value(row);
    let (Some(keys), Some(values)) = (
        entries.column(0).as_string_opt::<i32>(),
        entries.column(1).as_string_opt::<i32>(),
    ) else {
        return Vec::new();
    };
    (0..keys.len())
        .filter(|i| values.is_valid(*i))
        .map(|i| (keys.value(i).to_owned(), values.value(i).to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transition(firing: bool, at_ms: i64, service: &str) -> Transition {
        Transition {
            firing,
            at_ms,
            episode: Episode {
                rule: "metric_anomaly".into(),
                kind: "anomaly".into(),
                labels: vec![
                    ("alertname".into(), "metric_anomaly".into()),
                    ("__name__".into(), "latency".into()),
                    ("service".into(), service.into()),
                ],
                topic: "telemetry.metrics".into(),
                partition: 2,
                start_ms: if firing { at_ms - 5 } else { 0 },
                end_ms: None,
                threshold: 0.35,
            },
        }
    }

    /// Each resolve ends the open episode of its own series; one left open stays
    /// open; a resolve with nothing open is ignored.
    #[test]
    fn transitions_pair_into_episodes_per_series() {
        let episodes = pair(vec![
            transition(false, 50, "api"),
            transition(true, 30, "api"),
            transition(true, 10, "api"),
            transition(false, 20, "api"),
            transition(true, 15, "db"),
            transition(false, 40, "db"),
        ]);
        let spans: Vec<(&str, i64, Option<i64>)> = episodes
            .iter()
            .map(|e| (e.label("service").unwrap_or(""), e.start_ms, e.end_ms))
            .collect();
        assert_eq!(
            spans,
            vec![
                ("api", 5, Some(20)),
                ("db", 10, Some(40)),
                ("api", 25, Some(50)),
            ]
        );
        let (name, labels) = episodes[0].series().unwrap();
        assert_eq!(name, "latency");
        assert_eq!(labels, vec![("service".to_owned(), "api".to_owned())]);
        assert_eq!(episodes[0].lane(), "api");
    }
}
