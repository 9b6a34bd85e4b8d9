#!/usr/bin/env bash
# Run any command under smpalloc and the other allocators and print bench/compare.py's table:
# median time and peak RSS of each, with ratios to smpalloc. A command that prints
# 'time=<s> s' and 'peak_rss=<KiB> KiB' (as bench/workloads do) is measured by itself; any other
# is timed from outside (wall time, and the ru_maxrss of its process tree: see compare.py's
# header for the caveat on small sizes). Builds smpalloc Release in build-bench if needed; the
# peers are Debian's libjemalloc2, libmimalloc2.0, libtcmalloc-minimal4 (gperftools) and
# libtbbmalloc2 (oneTBB, preloaded as libtbbmalloc_proxy.so.2) where installed (ci/bench.sh
# installs them; their table is in bench/common.sh, shared with ci/bench.sh). The
# command runs in the current directory, stdin from /dev/null.
# Installed (share/smpalloc/bench, run by `smpalloc compare`) it finds common.sh and compare.py
# next to itself, and SMPALLOC_LIBRARY names smpalloc's library: set, nothing is built (and
# --target is an error). SMPALLOC_COMPARE_AS is the name its messages give it (default
# bench/compare.sh).
# With --server, CMD is a server listening on 127.0.0.1 and each CLIENT drives it: every run
# starts CMD under one allocator, waits until its port accepts, runs CLIENT, and reports the
# requests per second CLIENT printed (redis-benchmark -q or --csv) and the server's peak RSS
# (VmHWM) and final RSS (VmRSS after --idle seconds), then SIGTERM: it must exit 0 (compare.py's
# header has the details). The word {port} in CMD and CLIENT becomes the run's port. Leave out
# redis-benchmark's --threads: with it (7.0.15) every test lasted a multiple of 0.25 s (its
# throughput timer's period), so its rates are steps of 12% or more that hide the allocators.
# Usage: bench/compare.sh [--reps N] [--alloc a,b,c] [--wall] [--timeout S] [--csv F] [--json F]
#                         -- CMD ARGS...
#        bench/compare.sh [--reps N] [--alloc a,b,c] [--timeout S] [--csv F] [--json F]
#                         --server CLIENT [--server CLIENT]... [--port N] [--idle S]
#                         [--ready-timeout S] [--variant NAME=PROGRAM]... [--base NAME]
#                         [--target T]... -- SERVER ARGS...
#   --reps N      runs per allocator (default 3)
#   --alloc LIST  comma list of glibc,smpalloc,smpalloc-thread,jemalloc,mimalloc,tcmalloc,tbb
#                 (default: all that are installed; smpalloc is always run, as the base)
#   --wall        time from outside even if the command prints time=
#   --timeout S   stop a run (a client) after S seconds (counts as failed; default: no limit,
#                 with --server 600)
#   --server CLIENT  server mode; CLIENT is one string (split as a shell would, not run by one),
#                 e.g. 'redis-benchmark -h 127.0.0.1 -p {port} -n 100000 -q'; repeatable, each
#                 CLIENT is a table of its own, on a fresh server every run
#   --port N      the port for {port} (default: a free port, picked anew for every run)
#   --idle S      seconds between the client's end and the final RSS (default 1)
#   --ready-timeout S  seconds the server has to accept a connection (default 10)
#   --variant NAME=PROGRAM  one more row, NAME, running PROGRAM instead of SERVER (same ARGS)
#                 under smpalloc's library: e.g. the server's build that calls smpalloc's API
#   --base NAME   the row the ratios divide by (default smpalloc)
#   --target T    also build target T in build-bench (e.g. kvserver-portable); repeatable
#                 (not with SMPALLOC_LIBRARY, which builds nothing)
# Example: bench/compare.sh -- ./myserver --bench
# Example: bench/compare.sh --target kvserver --target kvserver-portable \
#            --variant smpalloc-api=build-bench/examples/kvserver --base smpalloc-api \
#            --server 'redis-benchmark -h 127.0.0.1 -p {port} -n 100000 -t set,get -q' \
#            -- build-bench/examples/kvserver-portable --port {port} --threads 2
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/common.sh"
me=${SMPALLOC_COMPARE_AS:-bench/compare.sh}
invocation=$(bench_invocation "$me" "$@")
# The usage above; installed (SMPALLOC_LIBRARY set: nothing is built) without --target.
usage() {
  local text
  text=$(sed -n '/^# Usage:/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//')
  if [ -n "${SMPALLOC_LIBRARY:-}" ]; then
    text=$(sed -e '/^Example: bench\/compare.sh --target/,$d' -e 's/ \[--target T\]\.\.\.//' \
                -e '/^  --target T/,/(not with SMPALLOC_LIBRARY/d' <<<"$text")
  fi
  sed "s|bench/compare.sh|$me|" <<<"$text"
}
reps=3 alloc_list="" opts=() server=0 targets=()
while [ $# -gt 0 ]; do
  case $1 in
    --reps) reps=${2:?--reps needs a number}; shift ;;
    --alloc) alloc_list=${2:?--alloc needs a list}; shift ;;
    --wall) opts+=(--wall) ;;
    --timeout | --csv | --json | --port | --idle | --ready-timeout | --variant | --base)
      opts+=("$1" "${2:?$1 needs a value}"); shift ;;
    --server) opts+=(--server "${2:?--server needs a client command}"); server=1; shift ;;
    --target) targets+=(--target "${2:?--target needs a target}"); shift ;;
    --) shift; break ;;
    -h | --help) usage; exit 0 ;;
    *) echo "$me: unknown option $1 (the command goes after --)" >&2
       usage >&2; exit 2 ;;
  esac
  shift
done
[ $# -gt 0 ] || { echo "$me: no command after --" >&2; usage >&2; exit 2; }
[[ $reps =~ ^[1-9][0-9]*$ ]] || { echo "$me: bad --reps $reps" >&2; exit 2; }
[[ " ${opts[*]-} " == *" --timeout "* ]] || [ "$server" = 1 ] || opts+=(--timeout 0)

if [ -n "${SMPALLOC_LIBRARY:-}" ]; then
  lib=$SMPALLOC_LIBRARY
  [ ${#targets[@]} -eq 0 ] || {
    echo "$me: --target builds in a source tree; with SMPALLOC_LIBRARY nothing is built" >&2
    exit 2; }
  [ -e "$lib" ] || { echo "$me: SMPALLOC_LIBRARY $lib does not exist" >&2; exit 2; }
else
  repo=$(cd "$here/.." && pwd)
  build=$repo/build-bench
  lib=$build/libsmpalloc.so
  if ! command -v cmake >/dev/null; then
    [ -e "$lib" ] || { echo "$me: cmake is missing and $lib is not built" >&2; exit 1; }
  else
    cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSMP_BUILD_TESTS=OFF >/dev/null
    cmake --build "$build" -j"$(nproc)" --target smpalloc ${targets[@]+"${targets[@]}"} >/dev/null
  fi
fi

bench_allocators "$me" "$lib" "$alloc_list"
exec python3 "$here/compare.py" "${bench_libs[@]}" \
  ${bench_no_glibc[@]+"${bench_no_glibc[@]}"} --reps "$reps" "${opts[@]}" \
  --meta "invocation=$invocation" -- "$@"
