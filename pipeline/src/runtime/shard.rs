//! Shards: the threads that own source partitions and do the per-record work.
//!
//! Owns: for each partition of its share, the rows decoded since the last flush (or
//! the dead letters), the next offset it expects (to notice offsets lost to
//! retention, and a log that went back: a new epoch), and when to flush (by size, by
//! age as [`crate::runtime::roll`] says, or to stay within its memory budget). A
//! shard reads only its own input channel and its own partitions, so the hot path
//! takes no locks; every core decodes at once while the poll thread only polls.
//!
//! Does not own: polling Kafka or committing offsets (see [`crate::source`]), or
//! making files durable (see [`crate::runtime::flush`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use arrow::array::RecordBatch;
use cara_operators::logs::signals::TemplateState;
use cara_operators::operator::{
    Emitted, Operator, OperatorError, OutboundMessage, PartitionContext,
};
use cara_operators::schema::Table;
use cara_operators::slo::SloStatus;

use crate::alerts::RaisedAlert;
use crate::archive::claim::ClaimToken;
use crate::archive::commit::Checkpoint;
use crate::archive::layout::{idle_file_stem, input_file_stem};
use crate::archive::state::StateFile;
use crate::archive::writer::{ParquetWriter, PlannedFile};
use crate::dataflow::{Stages, Wiring};
use crate::decode::{DecodeLimits, Decoder, Signal, SourcePosition, Unused, WireFormat};
use crate::dlq::{dead_letter_batch, DeadLetter};
use crate::internal_events::*;
use crate::telemetry::{Telemetry, TopicCounters};
use crate::templates::TemplateCatalog;

use super::error::{FatalSlot, RuntimeError};
use super::flush::{FlushSubmitter, PreparedFlush, SendProgress};
use super::input::{AssignedPartition, MessageChunk, PartitionKey, ShardInput};
use super::outputs::{plan_outputs, OutputPlace};
use super::roll::{over_budget, wall_clock_ms, BufferAge, RollPolicy};
use super::watermarks::{PartitionMark, WatermarkBoard};

/// How often a shard looks for partitions due by age.
const AGE_CHECK: Duration = Duration::from_millis(200);

/// What every shard shares, read-only.
pub(crate) struct ShardSettings {
    /// Topic name and signal, by topic index.
    pub topics: Vec<(Arc<str>, Signal, WireFormat)>,
    pub limits: DecodeLimits,
    /// When buffers are due by size and age.
    pub roll: RollPolicy,
    /// Payload bytes this shard buffers at most (its share of
    /// `archive.max_buffered_bytes`).
    pub buffer_budget: u64,
    /// The operator stacks of every signal (see [`crate::dataflow`]).
    pub stages: Stages,
    /// What building them needs: input partitions and the process's state budget
    /// (`runtime.max_state_bytes`).
    pub wiring: Wiring,
    /// Whether the budget refusing keys was logged (once per process).
    pub state_budget_reported: AtomicBool,
    pub writer: ParquetWriter,
    pub telemetry: Arc<Telemetry>,
    /// Where log partitions publish their templates for the HTTP API.
    pub templates: Arc<TemplateCatalog>,
    /// After this long without messages (processing time) a partition is idle: it
    /// stops holding the topic's watermark back and its own is raised to the topic's.
    pub idle_timeout: Duration,
    /// Every partition's watermark and idleness, across shards.
    pub watermarks: Arc<WatermarkBoard>,
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
    /// The next offset this process expects: the checkpoint's, 0 for a partition
    /// never archived, then one past the last message read.
    expected_next: i64,
    /// The partition's archive epoch, named in its files and checkpoints.
    epoch: u32,
    /// When the buffer opened and whether it holds backlog.
    age: BufferAge,
    /// When the last message arrived (or the partition was assigned).
    last_message_at: Instant,
    /// The operator of the partition's signal, if any is enabled.
    operator: Option<Box<dyn Operator>>,
    /// Topic and partition as the operator's derived rows name them.
    context: PartitionContext,
    /// What this partition reports to the other shards.
    mark: Arc<PartitionMark>,
    /// Whether its operator's state limit was reported already.
    limit_reported: bool,
    /// The state file the partition's last checkpoint names.
    state_file: Option<StateFile>,
    /// The claim this process's flushes of the partition commit under.
    claim: ClaimToken,
    /// Whether the operator's state moved since that file was written.
    state_moved: bool,
}

impl PartitionBuffer {
    fn buffered_bytes(&self) -> usize {
        self.decoder.payload_bytes() + self.dead_letter_bytes
    }

    /// What the flush with file stem `stem` saves of the operator's state: a new
    /// state file when the state moved since the last one, else the last one again.
    fn save_state(&mut self, stem: &str) -> StateUpdate {
        let Some(operator) = self.operator.as_ref() else {
            return StateUpdate::default();
        };
        if !self.state_moved && self.state_file.is_some() {
            return StateUpdate {
                file: self.state_file.clone(),
                ..StateUpdate::default()
            };
        }
        self.state_moved = false;
        let bytes = snapshot_or_log(operator.snapshot(), &self.topic, self.partition);
        let file = bytes.as_ref().map(|b| StateFile::for_flush(stem, b.len()));
        let replaced = std::mem::replace(&mut self.state_file, file.clone())
            .map(|f| f.name)
            .filter(|name| file.as_ref().is_none_or(|f| &f.name != name));
        StateUpdate {
            file,
            bytes,
            replaced,
        }
    }
}

/// What a flush saves of its partition's operator state.
#[derive(Default)]
struct StateUpdate {
    /// The state file its checkpoint names (`None`: no operator, or its state
    /// could not be encoded and it restarts afresh).
    file: Option<StateFile>,
    /// The encoded state to write to that file, when it moved.
    bytes: Option<Vec<u8>>,
    /// The state file the checkpoint replaces.
    replaced: Option<String>,
}

/// Per-topic counts gathered over a chunk and added to the shared counters once.
#[derive(Default, Clone, Copy)]
struct ChunkCounts {
    messages: u64,
    records: u64,
}

/// One shard's state, driven by its thread.
struct Shard {
    settings: Arc<ShardSettings>,
    flusher: FlushSubmitter,
    counters: Vec<TopicCounters>,
    /// Looked up once per message, so with a fast hash rather than SipHash.
    partitions: HashMap<PartitionKey, PartitionBuffer, foldhash::fast::RandomState>,
    spent: Sender<MessageChunk>,
    /// Whether the consumer said it had read every partition to its end, with no
    /// message since.
    drained: bool,
    /// The backlog bytes the whole consumer read before that notice.
    drained_backlog_read: u64,
}

/// Starts a shard thread reading `inputs` and returning chunks on `spent`; it stops when the sender side closes or
/// on a fatal error, which it leaves in `fatal`.
pub(crate) fn spawn(
    index: usize,
    settings: Arc<ShardSettings>,
    flusher: FlushSubmitter,
    inputs: Receiver<ShardInput>,
    spent: Sender<MessageChunk>,
    fatal: Arc<FatalSlot>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("cara-shard-{index}"))
        .spawn(move || {
            let counters = settings
                .topics
                .iter()
                .map(|(t, _, _)| settings.telemetry.topic_counters(t))
                .collect();
            let mut shard = Shard {
                settings,
                flusher,
                counters,
                partitions: HashMap::default(),
                spent,
                drained: false,
                drained_backlog_read: 0,
            };
            if let Err(error) = shard.run(&inputs) {
                fatal.raise(error);
            }
        })
}

impl Shard {
    fn run(&mut self, inputs: &Receiver<ShardInput>) -> Result<(), RuntimeError> {
        let mut next_age_check = Instant::now() + AGE_CHECK;
        // A drained backlog buffer may fall due before the next periodic check.
        let mut next_backlog_due: Option<Instant> = None;
        loop {
            let wake = next_backlog_due.map_or(next_age_check, |d| d.min(next_age_check));
            match inputs.recv_timeout(wake.saturating_duration_since(Instant::now())) {
                Ok(ShardInput::Messages(chunk)) => {
                    self.drained = false;
                    self.drained_backlog_read = 0;
                    next_backlog_due = None;
                    self.handle_chunk(&chunk)?;
                    // Back to the poll thread for reuse; if it has gone, drop it.
                    let _ = self.spent.send(chunk);
                }
                Ok(ShardInput::Assign(list)) => self.assign(list),
                Ok(ShardInput::Revoke(keys, ack)) => {
                    self.revoke(keys);
                    let _ = ack.send(());
                }
                Ok(ShardInput::FlushAll(ack)) => {
                    let keys: Vec<_> = self.partitions.keys().copied().collect();
                    self.flush(&keys)?;
                    let _ = ack.send(());
                }
                Ok(ShardInput::Drained { backlog_read }) => {
                    self.drained = true;
                    self.drained_backlog_read = backlog_read;
                    next_backlog_due = self.flush_aged()?;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            let now = Instant::now();
            if next_backlog_due.is_some_and(|due| now >= due) {
                next_backlog_due = self.flush_aged()?;
            }
            if now >= next_age_check {
                next_age_check = now + AGE_CHECK;
                next_backlog_due = self.flush_aged()?;
                self.advance_idle()?;
            }
        }
    }

    fn assign(&mut self, list: Vec<AssignedPartition>) {
        for assigned in list {
            let (topic_index, partition) = assigned.key;
            let Some((topic, signal, format)) = self.settings.topics.get(topic_index) else {
                continue;
            };
            let operator = self.settings.stages.operator(
                &self.settings.wiring,
                *signal,
                assigned.operator_state.as_deref(),
                topic,
                partition,
            );
            let watermark = operator.as_ref().and_then(|o| o.watermark());
            let mark = self.settings.watermarks.register(assigned.key, watermark);
            let now = Instant::now();
            self.partitions.insert(
                assigned.key,
                PartitionBuffer {
                    topic: topic.clone(),
                    partition,
                    signal: *signal,
                    decoder: Decoder::with_format(*signal, *format, self.settings.limits),
                    dead_letters: Vec::new(),
                    dead_letter_bytes: 0,
                    first_offset: None,
                    last_offset: -1,
                    // Never archived: the log is expected from its start, so records
                    // deleted before the first fetch count as lost too.
                    expected_next: assigned.next_offset.unwrap_or(0),
                    epoch: assigned.epoch,
                    age: BufferAge {
                        opened_at: now,
                        backlog: false,
                    },
                    last_message_at: now,
                    operator,
                    context: PartitionContext {
                        topic: topic.clone(),
                        partition,
                    },
                    mark,
                    limit_reported: false,
                    // Restoring may have changed the state (a new configuration, an
                    // unreadable part started afresh): the first flush saves it.
                    state_moved: true,
                    state_file: assigned.state_file,
                    claim: assigned.claim,
                },
            );
        }
    }

    fn revoke(&mut self, keys: Vec<PartitionKey>) {
        for key in keys {
            self.partitions.remove(&key);
            self.settings.watermarks.remove(&key);
        }
    }

    fn handle_chunk(&mut self, chunk: &MessageChunk) -> Result<(), RuntimeError> {
        let mut counts = vec![ChunkCounts::default(); self.counters.len()];
        let mut due = Vec::new();
        let chunk_arrived = Instant::now();
        let wall_ms = wall_clock_ms();
        for message in chunk.messages() {
            // A partition not (or no longer) ours: its owner replays it from the
            // checkpoint, so dropping the message loses nothing.
            let Some(expected) = self.partitions.get(&message.key).map(|b| b.expected_next) else {
                continue;
            };
            let offset = message.offset;
            if offset < expected {
                self.start_new_epoch(message.key, offset)?;
            }
            let Some(buffer) = self.partitions.get_mut(&message.key) else {
                continue;
            };
            let expected = buffer.expected_next;
            if offset > expected {
                OffsetsSkipped {
                    topic: &buffer.topic,
                    partition: buffer.partition,
                    expected,
                    received: offset,
                }
                .emit(&self.settings.telemetry);
            }
            buffer.expected_next = offset + 1;
            buffer.last_message_at = chunk_arrived;
            if buffer.first_offset.is_none() {
                buffer.first_offset = Some(offset);
                buffer.age = self
                    .settings
                    .roll
                    .open(chunk_arrived, message.kafka_ts_ms, wall_ms);
            }
            buffer.last_offset = offset;
            let payload = chunk.payload(message);
            let pos = SourcePosition {
                topic: &buffer.topic,
                partition: buffer.partition,
                offset,
                kafka_ts_ms: message.kafka_ts_ms,
            };
            match buffer.decoder.decode(payload, &pos) {
                Ok(records) => {
                    let c = &mut counts[message.key.0];
                    c.messages += 1;
                    c.records += records as u64;
                    let unknown = buffer.decoder.take_unknown_levels();
                    if unknown > 0 {
                        UnknownLogLevels {
                            topic: &buffer.topic,
                            lines: unknown,
                        }
                        .emit(&self.settings.telemetry);
                    }
                    let unused = buffer.decoder.take_unused();
                    if unused != Unused::default() {
                        OtlpValuesUnused {
                            topic: &buffer.topic,
                            unused,
                        }
                        .emit(&self.settings.telemetry);
                    }
                }
                Err(error) => {
                    let reason = error.to_string();
                    MessageDeadLettered {
                        topic: &buffer.topic,
                        partition: buffer.partition,
                        offset,
                        kind: error.kind(),
                        reason: &reason,
                    }
                    .emit(&self.settings.telemetry);
                    let payload = payload.map(<[u8]>::to_vec);
                    buffer.dead_letter_bytes += payload.as_ref().map_or(0, Vec::len) + reason.len();
                    buffer.dead_letters.push(DeadLetter {
                        topic: buffer.topic.clone(),
                        partition: buffer.partition,
                        offset,
                        kafka_ts_ms: message.kafka_ts_ms.unwrap_or(0),
                        reason,
                        payload,
                    });
                }
            }
            // Bytes, or hours: each hour of event time is a file per table.
            let full = self.settings.roll.full(buffer.buffered_bytes() as u64)
                || buffer.decoder.hours_spanned() > self.settings.limits.max_hours_per_message;
            if full && !due.contains(&message.key) {
                due.push(message.key);
            }
        }
        let total: u64 = self
            .partitions
            .values()
            .map(|b| b.buffered_bytes() as u64)
            .sum();
        if total > self.settings.buffer_budget {
            let buffered: Vec<(PartitionKey, u64)> = self
                .partitions
                .iter()
                .map(|(key, b)| (*key, b.buffered_bytes() as u64))
                .collect();
            let forced = over_budget(&buffered, self.settings.buffer_budget);
            BufferBudgetReached {
                partitions: forced.len(),
                budget_bytes: self.settings.buffer_budget,
            }
            .emit(&self.settings.telemetry);
            for key in forced {
                if !due.contains(&key) {
                    due.push(key);
                }
            }
        }
        for (counters, c) in self.counters.iter().zip(&counts) {
            if c.messages > 0 {
                MessagesDecoded {
                    counters,
                    messages: c.messages,
                    records: c.records,
                }
                .emit(&self.settings.telemetry);
            }
        }
        self.flush(&due)
    }

    /// The partition's log went back: within one assignment librdkafka delivers a
    /// partition's offsets in order, from the checkpoint on, so an earlier one means
    /// the broker no longer has what was read (a reset or replaced broker, a
    /// recreated topic) and librdkafka fell back to the log's start. The new log is
    /// archived as a new epoch, never taken for records already archived; what the
    /// buffer holds of the old log is flushed first, under the old epoch. Detected at
    /// the first such message, whether the partition was just resumed or has been
    /// read for days.
    fn start_new_epoch(&mut self, key: PartitionKey, delivered: i64) -> Result<(), RuntimeError> {
        self.flush(&[key])?;
        let Some(buffer) = self.partitions.get_mut(&key) else {
            return Ok(());
        };
        buffer.epoch += 1;
        PartitionLogReset {
            topic: &buffer.topic,
            partition: buffer.partition,
            checkpoint: buffer.expected_next,
            delivered,
            epoch: buffer.epoch,
        }
        .emit(&self.settings.telemetry);
        buffer.expected_next = 0;
        Ok(())
    }

    /// Flushes the buffers due by age (see [`crate::runtime::roll`]); returns when the
    /// earliest backlog buffer left waiting falls due, if the consumer is drained. The
    /// catch-up's size is what the consumer read of backlog before it drained plus
    /// what this shard's backlog buffers hold.
    fn flush_aged(&mut self) -> Result<Option<Instant>, RuntimeError> {
        let now = Instant::now();
        let mut due = Vec::new();
        let mut next_backlog_due: Option<Instant> = None;
        // Only a drained consumer's backlog is flushed early: no sum otherwise.
        let backlog_bytes: u64 = if self.drained {
            let buffered: u64 = self
                .partitions
                .values()
                .filter(|b| b.first_offset.is_some() && b.age.backlog)
                .map(|b| b.buffered_bytes() as u64)
                .sum();
            buffered.saturating_add(self.drained_backlog_read)
        } else {
            0
        };
        for (key, buffer) in &self.partitions {
            if buffer.first_offset.is_none() {
                continue;
            }
            let at = self
                .settings
                .roll
                .due_at(buffer.age, self.drained, backlog_bytes);
            if now >= at {
                due.push(*key);
            } else if self.drained && buffer.age.backlog {
                next_backlog_due = Some(next_backlog_due.map_or(at, |n| n.min(at)));
            }
        }
        self.flush(&due)?;
        Ok(next_backlog_due)
    }

    /// Marks partitions idle or active for the other shards, and raises the
    /// watermark of each idle partition with nothing buffered to the topic's (see
    /// [`crate::runtime::watermarks`]); what that closes is flushed at once.
    fn advance_idle(&mut self) -> Result<(), RuntimeError> {
        let idle_timeout = self.settings.idle_timeout;
        let mut round = Vec::new();
        let keys: Vec<PartitionKey> = self.partitions.keys().copied().collect();
        for key in keys {
            let Some(buffer) = self.partitions.get_mut(&key) else {
                continue;
            };
            let idle = buffer.last_message_at.elapsed() >= idle_timeout;
            buffer.mark.set_idle(idle);
            if !idle || buffer.first_offset.is_some() {
                continue;
            }
            let Some(operator) = buffer.operator.as_mut() else {
                continue;
            };
            // A partition never read from has consumed nothing: its checkpoint may
            // say so (offset 0; a retention gap is then reported when data comes).
            let next_offset = buffer.expected_next;
            let Some(target) = self.settings.watermarks.idle_target(&key) else {
                continue;
            };
            if operator.watermark().is_some_and(|w| w >= target) {
                continue;
            }
            let mut emitted = Emitted::default();
            if let Err(error) = operator.advance_watermark(&buffer.context, target, &mut emitted) {
                tracing::error!(topic = %buffer.topic, partition = buffer.partition, %error, "watermark not advanced");
                continue;
            }
            buffer.mark.set_watermark(operator.watermark());
            WatermarkRaised {
                topic: &buffer.topic,
                partition: buffer.partition,
                watermark_ms: target,
            }
            .emit(&self.settings.telemetry);
            buffer.state_moved = true;
            if emitted.is_empty() {
                // Nothing closed; the raise is checkpointed with the next flush.
                continue;
            }
            let topic = buffer.topic.clone();
            let partition = buffer.partition;
            let epoch = buffer.epoch;
            let claim = buffer.claim.clone();
            let stem = idle_file_stem(&topic, partition, epoch, next_offset, target);
            let state = buffer.save_state(&stem);
            let mut plan = Vec::new();
            let outputs = self.plan_emitted(
                emitted,
                None,
                next_offset - 1,
                &topic,
                partition,
                &stem,
                &mut plan,
            )?;
            round.push(prepared(
                topic,
                partition,
                (epoch, claim),
                next_offset,
                plan,
                Vec::new(),
                outputs,
                state,
                Instant::now(),
            ));
        }
        self.flusher.submit(round)
    }

    /// Hands the buffered rows of `keys` to the flush worker as one round.
    fn flush(&mut self, keys: &[PartitionKey]) -> Result<(), RuntimeError> {
        let mut round = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(flush) = self.prepare(*key)? {
                round.push(flush);
            }
        }
        self.flusher.submit(round)
    }

    /// Takes a partition's buffered rows and plans their files and commit records.
    fn prepare(&mut self, key: PartitionKey) -> Result<Option<PreparedFlush>, RuntimeError> {
        let Some(buffer) = self.partitions.get_mut(&key) else {
            return Ok(None);
        };
        let Some(first) = buffer.first_offset.take() else {
            return Ok(None);
        };
        let started = Instant::now();
        let last = buffer.last_offset;
        let mut rows = buffer.decoder.finish();
        let letters = std::mem::take(&mut buffer.dead_letters);
        buffer.dead_letter_bytes = 0;
        let topic = buffer.topic.clone();
        let partition = buffer.partition;
        let epoch = buffer.epoch;
        let claim = buffer.claim.clone();
        let stem = input_file_stem(&topic, partition, epoch, first, last);
        // Operators see the rows in offset order; their state after the last row is
        // saved in this flush's checkpoint, so a replay resumes exactly here.
        let mut emitted = Emitted::default();
        if let Some(operator) = buffer.operator.as_mut() {
            if rows.num_rows() > 0 {
                buffer.state_moved = true;
                if let Err(error) = operator.process(&buffer.context, &rows, &mut emitted) {
                    tracing::error!(topic = %topic, partition, %error, "operator skipped a batch");
                }
            }
            buffer.mark.set_watermark(operator.watermark());
        }
        let state = buffer.save_state(&stem);
        let operator_name = buffer.operator.as_ref().map_or("", |o| o.name());
        for (stage, counts) in emitted.counts_by_part(operator_name) {
            if counts.late > 0 {
                LateRecords {
                    topic: &topic,
                    stage,
                    records: counts.late,
                }
                .emit(&self.settings.telemetry);
            }
            if counts.over_limit > 0 {
                StateLimitReached {
                    topic: &topic,
                    partition,
                    refused: counts.over_limit,
                    first: !buffer.limit_reported,
                    limit: StateLimit::Partition(Stages::state_limit(stage)),
                }
                .emit(&self.settings.telemetry);
                buffer.limit_reported = true;
            }
            if counts.over_budget > 0 {
                StateLimitReached {
                    topic: &topic,
                    partition,
                    refused: counts.over_budget,
                    first: !self
                        .settings
                        .state_budget_reported
                        .swap(true, Ordering::Relaxed),
                    limit: StateLimit::Process(self.settings.wiring.state_budget.limit()),
                }
                .emit(&self.settings.telemetry);
            }
        }
        self.settings
            .telemetry
            .state_budget_used
            .set(i64::try_from(self.settings.wiring.state_budget.used()).unwrap_or(i64::MAX));
        let signal = buffer.signal;
        // Operators may fill columns of the input rows (log templates).
        if let Some(annotated) = emitted.rows.take() {
            rows = annotated;
        }
        let writer = &self.settings.writer;
        let mut plan = if rows.num_rows() > 0 {
            writer.plan(signal.table(), &rows, &stem)?
        } else {
            Vec::new()
        };
        if !letters.is_empty() {
            plan.extend(writer.plan(Table::Dlq, &dead_letter_batch(&letters), &stem)?);
        }
        let outputs = self.plan_emitted(
            emitted,
            Some(&rows),
            last,
            &topic,
            partition,
            &stem,
            &mut plan,
        )?;
        Ok(Some(prepared(
            topic,
            partition,
            (epoch, claim),
            last + 1,
            plan,
            letters,
            outputs,
            state,
            started,
        )))
    }

    /// Plans the derived rows and alerts of `emitted` into `plan` and publishes its
    /// templates; returns the alerts with their source rows (`rows`, or
    /// `fallback_offset` for alerts that no row raised) and the outbound records.
    #[allow(clippy::too_many_arguments)]
    fn plan_emitted(
        &self,
        mut emitted: Emitted,
        rows: Option<&RecordBatch>,
        fallback_offset: i64,
        topic: &Arc<str>,
        partition: i32,
        stem: &str,
        plan: &mut Vec<PlannedFile>,
    ) -> Result<(Vec<RaisedAlert>, Vec<OutboundMessage>), RuntimeError> {
        let writer = &self.settings.writer;
        let telemetry = &self.settings.telemetry;
        for templates in emitted.published.take::<Vec<TemplateState>>() {
            let created = templates.iter().filter(|t| t.created).count();
            telemetry.log_templates_created.inc_by(created as u64);
            self.settings.templates.update(topic, partition, &templates);
        }
        for statuses in emitted.published.take::<Vec<SloStatus>>() {
            SloStatusesSent { statuses }.emit(telemetry);
        }
        let at = OutputPlace {
            topic,
            partition,
            stem,
            rows,
            fallback_offset,
        };
        let alerts = plan_outputs(writer, &emitted.tables, emitted.alerts, &at, plan)?;
        if !alerts.is_empty() {
            AlertsRaised { alerts: &alerts }.emit(telemetry);
        }
        Ok((alerts, emitted.messages))
    }
}

/// A flush of `plan` that moves the partition's checkpoint to `next_offset`.
#[allow(clippy::too_many_arguments)]
fn prepared(
    topic: Arc<str>,
    partition: i32,
    (epoch, claim): (u32, ClaimToken),
    next_offset: i64,
    plan: Vec<PlannedFile>,
    letters: Vec<DeadLetter>,
    (alerts, messages): (Vec<RaisedAlert>, Vec<OutboundMessage>),
    state: StateUpdate,
    started: Instant,
) -> PreparedFlush {
    let checkpoint = Checkpoint {
        topic: topic.to_string(),
        partition,
        next_offset,
        files: plan.iter().map(|f| f.path.clone()).collect(),
        operator_state: None,
        state: state.file,
        epoch,
    };
    PreparedFlush {
        topic,
        partition,
        claim,
        plan,
        letters,
        checkpoint,
        state: state.bytes,
        replaced_state: state.replaced,
        alerts,
        messages,
        started,
        sent: SendProgress::default(),
    }
}

/// The snapshot, or `None` (logged) when it could not be serialised: the
/// checkpoint then restarts the operator rather than storing a broken state.
fn snapshot_or_log(
    snapshot: Result<Vec<u8>, OperatorError>,
    topic: &str,
    partition: i32,
) -> Option<Vec<u8>> {
    snapshot
        .map_err(|error| {
            tracing::error!(topic, partition, %error, "operator state not serialisable; not checkpointed")
        })
        .ok()
}
