//! The simulated system: services, their call graph, their normal behaviour, and how
//! injected incidents change it. Pure and seeded: the same seed and start time
//! give the same records.

use std::collections::BTreeSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, LogNormal};
use serde_json::{json, Value};

use super::incidents::{Incident, IncidentKind};
use super::resources::Resources;

const SERVICE_NAMES: &[&str] = &[
    "frontend",
    "checkout",
    "payments",
    "cart",
    "catalog",
    "inventory",
    "shipping",
    "auth",
    "search",
    "recommendations",
    "users",
    "notifications",
    "pricing",
    "reviews",
    "ads",
    "fraud",
];

const OPERATIONS: &[&str] = &[
    "GET /",
    "POST /pay",
    "GET /items",
    "PUT /cart",
    "GET /search",
    "POST /login",
    "GET /quote",
    "POST /notify",
];

/// One service of the simulated system.
#[derive(Debug, Clone)]
pub struct Service {
    /// Its name.
    pub name: String,
    /// Owning team (a label on its metrics).
    pub team: String,
    /// Services it calls, by index.
    pub callees: Vec<usize>,
    /// Median own latency in ms.
    pub base_latency_ms: f64,
    /// Normal probability that a request fails.
    pub base_error_rate: f64,
    /// Normal memory use in bytes.
    pub base_memory: f64,
    operation: &'static str,
    hosts: u32,
    requests_total: f64,
    errors_total: f64,
    window_latencies: Vec<f64>,
    window_requests: u64,
}

impl Service {
    /// The labels of the metrics about it (the host it runs on is `<name>-0`).
    pub fn metric_labels(&self) -> Value {
        json!({"service": self.name, "team": self.team, "host": format!("{}-0", self.name)})
    }
}

/// A metric point as the generator writes it (flat JSON).
pub fn metric_point(ts: i64, name: &str, value: f64, kind: &str, labels: &Value) -> Value {
    json!({"ts": ts, "name": name, "value": value, "type": kind, "labels": labels})
}

/// Records produced by one step of the simulation.
#[derive(Debug, Default)]
pub struct Emitted {
    /// Metric messages (each a JSON array of points), keyed by service.
    pub metrics: Vec<(String, Value, usize)>,
    /// Log objects, keyed by trace id.
    pub logs: Vec<(String, Value)>,
    /// Span objects, keyed by trace id.
    pub spans: Vec<(String, Value)>,
}

/// The simulated system and its clock.
pub struct World {
    rng: ChaCha8Rng,
    /// The services.
    pub services: Vec<Service>,
    now_ms: f64,
    next_tick_ms: i64,
    trace_counter: u64,
    mean_gap_ms: f64,
    /// CPU share one request of a metric window costs: the services are sized for
    /// the world's traffic, so a busy service is not pinned at its ceiling at a high
    /// rate (at `SIZED_FOR_RECORDS_PER_SEC` and below, 0.002).
    cpu_per_request: f64,
    /// What the services use and run on, scraped every 15 s.
    pub resources: Resources,
}

/// The traffic (records per second) the services' CPU is sized for; a faster world
/// has proportionally bigger services.
const SIZED_FOR_RECORDS_PER_SEC: f64 = 400.0;

impl World {
    /// A world of `n` services (at least 2) starting at `start_ms`, producing about
    /// `records_per_sec` records per second of event time.
    pub fn new(n: usize, seed: u64, start_ms: i64, records_per_sec: f64) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = n.clamp(2, SERVICE_NAMES.len() * 4);
        let services = (0..n)
            .map(|i| {
                let base = SERVICE_NAMES[i % SERVICE_NAMES.len()];
                let name = if i < SERVICE_NAMES.len() {
                    base.to_owned()
                } else {
                    format!("{base}-{}", i / SERVICE_NAMES.len())
                };
                // A DAG: each service calls up to three services with higher indices.
                let fanout = if i + 1 >= n {
                    0
                } else {
                    rng.random_range(1..=3usize.min(n - i - 1))
                };
                let mut callees: Vec<usize> =
                    (0..fanout).map(|_| rng.random_range(i + 1..n)).collect();
                callees.sort_unstable();
                callees.dedup();
                Service {
                    team: ["payments", "platform", "growth", "core"][i % 4].to_owned(),
                    callees,
                    base_latency_ms: rng.random_range(2.0..40.0),
                    base_error_rate: rng.random_range(0.001..0.01),
                    base_memory: rng.random_range(2.0e8..2.0e9),
                    operation: OPERATIONS[i % OPERATIONS.len()],
                    hosts: rng.random_range(2..6),
                    requests_total: 0.0,
                    errors_total: 0.0,
                    window_latencies: Vec::new(),
                    window_requests: 0,
                    name,
                }
            })
            .collect::<Vec<_>>();
        let spans_per_trace = expected_trace_size(&services) as f64;
        // The resource scrapes (`resources.rs`, 3 points per service and 2 per node
        // every 15 s: 0.5% of the records at 8 services and 400 records/s) are left
        // out, so that a seed's traffic is what it was before they were added.
        let metric_points_per_sec = 5.0 * services.len() as f64;
        let trace_records_per_sec =
            (records_per_sec - metric_points_per_sec).max(records_per_sec * 0.2);
        let traces_per_sec = trace_records_per_sec / (2.0 * spans_per_trace);
        World {
            rng,
            services,
            now_ms: start_ms as f64,
            next_tick_ms: start_ms,
            trace_counter: 0,
            mean_gap_ms: 1000.0 / traces_per_sec.max(0.001),
            cpu_per_request: 0.002
                * (SIZED_FOR_RECORDS_PER_SEC / records_per_sec.max(1.0)).min(1.0),
            resources: Resources::new(seed, n, start_ms),
        }
    }

    /// Current event time.
    pub fn now_ms(&self) -> i64 {
        self.now_ms as i64
    }

    /// Advances the clock to the next request and emits its trace and logs, plus the
    /// metric points of any whole seconds that passed.
    pub fn step(&mut self, incidents: &[Incident]) -> Emitted {
        let mut out = Emitted::default();
        let gap = Exp::new(1.0 / self.mean_gap_ms)
            .map(|d| d.sample(&mut self.rng))
            .unwrap_or(self.mean_gap_ms);
        self.now_ms += gap;
        while (self.next_tick_ms as f64) <= self.now_ms {
            let tick = self.next_tick_ms;
            self.emit_metrics(tick, incidents, &mut out);
            self.next_tick_ms += 1000;
        }
        self.trace_counter += 1;
        let trace_id = format!(
            "{:016x}{:016x}",
            self.rng.random::<u64>(),
            self.trace_counter
        );
        let start = self.now_ms as i64;
        self.emit_span(0, &trace_id, None, start, incidents, &mut out, 0);
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn emit_span(
        &mut self,
        index: usize,
        trace_id: &str,
        parent: Option<&str>,
        start_ms: i64,
        incidents: &[Incident],
        out: &mut Emitted,
        depth: usize,
    ) -> (f64, bool) {
        let span_id = format!("{:016x}", self.rng.random::<u64>());
        let (latency_factor, error_rate) = effects(&self.services[index], start_ms, incidents);
        let own = LogNormal::new(self.services[index].base_latency_ms.ln(), 0.35)
            .map(|d| d.sample(&mut self.rng))
            .unwrap_or(self.services[index].base_latency_ms)
            * latency_factor;
        let mut elapsed = own * 0.4;
        let mut child_failed = false;
        if depth < MAX_DEPTH {
            let callees = self.services[index].callees.clone();
            for callee in callees {
                let child_start = start_ms + elapsed as i64;
                let (d, failed) = self.emit_span(
                    callee,
                    trace_id,
                    Some(&span_id),
                    child_start,
                    incidents,
                    out,
                    depth + 1,
                );
                elapsed += d;
                child_failed |= failed;
            }
        }
        elapsed += own * 0.6;
        let failed = self.rng.random_bool(error_rate.clamp(0.0, 1.0))
            || (child_failed && self.rng.random_bool(0.5));
        let service = &mut self.services[index];
        service.requests_total += 1.0;
        service.window_requests += 1;
        service.window_latencies.push(elapsed);
        if failed {
            service.errors_total += 1.0;
        }
        let host = format!(
            "{}-{}",
            service.name,
            self.rng.random_range(0..service.hosts)
        );
        let duration = (elapsed * 1000.0).round() / 1000.0;
        let span = if self.trace_counter.is_multiple_of(2) {
            json!({"trace_id": trace_id, "span_id": span_id, "parent_span_id": parent, "service": service.name,
                   "name": service.operation, "kind": "server", "start": rfc3339(start_ms), "duration_ms": duration,
                   "status": if failed { "error" } else { "ok" }, "attributes": {"host": host}})
        } else {
            json!({"trace_id": trace_id, "span_id": span_id, "parent_span_id": parent, "service": service.name,
                   "name": service.operation, "kind": "server", "start": start_ms, "end": start_ms + elapsed.ceil() as i64,
                   "status": if failed { "error" } else { "ok" }, "attributes": {"host": host}})
        };
        // Spans are keyed by trace id (as the OpenTelemetry Collector's Kafka exporter
        // can partition traces), spreading them over every partition.
        out.spans.push((trace_id.to_owned(), span));
        let (level, message) = if failed {
            let code = [500, 502, 503, 504][self.rng.random_range(0..4)];
            (
                "error",
                format!(
                    "request {} failed with status {code} after {:.1} ms: upstream timeout",
                    service.operation, elapsed
                ),
            )
        } else {
            (
                "info",
                format!(
                    "handled {} in {:.1} ms for user {}",
                    service.operation,
                    elapsed,
                    self.rng.random_range(1000..99999)
                ),
            )
        };
        // Keyed by trace id like spans, so logs spread over every partition (the
        // embedded broker keeps only 5 MiB per partition); each partition's log
        // operator then mines its share of every service's lines.
        out.logs.push((
            trace_id.to_owned(),
            json!({"ts": rfc3339(start_ms + elapsed as i64), "service": service.name, "level": level, "message": message,
                   "trace_id": trace_id, "host": host}),
        ));
        (elapsed, failed)
    }

    fn emit_metrics(&mut self, tick_ms: i64, incidents: &[Incident], out: &mut Emitted) {
        let mut cores = Vec::with_capacity(self.services.len());
        for index in 0..self.services.len() {
            let (_, _) = effects(&self.services[index], tick_ms, incidents);
            let saturation = active(
                &self.services[index].name,
                tick_ms,
                incidents,
                IncidentKind::Saturation,
            );
            let level_shift = active(
                &self.services[index].name,
                tick_ms,
                incidents,
                IncidentKind::LevelShift,
            );
            let noise: f64 = self.rng.random_range(-0.05..0.05);
            let cpu_per_request = self.cpu_per_request;
            let service = &mut self.services[index];
            let mut latencies = std::mem::take(&mut service.window_latencies);
            latencies.sort_by(|a, b| a.total_cmp(b));
            let p99 = latencies
                .get((latencies.len() as f64 * 0.99) as usize)
                .or(latencies.last())
                .copied()
                .unwrap_or(service.base_latency_ms);
            let cpu = if saturation {
                0.97 + noise.abs() * 0.5
            } else {
                (0.25 + service.window_requests as f64 * cpu_per_request + noise).clamp(0.01, 0.9)
            };
            let memory =
                service.base_memory * (1.0 + noise * 0.2) * if level_shift { 1.6 } else { 1.0 };
            service.window_requests = 0;
            cores.push(cpu);
            let labels = service.metric_labels();
            let point = |name: &str, value: f64, kind: &str| {
                metric_point(tick_ms, name, value, kind, &labels)
            };
            let points = vec![
                point("http_requests_total", service.requests_total, "counter"),
                point("http_errors_total", service.errors_total, "counter"),
                point(
                    "http_request_duration_p99_ms",
                    (p99 * 1000.0).round() / 1000.0,
                    "gauge",
                ),
                point("cpu_usage", (cpu * 10_000.0).round() / 10_000.0, "gauge"),
                point("memory_bytes", memory.round(), "gauge"),
            ];
            let n = points.len();
            out.metrics
                .push((service.name.clone(), Value::Array(points), n));
        }
        self.resources.tick(tick_ms, &self.services, &cores, out);
    }
}

impl World {
    /// Per service, whether a trace from the root reaches it (a service no trace
    /// reaches serves no traffic: it emits metrics, but no spans and no logs).
    pub fn served(&self) -> Vec<bool> {
        // Traces start at the root (index 0); any other service they reach has it
        // among its callers.
        self.callers()
            .iter()
            .enumerate()
            .map(|(index, callers)| index == 0 || !callers.is_empty())
            .collect()
    }

    /// Per service, the services whose requests pass through it (its callers, direct
    /// or not, along the paths traces take), by index: a fault that slows or fails
    /// its requests shows on them too.
    pub fn callers(&self) -> Vec<BTreeSet<usize>> {
        fn visit(
            services: &[Service],
            i: usize,
            path: &mut Vec<usize>,
            callers: &mut [BTreeSet<usize>],
        ) {
            callers[i].extend(path.iter().copied());
            if path.len() < MAX_DEPTH {
                path.push(i);
                for &callee in &services[i].callees {
                    visit(services, callee, path, callers);
                }
                path.pop();
            }
        }
        let mut callers = vec![BTreeSet::new(); self.services.len()];
        visit(&self.services, 0, &mut Vec::new(), &mut callers);
        callers
    }

    /// How many services a trace from the root reaches.
    pub fn served_services(&self) -> usize {
        self.served().iter().filter(|s| **s).count()
    }
}

/// How deep a trace goes into the call graph.
const MAX_DEPTH: usize = 6;

fn expected_trace_size(services: &[Service]) -> usize {
    fn size(services: &[Service], i: usize, depth: usize) -> usize {
        1 + if depth < MAX_DEPTH {
            services[i]
                .callees
                .iter()
                .map(|c| size(services, *c, depth + 1))
                .sum()
        } else {
            0
        }
    }
    size(services, 0, 0)
}

fn active(service: &str, ts: i64, incidents: &[Incident], kind: IncidentKind) -> bool {
    incidents
        .iter()
        .any(|i| i.kind == kind && i.service == service && i.covers(ts))
}

/// Latency factor and error rate of a service at `ts` under the active incidents.
fn effects(service: &Service, ts: i64, incidents: &[Incident]) -> (f64, f64) {
    let mut latency = 1.0;
    let mut errors = service.base_error_rate;
    for incident in incidents
        .iter()
        .filter(|i| i.service == service.name && i.covers(ts))
    {
        match incident.kind {
            IncidentKind::LatencySpike => latency *= 6.0,
            IncidentKind::ErrorBurst => errors = errors.max(0.4),
            IncidentKind::Saturation => latency *= 2.0,
            IncidentKind::LevelShift => {}
        }
    }
    (latency, errors)
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_records() {
        let run = |seed| {
            let mut w = World::new(6, seed, 1_700_000_000_000, 1000.0);
            (0..50)
                .map(|_| format!("{:?}", w.step(&[])))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn call_graph_is_acyclic_and_spans_link_to_parents() {
        let mut w = World::new(8, 1, 0, 1000.0);
        for (i, s) in w.services.iter().enumerate() {
            assert!(s.callees.iter().all(|c| *c > i));
        }
        let out = w.step(&[]);
        let ids: Vec<&str> = out
            .spans
            .iter()
            .map(|(_, s)| s["span_id"].as_str().unwrap())
            .collect();
        let roots = out
            .spans
            .iter()
            .filter(|(_, s)| s["parent_span_id"].is_null())
            .count();
        assert_eq!(roots, 1);
        for (_, s) in &out.spans {
            if let Some(p) = s["parent_span_id"].as_str() {
                assert!(ids.contains(&p));
            }
        }
        assert_eq!(out.logs.len(), out.spans.len());
    }

    /// The callers a fault shows on are exactly the services above the faulty one
    /// in the traces the world emits (every trace walks the whole call graph).
    #[test]
    fn callers_are_the_ancestors_of_a_service_in_its_traces() {
        for seed in [7, 23, 42] {
            let mut w = World::new(8, seed, 0, 1000.0);
            let callers = w.callers();
            let spans = w.step(&[]).spans;
            let by_id: std::collections::HashMap<&str, &Value> = spans
                .iter()
                .map(|(_, s)| (s["span_id"].as_str().unwrap(), s))
                .collect();
            let mut seen: Vec<BTreeSet<String>> = vec![BTreeSet::new(); w.services.len()];
            for (_, span) in &spans {
                let name = span["service"].as_str().unwrap();
                let index = w.services.iter().position(|s| s.name == name).unwrap();
                let mut parent = span["parent_span_id"].as_str();
                while let Some(id) = parent {
                    let up = by_id[id];
                    seen[index].insert(up["service"].as_str().unwrap().to_owned());
                    parent = up["parent_span_id"].as_str();
                }
            }
            for (index, expected) in seen.iter().enumerate() {
                let named: BTreeSet<String> = callers[index]
                    .iter()
                    .map(|&c| w.services[c].name.clone())
                    .collect();
                assert_eq!(&named, expected, "seed {seed}, {}", w.services[index].name);
            }
            assert!(callers[0].is_empty(), "the root has no callers");
            assert!(
                callers.iter().any(|c| c.len() >= 2),
                "seed {seed}: {callers:?}"
            );
        }
    }

    #[test]
    fn the_demo_world_serves_all_its_services() {
        let demo = World::new(8, crate::gen::DEMO_SEED, 0, 1000.0);
        assert_eq!(demo.served_services(), 8);
        // Seed 42's graph leaves four of eight services without callers.
        assert_eq!(World::new(8, 42, 0, 1000.0).served_services(), 4);
        // Every served service shows up in the traces, and no other.
        let mut w = World::new(8, 42, 0, 1000.0);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..500 {
            for (_, s) in w.step(&[]).spans {
                seen.insert(s["service"].as_str().unwrap_or_default().to_owned());
            }
        }
        assert_eq!(seen.len(), 4, "{seen:?}");
    }

    /// Services are sized for the traffic: at the demo's rate no service's CPU sits
    /// at its ceiling (the demo's `auth` did, and its detector paged on drifts of a
    /// thousandth), and at the backtest's rate CPU is what it always was.
    #[test]
    fn no_service_is_pinned_at_its_cpu_ceiling_at_any_rate() {
        for rate in [400.0, 2000.0, 10_000.0] {
            let mut w = World::new(8, crate::gen::DEMO_SEED, 0, rate);
            let mut cpu: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
            while w.now_ms() < 300_000 {
                for (service, message, _) in w.step(&[]).metrics {
                    let points = message
                        .as_array()
                        .expect("a message holds an array of points");
                    for point in points.iter().filter(|p| p["name"] == "cpu_usage") {
                        let value = point["value"].as_f64().unwrap();
                        cpu.entry(service.clone()).or_default().push(value);
                    }
                }
            }
            assert_eq!(cpu.len(), 8, "every service reports its CPU");
            for (service, values) in &cpu {
                let pinned = values.iter().filter(|v| **v >= 0.9).count();
                assert!(
                    pinned * 10 < values.len(),
                    "{rate}/s: {service} at 0.9 in {pinned} of {} seconds",
                    values.len()
                );
            }
        }
        assert_eq!(World::new(8, 7, 0, 400.0).cpu_per_request, 0.002);
    }

    #[test]
    fn error_burst_raises_the_error_share() {
        let incident = Incident {
            id: "i".into(),
            kind: IncidentKind::ErrorBurst,
            service: "frontend".into(),
            start_ms: 0,
            end_ms: i64::MAX,
            affected: Vec::new(),
        };
        let mut w = World::new(3, 3, 0, 1000.0);
        let mut errors = 0;
        let mut total = 0;
        for _ in 0..400 {
            for (_, s) in w.step(std::slice::from_ref(&incident)).spans {
                if s["service"] == "frontend" {
                    total += 1;
                    errors += (s["status"] == "error") as usize;
                }
            }
        }
        assert!(errors as f64 / total as f64 > 0.3, "{errors}/{total}");
    }
}
