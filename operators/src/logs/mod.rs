//! Log intelligence: turning log lines into templates as they stream by.
//!
//! - [`mask`]: tokenising a message and masking its variable tokens;
//! - [`miner`]: the online, Drain-style template miner with bounded, checkpointable
//!   state and stable template ids;
//! - [`signals`]: the per-partition log operator: template columns, windowed
//!   counts per template, and `log_pattern` alerts;
//! - [`slots`]: a template's tokens stored as one string;
//! - [`tables`]: the rows the log operator archives.

pub mod mask;
pub mod miner;
pub mod signals;
pub mod slots;
pub mod tables;

pub use miner::{LineMatch, MinerConfig, MinerSnapshot, Template, TemplateMiner};
