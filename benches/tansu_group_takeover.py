"""Does tansu hand a killed group member's partitions to the survivor? (issue 17)

Starts tansu (memory storage), makes an 8-partition topic, runs two confluent-kafka
consumers (not ours) in one group, with static membership (`group.instance.id`) or
without, kills one with SIGKILL, and prints the survivor's assignments over the next
40 s. A broker that expires the dead member gives the survivor all 8 partitions.
usage: tansu_group_takeover.py static|dynamic [TANSU]"""
import signal
import subprocess
import sys
import time

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

import tansu_broker

PORT = 19692
BROKERS = f"127.0.0.1:{PORT}"


def member(instance, seconds):
    """Runs in a child process: prints its assignment whenever it changes."""
    conf = {"bootstrap.servers": BROKERS, "group.id": "takeover-probe",
            "session.timeout.ms": 10000, "auto.offset.reset": "earliest"}
    if instance != "-":
        conf["group.instance.id"] = instance
    consumer = Consumer(conf)
    consumer.subscribe(["probe"])
    end, last = time.time() + seconds, None
    while time.time() < end:
        consumer.poll(0.2)
        assigned = sorted(p.partition for p in consumer.assignment())
        if assigned != last:
            print(f"{time.time():.1f} {assigned}", flush=True)
            last = assigned
    consumer.close()


def main():
    if sys.argv[1] == "member":
        member(sys.argv[2], float(sys.argv[3]))
        return
    static = sys.argv[1] == "static"
    with tansu_broker.running(tansu_broker.binary(sys.argv, 2), BROKERS, 3):
        admin = AdminClient({"bootstrap.servers": BROKERS})
        for f in admin.create_topics([NewTopic("probe", 8, 1)]).values():
            f.result()
        survivor = subprocess.Popen([sys.executable, __file__, "member", "a" if static else "-", "70"],
                                    stdout=subprocess.PIPE, text=True)
        victim = subprocess.Popen([sys.executable, __file__, "member", "b" if static else "-", "70"],
                                  stdout=subprocess.DEVNULL)
        time.sleep(20)
        killed = time.time()
        victim.send_signal(signal.SIGKILL)
        out, _ = survivor.communicate()
        print(f"membership: {'static' if static else 'dynamic'}; the other member killed at {killed:.1f}")
        final = None
        for line in out.splitlines():
            at, assigned = line.split(" ", 1)
            print(f"  {float(at) - killed:+6.1f} s  survivor assigned {assigned}")
            final = assigned
        print(f"survivor ends with {final} of 8 partitions")


if __name__ == "__main__":
    main()
