//! `cara sql`: one read-only query over the archive, printed in the chosen format.

use anyhow::Context;
use cara_sql::ArchiveQuery;

use super::SqlArgs;

/// Runs the query and prints the result.
pub fn main(args: SqlArgs) -> anyhow::Result<()> {
    if !args.archive.is_dir() {
        anyhow::bail!(
            "archive directory {} does not exist; pass --archive with the directory `cara run` writes to",
            args.archive.display()
        );
    }
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let archive = ArchiveQuery::open(&args.archive)
            .await
            .with_context(|| format!("opening archive {}", args.archive.display()))?;
        let batches = archive.query(&args.query).await?;
        print!("{}", cara_sql::format(&batches, args.format)?);
        Ok(())
    })
}
