//! Runs cara's template miner over Loghub 2k and scores the grouping.
//!
//! Each system's `Content` column is fed line by line, in file order, to one
//! [`TemplateMiner`] with one configuration for all sixteen systems (the system name
//! is the service). The groups are scored against the corrected ground truth and
//! against the original one that published figures used.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cara_operators::eval::loghub::{grouping, template_accuracy, ParsingAccuracy};
use cara_operators::logs::{MinerConfig, TemplateMiner};

/// The sixteen systems, in the README's order, with Drain's published grouping
/// accuracy (original ground truth, tuned per system).
pub const SYSTEMS: [(&str, f64); 16] = [
    ("HDFS", 0.9975),
    ("Hadoop", 0.9475),
    ("Spark", 0.920),
    ("Zookeeper", 0.9665),
    ("BGL", 0.9625),
    ("HPC", 0.887),
    ("Thunderbird", 0.955),
    ("Windows", 0.997),
    ("Linux", 0.690),
    ("Android", 0.911),
    ("HealthApp", 0.780),
    ("Apache", 1.000),
    ("Proxifier", 0.5265),
    ("OpenSSH", 0.7875),
    ("OpenStack", 0.7325),
    ("Mac", 0.7865),
];

/// What can go wrong reading the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum LoghubError {
    /// A file could not be read or parsed as CSV.
    #[error("reading {path}: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// Why.
        source: csv::Error,
    },
    /// A file lacks a column the README promises.
    #[error("{path}: no column {column}")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column.
        column: &'static str,
    },
}

/// One system's lines and both ground truths.
#[derive(Debug, Clone)]
pub struct LabelledLog {
    /// System name (`HDFS`, ...).
    pub system: String,
    /// Drain's published grouping accuracy.
    pub published: f64,
    /// `Content` of each line.
    pub lines: Vec<String>,
    /// Corrected ground truth: event id and template per line.
    pub corrected: Vec<Option<(String, String)>>,
    /// Original ground truth (Zhu et al. 2019).
    pub original: Vec<Option<(String, String)>>,
}

/// Reads `dir/<system>/<system>_2k.log_structured{,_corrected}.csv` for every system.
pub fn load(dir: &Path) -> Result<Vec<LabelledLog>, LoghubError> {
    SYSTEMS
        .iter()
        .map(|(system, published)| {
            let base = dir.join(system);
            let corrected_path = base.join(format!("{system}_2k.log_structured_corrected.csv"));
            let original_path = base.join(format!("{system}_2k.log_structured.csv"));
            let (lines, corrected) = read_structured(&corrected_path)?;
            let (_, original) = read_structured(&original_path)?;
            Ok(LabelledLog {
                system: (*system).to_owned(),
                published: *published,
                lines,
                corrected,
                original,
            })
        })
        .collect()
}

type Truth = Vec<Option<(String, String)>>;

fn read_structured(path: &Path) -> Result<(Vec<String>, Truth), LoghubError> {
    let csv_error = |source| LoghubError::Csv {
        path: path.to_owned(),
        source,
    };
    let mut reader = csv::Reader::from_path(path).map_err(csv_error)?;
    let headers = reader.headers().map_err(csv_error)?.clone();
    let column = |name: &'static str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or(LoghubError::MissingColumn {
                path: path.to_owned(),
                column: name,
            })
    };
    let (content, event, template) = (
        column("Content")?,
        column("EventId")?,
        column("EventTemplate")?,
    );
    let mut lines = Vec::new();
    let mut truth = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        lines.push(record.get(content).unwrap_or_default().to_owned());
        let event_id = record.get(event).unwrap_or_default();
        truth.push((!event_id.is_empty()).then(|| {
            (
                event_id.to_owned(),
                record.get(template).unwrap_or_default().to_owned(),
            )
        }));
    }
    Ok((lines, truth))
}

/// The miner's result on one system.
#[derive(Debug, Clone)]
pub struct SystemResult {
    /// System name.
    pub system: String,
    /// Drain's published grouping accuracy.
    pub published: f64,
    /// Against the corrected ground truth.
    pub corrected: ParsingAccuracy,
    /// Against the original ground truth.
    pub original: ParsingAccuracy,
    /// Template accuracy against the corrected ground truth.
    pub template_accuracy: f64,
    /// Templates the miner ended with.
    pub templates: usize,
    /// Time spent mining (not reading or scoring).
    pub mining: Duration,
}

/// Mines a system's lines in file order with a fresh miner: the miner and each
/// line's template id.
fn mine(log: &LabelledLog, config: &MinerConfig) -> (TemplateMiner, Vec<u64>) {
    let mut miner = TemplateMiner::new(config.clone());
    let ids = log
        .lines
        .iter()
        .enumerate()
        .map(|(i, line)| miner.parse(&log.system, line, i as i64).template_id)
        .collect();
    (miner, ids)
}

/// Mines one system's lines with a fresh miner and scores the outcome.
pub fn evaluate(log: &LabelledLog, config: &MinerConfig) -> SystemResult {
    let started = Instant::now();
    let (miner, ids) = mine(log, config);
    let mining = started.elapsed();
    // Template accuracy uses each line's final template, as offline parsers report.
    let texts: Vec<String> = ids
        .iter()
        .map(|id| {
            miner
                .template(&log.system, *id)
                .map(|t| t.text().to_owned())
                .unwrap_or_default()
        })
        .collect();
    let events = |truth: &Truth| -> Vec<Option<String>> {
        truth
            .iter()
            .map(|t| t.as_ref().map(|(e, _)| e.clone()))
            .collect()
    };
    let templates: Vec<Option<String>> = log
        .corrected
        .iter()
        .map(|t| t.as_ref().map(|(_, text)| text.clone()))
        .collect();
    SystemResult {
        system: log.system.clone(),
        published: log.published,
        corrected: grouping(&ids, &events(&log.corrected)),
        original: grouping(&ids, &events(&log.original)),
        template_accuracy: template_accuracy(&texts, &templates),
        templates: miner.template_count(),
        mining,
    }
}

/// Template ids a deployed run gave each line, per system and line number (from 1,
/// Loghub's `LineId`): the CSV `system,line,template_id` (header first), as
/// `benches/loghub_deployed.py` exports it from table `logs`.
pub fn read_assignments(
    text: &str,
) -> Result<std::collections::BTreeMap<String, std::collections::BTreeMap<usize, i64>>, String> {
    let mut by_system: std::collections::BTreeMap<String, std::collections::BTreeMap<usize, i64>> =
        Default::default();
    for (number, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        let [system, line_id, template_id] = fields[..] else {
            return Err(format!(
                "line {}: expected system,line,template_id",
                number + 1
            ));
        };
        let parse = |what: &str, v: &str| {
            v.trim()
                .parse::<i64>()
                .map_err(|e| format!("line {}: {what} `{v}`: {e}", number + 1))
        };
        let line_id = usize::try_from(parse("line", line_id)?)
            .map_err(|e| format!("line {}: line: {e}", number + 1))?;
        by_system
            .entry(system.trim().to_owned())
            .or_default()
            .insert(line_id, parse("template_id", template_id)?);
    }
    Ok(by_system)
}

/// Grouping accuracy (corrected ground truth) of the template ids a deployed run gave
/// `log`'s lines (`assigned`, by line number from 1); a line with none is a group
/// of its own kind (all such lines together).
pub fn score_assignments(
    log: &LabelledLog,
    assigned: &std::collections::BTreeMap<usize, i64>,
) -> ParsingAccuracy {
    let ids: Vec<Option<i64>> = (1..=log.lines.len())
        .map(|line| assigned.get(&line).copied())
        .collect();
    let events: Vec<Option<String>> = log
        .corrected
        .iter()
        .map(|t| t.as_ref().map(|(e, _)| e.clone()))
        .collect();
    grouping(&ids, &events)
}

/// The true events of `log` that `config` groups wrongly: for each, its template,
/// its line count, and the miner templates (with their line counts in the event and
/// in total) its lines went to. Largest first.
pub fn explain(log: &LabelledLog, config: &MinerConfig) -> Vec<String> {
    use std::collections::BTreeMap;
    let (miner, ids) = mine(log, config);
    let mut by_event: BTreeMap<&str, (&str, BTreeMap<u64, usize>)> = BTreeMap::new();
    let mut parsed_sizes: BTreeMap<u64, usize> = BTreeMap::new();
    for (id, truth) in ids.iter().zip(&log.corrected) {
        *parsed_sizes.entry(*id).or_default() += 1;
        if let Some((event, template)) = truth {
            *by_event
                .entry(event)
                .or_insert((template, BTreeMap::new()))
                .1
                .entry(*id)
                .or_default() += 1;
        }
    }
    let mut wrong: Vec<(usize, String)> = by_event
        .iter()
        .filter(|(_, (_, groups))| {
            groups.len() > 1 || groups.iter().any(|(id, n)| parsed_sizes[id] != *n)
        })
        .map(|(event, (template, groups))| {
            let lines: usize = groups.values().sum();
            let mut text = format!("{event} ({lines} lines) truth: {template}\n");
            for (id, n) in groups {
                let mined = miner
                    .template(&log.system, *id)
                    .map(|t| t.text())
                    .unwrap_or_default();
                text.push_str(&format!("    {n}/{} -> {mined}\n", parsed_sizes[id]));
            }
            (lines, text)
        })
        .collect();
    wrong.sort_by_key(|w| std::cmp::Reverse(w.0));
    wrong.into_iter().map(|(_, text)| text).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids read back from a deployed run score like the miner's own.
    #[test]
    fn assignments_read_back_score_as_grouping() {
        let log = LabelledLog {
            system: "S".into(),
            published: 0.0,
            lines: vec!["a 1".into(), "a 2".into(), "b".into(), "c".into()],
            corrected: vec![
                Some(("E1".into(), "a <*>".into())),
                Some(("E1".into(), "a <*>".into())),
                Some(("E2".into(), "b".into())),
                Some(("E3".into(), "c".into())),
            ],
            original: vec![None; 4],
        };
        let csv = "system,line,template_id\nS,1,7\nS,2,7\nS,3,8\nS,4,8\nT,1,9\n";
        let read = read_assignments(csv).unwrap();
        assert_eq!(read.len(), 2);
        let score = score_assignments(&log, &read["S"]);
        // Lines 3 and 4 share an id but not an event: half the lines are right.
        assert_eq!((score.lines, score.grouping), (4, 0.5));
        let mut separate = read["S"].clone();
        separate.insert(4, 9);
        assert_eq!(score_assignments(&log, &separate).grouping, 1.0);
        assert!(read_assignments("h\nS,x,1\n")
            .unwrap_err()
            .starts_with("line 2"));
    }
}
