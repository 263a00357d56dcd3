#!/usr/bin/env bash
# The kill -9 restart loop of issue 17: `cara gen` produces a fixed workload into
# `cara broker` (its own process) while `cara run` (no config) is killed with -9
# RESTARTS times in a row, SPACING seconds apart, and restarted at once each time.
# Then times how long after the last restart every produced record is in the
# archive, and checks with DuckDB (not ours) that none is there twice.
# usage: benches/kill9_loop.sh CARA [RESTARTS] [SPACING]
set -euo pipefail
CARA=$(realpath "${1:?usage: kill9_loop.sh CARA [RESTARTS] [SPACING]}")
RESTARTS=${2:-6}
SPACING=${3:-5}
BROKERS=127.0.0.1:19492
HTTP=127.0.0.1:19498
source "$(dirname "$0")/crash_harness.sh"

# 60,000 records at 2,000 a second: produced over the whole loop.
"$CARA" gen --brokers "$BROKERS" --rate 2000 --count 60000 --seed 17 >"$DIR/gen.json" 2>"$DIR/gen.log" &
GEN=$!
pids+=($GEN)
start_run
sleep "$SPACING"
for round in $(seq 1 "$RESTARTS"); do
    kill -9 "$RUN"
    wait "$RUN" 2>/dev/null || true
    start_run
    last_restart=$(date +%s%N)
    echo "restart $round"
    sleep "$SPACING"
done
wait "$GEN"
expected=$(python3 -c "import json,sys; s=json.load(open('$DIR/gen.json')); print(s['metrics'] + s['logs'] + s['spans'])")

archived() {
    local total=0 n
    for table in metrics logs spans; do
        n=$("$CARA" sql --archive "$DIR/archive" --format csv "SELECT count(*) FROM $table" 2>/dev/null | tail -1) || n=0
        [[ "$n" =~ ^[0-9]+$ ]] || n=0
        total=$((total + n))
    done
    echo "$total"
}
until [ "$(archived)" -ge "$expected" ]; do
    if (($(date +%s%N) - last_restart > 600000000000)); then
        echo "not all archived after 600 s: $(archived) of $expected" >&2
        exit 1
    fi
    sleep 0.5
done
done_ms=$((($(date +%s%N) - last_restart) / 1000000))
echo "all $expected records archived ${done_ms} ms after the last of $RESTARTS restarts"
python3 - "$DIR/archive" <<'EOF'
import sys
import duckdb
archive = sys.argv[1]
con = duckdb.connect()
# A record is its source position (a metric message may hold several points).
for table, key in [("metrics", "_partition, _offset, name, labels::VARCHAR"), ("logs", "_partition, _offset"), ("spans", "_partition, _offset")]:
    rows, distinct = con.execute(
        f"SELECT count(*), count(DISTINCT ({key})) FROM read_parquet('{archive}/{table}/**/*.parquet')"
    ).fetchall()[0]
    print(f"{table}: {rows} rows, {distinct} distinct")
    assert rows == distinct, f"{table} has duplicates"
EOF
