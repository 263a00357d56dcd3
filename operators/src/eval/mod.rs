//! Scoring detectors against labelled benchmarks (pure computation; readers of the
//! benchmark files live in the pipeline crate).

pub mod loghub;
pub mod nab;
