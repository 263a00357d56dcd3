//! The Kafka source, the live driver of the [`crate::runtime`]: consumes the
//! dataflow's topics in a consumer group on one poll thread, which only polls: each
//! message is copied into a chunk for the shard that owns its partition
//! (`dispatch`); the runtime's shards decode, buffer and hand due partitions to its
//! flush worker; the poll thread commits offsets only after the runtime reports the
//! rows durable.
//!
//! Exactly-once: each partition resumes from the archive's checkpoint (see
//! [`crate::archive`]); records below it are never archived again, files of an
//! interrupted flush are removed before the partition is read, and a partition
//! revoked in a rebalance drops its unflushed buffer so the next owner replays it.
//! Rebalances are handled in the consumer's callbacks (`context`), which reach the
//! shards through the same ordered channels as the data.

mod catch_up;
mod context;
pub(crate) mod dispatch;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::alerts::AlertSink;
use crate::dataflow::stages::TopicPartitions;
use crate::decode::Signal;
use crate::dlq::DeadLetterSink;
use crate::group_member::member_config;
use crate::outbound::{OutboundSink, OutboundTopics};
use crate::runtime::flush::Sinks;
use crate::runtime::roll::wall_clock_ms;
use crate::runtime::{Runtime, RuntimeError, RuntimeSettings};
use crate::telemetry::Telemetry;
use context::SourceContext;
use dispatch::Dispatcher;

/// How often the poll thread commits what became durable.
const COMMIT_INTERVAL: Duration = Duration::from_millis(200);
/// How often the durable offsets of every owned partition are committed again, not
/// only those that moved: a commit refused during a rebalance is otherwise never
/// repeated for a partition that receives nothing more, and its lag (what
/// autoscalers read) would stay above zero.
const RECOMMIT_INTERVAL: Duration = Duration::from_secs(5);
/// How often, at most, the poll thread asks whether it has caught up.
const CATCH_UP_CHECK: Duration = Duration::from_millis(5);

/// Everything the source needs to run.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// librdkafka client properties shared by consumer and DLQ producer
    /// (`bootstrap.servers` and user overrides).
    pub client: ClientConfig,
    /// Consumer group id.
    pub group_id: String,
    /// Dead-letter topic.
    pub dlq_topic: String,
    /// Alerts topic.
    pub alerts_topic: String,
    /// Output and exchange topics of the operators.
    pub outbound: OutboundTopics,
    /// The runtime it drives; its topics are the ones consumed.
    pub runtime: RuntimeSettings,
}

/// Partitions of each signal's input topics together (the sources the second stages
/// wait for: flat JSON and OTLP alike), from the broker's metadata; a topic it cannot
/// tell counts 0.
fn topic_partitions(settings: &SourceSettings) -> TopicPartitions {
    let probe: Result<BaseConsumer, _> = settings.client.create();
    let count = |signal: Signal| -> usize {
        settings
            .runtime
            .topics
            .iter()
            .filter(|t| t.signal == signal)
            .map(|t| partitions_of(&probe, &t.topic))
            .sum()
    };
    TopicPartitions {
        metrics: count(Signal::Metrics),
        logs: count(Signal::Logs),
        spans: count(Signal::Spans),
    }
}

/// Partitions of `topic` in the broker's metadata; 0 when it cannot tell.
fn partitions_of(probe: &Result<BaseConsumer, rdkafka::error::KafkaError>, topic: &str) -> usize {
    let metadata = probe.as_ref().map_err(|e| e.to_string()).and_then(|c| {
        c.fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|e| e.to_string())
    });
    match metadata {
        Ok(m) => m
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len()),
        Err(error) => {
            tracing::warn!(topic, %error, "cannot read the topic's partitions; SLO and trace minutes will not wait for partitions that never reported");
            0
        }
    }
}

/// The running source.
pub struct Source {
    consumer: BaseConsumer<SourceContext>,
    runtime: Runtime,
    telemetry: Arc<Telemetry>,
    /// When every owned partition's offset was last committed.
    last_recommit: Cell<Instant>,
}

impl Source {
    /// Connects to Kafka, starts the shards and subscribes; nothing is read until
    /// [`run`](Self::run).
    pub fn new(
        settings: SourceSettings,
        telemetry: Arc<Telemetry>,
    ) -> Result<Source, RuntimeError> {
        let mut consumer_config = member_config(&settings.client, &settings.group_id);
        consumer_config
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("statistics.interval.ms", "5000")
            .set("partition.assignment.strategy", "range,roundrobin");
        // librdkafka pauses a partition's fetching for this long whenever the local
        // queue is full (default 1 s). A consumer that decodes and writes is slower
        // than one that only reads, so with the default the fetchers idle most of the
        // time; a short backoff keeps them busy. Users may still override it.
        if settings.client.get("fetch.queue.backoff.ms").is_none() {
            consumer_config.set("fetch.queue.backoff.ms", "5");
        }
        let sinks = Sinks {
            dlq: DeadLetterSink::new(settings.client.clone(), &settings.dlq_topic)?,
            dlq_topic: settings.dlq_topic.clone(),
            alerts: AlertSink::new(settings.client.clone(), &settings.alerts_topic)?,
            outbound: OutboundSink::new(settings.client.clone(), settings.outbound.clone())?,
        };
        let stages = &settings.runtime.stages;
        // The second stages wait for every partition of their source topics.
        let second_stages = stages.slos.is_some()
            || stages.traces.is_some()
            || stages.logs.is_some()
            || stages.cost.is_some();
        let topic_partitions = if second_stages {
            topic_partitions(&settings)
        } else {
            TopicPartitions::default()
        };
        let topics: Vec<String> = settings
            .runtime
            .topics
            .iter()
            .map(|t| t.topic.clone())
            .collect();
        let mut runtime = Runtime::start(
            settings.runtime.clone(),
            topic_partitions,
            sinks,
            telemetry.clone(),
        )?;
        let inputs = runtime
            .take_inputs()
            .ok_or_else(|| RuntimeError::Shard("the shards have no inputs".into()))?;
        let context = SourceContext::new(
            settings.runtime.layout.clone(),
            topics.clone(),
            runtime.in_flight(),
            telemetry.clone(),
            Mutex::new(Dispatcher::new(inputs.senders, inputs.spent, inputs.roll)),
            runtime.fatal_slot(),
        );
        let consumer: BaseConsumer<SourceContext> = consumer_config.create_with_context(context)?;
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        telemetry.set_ready(false, "waiting for a partition assignment");
        Ok(Source {
            consumer,
            runtime,
            telemetry,
            last_recommit: Cell::new(Instant::now()),
        })
    }

    /// Consumes until `shutdown` is set, then flushes everything and commits.
    pub fn run(mut self, shutdown: &AtomicBool) -> Result<(), RuntimeError> {
        let outcome = self.consume(shutdown);
        // Shards stop once their inputs close; the flush worker after them.
        self.consumer.context().close_dispatcher();
        self.runtime.join_shards();
        outcome
    }

    fn consume(&mut self, shutdown: &AtomicBool) -> Result<(), RuntimeError> {
        let context = self.consumer.context();
        let mut last_commit = Instant::now();
        let mut pending = false;
        // Whether messages came since the shards were last told the consumer caught up.
        let mut unreported_reads = false;
        let mut last_catch_up_check = Instant::now();
        let mut since_clock_check = 0u32;
        while !shutdown.load(Ordering::Relaxed) {
            // While chunks wait to be sent, only take what is already fetched; once
            // nothing is, send them, so a quiet stream is not held back.
            let timeout = if pending {
                Duration::ZERO
            } else {
                Duration::from_millis(100)
            };
            match self.consumer.poll(timeout) {
                Some(Ok(message)) => {
                    if let Some(topic) = context.topic_index(message.topic()) {
                        context.dispatch(|d| d.push(topic, &message))?;
                        pending = true;
                        unreported_reads = true;
                    }
                    since_clock_check += 1;
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    self.telemetry.broker_error(&e.to_string());
                }
                None => {
                    if pending {
                        context.dispatch(Dispatcher::send_pending)?;
                        pending = false;
                    }
                    // Nothing fetched is waiting; if that is because every partition
                    // has been read to its end, backlog need not wait (crate::roll).
                    if unreported_reads && last_catch_up_check.elapsed() >= CATCH_UP_CHECK {
                        last_catch_up_check = Instant::now();
                        if catch_up::caught_up(&self.consumer, |t, p| context.resumed_at(t, p)) {
                            context.dispatch(Dispatcher::drained)?;
                            unreported_reads = false;
                        }
                    }
                    since_clock_check = u32::MAX;
                }
            }
            if let Some(error) = context.fatal() {
                return Err(error);
            }
            // Reading the clock per message would cost more than the rest of polling.
            if since_clock_check >= 1024 {
                since_clock_check = 0;
                let now_ms = wall_clock_ms();
                context.dispatch(|d| {
                    d.set_wall_clock(now_ms);
                    Ok(())
                })?;
                if last_commit.elapsed() >= COMMIT_INTERVAL {
                    last_commit = Instant::now();
                    self.commit_durable(CommitMode::Async, false)?;
                }
            }
        }
        tracing::info!("shutting down: flushing every partition");
        context.dispatch(Dispatcher::flush_everything)?;
        self.commit_durable(CommitMode::Sync, true)?;
        self.consumer.unsubscribe();
        Ok(())
    }

    /// Commits the offsets of partitions the worker made durable, and every
    /// [`RECOMMIT_INTERVAL`] (and with `wait`) those of every owned partition; with
    /// `wait`, first waits for every submitted round.
    fn commit_durable(&self, mode: CommitMode, wait: bool) -> Result<(), RuntimeError> {
        let completed = self.runtime.completed(wait)?;
        let context = self.consumer.context();
        let mut tpl = TopicPartitionList::new();
        for d in &completed {
            if context.record_durable(&d.topic, d.partition, d.next_offset) {
                tpl.add_partition_offset(&d.topic, d.partition, Offset::Offset(d.next_offset))?;
            }
        }
        if wait || self.last_recommit.get().elapsed() >= RECOMMIT_INTERVAL {
            self.last_recommit.set(Instant::now());
            // Including partitions not flushed here yet, at their checkpoint, which
            // their previous owner's last commit may not have reached Kafka with.
            tpl = TopicPartitionList::new();
            for (topic, partition, next) in context.committable_offsets() {
                tpl.add_partition_offset(&topic, partition, Offset::Offset(next))?;
            }
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        if let Err(e) = self.consumer.commit(&tpl, mode) {
            // The archive checkpoint is the source of truth; a failed Kafka commit
            // (for example during a rebalance) only delays what lag monitors see,
            // until the next recommit.
            tracing::warn!(error = %e, partitions = tpl.count(), "offset commit failed");
        }
        if self.telemetry.readiness().is_err() && self.consumer.context().has_assignment() {
            self.telemetry.set_ready(true, "consuming");
        }
        Ok(())
    }
}
