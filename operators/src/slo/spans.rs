//! SLOs over spans, first stage: on each span partition, good and total spans per
//! SLO and minute of start time.
//!
//! Owns which spans an SLO counts ([`SpanSlo`]: service, optionally operation, and
//! the SLI that makes a span good) and, per source partition, the counts of minutes
//! not yet final. The partition's watermark is its largest span start minus the
//! out-of-orderness bound, advanced per row (or raised by the runtime when the
//! partition is idle); a span of a minute the watermark has passed is late (counted,
//! archived, not counted in the SLO). Each time the watermark crosses minute
//! boundaries, every SLO gets one [`super::partial::SloPartial`] record with the minutes that became
//! final, so what is sent depends on the rows alone, not on how they were batched.

use arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};

use super::minutes::{MinuteCounter, SliRows, SloStage};
use super::{Counts, SloSpec};
use crate::columns;
use crate::operator::OperatorError;

/// What makes a span good.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "sli", rename_all = "snake_case", deny_unknown_fields)]
pub enum Sli {
    /// Status `ok`.
    Availability,
    /// Duration strictly under the threshold.
    Latency {
        /// The threshold, ms.
        threshold_ms: f64,
    },
}

/// An SLO over the spans of a service (and optionally one operation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanSlo {
    /// Name, objective, period, burn rules.
    pub spec: SloSpec,
    /// Spans of this service count.
    pub service: String,
    /// Only spans of this operation (span name), when set.
    pub operation: Option<String>,
    /// Good spans.
    pub sli: Sli,
}

impl SpanSlo {
    /// Whether a span of `service` named `operation` counts.
    pub fn matches(&self, service: &str, operation: &str) -> bool {
        self.service == service && self.operation.as_deref().is_none_or(|o| o == operation)
    }

    /// Whether a counted span is good.
    pub fn is_good(&self, status: &str, duration_ms: f64) -> bool {
        match self.sli {
            Sli::Availability => status == "ok",
            Sli::Latency { threshold_ms } => duration_ms < threshold_ms,
        }
    }
}

/// The SLOs over spans, as the first stage reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanSlis(pub Vec<SpanSlo>);

/// The first SLO stage of one span partition.
pub type SpanSloCounter = SloStage<SpanSlis>;

impl SliRows for SpanSlis {
    type State = ();

    fn names(&self) -> Vec<&str> {
        self.0.iter().map(|s| s.spec.name.as_str()).collect()
    }

    fn count(
        &self,
        _: &mut (),
        rows: &RecordBatch,
        counter: &mut MinuteCounter,
        out_of_orderness_ms: i64,
    ) -> Result<(), OperatorError> {
        let start = columns::timestamps(rows, "start")?;
        let duration = columns::floats(rows, "duration_ms")?;
        let service = columns::strings(rows, "service")?;
        let operation = columns::strings(rows, "name")?;
        let status = columns::strings(rows, "status")?;
        for row in 0..rows.num_rows() {
            let t = start.value(row);
            let through = counter.final_through(out_of_orderness_ms);
            let (svc, op) = (service.value(row), operation.value(row));
            for slo in &self.0 {
                if slo.matches(svc, op) {
                    let counts = Counts::event(slo.is_good(status.value(row), duration.value(row)));
                    counter.add(&slo.spec.name, t, counts, through);
                }
            }
            counter.saw(t);
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::operator::{Emitted, Operator, PartitionContext};
    use crate::slo::partial::{MinuteCounts, SloPartial};
    use crate::slo::MINUTE_MS;
    use crate::span_rows::{span_batch, SpanRecord};

    /// A span: (start ms, service, operation, ok, duration ms).
    pub type TestSpan = (i64, &'static str, &'static str, bool, f64);

    /// A batch of table `spans` (ids by row; no parents).
    pub fn spans(rows: &[TestSpan]) -> RecordBatch {
        let ids: Vec<String> = (0..rows.len()).map(|i| i.to_string()).collect();
        let records: Vec<SpanRecord<'_>> = rows
            .iter()
            .zip(&ids)
            .map(|((t, svc, op, ok, ms), id)| SpanRecord {
                trace_id: id,
                span_id: id,
                parent_span_id: None,
                service: svc,
                name: op,
                start_ms: *t,
                duration_ms: *ms,
                ok: *ok,
            })
            .collect();
        span_batch(&records, "telemetry.spans", 0).unwrap()
    }

    pub fn slo(name: &str, service: &str, sli: Sli) -> SpanSlo {
        SpanSlo {
            spec: SloSpec {
                name: name.into(),
                objective: 0.99,
                period_ms: 30 * 24 * 60 * MINUTE_MS,
                out_of_orderness_ms: 30_000,
                rules: super::super::default_burn_rules(),
                service: Some(service.to_owned()),
            },
            service: service.into(),
            operation: None,
            sli,
        }
    }

    pub fn decode(out: &Emitted) -> Vec<SloPartial> {
        out.messages
            .iter()
            .map(|m| serde_json::from_slice(&m.payload).unwrap())
            .collect()
    }

    const T0: i64 = 1_700_000_040_000;

    #[test]
    fn minutes_are_sent_once_final_with_good_and_total_per_sli() {
        let slos = vec![
            slo("avail", "checkout", Sli::Availability),
            slo(
                "fast",
                "checkout",
                Sli::Latency {
                    threshold_ms: 300.0,
                },
            ),
        ];
        let mut counter = SpanSloCounter::new(SpanSlis(slos), 30_000);
        let context = PartitionContext {
            topic: "telemetry.spans".into(),
            partition: 4,
        };
        let rows = spans(&[
            (T0, "checkout", "POST /pay", true, 100.0),
            (T0 + 1_000, "checkout", "POST /pay", false, 500.0),
            (T0 + 2_000, "search", "GET /q", false, 900.0),
            (T0 + 20_000, "checkout", "GET /cart", true, 300.0),
            // Watermark T0 + 61 s: minute 0 is final.
            (T0 + 91_000, "checkout", "GET /cart", true, 10.0),
        ]);
        let mut out = Emitted::default();
        counter.process(&context, &rows, &mut out).unwrap();
        let sent = decode(&out);
        assert_eq!(sent.len(), 2);
        let m0 = T0 / MINUTE_MS;
        assert_eq!(sent[0].slo, "avail");
        assert_eq!(sent[0].through_minute, m0 + 1);
        assert_eq!(sent[0].source_partition, 4);
        assert_eq!(
            sent[0].minutes,
            vec![MinuteCounts {
                minute: m0,
                good: 2,
                total: 3
            }]
        );
        // 300 ms is not strictly under 300 ms.
        assert_eq!((sent[1].minutes[0].good, sent[1].minutes[0].total), (1, 3));
        assert_eq!(out.messages[0].key, "avail");

        // A late span for minute 0 is counted late; nothing more is final yet.
        let mut again = Emitted::default();
        counter
            .process(
                &context,
                &spans(&[(T0 + 5_000, "checkout", "x", true, 1.0)]),
                &mut again,
            )
            .unwrap();
        assert_eq!(again.late, 2, "late for both SLOs");
        assert!(again.messages.is_empty());

        // An idle raise makes minute 1 final: sent with its one span.
        let mut raised = Emitted::default();
        counter
            .advance_watermark(&context, T0 + 3 * MINUTE_MS, &mut raised)
            .unwrap();
        let sent = decode(&raised);
        assert_eq!(sent[0].through_minute, m0 + 3);
        assert_eq!(
            sent[0].minutes,
            vec![MinuteCounts {
                minute: m0 + 1,
                good: 1,
                total: 1
            }]
        );
    }

    #[test]
    fn what_is_sent_does_not_depend_on_batches_or_restores() {
        let slos = || vec![slo("avail", "checkout", Sli::Availability)];
        let context = PartitionContext {
            topic: "telemetry.spans".into(),
            partition: 0,
        };
        let all: Vec<TestSpan> = (0..600)
            .map(|i| {
                (
                    T0 + i * 1_500 - (i % 7) * 4_000,
                    "checkout",
                    "op",
                    i % 13 != 0,
                    5.0,
                )
            })
            .collect();
        let minutes = |parts: Vec<SloPartial>| -> Vec<MinuteCounts> {
            parts.into_iter().flat_map(|p| p.minutes).collect()
        };
        let mut whole = SpanSloCounter::new(SpanSlis(slos()), 30_000);
        let mut out = Emitted::default();
        whole.process(&context, &spans(&all), &mut out).unwrap();
        let expected = minutes(decode(&out));
        assert!(expected.len() > 10);

        let mut got = Vec::new();
        let mut snapshot = SpanSloCounter::new(SpanSlis(slos()), 30_000)
            .snapshot()
            .unwrap();
        for chunk in all.chunks(37) {
            let mut c = SpanSloCounter::restore(&snapshot, SpanSlis(slos()), 30_000).unwrap();
            let mut out = Emitted::default();
            c.process(&context, &spans(chunk), &mut out).unwrap();
            got.extend(minutes(decode(&out)));
            snapshot = c.snapshot().unwrap();
        }
        assert_eq!(got, expected);
        assert_eq!(snapshot, whole.snapshot().unwrap());
    }
}
