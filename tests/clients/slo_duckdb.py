"""Read an archive's SLO statuses with DuckDB (a reader nobody here wrote), nested
window structs included.
usage: slo_duckdb.py ARCHIVE SLO -> CSV lines `ts_ms,good_5m,total_5m,burn_1h,total_3d,budget`
ordered by ts."""
import os
import sys

import duckdb


def main():
    archive, slo = sys.argv[1], sys.argv[2]
    glob = os.path.join(archive, "slo", "**", "*.parquet")
    rows = duckdb.connect().execute(
        "SELECT epoch_ms(ts), windows['5m'].good, windows['5m'].total, "
        "windows['1h'].burn_rate, windows['3d'].total, budget_remaining "
        f"FROM read_parquet('{glob}', hive_partitioning = true) "
        "WHERE slo = ? ORDER BY ts", [slo]).fetchall()
    for ts, good, total, burn, total_3d, budget in rows:
        print(f"{ts},{good},{total},{burn!r},{total_3d},{budget!r}")


if __name__ == "__main__":
    main()
