"""Group an archive's log lines by template with DuckDB (a reader nobody here wrote).
usage: log_templates_duckdb.py ARCHIVE -> CSV lines `service,template,lines,first_param`
ordered by service and template (first_param: the first parameter of the earliest line)."""
import os
import sys

import duckdb


def main():
    glob = os.path.join(sys.argv[1], "logs", "**", "*.parquet")
    rows = duckdb.connect().execute(
        f"SELECT service, template, count(*), arg_min(params[1], ts) "
        f"FROM read_parquet('{glob}', hive_partitioning = true) "
        f"GROUP BY service, template ORDER BY service, template").fetchall()
    for service, template, lines, first in rows:
        print(f"{service},{template},{lines},{first}")


if __name__ == "__main__":
    main()
