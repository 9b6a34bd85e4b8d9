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
# Usage: bench/compare.sh [--reps N] [--alloc a,b,c] [--wall] [--timeout S] [--csv F] [--json F]
#                         -- CMD ARGS...
#   --reps N      runs per allocator (default 3)
#   --alloc LIST  comma list of glibc,smpalloc,smpalloc-thread,jemalloc,mimalloc,tcmalloc,tbb
#                 (default: all that are installed; smpalloc is always run, as the base)
#   --wall        time from outside even if the command prints time=
#   --timeout S   stop a run after S seconds (counts as failed; default: no limit)
# Example: bench/compare.sh -- ./myserver --bench
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
source "$repo/bench/common.sh"
invocation=$(bench_invocation bench/compare.sh "$@")
usage() { sed -n '/^# Usage:/,/^# Example:/p' "$0" | sed 's/^# \{0,1\}//'; }
reps=3 alloc_list="" opts=()
while [ $# -gt 0 ]; do
  case $1 in
    --reps) reps=${2:?--reps needs a number}; shift ;;
    --alloc) alloc_list=${2:?--alloc needs a list}; shift ;;
    --wall) opts+=(--wall) ;;
    --timeout | --csv | --json) opts+=("$1" "${2:?$1 needs a value}"); shift ;;
    --) shift; break ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench/compare.sh: unknown option $1 (the command goes after --)" >&2
       usage >&2; exit 2 ;;
  esac
  shift
done
[ $# -gt 0 ] || { echo "bench/compare.sh: no command after --" >&2; usage >&2; exit 2; }
[[ $reps =~ ^[1-9][0-9]*$ ]] || { echo "bench/compare.sh: bad --reps $reps" >&2; exit 2; }
[[ " ${opts[*]-} " == *" --timeout "* ]] || opts+=(--timeout 0)

build=$repo/build-bench
lib=$build/libsmpalloc.so
if ! command -v cmake >/dev/null; then
  [ -e "$lib" ] || { echo "bench/compare.sh: cmake is missing and $lib is not built" >&2; exit 1; }
else
  cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSMP_BUILD_TESTS=OFF >/dev/null
  cmake --build "$build" -j"$(nproc)" --target smpalloc >/dev/null
fi

bench_allocators bench/compare.sh "$lib" "$alloc_list"
exec python3 "$repo/bench/compare.py" "${bench_libs[@]}" \
  ${bench_no_glibc[@]+"${bench_no_glibc[@]}"} --reps "$reps" "${opts[@]}" \
  --meta "invocation=$invocation" -- "$@"
