//! When a partition's buffered rows are due for the archive.
//!
//! Owns the roll policy of a shard's partition buffers: a buffer is flushed when it
//! holds `roll_bytes`, or when it is `roll_interval` old, so a steady stream yields
//! files of a bounded age and size. One exception keeps a backlog from waiting a
//! whole interval after it has been read: a buffer whose first record was already
//! older than `roll_interval` when it was read holds *backlog* (data past its
//! latency bound before cara saw it: a restart after an outage, a consumer that fell
//! behind). Once the consumer has read every partition to its end (it is *drained*,
//! see [`crate::source`]), waiting makes such a buffer's file no larger, so when the
//! catch-up was large, at least a 64th of `roll_bytes` (1 MiB by default), every
//! backlog buffer is flushed at once: a catch-up is durable as soon as it is read,
//! its small buffers with its large ones. A catch-up's size is the backlog the whole
//! consumer read since it was last drained plus what the shard's backlog buffers still
//! hold: partitions are rarely even (a producer's sticky partitioner puts thousands
//! of records in one partition and a few in others), so a shard that got only the
//! stragglers of a large catch-up must not keep them waiting. Less backlog than that is flushed
//! when it is a quarter of the interval old instead of a whole one: records can look
//! old though they are new (a producer that sets event times as Kafka timestamps, a
//! clock behind), and a consumer of those drains after every few records; the
//! quarter keeps its files from shrinking. Fresh data is never flushed early.
//!
//! Memory is bounded too: when a shard's buffers together pass its share of
//! `archive.max_buffered_bytes`, its largest buffers are flushed until half the
//! share is left ([`over_budget`]), so a backlog read faster than the interval
//! empties buffers cannot fill the machine, and the flushed files are the largest
//! ones possible.
//!
//! Does not own: the clock or the buffers (see [`crate::runtime::shard`]).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The part of `roll_interval` a small drained backlog buffer waits.
const BACKLOG_AGE_DIVISOR: u32 = 4;

/// The part of `roll_bytes` a shard's drained backlog must reach to be flushed at once.
const BACKLOG_BYTES_DIVISOR: u64 = 64;

/// How old a partition's buffer is and what it holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BufferAge {
    /// When its first record was read.
    pub opened_at: Instant,
    /// Whether that record was older than `roll_interval` when read.
    pub backlog: bool,
}

/// The size and age rules of [`crate::runtime::shard`]'s buffers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RollPolicy {
    pub roll_interval: Duration,
    pub roll_bytes: u64,
}

impl RollPolicy {
    /// The age of a buffer opened at `opened_at` by a record with Kafka timestamp
    /// `kafka_ts_ms`, read when the wall clock said `now_ms`.
    pub fn open(&self, opened_at: Instant, kafka_ts_ms: Option<i64>, now_ms: i64) -> BufferAge {
        BufferAge {
            opened_at,
            backlog: self.is_backlog(kafka_ts_ms, now_ms),
        }
    }

    /// Whether a record with Kafka timestamp `kafka_ts_ms`, read when the wall clock
    /// said `now_ms`, is backlog: older than `roll_interval`.
    pub fn is_backlog(&self, kafka_ts_ms: Option<i64>, now_ms: i64) -> bool {
        let interval_ms = i64::try_from(self.roll_interval.as_millis()).unwrap_or(i64::MAX);
        kafka_ts_ms.is_some_and(|ts| now_ms.saturating_sub(ts) >= interval_ms)
    }

    /// Whether a buffer of `bytes` is due by size.
    pub fn full(&self, bytes: u64) -> bool {
        bytes >= self.roll_bytes
    }

    /// When a buffer of age `age` is due, given whether the consumer is drained and
    /// the bytes of its catch-up (see the module's documentation).
    pub fn due_at(&self, age: BufferAge, drained: bool, backlog_bytes: u64) -> Instant {
        let wait = if !(drained && age.backlog) {
            self.roll_interval
        } else if backlog_bytes >= self.roll_bytes / BACKLOG_BYTES_DIVISOR {
            Duration::ZERO
        } else {
            self.roll_interval / BACKLOG_AGE_DIVISOR
        };
        age.opened_at + wait
    }
}

/// The buffers to flush when `buffered` (each buffer's key and bytes) exceed
/// `budget` in total: the largest first, until at most half the budget is left.
/// Empty when within budget.
pub(crate) fn over_budget<K: Copy>(buffered: &[(K, u64)], budget: u64) -> Vec<K> {
    let total: u64 = buffered.iter().map(|(_, bytes)| bytes).sum();
    if total <= budget {
        return Vec::new();
    }
    let mut by_size: Vec<(K, u64)> = buffered.iter().copied().filter(|(_, b)| *b > 0).collect();
    by_size.sort_by_key(|(_, bytes)| std::cmp::Reverse(*bytes));
    let mut left = total;
    let mut chosen = Vec::new();
    for (key, bytes) in by_size {
        if left <= budget / 2 {
            break;
        }
        left -= bytes;
        chosen.push(key);
    }
    chosen
}

/// Milliseconds since the Unix epoch by the wall clock (0 if it is before 1970).
pub(crate) fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_764_000_000_000;

    /// 64 KiB at once once drained (a 64th of 4 MiB).
    const ROLL_BYTES: u64 = 4 << 20;

    fn policy() -> RollPolicy {
        RollPolicy {
            roll_interval: Duration::from_secs(8),
            roll_bytes: ROLL_BYTES,
        }
    }

    #[test]
    fn a_buffer_of_records_older_than_the_interval_holds_backlog() {
        let t = Instant::now();
        assert!(policy().open(t, Some(NOW_MS - 8_000), NOW_MS).backlog);
        assert!(policy().open(t, Some(NOW_MS - 600_000), NOW_MS).backlog);
        assert!(!policy().open(t, Some(NOW_MS - 7_999), NOW_MS).backlog);
        // Timestamps from the future and records without one are fresh.
        assert!(!policy().open(t, Some(NOW_MS + 60_000), NOW_MS).backlog);
        assert!(!policy().open(t, None, NOW_MS).backlog);
        // Absurd timestamps saturate instead of overflowing.
        assert!(policy().open(t, Some(i64::MIN), NOW_MS).backlog);
    }

    #[test]
    fn buffers_are_full_at_roll_bytes() {
        assert!(!policy().full(ROLL_BYTES - 1));
        assert!(policy().full(ROLL_BYTES));
    }

    /// When a buffer opened at `t` is due: (what it holds, drained, the catch-up's
    /// backlog bytes) → wait.
    #[test]
    fn when_a_buffer_is_due_by_age() {
        let t = Instant::now();
        let fresh = policy().open(t, Some(NOW_MS), NOW_MS);
        let backlog = policy().open(t, Some(NOW_MS - 60_000), NOW_MS);
        let at_once = ROLL_BYTES / 64;
        let secs = Duration::from_secs;
        let table = [
            // Fresh data waits the whole interval, whatever its size.
            (fresh, false, 0, secs(8)),
            (fresh, true, 0, secs(8)),
            (fresh, true, ROLL_BYTES, secs(8)),
            // Backlog still being read: the ordinary rule, so files stay large.
            (backlog, false, at_once, secs(8)),
            (backlog, false, ROLL_BYTES, secs(8)),
            // Drained after a catch-up of a 64th of roll_bytes of backlog or more:
            // every backlog buffer is durable at once, however small itself.
            (backlog, true, at_once, secs(0)),
            (backlog, true, ROLL_BYTES, secs(0)),
            // Drained with less backlog than that: a quarter of the interval.
            (backlog, true, at_once - 1, secs(2)),
            (backlog, true, 1, secs(2)),
        ];
        for (age, drained, backlog_bytes, wait) in table {
            assert_eq!(
                policy().due_at(age, drained, backlog_bytes),
                t + wait,
                "backlog {}, drained {drained}, {backlog_bytes} bytes of backlog",
                age.backlog
            );
        }
    }

    #[test]
    fn within_budget_nothing_is_flushed() {
        assert!(over_budget(&[(1, 40), (2, 60)], 100).is_empty());
        assert!(over_budget::<u8>(&[], 0).is_empty());
    }

    #[test]
    fn over_budget_the_largest_go_first_until_half_is_left() {
        // 150 buffered against 100: flush 70 (80 left), then 50 (30 left ≤ 50).
        let buffered = [(1, 20), (2, 70), (3, 10), (4, 50)];
        assert_eq!(over_budget(&buffered, 100), vec![2, 4]);
        // One huge buffer alone is enough.
        assert_eq!(over_budget(&[(1, 5), (2, 500), (3, 5)], 100), vec![2]);
        // Empty buffers are never chosen.
        assert_eq!(over_budget(&[(1, 0), (2, 101)], 100), vec![2]);
    }

    #[test]
    fn the_wall_clock_is_after_2020() {
        assert!(wall_clock_ms() > 1_577_836_800_000);
    }
}
