//! Metric points of an `ExportMetricsServiceRequest` into table `metrics`.
//!
//! Mapping, per data point (`service` from the resource's `service.name`, written
//! as the `service` label too; labels are the point's attributes, then the
//! resource's, the point's winning on a shared key; values that are not strings are
//! written as text; unit, description and scope go to the `extra` column's JSON):
//!
//! | OTLP | rows |
//! | --- | --- |
//! | Gauge | the name, `gauge` |
//! | Sum, monotonic, cumulative | the name, `counter` |
//! | Sum, delta | the name, the running total of the increases (`counter` when monotonic, else `gauge`) |
//! | Sum, not monotonic, cumulative | the name, `gauge` |
//! | Histogram | `_count`, `_sum` (counters), `_bucket` with label `le` (cumulative per bound, as Prometheus does), and gauges `_p50`, `_p90`, `_p99` of the point's interval |
//! | ExponentialHistogram | `_count`, `_sum`, and gauges `_p50`, `_p90`, `_p99` of the point's interval |
//! | Summary | `_count`, `_sum` (counters), the name with label `quantile` per quantile (gauges) |
//!
//! Delta points become cumulative by a running total per series, kept by the
//! partition's decoder. A restart starts the totals at zero, which the operators'
//! counter-reset rule reads as exactly the increase it is; the totals are forgotten
//! (the same reset) past [`MAX_REMEMBERED_SERIES`]. The percentiles of a cumulative
//! histogram are those of the increase since the series' previous point (of the
//! whole point on its first, or when its buckets changed), interpolated linearly
//! within a bucket as Prometheus' `histogram_quantile` does. Exemplars, points
//! flagged as having no recorded value and non-finite values are not rows; they are
//! counted ([`Unused`]).

use std::collections::HashMap;

use super::traces::write_scope;
use super::values::{self, KeySet, ObjectWriter, SERVICE_NAME};
use super::{at, parse, partition_nanos_ms, Unused};
use crate::decode::fields::RowContext;
use crate::decode::metric::MetricRows;
use crate::decode::{DecodeError, FieldProblem};
use arrow::array::{MapBuilder, StringBuilder};
use cara_operators::stable_hash::Fnv1a;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets as ExponentialBuckets, metric::Data,
    number_data_point::Value as Number, AggregationTemporality, ExponentialHistogramDataPoint,
    HistogramDataPoint, Metric, NumberDataPoint,
};

/// The most series whose running totals a decoder remembers; past it they are all
/// forgotten at once (read downstream as counter resets).
pub const MAX_REMEMBERED_SERIES: usize = 1 << 20;

/// The percentiles written for every histogram point.
const PERCENTILES: [(&str, f64); 3] = [("_p50", 0.5), ("_p90", 0.9), ("_p99", 0.99)];

/// `DataPointFlags.FLAG_NO_RECORDED_VALUE`.
const NO_RECORDED_VALUE: u32 = 1;

/// What a partition's decoder remembers between OTLP metric messages: the running
/// totals of delta series and the last buckets of each histogram series.
#[derive(Default)]
pub(crate) struct MetricMemory {
    totals: SeriesMemory<f64>,
    buckets: SeriesMemory<Vec<Bucket>>,
}

/// Values per series, with the changes of the message being decoded kept apart
/// until it is accepted whole.
struct SeriesMemory<T> {
    kept: HashMap<u64, T>,
    staged: HashMap<u64, T>,
}

impl<T> Default for SeriesMemory<T> {
    fn default() -> Self {
        SeriesMemory {
            kept: HashMap::new(),
            staged: HashMap::new(),
        }
    }
}

impl<T> SeriesMemory<T> {
    fn get(&self, key: u64) -> Option<&T> {
        self.staged.get(&key).or_else(|| self.kept.get(&key))
    }

    fn stage(&mut self, key: u64, value: T) {
        self.staged.insert(key, value);
    }

    fn commit(&mut self) {
        if self.kept.len() + self.staged.len() > MAX_REMEMBERED_SERIES {
            self.kept.clear();
        }
        self.kept.extend(self.staged.drain());
    }

    fn discard(&mut self) {
        self.staged.clear();
    }
}

/// One bucket of a histogram: the count of values in `(lower, upper]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bucket {
    lower: f64,
    upper: f64,
    count: u64,
}

/// One row to be: borrowed from the request.
struct Point<'r> {
    ts_ms: i64,
    metric: &'r str,
    suffix: &'static str,
    value: f64,
    kind: &'static str,
    attributes: &'r [KeyValue],
    /// `le` or `quantile`, with its bound.
    extra_label: Option<(&'static str, f64)>,
    /// Index of the metric's resource in the message.
    resource: usize,
    /// Index of the metric's `extra` JSON.
    extra: usize,
}

/// The resource of a group of points: its service, and its other attributes.
struct Resource<'r> {
    service: Option<&'r str>,
    /// The attributes but `service.name`, picked out once per resource rather than
    /// compared per point.
    labels: Vec<&'r KeyValue>,
}

/// Decodes one message into `rows`; how many rows it added, and the values it
/// carried that are not rows.
pub(crate) fn decode(
    payload: &[u8],
    ctx: &RowContext<'_>,
    rows: &mut MetricRows,
    memory: &mut MetricMemory,
) -> Result<(usize, Unused), DecodeError> {
    let request: ExportMetricsServiceRequest = parse(payload)?;
    let mut collected = Collected::default();
    let result = collect(&request, ctx, memory, &mut collected).and_then(|()| {
        if collected.metrics == 0 {
            return Err(DecodeError::NoOtlpRecords {
                signal: "metric points",
                request: "ExportMetricsServiceRequest",
            });
        }
        ctx.check_hours()
    });
    if let Err(e) = result {
        memory.totals.discard();
        memory.buckets.discard();
        return Err(e);
    }
    memory.totals.commit();
    memory.buckets.commit();
    let mut name = String::new();
    let mut text = String::new();
    let mut written = KeySet::default();
    let added = collected.points.len();
    for (index, point) in collected.points.iter().enumerate() {
        let resource = &collected.resources[point.resource];
        name.clear();
        name.push_str(point.metric);
        name.push_str(point.suffix);
        rows.append_point(
            point.ts_ms,
            &name,
            point.value,
            point.kind,
            resource.service,
            collected.extras[point.extra].as_deref(),
            ctx.pos,
            index as i32,
            |labels| write_labels(labels, point, resource, &mut text, &mut written),
        );
    }
    Ok((added, collected.unused))
}

/// The labels of one point: its attributes, `service`, the resource's attributes
/// (but `service.name`), and its `le` or `quantile`; the first value of a key wins.
fn write_labels<'r>(
    labels: &mut MapBuilder<StringBuilder, StringBuilder>,
    point: &Point<'r>,
    resource: &Resource<'r>,
    text: &mut String,
    written: &mut KeySet<'r>,
) {
    written.clear();
    let mut write = |key: &'r str, value: &str, written: &mut KeySet<'r>| {
        if written.insert(key) {
            labels.keys().append_value(key);
            labels.values().append_value(value);
        }
    };
    for kv in point.attributes {
        if let Some(value) = values::label_text(kv.value.as_ref(), text) {
            write(&kv.key, value, written);
        }
    }
    if let Some(service) = resource.service {
        write("service", service, written);
    }
    for kv in &resource.labels {
        if let Some(value) = values::label_text(kv.value.as_ref(), text) {
            write(&kv.key, value, written);
        }
    }
    if let Some((key, bound)) = point.extra_label {
        write(key, &bound_text(bound), written);
    }
}

/// A bucket bound or quantile as Prometheus writes it (`+Inf` for infinity).
fn bound_text(bound: f64) -> String {
    if bound == f64::INFINITY {
        "+Inf".to_owned()
    } else {
        bound.to_string()
    }
}

#[derive(Default)]
struct Collected<'r> {
    points: Vec<Point<'r>>,
    resources: Vec<Resource<'r>>,
    extras: Vec<Option<String>>,
    unused: Unused,
    /// Metrics seen, rows or not.
    metrics: usize,
}

impl Collected<'_> {
    /// Counts a point's exemplars, and whether it has a recorded value (one
    /// without, a staleness marker, is counted and makes no row).
    fn recorded(&mut self, exemplars: usize, flags: u32) -> bool {
        self.unused.exemplars += exemplars as u64;
        let recorded = flags & NO_RECORDED_VALUE == 0;
        if !recorded {
            self.unused.no_recorded_value += 1;
        }
        recorded
    }
}

fn collect<'r>(
    request: &'r ExportMetricsServiceRequest,
    ctx: &RowContext<'_>,
    memory: &mut MetricMemory,
    out: &mut Collected<'r>,
) -> Result<(), DecodeError> {
    for (r, resource_metrics) in request.resource_metrics.iter().enumerate() {
        let attributes: &[KeyValue] = resource_metrics
            .resource
            .as_ref()
            .map_or(&[], |r| r.attributes.as_slice());
        out.resources.push(Resource {
            service: values::service_of(attributes),
            labels: attributes
                .iter()
                .filter(|kv| kv.key != SERVICE_NAME)
                .collect(),
        });
        let resource = out.resources.len() - 1;
        for (s, scope_metrics) in resource_metrics.scope_metrics.iter().enumerate() {
            let mut last_extra: Option<(&str, &str)> = None;
            for (m, metric) in scope_metrics.metrics.iter().enumerate() {
                out.metrics += 1;
                // Metrics of a scope mostly share unit and description: one text each.
                let same = metric.metadata.is_empty()
                    && last_extra.is_some_and(|(unit, description)| {
                        same_text(unit, &metric.unit) && same_text(description, &metric.description)
                    });
                if !same {
                    out.extras
                        .push(extra_json(metric, scope_metrics.scope.as_ref()));
                    last_extra = metric
                        .metadata
                        .is_empty()
                        .then_some((metric.unit.as_str(), metric.description.as_str()));
                }
                let target = Target {
                    metric,
                    resource,
                    resource_attributes: attributes,
                    extra: out.extras.len() - 1,
                };
                let path = |p: Option<usize>| {
                    let points = p.map(|p| format!(".dataPoints[{p}]")).unwrap_or_default();
                    format!(
                        "resourceMetrics[{r}].scopeMetrics[{s}].metrics[{m}] `{}`{points}",
                        metric.name
                    )
                };
                target
                    .collect(ctx, memory, out)
                    .map_err(|(p, problem)| at(|| path(p), problem))?;
            }
        }
    }
    Ok(())
}

/// Whether two texts are equal, without a library call for empty ones (most units
/// and descriptions; comparing them with `==`, a `memcmp` call each, was where the
/// profile found most of the decoder's `memcmp` time).
fn same_text(a: &str, b: &str) -> bool {
    a.len() == b.len() && (a.is_empty() || a == b)
}

/// Unit, description and scope of a metric, as the `extra` column's JSON.
fn extra_json(metric: &Metric, scope: Option<&InstrumentationScope>) -> Option<String> {
    let mut object = ObjectWriter::new();
    if !metric.unit.is_empty() {
        object.string("unit", &metric.unit);
    }
    if !metric.description.is_empty() {
        object.string("description", &metric.description);
    }
    write_scope(&mut object, scope);
    if !metric.metadata.is_empty() {
        object.field("otel.metadata", |out| {
            let mut metadata = ObjectWriter::new();
            metadata.attributes(&metric.metadata, None);
            out.push_str(&metadata.finish());
        });
    }
    (!object.is_empty()).then(|| object.finish())
}

/// A bad point: its index (when the problem is a point's) and the problem.
type PointError = (Option<usize>, FieldProblem);

/// One metric being collected.
struct Target<'r> {
    metric: &'r Metric,
    resource: usize,
    resource_attributes: &'r [KeyValue],
    extra: usize,
}

impl<'r> Target<'r> {
    fn collect(
        &self,
        ctx: &RowContext<'_>,
        memory: &mut MetricMemory,
        out: &mut Collected<'r>,
    ) -> Result<(), PointError> {
        let Some(data) = self.metric.data.as_ref() else {
            return Err((
                None,
                FieldProblem::Invalid(
                    "metric has no data (gauge, sum, histogram, exponentialHistogram or summary)"
                        .into(),
                ),
            ));
        };
        match data {
            Data::Gauge(gauge) => {
                for (p, point) in gauge.data_points.iter().enumerate() {
                    self.number(point, "gauge", false, ctx, memory, out)
                        .map_err(|e| (Some(p), e))?;
                }
            }
            Data::Sum(sum) => {
                let delta = is_delta(sum.aggregation_temporality);
                let kind = if sum.is_monotonic { "counter" } else { "gauge" };
                for (p, point) in sum.data_points.iter().enumerate() {
                    self.number(point, kind, delta, ctx, memory, out)
                        .map_err(|e| (Some(p), e))?;
                }
            }
            Data::Histogram(histogram) => {
                let delta = is_delta(histogram.aggregation_temporality);
                for (p, point) in histogram.data_points.iter().enumerate() {
                    self.histogram(point, delta, ctx, memory, out)
                        .map_err(|e| (Some(p), e))?;
                }
            }
            Data::ExponentialHistogram(histogram) => {
                let delta = is_delta(histogram.aggregation_temporality);
                for (p, point) in histogram.data_points.iter().enumerate() {
                    self.exponential(point, delta, ctx, memory, out)
                        .map_err(|e| (Some(p), e))?;
                }
            }
            Data::Summary(summary) => {
                for (p, point) in summary.data_points.iter().enumerate() {
                    if !out.recorded(0, point.flags) {
                        continue;
                    }
                    let ts_ms = partition_nanos_ms(point.time_unix_nano, "timeUnixNano", ctx)
                        .map_err(|e| (Some(p), e))?;
                    let row = Row::new(self, ts_ms, &point.attributes);
                    row.push(out, "_count", point.count as f64, "counter", None);
                    row.push(out, "_sum", point.sum, "counter", None);
                    for q in &point.quantile_values {
                        row.push(out, "", q.value, "gauge", Some(("quantile", q.quantile)));
                    }
                }
            }
        }
        Ok(())
    }

    fn number(
        &self,
        point: &'r NumberDataPoint,
        kind: &'static str,
        delta: bool,
        ctx: &RowContext<'_>,
        memory: &mut MetricMemory,
        out: &mut Collected<'r>,
    ) -> Result<(), FieldProblem> {
        if !out.recorded(point.exemplars.len(), point.flags) {
            return Ok(());
        }
        let value = match point.value {
            Some(Number::AsDouble(v)) => v,
            Some(Number::AsInt(v)) => v as f64,
            None => return Err(FieldProblem::Missing("asDouble or asInt")),
        };
        let ts_ms = partition_nanos_ms(point.time_unix_nano, "timeUnixNano", ctx)?;
        let row = Row::new(self, ts_ms, &point.attributes);
        let value = if delta {
            row.running_total(memory, "", None, value)
        } else {
            value
        };
        row.push(out, "", value, kind, None);
        Ok(())
    }

    fn histogram(
        &self,
        point: &'r HistogramDataPoint,
        delta: bool,
        ctx: &RowContext<'_>,
        memory: &mut MetricMemory,
        out: &mut Collected<'r>,
    ) -> Result<(), FieldProblem> {
        if !out.recorded(point.exemplars.len(), point.flags) {
            return Ok(());
        }
        let bounds = &point.explicit_bounds;
        let counts = &point.bucket_counts;
        if !counts.is_empty() && counts.len() != bounds.len() + 1 {
            return Err(FieldProblem::Invalid(format!(
                "{} bucketCounts for {} explicitBounds; expected one more count than bounds",
                counts.len(),
                bounds.len()
            )));
        }
        let ts_ms = partition_nanos_ms(point.time_unix_nano, "timeUnixNano", ctx)?;
        let row = Row::new(self, ts_ms, &point.attributes);
        row.count_and_sum(out, memory, delta, point.count, point.sum);
        let mut below = 0u64;
        for (i, count) in counts.iter().enumerate() {
            below = below.saturating_add(*count);
            let le = bounds.get(i).copied().unwrap_or(f64::INFINITY);
            row.cumulative(
                out,
                memory,
                delta,
                "_bucket",
                below as f64,
                Some(("le", le)),
            );
        }
        if !counts.is_empty() {
            row.percentiles(out, memory, delta, explicit_buckets(bounds, counts));
        }
        Ok(())
    }

    fn exponential(
        &self,
        point: &'r ExponentialHistogramDataPoint,
        delta: bool,
        ctx: &RowContext<'_>,
        memory: &mut MetricMemory,
        out: &mut Collected<'r>,
    ) -> Result<(), FieldProblem> {
        if !out.recorded(point.exemplars.len(), point.flags) {
            return Ok(());
        }
        if !(-10..=20).contains(&point.scale) {
            return Err(FieldProblem::Invalid(format!(
                "scale {} is outside OpenTelemetry's -10 to 20",
                point.scale
            )));
        }
        let ts_ms = partition_nanos_ms(point.time_unix_nano, "timeUnixNano", ctx)?;
        let row = Row::new(self, ts_ms, &point.attributes);
        row.count_and_sum(out, memory, delta, point.count, point.sum);
        row.percentiles(out, memory, delta, exponential_buckets(point));
        Ok(())
    }
}

fn is_delta(temporality: i32) -> bool {
    temporality == AggregationTemporality::Delta as i32
}

/// The rows of one data point being written.
struct Row<'t, 'r> {
    target: &'t Target<'r>,
    ts_ms: i64,
    attributes: &'r [KeyValue],
}

impl<'t, 'r> Row<'t, 'r> {
    fn new(target: &'t Target<'r>, ts_ms: i64, attributes: &'r [KeyValue]) -> Self {
        Row {
            target,
            ts_ms,
            attributes,
        }
    }

    fn push(
        &self,
        out: &mut Collected<'r>,
        suffix: &'static str,
        value: f64,
        kind: &'static str,
        extra_label: Option<(&'static str, f64)>,
    ) {
        if !value.is_finite() {
            out.unused.not_finite += 1;
            return;
        }
        out.points.push(Point {
            ts_ms: self.ts_ms,
            metric: &self.target.metric.name,
            suffix,
            value,
            kind,
            attributes: self.attributes,
            extra_label,
            resource: self.target.resource,
            extra: self.target.extra,
        });
    }

    /// The `_count` and `_sum` counter rows of a histogram point (no `_sum` when
    /// the point has none).
    fn count_and_sum(
        &self,
        out: &mut Collected<'r>,
        memory: &mut MetricMemory,
        delta: bool,
        count: u64,
        sum: Option<f64>,
    ) {
        self.cumulative(out, memory, delta, "_count", count as f64, None);
        if let Some(sum) = sum {
            self.cumulative(out, memory, delta, "_sum", sum, None);
        }
    }

    /// A counter row; a delta value is added to its series' running total first.
    fn cumulative(
        &self,
        out: &mut Collected<'r>,
        memory: &mut MetricMemory,
        delta: bool,
        suffix: &'static str,
        value: f64,
        extra_label: Option<(&'static str, f64)>,
    ) {
        let value = if delta {
            self.running_total(memory, suffix, extra_label, value)
        } else {
            value
        };
        self.push(out, suffix, value, "counter", extra_label);
    }

    /// Adds a delta to its series' running total; the new total.
    fn running_total(
        &self,
        memory: &mut MetricMemory,
        suffix: &'static str,
        extra_label: Option<(&'static str, f64)>,
        value: f64,
    ) -> f64 {
        let key = self.series_key(suffix, extra_label);
        let total = memory.totals.get(key).copied().unwrap_or(0.0) + value;
        memory.totals.stage(key, total);
        total
    }

    /// The percentile gauges of the point's interval.
    fn percentiles(
        &self,
        out: &mut Collected<'r>,
        memory: &mut MetricMemory,
        delta: bool,
        buckets: Vec<Bucket>,
    ) {
        let interval = if delta {
            buckets
        } else {
            let key = self.series_key("_buckets", None);
            let increase = memory
                .buckets
                .get(key)
                .and_then(|previous| increase(previous, &buckets))
                .unwrap_or_else(|| buckets.clone());
            memory.buckets.stage(key, buckets);
            increase
        };
        for (suffix, q) in PERCENTILES {
            if let Some(value) = quantile(&interval, q) {
                self.push(out, suffix, value, "gauge", None);
            }
        }
    }

    /// A hash naming the series: metric, suffix, resource and point attributes.
    fn series_key(&self, suffix: &str, extra_label: Option<(&'static str, f64)>) -> u64 {
        let mut hash = Fnv1a::default();
        hash.feed(self.target.metric.name.as_bytes())
            .feed(&[0])
            .feed(suffix.as_bytes());
        let mut text = String::new();
        for kv in self
            .target
            .resource_attributes
            .iter()
            .chain(self.attributes)
        {
            hash.feed(&[0]).feed(kv.key.as_bytes()).feed(&[1]);
            if let Some(value) = values::label_text(kv.value.as_ref(), &mut text) {
                hash.feed(value.as_bytes());
            }
        }
        if let Some((key, bound)) = extra_label {
            hash.feed(&[2])
                .feed(key.as_bytes())
                .feed(&bound.to_bits().to_le_bytes());
        }
        hash.finish()
    }
}

/// The buckets of an explicit-bounds histogram. The first bucket starts at 0 when
/// its bound is positive (as Prometheus assumes); the last, unbounded one is
/// collapsed on the highest bound.
fn explicit_buckets(bounds: &[f64], counts: &[u64]) -> Vec<Bucket> {
    counts
        .iter()
        .enumerate()
        .map(|(i, count)| {
            let upper = bounds.get(i).or(bounds.last()).copied().unwrap_or(f64::NAN);
            let lower = match i {
                0 if upper > 0.0 => 0.0,
                0 => upper,
                _ => bounds[i - 1],
            };
            Bucket {
                lower,
                upper,
                count: *count,
            }
        })
        .collect()
}

/// The buckets of an exponential histogram, lowest first: index `i` at scale `s`
/// holds `(base^i, base^(i+1)]` with `base = 2^(2^-s)`, mirrored for the negative
/// range; the zero bucket spans the zero threshold.
fn exponential_buckets(point: &ExponentialHistogramDataPoint) -> Vec<Bucket> {
    let base = 2f64.powf(2f64.powi(-point.scale));
    let bound = |index: i64| base.powf(index as f64);
    let expand = |buckets: &Option<ExponentialBuckets>| -> Vec<(i64, u64)> {
        buckets.as_ref().map_or_else(Vec::new, |b| {
            b.bucket_counts
                .iter()
                .enumerate()
                .map(|(j, c)| (i64::from(b.offset) + j as i64, *c))
                .collect()
        })
    };
    let mut out: Vec<Bucket> = expand(&point.negative)
        .into_iter()
        .rev()
        .map(|(i, count)| Bucket {
            lower: -bound(i + 1),
            upper: -bound(i),
            count,
        })
        .collect();
    if point.zero_count > 0 {
        out.push(Bucket {
            lower: -point.zero_threshold,
            upper: point.zero_threshold,
            count: point.zero_count,
        });
    }
    out.extend(
        expand(&point.positive)
            .into_iter()
            .map(|(i, count)| Bucket {
                lower: bound(i),
                upper: bound(i + 1),
                count,
            }),
    );
    out
}

/// The counts added since `previous`, when the buckets are the same and none went
/// down (else the series was reset or re-bucketed: `None`).
fn increase(previous: &[Bucket], current: &[Bucket]) -> Option<Vec<Bucket>> {
    if previous.len() != current.len() {
        return None;
    }
    previous
        .iter()
        .zip(current)
        .map(|(p, c)| {
            let same =
                p.lower.to_bits() == c.lower.to_bits() && p.upper.to_bits() == c.upper.to_bits();
            (same && c.count >= p.count).then(|| Bucket {
                count: c.count - p.count,
                ..*c
            })
        })
        .collect()
}

/// The `q` quantile of the values counted in `buckets`, interpolated linearly in
/// the bucket it falls in; `None` when they count nothing.
fn quantile(buckets: &[Bucket], q: f64) -> Option<f64> {
    // Saturating: counts come from the wire, and a forged point may not overflow.
    let total = buckets
        .iter()
        .fold(0u64, |sum, b| sum.saturating_add(b.count));
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for bucket in buckets {
        let through = below.saturating_add(bucket.count);
        if bucket.count > 0 && through as f64 >= rank {
            let within = (rank - below as f64) / bucket.count as f64;
            return Some(bucket.lower + (bucket.upper - bucket.lower) * within.clamp(0.0, 1.0));
        }
        below = through;
    }
    buckets.last().map(|b| b.upper)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(lower: f64, upper: f64, count: u64) -> Bucket {
        Bucket {
            lower,
            upper,
            count,
        }
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_as_prometheus_does() {
        // 10 values in (0, 100], 30 in (100, 200]: the median is rank 20, the
        // tenth of thirty in the second bucket.
        let buckets = [b(0.0, 100.0, 10), b(100.0, 200.0, 30), b(200.0, 200.0, 0)];
        let median = quantile(&buckets, 0.5).unwrap();
        assert!((median - (100.0 + 100.0 / 3.0)).abs() < 1e-9, "{median}");
        assert_eq!(quantile(&buckets, 0.25), Some(100.0));
        assert_eq!(quantile(&buckets, 0.0), Some(0.0));
        assert_eq!(quantile(&[b(0.0, 1.0, 0)], 0.5), None);
        // Counts near u64::MAX (a forged point) saturate instead of overflowing.
        let huge = [b(0.0, 1.0, u64::MAX), b(1.0, 2.0, u64::MAX)];
        assert!(quantile(&huge, 0.99).is_some_and(f64::is_finite));
    }

    #[test]
    fn explicit_buckets_start_at_zero_and_collapse_the_overflow() {
        assert_eq!(
            explicit_buckets(&[5.0, 10.0], &[1, 2, 3]),
            vec![b(0.0, 5.0, 1), b(5.0, 10.0, 2), b(10.0, 10.0, 3)]
        );
        assert_eq!(
            explicit_buckets(&[-1.0], &[4, 0]),
            vec![b(-1.0, -1.0, 4), b(-1.0, -1.0, 0)]
        );
    }

    #[test]
    fn exponential_buckets_follow_the_scale() {
        // Scale 0: base 2; positive offset 1 holds (2, 4] and (4, 8].
        let point = ExponentialHistogramDataPoint {
            scale: 0,
            zero_count: 1,
            zero_threshold: 0.0,
            positive: Some(ExponentialBuckets {
                offset: 1,
                bucket_counts: vec![3, 4],
            }),
            negative: Some(ExponentialBuckets {
                offset: 0,
                bucket_counts: vec![2],
            }),
            ..Default::default()
        };
        assert_eq!(
            exponential_buckets(&point),
            vec![
                b(-2.0, -1.0, 2),
                b(0.0, 0.0, 1),
                b(2.0, 4.0, 3),
                b(4.0, 8.0, 4)
            ]
        );
    }

    #[test]
    fn the_increase_needs_the_same_buckets_and_no_decrease() {
        let before = [b(0.0, 1.0, 2), b(1.0, 2.0, 5)];
        assert_eq!(
            increase(&before, &[b(0.0, 1.0, 3), b(1.0, 2.0, 9)]),
            Some(vec![b(0.0, 1.0, 1), b(1.0, 2.0, 4)])
        );
        assert_eq!(increase(&before, &[b(0.0, 1.0, 1), b(1.0, 2.0, 9)]), None);
        assert_eq!(increase(&before, &[b(0.0, 1.5, 3), b(1.5, 2.0, 9)]), None);
        assert_eq!(increase(&before, &[b(0.0, 1.0, 3)]), None);
    }
}
