#!/bin/bash
# ctest's example_kvserver_compare: bench/compare.py's server mode, once, with tiny counts:
# kvserver-portable on glibc and with LIBSMPALLOC preloaded, and kvserver (the smp_ API build)
# as a --variant. Passes when every run worked (the servers exited 0 after SIGTERM) and the
# table has a row of figures for each; it asserts no timing.
# Usage: check_compare.sh LIBSMPALLOC KVSERVER KVSERVER_PORTABLE
set -u
repo=$(cd "$(dirname "$0")/../.." && pwd)
lib=$1 kvserver=$2 portable=$3
out=$(timeout 60 python3 "$repo/bench/compare.py" --lib "smpalloc=$lib" --reps 1 \
  --variant "smpalloc-api=$kvserver" --idle 0.2 \
  --server 'redis-benchmark -h 127.0.0.1 -p {port} -n 2000 -c 4 -t set,get -q' \
  -- "$portable" --port '{port}' --threads 2 2>&1)
rc=$?
printf '%s\n' "$out"
[ "$rc" = 0 ] || { echo "FAIL: compare.py exited with $rc"; exit 1; }
for row in glibc smpalloc smpalloc-api; do
  # name, SET and ratio, GET and ratio, geomean and ratio, spread, peak RSS and ratio, final
  printf '%s\n' "$out" | grep -Eq "^  $row +[0-9]+ +[0-9.]+ +[0-9]+ +[0-9.]+ +[0-9]+ +[0-9.]+ +- +[0-9]+ +[0-9.]+ +[0-9]+ +[0-9.]+$" ||
    { echo "FAIL: no row of figures for $row"; exit 1; }
done
echo PASS
