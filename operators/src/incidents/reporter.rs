//! The alert-raising stages' side of the incident exchange: a wrapper around any
//! operator that writes table `alerts` which, after each call, sends the incident
//! stage an [`AlertPartial`] with the transitions the call raised, the calls of
//! the `service_graph` rows it wrote, and the time before which it will raise
//! nothing more ([`Operator::quiet_before`]: its watermark, or for a windowed
//! combiner the end of the next window it closes, so incidents do not wait a window
//! for the combiners).
//!
//! One wrapper, so every stage that raises alerts (the metric partitions, the SLO,
//! trace and log combiners, and stages added later) reaches incidents the same way,
//! and every driver (the runtime, the replay, the in-process backtest) sends what
//! the others send: the dataflow builds it ([`crate::operator`] stays unaware).
//! The wrapper adds nothing to the state: its snapshot is the wrapped operator's.
//! A call that raised nothing sends its progress only when the watermark moved at
//! least [`PROGRESS_STEP_MS`] past the last one sent, so an idle partition whose
//! watermark the runtime raises every few hundred milliseconds does not flush as
//! often.

use arrow::array::RecordBatch;

use super::partial::{AlertPartial, Call};
use crate::columns;
use crate::operator::{
    Emitted, EmittedFrom, Operator, Outbound, OutboundMessage, PartitionContext, Tap, Tapped,
};
use crate::schema::Table;

/// Progress with nothing else to say is sent when the watermark moved this far.
pub const PROGRESS_STEP_MS: i64 = 10_000;

/// The tap that reports an alert-raising operator's calls to the incident stage.
#[derive(Debug, Default)]
pub struct ReportsAlerts {
    /// The last watermark sent (not checkpointed: after a restore the first call
    /// sends its progress again, which the incident stage takes as a repeat).
    reported: Option<i64>,
}

impl ReportsAlerts {
    /// `inner`, reporting to the incident stage.
    pub fn wrap(inner: Box<dyn Operator>) -> Tapped<ReportsAlerts> {
        Tapped::new(inner, ReportsAlerts::default())
    }
}

impl Tap for ReportsAlerts {
    /// Sends what the call raised, when there is something to say.
    fn after(
        &mut self,
        inner: &dyn Operator,
        context: &PartitionContext,
        out: &mut Emitted,
        from: EmittedFrom,
    ) {
        let alerts: Vec<_> = out.alerts[from.alerts..]
            .iter()
            .map(|a| {
                let mut a = a.clone();
                a.row = 0;
                a
            })
            .collect();
        let calls = calls_in(&out.tables[from.tables..]);
        let earliest = alerts.iter().map(|a| a.at).min();
        let Some(through) = inner.quiet_before().or(earliest) else {
            return;
        };
        let moved = self
            .reported
            .is_none_or(|last| through >= last.saturating_add(PROGRESS_STEP_MS));
        if alerts.is_empty() && calls.is_empty() && !moved {
            return;
        }
        self.reported = Some(self.reported.map_or(through, |r| r.max(through)));
        let record = AlertPartial {
            source_topic: context.topic.to_string(),
            source_partition: context.partition,
            through_ms: through,
            alerts,
            calls,
        };
        out.messages.push(OutboundMessage {
            topic: Outbound::AlertPartials,
            key: format!("{}/{}", context.topic, context.partition),
            payload: record.to_json(),
        });
    }
}

/// The calls of the `service_graph` rows among `tables` (caller, callee, the
/// window's end).
fn calls_in(tables: &[(Table, RecordBatch)]) -> Vec<Call> {
    let mut calls = Vec::new();
    for (table, rows) in tables {
        if *table != Table::ServiceGraph {
            continue;
        }
        let columns = (
            columns::strings(rows, "caller"),
            columns::strings(rows, "callee"),
            columns::timestamps(rows, "window_end"),
        );
        let (Ok(callers), Ok(callees), Ok(ends)) = columns else {
            continue; // the table's schema has them: not reached
        };
        for row in 0..rows.num_rows() {
            calls.push(Call {
                caller: callers.value(row).to_owned(),
                callee: callees.value(row).to_owned(),
                at_ms: ends.value(row),
            });
        }
    }
    calls
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::alert::AlertStatus;
    use crate::incidents::test_alert;
    use crate::operator::OperatorError;

    /// Raises one alert per row at the row's index in seconds; its watermark is
    /// the last row's time.
    struct Raiser {
        watermark: Option<i64>,
    }

    impl Operator for Raiser {
        fn name(&self) -> &'static str {
            "raiser"
        }
        fn tables(&self) -> Vec<Table> {
            vec![Table::Alerts]
        }
        fn process(
            &mut self,
            _: &PartitionContext,
            rows: &RecordBatch,
            out: &mut Emitted,
        ) -> Result<(), OperatorError> {
            let ts = columns::timestamps(rows, "ts")?;
            for row in 0..rows.num_rows() {
                let at = ts.value(row);
                let mut alert =
                    test_alert(&format!("a{at}"), Some("db"), AlertStatus::Firing, at, at);
                alert.row = row;
                out.alerts.push(alert);
                self.watermark = Some(at);
            }
            Ok(())
        }
        fn advance_watermark(
            &mut self,
            _: &PartitionContext,
            watermark_ms: i64,
            _: &mut Emitted,
        ) -> Result<(), OperatorError> {
            self.watermark = self.watermark.max(Some(watermark_ms));
            Ok(())
        }
        fn watermark(&self) -> Option<i64> {
            self.watermark
        }
        fn snapshot(&self) -> Result<Vec<u8>, OperatorError> {
            Ok(b"raiser".to_vec())
        }
    }

    fn rows(times: &[i64]) -> RecordBatch {
        use arrow::array::TimestampMillisecondArray;
        use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
        let schema = Schema::new(vec![Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        )]);
        let ts = TimestampMillisecondArray::from(times.to_vec()).with_timezone("UTC");
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(ts)]).unwrap()
    }

    fn sent(out: &Emitted) -> Vec<AlertPartial> {
        out.messages
            .iter()
            .map(|m| {
                assert_eq!(m.topic, Outbound::AlertPartials);
                assert_eq!(m.key, "telemetry.metrics/3");
                serde_json::from_slice(&m.payload).unwrap()
            })
            .collect()
    }

    #[test]
    fn alerts_are_sent_with_the_watermark_and_idle_progress_only_every_step() {
        let context = PartitionContext {
            topic: Arc::from("telemetry.metrics"),
            partition: 3,
        };
        let mut op = ReportsAlerts::wrap(Box::new(Raiser { watermark: None }));
        assert_eq!(op.name(), "raiser");
        assert_eq!(op.snapshot().unwrap(), b"raiser");

        let mut out = Emitted::default();
        op.process(&context, &rows(&[1_000, 2_000]), &mut out)
            .unwrap();
        let records = sent(&out);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].through_ms, 2_000);
        assert_eq!(records[0].source_partition, 3);
        let ids: Vec<&str> = records[0].alerts.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["a1000", "a2000"]);
        assert!(records[0].alerts.iter().all(|a| a.row == 0));
        assert_eq!(
            out.alerts.len(),
            2,
            "the alerts still go to the alert topic"
        );

        // Raised by less than a step: nothing to say.
        let mut out = Emitted::default();
        op.advance_watermark(&context, 2_000 + PROGRESS_STEP_MS - 1, &mut out)
            .unwrap();
        assert!(out.messages.is_empty());
        // A step on: progress alone.
        op.advance_watermark(&context, 2_000 + PROGRESS_STEP_MS, &mut out)
            .unwrap();
        let records = sent(&out);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].through_ms, 2_000 + PROGRESS_STEP_MS);
        assert!(records[0].alerts.is_empty() && records[0].calls.is_empty());
    }
}
