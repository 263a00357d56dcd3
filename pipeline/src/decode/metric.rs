//! Metric points: `{"ts", "name", "value", "type", "labels"}` into table `metrics`.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, Float64Builder, MapBuilder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::record_batch::RecordBatch;
use cara_operators::schema::Table;
use simd_json::prelude::*;

use super::fields::{self, Object, RowContext, Value};
use super::provenance::ProvenanceColumns;
use super::FieldProblem;

const KNOWN: &[&str] = &["ts", "name", "value", "type", "labels"];

/// One validated metric point, borrowing from the parsed message.
pub(crate) struct MetricRow<'t, 'v> {
    ts_ms: i64,
    name: &'v str,
    value: f64,
    kind: &'static str,
    /// The validated `labels` object, appended straight from the parsed message.
    labels: Option<Object<'t, 'v>>,
    extra: Option<String>,
}

pub(crate) fn parse<'t, 'v>(
    v: Value<'t, 'v>,
    ctx: &RowContext<'_>,
) -> Result<MetricRow<'t, 'v>, FieldProblem> {
    let mut record = fields::Record::read(v, KNOWN)?;
    let extra = record.extra.take();
    let obj = &record;
    let ts_ms = fields::partition_time_ms(fields::required(obj, "ts")?, "ts", ctx)?;
    let name = fields::required_str(obj, "name")?;
    let value = fields::finite_number(fields::required(obj, "value")?, "value")?;
    let kind = match fields::optional_str(obj, "type")? {
        None | Some("gauge") => "gauge",
        Some("counter") => "counter",
        Some(other) => {
            return Err(FieldProblem::NotAllowed {
                field: "type",
                value: other.to_owned(),
                allowed: "counter, gauge",
            })
        }
    };
    Ok(MetricRow {
        ts_ms,
        name,
        value,
        kind,
        labels: labels(obj)?,
        extra,
    })
}

/// The `labels` object, checked to hold scalars only.
fn labels<'t, 'v>(obj: &fields::Record<'t, 'v>) -> Result<Option<Object<'t, 'v>>, FieldProblem> {
    let Some(v) = obj.present("labels") else {
        return Ok(None);
    };
    let Some(map) = v.as_object() else {
        return Err(FieldProblem::WrongType {
            field: "labels".into(),
            expected: "an object of strings",
            got: fields::type_name(v),
        });
    };
    for (key, value) in map.iter() {
        fields::check_scalar(value, key)?;
    }
    Ok(Some(map))
}

/// The first value of `key` in a label object.
fn first_label<'t, 'v>(labels: &Object<'t, 'v>, key: &str) -> Option<Value<'t, 'v>> {
    labels.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// Arrow builders for table `metrics`.
pub(crate) struct MetricRows {
    ts: TimestampMillisecondBuilder,
    name: StringBuilder,
    value: Float64Builder,
    kind: StringBuilder,
    service: StringBuilder,
    labels: MapBuilder<StringBuilder, StringBuilder>,
    extra: StringBuilder,
    provenance: ProvenanceColumns,
    scratch: String,
}

impl Default for MetricRows {
    fn default() -> Self {
        MetricRows {
            ts: TimestampMillisecondBuilder::new(),
            name: StringBuilder::new(),
            value: Float64Builder::new(),
            kind: StringBuilder::new(),
            service: StringBuilder::new(),
            labels: MapBuilder::new(None, StringBuilder::new(), StringBuilder::new()),
            extra: StringBuilder::new(),
            provenance: ProvenanceColumns::default(),
            scratch: String::new(),
        }
    }
}

impl MetricRows {
    pub fn append(&mut self, row: MetricRow<'_, '_>, ctx: &RowContext<'_>, index: i32) {
        self.ts.append_value(row.ts_ms);
        self.name.append_value(row.name);
        self.value.append_value(row.value);
        self.kind.append_value(row.kind);
        let service = row
            .labels
            .as_ref()
            .and_then(|l| first_label(l, "service"))
            .and_then(|s| s.into_string());
        self.service.append_option(service);
        for (i, (key, value)) in row.labels.iter().flat_map(|l| l.iter()).enumerate() {
            // A repeated key keeps its first value, as top-level fields do (a map with
            // a repeated key breaks readers such as DuckDB). Label sets are small:
            // comparing with the keys before is cheaper than hashing them.
            let labels = row.labels.iter().flat_map(|l| l.iter());
            if labels.take(i).any(|(earlier, _)| earlier == key) {
                continue;
            }
            self.labels.keys().append_value(key);
            fields::append_scalar_text(self.labels.values(), value, &mut self.scratch);
        }
        // Appending an entry to a map builder cannot fail once keys and values match.
        let _ = self.labels.append(true);
        self.extra.append_option(row.extra);
        self.provenance.append(ctx.pos, index);
    }

    /// Appends one point given field by field (the OTLP decoder's rows);
    /// `write_labels` appends the label entries.
    #[allow(clippy::too_many_arguments)]
    pub fn append_point(
        &mut self,
        ts_ms: i64,
        name: &str,
        value: f64,
        kind: &'static str,
        service: Option<&str>,
        extra: Option<&str>,
        pos: &super::SourcePosition<'_>,
        index: i32,
        write_labels: impl FnOnce(&mut MapBuilder<StringBuilder, StringBuilder>),
    ) {
        self.ts.append_value(ts_ms);
        self.name.append_value(name);
        self.value.append_value(value);
        self.kind.append_value(kind);
        self.service.append_option(service);
        write_labels(&mut self.labels);
        // Appending an entry to a map builder cannot fail once keys and values match.
        let _ = self.labels.append(true);
        self.extra.append_option(extra);
        self.provenance.append(pos, index);
    }

    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn finish(&mut self) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.ts.finish().with_timezone("UTC")),
            Arc::new(self.name.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.service.finish()),
            Arc::new(self.labels.finish()),
            Arc::new(self.extra.finish()),
        ];
        columns.extend(self.provenance.finish());
        super::batch(Table::Metrics, columns)
    }
}
