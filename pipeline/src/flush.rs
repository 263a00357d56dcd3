//! The flush worker: makes planned partition flushes durable on a thread of its own,
//! so the shards keep decoding while Parquet is encoded and fsynced.
//!
//! A flush is: intent, files, dead letters, alerts and outbound records (SLO status
//! and exchange) acknowledged by the broker, checkpoint (with the partition's
//! operator state), intent cleared.
//!
//! Rounds (the partitions of one shard due at one moment) go through a channel of
//! capacity one, which is the backpressure: a shard blocks only when a round is
//! queued behind one being written. Rounds run in the order they were submitted, and
//! a partition belongs to one shard, so its checkpoints advance in order. Within a
//! round, partitions are written on every core at once.
//! [`InFlight`] lets a rebalance wait until nothing is being written before a
//! partition changes hands, so a new owner never races an old owner's flush.

use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cara_operators::operator::OutboundMessage;

use crate::alerts::{AlertSink, RaisedAlert};
use crate::archive::commit::{self, Checkpoint, Intent};
use crate::archive::writer::{ParquetWriter, PlannedFile};
use crate::archive::ArchiveError;
use crate::dlq::{DeadLetter, DeadLetterSink};
use crate::internal_events::{FileArchived, FlushFailed, InternalEvent};
use crate::outbound::OutboundSink;
use crate::source::SourceError;
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
    pub fn submit(&self, round: Vec<PreparedFlush>) -> Result<(), SourceError> {
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
    done: Receiver<Result<Vec<Durable>, SourceError>>,
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
                    let outcome = execute_round(&round, &writer, &sinks, &telemetry).map(|()| {
                        round
                            .iter()
                            .map(|f| Durable {
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
    pub fn completed(&self, wait: bool) -> Result<Vec<Durable>, SourceError> {
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

fn worker_gone() -> SourceError {
    SourceError::Archive(ArchiveError::Io {
        path: std::path::PathBuf::from("<flush worker>"),
        source: std::io::Error::other("the flush worker stopped"),
    })
}

/// Writes every flush of a round, spreading partitions over the cores.
fn execute_round(
    round: &[PreparedFlush],
    writer: &ParquetWriter,
    sinks: &Sinks,
    telemetry: &Telemetry,
) -> Result<(), SourceError> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(round.len())
        .max(1);
    let chunk = round.len().div_ceil(workers);
    let outcomes: Vec<Result<(), SourceError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = round
            .chunks(chunk)
            .map(|flushes| {
                scope.spawn(move || {
                    flushes
                        .iter()
                        .try_for_each(|f| f.execute(writer, sinks, telemetry))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(worker_gone())))
            .collect()
    });
    outcomes.into_iter().collect()
}

/// One partition's flush, planned and ready to be made durable.
pub(crate) struct PreparedFlush {
    pub topic: Arc<str>,
    pub partition: i32,
    pub plan: Vec<PlannedFile>,
    pub letters: Vec<DeadLetter>,
    pub intent: Intent,
    pub checkpoint: Checkpoint,
    pub alerts: Vec<RaisedAlert>,
    pub messages: Vec<OutboundMessage>,
    pub started: Instant,
}

/// The topics a flush produces to before its checkpoint.
pub(crate) struct Sinks {
    pub dlq: DeadLetterSink,
    pub dlq_topic: String,
    pub alerts: AlertSink,
    pub outbound: OutboundSink,
}

impl PreparedFlush {
    /// Intent, files, dead letters, checkpoint: retried with backoff until durable or
    /// the retry budget is spent.
    fn execute(
        &self,
        writer: &ParquetWriter,
        sinks: &Sinks,
        telemetry: &Telemetry,
    ) -> Result<(), SourceError> {
        let (topic, partition) = (&*self.topic, self.partition);
        let layout = writer.layout();
        let attempt = || -> Result<Vec<_>, String> {
            commit::write_intent(layout, topic, partition, &self.intent)
                .map_err(|e| e.to_string())?;
            let mut written = Vec::with_capacity(self.plan.len());
            for planned in &self.plan {
                written.push(writer.write(planned).map_err(|e| e.to_string())?);
            }
            sinks
                .dlq
                .send_all(&self.letters, Duration::from_secs(30))
                .map_err(|e| format!("dead-letter topic {}: {e}", sinks.dlq_topic))?;
            sinks
                .alerts
                .send_all(&self.alerts, Duration::from_secs(30))
                .map_err(|e| format!("alerts topic {}: {e}", sinks.alerts.topic()))?;
            sinks
                .outbound
                .send_all(&self.messages, Duration::from_secs(30))
                .map_err(|e| format!("output records: {e}"))?;
            commit::write_checkpoint(layout, &self.checkpoint).map_err(|e| e.to_string())?;
            commit::clear_intent(layout, topic, partition).map_err(|e| e.to_string())?;
            Ok(written)
        };
        let mut backoff = Duration::from_millis(100);
        let deadline = Instant::now() + FLUSH_RETRY_BUDGET;
        let written = loop {
            match attempt() {
                Ok(written) => break written,
                Err(error) => {
                    FlushFailed {
                        topic,
                        partition,
                        error: &error,
                    }
                    .emit(telemetry);
                    if Instant::now() >= deadline {
                        return Err(SourceError::Archive(ArchiveError::Io {
                            path: layout.root().to_path_buf(),
                            source: std::io::Error::other(format!(
                                "flush of {topic}[{partition}] kept failing: {error}"
                            )),
                        }));
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        for file in &written {
            FileArchived {
                table: file.table.name(),
                rows: file.rows,
                bytes: file.bytes,
            }
            .emit(telemetry);
        }
        telemetry
            .flush_seconds
            .observe(self.started.elapsed().as_secs_f64());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
