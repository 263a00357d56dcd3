//! cara's configuration file (TOML): every setting, its default, and validation.
//!
//! Unknown keys are refused, and every error names the key path and the reason, so
//! `cara config check FILE` tells a user exactly what to fix. `cara config defaults`
//! prints the defaults below as a TOML file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use cara_operators::alert::{AlertRule, FiringPolicy};
use cara_operators::anomaly::alerting::WindowSettings;
use cara_operators::anomaly::operator::AnomalyLimits;
use cara_operators::anomaly::ScorerConfig;
use cara_operators::logs::miner::MinerConfigError;
use cara_operators::logs::signals::LogSettings;
use cara_operators::logs::MinerConfig;
use cara_operators::traces::counter::TraceSettings;
use cara_operators::window::WindowSpec;

use crate::decode::DecodeLimits;

pub mod capacity;
pub mod client;
pub mod cost;
pub mod decisions;
pub mod http;
pub mod incidents;
pub mod kafka;
pub mod slo;

pub use http::{HttpConfig, HTTP_TOKEN_ENV};
pub use kafka::KafkaConfig;
pub use slo::{SliKind, SloConfig, SloDefinition, SloSource};

pub use capacity::CapacityConfig;
pub use cost::CostConfig;
pub use decisions::{DecisionsConfig, PolicyConfig};
pub use incidents::IncidentsConfig;

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or a key is unknown or mistyped.
    #[error("config key `{key}`: {reason}")]
    Invalid {
        /// Dotted key path (`archive.roll_bytes`).
        key: String,
        /// What is wrong and what is accepted.
        reason: String,
    },
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// A duration written the human way (`"10s"`, `"1h"`, `"500ms"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "`{text}` is not a duration like \"10s\" or \"5m\": {e}"
                ))
            })
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Kafka connection and topics.
    pub kafka: KafkaConfig,
    /// The Parquet archive.
    pub archive: ArchiveConfig,
    /// Decoding limits.
    pub decode: DecodeConfig,
    /// The HTTP listener.
    pub http: HttpConfig,
    /// The embedded broker used when `kafka.brokers` is empty.
    pub embedded_broker: EmbeddedBrokerConfig,
    /// Threads and parallelism.
    pub runtime: RuntimeConfig,
    /// Metric anomaly scoring and its alerts.
    pub anomaly: AnomalyConfig,
    /// Log template mining, windowed log signals and their alerts.
    pub logs: LogsConfig,
    /// Service level objectives over spans (`[[slo]]`, one table per SLO).
    #[serde(rename = "slo")]
    pub slos: Vec<SloConfig>,
    /// RED metrics and the service graph from spans.
    pub traces: TracesConfig,
    /// Alert correlation into incidents.
    pub incidents: IncidentsConfig,
    /// How decisions are approved and audited.
    pub decisions: DecisionsConfig,
    /// The policy: which incidents call for which action (`[[policy]]`, one table
    /// per rule, tried in order).
    #[serde(rename = "policy")]
    pub policies: Vec<PolicyConfig>,
    /// Cost attribution.
    pub cost: CostConfig,
    /// Capacity forecasting.
    pub capacity: CapacityConfig,
}

/// RED metrics per service and operation, and the service graph, per minute.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracesConfig {
    /// Compute tables `red` and `service_graph` and score each service's latency,
    /// error ratio and rate.
    pub enabled: bool,
    /// How far behind a partition's latest span start its spans may still arrive.
    pub out_of_orderness: HumanDuration,
    /// How long (event time) a span waits for its parent to find a call.
    pub edge_ttl: HumanDuration,
    /// Spans held per partition for that join at most (the rest are not joined,
    /// and counted).
    pub max_pending_spans: usize,
    /// Operations per service and minute at most; more are counted as `<other>`.
    pub max_operations: usize,
}

impl Default for TracesConfig {
    fn default() -> Self {
        let d = TraceSettings::default();
        let duration = |ms: i64| HumanDuration(Duration::from_millis(ms as u64));
        TracesConfig {
            enabled: true,
            out_of_orderness: duration(d.out_of_orderness_ms),
            edge_ttl: duration(d.edge_ttl_ms),
            max_pending_spans: d.max_pending_spans,
            max_operations: d.max_operations,
        }
    }
}

impl TracesConfig {
    /// The first stage's settings, when enabled.
    pub fn settings(&self) -> Option<TraceSettings> {
        let ms = |d: &HumanDuration| d.0.as_millis().min(i64::MAX as u128) as i64;
        self.enabled.then(|| TraceSettings {
            out_of_orderness_ms: ms(&self.out_of_orderness),
            edge_ttl_ms: ms(&self.edge_ttl),
            max_pending_spans: self.max_pending_spans,
            max_operations: self.max_operations,
        })
    }
}

/// Log intelligence: on by default, with one miner configuration for every service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// Mine templates (columns `template_id`, `template`, `params` of table `logs`),
    /// count lines per template in windows (table `log_windows`) and alert.
    pub enabled: bool,
    /// Template miner tuning (the defaults were chosen on Loghub 2k; see BENCHMARKS.md).
    pub miner: MinerConfig,
    /// Window length of the per-template counts.
    pub window: HumanDuration,
    /// How far behind a partition's largest event time its watermark trails.
    pub out_of_orderness: HumanDuration,
    /// Windows a template keeps being scored (with zero lines) after its last line.
    pub active_windows: u32,
    /// Alert when a template new to a service has error-level lines.
    pub new_error_templates: bool,
    /// How long after a service's first line its templates are learnt without
    /// alerting as new (what it logs when cara starts watching it).
    pub learn_for: HumanDuration,
    /// Score (0–1] at or above which a template burst or error-rate spike is anomalous.
    pub threshold: f64,
    /// How long the score must stay anomalous before the alert fires.
    #[serde(rename = "for")]
    pub for_duration: HumanDuration,
    /// Quiet time below the threshold before the alert resolves.
    pub resolve_after: HumanDuration,
}

impl Default for LogsConfig {
    fn default() -> Self {
        let policy = FiringPolicy::default();
        LogsConfig {
            enabled: true,
            miner: MinerConfig::default(),
            window: HumanDuration(Duration::from_secs(60)),
            out_of_orderness: HumanDuration(Duration::from_secs(30)),
            active_windows: 60,
            new_error_templates: true,
            learn_for: HumanDuration(Duration::from_secs(300)),
            threshold: policy.threshold,
            for_duration: HumanDuration(Duration::from_millis(policy.for_ms as u64)),
            resolve_after: HumanDuration(Duration::from_millis(policy.resolve_after_ms as u64)),
        }
    }
}

impl LogsConfig {
    /// The operator settings, when enabled; scoring shares `[anomaly]`'s tuning.
    pub fn settings(&self, anomaly: &AnomalyConfig) -> Option<LogSettings> {
        let ms = |d: &HumanDuration| d.0.as_millis().min(i64::MAX as u128) as i64;
        self.enabled.then(|| LogSettings {
            miner: self.miner.clone(),
            window_ms: ms(&self.window),
            out_of_orderness_ms: ms(&self.out_of_orderness),
            scorer: anomaly.scorer,
            limits: anomaly.limits(),
            policy: FiringPolicy {
                threshold: self.threshold,
                for_ms: ms(&self.for_duration),
                resolve_after_ms: ms(&self.resolve_after),
                ..FiringPolicy::default()
            },
            active_windows: i64::from(self.active_windows),
            alert_new_error_templates: self.new_error_templates,
            learn_ms: ms(&self.learn_for),
        })
    }
}

/// Metric anomaly scoring and alert rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalyConfig {
    /// Score metric series and raise alerts.
    pub enabled: bool,
    /// Detector tuning (the defaults were chosen on NAB; see BENCHMARKS.md).
    pub scorer: ScorerConfig,
    /// Series tracked at most per partition; more are counted, not scored.
    pub max_series: usize,
    /// A series silent this long (event time) is silent: its firing alerts
    /// resolve; its model is kept.
    pub idle_after: HumanDuration,
    /// A series silent this long (event time) is forgotten, model and all; at the
    /// `max_series` limit the longest-silent series makes room sooner.
    pub forget_after: HumanDuration,
    /// Alert rules; none means one rule over every series at the default policy.
    pub rules: Vec<AlertRuleConfig>,
    /// Tumbling-window aggregates of every scored series, archived to table
    /// `metric_windows`.
    pub windows: WindowsConfig,
}

/// The kinds of event-time window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// Fixed, non-overlapping windows of `size`.
    Tumbling,
    /// Windows of `size` starting every `slide`.
    Sliding,
    /// Per series, points separated by less than `gap`.
    Session,
}

/// Event-time windows of the metric operators.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowsConfig {
    /// Aggregate series in windows at all.
    pub enabled: bool,
    /// `tumbling`, `sliding` or `session`.
    pub kind: WindowKind,
    /// Window length (tumbling and sliding).
    pub size: HumanDuration,
    /// Distance between the starts of sliding windows.
    pub slide: HumanDuration,
    /// Inactivity that closes a session.
    pub gap: HumanDuration,
    /// How far behind a partition's largest event time its watermark trails.
    pub out_of_orderness: HumanDuration,
    /// How long windows stay open past the watermark; later points are counted as late.
    pub allowed_lateness: HumanDuration,
}

impl Default for WindowsConfig {
    fn default() -> Self {
        WindowsConfig {
            enabled: true,
            kind: WindowKind::Tumbling,
            size: HumanDuration(Duration::from_secs(60)),
            slide: HumanDuration(Duration::from_secs(60)),
            gap: HumanDuration(Duration::from_secs(300)),
            out_of_orderness: HumanDuration(Duration::from_secs(30)),
            allowed_lateness: HumanDuration(Duration::ZERO),
        }
    }
}

impl WindowsConfig {
    /// The operator settings, when enabled.
    pub fn settings(&self) -> Option<WindowSettings> {
        let ms = |d: &HumanDuration| d.0.as_millis().min(i64::MAX as u128) as i64;
        let spec = match self.kind {
            WindowKind::Tumbling => WindowSpec::Tumbling {
                size_ms: ms(&self.size),
            },
            WindowKind::Sliding => WindowSpec::Sliding {
                size_ms: ms(&self.size),
                slide_ms: ms(&self.slide),
            },
            WindowKind::Session => WindowSpec::Session {
                gap_ms: ms(&self.gap),
            },
        };
        self.enabled.then(|| WindowSettings {
            spec,
            out_of_orderness_ms: ms(&self.out_of_orderness),
            allowed_lateness_ms: ms(&self.allowed_lateness),
        })
    }
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        let limits = AnomalyLimits::default();
        AnomalyConfig {
            enabled: true,
            scorer: ScorerConfig::default(),
            max_series: limits.max_series,
            idle_after: HumanDuration(Duration::from_millis(limits.idle_ms as u64)),
            forget_after: HumanDuration(Duration::from_millis(limits.forget_ms as u64)),
            rules: Vec::new(),
            windows: WindowsConfig::default(),
        }
    }
}

impl AnomalyConfig {
    /// The operator's limits.
    pub fn limits(&self) -> AnomalyLimits {
        AnomalyLimits {
            max_series: self.max_series,
            idle_ms: self.idle_after.0.as_millis().min(i64::MAX as u128) as i64,
            forget_ms: self.forget_after.0.as_millis().min(i64::MAX as u128) as i64,
        }
    }

    /// The rules to evaluate.
    pub fn rules(&self) -> Vec<AlertRule> {
        if self.rules.is_empty() {
            return vec![AlertRule::default_anomaly()];
        }
        self.rules.iter().map(AlertRuleConfig::rule).collect()
    }
}

/// One alert rule as written in the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertRuleConfig {
    /// Rule name (`alertname`).
    pub name: String,
    /// Metric name: exact, or a prefix ending in `*`; absent matches every metric.
    pub metric: Option<String>,
    /// Labels the series must carry with these values.
    pub labels: std::collections::BTreeMap<String, String>,
    /// `page`, `ticket` or `info`.
    pub severity: String,
    /// Score (0–1] at or above which a point is anomalous.
    pub threshold: f64,
    /// How long the score must stay anomalous before the alert fires.
    #[serde(rename = "for")]
    pub for_duration: HumanDuration,
    /// Resolve below `threshold * resolve_ratio`…
    pub resolve_ratio: f64,
    /// …after this long there…
    pub resolve_after: HumanDuration,
    /// …and at least this many points.
    pub resolve_after_points: u32,
}

impl Default for AlertRuleConfig {
    fn default() -> Self {
        let rule = AlertRule::default_anomaly();
        AlertRuleConfig {
            name: rule.name,
            metric: None,
            labels: Default::default(),
            severity: rule.severity,
            threshold: rule.policy.threshold,
            for_duration: HumanDuration(Duration::from_millis(rule.policy.for_ms as u64)),
            resolve_ratio: rule.policy.resolve_ratio,
            resolve_after: HumanDuration(Duration::from_millis(
                rule.policy.resolve_after_ms as u64,
            )),
            resolve_after_points: rule.policy.resolve_after_points,
        }
    }
}

impl AlertRuleConfig {
    fn rule(&self) -> AlertRule {
        let ms = |d: &HumanDuration| d.0.as_millis().min(i64::MAX as u128) as i64;
        AlertRule {
            name: self.name.clone(),
            metric: self.metric.clone(),
            labels: self.labels.clone(),
            severity: self.severity.clone(),
            policy: FiringPolicy {
                threshold: self.threshold,
                for_ms: ms(&self.for_duration),
                resolve_ratio: self.resolve_ratio,
                resolve_after_ms: ms(&self.resolve_after),
                resolve_after_points: self.resolve_after_points,
            },
        }
    }
}

/// How the work is spread over threads, and event time across partitions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Shards, each decoding and running the operators of its share of the source
    /// partitions on a thread of its own; 0 means one per core.
    pub shards: usize,
    /// A partition that receives nothing for this long (processing time) is idle:
    /// it stops holding its topic's watermark back, and its own operators' watermark
    /// is raised to the topic's so their open windows close.
    pub idle_partition_timeout: HumanDuration,
    /// Bytes of keyed operator state (scored series) all partitions of this process
    /// hold at most, estimated; points of new series beyond it are archived, not
    /// scored, and counted (`cara_over_state_budget_total`).
    pub max_state_bytes: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            shards: 0,
            idle_partition_timeout: HumanDuration(Duration::from_secs(30)),
            max_state_bytes: 1 << 30,
        }
    }
}

impl RuntimeConfig {
    /// The number of shards to run.
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            self.shards
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// Where and how records are archived.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// Archive root directory.
    pub dir: PathBuf,
    /// Roll a partition's file once this many input bytes are buffered.
    pub roll_bytes: u64,
    /// Roll a partition's file at least this often.
    pub roll_interval: HumanDuration,
    /// Input bytes buffered at most, over all partitions, before the largest
    /// buffers are flushed early (catching up with a backlog fills buffers faster
    /// than `roll_interval` empties them). Shared evenly by the shards.
    pub max_buffered_bytes: u64,
    /// zstd level (1..=22). 1, the default, measured both faster and smaller than 3
    /// on the benchmark's archive (most columns are delta or dictionary encoded
    /// before zstd sees them).
    pub zstd_level: i32,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            dir: PathBuf::from("cara-archive"),
            roll_bytes: 64 * 1024 * 1024,
            roll_interval: HumanDuration(Duration::from_secs(10)),
            max_buffered_bytes: 512 * 1024 * 1024,
            zstd_level: 1,
        }
    }
}

/// Decoding limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeConfig {
    /// Larger messages go to the dead-letter topic.
    pub max_message_bytes: u64,
    /// Event times further than this past the message timestamp go to the dead-letter topic.
    pub max_future_skew: HumanDuration,
    /// Event times further than this before the message timestamp go to the
    /// dead-letter topic (a zeroed clock, a unit mistake).
    pub max_past_age: HumanDuration,
    /// A message whose records fall in more hours go to the dead-letter topic, and a
    /// partition's buffer is archived once its rows span more (each hour is a file).
    pub max_hours_per_message: u64,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        let limits = DecodeLimits::default();
        DecodeConfig {
            max_message_bytes: limits.max_message_bytes as u64,
            max_future_skew: HumanDuration(Duration::from_millis(limits.max_future_skew_ms as u64)),
            max_past_age: HumanDuration(Duration::from_millis(limits.max_past_age_ms as u64)),
            max_hours_per_message: limits.max_hours_per_message,
        }
    }
}

impl DecodeConfig {
    /// The limits the decoders enforce.
    pub fn limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_message_bytes: self.max_message_bytes as usize,
            max_future_skew_ms: self.max_future_skew.0.as_millis().min(i64::MAX as u128) as i64,
            max_past_age_ms: self.max_past_age.0.as_millis().min(i64::MAX as u128) as i64,
            max_hours_per_message: self.max_hours_per_message,
        }
    }
}

/// The embedded Kafka-protocol broker (librdkafka's mock cluster).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedBrokerConfig {
    /// Bootstrap address clients use.
    pub listen: SocketAddr,
    /// Partitions of each telemetry topic (the mock keeps at most 5 MiB per partition).
    pub telemetry_partitions: i32,
    /// Partitions of each `cara.*` output topic.
    pub output_partitions: i32,
}

impl Default for EmbeddedBrokerConfig {
    fn default() -> Self {
        EmbeddedBrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            telemetry_partitions: 48,
            output_partitions: 4,
        }
    }
}

impl Config {
    /// Parses and validates a TOML document.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let deserializer =
            toml::Deserializer::parse(text).map_err(|e| invalid("<file>", e.to_string()))?;
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            let reason = e.into_inner().message().to_owned();
            invalid(if key == "." { "<root>" } else { &key }, reason)
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=22).contains(&self.archive.zstd_level) {
            return Err(invalid(
                "archive.zstd_level",
                format!("{} is outside 1..=22", self.archive.zstd_level),
            ));
        }
        if self.archive.roll_bytes < 1024 {
            return Err(invalid("archive.roll_bytes", "must be at least 1024 bytes"));
        }
        if self.archive.max_buffered_bytes < 1024 * 1024 {
            return Err(invalid(
                "archive.max_buffered_bytes",
                "must be at least 1 MiB (1048576)",
            ));
        }
        if self.archive.roll_interval.0 < Duration::from_millis(100) {
            return Err(invalid("archive.roll_interval", "must be at least 100ms"));
        }
        if self.archive.dir.as_os_str().is_empty() {
            return Err(invalid("archive.dir", "must not be empty"));
        }
        for (i, rule) in self.anomaly.rules.iter().enumerate() {
            let key = |field: &str| format!("anomaly.rules[{i}].{field}");
            if rule.name.is_empty() {
                return Err(invalid(&key("name"), "must not be empty"));
            }
            if !(rule.threshold > 0.0 && rule.threshold <= 1.0) {
                return Err(invalid(
                    &key("threshold"),
                    format!("{} is outside (0, 1]", rule.threshold),
                ));
            }
            if !(rule.resolve_ratio > 0.0 && rule.resolve_ratio <= 1.0) {
                return Err(invalid(
                    &key("resolve_ratio"),
                    format!("{} is outside (0, 1]", rule.resolve_ratio),
                ));
            }
            if !matches!(rule.severity.as_str(), "page" | "ticket" | "info") {
                return Err(invalid(
                    &key("severity"),
                    format!("`{}` is not one of page, ticket, info", rule.severity),
                ));
            }
        }
        let windows = &self.anomaly.windows;
        if windows.enabled {
            let second = Duration::from_secs(1);
            match windows.kind {
                WindowKind::Tumbling | WindowKind::Sliding if windows.size.0 < second => {
                    return Err(invalid("anomaly.windows.size", "must be at least 1s"));
                }
                WindowKind::Sliding
                    if windows.slide.0 < second || windows.slide.0 > windows.size.0 =>
                {
                    return Err(invalid(
                        "anomaly.windows.slide",
                        "must be at least 1s and at most anomaly.windows.size",
                    ));
                }
                WindowKind::Session if windows.gap.0 < second => {
                    return Err(invalid("anomaly.windows.gap", "must be at least 1s"));
                }
                _ => {}
            }
        }
        for (i, slo) in self.slos.iter().enumerate() {
            slo.validate(i, &self.slos[..i])?;
        }
        if self.traces.enabled {
            if self.traces.max_pending_spans == 0 {
                return Err(invalid("traces.max_pending_spans", "must be at least 1"));
            }
            if self.traces.max_operations == 0 {
                return Err(invalid("traces.max_operations", "must be at least 1"));
            }
        }
        if self.runtime.idle_partition_timeout.0 < Duration::from_secs(1) {
            return Err(invalid(
                "runtime.idle_partition_timeout",
                "must be at least 1s (a partition between two polls is not idle)",
            ));
        }
        if self.runtime.max_state_bytes < 1024 * 1024 {
            return Err(invalid(
                "runtime.max_state_bytes",
                "must be at least 1 MiB (1048576)",
            ));
        }
        if self.anomaly.forget_after.0 < self.anomaly.idle_after.0 {
            return Err(invalid(
                "anomaly.forget_after",
                "must be at least anomaly.idle_after (a series is silent before it is forgotten)",
            ));
        }
        if self.anomaly.max_series == 0 {
            return Err(invalid("anomaly.max_series", "must be at least 1"));
        }
        if let Err(MinerConfigError::OutOfRange { key, value, reason }) = self.logs.miner.validate()
        {
            return Err(invalid(
                &format!("logs.miner.{key}"),
                format!("{value}: {reason}"),
            ));
        }
        if self.logs.window.0 < Duration::from_secs(1) {
            return Err(invalid("logs.window", "must be at least 1s"));
        }
        if !(self.logs.threshold > 0.0 && self.logs.threshold <= 1.0) {
            return Err(invalid(
                "logs.threshold",
                format!("{} is outside (0, 1]", self.logs.threshold),
            ));
        }
        if self.runtime.shards > 1024 {
            return Err(invalid(
                "runtime.shards",
                "must be at most 1024 (0 = one per core)",
            ));
        }
        if self.decode.max_message_bytes == 0 {
            return Err(invalid("decode.max_message_bytes", "must be positive"));
        }
        if self.decode.max_hours_per_message == 0 {
            return Err(invalid(
                "decode.max_hours_per_message",
                "must be at least 1",
            ));
        }
        // Topic names and roles are checked where they are declared, with the
        // dataflow (`crate::dataflow::topics`).
        self.http.validate()?;
        self.incidents.validate()?;
        self.cost.validate()?;
        self.capacity.validate()?;
        decisions::validate_policies(&self.policies)?;
        self.decisions.validate()?;
        if !self.policies.is_empty() && !self.incidents.enabled {
            return Err(invalid(
                "policy",
                "decisions are made on incidents: set incidents.enabled = true, or remove the [[policy]] tables",
            ));
        }
        self.kafka.validate()?;
        for (key, partitions) in [
            (
                "embedded_broker.telemetry_partitions",
                self.embedded_broker.telemetry_partitions,
            ),
            (
                "embedded_broker.output_partitions",
                self.embedded_broker.output_partitions,
            ),
        ] {
            // The in-memory broker keeps 5 MiB per partition and starts every one up
            // front; past a thousand, start-up takes minutes.
            if !(1..=MAX_EMBEDDED_PARTITIONS).contains(&partitions) {
                return Err(invalid(
                    key,
                    format!("{partitions} is outside 1..={MAX_EMBEDDED_PARTITIONS}"),
                ));
            }
        }
        Ok(())
    }

    /// The defaults as a TOML document.
    pub fn defaults_toml() -> String {
        toml::to_string_pretty(&Config::default()).unwrap_or_default()
    }
}

/// The most partitions per topic of the embedded broker.
const MAX_EMBEDDED_PARTITIONS: i32 = 1_024;

#[cfg(test)]
mod tests {
    use super::*;
    use cara_operators::slo::default_burn_rules;
    use cara_operators::slo::spans::{Sli, SpanSlo};

    fn err(text: &str) -> String {
        Config::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.kafka.metrics_topic, "telemetry.metrics");
        assert_eq!(
            c.archive.roll_interval,
            HumanDuration(Duration::from_secs(10))
        );
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let c = Config::from_toml(&Config::defaults_toml()).unwrap();
        assert_eq!(c.archive.zstd_level, 1);
        assert_eq!(c.http.listen, HttpConfig::default().listen);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = err("[archive]\nroll_byte = 5\n");
        assert!(
            e.contains("archive.roll_byte") || (e.contains("archive") && e.contains("roll_byte")),
            "{e}"
        );
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = err("[archive]\nroll_bytes = \"big\"\n");
        assert!(e.contains("archive.roll_bytes"), "{e}");
        let e = err("[runtime]\nmax_state_bytes = 1000\n");
        assert!(
            e.contains("runtime.max_state_bytes") && e.contains("1 MiB"),
            "{e}"
        );
        let e = err("[archive]\nmax_buffered_bytes = 1000\n");
        assert!(
            e.contains("archive.max_buffered_bytes") && e.contains("1 MiB"),
            "{e}"
        );
    }

    #[test]
    fn listening_beyond_loopback_needs_a_token_of_some_length() {
        // Runs only where the variable is unset, as in CI; it would take precedence.
        if std::env::var(HTTP_TOKEN_ENV).is_ok() {
            return;
        }
        let e = err("[http]\nlisten = \"0.0.0.0:9898\"\n");
        assert!(e.contains("http.listen") && e.contains("http.token"), "{e}");
        let e = err("[http]\nlisten = \"0.0.0.0:9898\"\ntoken = \"short\"\n");
        assert!(e.contains("http.token") && e.contains("16"), "{e}");
        let c =
            Config::from_toml("[http]\nlisten = \"0.0.0.0:9898\"\ntoken = \"0123456789abcdef\"\n")
                .unwrap();
        assert_eq!(
            c.http.effective_token().as_deref(),
            Some("0123456789abcdef")
        );
        assert_eq!(Config::default().http.effective_token(), None);
    }

    #[test]
    fn partition_counts_are_bounded() {
        let e = err("[embedded_broker]\ntelemetry_partitions = 1000000\n");
        assert!(
            e.contains("embedded_broker.telemetry_partitions") && e.contains("1000000"),
            "{e}"
        );
        let e = err("[embedded_broker]\noutput_partitions = 0\n");
        assert!(e.contains("embedded_broker.output_partitions"), "{e}");
        let e = err("[kafka]\ntopic_partitions = 2000000000\n");
        assert!(e.contains("kafka.topic_partitions"), "{e}");
        assert!(Config::from_toml("[embedded_broker]\ntelemetry_partitions = 1024\n").is_ok());
    }

    #[test]
    fn bad_duration_is_named() {
        let e = err("[archive]\nroll_interval = \"soon\"\n");
        assert!(
            e.contains("archive.roll_interval") && e.contains("soon"),
            "{e}"
        );
    }

    #[test]
    fn alert_rules_parse_and_bad_ones_are_named() {
        let c = Config::from_toml(
            "[[anomaly.rules]]\nname = \"latency\"\nmetric = \"http_*\"\nlabels = { service = \"api\" }\nseverity = \"page\"\nthreshold = 0.5\nfor = \"2m\"\n",
        )
        .unwrap();
        let rules = c.anomaly.rules();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].policy.for_ms, 120_000);
        assert_eq!(rules[0].policy.threshold, 0.5);
        assert!(rules[0].matches("http_latency", &[("service".into(), "api".into())]));
        assert_eq!(Config::default().anomaly.rules()[0].name, "metric_anomaly");
        let e = err("[[anomaly.rules]]\nname = \"x\"\nthreshold = 2.0\n");
        assert!(e.contains("anomaly.rules[0].threshold"), "{e}");
        let e = err("[[anomaly.rules]]\nname = \"x\"\nseverity = \"urgent\"\n");
        assert!(e.contains("anomaly.rules[0].severity"), "{e}");
        assert!(err("[anomaly.scorer]\nlevel_alpa = 0.1\n").contains("level_alpa"));
        // The documented example is valid and documents the defaults.
        let example = Config::from_toml(include_str!("../../../deploy/cara.example.toml")).unwrap();
        assert_eq!(example.logs.miner, MinerConfig::default());
        assert_eq!(
            example.incidents.settings(),
            Config::default().incidents.settings()
        );
        let with_cost = |c: &Config| {
            let mut cost = c.cost.clone();
            cost.enabled = true;
            cost.settings(&c.anomaly)
        };
        assert_eq!(with_cost(&example), with_cost(&Config::default()));
        assert_eq!(
            example.logs.settings(&example.anomaly),
            Config::default().logs.settings(&Config::default().anomaly)
        );
        let e = err("[logs.miner]\nsimilarity = 0\n");
        assert!(e.contains("logs.miner.similarity"), "{e}");
        assert!(err("[logs]\nthreshold = 3\n").contains("logs.threshold"));
        assert!(err("[logs.miner]\nsimilarty = 0.5\n").contains("similarty"));
        let c =
            Config::from_toml("[logs]\nwindow = \"5m\"\n[logs.miner]\nsimilarity = 0.7\n").unwrap();
        let settings = c.logs.settings(&c.anomaly).unwrap();
        assert_eq!(
            (settings.window_ms, settings.miner.similarity),
            (300_000, 0.7)
        );
    }

    #[test]
    fn window_kinds_parse_and_inconsistent_ones_are_named() {
        let c = Config::from_toml(
            "[anomaly.windows]\nkind = \"sliding\"\nsize = \"10m\"\nslide = \"1m\"\n",
        )
        .unwrap();
        assert_eq!(
            c.anomaly.windows.settings().map(|w| w.spec),
            Some(WindowSpec::Sliding {
                size_ms: 600_000,
                slide_ms: 60_000
            })
        );
        let c = Config::from_toml("[anomaly.windows]\nkind = \"session\"\ngap = \"2m\"\n").unwrap();
        assert_eq!(
            c.anomaly.windows.settings().map(|w| w.spec),
            Some(WindowSpec::Session { gap_ms: 120_000 })
        );
        let e = err("[anomaly.windows]\nkind = \"sliding\"\nsize = \"1m\"\nslide = \"5m\"\n");
        assert!(
            e.contains("anomaly.windows.slide") && e.contains("at most"),
            "{e}"
        );
        let e = err("[anomaly.windows]\nkind = \"hopping\"\n");
        assert!(e.contains("anomaly.windows.kind"), "{e}");
        let e = err("[anomaly]\nidle_after = \"3h\"\nforget_after = \"1h\"\n");
        assert!(e.contains("anomaly.forget_after"), "{e}");
        let e = err("[runtime]\nidle_partition_timeout = \"10ms\"\n");
        assert!(e.contains("runtime.idle_partition_timeout"), "{e}");
    }

    #[test]
    fn the_issues_slo_form_parses_and_bad_slos_are_named() {
        let c = Config::from_toml(
            "[[slo]]\nname = \"checkout-availability\"\nservice = \"checkout\"\nsli = \"availability\"\nobjective = 0.999\nperiod = \"30d\"\n\n\
             [[slo]]\nname = \"checkout-latency\"\nservice = \"checkout\"\nsli = \"latency\"\nthreshold_ms = 300\nobjective = 0.99\nperiod = \"30d\"\n",
        )
        .unwrap();
        let slos: Vec<SpanSlo> = c.slos.iter().filter_map(SloConfig::span_slo).collect();
        assert_eq!(slos[0].spec.period_ms, 30 * 24 * 3_600_000);
        assert_eq!(slos[0].spec.rules, default_burn_rules());
        assert_eq!(slos[0].spec.service.as_deref(), Some("checkout"));
        // A metrics SLO's service may come from its label matchers.
        let by_label = Config::from_toml(
            "[[slo]]\nname = \"m\"\nsource = \"metrics\"\ngood_metric = \"ok_total\"\ntotal_metric = \"all_total\"\n\
             labels = { service = \"api\" }\nsli = \"availability\"\nobjective = 0.99\n",
        )
        .unwrap();
        assert_eq!(by_label.slos[0].spec().service.as_deref(), Some("api"));
        assert_eq!(
            slos[1].sli,
            Sli::Latency {
                threshold_ms: 300.0
            }
        );
        let e =
            err("[[slo]]\nname = \"x\"\nservice = \"a\"\nsli = \"latency\"\nobjective = 0.99\n");
        assert!(e.contains("slo[0].threshold_ms"), "{e}");
        let e = err(
            "[[slo]]\nname = \"x\"\nservice = \"a\"\nsli = \"availability\"\nobjective = 1.5\n",
        );
        assert!(e.contains("slo[0].objective"), "{e}");
        let e = err("[[slo]]\nname = \"x\"\nservice = \"a\"\nsli = \"availability\"\nobjective = 0.9\n\
                     [[slo]]\nname = \"x\"\nservice = \"b\"\nsli = \"availability\"\nobjective = 0.9\n");
        assert!(e.contains("slo[1].name") && e.contains("unique"), "{e}");
        let e = err("[[slo]]\nname = \"x\"\nservice = \"a\"\nsli = \"availability\"\nobjective = 0.9\n\
                     rules = [{ severity = \"page\", long = \"4h\", short = \"5m\", factor = 2.0 }]\n");
        assert!(e.contains("slo[0].rules") && e.contains("4h"), "{e}");
        let e = err("[[slo]]\nname = \"x\"\nservice = \"a\"\nsli = \"speed\"\nobjective = 0.9\n");
        assert!(e.contains("slo") && e.contains("sli"), "{e}");
        // Counter and log SLIs.
        let c = Config::from_toml(
            "[[slo]]\nname = \"m\"\nsource = \"metrics\"\ngood_metric = \"ok_total\"\ntotal_metric = \"all_total\"\n\
             service = \"api\"\nlabels = { region = \"eu\" }\nsli = \"availability\"\nobjective = 0.99\n\
             [[slo]]\nname = \"l\"\nsource = \"logs\"\nservice = \"api\"\nsli = \"availability\"\nobjective = 0.99\n",
        )
        .unwrap();
        let SloDefinition::Metrics(m) = c.slos[0].definition() else {
            panic!("a metrics SLO");
        };
        assert_eq!(
            (m.good_metric.as_str(), m.total_metric.as_str()),
            ("ok_total", "all_total")
        );
        assert_eq!(
            m.labels.get("service").map(String::as_str),
            Some("api"),
            "service is a label matcher"
        );
        assert_eq!(m.labels.get("region").map(String::as_str), Some("eu"));
        assert!(matches!(c.slos[1].definition(), SloDefinition::Logs(_)));
        let e = err("[[slo]]\nname = \"m\"\nsource = \"metrics\"\ngood_metric = \"ok\"\nsli = \"availability\"\nobjective = 0.99\n");
        assert!(e.contains("slo[0].total_metric"), "{e}");
        let e = err("[[slo]]\nname = \"l\"\nsource = \"logs\"\nservice = \"a\"\nsli = \"latency\"\nthreshold_ms = 5\nobjective = 0.99\n");
        assert!(e.contains("slo[0].sli") && e.contains("spans"), "{e}");
        let e = err("[[slo]]\nname = \"s\"\nservice = \"a\"\nlabels = { x = \"y\" }\nsli = \"availability\"\nobjective = 0.99\n");
        assert!(e.contains("slo[0].labels"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        assert!(err("[archive]\nzstd_level = 40\n").contains("archive.zstd_level"));
        assert!(err("[http]\nlisten = \"nowhere\"\n").contains("http.listen"));
    }
}
