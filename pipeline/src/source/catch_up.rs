//! Whether the consumer has read everything its partitions hold: the moment a
//! backlog may be flushed without waiting (see [`crate::runtime::roll`]).
//!
//! An empty local queue alone does not say so: while catching up, the consumer can
//! outpace the fetcher for a moment, and flushing then would cut the backlog into
//! small files. So the consumer counts as caught up only when, for every assigned
//! partition, its position has reached the high watermark that librdkafka cached
//! from the partition's last fetch response (no request to the broker is made).
//! A partition nothing has been read from yet has no position: it counts from where
//! it was resumed (its checkpoint, else the log's start), and holds the consumer back
//! until its first fetch has answered. Counting such a partition as caught up would
//! report the end while one partition's first records are still on their way, and
//! the tail that follows would wait as a small backlog.
//!
//! Owns: one of the crate's two `unsafe` calls (the other is in `broker`), to a
//! librdkafka function rust-rdkafka does not wrap.

use std::ffi::CString;

use rdkafka::bindings;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::topic_partition_list::Offset;

/// Whether every assigned partition's position has reached its cached high
/// watermark; `false` when that cannot be told. `resumed_at` gives the offset a
/// partition was resumed at (`None`: its log's start), for partitions with no
/// position yet.
pub(crate) fn caught_up<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    resumed_at: impl Fn(&str, i32) -> Option<i64>,
) -> bool {
    let Ok(positions) = consumer.position() else {
        return false;
    };
    positions.elements().iter().all(|element| {
        let (topic, partition) = (element.topic(), element.partition());
        let Some(watermarks) = cached_watermarks(consumer, topic, partition) else {
            return false; // no fetch has answered yet
        };
        let next = match element.offset() {
            Offset::Offset(position) => position,
            _ => resumed_at(topic, partition).unwrap_or(watermarks.low),
        };
        next >= watermarks.high
    })
}

/// A partition's log start and end as librdkafka last saw them.
struct Watermarks {
    /// The log start; 0 when the broker did not say.
    low: i64,
    high: i64,
}

/// The watermarks librdkafka last saw in a fetch response for the partition;
/// `None` if it has none (never fetched) or the topic name cannot be passed to C.
fn cached_watermarks<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<Watermarks> {
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
    (error == bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(
        Watermarks {
            low: low.max(0),
            high,
        },
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use rdkafka::message::Message;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
    use rdkafka::{ClientConfig, TopicPartitionList};

    use super::*;

    /// A mock cluster whose topic `t` has two partitions of ten records each.
    fn cluster_with_twenty_records() -> MockCluster<'static, DefaultProducerContext> {
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
        cluster
    }

    fn consumer_of(cluster: &MockCluster<'static, DefaultProducerContext>) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", "catch-up")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer")
    }

    /// Polls until `done` holds or ten seconds pass; whether it held.
    fn poll_until(consumer: &BaseConsumer, done: impl Fn(&BaseConsumer) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(consumer) && Instant::now() < deadline {
            consumer.poll(Duration::from_millis(50));
        }
        done(consumer)
    }

    /// A consumer of the mock cluster is caught up exactly when it has read every
    /// record of every partition, and not while a partition still holds unread ones,
    /// read from or not.
    #[test]
    fn caught_up_only_after_the_last_record_of_every_partition() {
        let cluster = cluster_with_twenty_records();
        let consumer = consumer_of(&cluster);
        consumer.subscribe(&["t"]).expect("subscribe");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut read = 0;
        while read < 20 && Instant::now() < deadline {
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
                read += 1;
                if read < 20 {
                    assert!(
                        !caught_up(&consumer, |_, _| None),
                        "caught up after {read} of 20"
                    );
                }
            }
        }
        assert_eq!(read, 20);
        // librdkafka learns the final watermarks from the next fetch answers.
        assert!(poll_until(&consumer, |c| caught_up(c, |_, _| None)));
    }

    /// A partition nothing has been read from holds the consumer back until its first
    /// fetch has answered, then counts from where it was resumed.
    #[test]
    fn a_partition_not_read_from_counts_from_where_it_was_resumed() {
        let cluster = cluster_with_twenty_records();
        let consumer = consumer_of(&cluster);
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset("t", 0, Offset::Beginning)
            .expect("partition 0");
        // Partition 1 resumed at its end, as after a restart that archived it all.
        assignment
            .add_partition_offset("t", 1, Offset::Offset(10))
            .expect("partition 1");
        consumer.assign(&assignment).expect("assign");
        let resumed = |_: &str, partition: i32| (partition == 1).then_some(10);
        assert!(!caught_up(&consumer, resumed), "no fetch has answered yet");

        let mut read = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while read < 10 && Instant::now() < deadline {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                assert_eq!(message.partition(), 0);
                read += 1;
            }
        }
        assert_eq!(read, 10);
        assert!(poll_until(&consumer, |c| caught_up(c, resumed)));
        // Had partition 1 been resumed at its log's start, its ten records would be
        // unread.
        assert!(!caught_up(&consumer, |_, _| None));
    }
}
