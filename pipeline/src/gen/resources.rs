//! What the simulated services use and what they run on, as a scrape of cAdvisor,
//! the kubelet and kube-state-metrics would report it every 15 s: each service's
//! CPU-seconds counter and data volume (used and capacity bytes), and each node's
//! allocatable cores and memory. One volume fills: it reaches its capacity
//! [`FILLS_WITHIN_MS`] after the start, so a capacity forecast has something to see
//! coming. The metric names are the ones cost attribution meters by default.
//!
//! Seeded on its own stream: the services' traffic, latencies and faults are the
//! same with or without these points.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::model::{metric_point as point, Emitted, Service};

/// A scrape every this many one-second ticks (Prometheus' common 15 s interval).
pub const SCRAPE_EVERY_TICKS: u64 = 15;
/// Points one scrape reports per service (CPU-seconds, volume used, volume capacity).
pub const POINTS_PER_SERVICE: usize = 3;
/// Points one scrape reports per node (allocatable cores and memory).
pub const POINTS_PER_NODE: usize = 2;
/// Services scheduled on one node.
pub const SERVICES_PER_NODE: usize = 4;
/// A node's allocatable CPU cores.
pub const NODE_CORES: f64 = 4.0;
/// A node's allocatable memory (16 GiB).
pub const NODE_MEMORY_BYTES: f64 = 16.0 * 1024.0 * 1024.0 * 1024.0;
/// How long after the start the filling volume is full (5 h).
pub const FILLS_WITHIN_MS: i64 = 5 * 3_600_000;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const DAY_MS: f64 = 86_400_000.0;
/// Writes and deletions of temporary files move a volume's use by up to this share
/// of its capacity from one scrape to the next.
const JITTER: f64 = 0.0002;

/// A service's data volume.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// Its size in bytes.
    pub capacity_bytes: f64,
    /// Bytes used at the start.
    pub used_at_start: f64,
    /// Bytes written per millisecond, on average.
    pub growth_per_ms: f64,
}

impl Volume {
    /// Bytes used `elapsed_ms` after the start, before jitter, at most the capacity.
    pub fn used(&self, elapsed_ms: i64) -> f64 {
        (self.used_at_start + self.growth_per_ms * elapsed_ms as f64).min(self.capacity_bytes)
    }

    /// When, counted from the start, the volume is full on its trend.
    pub fn full_after_ms(&self) -> Option<i64> {
        (self.growth_per_ms > 0.0).then(|| {
            ((self.capacity_bytes - self.used_at_start) / self.growth_per_ms).ceil() as i64
        })
    }
}

/// The services' resources and the nodes they run on.
#[derive(Debug, Clone)]
pub struct Resources {
    rng: ChaCha8Rng,
    start_ms: i64,
    ticks: u64,
    cpu_seconds_total: Vec<f64>,
    /// Each service's data volume, by service index.
    pub volumes: Vec<Volume>,
    /// The index of the service whose volume fills.
    pub filling: usize,
    /// How many nodes the services run on.
    pub nodes: usize,
}

impl Resources {
    /// The resources of `services` services from `start_ms`, seeded from `seed`.
    pub fn new(seed: u64, services: usize, start_ms: i64) -> Resources {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7e50_07ce_5d15_c0de);
        let filling = rng.random_range(0..services.max(1));
        let volumes = (0..services)
            .map(|index| {
                let capacity_bytes = [50.0, 100.0, 200.0][rng.random_range(0..3usize)] * GIB;
                if index == filling {
                    let used_at_start = 0.5 * capacity_bytes;
                    Volume {
                        capacity_bytes,
                        used_at_start,
                        growth_per_ms: (capacity_bytes - used_at_start) / FILLS_WITHIN_MS as f64,
                    }
                } else {
                    // A third to a half used, growing 0.5–2% of its size a day (logs,
                    // a database): months from full.
                    Volume {
                        capacity_bytes,
                        used_at_start: rng.random_range(0.3..0.5) * capacity_bytes,
                        growth_per_ms: rng.random_range(0.005..0.02) * capacity_bytes / DAY_MS,
                    }
                }
            })
            .collect();
        Resources {
            rng,
            start_ms,
            ticks: 0,
            cpu_seconds_total: vec![0.0; services],
            volumes,
            filling,
            nodes: services.div_ceil(SERVICES_PER_NODE).max(1),
        }
    }

    /// The event time the filling volume is full.
    pub fn full_at_ms(&self) -> i64 {
        let full_after = self
            .volumes
            .get(self.filling)
            .and_then(Volume::full_after_ms)
            .unwrap_or(FILLS_WITHIN_MS);
        self.start_ms + full_after
    }

    /// One second of the services using `cores` each (by service index); on a
    /// scrape's tick, the scrape: one message per service and one per node.
    pub fn tick(&mut self, tick_ms: i64, services: &[Service], cores: &[f64], out: &mut Emitted) {
        for (total, used) in self.cpu_seconds_total.iter_mut().zip(cores) {
            *total += used;
        }
        let scrape = self.ticks.is_multiple_of(SCRAPE_EVERY_TICKS);
        self.ticks += 1;
        if !scrape {
            return;
        }
        let elapsed_ms = tick_ms - self.start_ms;
        for (index, service) in services.iter().enumerate() {
            let volume = &self.volumes[index];
            let trend = volume.used(elapsed_ms);
            let jitter = self.rng.random_range(-JITTER..JITTER) * volume.capacity_bytes;
            let used = (trend + jitter).clamp(0.0, volume.capacity_bytes).round();
            let claim = format!("{}-data", service.name);
            let labels = service.metric_labels();
            let volume_labels = json!({"service": service.name, "team": service.team, "persistentvolumeclaim": claim});
            let cpu_seconds = (self.cpu_seconds_total[index] * 1000.0).round() / 1000.0;
            let points = vec![
                point(
                    tick_ms,
                    "container_cpu_usage_seconds_total",
                    cpu_seconds,
                    "counter",
                    &labels,
                ),
                point(
                    tick_ms,
                    "kubelet_volume_stats_used_bytes",
                    used,
                    "gauge",
                    &volume_labels,
                ),
                point(
                    tick_ms,
                    "kubelet_volume_stats_capacity_bytes",
                    volume.capacity_bytes,
                    "gauge",
                    &volume_labels,
                ),
            ];
            out.metrics.push((
                service.name.clone(),
                Value::Array(points),
                POINTS_PER_SERVICE,
            ));
        }
        for node in 0..self.nodes {
            let name = format!("node-{node}");
            let labels = json!({"node": name});
            let points = vec![
                point(
                    tick_ms,
                    "kube_node_status_allocatable_cpu_cores",
                    NODE_CORES,
                    "gauge",
                    &labels,
                ),
                point(
                    tick_ms,
                    "kube_node_status_allocatable_memory_bytes",
                    NODE_MEMORY_BYTES,
                    "gauge",
                    &labels,
                ),
            ];
            out.metrics
                .push((name, Value::Array(points), POINTS_PER_NODE));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::gen::model::World;

    const START: i64 = 1_764_000_000_000;

    /// Every point of `name` the world emits until `until_ms`, by its labels' JSON.
    fn series(world: &mut World, names: &[&str], until_ms: i64) -> BTreeMap<String, Vec<Value>> {
        let mut found: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        while world.now_ms() < until_ms {
            for (_, message, n) in world.step(&[]).metrics {
                let points = message.as_array().expect("an array of points");
                assert_eq!(points.len(), n);
                for point in points
                    .iter()
                    .filter(|p| names.iter().any(|n| p["name"] == *n))
                {
                    let key = format!("{} {}", point["name"], point["labels"]);
                    found.entry(key).or_default().push(point.clone());
                }
            }
        }
        found
    }

    #[test]
    fn one_volume_fills_on_time_and_the_others_are_months_from_full() {
        let resources = Resources::new(7, 8, START);
        assert_eq!(resources.full_at_ms(), START + FILLS_WITHIN_MS);
        for (index, volume) in resources.volumes.iter().enumerate() {
            let full_after_days =
                volume.full_after_ms().expect("every volume grows") as f64 / DAY_MS;
            if index == resources.filling {
                assert_eq!(volume.used(0), 0.5 * volume.capacity_bytes);
                assert!(volume.used(FILLS_WITHIN_MS - 60_000) < volume.capacity_bytes);
                assert_eq!(volume.used(FILLS_WITHIN_MS), volume.capacity_bytes);
                assert_eq!(volume.used(FILLS_WITHIN_MS * 3), volume.capacity_bytes);
            } else {
                assert!(
                    full_after_days > 25.0,
                    "{index}: full after {full_after_days} days"
                );
            }
        }
        // Another seed, another service, the same deadline.
        let others: Vec<usize> = (0..20)
            .map(|seed| Resources::new(seed, 8, START).filling)
            .collect();
        assert!(others.iter().any(|f| *f != others[0]), "{others:?}");
    }

    /// A scrape every 15 s; the CPU counter is the sum of the cores the services
    /// reported each second; the volume follows its trend within its jitter.
    #[test]
    fn a_scrape_every_fifteen_seconds_adds_up_what_the_services_used() {
        let mut world = World::new(8, 7, START, 400.0);
        let filling = world.resources.filling;
        let volume = world.resources.volumes[filling].clone();
        let filling_name = world.services[filling].name.clone();
        let found = series(
            &mut world,
            &[
                "cpu_usage",
                "container_cpu_usage_seconds_total",
                "kubelet_volume_stats_used_bytes",
                "kube_node_status_allocatable_cpu_cores",
            ],
            START + 600_000,
        );
        let of = |name: &str| -> Vec<(&String, &Vec<Value>)> {
            found
                .iter()
                .filter(|(k, _)| k.starts_with(&format!("\"{name}\"")))
                .collect()
        };
        assert_eq!(of("container_cpu_usage_seconds_total").len(), 8);
        assert_eq!(of("kubelet_volume_stats_used_bytes").len(), 8);
        assert_eq!(
            of("kube_node_status_allocatable_cpu_cores").len(),
            2,
            "two nodes for eight services"
        );
        for (_, points) in of("container_cpu_usage_seconds_total") {
            let within = points
                .iter()
                .filter(|p| p["ts"].as_i64().unwrap() < START + 600_000);
            assert_eq!(within.count(), 40, "ten minutes of 15 s scrapes");
            for pair in points.windows(2) {
                assert_eq!(
                    pair[1]["ts"].as_i64().unwrap() - pair[0]["ts"].as_i64().unwrap(),
                    15_000
                );
            }
        }
        // Each service's counter against its per-second gauge (rounded to 1e-4).
        for (key, points) in of("container_cpu_usage_seconds_total") {
            let service = points[0]["labels"]["service"].as_str().unwrap();
            let gauge = &of("cpu_usage")
                .into_iter()
                .find(|(_, p)| p[0]["labels"]["service"] == service)
                .expect("its gauge")
                .1;
            let last = points.last().unwrap();
            let through = last["ts"].as_i64().unwrap();
            let summed: f64 = gauge
                .iter()
                .filter(|p| p["ts"].as_i64().unwrap() <= through)
                .map(|p| p["value"].as_f64().unwrap())
                .sum();
            let counted = last["value"].as_f64().unwrap();
            assert!(
                (counted - summed).abs() < 0.05,
                "{key}: {counted} against {summed}"
            );
            assert!(
                counted > 60.0,
                "{key}: {counted} core-seconds in ten minutes"
            );
        }
        let used = &of("kubelet_volume_stats_used_bytes")
            .into_iter()
            .find(|(_, p)| p[0]["labels"]["service"] == filling_name.as_str())
            .expect("the filling volume")
            .1;
        for point in used.iter() {
            let elapsed = point["ts"].as_i64().unwrap() - START;
            let off = (point["value"].as_f64().unwrap() - volume.used(elapsed)).abs();
            assert!(
                off <= JITTER * volume.capacity_bytes + 1.0,
                "{off} bytes off at {elapsed}"
            );
        }
        let first = used[0]["value"].as_f64().unwrap();
        let last = used.last().unwrap()["value"].as_f64().unwrap();
        assert!(
            last - first > 0.01 * volume.capacity_bytes,
            "it fills: {first} → {last}"
        );
    }

    /// The nodes hold what the services use, even under saturation and a level
    /// shift, so idle cost is never negative; and most of it is used.
    #[test]
    fn the_nodes_hold_what_the_services_use() {
        for services in [2usize, 5, 8, 16] {
            let nodes = services.div_ceil(SERVICES_PER_NODE) as f64;
            // At most a saturated core and 1.6 times 2 GB per service.
            assert!(services as f64 * 1.0 <= nodes * NODE_CORES, "{services}");
            assert!(
                services as f64 * 2.0e9 * 1.6 * 1.02 <= nodes * NODE_MEMORY_BYTES,
                "{services}"
            );
        }
        assert_eq!(Resources::new(1, 9, START).nodes, 3);
    }

    #[test]
    fn the_same_seed_scrapes_the_same_points() {
        let run = |seed| {
            let mut world = World::new(4, seed, START, 400.0);
            series(
                &mut world,
                &["kubelet_volume_stats_used_bytes"],
                START + 120_000,
            )
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }
}
