//! Injected incidents and their ground-truth labels file (JSON lines).

use std::io::Write;
use std::path::Path;

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

    /// Whether the incident acts on requests (their latency or their errors), so it
    /// shows only on a service that serves traffic.
    pub fn needs_traffic(self) -> bool {
        matches!(self, IncidentKind::LatencySpike | IncidentKind::ErrorBurst)
    }

    /// Whether the incident slows or fails requests, so it shows on the callers of
    /// its service too (saturation doubles latency).
    pub fn reaches_callers(self) -> bool {
        !matches!(self, IncidentKind::LevelShift)
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
    /// Other services the incident shows on: the callers whose requests pass through
    /// `service`, when the incident acts on requests (absent: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub affected: Vec<String>,
}

impl Incident {
    /// True when `ts` is inside the incident.
    pub fn covers(&self, ts: i64) -> bool {
        (self.start_ms..self.end_ms).contains(&ts)
    }
}

/// Plans incidents over `[start_ms, start_ms + span_ms)`: one every few minutes of
/// event time (at least one), never overlapping, each on a random service of
/// `services` (name, and whether it serves traffic) where its kind can show: an
/// incident that acts on requests lands only on a service that has some.
pub fn schedule(
    rng: &mut impl Rng,
    services: &[(String, bool)],
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
            let kind = IncidentKind::ALL[rng.random_range(0..IncidentKind::ALL.len())];
            let showing: Vec<&String> = services
                .iter()
                .filter(|(_, served)| *served || !kind.needs_traffic())
                .map(|(name, _)| name)
                .collect();
            // A world serves at least its root; without it, any service will do.
            let candidates: Vec<&String> = if showing.is_empty() {
                services.iter().map(|(name, _)| name).collect()
            } else {
                showing
            };
            Incident {
                id: format!("inc-{}", n + 1),
                kind,
                service: candidates[rng.random_range(0..candidates.len())].clone(),
                start_ms: begin,
                end_ms: begin + length,
                affected: Vec::new(),
            }
        })
        .collect()
}

/// Writes `items` to `path` as JSON lines, one value per line, creating its
/// directory: the labels file's format, which `cara backtest gen` also writes its
/// alert transitions in.
pub fn write_json_lines<T: Serialize>(
    path: &Path,
    items: impl IntoIterator<Item = T>,
) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    for item in items {
        serde_json::to_writer(&mut file, &item)?;
        file.write_all(b"\n")?;
    }
    file.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn schedule_stays_in_range_without_overlap() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let services = vec![("a".to_owned(), true), ("b".to_owned(), true)];
        let plan = schedule(&mut rng, &services, 0, 3_600_000);
        assert_eq!(plan.len(), 6);
        for pair in plan.windows(2) {
            assert!(pair[0].end_ms <= pair[1].start_ms, "{pair:?}");
        }
        assert!(plan
            .iter()
            .all(|i| i.start_ms >= 0 && i.end_ms <= 3_600_000));
    }

    /// A service nobody calls has no requests to slow down or fail: latency spikes
    /// and error bursts land only on served services; the rest anywhere.
    #[test]
    fn incidents_on_requests_land_only_where_there_is_traffic() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let services = vec![
            ("front".to_owned(), true),
            ("idle-a".to_owned(), false),
            ("idle-b".to_owned(), false),
        ];
        let plan = schedule(&mut rng, &services, 0, 48 * 3_600_000);
        assert_eq!(plan.len(), 50);
        let on_idle = |kind: IncidentKind| {
            plan.iter()
                .filter(|i| i.kind == kind && i.service.starts_with("idle"))
                .count()
        };
        for kind in IncidentKind::ALL {
            assert!(
                plan.iter().any(|i| i.kind == kind),
                "{kind:?} never planned"
            );
            if kind.needs_traffic() {
                assert_eq!(on_idle(kind), 0, "{kind:?} on a service without traffic");
            }
        }
        assert!(
            on_idle(IncidentKind::Saturation) + on_idle(IncidentKind::LevelShift) > 0,
            "resource incidents still land on idle services: {plan:?}"
        );
    }

    #[test]
    fn labels_serialise_with_start_and_end() {
        let i = Incident {
            id: "inc-1".into(),
            kind: IncidentKind::ErrorBurst,
            service: "a".into(),
            start_ms: 1,
            end_ms: 2,
            affected: Vec::new(),
        };
        let text = serde_json::to_string(&i).unwrap();
        assert_eq!(
            text,
            r#"{"id":"inc-1","kind":"error_burst","service":"a","start":1,"end":2}"#
        );
        let with_callers = Incident {
            affected: vec!["b".into()],
            ..i
        };
        let text = serde_json::to_string(&with_callers).unwrap();
        assert_eq!(
            text,
            r#"{"id":"inc-1","kind":"error_burst","service":"a","start":1,"end":2,"affected":["b"]}"#
        );
        assert_eq!(
            serde_json::from_str::<Incident>(&text).unwrap(),
            with_callers
        );
        for kind in IncidentKind::ALL {
            let name = serde_json::to_string(&kind).unwrap();
            assert_eq!(name, format!("\"{}\"", kind.as_str()));
        }
    }
}
