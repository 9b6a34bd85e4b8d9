#!/usr/bin/env bash
# The benchmark command: smpalloc against glibc, jemalloc, mimalloc and tcmalloc, side by side.
# Installs what is missing, builds Release in build-bench, runs each workload of the table below
# under every allocator (alternating, several repetitions) through bench/compare.py, which
# prints medians, ratios to smpalloc and geometric means; then the Google Benchmark
# micro-benchmarks (bench/micro.py) and callgrind instruction counts (bench/instructions.py)
# where they exist, and bench/plot.py's PNGs. Footprint workloads also report their RSS at the
# end, tabulated as "final RSS". Everything lands in bench/results/<UTC time>-<commit>.* with a
# latest.* copy. A failed run does not stop the others; the script then exits 1 at the end.
# Usage: ci/bench.sh [--quick] [--threads N] [--alloc LIST] [--workloads LIST] [--reps N]
#                    [--report | --report-to FILE] [--no-micro] [--no-instructions]
#                    [--lib NAME=PATH[@VAR=VALUE...]]...
#   --quick        smaller arguments, 3 runs each: the whole thing in under 5 minutes on 2 CPUs
#   --threads N    replace every workload's thread count (its first argument) with N
#   --alloc LIST   comma list of glibc,smpalloc,smpalloc-thread,jemalloc,mimalloc,tcmalloc,tbb
#                  (default: all; smpalloc is always run, as the base of the ratios)
#   --workloads L  comma list of workload names from the table (default: all that are built)
#   --reps N       runs per workload and allocator (default 5, --quick 3)
#   --report       after the (full) run, regenerate papers/results.md via bench/report.py
#   --report-to F  the same into file F (a copy, to try it; its plots go to plots/ beside F)
#   --no-micro, --no-instructions   leave out the micro-benchmarks, the instruction counts
#   --lib NAME=PATH  one more allocator to run beside the others (repeatable), e.g. an earlier
#                  build of smpalloc, to show a change against it in the same run
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
invocation=$(bench_invocation ci/bench.sh "$@")
started=$SECONDS

# The workloads: name | arguments of a full run | arguments of a --quick run (each program's
# header gives its usage). The first argument is the thread count (prodcons: producer/consumer
# pairs; thread_churn: threads per wave), and --threads replaces it. A row whose binary is not in
# build-bench/bench is skipped with a note. Edit freely; one row per run.
table='
pair            | 1 100000000              | 1 20000000
threadtest      | 64 3000 256 64           | 64 1000 256 64
threadtest      | 256 800 256 64           | 256 250 256 64
prodcons        | 2 8000000 256            | 2 2000000 256
mt_churn        | 2 4000000 512            | 2 4000000 512
mt_churn        | 8 1000000 512            | 8 1000000 512
mt_churn        | 4 600000 16384           | 4 600000 16384
server_churn    | 4 8000000 32768 262144   | 4 1500000 32768 262144
burst_idle      | 4 512 1000               | 4 128 1000
fragmentation   | 4 400 200 512            | 4 100 50 512
larson          | 2 100000 100 1000        | 2 100000 30 1000
xmalloc         | 4 4000000 512            | 4 1000000 512
cache_scratch   | 2 5000 8                 | 2 1500 8
cache_thrash    | 2 5000 8                 | 2 1500 8
mstress         | 2 100000 20              | 2 100000 5
realloc_strings | 2 20000 65536            | 2 8000 65536
thread_churn    | 2 10000 300              | 2 3000 300
huge_churn      | 2 1000 8                 | 2 100 8
'

usage() { sed -n '/^# Usage:/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
quick=0 threads="" alloc_list="" only="" reps="" report=0 micro=1 instructions=1 extra_libs=()
report_file=papers/results.md
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1 ;;
    --threads) threads=${2:?--threads needs a number}; shift ;;
    --alloc) alloc_list=${2:?--alloc needs a list}; shift ;;
    --workloads) only=${2:?--workloads needs a list}; shift ;;
    --reps) reps=${2:?--reps needs a number}; shift ;;
    --report) report=1 ;;
    --report-to) report=1 report_file=${2:?--report-to needs a file}; shift ;;
    --no-micro) micro=0 ;;
    --no-instructions) instructions=0 ;;
    --lib) [[ ${2:-} == ?*=?* ]] || { echo "ci/bench.sh: --lib needs NAME=PATH" >&2; exit 2; }
           extra_libs+=(--lib "$2"); shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "ci/bench.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
if [ "$report" = 1 ] && [ "$quick" = 1 ]; then
  echo "ci/bench.sh: --report records a full run; leave out --quick" >&2
  exit 2
fi
[ -n "$reps" ] || reps=$([ "$quick" = 1 ] && echo 3 || echo 5)
for n in $reps $threads; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "ci/bench.sh: not a positive number: $n" >&2; exit 2; }
done

packages=(cmake make gcc g++ python3 libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4 libtbbmalloc2
          python3-matplotlib)
[ "$micro" = 0 ] || packages+=(libbenchmark-dev)
[ "$instructions" = 0 ] || packages+=(valgrind)
ci/install-packages.sh "${packages[@]}"

build=build-bench
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DSMP_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
w=$build/bench

# Allocators (bench/common.sh's table), smpalloc first among the preloaded ones (the base).
bench_allocators ci/bench.sh "$PWD/$build/libsmpalloc.so" "$alloc_list"
bench_libs+=(${extra_libs[@]+"${extra_libs[@]}"})

# The commands, from the table rows that are selected and built.
declare -A known=()
cmds=()
while IFS='|' read -r name full short; do
  name=$(xargs <<<"$name")
  [ -n "$name" ] || continue
  known[$name]=1
  if [ -n "$only" ] && [[ ",$only," != *",$name,"* ]]; then continue; fi
  if [ ! -x "$w/$name" ]; then echo "note: $name is not built ($w/$name); skipped"; continue; fi
  read -r -a args <<<"$([ "$quick" = 1 ] && echo "$short" || echo "$full")"
  [ -z "$threads" ] || args[0]=$threads
  [ ${#cmds[@]} -eq 0 ] || cmds+=(---)
  cmds+=("$w/$name" "${args[@]}")
done <<<"$table"
if [ -n "$only" ]; then
  IFS=, read -r -a names <<<"$only"
  for n in "${names[@]}"; do
    [ -n "${known[$n]:-}" ] || { echo "ci/bench.sh: unknown workload $n" >&2; exit 2; }
  done
fi
[ ${#cmds[@]} -gt 0 ] || { echo "ci/bench.sh: no workload to run" >&2; exit 2; }

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=""
if git status --porcelain --untracked-files=no 2>/dev/null | grep -q .; then
  dirty=" (uncommitted changes)"
fi
echo "machine:  $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
     "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r)"
echo "commit:   $commit$dirty"
echo "compiler: $(gcc --version | head -1); $(ldd --version | head -1 | sed 's/^ldd //')"
echo "date:     $(date -u '+%Y-%m-%d %H:%M UTC'); command: $invocation"

results=bench/results
mkdir -p "$results"
stamp=$results/$(date -u +%Y%m%dT%H%M%SZ)-$commit
status=0
phase_start=$SECONDS
phase() {  # print how long the part just finished took
  local s=$((SECONDS - phase_start))
  echo "($1: $((s / 60))m$((s % 60))s)"
  phase_start=$SECONDS
}
keep() {  # copy the run's files with these suffixes to latest<suffix>, where they exist
  for suffix; do [ ! -e "$stamp$suffix" ] || cp "$stamp$suffix" "$results/latest$suffix"; done
}
python3 bench/compare.py "${bench_libs[@]}" ${bench_no_glibc[@]+"${bench_no_glibc[@]}"} \
  --reps "$reps" --csv "$stamp.csv" --json "$stamp.json" --meta "invocation=$invocation" \
  --meta "quick=$quick" -- "${cmds[@]}" || status=1
keep .csv .json
phase workloads

# Micro-benchmarks and instruction counts, when their drivers exist. Their tables go to the
# terminal and to a .txt beside their JSON (bench/report.py quotes them).
if [ "$micro" = 1 ]; then
  if [ -f bench/micro.py ] && [ -x "$w/micro" ]; then
    echo; echo "micro-benchmarks (bench/micro.py)"
    quick_reps=()
    [ "$quick" = 0 ] || quick_reps=(--reps 1)
    python3 bench/micro.py --bin "$w/micro" "${bench_libs[@]}" \
      ${quick_reps[@]+"${quick_reps[@]}"} --json "$stamp-micro.json" |
      tee "$stamp-micro.txt" || status=1
    keep -micro.json -micro.txt
    phase micro-benchmarks
  else
    echo "note: bench/micro.py or $w/micro is missing; no micro-benchmarks"
  fi
fi
if [ "$instructions" = 1 ]; then
  if [ -f bench/instructions.py ]; then
    echo; echo "instructions per malloc/free pair (bench/instructions.py, callgrind)"
    # Allocators without settings only: valgrind has no rseq, so smpalloc-thread = smpalloc.
    plain=() quick_flag=()
    for ((i = 0; i < ${#bench_libs[@]}; i += 2)); do
      [[ ${bench_libs[i + 1]} == *@* ]] || plain+=(--lib "${bench_libs[i + 1]}")
    done
    [ "$quick" = 0 ] || quick_flag=(--quick)
    python3 bench/instructions.py --bin-dir "$w" "${plain[@]}" \
      ${quick_flag[@]+"${quick_flag[@]}"} --json "$stamp-instructions.json" |
      tee "$stamp-instructions.txt" || status=1
    keep -instructions.json -instructions.txt
    phase instructions
  else
    echo "note: bench/instructions.py is missing; no instruction counts"
  fi
fi

# Plots, with a Python that has matplotlib (Debian's package serves /usr/bin/python3).
plots=()
if [ -e "$stamp.json" ]; then
  py=python3
  python3 -c 'import matplotlib' 2>/dev/null || py=/usr/bin/python3
  echo
  micro_json=()
  [ ! -e "$stamp-micro.json" ] || micro_json=(--micro "$stamp-micro.json")
  if out=$($py bench/plot.py "$stamp.json" ${micro_json[@]+"${micro_json[@]}"} \
           --out "$results" --prefix "$(basename "$stamp")-"); then
    while read -r png; do
      [ -n "$png" ] || continue
      plots+=("$png")
      cp "$png" "$results/latest-${png#"$stamp-"}"
      echo "plot: $png"
    done <<<"$out"
  else
    status=1
  fi
fi

if [ "$report" = 1 ] && [ -e "$stamp.json" ]; then
  report_args=(--compare "$stamp.json")
  [ ! -e "$stamp-micro.json" ] || report_args+=(--micro "$stamp-micro.json")
  [ ! -e "$stamp-instructions.json" ] || report_args+=(--instructions "$stamp-instructions.json")
  python3 bench/report.py "${report_args[@]}" ${plots[@]+--plots "${plots[@]}"} \
    --out "$report_file" || status=1
fi

s=$((SECONDS - started))
echo
echo "ci/bench.sh: done in $((s / 60))m$((s % 60))s; results in $stamp.*"
[ "$status" = 0 ] || echo "ci/bench.sh: something failed (see above); exit 1"
exit $status
