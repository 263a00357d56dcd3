//! How operator state is encoded in a checkpoint: MessagePack behind a short magic
//! header. Owns the one encoding every operator's `snapshot` and `restore` use, and
//! reading the JSON snapshots of earlier versions of cara.
//!
//! Structs are encoded as arrays (no field names): a series' state is a few hundred
//! bytes instead of the kilobytes of JSON, and encoding and decoding do no float
//! formatting or parsing. The rule that keeps old snapshots readable: a field is only
//! ever *added at the end* of a struct, with `#[serde(default)]` (serde fills a field
//! missing from the end of an array with its default). Maps keep their keys, enums
//! their variant names.
//!
//! Equal state gives equal bytes as long as the state serialises its maps in a fixed
//! order (the operators sort hash maps by key when they serialise them).

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The first bytes of every encoded snapshot: "cara state", format 1.
pub const MAGIC: &[u8; 4] = b"CAS\x01";

/// A snapshot that could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The state could not be encoded (a bug: state types are plain data).
    #[error("encoding operator state: {0}")]
    Encode(String),
    /// The bytes are not a snapshot of this state (corrupt, or of another operator).
    #[error("decoding operator state: {0}")]
    Decode(String),
}

/// Encodes `state` (the magic header, then MessagePack).
pub fn encode<T: Serialize + ?Sized>(state: &T) -> Result<Vec<u8>, SnapshotError> {
    let mut bytes = Vec::with_capacity(256);
    bytes.extend_from_slice(MAGIC);
    rmp_serde::encode::write(&mut bytes, state)
        .map_err(|e| SnapshotError::Encode(e.to_string()))?;
    Ok(bytes)
}

/// Decodes a snapshot written by [`encode`], or the JSON of an earlier cara.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, SnapshotError> {
    match bytes.strip_prefix(MAGIC) {
        Some(body) => rmp_serde::from_slice(body).map_err(|e| SnapshotError::Decode(e.to_string())),
        None if bytes.first() == Some(&b'{') => {
            serde_json::from_slice(bytes).map_err(|e| SnapshotError::Decode(e.to_string()))
        }
        None => Err(SnapshotError::Decode(format!(
            "not a cara snapshot (it starts with {:02x?})",
            &bytes[..bytes.len().min(4)]
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Before {
        mean: f64,
        labels: std::collections::BTreeMap<String, String>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct After {
        mean: f64,
        labels: std::collections::BTreeMap<String, String>,
        #[serde(default)]
        first_ms: Option<i64>,
    }

    fn before() -> Before {
        Before {
            mean: 0.1 + 0.2,
            labels: [("service".to_string(), "checkout".to_string())].into(),
        }
    }

    #[test]
    fn state_round_trips_bit_for_bit_and_is_smaller_than_json() {
        let state = before();
        let bytes = encode(&state).unwrap();
        assert!(bytes.starts_with(MAGIC));
        let back: Before = decode(&bytes).unwrap();
        assert_eq!(back.mean.to_bits(), state.mean.to_bits());
        assert_eq!(back, state);
        assert!(bytes.len() < serde_json::to_vec(&state).unwrap().len());
    }

    #[test]
    fn a_field_added_at_the_end_reads_old_snapshots_with_its_default() {
        let after: After = decode(&encode(&before()).unwrap()).unwrap();
        assert_eq!(after.first_ms, None);
        assert_eq!(after.labels["service"], "checkout");
    }

    #[test]
    fn json_of_earlier_versions_still_reads() {
        let json = serde_json::to_vec(&before()).unwrap();
        assert_eq!(decode::<Before>(&json).unwrap(), before());
    }

    #[test]
    fn other_bytes_are_refused_with_what_they_start_with() {
        let err = decode::<Before>(b"\x00\x01garbage")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a cara snapshot"), "{err}");
        let truncated = &encode(&before()).unwrap()[..8];
        assert!(matches!(
            decode::<Before>(truncated),
            Err(SnapshotError::Decode(_))
        ));
    }
}
