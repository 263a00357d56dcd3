//! A template's tokens stored as one string.
//!
//! Owns the layout of a template's slots: their text joined by single spaces (which
//! is also the template's display text) and where each slot ends. A template costs
//! two allocations whatever its length, and comparing a line against it walks one
//! contiguous buffer.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::mask::Masked;

/// The slots of a template: constant text, `<*>`, or `key=<*>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Slots {
    text: String,
    /// End (exclusive) of each slot in `text`; slot `i` starts after slot `i - 1`'s
    /// end and its separating space.
    ends: Vec<u32>,
}

impl Slots {
    /// The masked tokens of a line, as a template's first slots.
    pub fn from_masked(masked: &[Masked<'_>]) -> Self {
        let mut slots = Slots {
            text: String::new(),
            ends: Vec::with_capacity(masked.len()),
        };
        for token in masked {
            slots.start_slot();
            match token {
                Masked::Const(text) => slots.text.push_str(text),
                Masked::Wild => slots.text.push_str(super::mask::WILDCARD),
                Masked::KeyWild(key) => {
                    slots.text.push_str(key);
                    slots.text.push_str(super::mask::WILDCARD);
                }
            }
            slots.end_slot();
        }
        slots
    }

    /// Slots from their texts.
    pub fn from_texts<S: AsRef<str>>(texts: impl IntoIterator<Item = S>) -> Self {
        let mut slots = Slots::default();
        for text in texts {
            slots.start_slot();
            slots.text.push_str(text.as_ref());
            slots.end_slot();
        }
        slots
    }

    fn start_slot(&mut self) {
        if !self.ends.is_empty() {
            self.text.push(' ');
        }
    }

    fn end_slot(&mut self) {
        self.ends
            .push(u32::try_from(self.text.len()).unwrap_or(u32::MAX));
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none (an empty message).
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The slots joined by spaces.
    pub fn as_text(&self) -> &str {
        &self.text
    }

    /// The slots in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        let mut start = 0usize;
        self.ends.iter().map(move |end| {
            let end = *end as usize;
            let slot = self.text.get(start..end).unwrap_or_default();
            start = end + 1;
            slot
        })
    }

    /// The slots as bytes, in order (cheaper to slice than `str`: no character
    /// boundary checks; comparisons need only bytes).
    pub fn iter_bytes(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let bytes = self.text.as_bytes();
        let mut start = 0usize;
        self.ends.iter().map(move |end| {
            let end = *end as usize;
            let slot = bytes.get(start..end).unwrap_or_default();
            start = end + 1;
            slot
        })
    }

    /// The slots with `replace` applied: slot `i` becomes `replace(i, slot)` when it
    /// returns `Some`.
    pub fn rewritten(&self, mut replace: impl FnMut(usize, &str) -> Option<String>) -> Slots {
        let texts: Vec<String> = self
            .iter()
            .enumerate()
            .map(|(i, slot)| replace(i, slot).unwrap_or_else(|| slot.to_owned()))
            .collect();
        Slots::from_texts(texts)
    }
}

impl Serialize for Slots {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Slots {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let texts: Vec<String> = Vec::deserialize(deserializer)?;
        Ok(Slots::from_texts(texts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_trip_through_text_and_json() {
        let masked = [
            Masked::Const("user"),
            Masked::Wild,
            Masked::KeyWild("uid="),
            Masked::Const(""),
        ];
        let slots = Slots::from_masked(&masked);
        assert_eq!(slots.len(), 4);
        assert_eq!(
            slots.iter().collect::<Vec<_>>(),
            ["user", "<*>", "uid=<*>", ""]
        );
        assert_eq!(slots.as_text(), "user <*> uid=<*> ");
        let json = serde_json::to_string(&slots).unwrap();
        assert_eq!(json, r#"["user","<*>","uid=<*>",""]"#);
        assert_eq!(serde_json::from_str::<Slots>(&json).unwrap(), slots);
        let changed = slots.rewritten(|i, _| (i == 0).then(|| "<*>".to_owned()));
        assert_eq!(changed.as_text(), "<*> <*> uid=<*> ");
        assert!(Slots::from_masked(&[]).is_empty());
    }
}
