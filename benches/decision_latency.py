"""Decision latency on a live run: for every decision cara proposed, the time from
the message of the alert that opened its incident (on cara.alerts) to the message of
the proposal (on cara.decisions), both stamped by cara's producers when sent (Kafka
CreateTime). Reads with the confluent-kafka client (not ours) from BROKERS.
usage: decision_latency.py BROKERS -> one line per decision, then count, p50, p99, max over
the decisions and over each incident's first decision"""
import json
import sys

from confluent_kafka import Consumer, TopicPartition


def read_all(brokers, topic):
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": "latency-probe",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    metadata = consumer.list_topics(topic, timeout=10)
    partitions = [TopicPartition(topic, p, 0) for p in metadata.topics[topic].partitions]
    consumer.assign(partitions)
    ends = {p.partition: consumer.get_watermark_offsets(p, timeout=10)[1] for p in partitions}
    left = {p: e for p, e in ends.items() if e > 0}
    out = []
    while left:
        m = consumer.poll(5)
        if m is None:
            break
        if m.error():
            continue
        out.append((m.timestamp()[1], json.loads(m.value())))
        if m.offset() + 1 >= ends[m.partition()]:
            left.pop(m.partition(), None)
    consumer.close()
    return out


def main():
    brokers = sys.argv[1]
    alert_sent = {}
    for ts, a in read_all(brokers, "cara.alerts"):
        if a.get("status") == "firing":
            alert_sent.setdefault(a["id"], ts)
    first_alerts = {}
    opened_sent = {}
    for ts, i in read_all(brokers, "cara.incidents"):
        first_alerts.setdefault(i["id"], i["alert_ids"])
        opened_sent.setdefault(i["id"], ts)
    latencies = []
    first_per_incident = {}
    for ts, d in read_all(brokers, "cara.decisions"):
        if d["state"] != "proposed":
            continue
        sent = [alert_sent[a] for a in first_alerts.get(d["incident_id"], []) if a in alert_sent]
        if not sent:
            continue
        latency = ts - min(sent)
        latencies.append(latency)
        first_per_incident[d["incident_id"]] = min(latency, first_per_incident.get(d["incident_id"], latency))
        opened = opened_sent.get(d["incident_id"], ts) - min(sent)
        print(f"{d['id']} {d['action']} {d['incident_id']}: {latency} ms (incident sent after {opened} ms)")
    if not latencies:
        print("no decisions")
        return
    for name, sample in [("decisions", latencies), ("incidents (first decision)", list(first_per_incident.values()))]:
        sample.sort()
        # Nearest rank, as cara's reports: a measured value.
        q = lambda p: sample[int(round(p * (len(sample) - 1)))]
        print(f"{name} {len(sample)} p50 {q(0.5)} ms p99 {q(0.99)} ms max {sample[-1]} ms")


if __name__ == "__main__":
    main()
