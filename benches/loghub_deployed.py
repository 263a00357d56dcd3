"""Loghub 2k through the deployed path: every line of the sixteen systems produced to
a broker with its original level, mined by a plain `cara run` (no configuration), the
template ids read back from the archive with DuckDB and scored beside
`cara backtest loghub`.

usage: python3 benches/loghub_deployed.py [--cara BIN] [--tansu BIN] [--data DIR]
                                          [--work DIR] [--key service|line]

1. starts tansu and `cara run` with no configuration (`deployed.py`);
2. produces each system's lines (`Content` of the corrected structured CSV) as log
   records `{"ts", "service": <system>, "level": <its Level, else info>, "message",
   "attributes": {"line": <LineId>}}`, the systems interleaved line by line, one
   second of event time apart; keyed by service (`--key service`, one miner sees a
   system's every line) or by system and line (`--key line`: a system's lines spread
   over every partition, each partition's miner sees a share);
3. waits until the archive holds every line, stops `cara run`;
4. reads `service, attributes.line, template_id` of table `logs` with DuckDB (not
   ours) into WORK/assignments.csv;
5. runs `cara backtest loghub --assignments WORK/assignments.csv`.
"""
import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from deployed import REPO, Deployment, produce, wait_for

SYSTEMS = ["HDFS", "Hadoop", "Spark", "Zookeeper", "BGL", "HPC", "Thunderbird", "Windows",
           "Linux", "Android", "HealthApp", "Apache", "Proxifier", "OpenSSH", "OpenStack", "Mac"]
START_MS = 1_764_000_000_000


def lines_of(data_dir):
    """Per system, its (line id, level, content) in file order."""
    systems = {}
    for system in SYSTEMS:
        path = data_dir / system / f"{system}_2k.log_structured_corrected.csv"
        with open(path, newline="") as f:
            systems[system] = [(int(r["LineId"]), r.get("Level") or "info", r["Content"])
                               for r in csv.DictReader(f)]
    return systems


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cara", default=str(REPO / "target/release/cara"))
    parser.add_argument("--tansu", default=str(Path.home() / ".cargo/bin/tansu"))
    parser.add_argument("--data", default=str(REPO.parent / "shared/datasets/loghub2k"))
    parser.add_argument("--work", default=None)
    parser.add_argument("--key", choices=["service", "line"], default="service")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="loghub-deployed-"))
    systems = lines_of(Path(args.data))
    total = sum(len(v) for v in systems.values())
    longest = max(len(v) for v in systems.values())
    print(f"loghub_deployed: {total:,} lines of {len(systems)} systems, keyed by {args.key}; "
          f"work dir {work}", file=sys.stderr)

    def messages():
        for i in range(longest):
            for system in SYSTEMS:
                if i >= len(systems[system]):
                    continue
                line_id, level, content = systems[system][i]
                ts = START_MS + i * 1000
                record = {"ts": ts, "service": system, "level": level, "message": content,
                          "attributes": {"line": line_id}}
                key = system if args.key == "service" else f"{system}/{line_id}"
                yield key.encode(), json.dumps(record).encode(), ts

    deployment = Deployment(args.cara, args.tansu, work)
    try:
        started = time.monotonic()
        produce(deployment.bootstrap, "telemetry.logs", messages(), total)
        wait_for("every line archived", lambda: deployment.archived("logs") >= total, 600)
        print(f"loghub_deployed: produced and archived in {time.monotonic() - started:.1f} s",
              file=sys.stderr)
        dead = deployment.archived("dlq")
        deployment.stop_cara()
    finally:
        deployment.close()
    rows = duckdb.sql(
        f"SELECT service, CAST(json_extract(attributes, '$.line') AS BIGINT) AS line, template_id "
        f"FROM read_parquet('{deployment.archive}/logs/**/*.parquet', hive_partitioning = false) "
        f"ORDER BY service, line").fetchall()
    with open(work / "assignments.csv", "w") as out:
        out.write("system,line,template_id\n")
        for service, line, template_id in rows:
            out.write(f"{service},{line},{template_id}\n")
    print(f"loghub_deployed: {len(rows):,} lines read back by DuckDB, {int(dead)} dead-lettered",
          file=sys.stderr)
    subprocess.run([args.cara, "backtest", "loghub", "--data", args.data, "--assignments",
                    str(work / "assignments.csv")], check=True)


if __name__ == "__main__":
    main()
