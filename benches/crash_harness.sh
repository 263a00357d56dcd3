# Sourced by the crash benches (restart_recovery.sh, kill9_loop.sh): `cara broker`
# as its own process on BROKERS, a work directory DIR removed at exit with every
# process started here, and `start_run`, which starts `cara run` (with RUN_ARGS)
# on the archive DIR/archive and leaves its pid in RUN.
# Needs CARA, BROKERS and HTTP set before it is sourced.
DIR=$(mktemp -d)
pids=()
RUN_ARGS=()
cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    [ -n "${RUN:-}" ] && kill -9 "$RUN" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

"$CARA" broker --listen "$BROKERS" >"$DIR/broker.log" 2>&1 &
pids+=($!)
sleep 2

start_run() {
    "$CARA" run --brokers "$BROKERS" --archive "$DIR/archive" --http "$HTTP" \
        "${RUN_ARGS[@]}" >>"$DIR/run.log" 2>&1 &
    RUN=$!
}
