//! The embedded Kafka-protocol broker: librdkafka's mock cluster, reachable at a
//! fixed bootstrap address.
//!
//! The mock cluster listens on an ephemeral port of its own; a small TCP relay on
//! the configured address (127.0.0.1:9092 by default) forwards connections to it.
//! What the broker advertises in its metadata is a choice ([`Advertised`]): inside
//! `cara run` clients follow it to the mock broker's own port and skip the relay;
//! `cara broker`, a process that can be restarted under running clients, advertises
//! the fixed address, as a real Kafka keeps its advertised listener, so that its
//! clients reach the new broker (and its empty logs) instead of an old port.
//!
//! Owns: the crate's second `unsafe` call (the first is in `source::catch_up`), to
//! the librdkafka function that sets a mock broker's advertised address, which
//! rust-rdkafka does not wrap.
//!
//! Limits (hard-coded in librdkafka): each partition keeps at most 5 MiB of message
//! sets and silently drops older data; nothing is persisted; CreateTopics is not
//! supported, so cara's topics are created here, up front, with enough partitions
//! to hold a backlog of over a million small records.

use std::ffi::CString;
use std::net::SocketAddr;
use std::sync::mpsc;

use rdkafka::bindings;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::ClientConfig;
use tokio::net::{TcpListener, TcpStream};

use crate::dataflow::{TopicRole, Topics};

/// The mock cluster keeps at most this many bytes per partition.
pub const MOCK_PARTITION_BYTES: u64 = 5 * 1024 * 1024;

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
    /// Partitions over all input topics (what the backlog notice counts).
    pub input_partitions: i32,
}

impl TopicPlan {
    /// Every topic the dataflow declares (see [`crate::dataflow::topics`]).
    pub fn of(topics: &Topics) -> TopicPlan {
        let plan = topics.embedded_plan();
        let input_partitions = topics
            .all()
            .iter()
            .zip(&plan)
            .filter(|(t, _)| matches!(t.role, TopicRole::Input(_)))
            .map(|(_, (_, partitions))| *partitions)
            .sum();
        TopicPlan {
            topics: plan,
            input_partitions,
        }
    }
}

/// Which address the broker puts in its metadata, where clients go after bootstrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advertised {
    /// The mock broker's own ephemeral port: no relay hop (clients in this process).
    MockPort,
    /// The fixed bootstrap address (127.0.0.1 when it is unspecified, as 0.0.0.0):
    /// every connection goes through the relay, and a broker restarted on the same
    /// address is the same broker to its clients.
    Listen,
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
    pub async fn start(
        listen: SocketAddr,
        plan: TopicPlan,
        advertised: Advertised,
    ) -> Result<EmbeddedBroker, BrokerError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| BrokerError::Bind {
                addr: listen,
                source,
            })?;
        let listen = listener.local_addr().unwrap_or(listen);
        let advertise = match advertised {
            Advertised::MockPort => None,
            Advertised::Listen if listen.ip().is_unspecified() => {
                Some(SocketAddr::from(([127, 0, 0, 1], listen.port())))
            }
            Advertised::Listen => Some(listen),
        };
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String, String>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || {
                // The cluster lives as long as the client that made it.
                let owner = match ClientConfig::new()
                    .set("test.mock.num.brokers", "1")
                    .create::<BaseProducer>()
                {
                    Ok(owner) => owner,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let Some(cluster) = owner.client().mock_cluster() else {
                    let _ = ready_tx.send(Err("librdkafka made no mock cluster".into()));
                    return;
                };
                let bootstrap = cluster.bootstrap_servers();
                if let Some(address) = advertise {
                    if let Err(e) = advertise_address(&owner, address) {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                }
                for (topic, partitions) in &plan.topics {
                    if let Err(e) = cluster.create_topic(topic, *partitions, 1) {
                        let _ = ready_tx.send(Err(format!("creating topic {topic}: {e}")));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(bootstrap));
                // Keep the cluster alive until told to stop (or the owner is gone).
                let _ = stop_rx.recv();
                drop(cluster);
                drop(owner);
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
        let partitions = plan.input_partitions;
        format!(
            "embedded broker limits: librdkafka's mock cluster keeps at most 5 MiB per partition in memory and silently drops older data \
             ({partitions} telemetry partitions, about {} MiB of backlog); nothing survives a broker restart. Use --brokers with a real Kafka for production.",
            partitions as u64 * MOCK_PARTITION_BYTES / (1024 * 1024)
        )
    }
}

/// Makes the mock cluster's broker (id 1, the only one) advertise `address`; its
/// socket stays where it is, and the relay forwards to it.
fn advertise_address(owner: &BaseProducer, address: SocketAddr) -> Result<(), String> {
    let host = CString::new(address.ip().to_string()).map_err(|e| e.to_string())?;
    // SAFETY: `owner` is a live client handle for the duration of both calls, and the
    // mock cluster it returns lives as long as `owner`; it is checked for null before
    // use. `host` is NUL-terminated and outlives the call, which copies it into the
    // broker's own buffer under the cluster's lock and keeps no pointer.
    unsafe {
        let cluster = bindings::rd_kafka_handle_mock_cluster(owner.client().native_ptr());
        if cluster.is_null() {
            return Err("the client has no mock cluster".into());
        }
        bindings::rd_kafka_mock_broker_set_host_port(
            cluster,
            1,
            host.as_ptr(),
            i32::from(address.port()),
        );
    }
    Ok(())
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
