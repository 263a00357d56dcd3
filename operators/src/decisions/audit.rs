//! The audit trail: every decision state change and every verdict, in one chain.
//!
//! Each [`AuditEntry`] holds its sequence number, its content, the previous entry's
//! hash, and its own hash: HMAC-SHA-256 of its canonical JSON (every field but the
//! hash, in a fixed order) under the audit key, or plain SHA-256 when no key is
//! configured. Editing an entry breaks its hash; dropping, inserting or reordering
//! entries breaks the sequence or the links; and, with a key, an entry forged
//! without it (even one appended at the end with the right link) has a hash that
//! does not verify. Without a key, an appended entry whose hash was recomputed
//! cannot be told from a real one: configure a key. [`verify`] walks a trail in its
//! stored order and names the first entry that does not hold, and why.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash a trail's first entry links to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One entry of the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Position in the chain, from 0, without gaps.
    pub seq: u64,
    /// Event time of what it records, ms.
    pub at: i64,
    /// What happened: `proposed`, `approved`, `rejected`, `expired`, `executed`,
    /// `failed`, or `verdict_ignored`.
    pub event: String,
    /// The decision it is about.
    pub decision_id: String,
    /// Who: `policy` for automatic steps, the approver for a verdict.
    pub by: String,
    /// The record it chains: the decision after the change, or the verdict, as
    /// canonical JSON.
    pub payload: String,
    /// The previous entry's hash ([`GENESIS`] for the first).
    pub prev_hash: String,
    /// This entry's hash, lower-case hex.
    pub hash: String,
}

/// Every field but the hash, in the order hashed.
#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    at: i64,
    event: &'a str,
    decision_id: &'a str,
    by: &'a str,
    payload: &'a str,
    prev_hash: &'a str,
}

impl AuditEntry {
    /// The canonical JSON its hash covers.
    pub fn canonical(&self) -> Vec<u8> {
        let body = Body {
            seq: self.seq,
            at: self.at,
            event: &self.event,
            decision_id: &self.decision_id,
            by: &self.by,
            payload: &self.payload,
            prev_hash: &self.prev_hash,
        };
        // Strings and integers: serialising cannot fail.
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// Its hash under `key` (HMAC-SHA-256; SHA-256 when `key` is empty).
    pub fn compute_hash(&self, key: &[u8]) -> String {
        let canonical = self.canonical();
        let digest: Vec<u8> = if key.is_empty() {
            Sha256::digest(&canonical).to_vec()
        } else {
            // HMAC takes a key of any length.
            let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
                Ok(mac) => mac,
                Err(_) => return String::new(),
            };
            mac.update(&canonical);
            mac.finalize().into_bytes().to_vec()
        };
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The head of a trail: appends entries, linking and hashing each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditChain {
    next_seq: u64,
    last_hash: String,
}

impl Default for AuditChain {
    fn default() -> Self {
        AuditChain {
            next_seq: 0,
            last_hash: GENESIS.to_owned(),
        }
    }
}

impl AuditChain {
    /// Appends an entry, hashed under `key`.
    pub fn append(
        &mut self,
        key: &[u8],
        at: i64,
        event: &str,
        decision_id: &str,
        by: &str,
        payload: String,
    ) -> AuditEntry {
        let mut entry = AuditEntry {
            seq: self.next_seq,
            at,
            event: event.to_owned(),
            decision_id: decision_id.to_owned(),
            by: by.to_owned(),
            payload,
            prev_hash: self.last_hash.clone(),
            hash: String::new(),
        };
        entry.hash = entry.compute_hash(key);
        self.next_seq += 1;
        self.last_hash = entry.hash.clone();
        entry
    }

    /// The next sequence number and the last entry's hash: what a trail must end
    /// with.
    pub fn head(&self) -> (u64, &str) {
        (self.next_seq, &self.last_hash)
    }

    /// Entries appended so far.
    pub fn len(&self) -> u64 {
        self.next_seq
    }

    /// Whether nothing was appended.
    pub fn is_empty(&self) -> bool {
        self.next_seq == 0
    }
}

/// Why a trail does not verify, naming the first entry that does not hold (by its
/// position in the stored order and its sequence number).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditBreak {
    /// Its hash does not match its content (and the key): edited, or forged.
    #[error(
        "entry {position} (seq {seq}) was edited or forged: its hash does not match its content"
    )]
    Altered {
        /// Index in the stored order.
        position: usize,
        /// Its sequence number.
        seq: u64,
    },
    /// Entries between the previous one and this are missing.
    #[error("entries with seq {missing_from} to {missing_to} are missing before entry {position} (seq {seq})")]
    Dropped {
        /// Index in the stored order.
        position: usize,
        /// Its sequence number.
        seq: u64,
        /// The first missing sequence number.
        missing_from: u64,
        /// The last missing sequence number.
        missing_to: u64,
    },
    /// It is out of its place: the entry expected here comes later.
    #[error("entry {position} (seq {seq}) is out of order: seq {expected} was expected there")]
    Reordered {
        /// Index in the stored order.
        position: usize,
        /// Its sequence number.
        seq: u64,
        /// The sequence number expected at its place.
        expected: u64,
    },
    /// It repeats a sequence number, or does not link to its predecessor: an entry
    /// that was not written in this chain.
    #[error("entry {position} (seq {seq}) was inserted: it does not link to the entry before it")]
    Inserted {
        /// Index in the stored order.
        position: usize,
        /// Its sequence number.
        seq: u64,
    },
}

/// Checks `entries`, in their stored order, under `key`; the first break.
pub fn verify(entries: &[AuditEntry], key: &[u8]) -> Result<(), AuditBreak> {
    let mut expected_prev = GENESIS.to_owned();
    for (position, entry) in entries.iter().enumerate() {
        // Sequence numbers start at 0 with no gap: the position is the one expected.
        let expected_seq = position as u64;
        let seq = entry.seq;
        if entry.compute_hash(key) != entry.hash {
            return Err(match seq < expected_seq {
                true => AuditBreak::Inserted { position, seq },
                false => AuditBreak::Altered { position, seq },
            });
        }
        if seq < expected_seq {
            return Err(AuditBreak::Inserted { position, seq });
        }
        if seq > expected_seq {
            let expected_later = entries[position + 1..]
                .iter()
                .any(|e| e.seq == expected_seq);
            return Err(match expected_later {
                true => AuditBreak::Reordered {
                    position,
                    seq,
                    expected: expected_seq,
                },
                false => AuditBreak::Dropped {
                    position,
                    seq,
                    missing_from: expected_seq,
                    missing_to: seq - 1,
                },
            });
        }
        if entry.prev_hash != expected_prev {
            return Err(AuditBreak::Inserted { position, seq });
        }
        expected_prev = entry.hash.clone();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"audit-key";

    fn trail(n: u64) -> Vec<AuditEntry> {
        let mut chain = AuditChain::default();
        (0..n)
            .map(|i| {
                chain.append(
                    KEY,
                    1_000 * i as i64,
                    if i % 2 == 0 { "proposed" } else { "approved" },
                    &format!("dec-{}", i / 2),
                    "policy",
                    format!("{{\"n\":{i}}}"),
                )
            })
            .collect()
    }

    /// Each kind of tampering, and what `verify` names.
    #[test]
    fn every_kind_of_tampering_is_named_at_the_first_entry_it_breaks() {
        let good = trail(6);
        assert_eq!(verify(&good, KEY), Ok(()));
        assert_eq!(good[0].prev_hash, GENESIS);
        assert_eq!(good[1].prev_hash, good[0].hash);
        assert_eq!(good[0].hash.len(), 64);

        let mut edited = good.clone();
        edited[2].by = "mallory".into();
        assert_eq!(
            verify(&edited, KEY),
            Err(AuditBreak::Altered {
                position: 2,
                seq: 2
            })
        );

        let mut dropped = good.clone();
        dropped.remove(3);
        assert_eq!(
            verify(&dropped, KEY),
            Err(AuditBreak::Dropped {
                position: 3,
                seq: 4,
                missing_from: 3,
                missing_to: 3
            })
        );

        let mut swapped = good.clone();
        swapped.swap(1, 2);
        assert_eq!(
            verify(&swapped, KEY),
            Err(AuditBreak::Reordered {
                position: 1,
                seq: 2,
                expected: 1
            })
        );

        // Forged without the key, appended with the right link and sequence.
        let mut forged = good.clone();
        let mut extra = AuditChain {
            next_seq: 6,
            last_hash: good[5].hash.clone(),
        }
        .append(
            b"not-the-key",
            9_000,
            "approved",
            "dec-9",
            "mallory",
            "{}".into(),
        );
        extra.prev_hash = good[5].hash.clone();
        forged.push(extra);
        assert_eq!(
            verify(&forged, KEY),
            Err(AuditBreak::Altered {
                position: 6,
                seq: 6
            })
        );

        // A copy of an entry put in again.
        let mut inserted = good.clone();
        inserted.insert(4, good[1].clone());
        assert_eq!(
            verify(&inserted, KEY),
            Err(AuditBreak::Inserted {
                position: 4,
                seq: 1
            })
        );

        // The wrong key finds every entry altered, from the first.
        assert_eq!(
            verify(&good, b"other"),
            Err(AuditBreak::Altered {
                position: 0,
                seq: 0
            })
        );
        let unkeyed = {
            let mut chain = AuditChain::default();
            vec![chain.append(b"", 1, "proposed", "d", "policy", "{}".into())]
        };
        assert_eq!(verify(&unkeyed, b""), Ok(()));
    }
}
