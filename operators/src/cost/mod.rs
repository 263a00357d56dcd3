//! Cost attribution: what each owner's usage of shared infrastructure and of
//! telemetry costs, per window, with the shared and idle parts of the bill spread
//! over the owners, in exact integer money.
//!
//! Owns: the resources and their units ([`Resource`]), the price table
//! ([`Prices`]), how shared and idle cost are spread ([`SpreadRule`]), metering
//! usage from metric points in event time ([`usage`]), the bill of a window
//! ([`bill`]) and the money arithmetic both rely on ([`money`]).
//!
//! Usage is counted in integer *base units* (micro core-seconds, byte-milliseconds,
//! bytes, spans, series-milliseconds) so that sums over partitions and flushes do
//! not depend on the order they arrive in; it is converted to the price's unit
//! (core-hours, GiB-hours, GiB-months, GiB, millions of spans, series-hours) once per
//! window and owner. A window's bill per resource is its capacity (or its usage,
//! when larger or when no capacity is known) at the resource's price, computed once;
//! everything the owners are charged is split out of that amount
//! ([`money::split_exact`]), so the owners' costs add up to the bill to the last
//! micro-unit. This is OpenCost's model (allocation of used cost, shared cost and
//! idle cost to owners) with its arithmetic made exact.

pub mod alerts;
pub mod bill;
pub mod money;
pub mod partial;
pub mod stage;
pub mod usage;
pub mod volume;

use serde::{Deserialize, Serialize};

/// A resource whose use is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// CPU time, from a counter of CPU-seconds; priced per core-hour.
    Cpu,
    /// Memory held, from a gauge of bytes; priced per GiB-hour.
    Memory,
    /// Storage held, from a gauge of bytes; priced per GiB-month (730 hours).
    Storage,
    /// Network egress, from a counter of bytes; priced per GiB.
    Egress,
    /// Log bytes ingested by cara, per service; priced per GiB.
    Logs,
    /// Spans ingested by cara, per service; priced per million.
    Spans,
    /// Active metric series, per service; priced per series-hour.
    Series,
}

/// Bytes in a GiB.
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
/// Milliseconds in an hour.
const HOUR_MS: f64 = 3_600_000.0;

impl Resource {
    /// Every resource, in the order rows are written.
    pub const ALL: [Resource; 7] = [
        Resource::Cpu,
        Resource::Memory,
        Resource::Storage,
        Resource::Egress,
        Resource::Logs,
        Resource::Spans,
        Resource::Series,
    ];

    /// Its name in the config, the table and the API.
    pub fn name(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
            Resource::Storage => "storage",
            Resource::Egress => "egress",
            Resource::Logs => "logs",
            Resource::Spans => "spans",
            Resource::Series => "series",
        }
    }

    /// The unit its price is given in (column `unit` of table `costs`).
    pub fn price_unit(self) -> &'static str {
        match self {
            Resource::Cpu => "core_hours",
            Resource::Memory => "gib_hours",
            Resource::Storage => "gib_months",
            Resource::Egress | Resource::Logs => "gib",
            Resource::Spans => "million_spans",
            Resource::Series => "series_hours",
        }
    }

    /// Base units (what [`usage`] counts) in one price unit.
    pub fn base_units_per_price_unit(self) -> f64 {
        match self {
            // Micro core-seconds in a core-hour.
            Resource::Cpu => 1e6 * 3600.0,
            // Byte-milliseconds in a GiB-hour.
            Resource::Memory => GIB * HOUR_MS,
            // Byte-milliseconds in a GiB-month of 730 hours (as cloud bills count).
            Resource::Storage => GIB * HOUR_MS * 730.0,
            Resource::Egress | Resource::Logs => GIB,
            Resource::Spans => 1e6,
            // Series-milliseconds in a series-hour.
            Resource::Series => HOUR_MS,
        }
    }

    /// `base` units in price units.
    pub fn in_price_units(self, base: u128) -> f64 {
        base as f64 / self.base_units_per_price_unit()
    }
}

/// Price per price unit of each resource, in the configured currency. Defaults are
/// OpenCost's default on-premises prices for CPU, memory and storage (its
/// `default.json`: 0.031611 per vCPU-hour, 0.004237 per GiB-hour, 0.04 per
/// GiB-month), a typical cloud egress list price, and telemetry prices of the order
/// hosted observability vendors list; every one is meant to be overridden.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Prices {
    /// Per core-hour of CPU.
    pub cpu_core_hour: f64,
    /// Per GiB-hour of memory.
    pub memory_gib_hour: f64,
    /// Per GiB-month of storage.
    pub storage_gib_month: f64,
    /// Per GiB of egress.
    pub egress_gib: f64,
    /// Per GiB of logs ingested.
    pub logs_gib: f64,
    /// Per million spans ingested.
    pub spans_million: f64,
    /// Per active series-hour.
    pub series_hour: f64,
}

impl Default for Prices {
    fn default() -> Self {
        Prices {
            cpu_core_hour: 0.031611,
            memory_gib_hour: 0.004237,
            storage_gib_month: 0.04,
            egress_gib: 0.09,
            logs_gib: 0.50,
            spans_million: 0.30,
            series_hour: 0.0001,
        }
    }
}

impl Prices {
    /// The price of one price unit of `resource`.
    pub fn of(&self, resource: Resource) -> f64 {
        match resource {
            Resource::Cpu => self.cpu_core_hour,
            Resource::Memory => self.memory_gib_hour,
            Resource::Storage => self.storage_gib_month,
            Resource::Egress => self.egress_gib,
            Resource::Logs => self.logs_gib,
            Resource::Spans => self.spans_million,
            Resource::Series => self.series_hour,
        }
    }

    /// Each price with its config key, for validation.
    pub fn named(&self) -> [(&'static str, f64); 7] {
        [
            ("cpu_core_hour", self.cpu_core_hour),
            ("memory_gib_hour", self.memory_gib_hour),
            ("storage_gib_month", self.storage_gib_month),
            ("egress_gib", self.egress_gib),
            ("logs_gib", self.logs_gib),
            ("spans_million", self.spans_million),
            ("series_hour", self.series_hour),
        ]
    }
}

/// How a cost that belongs to no owner (shared) or to nobody's use (idle) is spread
/// over the owners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SpreadRule {
    /// In proportion to each owner's own cost of the resource (OpenCost's
    /// "weighted"): who uses more of it pays more of what is shared.
    Proportional,
    /// In equal parts to every owner with usage of the resource in the window.
    Even,
    /// In equal parts to the owners named (e.g. a platform team), whether or not
    /// they used the resource.
    To(Vec<String>),
}

/// Which metrics meter which resource (by metric name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsageMetrics {
    /// A counter of CPU-seconds used.
    pub cpu_seconds: String,
    /// A gauge of CPU cores in use, for systems that export CPU so (empty: none).
    pub cpu_cores: String,
    /// A gauge of memory bytes held.
    pub memory_bytes: String,
    /// A gauge of storage bytes held.
    pub storage_bytes: String,
    /// A counter of bytes sent out.
    pub egress_bytes: String,
    /// A gauge of CPU cores paid for (e.g. a node's allocatable cores); every series
    /// adds to the capacity.
    pub cpu_capacity_cores: String,
    /// A gauge of memory bytes paid for.
    pub memory_capacity_bytes: String,
    /// A gauge of storage bytes paid for.
    pub storage_capacity_bytes: String,
}

impl Default for UsageMetrics {
    /// The names cAdvisor, the kubelet and kube-state-metrics export.
    fn default() -> Self {
        UsageMetrics {
            cpu_seconds: "container_cpu_usage_seconds_total".into(),
            cpu_cores: String::new(),
            memory_bytes: "container_memory_working_set_bytes".into(),
            storage_bytes: "kubelet_volume_stats_used_bytes".into(),
            egress_bytes: "container_network_transmit_bytes_total".into(),
            cpu_capacity_cores: "kube_node_status_allocatable_cpu_cores".into(),
            memory_capacity_bytes: "kube_node_status_allocatable_memory_bytes".into(),
            storage_capacity_bytes: "kubelet_volume_stats_capacity_bytes".into(),
        }
    }
}

impl UsageMetrics {
    /// Each metric name with what it measures and its config key (an empty name
    /// meters nothing).
    pub fn named(&self) -> [(&'static str, &str, usage::Measure); 8] {
        use usage::Measure::{Capacity, CpuCores, Usage};
        [
            ("cpu_seconds", &self.cpu_seconds, Usage(Resource::Cpu)),
            ("cpu_cores", &self.cpu_cores, CpuCores),
            ("memory_bytes", &self.memory_bytes, Usage(Resource::Memory)),
            (
                "storage_bytes",
                &self.storage_bytes,
                Usage(Resource::Storage),
            ),
            ("egress_bytes", &self.egress_bytes, Usage(Resource::Egress)),
            (
                "cpu_capacity_cores",
                &self.cpu_capacity_cores,
                Capacity(Resource::Cpu),
            ),
            (
                "memory_capacity_bytes",
                &self.memory_capacity_bytes,
                Capacity(Resource::Memory),
            ),
            (
                "storage_capacity_bytes",
                &self.storage_capacity_bytes,
                Capacity(Resource::Storage),
            ),
        ]
    }

    /// What a series named `name` measures, if anything.
    pub fn measure_of(&self, name: &str) -> Option<usage::Measure> {
        self.named()
            .into_iter()
            .find(|(_, metric, _)| !metric.is_empty() && *metric == name)
            .map(|(_, _, measure)| measure)
    }
}

/// Capacity paid for whether measured or not (the config's `[cost.capacity]`):
/// used for a resource in a window with no capacity series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StaticCapacity {
    /// CPU cores.
    pub cpu_cores: Option<f64>,
    /// GiB of memory.
    pub memory_gib: Option<f64>,
    /// GiB of storage.
    pub storage_gib: Option<f64>,
}

impl StaticCapacity {
    /// The capacity of `resource` over `window_ms`, in base units, if configured.
    pub fn over(&self, resource: Resource, window_ms: i64) -> Option<u128> {
        let held = |units: f64, base_per_unit_ms: f64| {
            (units.max(0.0) * window_ms as f64 * base_per_unit_ms).round() as u128
        };
        match resource {
            // Micro core-seconds per core-millisecond.
            Resource::Cpu => self.cpu_cores.map(|c| held(c, 1e3)),
            Resource::Memory => self.memory_gib.map(|g| held(g, GIB)),
            Resource::Storage => self.storage_gib.map(|g| held(g, GIB)),
            _ => None,
        }
    }
}

/// Everything cost attribution needs, as the config sets it.
#[derive(Debug, Clone, PartialEq)]
pub struct CostSettings {
    /// Window length, ms.
    pub window_ms: i64,
    /// How far behind a metric partition's latest point its points may still come.
    pub out_of_orderness_ms: i64,
    /// The currency of the prices (column `currency`).
    pub currency: String,
    /// A gauge is held at most this long after its last point, ms.
    pub max_gap_ms: i64,
    /// The label naming a series' owner.
    pub owner_label: String,
    /// Owners whose usage is shared cost.
    pub shared_owners: Vec<String>,
    /// Who owns a service's telemetry (logs, spans, series); unlisted services own
    /// their own.
    pub service_owners: std::collections::BTreeMap<String, String>,
    /// The metrics metered.
    pub metrics: UsageMetrics,
    /// Capacity when no capacity series says.
    pub capacity: StaticCapacity,
    /// Prices and spreading.
    pub bill: bill::BillSettings,
    /// Monthly budget per owner, in micro-units (see [`alerts`]).
    pub budgets: std::collections::BTreeMap<String, money::Micros>,
    /// Detector tuning of the owners' cost series.
    pub scorer: crate::anomaly::ScorerConfig,
    /// State limits of that scoring.
    pub limits: crate::anomaly::operator::AnomalyLimits,
    /// When a cost anomaly fires and resolves.
    pub policy: crate::alert::FiringPolicy,
}

impl CostSettings {
    /// The owner of `service`'s telemetry.
    pub fn telemetry_owner<'a>(&'a self, service: &'a str) -> &'a str {
        self.service_owners
            .get(service)
            .map_or(service, String::as_str)
    }
}

pub use ledger::{CostLedger, CostRow};
pub mod ledger;
