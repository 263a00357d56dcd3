//! cara's own metrics (Prometheus) and readiness state, shared by the pipeline
//! thread and the HTTP server.
//!
//! Counters are only ever touched through the typed events in
//! [`crate::internal_events`], so every log line has a counter and vice versa.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};

/// Labels naming a topic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    /// Kafka topic.
    pub topic: String,
}

/// Labels naming a stage of the dataflow on a topic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    /// Kafka topic the stage reads.
    pub topic: String,
    /// The stage (`alerting`, `slo`, `logs`, `traces`, ...).
    pub stage: String,
}

/// Labels naming a topic partition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// Kafka topic.
    pub topic: String,
    /// Partition number.
    pub partition: String,
}

/// Labels of a decode error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecodeErrorLabels {
    /// Kafka topic.
    pub topic: String,
    /// Short error class (`invalid_json`, `missing_field`, ...).
    pub kind: String,
}

/// Labels of a count of OTLP values that are not rows.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UnusedLabels {
    /// Kafka topic.
    pub topic: String,
    /// Why (`exemplar`, `no_recorded_value`, `not_finite`).
    pub reason: String,
}

/// Labels naming a table.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    /// Archive table.
    pub table: String,
}

/// Labels of the alert counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    /// `firing` or `resolved`.
    pub status: String,
}

/// Labels of an SLO's gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SloLabels {
    /// SLO name.
    pub slo: String,
}

/// Labels of an SLO's burn rate over one window.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SloWindowLabels {
    /// SLO name.
    pub slo: String,
    /// Burn-rate window (`5m`, `1h`, ...).
    pub window: String,
}

/// The per-topic counters of the hot path, looked up once instead of per message.
#[derive(Clone, Debug)]
pub struct TopicCounters {
    /// Messages consumed from the topic.
    pub messages: Counter,
    /// Rows decoded from the topic.
    pub records: Counter,
}

/// All of cara's self-metrics.
pub struct Telemetry {
    registry: Registry,
    /// The exposed name of every family registered (see [`Telemetry::metric_names`]).
    metric_names: Vec<String>,
    pub(crate) messages_in: Family<TopicLabels, Counter>,
    pub(crate) records_in: Family<TopicLabels, Counter>,
    pub(crate) decode_errors: Family<DecodeErrorLabels, Counter>,
    pub(crate) dlq_records: Counter,
    pub(crate) offsets_skipped: Family<PartitionLabels, Counter>,
    pub(crate) otlp_values_unused: Family<UnusedLabels, Counter>,
    pub(crate) unknown_log_levels: Family<TopicLabels, Counter>,
    pub(crate) partition_log_resets: Family<PartitionLabels, Counter>,
    pub(crate) consumer_lag: Family<PartitionLabels, Gauge>,
    pub(crate) archive_files: Family<TableLabels, Counter>,
    pub(crate) archive_bytes: Family<TableLabels, Counter>,
    pub(crate) archive_rows: Family<TableLabels, Counter>,
    pub(crate) alerts: Family<AlertLabels, Counter>,
    pub(crate) late_records: Family<StageLabels, Counter>,
    pub(crate) idle_watermark_raises: Family<PartitionLabels, Counter>,
    pub(crate) over_state_limit: Family<TopicLabels, Counter>,
    pub(crate) budget_flushes: Counter,
    pub(crate) log_templates_created: Counter,
    pub(crate) flush_seconds: Histogram,
    pub(crate) flush_failures: Counter,
    pub(crate) state_files: Counter,
    pub(crate) state_budget_bytes: Gauge,
    pub(crate) state_budget_used: Gauge,
    pub(crate) over_state_budget: Family<TopicLabels, Counter>,
    pub(crate) state_file_bytes: Counter,
    pub(crate) state_bytes: Counter,
    pub(crate) recovered_files: Counter,
    pub(crate) assigned_partitions: Gauge,
    pub(crate) slo_budget_remaining: Family<SloLabels, Gauge<f64, AtomicU64>>,
    pub(crate) slo_burn_rate: Family<SloWindowLabels, Gauge<f64, AtomicU64>>,
    ready: AtomicBool,
    last_broker_error_ms: AtomicI64,
    not_ready_reason: Mutex<String>,
    /// Partitions whose log went back below their checkpoint, with the epoch they
    /// started (shown by `/readyz`).
    log_resets: Mutex<Vec<(String, u32)>>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}

/// Registers `metric` as `cara_<name>` and keeps its name.
fn register(
    registry: &mut Registry,
    names: &mut Vec<String>,
    name: &'static str,
    help: &str,
    metric: impl Metric,
) {
    names.push(format!("cara_{name}"));
    registry.register(name, help, metric);
}

impl Telemetry {
    /// A fresh registry with every metric registered.
    pub fn new() -> Telemetry {
        let mut registry = Registry::with_prefix("cara");
        let mut names = Vec::new();
        let t = Telemetry {
            messages_in: Family::default(),
            records_in: Family::default(),
            decode_errors: Family::default(),
            dlq_records: Counter::default(),
            offsets_skipped: Family::default(),
            otlp_values_unused: Family::default(),
            unknown_log_levels: Family::default(),
            partition_log_resets: Family::default(),
            consumer_lag: Family::default(),
            archive_files: Family::default(),
            archive_bytes: Family::default(),
            archive_rows: Family::default(),
            alerts: Family::default(),
            late_records: Family::default(),
            idle_watermark_raises: Family::default(),
            over_state_limit: Family::default(),
            budget_flushes: Counter::default(),
            log_templates_created: Counter::default(),
            flush_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            flush_failures: Counter::default(),
            state_files: Counter::default(),
            state_budget_bytes: Gauge::default(),
            state_budget_used: Gauge::default(),
            over_state_budget: Family::default(),
            state_file_bytes: Counter::default(),
            state_bytes: Counter::default(),
            recovered_files: Counter::default(),
            assigned_partitions: Gauge::default(),
            slo_budget_remaining: Family::default(),
            slo_burn_rate: Family::default(),
            ready: AtomicBool::new(false),
            last_broker_error_ms: AtomicI64::new(0),
            not_ready_reason: Mutex::new("starting".into()),
            log_resets: Mutex::new(Vec::new()),
            registry: Registry::default(),
            metric_names: Vec::new(),
        };
        register(
            &mut registry,
            &mut names,
            "messages_in",
            "Kafka messages consumed, per topic",
            t.messages_in.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "records_in",
            "Records decoded into rows, per topic",
            t.records_in.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "decode_errors",
            "Messages that could not be decoded, per topic and error kind",
            t.decode_errors.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "dlq_records",
            "Messages written to the dead-letter topic and table",
            t.dlq_records.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "offsets_skipped",
            "Offsets never read (lost to broker retention, or transaction markers)",
            t.offsets_skipped.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "otlp_values_unused",
            "Values of OTLP messages that are not rows: exemplars, points without a recorded value, non-finite values",
            t.otlp_values_unused.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "unknown_log_levels",
            "Log lines whose level cara could not read (archived with level `unknown` and the original in `level_text`)",
            t.unknown_log_levels.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "partition_log_resets",
            "Partitions whose log ended below their checkpoint (a reset broker, a recreated topic): each started a new archive epoch",
            t.partition_log_resets.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "consumer_lag",
            "Messages between the consumer position and the partition end",
            t.consumer_lag.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "archive_files",
            "Parquet files made durable, per table",
            t.archive_files.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "archive_bytes",
            "Bytes of Parquet made durable, per table",
            t.archive_bytes.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "archive_rows",
            "Rows made durable, per table",
            t.archive_rows.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "alerts",
            "Alert transitions raised, per status",
            t.alerts.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "late_records",
            "Records a stage found behind its watermark: archived, not aggregated by that stage (metric windows, log windows, SLO minutes, trace minutes); a record late for two stages counts once for each, per topic and stage",
            t.late_records.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "idle_watermark_raises",
            "Watermarks of idle partitions raised to their topic's, per partition",
            t.idle_watermark_raises.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "over_state_limit",
            "Records archived but not analysed because an operator's state limit (anomaly.max_series, traces.max_pending_spans) was reached, per topic",
            t.over_state_limit.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "budget_flushes",
            "Partition buffers flushed before they were due, because the shard's buffers passed archive.max_buffered_bytes",
            t.budget_flushes.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "log_templates_created",
            "Log templates first seen (per partition's miner)",
            t.log_templates_created.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "flush_seconds",
            "Time to make one partition's batch durable (files, checkpoint)",
            t.flush_seconds.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "flush_failures",
            "Failed flush attempts (retried)",
            t.flush_failures.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "operator_state_budget_bytes",
            "Bytes of keyed operator state the process may hold (runtime.max_state_bytes)",
            t.state_budget_bytes.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "operator_state_used_bytes",
            "Bytes of keyed operator state held now, estimated",
            t.state_budget_used.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "over_state_budget",
            "Records of new keys not analysed because the state budget was spent, per topic",
            t.over_state_budget.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "operator_state_files",
            "Operator state files written by flushes (one per flush whose state moved)",
            t.state_files.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "operator_state_file_bytes",
            "Bytes of operator state files written (compressed)",
            t.state_file_bytes.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "operator_state_bytes",
            "Bytes of operator state saved, before compression",
            t.state_bytes.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "recovered_files",
            "Files of interrupted flushes removed at recovery",
            t.recovered_files.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "assigned_partitions",
            "Partitions currently assigned to this process",
            t.assigned_partitions.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "slo_budget_remaining",
            "Share of the error budget left, per SLO, at its latest status",
            t.slo_budget_remaining.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "slo_burn_rate",
            "Burn rate per SLO and window, at its latest status",
            t.slo_burn_rate.clone(),
        );
        Telemetry {
            registry,
            metric_names: names,
            ..t
        }
    }

    /// Every metric family's name as `/metrics` exposes it (`cara_` and its
    /// registered name; a counter's samples add `_total`, a histogram's `_bucket`,
    /// `_sum` and `_count`), whether or not it has samples yet: what a dashboard may
    /// query.
    pub fn metric_names(&self) -> &[String] {
        &self.metric_names
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Handles on the counters of `topic`, shared with the registry.
    pub fn topic_counters(&self, topic: &str) -> TopicCounters {
        let labels = TopicLabels {
            topic: topic.to_owned(),
        };
        TopicCounters {
            messages: self.messages_in.get_or_create(&labels).clone(),
            records: self.records_in.get_or_create(&labels).clone(),
        }
    }

    /// Marks the pipeline ready (consuming) or not, with the reason.
    pub fn set_ready(&self, ready: bool, reason: &str) {
        self.ready.store(ready, Ordering::Relaxed);
        if let Ok(mut r) = self.not_ready_reason.lock() {
            *r = reason.to_owned();
        }
    }

    /// Records that the broker reported an error just now.
    pub fn broker_error(&self, reason: &str) {
        self.last_broker_error_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
        if let Ok(mut r) = self.not_ready_reason.lock() {
            *r = format!("broker error: {reason}");
        }
    }

    /// Notes a partition (`topic/partition`) that started archive epoch `epoch`.
    pub(crate) fn note_log_reset(&self, partition: String, epoch: u32) {
        if let Ok(mut resets) = self.log_resets.lock() {
            resets.push((partition, epoch));
        }
    }

    /// What cara handled but an operator must know: one line per kind of thing.
    pub fn notices(&self) -> Vec<String> {
        let Ok(resets) = self.log_resets.lock() else {
            return Vec::new();
        };
        let Some((first, epoch)) = resets.first() else {
            return Vec::new();
        };
        let others = match resets.len() {
            1 => String::new(),
            n => format!(" and {} more partitions", n - 1),
        };
        vec![format!(
            "{first}{others}: the broker's log no longer reaches what the archive holds (broker reset or replaced, topic recreated); their new records are archived as a new epoch (files named -e{epoch:04}-...), earlier files are kept"
        )]
    }

    /// Ready when consuming and the broker has not failed in the last 10 seconds;
    /// otherwise the reason.
    pub fn readiness(&self) -> Result<(), String> {
        let recent_error = chrono::Utc::now().timestamp_millis()
            - self.last_broker_error_ms.load(Ordering::Relaxed)
            < 10_000;
        if self.ready.load(Ordering::Relaxed) && !recent_error {
            Ok(())
        } else {
            Err(self
                .not_ready_reason
                .lock()
                .map(|r| r.clone())
                .unwrap_or_else(|_| "unknown".into()))
        }
    }

    /// Total rows archived to `table` so far.
    pub fn archived_rows(&self, table: &str) -> u64 {
        self.archive_rows
            .get_or_create(&TableLabels {
                table: table.into(),
            })
            .get()
    }

    /// Parquet files and bytes made durable so far, over every table.
    pub fn archive_totals(&self) -> (u64, u64) {
        cara_operators::schema::Table::ALL
            .iter()
            .fold((0, 0), |(files, bytes), table| {
                let labels = TableLabels {
                    table: table.name().into(),
                };
                (
                    files + self.archive_files.get_or_create(&labels).get(),
                    bytes + self.archive_bytes.get_or_create(&labels).get(),
                )
            })
    }

    /// Total records decoded from `topic` so far.
    pub fn records_from(&self, topic: &str) -> u64 {
        self.records_in
            .get_or_create(&TopicLabels {
                topic: topic.into(),
            })
            .get()
    }

    /// Total dead-lettered messages so far.
    pub fn dead_lettered(&self) -> u64 {
        self.dlq_records.get()
    }

    /// Alert transitions raised so far with `status` (`firing` or `resolved`).
    pub fn alerts_raised(&self, status: &str) -> u64 {
        self.alerts
            .get_or_create(&AlertLabels {
                status: status.into(),
            })
            .get()
    }

    /// Log templates first seen so far.
    pub fn log_templates_created(&self) -> u64 {
        self.log_templates_created.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_family() {
        let t = Telemetry::new();
        t.records_in
            .get_or_create(&TopicLabels { topic: "x".into() })
            .inc_by(3);
        let text = t.encode();
        assert!(
            text.contains("cara_records_in_total{topic=\"x\"} 3"),
            "{text}"
        );
        assert!(text.contains("cara_flush_seconds_bucket"), "{text}");
    }

    #[test]
    fn archive_totals_sum_every_table() {
        use crate::internal_events::{FileArchived, InternalEvent};
        let t = Telemetry::new();
        FileArchived {
            table: "logs",
            rows: 10,
            bytes: 1000,
        }
        .emit(&t);
        FileArchived {
            table: "dlq",
            rows: 1,
            bytes: 24,
        }
        .emit(&t);
        FileArchived {
            table: "logs",
            rows: 5,
            bytes: 500,
        }
        .emit(&t);
        assert_eq!(t.archive_totals(), (3, 1524));
        assert_eq!(t.archived_rows("logs"), 15);
    }

    #[test]
    fn partition_log_resets_make_one_notice() {
        let t = Telemetry::new();
        assert!(t.notices().is_empty());
        t.note_log_reset("telemetry.logs/1".into(), 1);
        assert!(
            t.notices()[0].starts_with("telemetry.logs/1: "),
            "{:?}",
            t.notices()
        );
        t.note_log_reset("telemetry.spans/7".into(), 1);
        let notices = t.notices();
        assert_eq!(notices.len(), 1);
        assert!(
            notices[0].starts_with("telemetry.logs/1 and 1 more partitions: ")
                && notices[0].contains("-e0001-"),
            "{notices:?}"
        );
    }

    #[test]
    fn readiness_needs_ready_and_no_recent_broker_error() {
        let t = Telemetry::new();
        assert!(t.readiness().is_err());
        t.set_ready(true, "consuming");
        assert!(t.readiness().is_ok());
        t.broker_error("connection refused");
        assert_eq!(
            t.readiness().unwrap_err(),
            "broker error: connection refused"
        );
    }
}
