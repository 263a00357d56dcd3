//! Minutes of event time, the bucket the SLO and trace stages count in and exchange.
//!
//! Owns the bookkeeping both first stages share: which minute an event time falls in,
//! which minutes a watermark makes final, the counts of the minutes still open (a
//! record whose minute is already final is late: the caller counts it, nothing is
//! added), and taking the final minutes out exactly once. The owners keep the two
//! pieces of state (`open`, `sent_through`) as fields of their own, so their
//! snapshots keep their layout. [`take_final`] works on any ordered keys: the log
//! stage's window starts, and the combiners' minutes and windows they close.

use std::collections::BTreeMap;

pub use crate::time::MINUTE_MS;

/// The index of the minute `ts_ms` falls in (minutes since the epoch; negative
/// before it).
pub fn minute_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(MINUTE_MS)
}

/// The minutes before the returned index are final at `watermark_ms`.
pub fn final_through(watermark_ms: Option<i64>) -> Option<i64> {
    watermark_ms.map(minute_of)
}

/// The counts of `ts_ms`'s minute in `open` (created empty), or `None` when that
/// minute is final as of `through`: the record is late.
pub fn open_minute<C: Default>(
    open: &mut BTreeMap<i64, C>,
    ts_ms: i64,
    through: Option<i64>,
) -> Option<&mut C> {
    let minute = minute_of(ts_ms);
    if through.is_some_and(|f| minute < f) {
        return None;
    }
    Some(open.entry(minute).or_default())
}

/// Takes the minutes before `through` out of `open`, in order, and notes `through` as
/// sent; `None` when the minutes through `through` were sent already.
pub fn take_final<C>(
    open: &mut BTreeMap<i64, C>,
    sent_through: &mut Option<i64>,
    through: i64,
) -> Option<BTreeMap<i64, C>> {
    if sent_through.is_some_and(|sent| sent >= through) {
        return None;
    }
    let still_open = open.split_off(&through);
    *sent_through = Some(through);
    Some(std::mem::replace(open, still_open))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minutes of times around the epoch and the watermark, as a table.
    #[test]
    fn times_fall_in_their_minute() {
        let cases = [
            (0, 0),
            (59_999, 0),
            (60_000, 1),
            (-1, -1),
            (-60_000, -1),
            (-60_001, -2),
        ];
        for (ts, minute) in cases {
            assert_eq!(minute_of(ts), minute, "{ts}");
        }
        assert_eq!(final_through(Some(125_000)), Some(2));
        assert_eq!(final_through(None), None);
    }

    /// A record of a final minute is late; final minutes are taken once, in order,
    /// and the open ones stay.
    #[test]
    fn final_minutes_are_taken_once_and_late_records_refused() {
        let mut open: BTreeMap<i64, u32> = BTreeMap::new();
        let mut sent = None;
        for ts in [0, 30_000, 61_000, 185_000] {
            *open_minute(&mut open, ts, None).unwrap() += 1;
        }
        let taken = take_final(&mut open, &mut sent, 2).unwrap();
        assert_eq!(taken.into_iter().collect::<Vec<_>>(), [(0, 2), (1, 1)]);
        assert_eq!(open.keys().copied().collect::<Vec<_>>(), [3]);
        assert_eq!(sent, Some(2));
        assert!(
            take_final(&mut open, &mut sent, 2).is_none(),
            "sent already"
        );
        assert!(open_minute(&mut open, 119_999, Some(2)).is_none(), "late");
        assert!(open_minute(&mut open, 120_000, Some(2)).is_some());
        let taken = take_final(&mut open, &mut sent, 5).unwrap();
        assert_eq!(taken.into_iter().collect::<Vec<_>>(), [(2, 0), (3, 1)]);
        assert!(open.is_empty());
    }
}
