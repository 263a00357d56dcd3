//! `cara sql`: one read-only query over the archive, printed in the chosen format.

use anyhow::Context;
use cara_sql::{ArchiveLocation, ArchiveQuery, QueryLimits};

use super::SqlArgs;

/// Runs the query and prints the result.
pub fn main(args: SqlArgs) -> anyhow::Result<()> {
    let location = ArchiveLocation::parse(&args.archive)?;
    if let Some(dir) = location.as_path() {
        if !dir.is_dir() {
            anyhow::bail!(
                "archive directory {} does not exist; pass --archive with the directory `cara run` writes to, or an object-store URL such as s3://bucket/prefix",
                dir.display()
            );
        }
    }
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let limits = QueryLimits {
            memory_bytes: args.memory_mib.saturating_mul(1 << 20),
            timeout: args.timeout,
            max_result_bytes: args.max_result_mib.saturating_mul(1 << 20),
        };
        let name = location.to_string();
        let archive = ArchiveQuery::open_location(location, limits)
            .await
            .with_context(|| format!("opening archive {name}"))?;
        let result = archive.query(&args.query).await?;
        print!("{}", cara_sql::format(&result, args.format)?);
        Ok(())
    })
}
