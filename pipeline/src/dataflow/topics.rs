//! The dataflow's topics: every topic cara reads or writes, its role, the config
//! key that names it, and how many partitions it gets where cara creates it.
//!
//! The one list of topics: what `cara run` consumes, what it creates on a Kafka
//! cluster, what the embedded broker creates, and the check that no topic plays two
//! roles all come from [`Topics`].

use crate::config::{Config, ConfigError};
use crate::decode::{Signal, WireFormat};

/// What a topic is to the dataflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicRole {
    /// Telemetry read by the per-partition stages.
    Input(Signal),
    /// Partial results of the first stages, read by a second stage
    /// ([`Signal::SloPartials`], [`Signal::TracePartials`]).
    Exchange(Signal),
    /// Written by cara: dead letters, alerts, SLO statuses, costs.
    Output,
}

/// How many partitions a topic gets where cara creates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sizing {
    /// As many as the input topics (`embedded_broker.telemetry_partitions`).
    Telemetry,
    /// As many as the outputs (`embedded_broker.output_partitions`).
    Outputs,
    /// Exactly one: every partition's partial results meet in one second stage.
    One,
}

/// One topic of the dataflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredTopic {
    /// The config key naming it; `None` for a fixed name.
    pub key: Option<&'static str>,
    /// The topic name.
    pub name: String,
    /// What it is to the dataflow.
    pub role: TopicRole,
    /// Its partition count where cara creates it.
    pub sizing: Sizing,
    /// How its messages are written (inputs only; cara's own topics are JSON).
    pub format: WireFormat,
}

/// Every topic of the dataflow, in a fixed order: inputs, exchanges, outputs.
#[derive(Debug, Clone)]
pub struct Topics {
    declared: Vec<DeclaredTopic>,
    /// `kafka.topic_partitions`: partitions of the topics cara creates on a cluster.
    kafka_partitions: i32,
    /// `embedded_broker.telemetry_partitions`.
    embedded_telemetry: i32,
    /// `embedded_broker.output_partitions`.
    embedded_outputs: i32,
}

impl Topics {
    /// The topics `config` names; refuses an illegal name or a topic in two roles,
    /// naming the config keys.
    pub fn declare(config: &Config) -> Result<Topics, ConfigError> {
        let k = &config.kafka;
        let named = |key, name: &String, role, sizing| DeclaredTopic {
            key: Some(key),
            name: name.clone(),
            role,
            sizing,
            format: WireFormat::FlatJson,
        };
        let otlp = |key, name: &String, signal| DeclaredTopic {
            format: WireFormat::Otlp,
            ..named(key, name, TopicRole::Input(signal), Sizing::Telemetry)
        };
        let mut declared = vec![
            named(
                "kafka.metrics_topic",
                &k.metrics_topic,
                TopicRole::Input(Signal::Metrics),
                Sizing::Telemetry,
            ),
            named(
                "kafka.logs_topic",
                &k.logs_topic,
                TopicRole::Input(Signal::Logs),
                Sizing::Telemetry,
            ),
            named(
                "kafka.spans_topic",
                &k.spans_topic,
                TopicRole::Input(Signal::Spans),
                Sizing::Telemetry,
            ),
        ];
        if k.otlp {
            declared.extend([
                otlp(
                    "kafka.otlp_metrics_topic",
                    &k.otlp_metrics_topic,
                    Signal::Metrics,
                ),
                otlp("kafka.otlp_logs_topic", &k.otlp_logs_topic, Signal::Logs),
                otlp("kafka.otlp_spans_topic", &k.otlp_spans_topic, Signal::Spans),
            ]);
        }
        declared.extend([
            named(
                "kafka.slo_exchange_topic",
                &k.slo_exchange_topic,
                TopicRole::Exchange(Signal::SloPartials),
                Sizing::Outputs,
            ),
            named(
                "kafka.trace_exchange_topic",
                &k.trace_exchange_topic,
                TopicRole::Exchange(Signal::TracePartials),
                Sizing::One,
            ),
            named(
                "kafka.log_exchange_topic",
                &k.log_exchange_topic,
                TopicRole::Exchange(Signal::LogPartials),
                Sizing::One,
            ),
            named(
                "kafka.alert_exchange_topic",
                &k.alert_exchange_topic,
                TopicRole::Exchange(Signal::AlertPartials),
                Sizing::One,
            ),
            named(
                "kafka.decision_exchange_topic",
                &k.decision_exchange_topic,
                TopicRole::Exchange(Signal::DecisionInputs),
                Sizing::One,
            ),
            named(
                "kafka.cost_exchange_topic",
                &k.cost_exchange_topic,
                TopicRole::Exchange(Signal::CostPartials),
                Sizing::One,
            ),
            named(
                "kafka.approvals_topic",
                &k.approvals_topic,
                TopicRole::Input(Signal::Approvals),
                Sizing::Outputs,
            ),
            named(
                "kafka.dlq_topic",
                &k.dlq_topic,
                TopicRole::Output,
                Sizing::Outputs,
            ),
            named(
                "kafka.alerts_topic",
                &k.alerts_topic,
                TopicRole::Output,
                Sizing::Outputs,
            ),
            named(
                "kafka.slo_topic",
                &k.slo_topic,
                TopicRole::Output,
                Sizing::Outputs,
            ),
            named(
                "kafka.incidents_topic",
                &k.incidents_topic,
                TopicRole::Output,
                Sizing::Outputs,
            ),
            named(
                "kafka.decisions_topic",
                &k.decisions_topic,
                TopicRole::Output,
                Sizing::Outputs,
            ),
            named(
                "kafka.costs_topic",
                &k.costs_topic,
                TopicRole::Output,
                Sizing::Outputs,
            ),
            named(
                "kafka.capacity_topic",
                &k.capacity_topic,
                TopicRole::Output,
                Sizing::Outputs,
            ),
        ]);
        for (i, topic) in declared.iter().enumerate() {
            let key = topic.key.unwrap_or("kafka");
            validate_topic_name(key, &topic.name)?;
            // One topic in two roles loops (dead letters read back as input) or mixes
            // records of different shapes.
            if let Some(earlier) = declared[..i].iter().find(|t| t.name == topic.name) {
                // Name the keys the user set.
                const FIXED: &str = "a topic of fixed name";
                let (key, other) = match (topic.key, earlier.key) {
                    (Some(key), other) => (key, other.unwrap_or(FIXED)),
                    (None, Some(key)) => (key, FIXED),
                    (None, None) => ("kafka", FIXED),
                };
                return Err(ConfigError::Invalid {
                    key: key.to_owned(),
                    reason: format!(
                        "`{}` is also {other}; every input, output, dead-letter and exchange topic must be distinct",
                        topic.name
                    ),
                });
            }
        }
        Ok(Topics {
            declared,
            kafka_partitions: k.topic_partitions,
            embedded_telemetry: config.embedded_broker.telemetry_partitions,
            embedded_outputs: config.embedded_broker.output_partitions,
        })
    }

    /// Every declared topic.
    pub fn all(&self) -> &[DeclaredTopic] {
        &self.declared
    }

    /// The topics the embedded broker creates, with their partitions.
    pub fn embedded_plan(&self) -> Vec<(String, i32)> {
        self.declared
            .iter()
            .map(|t| {
                let partitions = match t.sizing {
                    Sizing::Telemetry => self.embedded_telemetry,
                    Sizing::Outputs => self.embedded_outputs,
                    Sizing::One => 1,
                };
                (t.name.clone(), partitions)
            })
            .collect()
    }

    /// The topics `cara run` creates on a Kafka cluster when missing, with their
    /// partitions.
    pub fn to_create(&self) -> Vec<(String, i32)> {
        self.declared
            .iter()
            .map(|t| {
                let partitions = match t.sizing {
                    Sizing::One => 1,
                    Sizing::Telemetry | Sizing::Outputs => self.kafka_partitions,
                };
                (t.name.clone(), partitions)
            })
            .collect()
    }
}

fn validate_topic_name(key: &str, topic: &str) -> Result<(), ConfigError> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if topic.is_empty() || topic.len() > 249 || !topic.chars().all(legal) {
        return Err(ConfigError::Invalid {
            key: key.to_owned(),
            reason: format!("`{topic}` is not a legal Kafka topic name (1-249 of [a-zA-Z0-9._-])"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declare(toml: &str) -> Result<Topics, String> {
        let config = Config::from_toml(toml).map_err(|e| e.to_string())?;
        Topics::declare(&config).map_err(|e| e.to_string())
    }

    #[test]
    fn a_topic_in_two_roles_is_refused_with_both_keys() {
        let e = declare("[kafka]\ndlq_topic = \"telemetry.metrics\"\n").unwrap_err();
        assert!(
            e.contains("kafka.dlq_topic") && e.contains("kafka.metrics_topic"),
            "{e}"
        );
        let e = declare("[kafka]\nslo_exchange_topic = \"x\"\ntrace_exchange_topic = \"x\"\n")
            .unwrap_err();
        assert!(
            e.contains("kafka.trace_exchange_topic") && e.contains("kafka.slo_exchange_topic"),
            "{e}"
        );
        let e = declare("[kafka]\nalerts_topic = \"cara.costs\"\n").unwrap_err();
        assert!(
            e.contains("kafka.costs_topic") && e.contains("kafka.alerts_topic"),
            "{e}"
        );
    }

    #[test]
    fn otlp_topics_are_inputs_in_otlp_unless_turned_off() {
        let topics = declare("").unwrap();
        let otlp: Vec<(&str, TopicRole)> = topics
            .all()
            .iter()
            .filter(|t| t.format == WireFormat::Otlp)
            .map(|t| (t.name.as_str(), t.role))
            .collect();
        assert_eq!(
            otlp,
            vec![
                ("otlp_metrics", TopicRole::Input(Signal::Metrics)),
                ("otlp_logs", TopicRole::Input(Signal::Logs)),
                ("otlp_spans", TopicRole::Input(Signal::Spans)),
            ]
        );
        let off = declare("[kafka]\notlp = false\n").unwrap();
        assert!(off.all().iter().all(|t| t.format == WireFormat::FlatJson));
        let e = declare("[kafka]\notlp_spans_topic = \"telemetry.spans\"\n").unwrap_err();
        assert!(
            e.contains("kafka.otlp_spans_topic") && e.contains("kafka.spans_topic"),
            "{e}"
        );
    }

    #[test]
    fn an_illegal_name_is_named_by_its_key() {
        let e = declare("[kafka]\ndlq_topic = \"bad topic\"\n").unwrap_err();
        assert!(e.contains("kafka.dlq_topic") && e.contains("legal"), "{e}");
    }

    /// The plans read like a table: the embedded broker creates every topic, the
    /// trace exchange with one partition; a cluster gets the configured count and
    /// no reserved topic.
    #[test]
    fn embedded_and_cluster_plans_size_each_role() {
        let topics = declare(
            "[kafka]\ntopic_partitions = 6\n[embedded_broker]\ntelemetry_partitions = 12\noutput_partitions = 3\n",
        )
        .unwrap();
        let expect_embedded: Vec<(String, i32)> = [
            ("telemetry.metrics", 12),
            ("telemetry.logs", 12),
            ("telemetry.spans", 12),
            ("otlp_metrics", 12),
            ("otlp_logs", 12),
            ("otlp_spans", 12),
            ("cara.internal.slo", 3),
            ("cara.internal.traces", 1),
            ("cara.internal.logs", 1),
            ("cara.internal.alerts", 1),
            ("cara.internal.decisions", 1),
            ("cara.internal.costs", 1),
            ("cara.approvals", 3),
            ("cara.dlq", 3),
            ("cara.alerts", 3),
            ("cara.slo", 3),
            ("cara.incidents", 3),
            ("cara.decisions", 3),
            ("cara.costs", 3),
            ("cara.capacity", 3),
        ]
        .map(|(t, p)| (t.to_owned(), p))
        .into();
        assert_eq!(topics.embedded_plan(), expect_embedded);
        let expect_cluster: Vec<(String, i32)> = [
            ("telemetry.metrics", 6),
            ("telemetry.logs", 6),
            ("telemetry.spans", 6),
            ("otlp_metrics", 6),
            ("otlp_logs", 6),
            ("otlp_spans", 6),
            ("cara.internal.slo", 6),
            ("cara.internal.traces", 1),
            ("cara.internal.logs", 1),
            ("cara.internal.alerts", 1),
            ("cara.internal.decisions", 1),
            ("cara.internal.costs", 1),
            ("cara.approvals", 6),
            ("cara.dlq", 6),
            ("cara.alerts", 6),
            ("cara.slo", 6),
            ("cara.incidents", 6),
            ("cara.decisions", 6),
            ("cara.costs", 6),
            ("cara.capacity", 6),
        ]
        .map(|(t, p)| (t.to_owned(), p))
        .into();
        assert_eq!(topics.to_create(), expect_cluster);
    }
}
