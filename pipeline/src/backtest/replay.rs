//! `cara backtest replay`: the archive's records driven through the same dataflow
//! as the live run, at full speed, its outputs written to an archive of their own.
//!
//! The archive keeps every consumed record with its provenance (`_topic`,
//! `_partition`, `_offset`), and each flush's files share a stem naming the
//! partition, its epoch and the flush's first and last offsets. The replay reads,
//! for every topic the dataflow consumes and every partition, the flushes in offset
//! order, rebuilds each flush's batch (its files of every hour, rows by offset), and
//! hands it to the partition's operator built by
//! [`crate::dataflow::Stages::operator`], exactly as a shard does at that flush.
//! Partitions are independent: a worker per core takes the next one, and memory holds
//! one flush and one operator state per worker. Second stages replay the exchange
//! records the live combiners read (archived like any input). What the operators emit
//! is planned by the runtime's own `runtime::outputs::plan_outputs` under the same
//! stems, so with the live run's config the replay's `alerts`, `metric_windows`,
//! `log_windows`, `log_templates`, `slo`, `red` and `service_graph` files equal the
//! live ones, row for row.
//!
//! The watermark raises the runtime gave idle partitions (a decision of processing
//! time) are replayed where the archive records them: a raise that emitted rows wrote
//! them under a stem naming the partition's next offset and the watermark, and the
//! replay raises the operator there, between the same two flushes. Not replayed (yet):
//! raises that emitted nothing (they left no file, though a later record may have
//! been late because of one). A config whose first stages send other exchange
//! records than the live one's has its second stages fed in process
//! ([`ExchangeSource`]); those records (a few per SLO, source partition and minute)
//! are held in memory until the first stages are done.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::{concat_batches, sort_to_indices, take_record_batch};
use arrow::datatypes::{Int32Type, Int64Type, Schema, SchemaRef};
use cara_operators::budget::StateBudget;
use cara_operators::operator::{Emitted, Operator, OutboundMessage, PartitionContext};
use cara_operators::schema::Table;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::archive::layout::{idle_file_stem, input_file_stem, ArchiveLayout};
use crate::archive::writer::ParquetWriter;
use crate::archive::ArchiveError;
use crate::dataflow::stages::TopicPartitions;
use crate::dataflow::{Dataflow, Wiring};
use crate::decode::{DecodeLimits, Decoder, Signal, SourcePosition};
use crate::runtime::outputs::{plan_outputs, OutputPlace};

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The output archive could not be written.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// A file of the input archive could not be read.
    #[error("reading {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The output directory is the input archive, or already holds an archive.
    #[error("--out {0} must be a new or empty directory other than the archive")]
    OutNotEmpty(PathBuf),
}

/// One flush of one partition as the archive holds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct FlushKey {
    partition: i32,
    epoch: u32,
    first: i64,
    last: i64,
}

/// What the replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Partitions replayed, over every topic.
    pub partitions: usize,
    /// Flushes replayed.
    pub flushes: usize,
    /// Recorded watermark raises of idle partitions applied.
    pub raises: usize,
    /// Records given to the operators.
    pub records: u64,
    /// Alert transitions raised.
    pub alerts: u64,
    /// Files written to the output archive.
    pub files: usize,
    /// Where the time went.
    pub spent: StageTimes,
}

impl ReplaySummary {
    /// Counts one replayed flush or raise.
    fn count(&mut self, done: &FlushDone) {
        match done.raise {
            true => self.raises += 1,
            false => self.flushes += 1,
        }
        self.records += done.records;
        self.alerts += done.alerts;
        self.files += done.files;
        self.spent.add(done.spent);
    }
}

/// How far a replay has got, for a progress display.
#[derive(Debug, Clone, Copy)]
pub struct ReplayProgress {
    /// Flushes replayed so far, of `total`.
    pub done: usize,
    /// Flushes to replay.
    pub total: usize,
    /// Records so far.
    pub records: u64,
    /// The event time of the latest record replayed, ms.
    pub event_time_ms: Option<i64>,
}

/// The event times a replay keeps: `[from_ms, to_ms)`, either end open.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EventRange {
    /// The first event time kept, ms.
    pub from_ms: Option<i64>,
    /// The first event time no longer kept, ms.
    pub to_ms: Option<i64>,
}

impl EventRange {
    /// Whether `ms` is in range.
    fn keeps(&self, ms: i64) -> bool {
        self.from_ms.is_none_or(|from| ms >= from) && self.to_ms.is_none_or(|to| ms < to)
    }

    /// Whether either end is set.
    pub(crate) fn is_set(&self) -> bool {
        self.from_ms.is_some() || self.to_ms.is_some()
    }

    /// The rows of `rows` whose event time (the table's time column) is in range.
    fn keep(&self, rows: RecordBatch, table: Table) -> Result<RecordBatch, String> {
        if !self.is_set() {
            return Ok(rows);
        }
        let column = rows
            .column_by_name(table.time_column())
            .ok_or_else(|| format!("no time column {}", table.time_column()))?;
        let times = arrow::compute::cast(column, &arrow::datatypes::DataType::Int64)
            .map_err(|e| e.to_string())?;
        let times = times
            .as_primitive_opt::<Int64Type>()
            .ok_or("the time column is not a timestamp")?;
        let mask: arrow::array::BooleanArray = times
            .iter()
            .map(|t| Some(t.is_some_and(|t| self.keeps(t))))
            .collect();
        arrow::compute::filter_record_batch(&rows, &mask).map_err(|e| e.to_string())
    }
}

/// Replays `archive` through `dataflow` into the archive at `out`, keeping the
/// records of `range` (the operators start afresh at its first record).
pub fn replay(
    archive: &Path,
    out: &Path,
    dataflow: &Dataflow,
    exchange: ExchangeSource,
    range: EventRange,
    zstd_level: i32,
    mut progress: impl FnMut(&ReplayProgress),
) -> Result<ReplaySummary, ReplayError> {
    if out == archive || out.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        return Err(ReplayError::OutNotEmpty(out.to_path_buf()));
    }
    let input = ArchiveLayout::new(archive);
    let writer = ParquetWriter::new(ArchiveLayout::new(out), zstd_level)?;
    // The archive holds rows, whatever format their topic was written in.
    let consumed: Vec<(String, Signal)> = dataflow
        .consumed()
        .into_iter()
        .map(|c| (c.topic, c.signal))
        .collect();
    let archived = parquet_files(archive);
    let mut plans = Vec::new();
    for (topic, signal) in &consumed {
        if exchange == ExchangeSource::InProcess && signal.is_exchange() {
            continue;
        }
        let flushes = list_flushes(&input.table_dir(signal.table()), topic);
        let raises: BTreeSet<RecordedRaise> = archived
            .iter()
            .filter_map(|path| parse_raise_stem(file_stem(path)?, topic))
            .filter(|r| range.keeps(r.watermark_ms))
            .collect();
        plans.push((topic.clone(), *signal, flushes, raises));
    }
    // As many source partitions as the live run counted; for an archive of an older
    // cara, as many as sent exchange records.
    let recorded = std::fs::read(input.topic_partitions_file())
        .ok()
        .and_then(|bytes| serde_json::from_slice::<TopicPartitions>(&bytes).ok());
    let topic_partitions = match recorded {
        Some(counted) => counted,
        None => exchange_sources(&input, &consumed)?,
    };
    let total = plans.iter().map(|(_, _, f, r)| f.len() + r.len()).sum();
    // Partitions are independent (each has its own operator and output stems): one
    // queue of them, taken by a worker per core; the caller's thread reports.
    let mut queue = Vec::new();
    for (topic, signal, flushes, raises) in &plans {
        let topic: Arc<str> = Arc::from(topic.as_str());
        let partitions: BTreeSet<i32> = flushes.keys().map(|k| k.partition).collect();
        for partition in partitions {
            queue.push(PartitionJob {
                topic: topic.clone(),
                signal: *signal,
                partition,
                flushes: flushes.range(partition_range(partition)).collect(),
                raises: raises
                    .iter()
                    .filter(|r| r.partition == partition)
                    .copied()
                    .collect(),
            });
        }
    }
    // Second stages fed in process hear only from the partitions replayed here: a
    // partition the live run never read a record from (an OTLP topic nobody wrote
    // to) reported only through idle raises, and has nothing to replay.
    let topic_partitions = match exchange {
        ExchangeSource::InProcess => {
            let replayed = |signal: Signal| queue.iter().filter(|j| j.signal == signal).count();
            TopicPartitions {
                metrics: replayed(Signal::Metrics).min(topic_partitions.metrics),
                logs: replayed(Signal::Logs).min(topic_partitions.logs),
                spans: replayed(Signal::Spans).min(topic_partitions.spans),
            }
        }
        ExchangeSource::Archived => topic_partitions,
    };
    let wiring = Wiring {
        topic_partitions,
        state_budget: StateBudget::unlimited(),
    };
    let mut summary = ReplaySummary {
        partitions: queue.len(),
        ..ReplaySummary::default()
    };
    let run = Run {
        dataflow,
        wiring: &wiring,
        range,
        writer: &writer,
        keep_messages: exchange == ExchangeSource::InProcess,
    };
    let queue = std::sync::Mutex::new(queue.into_iter().rev().collect::<Vec<_>>());
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Result<FlushDone, ReplayError>>();
    let mut event_time_ms = None;
    let mut failure = None;
    // In process: the exchange records each source partition sent, in its order.
    let mut exchanged: BTreeMap<(String, i32), Vec<OutboundMessage>> = BTreeMap::new();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let (queue, run) = (&queue, &run);
            scope.spawn(move || loop {
                let job = match queue.lock() {
                    Ok(mut q) => q.pop(),
                    Err(_) => None,
                };
                let Some(job) = job else { break };
                if let Err(error) = replay_partition(&job, run, &done_tx) {
                    let _ = done_tx.send(Err(error));
                    // Stop the others: the queue is drained.
                    if let Ok(mut q) = queue.lock() {
                        q.clear();
                    }
                }
            });
        }
        drop(done_tx);
        for done in done_rx {
            match done {
                Ok(mut flush) => {
                    if !flush.messages.is_empty() {
                        let source = flush.source.clone().unwrap_or_default();
                        exchanged
                            .entry(source)
                            .or_default()
                            .append(&mut flush.messages);
                    }
                    summary.count(&flush);
                    event_time_ms = flush.event_time_ms.max(event_time_ms);
                    progress(&ReplayProgress {
                        done: summary.flushes + summary.raises,
                        total,
                        records: summary.records,
                        event_time_ms,
                    });
                }
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
    });
    if let Some(error) = failure {
        return Err(error);
    }
    if exchange == ExchangeSource::InProcess {
        // In the dataflow's order: the incident stage reads what the combiners sent.
        let exchanges = consumed.iter().filter(|(_, signal)| signal.is_exchange());
        for (topic, signal) in exchanges {
            summary.partitions += 1;
            for mut flush in replay_exchange(topic, *signal, &exchanged, &run)? {
                summary.count(&flush);
                if !flush.messages.is_empty() {
                    let source = flush.source.clone().unwrap_or_default();
                    exchanged
                        .entry(source)
                        .or_default()
                        .append(&mut flush.messages);
                }
            }
        }
    }
    Ok(summary)
}

/// Where the second stages' input comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeSource {
    /// The exchange records the live run archived: exact (they include the progress
    /// its idle raises reported), for a config whose first stages send the same
    /// records as the live one.
    Archived,
    /// The exchange records the replay's own first stages send, handed to the second
    /// stages in process: for a config that changes them (a new SLO, other trace
    /// settings). Each source partition's records keep their order; the combiners,
    /// built to merge sources in any order, read them source after source; the
    /// incident stage reads them interleaved by their progress mark.
    InProcess,
}

/// What every partition of a replay shares.
#[derive(Clone, Copy)]
struct Run<'a> {
    dataflow: &'a Dataflow,
    wiring: &'a Wiring,
    range: EventRange,
    writer: &'a ParquetWriter,
    /// Keep the exchange records the operators send (for [`ExchangeSource::InProcess`]).
    keep_messages: bool,
}

/// Messages handed to a second stage at once.
const EXCHANGE_CHUNK: usize = 4096;

/// Runs the second stage of `signal` (on exchange topic `topic`, as its partition 0)
/// over the exchange records the first stages sent, source after source, and writes
/// what it emits; its records are numbered as offsets in that order.
fn replay_exchange(
    topic: &str,
    signal: Signal,
    exchanged: &BTreeMap<(String, i32), Vec<OutboundMessage>>,
    run: &Run<'_>,
) -> Result<Vec<FlushDone>, ReplayError> {
    let Some(outbound) = signal.sent_as() else {
        return Ok(Vec::new());
    };
    let Some(mut operator) = run
        .dataflow
        .stages
        .operator(run.wiring, signal, None, topic, 0)
    else {
        return Ok(Vec::new());
    };
    let context = PartitionContext {
        topic: Arc::from(topic),
        partition: 0,
    };
    let mut records: Vec<&[u8]> = exchanged
        .values()
        .flatten()
        .filter(|m| m.topic == outbound)
        .map(|m| m.payload.as_slice())
        .collect();
    if matches!(signal, Signal::AlertPartials | Signal::DecisionInputs) {
        // The incident stage does not wait for a source far behind the others
        // (`incidents.max_source_lag`), and the decision stage applies its inputs
        // in the order they come: read source after source, every source but the
        // first would be late. Interleaved by time, as live.
        records.sort_by_key(|payload| time_of(signal, payload));
    }
    let mut done = Vec::new();
    let mut decoder = Decoder::new(signal, DecodeLimits::default());
    for (chunk, payloads) in records.chunks(EXCHANGE_CHUNK).enumerate() {
        let first = (chunk * EXCHANGE_CHUNK) as i64;
        let last = first + payloads.len() as i64 - 1;
        for (offset, payload) in (first..).zip(payloads) {
            let position = SourcePosition {
                topic,
                partition: 0,
                offset,
                kafka_ts_ms: None,
            };
            if let Err(error) = decoder.decode(Some(payload), &position) {
                tracing::error!(%topic, offset, %error, "exchange record not decoded");
            }
        }
        let rows = decoder.finish();
        let started = Instant::now();
        let mut emitted = Emitted::default();
        if let Err(error) = operator.process(&context, &rows, &mut emitted) {
            tracing::error!(%topic, %error, "operator skipped a batch");
        }
        let operators = started.elapsed();
        let stem = input_file_stem(topic, 0, 0, first, last);
        let mut flush = write_emitted(emitted, &stem, Some(&rows), last, &context, run)?;
        flush.records = rows.num_rows() as u64;
        flush.spent.operators = operators;
        done.push(flush);
    }
    Ok(done)
}

/// The time an exchange record of `signal` stands at: an alert partial's
/// `through_ms`, a decision input's own time (`i64::MIN` when unreadable).
fn time_of(signal: Signal, payload: &[u8]) -> i64 {
    #[derive(serde::Deserialize)]
    struct Through {
        through_ms: i64,
    }
    match signal {
        Signal::DecisionInputs => {
            serde_json::from_slice::<cara_operators::decisions::records::DecisionEnvelope>(payload)
                .map_or(i64::MIN, |e| e.at())
        }
        _ => serde_json::from_slice::<Through>(payload).map_or(i64::MIN, |t| t.through_ms),
    }
}

/// One partition to replay: its flushes in order.
struct PartitionJob<'a> {
    topic: Arc<str>,
    signal: Signal,
    partition: i32,
    flushes: Vec<(&'a FlushKey, &'a Vec<PathBuf>)>,
    /// Its recorded raises, in order.
    raises: Vec<RecordedRaise>,
}

/// What one replayed flush (or raise) produced.
#[derive(Default)]
struct FlushDone {
    /// A watermark raise rather than a flush.
    raise: bool,
    records: u64,
    alerts: u64,
    files: usize,
    event_time_ms: Option<i64>,
    spent: StageTimes,
    /// The source partition, and the exchange records its operators sent (kept only
    /// for [`ExchangeSource::InProcess`]).
    source: Option<(String, i32)>,
    messages: Vec<OutboundMessage>,
}

/// Where a replay's time went, summed over its workers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StageTimes {
    /// Reading the archive's flushes (Parquet decoding, offset order, time range).
    pub reading: std::time::Duration,
    /// In the operators.
    pub operators: std::time::Duration,
    /// Planning and writing what they emitted.
    pub writing: std::time::Duration,
}

impl StageTimes {
    fn add(&mut self, other: StageTimes) {
        self.reading += other.reading;
        self.operators += other.operators;
        self.writing += other.writing;
    }
}

/// Replays one partition's flushes through a fresh operator, reporting each flush.
fn replay_partition(
    job: &PartitionJob<'_>,
    run: &Run<'_>,
    done: &std::sync::mpsc::Sender<Result<FlushDone, ReplayError>>,
) -> Result<(), ReplayError> {
    let (topic, partition, table) = (&job.topic, job.partition, job.signal.table());
    let Some(mut operator) = run
        .dataflow
        .stages
        .operator(run.wiring, job.signal, None, topic, partition)
    else {
        return Ok(());
    };
    let context = PartitionContext {
        topic: topic.clone(),
        partition,
    };
    // Only what the operators read (and the replay's own columns) is decoded.
    let columns = operator.input_columns();
    let mut raises = job.raises.iter().peekable();
    for (key, files) in &job.flushes {
        // A raise recorded while the partition's next offset was this flush's first
        // (or before) came between the previous flush and this one.
        while let Some(raise) =
            raises.next_if(|r| (r.epoch, r.next_offset) <= (key.epoch, key.first))
        {
            if done
                .send(replay_raise(operator.as_mut(), &context, raise, run))
                .is_err()
            {
                return Ok(());
            }
        }
        let started = Instant::now();
        let rows = read_flush_in(files, table, columns.as_deref(), run.range)?;
        let reading = started.elapsed();
        if run.range.is_set() && rows.num_rows() == 0 {
            let mut skipped = FlushDone::default();
            skipped.spent.reading = reading;
            if done.send(Ok(skipped)).is_err() {
                break;
            }
            continue;
        }
        let started = Instant::now();
        let mut emitted = Emitted::default();
        if rows.num_rows() > 0 {
            if let Err(error) = operator.process(&context, &rows, &mut emitted) {
                tracing::error!(%topic, partition, %error, "operator skipped a batch");
            }
        }
        let operators = started.elapsed();
        let stem = input_file_stem(topic, partition, key.epoch, key.first, key.last);
        let mut flush = write_emitted(emitted, &stem, Some(&rows), key.last, &context, run)?;
        flush.records = rows.num_rows() as u64;
        flush.event_time_ms = latest_time(&rows, table);
        flush.spent.reading = reading;
        flush.spent.operators = operators;
        if done.send(Ok(flush)).is_err() {
            return Ok(());
        }
    }
    for raise in raises {
        if done
            .send(replay_raise(operator.as_mut(), &context, raise, run))
            .is_err()
        {
            break;
        }
    }
    Ok(())
}

/// Plans and writes what one call of an operator emitted, under `stem`, as the
/// runtime does (alerts located in `rows`, else at `fallback_offset`); keeps the
/// exchange records it sent when the run asks for them.
fn write_emitted(
    emitted: Emitted,
    stem: &str,
    rows: Option<&RecordBatch>,
    fallback_offset: i64,
    context: &PartitionContext,
    run: &Run<'_>,
) -> Result<FlushDone, ReplayError> {
    let started = Instant::now();
    let place = OutputPlace {
        topic: &context.topic,
        partition: context.partition,
        stem,
        rows,
        fallback_offset,
    };
    let mut plan = Vec::new();
    let alerts = plan_outputs(
        run.writer,
        &emitted.tables,
        emitted.alerts,
        &place,
        &mut plan,
    )?;
    for file in &plan {
        run.writer.write_to(file, &file.path)?;
    }
    let mut flush = FlushDone {
        alerts: alerts.len() as u64,
        files: plan.len(),
        ..FlushDone::default()
    };
    if run.keep_messages {
        flush.messages = emitted
            .messages
            .into_iter()
            .filter(|m| m.topic.is_exchange())
            .collect();
        flush.source = Some((context.topic.to_string(), context.partition));
    }
    flush.spent.writing = started.elapsed();
    Ok(flush)
}

/// Raises the operator's watermark as the runtime did when the partition was idle
/// (unless it has got that far by itself, as the runtime checks too), and writes
/// what that emitted under the raise's own stem.
fn replay_raise(
    operator: &mut dyn Operator,
    context: &PartitionContext,
    raise: &RecordedRaise,
    run: &Run<'_>,
) -> Result<FlushDone, ReplayError> {
    let skipped = FlushDone {
        raise: true,
        ..FlushDone::default()
    };
    if operator
        .watermark()
        .is_some_and(|w| w >= raise.watermark_ms)
    {
        return Ok(skipped);
    }
    let mut emitted = Emitted::default();
    if let Err(error) = operator.advance_watermark(context, raise.watermark_ms, &mut emitted) {
        tracing::error!(topic = %context.topic, partition = context.partition, %error, "watermark not advanced");
        return Ok(skipped);
    }
    let stem = idle_file_stem(
        &context.topic,
        context.partition,
        raise.epoch,
        raise.next_offset,
        raise.watermark_ms,
    );
    let mut flush = write_emitted(emitted, &stem, None, raise.next_offset - 1, context, run)?;
    flush.raise = true;
    Ok(flush)
}

/// A raise of an idle partition's watermark, as the stem of the files of what it
/// emitted records it (`<topic>-<pppp>[-eNNNN]-<next offset>-watermark-<ms>`, see
/// [`idle_file_stem`]). A raise that emitted nothing left no file and is not
/// replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RecordedRaise {
    partition: i32,
    epoch: u32,
    next_offset: i64,
    watermark_ms: i64,
}

/// The raise a file stem records, if it is one of `topic`.
fn parse_raise_stem(stem: &str, topic: &str) -> Option<RecordedRaise> {
    let rest = stem.strip_prefix(topic)?.strip_prefix('-')?;
    let (position, watermark) = rest.split_once("-watermark-")?;
    let mut parts: Vec<&str> = position.split('-').collect();
    let next_offset = parts.pop()?;
    let (partition, epoch) = partition_and_epoch(&parts)?;
    Some(RecordedRaise {
        partition,
        epoch,
        next_offset: next_offset.parse().ok()?,
        watermark_ms: watermark.parse().ok()?,
    })
}

/// The partition and epoch of a stem's `<pppp>[-eNNNN]` parts.
fn partition_and_epoch(parts: &[&str]) -> Option<(i32, u32)> {
    match parts {
        [p] => Some((p.parse().ok()?, 0)),
        [p, e] => Some((p.parse().ok()?, e.strip_prefix('e')?.parse().ok()?)),
        _ => None,
    }
}

/// A file's name without `.parquet`.
fn file_stem(path: &Path) -> Option<&str> {
    path.file_name()?.to_str()?.strip_suffix(".parquet")
}

/// The flushes of `topic` among the files under `table_dir` (`date=…/hour=…/<stem>.parquet`),
/// each with its files (one per hour it covered). Files of watermark raises and of
/// other topics are left out.
pub(crate) fn list_flushes(table_dir: &Path, topic: &str) -> BTreeMap<FlushKey, Vec<PathBuf>> {
    let mut flushes: BTreeMap<FlushKey, Vec<PathBuf>> = BTreeMap::new();
    // In path order, so each flush's files are in hour order.
    for path in parquet_files(table_dir) {
        let Some(stem) = file_stem(&path) else {
            continue;
        };
        if let Some(key) = parse_stem(stem, topic) {
            flushes.entry(key).or_default().push(path);
        }
    }
    flushes
}

/// The flush a file stem names, if it is an input flush of `topic`:
/// `<topic>-<pppp>[-eNNNN]-<first:020>-<last:020>` (see
/// [`crate::archive::layout::input_file_stem`]).
fn parse_stem(stem: &str, topic: &str) -> Option<FlushKey> {
    let rest = stem.strip_prefix(topic)?.strip_prefix('-')?;
    let mut parts: Vec<&str> = rest.split('-').collect();
    let last = parts.pop()?;
    let first = parts.pop()?;
    if last.len() != 20 || first.len() != 20 {
        return None;
    }
    let (partition, epoch) = partition_and_epoch(&parts)?;
    Some(FlushKey {
        partition,
        epoch,
        first: first.parse().ok()?,
        last: last.parse().ok()?,
    })
}

/// The keys of one partition's flushes.
pub(crate) fn partition_range(partition: i32) -> std::ops::RangeInclusive<FlushKey> {
    FlushKey {
        partition,
        epoch: 0,
        first: i64::MIN,
        last: i64::MIN,
    }..=FlushKey {
        partition,
        epoch: u32::MAX,
        first: i64::MAX,
        last: i64::MAX,
    }
}

/// A flush's rows: its files' rows in offset order, with the table's columns.
pub(crate) fn read_flush(
    files: &[PathBuf],
    table: Table,
    columns: Option<&[&str]>,
) -> Result<RecordBatch, ReplayError> {
    let schema = read_schema(table, columns);
    let projected = columns.map(|_| schema.as_ref());
    let mut batches = Vec::new();
    for path in files {
        for batch in read_parquet_columns(path, projected)? {
            // The live batch's columns, by name and type (the file's schema may carry
            // metadata).
            let read_err = |reason: String| ReplayError::Read {
                path: path.clone(),
                reason,
            };
            let columns = schema
                .fields()
                .iter()
                .map(|f| {
                    batch
                        .column_by_name(f.name())
                        .cloned()
                        .ok_or_else(|| read_err(format!("no column {}", f.name())))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let batch = RecordBatch::try_new(schema.clone(), columns)
                .map_err(|e| read_err(e.to_string()))?;
            batches.push(batch);
        }
    }
    let all = concat_batches(&schema, &batches).map_err(|e| flush_error(files, e))?;
    let Some(offsets) = all.column_by_name("_offset") else {
        return Ok(all);
    };
    // Usually already in offset order (one file, or hours whose rows do not
    // interleave): then the rows are not copied again.
    let ascending = offsets
        .as_primitive_opt::<Int64Type>()
        .is_some_and(|o| o.null_count() == 0 && o.values().windows(2).all(|w| w[0] < w[1]));
    if ascending {
        return Ok(all);
    }
    let order = sort_to_indices(offsets, None, None).and_then(|i| take_record_batch(&all, &i));
    order.map_err(|e| flush_error(files, e))
}

/// A flush that could not be read (named by its first file).
fn flush_error(files: &[PathBuf], reason: impl std::fmt::Display) -> ReplayError {
    ReplayError::Read {
        path: files.first().cloned().unwrap_or_default(),
        reason: reason.to_string(),
    }
}

/// The schema a replay reads `table` with: the columns an operator declared it
/// reads, with `_offset` and the time column (the replay's own), or all.
fn read_schema(table: Table, columns: Option<&[&str]>) -> SchemaRef {
    let schema = table.schema();
    let Some(columns) = columns else {
        return schema;
    };
    let keep: Vec<usize> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            let name = f.name().as_str();
            columns.contains(&name) || name == "_offset" || name == table.time_column()
        })
        .map(|(i, _)| i)
        .collect();
    schema.project(&keep).map_or(schema, Arc::new)
}

/// The rows of a flush whose event time is in `range`, with `columns` (see
/// [`read_schema`]).
pub(crate) fn read_flush_in(
    files: &[PathBuf],
    table: Table,
    columns: Option<&[&str]>,
    range: EventRange,
) -> Result<RecordBatch, ReplayError> {
    range
        .keep(read_flush(files, table, columns)?, table)
        .map_err(|reason| flush_error(files, reason))
}

/// Every Parquet file under `dir` (none when it does not exist), in path order.
pub(crate) fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The batches of one Parquet file.
pub(crate) fn read_parquet(path: &Path) -> Result<Vec<RecordBatch>, ReplayError> {
    read_parquet_columns(path, None)
}

/// The batches of one Parquet file, with only the top-level columns named in
/// `columns` (all when `None`; names the file lacks are left out).
fn read_parquet_columns(
    path: &Path,
    columns: Option<&Schema>,
) -> Result<Vec<RecordBatch>, ReplayError> {
    let read_err = |reason: String| ReplayError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(|e| read_err(e.to_string()))?;
    // One batch per file where it fits (a flush's file is one flush of one hour), so
    // that a flush's rows are not concatenated from many small batches.
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| {
            let rows = b.metadata().file_metadata().num_rows();
            let batch_size = usize::try_from(rows).unwrap_or(0).clamp(1024, 1 << 20);
            let b = b.with_batch_size(batch_size);
            match columns {
                Some(wanted) => {
                    let roots: Vec<usize> = wanted
                        .fields()
                        .iter()
                        .filter_map(|f| b.schema().index_of(f.name()).ok())
                        .collect();
                    let mask = ProjectionMask::roots(b.parquet_schema(), roots);
                    b.with_projection(mask).build()
                }
                None => b.build(),
            }
        })
        .map_err(|e| read_err(e.to_string()))?;
    reader
        .map(|batch| batch.map_err(|e| read_err(e.to_string())))
        .collect()
}

/// Partitions of each input topic, for an archive that does not record them: the
/// distinct source partitions of the archived exchange records (every source
/// partition reports in the end, idle ones through their raised watermarks; a run
/// stopped before all had reported counts fewer).
fn exchange_sources(
    input: &ArchiveLayout,
    consumed: &[(String, Signal)],
) -> Result<TopicPartitions, ReplayError> {
    let mut sources: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for (topic, signal) in consumed {
        if !signal.is_exchange() {
            continue;
        }
        for files in list_flushes(&input.table_dir(signal.table()), topic).values() {
            let rows = read_flush(files, signal.table(), None)?;
            let (Some(topics), Some(partitions)) = (
                rows.column_by_name("source_topic")
                    .and_then(|c| c.as_string_opt::<i32>()),
                rows.column_by_name("source_partition")
                    .and_then(|c| c.as_primitive_opt::<Int32Type>()),
            ) else {
                continue;
            };
            for row in 0..rows.num_rows() {
                sources
                    .entry(topics.value(row).to_owned())
                    .or_default()
                    .insert(partitions.value(row));
            }
        }
    }
    let count = |signal: Signal| {
        consumed
            .iter()
            .filter(|(_, s)| *s == signal)
            .filter_map(|(topic, _)| sources.get(topic))
            .map(BTreeSet::len)
            .sum()
    };
    Ok(TopicPartitions {
        metrics: count(Signal::Metrics),
        logs: count(Signal::Logs),
        spans: count(Signal::Spans),
    })
}

/// The latest value of the table's time column, ms.
fn latest_time(rows: &RecordBatch, table: Table) -> Option<i64> {
    let column = rows.column_by_name(table.time_column())?;
    let times = arrow::compute::cast(column, &arrow::datatypes::DataType::Int64).ok()?;
    let times = times.as_primitive_opt::<Int64Type>()?;
    (0..times.len())
        .filter(|i| times.is_valid(*i))
        .map(|i| times.value(i))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A metrics file whose rows carry `offsets`, in that order.
    fn metrics_file(path: &Path, offsets: &[i64]) {
        let mut decoder = Decoder::new(Signal::Metrics, DecodeLimits::default());
        for &offset in offsets {
            let line = format!(
                r#"{{"ts":{},"name":"m","value":{offset},"labels":{{"service":"a"}}}}"#,
                1_764_000_000_000 + offset
            );
            let pos = SourcePosition {
                topic: "telemetry.metrics",
                partition: 0,
                offset,
                kafka_ts_ms: None,
            };
            decoder.decode(Some(line.as_bytes()), &pos).unwrap();
        }
        let batch = decoder.finish();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), None)
                .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }

    fn offsets(batch: &RecordBatch) -> Vec<i64> {
        batch
            .column_by_name("_offset")
            .unwrap()
            .as_primitive::<Int64Type>()
            .values()
            .to_vec()
    }

    /// A flush's files, read together, give its rows in offset order, whether the
    /// files' rows interleave or not.
    #[test]
    fn a_flush_reads_back_in_offset_order() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
        metrics_file(&a, &[0, 2, 5]);
        metrics_file(&b, &[1, 3, 4]);
        let rows = read_flush(&[a.clone(), b.clone()], Table::Metrics, None).unwrap();
        assert_eq!(offsets(&rows), [0, 1, 2, 3, 4, 5]);
        let values = rows
            .column_by_name("value")
            .unwrap()
            .as_primitive::<arrow::datatypes::Float64Type>();
        assert_eq!(
            values.values().to_vec(),
            [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
            "whole rows move"
        );
        metrics_file(&a, &[0, 1, 2]);
        metrics_file(&b, &[3, 4]);
        let rows = read_flush(&[a, b], Table::Metrics, Some(&["value"])).unwrap();
        assert_eq!(offsets(&rows), [0, 1, 2, 3, 4]);
        // Read with the columns an operator declared: those, `_offset` and the time.
        let schema = rows.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["ts", "value", "_offset"]);
    }

    /// Stems read like a table: input flushes of the topic, with or without an
    /// epoch; watermark raises, other topics and malformed names are not flushes.
    #[test]
    fn stems_name_the_flushes_of_their_topic() {
        let stem = |p, e, f, l| input_file_stem("telemetry.metrics", p, e, f, l);
        let key = |partition, epoch, first, last| FlushKey {
            partition,
            epoch,
            first,
            last,
        };
        let cases = [
            (stem(3, 0, 0, 99), Some(key(3, 0, 0, 99))),
            (stem(12, 2, 100, 140), Some(key(12, 2, 100, 140))),
            (
                crate::archive::layout::idle_file_stem(
                    "telemetry.metrics",
                    3,
                    0,
                    100,
                    1_764_000_000_000,
                ),
                None,
            ),
            (input_file_stem("telemetry.metrics-2", 1, 0, 0, 9), None),
            ("telemetry.metrics-0001-12-34".to_owned(), None),
        ];
        for (name, expected) in cases {
            assert_eq!(parse_stem(&name, "telemetry.metrics"), expected, "{name}");
        }
        // Raises: with or without an epoch; input flushes and other topics are not.
        let raise = |partition, epoch, next_offset, watermark_ms| RecordedRaise {
            partition,
            epoch,
            next_offset,
            watermark_ms,
        };
        let idle = crate::archive::layout::idle_file_stem;
        let raises = [
            (
                idle("telemetry.metrics", 3, 0, 100, 1_764_000_000_000),
                Some(raise(3, 0, 100, 1_764_000_000_000)),
            ),
            (
                idle("telemetry.metrics", 12, 2, 7, 60_000),
                Some(raise(12, 2, 7, 60_000)),
            ),
            (stem(3, 0, 0, 99), None),
            (idle("telemetry.metrics-2", 1, 0, 5, 60_000), None),
        ];
        for (name, expected) in raises {
            assert_eq!(
                parse_raise_stem(&name, "telemetry.metrics"),
                expected,
                "{name}"
            );
        }
    }
}
