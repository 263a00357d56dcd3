//! The Kafka source: consumes the telemetry topics in a consumer group, decodes each
//! message into its partition's buffer (or dead-letters it), and hands partitions due
//! by size or age to the flush worker ([`crate::flush`]), committing offsets only
//! after the worker reports the rows durable.
//!
//! Exactly-once: each partition resumes from the archive's checkpoint (see
//! [`crate::archive`]); records below it are never archived again, files of an
//! interrupted flush are removed before the partition is read, and a partition
//! revoked in a rebalance drops its unflushed buffer so the next owner replays it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;

use crate::archive::commit::{self, Checkpoint, Intent};
use crate::archive::layout::{input_file_stem, ArchiveLayout};
use crate::archive::writer::ParquetWriter;
use crate::archive::ArchiveError;
use crate::decode::{DecodeLimits, Decoder, Signal, SourcePosition};
use crate::dlq::{dead_letter_batch, DeadLetter, DeadLetterSink};
use crate::flush::{FlushWorker, InFlight, PreparedFlush};
use crate::internal_events::*;
use crate::telemetry::{Telemetry, TopicCounters};
use cara_operators::schema::Table;

/// What can stop the source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The Kafka client could not be created or failed fatally.
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The archive failed in a way retrying did not fix.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
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
    /// Decoding limits.
    pub limits: DecodeLimits,
    /// Flush a partition once this many payload bytes are buffered.
    pub roll_bytes: u64,
    /// Flush a partition at least this often.
    pub roll_interval: Duration,
    /// Archive location.
    pub layout: ArchiveLayout,
    /// zstd level of archive files.
    pub zstd_level: i32,
}

enum AssignmentChange {
    Assigned(Vec<(String, i32, Option<i64>)>),
    Revoked(Vec<(String, i32)>),
}

/// Consumer callbacks: rebalances (recovering partitions from the archive), statistics
/// (consumer lag) and client errors (readiness).
struct SourceContext {
    layout: ArchiveLayout,
    in_flight: Arc<InFlight>,
    telemetry: Arc<Telemetry>,
    changes: Mutex<Vec<AssignmentChange>>,
    fatal: Mutex<Option<SourceError>>,
}

impl SourceContext {
    fn push(&self, change: AssignmentChange) {
        if let Ok(mut c) = self.changes.lock() {
            c.push(change);
        }
    }

    fn fail(&self, error: SourceError) {
        if let Ok(mut f) = self.fatal.lock() {
            f.get_or_insert(error);
        }
    }

    /// Resumes each assigned partition at its archive checkpoint.
    fn on_assign(&self, tpl: &mut TopicPartitionList) {
        let mut assigned = Vec::new();
        for (topic, partition) in partitions_of(tpl) {
            match commit::recover(&self.layout, &topic, partition) {
                Ok(recovery) => {
                    if !recovery.removed.is_empty() {
                        InterruptedFlushRemoved {
                            topic: &topic,
                            partition,
                            files: recovery.removed.len(),
                        }
                        .emit(&self.telemetry);
                    }
                    if let Some(next) = recovery.next_offset {
                        if let Err(e) =
                            tpl.set_partition_offset(&topic, partition, Offset::Offset(next))
                        {
                            self.fail(SourceError::Kafka(e));
                        }
                    }
                    assigned.push((topic, partition, recovery.next_offset));
                }
                Err(source) => self.fail(SourceError::Recovery {
                    topic,
                    partition,
                    source,
                }),
            }
        }
        tracing::info!(partitions = assigned.len(), "partitions assigned");
        self.push(AssignmentChange::Assigned(assigned));
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    ConsumerLagMeasured {
                        topic,
                        partition: *partition,
                        lag: p.consumer_lag,
                    }
                    .emit(&self.telemetry);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka client error");
        self.telemetry.broker_error(reason);
    }
}

impl ConsumerContext for SourceContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.on_assign(tpl);
                if let Err(e) = consumer.assign(tpl) {
                    self.fail(SourceError::Kafka(e));
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Partitions change hands only once nothing of theirs is being written.
                self.in_flight.wait_idle();
                self.push(AssignmentChange::Revoked(partitions_of(tpl)));
                if let Err(e) = consumer.unassign() {
                    tracing::warn!(error = %e, "unassign failed");
                }
            }
            other => {
                tracing::warn!(error = ?other, "rebalance error");
                let _ = consumer.unassign();
            }
        }
    }

    fn pre_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {}
}

/// Rows of one source partition waiting to be flushed.
struct PartitionBuffer {
    topic: Arc<str>,
    partition: i32,
    signal: Signal,
    decoder: Decoder,
    dead_letters: Vec<DeadLetter>,
    dead_letter_bytes: usize,
    first_offset: Option<i64>,
    last_offset: i64,
    /// The next offset this process expects; `None` until known.
    expected_next: Option<i64>,
    opened_at: Instant,
}

impl PartitionBuffer {
    fn buffered_bytes(&self) -> usize {
        self.decoder.payload_bytes() + self.dead_letter_bytes
    }
}

/// The running source.
pub struct Source {
    consumer: BaseConsumer<SourceContext>,
    state: SourceState,
}

/// Everything of the source but the consumer, so a polled message (which borrows
/// the consumer) can be handled while the state is mutated.
struct SourceState {
    flusher: FlushWorker,
    writer: ParquetWriter,
    settings: SourceSettings,
    telemetry: Arc<Telemetry>,
    /// Keyed by (index into `settings.topics`, partition).
    partitions: HashMap<(usize, i32), PartitionBuffer>,
    /// Resume offsets learnt at assignment, used when a partition's first message arrives.
    resume_at: HashMap<(usize, i32), Option<i64>>,
    /// Counters of each topic, by index into `settings.topics`.
    counters: Vec<TopicCounters>,
}

impl Source {
    /// Connects to Kafka and subscribes; nothing is read until [`run`](Self::run).
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
        let in_flight = Arc::new(InFlight::default());
        let context = SourceContext {
            layout: settings.layout.clone(),
            in_flight: in_flight.clone(),
            telemetry: telemetry.clone(),
            changes: Mutex::new(Vec::new()),
            fatal: Mutex::new(None),
        };
        let consumer: BaseConsumer<SourceContext> = consumer_config.create_with_context(context)?;
        let topics: Vec<&str> = settings.topics.iter().map(|(t, _)| t.as_str()).collect();
        consumer.subscribe(&topics)?;
        let dlq = DeadLetterSink::new(settings.client.clone(), &settings.dlq_topic)?;
        telemetry.set_ready(false, "waiting for a partition assignment");
        let counters = settings
            .topics
            .iter()
            .map(|(t, _)| telemetry.topic_counters(t))
            .collect();
        Ok(Source {
            consumer,
            state: SourceState {
                counters,
                flusher: FlushWorker::start(
                    writer.clone(),
                    dlq,
                    settings.dlq_topic.clone(),
                    telemetry.clone(),
                    in_flight,
                ),
                writer,
                settings,
                telemetry,
                partitions: HashMap::new(),
                resume_at: HashMap::new(),
            },
        })
    }

    /// Consumes until `shutdown` is set, then flushes everything and commits.
    pub fn run(self, shutdown: &AtomicBool) -> Result<(), SourceError> {
        let Source {
            consumer,
            mut state,
        } = self;
        let mut last_age_check = Instant::now();
        while !shutdown.load(Ordering::Relaxed) {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => state.handle(&consumer, &message)?,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    state.telemetry.broker_error(&e.to_string());
                }
                None => {}
            }
            state.apply_assignment_changes(&consumer)?;
            if last_age_check.elapsed() >= Duration::from_millis(200) {
                last_age_check = Instant::now();
                state.flush_aged(&consumer)?;
                state.commit_durable(&consumer, CommitMode::Async, false)?;
            }
        }
        tracing::info!("shutting down: flushing every partition");
        state.apply_assignment_changes(&consumer)?;
        let keys: Vec<_> = state.partitions.keys().copied().collect();
        state.flush_all(&consumer, &keys, CommitMode::Sync)?;
        state.commit_durable(&consumer, CommitMode::Sync, true)?;
        consumer.unsubscribe();
        Ok(())
    }
}

impl SourceState {
    fn apply_assignment_changes(
        &mut self,
        consumer: &BaseConsumer<SourceContext>,
    ) -> Result<(), SourceError> {
        if let Some(error) = consumer
            .context()
            .fatal
            .lock()
            .ok()
            .and_then(|mut f| f.take())
        {
            return Err(error);
        }
        let changes = match consumer.context().changes.lock() {
            Ok(mut c) => std::mem::take(&mut *c),
            Err(_) => return Ok(()),
        };
        for change in changes {
            match change {
                AssignmentChange::Assigned(list) => {
                    for (topic, partition, next) in list {
                        if let Some(index) = self.topic_index(&topic) {
                            self.partitions.remove(&(index, partition));
                            self.resume_at.insert((index, partition), next);
                        }
                    }
                    self.telemetry
                        .assigned_partitions
                        .set(self.resume_at.len() as i64);
                    self.telemetry.set_ready(true, "consuming");
                }
                AssignmentChange::Revoked(list) => {
                    for (topic, partition) in list {
                        if let Some(index) = self.topic_index(&topic) {
                            // Unflushed rows are dropped: the next owner replays them
                            // from the checkpoint, so nothing is lost or doubled.
                            self.partitions.remove(&(index, partition));
                            self.resume_at.remove(&(index, partition));
                        }
                    }
                    self.telemetry
                        .assigned_partitions
                        .set(self.resume_at.len() as i64);
                    if self.resume_at.is_empty() {
                        self.telemetry.set_ready(false, "no partitions assigned");
                    }
                }
            }
        }
        Ok(())
    }

    fn topic_index(&self, topic: &str) -> Option<usize> {
        self.settings.topics.iter().position(|(t, _)| t == topic)
    }

    fn handle(
        &mut self,
        consumer: &BaseConsumer<SourceContext>,
        message: &rdkafka::message::BorrowedMessage<'_>,
    ) -> Result<(), SourceError> {
        let Some(index) = self.topic_index(message.topic()) else {
            return Ok(());
        };
        let partition = message.partition();
        let offset = message.offset();
        let key = (index, partition);
        let buffer = match self.partitions.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let (topic, signal) = &self.settings.topics[index];
                e.insert(PartitionBuffer {
                    topic: Arc::from(topic.as_str()),
                    partition,
                    signal: *signal,
                    decoder: Decoder::new(*signal, self.settings.limits),
                    dead_letters: Vec::new(),
                    dead_letter_bytes: 0,
                    first_offset: None,
                    last_offset: -1,
                    expected_next: self.resume_at.get(&key).copied().flatten(),
                    opened_at: Instant::now(),
                })
            }
        };
        if let Some(expected) = buffer.expected_next {
            if offset < expected {
                // Already archived (below the checkpoint): never write it twice.
                return Ok(());
            }
            if offset > expected {
                OffsetsSkipped {
                    topic: &buffer.topic,
                    partition,
                    expected,
                    received: offset,
                }
                .emit(&self.telemetry);
            }
        }
        buffer.expected_next = Some(offset + 1);
        if buffer.first_offset.is_none() {
            buffer.first_offset = Some(offset);
            buffer.opened_at = Instant::now();
        }
        buffer.last_offset = offset;
        let kafka_ts_ms = message.timestamp().to_millis();
        let pos = SourcePosition {
            topic: &buffer.topic,
            partition,
            offset,
            kafka_ts_ms,
        };
        match buffer.decoder.decode(message.payload(), &pos) {
            Ok(records) => MessageDecoded {
                counters: &self.counters[index],
                records,
            }
            .emit(&self.telemetry),
            Err(error) => {
                let reason = error.to_string();
                MessageDeadLettered {
                    topic: &buffer.topic,
                    partition,
                    offset,
                    kind: error.kind(),
                    reason: &reason,
                }
                .emit(&self.telemetry);
                let payload = message.payload().map(<[u8]>::to_vec);
                buffer.dead_letter_bytes += payload.as_ref().map_or(0, Vec::len) + reason.len();
                buffer.dead_letters.push(DeadLetter {
                    topic: buffer.topic.clone(),
                    partition,
                    offset,
                    kafka_ts_ms: kafka_ts_ms.unwrap_or(0),
                    reason,
                    payload,
                });
            }
        }
        if buffer.buffered_bytes() as u64 >= self.settings.roll_bytes {
            self.flush_all(consumer, &[key], CommitMode::Async)?;
        }
        Ok(())
    }

    fn flush_aged(&mut self, consumer: &BaseConsumer<SourceContext>) -> Result<(), SourceError> {
        let due: Vec<_> = self
            .partitions
            .iter()
            .filter(|(_, b)| {
                b.first_offset.is_some() && b.opened_at.elapsed() >= self.settings.roll_interval
            })
            .map(|(k, _)| *k)
            .collect();
        self.flush_all(consumer, &due, CommitMode::Async)
    }

    /// Hands the buffered rows of `keys` to the flush worker; offsets are committed
    /// when it reports them durable ([`Self::commit_durable`]).
    fn flush_all(
        &mut self,
        consumer: &BaseConsumer<SourceContext>,
        keys: &[(usize, i32)],
        mode: CommitMode,
    ) -> Result<(), SourceError> {
        let mut round = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(flush) = self.prepare(*key)? {
                round.push(flush);
            }
        }
        self.flusher.submit(round)?;
        self.commit_durable(consumer, mode, false)
    }

    /// Commits the offsets of partitions the worker made durable; with `wait`, first
    /// waits for every submitted round.
    fn commit_durable(
        &mut self,
        consumer: &BaseConsumer<SourceContext>,
        mode: CommitMode,
        wait: bool,
    ) -> Result<(), SourceError> {
        let durable = self.flusher.completed(wait)?;
        if durable.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for d in &durable {
            tpl.add_partition_offset(&d.topic, d.partition, Offset::Offset(d.next_offset))?;
        }
        if let Err(e) = consumer.commit(&tpl, mode) {
            // The archive checkpoint is the source of truth; a failed Kafka commit
            // (for example of a partition revoked meanwhile) only delays what lag
            // monitors see.
            tracing::warn!(error = %e, partitions = durable.len(), "offset commit failed");
        }
        if self.telemetry.readiness().is_err() && !self.resume_at.is_empty() {
            self.telemetry.set_ready(true, "consuming");
        }
        Ok(())
    }

    /// Takes a partition's buffered rows and plans their files and commit records.
    fn prepare(&mut self, key: (usize, i32)) -> Result<Option<PreparedFlush>, SourceError> {
        let Some(buffer) = self.partitions.get_mut(&key) else {
            return Ok(None);
        };
        let Some(first) = buffer.first_offset.take() else {
            return Ok(None);
        };
        let started = Instant::now();
        let last = buffer.last_offset;
        let rows = buffer.decoder.finish();
        let letters = std::mem::take(&mut buffer.dead_letters);
        buffer.dead_letter_bytes = 0;
        let topic = buffer.topic.clone();
        let partition = buffer.partition;
        let stem = input_file_stem(&topic, partition, first, last);
        let mut plan = if rows.num_rows() > 0 {
            self.writer.plan(buffer.signal.table(), &rows, &stem)?
        } else {
            Vec::new()
        };
        if !letters.is_empty() {
            plan.extend(
                self.writer
                    .plan(Table::Dlq, &dead_letter_batch(&letters), &stem)?,
            );
        }
        let intent = Intent {
            first_offset: first,
            files: plan.iter().map(|f| f.path.clone()).collect(),
        };
        let checkpoint = Checkpoint {
            topic: topic.to_string(),
            partition,
            next_offset: last + 1,
            files: intent.files.clone(),
        };
        Ok(Some(PreparedFlush {
            topic,
            partition,
            plan,
            letters,
            intent,
            checkpoint,
            started,
        }))
    }
}
