//! Injected incidents and their ground-truth labels file (JSON lines).

use rand::Rng;
use serde::{Deserialize, Serialize};

/// What kind of trouble an incident is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// Latency of the service multiplies.
    LatencySpike,
    /// A large share of the service's requests fail.
    ErrorBurst,
    /// The service's memory use steps up.
    LevelShift,
    /// CPU pinned near 100% and latency doubled.
    Saturation,
}

impl IncidentKind {
    /// Every kind.
    pub const ALL: [IncidentKind; 4] = [
        IncidentKind::LatencySpike,
        IncidentKind::ErrorBurst,
        IncidentKind::LevelShift,
        IncidentKind::Saturation,
    ];

    /// Its name in a labels file.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::LatencySpike => "latency_spike",
            IncidentKind::ErrorBurst => "error_burst",
            IncidentKind::LevelShift => "level_shift",
            IncidentKind::Saturation => "saturation",
        }
    }

    /// The metric (or signal) where the incident shows first.
    pub fn primary_signal(self) -> &'static str {
        match self {
            IncidentKind::LatencySpike => "http_request_duration_p99_ms",
            IncidentKind::ErrorBurst => "http_errors_total",
            IncidentKind::LevelShift => "memory_bytes",
            IncidentKind::Saturation => "cpu_usage",
        }
    }
}

/// One injected incident: a line of the labels file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Stable id (`inc-<n>`).
    pub id: String,
    /// What happens.
    pub kind: IncidentKind,
    /// The service affected.
    pub service: String,
    /// First affected event time (ms).
    #[serde(rename = "start")]
    pub start_ms: i64,
    /// First unaffected event time (ms).
    #[serde(rename = "end")]
    pub end_ms: i64,
}

impl Incident {
    /// True when `ts` is inside the incident.
    pub fn covers(&self, ts: i64) -> bool {
        (self.start_ms..self.end_ms).contains(&ts)
    }
}

/// Plans incidents over `[start_ms, start_ms + span_ms)`: one every few minutes of
/// event time (at least one), never overlapping, on random services.
pub fn schedule(
    rng: &mut impl Rng,
    services: &[String],
    start_ms: i64,
    span_ms: i64,
) -> Vec<Incident> {
    let span_ms = span_ms.max(60_000);
    let count = (span_ms / 600_000).clamp(1, 50);
    let slot = span_ms / (count + 1);
    (0..count)
        .map(|n| {
            let length = (slot / 2).clamp(20_000, 300_000);
            let offset = slot * (n + 1) - length / 2 + rng.random_range(-(slot / 8)..=(slot / 8));
            let begin = start_ms + offset.max(slot / 4);
            Incident {
                id: format!("inc-{}", n + 1),
                kind: IncidentKind::ALL[rng.random_range(0..IncidentKind::ALL.len())],
                service: services[rng.random_range(0..services.len())].clone(),
                start_ms: begin,
                end_ms: begin + length,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn schedule_stays_in_range_without_overlap() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let services = vec!["a".to_owned(), "b".to_owned()];
        let plan = schedule(&mut rng, &services, 0, 3_600_000);
        assert_eq!(plan.len(), 6);
        for pair in plan.windows(2) {
            assert!(pair[0].end_ms <= pair[1].start_ms, "{pair:?}");
        }
        assert!(plan
            .iter()
            .all(|i| i.start_ms >= 0 && i.end_ms <= 3_600_000));
    }

    #[test]
    fn labels_serialise_with_start_and_end() {
        let i = Incident {
            id: "inc-1".into(),
            kind: IncidentKind::ErrorBurst,
            service: "a".into(),
            start_ms: 1,
            end_ms: 2,
        };
        let text = serde_json::to_string(&i).unwrap();
        assert_eq!(
            text,
            r#"{"id":"inc-1","kind":"error_burst","service":"a","start":1,"end":2}"#
        );
        for kind in IncidentKind::ALL {
            let name = serde_json::to_string(&kind).unwrap();
            assert_eq!(name, format!("\"{}\"", kind.as_str()));
        }
    }
}
