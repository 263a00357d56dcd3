//! Why a message could not be decoded.
//!
//! Every variant renders as a sentence a producer's owner can act on; it is stored
//! with the original bytes in the dead-letter topic and table.

/// A message that cannot become rows.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// No payload, or only whitespace, or an empty array.
    #[error("empty message: expected a JSON object or a non-empty array of objects")]
    Empty,
    /// Larger than `decode.max_message_bytes`.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes (decode.max_message_bytes); split it into smaller messages")]
    Oversize {
        /// Payload size.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// Not valid UTF-8 JSON.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// Valid JSON, but a scalar at the top level.
    #[error("expected a JSON object or an array of objects, got {0}")]
    NotAnObject(&'static str),
    /// A record of an exchange topic (between cara's own stages) that parses but
    /// cannot be true: out-of-range minutes, counts that do not add up.
    #[error("invalid exchange record: {0}")]
    InvalidExchangeRecord(String),
    /// The message's records fall in more hours than `decode.max_hours_per_message`:
    /// each hour is a file of its own.
    #[error("the message's records span {hours} hours (decode.max_hours_per_message = {limit}); send records of fewer hours per message")]
    TooManyHours {
        /// Hours from its first record's to its last's.
        hours: u64,
        /// The limit.
        limit: u64,
    },
    /// A message on an OTLP topic that is not a protobuf export request.
    #[error("invalid OTLP protobuf: {0}; expected an Export{{Metrics,Trace,Logs}}ServiceRequest as the Collector's Kafka exporter writes it (encoding otlp_proto or otlp_json)")]
    InvalidProtobuf(String),
    /// An OTLP export request without a record of the topic's signal.
    #[error("no {signal} in the OTLP request: expected an {request} on this topic")]
    NoOtlpRecords {
        /// What the topic carries (`metric points`, `spans`, `log records`).
        signal: &'static str,
        /// The request type the topic carries.
        request: &'static str,
    },
    /// A record of an OTLP request that cannot be a row, with its path.
    #[error("{at}: {problem}")]
    Otlp {
        /// Where in the request, e.g. `resourceSpans[0].scopeSpans[1].spans[2]`.
        at: String,
        /// What is wrong with it.
        problem: FieldProblem,
    },
    /// One element of the message is not a valid record.
    #[error("element {index}: {problem}")]
    Element {
        /// Position of the element in the array (0 for a single object).
        index: usize,
        /// What is wrong with it.
        problem: FieldProblem,
    },
}

impl DecodeError {
    /// A short, stable class for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::Oversize { .. } => "oversize",
            DecodeError::InvalidJson(_) => "invalid_json",
            DecodeError::NotAnObject(_) => "not_an_object",
            DecodeError::InvalidExchangeRecord(_) => "invalid_exchange_record",
            DecodeError::TooManyHours { .. } => "too_many_hours",
            DecodeError::InvalidProtobuf(_) => "invalid_protobuf",
            DecodeError::NoOtlpRecords { .. } => "no_otlp_records",
            DecodeError::Element { problem, .. } | DecodeError::Otlp { problem, .. } => {
                problem.kind()
            }
        }
    }
}

/// What is wrong with one record of a message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FieldProblem {
    /// The element is not a JSON object.
    #[error("expected an object, got {0}")]
    NotAnObject(&'static str),
    /// A required field is absent or null.
    #[error("missing required field `{0}`")]
    Missing(&'static str),
    /// A field has the wrong JSON type.
    #[error("field `{field}`: expected {expected}, got {got}")]
    WrongType {
        /// Field name (a label or attribute path for nested values).
        field: String,
        /// What was expected.
        expected: &'static str,
        /// What was found.
        got: &'static str,
    },
    /// A timestamp that is neither RFC 3339 nor integer epoch milliseconds in range.
    #[error("field `{field}`: {detail}")]
    BadTimestamp {
        /// Field name.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// An event time too far ahead of the message's Kafka timestamp.
    #[error("field `{field}`: event time {ts_ms} ms is more than {skew_ms} ms ahead of the message timestamp (decode.max_future_skew)")]
    FarFuture {
        /// Field name.
        field: &'static str,
        /// The event time.
        ts_ms: i64,
        /// Configured tolerance.
        skew_ms: i64,
    },
    /// A number that is NaN or infinite.
    #[error("field `{0}`: number is not finite")]
    NotFinite(&'static str),
    /// A string outside the allowed set.
    #[error("field `{field}`: `{value}` is not one of {allowed}")]
    NotAllowed {
        /// Field name.
        field: &'static str,
        /// The value found.
        value: String,
        /// The allowed values.
        allowed: &'static str,
    },
    /// An event time too far behind the message's Kafka timestamp.
    #[error("field `{field}`: event time {ts_ms} ms is more than {age_ms} ms before the message timestamp (decode.max_past_age)")]
    FarPast {
        /// Field name.
        field: &'static str,
        /// The event time.
        ts_ms: i64,
        /// The configured age.
        age_ms: i64,
    },
    /// A span whose end precedes its start, or with a negative duration.
    #[error("span ends before it starts")]
    EndBeforeStart,
    /// A record that breaks a rule of its format (an OTLP metric without data,
    /// bucket counts that do not match the bounds).
    #[error("{0}")]
    Invalid(String),
}

impl FieldProblem {
    /// A short, stable class for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            FieldProblem::NotAnObject(_) => "not_an_object",
            FieldProblem::Missing(_) => "missing_field",
            FieldProblem::WrongType { .. } => "wrong_type",
            FieldProblem::BadTimestamp { .. } => "bad_timestamp",
            FieldProblem::FarFuture { .. } => "far_future",
            FieldProblem::FarPast { .. } => "far_past",
            FieldProblem::NotFinite(_) => "not_finite",
            FieldProblem::NotAllowed { .. } => "not_allowed",
            FieldProblem::EndBeforeStart => "end_before_start",
            FieldProblem::Invalid(_) => "invalid_record",
        }
    }
}
