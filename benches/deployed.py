"""What the deployed-path benches share: tansu (a Kafka-compatible broker that is not
ours and keeps everything), a `cara run` with no configuration against it, waiting on
cara's /metrics, and the Python confluent-kafka client (not ours) to produce and read.

Used by `nab_deployed.py` and `loghub_deployed.py`; not run on its own.
"""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

REPO = Path(__file__).resolve().parent.parent


def wait_for(what, check, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    sys.exit(f"deployed: timed out waiting for {what}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(port, name, labels):
    """Sum of a Prometheus counter from cara's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and labels in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


class Deployment:
    """tansu and `cara run --brokers ... --archive WORK/archive` (no config)."""

    def __init__(self, cara, tansu, work):
        self.cara, self.work = cara, Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.bootstrap = f"127.0.0.1:{port}"
        url = f"tcp://{self.bootstrap}"
        self.broker = subprocess.Popen(
            [tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            cwd=self.work, env={**os.environ, "RUST_LOG": "warn"},
            stdout=open(self.work / "tansu.out", "w"), stderr=subprocess.STDOUT)

        def listening():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for("tansu to listen", listening, 30)
        self.http = free_port()
        self.archive = self.work / "archive"
        self.run = subprocess.Popen(
            [cara, "run", "--brokers", self.bootstrap, "--archive", str(self.archive),
             "--http", f"127.0.0.1:{self.http}"],
            stdout=open(self.work / "run.out", "w"), stderr=subprocess.STDOUT)

        def ready():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/readyz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        # cara creates its topics on tansu before it is ready.
        wait_for("cara run to be ready", ready, 120)

    def archived(self, table):
        return metric(self.http, "cara_archive_rows_total", f'table="{table}"')

    def stop_cara(self):
        self.run.send_signal(signal.SIGINT)
        self.run.wait(120)

    def close(self):
        if self.run.poll() is None:
            self.run.kill()
        self.broker.kill()

    def sql(self, query):
        return subprocess.run([self.cara, "sql", "--archive", str(self.archive), "--format",
                               "csv", query], check=True, capture_output=True, text=True).stdout


def produce(bootstrap, topic, messages, total):
    """Produces `messages` (key, value, timestamp ms) and exits on any failure."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "linger.ms": 20, "queue.buffering.max.messages": 1_000_000})
    failures = []

    def on_delivery(err, _msg):
        if err is not None:
            failures.append(str(err))

    for i, (key, value, ts) in enumerate(messages):
        while True:
            try:
                producer.produce(topic, value=value, key=key, timestamp=ts,
                                 on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        if i % 10_000 == 0:
            producer.poll(0)
            print(f"\rproduced {i:,} of {total:,}", end="", file=sys.stderr)
    producer.flush(60)
    print(f"\rproduced {total:,} of {total:,}", file=sys.stderr)
    if failures:
        sys.exit(f"deployed: {len(failures)} messages not delivered: {failures[0]}")


def consume_all(bootstrap, topic, path):
    """Every message of `topic`, read from the start until it has been quiet for six
    seconds (tansu's reported end offsets are not always one past the last message,
    so they do not say when to stop), one per line into `path`; returns the count."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "deployed-bench-reader",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    metadata = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, 0) for p in metadata.topics[topic].partitions])
    count, quiet = 0, 0
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
    consumer.close()
    return count
