//! The first cost stage of the log and span partitions: the telemetry volume each
//! service sends cara, per window, as usage of [`Resource::Logs`] (bytes of the
//! lines' messages) and [`Resource::Spans`] (spans), owned by the service's owner
//! ([`CostSettings::telemetry_owner`]).
//!
//! Like the metric partitions' meter it sends each closed window's usage, then
//! progress, to the cost exchange, so the combining stage waits for these
//! partitions too and bills telemetry with the rest.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;

use super::partial::{PartitionMeter, SourceGroup};
use super::stage::send;
use super::{CostSettings, Resource};
use crate::columns;
use crate::operator::{Emitted, Operator, OperatorError, PartitionContext};
use crate::snapshot::{self, SnapshotError};

/// Which telemetry a partition carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Telemetry {
    /// Log lines: the bytes of their messages.
    Logs,
    /// Spans: one each.
    Spans,
}

impl Telemetry {
    fn group(self) -> SourceGroup {
        match self {
            Telemetry::Logs => SourceGroup::Logs,
            Telemetry::Spans => SourceGroup::Spans,
        }
    }

    fn time_column(self) -> &'static str {
        match self {
            Telemetry::Logs => "ts",
            Telemetry::Spans => "start",
        }
    }
}

/// A log or span partition's telemetry volume per window.
#[derive(Debug, Clone, PartialEq)]
pub struct CostVolume {
    telemetry: Telemetry,
    settings: Arc<CostSettings>,
    state: PartitionMeter,
}

impl CostVolume {
    /// Fresh state.
    pub fn new(telemetry: Telemetry, settings: Arc<CostSettings>) -> CostVolume {
        CostVolume {
            telemetry,
            state: PartitionMeter::new(&settings),
            settings,
        }
    }

    /// State continuing from [`Operator::snapshot`].
    pub fn restore(
        snapshot: &[u8],
        telemetry: Telemetry,
        settings: Arc<CostSettings>,
    ) -> Result<Self, SnapshotError> {
        Ok(CostVolume {
            telemetry,
            settings,
            state: snapshot::decode(snapshot)?,
        })
    }

    /// Counts the rows' volume per window and service.
    fn count(&mut self, rows: &RecordBatch) -> Result<(), OperatorError> {
        let ts = columns::timestamps(rows, self.telemetry.time_column())?;
        let service = columns::strings(rows, "service")?;
        let message = match self.telemetry {
            Telemetry::Logs => Some(columns::strings(rows, "message")?),
            Telemetry::Spans => None,
        };
        let window_ms = self.settings.window_ms;
        let mut volume: BTreeMap<(i64, &str), (u128, u64)> = BTreeMap::new();
        for row in 0..rows.num_rows() {
            let t = ts.value(row);
            self.state.saw(t);
            let amount = message.map_or(1, |m| m.value(row).len() as u128);
            let slot = volume
                .entry((t.div_euclid(window_ms) * window_ms, service.value(row)))
                .or_default();
            slot.0 += amount;
            slot.1 += 1;
        }
        let resource = match self.telemetry {
            Telemetry::Logs => Resource::Logs,
            Telemetry::Spans => Resource::Spans,
        };
        for ((window, service), (amount, events)) in volume {
            let owner = Some(self.settings.telemetry_owner(service)).filter(|o| !o.is_empty());
            if !self.state.meter.add_volume(window, resource, owner, amount) {
                self.state.late += events;
            }
        }
        Ok(())
    }
}

impl Operator for CostVolume {
    fn name(&self) -> &'static str {
        "cost"
    }

    fn input_columns(&self) -> Option<Vec<&'static str>> {
        Some(match self.telemetry {
            Telemetry::Logs => vec!["ts", "service", "message"],
            Telemetry::Spans => vec!["start", "service"],
        })
    }

    fn process(
        &mut self,
        context: &PartitionContext,
        rows: &RecordBatch,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        let late_before = self.state.late;
        self.count(rows)?;
        out.late += self.state.late - late_before;
        let source = (context.topic.as_ref(), context.partition);
        let closed = self
            .state
            .close(&self.settings, self.telemetry.group(), source);
        send(&closed, out);
        Ok(())
    }

    fn advance_watermark(
        &mut self,
        context: &PartitionContext,
        watermark_ms: i64,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        let source = (context.topic.as_ref(), context.partition);
        let group = self.telemetry.group();
        send(
            &self
                .state
                .raise(watermark_ms, &self.settings, group, source),
            out,
        );
        Ok(())
    }

    fn watermark(&self) -> Option<i64> {
        self.state.watermark(&self.settings)
    }

    fn snapshot(&self) -> Result<Vec<u8>, OperatorError> {
        Ok(snapshot::encode(&self.state)?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;
    use crate::cost::ledger::tests::settings;
    use crate::cost::partial::CostPartial;

    const HOUR: i64 = 3_600_000;

    /// Rows of (ts, service, message) with the columns the stage reads.
    fn logs(rows: &[(i64, &str, &str)]) -> RecordBatch {
        let ts = TimestampMillisecondArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())
            .with_timezone("UTC");
        let service = StringArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>());
        let message = StringArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>());
        let schema = Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            Field::new("service", DataType::Utf8, false),
            Field::new("message", DataType::Utf8, false),
        ]);
        let columns: Vec<ArrayRef> = vec![Arc::new(ts), Arc::new(service), Arc::new(message)];
        RecordBatch::try_new(Arc::new(schema), columns).unwrap()
    }

    #[test]
    fn log_bytes_are_counted_per_window_and_owner() {
        let mut s = settings();
        s.service_owners.insert("checkout".into(), "team-a".into());
        let mut volume = CostVolume::new(Telemetry::Logs, Arc::new(s));
        let context = PartitionContext {
            topic: "telemetry.logs".into(),
            partition: 2,
        };
        let mut out = Emitted::default();
        let rows = logs(&[
            (10, "checkout", "12345"),
            (20, "db", "123"),
            (HOUR - 1, "checkout", "1234567890"),
            (HOUR + 5, "db", "1"),
            // Closes the first hour (a minute of out-of-orderness).
            (HOUR + 61_000, "db", "12"),
        ]);
        volume.process(&context, &rows, &mut out).unwrap();
        let sent: Vec<CostPartial> = out
            .messages
            .iter()
            .map(|m| serde_json::from_slice(&m.payload).unwrap())
            .collect();
        let hour0 = sent
            .iter()
            .find(|p| p.window_start == Some(0))
            .unwrap()
            .usage();
        let logs = |owner: &str| hour0.used[&(Resource::Logs, Some(owner.to_owned()))];
        assert_eq!((logs("team-a"), logs("db")), (15, 3));
        // A line for a closed hour is late.
        let mut out = Emitted::default();
        volume.process(&context, &logs_late(), &mut out).unwrap();
        assert_eq!(out.late, 1);
    }

    fn logs_late() -> RecordBatch {
        logs(&[(5, "db", "late")])
    }
}
