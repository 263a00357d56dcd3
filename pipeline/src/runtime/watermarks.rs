//! The source's watermarks across shards: which partitions are idle and how far the
//! others have got, so an idle partition stops holding event time back.
//!
//! Owns one [`PartitionMark`] per assigned source partition: the watermark of its
//! operator and whether it is idle (nothing received for the idle timeout of
//! processing time). A shard writes only the marks of its own partitions, with
//! relaxed atomics, and reads the others' when it looks for idle partitions (every
//! few hundred ms); the map itself is locked only to add or remove partitions on a
//! rebalance, never on the per-record path.
//!
//! Policy (DESIGN.md, "Time, windows, state"): an idle partition's operator watermark
//! is raised to the minimum watermark over the *active* partitions of the same topic,
//! or, when every partition of the topic is idle, to the largest among them. Topics
//! of one signal (`telemetry.spans` and `otlp_spans`) count as one topic here: their
//! partitions meet in the same second stages, so an OTLP topic nobody writes to
//! follows the flat-JSON one instead of holding the second stages back forever. An
//! active partition that has not reported a watermark yet holds everything back.
//! What a raise fires depends on when partitions went quiet (processing time), like
//! idleness in Flink; rows alone decide everything else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use cara_operators::watermark::combine;

use super::input::PartitionKey;

/// `i64::MIN` stands for "no watermark yet".
const NONE: i64 = i64::MIN;

/// What one partition reports.
#[derive(Debug)]
pub(crate) struct PartitionMark {
    watermark: AtomicI64,
    idle: AtomicBool,
}

impl PartitionMark {
    /// Publishes the partition's operator watermark.
    pub fn set_watermark(&self, watermark: Option<i64>) {
        self.watermark
            .store(watermark.unwrap_or(NONE), Ordering::Relaxed);
    }

    /// Publishes whether the partition is idle.
    pub fn set_idle(&self, idle: bool) {
        self.idle.store(idle, Ordering::Relaxed);
    }

    fn read(&self) -> (Option<i64>, bool) {
        let w = self.watermark.load(Ordering::Relaxed);
        ((w != NONE).then_some(w), self.idle.load(Ordering::Relaxed))
    }
}

/// Every assigned partition's mark, shared by the shards.
#[derive(Debug, Default)]
pub(crate) struct WatermarkBoard {
    marks: RwLock<HashMap<PartitionKey, Arc<PartitionMark>>>,
    /// The group of each topic index: topics of a group are compared as one.
    /// Without an entry a topic is a group of its own.
    groups: Vec<usize>,
}

impl WatermarkBoard {
    /// A board on which the topic at index `i` belongs to group `groups[i]`.
    pub fn grouped(groups: Vec<usize>) -> WatermarkBoard {
        WatermarkBoard {
            marks: RwLock::default(),
            groups,
        }
    }

    fn group(&self, topic_index: usize) -> (bool, usize) {
        match self.groups.get(topic_index) {
            Some(group) => (true, *group),
            None => (false, topic_index),
        }
    }

    /// The mark of a newly assigned partition (active, no watermark yet).
    pub fn register(&self, key: PartitionKey, watermark: Option<i64>) -> Arc<PartitionMark> {
        let mark = Arc::new(PartitionMark {
            watermark: AtomicI64::new(watermark.unwrap_or(NONE)),
            idle: AtomicBool::new(false),
        });
        if let Ok(mut marks) = self.marks.write() {
            marks.insert(key, mark.clone());
        }
        mark
    }

    /// Forgets a revoked partition.
    pub fn remove(&self, key: &PartitionKey) {
        if let Ok(mut marks) = self.marks.write() {
            marks.remove(key);
        }
    }

    /// The watermark an idle partition `key` may be raised to, if any.
    pub fn idle_target(&self, key: &PartitionKey) -> Option<i64> {
        let marks = self.marks.read().ok()?;
        combine(
            marks
                .iter()
                .filter(|(k, _)| self.group(k.0) == self.group(key.0) && *k != key)
                .map(|(_, m)| m.read()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_board_compares_only_partitions_of_the_same_topic() {
        let board = WatermarkBoard::default();
        let idle = board.register((0, 0), Some(10));
        idle.set_idle(true);
        board.register((0, 1), Some(5_000));
        board.register((1, 0), Some(1));
        assert_eq!(board.idle_target(&(0, 0)), Some(5_000));
        let slow = board.register((0, 2), None);
        assert_eq!(board.idle_target(&(0, 0)), None);
        slow.set_watermark(Some(4_000));
        assert_eq!(board.idle_target(&(0, 0)), Some(4_000));
        board.remove(&(0, 2));
        assert_eq!(board.idle_target(&(0, 0)), Some(5_000));
    }

    #[test]
    fn topics_of_one_group_are_compared_as_one() {
        // Topics 0 and 2 carry one signal (flat JSON and OTLP), topic 1 another.
        let board = WatermarkBoard::grouped(vec![0, 1, 0]);
        board.register((0, 0), Some(7_000));
        board.register((1, 0), Some(1));
        let unused = board.register((2, 0), None);
        unused.set_idle(true);
        assert_eq!(board.idle_target(&(2, 0)), Some(7_000));
        let alone = WatermarkBoard::default();
        alone.register((0, 0), Some(7_000));
        alone.register((2, 0), None).set_idle(true);
        assert_eq!(alone.idle_target(&(2, 0)), None);
    }
}
