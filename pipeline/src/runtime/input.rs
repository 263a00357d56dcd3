//! What the shards take in: the partitions they are given and the polled messages
//! of those partitions, in the order the poll thread saw them.
//!
//! Owns the types that cross from a driver (the Kafka source's poll thread) to the
//! shards: [`PartitionKey`], [`AssignedPartition`], [`MessageChunk`] and
//! [`ShardInput`]. A driver fills chunks and sends inputs; it never sees a shard.

use crossbeam_channel::Sender;

use crate::archive::claim::ClaimToken;
use crate::archive::state::StateFile;

/// A source partition: (index into the source's topic list, Kafka partition).
pub(crate) type PartitionKey = (usize, i32);

/// A partition given to a shard, with where its archive says to resume.
#[derive(Debug, Clone)]
pub(crate) struct AssignedPartition {
    pub key: PartitionKey,
    /// The first offset not yet archived; `None` for a partition never archived.
    pub next_offset: Option<i64>,
    /// Operator state saved with that checkpoint (snapshot bytes).
    pub operator_state: Option<Vec<u8>>,
    /// The state file it was read from.
    pub state_file: Option<StateFile>,
    /// The partition's archive epoch (see [`crate::archive::commit::Checkpoint`]).
    pub epoch: u32,
    /// The claim its flushes commit under (see [`crate::archive::claim`]).
    pub claim: ClaimToken,
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
    /// The consumer has read every partition to its end: backlog buffers need not
    /// wait a whole roll interval any more (see [`crate::runtime::roll`]).
    Drained {
        /// Payload bytes of backlog records the whole consumer read since its last
        /// drained notice.
        backlog_read: u64,
    },
}

/// A chunk is sent once it holds this many messages…
const CHUNK_MESSAGES: usize = 2048;
/// …or this many payload bytes.
const CHUNK_BYTES: usize = 1 << 20;

/// One polled message, its payload stored in its chunk's byte arena.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawMessage {
    pub key: PartitionKey,
    pub offset: i64,
    pub kafka_ts_ms: Option<i64>,
    /// `(start, len)` in the chunk's bytes; `None` for a message without payload.
    payload: Option<(u32, u32)>,
}

/// Messages for one shard, copied out of librdkafka's buffers so they can cross
/// threads; one allocation per chunk rather than per message.
#[derive(Debug, Default)]
pub(crate) struct MessageChunk {
    bytes: Vec<u8>,
    messages: Vec<RawMessage>,
}

impl MessageChunk {
    /// Appends a message.
    pub fn push(
        &mut self,
        key: PartitionKey,
        offset: i64,
        kafka_ts_ms: Option<i64>,
        payload: Option<&[u8]>,
    ) {
        let payload = payload.and_then(|p| {
            let start = u32::try_from(self.bytes.len()).ok()?;
            let len = u32::try_from(p.len()).ok()?;
            self.bytes.extend_from_slice(p);
            Some((start, len))
        });
        self.messages.push(RawMessage {
            key,
            offset,
            kafka_ts_ms,
            payload,
        });
    }

    /// The messages, in poll order.
    pub fn messages(&self) -> &[RawMessage] {
        &self.messages
    }

    /// The payload of `message`, which must come from this chunk.
    pub fn payload(&self, message: &RawMessage) -> Option<&[u8]> {
        message
            .payload
            .and_then(|(start, len)| self.bytes.get(start as usize..(start + len) as usize))
    }

    /// Payload bytes it holds, and bytes its arena holds without growing.
    #[cfg(test)]
    pub fn byte_len_and_capacity(&self) -> (usize, usize) {
        (self.bytes.len(), self.bytes.capacity())
    }

    /// Empties the chunk, keeping its allocations for reuse.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.messages.clear();
    }

    /// Whether the chunk should be sent now.
    pub fn is_full(&self) -> bool {
        self.messages.len() >= CHUNK_MESSAGES || self.bytes.len() >= CHUNK_BYTES
    }

    /// Whether the chunk holds no message.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_keeps_payloads_apart_and_in_order() {
        let mut chunk = MessageChunk::default();
        chunk.push((0, 3), 10, Some(5), Some(b"first"));
        chunk.push((1, 3), 11, None, None);
        chunk.push((0, 3), 12, None, Some(b""));
        chunk.push((2, 0), 13, None, Some(b"third"));
        let payloads: Vec<_> = chunk
            .messages()
            .iter()
            .map(|m| (m.key, m.offset, chunk.payload(m)))
            .collect();
        assert_eq!(
            payloads,
            vec![
                ((0, 3), 10, Some(&b"first"[..])),
                ((1, 3), 11, None),
                ((0, 3), 12, Some(&b""[..])),
                ((2, 0), 13, Some(&b"third"[..])),
            ]
        );
        assert_eq!(chunk.messages()[0].kafka_ts_ms, Some(5));
    }
}
