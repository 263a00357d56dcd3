//! # cara-operators
//!
//! Pure computation for cara: the Arrow schemas of every archived table, event-time
//! helpers, windows, and the operators the runtime drives over them ([`operator`]).
//!
//! This crate owns *what records look like and how they are computed on*. It does
//! not own I/O: it never depends on tokio, rdkafka or the filesystem, so the same
//! code runs live, in backtests and in benches.
//!
//! ```
//! use cara_operators::schema::Table;
//! let schema = Table::Metrics.schema();
//! assert!(schema.field_with_name("value").is_ok());
//! assert_eq!(Table::Metrics.name(), "metrics");
//! ```
#![warn(missing_docs)]

pub mod alert;
pub mod anomaly;
pub mod budget;
pub mod capacity;
pub mod columns;
pub mod cost;
pub mod decisions;
pub mod eval;
pub mod exchange;
pub mod incidents;
pub mod logs;
pub(crate) mod map_as_list;
pub mod minutes;
pub mod operator;
pub mod schema;
pub mod series;
pub mod slo;
pub mod snapshot;
pub mod span_rows;
pub mod stable_hash;
#[cfg(test)]
mod test_rng;
pub mod time;
pub mod traces;
pub mod watermark;
pub mod window;
