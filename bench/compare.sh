#!/usr/bin/env bash
# Run any command under smpalloc and the other allocators and print bench/compare.py's table:
# median time and peak RSS of each, with ratios to smpalloc. A command that prints
# 'time=<s> s' and 'peak_rss=<KiB> KiB' (as bench/workloads do) is measured by itself; any other
# is timed from outside (wall time, and the ru_maxrss of its process tree: see compare.py's
# header for the caveat on small sizes). Builds smpalloc Release in build-bench if needed; the
# peers are Debian's libjemalloc2, libmimalloc2.0 and libtcmalloc-minimal4 where installed
# (ci/bench.sh installs them). The command runs in the current directory, stdin from /dev/null.
# Usage: bench/compare.sh [--reps N] [--alloc a,b,c] [--wall] [--timeout S] [--csv F] [--json F]
#                         -- CMD ARGS...
#   --reps N      runs per allocator (default 3)
#   --alloc LIST  comma list of glibc,smpalloc,smpalloc-thread,jemalloc,mimalloc,tcmalloc
#                 (default: all that are installed; smpalloc is always run, as the base)
#   --wall        time from outside even if the command prints time=
#   --timeout S   stop a run after S seconds (counts as failed; default: no limit)
# Example: bench/compare.sh -- ./myserver --bench
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
# The command line as typed, for the results' metadata (quoting only words that need it).
invocation=bench/compare.sh
for word in "$@"; do
  if [[ $word =~ ^[A-Za-z0-9_,./=:@%+-]+$ ]]; then invocation+=" $word"
  else invocation+=" $(printf '%q' "$word")"; fi
done
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

arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
declare -A alloc_lib=(
  [smpalloc-thread]="$lib@SMPALLOC_OPTIONS=frontend:thread"
  [jemalloc]=/usr/lib/$arch/libjemalloc.so.2
  [mimalloc]=/usr/lib/$arch/libmimalloc.so.2
  [tcmalloc]=/usr/lib/$arch/libtcmalloc_minimal.so.4
)
declare -A package=([jemalloc]=libjemalloc2 [mimalloc]=libmimalloc2.0 [tcmalloc]=libtcmalloc-minimal4)
IFS=, read -r -a wanted <<<"${alloc_list:-glibc,smpalloc,smpalloc-thread,jemalloc,mimalloc,tcmalloc}"
libs=(--lib "smpalloc=$lib") glibc=0
for a in "${wanted[@]}"; do
  case $a in
    glibc) glibc=1 ;;
    smpalloc) ;;
    smpalloc-thread | jemalloc | mimalloc | tcmalloc)
      if [ -e "${alloc_lib[$a]%%@*}" ]; then libs+=(--lib "$a=${alloc_lib[$a]}")
      else echo "note: $a is not installed (apt-get install ${package[$a]}); left out" >&2; fi ;;
    *) echo "bench/compare.sh: unknown allocator $a" >&2; exit 2 ;;
  esac
done
[ "$glibc" = 1 ] || libs+=(--no-glibc)
exec python3 "$repo/bench/compare.py" "${libs[@]}" --reps "$reps" "${opts[@]}" \
  --meta "invocation=$invocation" -- "$@"
