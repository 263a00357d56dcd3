//! Log lines: `{"ts", "service", "level", "message", "trace_id", "host", "attributes"}`
//! into table `logs`. A level is read in the vocabularies people log with (names in
//! any case: Log4j and Logback, syslog, java.util.logging, Python, Go's zap and slog,
//! logcat's letters; numbers: syslog's, Bunyan's and Pino's, OpenTelemetry's) and
//! written three ways: `level`, normalised to one of [`LEVELS`] (or [`UNKNOWN`]: a
//! line is never refused for its level), `severity_number` (OpenTelemetry's), and
//! `level_text`, as written. A line without a level is `info`.

use std::borrow::Cow;
use std::sync::Arc;

use super::fields::{self, RowContext, Value};
use super::provenance::ProvenanceColumns;
use super::FieldProblem;
use arrow::array::{
    ArrayBuilder, ArrayRef, Int32Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::record_batch::RecordBatch;
use cara_operators::schema::Table;
use simd_json::prelude::*;

const KNOWN: &[&str] = &[
    "ts",
    "service",
    "level",
    "message",
    "trace_id",
    "host",
    "attributes",
];

/// The levels cara normalises to, lower case, most severe last; a level it cannot
/// read is [`UNKNOWN`].
pub const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "fatal"];

/// The normalised level of a level cara cannot read (the line is kept).
pub const UNKNOWN: &str = "unknown";

/// One validated log line: borrowed from a flat-JSON message, or from an OTLP
/// request (whose non-string bodies and binary ids become text, hence the `Cow`s).
pub(crate) struct LogRow<'v> {
    pub ts_ms: i64,
    pub service: &'v str,
    pub level: Level<'v>,
    pub message: Cow<'v, str>,
    pub trace_id: Option<Cow<'v, str>>,
    pub host: Option<&'v str>,
    pub attributes: Option<String>,
    pub extra: Option<String>,
}

/// A line's level: normalised, with OpenTelemetry's severity number, and as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Level<'v> {
    /// One of [`LEVELS`] or [`UNKNOWN`].
    pub normalised: &'static str,
    /// OpenTelemetry's SeverityNumber (1–24; 0 when unknown).
    pub severity_number: i32,
    /// The level as the line wrote it; `None` when it had none.
    pub text: Option<Cow<'v, str>>,
}

/// Names of levels in the common vocabularies, lower case, with the normalised level
/// and OpenTelemetry's severity number (the number of the range's first step, or
/// the step the name stands for: syslog's `notice` is INFO2).
const NAMES: &[(&str, &str, i32)] = &[
    // Log4j, Logback, Go's zap and slog, Python, OpenTelemetry's severity texts.
    ("trace", "trace", 1),
    ("debug", "debug", 5),
    ("info", "info", 9),
    ("warn", "warn", 13),
    ("error", "error", 17),
    ("fatal", "fatal", 21),
    ("warning", "warn", 13),
    ("information", "info", 9),
    ("verbose", "trace", 1),
    // Python.
    ("critical", "fatal", 21),
    // zap: DPanic logs at error in production, panic and fatal end the process.
    ("dpanic", "error", 19),
    ("panic", "fatal", 22),
    // syslog (RFC 5424).
    ("emerg", "fatal", 24),
    ("emergency", "fatal", 24),
    ("alert", "fatal", 23),
    ("crit", "fatal", 22),
    ("err", "error", 17),
    ("notice", "info", 10),
    // java.util.logging.
    ("severe", "error", 17),
    ("config", "info", 9),
    ("fine", "debug", 5),
    ("finer", "trace", 2),
    ("finest", "trace", 1),
    // logcat (Android): V D I W E F, A for assert.
    ("v", "trace", 1),
    ("d", "debug", 5),
    ("i", "info", 9),
    ("w", "warn", 13),
    ("e", "error", 17),
    ("f", "fatal", 21),
    ("a", "fatal", 21),
];

/// A level written as a name in any case, or as a number: the normalised level
/// and severity number.
fn level_of_name(raw: &str) -> Option<(&'static str, i32)> {
    let raw = raw.trim();
    NAMES
        .iter()
        .find(|(name, _, _)| name.eq_ignore_ascii_case(raw))
        .map(|(_, level, number)| (*level, *number))
        .or_else(|| raw.parse::<i64>().ok().and_then(level_of_number))
}

/// A level written as a number. Numbers mean different things to different
/// libraries; cara reads 0–7 as syslog severities (0 emergency … 7 debug), 10–60 in
/// steps of ten as Bunyan's and Pino's (10 trace … 60 fatal), other 1–24 as
/// OpenTelemetry's SeverityNumber, and -4 as slog's debug. Anything else is unknown.
fn level_of_number(number: i64) -> Option<(&'static str, i32)> {
    Some(match number {
        0 => ("fatal", 24),
        1 => ("fatal", 23),
        2 => ("fatal", 22),
        3 => ("error", 17),
        4 => ("warn", 13),
        5 => ("info", 10),
        6 => ("info", 9),
        7 => ("debug", 5),
        10 => ("trace", 1),
        20 => ("debug", 5),
        30 => ("info", 9),
        40 => ("warn", 13),
        50 => ("error", 17),
        60 => ("fatal", 21),
        -4 => ("debug", 5),
        n @ 8..=24 => {
            let n = n as i32;
            let level =
                ["trace", "debug", "info", "warn", "error", "fatal"][((n - 1) / 4) as usize];
            (level, n)
        }
        _ => return None,
    })
}

/// The level of a line that wrote `raw`; a line without a level is `info`.
pub(crate) fn level(raw: Option<Cow<'_, str>>) -> Level<'_> {
    let Some(text) = raw else {
        return Level {
            normalised: "info",
            severity_number: 9,
            text: None,
        };
    };
    let (normalised, severity_number) = level_of_name(&text).unwrap_or((UNKNOWN, 0));
    Level {
        normalised,
        severity_number,
        text: Some(text),
    }
}

/// The `level` field of a flat-JSON line: a string or a number (Pino and Bunyan
/// write numbers), as written.
fn level_field<'v>(obj: &fields::Record<'_, 'v>) -> Result<Option<Cow<'v, str>>, FieldProblem> {
    let Some(v) = obj.present("level") else {
        return Ok(None);
    };
    if let Some(s) = v.into_string() {
        return Ok(Some(Cow::Borrowed(s)));
    }
    if let Some(n) = v.as_i64() {
        return Ok(Some(Cow::Owned(n.to_string())));
    }
    if v.is_null() {
        return Ok(None);
    }
    Err(FieldProblem::WrongType {
        field: "level".into(),
        expected: "a string or an integer",
        got: fields::type_name(v),
    })
}

pub(crate) fn parse<'v>(
    v: Value<'_, 'v>,
    ctx: &RowContext<'_>,
) -> Result<LogRow<'v>, FieldProblem> {
    let mut record = fields::Record::read(v, KNOWN)?;
    let extra = record.extra.take();
    let obj = &record;
    let level = level(level_field(obj)?);
    Ok(LogRow {
        ts_ms: fields::partition_time_ms(fields::required(obj, "ts")?, "ts", ctx)?,
        service: fields::required_str(obj, "service")?,
        level,
        message: Cow::Borrowed(fields::required_str(obj, "message")?),
        trace_id: fields::optional_str(obj, "trace_id")?.map(Cow::Borrowed),
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
    level_text: StringBuilder,
    severity_number: Int32Builder,
    /// Lines whose level cara could not read, since the last `take_unknown_levels`.
    unknown_levels: u64,
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
        if row.level.normalised == UNKNOWN {
            self.unknown_levels += 1;
        }
        self.level.append_value(row.level.normalised);
        self.level_text.append_option(row.level.text);
        self.severity_number.append_value(row.level.severity_number);
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

    /// Lines appended whose level was unknown, since the last call.
    pub fn take_unknown_levels(&mut self) -> u64 {
        std::mem::take(&mut self.unknown_levels)
    }

    pub fn finish(&mut self) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.ts.finish().with_timezone("UTC")),
            Arc::new(self.service.finish()),
            Arc::new(self.level.finish()),
            Arc::new(self.level_text.finish()),
            Arc::new(self.severity_number.finish()),
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
    use super::*;

    fn read(raw: &str) -> (&'static str, i32) {
        let l = level(Some(Cow::Borrowed(raw)));
        assert_eq!(l.text.as_deref(), Some(raw), "kept as written");
        (l.normalised, l.severity_number)
    }

    /// Each vocabulary, a row per spelling: normalised level and severity number.
    #[test]
    fn levels_are_read_in_every_common_vocabulary() {
        for (raw, expected) in [
            // Log4j, Logback, slog, zap, Python, any case.
            ("ERROR", ("error", 17)),
            ("Warn", ("warn", 13)),
            ("WARNING", ("warn", 13)),
            ("CRITICAL", ("fatal", 21)),
            ("dpanic", ("error", 19)),
            ("trace", ("trace", 1)),
            // syslog names and numbers.
            ("err", ("error", 17)),
            ("crit", ("fatal", 22)),
            ("notice", ("info", 10)),
            ("emerg", ("fatal", 24)),
            ("0", ("fatal", 24)),
            ("3", ("error", 17)),
            ("6", ("info", 9)),
            ("7", ("debug", 5)),
            // logcat letters.
            ("E", ("error", 17)),
            ("V", ("trace", 1)),
            ("W", ("warn", 13)),
            // java.util.logging.
            ("SEVERE", ("error", 17)),
            ("FINER", ("trace", 2)),
            ("CONFIG", ("info", 9)),
            // Bunyan and Pino numbers.
            ("30", ("info", 9)),
            ("50", ("error", 17)),
            ("60", ("fatal", 21)),
            // OpenTelemetry severity numbers beyond syslog's.
            ("9", ("info", 9)),
            ("18", ("error", 18)),
            ("24", ("fatal", 24)),
            // slog's debug.
            ("-4", ("debug", 5)),
            // Unknown: kept, never refused.
            ("combo", (UNKNOWN, 0)),
            ("loud", (UNKNOWN, 0)),
            ("", (UNKNOWN, 0)),
            ("warnings", (UNKNOWN, 0)),
            ("99", (UNKNOWN, 0)),
        ] {
            assert_eq!(read(raw), expected, "{raw}");
        }
        let missing = level(None);
        assert_eq!(
            (missing.normalised, missing.severity_number, missing.text),
            ("info", 9, None)
        );
    }
}
