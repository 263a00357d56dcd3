//! `cara audit verify`: checks the archived audit trail's hash chain.

use std::path::Path;

use anyhow::Context;
use cara_pipeline::archive::audit_trail::{read_trail, verify_trail};

/// Verifies the trail of `archive` under the key in `key_env`; an error (exit
/// status 1) naming the first entry that does not hold.
pub fn verify(archive: &Path, key_env: &str) -> anyhow::Result<()> {
    let trail = read_trail(archive).context("reading the audit trail (table audit)")?;
    let key = std::env::var(key_env)
        .map(String::into_bytes)
        .unwrap_or_default();
    let keyed = match key.is_empty() {
        true => format!(
            "unkeyed: {key_env} is not set, so an entry appended with a recomputed hash would pass"
        ),
        false => format!("keyed by {key_env}"),
    };
    match verify_trail(&trail, &key) {
        Ok(()) => {
            let head = trail
                .last()
                .map_or("none".to_owned(), |s| s.entry.hash.clone());
            println!(
                "audit trail verifies: {} entries, head {head} ({keyed})",
                trail.len()
            );
            Ok(())
        }
        Err((broken, position)) => {
            let stored = &trail[position];
            anyhow::bail!(
            "audit trail broken: {broken}\n  decision {}, event {}, at {}\n  stored in {} row {}\n({keyed}; a wrong key finds every entry altered)",
            stored.entry.decision_id,
            stored.entry.event,
            cara_operators::time::rfc3339_ms::to_text(stored.entry.at),
            stored.file.display(),
            stored.row
        )
        }
    }
}
