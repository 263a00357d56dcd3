//! Log lines: `{"ts", "service", "level", "message", "trace_id", "host", "attributes"}`
//! into table `logs`. Levels cara recognises (in any case and the usual spellings:
//! syslog's, logcat's single letters, java.util.logging's) are normalised to one of
//! [`LEVELS`]; any other level is kept as written (a line is never refused for its
//! level); a missing level is `info`.

use std::sync::Arc;

use super::fields::{self, RowContext, Value};
use super::provenance::ProvenanceColumns;
use super::FieldProblem;
use arrow::array::{ArrayBuilder, ArrayRef, StringBuilder, TimestampMillisecondBuilder};
use arrow::record_batch::RecordBatch;
use cara_operators::schema::Table;

const KNOWN: &[&str] = &[
    "ts",
    "service",
    "level",
    "message",
    "trace_id",
    "host",
    "attributes",
];

/// The levels cara understands, lower case, most severe last.
pub const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "fatal"];

pub(crate) struct LogRow<'v> {
    ts_ms: i64,
    service: &'v str,
    level: &'v str,
    message: &'v str,
    trace_id: Option<&'v str>,
    host: Option<&'v str>,
    attributes: Option<String>,
    extra: Option<String>,
}

/// Spellings of a level beside its canonical name.
const LEVEL_ALIASES: &[(&str, &str)] = &[
    ("warning", "warn"),
    ("err", "error"),
    ("critical", "fatal"),
    ("crit", "fatal"),
    ("panic", "fatal"),
    ("emerg", "fatal"),
    ("alert", "fatal"),
    ("information", "info"),
    ("notice", "info"),
    ("emergency", "fatal"),
    ("verbose", "trace"),
    // logcat (Android): V D I W E F, A for assert.
    ("v", "trace"),
    ("d", "debug"),
    ("i", "info"),
    ("w", "warn"),
    ("e", "error"),
    ("f", "fatal"),
    ("a", "fatal"),
    // java.util.logging.
    ("severe", "error"),
    ("config", "info"),
    ("fine", "debug"),
    ("finer", "trace"),
    ("finest", "trace"),
];

fn normalise_level(raw: &str) -> Option<&'static str> {
    LEVELS
        .iter()
        .copied()
        .find(|l| l.eq_ignore_ascii_case(raw))
        .or_else(|| {
            LEVEL_ALIASES
                .iter()
                .find(|(alias, _)| alias.eq_ignore_ascii_case(raw))
                .map(|(_, level)| *level)
        })
}

pub(crate) fn parse<'v>(
    v: Value<'_, 'v>,
    ctx: &RowContext<'_>,
) -> Result<LogRow<'v>, FieldProblem> {
    let mut record = fields::Record::read(v, KNOWN)?;
    let extra = record.extra.take();
    let obj = &record;
    let level = match fields::optional_str(obj, "level")? {
        None => "info",
        Some(raw) => normalise_level(raw).unwrap_or(raw),
    };
    Ok(LogRow {
        ts_ms: fields::partition_time_ms(fields::required(obj, "ts")?, "ts", ctx)?,
        service: fields::required_str(obj, "service")?,
        level,
        message: fields::required_str(obj, "message")?,
        trace_id: fields::optional_str(obj, "trace_id")?,
        host: fields::optional_str(obj, "host")?,
        attributes: obj
            .present("attributes")
            .map(|a| fields::json_object_text(a, "attributes"))
            .transpose()?,
        extra,
    })
}

#[derive(Default)]
pub(crate) struct LogRows {
    ts: TimestampMillisecondBuilder,
    service: StringBuilder,
    level: StringBuilder,
    message: StringBuilder,
    trace_id: StringBuilder,
    host: StringBuilder,
    attributes: StringBuilder,
    extra: StringBuilder,
    provenance: ProvenanceColumns,
}

impl LogRows {
    pub fn append(&mut self, row: LogRow<'_>, ctx: &RowContext<'_>, index: i32) {
        self.ts.append_value(row.ts_ms);
        self.service.append_value(row.service);
        self.level.append_value(row.level);
        self.message.append_value(row.message);
        self.trace_id.append_option(row.trace_id);
        self.host.append_option(row.host);
        self.attributes.append_option(row.attributes);
        self.extra.append_option(row.extra);
        self.provenance.append(ctx.pos, index);
    }

    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn finish(&mut self) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.ts.finish().with_timezone("UTC")),
            Arc::new(self.service.finish()),
            Arc::new(self.level.finish()),
            Arc::new(self.message.finish()),
            Arc::new(self.trace_id.finish()),
            Arc::new(self.host.finish()),
            Arc::new(self.attributes.finish()),
            Arc::new(self.extra.finish()),
        ];
        // Template columns: null until the log operator fills them.
        let rows = columns[0].len();
        let schema = Table::Logs.schema();
        for name in ["template_id", "template", "params"] {
            let field = schema
                .field_with_name(name)
                .expect("logs schema has template columns");
            columns.push(arrow::array::new_null_array(field.data_type(), rows));
        }
        columns.extend(self.provenance.finish());
        super::batch(Table::Logs, columns)
    }
}

#[cfg(test)]
mod tests {
    use super::normalise_level;

    #[test]
    fn levels_are_recognised_in_any_case_and_spelling() {
        for (raw, level) in [
            ("ERROR", Some("error")),
            ("Warn", Some("warn")),
            ("WARNING", Some("warn")),
            ("err", Some("error")),
            ("Critical", Some("fatal")),
            ("notice", Some("info")),
            ("trace", Some("trace")),
            ("E", Some("error")),
            ("V", Some("trace")),
            ("SEVERE", Some("error")),
            ("loud", None),
            ("", None),
            ("warnings", None),
        ] {
            assert_eq!(normalise_level(raw), level, "{raw}");
        }
    }
}
