//! SLOs, second stage: on each partition of the exchange topic, the partial counts
//! of every source partition combined into one tracker per SLO.
//!
//! Owns, per SLO, the [`SloTracker`] and the marks of its source partitions; which
//! minutes are applied and when the SLO's watermark moves is the exchange rule of
//! [`crate::exchange`] (every minute of every source counts once, even when a source
//! replays records after a crash; the watermark is the lowest mark, once every
//! partition of the source topic has reported; idle sources keep reporting because
//! the runtime raises their watermarks).
//! Each minute boundary the watermark passes gives one status record (table `slo`,
//! topic `cara.slo`) and the burn alerts it implies.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int32Type;
use serde::{Deserialize, Serialize};

use super::tables::slo_batch;
use super::{Counts, SloSpec, SloStatus, SloTracker, MINUTE_MS};
use crate::anomaly::operator::SchemaMismatch;
use crate::columns;
use crate::exchange::SourceMarks;
use crate::operator::{
    Emitted, Operator, OperatorError, Outbound, OutboundMessage, PartitionContext,
};
use crate::schema::Table;
use crate::snapshot::{self, SnapshotError};

/// One SLO's combined state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CombinedSlo {
    tracker: SloTracker,
    /// Which minutes of which source partition are applied (see [`crate::exchange`]).
    sources: SourceMarks,
}

/// The second SLO stage for one exchange partition.
#[derive(Debug, Clone, PartialEq)]
pub struct SloCombiner {
    /// Each SLO with the number of partitions of its source topic (its watermark
    /// waits for all of them).
    specs: Vec<(SloSpec, usize)>,
    slos: BTreeMap<String, CombinedSlo>,
    /// Minutes of SLOs not configured (any more).
    unknown: u64,
}

impl SloCombiner {
    /// Fresh state for `specs`, each with its number of source partitions.
    pub fn new(specs: Vec<(SloSpec, usize)>) -> Self {
        SloCombiner {
            specs,
            slos: BTreeMap::new(),
            unknown: 0,
        }
    }

    /// State continuing from [`Operator::snapshot`]; SLOs whose specification
    /// changed keep their counts under the new one, removed ones are dropped.
    pub fn restore(snapshot: &[u8], specs: Vec<(SloSpec, usize)>) -> Result<Self, SnapshotError> {
        let mut slos: BTreeMap<String, CombinedSlo> = snapshot::decode(snapshot)?;
        slos.retain(|name, _| specs.iter().any(|(s, _)| &s.name == name));
        for (name, combined) in slos.iter_mut() {
            if let Some((spec, _)) = specs.iter().find(|(s, _)| &s.name == name) {
                if combined.tracker.spec() != spec {
                    combined.tracker = combined.tracker.clone().respecified(spec.clone());
                }
            }
        }
        Ok(SloCombiner {
            specs,
            slos,
            unknown: 0,
        })
    }

    /// The combined watermark of one SLO, ms; `None` while sources are missing.
    fn watermark_of(&self, name: &str, combined: &CombinedSlo) -> Option<i64> {
        let expected = self
            .specs
            .iter()
            .find(|(s, _)| s.name == name)
            .map_or(1, |(_, n)| *n);
        combined
            .sources
            .low_mark(expected)
            .map(|m| m.saturating_mul(MINUTE_MS))
    }

    fn apply(&mut self, record: &PendingRecord, minutes: &[(i64, Counts)]) {
        let Some((spec, _)) = self.specs.iter().find(|(s, _)| s.name == record.slo) else {
            self.unknown += minutes.len() as u64;
            return;
        };
        let combined = self
            .slos
            .entry(record.slo.clone())
            .or_insert_with(|| CombinedSlo {
                tracker: SloTracker::new(spec.clone()),
                sources: SourceMarks::default(),
            });
        for (minute, counts) in minutes {
            if combined.sources.admits(&record.source, *minute) {
                combined.tracker.add_minute(*minute, *counts);
            }
        }
        combined
            .sources
            .advance(record.source.clone(), record.through);
    }
}

/// The record whose rows are being read.
struct PendingRecord {
    offset: i64,
    slo: String,
    source: (String, i32),
    through: i64,
}

impl Operator for SloCombiner {
    fn name(&self) -> &'static str {
        "slo_combiner"
    }

    fn tables(&self) -> Vec<Table> {
        vec![Table::Slo, Table::Alerts]
    }

    fn process(
        &mut self,
        _context: &PartitionContext,
        rows: &RecordBatch,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        let slo = columns::strings(rows, "slo")?;
        let source_topic = columns::strings(rows, "source_topic")?;
        let source_partition = rows
            .column_by_name("source_partition")
            .and_then(|c| c.as_primitive_opt::<Int32Type>())
            .ok_or(SchemaMismatch("source_partition"))?;
        let through = columns::timestamps(rows, "through")?;
        let minute = columns::timestamps(rows, "minute")?;
        let good = columns::integers(rows, "good")?;
        let total = columns::integers(rows, "total")?;
        let offset = columns::integers(rows, "_offset")?;

        let mut pending: Option<PendingRecord> = None;
        let mut minutes: Vec<(i64, Counts)> = Vec::new();
        for row in 0..rows.num_rows() {
            if pending
                .as_ref()
                .is_some_and(|p| p.offset != offset.value(row))
            {
                if let Some(record) = pending.take() {
                    self.apply(&record, &minutes);
                }
                minutes.clear();
            }
            if pending.is_none() {
                pending = Some(PendingRecord {
                    offset: offset.value(row),
                    slo: slo.value(row).to_owned(),
                    source: (
                        source_topic.value(row).to_owned(),
                        source_partition.value(row),
                    ),
                    through: crate::minutes::minute_of(through.value(row)),
                });
            }
            if minute.is_valid(row) {
                let counts = Counts {
                    good: u64::try_from(good.value(row)).unwrap_or(0),
                    total: u64::try_from(total.value(row)).unwrap_or(0),
                };
                minutes.push((crate::minutes::minute_of(minute.value(row)), counts));
            }
        }
        if let Some(record) = pending.take() {
            self.apply(&record, &minutes);
        }

        let last_row = rows.num_rows().saturating_sub(1);
        let mut statuses = Vec::new();
        let names: Vec<String> = self.slos.keys().cloned().collect();
        for name in names {
            let Some(watermark) = self
                .slos
                .get(&name)
                .and_then(|c| self.watermark_of(&name, c))
            else {
                continue;
            };
            let mut alerts = Vec::new();
            if let Some(combined) = self.slos.get_mut(&name) {
                combined
                    .tracker
                    .advance_to(watermark, &mut statuses, &mut alerts);
            }
            out.alerts.extend(alerts.into_iter().map(|mut a| {
                a.row = last_row;
                a
            }));
        }
        if !statuses.is_empty() {
            out.tables.push((Table::Slo, slo_batch(&statuses)?));
            out.messages.extend(statuses.iter().map(status_message));
            // For the process's gauges (budget left, burn rates).
            out.published.push(statuses);
        }
        Ok(())
    }

    fn watermark(&self) -> Option<i64> {
        self.slos
            .iter()
            .filter_map(|(name, c)| self.watermark_of(name, c))
            .min()
    }

    /// The next minute boundary a status (and a burn transition) is computed at.
    fn quiet_before(&self) -> Option<i64> {
        self.watermark()
            .map(|boundary| boundary.saturating_add(MINUTE_MS))
    }

    fn snapshot(&self) -> Result<Vec<u8>, OperatorError> {
        Ok(snapshot::encode(&self.slos)?)
    }
}

/// A status record on `cara.slo`, keyed by SLO name.
fn status_message(status: &SloStatus) -> OutboundMessage {
    OutboundMessage {
        topic: Outbound::SloStatus,
        key: status.slo.clone(),
        // Strings, integers and finite floats: serialising cannot fail.
        payload: serde_json::to_vec(status).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slo::partial::SloPartial;
    use crate::slo::spans::tests::{decode, slo, spans, TestSpan};
    use crate::slo::spans::{Sli, SpanSlis, SpanSloCounter};
    use crate::slo::tables::PartialRows;
    use crate::test_rng::Rng;

    const T0: i64 = 1_700_000_040_000;

    /// Spans of `checkout` over `minutes`, spread over `partitions` partitions as
    /// trace ids would spread them, with an outage (most spans fail) in minutes
    /// 40..55, and some disorder within the out-of-orderness bound.
    fn traffic(minutes: i64, partitions: usize) -> Vec<Vec<TestSpan>> {
        let mut rng = Rng(7);
        let mut by_partition = vec![Vec::new(); partitions];
        let mut t = T0;
        while t < T0 + minutes * MINUTE_MS {
            t += 200 + (rng.next() % 400) as i64;
            let minute = (t - T0) / MINUTE_MS;
            let failing = (40..55).contains(&minute);
            let ok = if failing {
                rng.next() % 10 < 3
            } else {
                !rng.next().is_multiple_of(1000)
            };
            let jitter = (rng.next() % 20_000) as i64;
            let p = (rng.next() % partitions as u64) as usize;
            by_partition[p].push((t - jitter, "checkout", "POST /pay", ok, 20.0));
        }
        by_partition
    }

    /// Every source's records in one exchange partition, interleaved round-robin
    /// one flush (batch of `batch` spans) at a time.
    fn exchange(
        sources: &[Vec<TestSpan>],
        slos: &[crate::slo::spans::SpanSlo],
        batch: usize,
    ) -> Vec<(SloPartial, i64)> {
        let mut counters: Vec<SpanSloCounter> = sources
            .iter()
            .map(|_| SpanSloCounter::new(SpanSlis(slos.to_vec()), 30_000))
            .collect();
        let mut records = Vec::new();
        let longest = sources.iter().map(Vec::len).max().unwrap_or(0);
        for start in (0..longest).step_by(batch) {
            for (p, rows) in sources.iter().enumerate() {
                if start >= rows.len() {
                    continue;
                }
                let end = (start + batch).min(rows.len());
                let context = PartitionContext {
                    topic: "telemetry.spans".into(),
                    partition: p as i32,
                };
                let mut out = Emitted::default();
                counters[p]
                    .process(&context, &spans(&rows[start..end]), &mut out)
                    .unwrap();
                records.extend(decode(&out));
            }
        }
        // The sources go idle: the runtime raises them to the furthest.
        let furthest = counters.iter().filter_map(|c| c.watermark()).max().unwrap();
        for (p, counter) in counters.iter_mut().enumerate() {
            let context = PartitionContext {
                topic: "telemetry.spans".into(),
                partition: p as i32,
            };
            let mut out = Emitted::default();
            counter
                .advance_watermark(&context, furthest, &mut out)
                .unwrap();
            records.extend(decode(&out));
        }
        records
            .into_iter()
            .enumerate()
            .map(|(i, r)| (r, i as i64))
            .collect()
    }

    fn rows_of(records: &[(SloPartial, i64)]) -> RecordBatch {
        let mut rows = PartialRows::default();
        for (r, offset) in records {
            rows.append(r, "cara.internal.slo", 0, *offset);
        }
        rows.finish()
    }

    fn combine(combiner: &mut SloCombiner, batch: &RecordBatch) -> Emitted {
        let context = PartitionContext {
            topic: "cara.internal.slo".into(),
            partition: 0,
        };
        let mut out = Emitted::default();
        combiner.process(&context, batch, &mut out).unwrap();
        out
    }

    fn statuses(out: &Emitted) -> Vec<SloStatus> {
        out.messages
            .iter()
            .map(|m| serde_json::from_slice(&m.payload).unwrap())
            .collect()
    }

    #[test]
    fn combined_partitions_equal_one_tracker_over_every_span() {
        let slos = vec![slo("avail", "checkout", Sli::Availability)];
        let sources = traffic(120, 4);
        let records = exchange(&sources, &slos, 97);
        let mut combiner = SloCombiner::new(vec![(slos[0].spec.clone(), 4)]);
        let mut out = combine(&mut combiner, &rows_of(&records));
        let got = statuses(&out);
        // The same statuses are published for the process's gauges.
        let published: Vec<SloStatus> = out.published.take::<Vec<SloStatus>>().concat();
        assert_eq!(published, got);

        // Brute force: one tracker fed every span (in time order), same bound.
        let mut reference = SloTracker::new(slos[0].spec.clone());
        let mut all: Vec<TestSpan> = sources.concat();
        all.sort_by_key(|s| s.0);
        for (t, _, _, ok, _) in &all {
            reference.observe(*t, *ok);
        }
        let mut expected = Vec::new();
        let mut expected_alerts = Vec::new();
        let last_minute = crate::minutes::minute_of(all.last().unwrap().0);
        reference.advance_to(last_minute * MINUTE_MS, &mut expected, &mut expected_alerts);
        // The combined stage reports up to the slowest source's final minute.
        assert!(got.len() >= 100, "{}", got.len());
        assert_eq!(got[..], expected[..got.len()]);
        let paging: Vec<_> = out.alerts.iter().filter(|a| a.severity == "page").collect();
        assert_eq!(
            paging.len(),
            2,
            "the outage pages, then resolves: {paging:?}"
        );
        // On the SLO's service, so incidents place it on the service graph.
        let service = slos[0]
            .spec
            .service
            .clone()
            .expect("a span SLO names its service");
        assert!(paging
            .iter()
            .all(|a| a.labels.contains(&("service".into(), service.clone()))));
        assert!(out
            .tables
            .iter()
            .any(|(t, b)| *t == Table::Slo && b.num_rows() == got.len()));
    }

    #[test]
    fn replayed_and_regrouped_records_count_once_and_restores_continue_exactly() {
        let slos = vec![slo("avail", "checkout", Sli::Availability)];
        let sources = traffic(90, 3);
        let records = exchange(&sources, &slos, 50);
        let mut whole = SloCombiner::new(vec![(slos[0].spec.clone(), 3)]);
        let expected = statuses(&combine(&mut whole, &rows_of(&records)));

        // Source 1 crashed after its records were sent and replays them, regrouped
        // (bigger batches): the replay is appended after the originals.
        let replay: Vec<(SloPartial, i64)> = exchange(&sources, &slos, 300)
            .into_iter()
            .filter(|(r, _)| r.source_partition == 1)
            .collect();
        let cut = records.len() / 2;
        let mut first_half: Vec<(SloPartial, i64)> = records[..cut].to_vec();
        let n = first_half.len() as i64;
        first_half.extend(
            replay
                .into_iter()
                .enumerate()
                .map(|(i, (r, _))| (r, n + i as i64)),
        );
        let m = first_half.len() as i64;
        let second_half: Vec<(SloPartial, i64)> = records[cut..]
            .iter()
            .enumerate()
            .map(|(i, (r, _))| (r.clone(), m + i as i64))
            .collect();

        let mut first = SloCombiner::new(vec![(slos[0].spec.clone(), 3)]);
        let mut got = statuses(&combine(&mut first, &rows_of(&first_half)));
        let snapshot = first.snapshot().unwrap();
        let mut second = SloCombiner::restore(&snapshot, vec![(slos[0].spec.clone(), 3)]).unwrap();
        got.extend(statuses(&combine(&mut second, &rows_of(&second_half))));
        assert_eq!(got, expected);
        assert_eq!(second.snapshot().unwrap(), whole.snapshot().unwrap());
    }

    #[test]
    fn the_watermark_waits_for_every_source_partition() {
        let slos = vec![slo("avail", "checkout", Sli::Availability)];
        let sources = traffic(30, 2);
        let records = exchange(&sources, &slos, 100);
        let only_first: Vec<_> = records
            .iter()
            .filter(|(r, _)| r.source_partition == 0)
            .cloned()
            .collect();
        let mut combiner = SloCombiner::new(vec![(slos[0].spec.clone(), 2)]);
        assert!(combine(&mut combiner, &rows_of(&only_first))
            .messages
            .is_empty());
        assert_eq!(Operator::watermark(&combiner), None);
    }
}
