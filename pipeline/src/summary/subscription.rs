//! Feeds a [`Board`] from the output topics, as any subscriber to `cara.alerts`,
//! `cara.slo` and `cara.incidents` would read them: a consumer of its own group, from the earliest offset,
//! committing nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::Message;

use super::Board;

/// The topics a board reads.
#[derive(Debug, Clone)]
pub struct BoardTopics {
    /// Alert records (`cara.alerts`).
    pub alerts: String,
    /// SLO status records (`cara.slo`).
    pub slo: String,
    /// Incident transitions (`cara.incidents`).
    pub incidents: String,
    /// Decision changes (`cara.decisions`).
    pub decisions: String,
}

/// Starts a thread that reads `topics` into `board` until `stop` is set.
pub fn spawn(
    client: &ClientConfig,
    topics: BoardTopics,
    board: Arc<Mutex<Board>>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, KafkaError> {
    let mut config = client.clone();
    config
        .set(
            "group.id",
            format!(
                "cara-summary-{}-{}",
                std::process::id(),
                chrono::Utc::now().timestamp_millis()
            ),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer = config.create()?;
    consumer.subscribe(&[
        &topics.alerts,
        &topics.slo,
        &topics.incidents,
        &topics.decisions,
    ])?;
    let handle = std::thread::Builder::new()
        .name("summary".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Some(result) = consumer.poll(Duration::from_millis(200)) else {
                    continue;
                };
                let Ok(message) = result else {
                    // Topics not created yet, a broker restart: the consumer retries.
                    continue;
                };
                let Some(payload) = message.payload() else {
                    continue;
                };
                let Ok(mut board) = board.lock() else {
                    return;
                };
                let topic = message.topic();
                let applied = if topic == topics.alerts {
                    board.apply_alert(payload)
                } else if topic == topics.incidents {
                    board.apply_incident(payload)
                } else if topic == topics.decisions {
                    board.apply_decision(payload)
                } else {
                    board.apply_slo(payload)
                };
                if let Err(error) = applied {
                    tracing::debug!(topic = message.topic(), offset = message.offset(), %error, "summary skipped a record");
                }
            }
        })
        .map_err(|e| KafkaError::ClientCreation(format!("starting the summary thread: {e}")))?;
    Ok(handle)
}
