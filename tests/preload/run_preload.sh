#!/usr/bin/env bash
# LD_PRELOAD tests for smpalloc: run real Debian programs with and without the allocator
# preloaded and require identical results.
#
#   run_preload.sh <path/to/libsmpalloc.so> <scenario> [<path/to/frontend_wanted>]
#   scenarios: python3 sqlite3 sort gcc multithreaded cxx
#
# Every step of a scenario runs its command twice, in <tmp>/plain (no preload) and in
# <tmp>/preload (LD_PRELOAD=<lib>), from a fresh temporary directory that is removed on exit.
# A step fails when
#   - either run exits with a non-zero status (or dies from a signal),
#   - the preloaded run writes anything containing "smpalloc:" to stderr (the allocator's
#     error and warning prefix),
#   - stdout, stderr (minus the statistics report) or any declared output file differ,
#   - the allocator was not really in use: every process of the preloaded run must have bound
#     malloc and free to the library (checked with the dynamic loader's LD_DEBUG=bindings log,
#     written to files, one per process), and, unless the program closes its own stderr before
#     exit (coreutils, xz), the preloaded run must print the "smpalloc <version> statistics"
#     report requested with SMPALLOC_OPTIONS=stats:1,
#   - with frontend_wanted given (the tests give it), a report names a front end other than
#     the one the preloaded runs' SMPALLOC_OPTIONS asks for (tests/test_frontend.h).
# The preloaded runs' SMPALLOC_OPTIONS are the inherited ones, then stats:1, then
# SMP_PRELOAD_EXTRA_OPTIONS if set (e.g. debug:1): ci/test.sh's frontend:thread holds.
# Set SMP_PRELOAD_KEEP=1 to keep the temporary directory for inspection.
# The script installs nothing; python3, sqlite3, gcc, g++, xz, sort, awk must be present.
set -euo pipefail

usage() {
  echo "usage: $0 <path/to/libsmpalloc.so> <python3|sqlite3|sort|gcc|multithreaded|cxx>" \
    "[<path/to/frontend_wanted>]" >&2
  exit 2
}
[[ $# -eq 2 || $# -eq 3 ]] || usage

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LIB=$(realpath -s -- "$1") || { echo "FAIL: cannot resolve library path '$1'" >&2; exit 1; }
SCENARIO=$2
case $SCENARIO in
python3 | sqlite3 | sort | gcc | multithreaded | cxx) ;;
*) usage ;;
esac
[[ -f $LIB ]] || { echo "FAIL: library '$1' does not exist (build the smpalloc target)" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/smpalloc-preload-$SCENARIO.XXXXXX")
if [[ -n ${SMP_PRELOAD_KEEP:-} ]]; then # debugging aid: keep the run directories
  trap 'echo "[$SCENARIO] kept $WORK" >&2' EXIT
else
  trap 'rm -rf -- "$WORK"' EXIT
fi
mkdir -p "$WORK/in" "$WORK/plain" "$WORK/preload" "$WORK/tmp" "$WORK/lddebug"

# Options for the preloaded runs: the inherited ones come first, so they hold unless a later
# item overrides them (lib/support/options.c), then the statistics report, then the extra ones.
OPTIONS="${SMPALLOC_OPTIONS:+$SMPALLOC_OPTIONS,}stats:1${SMP_PRELOAD_EXTRA_OPTIONS:+,$SMP_PRELOAD_EXTRA_OPTIONS}"
WANTED=""
if [[ $# -eq 3 ]]; then
  WANTED=$(SMPALLOC_OPTIONS=$OPTIONS "$3") || { echo "FAIL: cannot run '$3'" >&2; exit 1; }
fi

# A predictable environment, identical for both runs: no inherited preload or allocator
# options, C locale, UTC, temporary files (sort's spill files, gcc's .s files) inside WORK.
unset LD_PRELOAD SMPALLOC_OPTIONS LD_DEBUG LD_DEBUG_OUTPUT LD_LIBRARY_PATH MALLOC_CHECK_ \
  MALLOC_PERTURB_ GLIBC_TUNABLES PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONWARNINGS \
  PYTHONMALLOC PYTHONDEVMODE PYTHONUSERBASE XZ_DEFAULTS XZ_OPT GCC_EXEC_PREFIX \
  COMPILER_PATH CPATH C_INCLUDE_PATH CPLUS_INCLUDE_PATH LIBRARY_PATH
export LC_ALL=C TZ=UTC TMPDIR="$WORK/tmp" PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1

STATS_RE='^smpalloc [0-9][0-9.]* statistics$'
FAILURES=0

log() { printf '[%s] %s\n' "$SCENARIO" "$*"; }
fail() {
  printf '[%s] FAIL: %s\n' "$SCENARIO" "$*" >&2
  FAILURES=$((FAILURES + 1))
}
die() {
  printf '[%s] FAIL: %s\n' "$SCENARIO" "$*" >&2
  exit 1
}
need() {
  local p
  for p in "$@"; do
    command -v "$p" >/dev/null 2>&1 || die "required program '$p' is not installed"
  done
}
show() { # show <file> <what>: the end of a log file, indented, on stderr
  if [[ -s $1 ]]; then
    echo "  --- $2 (last 25 lines) ---" >&2
    tail -n 25 -- "$1" | sed 's/^/  | /' >&2
  fi
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# Drop the statistics report(s) from a stderr log: the header line and the indented lines
# that follow it.
strip_stats() {
  awk -v re="$STATS_RE" '
    $0 ~ re { skip = 1; next }
    skip && /^ / { next }
    { skip = 0; print }' "$1"
}

# step <name> [--no-stats] [--stdout FILE] [--file FILE]... -- <command> [args...]
#   Runs the command in WORK/plain and WORK/preload (the working directory), stdout to FILE
#   (default <name>.out) and stderr to <name>.err there, then compares. Relative paths in
#   the command resolve inside the mode's directory; shared inputs live in ../in.
#   --file FILE   an output file the command writes (relative to the mode's directory) that
#                 must be byte-identical between the two runs.
#   --no-stats    the program closes stderr itself before exit, so the statistics report
#                 cannot appear; only the loader bindings prove the allocator was in use.
step() {
  local name=$1
  shift
  local stats=1 out="" files=()
  while [[ $# -gt 0 ]]; do
    case $1 in
    --no-stats) stats=0 ;;
    --stdout) out=$2; shift ;;
    --file) files+=("$2"); shift ;;
    --) shift; break ;;
    *) die "step $name: bad option $1" ;;
    esac
    shift
  done
  [[ -n $out ]] || out="$name.out"
  local dbg="$WORK/lddebug/$name"
  mkdir -p "$dbg"

  local mode rc_plain rc_preload t0 t1 t_plain t_preload rc
  for mode in plain preload; do
    t0=$(now)
    rc=0
    if [[ $mode == plain ]]; then
      (cd "$WORK/plain" && exec "$@") >"$WORK/plain/$out" 2>"$WORK/plain/$name.err" \
        </dev/null || rc=$?
    else
      (cd "$WORK/preload" && LD_PRELOAD="$LIB" SMPALLOC_OPTIONS="$OPTIONS" LD_DEBUG=bindings \
        LD_DEBUG_OUTPUT="$dbg/ld" exec "$@") >"$WORK/preload/$out" \
        2>"$WORK/preload/$name.err" </dev/null || rc=$?
    fi
    t1=$(now)
    if [[ $mode == plain ]]; then
      rc_plain=$rc t_plain=$(elapsed "$t0" "$t1")
    else
      rc_preload=$rc t_preload=$(elapsed "$t0" "$t1")
    fi
  done
  log "step $name: plain ${t_plain}s (exit $rc_plain), preloaded ${t_preload}s (exit $rc_preload)"

  local before=$FAILURES what
  what="step $name ($*)"
  if [[ $rc_plain -ne 0 ]]; then
    fail "$what: the run WITHOUT preload exited with status $rc_plain (environment problem?)"
    show "$WORK/plain/$name.err" "stderr without preload"
  fi
  if [[ $rc_preload -ne 0 ]]; then
    local sig=""
    if ((rc_preload > 128)); then sig=" (killed by signal $((rc_preload - 128)): $(kill -l $((rc_preload - 128)) 2>/dev/null || echo '?'))"; fi
    fail "$what: the run WITH LD_PRELOAD=$LIB exited with status $rc_preload$sig"
    show "$WORK/preload/$name.err" "stderr with preload"
  fi
  if grep -q -F 'smpalloc:' "$WORK/preload/$name.err"; then
    fail "$what: the preloaded run printed an smpalloc diagnostic on stderr:"
    grep -F 'smpalloc:' "$WORK/preload/$name.err" | head -n 10 | sed 's/^/  | /' >&2
  fi
  if ! cmp -s "$WORK/plain/$out" "$WORK/preload/$out"; then
    fail "$what: stdout differs between the plain and the preloaded run"
    diff -u --label "stdout without preload" --label "stdout with preload" \
      "$WORK/plain/$out" "$WORK/preload/$out" 2>&1 | head -n 40 | sed 's/^/  | /' >&2 || true
  fi
  if ! diff -u --label "stderr without preload" --label "stderr with preload (report removed)" \
    "$WORK/plain/$name.err" <(strip_stats "$WORK/preload/$name.err") >"$WORK/stderr.diff" 2>&1; then
    fail "$what: stderr differs between the plain and the preloaded run"
    head -n 40 "$WORK/stderr.diff" | sed 's/^/  | /' >&2
  fi
  local f
  for f in "${files[@]}"; do
    if [[ ! -f $WORK/plain/$f || ! -f $WORK/preload/$f ]]; then
      fail "$what: output file $f was not produced by both runs"
    elif ! cmp "$WORK/plain/$f" "$WORK/preload/$f" >"$WORK/cmp.txt" 2>&1; then
      fail "$what: output file $f differs: $(cat "$WORK/cmp.txt")"
    fi
  done

  # Was the allocator really in use? One loader log per process of the preloaded run; each
  # must show malloc and free bound to the library.
  local logs=("$dbg"/ld.*) bad=0 l sym
  if [[ ! -e ${logs[0]} ]]; then
    fail "$what: no dynamic-loader log was written for the preloaded run; cannot tell whether $LIB was loaded"
  else
    for l in "${logs[@]}"; do
      for sym in malloc free; do
        if ! grep -q -F "to $LIB [0]: normal symbol \`$sym'" "$l"; then
          bad=$((bad + 1))
          fail "$what: process ${l##*.} of the preloaded run did not bind $sym to $LIB (the allocator was not in use there)"
        fi
      done
    done
    if ((bad == 0)); then
      log "step $name: malloc/free bound to $LIB in all ${#logs[@]} preloaded process(es)"
    fi
  fi
  if ((stats)); then
    if ! grep -q -E "$STATS_RE" "$WORK/preload/$name.err"; then
      fail "$what: SMPALLOC_OPTIONS=$OPTIONS printed no 'smpalloc <version> statistics' report at exit"
    fi
  fi
  # The front end of each process that printed a report ("  frontend:       <name>").
  if [[ -n $WANTED ]] && grep -q -E "$STATS_RE" "$WORK/preload/$name.err"; then
    local fe seen
    seen=$(sed -n 's/^  frontend: *//p' "$WORK/preload/$name.err" | sort | uniq -c |
      awk '{ n = $1; sub(/^ *[0-9]+ /, ""); printf "%s%s (%d process%s)", sep, $0, n, (n > 1 ? "es" : ""); sep = "; " }')
    log "step $name: front end $seen, wanted $WANTED"
    while IFS= read -r fe; do
      if [[ $WANTED != either && $fe != "$WANTED "* ]]; then
        fail "$what: a preloaded process ran the front end '$fe'; SMPALLOC_OPTIONS=$OPTIONS asks for $WANTED"
      fi
    done < <(sed -n 's/^  frontend: *//p' "$WORK/preload/$name.err")
  fi
  if ((FAILURES == before)); then log "step $name: outputs identical"; fi
  return 0
}

# A step's stdout/stderr or output file in one mode, for scenario-specific checks.
check_same_file() { # check_same_file <what> <file1> <file2>
  if ! cmp "$2" "$3" >"$WORK/cmp.txt" 2>&1; then
    fail "$1: $(cat "$WORK/cmp.txt")"
  fi
}

python_bin() {
  if [[ -x /usr/bin/python3 ]]; then
    echo /usr/bin/python3
  else
    need python3
    command -v python3
  fi
}

# ---- scenarios ----------------------------------------------------------------------------

scenario_python3() {
  local py
  py=$(python_bin)
  log "using $py ($("$py" --version 2>&1))"
  # pymalloc serves small objects from its own arenas; PYTHONMALLOC=malloc sends every
  # allocation to malloc, which makes the allocator do far more work.
  step python-pymalloc -- env PYTHONMALLOC=pymalloc "$py" -s "$SRC_DIR/alloc_heavy.py"
  step python-malloc -- env PYTHONMALLOC=malloc "$py" -s "$SRC_DIR/alloc_heavy.py"
  grep -q '^done$' "$WORK/plain/python-malloc.out" || fail "alloc_heavy.py did not finish"
}

scenario_sqlite3() {
  need sqlite3
  log "using sqlite3 $(sqlite3 -version | cut -d' ' -f1)"
  cat >"$WORK/in/build.sql" <<'EOF'
PRAGMA page_size = 4096;
PRAGMA cache_size = -16000;
CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL,
                       tier INTEGER NOT NULL);
CREATE TABLE orders(id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
                    amount INTEGER NOT NULL, day INTEGER NOT NULL, note TEXT);
BEGIN;
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 5000)
INSERT INTO customers
  SELECT i, printf('cust%05d-%s', (i * 7919) % 5000, substr('abcdefghijklmnop', 1 + i % 11, 1 + i % 6)),
         CASE i % 7 WHEN 0 THEN 'Oslo' WHEN 1 THEN 'Lyon' WHEN 2 THEN 'Porto' WHEN 3 THEN 'Graz'
                    WHEN 4 THEN 'Turku' WHEN 5 THEN 'Aarhus' ELSE 'Ghent' END,
         i % 4
  FROM c;
WITH RECURSIVE s(i, x) AS (
  SELECT 1, 12345
  UNION ALL
  SELECT i + 1, (x * 1103515245 + 12345) % 2147483648 FROM s WHERE i < 100000)
INSERT INTO orders
  SELECT i, 1 + x % 5000, (x / 7) % 100000, i % 365,
         printf('order-%06d-%s', i, substr(hex(x * 2654435761), 1, 2 + i % 14))
  FROM s;
COMMIT;
CREATE INDEX orders_customer ON orders(customer_id, amount);
CREATE INDEX orders_day ON orders(day);
CREATE INDEX customers_city ON customers(city, tier);
.headers on
SELECT count(*) AS orders, sum(amount) AS total, min(amount) AS lo, max(amount) AS hi,
       count(DISTINCT customer_id) AS customers, sum(length(note)) AS note_bytes FROM orders;
SELECT c.city, c.tier, count(*) AS n, sum(o.amount) AS total, round(avg(o.amount), 3) AS mean
  FROM orders o JOIN customers c ON c.id = o.customer_id
  GROUP BY c.city, c.tier ORDER BY c.city, c.tier;
SELECT c.name, count(*) AS n, sum(o.amount) AS total
  FROM customers c JOIN orders o ON o.customer_id = c.id
  GROUP BY c.id ORDER BY total DESC, c.id LIMIT 10;
SELECT day / 30 AS month, count(*) AS n, sum(amount) AS total FROM orders
  GROUP BY month ORDER BY month;
DELETE FROM orders WHERE amount % 10 = 3;
UPDATE orders SET note = note || '-' || upper(substr(note, -4)) WHERE day % 5 = 0;
UPDATE customers SET tier = tier + 1 WHERE id IN (SELECT customer_id FROM orders
  GROUP BY customer_id HAVING sum(amount) > 1100000);
VACUUM;
SELECT count(*) AS orders_left, sum(amount) AS total, sum(length(note)) AS note_bytes FROM orders;
EOF
  cat >"$WORK/in/query.sql" <<'EOF'
.headers on
PRAGMA integrity_check;
SELECT tier, count(*) AS customers FROM customers GROUP BY tier ORDER BY tier;
SELECT id, customer_id, amount, rank FROM (
  SELECT id, customer_id, amount,
         rank() OVER (PARTITION BY customer_id ORDER BY amount DESC, id) AS rank FROM orders)
  WHERE rank <= 2 AND customer_id % 500 = 1 ORDER BY customer_id, rank;
SELECT c.city, group_concat(t.name, ',') AS top_customers FROM customers c
  JOIN (SELECT c2.id, c2.name, sum(o.amount) AS total FROM customers c2
        JOIN orders o ON o.customer_id = c2.id GROUP BY c2.id ORDER BY total DESC, c2.id LIMIT 40) t
    ON t.id = c.id
  GROUP BY c.city ORDER BY c.city;
SELECT substr(note, -3) AS tail, count(*) AS n FROM orders GROUP BY tail ORDER BY n DESC, tail LIMIT 8;
SELECT count(*) AS pairs FROM orders a JOIN orders b
  ON b.customer_id = a.customer_id AND b.day = a.day AND b.id > a.id;
EOF
  # 1. Build the database: 100,000 generated rows, indexes, aggregate/join queries, VACUUM.
  step sqlite-build --file test.db -- sqlite3 -batch -bail test.db ".read ../in/build.sql"
  # 2. Reopen it: integrity check, window functions, more joins.
  step sqlite-query -- sqlite3 -batch -bail -readonly test.db ".read ../in/query.sql"
  grep -q '^ok$' "$WORK/preload/sqlite-query.out" || fail "PRAGMA integrity_check did not report ok"
}

scenario_sort() {
  need sort awk md5sum
  # ~2.2 million deterministic lines (~60 MB): 32-bit LCG values, words, numbers.
  awk 'BEGIN {
    x = 12345
    split("alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november oscar papa", w, " ")
    for (i = 0; i < 2200000; i++) {
      x = (x * 69069 + 1) % 4294967296
      printf "%s-%08x %d %s\n", w[1 + int(x / 65536) % 16], x, int(x / 1024) % 100000,
             substr("quick brown fox jumps", 1 + i % 7, 3 + x % 9)
    }
  }' >"$WORK/in/lines.txt"
  log "input: $(wc -l <"$WORK/in/lines.txt") lines, $(wc -c <"$WORK/in/lines.txt") bytes"
  # Default sort (GNU sort uses up to min(8, nproc) threads by default).
  step sort-default --no-stats --file sorted.txt -- sort -o sorted.txt ../in/lines.txt
  # Explicitly multi-threaded with a 64 MB buffer, smaller than the data: it spills to
  # temporary files in $TMPDIR and merges them.
  step sort-parallel --no-stats --file sorted-par.txt -- \
    sort --parallel=2 -S 64M -o sorted-par.txt ../in/lines.txt
  # Keyed numeric sort with a reverse secondary key.
  step sort-keys --no-stats --file sorted-keys.txt -- \
    sort --parallel=2 -S 64M -t ' ' -k2,2n -k1,1r -o sorted-keys.txt ../in/lines.txt
  check_same_file "the default and the parallel sort disagree (preloaded)" \
    "$WORK/preload/sorted.txt" "$WORK/preload/sorted-par.txt"
  local f
  for f in sorted.txt sorted-par.txt sorted-keys.txt; do
    log "md5 $f: plain $(md5sum <"$WORK/plain/$f" | cut -d' ' -f1)" \
      "preloaded $(md5sum <"$WORK/preload/$f" | cut -d' ' -f1)"
  done
  [[ $(wc -l <"$WORK/preload/sorted.txt") -eq 2200000 ]] || fail "sorted output lost lines"
}

scenario_gcc() {
  need gcc g++
  log "using $(gcc --version | head -n 1)"
  cp "$SRC_DIR/sample.c" "$SRC_DIR/cxx_sample.cc" "$WORK/in/"
  # cc1 + as: the object files must be identical (ELF objects embed no timestamps).
  step gcc-compile --file sample.o -- gcc -O2 -Wall -frandom-seed=sample -c ../in/sample.c -o sample.o
  # The whole driver pipeline: cc1, as, collect2, ld.
  step gcc-link --file sample -- gcc -O2 -frandom-seed=sample ../in/sample.c -o sample
  # Run what each build produced (the preloaded build under the allocator as well).
  step gcc-run -- ./sample
  # cc1plus parsing the standard library headers is much more allocation-hungry.
  step gxx-compile --file cxx_sample.o -- \
    g++ -O2 -std=c++17 -frandom-seed=cxx -c ../in/cxx_sample.cc -o cxx_sample.o
  grep -q '^primes below 2000000: 148933$' "$WORK/preload/gcc-run.out" ||
    fail "the compiled sample program printed an unexpected result"
}

scenario_multithreaded() {
  need xz awk md5sum
  local py
  py=$(python_bin)
  log "using $(xz --version | head -n 1) and $py"
  # ~30 MB of deterministic text.
  awk 'BEGIN {
    x = 987654321
    split("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua", w, " ")
    for (i = 0; i < 900000; i++) {
      x = (x * 69069 + 1) % 4294967296
      printf "%07d %s %s %s %u\n", i, w[1 + int(x / 65536) % 19], w[1 + int(x / 256) % 19], w[1 + x % 19], x % 1000003
    }
  }' >"$WORK/in/data.txt"
  log "input: $(wc -c <"$WORK/in/data.txt") bytes"
  # Two encoder threads; 4 MiB blocks give each thread several blocks. The output of
  # threaded xz depends only on the block size, so both runs must produce the same bytes.
  step xz-compress --no-stats --stdout data.xz -- xz -T2 -2 --block-size=4MiB -c ../in/data.txt
  # Threaded decompression (each run decompresses its own archive).
  step xz-decompress --no-stats --stdout roundtrip.txt -- xz -T2 -dc data.xz
  check_same_file "xz round trip (preloaded) does not reproduce the input" \
    "$WORK/in/data.txt" "$WORK/preload/roundtrip.txt"
  log "md5 data.xz: plain $(md5sum <"$WORK/plain/data.xz" | cut -d' ' -f1)" \
    "preloaded $(md5sum <"$WORK/preload/data.xz" | cut -d' ' -f1)"
  # Python: 8 threads building and discarding objects, and cross-thread frees.
  step python-threads -- env PYTHONMALLOC=malloc "$py" -s "$SRC_DIR/mt_alloc.py"
  step python-threads-pymalloc -- env PYTHONMALLOC=pymalloc "$py" -s "$SRC_DIR/mt_alloc.py"
}

scenario_cxx() {
  need g++
  # Built once, without preload; only its runs are compared.
  g++ -O2 -std=c++17 -pthread -Wall -Wextra -o "$WORK/in/cxx_sample" "$SRC_DIR/cxx_sample.cc" ||
    die "could not compile cxx_sample.cc (without preload)"
  local i
  for i in 1 2 3; do # thread interleavings differ from run to run; the output may not
    step "cxx-run-$i" -- ../in/cxx_sample
  done
  grep -q '^hand-off: items 160000 ' "$WORK/preload/cxx-run-1.out" ||
    fail "cxx_sample did not report the full hand-off"
}

T_START=$(now)
log "library: $LIB (SMPALLOC_OPTIONS=$OPTIONS in the preloaded runs, front end wanted: ${WANTED:-not checked})"
"scenario_$SCENARIO"
log "total $(elapsed "$T_START" "$(now)")s"
if ((FAILURES)); then
  echo "[$SCENARIO] FAILED: $FAILURES problem(s) with $LIB preloaded (see the FAIL lines above)" >&2
  exit 1
fi
log "PASSED"
