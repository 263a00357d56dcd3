//! Where cara's Kafka is and what it calls its topics (`[kafka]`): bootstrap
//! servers, group id, the name of every topic of the dataflow, how topics cara
//! creates are sized, and the librdkafka properties of its clients (built by
//! [`super::client`]); their validation, naming the key.

use serde::{Deserialize, Serialize};

use super::{client, invalid, ConfigError};

/// The most partitions cara creates a topic with (Kafka's own practical limit per
/// topic is of this order; more is a typo).
const MAX_PARTITIONS: i32 = 10_000;

/// Kafka connection and topic names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers (`host:port,...`); empty means start the embedded broker.
    pub brokers: String,
    /// Consumer group id.
    pub group_id: String,
    /// Topic of metric points.
    pub metrics_topic: String,
    /// Topic of log lines.
    pub logs_topic: String,
    /// Topic of spans.
    pub spans_topic: String,
    /// Whether to consume the OpenTelemetry Collector's Kafka exporter topics too
    /// (`otlp_proto` or `otlp_json` requests, read off each message).
    pub otlp: bool,
    /// OTLP topic of metrics (the Collector's default name).
    pub otlp_metrics_topic: String,
    /// OTLP topic of logs.
    pub otlp_logs_topic: String,
    /// OTLP topic of spans.
    pub otlp_spans_topic: String,
    /// Dead-letter topic.
    pub dlq_topic: String,
    /// Topic alerts are sent to.
    pub alerts_topic: String,
    /// Topic SLO status records are sent to.
    pub slo_topic: String,
    /// Topic incident transitions are sent to.
    pub incidents_topic: String,
    /// Topic decision state changes are sent to.
    pub decisions_topic: String,
    /// Topic people (or tools) send verdicts on decisions to.
    pub approvals_topic: String,
    /// Exchange topic between the two SLO stages (per-minute counts of each span
    /// partition, keyed by SLO); cara produces and consumes it.
    pub slo_exchange_topic: String,
    /// Exchange topic between the two trace stages (per-minute RED and graph cells
    /// of each span partition); one partition, created so by cara.
    pub trace_exchange_topic: String,
    /// Exchange topic between the two log stages (per-window template counts of
    /// each log partition); one partition, created so by cara.
    pub log_exchange_topic: String,
    /// Exchange topic between every alert-raising stage and the incident stage
    /// (alert transitions, calls and progress); one partition, created so by cara.
    pub alert_exchange_topic: String,
    /// The decision stage's input log: incidents, verdicts, clock ticks and action
    /// results, in the order applied; one partition, created so by cara.
    pub decision_exchange_topic: String,
    /// Exchange topic between the two cost stages (each metric partition's usage
    /// per window); one partition, created so by cara.
    pub cost_exchange_topic: String,
    /// Cost rows per window, owner and resource.
    pub costs_topic: String,
    /// Capacity forecasts per series, horizon and report.
    pub capacity_topic: String,
    /// Create missing topics at start-up (brokers that support CreateTopics).
    pub create_topics: bool,
    /// Partitions of topics cara creates.
    pub topic_partitions: i32,
    /// Replication factor of topics cara creates.
    pub replication_factor: i32,
    /// Extra librdkafka properties for every client (`"fetch.max.bytes" = "..."`).
    pub client_properties: std::collections::BTreeMap<String, String>,
    /// librdkafka properties read from environment variables when a client is made
    /// (`"sasl.password" = "KAFKA_PASSWORD"`): secrets stay out of the file.
    pub client_properties_env: std::collections::BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: String::new(),
            group_id: "cara".into(),
            metrics_topic: "telemetry.metrics".into(),
            logs_topic: "telemetry.logs".into(),
            spans_topic: "telemetry.spans".into(),
            otlp: true,
            otlp_metrics_topic: "otlp_metrics".into(),
            otlp_logs_topic: "otlp_logs".into(),
            otlp_spans_topic: "otlp_spans".into(),
            dlq_topic: "cara.dlq".into(),
            alerts_topic: "cara.alerts".into(),
            slo_topic: "cara.slo".into(),
            incidents_topic: "cara.incidents".into(),
            decisions_topic: "cara.decisions".into(),
            approvals_topic: "cara.approvals".into(),
            slo_exchange_topic: "cara.internal.slo".into(),
            trace_exchange_topic: "cara.internal.traces".into(),
            log_exchange_topic: "cara.internal.logs".into(),
            alert_exchange_topic: "cara.internal.alerts".into(),
            decision_exchange_topic: "cara.internal.decisions".into(),
            cost_exchange_topic: "cara.internal.costs".into(),
            costs_topic: "cara.costs".into(),
            capacity_topic: "cara.capacity".into(),
            create_topics: true,
            topic_partitions: 8,
            replication_factor: 1,
            client_properties: Default::default(),
            client_properties_env: Default::default(),
        }
    }
}

impl KafkaConfig {
    /// Checks the group, the sizes of created topics and the client properties'
    /// names (the topic names are checked with the dataflow's, see
    /// `dataflow::topics`).
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.group_id.is_empty() {
            return Err(invalid("kafka.group_id", "must not be empty"));
        }
        client::validate(&self.client_properties, &self.client_properties_env)?;
        if !(1..=MAX_PARTITIONS).contains(&self.topic_partitions) {
            return Err(invalid(
                "kafka.topic_partitions",
                format!("{} is outside 1..={MAX_PARTITIONS}", self.topic_partitions),
            ));
        }
        if self.replication_factor < 1 {
            return Err(invalid("kafka.replication_factor", "must be at least 1"));
        }
        Ok(())
    }
}
