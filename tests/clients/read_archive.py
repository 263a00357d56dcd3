"""Count an archive's rows with two readers nobody here wrote: pyarrow and DuckDB.
usage: read_archive.py ARCHIVE -> {"pyarrow": {table: rows}, "duckdb": {table: rows}}"""
import json
import os
import sys

import duckdb
import pyarrow.dataset as ds


def main():
    root = sys.argv[1]
    out = {"pyarrow": {}, "duckdb": {}, "distinct": {}, "maps": {}}
    con = duckdb.connect()
    for table in ("metrics", "logs", "spans", "dlq"):
        path = os.path.join(root, table)
        if not os.path.isdir(path):
            out["pyarrow"][table] = 0
            out["duckdb"][table] = 0
            continue
        dataset = ds.dataset(path, format="parquet", partitioning="hive")
        out["pyarrow"][table] = dataset.count_rows()
        glob = os.path.join(path, "**", "*.parquet")
        out["duckdb"][table] = con.execute(
            f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true)").fetchone()[0]
        if table == "metrics":
            # Reads every labels map (DuckDB refuses maps whose keys repeat).
            out["maps"][table] = con.execute(
                f"SELECT count(labels) FROM read_parquet('{glob}', hive_partitioning = true)").fetchone()[0]
        if table != "dlq":
            out["distinct"][table] = con.execute(
                f"SELECT count(*) FROM (SELECT DISTINCT _topic, _partition, _offset, _index "
                f"FROM read_parquet('{glob}', hive_partitioning = true))").fetchone()[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
