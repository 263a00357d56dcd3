//! `cara gen`: produce seeded telemetry to Kafka, then print a JSON summary.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use cara_pipeline::gen::{self, GenOptions};

use super::GenArgs;

/// Parses `--start` (RFC 3339) or takes now.
pub fn start_ms(start: Option<&str>) -> anyhow::Result<i64> {
    match start {
        Some(s) => super::event_time_ms("--start", s),
        None => Ok(chrono::Utc::now().timestamp_millis()),
    }
}

/// Runs the generator until done or interrupted.
pub fn main(args: GenArgs) -> anyhow::Result<()> {
    let config = super::load_config(args.config.as_deref())?;
    let mut client = super::client_config(&args.brokers, &config)?;
    for property in &args.properties {
        let (k, v) = property
            .split_once('=')
            .with_context(|| format!("--property `{property}` must be key=value"))?;
        client.set(k, v);
    }
    let options = GenOptions {
        rate: args.rate,
        event_rate: args.event_rate.filter(|r| *r > 0),
        count: args.count,
        duration: args.duration,
        services: args.services,
        seed: args.seed,
        labels: args.labels,
        start_ms: start_ms(args.start.as_deref())?,
        topics: args.format.topics(&args.topic_prefix),
        format: args.format,
        progress: true,
        first_fault_after: None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stop_on_signal = stop.clone();
    std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(super::termination());
            stop_on_signal.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let summary = gen::run(&options, client, &stop)?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}
