//! OpenTelemetry's wire format as the Collector's Kafka exporter writes it: one
//! `Export{Metrics,Trace,Logs}ServiceRequest` per message, serialised as protobuf
//! (`otlp_proto`) or in OTLP's JSON mapping (`otlp_json`), decoded into the same rows
//! of the `metrics`, `spans` and `logs` tables as the flat JSON.
//!
//! Owns: telling the two encodings apart, parsing a request with the official
//! definitions (`opentelemetry-proto`: prost for protobuf, serde for JSON), and the
//! mapping of each signal ([`metrics`], [`traces`], [`logs`]), documented in the
//! README. A message is decoded atomically, as the flat JSON is: every record
//! becomes a row, or the whole message goes to the dead-letter topic with the path
//! of the first bad record.
//!
//! The encoding is read off each message: a JSON request starts with `{`, which no
//! protobuf request can (it would be field 15 with the deprecated group wire type),
//! so one topic may carry both.

pub(crate) mod logs;
pub(crate) mod metrics;
pub(crate) mod traces;
pub(crate) mod values;

use serde::de::DeserializeOwned;

use super::fields::{self, RowContext};
use super::{DecodeError, FieldProblem};

/// How one OTLP message is serialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpEncoding {
    /// Protobuf (`otlp_proto`, the Collector's default).
    Proto,
    /// OTLP's JSON mapping (`otlp_json`).
    Json,
}

impl OtlpEncoding {
    /// The encoding of `payload`, read off its first byte that is not white space.
    pub fn of(payload: &[u8]) -> OtlpEncoding {
        match payload.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => OtlpEncoding::Json,
            _ => OtlpEncoding::Proto,
        }
    }
}

/// Parses one export request in whichever encoding the message has.
fn parse<T: prost::Message + Default + DeserializeOwned>(payload: &[u8]) -> Result<T, DecodeError> {
    match OtlpEncoding::of(payload) {
        OtlpEncoding::Json => serde_json::from_slice(payload)
            .map_err(|e| DecodeError::InvalidJson(format!("not an OTLP JSON request: {e}"))),
        OtlpEncoding::Proto => {
            T::decode(payload).map_err(|e| DecodeError::InvalidProtobuf(e.to_string()))
        }
    }
}

/// Values an OTLP message carried that have no row of their own, counted per
/// message and reported in `/metrics` (`cara_otlp_values_unused_total`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unused {
    /// Exemplars of metric points (not stored).
    pub exemplars: u64,
    /// Metric points flagged as having no recorded value (a staleness marker).
    pub no_recorded_value: u64,
    /// Metric points whose value is NaN or infinite (the metrics table holds
    /// finite values only).
    pub not_finite: u64,
}

impl Unused {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: Unused) {
        self.exemplars += other.exemplars;
        self.no_recorded_value += other.no_recorded_value;
        self.not_finite += other.not_finite;
    }

    /// The counts with their reason, as `/metrics` labels them.
    pub fn by_reason(&self) -> [(&'static str, u64); 3] {
        [
            ("exemplar", self.exemplars),
            ("no_recorded_value", self.no_recorded_value),
            ("not_finite", self.not_finite),
        ]
    }
}

/// A bad record, located by its path in the request.
fn at(path: impl FnOnce() -> String, problem: FieldProblem) -> DecodeError {
    DecodeError::Otlp {
        at: path(),
        problem,
    }
}

/// A time in nanoseconds since the epoch as milliseconds, checked like any event
/// time; 0 (unset) is refused.
fn nanos_ms(nanos: u64, field: &'static str, ctx: &RowContext<'_>) -> Result<i64, FieldProblem> {
    if nanos == 0 {
        return Err(FieldProblem::BadTimestamp {
            field,
            detail: "unset (0)".into(),
        });
    }
    // u64 nanoseconds / 10^6 always fits in i64.
    let ms = (nanos / 1_000_000) as i64;
    fields::check_event_time(ms, field, ctx)
}

/// [`nanos_ms`] for the time that places a row in the archive.
fn partition_nanos_ms(
    nanos: u64,
    field: &'static str,
    ctx: &RowContext<'_>,
) -> Result<i64, FieldProblem> {
    let ms = nanos_ms(nanos, field, ctx)?;
    ctx.note_partition_time(ms);
    Ok(ms)
}

/// Appends the validated rows of one request, each with its index in it, once the
/// request is known to hold some (else `none`) and to fall in few enough hours;
/// how many.
fn append_all<R>(
    rows: Vec<R>,
    ctx: &RowContext<'_>,
    none: DecodeError,
    mut append: impl FnMut(R, i32),
) -> Result<usize, DecodeError> {
    if rows.is_empty() {
        return Err(none);
    }
    ctx.check_hours()?;
    let added = rows.len();
    for (index, row) in rows.into_iter().enumerate() {
        append(row, index as i32);
    }
    Ok(added)
}

#[cfg(test)]
mod tests;
