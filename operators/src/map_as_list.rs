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
