//! Hands polled messages to the shards that own their partitions.
//!
//! Owns: the copy of each polled message into a [`MessageChunk`] of its shard, sending
//! chunks when they are full or when the consumer has nothing more right now, the
//! "drained" notice once it has read every partition to its end (with the bytes of
//! backlog read since the last one, see [`crate::runtime::roll`]), and the
//! control messages (assign, revoke, flush everything) that must reach a shard in order
//! with its data. Every send goes through [`Dispatcher`], whose pending chunks are
//! always sent before a control message, so a shard sees a partition's records and its
//! assignment changes in the order the poll thread saw them.
//!
//! Does not own: decoding or flushing (see [`crate::runtime`]).

use crossbeam_channel::{bounded, Receiver, Sender};

use rdkafka::message::{BorrowedMessage, Message};

use crate::runtime::input::{AssignedPartition, MessageChunk, PartitionKey, ShardInput};
use crate::runtime::roll::{wall_clock_ms, RollPolicy};

/// A shard stopped (it failed; the failure is in the source's fatal slot).
#[derive(Debug)]
pub(crate) struct ShardGone;

/// The poll thread's side of the shards.
pub(crate) struct Dispatcher {
    shards: Vec<Sender<ShardInput>>,
    pending: Vec<MessageChunk>,
    /// Chunks the shards are done with, reused so that the poll thread does not
    /// fault in fresh memory for every chunk.
    spent: Receiver<MessageChunk>,
    /// Tells backlog records from fresh ones.
    roll: RollPolicy,
    /// The wall clock as the poll thread last read it (it is not read per message).
    wall_ms: i64,
    /// Payload bytes of backlog records pushed since the last drained notice.
    backlog_read: u64,
}

impl Dispatcher {
    /// A dispatcher over the shards' input channels; shards return chunks on `spent`;
    /// `roll` is the shards' roll policy.
    pub fn new(
        shards: Vec<Sender<ShardInput>>,
        spent: Receiver<MessageChunk>,
        roll: RollPolicy,
    ) -> Dispatcher {
        let pending = shards.iter().map(|_| MessageChunk::default()).collect();
        Dispatcher {
            shards,
            pending,
            spent,
            roll,
            wall_ms: wall_clock_ms(),
            backlog_read: 0,
        }
    }

    /// Sets the wall clock records are judged backlog by.
    pub fn set_wall_clock(&mut self, now_ms: i64) {
        self.wall_ms = now_ms;
    }

    /// An empty chunk: a returned one when there is one.
    fn fresh_chunk(&self) -> MessageChunk {
        match self.spent.try_recv() {
            Ok(mut chunk) => {
                chunk.clear();
                chunk
            }
            Err(_) => MessageChunk::default(),
        }
    }

    /// Takes shard `shard`'s pending chunk, leaving an empty one.
    fn take_pending(&mut self, shard: usize) -> MessageChunk {
        let fresh = self.fresh_chunk();
        std::mem::replace(&mut self.pending[shard], fresh)
    }

    /// The shard owning a partition. Partitions of one topic are spread round-robin,
    /// and topics start at different shards so small topics do not pile up on one.
    pub fn shard_of(&self, key: PartitionKey) -> usize {
        let (topic, partition) = key;
        (topic + partition.unsigned_abs() as usize) % self.shards.len().max(1)
    }

    /// `items` grouped by the shard owning each one's partition: `(shard, items)`, in
    /// shard order, every shard listed.
    fn group_by_shard<T>(
        &self,
        items: Vec<T>,
        key: impl Fn(&T) -> PartitionKey,
    ) -> impl Iterator<Item = (usize, Vec<T>)> {
        let mut groups: Vec<Vec<T>> = (0..self.shards.len()).map(|_| Vec::new()).collect();
        for item in items {
            groups[self.shard_of(key(&item))].push(item);
        }
        groups.into_iter().enumerate()
    }

    /// Copies a polled message into its shard's chunk, sending the chunk when full.
    pub fn push(&mut self, topic: usize, message: &BorrowedMessage<'_>) -> Result<(), ShardGone> {
        self.push_record(
            (topic, message.partition()),
            message.offset(),
            message.timestamp().to_millis(),
            message.payload(),
        )
    }

    /// [`Dispatcher::push`] of a message's parts.
    fn push_record(
        &mut self,
        key: PartitionKey,
        offset: i64,
        kafka_ts_ms: Option<i64>,
        payload: Option<&[u8]>,
    ) -> Result<(), ShardGone> {
        let shard = self.shard_of(key);
        if self.roll.is_backlog(kafka_ts_ms, self.wall_ms) {
            self.backlog_read += payload.map_or(0, <[u8]>::len) as u64;
        }
        let chunk = self.pending.get_mut(shard).ok_or(ShardGone)?;
        chunk.push(key, offset, kafka_ts_ms, payload);
        if chunk.is_full() {
            let chunk = self.take_pending(shard);
            self.send(shard, ShardInput::Messages(chunk))?;
        }
        Ok(())
    }

    /// Sends every partly filled chunk.
    pub fn send_pending(&mut self) -> Result<(), ShardGone> {
        for shard in 0..self.pending.len() {
            if !self.pending[shard].is_empty() {
                let chunk = self.take_pending(shard);
                self.send(shard, ShardInput::Messages(chunk))?;
            }
        }
        Ok(())
    }

    /// Sends every partly filled chunk, then tells every shard that the consumer has
    /// read its partitions to their ends (so backlog can be flushed; see
    /// [`crate::runtime::roll`]).
    pub fn drained(&mut self) -> Result<(), ShardGone> {
        self.send_pending()?;
        let backlog_read = std::mem::take(&mut self.backlog_read);
        for shard in 0..self.shards.len() {
            self.send(shard, ShardInput::Drained { backlog_read })?;
        }
        Ok(())
    }

    /// Tells each owning shard of its newly assigned partitions.
    pub fn assign(&mut self, partitions: Vec<AssignedPartition>) -> Result<(), ShardGone> {
        if self.shards.is_empty() {
            return Ok(()); // closed: nothing reads these partitions any more
        }
        self.send_pending()?;
        for (shard, list) in self.group_by_shard(partitions, |p| p.key) {
            if !list.is_empty() {
                self.send(shard, ShardInput::Assign(list))?;
            }
        }
        Ok(())
    }

    /// Tells the owning shards to drop revoked partitions, and waits until they have:
    /// once this returns, no shard will start another flush of them.
    pub fn revoke(&mut self, keys: Vec<PartitionKey>) -> Result<(), ShardGone> {
        if self.shards.is_empty() {
            return Ok(()); // closed (the consumer's final revocation): nothing to drop
        }
        self.send_pending()?;
        let mut acks = Vec::new();
        for (shard, list) in self.group_by_shard(keys, |key| *key) {
            if !list.is_empty() {
                let (tx, rx) = bounded(1);
                self.send(shard, ShardInput::Revoke(list, tx))?;
                acks.push(rx);
            }
        }
        for ack in acks {
            ack.recv().map_err(|_| ShardGone)?;
        }
        Ok(())
    }

    /// Has every shard hand all its buffered rows to the flush worker, and waits.
    pub fn flush_everything(&mut self) -> Result<(), ShardGone> {
        self.send_pending()?;
        let mut acks = Vec::new();
        for shard in 0..self.shards.len() {
            let (tx, rx) = bounded(1);
            self.send(shard, ShardInput::FlushAll(tx))?;
            acks.push(rx);
        }
        for ack in acks {
            ack.recv().map_err(|_| ShardGone)?;
        }
        Ok(())
    }

    /// Closes the shards' inputs; each shard stops after what it already received.
    pub fn close(&mut self) {
        self.shards.clear();
        self.pending.clear();
    }

    fn send(&self, shard: usize, input: ShardInput) -> Result<(), ShardGone> {
        self.shards
            .get(shard)
            .ok_or(ShardGone)?
            .send(input)
            .map_err(|_| ShardGone)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A 10 s roll interval.
    fn policy() -> RollPolicy {
        RollPolicy {
            roll_interval: Duration::from_secs(10),
            roll_bytes: 1 << 20,
        }
    }

    #[test]
    fn spent_chunks_come_back_empty_with_their_capacity() {
        let (tx, rx) = bounded(4);
        let (spent_tx, spent_rx) = crossbeam_channel::unbounded();
        let mut dispatcher = Dispatcher::new(vec![tx], spent_rx, policy());
        let mut used = MessageChunk::default();
        used.push((0, 0), 1, None, Some(&[7u8; 4096]));
        let (_, capacity) = used.byte_len_and_capacity();
        spent_tx.send(used).unwrap();
        dispatcher.pending[0].push((0, 0), 2, None, Some(b"y"));
        dispatcher.send_pending().unwrap();
        assert!(
            matches!(rx.try_recv(), Ok(ShardInput::Messages(c)) if c.messages()[0].offset == 2)
        );
        let reused = &dispatcher.pending[0];
        assert!(reused.is_empty());
        assert_eq!(reused.byte_len_and_capacity(), (0, capacity));
    }

    #[test]
    fn partitions_spread_over_every_shard() {
        let senders: Vec<_> = (0..3).map(|_| bounded(1).0).collect();
        let dispatcher = Dispatcher::new(senders, crossbeam_channel::never(), policy());
        let mut per_shard = [0usize; 3];
        for topic in 0..3 {
            for partition in 0..48 {
                per_shard[dispatcher.shard_of((topic, partition))] += 1;
            }
        }
        assert_eq!(per_shard, [48, 48, 48]);
        // A single-partition topic of each signal lands on three different shards.
        let singles: std::collections::BTreeSet<_> =
            (0..3).map(|t| dispatcher.shard_of((t, 0))).collect();
        assert_eq!(singles.len(), 3);
    }

    #[test]
    fn a_closed_dispatcher_accepts_the_final_revocation() {
        let (tx, _rx) = bounded(1);
        let mut dispatcher = Dispatcher::new(vec![tx], crossbeam_channel::never(), policy());
        dispatcher.close();
        assert!(dispatcher.revoke(vec![(0, 1), (2, 5)]).is_ok());
        assert!(dispatcher
            .assign(vec![AssignedPartition {
                key: (0, 1),
                next_offset: None,
                operator_state: None,
                state_file: None,
                epoch: 0,
                claim: crate::archive::claim::ClaimToken::fresh(),
            }])
            .is_ok());
    }

    #[test]
    fn drained_follows_the_pending_data_on_every_shard() {
        let (tx0, rx0) = bounded(4);
        let (tx1, rx1) = bounded(4);
        let mut dispatcher = Dispatcher::new(vec![tx0, tx1], crossbeam_channel::never(), policy());
        let key = (0, 0);
        let owner = dispatcher.shard_of(key);
        dispatcher.pending[owner].push(key, 7, None, Some(b"x"));
        dispatcher.drained().unwrap();
        let (owner_rx, other_rx) = if owner == 0 {
            (&rx0, &rx1)
        } else {
            (&rx1, &rx0)
        };
        assert!(
            matches!(owner_rx.try_recv(), Ok(ShardInput::Messages(c)) if c.messages()[0].offset == 7)
        );
        assert!(matches!(
            owner_rx.try_recv(),
            Ok(ShardInput::Drained { .. })
        ));
        assert!(matches!(
            other_rx.try_recv(),
            Ok(ShardInput::Drained { .. })
        ));
        assert!(owner_rx.try_recv().is_err() && other_rx.try_recv().is_err());
    }

    /// Every shard's drained notice carries the backlog bytes the whole consumer read
    /// since the last notice, whichever shards the records went to; fresh records and
    /// records without a timestamp are not backlog.
    #[test]
    fn drained_notices_carry_the_backlog_read_since_the_last() {
        let (tx0, rx0) = bounded(8);
        let (tx1, rx1) = bounded(8);
        let mut dispatcher = Dispatcher::new(vec![tx0, tx1], crossbeam_channel::never(), policy());
        let now_ms = 1_800_000_000_000;
        dispatcher.set_wall_clock(now_ms);
        let hour_ago = Some(now_ms - 3_600_000);
        dispatcher
            .push_record((0, 0), 0, hour_ago, Some(&[b'x'; 300]))
            .unwrap();
        dispatcher
            .push_record((0, 1), 0, hour_ago, Some(&[b'x'; 20]))
            .unwrap();
        dispatcher
            .push_record((0, 1), 1, Some(now_ms - 10_000), Some(b"xx"))
            .unwrap();
        dispatcher
            .push_record((0, 0), 1, Some(now_ms - 9_999), Some(&[b'y'; 500]))
            .unwrap();
        dispatcher
            .push_record((0, 0), 2, None, Some(&[b'z'; 500]))
            .unwrap();
        dispatcher.drained().unwrap();
        let notices = |rx: &Receiver<ShardInput>| -> Vec<u64> {
            rx.try_iter()
                .filter_map(|input| match input {
                    ShardInput::Drained { backlog_read } => Some(backlog_read),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(notices(&rx0), vec![322]);
        assert_eq!(notices(&rx1), vec![322]);
        dispatcher.drained().unwrap();
        assert_eq!(notices(&rx0), vec![0]);
        assert_eq!(notices(&rx1), vec![0]);
    }

    #[test]
    fn control_messages_follow_pending_data() {
        let (tx, rx) = bounded(16);
        let mut dispatcher = Dispatcher::new(vec![tx], crossbeam_channel::never(), policy());
        dispatcher.pending[0].push((0, 0), 1, None, Some(b"x"));
        dispatcher
            .assign(vec![AssignedPartition {
                key: (0, 1),
                next_offset: Some(4),
                operator_state: None,
                state_file: None,
                epoch: 0,
                claim: crate::archive::claim::ClaimToken::fresh(),
            }])
            .unwrap();
        assert!(matches!(rx.try_recv(), Ok(ShardInput::Messages(c)) if c.messages().len() == 1));
        assert!(matches!(rx.try_recv(), Ok(ShardInput::Assign(l)) if l[0].key == (0, 1)));
        assert!(rx.try_recv().is_err());
    }
}
