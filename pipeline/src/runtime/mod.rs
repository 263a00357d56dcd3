//! The runtime that executes the dataflow's per-partition stages: the shards, the
//! flush worker, the roll policy and the cross-shard watermarks, started together by
//! one `Runtime::start`.
//!
//! ```text
//!  driver (source/: consumer, dispatch, rebalance)
//!     │ ShardInput per shard, in order: Assign, Messages(MessageChunk), Revoke, FlushAll
//!     ▼
//!  shards (shard.rs: decode, operators, roll.rs policy, watermarks.rs board)
//!     │ rounds of PreparedFlush
//!     ▼
//!  flush worker (flush.rs: the group commit; sinks for DLQ, alerts, outbound topics)
//!     │ Durable offsets, read back by the driver to commit
//! ```
//!
//! The runtime never imports the driver: a driver gets the shards' input channels
//! (`ShardInputs`) once, feeds them, reads `Runtime::completed`, and reports the
//! first fatal error from the shared `FatalSlot`.

mod error;
pub(crate) mod flush;
pub(crate) mod input;
pub(crate) mod outputs;
pub(crate) mod roll;
pub(crate) mod shard;
pub(crate) mod watermarks;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use cara_operators::budget::StateBudget;

use crate::archive::layout::{write_bytes_atomically, ArchiveLayout};
use crate::archive::writer::ParquetWriter;
use crate::config::Config;
use crate::dataflow::stages::TopicPartitions;
use crate::dataflow::{ConsumedTopic, Dataflow, Stages, Wiring};
use crate::decode::DecodeLimits;
use crate::telemetry::Telemetry;
use crate::templates::TemplateCatalog;
pub(crate) use error::FatalSlot;
pub use error::RuntimeError;
use flush::{Durable, FlushWorker, InFlight, Sinks};
use input::{MessageChunk, ShardInput};
use roll::RollPolicy;
use shard::ShardSettings;
use watermarks::WatermarkBoard;

/// Everything the runtime needs besides its sinks.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// Topic name and signal, by topic index (the first half of a partition key).
    pub topics: Vec<ConsumedTopic>,
    /// The operator stacks of every signal (see [`crate::dataflow`]). A second
    /// stage runs when its exchange topic is among `topics`.
    pub stages: Stages,
    /// Where log partitions publish their templates (for `GET /api/templates`).
    pub templates: Arc<TemplateCatalog>,
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
    /// A partition without messages for this long is idle (see `runtime::watermarks`).
    pub idle_timeout: Duration,
    /// Archive location.
    pub layout: ArchiveLayout,
    /// zstd level of archive files.
    pub zstd_level: i32,
    /// Decoding threads (each owning a share of the partitions).
    pub shards: usize,
}

impl RuntimeSettings {
    /// The settings `config` gives for running `dataflow`: its consumed topics and
    /// stages, the archive, the decoding limits and the runtime's budgets.
    pub fn new(
        config: &Config,
        dataflow: &Dataflow,
        templates: Arc<TemplateCatalog>,
    ) -> RuntimeSettings {
        RuntimeSettings {
            topics: dataflow.consumed(),
            stages: dataflow.stages.clone(),
            templates,
            limits: config.decode.limits(),
            roll_bytes: config.archive.roll_bytes,
            max_buffered_bytes: config.archive.max_buffered_bytes,
            max_state_bytes: config.runtime.max_state_bytes,
            roll_interval: config.archive.roll_interval.0,
            idle_timeout: config.runtime.idle_partition_timeout.0,
            layout: ArchiveLayout::new(&config.archive.dir),
            zstd_level: config.archive.zstd_level,
            shards: config.runtime.shard_count(),
        }
    }
}

/// The group of each consumed topic on the watermark board: the index of the first
/// topic with the same signal.
fn signal_groups(topics: &[ConsumedTopic]) -> Vec<usize> {
    topics
        .iter()
        .map(|t| {
            topics
                .iter()
                .position(|other| other.signal == t.signal)
                .unwrap_or_default()
        })
        .collect()
}

/// The shards' input channels and the channel spent chunks come back on, for the
/// driver that feeds them.
pub(crate) struct ShardInputs {
    /// One per shard, in shard order.
    pub senders: Vec<Sender<ShardInput>>,
    /// Chunks the shards are done with, for reuse.
    pub spent: Receiver<MessageChunk>,
    /// The shards' roll policy, by which the dispatcher tells backlog records.
    pub roll: RollPolicy,
}

/// The running shards and flush worker.
pub struct Runtime {
    flusher: FlushWorker,
    shard_threads: Vec<JoinHandle<()>>,
    inputs: Option<ShardInputs>,
    fatal: Arc<FatalSlot>,
    in_flight: Arc<InFlight>,
}

impl Runtime {
    /// Starts the flush worker over `sinks` and the shards. `topic_partitions` are
    /// the partitions of each input topic (a second stage waits for all of them).
    pub(crate) fn start(
        settings: RuntimeSettings,
        topic_partitions: TopicPartitions,
        sinks: Sinks,
        telemetry: Arc<Telemetry>,
    ) -> Result<Runtime, RuntimeError> {
        let writer = ParquetWriter::new(settings.layout.clone(), settings.zstd_level)?;
        // What the second stages wait for, kept for a replay of this archive.
        let counted = serde_json::to_vec(&topic_partitions).unwrap_or_default();
        write_bytes_atomically(&settings.layout.topic_partitions_file(), &counted)?;
        let in_flight = Arc::new(InFlight::default());
        let flusher =
            FlushWorker::start(writer.clone(), sinks, telemetry.clone(), in_flight.clone());
        let fatal = Arc::new(FatalSlot::default());
        let state_budget = StateBudget::new(settings.max_state_bytes);
        telemetry
            .state_budget_bytes
            .set(i64::try_from(settings.max_state_bytes).unwrap_or(i64::MAX));
        let shards = settings.shards.max(1);
        let shard_settings = Arc::new(ShardSettings {
            topics: settings
                .topics
                .iter()
                .map(|c| (Arc::from(c.topic.as_str()), c.signal, c.format))
                .collect(),
            limits: settings.limits,
            buffer_budget: settings.max_buffered_bytes / shards as u64,
            stages: settings.stages,
            wiring: Wiring {
                topic_partitions,
                state_budget,
            },
            state_budget_reported: AtomicBool::new(false),
            roll: RollPolicy {
                roll_interval: settings.roll_interval,
                roll_bytes: settings.roll_bytes,
            },
            writer,
            telemetry,
            templates: settings.templates,
            idle_timeout: settings.idle_timeout,
            watermarks: Arc::new(WatermarkBoard::grouped(signal_groups(&settings.topics))),
        });
        let mut senders = Vec::new();
        let mut shard_threads = Vec::new();
        let (spent_tx, spent_rx) = crossbeam_channel::unbounded();
        for index in 0..shards {
            // A few chunks of backlog per shard: enough to ride out a flush hand-off,
            // small enough that a slow shard slows the driver (backpressure).
            let (tx, rx) = crossbeam_channel::bounded(8);
            let submitter = flusher
                .submitter()
                .ok_or_else(|| RuntimeError::Shard("the flush worker is not running".into()))?;
            let thread = shard::spawn(
                index,
                shard_settings.clone(),
                submitter,
                rx,
                spent_tx.clone(),
                fatal.clone(),
            )
            .map_err(|e| RuntimeError::Shard(e.to_string()))?;
            senders.push(tx);
            shard_threads.push(thread);
        }
        Ok(Runtime {
            flusher,
            shard_threads,
            inputs: Some(ShardInputs {
                senders,
                spent: spent_rx,
                roll: shard_settings.roll,
            }),
            fatal,
            in_flight,
        })
    }

    /// The shards' inputs; `None` after the first call.
    pub(crate) fn take_inputs(&mut self) -> Option<ShardInputs> {
        self.inputs.take()
    }

    /// Where the first fatal error of a shard (or of the driver) is kept.
    pub(crate) fn fatal_slot(&self) -> Arc<FatalSlot> {
        self.fatal.clone()
    }

    /// How many flushes are being written, for a rebalance to wait on.
    pub(crate) fn in_flight(&self) -> Arc<InFlight> {
        self.in_flight.clone()
    }

    /// Partitions whose flushes became durable since the last call; with `wait`,
    /// first waits for every submitted round.
    pub(crate) fn completed(&self, wait: bool) -> Result<Vec<Durable>, RuntimeError> {
        self.flusher.completed(wait)
    }

    /// Waits for the shards to stop; they stop once the driver has dropped their
    /// inputs (after handing them what they must flush).
    pub(crate) fn join_shards(&mut self) {
        for thread in self.shard_threads.drain(..) {
            let _ = thread.join();
        }
    }
}
