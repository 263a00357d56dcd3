//! What the fuzz targets (`fuzz/`) check of one input, and the corpus replay test
//! runs on every kept input: decoding any bytes as any signal's message (flat JSON,
//! cara's exchange records, OTLP protobuf or JSON) returns rows
//! or an error and never panics; a refused message appends nothing; the rows a
//! message adds split into archive hours without error (the step that a poison pill
//! once broke). Loading any text as a configuration (and declaring its dataflow)
//! returns a config or an error naming a key.

use std::path::Path;
use std::sync::OnceLock;

use crate::archive::layout::ArchiveLayout;
use crate::archive::writer::ParquetWriter;
use crate::config::Config;
use crate::dataflow::Dataflow;
use crate::decode::{DecodeLimits, Decoder, Signal, SourcePosition, WireFormat};

/// The Kafka timestamp fuzzed messages carry (event times are checked against it).
const KAFKA_TS_MS: i64 = 1_800_000_000_000;

/// Decodes `data` as one message of `signal` and checks what the pipeline relies on;
/// returns the rows decoded (0 when the message was refused).
pub fn decode_one(signal: Signal, data: &[u8]) -> usize {
    decode_one_as(signal, WireFormat::FlatJson, data)
}

/// [`decode_one`] for a topic written in `format`.
pub fn decode_one_as(signal: Signal, format: WireFormat, data: &[u8]) -> usize {
    let mut decoder = Decoder::with_format(signal, format, DecodeLimits::default());
    let position = SourcePosition {
        topic: "fuzz",
        partition: 0,
        offset: 0,
        kafka_ts_ms: Some(KAFKA_TS_MS),
    };
    match decoder.decode(Some(data), &position) {
        Ok(rows) => assert_eq!(decoder.len(), rows, "rows counted as appended"),
        Err(error) => {
            assert!(decoder.is_empty(), "a refused message appended rows");
            assert!(!error.to_string().is_empty());
        }
    }
    let batch = decoder.finish();
    // Built once: its per-table Parquet settings cost more than most inputs.
    static WRITER: OnceLock<ParquetWriter> = OnceLock::new();
    let writer = WRITER.get_or_init(|| {
        ParquetWriter::new(ArchiveLayout::new(Path::new("/fuzz")), 1)
            .expect("zstd level 1 is valid")
    });
    let planned = writer
        .plan(signal.table(), &batch, "fuzz")
        .expect("decoded rows split into archive hours");
    let rows: usize = planned.iter().map(|p| p.batch.num_rows()).sum();
    assert_eq!(rows, batch.num_rows(), "every row in one hour's file");
    rows
}

/// Loads `data` as a configuration file; returns 1 when it is a valid one.
pub fn config_one(data: &[u8]) -> usize {
    let Ok(text) = std::str::from_utf8(data) else {
        return 0;
    };
    let declared = Config::from_toml(text).and_then(|config| Dataflow::declare(&config));
    match declared {
        Ok(_) => 1,
        Err(error) => {
            assert!(!error.to_string().is_empty());
            0
        }
    }
}

/// What a target runs on one input; returns the rows or configs it accepted.
pub type Check = fn(&[u8]) -> usize;

/// The fuzz targets: a name (`fuzz/corpus/<name>/`, `fuzz/src/bin/<name>.rs`) and
/// its check.
pub const TARGETS: [(&str, Check); 14] = [
    ("metrics", |d| decode_one(Signal::Metrics, d)),
    ("logs", |d| decode_one(Signal::Logs, d)),
    ("spans", |d| decode_one(Signal::Spans, d)),
    ("slo_partials", |d| decode_one(Signal::SloPartials, d)),
    ("trace_partials", |d| decode_one(Signal::TracePartials, d)),
    ("log_partials", |d| decode_one(Signal::LogPartials, d)),
    ("alert_partials", |d| decode_one(Signal::AlertPartials, d)),
    ("approvals", |d| decode_one(Signal::Approvals, d)),
    ("decision_inputs", |d| decode_one(Signal::DecisionInputs, d)),
    ("cost_partials", |d| decode_one(Signal::CostPartials, d)),
    ("otlp_metrics", |d| {
        decode_one_as(Signal::Metrics, WireFormat::Otlp, d)
    }),
    ("otlp_logs", |d| {
        decode_one_as(Signal::Logs, WireFormat::Otlp, d)
    }),
    ("otlp_spans", |d| {
        decode_one_as(Signal::Spans, WireFormat::Otlp, d)
    }),
    ("config", config_one),
];

/// The check of the target named `name`.
///
/// # Panics
/// When no target has that name (a fuzz binary out of step with [`TARGETS`]).
pub fn target(name: &str) -> Check {
    TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, check)| *check)
        .unwrap_or_else(|| panic!("no fuzz target named {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every input kept in `fuzz/corpus/` runs through its target's checks: the seeds
    /// (valid messages and configs the fuzzer starts from) are accepted, and every other
    /// kept input (a crash the fuzzer found, since fixed) no longer fails a check.
    #[test]
    fn every_kept_fuzz_input_passes_its_targets_checks() {
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        let mut seeds = 0;
        for (name, check) in TARGETS {
            let dir = corpus.join(name);
            let entries =
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                let accepted = check(&data);
                let file = path.file_name().unwrap().to_string_lossy();
                if file.starts_with("seed-") {
                    assert!(accepted > 0, "{}: a seed must be accepted", path.display());
                    seeds += 1;
                }
            }
        }
        assert!(seeds >= 6 * 2, "{seeds} seeds");
    }
}
