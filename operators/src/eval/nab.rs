//! The Numenta Anomaly Benchmark scorer, written from the rules in
//! `shared/datasets/nab/README.md` (Lavin & Ahmad, "Evaluating Real-time Anomaly
//! Detection Algorithms — the Numenta Anomaly Benchmark", 2015).
//!
//! Owns: probation, the sigmoid position weights, per-file window scores, the
//! application profiles and the normalisation to the 0–100 scale of the scoreboard.
//! Detections are row indices; turning scores into detections is the caller's.

/// Weights of one application profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// Name as on the scoreboard.
    pub name: &'static str,
    /// Reward of a detection at the very start of a window.
    pub true_positive: f64,
    /// Cost of a detection far from any window.
    pub false_positive: f64,
    /// Cost of a window with no detection.
    pub false_negative: f64,
}

/// The three profiles NAB reports (`config/profiles.json`).
pub const PROFILES: [Profile; 3] = [
    Profile {
        name: "standard",
        true_positive: 1.0,
        false_positive: 0.11,
        false_negative: 1.0,
    },
    Profile {
        name: "reward_low_FP_rate",
        true_positive: 1.0,
        false_positive: 0.22,
        false_negative: 1.0,
    },
    Profile {
        name: "reward_low_FN_rate",
        true_positive: 1.0,
        false_positive: 0.11,
        false_negative: 2.0,
    },
];

/// One labelled file: its row count and its anomaly windows as inclusive row ranges.
#[derive(Debug, Clone)]
pub struct LabelledFile {
    /// Rows in the file.
    pub rows: usize,
    /// Anomaly windows `(first_row, last_row)`, in order, not overlapping.
    pub windows: Vec<(usize, usize)>,
}

impl LabelledFile {
    /// Rows of the learning period, where detections are ignored.
    pub fn probation(&self) -> usize {
        ((self.rows as f64 * 0.15).floor() as usize).min(750)
    }

    /// Windows that are scored: those not lying wholly inside the probation period.
    pub fn scored_windows(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let probation = self.probation();
        self.windows
            .iter()
            .copied()
            .filter(move |(_, b)| *b >= probation)
    }
}

/// Row indices of a timestamp range in a sorted list of row times (inclusive); `None`
/// when no row falls inside.
pub fn rows_between(times: &[i64], start: i64, end: i64) -> Option<(usize, usize)> {
    let first = times.partition_point(|t| *t < start);
    let after_last = times.partition_point(|t| *t <= end);
    (first < after_last).then(|| (first, after_last - 1))
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// NAB's scaled sigmoid: about 0.987 at -1, 0 at 0, towards -1 for large positions.
fn scaled_sigmoid(position: f64) -> f64 {
    if position > 3.0 {
        -1.0
    } else {
        2.0 * sigmoid(-5.0 * position) - 1.0
    }
}

/// Raw score of one file under `profile` for the given detections (row indices, any
/// order; duplicates count once).
pub fn file_score(file: &LabelledFile, detections: &[usize], profile: &Profile) -> f64 {
    let probation = file.probation();
    let windows: Vec<(usize, usize)> = file.scored_windows().collect();
    let mut window_values = vec![-profile.false_negative; windows.len()];
    let mut false_positives = 0.0;
    let mut sorted: Vec<usize> = detections
        .iter()
        .copied()
        .filter(|i| *i >= probation && *i < file.rows)
        .collect();
    sorted.sort_unstable();
    sorted.dedup();
    for i in sorted {
        if let Some(w) = windows.iter().position(|(a, b)| (*a..=*b).contains(&i)) {
            let (a, b) = windows[w];
            let position = -((b - i + 1) as f64) / ((b - a + 1) as f64);
            let weight = scaled_sigmoid(position) * profile.true_positive / scaled_sigmoid(-1.0);
            window_values[w] = window_values[w].max(weight);
            continue;
        }
        // The most recent window ending before this row, scored or not (a window in
        // probation still shapes the penalty of what follows it).
        let previous = file.windows.iter().rev().find(|(_, b)| *b < i);
        false_positives += match previous {
            Some(&(a, b)) => {
                let position = (i - b) as f64 / ((b - a).max(1) as f64);
                scaled_sigmoid(position) * profile.false_positive
            }
            None => -profile.false_positive,
        };
    }
    window_values.iter().sum::<f64>() + false_positives
}

/// A corpus score on the scoreboard's scale: 0 for the null detector, 100 for perfect.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CorpusScore {
    /// Sum of the files' raw scores.
    pub raw: f64,
    /// The normalised score.
    pub normalised: f64,
}

/// Scores a corpus: `files` with their detections.
pub fn corpus_score<'a>(
    files: impl IntoIterator<Item = (&'a LabelledFile, &'a [usize])>,
    profile: &Profile,
) -> CorpusScore {
    let (mut raw, mut windows) = (0.0, 0usize);
    for (file, detections) in files {
        raw += file_score(file, detections, profile);
        windows += file.scored_windows().count();
    }
    let null = -profile.false_negative * windows as f64;
    let perfect = profile.true_positive * windows as f64;
    let normalised = if perfect > null {
        100.0 * (raw - null) / (perfect - null)
    } else {
        0.0
    };
    CorpusScore { raw, normalised }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANDARD: Profile = PROFILES[0];

    fn file() -> LabelledFile {
        // 1000 rows: probation 150; windows at 400..=499 and 800..=849.
        LabelledFile {
            rows: 1000,
            windows: vec![(400, 499), (800, 849)],
        }
    }

    #[test]
    fn probation_is_fifteen_percent_capped_at_750() {
        assert_eq!(file().probation(), 150);
        let long = LabelledFile {
            rows: 10_000,
            windows: vec![],
        };
        assert_eq!(long.probation(), 750);
    }

    #[test]
    fn null_detector_scores_minus_one_per_window_and_zero_normalised() {
        let f = file();
        assert_eq!(file_score(&f, &[], &STANDARD), -2.0);
        let s = corpus_score([(&f, &[][..])], &STANDARD);
        assert_eq!(s.normalised, 0.0);
    }

    #[test]
    fn detection_at_window_start_is_worth_a_full_true_positive() {
        let f = file();
        let score = file_score(&f, &[400, 800], &STANDARD);
        assert!((score - 2.0).abs() < 1e-12, "{score}");
        let s = corpus_score([(&f, &[400usize, 800][..])], &STANDARD);
        assert!((s.normalised - 100.0).abs() < 1e-9);
    }

    #[test]
    fn only_the_earliest_detection_in_a_window_counts() {
        let f = file();
        let early = file_score(&f, &[410], &STANDARD);
        let both = file_score(&f, &[410, 420, 498], &STANDARD);
        assert_eq!(early, both);
        // Later in the window is worth less; at its last row about nothing.
        let late = file_score(&f, &[499], &STANDARD);
        assert!(late < early);
        let last_row_weight = late - (-1.0); // the other window is missed
        let expected = scaled_sigmoid(-1.0 / 100.0) / scaled_sigmoid(-1.0);
        assert!((last_row_weight - expected).abs() < 1e-12);
        assert!(last_row_weight.abs() < 0.03);
    }

    #[test]
    fn false_positives_cost_more_further_from_the_last_window() {
        let f = file();
        let base = file_score(&f, &[], &STANDARD);
        let near = file_score(&f, &[500], &STANDARD) - base;
        let far = file_score(&f, &[790], &STANDARD) - base;
        assert!(near < 0.0 && near > -0.11 * 0.2, "{near}");
        // 290 rows after a 100-row window: position 2.91 → nearly the full cost.
        let expected = scaled_sigmoid(291.0 / 99.0) * 0.11;
        assert!((far - expected).abs() < 1e-12);
        // Before the first window: the full cost; in probation: nothing.
        assert!((file_score(&f, &[200], &STANDARD) - base + 0.11).abs() < 1e-12);
        assert_eq!(file_score(&f, &[100], &STANDARD), base);
    }

    #[test]
    fn profiles_weigh_misses_and_false_alarms_differently() {
        let f = file();
        let low_fn = PROFILES[2];
        assert_eq!(file_score(&f, &[], &low_fn), -4.0);
        let low_fp = PROFILES[1];
        let fp = |p: &Profile| file_score(&f, &[200], p) - file_score(&f, &[], p);
        assert!((fp(&low_fp) - 2.0 * fp(&STANDARD)).abs() < 1e-12);
    }

    #[test]
    fn windows_inside_probation_are_not_scored() {
        let f = LabelledFile {
            rows: 1000,
            windows: vec![(10, 100), (400, 499)],
        };
        assert_eq!(f.scored_windows().count(), 1);
        assert_eq!(file_score(&f, &[], &STANDARD), -1.0);
    }

    #[test]
    fn timestamps_map_to_inclusive_row_ranges() {
        let times = [0, 300, 600, 900, 1200];
        assert_eq!(rows_between(&times, 300, 900), Some((1, 3)));
        assert_eq!(rows_between(&times, 250, 950), Some((1, 3)));
        assert_eq!(rows_between(&times, 1300, 1400), None);
    }
}
