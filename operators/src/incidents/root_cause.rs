//! Probable root cause: ranks the services of one incident by how well each explains
//! the others, and says why in words a person reads.
//!
//! A fault in a service shows on its callers (their requests wait on it or fail with
//! it), not on the services it calls. So the cause is most likely the *deepest*
//! anomalous service: one that the other anomalous services depend on, directly or
//! through others, while none of its own dependencies is anomalous. Each candidate
//! gets points, in this order of weight, each with its reason:
//!
//! | evidence | points |
//! | --- | --- |
//! | none of the services it depends on is anomalous | 0.40 |
//! | share of the other anomalous services that depend on it (and alerted with or after it) | 0.30 × share |
//! | how early its first alert started (first: all; a whole correlation gap later: none) | 0.20 × earliness |
//! | its strongest alert's score (clipped to 1) | 0.10 × score |
//!
//! Propagation takes time one way only: a caller's symptoms follow its callee's
//! fault. So a dependency counts as anomalous only if its first alert started no
//! later than [`ONSET_TOLERANCE_MS`] after the candidate's, and a dependent counts
//! as explained only if its first alert started no earlier than that before the
//! candidate's (a service that begins failing minutes after its callers did is
//! another fault, not their cause). Nor does every symptom propagate as every
//! other: a dependency's latency explains its callers' latency, its errors their
//! errors, a busy resource either ([`can_explain`]); a dependency that only fails
//! does not explain callers that are only slow. Alone in an incident a service explains
//! everything (0.30 for the share). Ties go to the earlier onset, then to the name,
//! so the ranking is deterministic.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::graph::ServiceGraph;

/// How far apart two onsets may be and still count as simultaneous: series of
/// one-minute windows (RED, log ratios) are stamped at the minute's end, so their
/// onset is known to a minute, while per-second metrics are known to a second.
pub const ONSET_TOLERANCE_MS: i64 = 60_000;

/// One alert of an incident as the ranking sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Symptom<'a> {
    /// The service it names.
    pub service: &'a str,
    /// What it watched (the series' `__name__`, else the rule).
    pub signal: &'a str,
    /// When it started firing.
    pub starts_at: i64,
    /// Its score (anomaly score, burn rate).
    pub score: f64,
}

/// A ranked candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cause {
    /// The service.
    pub service: String,
    /// Its points (0 to 1).
    pub score: f64,
    /// Why, one sentence per piece of evidence, strongest first.
    pub reasons: Vec<String>,
}

/// A service's alerts, summed up.
struct Candidate<'a> {
    onset: i64,
    strongest: &'a Symptom<'a>,
    /// The kinds of its symptoms ([`symptom_kind`] bits).
    kinds: u8,
}

const LATENCY: u8 = 1;
const ERRORS: u8 = 2;
const RESOURCE: u8 = 4;
const OTHER: u8 = 8;

/// What a signal says, by its name: slower requests, failed requests, a busy
/// resource (CPU, memory, saturation), or something else (traffic, template volume).
fn symptom_kind(signal: &str) -> u8 {
    if signal.contains("latency") || signal.contains("duration") {
        LATENCY
    } else if signal.contains("error") {
        ERRORS
    } else if ["cpu", "memory", "saturation", "queue", "disk"]
        .iter()
        .any(|r| signal.contains(r))
    {
        RESOURCE
    } else {
        OTHER
    }
}

/// Whether symptoms of kinds `cause` in a service can explain symptoms of kinds
/// `effect` in a service depending on it: latency makes callers slow, errors make
/// them fail, a busy resource does either; a symptom of another kind may go with
/// anything. (A callee's errors do not explain its callers' latency.)
fn can_explain(cause: u8, effect: u8) -> bool {
    cause & effect != 0 || cause & (RESOURCE | OTHER) != 0 || effect & OTHER != 0
}

/// Every service named by `symptoms`, best explanation first; `gap_ms` is the
/// correlation gap (an onset that much after the first earns no earliness).
pub fn rank(symptoms: &[Symptom<'_>], graph: &ServiceGraph, gap_ms: i64) -> Vec<Cause> {
    let mut candidates: BTreeMap<&str, Candidate<'_>> = BTreeMap::new();
    for symptom in symptoms {
        let entry = candidates.entry(symptom.service).or_insert(Candidate {
            onset: symptom.starts_at,
            strongest: symptom,
            kinds: 0,
        });
        entry.kinds |= symptom_kind(symptom.signal);
        entry.onset = entry.onset.min(symptom.starts_at);
        if symptom.score > entry.strongest.score {
            entry.strongest = symptom;
        }
    }
    let Some(first_onset) = candidates.values().map(|c| c.onset).min() else {
        return Vec::new();
    };
    let others = candidates.len().saturating_sub(1);
    let mut causes: Vec<(i64, Cause)> = candidates
        .iter()
        .map(|(service, candidate)| {
            let mut points = Vec::new();
            let dependencies = graph.dependencies(service);
            let anomalous_below: Vec<&str> = candidates
                .iter()
                .filter(|(s, c)| {
                    dependencies.contains(*s)
                        && c.onset <= candidate.onset.saturating_add(ONSET_TOLERANCE_MS)
                        && can_explain(c.kinds, candidate.kinds)
                })
                .map(|(s, _)| *s)
                .collect();
            match (anomalous_below.is_empty(), dependencies.is_empty()) {
                (true, true) => points.push((0.40, format!("{service} depends on no other service"))),
                (true, false) => points.push((
                    0.40,
                    format!(
                        "none of its dependencies ({}) is anomalous",
                        dependencies.iter().copied().collect::<Vec<_>>().join(", ")
                    ),
                )),
                (false, _) => points.push((
                    0.0,
                    format!("it depends on anomalous {}", anomalous_below.join(", ")),
                )),
            }
            let above: Vec<&str> = candidates
                .iter()
                .filter(|(s, c)| {
                    *s != service
                        && c.onset >= candidate.onset.saturating_sub(ONSET_TOLERANCE_MS)
                        && can_explain(candidate.kinds, c.kinds)
                        && graph.dependencies(s).contains(service)
                })
                .map(|(s, _)| *s)
                .collect();
            if others == 0 {
                points.push((0.30, "the only service alerting".to_owned()));
            } else if above.is_empty() {
                points.push((0.0, "no other anomalous service depends on it".to_owned()));
            } else {
                let later = above
                    .iter()
                    .filter(|s| candidates[*s].onset >= candidate.onset)
                    .count();
                points.push((
                    0.30 * above.len() as f64 / others as f64,
                    format!(
                        "{} of the {others} other anomalous services depend on it ({}), {later} of them alerting after it",
                        above.len(),
                        above.join(", ")
                    ),
                ));
            }
            let lag = candidate.onset - first_onset;
            let earliness = 1.0 - (lag as f64 / gap_ms.max(1) as f64).clamp(0.0, 1.0);
            points.push((
                0.20 * earliness,
                match lag {
                    0 => "its alert started first".to_owned(),
                    lag => format!("its first alert started {} s after the incident's first", lag / 1000),
                },
            ));
            let strongest = candidate.strongest;
            points.push((
                0.10 * strongest.score.clamp(0.0, 1.0),
                format!("strongest signal {} (score {:.2})", strongest.signal, strongest.score),
            ));
            let score = points.iter().map(|(p, _)| p).sum::<f64>();
            // Strongest evidence first; a reason that earned nothing still says why.
            points.sort_by(|a, b| b.0.total_cmp(&a.0));
            let cause = Cause {
                service: (*service).to_owned(),
                score: (score * 1000.0).round() / 1000.0,
                reasons: points.into_iter().map(|(_, reason)| reason).collect(),
            };
            (candidate.onset, cause)
        })
        .collect();
    causes.sort_by(|(onset_a, a), (onset_b, b)| {
        b.score
            .total_cmp(&a.score)
            .then(onset_a.cmp(onset_b))
            .then_with(|| a.service.cmp(&b.service))
    });
    causes.into_iter().map(|(_, cause)| cause).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// web → api → db, web → search.
    fn graph() -> ServiceGraph {
        let mut g = ServiceGraph::default();
        g.observe("web", "api", 0);
        g.observe("api", "db", 0);
        g.observe("web", "search", 0);
        g
    }

    fn symptom(service: &str, starts_at: i64, score: f64) -> Symptom<'_> {
        Symptom {
            service,
            signal: "service_error_ratio",
            starts_at,
            score,
        }
    }

    fn order(causes: &[Cause]) -> Vec<&str> {
        causes.iter().map(|c| c.service.as_str()).collect()
    }

    #[test]
    fn the_deepest_anomalous_service_ranks_first_even_when_a_caller_alerted_first() {
        // db fails; its callers alert too, web even 20 s before db (its p99 series
        // is denser). db explains both and depends on nothing anomalous.
        let symptoms = [
            symptom("web", 40_000, 0.9),
            symptom("api", 60_000, 0.8),
            symptom("db", 60_000, 0.5),
        ];
        let causes = rank(&symptoms, &graph(), 300_000);
        assert_eq!(order(&causes), ["db", "api", "web"]);
        // 0.4 + 0.3 × 2/2 + 0.2 × (1 − 20/300) + 0.1 × 0.5
        assert!((causes[0].score - 0.937).abs() < 1e-9, "{causes:?}");
        assert_eq!(causes[0].reasons[0], "db depends on no other service");
        assert!(causes[0].reasons[1]
            .starts_with("2 of the 2 other anomalous services depend on it (api, web)"));
        assert!(causes[2]
            .reasons
            .iter()
            .any(|r| r == "it depends on anomalous api, db"));
    }

    #[test]
    fn a_dependency_that_failed_minutes_after_its_callers_is_not_their_cause() {
        // api's errors reach web; nine minutes later db (api's dependency) has a
        // fault of its own that joined the incident. db explains nothing before it.
        let symptoms = [
            symptom("api", 0, 0.9),
            symptom("web", 10_000, 0.6),
            symptom("db", 540_000, 1.0),
        ];
        let causes = rank(&symptoms, &graph(), 300_000);
        assert_eq!(order(&causes), ["api", "db", "web"]);
        assert_eq!(
            causes[0].reasons[0],
            "none of its dependencies (db) is anomalous"
        );
        assert!(causes[1]
            .reasons
            .contains(&"no other anomalous service depends on it".to_owned()));
        // Within the tolerance, a dependency's later onset still counts: a one-minute
        // series of the faulty service lags the per-second series of its callers.
        let close = [symptom("web", 0, 0.9), symptom("api", 50_000, 0.5)];
        assert_eq!(order(&rank(&close, &graph(), 300_000)), ["api", "web"]);
    }

    #[test]
    fn a_dependencys_errors_do_not_explain_its_callers_latency() {
        let slow = |service| Symptom {
            service,
            signal: "http_request_duration_p99_ms",
            starts_at: 100_000,
            score: 1.0,
        };
        // db's errors started first, then api and web got slow: api is the cause
        // the graph and the kinds agree on.
        let symptoms = [symptom("db", 40_000, 1.0), slow("api"), slow("web")];
        let causes = rank(&symptoms, &graph(), 300_000);
        assert_eq!(causes[0].service, "api", "{causes:?}");
        assert_eq!(
            causes[0].reasons[0],
            "none of its dependencies (db) is anomalous"
        );
        // A busy resource explains either.
        let cpu = Symptom {
            signal: "cpu_usage",
            ..symptom("db", 40_000, 1.0)
        };
        let causes = rank(&[cpu, slow("api"), slow("web")], &graph(), 300_000);
        assert_eq!(order(&causes), ["db", "api", "web"]);
        let table = [
            (LATENCY, LATENCY, true),
            (ERRORS, ERRORS, true),
            (ERRORS, LATENCY, false),
            (LATENCY, ERRORS, false),
            (RESOURCE, ERRORS, true),
            (OTHER, LATENCY, true),
            (LATENCY, OTHER, true),
            (ERRORS | LATENCY, LATENCY, true),
        ];
        for (cause, effect, expected) in table {
            assert_eq!(can_explain(cause, effect), expected, "{cause} → {effect}");
        }
        assert_eq!(symptom_kind("service_latency_p99_ms"), LATENCY);
        assert_eq!(symptom_kind("log_error_ratio"), ERRORS);
        assert_eq!(symptom_kind("memory_bytes"), RESOURCE);
        assert_eq!(symptom_kind("log_template_lines"), OTHER);
    }

    #[test]
    fn unrelated_services_rank_by_onset_and_strength() {
        let symptoms = [symptom("search", 10_000, 0.4), symptom("db", 0, 0.9)];
        let causes = rank(&symptoms, &graph(), 300_000);
        assert_eq!(order(&causes), ["db", "search"]);
        assert_eq!(causes[0].reasons[1], "its alert started first");
        assert_eq!(
            causes[0].reasons[3],
            "no other anomalous service depends on it"
        );
        assert_eq!(
            causes[1].reasons[1],
            "its first alert started 10 s after the incident's first"
        );
    }

    #[test]
    fn a_lone_service_explains_everything_and_ties_go_to_the_name() {
        let causes = rank(
            &[symptom("api", 5, 0.2), symptom("api", 9, 0.7)],
            &graph(),
            300_000,
        );
        assert_eq!(order(&causes), ["api"]);
        assert!(causes[0]
            .reasons
            .contains(&"the only service alerting".to_owned()));
        assert!(causes[0]
            .reasons
            .iter()
            .any(|r| r == "none of its dependencies (db) is anomalous"));
        assert!(causes[0].reasons.iter().any(|r| r.contains("score 0.70")));
        // Two services with nothing between them and equal evidence: by name.
        let tied = rank(
            &[symptom("zeta", 0, 0.5), symptom("alpha", 0, 0.5)],
            &ServiceGraph::default(),
            1,
        );
        assert_eq!(order(&tied), ["alpha", "zeta"]);
        assert!(rank(&[], &graph(), 1).is_empty());
    }
}
