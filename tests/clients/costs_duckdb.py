"""Read table `costs` of a cara archive with DuckDB: every row's window start (epoch
ms), owner, resource and total, money as DuckDB's exact DECIMAL printed as text.
usage: costs_duckdb.py ARCHIVE -> CSV lines, ordered"""
import os
import sys

import duckdb


def main():
    glob = os.path.join(sys.argv[1], "costs", "**", "*.parquet")
    con = duckdb.connect()
    rows = con.execute(
        f"""SELECT epoch_ms(window_start), owner, resource, total::VARCHAR, typeof(total)
            FROM read_parquet('{glob}', hive_partitioning = true)
            ORDER BY 1, 3, 2""").fetchall()
    for row in rows:
        print(",".join(str(v) for v in row))


if __name__ == "__main__":
    main()
