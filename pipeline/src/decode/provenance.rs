//! The `_topic`, `_partition`, `_offset`, `_index` columns every input row carries.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Builder, Int64Builder, StringBuilder};

use super::SourcePosition;

#[derive(Default)]
pub(crate) struct ProvenanceColumns {
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    index: Int32Builder,
}

impl ProvenanceColumns {
    pub fn append(&mut self, pos: &SourcePosition<'_>, index: i32) {
        self.topic.append_value(pos.topic);
        self.partition.append_value(pos.partition);
        self.offset.append_value(pos.offset);
        self.index.append_value(index);
    }

    /// The four columns, in schema order.
    pub fn finish(&mut self) -> [ArrayRef; 4] {
        [
            Arc::new(self.topic.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.index.finish()),
        ]
    }
}
