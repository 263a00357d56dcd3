//! The window ledger of the combining stage: every partition's metered usage of a
//! window summed, and the window billed once every partition has passed it.
//!
//! Owns: [`CostLedger`] (usage per open window, in base units, summed in any
//! order with the same result) and the rows a closed window becomes ([`CostRow`],
//! one per window, owner and resource, table `costs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::bill::{bill, ResourceUsage};
use super::money::Micros;
use super::usage::WindowUsage;
use super::{CostSettings, Resource};

/// One owner's cost of one resource in one window.
#[derive(Debug, Clone, PartialEq)]
pub struct CostRow {
    /// Window start, ms.
    pub window_start_ms: i64,
    /// Window end, ms.
    pub window_end_ms: i64,
    /// The owner.
    pub owner: String,
    /// The resource.
    pub resource: Resource,
    /// Used, in the resource's price unit.
    pub usage: f64,
    /// The price unit.
    pub unit: &'static str,
    /// Cost of the owner's own usage.
    pub cost: Micros,
    /// Its part of the shared cost.
    pub shared: Micros,
    /// Its part of the idle cost.
    pub idle: Micros,
}

impl CostRow {
    /// Everything the owner is charged for the resource in the window.
    pub fn total(&self) -> Micros {
        self.cost + self.shared + self.idle
    }
}

/// Usage per open window, summed over partitions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostLedger {
    /// Usage per window start.
    #[serde(with = "crate::map_as_list")]
    pub(crate) open: BTreeMap<i64, WindowUsage>,
}

impl CostLedger {
    /// Adds one partition's usage of the window starting at `window_start_ms`.
    pub fn add(&mut self, window_start_ms: i64, usage: &WindowUsage) {
        self.open.entry(window_start_ms).or_default().merge(usage);
    }

    /// Bills and forgets every window starting before `through_ms`, in time order:
    /// per window, per resource of `resources` used or paid for, one row per owner.
    pub fn close(
        &mut self,
        through_ms: i64,
        settings: &CostSettings,
        resources: &[Resource],
    ) -> Vec<CostRow> {
        let keep = self.open.split_off(&through_ms);
        let closed = std::mem::replace(&mut self.open, keep);
        let mut rows = Vec::new();
        for (start, usage) in closed {
            rows.extend(bill_window(start, &usage, settings, resources));
        }
        rows
    }
}

/// The rows of the window starting at `start` with `usage`, for `resources` (the
/// configured capacity of a resource is paid for once, by the ledger that bills it).
pub fn bill_window(
    start: i64,
    usage: &WindowUsage,
    settings: &CostSettings,
    resources: &[Resource],
) -> Vec<CostRow> {
    let window_ms = settings.window_ms;
    let mut rows = Vec::new();
    for &resource in resources {
        let mut per_resource = ResourceUsage {
            capacity: usage
                .capacity
                .get(&resource)
                .copied()
                .or_else(|| settings.capacity.over(resource, window_ms)),
            ..ResourceUsage::default()
        };
        for ((r, owner), amount) in usage.used.range((resource, None)..) {
            if *r != resource {
                break;
            }
            per_resource.add(owner.as_deref(), *amount, &settings.shared_owners);
        }
        if per_resource.used() == 0 && per_resource.capacity.unwrap_or(0) == 0 {
            continue;
        }
        let billed = bill(resource, &per_resource, &settings.bill);
        rows.extend(billed.lines.into_iter().map(|line| CostRow {
            window_start_ms: start,
            window_end_ms: start + window_ms,
            owner: line.owner,
            resource,
            usage: line.usage,
            unit: resource.price_unit(),
            cost: line.cost,
            shared: line.shared,
            idle: line.idle,
        }));
    }
    rows
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cost::bill::BillSettings;
    use crate::cost::usage::UsageMeter;
    use crate::cost::{Prices, SpreadRule, StaticCapacity, UsageMetrics};

    const HOUR: i64 = 3_600_000;
    const MIN: i64 = 60_000;

    pub(crate) fn settings() -> CostSettings {
        CostSettings {
            window_ms: HOUR,
            out_of_orderness_ms: MIN,
            currency: "USD".into(),
            max_gap_ms: 5 * MIN,
            owner_label: "team".into(),
            shared_owners: vec!["kube-system".into()],
            service_owners: BTreeMap::new(),
            metrics: UsageMetrics::default(),
            capacity: StaticCapacity {
                cpu_cores: Some(8.0),
                memory_gib: None,
                storage_gib: None,
            },
            bill: BillSettings {
                prices: Prices::default(),
                shared: SpreadRule::Proportional,
                idle: SpreadRule::Proportional,
            },
            budgets: BTreeMap::new(),
            scorer: crate::anomaly::ScorerConfig::default(),
            limits: crate::anomaly::operator::AnomalyLimits::default(),
            policy: crate::alert::FiringPolicy::default(),
        }
    }

    /// Points of three teams' CPU and memory, metered on two partitions or one.
    fn meter(partitions: usize) -> CostLedger {
        let s = settings();
        let mut meters: Vec<UsageMeter> = (0..partitions)
            .map(|_| UsageMeter::new(s.window_ms, s.max_gap_ms))
            .collect();
        let teams = ["a", "b", "kube-system"];
        for minute in 0..=130 {
            for (i, team) in teams.iter().enumerate() {
                // A series stays on one partition, as Kafka keys it.
                let meter = &mut meters[i % partitions];
                let ts = minute * MIN;
                let cpu = s.metrics.measure_of("container_cpu_usage_seconds_total");
                let mem = s.metrics.measure_of("container_memory_working_set_bytes");
                let (Some(cpu), Some(mem)) = (cpu, mem) else {
                    panic!("the default metric names are metered");
                };
                let cpu_seconds = minute as f64 * 30.0 * (i + 1) as f64;
                meter.observe(
                    &format!("cpu{{team={team}}}"),
                    cpu,
                    Some(team),
                    ts,
                    cpu_seconds,
                );
                meter.observe(
                    &format!("mem{{team={team}}}"),
                    mem,
                    Some(team),
                    ts,
                    1e9 * (i + 1) as f64,
                );
            }
        }
        let mut ledger = CostLedger::default();
        for meter in &mut meters {
            for (start, usage) in meter.advance(2 * HOUR) {
                ledger.add(start, &usage);
            }
        }
        ledger
    }

    #[test]
    fn partitions_metered_apart_bill_as_one() {
        let s = settings();
        let one = meter(1).close(2 * HOUR, &s, &Resource::ALL);
        let two = meter(2).close(2 * HOUR, &s, &Resource::ALL);
        assert_eq!(one, two);
        // Two hours, CPU (with the configured 8 cores) and memory (no capacity), for
        // a and b (kube-system's usage is shared): 8 rows.
        assert_eq!(one.len(), 8, "{one:#?}");
    }

    #[test]
    fn an_hour_of_rows_adds_up_to_its_bill() {
        let s = settings();
        let rows = meter(2).close(2 * HOUR, &s, &Resource::ALL);
        let first: Vec<&CostRow> = rows
            .iter()
            .filter(|r| r.window_start_ms == 0 && r.resource == Resource::Cpu)
            .collect();
        // 8 cores for an hour at 0.031611: 0.252888 → 252,888 micro-units.
        let total: Micros = first.iter().map(|r| r.cost + r.shared + r.idle).sum();
        assert_eq!(total, 252_888);
        // a used 0.5 core (30 CPU-seconds a minute), b 1 core: b pays twice a's.
        let a = first.iter().find(|r| r.owner == "a").unwrap();
        let b = first.iter().find(|r| r.owner == "b").unwrap();
        assert!((a.usage - 0.5 * 59.0 / 60.0).abs() < 1e-9, "{a:?}");
        assert!(
            ((b.cost + b.shared + b.idle) as f64 / (a.cost + a.shared + a.idle) as f64 - 2.0).abs()
                < 1e-4
        );
    }
}
