"""Compare the tables of two archives row for row with DuckDB (a reader nobody here
wrote): for each TABLE, the rows of each archive and the rows only in one of them,
counted as multisets (EXCEPT ALL both ways), over every column but the hive ones.
usage: compare_archives_duckdb.py LIVE REPLAY TABLE[:COLUMN,...]... -> lines
`table,rows_live,rows_replay,only_live,only_replay`; a table neither archive holds
has 0 rows. Columns after a table's colon are left out of its comparison."""
import os
import sys

import duckdb


def relation(con, archive, table, ignored):
    glob = os.path.join(archive, table, "**", "*.parquet")
    files = con.execute(f"SELECT count(*) FROM glob('{glob}')").fetchone()[0]
    if files == 0:
        return None
    excluded = ", ".join(["date", "hour"] + ignored)
    return f"(SELECT * EXCLUDE ({excluded}) FROM read_parquet('{glob}', hive_partitioning = true))"


def main():
    live, replay, tables = sys.argv[1], sys.argv[2], sys.argv[3:]
    con = duckdb.connect()
    for spec in tables:
        table, _, columns = spec.partition(":")
        ignored = [c for c in columns.split(",") if c]
        a, b = relation(con, live, table, ignored), relation(con, replay, table, ignored)
        count = lambda r: 0 if r is None else con.execute(f"SELECT count(*) FROM {r}").fetchone()[0]
        if a is None or b is None:
            print(f"{table},{count(a)},{count(b)},{count(a)},{count(b)}")
            continue
        only_a = con.execute(f"SELECT count(*) FROM ({a} EXCEPT ALL {b})").fetchone()[0]
        only_b = con.execute(f"SELECT count(*) FROM ({b} EXCEPT ALL {a})").fetchone()[0]
        print(f"{table},{count(a)},{count(b)},{only_a},{only_b}")


if __name__ == "__main__":
    main()
