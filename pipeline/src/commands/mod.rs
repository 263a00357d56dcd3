//! Implementations of the subcommands; the only place `anyhow` is used.

pub mod audit;
pub mod backtest;
pub mod broker;
pub mod config;
pub mod gen;
pub mod run;
pub mod sql;

use std::path::Path;

use anyhow::Context;
use cara_pipeline::config::Config;
use cara_pipeline::dataflow::Dataflow;
use rdkafka::config::ClientConfig;

pub(crate) use crate::{
    BrokerArgs, ForecastArgs, GenArgs, GenBacktestArgs, LoghubArgs, NabArgs, ReplayArgs, RunArgs,
    SqlArgs,
};

/// Logs to stderr at `default_level`; `RUST_LOG` overrides it.
pub fn init_tracing(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Loads the config file, or the defaults when there is none.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let Some(path) = path else {
        return Ok(Config::default());
    };
    let config = Config::load(path).with_context(|| format!("in {}", path.display()))?;
    // Every command refuses a config whose dataflow cannot be declared (a topic in
    // two roles), not only the ones that build it.
    Dataflow::declare(&config).with_context(|| format!("in {}", path.display()))?;
    Ok(config)
}

/// An event time given on the command line as RFC 3339, in ms; the error names
/// `flag`.
pub fn event_time_ms(flag: &str, value: &str) -> anyhow::Result<i64> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.timestamp_millis())
        .with_context(|| {
            format!("{flag} `{value}` is not an RFC 3339 time such as 2026-01-01T00:00:00Z")
        })
}

/// librdkafka properties for `brokers` plus the user's, from the file and the
/// environment (`kafka.client_properties_env`).
pub fn client_config(brokers: &str, config: &Config) -> anyhow::Result<ClientConfig> {
    Ok(cara_pipeline::config::client::client_config(
        brokers,
        &config.kafka.client_properties,
        &config.kafka.client_properties_env,
        |name| std::env::var(name).ok(),
    )?)
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn termination() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// A multi-threaded tokio runtime.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
