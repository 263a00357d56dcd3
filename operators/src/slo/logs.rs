//! SLOs over log lines, first stage: on each log partition, per SLO and minute, the
//! lines of a service (total) and those not at an error level (good: a level other
//! than error, fatal, critical, alert or emergency).

use arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};

use super::minutes::{MinuteCounter, SliRows, SloStage};
use super::{Counts, SloSpec};
use crate::columns;
use crate::logs::signals::is_error_level;
use crate::operator::OperatorError;

/// An availability SLO over the log lines of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogSlo {
    /// Name, objective, period, burn rules.
    pub spec: SloSpec,
    /// Lines of this service count.
    pub service: String,
}

/// The SLOs over log lines, as the first stage reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSlis(pub Vec<LogSlo>);

/// The first SLO stage of one log partition.
pub type LogSloCounter = SloStage<LogSlis>;

impl SliRows for LogSlis {
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
        let ts = columns::timestamps(rows, "ts")?;
        let service = columns::strings(rows, "service")?;
        let level = columns::strings(rows, "level")?;
        for row in 0..rows.num_rows() {
            let t = ts.value(row);
            let through = counter.final_through(out_of_orderness_ms);
            for slo in &self.0 {
                if slo.service == service.value(row) {
                    let counts = Counts::event(!is_error_level(level.value(row)));
                    counter.add(&slo.spec.name, t, counts, through);
                }
            }
            counter.saw(t);
        }
        Ok(())
    }
}
