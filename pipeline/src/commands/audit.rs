//! `cara audit verify` (the archived audit trail's hash chain) and `cara audit
//! report` (the compliance summary, Markdown or HTML).

use std::path::{Path, PathBuf};

use anyhow::Context;
use cara_pipeline::archive::audit_trail::{checkpointed_head, read_trail, verify_trail};

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
            check_head(archive, &trail)?;
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

/// Compares the trail's end with the chain head the decision stage checkpointed:
/// entries dropped from the end leave every link intact, but not the count.
fn check_head(
    archive: &Path,
    trail: &[cara_pipeline::archive::audit_trail::StoredEntry],
) -> anyhow::Result<()> {
    // The decision exchange topic of the run that wrote the archive.
    let layout = cara_pipeline::archive::layout::ArchiveLayout::new(archive);
    let topic = std::fs::read_to_string(layout.run_config_file())
        .ok()
        .and_then(|text| cara_pipeline::config::Config::from_toml(&text).ok())
        .map_or_else(
            || "cara.internal.decisions".to_owned(),
            |c| c.kafka.decision_exchange_topic,
        );
    let Some((entries, hash)) = checkpointed_head(archive, &topic) else {
        return Ok(());
    };
    let stored = trail.last().map_or(0, |s| s.entry.seq + 1);
    if stored < entries {
        anyhow::bail!(
            "audit trail broken: entries at the end were dropped: the trail ends at {stored} entries, the decision stage checkpointed {entries} (head {hash})"
        );
    }
    if stored == entries && trail.last().is_some_and(|s| s.entry.hash != hash) {
        anyhow::bail!("audit trail broken: its last entry is not the checkpointed head {hash}");
    }
    Ok(())
}

/// Writes the compliance summary of the decisions proposed in `[from, to)`.
pub fn report(
    archive: &Path,
    from: Option<String>,
    to: Option<String>,
    format: &str,
    out: Option<PathBuf>,
    key_env: &str,
) -> anyhow::Result<()> {
    let time = |flag: &str, value: Option<String>| -> anyhow::Result<Option<i64>> {
        value
            .map(|v| {
                chrono::DateTime::parse_from_rfc3339(&v)
                    .map(|t| t.timestamp_millis())
                    .with_context(|| {
                        format!(
                            "--{flag} {v:?}: give an RFC 3339 time such as 2026-12-01T00:00:00Z"
                        )
                    })
            })
            .transpose()
    };
    let range = (time("from", from)?, time("to", to)?);
    let trail = read_trail(archive).context("reading the audit trail (table audit)")?;
    let key = std::env::var(key_env)
        .map(String::into_bytes)
        .unwrap_or_default();
    let verification = match verify_trail(&trail, &key) {
        Ok(()) if key.is_empty() => format!("verifies (unkeyed: {key_env} not set)"),
        Ok(()) => "verifies".to_owned(),
        Err((broken, _)) => format!("DOES NOT VERIFY: {broken}"),
    };
    let entries: Vec<_> = trail.into_iter().map(|s| s.entry).collect();
    let summary = cara_pipeline::audit_report::summarise(&entries, range, verification);
    let text = match format {
        "md" => summary.to_markdown(),
        "html" => summary
            .to_html()
            .map_err(|e| anyhow::anyhow!("drawing the report's chart: {e}"))?,
        other => anyhow::bail!("--format {other}: use md or html"),
    };
    match out {
        Some(path) => {
            std::fs::write(&path, text)
                .with_context(|| format!("writing the report to {}", path.display()))?;
            println!("audit report: {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}
