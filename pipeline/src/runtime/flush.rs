//! The flush worker: makes planned partition flushes durable on a thread of its own,
//! so the shards keep decoding while Parquet is encoded and synced.
//!
//! Rounds (the partitions of one shard due at one moment) go through a channel of
//! capacity one, which is the backpressure: a shard blocks only when a round is
//! queued behind one being written. Rounds run in the order they were submitted, and
//! a partition belongs to one shard, so its checkpoints advance in order.
//!
//! A round is committed as a group, so its cost in syncs does not grow with its
//! partitions (see `archive` for the protocol and its recovery):
//! 1. every flush encodes its files into its partition's staging directory (on
//!    every core at once), writes its operator state file if the state moved,
//!    stages its checkpoint beside the current one, and has its dead letters,
//!    alerts and outbound records acknowledged by the broker;
//! 2. one sync makes all of that durable;
//! 3. the checkpoints are put in force (renames) and a second sync commits them;
//! 4. the staged files move to their final paths, where readers see them, and the
//!    state files the new checkpoints replaced are deleted.
//!
//! [`InFlight`] lets a rebalance wait until nothing is being written before a
//! partition changes hands, so a new owner never races an old owner's flush.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cara_operators::operator::OutboundMessage;

use super::error::RuntimeError;
use crate::alerts::{AlertSink, RaisedAlert};
use crate::archive::claim::{self, ClaimToken};
use crate::archive::commit::{self, Checkpoint};
use crate::archive::layout::sync_all_written;
use crate::archive::state;
use crate::archive::writer::{ParquetWriter, PlannedFile, WrittenFile};
use crate::archive::ArchiveError;
use crate::dlq::{DeadLetter, DeadLetterSink};
use crate::internal_events::{
    FileArchived, FlushFailed, FlushFenced, InternalEvent, OperatorStateSaved,
};
use crate::outbound::OutboundSink;
use crate::telemetry::Telemetry;

/// How long a failing flush is retried before the source gives up (and exits
/// without committing, so a restart replays).
const FLUSH_RETRY_BUDGET: Duration = Duration::from_secs(120);

/// Counts rounds handed to the worker and not yet finished.
#[derive(Default)]
pub(crate) struct InFlight {
    count: Mutex<usize>,
    idle: Condvar,
}

impl InFlight {
    fn add(&self) {
        if let Ok(mut c) = self.count.lock() {
            *c += 1;
        }
    }

    fn finish(&self) {
        if let Ok(mut c) = self.count.lock() {
            *c = c.saturating_sub(1);
            if *c == 0 {
                self.idle.notify_all();
            }
        }
    }

    /// Rounds not yet finished.
    pub fn pending(&self) -> usize {
        self.count.lock().map(|c| *c).unwrap_or(0)
    }

    /// Blocks until every round handed over so far is durable (or failed).
    pub fn wait_idle(&self) {
        let Ok(mut c) = self.count.lock() else { return };
        while *c > 0 {
            match self.idle.wait(c) {
                Ok(guard) => c = guard,
                Err(_) => return,
            }
        }
    }
}

/// A partition made durable: where its next read starts.
pub(crate) struct Durable {
    pub topic: Arc<str>,
    pub partition: i32,
    pub next_offset: i64,
}

/// A shard's handle for submitting rounds.
#[derive(Clone)]
pub(crate) struct FlushSubmitter {
    rounds: SyncSender<Vec<PreparedFlush>>,
    in_flight: Arc<InFlight>,
}

impl FlushSubmitter {
    /// Hands a round over; blocks while another round is already queued.
    pub fn submit(&self, round: Vec<PreparedFlush>) -> Result<(), RuntimeError> {
        if round.is_empty() {
            return Ok(());
        }
        self.in_flight.add();
        if self.rounds.send(round).is_err() {
            self.in_flight.finish();
            return Err(worker_gone());
        }
        Ok(())
    }
}

/// The poll thread's handle on the flush worker.
pub(crate) struct FlushWorker {
    rounds: Option<SyncSender<Vec<PreparedFlush>>>,
    done: Receiver<Result<Vec<Durable>, RuntimeError>>,
    in_flight: Arc<InFlight>,
    thread: Option<JoinHandle<()>>,
}

impl FlushWorker {
    /// Starts the worker thread.
    pub fn start(
        writer: ParquetWriter,
        sinks: Sinks,
        telemetry: Arc<Telemetry>,
        in_flight: Arc<InFlight>,
    ) -> FlushWorker {
        let (rounds_tx, rounds_rx) = mpsc::sync_channel::<Vec<PreparedFlush>>(1);
        let (done_tx, done_rx): (Sender<_>, Receiver<_>) = mpsc::channel();
        let counter = in_flight.clone();
        let thread = std::thread::Builder::new()
            .name("cara-flush".into())
            .spawn(move || {
                for round in rounds_rx {
                    let outcome =
                        execute_round(&round, &writer, &sinks, &telemetry).map(|fenced| {
                            round
                                .iter()
                                .enumerate()
                                .filter(|(i, _)| !fenced.contains(i))
                                .map(|(_, f)| Durable {
                                    topic: f.topic.clone(),
                                    partition: f.partition,
                                    next_offset: f.checkpoint.next_offset,
                                })
                                .collect()
                        });
                    let _ = done_tx.send(outcome);
                    counter.finish();
                }
            })
            .ok();
        FlushWorker {
            rounds: Some(rounds_tx),
            done: done_rx,
            in_flight,
            thread,
        }
    }

    /// A handle for a shard to submit rounds with. The worker stops once this
    /// worker and every submitter are dropped.
    pub fn submitter(&self) -> Option<FlushSubmitter> {
        Some(FlushSubmitter {
            rounds: self.rounds.clone()?,
            in_flight: self.in_flight.clone(),
        })
    }

    /// Partitions made durable since the last call; `wait` blocks until every
    /// submitted round has finished.
    pub fn completed(&self, wait: bool) -> Result<Vec<Durable>, RuntimeError> {
        let mut durable = Vec::new();
        loop {
            let next = if wait && self.in_flight.pending() > 0 {
                self.done.recv_timeout(Duration::from_millis(100)).ok()
            } else {
                self.done.try_recv().ok()
            };
            match next {
                Some(Ok(list)) => durable.extend(list),
                Some(Err(e)) => return Err(e),
                None if wait && self.in_flight.pending() > 0 => {
                    if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                        return Err(worker_gone());
                    }
                }
                None => return Ok(durable),
            }
        }
    }
}

impl Drop for FlushWorker {
    fn drop(&mut self) {
        self.rounds.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn worker_gone() -> RuntimeError {
    RuntimeError::Archive(ArchiveError::Io {
        path: std::path::PathBuf::from("<flush worker>"),
        source: std::io::Error::other("the flush worker stopped"),
    })
}

/// Commits a round (see the module docs), retried as a whole with backoff until
/// durable or the retry budget is spent. Every step can be repeated: staged files
/// and checkpoints are rewritten, moves skip what already moved, and records the
/// broker acknowledged in an earlier attempt are not sent again ([`SendProgress`]).
/// Returns the flushes fenced off (by their index in the round).
fn execute_round(
    round: &[PreparedFlush],
    writer: &ParquetWriter,
    sinks: &Sinks,
    telemetry: &Telemetry,
) -> Result<Vec<usize>, RuntimeError> {
    let layout = writer.layout();
    let mut backoff = Duration::from_millis(100);
    let deadline = Instant::now() + FLUSH_RETRY_BUDGET;
    let written = loop {
        match commit_round(round, writer, sinks) {
            Ok(written) => break written,
            Err(error) => {
                FlushFailed {
                    partitions: round.len(),
                    error: &error,
                }
                .emit(telemetry);
                if Instant::now() >= deadline {
                    return Err(RuntimeError::Archive(ArchiveError::Io {
                        path: layout.root().to_path_buf(),
                        source: std::io::Error::other(format!(
                            "flush of {} partitions kept failing: {error}",
                            round.len()
                        )),
                    }));
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    };
    for &(state_bytes, file_bytes) in &written.states {
        OperatorStateSaved {
            state_bytes,
            file_bytes,
        }
        .emit(telemetry);
    }
    for file in &written.files {
        FileArchived {
            table: file.table.name(),
            rows: file.rows,
            bytes: file.bytes,
        }
        .emit(telemetry);
    }
    for &index in &written.fenced {
        let flush = &round[index];
        FlushFenced {
            topic: &flush.topic,
            partition: flush.partition,
            next_offset: flush.checkpoint.next_offset,
        }
        .emit(telemetry);
    }
    for flush in round {
        telemetry
            .flush_seconds
            .observe(flush.started.elapsed().as_secs_f64());
    }
    Ok(written.fenced)
}

/// What a round wrote: its data files, and (encoded, compressed) sizes of its state
/// files, of the flushes that committed; and the flushes fenced off (by index).
#[derive(Default)]
struct Written {
    files: Vec<WrittenFile>,
    states: Vec<(u64, u64)>,
    fenced: Vec<usize>,
}

/// What step 1 wrote: staged data files and state files, each with the index of its
/// flush in the round.
#[derive(Default)]
struct Staged {
    files: Vec<(usize, PathBuf, WrittenFile)>,
    states: Vec<(usize, PathBuf, u64, u64)>,
}

impl Staged {
    fn extend(&mut self, other: Staged) {
        self.files.extend(other.files);
        self.states.extend(other.states);
    }
}

/// One attempt at steps 1–4; the error names the partition or step that failed.
fn commit_round(
    round: &[PreparedFlush],
    writer: &ParquetWriter,
    sinks: &Sinks,
) -> Result<Written, String> {
    let layout = writer.layout();
    let staged = stage_on_every_core(round, writer, sinks)?;
    let checkpoints: Vec<PathBuf> = round
        .iter()
        .map(|f| layout.checkpoint_file(&f.topic, f.partition))
        .collect();
    let staged_checkpoints: Vec<PathBuf> = round
        .iter()
        .map(|f| commit::staged_checkpoint_file(layout, &f.topic, f.partition, &f.claim))
        .collect();
    sync_all_written(
        layout.root(),
        staged
            .files
            .iter()
            .map(|(_, path, _)| path.as_path())
            .chain(staged.states.iter().map(|(_, path, _, _)| path.as_path()))
            .chain(staged_checkpoints.iter().map(PathBuf::as_path)),
    )
    .map_err(|e| format!("making the staged files durable: {e}"))?;
    let mut fenced = Vec::new();
    for (index, flush) in round.iter().enumerate() {
        let (topic, partition) = (&*flush.topic, flush.partition);
        let committed = claim::commit_if_claimed(layout, topic, partition, &flush.claim, || {
            commit::commit_checkpoint(layout, topic, partition, &flush.claim)
        })
        .map_err(|e| format!("{topic}[{partition}]: {e}"))?;
        if !committed {
            fenced.push(index);
        }
    }
    sync_all_written(layout.root(), checkpoints.iter().map(PathBuf::as_path))
        .map_err(|e| format!("committing the checkpoints: {e}"))?;
    for (_, flush) in round
        .iter()
        .enumerate()
        .filter(|(i, _)| !fenced.contains(i))
    {
        commit::publish(
            layout,
            &flush.topic,
            flush.partition,
            &flush.checkpoint.files,
        )
        .map_err(|e| format!("{}[{}]: {e}", flush.topic, flush.partition))?;
        if let Some(replaced) = &flush.replaced_state {
            state::remove_state(
                &layout
                    .state_dir(&flush.topic, flush.partition)
                    .join(replaced),
            )
            .map_err(|e| format!("{}[{}]: {e}", flush.topic, flush.partition))?;
        }
    }
    // The moves must be durable before a later checkpoint of these partitions (which
    // no longer lists these files) is: on Linux the next round's first syncfs sees to
    // that; where syncs are per file, the moved files' directories are synced now.
    #[cfg(not(target_os = "linux"))]
    sync_all_written(
        layout.root(),
        round
            .iter()
            .flat_map(|f| f.checkpoint.files.iter().map(PathBuf::as_path)),
    )
    .map_err(|e| format!("publishing the files: {e}"))?;
    let kept = |index: &usize| !fenced.contains(index);
    Ok(Written {
        files: staged
            .files
            .into_iter()
            .filter(|(i, _, _)| kept(i))
            .map(|(_, _, file)| file)
            .collect(),
        states: staged
            .states
            .into_iter()
            .filter(|(i, _, _, _)| kept(i))
            .map(|(_, _, s, f)| (s, f))
            .collect(),
        fenced,
    })
}

/// Step 1 for every flush of the round, spreading partitions over the cores: each
/// thread takes the next unstaged flush, so a core that drew small partitions
/// (metrics) goes on to help with the large ones (spans) instead of idling; returns
/// what was written where.
fn stage_on_every_core(
    round: &[PreparedFlush],
    writer: &ParquetWriter,
    sinks: &Sinks,
) -> Result<Staged, String> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(round.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let outcomes: Vec<Result<Staged, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let next = &next;
                scope.spawn(move || {
                    let mut staged = Staged::default();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(flush) = round.get(index) else { break };
                        staged.extend(flush.stage(index, writer, sinks)?);
                    }
                    Ok(staged)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a flush thread panicked".to_owned()))
            })
            .collect()
    });
    let mut staged = Staged::default();
    for outcome in outcomes {
        staged.extend(outcome?);
    }
    Ok(staged)
}

/// One partition's flush, planned and ready to be made durable.
pub(crate) struct PreparedFlush {
    pub topic: Arc<str>,
    pub partition: i32,
    /// The claim the partition was assigned under: the checkpoint commits only
    /// while it holds (see [`crate::archive::claim`]).
    pub claim: ClaimToken,
    pub plan: Vec<PlannedFile>,
    pub letters: Vec<DeadLetter>,
    pub checkpoint: Checkpoint,
    /// Encoded operator state for the state file `checkpoint` names, when it moved
    /// since the last flush (`None`: the checkpoint names the earlier file).
    pub state: Option<Vec<u8>>,
    /// The state file this flush's checkpoint replaces (deleted once committed).
    pub replaced_state: Option<String>,
    pub alerts: Vec<RaisedAlert>,
    pub messages: Vec<OutboundMessage>,
    pub started: Instant,
    /// What of `letters`, `alerts` and `messages` the broker has acknowledged.
    pub sent: SendProgress,
}

/// The topics a flush produces to before its checkpoint.
pub(crate) struct Sinks {
    pub dlq: DeadLetterSink,
    pub dlq_topic: String,
    pub alerts: AlertSink,
    pub outbound: OutboundSink,
}

impl PreparedFlush {
    /// Step 1: files into the staging directory, the state file, the checkpoint
    /// beside the current one, dead letters, alerts and outbound records
    /// acknowledged.
    fn stage(&self, index: usize, writer: &ParquetWriter, sinks: &Sinks) -> Result<Staged, String> {
        let (topic, partition) = (&*self.topic, self.partition);
        let layout = writer.layout();
        let failed = |e: &dyn std::fmt::Display| format!("{topic}[{partition}]: {e}");
        let mut staged = Staged::default();
        for planned in &self.plan {
            let at = layout.staged_file(topic, partition, &planned.path);
            let file = writer.write_to(planned, &at).map_err(|e| failed(&e))?;
            staged.files.push((index, at, file));
        }
        if let (Some(bytes), Some(file)) = (&self.state, &self.checkpoint.state) {
            let (path, file_bytes) =
                state::write_state(layout, topic, partition, &file.name, bytes)
                    .map_err(|e| failed(&e))?;
            staged.states.push((index, path, file.bytes, file_bytes));
        }
        commit::stage_checkpoint(layout, &self.checkpoint, &self.claim).map_err(|e| failed(&e))?;
        // A retried round does not send again what the broker already acknowledged.
        self.sent.step(SendStep::DeadLetters, || {
            sinks
                .dlq
                .send_all(&self.letters, Duration::from_secs(30))
                .map_err(|e| failed(&format!("dead-letter topic {}: {e}", sinks.dlq_topic)))
        })?;
        self.sent.step(SendStep::Alerts, || {
            sinks
                .alerts
                .send_all(&self.alerts, Duration::from_secs(30))
                .map_err(|e| failed(&format!("alerts topic {}: {e}", sinks.alerts.topic())))
        })?;
        self.sent.step(SendStep::Outbound, || {
            sinks
                .outbound
                .send_all(&self.messages, Duration::from_secs(30))
                .map_err(|e| failed(&format!("output records: {e}")))
        })?;
        Ok(staged)
    }
}

/// The records a flush sends before its checkpoint, in the order they are sent.
#[derive(Debug, Clone, Copy)]
#[repr(u8)]
pub(crate) enum SendStep {
    DeadLetters = 1,
    Alerts = 2,
    Outbound = 3,
}

/// How far a flush's sends got across the attempts at its round: each step runs
/// until it succeeds once, and never again after (the round is retried as a whole,
/// but a dead letter acknowledged in the first attempt is not produced twice).
#[derive(Debug, Default)]
pub(crate) struct SendProgress {
    done: AtomicU8,
}

impl SendProgress {
    /// Runs `send` unless `step` already succeeded; records its success.
    fn step<E>(&self, step: SendStep, send: impl FnOnce() -> Result<(), E>) -> Result<(), E> {
        if self.done.load(Ordering::Acquire) >= step as u8 {
            return Ok(());
        }
        send()?;
        self.done.store(step as u8, Ordering::Release);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retried_flush_sends_only_what_was_not_acknowledged() {
        let progress = SendProgress::default();
        let mut calls = Vec::new();
        // First attempt: dead letters go out, alerts fail.
        let first: Result<(), &str> = progress
            .step(SendStep::DeadLetters, || {
                calls.push("dlq");
                Ok(())
            })
            .and_then(|()| {
                progress.step(SendStep::Alerts, || {
                    calls.push("alerts");
                    Err("broker down")
                })
            });
        assert_eq!(first, Err("broker down"));
        // Second attempt: the dead letters are not sent again; the rest are.
        for step in [SendStep::DeadLetters, SendStep::Alerts, SendStep::Outbound] {
            progress
                .step(step, || {
                    calls.push(match step {
                        SendStep::DeadLetters => "dlq",
                        SendStep::Alerts => "alerts",
                        SendStep::Outbound => "outbound",
                    });
                    Ok::<(), &str>(())
                })
                .unwrap();
        }
        assert_eq!(calls, ["dlq", "alerts", "alerts", "outbound"]);
        // A third attempt sends nothing.
        progress
            .step(SendStep::Outbound, || -> Result<(), ()> {
                panic!("sent twice")
            })
            .unwrap();
    }

    #[test]
    fn wait_idle_returns_only_when_every_round_finished() {
        let in_flight = Arc::new(InFlight::default());
        in_flight.add();
        in_flight.add();
        let finisher = in_flight.clone();
        let handle = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            finisher.finish();
            std::thread::sleep(Duration::from_millis(50));
            finisher.finish();
        });
        let started = Instant::now();
        in_flight.wait_idle();
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "returned before the second round finished"
        );
        assert_eq!(in_flight.pending(), 0);
        handle.join().unwrap();
    }
}
