//! Whether the consumer has read everything its partitions hold: the moment a
//! backlog may be flushed without waiting (see [`crate::runtime::roll`]).
//!
//! An empty local queue alone does not say so: while catching up, the consumer can
//! outpace the fetcher for a moment, and flushing then would cut the backlog into
//! small files. So the consumer counts as caught up only when, for every assigned
//! partition, its position has reached the high watermark that librdkafka cached
//! from the partition's last fetch response (no request to the broker is made).
//! A partition read from nowhere yet (no position) does not hold it back: its first
//! fetch has not answered, or it had nothing to read.
//!
//! Owns: one of the crate's two `unsafe` calls (the other is in `broker`), to a
//! librdkafka function rust-rdkafka does not wrap.

use std::ffi::CString;

use rdkafka::bindings;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::topic_partition_list::Offset;

/// Whether every assigned partition's position has reached its cached high
/// watermark; `false` when that cannot be told.
pub(crate) fn caught_up<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> bool {
    let Ok(positions) = consumer.position() else {
        return false;
    };
    positions.elements().iter().all(|element| {
        let Offset::Offset(position) = element.offset() else {
            return true;
        };
        cached_high_watermark(consumer, element.topic(), element.partition())
            .is_some_and(|high| position >= high)
    })
}

/// The high watermark librdkafka last saw in a fetch response for the partition;
/// `None` if it has none (never fetched) or the topic name cannot be passed to C.
fn cached_high_watermark<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let topic = CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: `native_ptr` is the live client handle `consumer` owns for as long as
    // it is borrowed here; `topic` is a NUL-terminated string that outlives the call;
    // `low` and `high` are valid for writes. The function only reads cached state
    // under librdkafka's own locks and keeps none of the pointers.
    let error = unsafe {
        bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (error == bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(high)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use rdkafka::message::Message;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::ClientConfig;

    use super::*;

    /// A consumer of the mock cluster is caught up exactly when it has read every
    /// record of every partition, and not while a partition still holds unread ones.
    #[test]
    fn caught_up_only_after_the_last_record_of_every_partition() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("t", 2, 1).expect("topic");
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .create()
            .expect("producer");
        for i in 0..20 {
            let payload = format!("{i}");
            let record = BaseRecord::<(), _>::to("t")
                .partition(i % 2)
                .payload(&payload);
            producer.send(record).expect("send");
        }
        producer.flush(Duration::from_secs(10)).expect("flush");
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", "catch-up")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        consumer.subscribe(&["t"]).expect("subscribe");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut read = 0;
        let mut seen = [false; 2];
        let mut checked = 0;
        while read < 20 && Instant::now() < deadline {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                read += 1;
                seen[message.partition() as usize] = true;
                // Once both partitions have positions, one of them still has unread
                // records until the last one is read.
                if seen == [true, true] && read < 20 {
                    assert!(!caught_up(&consumer), "caught up after {read} of 20");
                    checked += 1;
                }
            }
        }
        assert_eq!(read, 20);
        assert!(checked > 0, "both partitions should be read before the end");
        // librdkafka learns the final watermarks from the next fetch answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !caught_up(&consumer) && Instant::now() < deadline {
            consumer.poll(Duration::from_millis(50));
        }
        assert!(caught_up(&consumer));
    }
}
