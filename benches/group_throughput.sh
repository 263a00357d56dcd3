#!/usr/bin/env bash
# Throughput of one `cara run` process against two in one consumer group (issue 17),
# from the same backlog on tansu (memory storage): `cara gen` writes RECORDS records
# as fast as it can, then for PROCESSES in 1 and 2 a fresh archive and group read
# it all (twice each, alternating), with the default configuration. Timed from the
# processes' start until their `cara_archive_rows_total` of metrics, logs and spans
# add up to every record; DuckDB (not ours) then checks none is archived twice. (The
# processes start together, so they share the first assignment; a partition moved
# later would resume from a checkpoint inside a producer batch, whose rest tansu 0.6
# skips, see tansu_fetch_inside_batch.py, and the count would never be reached.)
# usage: benches/group_throughput.sh CARA [TANSU] [RECORDS]
set -euo pipefail
CARA=$(realpath "${1:?usage: group_throughput.sh CARA [TANSU] [RECORDS]}")
TANSU=${2:-$HOME/.cargo/bin/tansu}
RECORDS=${3:-500000}
PORT=19592
BROKERS=127.0.0.1:$PORT
DIR=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    rm -rf "$DIR"
}
trap cleanup EXIT

(cd "$DIR" && exec "$TANSU" broker --listener-url "tcp://$BROKERS" \
    --advertised-listener-url "tcp://$BROKERS" --storage-engine memory://tansu/ \
    >"$DIR/tansu.log" 2>&1) &
pids+=($!)
sleep 2

# cara creates its topics on a broker that creates none: a first run does it.
"$CARA" run --brokers "$BROKERS" --group setup --archive "$DIR/setup" \
    --http 127.0.0.1:19599 >"$DIR/setup.log" 2>&1 &
setup=$!
until curl -sf http://127.0.0.1:19599/readyz >/dev/null; do sleep 0.5; done
kill -TERM "$setup"
wait "$setup" || true

echo "producing $RECORDS records"
"$CARA" gen --brokers "$BROKERS" --rate 0 --count "$RECORDS" --seed 5 \
    >"$DIR/gen.json" 2>"$DIR/gen.log" || { tail -5 "$DIR/gen.log" >&2; exit 1; }
# Older than the roll interval (10 s), as a backlog after an outage: read, it is
# flushed at once rather than waiting for the interval.
sleep 11
expected=$(python3 -c "import json; s=json.load(open('$DIR/gen.json')); print(s['metrics'] + s['logs'] + s['spans'])")

archived_rows() {
    local total=0 port n
    for port in "$@"; do
        n=$(curl -s "http://127.0.0.1:$port/metrics" |
            awk '/^cara_archive_rows_total\{table="(metrics|logs|spans)"\}/ {s += $2} END {print s + 0}')
        total=$((total + ${n%.*}))
    done
    echo "$total"
}

run=0
for processes in 1 2 1 2; do
    run=$((run + 1))
    archive="$DIR/archive-$run"
    ports=()
    runs=()
    started=$(date +%s%N)
    for n in $(seq 1 "$processes"); do
        port=$((19600 + 10 * run + n))
        "$CARA" run --brokers "$BROKERS" --group "group-$run" --archive "$archive" \
            --http "127.0.0.1:$port" >"$DIR/run-$run-$n.log" 2>&1 &
        pids+=($!)
        runs+=($!)
        ports+=("$port")
    done
    until [ "$(archived_rows "${ports[@]}")" -ge "$expected" ]; do
        if (($(date +%s%N) - started > 900000000000)); then
            echo "not all archived after 900 s: $(archived_rows "${ports[@]}") of $expected" >&2
            exit 1
        fi
        sleep 0.2
    done
    ms=$((($(date +%s%N) - started) / 1000000))
    for pid in "${runs[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${runs[@]}"; do wait "$pid" 2>/dev/null || true; done
    python3 - "$archive" "$expected" "$processes" "$ms" <<'PY'
import sys
import duckdb
archive, expected, processes, ms = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
con = duckdb.connect()
rows = distinct = 0
for table in ("metrics", "logs", "spans"):
    r, d = con.execute(
        f"SELECT count(*), count(DISTINCT (_topic, _partition, _offset, _index)) "
        f"FROM read_parquet('{archive}/{table}/**/*.parquet')").fetchall()[0]
    rows, distinct = rows + r, distinct + d
assert rows == distinct == expected, (rows, distinct, expected)
print(f"{processes} process(es): {expected} records in {ms / 1000:.1f} s, "
      f"{expected / ms * 1000:,.0f} records/s, none twice")
PY
done
