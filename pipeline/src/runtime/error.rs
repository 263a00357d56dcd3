//! What stops the runtime: [`RuntimeError`], and the [`FatalSlot`] where the first
//! one raised by a shard, the flush worker or the driver waits for the driver to
//! report it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use rdkafka::error::KafkaError;

use crate::archive::ArchiveError;

/// What can stop the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The Kafka client could not be created or failed fatally.
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The archive failed in a way retrying did not fix.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// A shard thread could not be started, or stopped without saying why.
    #[error("shard threads: {0}")]
    Shard(String),
    /// A partition was assigned whose archive state could not be recovered.
    #[error("recovering {topic}[{partition}] from the archive: {source}")]
    Recovery {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Why.
        source: ArchiveError,
    },
}

/// The first error that stopped a shard or the driver, for the driver to report.
#[derive(Default)]
pub(crate) struct FatalSlot {
    raised: AtomicBool,
    error: Mutex<Option<RuntimeError>>,
}

impl FatalSlot {
    /// Records `error` unless an earlier one is already there.
    pub fn raise(&self, error: RuntimeError) {
        if let Ok(mut e) = self.error.lock() {
            e.get_or_insert(error);
        }
        self.raised.store(true, Ordering::Release);
    }

    /// Takes the recorded error, if any; cheap when there is none.
    pub fn take(&self) -> Option<RuntimeError> {
        if !self.raised.load(Ordering::Acquire) {
            return None;
        }
        self.error.lock().ok().and_then(|mut e| e.take())
    }
}
