//! Decoders from cara's flat JSON wire format straight into Arrow batches.
//!
//! Owns: turning one Kafka message (a JSON object or an array of objects) into rows
//! of the `metrics`, `logs` or `spans` table, or into a [`DecodeError`] that says why
//! not; and the records cara exchanges between its own stages (SLO counts and trace
//! cells, one JSON object per message) into rows of their tables. A message is
//! decoded atomically: either every element becomes a row or the whole message is
//! refused (and the caller dead-letters its original bytes).
//!
//! Does not own: Kafka, dead-lettering, or file I/O.
//!
//! Parsing uses simd-json's tape (no tree of values is built) in place on a reused,
//! padded scratch buffer; rows are appended to Arrow builders that are finished into
//! one [`RecordBatch`] per flush.
//!
//! ```
//! use cara_pipeline::decode::{Decoder, DecodeLimits, Signal, SourcePosition};
//! let mut decoder = Decoder::new(Signal::Metrics, DecodeLimits::default());
//! let pos = SourcePosition { topic: "telemetry.metrics", partition: 0, offset: 7, kafka_ts_ms: None };
//! let msg = br#"{"ts":1700000000000,"name":"up","value":1,"labels":{"service":"checkout"}}"#;
//! assert_eq!(decoder.decode(Some(msg), &pos).unwrap(), 1);
//! assert_eq!(decoder.finish().num_rows(), 1);
//! ```

mod error;
mod fields;
mod log;
mod metric;
pub mod otlp;
mod provenance;
mod span;

use arrow::record_batch::RecordBatch;
use cara_operators::cost::partial::CostPartial;
use cara_operators::decisions::records::{DecisionEnvelope, VerdictRecord};
use cara_operators::exchange::{read_received, ExchangeRecord, RecordError, RecordRow, RecordRows};
use cara_operators::incidents::partial::AlertPartial;
use cara_operators::logs::partial::LogPartial;
use cara_operators::operator::Outbound;
use cara_operators::schema::Table;
use cara_operators::slo::partial::SloPartial;
use cara_operators::slo::tables::PartialRows;
use cara_operators::time::{EventTimeBounds, REPRESENTABLE_MS};
use cara_operators::traces::partial::TracePartial;
use simd_json::Tape;

pub use error::{DecodeError, FieldProblem};
pub use otlp::{OtlpEncoding, Unused};

/// How the messages of an input topic are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireFormat {
    /// cara's flat JSON (DESIGN.md, "Input wire format").
    FlatJson,
    /// OpenTelemetry's export requests as the Collector's Kafka exporter writes
    /// them, protobuf or JSON (read off each message, see [`OtlpEncoding`]).
    Otlp,
}

/// What a source topic carries: the three input signals, and the exchange topic
/// between the two SLO stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// Metric points.
    Metrics,
    /// Log lines.
    Logs,
    /// Spans.
    Spans,
    /// Per-minute SLO counts of the span partitions (cara's own records).
    SloPartials,
    /// Per-minute RED and service-graph cells of the span partitions (cara's own).
    TracePartials,
    /// Per-window template counts of the log partitions (cara's own).
    LogPartials,
    /// Alert transitions, calls and progress of every alert-raising stage (cara's
    /// own).
    AlertPartials,
    /// Verdicts on decisions, as people give them on `cara.approvals`.
    Approvals,
    /// The decision stage's input log (cara's own).
    DecisionInputs,
    /// Per-window usage of the metric partitions (cara's own).
    CostPartials,
}

impl Signal {
    /// The input signals users produce, in a fixed order.
    pub const ALL: [Signal; 3] = [Signal::Metrics, Signal::Logs, Signal::Spans];

    /// The archive table this signal is written to.
    pub fn table(self) -> Table {
        match self {
            Signal::Metrics => Table::Metrics,
            Signal::Logs => Table::Logs,
            Signal::Spans => Table::Spans,
            Signal::SloPartials => Table::SloPartials,
            Signal::TracePartials => Table::TracePartials,
            Signal::LogPartials => Table::LogPartials,
            Signal::AlertPartials => Table::AlertPartials,
            Signal::Approvals => Table::Approvals,
            Signal::DecisionInputs => Table::DecisionInputs,
            Signal::CostPartials => Table::CostPartials,
        }
    }

    /// Short name (`metrics`, `logs`, `spans`).
    pub fn name(self) -> &'static str {
        self.table().name()
    }

    /// The outbound stream the first stages send this exchange signal's records
    /// on; `None` for the inputs.
    pub fn sent_as(self) -> Option<Outbound> {
        match self {
            Signal::SloPartials => Some(Outbound::SloPartials),
            Signal::TracePartials => Some(Outbound::TracePartials),
            Signal::LogPartials => Some(Outbound::LogPartials),
            Signal::AlertPartials => Some(Outbound::AlertPartials),
            Signal::DecisionInputs => Some(Outbound::DecisionInputs),
            Signal::CostPartials => Some(Outbound::CostPartials),
            Signal::Metrics | Signal::Logs | Signal::Spans | Signal::Approvals => None,
        }
    }

    /// Whether this is the record of an exchange topic (cara's own, between the
    /// stages), not an input users produce.
    pub fn is_exchange(self) -> bool {
        matches!(
            self,
            Signal::SloPartials
                | Signal::TracePartials
                | Signal::LogPartials
                | Signal::AlertPartials
                | Signal::DecisionInputs
                | Signal::CostPartials
        )
    }
}

/// Where a message came from: enough to find it again in Kafka.
#[derive(Debug, Clone, Copy)]
pub struct SourcePosition<'a> {
    /// Kafka topic.
    pub topic: &'a str,
    /// Kafka partition.
    pub partition: i32,
    /// Offset of the message in its partition.
    pub offset: i64,
    /// The Kafka message timestamp, when the broker or producer set one.
    pub kafka_ts_ms: Option<i64>,
}

/// Limits a message must respect to be decoded.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Messages larger than this are refused as oversize.
    pub max_message_bytes: usize,
    /// Event times more than this many milliseconds after the Kafka message timestamp
    /// (or after the wall clock when the message has none) are refused.
    pub max_future_skew_ms: i64,
    /// Event times more than this many milliseconds before it are refused.
    pub max_past_age_ms: i64,
    /// A message whose records fall in more hours than this is refused; a partition's
    /// buffer is flushed once its rows span more. Each hour is a file per table, so
    /// this bounds the files one flush writes.
    pub max_hours_per_message: u64,
}

impl DecodeLimits {
    /// The event times a message with timestamp `reference_ms` may carry.
    pub fn bounds(&self, reference_ms: i64) -> EventTimeBounds {
        EventTimeBounds {
            oldest_ms: reference_ms
                .saturating_sub(self.max_past_age_ms)
                .max(*REPRESENTABLE_MS.start()),
            newest_ms: reference_ms
                .saturating_add(self.max_future_skew_ms)
                .min(*REPRESENTABLE_MS.end()),
        }
    }
}

/// What event times of a message are measured against: its Kafka timestamp, or the
/// wall clock when it has none.
fn reference_ms(pos: &SourcePosition<'_>) -> i64 {
    pos.kafka_ts_ms
        .filter(|ts| *ts > 0)
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis())
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_message_bytes: 1024 * 1024,
            max_future_skew_ms: 3_600_000,
            // Twenty years of 365.25 days: old data replayed with fresh Kafka
            // timestamps (a benchmark, a migration) still decodes; 1970 from a zeroed
            // clock does not.
            max_past_age_ms: 20 * 31_557_600_000,
            max_hours_per_message: 168,
        }
    }
}

/// Decodes messages of one signal into an Arrow batch under construction.
pub struct Decoder {
    limits: DecodeLimits,
    format: WireFormat,
    /// Running totals of OTLP delta series (metrics topics in OTLP only).
    otlp_memory: otlp::metrics::MetricMemory,
    /// What OTLP messages carried that are not rows, since [`Decoder::take_unused`].
    unused: Unused,
    scratch: Vec<u8>,
    buffers: simd_json::Buffers,
    /// The parse tape, kept between messages for its allocation (empty when kept).
    tape: Option<Tape<'static>>,
    rows: SignalRows,
    payload_bytes: usize,
    /// The first and last hour of the buffered rows.
    hours: Option<(i64, i64)>,
}

/// The builders of one signal; one decoder lives per partition, so the size
/// difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
enum SignalRows {
    Metrics(metric::MetricRows),
    Logs(log::LogRows),
    Spans(span::SpanRows),
    SloPartials(PartialRows),
    /// Exchange records kept whole (JSON): trace and log partials.
    Records(RecordRows, ReadRecord),
}

/// Parses and validates one whole exchange record; its row.
type ReadRecord = fn(&str, &EventTimeBounds, i64) -> Result<RecordRow, RecordError>;

/// The rows and reader of whole records of type `T`.
fn records<T: ExchangeRecord>() -> SignalRows {
    SignalRows::Records(RecordRows::new(T::TABLE), read_received::<T>)
}

impl Decoder {
    /// A decoder for `signal` in flat JSON enforcing `limits`.
    pub fn new(signal: Signal, limits: DecodeLimits) -> Decoder {
        Decoder::with_format(signal, WireFormat::FlatJson, limits)
    }

    /// A decoder for `signal` written in `format` enforcing `limits`. Only the
    /// input signals (metrics, logs, spans) have an OTLP form; the others are
    /// always cara's own JSON.
    pub fn with_format(signal: Signal, format: WireFormat, limits: DecodeLimits) -> Decoder {
        let rows = match signal {
            Signal::Metrics => SignalRows::Metrics(metric::MetricRows::default()),
            Signal::Logs => SignalRows::Logs(log::LogRows::default()),
            Signal::Spans => SignalRows::Spans(span::SpanRows::default()),
            Signal::SloPartials => SignalRows::SloPartials(PartialRows::default()),
            Signal::TracePartials => records::<TracePartial>(),
            Signal::LogPartials => records::<LogPartial>(),
            Signal::AlertPartials => records::<AlertPartial>(),
            Signal::Approvals => records::<VerdictRecord>(),
            Signal::DecisionInputs => records::<DecisionEnvelope>(),
            Signal::CostPartials => records::<CostPartial>(),
        };
        Decoder {
            limits,
            format,
            otlp_memory: Default::default(),
            unused: Unused::default(),
            scratch: Vec::with_capacity(4096),
            buffers: simd_json::Buffers::default(),
            tape: Some(Tape::null()),
            rows,
            payload_bytes: 0,
            hours: None,
        }
    }

    /// Decodes one message, appending its rows. Returns how many rows it added;
    /// on error nothing was appended.
    pub fn decode(
        &mut self,
        payload: Option<&[u8]>,
        pos: &SourcePosition<'_>,
    ) -> Result<usize, DecodeError> {
        let payload = match payload {
            Some(p) if !p.iter().all(u8::is_ascii_whitespace) => p,
            _ => return Err(DecodeError::Empty),
        };
        if payload.len() > self.limits.max_message_bytes {
            return Err(DecodeError::Oversize {
                size: payload.len(),
                limit: self.limits.max_message_bytes,
            });
        }
        if self.format == WireFormat::Otlp {
            if let Some(added) = self.decode_otlp(payload, pos) {
                let (added, hours) = added?;
                self.accepted(payload.len(), hours);
                return Ok(added);
            }
        }
        if let SignalRows::SloPartials(rows) = &mut self.rows {
            let record: SloPartial = serde_json::from_slice(payload)
                .map_err(|e| DecodeError::InvalidJson(e.to_string()))?;
            record
                .validate(&self.limits.bounds(reference_ms(pos)))
                .map_err(DecodeError::InvalidExchangeRecord)?;
            rows.append(&record, pos.topic, pos.partition, pos.offset);
            self.payload_bytes += payload.len();
            return Ok(record.minutes.len().max(1));
        }
        if let SignalRows::Records(rows, read) = &mut self.rows {
            let json = std::str::from_utf8(payload)
                .map_err(|e| DecodeError::InvalidJson(e.to_string()))?;
            let received_ms = reference_ms(pos);
            let row =
                read(json, &self.limits.bounds(received_ms), received_ms).map_err(|e| match e {
                    RecordError::Json(e) => DecodeError::InvalidJson(e),
                    RecordError::Invalid(e) => DecodeError::InvalidExchangeRecord(e),
                })?;
            rows.append(&row, json, pos.topic, pos.partition, pos.offset);
            self.payload_bytes += payload.len();
            return Ok(1);
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(payload);
        self.scratch
            .resize(payload.len() + simd_json::INPUT_PADDING, b' ');
        let mut tape = self.tape.take().unwrap_or_else(Tape::null).reset();
        let parsed = simd_json::fill_tape_padded(
            &mut self.scratch,
            payload.len(),
            &mut self.buffers,
            &mut tape,
        );
        let added = match parsed {
            Ok(()) => Self::append_document(&mut self.rows, tape.as_value(), pos, &self.limits),
            Err(e) => Err(DecodeError::InvalidJson(e.to_string())),
        };
        self.tape = Some(tape.reset());
        let (added, hours) = added?;
        self.accepted(payload.len(), hours);
        Ok(added)
    }

    /// Counts an accepted message of `bytes` whose rows fall in `hours` (first and
    /// last) into the buffered size and hour span.
    fn accepted(&mut self, bytes: usize, hours: Option<(i64, i64)>) {
        self.payload_bytes += bytes;
        if let Some(span) = hours {
            self.hours = Some(fields::widen(self.hours, span));
        }
    }

    /// Decodes one OTLP export request; `None` for a signal without an OTLP form.
    #[allow(clippy::type_complexity)]
    fn decode_otlp(
        &mut self,
        payload: &[u8],
        pos: &SourcePosition<'_>,
    ) -> Option<Result<(usize, Option<(i64, i64)>), DecodeError>> {
        let ctx = fields::RowContext::new(pos, &self.limits);
        let added = match &mut self.rows {
            SignalRows::Metrics(rows) => {
                otlp::metrics::decode(payload, &ctx, rows, &mut self.otlp_memory).map(
                    |(added, unused)| {
                        self.unused.add(unused);
                        added
                    },
                )
            }
            SignalRows::Logs(rows) => otlp::logs::decode(payload, &ctx, rows),
            SignalRows::Spans(rows) => otlp::traces::decode(payload, &ctx, rows),
            SignalRows::SloPartials(_) | SignalRows::Records(..) => return None,
        };
        Some(added.map(|added| (added, ctx.hours.get())))
    }

    /// What OTLP messages carried that are not rows since the last call.
    pub fn take_unused(&mut self) -> Unused {
        std::mem::take(&mut self.unused)
    }

    /// Log lines decoded whose level cara could not read (normalised `unknown`)
    /// since the last call.
    pub fn take_unknown_levels(&mut self) -> u64 {
        match &mut self.rows {
            SignalRows::Logs(rows) => rows.take_unknown_levels(),
            _ => 0,
        }
    }

    /// Appends the rows of one parsed message (an object or an array of them);
    /// returns how many, and the first and last hour they fall in.
    fn append_document(
        rows: &mut SignalRows,
        doc: fields::Value<'_, '_>,
        pos: &SourcePosition<'_>,
        limits: &DecodeLimits,
    ) -> Result<(usize, Option<(i64, i64)>), DecodeError> {
        let ctx = fields::RowContext::new(pos, limits);
        if doc.is_object() {
            rows.append_all(&[doc], &ctx)?;
            return Ok((1, ctx.hours.get()));
        }
        let Some(items) = doc.as_array() else {
            return Err(DecodeError::NotAnObject(fields::type_name(doc)));
        };
        if items.is_empty() {
            return Err(DecodeError::Empty);
        }
        let items: Vec<fields::Value<'_, '_>> = items.iter().collect();
        rows.append_all(&items, &ctx)?;
        Ok((items.len(), ctx.hours.get()))
    }

    /// Hours from the first to the last that the buffered rows fall in (0 without
    /// rows): the files, per table, their flush will write.
    pub fn hours_spanned(&self) -> u64 {
        fields::hours_in(self.hours)
    }

    /// Rows decoded since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        match &self.rows {
            SignalRows::Metrics(r) => r.len(),
            SignalRows::Logs(r) => r.len(),
            SignalRows::Spans(r) => r.len(),
            SignalRows::SloPartials(r) => r.len(),
            SignalRows::Records(r, _) => r.len(),
        }
    }

    /// True when no rows are buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of input payload behind the buffered rows (a cheap size estimate).
    pub fn payload_bytes(&self) -> usize {
        self.payload_bytes
    }

    /// Finishes the buffered rows into a batch and starts afresh.
    pub fn finish(&mut self) -> RecordBatch {
        self.payload_bytes = 0;
        self.hours = None;
        match &mut self.rows {
            SignalRows::Metrics(r) => r.finish(),
            SignalRows::Logs(r) => r.finish(),
            SignalRows::Spans(r) => r.finish(),
            SignalRows::SloPartials(r) => r.finish(),
            SignalRows::Records(r, _) => r.finish(),
        }
    }
}

impl SignalRows {
    /// Validates every element first, then appends them all, so a bad element
    /// leaves the builders untouched.
    fn append_all(
        &mut self,
        items: &[fields::Value<'_, '_>],
        ctx: &fields::RowContext<'_>,
    ) -> Result<(), DecodeError> {
        match self {
            SignalRows::Metrics(rows) => {
                append_validated(items, ctx, metric::parse, |r, i| rows.append(r, ctx, i))
            }
            SignalRows::Logs(rows) => {
                append_validated(items, ctx, log::parse, |r, i| rows.append(r, ctx, i))
            }
            SignalRows::Spans(rows) => {
                append_validated(items, ctx, span::parse, |r, i| rows.append(r, ctx, i))
            }
            // Decoded whole in `decode`, never as flat-JSON elements.
            SignalRows::SloPartials(_) => Err(DecodeError::NotAnObject("SLO partial record")),
            SignalRows::Records(..) => Err(DecodeError::NotAnObject("exchange record")),
        }
    }
}

fn append_validated<'t, 'v, R>(
    items: &[fields::Value<'t, 'v>],
    ctx: &fields::RowContext<'_>,
    parse: impl Fn(fields::Value<'t, 'v>, &fields::RowContext<'_>) -> Result<R, FieldProblem>,
    mut append: impl FnMut(R, i32),
) -> Result<(), DecodeError> {
    let element_error = |index: usize, problem| DecodeError::Element { index, problem };
    if let [only] = items {
        let row = parse(*only, ctx).map_err(|p| element_error(0, p))?;
        append(row, 0);
        return Ok(());
    }
    let mut parsed = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        parsed.push(parse(*item, ctx).map_err(|p| element_error(index, p))?);
    }
    ctx.check_hours()?;
    for (index, row) in parsed.into_iter().enumerate() {
        append(row, index as i32);
    }
    Ok(())
}

#[cfg(test)]
mod tests;

/// Assembles finished builder columns into a batch of `table`'s schema.
///
/// The builders are written against the schema in `cara_operators::schema`, so a
/// mismatch is a programming error caught by the unit tests, never input-driven.
fn batch(table: Table, columns: Vec<arrow::array::ArrayRef>) -> RecordBatch {
    RecordBatch::try_new(table.schema(), columns).unwrap_or_else(|e| {
        panic!(
            "decoder columns do not match the {} schema: {e}",
            table.name()
        )
    })
}
