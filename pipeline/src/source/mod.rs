//! The Kafka source: consumes the telemetry topics in a consumer group on one poll
//! thread, which only polls: each message is copied into a chunk for the shard that
//! owns its partition ([`dispatch`]); the shards ([`crate::shard`]) decode, buffer
//! and hand due partitions to the flush worker ([`crate::flush`]); the poll thread
//! commits offsets only after the worker reports the rows durable.
//!
//! Exactly-once: each partition resumes from the archive's checkpoint (see
//! [`crate::archive`]); records below it are never archived again, files of an
//! interrupted flush are removed before the partition is read, and a partition
//! revoked in a rebalance drops its unflushed buffer so the next owner replays it.
//! Rebalances are handled in the consumer's callbacks ([`context`]), which reach the
//! shards through the same ordered channels as the data.

mod catch_up;
mod context;
pub(crate) mod dispatch;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use cara_operators::budget::StateBudget;

use crate::alerts::AlertSink;
use crate::archive::layout::ArchiveLayout;
use crate::archive::writer::ParquetWriter;
use crate::archive::ArchiveError;
use crate::dataflow::stages::TopicPartitions;
use crate::dataflow::{Stages, Wiring};
use crate::decode::{DecodeLimits, Signal};
use crate::dlq::DeadLetterSink;
use crate::flush::{FlushWorker, InFlight, Sinks};
use crate::outbound::{OutboundSink, OutboundTopics};
use crate::roll::RollPolicy;
use crate::shard::{self, FatalSlot, ShardSettings};
use crate::telemetry::Telemetry;
use crate::templates::TemplateCatalog;
use context::SourceContext;
use dispatch::Dispatcher;

/// How often the poll thread commits what became durable.
const COMMIT_INTERVAL: Duration = Duration::from_millis(200);
/// How often, at most, the poll thread asks whether it has caught up.
const CATCH_UP_CHECK: Duration = Duration::from_millis(5);

/// What can stop the source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The Kafka client could not be created or failed fatally.
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The archive failed in a way retrying did not fix.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// A shard thread could not be started, or stopped without saying why.
    #[error("shard threads: {0}")]
    Shard(String),
    /// A partition was assigned whose archive state could not be recovered.
    #[error("recovering {topic}[{partition}] from the archive: {source}")]
    Recovery {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Why.
        source: ArchiveError,
    },
}

/// Everything the source needs to run.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// librdkafka client properties shared by consumer and DLQ producer
    /// (`bootstrap.servers` and user overrides).
    pub client: ClientConfig,
    /// Consumer group id.
    pub group_id: String,
    /// Topic name of each signal.
    pub topics: Vec<(String, Signal)>,
    /// Dead-letter topic.
    pub dlq_topic: String,
    /// Alerts topic.
    pub alerts_topic: String,
    /// The operator stacks of every signal (see [`crate::dataflow`]). A second
    /// stage runs here when its exchange topic is among `topics`.
    pub stages: Stages,
    /// Where log partitions publish their templates (for `GET /api/templates`).
    pub templates: Arc<TemplateCatalog>,
    /// Output and exchange topics of the operators.
    pub outbound: OutboundTopics,
    /// Decoding limits.
    pub limits: DecodeLimits,
    /// Flush a partition once this many payload bytes are buffered.
    pub roll_bytes: u64,
    /// Payload bytes buffered at most over all partitions (shared by the shards).
    pub max_buffered_bytes: u64,
    /// Bytes of keyed operator state (estimated) held at most over all partitions.
    pub max_state_bytes: u64,
    /// Flush a partition at least this often.
    pub roll_interval: Duration,
    /// A partition without messages for this long is idle (see
    /// [`crate::watermarks`]).
    pub idle_timeout: Duration,
    /// Archive location.
    pub layout: ArchiveLayout,
    /// zstd level of archive files.
    pub zstd_level: i32,
    /// Decoding threads (each owning a share of the partitions).
    pub shards: usize,
}

/// Partitions of each input topic (the sources the second stages wait for), from
/// the broker's metadata; 0 (wait for none) for a topic it cannot tell.
fn topic_partitions(settings: &SourceSettings) -> TopicPartitions {
    let probe: Result<BaseConsumer, _> = settings.client.create();
    let count = |signal: Signal| -> usize {
        let Some((topic, _)) = settings.topics.iter().find(|(_, s)| *s == signal) else {
            return 0;
        };
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
    };
    TopicPartitions {
        metrics: count(Signal::Metrics),
        logs: count(Signal::Logs),
        spans: count(Signal::Spans),
    }
}

/// The running source.
pub struct Source {
    consumer: BaseConsumer<SourceContext>,
    flusher: FlushWorker,
    shard_threads: Vec<JoinHandle<()>>,
    telemetry: Arc<Telemetry>,
}

impl Source {
    /// Connects to Kafka, starts the shards and subscribes; nothing is read until
    /// [`run`](Self::run).
    pub fn new(settings: SourceSettings, telemetry: Arc<Telemetry>) -> Result<Source, SourceError> {
        let writer = ParquetWriter::new(settings.layout.clone(), settings.zstd_level)?;
        let mut consumer_config = settings.client.clone();
        consumer_config
            .set("group.id", &settings.group_id)
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
        let stages = settings.stages.clone();
        let topic_partitions = if stages.slos.is_some() || stages.traces.is_some() {
            topic_partitions(&settings)
        } else {
            TopicPartitions::default()
        };
        let in_flight = Arc::new(InFlight::default());
        let flusher =
            FlushWorker::start(writer.clone(), sinks, telemetry.clone(), in_flight.clone());
        let fatal = Arc::new(FatalSlot::default());
        let state_budget = StateBudget::new(settings.max_state_bytes);
        telemetry
            .state_budget_bytes
            .set(i64::try_from(settings.max_state_bytes).unwrap_or(i64::MAX));
        let shard_settings = Arc::new(ShardSettings {
            topics: settings
                .topics
                .iter()
                .map(|(t, s)| (Arc::from(t.as_str()), *s))
                .collect(),
            limits: settings.limits,
            roll_bytes: settings.roll_bytes,
            buffer_budget: settings.max_buffered_bytes / settings.shards.max(1) as u64,
            stages,
            wiring: Wiring {
                topic_partitions,
                state_budget,
            },
            state_budget_reported: AtomicBool::new(false),
            roll: RollPolicy {
                roll_interval: settings.roll_interval,
            },
            writer,
            telemetry: telemetry.clone(),
            templates: settings.templates.clone(),
            idle_timeout: settings.idle_timeout,
            watermarks: Arc::default(),
        });
        let mut senders = Vec::new();
        let mut shard_threads = Vec::new();
        let (spent_tx, spent_rx) = crossbeam_channel::unbounded();
        for index in 0..settings.shards.max(1) {
            // A few chunks of backlog per shard: enough to ride out a flush hand-off,
            // small enough that a slow shard slows the poll thread (backpressure).
            let (tx, rx) = crossbeam_channel::bounded(8);
            let submitter = flusher
                .submitter()
                .ok_or_else(|| SourceError::Shard("the flush worker is not running".into()))?;
            let thread = shard::spawn(
                index,
                shard_settings.clone(),
                submitter,
                rx,
                spent_tx.clone(),
                fatal.clone(),
            )
            .map_err(|e| SourceError::Shard(e.to_string()))?;
            senders.push(tx);
            shard_threads.push(thread);
        }
        let context = SourceContext::new(
            settings.layout.clone(),
            settings.topics.iter().map(|(t, _)| t.clone()).collect(),
            in_flight,
            telemetry.clone(),
            Mutex::new(Dispatcher::new(senders, spent_rx)),
            fatal,
        );
        let consumer: BaseConsumer<SourceContext> = consumer_config.create_with_context(context)?;
        let topics: Vec<&str> = settings.topics.iter().map(|(t, _)| t.as_str()).collect();
        consumer.subscribe(&topics)?;
        telemetry.set_ready(false, "waiting for a partition assignment");
        Ok(Source {
            consumer,
            flusher,
            shard_threads,
            telemetry,
        })
    }

    /// Consumes until `shutdown` is set, then flushes everything and commits.
    pub fn run(mut self, shutdown: &AtomicBool) -> Result<(), SourceError> {
        let outcome = self.consume(shutdown);
        // Shards stop once their inputs close; the flush worker after them.
        self.consumer.context().close_dispatcher();
        for thread in self.shard_threads.drain(..) {
            let _ = thread.join();
        }
        outcome
    }

    fn consume(&mut self, shutdown: &AtomicBool) -> Result<(), SourceError> {
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
                        if catch_up::caught_up(&self.consumer) {
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

    /// Commits the offsets of partitions the worker made durable; with `wait`, first
    /// waits for every submitted round.
    fn commit_durable(&self, mode: CommitMode, wait: bool) -> Result<(), SourceError> {
        let durable = self.flusher.completed(wait)?;
        if durable.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for d in &durable {
            tpl.add_partition_offset(&d.topic, d.partition, Offset::Offset(d.next_offset))?;
        }
        if let Err(e) = self.consumer.commit(&tpl, mode) {
            // The archive checkpoint is the source of truth; a failed Kafka commit
            // (for example of a partition revoked meanwhile) only delays what lag
            // monitors see.
            tracing::warn!(error = %e, partitions = durable.len(), "offset commit failed");
        }
        if self.telemetry.readiness().is_err() && self.consumer.context().has_assignment() {
            self.telemetry.set_ready(true, "consuming");
        }
        Ok(())
    }
}
