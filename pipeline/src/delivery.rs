//! Producer delivery tracking shared by every Kafka producer of cara: counts the
//! messages the broker refused, so a flush can tell "sent" from "acknowledged"; and
//! the one way cara's sinks make a producer whose sends a checkpoint waits for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

/// Sends every item with `send`, then waits until the broker has acknowledged all of
/// them; an error when one was refused or the wait timed out.
pub fn send_acknowledged<T>(
    producer: &BaseProducer<DeliveryTracker>,
    items: &[T],
    timeout: Duration,
    mut send: impl FnMut(&T) -> Result<(), KafkaError>,
) -> Result<(), KafkaError> {
    if items.is_empty() {
        return Ok(());
    }
    let failures_before = producer.context().failures();
    for item in items {
        send(item)?;
    }
    wait_delivered(producer, timeout)?;
    if producer.context().failures() > failures_before {
        return Err(KafkaError::MessageProduction(RDKafkaErrorCode::Fail));
    }
    Ok(())
}

/// The librdkafka properties only a consumer reads (marked `C` in librdkafka's
/// CONFIGURATION.md). `kafka.client_properties` reach every client cara makes, and a
/// producer given one of these logs a CONFWARN for it at start-up.
const CONSUMER_ONLY_PROPERTIES: &[&str] = &[
    "allow.auto.create.topics",
    "auto.commit.interval.ms",
    "auto.offset.reset",
    "check.crcs",
    "coordinator.query.interval.ms",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "fetch.error.backoff.ms",
    "fetch.max.bytes",
    "fetch.message.max.bytes",
    "fetch.min.bytes",
    "fetch.queue.backoff.ms",
    "fetch.wait.max.ms",
    "group.id",
    "group.instance.id",
    "group.protocol",
    "group.protocol.type",
    "group.remote.assignor",
    "heartbeat.interval.ms",
    "isolation.level",
    "max.partition.fetch.bytes",
    "max.poll.interval.ms",
    "partition.assignment.strategy",
    "queued.max.messages.kbytes",
    "queued.min.messages",
    "session.timeout.ms",
];

/// `config` without the properties only a consumer reads, for a producer.
pub fn producer_properties(mut config: ClientConfig) -> ClientConfig {
    for property in CONSUMER_ONLY_PROPERTIES {
        config.remove(property);
    }
    config
}

/// A producer whose every send a checkpoint waits for (the alert, outbound and
/// dead-letter sinks), named `name` in warnings: idempotent, so a retried send is
/// written once, and not lingering, since lingering to batch would only delay the
/// flush that waits for it.
pub fn acknowledged_producer(
    config: ClientConfig,
    name: &'static str,
) -> Result<BaseProducer<DeliveryTracker>, KafkaError> {
    let mut config = producer_properties(config);
    config
        .set("enable.idempotence", "true")
        .set("linger.ms", "0");
    config.create_with_context(DeliveryTracker::new(name))
}

/// How long [`wait_delivered`] sleeps between serving delivery reports.
const DELIVERY_CHECK_INTERVAL: Duration = Duration::from_micros(200);

/// Serves delivery reports until nothing is in flight. Not `Producer::flush`: its
/// poll waits a fixed 100 ms between checks whenever a report is not yet in, which
/// costs every acknowledged send 100 ms (measured: alerts of one flush, 100.1–100.4
/// ms each; here 1–2 ms). Nor `poll` with a timeout: rust-rdkafka polls until the
/// timeout has passed, and in its last millisecond it rounds the rest down to zero
/// and spins (a 1 ms poll was a tenth of the flush worker's CPU). So: serve what is
/// there without waiting, then sleep briefly.
fn wait_delivered(
    producer: &BaseProducer<DeliveryTracker>,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let deadline = std::time::Instant::now() + timeout;
    // Ask librdkafka to send now rather than after `linger.ms`.
    let _ = producer.flush(Duration::ZERO);
    loop {
        producer.poll(Duration::ZERO);
        if producer.in_flight_count() == 0 {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
        }
        std::thread::sleep(DELIVERY_CHECK_INTERVAL);
    }
}

/// A producer context that counts failed deliveries.
pub struct DeliveryTracker {
    failures: AtomicU64,
    producer: &'static str,
}

impl DeliveryTracker {
    /// A tracker for the producer named `producer` (used in warnings).
    pub fn new(producer: &'static str) -> DeliveryTracker {
        DeliveryTracker {
            failures: AtomicU64::new(0),
            producer,
        }
    }

    /// Failed deliveries so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            tracing::warn!(error = %e, producer = self.producer, "delivery failed");
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producers_keep_shared_properties_and_drop_consumer_only_ones() {
        let mut user = ClientConfig::new();
        user.set("bootstrap.servers", "localhost:1")
            .set("sasl.mechanism", "PLAIN")
            .set("client.id", "cara-eu")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("group.id", "cara");
        let producer = producer_properties(user.clone());
        for kept in ["bootstrap.servers", "sasl.mechanism", "client.id"] {
            assert_eq!(producer.get(kept), user.get(kept), "{kept}");
        }
        for dropped in ["session.timeout.ms", "heartbeat.interval.ms", "group.id"] {
            assert_eq!(producer.get(dropped), None, "{dropped}");
        }
        // The user's own config is left as it was (the consumer still reads it).
        assert_eq!(user.get("session.timeout.ms"), Some("6000"));
        // librdkafka accepts what is left, with the sinks' settings on top.
        assert!(acknowledged_producer(user, "test").is_ok());
    }
}
