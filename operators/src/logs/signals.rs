//! The log operator of one partition: templates per line, windowed signals per
//! service and template, and `log_pattern` alerts.
//!
//! Owns, for the logs of one source partition, in row (offset) order:
//! - the [`TemplateMiner`]: every line gets a template id, its template text and its
//!   parameters (the new columns of table `logs`);
//! - tumbling event-time windows per (service, template): lines, error-level lines,
//!   and whether the template was first seen in the window (table `log_windows`);
//!   the watermark is the partition's largest event time minus the out-of-orderness
//!   bound; a line behind it is late (counted, still archived with its template);
//! - alerts of kind `log_pattern`:
//!   - `log_new_error_template`: a template first seen on an error-level line fires
//!     at that line and resolves when its window closes;
//!   - `log_template_burst` and `log_error_rate`: each closed window's lines per
//!     template (0 for a template seen within the last `active_windows` windows) and
//!     error ratio per service are scored by the metric anomaly operator, and an alert
//!     fires when the score passes the policy's threshold **upwards** (a template
//!     going quiet or errors falling is not a problem to page about).
//!
//! Everything is a function of the rows in order: the same rows give the same ids,
//! windows and alerts; the state round-trips through [`LogOperator::snapshot`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Builder, ListBuilder, RecordBatch, StringBuilder,
};
use arrow::datatypes::TimestampMillisecondType;
use serde::{Deserialize, Serialize};

use super::miner::{MinerConfig, MinerSnapshot, TemplateMiner};
use super::tables::{log_templates_batch, log_windows_batch, with_template_columns};
use crate::alert::{alert_id, AlertRecord, AlertRule, AlertStatus, FiringPolicy};
use crate::anomaly::alerting::MetricAlerting;
use crate::anomaly::operator::{AnomalyLimits, SchemaMismatch};
use crate::anomaly::{Detector, PointScore, ScorerConfig};
use crate::operator::{Emitted, Operator, OperatorError, PartitionContext};
use crate::schema::Table;
use crate::series::{gauge_batch, DerivedPoint};
use crate::snapshot::{self, SnapshotError};
use crate::watermark::EventClock;
use crate::window::Window;

/// Metric name of lines per template per window.
pub const TEMPLATE_LINES: &str = "log_template_lines";
/// Metric name of the error-level share of a service's lines per window.
pub const ERROR_RATIO: &str = "log_error_ratio";

/// How the log operator runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogSettings {
    /// Template mining.
    pub miner: MinerConfig,
    /// Window length, ms.
    pub window_ms: i64,
    /// How far behind the largest event time lines may arrive, ms.
    pub out_of_orderness_ms: i64,
    /// Detector tuning for the windowed series.
    pub scorer: ScorerConfig,
    /// State limits of the scoring.
    pub limits: AnomalyLimits,
    /// When burst and error-rate alerts fire and resolve.
    pub policy: FiringPolicy,
    /// Windows a template stays scored (with zero counts) after its last line.
    pub active_windows: i64,
    /// Whether new templates on error-level lines alert.
    pub alert_new_error_templates: bool,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            miner: MinerConfig::default(),
            window_ms: 60_000,
            out_of_orderness_ms: 30_000,
            scorer: ScorerConfig::default(),
            limits: AnomalyLimits::default(),
            policy: FiringPolicy::default(),
            active_windows: 60,
            alert_new_error_templates: true,
        }
    }
}

impl LogSettings {
    fn rules(&self) -> Vec<AlertRule> {
        vec![
            AlertRule {
                name: "log_template_burst".into(),
                metric: Some(TEMPLATE_LINES.into()),
                labels: BTreeMap::new(),
                severity: "ticket".into(),
                policy: self.policy,
            },
            AlertRule {
                name: "log_error_rate".into(),
                metric: Some(ERROR_RATIO.into()),
                labels: BTreeMap::new(),
                severity: "page".into(),
                policy: self.policy,
            },
        ]
    }
}

/// Whether a log level is an error level (case-insensitive).
pub fn is_error_level(level: &str) -> bool {
    const LEVELS: [&str; 10] = [
        "error",
        "err",
        "fatal",
        "critical",
        "crit",
        "alert",
        "emerg",
        "emergency",
        "severe",
        "panic",
    ];
    LEVELS.iter().any(|l| level.eq_ignore_ascii_case(l))
}

/// One closed window of one template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateWindow {
    /// Service.
    pub service: String,
    /// Template id.
    pub template_id: i64,
    /// Window start, ms.
    pub window_start: i64,
    /// Window end (exclusive), ms.
    pub window_end: i64,
    /// Lines of the template in the window.
    pub lines: u64,
    /// Of which at an error level.
    pub error_lines: u64,
    /// The template was first seen in this window.
    pub first_seen: bool,
}

/// A template as it stands after a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateState {
    /// Service.
    pub service: String,
    /// Template id.
    pub template_id: i64,
    /// Text, variables as `<*>`.
    pub template: String,
    /// Lines so far.
    pub count: u64,
    /// Event time of the first line, ms.
    pub first_seen_ms: i64,
    /// Event time of the latest line, ms.
    pub last_seen_ms: i64,
    /// Created or generalised by this batch (a new version of the template).
    pub changed: bool,
    /// Created by this batch (first seen in it).
    pub created: bool,
}

/// What one batch produced.
#[derive(Debug)]
pub struct LogBatchOutput {
    /// `template_id` per row.
    pub template_id: ArrayRef,
    /// `template` per row (the text after the row was mined).
    pub template: ArrayRef,
    /// `params` per row.
    pub params: ArrayRef,
    /// Windows the batch closed.
    pub windows: Vec<TemplateWindow>,
    /// Alert transitions.
    pub alerts: Vec<AlertRecord>,
    /// Templates the batch touched, sorted by service and id.
    pub templates: Vec<TemplateState>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Counts {
    lines: u64,
    error_lines: u64,
    first_seen: bool,
}

/// A firing new-error-template alert, resolved when its window closes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PendingResolve {
    window_start: i64,
    record: AlertRecord,
}

/// The log operator's state for one partition.
#[derive(Debug)]
pub struct LogOperator {
    settings: LogSettings,
    miner: TemplateMiner,
    state: WindowState,
}

/// Everything but the miner, serialised as is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct WindowState {
    /// Open windows by start, then (service, template id).
    #[serde(with = "keyed_windows")]
    open: BTreeMap<i64, BTreeMap<(Arc<str>, i64), Counts>>,
    /// Largest event time seen and the watermark the runtime raised (snapshots
    /// keep their fields, `max_ts` read as before).
    #[serde(flatten)]
    clock: EventClock,
    /// Lines behind the watermark.
    late_lines: u64,
    /// Last window start with lines, per (service, template id).
    #[serde(with = "keyed")]
    active: BTreeMap<(Arc<str>, i64), i64>,
    scoring: MetricAlerting,
    /// Ids of downward anomalies, whose resolution is not reported either.
    suppressed: BTreeSet<String>,
    pending: Vec<PendingResolve>,
}

/// Maps keyed by (service, template id) as lists: JSON keys must be strings.
mod keyed {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    type Keyed<V> = BTreeMap<(Arc<str>, i64), V>;

    pub fn serialize<V: Serialize, S: Serializer>(
        map: &Keyed<V>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(map.iter())
    }

    pub fn deserialize<'de, V: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Keyed<V>, D::Error> {
        let list: Vec<((Arc<str>, i64), V)> = Vec::deserialize(deserializer)?;
        Ok(list.into_iter().collect())
    }
}

/// Windows by start, each a map keyed by (service, template id), as lists.
mod keyed_windows {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    type Windows<V> = BTreeMap<i64, BTreeMap<(Arc<str>, i64), V>>;

    pub fn serialize<V: Serialize, S: Serializer>(
        windows: &Windows<V>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            windows
                .iter()
                .map(|(start, map)| (start, map.iter().collect::<Vec<_>>())),
        )
    }

    pub fn deserialize<'de, V: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Windows<V>, D::Error> {
        type Entries<V> = Vec<((Arc<str>, i64), V)>;
        let list: Vec<(i64, Entries<V>)> = Vec::deserialize(deserializer)?;
        Ok(list
            .into_iter()
            .map(|(start, entries)| (start, entries.into_iter().collect()))
            .collect())
    }
}

/// [`Snapshot`] as written: the window state borrowed, not copied.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    miner: MinerSnapshot,
    windows: &'a WindowState,
}

#[derive(Deserialize)]
struct Snapshot {
    miner: MinerSnapshot,
    windows: WindowState,
}

/// Why the rows could not be processed.
#[derive(Debug, thiserror::Error)]
pub enum LogOperatorError {
    /// A column is missing or of the wrong type.
    #[error(transparent)]
    Schema(#[from] SchemaMismatch),
    /// Building a derived batch failed.
    #[error("building derived series: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

impl LogOperator {
    /// Fresh state.
    pub fn new(settings: LogSettings) -> Self {
        let scoring = MetricAlerting::new(settings.scorer, settings.limits, settings.rules());
        Self {
            miner: TemplateMiner::new(settings.miner.clone()),
            state: WindowState {
                open: BTreeMap::new(),
                clock: EventClock::default(),
                late_lines: 0,
                active: BTreeMap::new(),
                scoring,
                suppressed: BTreeSet::new(),
                pending: Vec::new(),
            },
            settings,
        }
    }

    /// State continuing from [`snapshot`](Self::snapshot).
    pub fn restore(snapshot: &[u8], settings: LogSettings) -> Result<Self, SnapshotError> {
        let Snapshot { miner, mut windows } = snapshot::decode(snapshot)?;
        windows.scoring =
            windows
                .scoring
                .reconfigured(settings.scorer, settings.limits, settings.rules());
        Ok(Self {
            miner: TemplateMiner::restore(settings.miner.clone(), miner),
            state: windows,
            settings,
        })
    }

    /// The miner (for the template catalogue).
    pub fn miner(&self) -> &TemplateMiner {
        &self.miner
    }

    /// Lines that arrived behind the watermark so far.
    pub fn late_lines(&self) -> u64 {
        self.state.late_lines
    }

    /// Mines a batch of table `logs` in row order: templates, windows and alerts.
    pub fn mine(
        &mut self,
        batch: &RecordBatch,
        topic: &str,
        partition: i32,
    ) -> Result<LogBatchOutput, LogOperatorError> {
        let ts = batch
            .column_by_name("ts")
            .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
            .ok_or(SchemaMismatch("ts"))?;
        let service = string_column(batch, "service")?;
        let level = string_column(batch, "level")?;
        let message = string_column(batch, "message")?;

        let rows = batch.num_rows();
        let mut ids = Int64Builder::with_capacity(rows);
        let mut texts = StringBuilder::with_capacity(rows, rows * 48);
        let mut params = ListBuilder::new(StringBuilder::new());
        // Per touched template: (changed, created) by this batch.
        let mut touched: BTreeMap<(Arc<str>, i64), (bool, bool)> = BTreeMap::new();
        let mut alerts = Vec::new();
        let mut values = Vec::new();
        let window = self.settings.window_ms.max(1);

        // Service names shared by the keys of this batch (one allocation each).
        let mut names: HashMap<&str, Arc<str>> = HashMap::new();
        for row in 0..rows {
            let (svc, text, t) = (service.value(row), message.value(row), ts.value(row));
            let name = names.entry(svc).or_insert_with(|| Arc::from(svc)).clone();
            values.clear();
            let (line, template) = self.miner.parse_line(svc, text, t, &mut values);
            let id = line.template_id as i64;
            match template {
                Some(template) => {
                    texts.append_value(template.text());
                    for v in &values {
                        params.values().append_value(v);
                    }
                    params.append(true);
                }
                None => {
                    texts.append_null();
                    params.append(false);
                }
            }
            ids.append_value(id);
            let flags = touched.entry((name.clone(), id)).or_default();
            flags.0 |= line.created || line.generalised;
            flags.1 |= line.created;

            let error = is_error_level(level.value(row));
            let start = t.div_euclid(window) * window;
            let watermark = self.watermark();
            if watermark.is_some_and(|w| start + window <= w) {
                self.state.late_lines += 1;
            } else {
                let counts = self
                    .state
                    .open
                    .entry(start)
                    .or_default()
                    .entry((name, id))
                    .or_default();
                counts.lines += 1;
                counts.error_lines += u64::from(error);
                counts.first_seen |= line.created;
            }
            self.state.clock.saw(t);

            if line.created && error && self.settings.alert_new_error_templates {
                let text = self.template_text(svc, id);
                let record = new_error_template_alert(
                    svc,
                    id,
                    &text,
                    t,
                    Window {
                        start,
                        end: start + window,
                    },
                    row,
                );
                self.state.pending.push(PendingResolve {
                    window_start: start,
                    record: record.clone(),
                });
                alerts.push(record);
            }
        }

        let last_row = rows.saturating_sub(1);
        let windows = self.fire(last_row, topic, partition, &mut alerts)?;

        let templates = touched
            .into_iter()
            .filter_map(|((svc, id), (changed, created))| {
                let t = self.miner.template(&svc, id as u64)?;
                Some(TemplateState {
                    template: t.text().to_owned(),
                    count: t.count,
                    first_seen_ms: t.first_seen_ms,
                    last_seen_ms: t.last_seen_ms,
                    service: svc.to_string(),
                    template_id: id,
                    changed,
                    created,
                })
            })
            .collect();
        Ok(LogBatchOutput {
            template_id: Arc::new(ids.finish()),
            template: Arc::new(texts.finish()),
            params: Arc::new(params.finish()),
            windows,
            alerts,
            templates,
        })
    }

    /// Raises the watermark to `watermark_ms` (never lowers it) and closes the
    /// windows it passes, as if a line that late had arrived; alerts refer to row 0.
    pub fn raise_watermark(
        &mut self,
        watermark_ms: i64,
        topic: &str,
        partition: i32,
    ) -> Result<(Vec<TemplateWindow>, Vec<AlertRecord>), LogOperatorError> {
        if !self
            .state
            .clock
            .raise(watermark_ms, self.settings.out_of_orderness_ms)
        {
            return Ok((Vec::new(), Vec::new()));
        }
        let mut alerts = Vec::new();
        let windows = self.fire(0, topic, partition, &mut alerts)?;
        Ok((windows, alerts))
    }

    fn template_text(&self, service: &str, id: i64) -> String {
        self.miner
            .template(service, id as u64)
            .map(|t| t.text().to_owned())
            .unwrap_or_default()
    }

    /// Closes the windows the watermark has passed: their rows, their scores and
    /// the alerts those raise.
    fn fire(
        &mut self,
        last_row: usize,
        topic: &str,
        partition: i32,
        alerts: &mut Vec<AlertRecord>,
    ) -> Result<Vec<TemplateWindow>, LogOperatorError> {
        let Some(watermark) = self.watermark() else {
            return Ok(Vec::new());
        };
        let window = self.settings.window_ms.max(1);
        let mut closed = Vec::new();
        let mut points = Vec::new();
        while let Some(entry) = self.state.open.first_entry() {
            let start = *entry.key();
            if start + window > watermark {
                break;
            }
            let counts = entry.remove();
            let end = start + window;
            for ((svc, id), c) in &counts {
                self.state.active.insert((svc.clone(), *id), start);
                closed.push(TemplateWindow {
                    service: svc.to_string(),
                    template_id: *id,
                    window_start: start,
                    window_end: end,
                    lines: c.lines,
                    error_lines: c.error_lines,
                    first_seen: c.first_seen,
                });
            }
            // Lines per active template (zero when it was quiet in this window).
            let horizon = start - self.settings.active_windows * window;
            self.state.active.retain(|_, last| *last > horizon);
            for (svc, id) in self.state.active.keys() {
                let lines = counts.get(&(svc.clone(), *id)).map_or(0, |c| c.lines);
                points.push(DerivedPoint {
                    ts_ms: start,
                    name: TEMPLATE_LINES.into(),
                    labels: vec![
                        ("service".into(), svc.to_string()),
                        ("template_id".into(), id.to_string()),
                    ],
                    value: lines as f64,
                    source_row: last_row as i64,
                });
            }
            // Error ratio per service with lines in the window.
            let mut per_service: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
            for ((svc, _), c) in &counts {
                let e = per_service.entry(svc).or_default();
                e.0 += c.lines;
                e.1 += c.error_lines;
            }
            for (svc, (lines, errors)) in per_service {
                points.push(DerivedPoint {
                    ts_ms: start,
                    name: ERROR_RATIO.into(),
                    labels: vec![("service".into(), svc.to_owned())],
                    value: errors as f64 / lines.max(1) as f64,
                    source_row: last_row as i64,
                });
            }
            // New-error-template alerts of this window resolve with it.
            let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.state.pending)
                .into_iter()
                .partition(|p| p.window_start <= start);
            self.state.pending = keep;
            for p in due {
                let mut record = p.record;
                record.status = AlertStatus::Resolved;
                record.at = end;
                record.ends_at = Some(end);
                record.window_end = end;
                record.summary = format!("{} (window closed)", record.summary);
                record.row = last_row;
                alerts.push(record);
            }
        }
        if !points.is_empty() {
            let batch = gauge_batch(&points, topic, partition)?;
            let mut scored = Vec::new();
            self.state.scoring.score(&batch, &mut scored)?;
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
        Ok(closed)
    }
}

/// The alert for a template first seen on an error-level line at `ts`, in `window`.
/// Its id names the window, not the line: a service's logs spread over partitions
/// (keyed by trace id, say) make each partition's miner see the template first, and
/// those that see it in the same window raise the same alert id, which alert
/// routers deduplicate like any re-sent alert.
fn new_error_template_alert(
    service: &str,
    template_id: i64,
    template: &str,
    ts: i64,
    window: Window,
    row: usize,
) -> AlertRecord {
    let rule = "log_new_error_template";
    let series = format!("{service}/{template_id}");
    AlertRecord {
        id: alert_id(rule, &series, window.start),
        rule: rule.into(),
        kind: "log_pattern".into(),
        severity: "ticket".into(),
        status: AlertStatus::Firing,
        at: ts,
        starts_at: ts,
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
        window_start: window.start,
        window_end: window.end,
        evidence: PointScore {
            score: 1.0,
            baseline: 0.0,
            deviation: 0.0,
            detector: Detector::Warmup,
        },
        row,
    }
}

fn string_column<'a>(
    batch: &'a RecordBatch,
    name: &'static str,
) -> Result<&'a arrow::array::StringArray, SchemaMismatch> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .filter(|c| c.null_count() == 0)
        .ok_or(SchemaMismatch(name))
}

impl From<LogOperatorError> for OperatorError {
    fn from(error: LogOperatorError) -> Self {
        match error {
            LogOperatorError::Schema(e) => OperatorError::Schema(e),
            LogOperatorError::Arrow(e) => OperatorError::Arrow(e),
        }
    }
}

impl Operator for LogOperator {
    fn name(&self) -> &'static str {
        "logs"
    }

    fn tables(&self) -> Vec<Table> {
        vec![Table::Alerts, Table::LogTemplates, Table::LogWindows]
    }

    fn process(
        &mut self,
        context: &PartitionContext,
        rows: &RecordBatch,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        let late_before = self.late_lines();
        let refused_before = self.state.scoring.counts().refused_by_limit;
        let mined = self.mine(rows, &context.topic, context.partition)?;
        out.late += self.late_lines().saturating_sub(late_before);
        out.over_limit += self
            .state
            .scoring
            .counts()
            .refused_by_limit
            .saturating_sub(refused_before);
        out.rows = Some(with_template_columns(rows, &mined)?);
        push_windows(context, &mined.windows, out)?;
        if mined.templates.iter().any(|t| t.changed) {
            let batch = log_templates_batch(&mined.templates, &context.topic, context.partition)?;
            out.tables.push((Table::LogTemplates, batch));
        }
        out.alerts.extend(mined.alerts);
        out.published.push(mined.templates);
        Ok(())
    }

    fn advance_watermark(
        &mut self,
        context: &PartitionContext,
        watermark_ms: i64,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        let (windows, alerts) =
            self.raise_watermark(watermark_ms, &context.topic, context.partition)?;
        push_windows(context, &windows, out)?;
        out.alerts.extend(alerts);
        Ok(())
    }

    /// The partition's largest event time minus the out-of-orderness bound, or the
    /// watermark the runtime raised, whichever is higher; `None` before any line.
    fn watermark(&self) -> Option<i64> {
        self.state
            .clock
            .watermark(self.settings.out_of_orderness_ms)
    }

    /// The state, encoded (see [`crate::snapshot`]).
    fn snapshot(&self) -> Result<Vec<u8>, OperatorError> {
        Ok(snapshot::encode(&SnapshotRef {
            miner: self.miner.snapshot(),
            windows: &self.state,
        })?)
    }
}

/// Adds the `log_windows` rows of `windows`, if any.
fn push_windows(
    context: &PartitionContext,
    windows: &[TemplateWindow],
    out: &mut Emitted,
) -> Result<(), OperatorError> {
    if !windows.is_empty() {
        let batch = log_windows_batch(windows, &context.topic, context.partition)?;
        out.tables.push((Table::LogWindows, batch));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{new_null_array, Int32Builder, TimestampMillisecondBuilder};
    use arrow::datatypes::Int64Type;

    use crate::schema::Table;

    /// A whole minute.
    const T0: i64 = 1_700_000_040_000;

    /// A batch of table `logs` from `(ts, service, level, message)` rows.
    fn logs(rows: &[(i64, &str, &str, String)]) -> RecordBatch {
        let schema = Table::Logs.schema();
        let mut ts = TimestampMillisecondBuilder::new().with_timezone("UTC");
        let (mut service, mut level, mut message) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let (mut topic, mut partition, mut offset, mut index) = (
            StringBuilder::new(),
            Int32Builder::new(),
            Int64Builder::new(),
            Int32Builder::new(),
        );
        for (i, (t, s, l, m)) in rows.iter().enumerate() {
            ts.append_value(*t);
            service.append_value(s);
            level.append_value(l);
            message.append_value(m);
            topic.append_value("telemetry.logs");
            partition.append_value(0);
            offset.append_value(i as i64);
            index.append_value(0);
        }
        let n = rows.len();
        let null =
            |name: &str| new_null_array(schema.field_with_name(name).unwrap().data_type(), n);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(ts.finish()),
            Arc::new(service.finish()),
            Arc::new(level.finish()),
            Arc::new(message.finish()),
            null("trace_id"),
            null("host"),
            null("attributes"),
            null("extra"),
            null("template_id"),
            null("template"),
            null("params"),
            Arc::new(topic.finish()),
            Arc::new(partition.finish()),
            Arc::new(offset.finish()),
            Arc::new(index.finish()),
        ];
        RecordBatch::try_new(schema, columns).unwrap()
    }

    /// `minutes` of steady traffic (10 lines a minute of two templates) for `api`,
    /// then `burst` extra lines of a third template in the last minute.
    fn traffic(minutes: i64, burst: usize) -> Vec<(i64, &'static str, &'static str, String)> {
        let mut rows = Vec::new();
        for m in 0..minutes {
            for k in 0..10 {
                let t = T0 + m * 60_000 + k * 5_000;
                rows.push((
                    t,
                    "api",
                    "info",
                    format!("request {k} served in {} ms", 10 + k),
                ));
                rows.push((
                    t + 1,
                    "api",
                    "info",
                    format!("cache hit ratio {k}.5 for shard {m}"),
                ));
            }
            rows.push((
                T0 + m * 60_000 + 100,
                "api",
                "warn",
                format!("retrying upstream call {m} after timeout"),
            ));
        }
        let last = T0 + (minutes - 1) * 60_000;
        for k in 0..burst {
            rows.push((
                last + 200 + k as i64,
                "api",
                "warn",
                format!("retrying upstream call {k} after timeout"),
            ));
        }
        rows
    }

    /// A line at minute 92 whose watermark closes every window before minute 91.
    fn closing_line() -> (i64, &'static str, &'static str, String) {
        (
            T0 + 92 * 60_000,
            "api",
            "info",
            "request 0 served in 10 ms".into(),
        )
    }

    #[test]
    fn through_the_operator_interface_an_idle_partition_closes_its_windows_when_raised() {
        let mut op = LogOperator::new(LogSettings::default());
        let context = PartitionContext {
            topic: "telemetry.logs".into(),
            partition: 2,
        };
        let rows = logs(&traffic(3, 0));
        let mut out = Emitted::default();
        Operator::process(&mut op, &context, &rows, &mut out).unwrap();
        // The input rows come back with their template columns filled.
        let annotated = out.rows.as_ref().expect("annotated rows");
        assert_eq!(annotated.num_rows(), rows.num_rows());
        assert_eq!(
            annotated
                .column_by_name("template_id")
                .unwrap()
                .null_count(),
            0
        );
        assert!(out.tables.iter().any(|(t, _)| *t == Table::LogTemplates));
        let closed_before: usize = windows_rows(&out);
        // Minute 2's window is still open: the watermark is 30 s behind its last line.
        let last_line = T0 + 2 * 60_000 + 45_001;
        assert_eq!(Operator::watermark(&op), Some(last_line - 30_000));

        let mut raised = Emitted::default();
        Operator::advance_watermark(&mut op, &context, T0 + 3 * 60_000, &mut raised).unwrap();
        assert!(raised.rows.is_none());
        let windows = raised
            .tables
            .iter()
            .find(|(t, _)| *t == Table::LogWindows)
            .map(|(_, b)| b)
            .expect("the last window closes");
        let start = windows
            .column_by_name("window_start")
            .unwrap()
            .as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        assert!(start.values().iter().all(|s| *s == T0 + 2 * 60_000));
        assert_eq!(
            windows.num_rows(),
            3,
            "three templates had lines in minute 2"
        );
        assert!(closed_before > 0);
        // A line for minute 2 is now late, and the raise survives a restore.
        let mut late = Emitted::default();
        let line = logs(&[(
            T0 + 2 * 60_000 + 50_000,
            "api",
            "info",
            "request 1 served in 11 ms".into(),
        )]);
        Operator::process(&mut op, &context, &line, &mut late).unwrap();
        assert_eq!(late.late, 1);
        let restored =
            LogOperator::restore(&op.snapshot().unwrap(), LogSettings::default()).unwrap();
        assert_eq!(Operator::watermark(&restored), Some(T0 + 3 * 60_000));
    }

    #[test]
    fn snapshots_from_before_the_shared_clock_restore_their_watermark() {
        let mut op = LogOperator::new(LogSettings::default());
        op.mine(&logs(&traffic(3, 0)), "telemetry.logs", 0).unwrap();
        // Snapshots of that time were JSON.
        let snapshot = serde_json::to_string(&SnapshotRef {
            miner: op.miner.snapshot(),
            windows: &op.state,
        })
        .unwrap();
        assert!(snapshot.contains("\"max_event_ms\""));
        let old = snapshot.replace("\"max_event_ms\"", "\"max_ts\"");
        let restored = LogOperator::restore(old.as_bytes(), LogSettings::default()).unwrap();
        assert_eq!(restored.watermark(), op.watermark());
        assert!(restored.watermark().is_some());
    }

    fn windows_rows(out: &Emitted) -> usize {
        out.tables
            .iter()
            .filter(|(t, _)| *t == Table::LogWindows)
            .map(|(_, b)| b.num_rows())
            .sum()
    }

    #[test]
    fn partitions_seeing_a_new_error_template_in_the_same_window_raise_one_alert_id() {
        let line = |t: i64, user: u32| {
            logs(&[(
                t,
                "db",
                "error",
                format!("deadlock detected for user {user}"),
            )])
        };
        let first_id = |batch: &RecordBatch| {
            let mut op = LogOperator::new(LogSettings::default());
            let out = op.mine(batch, "telemetry.logs", 0).unwrap();
            assert_eq!(out.alerts.len(), 1);
            out.alerts[0].id.clone()
        };
        // Seconds apart in the same minute, in two partitions' operators: one id.
        let a = first_id(&line(T0 + 5_000, 1));
        let b = first_id(&line(T0 + 41_000, 2));
        assert_eq!(a, b);
        // In the next minute, another.
        assert_ne!(a, first_id(&line(T0 + 65_000, 3)));
    }

    #[test]
    fn rows_get_template_columns() {
        let mut op = LogOperator::new(LogSettings::default());
        let batch = logs(&[
            (T0, "api", "info", "user 42 logged in from 10.0.0.1".into()),
            (
                T0 + 1,
                "api",
                "info",
                "user 43 logged in from 10.0.0.2".into(),
            ),
            (T0 + 2, "db", "info", "checkpoint complete".into()),
        ]);
        let out = op.mine(&batch, "telemetry.logs", 0).unwrap();
        let ids = out.template_id.as_primitive::<Int64Type>();
        assert_eq!(ids.value(0), ids.value(1));
        assert_ne!(ids.value(0), ids.value(2));
        let texts = out.template.as_string::<i32>();
        assert_eq!(texts.value(0), "user <*> logged in from <*>");
        assert_eq!(texts.value(2), "checkpoint complete");
        let params = out.params.as_list::<i32>();
        let second = params.value(1);
        let second = second.as_string::<i32>();
        assert_eq!((second.value(0), second.value(1)), ("43", "10.0.0.2"));
        assert_eq!(params.value(2).len(), 0);
        assert_eq!(out.templates.len(), 2);
        assert!(out.templates.iter().all(|t| t.changed && t.created));
        let again = op
            .mine(
                &logs(&[(T0 + 3, "db", "info", "checkpoint complete".into())]),
                "telemetry.logs",
                0,
            )
            .unwrap();
        assert!(!again.templates[0].changed && !again.templates[0].created);
        assert_eq!(again.templates[0].count, 2);
    }

    #[test]
    fn windows_close_behind_the_watermark_and_late_lines_are_counted() {
        let mut op = LogOperator::new(LogSettings::default());
        let line = |t: i64, level: &'static str| (t, "api", level, "disk sda is full".to_string());
        // Minute 0: 3 lines (1 error); then a line at 1:40 closes minute 0
        // (watermark 1:10 >= 1:00); then a late line for minute 0.
        let out = op
            .mine(
                &logs(&[
                    line(T0, "info"),
                    line(T0 + 10_000, "error"),
                    line(T0 + 50_000, "info"),
                    line(T0 + 100_000, "info"),
                    line(T0 + 20_000, "info"),
                ]),
                "telemetry.logs",
                0,
            )
            .unwrap();
        assert_eq!(out.windows.len(), 1);
        let w = &out.windows[0];
        assert_eq!(
            (w.window_start, w.window_end),
            (T0 - T0 % 60_000, T0 - T0 % 60_000 + 60_000)
        );
        assert_eq!((w.lines, w.error_lines, w.first_seen), (3, 1, true));
        assert_eq!(op.late_lines(), 1);
    }

    #[test]
    fn a_new_error_template_alerts_and_resolves_with_its_window() {
        let mut op = LogOperator::new(LogSettings::default());
        let out = op
            .mine(
                &logs(&[
                    (T0, "api", "error", "payment provider returned 502".into()),
                    (
                        T0 + 1,
                        "api",
                        "error",
                        "payment provider returned 503".into(),
                    ),
                    (T0 + 5_000, "api", "info", "all good".into()),
                ]),
                "telemetry.logs",
                0,
            )
            .unwrap();
        let fired: Vec<_> = out
            .alerts
            .iter()
            .filter(|a| a.rule == "log_new_error_template")
            .collect();
        assert_eq!(
            fired.len(),
            1,
            "one template, one alert; info lines never alert"
        );
        assert_eq!(fired[0].status, AlertStatus::Firing);
        assert_eq!(fired[0].kind, "log_pattern");
        assert_eq!(fired[0].at, T0);
        let out = op
            .mine(
                &logs(&[(T0 + 200_000, "api", "info", "all good".into())]),
                "telemetry.logs",
                0,
            )
            .unwrap();
        let resolved: Vec<_> = out
            .alerts
            .iter()
            .filter(|a| a.rule == "log_new_error_template")
            .collect();
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].status, AlertStatus::Resolved);
        assert_eq!(resolved[0].id, fired[0].id);
    }

    #[test]
    fn a_burst_of_a_template_alerts_but_a_quiet_one_does_not() {
        let mut op = LogOperator::new(LogSettings::default());
        // 90 steady minutes, a burst of 300 retries in minute 90, then a minute to close it.
        let mut rows = traffic(91, 300);
        rows.push(closing_line());
        let out = op.mine(&logs(&rows), "telemetry.logs", 0).unwrap();
        let bursts: Vec<_> = out
            .alerts
            .iter()
            .filter(|a| a.rule == "log_template_burst" && a.status == AlertStatus::Firing)
            .collect();
        assert_eq!(bursts.len(), 1, "{:#?}", out.alerts);
        assert_eq!(bursts[0].kind, "log_pattern");
        assert!(bursts[0].value > 300.0);
        assert_eq!(bursts[0].starts_at, T0 - T0 % 60_000 + 90 * 60_000);

        // The same traffic without the burst raises nothing.
        let mut quiet = LogOperator::new(LogSettings::default());
        let mut rows = traffic(91, 0);
        rows.push(closing_line());
        let out = quiet.mine(&logs(&rows), "telemetry.logs", 0).unwrap();
        assert!(
            out.alerts.iter().all(|a| a.rule != "log_template_burst"),
            "{:#?}",
            out.alerts
        );
    }

    #[test]
    fn an_error_ratio_spike_pages() {
        let mut op = LogOperator::new(LogSettings::default());
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
        let out = op.mine(&logs(&rows), "telemetry.logs", 0).unwrap();
        let pages: Vec<_> = out
            .alerts
            .iter()
            .filter(|a| a.rule == "log_error_rate" && a.status == AlertStatus::Firing)
            .collect();
        assert_eq!(pages.len(), 1, "{:#?}", out.alerts);
        assert_eq!(pages[0].severity, "page");
        assert_eq!(pages[0].starts_at, minute);
        assert!(pages[0].value > 0.9);
        assert!(pages[0].labels.contains(&("service".into(), "api".into())));
    }

    #[test]
    fn a_restored_operator_continues_exactly() {
        let rows = traffic(60, 200);
        let (first, second) = rows.split_at(rows.len() / 2);
        let mut whole = LogOperator::new(LogSettings::default());
        whole.mine(&logs(first), "telemetry.logs", 0).unwrap();
        let snapshot = whole.snapshot().unwrap();
        let mut restored = LogOperator::restore(&snapshot, LogSettings::default()).unwrap();
        assert_eq!(restored.snapshot().unwrap(), snapshot);
        let a = whole.mine(&logs(second), "telemetry.logs", 0).unwrap();
        let b = restored.mine(&logs(second), "telemetry.logs", 0).unwrap();
        assert_eq!(a.template_id.to_data(), b.template_id.to_data());
        assert_eq!(a.template.to_data(), b.template.to_data());
        assert_eq!(a.windows, b.windows);
        assert_eq!(
            serde_json::to_string(&a.alerts).unwrap(),
            serde_json::to_string(&b.alerts).unwrap()
        );
        assert_eq!(whole.snapshot().unwrap(), restored.snapshot().unwrap());
    }
}
