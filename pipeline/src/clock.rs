//! The wall clock as records: every `decisions.tick_interval`, a tick with the time
//! on the decision stage's input log (`cara.internal.decisions`).
//!
//! The decision stage has no clock of its own (it would not replay alike): an
//! unanswered decision expires when a tick past its deadline is applied. A tick
//! that cannot be sent is logged and the next one tried; a process that is down
//! sends none, so decisions wait until a process runs again, and expire then.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cara_operators::decisions::records::DecisionEnvelope;
use cara_operators::decisions::stage::decision_input_message;
use cara_operators::decisions::DecisionInput;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;

use crate::outbound::{OutboundSink, OutboundTopics};

/// How long a tick's send may wait for the broker.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the thread that sends a tick every `interval` until `stop` is set.
pub fn spawn(
    client: &ClientConfig,
    topics: OutboundTopics,
    interval: Duration,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, KafkaError> {
    let sink = OutboundSink::new(client.clone(), topics)?;
    std::thread::Builder::new()
        .name("clock".into())
        .spawn(move || {
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if Instant::now() < next {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                next += interval;
                let tick = DecisionEnvelope {
                    source_topic: "clock".into(),
                    source_partition: 0,
                    input: DecisionInput::Tick {
                        at_ms: chrono::Utc::now().timestamp_millis(),
                    },
                };
                if let Err(error) = sink.send_all(&[decision_input_message(&tick)], SEND_TIMEOUT) {
                    tracing::warn!(%error, "clock tick not sent; decisions expire at the next one");
                }
            }
        })
        .map_err(|e| KafkaError::ClientCreation(format!("starting the clock thread: {e}")))
}
