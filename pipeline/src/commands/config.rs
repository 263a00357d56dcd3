//! `cara config check FILE`.

use std::path::Path;

use anyhow::Context;

use cara_pipeline::config::Config;
use cara_pipeline::dataflow::Dataflow;

/// Validates a file (its keys and values, and the dataflow it declares) and says so.
pub fn check(file: &Path) -> anyhow::Result<()> {
    let config = Config::load(file)?;
    Dataflow::declare(&config).with_context(|| format!("in {}", file.display()))?;
    println!("{}: ok", file.display());
    Ok(())
}
