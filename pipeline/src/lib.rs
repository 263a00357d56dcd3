//! # cara-pipeline
//!
//! The parts of the `cara` binary that touch the world: configuration, the Kafka
//! source and dead-letter sink, the JSON decoders, the Parquet archive with its
//! exactly-once commit protocol, the embedded broker, the HTTP endpoints, cara's own
//! metrics, and the telemetry generator. Pure computation lives in
//! `cara-operators`; SQL lives in `cara-sql`.
//!
//! Data path: [`source::Source`] polls Kafka and hands each message to the shard
//! owning its partition → the shard's [`decode::Decoder`] builds Arrow rows per
//! partition (bad messages become [`dlq::DeadLetter`]s) → the flush worker writes
//! Parquet through [`archive`] → the source commits offsets.
#![warn(missing_docs)]

pub mod alerts;
pub mod archive;
pub mod audit_report;
pub mod backtest;
pub mod broker;
pub mod clock;
pub mod config;
pub mod dataflow;
pub mod decode;
pub mod delivery;
pub mod dlq;
pub mod executor;
pub mod fuzzing;
pub mod gen;
pub mod group_member;
pub mod http;
pub mod internal_events;
pub mod outbound;
pub mod runtime;
pub mod sample;
pub mod source;
pub mod summary;
pub mod telemetry;
pub mod templates;
