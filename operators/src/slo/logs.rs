//! SLOs over log lines, first stage: on each log partition, per SLO and minute, the
//! lines of a service (total) and those not at an error level (good: a level other
//! than error, fatal, critical, alert or emergency).

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::TimestampMillisecondType;
use serde::{Deserialize, Serialize};

use super::minutes::MinuteCounter;
use super::{Counts, SloSpec};
use crate::anomaly::operator::SchemaMismatch;
use crate::logs::signals::is_error_level;
use crate::operator::{Emitted, Operator, OperatorError, PartitionContext};

/// An availability SLO over the log lines of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogSlo {
    /// Name, objective, period, burn rules.
    pub spec: SloSpec,
    /// Lines of this service count.
    pub service: String,
}

/// The first SLO stage for one log partition.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSloCounter {
    slos: Vec<LogSlo>,
    out_of_orderness_ms: i64,
    counter: MinuteCounter,
}

impl LogSloCounter {
    /// Fresh state for `slos`.
    pub fn new(slos: Vec<LogSlo>, out_of_orderness_ms: i64) -> Self {
        LogSloCounter {
            slos,
            out_of_orderness_ms,
            counter: MinuteCounter::default(),
        }
    }

    /// State continuing from [`Operator::snapshot`] with the current SLOs.
    pub fn restore(
        snapshot: &str,
        slos: Vec<LogSlo>,
        out_of_orderness_ms: i64,
    ) -> Result<Self, serde_json::Error> {
        let mut counter: MinuteCounter = serde_json::from_str(snapshot)?;
        let names: Vec<&str> = slos.iter().map(|s| s.spec.name.as_str()).collect();
        counter.retain(&names);
        Ok(LogSloCounter {
            slos,
            out_of_orderness_ms,
            counter,
        })
    }

    fn send_final(&mut self, context: &PartitionContext, out: &mut Emitted) {
        let names = self.slos.iter().map(|s| s.spec.name.as_str());
        self.counter
            .send_final(names, self.out_of_orderness_ms, context, out);
    }
}

impl Operator for LogSloCounter {
    fn process(
        &mut self,
        context: &PartitionContext,
        rows: &RecordBatch,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        let ts = rows
            .column_by_name("ts")
            .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
            .ok_or(SchemaMismatch("ts"))?;
        let service = rows
            .column_by_name("service")
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or(SchemaMismatch("service"))?;
        let level = rows
            .column_by_name("level")
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or(SchemaMismatch("level"))?;
        let late_before = self.counter.late();
        for row in 0..rows.num_rows() {
            let t = ts.value(row);
            let through = self.counter.final_through(self.out_of_orderness_ms);
            for slo in &self.slos {
                if slo.service == service.value(row) {
                    let good = !is_error_level(level.value(row));
                    let counts = Counts {
                        good: u64::from(good),
                        total: 1,
                    };
                    self.counter.add(&slo.spec.name, t, counts, through);
                }
            }
            self.counter.saw(t);
        }
        out.late += self.counter.late() - late_before;
        self.send_final(context, out);
        Ok(())
    }

    fn advance_watermark(
        &mut self,
        context: &PartitionContext,
        watermark_ms: i64,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        if self.counter.raise(watermark_ms, self.out_of_orderness_ms) {
            self.send_final(context, out);
        }
        Ok(())
    }

    fn watermark(&self) -> Option<i64> {
        self.counter.watermark(self.out_of_orderness_ms)
    }

    fn snapshot(&self) -> Result<String, OperatorError> {
        Ok(serde_json::to_string(&self.counter)?)
    }
}
