//! `cara sql`: one read-only query over the archive, printed in the chosen format.

use anyhow::Context;
use cara_sql::{ArchiveQuery, QueryLimits};

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
        let limits = QueryLimits {
            memory_bytes: args.memory_mib.saturating_mul(1 << 20),
            timeout: args.timeout,
            max_result_bytes: args.max_result_mib.saturating_mul(1 << 20),
        };
        let archive = ArchiveQuery::open_with(&args.archive, limits)
            .await
            .with_context(|| format!("opening archive {}", args.archive.display()))?;
        let result = archive.query(&args.query).await?;
        print!("{}", cara_sql::format(&result, args.format)?);
        Ok(())
    })
}
