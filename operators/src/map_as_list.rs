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

    /// The map's entries sorted by key (what a snapshot holds, in its order).
    pub(crate) fn sorted_pairs<K: Ord, V>(map: &FastMap<K, V>) -> Vec<(&K, &V)> {
        let mut pairs: Vec<(&K, &V)> = map.iter().collect();
        pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        pairs
    }

    /// Writes the map as a list of pairs sorted by key.
    pub fn serialize<K: Serialize + Ord, V: Serialize, S: Serializer>(
        map: &FastMap<K, V>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(sorted_pairs(map))
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

/// Serde for a [`hashed::FastMap`] written exactly as a `BTreeMap` of the same entries
/// is (a map, in key order): a field can change from one to the other, for faster
/// lookups, without changing a byte of its snapshots.
pub mod hashed_as_map {
    use std::collections::BTreeMap;
    use std::hash::Hash;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::hashed::{new_map, FastMap};

    /// Writes the map as a map, in key order.
    pub fn serialize<K: Serialize + Ord, V: Serialize, S: Serializer>(
        map: &FastMap<K, V>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_map(super::hashed::sorted_pairs(map))
    }

    /// Reads a map back.
    pub fn deserialize<'de, K, V, D>(deserializer: D) -> Result<FastMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord + Eq + Hash,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        let sorted: BTreeMap<K, V> = BTreeMap::deserialize(deserializer)?;
        let mut map = new_map();
        map.extend(sorted);
        Ok(map)
    }

    #[cfg(test)]
    mod tests {
        use std::collections::BTreeMap;

        use serde::{Deserialize, Serialize};

        use super::FastMap;

        #[derive(Serialize, Deserialize)]
        struct Sorted {
            map: BTreeMap<String, u32>,
        }

        #[derive(Serialize, Deserialize)]
        struct Hashed {
            #[serde(with = "super")]
            map: FastMap<String, u32>,
        }

        /// A snapshot of the ordered map decodes as the hashed one and encodes back
        /// to the same bytes, in both encodings snapshots have used.
        #[test]
        fn a_hashed_map_encodes_as_the_ordered_map_does() {
            let sorted = Sorted {
                map: (0..50).map(|i| (format!("series-{i:03}"), i)).collect(),
            };
            let packed = crate::snapshot::encode(&sorted).unwrap();
            let hashed: Hashed = crate::snapshot::decode(&packed).unwrap();
            assert_eq!(hashed.map.len(), 50);
            assert_eq!(hashed.map["series-007"], 7);
            assert_eq!(crate::snapshot::encode(&hashed).unwrap(), packed);
            let json = serde_json::to_string(&sorted).unwrap();
            let hashed: Hashed = serde_json::from_str(&json).unwrap();
            assert_eq!(serde_json::to_string(&hashed).unwrap(), json);
        }
    }
}
