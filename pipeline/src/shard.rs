//! Shards: the threads that own source partitions and do the per-record work.
//!
//! Owns: for each partition of its share, the rows decoded since the last flush (or
//! the dead letters), the next offset it expects (to skip what the archive already
//! holds and to notice offsets lost to retention), and when to flush (by size or
//! age). A shard reads only its own input channel and its own partitions, so the hot
//! path takes no locks; every core decodes at once while the poll thread only polls.
//!
//! Does not own: polling Kafka or committing offsets (see [`crate::source`]), or
//! making files durable (see [`crate::flush`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use cara_operators::alert::AlertRule;
use cara_operators::anomaly::alerting::{MetricAlerting, WindowSettings};
use cara_operators::anomaly::operator::AnomalyLimits;
use cara_operators::anomaly::ScorerConfig;

use crate::alerts::{alert_batch, metric_windows_batch, RaisedAlert, SourceRef};
use crate::archive::commit::{Checkpoint, Intent};
use crate::archive::layout::input_file_stem;
use crate::archive::writer::ParquetWriter;
use crate::decode::{DecodeLimits, Decoder, Signal, SourcePosition};
use crate::dlq::{dead_letter_batch, DeadLetter};
use crate::flush::{FlushSubmitter, PreparedFlush};
use crate::internal_events::*;
use crate::log_tables::{log_templates_batch, log_windows_batch, with_template_columns};
use crate::source::dispatch::MessageChunk;
use crate::source::SourceError;
use crate::telemetry::{Telemetry, TopicCounters};
use crate::templates::TemplateCatalog;
use cara_operators::logs::signals::{LogOperator, LogSettings};
use cara_operators::schema::Table;

/// A source partition: (index into the source's topic list, Kafka partition).
pub(crate) type PartitionKey = (usize, i32);

/// How often a shard looks for partitions due by age.
const AGE_CHECK: Duration = Duration::from_millis(200);

/// A partition given to a shard, with where its archive says to resume.
#[derive(Debug, Clone)]
pub(crate) struct AssignedPartition {
    pub key: PartitionKey,
    /// The first offset not yet archived; `None` for a partition never archived.
    pub next_offset: Option<i64>,
    /// Operator state saved with that checkpoint.
    pub operator_state: Option<String>,
}

/// What the poll thread sends a shard, in order.
pub(crate) enum ShardInput {
    /// Polled messages of the shard's partitions.
    Messages(MessageChunk),
    /// Partitions now owned.
    Assign(Vec<AssignedPartition>),
    /// Partitions no longer owned: drop their unflushed rows (the next owner replays
    /// them from the checkpoint), then acknowledge.
    Revoke(Vec<PartitionKey>, Sender<()>),
    /// Hand every buffered row to the flush worker, then acknowledge (shutdown).
    FlushAll(Sender<()>),
}

/// The first error that stopped a shard, for the poll thread to report.
#[derive(Default)]
pub(crate) struct FatalSlot {
    raised: AtomicBool,
    error: Mutex<Option<SourceError>>,
}

impl FatalSlot {
    /// Records `error` unless an earlier one is already there.
    pub fn raise(&self, error: SourceError) {
        if let Ok(mut e) = self.error.lock() {
            e.get_or_insert(error);
        }
        self.raised.store(true, Ordering::Release);
    }

    /// Takes the recorded error, if any; cheap when there is none.
    pub fn take(&self) -> Option<SourceError> {
        if !self.raised.load(Ordering::Acquire) {
            return None;
        }
        self.error.lock().ok().and_then(|mut e| e.take())
    }
}

/// What every shard shares, read-only.
pub(crate) struct ShardSettings {
    /// Topic name and signal, by topic index.
    pub topics: Vec<(Arc<str>, Signal)>,
    pub limits: DecodeLimits,
    pub roll_bytes: u64,
    pub roll_interval: Duration,
    pub writer: ParquetWriter,
    pub telemetry: Arc<Telemetry>,
    /// Anomaly scoring and alerting of metric partitions; `None` when disabled.
    pub alerting: Option<AlertingSettings>,
    /// The log operator of log partitions; `None` when disabled.
    pub logs: Option<LogSettings>,
    /// Where log partitions publish their templates for the HTTP API.
    pub templates: Arc<TemplateCatalog>,
}

/// How metric partitions are scored and alerted on.
#[derive(Debug, Clone)]
pub struct AlertingSettings {
    /// Detector tuning.
    pub scorer: ScorerConfig,
    /// State limits per partition.
    pub limits: AnomalyLimits,
    /// Alert rules.
    pub rules: Vec<AlertRule>,
    /// Tumbling windows of every scored series (table `metric_windows`).
    pub windows: Option<WindowSettings>,
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
    /// Operator state of a metrics partition.
    alerting: Option<MetricAlerting>,
    /// Operator state of a logs partition.
    log_operator: Option<LogOperator>,
}

impl PartitionBuffer {
    fn buffered_bytes(&self) -> usize {
        self.decoder.payload_bytes() + self.dead_letter_bytes
    }
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
    partitions: HashMap<PartitionKey, PartitionBuffer>,
    spent: Sender<MessageChunk>,
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
                .map(|(t, _)| settings.telemetry.topic_counters(t))
                .collect();
            let mut shard = Shard {
                settings,
                flusher,
                counters,
                partitions: HashMap::new(),
                spent,
            };
            if let Err(error) = shard.run(&inputs) {
                fatal.raise(error);
            }
        })
}

impl Shard {
    fn run(&mut self, inputs: &Receiver<ShardInput>) -> Result<(), SourceError> {
        let mut next_age_check = Instant::now() + AGE_CHECK;
        loop {
            let timeout = next_age_check.saturating_duration_since(Instant::now());
            match inputs.recv_timeout(timeout) {
                Ok(ShardInput::Messages(chunk)) => {
                    self.handle_chunk(&chunk)?;
                    // Back to the poll thread for reuse; if it has gone, drop it.
                    let _ = self.spent.send(chunk);
                }
                Ok(ShardInput::Assign(list)) => self.assign(list),
                Ok(ShardInput::Revoke(keys, ack)) => {
                    for key in keys {
                        self.partitions.remove(&key);
                    }
                    let _ = ack.send(());
                }
                Ok(ShardInput::FlushAll(ack)) => {
                    let keys: Vec<_> = self.partitions.keys().copied().collect();
                    self.flush(&keys)?;
                    let _ = ack.send(());
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            if Instant::now() >= next_age_check {
                next_age_check = Instant::now() + AGE_CHECK;
                self.flush_aged()?;
            }
        }
    }

    fn assign(&mut self, list: Vec<AssignedPartition>) {
        for assigned in list {
            let (topic_index, partition) = assigned.key;
            let Some((topic, signal)) = self.settings.topics.get(topic_index) else {
                continue;
            };
            let alerting = match (&self.settings.alerting, signal) {
                (Some(settings), Signal::Metrics) => Some(restore_alerting(
                    settings,
                    assigned.operator_state.as_deref(),
                    topic,
                    partition,
                )),
                _ => None,
            };
            let log_operator = match (&self.settings.logs, signal) {
                (Some(settings), Signal::Logs) => Some(restore_log_operator(
                    settings,
                    assigned.operator_state.as_deref(),
                    topic,
                    partition,
                )),
                _ => None,
            };
            self.partitions.insert(
                assigned.key,
                PartitionBuffer {
                    topic: topic.clone(),
                    partition,
                    signal: *signal,
                    decoder: Decoder::new(*signal, self.settings.limits),
                    dead_letters: Vec::new(),
                    dead_letter_bytes: 0,
                    first_offset: None,
                    last_offset: -1,
                    expected_next: assigned.next_offset,
                    opened_at: Instant::now(),
                    alerting,
                    log_operator,
                },
            );
        }
    }

    fn handle_chunk(&mut self, chunk: &MessageChunk) -> Result<(), SourceError> {
        let mut counts = vec![ChunkCounts::default(); self.counters.len()];
        let mut due = Vec::new();
        for message in chunk.messages() {
            // A partition not (or no longer) ours: its owner replays it from the
            // checkpoint, so dropping the message loses nothing.
            let Some(buffer) = self.partitions.get_mut(&message.key) else {
                continue;
            };
            let offset = message.offset;
            if let Some(expected) = buffer.expected_next {
                if offset < expected {
                    // Already archived (below the checkpoint): never write it twice.
                    continue;
                }
                if offset > expected {
                    OffsetsSkipped {
                        topic: &buffer.topic,
                        partition: buffer.partition,
                        expected,
                        received: offset,
                    }
                    .emit(&self.settings.telemetry);
                }
            }
            buffer.expected_next = Some(offset + 1);
            if buffer.first_offset.is_none() {
                buffer.first_offset = Some(offset);
                buffer.opened_at = Instant::now();
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
            if buffer.buffered_bytes() as u64 >= self.settings.roll_bytes
                && !due.contains(&message.key)
            {
                due.push(message.key);
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

    fn flush_aged(&mut self) -> Result<(), SourceError> {
        let due: Vec<_> = self
            .partitions
            .iter()
            .filter(|(_, b)| {
                b.first_offset.is_some() && b.opened_at.elapsed() >= self.settings.roll_interval
            })
            .map(|(k, _)| *k)
            .collect();
        self.flush(&due)
    }

    /// Hands the buffered rows of `keys` to the flush worker as one round.
    fn flush(&mut self, keys: &[PartitionKey]) -> Result<(), SourceError> {
        let mut round = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(flush) = self.prepare(*key)? {
                round.push(flush);
            }
        }
        self.flusher.submit(round)
    }

    /// Takes a partition's buffered rows and plans their files and commit records.
    fn prepare(&mut self, key: PartitionKey) -> Result<Option<PreparedFlush>, SourceError> {
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
        let stem = input_file_stem(&topic, partition, first, last);
        let writer = &self.settings.writer;
        // The log operator fills the template columns before the rows are written.
        let mut log_output = None;
        let mut operator_state = None;
        if let Some(operator) = buffer.log_operator.as_mut() {
            if rows.num_rows() > 0 {
                let late_before = operator.late_lines();
                match operator.process(&rows, &topic, partition) {
                    Ok(out) => {
                        match with_template_columns(&rows, &out) {
                            Ok(mined) => rows = mined,
                            Err(e) => tracing::error!(error = %e, "template columns not attached"),
                        }
                        log_output = Some(out);
                    }
                    Err(e) => tracing::error!(error = %e, "log batch not mined"),
                }
                let telemetry = &self.settings.telemetry;
                telemetry
                    .late_log_lines
                    .inc_by(operator.late_lines().saturating_sub(late_before));
            }
            operator_state = snapshot_or_log(operator.snapshot(), &topic, partition);
        }
        let mut plan = if rows.num_rows() > 0 {
            writer.plan(buffer.signal.table(), &rows, &stem)?
        } else {
            Vec::new()
        };
        if !letters.is_empty() {
            plan.extend(writer.plan(Table::Dlq, &dead_letter_batch(&letters), &stem)?);
        }
        // Operators see the rows in offset order; their state after the last row is
        // saved in this flush's checkpoint, so a replay resumes exactly here.
        let mut alerts = Vec::new();
        if let Some(out) = log_output {
            let telemetry = &self.settings.telemetry;
            let created = out.templates.iter().filter(|t| t.created).count();
            telemetry.log_templates_created.inc_by(created as u64);
            self.settings
                .templates
                .update(&topic, partition, &out.templates);
            // These batches are built from the tables' own schemas; a failure is a
            // bug, reported and skipped rather than stopping the partition.
            if !out.windows.is_empty() {
                match log_windows_batch(&out.windows, &topic, partition) {
                    Ok(batch) => plan.extend(writer.plan(Table::LogWindows, &batch, &stem)?),
                    Err(e) => tracing::error!(error = %e, "log_windows rows not built"),
                }
            }
            if out.templates.iter().any(|t| t.changed) {
                match log_templates_batch(&out.templates, &topic, partition) {
                    Ok(batch) => plan.extend(writer.plan(Table::LogTemplates, &batch, &stem)?),
                    Err(e) => tracing::error!(error = %e, "log_templates rows not built"),
                }
            }
            alerts = raise(out.alerts, &rows, &topic, partition);
            if !alerts.is_empty() {
                AlertsRaised { alerts: &alerts }.emit(telemetry);
                plan.extend(writer.plan(Table::Alerts, &alert_batch(&alerts), &stem)?);
            }
        }
        if let Some(alerting) = buffer.alerting.as_mut() {
            let mut records = Vec::new();
            let mut windows = Vec::new();
            let late_before = alerting.late_points();
            if let Err(e) = alerting.process_with_windows(&rows, &mut records, &mut windows) {
                tracing::error!(error = %e, "metrics batch not scored");
            }
            self.settings
                .telemetry
                .late_points
                .inc_by(alerting.late_points().saturating_sub(late_before));
            if !windows.is_empty() {
                plan.extend(writer.plan(
                    Table::MetricWindows,
                    &metric_windows_batch(&windows, &topic, partition),
                    &stem,
                )?);
            }
            alerts = raise(records, &rows, &topic, partition);
            operator_state = snapshot_or_log(alerting.snapshot(), &topic, partition);
            if !alerts.is_empty() {
                AlertsRaised { alerts: &alerts }.emit(&self.settings.telemetry);
                plan.extend(writer.plan(Table::Alerts, &alert_batch(&alerts), &stem)?);
            }
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
            operator_state,
        };
        Ok(Some(PreparedFlush {
            topic,
            partition,
            plan,
            letters,
            intent,
            checkpoint,
            alerts,
            started,
        }))
    }
}

/// A metrics partition's operator state: restored from its checkpoint, or fresh.
fn restore_alerting(
    settings: &AlertingSettings,
    snapshot: Option<&str>,
    topic: &str,
    partition: i32,
) -> MetricAlerting {
    let fresh = || MetricAlerting::new(settings.scorer, settings.limits, settings.rules.clone());
    let restored = match snapshot {
        None => fresh(),
        Some(json) => MetricAlerting::restore(
            json,
            settings.scorer,
            settings.limits,
            settings.rules.clone(),
        )
        .unwrap_or_else(|error| {
            tracing::warn!(
                topic,
                partition,
                %error,
                "operator state in the checkpoint is unreadable; scoring starts afresh"
            );
            fresh()
        }),
    };
    restored.with_windows(settings.windows)
}

/// A logs partition's operator state: restored from its checkpoint, or fresh.
fn restore_log_operator(
    settings: &LogSettings,
    snapshot: Option<&str>,
    topic: &str,
    partition: i32,
) -> LogOperator {
    match snapshot {
        None => LogOperator::new(settings.clone()),
        Some(json) => LogOperator::restore(json, settings.clone()).unwrap_or_else(|error| {
            tracing::warn!(
                topic,
                partition,
                %error,
                "log operator state in the checkpoint is unreadable; templates start afresh"
            );
            LogOperator::new(settings.clone())
        }),
    }
}

/// The snapshot, or `None` (logged) when it could not be serialised: the
/// checkpoint then restarts the operator rather than storing a broken state.
fn snapshot_or_log(
    snapshot: Result<String, serde_json::Error>,
    topic: &str,
    partition: i32,
) -> Option<String> {
    snapshot
        .map_err(|error| {
            tracing::error!(topic, partition, %error, "operator state not serialisable; not checkpointed")
        })
        .ok()
}

/// Attaches the source position of each alert's triggering row.
fn raise(
    records: Vec<cara_operators::alert::AlertRecord>,
    rows: &RecordBatch,
    topic: &Arc<str>,
    partition: i32,
) -> Vec<RaisedAlert> {
    let offsets = rows
        .column_by_name("_offset")
        .and_then(|c| c.as_primitive_opt::<Int64Type>());
    records
        .into_iter()
        .map(|record| {
            let offset = offsets
                .filter(|o| record.row < o.len())
                .map_or(-1, |o| o.value(record.row));
            RaisedAlert {
                record,
                source: SourceRef {
                    topic: topic.clone(),
                    partition,
                    offset,
                },
            }
        })
        .collect()
}
