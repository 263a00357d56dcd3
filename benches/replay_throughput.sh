#!/usr/bin/env bash
# Replay throughput of the metrics dataflow (BENCHMARKS.md, "Replay from the archive"):
# N metric points (1,000 series, one point per series every 10 s of event time)
# produced with the Python client (confluent-kafka, installed by tests/run) into
# `cara broker`, archived by `cara run`, then `cara backtest replay` under
# /usr/bin/time -v (wall time, CPU, peak RSS).
#
#   benches/replay_throughput.sh target/release/cara [N]
#
# Works in /tmp/replay-metrics; uses ports 19093 (broker) and 19899 (HTTP).
set -euo pipefail
B=${1:?release cara binary}
N=${2:-2000000}
W=/tmp/replay-metrics; rm -rf $W; mkdir -p $W; cd $W
printf '[embedded_broker]\ntelemetry_partitions = 48\n' > broker.toml
printf '[archive]\nroll_interval = "5s"\n[http]\nlisten = "127.0.0.1:19899"\n' > run.toml
$B broker --listen 127.0.0.1:19093 --config broker.toml > broker.out 2>&1 &
BP=$!; sleep 3
$B run --brokers 127.0.0.1:19093 --archive live --config run.toml > run.out 2> run.err &
RP=$!; sleep 5
python3 - "$N" <<'PY'
import sys, json
from confluent_kafka import Producer
n = int(sys.argv[1])
p = Producer({"bootstrap.servers": "127.0.0.1:19093", "linger.ms": 50, "batch.num.messages": 10000, "queue.buffering.max.messages": 1000000})
t0 = 1767225600000
for i in range(n):
    series, step = i % 1000, i // 1000
    value = 100 + (series % 7) * 3 + (step % 17) * 0.5
    line = '{"ts":%d,"name":"latency_ms","value":%.1f,"labels":{"service":"s%d","pod":"p%d"}}' % (t0 + step * 10000, value, series % 20, series)
    while True:
        try:
            p.produce("telemetry.metrics", line.encode(), key=("s%d" % series).encode())
            break
        except BufferError:
            p.poll(0.05)
    if i % 10000 == 0:
        p.poll(0)
p.flush()
print("produced", n)
PY
for i in $(seq 600); do [ "$(curl -s 127.0.0.1:19899/metrics | awk '/^cara_archive_rows_total\{table="metrics"\}/ {s+=$2} END {print s+0}')" -ge "$N" ] && break; sleep 2; done
kill -TERM $RP; wait $RP || true; kill $BP || true
du -sh live/metrics | cat
/usr/bin/time -v $B backtest replay --archive live --out out 2> time.err | tail -3
grep -E "Maximum resident|Elapsed|Percent of CPU" time.err
