//! Typed internal events: each thing that can happen in the pipeline is one struct,
//! and emitting it both logs (tracing) and counts (Prometheus), so the two never drift.

use tracing::{debug, info, warn};

use crate::decode::Unused;
use crate::telemetry::{
    DecodeErrorLabels, PartitionLabels, StageLabels, TableLabels, Telemetry, TopicCounters,
    TopicLabels, UnusedLabels,
};

/// Something worth logging and counting.
pub trait InternalEvent {
    /// Logs and counts the event.
    fn emit(self, telemetry: &Telemetry);
}

/// Messages of one topic were consumed and decoded into `records` rows. On the hot
/// path, so a shard sums a whole chunk first, counts through handles looked up once
/// per topic, and does not log.
pub struct MessagesDecoded<'a> {
    /// The source topic's counters.
    pub counters: &'a TopicCounters,
    /// Messages decoded.
    pub messages: u64,
    /// Rows they produced.
    pub records: u64,
}

impl InternalEvent for MessagesDecoded<'_> {
    fn emit(self, _: &Telemetry) {
        self.counters.messages.inc_by(self.messages);
        self.counters.records.inc_by(self.records);
    }
}

/// Alerts were raised (firing or resolved) by a partition's flush.
pub struct AlertsRaised<'a> {
    /// The alerts.
    pub alerts: &'a [crate::alerts::RaisedAlert],
}

impl InternalEvent for AlertsRaised<'_> {
    fn emit(self, t: &Telemetry) {
        for alert in self.alerts {
            let r = &alert.record;
            info!(
                id = %r.id,
                rule = %r.rule,
                status = r.status.as_str(),
                summary = %r.summary,
                "alert"
            );
            t.alerts
                .get_or_create(&crate::telemetry::AlertLabels {
                    status: r.status.as_str().to_owned(),
                })
                .inc();
        }
    }
}

/// The SLO stage computed statuses (sent on `cara.slo`, and published to the
/// process): their budgets and burn rates become gauges, the latest status of each
/// SLO winning.
pub struct SloStatusesSent {
    /// The statuses, in the order computed.
    pub statuses: Vec<cara_operators::slo::SloStatus>,
}

impl InternalEvent for SloStatusesSent {
    fn emit(self, t: &Telemetry) {
        for status in &self.statuses {
            t.slo_budget_remaining
                .get_or_create(&crate::telemetry::SloLabels {
                    slo: status.slo.clone(),
                })
                .set(status.budget_remaining);
            for (window, burn) in &status.windows {
                t.slo_burn_rate
                    .get_or_create(&crate::telemetry::SloWindowLabels {
                        slo: status.slo.clone(),
                        window: window.clone(),
                    })
                    .set(burn.burn_rate);
            }
        }
    }
}

/// A message could not be decoded and was dead-lettered.
pub struct MessageDeadLettered<'a> {
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Error class.
    pub kind: &'static str,
    /// Full reason.
    pub reason: &'a str,
}

impl InternalEvent for MessageDeadLettered<'_> {
    fn emit(self, t: &Telemetry) {
        warn!(
            topic = self.topic,
            partition = self.partition,
            offset = self.offset,
            kind = self.kind,
            reason = self.reason,
            "message dead-lettered"
        );
        t.messages_in
            .get_or_create(&TopicLabels {
                topic: self.topic.to_owned(),
            })
            .inc();
        t.decode_errors
            .get_or_create(&DecodeErrorLabels {
                topic: self.topic.to_owned(),
                kind: self.kind.to_owned(),
            })
            .inc();
        t.dlq_records.inc();
    }
}

/// A partition resumed at its archive checkpoint, but the broker delivered an earlier
/// offset first: its log no longer reaches the checkpoint (the broker was reset or
/// replaced, the topic recreated), and librdkafka fell back to the log's start. The
/// new log is archived as a new epoch of the partition; the old epoch's files stay.
pub struct PartitionLogReset<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// The checkpoint's next offset.
    pub checkpoint: i64,
    /// The offset the broker delivered first.
    pub delivered: i64,
    /// The archive epoch it starts.
    pub epoch: u32,
}

impl InternalEvent for PartitionLogReset<'_> {
    fn emit(self, t: &Telemetry) {
        warn!(
            topic = self.topic,
            partition = self.partition,
            checkpoint = self.checkpoint,
            delivered = self.delivered,
            epoch = self.epoch,
            "the partition's log no longer reaches its checkpoint (broker reset or replaced, topic recreated): archiving the new log as a new epoch"
        );
        t.partition_log_resets
            .get_or_create(&PartitionLabels {
                topic: self.topic.to_owned(),
                partition: self.partition.to_string(),
            })
            .inc();
        t.note_log_reset(format!("{}/{}", self.topic, self.partition), self.epoch);
    }
}

/// Offsets were never read: the broker no longer had them.
pub struct OffsetsSkipped<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset expected next.
    pub expected: i64,
    /// Offset actually received.
    pub received: i64,
}

impl InternalEvent for OffsetsSkipped<'_> {
    fn emit(self, t: &Telemetry) {
        let lost = (self.received - self.expected).max(0) as u64;
        warn!(
            topic = self.topic, partition = self.partition, expected = self.expected, received = self.received, lost,
            "records lost to broker retention: offsets {}..{} were deleted before cara read them; consume faster, raise retention, or (embedded broker) add partitions",
            self.expected, self.received
        );
        t.offsets_skipped
            .get_or_create(&PartitionLabels {
                topic: self.topic.to_owned(),
                partition: self.partition.to_string(),
            })
            .inc_by(lost);
    }
}

/// An OTLP message carried values that are not rows (see `decode::otlp`).
pub struct OtlpValuesUnused<'a> {
    /// Topic.
    pub topic: &'a str,
    /// What, and why.
    pub unused: Unused,
}

impl InternalEvent for OtlpValuesUnused<'_> {
    fn emit(self, t: &Telemetry) {
        for (reason, count) in self.unused.by_reason() {
            if count == 0 {
                continue;
            }
            debug!(
                topic = self.topic,
                reason, count, "OTLP values not stored as rows"
            );
            t.otlp_values_unused
                .get_or_create(&UnusedLabels {
                    topic: self.topic.to_owned(),
                    reason: reason.to_owned(),
                })
                .inc_by(count);
        }
    }
}

/// Log lines were decoded whose level cara could not read.
pub struct UnknownLogLevels<'a> {
    /// Topic.
    pub topic: &'a str,
    /// How many lines.
    pub lines: u64,
}

impl InternalEvent for UnknownLogLevels<'_> {
    fn emit(self, t: &Telemetry) {
        debug!(
            topic = self.topic,
            lines = self.lines,
            "log lines with a level cara cannot read (level `unknown`, original in `level_text`)"
        );
        t.unknown_log_levels
            .get_or_create(&TopicLabels {
                topic: self.topic.to_owned(),
            })
            .inc_by(self.lines);
    }
}

/// An idle partition's watermark was raised to its topic's.
pub struct WatermarkRaised<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// The new watermark, ms since the epoch.
    pub watermark_ms: i64,
}

impl InternalEvent for WatermarkRaised<'_> {
    fn emit(self, t: &Telemetry) {
        debug!(
            topic = self.topic,
            partition = self.partition,
            watermark_ms = self.watermark_ms,
            "idle partition: watermark raised to the topic's"
        );
        t.idle_watermark_raises
            .get_or_create(&PartitionLabels {
                topic: self.topic.to_owned(),
                partition: self.partition.to_string(),
            })
            .inc();
    }
}

/// Which state limit refused records.
pub enum StateLimit {
    /// A partition's own limit: what it is and the setting that raises it.
    Partition(&'static str),
    /// The process's budget for all partitions (`runtime.max_state_bytes`), in bytes.
    Process(u64),
}

/// A stage found records behind its watermark (archived, not aggregated by it).
pub struct LateRecords<'a> {
    /// Topic the stage reads.
    pub topic: &'a str,
    /// The stage.
    pub stage: &'a str,
    /// How many.
    pub records: u64,
}

impl InternalEvent for LateRecords<'_> {
    fn emit(self, t: &Telemetry) {
        debug!(
            topic = self.topic,
            stage = self.stage,
            records = self.records,
            "records behind the stage's watermark: archived, not aggregated"
        );
        t.late_records
            .get_or_create(&StageLabels {
                topic: self.topic.to_owned(),
                stage: self.stage.to_owned(),
            })
            .inc_by(self.records);
    }
}

/// An operator refused records at a state limit.
pub struct StateLimitReached<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Records refused by this flush's batch.
    pub refused: u64,
    /// Whether to log it (the first time per partition for a partition's limit, per
    /// process for the process's); always counted.
    pub first: bool,
    /// The limit.
    pub limit: StateLimit,
}

impl InternalEvent for StateLimitReached<'_> {
    fn emit(self, t: &Telemetry) {
        let (counter, limit) = match self.limit {
            StateLimit::Partition(limit) => (&t.over_state_limit, limit.to_owned()),
            StateLimit::Process(bytes) => (
                &t.over_state_budget,
                format!("runtime.max_state_bytes ({bytes} bytes for all partitions)"),
            ),
        };
        if self.first {
            warn!(
                topic = self.topic,
                partition = self.partition,
                refused = self.refused,
                %limit,
                "operator state limit reached: records of new keys are archived but not analysed; raise the limit or reduce cardinality (cara_over_state_limit_total and cara_over_state_budget_total count them)"
            );
        }
        counter
            .get_or_create(&TopicLabels {
                topic: self.topic.to_owned(),
            })
            .inc_by(self.refused);
    }
}

/// A shard's buffers passed its memory budget; its largest were flushed early.
pub struct BufferBudgetReached {
    /// Partitions flushed early.
    pub partitions: usize,
    /// The shard's budget in payload bytes.
    pub budget_bytes: u64,
}

impl InternalEvent for BufferBudgetReached {
    fn emit(self, t: &Telemetry) {
        debug!(
            partitions = self.partitions,
            budget_bytes = self.budget_bytes,
            "buffers over the memory budget: flushing the largest early (archive.max_buffered_bytes)"
        );
        t.budget_flushes.inc_by(self.partitions as u64);
    }
}

/// A Parquet file became durable.
pub struct FileArchived<'a> {
    /// Table.
    pub table: &'a str,
    /// Rows in the file.
    pub rows: usize,
    /// Bytes on disk.
    pub bytes: u64,
}

impl InternalEvent for FileArchived<'_> {
    fn emit(self, t: &Telemetry) {
        let labels = TableLabels {
            table: self.table.to_owned(),
        };
        t.archive_files.get_or_create(&labels).inc();
        t.archive_bytes.get_or_create(&labels).inc_by(self.bytes);
        t.archive_rows
            .get_or_create(&labels)
            .inc_by(self.rows as u64);
    }
}

/// A flush saved its partition's operator state to a new state file.
pub struct OperatorStateSaved {
    /// Encoded state.
    pub state_bytes: u64,
    /// The file, compressed.
    pub file_bytes: u64,
}

impl InternalEvent for OperatorStateSaved {
    fn emit(self, t: &Telemetry) {
        t.state_files.inc();
        t.state_bytes.inc_by(self.state_bytes);
        t.state_file_bytes.inc_by(self.file_bytes);
    }
}

/// A flush round failed and will be retried.
pub struct FlushFailed<'a> {
    /// Partitions in the failed round.
    pub partitions: usize,
    /// The error.
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for FlushFailed<'_> {
    fn emit(self, t: &Telemetry) {
        warn!(partitions = self.partitions, error = %self.error, "flush failed; offsets stay uncommitted and the flush is retried");
        t.flush_failures.inc();
        t.set_ready(false, &format!("archive flush failing: {}", self.error));
    }
}

/// Recovery removed the files of an interrupted flush.
pub struct InterruptedFlushRemoved<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Files removed.
    pub files: usize,
}

impl InternalEvent for InterruptedFlushRemoved<'_> {
    fn emit(self, t: &Telemetry) {
        info!(
            topic = self.topic,
            partition = self.partition,
            files = self.files,
            "removed files of an interrupted flush; they will be rewritten from the checkpoint"
        );
        t.recovered_files.inc_by(self.files as u64);
    }
}

/// A flush was refused its commit: another process had claimed the partition.
pub struct FlushFenced<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// The offset the refused checkpoint would have moved to.
    pub next_offset: i64,
}

impl InternalEvent for FlushFenced<'_> {
    fn emit(self, _: &Telemetry) {
        warn!(
            topic = self.topic,
            partition = self.partition,
            next_offset = self.next_offset,
            "another process owns this partition now; this flush was not committed (its owner archives these records)"
        );
    }
}

/// Consumer lag of one partition was measured.
pub struct ConsumerLagMeasured<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Lag in messages.
    pub lag: i64,
}

impl InternalEvent for ConsumerLagMeasured<'_> {
    fn emit(self, t: &Telemetry) {
        t.consumer_lag
            .get_or_create(&PartitionLabels {
                topic: self.topic.to_owned(),
                partition: self.partition.to_string(),
            })
            .set(self.lag);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cara_operators::slo::{SloStatus, WindowStatus};

    fn status(slo: &str, ts: i64, budget: f64, burn: f64) -> SloStatus {
        SloStatus {
            slo: slo.into(),
            ts,
            windows: [(
                "5m".to_owned(),
                WindowStatus {
                    good: 90,
                    total: 100,
                    burn_rate: burn,
                },
            )]
            .into(),
            budget_remaining: budget,
        }
    }

    /// The latest status of each SLO is on `/metrics`.
    #[test]
    fn slo_statuses_become_gauges_the_latest_winning() {
        let t = Telemetry::new();
        SloStatusesSent {
            statuses: vec![
                status("checkout", 60_000, 0.9, 2.0),
                status("checkout", 120_000, 0.75, 10.0),
                status("search", 120_000, 1.0, 0.0),
            ],
        }
        .emit(&t);
        let text = t.encode();
        for line in [
            "cara_slo_budget_remaining{slo=\"checkout\"} 0.75",
            "cara_slo_budget_remaining{slo=\"search\"} 1.0",
            "cara_slo_burn_rate{slo=\"checkout\",window=\"5m\"} 10.0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }
}
