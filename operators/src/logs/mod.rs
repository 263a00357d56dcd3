//! Log intelligence: turning log lines into templates as they stream by.
//!
//! - [`mask`]: tokenising a message and masking its variable tokens;
//! - [`miner`]: the online, Drain-style template miner with bounded, checkpointable
//!   state and stable template ids;
//! - [`signals`]: the per-partition log operator (first stage): template columns
//!   and windowed counts per template, sent on the log exchange;
//! - [`partial`]: the record the two stages exchange;
//! - [`combine`]: the combining stage: every partition's counts per service, the
//!   service's template catalogue, table `log_windows` and `log_pattern` alerts;
//! - [`slots`]: a template's tokens stored as one string;
//! - [`tables`]: the rows the log operator archives.

pub mod combine;
pub mod mask;
pub mod miner;
pub mod partial;
pub mod signals;
pub mod slots;
pub mod tables;

pub use miner::{LineMatch, MinerConfig, MinerSnapshot, Template, TemplateMiner};
