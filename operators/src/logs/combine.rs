//! Logs, second stage: every log partition's window counts merged per service and
//! template, table `log_windows`, the service's template catalogue, and alerts of
//! kind `log_pattern`.
//!
//! A service's lines may be spread over every partition of the log topic, and each
//! partition's miner sees each template first on its own; only here, where every
//! partition's counts meet, is a template new to the *service*, and a window's count
//! the service's whole count. Owns:
//! - the marks of the log partitions (the exchange rule of [`crate::exchange`]:
//!   replays count once, a window closes when every log partition has passed it);
//! - the merged counts of the windows not yet closed;
//! - the catalogue: per service and template id, the last window with lines,
//!   bounded by `limits.max_series` entries (when full, the least recently seen
//!   tenth is forgotten, and counted);
//! - alerts:
//!   - `log_new_error_template`: a template the catalogue does not know, whose first
//!     window has error-level lines, fires once, from its first error-level line
//!     (`starts_at`), and resolves when the next window closes. Its id names the
//!     service, template and window, so a replay after a crash sends the same id.
//!     Templates first seen within `learn_ms` of the service's first window are
//!     learnt without alerting (what a service logs when cara starts watching it);
//!   - `log_template_burst` and `log_error_rate`: each closed window's lines per
//!     template (0 for a template seen within the last `active_windows` windows) and
//!     error ratio per service are scored by the metric anomaly operator, and an
//!     alert fires when the score passes the policy's threshold **upwards** (a
//!     template going quiet or errors falling is not a problem to page about).
//!
//! Everything is a function of the exchange records in order; the state round-trips
//! through [`Operator::snapshot`].

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};

use super::partial::LogPartial;
use super::signals::{LogSettings, ERROR_RATIO, TEMPLATE_LINES};
use super::tables::{log_windows_batch, TemplateWindow};
use crate::alert::{alert_id, AlertRecord, AlertStatus};
use crate::anomaly::alerting::MetricAlerting;
use crate::anomaly::{Detector, PointScore};
use crate::exchange::{stored_records, SourceMarks};
use crate::minutes::take_final;
use crate::operator::{Emitted, Operator, OperatorError, PartitionContext};
use crate::schema::Table;
use crate::series::{gauge_batch, DerivedPoint};
use crate::snapshot::{self, SnapshotError};

/// A service and template id.
type TemplateKey = (String, i64);

/// One template's merged counts in one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Merged {
    lines: u64,
    error_lines: u64,
    first_error_ms: Option<i64>,
    /// The text, as the first partition (in record order) to send it had it.
    template: String,
}

impl Merged {
    fn add(&mut self, lines: u64, error_lines: u64, first_error_ms: Option<i64>, text: String) {
        self.lines = self.lines.saturating_add(lines);
        self.error_lines = self.error_lines.saturating_add(error_lines);
        self.first_error_ms = match (self.first_error_ms, first_error_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if self.template.is_empty() {
            self.template = text;
        }
    }
}

/// A new-error-template alert that resolves once its next window has closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PendingResolve {
    resolve_at: i64,
    record: AlertRecord,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CombinerState {
    /// Which windows of which log partition are applied (see [`crate::exchange`]).
    applied: SourceMarks,
    /// Open windows by start, then (service, template id).
    #[serde(with = "crate::map_as_list")]
    open: BTreeMap<i64, BTreeMap<TemplateKey, Merged>>,
    /// Windows starting before this are closed.
    closed_through: Option<i64>,
    /// Records of a window already closed (a source the watermark did not wait for).
    late_records: u64,
    /// Records of another window length than the configured one.
    mismatched_records: u64,
    /// The catalogue: last window start with lines, per (service, template id).
    #[serde(with = "crate::map_as_list")]
    known: BTreeMap<TemplateKey, i64>,
    /// Templates forgotten because the catalogue was full.
    forgotten: u64,
    scoring: MetricAlerting,
    /// Ids of downward anomalies, whose resolution is not reported either.
    suppressed: BTreeSet<String>,
    pending: Vec<PendingResolve>,
    /// Per service, the start of the first window it had lines in.
    #[serde(default, with = "crate::map_as_list")]
    first_window: BTreeMap<String, i64>,
}

/// The second log stage (reads the one exchange partition).
#[derive(Debug, Clone, PartialEq)]
pub struct LogCombiner {
    expected_sources: usize,
    settings: LogSettings,
    state: CombinerState,
}

impl LogCombiner {
    /// Fresh state, waiting for `expected_sources` log partitions.
    pub fn new(expected_sources: usize, settings: LogSettings) -> Self {
        let scoring = MetricAlerting::new(settings.scorer, settings.limits, settings.rules());
        LogCombiner {
            expected_sources,
            settings,
            state: CombinerState {
                applied: SourceMarks::default(),
                open: BTreeMap::new(),
                closed_through: None,
                late_records: 0,
                mismatched_records: 0,
                known: BTreeMap::new(),
                forgotten: 0,
                scoring,
                suppressed: BTreeSet::new(),
                pending: Vec::new(),
                first_window: BTreeMap::new(),
            },
        }
    }

    /// State continuing from [`Operator::snapshot`], with the current settings.
    pub fn restore(
        snapshot: &[u8],
        expected_sources: usize,
        settings: LogSettings,
    ) -> Result<Self, SnapshotError> {
        let mut state: CombinerState = snapshot::decode(snapshot)?;
        state.scoring =
            state
                .scoring
                .reconfigured(settings.scorer, settings.limits, settings.rules());
        Ok(LogCombiner {
            expected_sources,
            settings,
            state,
        })
    }

    /// Records that came for a closed window.
    pub fn late_records(&self) -> u64 {
        self.state.late_records
    }

    /// Records refused for another window length than the configured one.
    pub fn mismatched_records(&self) -> u64 {
        self.state.mismatched_records
    }

    /// Templates forgotten because the catalogue was full.
    pub fn forgotten(&self) -> u64 {
        self.state.forgotten
    }

    /// Templates the catalogue knows.
    pub fn known_templates(&self) -> usize {
        self.state.known.len()
    }

    fn apply(&mut self, record: LogPartial) {
        if record.window_ms != self.settings.window() {
            self.state.mismatched_records += 1;
            return;
        }
        let state = &mut self.state;
        let Some(merged) = state.applied.admit(
            (record.source_topic, record.source_partition),
            record.window_start,
            record.through_ms,
            &mut state.open,
            state.closed_through,
            &mut state.late_records,
        ) else {
            return;
        };
        for t in record.templates {
            merged.entry((t.service, t.template_id)).or_default().add(
                t.lines,
                t.error_lines,
                t.first_error_ms,
                t.template,
            );
        }
    }

    /// Windows starting before this may close.
    fn closable_through(&self) -> Option<i64> {
        self.state.applied.low_mark(self.expected_sources)
    }

    /// Closes the windows `closed` (those before `through`): their `log_windows`
    /// rows, the catalogue, new-error-template alerts, and the windowed series scored.
    fn close(
        &mut self,
        closed: BTreeMap<i64, BTreeMap<TemplateKey, Merged>>,
        through: i64,
        context: &PartitionContext,
        last_row: usize,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        let window = self.settings.window();
        let mut rows = Vec::new();
        let mut points = Vec::new();
        let mut alerts = Vec::new();
        for (start, merged) in closed {
            let end = start + window;
            for ((service, id), m) in &merged {
                let since = *self
                    .state
                    .first_window
                    .entry(service.clone())
                    .or_insert(start);
                let learning = start < since.saturating_add(self.settings.learn_ms);
                let first_seen = self
                    .state
                    .known
                    .insert((service.clone(), *id), start)
                    .is_none();
                rows.push(TemplateWindow {
                    service: service.clone(),
                    template_id: *id,
                    window_start: start,
                    window_end: end,
                    lines: m.lines,
                    error_lines: m.error_lines,
                    first_seen,
                });
                if let (true, true, false, Some(first_error)) = (
                    first_seen,
                    self.settings.alert_new_error_templates,
                    learning,
                    m.first_error_ms,
                ) {
                    let record = new_error_template_alert(
                        service,
                        *id,
                        &m.template,
                        first_error,
                        (start, end),
                        last_row,
                    );
                    self.state.pending.push(PendingResolve {
                        resolve_at: end + window,
                        record: record.clone(),
                    });
                    alerts.push(record);
                }
            }
            self.bound_catalogue();
            // The window's series are stamped at its end, when their values are known
            // (so an alert on them starts no earlier than it could have been raised).
            // Lines per active template (zero when it was quiet in this window): the
            // catalogue and the window are both in key order, so the window's counts
            // are read alongside, without a lookup per template.
            let horizon = start - self.settings.active_windows * window;
            let mut in_window = merged.iter().peekable();
            for (key, last) in &self.state.known {
                while in_window.next_if(|(k, _)| *k < key).is_some() {}
                let lines = in_window
                    .next_if(|(k, _)| *k == key)
                    .map_or(0, |(_, m)| m.lines);
                if *last <= horizon {
                    continue;
                }
                let (service, id) = key;
                points.push(DerivedPoint {
                    ts_ms: end,
                    name: TEMPLATE_LINES.into(),
                    labels: vec![
                        ("service".into(), service.clone()),
                        ("template_id".into(), id.to_string()),
                    ],
                    value: lines as f64,
                    source_row: last_row as i64,
                });
            }
            // Error ratio per service with lines in the window.
            let mut per_service: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
            for ((service, _), m) in &merged {
                let e = per_service.entry(service).or_default();
                e.0 += m.lines;
                e.1 += m.error_lines;
            }
            for (service, (lines, errors)) in per_service {
                points.push(DerivedPoint {
                    ts_ms: end,
                    name: ERROR_RATIO.into(),
                    labels: vec![("service".into(), service.to_owned())],
                    value: errors as f64 / lines.max(1) as f64,
                    source_row: last_row as i64,
                });
            }
        }
        // New-error-template alerts resolve once the window after theirs closed.
        let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.state.pending)
            .into_iter()
            .partition(|p| p.resolve_at <= through);
        self.state.pending = keep;
        for p in due {
            let mut record = p.record;
            record.status = AlertStatus::Resolved;
            record.at = p.resolve_at;
            record.ends_at = Some(p.resolve_at);
            record.summary = format!("{} (no longer new)", record.summary);
            record.row = last_row;
            alerts.push(record);
        }
        if !points.is_empty() {
            let batch = gauge_batch(&points, &context.topic, context.partition)?;
            let refused_before = self.state.scoring.counts().refused_by_limit;
            let mut scored = Vec::new();
            self.state
                .scoring
                .score(&batch, &mut scored)
                .map_err(OperatorError::Schema)?;
            out.over_limit += self
                .state
                .scoring
                .counts()
                .refused_by_limit
                .saturating_sub(refused_before);
            for mut record in scored {
                let upward = record.value > record.evidence.baseline;
                match record.status {
                    AlertStatus::Firing if !upward => {
                        self.state.suppressed.insert(record.id.clone());
                        continue;
                    }
                    AlertStatus::Resolved if self.state.suppressed.remove(&record.id) => continue,
                    _ => {}
                }
                record.kind = "log_pattern".into();
                record.row = last_row;
                alerts.push(record);
            }
        }
        if !rows.is_empty() {
            let batch = log_windows_batch(&rows, &context.topic, context.partition)?;
            out.tables.push((Table::LogWindows, batch));
        }
        out.alerts.extend(alerts);
        Ok(())
    }

    /// Forgets the least recently seen tenth of the catalogue when it is over its
    /// bound (`limits.max_series`).
    fn bound_catalogue(&mut self) {
        let bound = self.settings.limits.max_series.max(10);
        if self.state.known.len() <= bound {
            return;
        }
        let mut by_age: Vec<(i64, TemplateKey)> = self
            .state
            .known
            .iter()
            .map(|(key, last)| (*last, key.clone()))
            .collect();
        by_age.sort_unstable();
        let excess = self.state.known.len() - bound + bound / 10;
        for (_, key) in by_age.into_iter().take(excess) {
            self.state.known.remove(&key);
            self.state.forgotten += 1;
        }
    }
}

impl Operator for LogCombiner {
    fn name(&self) -> &'static str {
        "log_combiner"
    }

    fn tables(&self) -> Vec<Table> {
        vec![Table::LogWindows, Table::Alerts]
    }

    fn process(
        &mut self,
        context: &PartitionContext,
        rows: &RecordBatch,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        let late_before = self.state.late_records;
        for (_, record) in stored_records::<LogPartial>(rows)? {
            self.apply(record);
        }
        out.late += self.state.late_records.saturating_sub(late_before);
        let Some(through) = self.closable_through() else {
            return Ok(());
        };
        let Some(closed) = take_final(
            &mut self.state.open,
            &mut self.state.closed_through,
            through,
        ) else {
            return Ok(());
        };
        let last_row = rows.num_rows().saturating_sub(1);
        self.close(closed, through, context, last_row, out)
    }

    fn watermark(&self) -> Option<i64> {
        self.closable_through()
    }

    /// The end of the next window to close: its alerts (a new template, a scored
    /// series) are stamped there.
    fn quiet_before(&self) -> Option<i64> {
        self.closable_through()
            .map(|through| through.saturating_add(self.settings.window()))
    }

    fn snapshot(&self) -> Result<Vec<u8>, OperatorError> {
        Ok(snapshot::encode(&self.state)?)
    }
}

/// The alert for a template new to `service`, first seen in window `(start, end)`
/// with an error-level line at `first_error_ms`.
fn new_error_template_alert(
    service: &str,
    template_id: i64,
    template: &str,
    first_error_ms: i64,
    (start, end): (i64, i64),
    row: usize,
) -> AlertRecord {
    let rule = "log_new_error_template";
    let series = format!("{service}/{template_id}");
    AlertRecord {
        id: alert_id(rule, &series, start),
        rule: rule.into(),
        kind: "log_pattern".into(),
        severity: "ticket".into(),
        status: AlertStatus::Firing,
        // Known when the window closes (as the windows' scored series are); it
        // started with the first error line.
        at: end,
        starts_at: first_error_ms,
        ends_at: None,
        labels: vec![
            ("alertname".into(), rule.into()),
            ("service".into(), service.into()),
            ("template_id".into(), template_id.to_string()),
        ],
        summary: format!("new error-level log template in {service}"),
        description: format!("first seen: {template}"),
        score: 1.0,
        value: 1.0,
        threshold: 0.0,
        window_start: start,
        window_end: end,
        evidence: PointScore {
            score: 1.0,
            baseline: 0.0,
            deviation: 0.0,
            detector: Detector::Warmup,
        },
        row,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::{ExchangeRecord, RecordRows};
    use crate::logs::signals::tests::{closing_line, logs, traffic, TestLine, T0};
    use crate::logs::signals::LogOperator;
    use arrow::array::AsArray;
    use arrow::datatypes::{Int64Type, TimestampMillisecondType};

    const EXCHANGE: &str = "cara.internal.logs";

    /// The records partition `partition` sends for `lines`, every window closed.
    fn mined(lines: &[TestLine], partition: i32) -> Vec<LogPartial> {
        let mut op = LogOperator::new(LogSettings::default());
        let mut partials = op
            .mine(&logs(lines), "telemetry.logs", partition)
            .unwrap()
            .partials;
        let end = lines.iter().map(|l| l.0).max().unwrap_or(T0) + 3_600_000;
        partials.extend(op.raise_watermark(end, "telemetry.logs", partition));
        partials
    }

    /// `partials` as the combiner reads them (table `log_partials`).
    fn exchanged(partials: &[LogPartial]) -> RecordBatch {
        let mut rows = RecordRows::new(Table::LogPartials);
        for (offset, p) in partials.iter().enumerate() {
            let json = String::from_utf8(p.to_json()).unwrap();
            rows.append(&p.row(), &json, EXCHANGE, 0, offset as i64);
        }
        rows.finish()
    }

    fn combine(combiner: &mut LogCombiner, partials: &[LogPartial]) -> Emitted {
        let context = PartitionContext {
            topic: EXCHANGE.into(),
            partition: 0,
        };
        let mut out = Emitted::default();
        combiner
            .process(&context, &exchanged(partials), &mut out)
            .unwrap();
        out
    }

    /// `log_windows` rows as (service, template id, start, lines, errors, first).
    fn windows(out: &Emitted) -> Vec<(String, i64, i64, i64, i64, bool)> {
        let mut rows = Vec::new();
        for (_, batch) in out.tables.iter().filter(|(t, _)| *t == Table::LogWindows) {
            let service = batch.column_by_name("service").unwrap().as_string::<i32>();
            let int = |name: &str| {
                batch
                    .column_by_name(name)
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .clone()
            };
            let (id, lines, errors) = (int("template_id"), int("lines"), int("error_lines"));
            let start = batch
                .column_by_name("window_start")
                .unwrap()
                .as_primitive::<TimestampMillisecondType>();
            let first = batch.column_by_name("first_seen").unwrap().as_boolean();
            for r in 0..batch.num_rows() {
                rows.push((
                    service.value(r).to_owned(),
                    id.value(r),
                    start.value(r),
                    lines.value(r),
                    errors.value(r),
                    first.value(r),
                ));
            }
        }
        rows
    }

    /// Alerts as JSON with the batch row left out (it says where in a batch).
    fn alerts(out: &Emitted) -> Vec<String> {
        out.alerts
            .iter()
            .map(|a| {
                let mut a = a.clone();
                a.row = 0;
                serde_json::to_string(&a).unwrap()
            })
            .collect()
    }

    /// Steady traffic for `api` and `db`, and a new error-level template in `db`
    /// from minute 20 on, in every line's order.
    fn service_traffic() -> Vec<TestLine> {
        let mut lines = traffic(30, 0);
        for m in 0..30 {
            for k in 0..6 {
                lines.push((
                    T0 + m * 60_000 + k * 9_000 + 3,
                    "db",
                    "info",
                    format!("checkpoint {m}-{k} complete after {} ms", 3 + k),
                ));
            }
            if m >= 20 {
                lines.push((
                    T0 + m * 60_000 + 7_000 + m,
                    "db",
                    "error",
                    format!("deadlock detected for user {m}"),
                ));
            }
        }
        lines.sort_by_key(|l| l.0);
        lines
    }

    /// The property the stage exists for: lines spread over two partitions give the
    /// windows and alerts the same lines give in one, so a template new to the
    /// service alerts once, however many partitions see it first.
    #[test]
    fn lines_over_two_partitions_give_what_one_partition_gives() {
        let lines = service_traffic();
        let whole = combine(
            &mut LogCombiner::new(1, LogSettings::default()),
            &mined(&lines, 0),
        );
        // Round robin: each partition's miner sees the new template on its own.
        let (even, odd): (Vec<_>, Vec<_>) = lines
            .iter()
            .cloned()
            .enumerate()
            .partition(|(i, _)| i % 2 == 0);
        let strip = |v: Vec<(usize, TestLine)>| v.into_iter().map(|(_, l)| l).collect::<Vec<_>>();
        let mut sent = mined(&strip(even), 0);
        sent.extend(mined(&strip(odd), 1));
        let mut combiner = LogCombiner::new(2, LogSettings::default());
        let split = combine(&mut combiner, &sent);

        assert_eq!(windows(&split), windows(&whole));
        assert_eq!(alerts(&split), alerts(&whole));
        let new: Vec<_> = split
            .alerts
            .iter()
            .filter(|a| a.rule == "log_new_error_template")
            .collect();
        let first_error = T0 + 20 * 60_000 + 7_000 + 20;
        assert_eq!(new.len(), 2, "fired and resolved once: {new:#?}");
        assert_eq!(
            (new[0].status, new[0].starts_at, new[0].at),
            (AlertStatus::Firing, first_error, T0 + 21 * 60_000)
        );
        assert_eq!(
            new[0].description,
            "first seen: deadlock detected for user <*>"
        );
        // Nothing it raises later is stamped before the end of the next window to
        // close: what it promises the incident stage.
        let watermark = combiner.watermark().expect("windows closed");
        assert_eq!(combiner.quiet_before(), Some(watermark + 60_000));
        assert_eq!(
            (new[1].status, new[1].id.as_str(), new[1].at),
            (AlertStatus::Resolved, new[0].id.as_str(), T0 + 22 * 60_000)
        );
        // Per window, the service's whole count: 10 + 10 + 1 api lines in minute 5.
        let api_minute_5: i64 = windows(&split)
            .iter()
            .filter(|w| w.0 == "api" && w.2 == T0 + 5 * 60_000)
            .map(|w| w.3)
            .sum();
        assert_eq!(api_minute_5, 21);
        // Every template is first seen once per service, in the catalogue.
        let firsts = windows(&split).iter().filter(|w| w.5).count();
        assert_eq!(firsts, combiner.known_templates());
        assert_eq!(combiner.known_templates(), 5);
    }

    /// What a service logs in its first `learn_ms` is learnt, not alerted; a new
    /// error template after that alerts; with learning off, from the first window.
    #[test]
    fn a_services_first_minutes_are_learnt_without_alerting() {
        let mut lines = traffic(12, 0);
        lines.push((
            T0 + 2 * 60_000 + 5,
            "api",
            "error",
            "disk sda is full".into(),
        ));
        lines.push((
            T0 + 7 * 60_000 + 5,
            "api",
            "error",
            "quota 3 exceeded".into(),
        ));
        lines.sort_by_key(|l| l.0);
        let sent = mined(&lines, 0);
        let new_ones = |settings: LogSettings| -> Vec<String> {
            combine(&mut LogCombiner::new(1, settings), &sent)
                .alerts
                .iter()
                .filter(|a| a.rule == "log_new_error_template" && a.status == AlertStatus::Firing)
                .map(|a| a.description.clone())
                .collect()
        };
        assert_eq!(
            new_ones(LogSettings::default()),
            ["first seen: quota <*> exceeded"],
            "minute 2 is within the first 5 minutes of api"
        );
        let eager = LogSettings {
            learn_ms: 0,
            ..LogSettings::default()
        };
        assert_eq!(
            new_ones(eager),
            [
                "first seen: disk sda is full",
                "first seen: quota <*> exceeded"
            ]
        );
    }

    #[test]
    fn nothing_closes_before_every_source_reported_and_replays_count_once() {
        let sent = mined(&service_traffic(), 0);
        let mut waiting = LogCombiner::new(2, LogSettings::default());
        let out = combine(&mut waiting, &sent);
        assert!(out.tables.is_empty() && out.alerts.is_empty());
        assert_eq!(Operator::watermark(&waiting), None);

        let mut once = LogCombiner::new(1, LogSettings::default());
        let first = combine(&mut once, &sent[..10]);
        let mut twice = once.clone();
        let rest = combine(&mut once, &sent[10..]);
        // A source that crashed sends records from its checkpoint again.
        let replayed = combine(&mut twice, &sent[5..]);
        assert_eq!(windows(&replayed), windows(&rest));
        assert_eq!(alerts(&replayed), alerts(&rest));
        assert!(!windows(&first).is_empty());
        assert_eq!(once.late_records(), 0);
        assert_eq!(
            Operator::snapshot(&once).unwrap(),
            Operator::snapshot(&twice).unwrap()
        );
    }

    #[test]
    fn a_restored_combiner_continues_exactly_and_other_window_lengths_are_refused() {
        let sent = mined(&service_traffic(), 0);
        let mut whole = LogCombiner::new(1, LogSettings::default());
        combine(&mut whole, &sent[..12]);
        let snapshot = Operator::snapshot(&whole).unwrap();
        let mut restored = LogCombiner::restore(&snapshot, 1, LogSettings::default()).unwrap();
        assert_eq!(Operator::snapshot(&restored).unwrap(), snapshot);
        let a = combine(&mut whole, &sent[12..]);
        let b = combine(&mut restored, &sent[12..]);
        assert_eq!(windows(&a), windows(&b));
        assert_eq!(alerts(&a), alerts(&b));
        assert!(a.alerts.iter().any(|a| a.rule == "log_new_error_template"));

        let mut other = sent[0].clone();
        other.window_ms = 30_000;
        let mut combiner = LogCombiner::new(1, LogSettings::default());
        let out = combine(&mut combiner, &[other]);
        assert!(out.tables.is_empty());
        assert_eq!(combiner.mismatched_records(), 1);
    }

    #[test]
    fn a_burst_of_a_template_alerts_but_a_quiet_one_does_not() {
        // 90 steady minutes, a burst of 300 retries in minute 90, then a minute to close it.
        let mut rows = traffic(91, 300);
        rows.push(closing_line());
        let out = combine(
            &mut LogCombiner::new(1, LogSettings::default()),
            &mined(&rows, 0),
        );
        let bursts: Vec<_> = out
            .alerts
            .iter()
            .filter(|a| a.rule == "log_template_burst" && a.status == AlertStatus::Firing)
            .collect();
        assert_eq!(bursts.len(), 1, "{:#?}", out.alerts);
        assert_eq!(bursts[0].kind, "log_pattern");
        assert!(bursts[0].value > 300.0);
        // Stamped when minute 90 is known: at its end.
        assert_eq!(bursts[0].starts_at, T0 + 91 * 60_000);

        // The same traffic without the burst raises nothing.
        let mut rows = traffic(91, 0);
        rows.push(closing_line());
        let out = combine(
            &mut LogCombiner::new(1, LogSettings::default()),
            &mined(&rows, 0),
        );
        assert!(
            out.alerts.iter().all(|a| a.rule != "log_template_burst"),
            "{:#?}",
            out.alerts
        );
    }

    #[test]
    fn an_error_ratio_spike_pages() {
        // 90 minutes without an error-level line, then a minute where most lines fail.
        let mut rows = traffic(90, 0);
        let minute = T0 + 90 * 60_000;
        for k in 0..20 {
            rows.push((
                minute + k * 1_000,
                "api",
                "error",
                format!("retrying upstream call {k} after timeout"),
            ));
        }
        rows.push((
            minute + 30_000,
            "api",
            "info",
            "request 1 served in 11 ms".into(),
        ));
        rows.push(closing_line());
        let out = combine(
            &mut LogCombiner::new(1, LogSettings::default()),
            &mined(&rows, 0),
        );
        let pages: Vec<_> = out
            .alerts
            .iter()
            .filter(|a| a.rule == "log_error_rate" && a.status == AlertStatus::Firing)
            .collect();
        assert_eq!(pages.len(), 1, "{:#?}", out.alerts);
        assert_eq!(pages[0].severity, "page");
        assert_eq!(pages[0].starts_at, minute + 60_000, "at the window's end");
        assert!(pages[0].value > 0.9);
        assert!(pages[0].labels.contains(&("service".into(), "api".into())));
    }
}
