//! Records operators send to output and exchange topics (`cara.slo`,
//! `cara.incidents`, the SLO, trace, log and alert exchange topics), produced by a flush and acknowledged before its checkpoint, so
//! a crash can re-send a record but never lose one.

use std::time::Duration;

use cara_operators::operator::{Outbound, OutboundMessage};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord};

use crate::delivery::{acknowledged_producer, send_acknowledged, DeliveryTracker};

/// Topic names of the outbound streams.
#[derive(Debug, Clone)]
pub struct OutboundTopics {
    /// SLO status records.
    pub slo_status: String,
    /// The exchange between the SLO stages.
    pub slo_partials: String,
    /// The exchange between the trace stages.
    pub trace_partials: String,
    /// The exchange between the log stages.
    pub log_partials: String,
    /// The exchange between the alert-raising stages and the incident stage.
    pub alert_partials: String,
    /// Incident transitions.
    pub incidents: String,
    /// The decision stage's input log.
    pub decision_inputs: String,
    /// Decision state changes.
    pub decisions: String,
    /// The exchange between the cost stages.
    pub cost_partials: String,
    /// Cost rows.
    pub costs: String,
    /// Capacity forecasts.
    pub capacity: String,
}

impl OutboundTopics {
    /// The topic of `stream`.
    pub fn name(&self, stream: Outbound) -> &str {
        match stream {
            Outbound::SloStatus => &self.slo_status,
            Outbound::SloPartials => &self.slo_partials,
            Outbound::TracePartials => &self.trace_partials,
            Outbound::LogPartials => &self.log_partials,
            Outbound::AlertPartials => &self.alert_partials,
            Outbound::Incidents => &self.incidents,
            Outbound::DecisionInputs => &self.decision_inputs,
            Outbound::Decisions => &self.decisions,
            Outbound::CostPartials => &self.cost_partials,
            Outbound::Costs => &self.costs,
            Outbound::Capacity => &self.capacity,
        }
    }
}

/// One idempotent producer for every outbound stream.
pub struct OutboundSink {
    producer: BaseProducer<DeliveryTracker>,
    topics: OutboundTopics,
}

impl OutboundSink {
    /// A sink producing through a client made from `config`.
    pub fn new(config: ClientConfig, topics: OutboundTopics) -> Result<OutboundSink, KafkaError> {
        let producer = acknowledged_producer(config, "outbound")?;
        Ok(OutboundSink { producer, topics })
    }

    /// Sends one record to a topic outside the outbound streams (a `kafka` action's
    /// topic) and waits until the broker acknowledged it.
    pub fn send_raw(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<(), KafkaError> {
        send_acknowledged(&self.producer, &[()], timeout, |_| {
            let record = BaseRecord::to(topic).key(key.as_bytes()).payload(payload);
            self.producer.send(record).map_err(|(e, _)| e)
        })
    }

    /// Sends every message and waits until the broker acknowledged all of them.
    pub fn send_all(
        &self,
        messages: &[OutboundMessage],
        timeout: Duration,
    ) -> Result<(), KafkaError> {
        send_acknowledged(&self.producer, messages, timeout, |message| {
            let record = BaseRecord::to(self.topics.name(message.topic))
                .key(message.key.as_bytes())
                .payload(&message.payload);
            self.producer.send(record).map_err(|(e, _)| e)
        })
    }
}
