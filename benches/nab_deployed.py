"""NAB through the deployed path: every NAB series produced to a broker, scored by a
plain `cara run` (no configuration), its alerts read back from `cara.alerts` and
scored with NAB's rules beside the backtest of the same detectors.

usage: python3 benches/nab_deployed.py [--cara BIN] [--tansu BIN] [--data DIR] [--work DIR]

1. starts tansu, a Kafka-compatible broker that is not ours and keeps everything
   (`cara broker`, librdkafka's mock cluster, keeps 5 MiB a partition and dropped
   7% of NAB's rows when the producer ran ahead of the consumer);
2. starts `cara run --brokers ... --archive WORK/archive` with no configuration;
3. produces every row of every NAB file (label `series = <group/file.csv>`, metric
   `nab`), all files merged in event-time order as a live feed would carry them,
   keyed by series, each message's Kafka timestamp its row's time, with the Python
   confluent-kafka client (not ours);
4. waits until the archive holds every row (nothing dropped), stops `cara run`;
5. consumes `cara.alerts` from the start (confluent-kafka) into WORK/alerts.jsonl;
6. runs `cara backtest nab --alerts WORK/alerts.jsonl`, which prints the backtest at
   the default policy, the deployed path's score, and the series that differ.
"""
import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition


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


def wait_for(what, check, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    sys.exit(f"nab_deployed: timed out waiting for {what}")


def metric(port, name, labels):
    """Sum of a Prometheus counter from cara's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and labels in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def produce(bootstrap, rows):
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "linger.ms": 20, "queue.buffering.max.messages": 1_000_000})
    failures = []

    def on_delivery(err, _msg):
        if err is not None:
            failures.append(str(err))

    for i, (ms, name, value) in enumerate(rows):
        payload = json.dumps({"ts": ms, "name": "nab", "type": "gauge", "value": value,
                              "labels": {"series": name}})
        while True:
            try:
                producer.produce("telemetry.metrics", value=payload.encode(), key=name.encode(),
                                 timestamp=ms, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        if i % 10_000 == 0:
            producer.poll(0)
            print(f"\rproduced {i:,} of {len(rows):,}", end="", file=sys.stderr)
    producer.flush(60)
    print(f"\rproduced {len(rows):,} of {len(rows):,}", file=sys.stderr)
    if failures:
        sys.exit(f"nab_deployed: {len(failures)} messages not delivered: {failures[0]}")


def consume_alerts(bootstrap, path):
    """Every message of cara.alerts, read from the start until it has been quiet for
    six seconds (tansu's reported end offsets are not always one past the last
    message, so they do not say when to stop)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "nab-deployed-reader",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    metadata = consumer.list_topics("cara.alerts", timeout=10)
    partitions = [TopicPartition("cara.alerts", p, 0)
                  for p in metadata.topics["cara.alerts"].partitions]
    consumer.assign(partitions)
    count = 0
    read = {}
    quiet = 0
    with open(path, "w") as out:
        while quiet < 3:
            message = consumer.poll(2)
            if message is None:
                quiet += 1
                continue
            if message.error():
                raise KafkaException(message.error())
            quiet = 0
            out.write(message.value().decode() + "\n")
            count += 1
            read[message.partition()] = read.get(message.partition(), 0) + 1
    consumer.close()
    print(f"nab_deployed: cara.alerts messages per partition {dict(sorted(read.items()))}",
          file=sys.stderr)
    return count


def main():
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser()
    parser.add_argument("--cara", default=str(here.parent / "target/release/cara"))
    parser.add_argument("--data", default=str(here.parent.parent / "shared/datasets/nab"))
    parser.add_argument("--work", default=None)
    parser.add_argument("--tansu", default=str(Path.home() / ".cargo/bin/tansu"))
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="nab-deployed-"))
    work.mkdir(parents=True, exist_ok=True)
    rows, files = rows_of(Path(args.data))
    print(f"nab_deployed: {len(rows):,} rows of {files} files; work dir {work}", file=sys.stderr)

    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    url = f"tcp://{bootstrap}"
    broker = subprocess.Popen([args.tansu, "broker", "--listener-url", url,
                               "--advertised-listener-url", url, "--storage-engine",
                               "memory://tansu/"], cwd=work, env={**os.environ, "RUST_LOG": "warn"},
                              stdout=open(work / "tansu.out", "w"), stderr=subprocess.STDOUT)

    def listening():
        import socket

        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    wait_for("tansu to listen", listening, 30)
    http = free_port()
    run = subprocess.Popen([args.cara, "run", "--brokers", bootstrap, "--archive",
                            str(work / "archive"), "--http", f"127.0.0.1:{http}"],
                           stdout=open(work / "run.out", "w"), stderr=subprocess.STDOUT)
    try:
        def ready():
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{http}/readyz", timeout=2).status == 200
            except OSError:
                return False

        # cara creates its topics on tansu before it is ready.
        wait_for("cara run to be ready", ready, 120)
        started = time.monotonic()
        produce(bootstrap, rows)
        wait_for("every NAB row archived",
                 lambda: metric(http, "cara_archive_rows_total", 'table="metrics"') >= len(rows),
                 1800)
        print(f"nab_deployed: produced and archived in {time.monotonic() - started:.1f} s",
              file=sys.stderr)
        archived = metric(http, "cara_archive_rows_total", 'table="metrics"')
        dead = metric(http, "cara_archive_rows_total", 'table="dlq"')
        run.send_signal(signal.SIGINT)
        run.wait(120)
        alerts = consume_alerts(bootstrap, work / "alerts.jsonl")
        print(f"nab_deployed: {int(archived):,} rows archived, {int(dead)} dead-lettered, "
              f"{alerts} alert messages on cara.alerts", file=sys.stderr)
    finally:
        if run.poll() is None:
            run.kill()
        broker.kill()
    archived_alerts = subprocess.run(
        [args.cara, "sql", "--archive", str(work / "archive"), "--format", "csv",
         "SELECT count(*) FROM alerts"], check=True, capture_output=True, text=True
    ).stdout.split()[-1]
    print(f"nab_deployed: table alerts holds {archived_alerts} transitions", file=sys.stderr)
    result = subprocess.run([args.cara, "backtest", "nab", "--data", args.data, "--alerts",
                             str(work / "alerts.jsonl")], check=True)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
