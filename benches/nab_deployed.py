"""NAB through the deployed path: every NAB series produced to a broker, scored by a
plain `cara run` (no configuration), its alerts read back from `cara.alerts` and
scored with NAB's rules beside the backtest of the same detectors.

usage: python3 benches/nab_deployed.py [--cara BIN] [--tansu BIN] [--data DIR] [--work DIR]

1. starts tansu and `cara run` with no configuration (`deployed.py`; `cara broker`,
   librdkafka's mock cluster, keeps 5 MiB a partition and dropped 7% of NAB's rows
   when the producer ran ahead of the consumer);
2. produces every row of every NAB file (label `series = <group/file.csv>`, metric
   `nab`), all files merged in event-time order as a live feed would carry them,
   keyed by series, each message's Kafka timestamp its row's time;
3. waits until the archive holds every row (nothing dropped), stops `cara run`;
4. reads `cara.alerts` from the start into WORK/alerts.jsonl;
5. runs `cara backtest nab --alerts WORK/alerts.jsonl`, which prints the backtest at
   the default policy, the deployed path's score, and the series that differ.
"""
import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from deployed import REPO, Deployment, consume_all, produce, wait_for


def rows_of(data_dir):
    """(ts_ms, series, value) of every row of every labelled file, in time order."""
    labels = json.loads((data_dir / "labels" / "combined_windows.json").read_text())
    rows = []
    for name in sorted(labels):
        with open(data_dir / "data" / name, newline="") as f:
            for row in csv.DictReader(f):
                ts = datetime.strptime(row["timestamp"], "%Y-%m-%d %H:%M:%S")
                ms = int(ts.replace(tzinfo=timezone.utc).timestamp() * 1000)
                rows.append((ms, name, float(row["value"])))
    rows.sort(key=lambda r: (r[0], r[1]))
    return rows, len(labels)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cara", default=str(REPO / "target/release/cara"))
    parser.add_argument("--tansu", default=str(Path.home() / ".cargo/bin/tansu"))
    parser.add_argument("--data", default=str(REPO.parent / "shared/datasets/nab"))
    parser.add_argument("--work", default=None)
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="nab-deployed-"))
    rows, files = rows_of(Path(args.data))
    print(f"nab_deployed: {len(rows):,} rows of {files} files; work dir {work}", file=sys.stderr)
    deployment = Deployment(args.cara, args.tansu, work)
    try:
        started = time.monotonic()
        messages = (
            (name.encode(),
             json.dumps({"ts": ms, "name": "nab", "type": "gauge", "value": value,
                         "labels": {"series": name}}).encode(),
             ms)
            for ms, name, value in rows)
        produce(deployment.bootstrap, "telemetry.metrics", messages, len(rows))
        wait_for("every NAB row archived", lambda: deployment.archived("metrics") >= len(rows), 1800)
        print(f"nab_deployed: produced and archived in {time.monotonic() - started:.1f} s",
              file=sys.stderr)
        archived, dead = deployment.archived("metrics"), deployment.archived("dlq")
        deployment.stop_cara()
        alerts = consume_all(deployment.bootstrap, "cara.alerts", work / "alerts.jsonl")
        in_table = deployment.sql("SELECT count(*) FROM alerts").split()[-1]
        print(f"nab_deployed: {int(archived):,} rows archived, {int(dead)} dead-lettered, "
              f"{alerts} alert messages on cara.alerts, {in_table} in table alerts",
              file=sys.stderr)
    finally:
        deployment.close()
    subprocess.run([args.cara, "backtest", "nab", "--data", args.data, "--alerts",
                    str(work / "alerts.jsonl")], check=True)


if __name__ == "__main__":
    main()
