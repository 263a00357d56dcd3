//! The incident stage: the one partition of the alert exchange, where the alert
//! transitions of every alert-raising stage meet (the metric partitions, the SLO,
//! trace and log combiners), correlated into incidents in event time.
//!
//! Each source's records carry its watermark (`through_ms`, see [`super::partial`]);
//! the stage's watermark is the lowest of them, except that a source trailing the
//! most advanced one by more than `max_source_lag_ms` no longer holds it back (a
//! stage with no input, or far behind). The sources need not be counted in advance:
//! an alert-raising stage that starts reporting later, or that lags, has its
//! transitions applied late (counted in `late`; in the call that brings them, so
//! the last records of a run are not held back), never dropped. Whatever the
//! order the records arrive in on the exchange partition, the same records give the
//! same incidents; a record sent again (a stage replaying after a crash) changes
//! nothing: a transition before its source's mark is one the source has sent
//! already (the exchange admission rule, [`crate::exchange`]), and each alert id
//! fires and resolves once ([`super::correlate::Correlator`]); both count as
//! `repeats`. Every transition goes to table `incidents`
//! and, keyed by incident id, to `cara.incidents`.

use arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};

use super::correlate::{Correlator, CorrelatorCounts};
use super::partial::AlertPartial;
use super::table::incidents_batch;
use super::{IncidentRecord, IncidentSettings};
use crate::exchange::{stored_records, SourceMarks};
use crate::operator::{
    Emitted, Operator, OperatorError, Outbound, OutboundMessage, PartitionContext,
};
use crate::schema::Table;
use crate::snapshot::{self, SnapshotError};

/// What the stage checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StageState {
    /// Each source's highest `through_ms`.
    marks: SourceMarks,
    correlator: Correlator,
}

/// Alert transitions of every stage in, incident transitions out.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentStage {
    settings: IncidentSettings,
    state: StageState,
}

impl IncidentStage {
    /// Nothing open, no source heard from.
    pub fn new(settings: IncidentSettings) -> IncidentStage {
        IncidentStage {
            settings,
            state: StageState {
                marks: SourceMarks::default(),
                correlator: Correlator::new(settings),
            },
        }
    }

    /// State continuing from [`Operator::snapshot`], under the current settings.
    pub fn restore(
        snapshot: &[u8],
        settings: IncidentSettings,
    ) -> Result<IncidentStage, SnapshotError> {
        let mut state: StageState = snapshot::decode(snapshot)?;
        state.correlator.reconfigure(settings);
        Ok(IncidentStage { settings, state })
    }

    /// Incidents open now.
    pub fn open_incidents(&self) -> usize {
        self.state.correlator.open_incidents()
    }

    /// What the correlator counted.
    pub fn counts(&self) -> CorrelatorCounts {
        self.state.correlator.counts()
    }

    /// Every alert transition before this time has been heard of: the lowest
    /// source mark, or the highest less the allowed lag if that is later.
    fn heard_through(&self) -> Option<i64> {
        let low = self.state.marks.low_mark(1)?;
        let high = self.state.marks.high_mark()?;
        Some(low.max(high.saturating_sub(self.settings.max_source_lag_ms)))
    }

    fn apply(&mut self, record: AlertPartial) {
        let source = (record.source_topic, record.source_partition);
        for alert in &record.alerts {
            if self.state.marks.admits(&source, alert.at) {
                self.state.correlator.observe_alert(alert);
            } else {
                // Its source had promised nothing before its mark: a replay.
                self.state.correlator.ignore_replayed();
            }
        }
        for call in &record.calls {
            self.state
                .correlator
                .observe_call(&call.caller, &call.callee, call.at_ms);
        }
        self.state.marks.advance(source, record.through_ms);
    }

    /// Applies what the sources' marks now allow; the transitions, as rows and as
    /// records for `cara.incidents`.
    fn advance(&mut self, out: &mut Emitted) -> Result<(), OperatorError> {
        let Some(through) = self.heard_through() else {
            return Ok(());
        };
        // Everything *before* `through` is final. Late transitions are applied now
        // even when it did not move: the last records of a run may be the late
        // ones, and nothing else would come to apply them.
        let watermark = through.saturating_sub(1);
        let correlator = &self.state.correlator;
        if watermark <= correlator.watermark() && !correlator.holds_late() {
            return Ok(());
        }
        let mut records: Vec<IncidentRecord> = Vec::new();
        self.state.correlator.advance(watermark, &mut records);
        if records.is_empty() {
            return Ok(());
        }
        out.tables
            .push((Table::Incidents, incidents_batch(&records)?));
        out.messages.extend(records.iter().map(|r| OutboundMessage {
            topic: Outbound::Incidents,
            key: r.id.clone(),
            // Strings, integers and finite scores: serialising cannot fail.
            payload: serde_json::to_vec(r).unwrap_or_default(),
        }));
        Ok(())
    }
}

impl Operator for IncidentStage {
    fn name(&self) -> &'static str {
        "incidents"
    }

    fn tables(&self) -> Vec<Table> {
        vec![Table::Incidents]
    }

    fn process(
        &mut self,
        _context: &PartitionContext,
        rows: &RecordBatch,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        let late_before = self.counts().late;
        for (_, record) in stored_records::<AlertPartial>(rows)? {
            self.apply(record);
        }
        out.late += self.counts().late.saturating_sub(late_before);
        self.advance(out)
    }

    fn watermark(&self) -> Option<i64> {
        let watermark = self.state.correlator.watermark();
        (watermark != i64::MIN).then_some(watermark)
    }

    fn snapshot(&self) -> Result<Vec<u8>, OperatorError> {
        Ok(snapshot::encode(&self.state)?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::alert::{AlertRecord, AlertStatus};
    use crate::exchange::RecordRows;
    use crate::incidents::correlate::REPEATS_REMEMBERED_MS;
    use crate::incidents::partial::Call;
    use crate::incidents::{test_alert, IncidentStatus};

    const MIN: i64 = 60_000;
    const T: i64 = 1_764_000_000_000;

    fn context() -> PartitionContext {
        PartitionContext {
            topic: Arc::from("cara.internal.alerts"),
            partition: 0,
        }
    }

    fn partial(
        topic: &str,
        partition: i32,
        through: i64,
        alerts: Vec<AlertRecord>,
        calls: &[(&str, &str)],
    ) -> AlertPartial {
        AlertPartial {
            source_topic: topic.into(),
            source_partition: partition,
            through_ms: through,
            alerts,
            calls: calls
                .iter()
                .map(|(caller, callee)| Call {
                    caller: (*caller).into(),
                    callee: (*callee).into(),
                    at_ms: T,
                })
                .collect(),
        }
    }

    fn fire(id: &str, service: &str, at: i64) -> AlertRecord {
        test_alert(id, Some(service), AlertStatus::Firing, at, at)
    }

    fn resolve(id: &str, service: &str, starts_at: i64, at: i64) -> AlertRecord {
        test_alert(id, Some(service), AlertStatus::Resolved, starts_at, at)
    }

    /// The exchange rows of `records`, as the decoder archives them.
    fn rows(records: &[AlertPartial]) -> RecordBatch {
        use crate::exchange::ExchangeRecord;
        let mut rows = RecordRows::new(Table::AlertPartials);
        for (offset, record) in records.iter().enumerate() {
            let json = String::from_utf8(record.to_json()).unwrap();
            rows.append(
                &record.row(),
                &json,
                "cara.internal.alerts",
                0,
                offset as i64,
            );
        }
        rows.finish()
    }

    /// The incident transitions of one call with `records`.
    fn feed(stage: &mut IncidentStage, records: &[AlertPartial]) -> Vec<IncidentRecord> {
        let mut out = Emitted::default();
        stage.process(&context(), &rows(records), &mut out).unwrap();
        let sent: Vec<IncidentRecord> = out
            .messages
            .iter()
            .map(|m| {
                assert_eq!(m.topic, Outbound::Incidents);
                let record: IncidentRecord = serde_json::from_slice(&m.payload).unwrap();
                assert_eq!(m.key, record.id);
                record
            })
            .collect();
        let table_rows: usize = out.tables.iter().map(|(_, b)| b.num_rows()).sum();
        assert_eq!(table_rows, sent.len(), "every transition is a row too");
        sent
    }

    fn summary(records: &[IncidentRecord]) -> Vec<(IncidentStatus, Vec<String>, String)> {
        records
            .iter()
            .map(|r| {
                let cause = r.probable_root_cause.first().map(|c| c.service.clone());
                (r.status, r.services.clone(), cause.unwrap_or_default())
            })
            .collect()
    }

    /// A db fault seen on db's metric partition and, a little later, on web's
    /// RED series from the trace combiner, which also reports the web → db calls.
    fn a_db_fault() -> Vec<AlertPartial> {
        vec![
            partial("cara.internal.traces", 0, T, vec![], &[("web", "db")]),
            partial(
                "telemetry.metrics",
                0,
                T + MIN,
                vec![fire("m-db", "db", T + 30_000)],
                &[],
            ),
            partial(
                "cara.internal.traces",
                0,
                T + 2 * MIN,
                vec![fire("r-web", "web", T + MIN)],
                &[("web", "db")],
            ),
            partial("telemetry.metrics", 0, T + 3 * MIN, vec![], &[]),
        ]
    }

    #[test]
    fn alerts_of_two_stages_make_one_incident_once_both_have_passed_them() {
        let mut stage = IncidentStage::new(IncidentSettings::default());
        let records = a_db_fault();
        // Only the metric partition has spoken of T + 1 min: the trace combiner's
        // mark (T) holds the stage back.
        assert!(feed(&mut stage, &records[..2]).is_empty());
        let out = feed(&mut stage, &records[2..]);
        assert_eq!(
            summary(&out),
            [
                (IncidentStatus::Open, vec!["db".into()], "db".into()),
                (
                    IncidentStatus::Update,
                    vec!["db".into(), "web".into()],
                    "db".into()
                ),
            ]
        );
        assert_eq!(stage.watermark(), Some(T + 2 * MIN - 1));
    }

    #[test]
    fn the_same_records_in_any_split_give_the_same_incidents_and_repeats_change_nothing() {
        let records = a_db_fault();
        let mut resolved = records.clone();
        resolved.push(partial(
            "telemetry.metrics",
            0,
            T + 6 * MIN,
            vec![resolve("m-db", "db", T + 30_000, T + 4 * MIN)],
            &[],
        ));
        resolved.push(partial(
            "cara.internal.traces",
            0,
            T + 6 * MIN,
            vec![resolve("r-web", "web", T + MIN, T + 5 * MIN)],
            &[],
        ));
        resolved.push(partial("telemetry.metrics", 0, T + 20 * MIN, vec![], &[]));
        resolved.push(partial(
            "cara.internal.traces",
            0,
            T + 20 * MIN,
            vec![],
            &[],
        ));
        let mut whole = IncidentStage::new(IncidentSettings::default());
        let all_at_once = feed(&mut whole, &resolved);
        assert_eq!(
            all_at_once.last().map(|r| r.status),
            Some(IncidentStatus::Resolved)
        );
        assert_eq!(all_at_once.last().map(|r| r.at), Some(T + 10 * MIN));

        let mut split = IncidentStage::new(IncidentSettings::default());
        let mut one_by_one = Vec::new();
        for record in &resolved {
            one_by_one.extend(feed(&mut split, std::slice::from_ref(record)));
        }
        assert_eq!(one_by_one, all_at_once);
        assert_eq!(split, whole);

        // A stage replaying after a crash sends the same records again: the
        // incident, resolved, is not opened a second time.
        assert!(feed(&mut split, &resolved).is_empty());
        assert_eq!(split.counts().repeats, 4);
        assert_eq!(split.open_incidents(), 0);
    }

    #[test]
    fn a_silent_source_stops_holding_the_stage_back_after_the_allowed_lag() {
        let settings = IncidentSettings::default();
        let mut stage = IncidentStage::new(settings);
        // The trace combiner spoke once, then its spans stopped.
        assert!(feed(
            &mut stage,
            &[partial("cara.internal.traces", 0, T, vec![], &[])]
        )
        .is_empty());
        let metrics = partial(
            "telemetry.metrics",
            1,
            T + MIN,
            vec![fire("m-db", "db", T + 10)],
            &[],
        );
        assert!(
            feed(&mut stage, &[metrics]).is_empty(),
            "within the lag: it waits"
        );
        let later = partial("telemetry.metrics", 1, T + 10 * MIN, vec![], &[]);
        let out = feed(&mut stage, &[later]);
        assert_eq!(
            summary(&out),
            [(IncidentStatus::Open, vec!["db".into()], "db".into())]
        );
        assert_eq!(
            stage.watermark(),
            Some(T + 10 * MIN - settings.max_source_lag_ms - 1)
        );
        // Its late alert still joins, counted as late.
        let late = partial(
            "cara.internal.traces",
            0,
            T + MIN,
            vec![fire("r-web", "web", T + 20)],
            &[("web", "db")],
        );
        let more = partial("telemetry.metrics", 1, T + 11 * MIN, vec![], &[]);
        let out = feed(&mut stage, &[late, more]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].services, ["db", "web"]);
        assert_eq!(
            stage.counts().late,
            2,
            "the alert and the call it came with"
        );
    }

    /// Metric partition `partition`'s record of an api alert firing at T + 1 min
    /// and resolving a minute later, sent with mark `through`.
    fn api_episode(partition: i32, through: i64) -> AlertPartial {
        partial(
            "telemetry.metrics",
            partition,
            through,
            vec![
                fire("m-api", "api", T + MIN),
                resolve("m-api", "api", T + MIN, T + 2 * MIN),
            ],
            &[],
        )
    }

    #[test]
    fn late_transitions_are_applied_in_the_call_that_brings_them() {
        let mut stage = IncidentStage::new(IncidentSettings::default());
        // One source, heard from first, takes the stage to T + 10 min alone.
        let first = partial("telemetry.metrics", 0, T + 10 * MIN, vec![], &[]);
        assert!(feed(&mut stage, &[first]).is_empty());
        // The second source's last record brings a whole episode behind that: no
        // record after it moves the watermark, so this call must apply it.
        let episode = api_episode(1, T + 10 * MIN);
        let out = feed(&mut stage, &[episode]);
        let quiet = IncidentSettings::default().quiet_ms;
        assert_eq!(
            out.iter()
                .map(|r| (r.status, r.resolved_at))
                .collect::<Vec<_>>(),
            [
                (IncidentStatus::Open, None),
                (IncidentStatus::Resolved, Some(T + 2 * MIN + quiet))
            ],
            "{out:#?}"
        );
        assert_eq!(stage.counts().late, 2);
        assert!(!stage.state.correlator.holds_late());
    }

    #[test]
    fn a_replay_far_behind_its_source_is_ignored() {
        let mut stage = IncidentStage::new(IncidentSettings::default());
        let episode = api_episode(0, T + 3 * MIN);
        assert_eq!(feed(&mut stage, std::slice::from_ref(&episode)).len(), 1);
        // The source goes on far past the episode (further than the correlator
        // remembers transitions), the incident resolving on the way.
        let later = T + REPEATS_REMEMBERED_MS + 60 * MIN;
        let progress = partial("telemetry.metrics", 0, later, vec![], &[]);
        let out = feed(&mut stage, &[progress]);
        assert_eq!(summary(&out)[0].0, IncidentStatus::Resolved);
        // The source replays from a checkpoint hours old (a crash, or a second
        // deployment sharing the exchange): nothing reopens.
        assert!(feed(&mut stage, &[episode]).is_empty());
        assert_eq!(stage.counts().repeats, 2);
        assert_eq!(stage.open_incidents(), 0);
    }

    #[test]
    fn a_restored_stage_continues_as_the_original() {
        let records = a_db_fault();
        let mut original = IncidentStage::new(IncidentSettings::default());
        feed(&mut original, &records[..3]);
        let snapshot = original.snapshot().unwrap();
        let mut restored = IncidentStage::restore(&snapshot, IncidentSettings::default()).unwrap();
        assert_eq!(restored, original);
        let more = partial(
            "telemetry.metrics",
            0,
            T + 9 * MIN,
            vec![fire("m-api", "api", T + 8 * MIN)],
            &[],
        );
        let traces = partial("cara.internal.traces", 0, T + 9 * MIN, vec![], &[]);
        let next = [more, traces];
        assert_eq!(feed(&mut restored, &next), feed(&mut original, &next));
        assert_eq!(restored.snapshot().unwrap(), original.snapshot().unwrap());
    }
}
