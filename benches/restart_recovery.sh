#!/usr/bin/env bash
# Recovery after kill -9 (issue 17): how long a restarted `cara run` takes to consume
# again. Starts `cara broker` (a separate process, as crash tests use), `cara gen` at
# a steady rate, and `cara run` with the given config (default: none); then, ROUNDS
# times, kills `cara run` with -9 and starts it again at once, and times from the
# restart to `/readyz` answering "ready" (a partition assignment received and
# consuming). Prints one line per round and the maximum.
# usage: benches/restart_recovery.sh CARA [ROUNDS] [CONFIG]
set -euo pipefail
CARA=$(realpath "${1:?usage: restart_recovery.sh CARA [ROUNDS] [CONFIG]}")
ROUNDS=${2:-3}
CONFIG=${3:-}
BROKERS=127.0.0.1:19392
HTTP=127.0.0.1:19398
source "$(dirname "$0")/crash_harness.sh"
[ -n "$CONFIG" ] && RUN_ARGS=(--config "$CONFIG")

"$CARA" gen --brokers "$BROKERS" --rate 2000 --duration 30m >"$DIR/gen.log" 2>&1 &
pids+=($!)

# Milliseconds from now until /readyz says ready.
until_ready() {
    local start now
    start=$(date +%s%N)
    until curl -sf "http://$HTTP/readyz" >/dev/null 2>&1; do
        sleep 0.1
        now=$(date +%s%N)
        if (((now - start) / 1000000 > 300000)); then
            echo "not ready after 300 s" >&2
            return 1
        fi
    done
    now=$(date +%s%N)
    echo $(((now - start) / 1000000))
}

start_run
first=$(until_ready)
echo "first start: ready after ${first} ms"
sleep 20
worst=0
for round in $(seq 1 "$ROUNDS"); do
    kill -9 "$RUN"
    wait "$RUN" 2>/dev/null || true
    start_run
    took=$(until_ready)
    echo "restart $round after kill -9: consuming again after ${took} ms"
    if ((took > worst)); then worst=$took; fi
    sleep 20
done
echo "worst restart: ${worst} ms"
