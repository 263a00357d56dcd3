//! The consumer's callbacks: rebalances, statistics and client errors.
//!
//! Owns: recovering each assigned partition from the archive and resuming it at its
//! checkpoint; telling the shards of assignments and revocations in order with the
//! data (through the [`Dispatcher`]); holding a revocation until the shards have
//! dropped the partitions and nothing of theirs is being written, so a new owner
//! never races an old owner's flush; consumer lag from statistics; readiness on
//! client errors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;

use super::dispatch::{Dispatcher, ShardGone};
use crate::archive::claim;
use crate::archive::layout::ArchiveLayout;
use crate::internal_events::*;
use crate::runtime::flush::InFlight;
use crate::runtime::input::{AssignedPartition, PartitionKey};
use crate::runtime::{FatalSlot, RuntimeError};
use crate::telemetry::Telemetry;

/// State the consumer's callbacks and the poll loop share. Everything here is touched
/// by the poll thread only (callbacks run inside `poll`), so the locks never contend;
/// they exist because librdkafka contexts must be `Sync`.
/// An assigned partition's offsets.
#[derive(Debug, Clone, Copy)]
struct Owned {
    /// Where it resumed: its checkpoint (`None`: the log's start).
    resumed_at: Option<i64>,
    /// The next offset of its latest flush this process made durable.
    durable: Option<i64>,
}

pub(super) struct SourceContext {
    layout: ArchiveLayout,
    topics: Vec<String>,
    in_flight: Arc<InFlight>,
    telemetry: Arc<Telemetry>,
    dispatcher: Mutex<Dispatcher>,
    /// Each assigned partition: where it resumed and how far it is durable.
    assigned: Mutex<HashMap<PartitionKey, Owned>>,
    fatal: Arc<FatalSlot>,
}

impl SourceContext {
    pub fn new(
        layout: ArchiveLayout,
        topics: Vec<String>,
        in_flight: Arc<InFlight>,
        telemetry: Arc<Telemetry>,
        dispatcher: Mutex<Dispatcher>,
        fatal: Arc<FatalSlot>,
    ) -> SourceContext {
        SourceContext {
            layout,
            topics,
            in_flight,
            telemetry,
            dispatcher,
            assigned: Mutex::new(HashMap::new()),
            fatal,
        }
    }

    /// Index of a subscribed topic.
    pub fn topic_index(&self, topic: &str) -> Option<usize> {
        self.topics.iter().position(|t| t == topic)
    }

    /// Runs `f` on the dispatcher; a stopped shard surfaces as its fatal error.
    pub fn dispatch(
        &self,
        f: impl FnOnce(&mut Dispatcher) -> Result<(), ShardGone>,
    ) -> Result<(), RuntimeError> {
        let outcome = match self.dispatcher.lock() {
            Ok(mut d) => f(&mut d),
            Err(_) => Err(ShardGone),
        };
        outcome.map_err(|ShardGone| {
            self.fatal()
                .unwrap_or_else(|| RuntimeError::Shard("a shard thread stopped".into()))
        })
    }

    /// Closes the shards' inputs so their threads end.
    pub fn close_dispatcher(&self) {
        if let Ok(mut d) = self.dispatcher.lock() {
            d.close();
        }
    }

    /// The first fatal error of a callback or shard, if any.
    pub fn fatal(&self) -> Option<RuntimeError> {
        self.fatal.take()
    }

    /// Notes that `topic`/`partition` is durable up to `next_offset`; returns
    /// whether it is still assigned here (a revoked partition's offset is not this
    /// process's to commit).
    pub fn record_durable(&self, topic: &str, partition: i32, next_offset: i64) -> bool {
        let Some(index) = self.topic_index(topic) else {
            return false;
        };
        let Ok(mut assigned) = self.assigned.lock() else {
            return false;
        };
        match assigned.get_mut(&(index, partition)) {
            Some(owned) => {
                owned.durable = Some(next_offset);
                true
            }
            None => false,
        }
    }

    /// The offset to commit for every assigned partition that has one: its latest
    /// durable offset, or else the checkpoint it resumed from.
    pub fn committable_offsets(&self) -> Vec<(String, i32, i64)> {
        let Ok(assigned) = self.assigned.lock() else {
            return Vec::new();
        };
        assigned
            .iter()
            .filter_map(|(&(index, partition), owned)| {
                let next = owned.durable.or(owned.resumed_at)?;
                Some((self.topics.get(index)?.clone(), partition, next))
            })
            .collect()
    }

    /// True while some partition is assigned.
    pub fn has_assignment(&self) -> bool {
        self.assigned.lock().map(|a| !a.is_empty()).unwrap_or(false)
    }

    /// Where an assigned partition was resumed: its checkpoint, or `None` when it is
    /// read from the log's start (or is not assigned).
    pub fn resumed_at(&self, topic: &str, partition: i32) -> Option<i64> {
        let key = (self.topic_index(topic)?, partition);
        self.assigned.lock().ok()?.get(&key)?.resumed_at
    }

    fn set_assigned(&self, update: impl FnOnce(&mut HashMap<PartitionKey, Owned>)) {
        if let Ok(mut assigned) = self.assigned.lock() {
            update(&mut assigned);
            self.telemetry
                .assigned_partitions
                .set(assigned.len() as i64);
            if assigned.is_empty() {
                self.telemetry.set_ready(false, "no partitions assigned");
            } else {
                self.telemetry.set_ready(true, "consuming");
            }
        }
    }

    /// Resumes each assigned partition at its archive checkpoint and hands it to its
    /// shard (which notices a log that no longer reaches the checkpoint, see
    /// [`crate::runtime::shard`]).
    fn on_assign(&self, tpl: &mut TopicPartitionList) {
        let mut assigned = Vec::new();
        for (topic, partition) in partitions_of(tpl) {
            let Some(index) = self.topic_index(&topic) else {
                continue;
            };
            match claim::claim(&self.layout, &topic, partition) {
                Ok((claim, recovery)) => {
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
                            self.fatal.raise(RuntimeError::Kafka(e));
                        }
                    }
                    assigned.push(AssignedPartition {
                        key: (index, partition),
                        next_offset: recovery.next_offset,
                        operator_state: recovery.operator_state,
                        state_file: recovery.state_file,
                        epoch: recovery.epoch,
                        claim,
                    });
                }
                Err(source) => self.fatal.raise(RuntimeError::Recovery {
                    topic,
                    partition,
                    source,
                }),
            }
        }
        tracing::info!(partitions = assigned.len(), "partitions assigned");
        let resumed: Vec<_> = assigned
            .iter()
            .map(|a| {
                let owned = Owned {
                    resumed_at: a.next_offset,
                    durable: None,
                };
                (a.key, owned)
            })
            .collect();
        if let Err(e) = self.dispatch(|d| d.assign(assigned)) {
            self.fatal.raise(e);
        }
        self.set_assigned(|set| set.extend(resumed));
    }

    fn on_revoke(&self, tpl: &TopicPartitionList) {
        let keys: Vec<_> = partitions_of(tpl)
            .into_iter()
            .filter_map(|(topic, partition)| Some((self.topic_index(&topic)?, partition)))
            .collect();
        if let Err(e) = self.dispatch(|d| d.revoke(keys.clone())) {
            self.fatal.raise(e);
        }
        // Partitions change hands only once nothing of theirs is being written.
        self.in_flight.wait_idle();
        self.set_assigned(|set| {
            for key in &keys {
                set.remove(key);
            }
        });
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
                    self.fatal.raise(RuntimeError::Kafka(e));
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.on_revoke(tpl);
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
