"""Produce test messages with the Python confluent-kafka client (not ours).

usage: produce.py BROKERS TOPIC FILE [PARTITION]
FILE is JSON lines; each line is {"payload": str | null, "b64": str?, "timestamp_ms": int?}
where b64 holds raw bytes (for binary corpora) and timestamp_ms sets the Kafka message
timestamp (the producer's clock otherwise). Prints the number of acknowledged messages.
"""
import base64
import json
import sys

from confluent_kafka import Producer


def main():
    brokers, topic, path = sys.argv[1:4]
    partition = int(sys.argv[4]) if len(sys.argv) > 4 else None
    producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": True,
                         "message.max.bytes": 2_000_000, "linger.ms": 5})
    failures = []
    acked = [0]

    def on_delivery(err, _msg):
        if err is not None:
            failures.append(str(err))
        else:
            acked[0] += 1

    with open(path, encoding="utf-8") as f:
        for line in f:
            spec = json.loads(line)
            if "b64" in spec:
                value = base64.b64decode(spec["b64"])
            elif spec.get("payload") is None:
                value = None
            else:
                value = spec["payload"].encode("utf-8")
            options = {"value": value, "on_delivery": on_delivery}
            if partition is not None:
                options["partition"] = partition
            if "timestamp_ms" in spec:
                options["timestamp"] = spec["timestamp_ms"]
            while True:
                try:
                    producer.produce(topic, **options)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
    producer.flush(60)
    if failures:
        sys.exit(f"{len(failures)} deliveries failed: {failures[:3]}")
    print(acked[0])


if __name__ == "__main__":
    main()
