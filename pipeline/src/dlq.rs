//! The dead-letter path: messages that cannot be decoded, kept with their original
//! bytes, source position and reason, on the `cara.dlq` topic and in table `dlq`.
//!
//! Dead letters are buffered with their partition and sent when the partition is
//! flushed; the flush (and so the offset commit) waits until the broker has
//! acknowledged every one of them. A replay after a crash may send a dead letter to
//! the topic twice (at-least-once); the `dlq` table holds it exactly once.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::record_batch::RecordBatch;
use cara_operators::schema::Table;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord};

use crate::delivery::{acknowledged_producer, send_acknowledged, DeliveryTracker};

/// Largest payload copied into a dead-letter *message*; the `dlq` table always keeps
/// the whole payload. Kafka brokers refuse messages over about 1 MB by default.
pub const MAX_TOPIC_PAYLOAD: usize = 900 * 1024;

/// One message that could not be decoded.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Source topic.
    pub topic: Arc<str>,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Kafka message timestamp (0 when absent).
    pub kafka_ts_ms: i64,
    /// Why it could not be decoded.
    pub reason: String,
    /// The original bytes (`None` for a message without payload).
    pub payload: Option<Vec<u8>>,
}

/// Builds the `dlq` table rows of some dead letters.
pub fn dead_letter_batch(letters: &[DeadLetter]) -> RecordBatch {
    let mut ts = TimestampMillisecondBuilder::with_capacity(letters.len());
    let mut topic = StringBuilder::new();
    let mut partition = Int32Builder::with_capacity(letters.len());
    let mut offset = Int64Builder::with_capacity(letters.len());
    let mut reason = StringBuilder::new();
    let mut payload = BinaryBuilder::new();
    let mut payload_bytes = Int64Builder::with_capacity(letters.len());
    for l in letters {
        ts.append_value(l.kafka_ts_ms);
        topic.append_value(&*l.topic);
        partition.append_value(l.partition);
        offset.append_value(l.offset);
        reason.append_value(&l.reason);
        payload.append_option(l.payload.as_deref());
        payload_bytes.append_value(l.payload.as_ref().map_or(0, |p| p.len() as i64));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ts.finish().with_timezone("UTC")),
        Arc::new(topic.finish()),
        Arc::new(partition.finish()),
        Arc::new(offset.finish()),
        Arc::new(reason.finish()),
        Arc::new(payload.finish()),
        Arc::new(payload_bytes.finish()),
    ];
    RecordBatch::try_new(Table::Dlq.schema(), columns)
        .unwrap_or_else(|e| panic!("dead-letter columns do not match the dlq schema: {e}"))
}

/// Produces dead letters to the DLQ topic.
pub struct DeadLetterSink {
    producer: BaseProducer<DeliveryTracker>,
    topic: String,
}

impl DeadLetterSink {
    /// A sink producing to `topic` through a client made from `config`.
    pub fn new(mut config: ClientConfig, topic: &str) -> Result<DeadLetterSink, KafkaError> {
        config.set(
            "message.max.bytes",
            (MAX_TOPIC_PAYLOAD + 64 * 1024).to_string(),
        );
        let producer = acknowledged_producer(config, "dead-letter")?;
        Ok(DeadLetterSink {
            producer,
            topic: topic.to_owned(),
        })
    }

    /// Sends every letter and waits until the broker acknowledged all of them.
    pub fn send_all(&self, letters: &[DeadLetter], timeout: Duration) -> Result<(), KafkaError> {
        send_acknowledged(&self.producer, letters, timeout, |l| self.send_one(l))
    }

    fn send_one(&self, letter: &DeadLetter) -> Result<(), KafkaError> {
        let key = format!("{}/{}/{}", letter.topic, letter.partition, letter.offset);
        let payload = letter.payload.as_deref().unwrap_or_default();
        let truncated = payload.len() > MAX_TOPIC_PAYLOAD;
        let body = &payload[..payload.len().min(MAX_TOPIC_PAYLOAD)];
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "cara.reason",
                value: Some(letter.reason.as_bytes()),
            })
            .insert(Header {
                key: "cara.topic",
                value: Some(letter.topic.as_bytes()),
            })
            .insert(Header {
                key: "cara.partition",
                value: Some(partition.as_bytes()),
            })
            .insert(Header {
                key: "cara.offset",
                value: Some(offset.as_bytes()),
            })
            .insert(Header {
                key: "cara.truncated",
                value: Some(if truncated {
                    &b"true"[..]
                } else {
                    &b"false"[..]
                }),
            });
        let mut record = BaseRecord::to(&self.topic)
            .key(&key)
            .payload(body)
            .headers(headers);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    self.producer.poll(Duration::from_millis(50));
                    record = back;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, BinaryArray, StringArray};

    #[test]
    fn batch_keeps_original_bytes_and_reason() {
        let letters = vec![
            DeadLetter {
                topic: "t".into(),
                partition: 2,
                offset: 9,
                kafka_ts_ms: 5,
                reason: "bad".into(),
                payload: Some(b"\x00\xff".to_vec()),
            },
            DeadLetter {
                topic: "t".into(),
                partition: 2,
                offset: 10,
                kafka_ts_ms: 6,
                reason: "empty".into(),
                payload: None,
            },
        ];
        let batch = dead_letter_batch(&letters);
        assert_eq!(batch.num_rows(), 2);
        let payload = batch
            .column_by_name("payload")
            .unwrap()
            .as_any()
            .downcast_ref::<BinaryArray>()
            .unwrap();
        assert_eq!(payload.value(0), b"\x00\xff");
        assert!(payload.is_null(1));
        let reason = batch
            .column_by_name("reason")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(reason.value(1), "empty");
    }
}
