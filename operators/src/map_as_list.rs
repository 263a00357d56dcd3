//! Serde for maps whose keys are not strings (tuples, numbers): written as a list of
//! `[key, value]` pairs, since JSON object keys must be strings. Use with
//! `#[serde(with = "crate::map_as_list")]` on a `BTreeMap` field.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Writes the map as a list of pairs, in key order.
pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
    map: &BTreeMap<K, V>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(map.iter())
}

/// Reads a list of pairs back into a map.
pub fn deserialize<'de, K, V, D>(deserializer: D) -> Result<BTreeMap<K, V>, D::Error>
where
    K: Deserialize<'de> + Ord,
    V: Deserialize<'de>,
    D: Deserializer<'de>,
{
    let list: Vec<(K, V)> = Vec::deserialize(deserializer)?;
    Ok(list.into_iter().collect())
}

/// The same for hash maps with cara's fixed-seed hasher: the list is sorted by key,
/// so a snapshot does not depend on the hash order.
pub mod hashed {
    use std::hash::Hash;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// A hash map with a fixed-seed fast hasher (deterministic, not DoS-resistant:
    /// keys are bounded by the operators' limits).
    pub type FastMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::FixedState>;

    /// An empty [`FastMap`].
    pub fn new_map<K, V>() -> FastMap<K, V> {
        hashbrown::HashMap::with_hasher(foldhash::fast::FixedState::with_seed(0x6361_7261))
    }

    /// Writes the map as a list of pairs sorted by key.
    pub fn serialize<K: Serialize + Ord, V: Serialize, S: Serializer>(
        map: &FastMap<K, V>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut pairs: Vec<(&K, &V)> = map.iter().collect();
        pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        serializer.collect_seq(pairs)
    }

    /// Reads a list of pairs back into a map.
    pub fn deserialize<'de, K, V, D>(deserializer: D) -> Result<FastMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        let list: Vec<(K, V)> = Vec::deserialize(deserializer)?;
        let mut map = new_map();
        map.extend(list);
        Ok(map)
    }
}
