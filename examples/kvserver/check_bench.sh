#!/bin/bash
# ctest's example_kvserver_bench (and _portable, _portable_preload): kvserver under
# redis-benchmark (every test prints a rate and no error), then replies checked with redis-cli,
# then SIGTERM and exit status 0. With --preload, the library must be mapped in the server; the
# portable build alone must have no libsmpalloc.
# Usage: check_bench.sh [--portable] [--preload LIB] KVSERVER
#   --portable     KVSERVER is kvserver-portable: INFO is its RSS JSON, not smpalloc's statistics
#   --preload LIB  run the server (only) with LD_PRELOAD=LIB
. "$(dirname "$0")/kv_start.sh"
portable=0
while [ $# -gt 1 ]; do
  case $1 in
    --portable) portable=1 ;;
    --preload) KV_PRELOAD=${2:?--preload needs a library}; shift ;;
    *) break ;;
  esac
  shift
done
start_server "$1" --threads 2
echo "kvserver on 127.0.0.1:$PORT"
# The allocator is the one asked for: the preloaded library mapped, and the portable build
# alone with no smpalloc at all (it is not linked to it).
if [ -n "${KV_PRELOAD:-}" ]; then
  lib=$(realpath -e "$KV_PRELOAD") || fail "no library $KV_PRELOAD"
  grep -qF "$lib" "/proc/$PID/maps" || fail "$KV_PRELOAD is not mapped in the server"
elif [ "$portable" = 1 ]; then
  grep -q libsmpalloc "/proc/$PID/maps" && fail "the portable build has libsmpalloc mapped"
fi

out=$(timeout 40 redis-benchmark -h 127.0.0.1 -p "$PORT" -n 20000 -c 8 -t ping,set,get,incr,mset -q 2>&1)
rc=$?
# -q rewrites a progress line with \r; keep the final figures only.
res=$(printf '%s\n' "$out" | tr '\r' '\n' | grep 'requests per second')
printf '%s\n' "$res"
[ "$rc" = 0 ] || fail "redis-benchmark exited with $rc: $out"
for t in PING_INLINE PING_MBULK SET GET INCR 'MSET (10 keys)'; do
  printf '%s\n' "$res" | grep -q "^$t: [0-9.]* requests per second" || fail "no rate for $t"
done
if printf '%s\n' "$out" | grep -Eiq 'error|WARNING'; then fail "redis-benchmark reported: $out"; fi

# Without -r every INCR hits the one key counter:__rand_int__: 20000 increments from 8
# clients on 2 workers, none lost (INCR retries when another replaced the node it read).
got=$(timeout 5 redis-cli -h 127.0.0.1 -p "$PORT" GET counter:__rand_int__)
[ "$got" = 20000 ] || fail "counter:__rand_int__ is '$got' after 20000 INCRs, want 20000"

# Again over 5000 random keys, 16 commands pipelined per write: every SET replaces a node (and
# defers the old one), and replies for many commands go out in one buffer.
out=$(timeout 30 redis-benchmark -h 127.0.0.1 -p "$PORT" -n 20000 -c 8 -r 5000 -P 16 -t set,get,incr -q 2>&1)
rc=$?
res=$(printf '%s\n' "$out" | tr '\r' '\n' | grep 'requests per second')
printf 'pipelined (-P 16, -r 5000):\n%s\n' "$res"
[ "$rc" = 0 ] || fail "redis-benchmark -P 16 exited with $rc: $out"
for t in SET GET INCR; do
  printf '%s\n' "$res" | grep -q "^$t: [0-9.]* requests per second" || fail "-P 16: no rate for $t"
done
if printf '%s\n' "$out" | grep -Eiq 'error|WARNING'; then fail "redis-benchmark -P 16 reported: $out"; fi

cli() { timeout 5 redis-cli -h 127.0.0.1 -p "$PORT" "$@"; }
expect() { # expect WANT CMD...
  want=$1; shift
  got=$(cli "$@") || fail "redis-cli $* failed"
  [ "$got" = "$want" ] || fail "$*: got '${got:0:200}', want '$want'"
}
expect OK SET greeting "hello world"
expect "hello world" GET greeting
expect OK SET greeting replaced
expect replaced GET greeting
expect "" GET nosuchkey
expect 1 INCR ctr
expect 2 INCR ctr
expect 2 GET ctr
expect OK SET notnum abc
got=$(cli INCR notnum); [[ "$got" == *"not an integer"* ]] || fail "INCR of a string: '$got'"
expect OK MSET k1 v1 k2 v2 k3 v3
expect v1 GET k1
expect v3 GET k3
expect 2 DEL k1 k2 nosuchkey
expect "" GET k1
expect v3 GET k3
big=$(head -c 300000 /dev/zero | tr '\0' x)
# -x: the value from stdin (300000 bytes is over one argument's limit for exec)
got=$(printf '%s' "$big" | cli -x SET big) || fail "SET big failed"
[ "$got" = OK ] || fail "SET big: '${got:0:200}'"
[ "$(cli GET big)" = "$big" ] || fail "300000-byte value does not round-trip"
info=$(cli INFO) || fail "INFO failed"
if [ "$portable" = 1 ]; then
  printf '%s' "$info" | python3 -c '
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if d.get("build") == "portable" and d.get("rss_bytes", 0) > 0 else "no rss_bytes")
' || fail "INFO is not JSON with build portable and rss_bytes: ${info:0:400}"
else
  printf '%s' "$info" | python3 -c '
import json, sys
d = json.load(sys.stdin)
names = {t["name"] for t in d["types"]}
missing = {"key", "value", "conn"} - names
sys.exit("INFO types lack %s (have %s)" % (missing, names) if missing else 0)
' || fail "INFO is not JSON with types key, value and conn: ${info:0:400}"
fi
expect PONG PING
stop_server
echo PASS
