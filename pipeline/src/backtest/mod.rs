//! Backtests: replaying recorded data through the same decoders and operators as the
//! live path, and scoring the outcome against labels.

pub mod compare;
pub mod episodes;
pub mod forecast;
pub mod generated;
pub mod in_process;
pub mod incident_score;
pub mod labels;
pub mod loghub;
pub mod nab;
pub mod replay;
pub mod report;
