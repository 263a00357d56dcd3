//! Log-parsing accuracy on Loghub, written from `shared/datasets/loghub2k/README.md`
//! (Zhu et al., "Tools and Benchmarks for Automated Log Parsing", ICSE-SEIP 2019;
//! Khan et al., 2022 for the corrected ground truth).
//!
//! Owns the three measures: grouping accuracy, pairwise F1 and template accuracy.
//! Lines whose ground-truth event is empty are left out of every measure.

use std::collections::HashMap;
use std::hash::Hash;

/// The accuracy of one parser run over one labelled file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParsingAccuracy {
    /// Lines scored.
    pub lines: usize,
    /// Grouping accuracy: share of lines whose parser group equals their true group.
    pub grouping: f64,
    /// Pairwise F1 over pairs of lines grouped together.
    pub pairwise_f1: f64,
}

/// Grouping accuracy and pairwise F1 of `parsed` group keys against `truth` event
/// ids, line by line. `None` in `truth` leaves a line out.
pub fn grouping<P: Eq + Hash, T: Eq + Hash>(parsed: &[P], truth: &[Option<T>]) -> ParsingAccuracy {
    let lines: Vec<(&P, &T)> = parsed
        .iter()
        .zip(truth)
        .filter_map(|(p, t)| t.as_ref().map(|t| (p, t)))
        .collect();
    let mut parsed_sizes: HashMap<&P, usize> = HashMap::new();
    let mut truth_sizes: HashMap<&T, usize> = HashMap::new();
    let mut joint: HashMap<(&P, &T), usize> = HashMap::new();
    for &(p, t) in &lines {
        *parsed_sizes.entry(p).or_default() += 1;
        *truth_sizes.entry(t).or_default() += 1;
        *joint.entry((p, t)).or_default() += 1;
    }
    // A line is right when its parser group and its true group are the same set:
    // the joint cell holds every line of both.
    let correct: usize = joint
        .iter()
        .filter(|((p, t), n)| parsed_sizes[p] == **n && truth_sizes[t] == **n)
        .map(|(_, n)| *n)
        .sum();
    let pairs = |n: usize| (n * n.saturating_sub(1) / 2) as f64;
    let together_both: f64 = joint.values().map(|n| pairs(*n)).sum();
    let together_parsed: f64 = parsed_sizes.values().map(|n| pairs(*n)).sum();
    let together_truth: f64 = truth_sizes.values().map(|n| pairs(*n)).sum();
    let precision = if together_parsed > 0.0 {
        together_both / together_parsed
    } else {
        1.0
    };
    let recall = if together_truth > 0.0 {
        together_both / together_truth
    } else {
        1.0
    };
    let pairwise_f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    ParsingAccuracy {
        lines: lines.len(),
        grouping: if lines.is_empty() {
            0.0
        } else {
            correct as f64 / lines.len() as f64
        },
        pairwise_f1,
    }
}

/// A template in comparable form: variables as `<*>`, runs of `<*>` (with only
/// whitespace or nothing between them) merged, whitespace folded.
pub fn normalise_template(text: &str) -> String {
    let folded = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::with_capacity(folded.len());
    let mut rest = folded.as_str();
    while let Some(at) = rest.find("<*>") {
        out.push_str(&rest[..at]);
        out.push_str("<*>");
        rest = &rest[at + 3..];
        loop {
            let trimmed = rest.trim_start_matches(' ');
            match trimmed.strip_prefix("<*>") {
                Some(after) => rest = after,
                None => break,
            }
        }
    }
    out.push_str(rest);
    out
}

/// Share of scored lines whose extracted template equals the true one, both
/// normalised.
pub fn template_accuracy(parsed: &[String], truth: &[Option<String>]) -> f64 {
    let scored: Vec<(&String, &String)> = parsed
        .iter()
        .zip(truth)
        .filter_map(|(p, t)| t.as_ref().map(|t| (p, t)))
        .collect();
    if scored.is_empty() {
        return 0.0;
    }
    let right = scored
        .iter()
        .filter(|(p, t)| normalise_template(p) == normalise_template(t))
        .count();
    right as f64 / scored.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_accuracy_counts_lines_of_exactly_matching_groups() {
        // Truth: {0,1,2} event A, {3,4} event B, {5} event C.
        let truth = [
            Some("A"),
            Some("A"),
            Some("A"),
            Some("B"),
            Some("B"),
            Some("C"),
        ];
        // Parser: A right; B split into two groups; C merged with nothing.
        let parsed = [1, 1, 1, 2, 3, 4];
        let r = grouping(&parsed, &truth);
        assert_eq!(r.lines, 6);
        assert!((r.grouping - 4.0 / 6.0).abs() < 1e-12);
        // Pairs: truth 3 + 1 = 4; parsed 3; both 3. P = 1, R = 0.75.
        assert!((r.pairwise_f1 - 2.0 * 0.75 / 1.75).abs() < 1e-12);
    }

    #[test]
    fn merging_two_events_loses_both() {
        let truth = [Some("A"), Some("A"), Some("B"), None];
        let parsed = [7, 7, 7, 9];
        let r = grouping(&parsed, &truth);
        assert_eq!(r.lines, 3, "the unlabelled line is left out");
        assert_eq!(r.grouping, 0.0);
    }

    #[test]
    fn templates_compare_after_normalisation() {
        assert_eq!(normalise_template("a  <*> <*>  b <*><*>"), "a <*> b <*>");
        let parsed = vec!["x <*> <*> y".to_string(), "z".to_string()];
        let truth = vec![Some("x <*> y".to_string()), Some("w".to_string())];
        assert_eq!(template_accuracy(&parsed, &truth), 0.5);
    }
}
