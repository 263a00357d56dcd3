//! `cara config check FILE`.

use std::path::Path;

use cara_pipeline::config::Config;

/// Validates a file and says so.
pub fn check(file: &Path) -> anyhow::Result<()> {
    Config::load(file)?;
    println!("{}: ok", file.display());
    Ok(())
}
