//! Event-time window aggregates of every scored metric series (table
//! `metric_windows`): tumbling, sliding or session windows per series, fired when the
//! partition's watermark passes their end plus the allowed lateness.
//!
//! Owns the windowing state of one metrics partition and the rows it archives. The
//! watermark moves with every point (largest event time so far minus the bound) and
//! can be raised from outside (an idle partition), so whether a point is late depends
//! on the rows and the raised watermark alone, never on how rows were batched.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Builder, Int32Builder, Int64Builder, MapBuilder, RecordBatch, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow::error::ArrowError;
use serde::{Deserialize, Serialize};

use super::operator::{Labels, ScoredPoint};
use crate::map_as_list::hashed::{new_map, FastMap};
use crate::schema::Table;
use crate::window::{Added, Aggregate, Window, WindowSpec, WindowedAggregate};

/// How the scored values of every series are windowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSettings {
    /// Tumbling, sliding or session windows.
    pub spec: WindowSpec,
    /// The partition's watermark trails its largest event time by this much.
    pub out_of_orderness_ms: i64,
    /// Windows stay open this long past the watermark.
    pub allowed_lateness_ms: i64,
}

/// One fired window of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesWindow {
    /// Series key.
    pub series: Arc<str>,
    /// Metric name.
    pub name: Arc<str>,
    /// Labels.
    pub labels: Labels,
    /// The window.
    pub window: Window,
    /// What it aggregated.
    pub aggregate: Aggregate,
}

/// Per-partition windowing state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SeriesWindows {
    pub(crate) settings: WindowSettings,
    aggregate: WindowedAggregate<Arc<str>>,
    /// Name and labels of series with open windows.
    #[serde(with = "crate::map_as_list::hashed_as_map")]
    series: FastMap<Arc<str>, (Arc<str>, Labels)>,
    max_event_ms: i64,
    pub(crate) late: u64,
}

impl SeriesWindows {
    pub(crate) fn new(settings: WindowSettings) -> Self {
        SeriesWindows {
            settings,
            aggregate: WindowedAggregate::new(settings.spec, settings.allowed_lateness_ms),
            series: new_map(),
            max_event_ms: i64::MIN,
            late: 0,
        }
    }

    /// The watermark: the rows' own (largest event time minus the bound), or
    /// `raised` when that is higher.
    pub(crate) fn watermark(&self, raised: i64) -> i64 {
        self.max_event_ms
            .saturating_sub(self.settings.out_of_orderness_ms)
            .max(raised)
    }

    /// Adds a scored point; returns false (and counts it) when it is late.
    pub(crate) fn add(&mut self, point: &ScoredPoint, raised: i64) -> bool {
        let watermark = self.watermark(raised);
        let added = self
            .aggregate
            .add(&point.series, point.ts_ms, point.value, watermark);
        match added {
            // Name and labels are kept while the series has open windows.
            Added::FirstOfKey => {
                self.series
                    .entry(point.series.clone())
                    .or_insert_with(|| (point.name.clone(), point.labels.clone()));
            }
            Added::ToOpenKey => {}
            Added::Late => self.late += 1,
        }
        self.max_event_ms = self.max_event_ms.max(point.ts_ms);
        added.accepted()
    }

    /// Appends the windows the watermark has passed, by end, then series.
    pub(crate) fn fire(&mut self, raised: i64, out: &mut Vec<SeriesWindow>) {
        for fired in self.aggregate.fire(self.watermark(raised)) {
            let (name, labels) = self
                .series
                .get(&fired.key)
                .cloned()
                .unwrap_or_else(|| (fired.key.clone(), Labels::from(Vec::new())));
            out.push(SeriesWindow {
                series: fired.key,
                name,
                labels,
                window: fired.window,
                aggregate: fired.aggregate,
            });
        }
        let aggregate = &self.aggregate;
        self.series.retain(|key, _| aggregate.has_open(key));
    }
}

/// Rows of table `metric_windows` for fired windows of one source partition.
pub fn metric_windows_batch(
    windows: &[SeriesWindow],
    topic: &str,
    partition: i32,
) -> Result<RecordBatch, ArrowError> {
    let n = windows.len();
    let mut series = StringBuilder::new();
    let mut name = StringBuilder::new();
    let mut labels = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    let mut start = TimestampMillisecondBuilder::with_capacity(n);
    let mut end = TimestampMillisecondBuilder::with_capacity(n);
    let mut count = Int64Builder::with_capacity(n);
    let (mut sum, mut min, mut max, mut mean) = (
        Float64Builder::with_capacity(n),
        Float64Builder::with_capacity(n),
        Float64Builder::with_capacity(n),
        Float64Builder::with_capacity(n),
    );
    let mut topics = StringBuilder::new();
    let mut partitions = Int32Builder::with_capacity(n);
    for w in windows {
        series.append_value(&*w.series);
        name.append_value(&*w.name);
        for (k, v) in w.labels.iter() {
            labels.keys().append_value(k);
            labels.values().append_value(v);
        }
        labels.append(true)?;
        start.append_value(w.window.start);
        end.append_value(w.window.end);
        count.append_value(i64::try_from(w.aggregate.count).unwrap_or(i64::MAX));
        sum.append_value(w.aggregate.sum);
        min.append_value(w.aggregate.min);
        max.append_value(w.aggregate.max);
        mean.append_value(w.aggregate.mean());
        topics.append_value(topic);
        partitions.append_value(partition);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(series.finish()),
        Arc::new(name.finish()),
        Arc::new(labels.finish()),
        Arc::new(start.finish().with_timezone("UTC")),
        Arc::new(end.finish().with_timezone("UTC")),
        Arc::new(count.finish()),
        Arc::new(sum.finish()),
        Arc::new(min.finish()),
        Arc::new(max.finish()),
        Arc::new(mean.finish()),
        Arc::new(topics.finish()),
        Arc::new(partitions.finish()),
    ];
    RecordBatch::try_new(Table::MetricWindows.schema(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::{Detector, PointScore};
    use arrow::array::{AsArray, Float64Array};
    use arrow::datatypes::Int64Type;

    fn point(series: &str, ts_ms: i64, value: f64) -> ScoredPoint {
        ScoredPoint {
            series: Arc::from(series),
            name: Arc::from("latency_ms"),
            labels: Labels::from(vec![("service".to_owned(), series.to_owned())]),
            row: 0,
            ts_ms,
            previous_ms: None,
            value,
            score: PointScore {
                score: 0.0,
                baseline: 0.0,
                deviation: 0.0,
                detector: Detector::Warmup,
            },
        }
    }

    fn settings(spec: WindowSpec) -> WindowSettings {
        WindowSettings {
            spec,
            out_of_orderness_ms: 1_000,
            allowed_lateness_ms: 0,
        }
    }

    #[test]
    fn sliding_windows_count_each_point_in_every_window_covering_it() {
        let mut w = SeriesWindows::new(settings(WindowSpec::Sliding {
            size_ms: 10_000,
            slide_ms: 5_000,
        }));
        for (ts, v) in [(1_000, 1.0), (6_000, 2.0), (11_000, 4.0), (30_000, 0.0)] {
            assert!(w.add(&point("a", ts, v), i64::MIN));
        }
        let mut out = Vec::new();
        w.fire(i64::MIN, &mut out);
        let got: Vec<_> = out
            .iter()
            .map(|s| {
                (
                    s.window.start,
                    s.window.end,
                    s.aggregate.count,
                    s.aggregate.sum,
                )
            })
            .collect();
        // Watermark 29 s: every window ending by then has fired, oldest first.
        assert_eq!(
            got,
            vec![
                (-5_000, 5_000, 1, 1.0),
                (0, 10_000, 2, 3.0),
                (5_000, 15_000, 2, 6.0),
                (10_000, 20_000, 1, 4.0),
            ]
        );
    }

    #[test]
    fn sessions_close_after_the_gap_and_a_raised_watermark_closes_them_early() {
        let mut w = SeriesWindows::new(settings(WindowSpec::Session { gap_ms: 5_000 }));
        for ts in [0, 2_000, 4_000, 20_000] {
            w.add(&point("a", ts, 1.0), i64::MIN);
        }
        let mut out = Vec::new();
        w.fire(i64::MIN, &mut out);
        assert_eq!(
            out.iter()
                .map(|s| (s.window, s.aggregate.count))
                .collect::<Vec<_>>(),
            vec![(
                Window {
                    start: 0,
                    end: 9_000
                },
                3
            )],
            "the session at 20 s is still open (watermark 19 s)"
        );
        out.clear();
        w.fire(25_000, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].window,
            Window {
                start: 20_000,
                end: 25_000
            }
        );
        // A point whose session would end behind the raised watermark is late; one
        // whose session ends after it opens a new one.
        assert!(!w.add(&point("a", 19_000, 1.0), 25_000));
        assert!(w.add(&point("a", 21_000, 1.0), 25_000));
        assert_eq!(w.late, 1);
    }

    #[test]
    fn window_rows_follow_the_table_schema() {
        let mut w = SeriesWindows::new(settings(WindowSpec::Tumbling { size_ms: 10_000 }));
        for (s, ts, v) in [("a", 0, 2.0), ("a", 1_000, 4.0), ("b", 2_000, 8.0)] {
            w.add(&point(s, ts, v), i64::MIN);
        }
        let mut out = Vec::new();
        w.fire(10_000, &mut out);
        let batch = metric_windows_batch(&out, "telemetry.metrics", 3).unwrap();
        assert_eq!(batch.schema(), Table::MetricWindows.schema());
        let count = batch
            .column_by_name("count")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(count.values().to_vec(), vec![2, 1]);
        let mean = batch.column_by_name("mean").unwrap();
        let mean = mean.as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(mean.values().to_vec(), vec![3.0, 8.0]);
    }
}
