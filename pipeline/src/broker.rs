//! The embedded Kafka-protocol broker: librdkafka's mock cluster, reachable at a
//! fixed bootstrap address.
//!
//! The mock cluster listens on an ephemeral port of its own; a small TCP relay on
//! the configured address (127.0.0.1:9092 by default) forwards bootstrap
//! connections to it. Clients then follow the metadata to the mock broker itself.
//!
//! Limits (hard-coded in librdkafka): each partition keeps at most 5 MiB of message
//! sets and silently drops older data; nothing is persisted; CreateTopics is not
//! supported, so cara's topics are created here, up front, with enough partitions
//! to hold a backlog of over a million small records.

use std::net::SocketAddr;
use std::sync::mpsc;

use rdkafka::mocking::MockCluster;
use tokio::net::{TcpListener, TcpStream};

/// The mock cluster keeps at most this many bytes per partition.
pub const MOCK_PARTITION_BYTES: u64 = 5 * 1024 * 1024;

/// Output topics created alongside the telemetry topics.
pub const OUTPUT_TOPICS: &[&str] = &[
    "cara.dlq",
    "cara.alerts",
    "cara.incidents",
    "cara.decisions",
    "cara.approvals",
    "cara.slo",
    "cara.costs",
    "cara.internal.slo",
    "cara.internal.traces",
];

/// Why the embedded broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// librdkafka refused to create the mock cluster or a topic.
    #[error("embedded broker: {0}")]
    Mock(String),
    /// The bootstrap address could not be bound.
    #[error("cannot listen on {addr}: {source}; pass --listen with a free address or set embedded_broker.listen")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Topics and partition counts to create in the mock cluster.
#[derive(Debug, Clone)]
pub struct TopicPlan {
    /// (topic, partitions).
    pub topics: Vec<(String, i32)>,
}

impl TopicPlan {
    /// The topics `config` names: telemetry with `embedded_broker.telemetry_partitions`,
    /// outputs and the SLO exchange with `output_partitions`, the trace exchange with
    /// one (every span partition's cells meet in one combiner).
    pub fn for_config(config: &crate::config::Config) -> TopicPlan {
        let k = &config.kafka;
        let b = &config.embedded_broker;
        let mut topics: Vec<(String, i32)> = [&k.metrics_topic, &k.logs_topic, &k.spans_topic]
            .into_iter()
            .map(|t| (t.clone(), b.telemetry_partitions))
            .collect();
        for t in OUTPUT_TOPICS {
            let (name, partitions) = match *t {
                "cara.dlq" => (k.dlq_topic.clone(), b.output_partitions),
                "cara.alerts" => (k.alerts_topic.clone(), b.output_partitions),
                "cara.slo" => (k.slo_topic.clone(), b.output_partitions),
                "cara.internal.slo" => (k.slo_exchange_topic.clone(), b.output_partitions),
                "cara.internal.traces" => (k.trace_exchange_topic.clone(), 1),
                other => (other.to_owned(), b.output_partitions),
            };
            topics.push((name, partitions));
        }
        TopicPlan { topics }
    }
}

/// A running embedded broker. Dropping it stops the cluster.
pub struct EmbeddedBroker {
    /// The mock cluster's own bootstrap servers.
    pub direct_bootstrap: String,
    /// The fixed bootstrap address clients are told to use.
    pub listen: SocketAddr,
    stop: Option<mpsc::Sender<()>>,
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl EmbeddedBroker {
    /// Starts the mock cluster (on a thread that owns it), creates the topics and
    /// starts the relay on `listen`. Must be called inside a tokio runtime.
    pub async fn start(listen: SocketAddr, plan: TopicPlan) -> Result<EmbeddedBroker, BrokerError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| BrokerError::Bind {
                addr: listen,
                source,
            })?;
        let listen = listener.local_addr().unwrap_or(listen);
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String, String>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                for (topic, partitions) in &plan.topics {
                    if let Err(e) = cluster.create_topic(topic, *partitions, 1) {
                        let _ = ready_tx.send(Err(format!("creating topic {topic}: {e}")));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Keep the cluster alive until told to stop (or the owner is gone).
                let _ = stop_rx.recv();
                drop(cluster);
            })
            .map_err(|e| BrokerError::Mock(e.to_string()))?;
        let direct_bootstrap = tokio::task::spawn_blocking(move || ready_rx.recv())
            .await
            .map_err(|e| BrokerError::Mock(e.to_string()))?
            .map_err(|e| BrokerError::Mock(e.to_string()))?
            .map_err(BrokerError::Mock)?;
        let target = direct_bootstrap.clone();
        tokio::spawn(relay(listener, target));
        Ok(EmbeddedBroker {
            direct_bootstrap,
            listen,
            stop: Some(stop_tx),
        })
    }

    /// The limits a user must know about, as printed at start-up.
    pub fn limits_notice(plan: &TopicPlan) -> String {
        let partitions: i32 = plan
            .topics
            .iter()
            .filter(|(t, _)| t.starts_with("telemetry."))
            .map(|(_, p)| *p)
            .sum();
        format!(
            "embedded broker limits: librdkafka's mock cluster keeps at most 5 MiB per partition in memory and silently drops older data \
             ({partitions} telemetry partitions, about {} MiB of backlog); nothing survives a broker restart. Use --brokers with a real Kafka for production.",
            partitions as u64 * MOCK_PARTITION_BYTES / (1024 * 1024)
        )
    }
}

async fn relay(listener: TcpListener, target: String) {
    let target = target.split(',').next().unwrap_or_default().to_owned();
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        let target = target.clone();
        tokio::spawn(async move {
            match TcpStream::connect(&target).await {
                Ok(mut outbound) => {
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "embedded broker relay cannot reach the mock cluster")
                }
            }
        });
    }
}
