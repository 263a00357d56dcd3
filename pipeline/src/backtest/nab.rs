//! Runs cara's anomaly scoring over the Numenta Anomaly Benchmark and scores it.
//!
//! Each NAB file becomes a stream of flat-JSON metric messages (`name = "nab"`, label
//! `series = <file>`), decoded by the live [`Decoder`] into Arrow batches and scored
//! by the live [`AnomalyOperator`]; detections are the moments the live alert state
//! machine ([`AlertState`]) fires. For each profile the threshold is swept over the
//! whole corpus, as NAB prescribes, with one detector configuration for every file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cara_operators::alert::{AlertState, FiringPolicy, Transition};
use cara_operators::anomaly::operator::{AnomalyLimits, AnomalyOperator};
use cara_operators::anomaly::ScorerConfig;
use cara_operators::eval::nab::{corpus_score, rows_between, LabelledFile, Profile, PROFILES};

use crate::decode::{DecodeLimits, Decoder, Signal, SourcePosition};

/// What can go wrong reading the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum NabError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file's contents are not what NAB's README describes.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// One NAB series with its labels.
#[derive(Debug, Clone)]
pub struct NabSeries {
    /// `group/file.csv`, as in the labels.
    pub name: String,
    /// Row times, ms since the epoch.
    pub times: Vec<i64>,
    /// Row values.
    pub values: Vec<f64>,
    /// Rows and windows.
    pub labels: LabelledFile,
}

/// Reads every series under `dir/data` with its windows from
/// `dir/labels/combined_windows.json`, in name order.
pub fn load(dir: &Path) -> Result<Vec<NabSeries>, NabError> {
    let windows_path = dir.join("labels").join("combined_windows.json");
    let text = read(&windows_path)?;
    let windows: BTreeMap<String, Vec<[String; 2]>> =
        serde_json::from_str(&text).map_err(|e| NabError::Format {
            path: windows_path.clone(),
            reason: e.to_string(),
        })?;
    let mut series = Vec::with_capacity(windows.len());
    for (name, list) in &windows {
        let path = dir.join("data").join(name);
        let (times, values) = read_csv(&path)?;
        let mut rows = Vec::with_capacity(list.len());
        for [start, end] in list {
            let (start, end) = (parse_time(&path, start)?, parse_time(&path, end)?);
            if let Some(range) = rows_between(&times, start, end) {
                rows.push(range);
            }
        }
        series.push(NabSeries {
            name: name.clone(),
            labels: LabelledFile {
                rows: times.len(),
                windows: rows,
            },
            times,
            values,
        });
    }
    Ok(series)
}

fn read(path: &Path) -> Result<String, NabError> {
    std::fs::read_to_string(path).map_err(|source| NabError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_time(path: &Path, text: &str) -> Result<i64, NabError> {
    let trimmed = text.split('.').next().unwrap_or(text);
    chrono::NaiveDateTime::parse_from_str(trimmed, "%Y-%m-%d %H:%M:%S")
        .map(|t| t.and_utc().timestamp_millis())
        .map_err(|e| NabError::Format {
            path: path.to_path_buf(),
            reason: format!("timestamp `{text}`: {e}"),
        })
}

fn read_csv(path: &Path) -> Result<(Vec<i64>, Vec<f64>), NabError> {
    let text = read(path)?;
    let (mut times, mut values) = (Vec::new(), Vec::new());
    for (number, line) in text.lines().enumerate().skip(1) {
        let Some((time, value)) = line.split_once(',') else {
            continue;
        };
        times.push(parse_time(path, time)?);
        values.push(value.trim().parse::<f64>().map_err(|e| NabError::Format {
            path: path.to_path_buf(),
            reason: format!("line {}: value `{value}`: {e}", number + 1),
        })?);
    }
    Ok((times, values))
}

/// Scores every row of `series` through the live decoder and operator: one score
/// per row.
pub fn score_series(series: &NabSeries, config: &ScorerConfig) -> Vec<f64> {
    score_in_batches(series, config, 4096)
}

/// [`score_series`] with the rows handed to the operator `rows_per_batch` at a time.
fn score_in_batches(series: &NabSeries, config: &ScorerConfig, rows_per_batch: usize) -> Vec<f64> {
    let rows_per_batch = rows_per_batch.max(1);
    let mut decoder = Decoder::new(Signal::Metrics, DecodeLimits::default());
    let mut operator = AnomalyOperator::new(*config, AnomalyLimits::default());
    // A point the operator does not score (older than the series' last one: one
    // NAB file steps back 55 minutes) is NaN, so scores stay row-aligned.
    let mut scores = vec![f64::NAN; series.times.len()];
    let mut out = Vec::new();
    let mut message = String::new();
    for (chunk_start, chunk) in series.times.chunks(rows_per_batch).enumerate() {
        for (i, ts) in chunk.iter().enumerate() {
            let row = chunk_start * rows_per_batch + i;
            message.clear();
            message.push_str(&format!(
                r#"{{"ts":{ts},"name":"nab","type":"gauge","value":{},"labels":{{"series":"{}"}}}}"#,
                series.values[row], series.name
            ));
            let pos = SourcePosition {
                topic: "nab",
                partition: 0,
                offset: row as i64,
                kafka_ts_ms: Some(*ts),
            };
            // NAB values are plain numbers; a decode failure would be a bug here.
            if let Err(e) = decoder.decode(Some(message.as_bytes()), &pos) {
                tracing::warn!(series = %series.name, row, error = %e, "NAB row not decoded");
            }
        }
        let batch = decoder.finish();
        out.clear();
        if operator.process(&batch, &mut out).is_ok() {
            let first_row = chunk_start * rows_per_batch;
            for point in &out {
                if let Some(score) = scores.get_mut(first_row + point.row) {
                    *score = point.score.score;
                }
            }
        }
    }
    scores
}

/// Detections (row indices) of one series under `policy`: the rows where the alert
/// fires. Rows without a score (NaN: not scored) pass the alert by, as in the live
/// operator.
pub fn detections(times: &[i64], scores: &[f64], policy: &FiringPolicy) -> Vec<usize> {
    let mut state = AlertState::default();
    let mut previous = None;
    let mut fired = Vec::new();
    for (row, (ts, score)) in times.iter().zip(scores).enumerate() {
        if score.is_nan() {
            continue;
        }
        if state.observe(policy, *ts, previous, *score) == Some(Transition::Fired) {
            fired.push(row);
        }
        previous = Some(*ts);
    }
    fired
}

/// The best score of a profile and the threshold that gave it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProfileResult {
    /// The profile.
    pub profile: Profile,
    /// Normalised score at the best threshold.
    pub score: f64,
    /// That threshold.
    pub threshold: f64,
}

/// Candidate thresholds: 0.100, 0.105, … 1.0.
pub fn candidate_thresholds() -> Vec<f64> {
    (20..=200).map(|i| f64::from(i) * 0.005).collect()
}

/// Scores the corpus for each profile at `policy`'s own threshold (as deployed).
pub fn score_at(corpus: &[NabSeries], scores: &[Vec<f64>], policy: &FiringPolicy) -> Vec<f64> {
    score_detections(corpus, &detect_corpus(corpus, scores, policy))
}

/// Detections of every series of the corpus under `policy`, in corpus order.
pub fn detect_corpus(
    corpus: &[NabSeries],
    scores: &[Vec<f64>],
    policy: &FiringPolicy,
) -> Vec<Vec<usize>> {
    corpus
        .iter()
        .zip(scores)
        .map(|(s, sc)| detections(&s.times, sc, policy))
        .collect()
}

/// The normalised corpus score of per-series detections under `profile`.
fn profile_score(corpus: &[NabSeries], detected: &[Vec<usize>], profile: &Profile) -> f64 {
    corpus_score(
        corpus
            .iter()
            .zip(detected)
            .map(|(s, d)| (&s.labels, d.as_slice())),
        profile,
    )
    .normalised
}

/// Scores the corpus for each profile given each series' detections (row indices,
/// in corpus order).
pub fn score_detections(corpus: &[NabSeries], detected: &[Vec<usize>]) -> Vec<f64> {
    PROFILES
        .iter()
        .map(|profile| profile_score(corpus, detected, profile))
        .collect()
}

/// One alert as `cara.alerts` carries it: the fields the NAB scoring reads.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct AlertMessage {
    /// `firing` or `resolved`.
    pub status: String,
    /// When the alert started (RFC 3339).
    pub starts_at: String,
    /// Its labels; a NAB series is label `series`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// What reading alerts for the NAB scoring found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertDetections {
    /// Detections per series of the corpus, in corpus order: the row each firing
    /// alert started at (repeats of one alert, as a topic may carry, count once).
    pub detected: Vec<Vec<usize>>,
    /// Firing alerts read.
    pub firing: usize,
    /// Firing alerts whose series is not in the corpus or whose start is no row
    /// of it.
    pub unmatched: usize,
}

/// The detections the alerts `lines` (one JSON alert per line, as consumed from
/// `cara.alerts`) make on `corpus`. A line that is not such an alert is an error
/// naming its number.
pub fn detections_from_alerts(
    corpus: &[NabSeries],
    lines: &str,
) -> Result<AlertDetections, String> {
    let index: BTreeMap<&str, usize> = corpus
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    // Per series, each time's first row: times are not always increasing (one NAB
    // file steps back 55 minutes), so no binary search.
    let rows: Vec<BTreeMap<i64, usize>> = corpus
        .iter()
        .map(|s| {
            let mut first = BTreeMap::new();
            for (row, t) in s.times.iter().enumerate() {
                first.entry(*t).or_insert(row);
            }
            first
        })
        .collect();
    let mut found = AlertDetections {
        detected: vec![Vec::new(); corpus.len()],
        ..AlertDetections::default()
    };
    for (number, line) in lines.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let alert: AlertMessage = serde_json::from_str(line)
            .map_err(|e| format!("line {}: not an alert message: {e}", number + 1))?;
        if alert.status != "firing" {
            continue;
        }
        found.firing += 1;
        let starts_at = chrono::DateTime::parse_from_rfc3339(&alert.starts_at)
            .map_err(|e| format!("line {}: starts_at `{}`: {e}", number + 1, alert.starts_at))?
            .timestamp_millis();
        let row = alert
            .labels
            .get("series")
            .and_then(|name| index.get(name.as_str()))
            .and_then(|i| Some((*i, *rows[*i].get(&starts_at)?)));
        match row {
            Some((i, row)) => found.detected[i].push(row),
            None => found.unmatched += 1,
        }
    }
    for rows in &mut found.detected {
        rows.sort_unstable();
        rows.dedup();
    }
    Ok(found)
}

/// Scores the corpus for each profile at the best threshold of `policy`'s shape.
pub fn evaluate(
    corpus: &[NabSeries],
    scores: &[Vec<f64>],
    policy: &FiringPolicy,
) -> Vec<ProfileResult> {
    let thresholds = candidate_thresholds();
    let per_threshold: Vec<Vec<Vec<usize>>> = thresholds
        .iter()
        .map(|t| {
            let policy = FiringPolicy {
                threshold: *t,
                ..*policy
            };
            detect_corpus(corpus, scores, &policy)
        })
        .collect();
    PROFILES
        .iter()
        .map(|profile| {
            let mut best = ProfileResult {
                profile: *profile,
                score: f64::MIN,
                threshold: 1.0,
            };
            for (t, detected) in thresholds.iter().zip(&per_threshold) {
                let score = profile_score(corpus, detected, profile);
                if score > best.score {
                    best = ProfileResult {
                        profile: *profile,
                        score,
                        threshold: *t,
                    };
                }
            }
            best
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A miniature NAB directory: one series with a spike inside its one window.
    fn tiny_corpus(dir: &Path) {
        std::fs::create_dir_all(dir.join("data/g")).unwrap();
        std::fs::create_dir_all(dir.join("labels")).unwrap();
        let mut csv = String::from("timestamp,value\n");
        let start = chrono::NaiveDate::from_ymd_opt(2024, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap();
        for i in 0..2000i64 {
            let t = start + chrono::Duration::minutes(5 * i);
            let wobble = ((i * 7919) % 13) as f64 / 13.0;
            let value = if i == 1500 { 90.0 } else { 40.0 + wobble };
            csv.push_str(&format!("{},{value}\n", t.format("%Y-%m-%d %H:%M:%S")));
        }
        std::fs::write(dir.join("data/g/s.csv"), csv).unwrap();
        let at = |i: i64| {
            (start + chrono::Duration::minutes(5 * i))
                .format("%Y-%m-%d %H:%M:%S.000000")
                .to_string()
        };
        std::fs::write(
            dir.join("labels/combined_windows.json"),
            format!(r#"{{"g/s.csv": [["{}", "{}"]]}}"#, at(1490), at(1600)),
        )
        .unwrap();
    }

    #[test]
    fn a_spike_in_its_window_is_detected_through_the_live_path() {
        let dir = tempfile::tempdir().unwrap();
        tiny_corpus(dir.path());
        let corpus = load(dir.path()).unwrap();
        assert_eq!(corpus.len(), 1);
        assert_eq!(corpus[0].labels.windows, vec![(1490, 1600)]);
        let scores = score_series(&corpus[0], &ScorerConfig::default());
        assert_eq!(scores.len(), 2000);
        let policy = FiringPolicy::default();
        assert_eq!(detections(&corpus[0].times, &scores, &policy), vec![1500]);
        let results = evaluate(&corpus, &[scores], &policy);
        // Detected 10 rows into a 111-row window, nothing else: close to perfect.
        assert!(results[0].score > 90.0, "{results:?}");
    }

    /// The deployed path's alerts, read back: each firing alert's start is a
    /// detection at its row, repeats count once, and the score is the backtest's.
    #[test]
    fn alerts_read_back_score_as_the_backtest_detections() {
        let dir = tempfile::tempdir().unwrap();
        tiny_corpus(dir.path());
        let corpus = load(dir.path()).unwrap();
        let at = |row: usize| {
            chrono::DateTime::from_timestamp_millis(corpus[0].times[row])
                .unwrap()
                .to_rfc3339()
        };
        let alert = |status: &str, row: usize, series: &str| {
            format!(
                r#"{{"id":"x","status":"{status}","starts_at":"{}","labels":{{"series":"{series}","alertname":"anomaly"}}}}"#,
                at(row)
            )
        };
        let lines = [
            alert("firing", 1500, "g/s.csv"),
            alert("firing", 1500, "g/s.csv"),
            alert("resolved", 1500, "g/s.csv"),
            alert("firing", 1700, "g/other.csv"),
        ]
        .join("\n");
        let found = detections_from_alerts(&corpus, &lines).unwrap();
        assert_eq!(found.detected, vec![vec![1500]]);
        assert_eq!((found.firing, found.unmatched), (3, 1));
        let scores = score_series(&corpus[0], &ScorerConfig::default());
        let backtest = score_at(&corpus, &[scores], &FiringPolicy::default());
        assert_eq!(score_detections(&corpus, &found.detected), backtest);
        let error = detections_from_alerts(&corpus, "{}\n").unwrap_err();
        assert!(error.starts_with("line 1:"), "{error}");
    }

    #[test]
    fn a_malformed_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        tiny_corpus(dir.path());
        std::fs::write(
            dir.path().join("data/g/s.csv"),
            "timestamp,value\nyesterday,1\n",
        )
        .unwrap();
        let error = load(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("s.csv") && error.contains("yesterday"),
            "{error}"
        );
    }

    /// How rows are batched (a live flush takes what the broker delivered) changes
    /// no score.
    #[test]
    fn scores_do_not_depend_on_batch_boundaries() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets/nab");
        let corpus = if dir.join("labels").is_dir() {
            load(&dir).unwrap()
        } else {
            let tiny = tempfile::tempdir().unwrap();
            tiny_corpus(tiny.path());
            load(tiny.path()).unwrap()
        };
        let config = ScorerConfig::default();
        let checked = corpus
            .iter()
            .filter(|s| s.name.contains("machine_temperature") || s.name == "g/s.csv");
        for series in checked {
            let whole = score_in_batches(series, &config, 100_000);
            assert_eq!(whole.len(), series.times.len(), "one score per row");
            // The 11 rows after its step back are older than its last point.
            let unscored = whole.iter().filter(|s| s.is_nan()).count();
            let expected = if series.name.contains("machine_temperature") {
                11
            } else {
                0
            };
            assert_eq!(unscored, expected, "{}", series.name);
            for batch in [1, 7, 500, 4096] {
                let scores = score_in_batches(series, &config, batch);
                let first = whole
                    .iter()
                    .zip(&scores)
                    .position(|(a, b)| a.to_bits() != b.to_bits());
                assert_eq!(first, None, "{} in batches of {batch}", series.name);
            }
        }
    }

    /// The whole benchmark, when the shared datasets are next to the repository.
    #[test]
    fn nab_standard_score_does_not_regress() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets/nab");
        if !dir.join("labels").is_dir() {
            eprintln!(
                "NAB not found at {}; skipping the corpus score",
                dir.display()
            );
            return;
        }
        let corpus = load(&dir).unwrap();
        assert_eq!(corpus.len(), 58);
        let windows: usize = corpus.iter().map(|s| s.labels.windows.len()).sum();
        assert_eq!(windows, 116);
        let config = ScorerConfig::default();
        let scores: Vec<_> = corpus.iter().map(|s| score_series(s, &config)).collect();
        let results = evaluate(&corpus, &scores, &FiringPolicy::default());
        // Measured 61.1 / 50.8 / 66.9 (BENCHMARKS.md); a regression of the detectors,
        // the decoder path or the scorer moves these. The issue's target is 60.
        assert!(results[0].score >= 60.0, "{results:?}");
        assert!(results[1].score > 49.0, "{results:?}");
        assert!(results[2].score > 65.0, "{results:?}");
        // As deployed, at the default threshold: measured 60.3.
        let deployed = score_at(&corpus, &scores, &FiringPolicy::default());
        assert!(deployed[0] > 59.0, "{deployed:?}");
    }
}
