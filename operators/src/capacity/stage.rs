//! The capacity part of a metric partition's stack (see the module docs of
//! [`crate::capacity`]).
//!
//! Owns the forecast series of one partition: which points belong to which series
//! (by the configured metric and labels, the `service` column counting as label
//! `service`), their buckets, the limits read from metrics, the rows of table
//! `capacity` and the `capacity` alerts. A series' bucket closes when a point of a
//! later bucket of the same series arrives, so what is written does not depend on
//! how the input was batched or when the partition was flushed: a replay or a
//! restart after a crash writes the same rows.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMillisecondBuilder,
};
use serde::{Deserialize, Serialize};

use super::forecaster::{Forecaster, BANK};
use super::{CapacitySettings, Limit};
use crate::alert::{alert_id, AlertRecord, AlertStatus};
use crate::anomaly::{Detector, PointScore};
use crate::columns;
use crate::operator::{
    Emitted, Operator, OperatorError, Outbound, OutboundMessage, PartitionContext,
};
use crate::schema::Table;
use crate::series::series_key;
use crate::snapshot::{self, SnapshotError};

/// The rule (and kind) of the alert raised when a limit is near.
pub const RULE: &str = "capacity";

/// One row of table `capacity` (and one record on `cara.capacity`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapacityRow {
    /// The series: `metric{label="value",...}`.
    pub series: String,
    /// Its metric.
    pub metric: String,
    /// Its labels, sorted.
    pub labels: Vec<(String, String)>,
    /// The end of the last bucket learnt (what the forecast starts from).
    pub at: i64,
    /// How far ahead of `at` this forecast is.
    pub horizon_ms: i64,
    /// The forecast at `at + horizon_ms`.
    pub predicted: f64,
    /// The interval's lower end (null until errors were measured).
    pub lower: Option<f64>,
    /// The interval's upper end.
    pub upper: Option<f64>,
    /// The limit (null when none is known).
    pub limit: Option<f64>,
    /// When the point forecast reaches the limit (null: not within the look-ahead).
    pub exhaustion_at: Option<i64>,
    /// The earliest it may (the interval's upper end reaches it).
    pub exhaustion_earliest: Option<i64>,
    /// The latest it may (null: maybe not within the look-ahead).
    pub exhaustion_latest: Option<i64>,
}

/// A forecast series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Series {
    metric: String,
    labels: Vec<(String, String)>,
    /// The index of its spec in the settings.
    spec: usize,
    forecaster: Forecaster,
    /// The open bucket: (step, sum, points).
    bucket: Option<(i64, f64, u32)>,
    /// The last report period written.
    reported: Option<i64>,
    /// The firing alert.
    firing: Option<AlertRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct State {
    #[serde(with = "crate::map_as_list")]
    series: BTreeMap<String, Series>,
    /// The last value of each limit metric, by the series key it limits.
    limits: BTreeMap<String, f64>,
    /// Points of a bucket already learnt.
    late: u64,
    /// Points of new series not forecast because the partition holds
    /// [`MAX_SERIES`] (reported as over the limit).
    refused: u64,
    max_seen: Option<i64>,
}

/// The capacity part (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityForecasts {
    settings: Arc<CapacitySettings>,
    /// Metric names forecast or read as limits.
    wanted: BTreeSet<String>,
    state: State,
}

/// When a series is forecast to reach its limit, as event times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ExhaustionTimes {
    /// By the point forecast.
    at: Option<i64>,
    /// By the interval's upper end.
    earliest: Option<i64>,
    /// By its lower end.
    latest: Option<i64>,
}

/// Series one partition forecasts at most (each holds about 27 KB).
pub const MAX_SERIES: usize = 50_000;

impl CapacityForecasts {
    /// Fresh state.
    pub fn new(settings: Arc<CapacitySettings>) -> CapacityForecasts {
        CapacityForecasts {
            wanted: wanted(&settings),
            settings,
            state: State {
                series: BTreeMap::new(),
                limits: BTreeMap::new(),
                late: 0,
                refused: 0,
                max_seen: None,
            },
        }
    }

    /// State continuing from [`Operator::snapshot`], under the current settings: a
    /// series no spec matches any more is forgotten, and one whose step or
    /// horizons changed starts over.
    pub fn restore(
        bytes: &[u8],
        settings: Arc<CapacitySettings>,
    ) -> Result<CapacityForecasts, SnapshotError> {
        let mut state: State = snapshot::decode(bytes)?;
        let shape = settings.shape();
        state.series.retain(|_, series| {
            let labels: Vec<(&str, &str)> = series
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let Some(spec) = settings
                .series
                .iter()
                .position(|s| s.matches(&series.metric, &labels))
            else {
                return false;
            };
            series.spec = spec;
            series.forecaster = std::mem::replace(&mut series.forecaster, Forecaster::new(&shape))
                .resumed(&BANK, &shape);
            series.forecaster.fits(&shape)
        });
        Ok(CapacityForecasts {
            wanted: wanted(&settings),
            settings,
            state,
        })
    }

    /// Series forecast.
    pub fn series(&self) -> usize {
        self.state.series.len()
    }

    /// Bytes of forecasting state per series (the mean over the series held).
    pub fn bytes_per_series(&self) -> usize {
        let total: usize = self
            .state
            .series
            .iter()
            .map(|(k, s)| k.len() + s.metric.len() + s.forecaster.bytes() + 64)
            .sum();
        total / self.state.series.len().max(1)
    }

    /// Learns the rows' points; rows and alerts for the buckets they close.
    fn learn(
        &mut self,
        rows: &RecordBatch,
        out: &mut Emitted,
    ) -> Result<Vec<CapacityRow>, OperatorError> {
        let columns = columns::MetricColumns::of(rows)?;
        let (ts, name, value) = (columns.ts, columns.name, columns.value);
        let step_ms = self.settings.step_ms.max(1);
        let mut written = Vec::new();
        let mut row_labels: Vec<(&str, &str)> = Vec::new();
        let mut scratch: Vec<(&str, &str)> = Vec::new();
        let mut labels_key = String::new();
        for row in 0..rows.num_rows() {
            let t = ts.value(row);
            let clock = self.state.max_seen.map_or(t, |m| m.max(t));
            self.state.max_seen = Some(clock);
            let metric = name.value(row);
            if !self.wanted.contains(metric) || !value.is_valid(row) {
                continue;
            }
            columns.sorted_labels(row, true, &mut row_labels);
            labels_key.clear();
            series_key(&mut labels_key, row_labels.iter().copied(), &mut scratch);
            let v = value.value(row);
            // A limit metric: remembered for the series it limits (for as many
            // label sets as series are forecast; the others are refused).
            for spec in &self.settings.series {
                if let Limit::Metric(limit_metric) = &spec.limit {
                    if limit_metric == metric {
                        let limits = &mut self.state.limits;
                        let limited = format!("{}{labels_key}", spec.metric);
                        if limits.len() < MAX_SERIES || limits.contains_key(&limited) {
                            limits.insert(limited, v);
                        } else {
                            self.state.refused += 1;
                        }
                    }
                }
            }
            let Some(spec) = self
                .settings
                .series
                .iter()
                .position(|s| s.matches(metric, &row_labels))
            else {
                continue;
            };
            let key = format!("{metric}{labels_key}");
            if !self.state.series.contains_key(&key) {
                if self.state.series.len() >= MAX_SERIES {
                    self.state.refused += 1;
                    continue;
                }
                self.state.series.insert(
                    key.clone(),
                    Series {
                        metric: metric.to_owned(),
                        labels: row_labels
                            .iter()
                            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                            .collect(),
                        spec,
                        forecaster: Forecaster::new(&self.settings.shape()),
                        bucket: None,
                        reported: None,
                        firing: None,
                    },
                );
            }
            let step = t.div_euclid(step_ms);
            let Some(series) = self.state.series.get_mut(&key) else {
                continue;
            };
            match series.bucket {
                Some((open, ref mut sum, ref mut count)) if open == step => {
                    *sum += v;
                    *count += 1;
                }
                Some((open, _, _)) if step < open => self.state.late += 1,
                _ if series.forecaster.last_step().is_some_and(|l| step <= l) => {
                    self.state.late += 1
                }
                previous => {
                    series.bucket = Some((step, v, 1));
                    if let Some((closed, sum, count)) = previous {
                        series
                            .forecaster
                            .observe(closed, sum / f64::from(count.max(1)));
                        let limit = limit_of(&self.settings, &self.state.limits, &key, series.spec);
                        let end = (closed + 1) * step_ms;
                        let exhaustion = limit.and_then(|l| {
                            let found = series
                                .forecaster
                                .exhaustion(l, self.settings.lookahead_steps())?;
                            let time = |k: Option<u32>| k.map(|k| end + i64::from(k) * step_ms);
                            Some(ExhaustionTimes {
                                at: time(found.at),
                                earliest: time(found.earliest),
                                latest: time(found.latest),
                            })
                        });
                        let at = (end, clock, row);
                        if let Some(alert) =
                            evaluate(&self.settings, &key, series, limit, exhaustion, at)
                        {
                            out.alerts.push(alert);
                        }
                        let period = end.div_euclid(self.settings.report_every_ms.max(1));
                        if series.reported.is_none_or(|r| period > r) {
                            series.reported = Some(period);
                            let forecast = (limit, exhaustion.unwrap_or_default(), end);
                            report(&self.settings, &key, series, forecast, &mut written);
                        }
                    }
                }
            }
        }
        Ok(written)
    }
}

/// The metric names a part reads: the forecast ones and the limits.
fn wanted(settings: &CapacitySettings) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for spec in &settings.series {
        names.insert(spec.metric.clone());
        if let Limit::Metric(m) = &spec.limit {
            names.insert(m.clone());
        }
    }
    names
}

/// The limit of series `key`, when one is known.
fn limit_of(
    settings: &CapacitySettings,
    limits: &BTreeMap<String, f64>,
    key: &str,
    spec: usize,
) -> Option<f64> {
    match &settings.series.get(spec)?.limit {
        Limit::Value(v) => Some(*v),
        Limit::Metric(_) => limits.get(key).copied(),
        Limit::None => None,
    }
}

/// Fires or resolves the series' alert after it learnt the bucket ending at `end`
/// and found `exhaustion` (none without a limit or a measured interval), at
/// `clock` (the partition's latest event time, which the part promised not to
/// raise anything before) while reading batch row `row`.
fn evaluate(
    settings: &CapacitySettings,
    key: &str,
    series: &mut Series,
    limit: Option<f64>,
    exhaustion: Option<ExhaustionTimes>,
    (end, clock, row): (i64, i64, usize),
) -> Option<AlertRecord> {
    let earliest = exhaustion.and_then(|f| f.earliest);
    let within = |lead: i64| earliest.is_some_and(|at| at - end <= lead);
    // Fires within the lead time, resolves beyond twice it: a forecast hovering
    // about the lead time does not raise an alert (and an incident, and a
    // decision) each time it crosses.
    let near = if series.firing.is_some() {
        within(settings.lead_ms.saturating_mul(2))
    } else {
        within(settings.lead_ms)
    };
    match (&mut series.firing, near) {
        (None, true) => {
            let found = exhaustion?;
            let limit = limit?;
            let at_text = |at: Option<i64>| {
                at.map_or_else(
                    || "beyond the look-ahead".to_owned(),
                    crate::time::rfc3339_ms::to_text,
                )
            };
            let mut labels = vec![
                ("alertname".to_owned(), RULE.to_owned()),
                ("__name__".to_owned(), series.metric.clone()),
            ];
            labels.extend(series.labels.iter().cloned());
            let record = AlertRecord {
                id: alert_id(RULE, key, clock),
                rule: RULE.into(),
                kind: RULE.into(),
                severity: "ticket".into(),
                status: AlertStatus::Firing,
                at: clock,
                starts_at: clock,
                ends_at: None,
                labels,
                summary: format!(
                    "{key} may reach its limit within {}",
                    duration_text(settings.lead_ms)
                ),
                description: format!(
                    "limit {limit}: reached at {} by the forecast, between {} and {}",
                    at_text(found.at),
                    at_text(found.earliest),
                    at_text(found.latest),
                ),
                score: 1.0,
                value: series.forecaster.forecast(0).map_or(f64::NAN, |f| f.value),
                threshold: limit,
                window_start: end,
                window_end: earliest.unwrap_or(end),
                evidence: PointScore {
                    score: 1.0,
                    baseline: limit,
                    deviation: 0.0,
                    detector: Detector::Level,
                },
                row,
            };
            // Kept as a snapshot keeps it (a batch row means nothing later).
            series.firing = Some(AlertRecord {
                row: 0,
                ..record.clone()
            });
            Some(record)
        }
        (Some(_), false) => {
            let mut record = series.firing.take()?;
            record.status = AlertStatus::Resolved;
            record.at = clock;
            record.ends_at = Some(clock);
            record.window_end = end;
            record.row = row;
            Some(record)
        }
        _ => None,
    }
}

/// A duration as `1d2h`, `5h`, `30m`.
fn duration_text(ms: i64) -> String {
    let minutes = ms / 60_000;
    let (days, hours, mins) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    let mut text = String::new();
    for (n, unit) in [(days, "d"), (hours, "h"), (mins, "m")] {
        if n > 0 {
            text.push_str(&format!("{n}{unit}"));
        }
    }
    if text.is_empty() {
        text.push_str(&format!("{ms}ms"));
    }
    text
}

/// A row per horizon for the series, as of the bucket ending at `end`, with its
/// limit and when it is forecast to be reached.
fn report(
    settings: &CapacitySettings,
    key: &str,
    series: &Series,
    (limit, exhaustion, end): (Option<f64>, ExhaustionTimes, i64),
    rows: &mut Vec<CapacityRow>,
) {
    for (index, horizon_ms) in settings.horizons_ms.iter().enumerate() {
        let Some(forecast) = series.forecaster.forecast(index) else {
            continue;
        };
        rows.push(CapacityRow {
            series: key.to_owned(),
            metric: series.metric.clone(),
            labels: series.labels.clone(),
            at: end,
            horizon_ms: *horizon_ms,
            predicted: forecast.value,
            lower: forecast.interval.map(|i| i.0),
            upper: forecast.interval.map(|i| i.1),
            limit,
            exhaustion_at: exhaustion.at,
            exhaustion_earliest: exhaustion.earliest,
            exhaustion_latest: exhaustion.latest,
        });
    }
}

/// Labels as a JSON object (table `capacity`'s `labels` text, the topic's object).
fn labels_object(labels: &[(String, String)]) -> serde_json::Value {
    serde_json::Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    )
}

/// Table `capacity`'s batch of `rows`.
pub fn capacity_batch(rows: &[CapacityRow]) -> Result<RecordBatch, OperatorError> {
    let time = || TimestampMillisecondBuilder::new().with_timezone("UTC");
    let (mut series, mut metric, mut labels) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let mut at = time();
    let mut horizon = Int64Builder::new();
    let (mut predicted, mut lower, mut upper, mut limit) = (
        Float64Builder::new(),
        Float64Builder::new(),
        Float64Builder::new(),
        Float64Builder::new(),
    );
    let (mut exhaustion_at, mut earliest, mut latest) = (time(), time(), time());
    for row in rows {
        series.append_value(&row.series);
        metric.append_value(&row.metric);
        labels.append_value(labels_object(&row.labels).to_string());
        at.append_value(row.at);
        horizon.append_value(row.horizon_ms);
        predicted.append_value(row.predicted);
        lower.append_option(row.lower);
        upper.append_option(row.upper);
        limit.append_option(row.limit);
        exhaustion_at.append_option(row.exhaustion_at);
        earliest.append_option(row.exhaustion_earliest);
        latest.append_option(row.exhaustion_latest);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(series.finish()),
        Arc::new(metric.finish()),
        Arc::new(labels.finish()),
        Arc::new(at.finish()),
        Arc::new(horizon.finish()),
        Arc::new(predicted.finish()),
        Arc::new(lower.finish()),
        Arc::new(upper.finish()),
        Arc::new(limit.finish()),
        Arc::new(exhaustion_at.finish()),
        Arc::new(earliest.finish()),
        Arc::new(latest.finish()),
    ];
    Ok(RecordBatch::try_new(Table::Capacity.schema(), columns)?)
}

/// A row as sent on `cara.capacity` (times as RFC 3339 text, labels an object).
pub fn capacity_json(row: &CapacityRow) -> Vec<u8> {
    let time = |ms: Option<i64>| ms.map(crate::time::rfc3339_ms::to_text);
    serde_json::json!({
        "series": row.series,
        "metric": row.metric,
        "labels": labels_object(&row.labels),
        "at": crate::time::rfc3339_ms::to_text(row.at),
        "horizon_ms": row.horizon_ms,
        "predicted": row.predicted,
        "lower": row.lower,
        "upper": row.upper,
        "limit": row.limit,
        "exhaustion_at": time(row.exhaustion_at),
        "exhaustion_earliest": time(row.exhaustion_earliest),
        "exhaustion_latest": time(row.exhaustion_latest),
    })
    .to_string()
    .into_bytes()
}

impl Operator for CapacityForecasts {
    fn name(&self) -> &'static str {
        "capacity"
    }

    fn tables(&self) -> Vec<Table> {
        vec![Table::Capacity, Table::Alerts]
    }

    fn input_columns(&self) -> Option<Vec<&'static str>> {
        Some(vec!["ts", "name", "value", "labels", "service"])
    }

    fn process(
        &mut self,
        _context: &PartitionContext,
        rows: &RecordBatch,
        out: &mut Emitted,
    ) -> Result<(), OperatorError> {
        let (late_before, refused_before) = (self.state.late, self.state.refused);
        let written = self.learn(rows, out)?;
        out.late += self.state.late - late_before;
        out.over_limit += self.state.refused - refused_before;
        if !written.is_empty() {
            out.tables
                .push((Table::Capacity, capacity_batch(&written)?));
            out.messages
                .extend(written.iter().map(|row| OutboundMessage {
                    topic: Outbound::Capacity,
                    key: row.series.clone(),
                    payload: capacity_json(row),
                }));
        }
        Ok(())
    }

    /// The latest event time of the partition: what it raises is stamped with it.
    fn watermark(&self) -> Option<i64> {
        self.state.max_seen
    }

    fn snapshot(&self) -> Result<Vec<u8>, OperatorError> {
        Ok(snapshot::encode(&self.state)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::SeriesSpec;
    use crate::series::{gauge_batch, DerivedPoint};

    const MINUTE: i64 = 60_000;
    const HOUR: i64 = 60 * MINUTE;
    /// 2026-12-01T00:00:00Z.
    const START: i64 = 1_796_083_200_000;
    const SIZE: f64 = 100e9;

    fn settings() -> Arc<CapacitySettings> {
        Arc::new(CapacitySettings {
            step_ms: 5 * MINUTE,
            horizons_ms: vec![HOUR, 6 * HOUR, 24 * HOUR],
            coverage: 0.9,
            lead_ms: 12 * HOUR,
            lookahead_ms: 7 * 24 * HOUR,
            report_every_ms: HOUR,
            series: vec![SeriesSpec {
                metric: "disk_used_bytes".into(),
                labels: vec![("mount".into(), "/data".into())],
                limit: Limit::Metric("disk_size_bytes".into()),
            }],
        })
    }

    /// A disk filling a GB an hour from 20 GB, swinging 1.5 GB a day, with noise.
    fn used(t: i64) -> f64 {
        let hours = (t - START) as f64 / HOUR as f64;
        let noise = (crate::stable_hash::Fnv1a::of(&t.to_le_bytes()) >> 11) as f64
            / (1u64 << 53) as f64
            - 0.5;
        20e9 + 1e9 * hours + 1.5e9 * (hours / 24.0 * std::f64::consts::TAU).sin() + 0.4e9 * noise
    }

    fn point(t: i64, name: &str, mount: &str, value: f64) -> DerivedPoint {
        DerivedPoint {
            ts_ms: t,
            name: name.into(),
            labels: vec![
                ("host".into(), "db-1".into()),
                ("mount".into(), mount.into()),
            ],
            value,
            source_row: 0,
        }
    }

    /// A minute's points: the disk, its size, and another mount (not forecast).
    fn minute(t: i64) -> Vec<DerivedPoint> {
        vec![
            point(t, "disk_used_bytes", "/data", used(t)),
            point(t, "disk_size_bytes", "/data", SIZE),
            point(t, "disk_used_bytes", "/boot", 1e8),
        ]
    }

    /// Feeds `hours` of minutes in batches of `batch` minutes, restoring from a
    /// snapshot every `restore_every` batches; the rows and alerts written.
    fn run(
        hours: i64,
        batch: i64,
        restore_every: Option<usize>,
    ) -> (Vec<RecordBatch>, Vec<AlertRecord>) {
        let mut part = CapacityForecasts::new(settings());
        let context = PartitionContext {
            topic: Arc::from("telemetry.metrics"),
            partition: 0,
        };
        let mut out = Emitted::default();
        let minutes: Vec<i64> = (0..hours * 60).map(|m| START + m * MINUTE).collect();
        for (i, chunk) in minutes.chunks(batch as usize).enumerate() {
            let points: Vec<DerivedPoint> = chunk.iter().flat_map(|t| minute(*t)).collect();
            let rows = gauge_batch(&points, "telemetry.metrics", 0).unwrap();
            part.process(&context, &rows, &mut out).unwrap();
            if restore_every.is_some_and(|every| i % every == every - 1) {
                let snapshot = Operator::snapshot(&part).unwrap();
                let restored = CapacityForecasts::restore(&snapshot, settings()).unwrap();
                assert_eq!(restored, part);
                part = restored;
            }
        }
        let tables = out
            .tables
            .into_iter()
            .filter(|(t, _)| *t == Table::Capacity)
            .map(|(_, b)| b)
            .collect();
        (tables, out.alerts)
    }

    fn column<'a, T: arrow::array::Array + 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<T>())
            .unwrap()
    }

    #[test]
    fn a_filling_disk_alerts_a_lead_time_before_it_is_full_inside_its_interval() {
        use arrow::array::{Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
        let full = (0..)
            .map(|m| START + m * MINUTE)
            .find(|t| used(*t) >= SIZE)
            .unwrap();
        let hours = (full - START) / HOUR + 2;
        let (tables, alerts) = run(hours, 60, None);
        // One alert, firing, at least the lead time before the disk is full.
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        let alert = &alerts[0];
        assert_eq!(
            (alert.rule.as_str(), alert.status),
            (RULE, AlertStatus::Firing)
        );
        assert!(alert.labels.contains(&("mount".into(), "/data".into())));
        assert_eq!(alert.threshold, SIZE);
        let ahead = full - alert.at;
        assert!(
            ahead >= 12 * HOUR,
            "alert {:.1} h before full",
            ahead as f64 / HOUR as f64
        );
        assert!(
            ahead <= 24 * HOUR,
            "alert {:.1} h before full",
            ahead as f64 / HOUR as f64
        );
        // The report of the hour the alert fired in: the truth inside its interval,
        // the limit from the size metric, the other mount not forecast.
        let mut checked = 0;
        for batch in &tables {
            let series: &StringArray = column(batch, "series");
            let at: &TimestampMillisecondArray = column(batch, "at");
            let horizon: &Int64Array = column(batch, "horizon_ms");
            let limit: &Float64Array = column(batch, "limit");
            let earliest: &TimestampMillisecondArray = column(batch, "exhaustion_earliest");
            let latest: &TimestampMillisecondArray = column(batch, "exhaustion_latest");
            let exhaustion: &TimestampMillisecondArray = column(batch, "exhaustion_at");
            for row in 0..batch.num_rows() {
                assert_eq!(
                    series.value(row),
                    "disk_used_bytes{host=\"db-1\",mount=\"/data\"}"
                );
                assert_eq!(limit.value(row), SIZE);
                let report = at.value(row);
                if report <= alert.at && alert.at - report < HOUR && horizon.value(row) == HOUR {
                    let (low, high) = (earliest.value(row), latest.value(row));
                    assert!(low <= full && full <= high, "{low} <= {full} <= {high}");
                    let point = exhaustion.value(row);
                    assert!((point - full).abs() < 3 * HOUR, "{point} vs {full}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 1);
    }

    #[test]
    fn what_is_written_does_not_depend_on_batches_or_restarts() {
        let (tables, alerts) = run(72, 60, None);
        let (other_tables, other_alerts) = run(72, 7, Some(5));
        // The same alerts (but the batch row that raised them).
        let rowless = |alerts: Vec<AlertRecord>| {
            alerts
                .into_iter()
                .map(|a| AlertRecord { row: 0, ..a })
                .collect::<Vec<_>>()
        };
        assert_eq!(alerts.len(), 1);
        assert_eq!(rowless(other_alerts), rowless(alerts));
        let rows = |t: &[RecordBatch]| {
            arrow::compute::concat_batches(&Table::Capacity.schema(), t).unwrap()
        };
        // A report an hour from the first (3 horizons each).
        assert_eq!(rows(&tables).num_rows(), 72 * 3);
        assert_eq!(rows(&other_tables), rows(&tables));
    }

    #[test]
    fn a_restore_under_changed_settings_keeps_only_what_still_fits() {
        let mut part = CapacityForecasts::new(settings());
        let context = PartitionContext {
            topic: Arc::from("telemetry.metrics"),
            partition: 0,
        };
        let points: Vec<DerivedPoint> = (0..240).flat_map(|m| minute(START + m * MINUTE)).collect();
        let rows = gauge_batch(&points, "telemetry.metrics", 0).unwrap();
        part.process(&context, &rows, &mut Emitted::default())
            .unwrap();
        let snapshot = Operator::snapshot(&part).unwrap();
        assert_eq!(part.series(), 1);
        // Another coverage: the intervals follow it at once.
        let interval = |part: &CapacityForecasts| {
            let series = part.state.series.values().next().expect("one series");
            let (lower, upper) = series
                .forecaster
                .forecast(0)
                .and_then(|f| f.interval)
                .expect("measured");
            upper - lower
        };
        let mut narrower = (*settings()).clone();
        narrower.coverage = 0.5;
        let restored = CapacityForecasts::restore(&snapshot, Arc::new(narrower)).unwrap();
        assert!(
            interval(&restored) < interval(&part),
            "{} against {}",
            interval(&restored),
            interval(&part)
        );
        let same = CapacityForecasts::restore(&snapshot, settings()).unwrap();
        assert_eq!(interval(&same), interval(&part));
        // Another spec first: the series is found under its new index.
        let mut moved = (*settings()).clone();
        moved.series.insert(
            0,
            SeriesSpec {
                metric: "cpu".into(),
                labels: Vec::new(),
                limit: Limit::Value(1.0),
            },
        );
        let restored = CapacityForecasts::restore(&snapshot, Arc::new(moved)).unwrap();
        assert_eq!(
            restored.state.series.values().next().map(|s| s.spec),
            Some(1)
        );
        // Another step: it starts over; its spec gone: it is forgotten.
        let mut restepped = (*settings()).clone();
        restepped.step_ms = MINUTE;
        let restored = CapacityForecasts::restore(&snapshot, Arc::new(restepped)).unwrap();
        assert_eq!(restored.series(), 0);
        let mut other = (*settings()).clone();
        other.series[0].labels = vec![("mount".into(), "/other".into())];
        let restored = CapacityForecasts::restore(&snapshot, Arc::new(other)).unwrap();
        assert_eq!(restored.series(), 0);
    }

    /// Limits are kept for as many label sets as series may be forecast; a label
    /// set beyond is refused and counted, a known one still updated.
    #[test]
    fn limits_are_bounded_like_the_series() {
        let mut part = CapacityForecasts::new(settings());
        let context = PartitionContext {
            topic: Arc::from("telemetry.metrics"),
            partition: 0,
        };
        let mut points: Vec<DerivedPoint> = (0..=MAX_SERIES)
            .map(|i| point(START, "disk_size_bytes", &format!("/m{i}"), 100e9))
            .collect();
        points.push(point(START + MINUTE, "disk_size_bytes", "/m0", 200e9));
        let rows = gauge_batch(&points, "telemetry.metrics", 0).unwrap();
        let mut out = Emitted::default();
        part.process(&context, &rows, &mut out).unwrap();
        assert_eq!(part.state.limits.len(), MAX_SERIES);
        assert_eq!(out.over_limit, 1);
        let first = part.state.limits.iter().find(|(k, _)| k.contains("/m0\""));
        assert_eq!(first.map(|(_, v)| *v), Some(200e9), "{first:?}");
    }

    #[test]
    fn points_out_of_order_are_late_and_memory_per_series_is_bounded() {
        let mut part = CapacityForecasts::new(settings());
        let context = PartitionContext {
            topic: Arc::from("telemetry.metrics"),
            partition: 0,
        };
        let mut out = Emitted::default();
        let mut points: Vec<DerivedPoint> = (0..30 * 24 * 60)
            .map(|m| point(START + m * MINUTE, "disk_used_bytes", "/data", 5.0))
            .collect();
        points.push(point(START, "disk_used_bytes", "/data", 5.0));
        let rows = gauge_batch(&points, "telemetry.metrics", 0).unwrap();
        part.process(&context, &rows, &mut out).unwrap();
        assert_eq!(out.late, 1);
        assert_eq!(part.series(), 1);
        assert!(
            part.bytes_per_series() < 32 * 1024,
            "{}",
            part.bytes_per_series()
        );
        // Without a limit known (no size metric): forecasts, no alert.
        assert!(out.alerts.is_empty());
        let limit: &arrow::array::Float64Array = column(&out.tables[0].1, "limit");
        assert!(limit.is_null(0));
    }
}
