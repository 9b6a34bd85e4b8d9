#!/usr/bin/env bash
# The benchmark command: smpalloc against glibc, jemalloc, mimalloc and tcmalloc, side by side.
# Installs what is missing, builds Release, runs each workload under every allocator
# (alternating, several repetitions) and prints medians and ratios. The last three workloads
# measure footprint: they also report the RSS at the end (after a low phase, after an idle
# second, with a sparse survivor set), tabulated as "final RSS".
# Usage: ci/bench.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
reps=5
[ "${1:-}" = "--quick" ] && reps=3

ci/install-packages.sh cmake make gcc g++ python3 libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4

build=build-bench
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DSMP_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
lib=$PWD/$build/libsmpalloc.so
libs=(--lib "smpalloc=$lib" --lib "smpalloc-thread=$lib@SMPALLOC_OPTIONS=frontend:thread")
for peer in jemalloc=libjemalloc.so.2 mimalloc=libmimalloc.so.2 tcmalloc=libtcmalloc_minimal.so.4; do
  path=/usr/lib/$arch/${peer#*=}
  [ -e "$path" ] && libs+=(--lib "${peer%%=*}=$path")
done
echo "machine: $(nproc) CPUs, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
w=$build/bench
python3 bench/compare.py "${libs[@]}" --reps "$reps" -- \
  $w/pair 100000000 --- \
  $w/threadtest 64 3000 256 64 --- \
  $w/threadtest 256 800 256 64 --- \
  $w/prodcons 2 8000000 256 --- \
  $w/mt_churn 2 4000000 512 --- \
  $w/mt_churn 8 1000000 512 --- \
  $w/mt_churn 4 600000 16384 --- \
  $w/server_churn 4 8000000 32768 262144 --- \
  $w/burst_idle 4 512 1000 --- \
  $w/fragmentation 4 400 200 512
