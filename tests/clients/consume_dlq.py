"""Read every message of a topic with confluent-kafka and print them as JSON lines
({"key", "reason", "topic", "offset", "bytes"}). usage: consume_dlq.py BROKERS TOPIC EXPECTED"""
import json
import sys
import time

from confluent_kafka import Consumer


def main():
    brokers, topic, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"dlq-reader-{time.time()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    seen = []
    deadline = time.time() + 60
    while len(seen) < expected and time.time() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        headers = {k: (v.decode() if v is not None else None) for k, v in (msg.headers() or [])}
        seen.append({"key": msg.key().decode() if msg.key() else None, "reason": headers.get("cara.reason"),
                     "topic": headers.get("cara.topic"), "offset": headers.get("cara.offset"),
                     "bytes": len(msg.value() or b"")})
    # Linger briefly to catch duplicates beyond the expected count.
    end = time.time() + 2
    while time.time() < end:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            seen.append({"key": msg.key().decode() if msg.key() else None})
    consumer.close()
    for s in seen:
        print(json.dumps(s))


if __name__ == "__main__":
    main()
