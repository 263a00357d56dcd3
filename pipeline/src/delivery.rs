//! Producer delivery tracking shared by every Kafka producer of cara: counts the
//! messages the broker refused, so a flush can tell "sent" from "acknowledged".

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
    producer.flush(timeout)?;
    if producer.context().failures() > failures_before {
        return Err(KafkaError::MessageProduction(RDKafkaErrorCode::Fail));
    }
    Ok(())
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
