# Sourced by the kvserver checks (bash): start_server BIN [ARGS...] starts kvserver on a free
# loopback port (random in 20000-59999, retried while busy), sets PORT and PID, and waits until
# it answers PING; with KV_PRELOAD set, the server (only) runs with LD_PRELOAD=$KV_PRELOAD. The
# EXIT trap kills it on every failure path.
PID=
cleanup() { if [ -n "$PID" ]; then kill -KILL "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; fi; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -s "$LOG" ] && { echo "--- server log:"; cat "$LOG"; }; exit 1; }
LOG=$(mktemp)
trap 'cleanup; rm -f "$LOG"' EXIT
start_server() {
  bin=$1; shift
  for try in 1 2 3 4 5 6 7 8 9 10; do
    PORT=$((20000 + RANDOM % 40000))
    env ${KV_PRELOAD:+LD_PRELOAD="$KV_PRELOAD"} "$bin" --port "$PORT" "$@" 2>"$LOG" &
    PID=$!
    for i in $(seq 1 50); do
      if ! kill -0 "$PID" 2>/dev/null; then break; fi
      # Only once it says it listens (another program may hold the port and answer PING).
      if grep -q "listening on" "$LOG"; then
        [ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$PORT" PING 2>/dev/null)" = PONG ] && return 0
      fi
      sleep 0.1
    done
    if kill -0 "$PID" 2>/dev/null; then fail "kvserver started but does not answer PING"; fi
    wait "$PID"; rc=$?; PID=
    [ "$rc" = 2 ] || fail "kvserver exited with $rc at start"
    echo "port $PORT busy, trying another"
  done
  fail "no free port after 10 tries"
}
# SIGTERM, then the server must exit 0 within 10 s.
stop_server() {
  kill -TERM "$PID" || fail "server gone before SIGTERM"
  for i in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$PID" 2>/dev/null && fail "server still running 10 s after SIGTERM"
  wait "$PID"; rc=$?; PID=
  [ "$rc" = 0 ] || fail "server exited with $rc after SIGTERM"
  cat "$LOG"
}
