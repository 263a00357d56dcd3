//! Log intelligence: turning log lines into templates as they stream by.
//!
//! - [`mask`]: tokenising a message and masking its variable tokens;
//! - [`miner`]: the online, Drain-style template miner with bounded, checkpointable
//!   state and stable template ids.

pub mod mask;
pub mod miner;

pub use miner::{LineMatch, MinerConfig, MinerSnapshot, Template, TemplateMiner};
