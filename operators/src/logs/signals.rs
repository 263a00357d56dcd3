//! The log operator of one partition, the first of the two log stages: templates
//! per line and per-window counts per service and template, sent to the combining
//! stage ([`super::combine`]).
//!
//! Owns, for the logs of one source partition, in row (offset) order:
//! - the [`TemplateMiner`]: every line gets a template id, its template text and its
//!   parameters (the new columns of table `logs`); template versions go to table
//!   `log_templates`;
//! - tumbling event-time windows per (service, template): lines, error-level lines
//!   and the first error-level line's time. The watermark is the partition's largest
//!   event time minus the out-of-orderness bound (or what the runtime raised it to);
//!   a line behind it is late (counted, still archived with its template). Each
//!   window the watermark passes is sent whole, once, as a [`LogPartial`] on the log
//!   exchange: a service's lines may be spread over every partition (keyed by host
//!   or trace id), so whether a template is new to the service, and how many lines
//!   it had, is decided where every partition's counts meet.
//!
//! Everything is a function of the rows in order: the same rows give the same ids,
//! windows and records; the state round-trips through [`Operator::snapshot`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Builder, ListBuilder, RecordBatch, StringBuilder,
};
use arrow::datatypes::TimestampMillisecondType;
use serde::{Deserialize, Serialize};

use super::miner::{MinerConfig, MinerSnapshot, TemplateMiner};
use super::partial::{LogPartial, TemplateCount};
use super::tables::{log_templates_batch, with_template_columns};
use crate::alert::{AlertRule, FiringPolicy};
use crate::anomaly::operator::{AnomalyLimits, SchemaMismatch};
use crate::anomaly::ScorerConfig;
use crate::minutes::take_final;
use crate::operator::{
    Emitted, Operator, OperatorError, Outbound, OutboundMessage, PartitionContext,
};
use crate::schema::Table;
use crate::snapshot::{self, SnapshotError};
use crate::watermark::EventClock;

/// Metric name of lines per template per window.
pub const TEMPLATE_LINES: &str = "log_template_lines";
/// Metric name of the error-level share of a service's lines per window.
pub const ERROR_RATIO: &str = "log_error_ratio";

/// How the two log stages run.
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
    /// State limits of the scoring (and of the combining stage's catalogue).
    pub limits: AnomalyLimits,
    /// When burst and error-rate alerts fire and resolve.
    pub policy: FiringPolicy,
    /// Windows a template stays scored (with zero counts) after its last line.
    pub active_windows: i64,
    /// Whether new templates on error-level lines alert.
    pub alert_new_error_templates: bool,
    /// How long after a service's first window its templates are learnt silently,
    /// ms: what a service logs when cara starts watching it is its vocabulary, not
    /// news.
    pub learn_ms: i64,
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
            learn_ms: 300_000,
        }
    }
}

impl LogSettings {
    /// The window length, at least 1 ms.
    pub(crate) fn window(&self) -> i64 {
        self.window_ms.max(1)
    }

    /// The rules over the windowed series the combining stage scores.
    pub(crate) fn rules(&self) -> Vec<AlertRule> {
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
    /// The exchange records of the windows the batch closed, in window order.
    pub partials: Vec<LogPartial>,
    /// Templates the batch touched, sorted by service and id.
    pub templates: Vec<TemplateState>,
    /// The template versions the batch made, one per line that created or
    /// generalised a template, in row order: each as it stood after that line
    /// (`last_seen_ms` is the line's time). They depend on the lines alone, not on
    /// how the partition's records were cut into batches.
    pub versions: Vec<TemplateState>,
}

/// One open window's counts of one template.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Counts {
    lines: u64,
    error_lines: u64,
    /// The partition's miner created the template in this window (kept for the
    /// snapshot layout: whether it is new to the service is the combiner's call).
    first_seen: bool,
    /// Event time of the first error-level line.
    #[serde(default)]
    first_error_ms: Option<i64>,
}

/// The log operator's state for one partition.
#[derive(Debug)]
pub struct LogOperator {
    settings: LogSettings,
    miner: TemplateMiner,
    state: WindowState,
}

/// Everything but the miner, serialised as is. (Snapshots written before the log
/// exchange also hold the scoring state that moved to the combining stage; it is
/// ignored.)
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
    /// Windows starting before this were sent.
    #[serde(default)]
    sent_through: Option<i64>,
}

/// Windows by start, each a map keyed by (service, template id), as lists (JSON
/// keys must be strings).
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
        Self {
            miner: TemplateMiner::new(settings.miner.clone()),
            state: WindowState {
                open: BTreeMap::new(),
                clock: EventClock::default(),
                late_lines: 0,
                sent_through: None,
            },
            settings,
        }
    }

    /// State continuing from [`Operator::snapshot`].
    pub fn restore(snapshot: &[u8], settings: LogSettings) -> Result<Self, SnapshotError> {
        let Snapshot { miner, windows } = snapshot::decode(snapshot)?;
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

    /// Mines a batch of table `logs` in row order: templates, windows, and the
    /// records of the windows it closes.
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
        let mut values = Vec::new();
        let mut versions = Vec::new();
        let window = self.settings.window();

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
            if line.created || line.generalised {
                if let Some(template) = self.miner.template(svc, line.template_id) {
                    versions.push(TemplateState {
                        template: template.text().to_owned(),
                        count: template.count,
                        first_seen_ms: template.first_seen_ms,
                        last_seen_ms: t,
                        service: svc.to_owned(),
                        template_id: id,
                        changed: true,
                        created: line.created,
                    });
                }
            }

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
                counts.first_seen |= line.created;
                if is_error_level(level.value(row)) {
                    counts.error_lines += 1;
                    counts.first_error_ms = Some(counts.first_error_ms.map_or(t, |f| f.min(t)));
                }
            }
            self.state.clock.saw(t);
        }

        let partials = self.close(topic, partition);
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
            partials,
            templates,
            versions,
        })
    }

    /// Raises the watermark to `watermark_ms` (never lowers it) and returns the
    /// records of the windows it closes, as if a line that late had arrived.
    pub fn raise_watermark(
        &mut self,
        watermark_ms: i64,
        topic: &str,
        partition: i32,
    ) -> Vec<LogPartial> {
        if !self
            .state
            .clock
            .raise(watermark_ms, self.settings.out_of_orderness_ms)
        {
            return Vec::new();
        }
        self.close(topic, partition)
    }

    /// The records of the windows the watermark has passed and that were not sent
    /// yet: one per window with lines, the last saying how far the partition is
    /// final; a progress record alone when the mark moved without a window.
    fn close(&mut self, topic: &str, partition: i32) -> Vec<LogPartial> {
        let window = self.settings.window();
        let Some(through) = self.watermark().map(|w| w.div_euclid(window) * window) else {
            return Vec::new();
        };
        let Some(closed) = take_final(&mut self.state.open, &mut self.state.sent_through, through)
        else {
            return Vec::new();
        };
        let record = |window_start: Option<i64>, through_ms: i64, templates| LogPartial {
            source_topic: topic.to_owned(),
            source_partition: partition,
            window_ms: window,
            through_ms,
            window_start,
            templates,
        };
        let count = closed.len();
        let mut records = Vec::with_capacity(count.max(1));
        for (i, (start, counts)) in closed.into_iter().enumerate() {
            let templates = counts
                .into_iter()
                .map(|((svc, id), c)| TemplateCount {
                    template: self
                        .miner
                        .template(&svc, id as u64)
                        .map(|t| t.text().to_owned())
                        .unwrap_or_default(),
                    service: svc.to_string(),
                    template_id: id,
                    lines: c.lines,
                    error_lines: c.error_lines,
                    first_error_ms: c.first_error_ms,
                })
                .collect();
            let through_ms = if i + 1 == count {
                through
            } else {
                start + window
            };
            records.push(record(Some(start), through_ms, templates));
        }
        if count == 0 {
            records.push(record(None, through, Vec::new()));
        }
        records
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
        vec![Table::LogTemplates]
    }

    fn process(
        &mut self,
        context: &PartitionContext,
        rows: &RecordBatch,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        let late_before = self.late_lines();
        let mined = self.mine(rows, &context.topic, context.partition)?;
        out.late += self.late_lines().saturating_sub(late_before);
        out.rows = Some(with_template_columns(rows, &mined)?);
        if !mined.versions.is_empty() {
            let batch = log_templates_batch(&mined.versions, &context.topic, context.partition)?;
            out.tables.push((Table::LogTemplates, batch));
        }
        send(&mined.partials, out);
        out.published.push(mined.templates);
        Ok(())
    }

    fn advance_watermark(
        &mut self,
        context: &PartitionContext,
        watermark_ms: i64,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        let partials = self.raise_watermark(watermark_ms, &context.topic, context.partition);
        send(&partials, out);
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

/// Puts `partials` on the log exchange.
fn send(partials: &[LogPartial], out: &mut Emitted) {
    out.messages
        .extend(partials.iter().map(|partial| OutboundMessage {
            topic: Outbound::LogPartials,
            // One partition: every source's records meet in one combiner.
            key: String::new(),
            payload: partial.to_json(),
        }));
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arrow::array::{new_null_array, Int32Builder, TimestampMillisecondBuilder};
    use arrow::datatypes::Int64Type;

    use crate::schema::Table;

    /// A whole minute.
    pub const T0: i64 = 1_700_000_040_000;

    /// A log line: (ts, service, level, message).
    pub type TestLine = (i64, &'static str, &'static str, String);

    /// A batch of table `logs` from `(ts, service, level, message)` rows.
    pub fn logs(rows: &[(i64, &str, &str, String)]) -> RecordBatch {
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
            null("level_text"),
            null("severity_number"),
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
    pub fn traffic(minutes: i64, burst: usize) -> Vec<TestLine> {
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
    pub fn closing_line() -> TestLine {
        (
            T0 + 92 * 60_000,
            "api",
            "info",
            "request 0 served in 10 ms".into(),
        )
    }

    /// The records of `out` on the log exchange.
    pub fn sent(out: &Emitted) -> Vec<LogPartial> {
        out.messages
            .iter()
            .map(|m| {
                assert_eq!(m.topic, Outbound::LogPartials);
                serde_json::from_slice(&m.payload).unwrap()
            })
            .collect()
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
        assert!(out.alerts.is_empty(), "alerts are the combiner's");
        // Minutes 0 and 1 are sent, one record each, the last saying minute 2 is open.
        let before = sent(&out);
        let starts: Vec<_> = before.iter().map(|p| p.window_start).collect();
        assert_eq!(starts, [Some(T0), Some(T0 + 60_000)]);
        assert_eq!(
            before.iter().map(|p| p.through_ms).collect::<Vec<_>>(),
            [T0 + 60_000, T0 + 120_000]
        );
        assert!(before
            .iter()
            .all(|p| p.source_partition == 2 && p.window_ms == 60_000));
        // Minute 2's window is still open: the watermark is 30 s behind its last line.
        let last_line = T0 + 2 * 60_000 + 45_001;
        assert_eq!(Operator::watermark(&op), Some(last_line - 30_000));

        let mut raised = Emitted::default();
        Operator::advance_watermark(&mut op, &context, T0 + 3 * 60_000, &mut raised).unwrap();
        assert!(raised.rows.is_none());
        let closed = sent(&raised);
        assert_eq!(closed.len(), 1, "the last window closes");
        assert_eq!(closed[0].window_start, Some(T0 + 2 * 60_000));
        assert_eq!(closed[0].through_ms, T0 + 3 * 60_000);
        let mut lines: Vec<_> = closed[0]
            .templates
            .iter()
            .map(|t| (t.template.as_str(), t.lines, t.error_lines))
            .collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                ("cache hit ratio <*> for shard <*>", 10, 0),
                ("request <*> served in <*> ms", 10, 0),
                ("retrying upstream call <*> after timeout", 1, 0),
            ]
        );
        // A raise that closes nothing new sends only progress, once.
        let mut again = Emitted::default();
        Operator::advance_watermark(&mut op, &context, T0 + 4 * 60_000, &mut again).unwrap();
        let progress = sent(&again);
        assert_eq!(progress.len(), 1);
        assert_eq!(
            (progress[0].window_start, progress[0].through_ms),
            (None, T0 + 4 * 60_000)
        );
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
        assert!(late.messages.is_empty());
        let restored =
            LogOperator::restore(&op.snapshot().unwrap(), LogSettings::default()).unwrap();
        assert_eq!(Operator::watermark(&restored), Some(T0 + 4 * 60_000));
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

    /// The template versions (`log_templates` rows) of `lines` mined in batches of
    /// `batch` lines.
    fn versions_in_batches_of(lines: &[TestLine], batch: usize) -> Vec<String> {
        let mut op = LogOperator::new(LogSettings::default());
        let mut rows = Vec::new();
        for chunk in lines.chunks(batch) {
            let out = op.mine(&logs(chunk), "telemetry.logs", 0).unwrap();
            let table = log_templates_batch(&out.versions, "telemetry.logs", 0).unwrap();
            assert_eq!(table.num_rows(), out.versions.len());
            rows.extend(out.versions.iter().map(|v| format!("{v:?}")));
        }
        rows
    }

    #[test]
    fn template_versions_do_not_depend_on_how_lines_are_batched() {
        let mut lines = traffic(3, 0);
        // A line that generalises the db template, after it was created.
        lines.push((
            T0 + 200_000,
            "db",
            "info",
            "checkpoint complete in 12 ms".into(),
        ));
        lines.push((
            T0 + 200_001,
            "db",
            "info",
            "checkpoint complete in 13 ms".into(),
        ));
        let whole = versions_in_batches_of(&lines, lines.len());
        assert!(whole.len() >= 3, "{whole:#?}");
        // Every version names the time of the line that made it, and its count then.
        assert!(whole
            .iter()
            .any(|r| r.contains("checkpoint complete in <*> ms")));
        for batch in [1, 2, 7] {
            assert_eq!(
                versions_in_batches_of(&lines, batch),
                whole,
                "batches of {batch}"
            );
        }
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
        // Minute 0: 3 lines (errors at 0:10 and 0:05, out of order); then a line at
        // 1:40 closes minute 0 (watermark 1:10 >= 1:00); then a late line for minute 0.
        let out = op
            .mine(
                &logs(&[
                    line(T0, "info"),
                    line(T0 + 10_000, "error"),
                    line(T0 + 5_000, "ERR"),
                    line(T0 + 100_000, "info"),
                    line(T0 + 20_000, "info"),
                ]),
                "telemetry.logs",
                0,
            )
            .unwrap();
        assert_eq!(out.partials.len(), 1);
        let p = &out.partials[0];
        assert_eq!((p.window_start, p.through_ms), (Some(T0), T0 + 60_000));
        assert_eq!(p.templates.len(), 1);
        let t = &p.templates[0];
        assert_eq!(
            (t.lines, t.error_lines, t.first_error_ms),
            (3, 2, Some(T0 + 5_000))
        );
        assert_eq!(t.template, "disk sda is full");
        assert_eq!(op.late_lines(), 1);
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
        assert!(a.partials.len() > 20);
        assert_eq!(a.partials, b.partials);
        assert_eq!(whole.snapshot().unwrap(), restored.snapshot().unwrap());
    }
}
