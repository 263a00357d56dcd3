"""Does tansu serve a fetch that starts inside a producer's batch? (issue 17)

A consumer that resumes from a checkpoint asks for the offset after the last record
it archived, which is often inside a batch the producer wrote. Kafka returns that
batch and the client skips the records before the offset. This script starts tansu
(memory storage), writes 100 records in one batch and then 10 more in a second one,
and fetches from offsets 0, 50 and 99 with the confluent-kafka client (not ours). It
prints the first offset each fetch returns; Kafka returns the offset asked for.
usage: tansu_fetch_inside_batch.py [TANSU]"""
import sys

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import tansu_broker

PORT = 19792
BROKERS = f"127.0.0.1:{PORT}"


def first_offset(start):
    consumer = Consumer({"bootstrap.servers": BROKERS, "group.id": f"probe-{start}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition("batches", 0, start)])
    message = consumer.poll(10)
    consumer.close()
    return None if message is None else message.offset()


def main():
    with tansu_broker.running(tansu_broker.binary(sys.argv, 1), BROKERS, 2):
        admin = AdminClient({"bootstrap.servers": BROKERS})
        for f in admin.create_topics([NewTopic("batches", 1, 1)]).values():
            f.result()
        producer = Producer({"bootstrap.servers": BROKERS, "linger.ms": 200})
        for batch in (range(100), range(100, 110)):
            for i in batch:
                producer.produce("batches", value=str(i).encode())
            producer.flush()
        for start in (0, 50, 99):
            print(f"fetch from {start}: first offset returned {first_offset(start)}")


if __name__ == "__main__":
    main()
