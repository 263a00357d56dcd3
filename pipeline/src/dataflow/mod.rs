//! The declared dataflow: every stage cara runs, the topics between them, and how
//! each is built from the config and restored from a snapshot. The single source of
//! truth for topics, partition plans and operator stacks: `cara run`, `cara broker`,
//! `cara config check`, the backtests and the benches all take them from here.
//!
//! ```text
//!  telemetry.metrics ─► decode ─► [alerting|slo|cost]─┬─► cara.alerts, tables
//!  telemetry.logs    ─► decode ─► [logs | slo]      ─┤   (metric_windows, log_templates)
//!  telemetry.spans   ─► decode ─► [slo | traces]    ─┤
//!          (per input partition, in a shard)         ├─► cara.internal.slo ─► SloCombiner ─► cara.slo, slo
//!                                                    ├─► cara.internal.traces ─► TraceCombiner ─► red, graph, alerts
//!                                                    ├─► cara.internal.logs ─► LogCombiner ─► log_windows, alerts
//!                                                    └─► cara.internal.costs ─► CostCombiner ─► costs, cara.costs
//!  every stage raising alerts (its alerts, calls, progress)
//!      ─► cara.internal.alerts ─► IncidentStage ─► cara.incidents, incidents
//!  undecodable input ─► cara.dlq, dlq
//! ```
//!
//! [`topics`] declares the topics and their roles; [`stages`] the operator stacks.
//! The drivers (the Kafka runtime in [`crate::source`], the backtests) decide where
//! records come from and where outputs go, never which operators run.

pub mod stages;
pub mod topics;

use crate::config::{Config, ConfigError};
use crate::decode::{Signal, WireFormat};

pub use stages::{Stages, Wiring};

pub use topics::{DeclaredTopic, TopicRole, Topics};

/// A topic `cara run` consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedTopic {
    /// The topic name.
    pub topic: String,
    /// What its records are.
    pub signal: Signal,
    /// How its messages are written.
    pub format: WireFormat,
}

/// The dataflow a config declares.
#[derive(Debug, Clone)]
pub struct Dataflow {
    /// Every topic, with its role.
    pub topics: Topics,
    /// Every stage's settings.
    pub stages: Stages,
}

impl Dataflow {
    /// The dataflow of `config`; refuses topics that are illegal or play two roles,
    /// naming the config key.
    pub fn declare(config: &Config) -> Result<Dataflow, ConfigError> {
        Ok(Dataflow {
            topics: Topics::declare(config)?,
            stages: Stages::from_config(config),
        })
    }

    /// The topics `cara run` consumes, with their signal and format: the inputs,
    /// and the exchange topic of each second stage that runs.
    pub fn consumed(&self) -> Vec<ConsumedTopic> {
        self.topics
            .all()
            .iter()
            .filter_map(|t| match t.role {
                TopicRole::Input(signal) | TopicRole::Exchange(signal)
                    if self.stages.consumes(signal) =>
                {
                    Some(ConsumedTopic {
                        topic: t.name.clone(),
                        signal,
                        format: t.format,
                    })
                }
                TopicRole::Input(_) | TopicRole::Exchange(_) | TopicRole::Output => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flat-JSON and exchange topics consumed (the OTLP inputs have their
    /// own test in `topics`).
    fn consumed(toml: &str) -> Vec<(String, Signal)> {
        let config = Config::from_toml(toml).unwrap();
        Dataflow::declare(&config)
            .unwrap()
            .consumed()
            .into_iter()
            .filter(|c| c.format == WireFormat::FlatJson)
            .map(|c| (c.topic, c.signal))
            .collect()
    }

    #[test]
    fn second_stages_consume_their_exchange_only_when_they_run() {
        let inputs = vec![
            ("telemetry.metrics".to_owned(), Signal::Metrics),
            ("telemetry.logs".to_owned(), Signal::Logs),
            ("telemetry.spans".to_owned(), Signal::Spans),
        ];
        let logs = ("cara.internal.logs".to_owned(), Signal::LogPartials);
        let alerts = ("cara.internal.alerts".to_owned(), Signal::AlertPartials);
        let mut by_default = inputs.clone();
        by_default.push(("cara.internal.traces".to_owned(), Signal::TracePartials));
        by_default.push(logs.clone());
        by_default.push(alerts.clone());
        assert_eq!(
            consumed(""),
            by_default,
            "traces, logs and incidents are on by default"
        );
        let no_incidents = "[incidents]\nenabled = false\n";
        let mut logs_only = inputs.clone();
        logs_only.push(logs);
        assert_eq!(
            consumed(&format!("{no_incidents}[traces]\nenabled = false\n")),
            logs_only
        );
        let off =
            "[incidents]\nenabled = false\n[traces]\nenabled = false\n[logs]\nenabled = false\n";
        assert_eq!(consumed(off), inputs);
        let mut incidents_only = inputs.clone();
        incidents_only.push(alerts);
        assert_eq!(
            consumed("[traces]\nenabled = false\n[logs]\nenabled = false\n"),
            incidents_only
        );
        let slo = "[[slo]]\nname = \"a\"\nservice = \"s\"\nsli = \"availability\"\nobjective = 0.99\n[traces]\nenabled = false\n[logs]\nenabled = false\n[incidents]\nenabled = false\n";
        let mut with_slo = inputs;
        with_slo.push(("cara.internal.slo".to_owned(), Signal::SloPartials));
        assert_eq!(consumed(slo), with_slo);
    }
}
