#!/usr/bin/env bash
# The smpalloc command (tools/smpalloc.c), run from the build tree.
# Usage: test_command.sh SMPALLOC_COMMAND LIBSMPALLOC_SO SOURCE_DIR
# Checks: version, help, usage errors (exit 2), checked --option values, run's environment
# (LD_PRELOAD and SMPALLOC_OPTIONS extended, not replaced), exit status passthrough (128+N for
# a signal; death by SIGINT passed up; SIGCHLD ignored by the caller), exec failures (127/126),
# SIGTERM and SIGUSR1 passed on and SIGINT ignored while waiting,
# --stats, the "did not load" check on a static program (exit 3; skipped without a static
# libc), the private directory removed, and a quick smpalloc compare. Prints one line per check
# and exits 1 if any failed.
set -uo pipefail
cmd=$1 lib=$2 src=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0

ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; failed=1; }
# expect NAME STATUS WANT: the check NAME passes when STATUS is WANT.
expect_status() {
  if [ "$2" -eq "$3" ]; then ok "$1 (exit $2)"; else fail "$1: exit $2, expected $3"; fi
}
# contains NAME FILE PATTERN: FILE has a line matching the extended regex PATTERN.
contains() {
  if grep -Eq -- "$3" "$2"; then ok "$1"
  else fail "$1: no line matching '$3' in:"; sed 's/^/    /' "$2"; fi
}
# run_cmd ARGS...: run the command, stdout to $tmp/out, stderr to $tmp/err; sets status.
run_cmd() { "$cmd" "$@" >"$tmp/out" 2>"$tmp/err"; status=$?; }

# --- version and help ---
version=$("$src/ci/version.sh")
run_cmd version
expect_status "version" "$status" 0
contains "version prints 'smpalloc $version'" "$tmp/out" "^smpalloc ${version//./\\.}\$"

for args in "--help" "-h" "help" "help run" "run --help" "help version" "version --help"; do
  run_cmd $args
  expect_status "smpalloc $args" "$status" 0
  contains "smpalloc $args prints a usage on stdout" "$tmp/out" "^Usage: smpalloc"
done
run_cmd help run
contains "help run describes run" "$tmp/out" "^Usage: smpalloc run "

# The completion offers exactly the options lib/support/options.c knows.
table=$(grep -o '^ *{"[a-z_]*", OPT_' "$src/lib/support/options.c" | sed 's/^ *{"\([a-z_]*\)".*/\1/' | sort)
offered=$(bash -c 'source "$1"; printf "%s\n" $_smpalloc_option_names' bash \
  "$src/tools/smpalloc.bash-completion" | sort)
if [ -n "$table" ] && [ "$table" = "$offered" ]; then ok "completion's option names are options.c's"
else fail "completion's option names differ from options.c's: $(diff <(echo "$table") <(echo "$offered") | tr '\n' ' ')"; fi

# --- usage errors: exit 2 with a message on stderr ---
run_cmd
expect_status "no command" "$status" 2
contains "no command: message" "$tmp/err" "no command"
run_cmd nosuch
expect_status "unknown command" "$status" 2
contains "unknown command: message" "$tmp/err" "^smpalloc: unknown command 'nosuch'"
contains "unknown command: usage hint" "$tmp/err" "smpalloc --help"
run_cmd help nosuch
expect_status "help of an unknown command" "$status" 2
run_cmd run --nosuch true
expect_status "unknown option of run" "$status" 2
contains "unknown option: message" "$tmp/err" "^smpalloc run: unknown option '--nosuch'"
run_cmd run --library "$lib"
expect_status "run without a program" "$status" 2

# A bad --option stops before PROG runs.
for opt in nosuch:1 junk:maybe; do
  for form in "--option $opt" "--option=$opt" "-o $opt"; do
    run_cmd run $form --library "$lib" -- sh -c 'echo ran'
    expect_status "run $form" "$status" 2
    contains "run $form: message" "$tmp/err" "^smpalloc run: bad option '$opt': .+"
    [ -s "$tmp/out" ] && fail "run $form ran the program"
  done
done
contains "--option nosuch:1 says why" "$tmp/err" "."
run_cmd run --option cache_size:2m,nosuch:1 --library "$lib" -- true
expect_status "a bad item among good ones" "$status" 2
run_cmd run --library "$tmp/no-such-lib.so" -- sh -c 'echo ran'
expect_status "a library that does not exist" "$status" 2
contains "missing library: message" "$tmp/err" "no-such-lib.so"
[ -s "$tmp/out" ] && fail "missing library: the program ran"

# --- run ---
run_cmd run --library "$lib" -- python3 -c 'print(1)'
expect_status "run python3" "$status" 0
contains "run python3 prints 1" "$tmp/out" "^1\$"
run_cmd run --library "$lib" sh -c 'exit 7'
expect_status "exit status passed through" "$status" 7
run_cmd run --library "$lib" -- sh -c 'kill -TERM $$'
expect_status "killed by SIGTERM: 128+15" "$status" 143
# How the command itself ended, as its parent sees it (python's os.waitstatus): a program that
# died of SIGINT takes the command with it by the same signal (so a shell loop stops on Ctrl-C);
# one that dumped core (SIGABRT) gives 128+6 without a core of the command's own.
waitstatus() { python3 -c 'import os, subprocess, sys
p = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print("signal %d" % -p.returncode if p.returncode < 0 else "exit %d" % p.returncode)' "$@"; }
how=$(waitstatus env --default-signal=INT "$cmd" run --library "$lib" -- sh -c 'kill -INT $$')
[ "$how" = "signal 2" ] && ok "a program killed by SIGINT: the command dies of SIGINT" ||
  fail "a program killed by SIGINT: the command ended with $how, expected signal 2"
how=$(ulimit -c 0; waitstatus "$cmd" run --library "$lib" -- sh -c 'kill -ABRT $$')
[ "$how" = "exit 134" ] && ok "a program killed by SIGABRT: exit 134" ||
  fail "a program killed by SIGABRT: the command ended with $how, expected exit 134"
# A caller that ignores SIGCHLD (the kernel would reap the program before waitpid) still gets
# the program's status.
python3 -c 'import os, signal, sys
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
os.execv(sys.argv[1], sys.argv[1:])' "$cmd" run --library "$lib" -- sh -c 'exit 5' \
  >"$tmp/out" 2>"$tmp/err"
expect_status "exit status with SIGCHLD ignored by the caller" "$?" 5
run_cmd run --library "$lib" -- "$tmp/no-such-program"
expect_status "a program that does not exist" "$status" 127
contains "no such program: message" "$tmp/err" "no-such-program"
printf 'not a program\n' >"$tmp/not-executable"
run_cmd run --library "$lib" -- "$tmp/not-executable"
expect_status "a file that is not executable" "$status" 126

# The library preloaded: from --library, else $SMPALLOC_LIBRARY; made absolute.
run_cmd run --library "$lib" -- sh -c 'grep -c libsmpalloc /proc/$$/maps'
contains "the library is mapped in the program" "$tmp/out" "^[1-9]"
env -u LD_PRELOAD SMPALLOC_LIBRARY="$lib" "$cmd" run -- sh -c 'echo "$LD_PRELOAD"' >"$tmp/out" 2>"$tmp/err"
expect_status "library from SMPALLOC_LIBRARY" "$?" 0
contains "SMPALLOC_LIBRARY is preloaded" "$tmp/out" "^$lib\$"
(cd "$(dirname "$lib")" && env -u LD_PRELOAD "$cmd" run --library "./$(basename "$lib")" -- sh -c 'echo "$LD_PRELOAD"') \
  >"$tmp/out" 2>"$tmp/err"
if [[ $(cat "$tmp/out") == /* ]] && [ "$(cat "$tmp/out")" -ef "$lib" ]; then
  ok "a relative --library is preloaded by an absolute path"
else fail "a relative --library is preloaded as '$(cat "$tmp/out")'"; fi

# The environment's LD_PRELOAD and SMPALLOC_OPTIONS are kept, extended (the library first;
# the options after the environment's, in their order).
other=$(cc -print-file-name=libm.so.6 2>/dev/null)
[ -e "$other" ] || other=$lib
opts=${SMPALLOC_OPTIONS:+$SMPALLOC_OPTIONS,}decay_ms:500
LD_PRELOAD=$other SMPALLOC_OPTIONS=$opts "$cmd" run --option junk:0 -o cache_size:2m,zero_free:0 \
  --option=thp:1 --stats --library "$lib" -- \
  sh -c 'echo "LD_PRELOAD=$LD_PRELOAD"; echo "SMPALLOC_OPTIONS=$SMPALLOC_OPTIONS"' \
  >"$tmp/out" 2>"$tmp/err"
expect_status "run with LD_PRELOAD and SMPALLOC_OPTIONS set" "$?" 0
contains "LD_PRELOAD extended" "$tmp/out" "^LD_PRELOAD=$lib:$other\$"
contains "SMPALLOC_OPTIONS extended" "$tmp/out" \
  "^SMPALLOC_OPTIONS=$opts,junk:0,cache_size:2m,zero_free:0,thp:1,stats:1\$"
env -u LD_PRELOAD -u SMPALLOC_OPTIONS "$cmd" run --option junk:0 --library "$lib" -- \
  sh -c 'echo "LD_PRELOAD=$LD_PRELOAD"; echo "SMPALLOC_OPTIONS=$SMPALLOC_OPTIONS"' \
  >"$tmp/out" 2>"$tmp/err"
contains "LD_PRELOAD unset: the library alone" "$tmp/out" "^LD_PRELOAD=$lib\$"
contains "SMPALLOC_OPTIONS unset: the options alone" "$tmp/out" "^SMPALLOC_OPTIONS=junk:0\$"

# --stats: the library's report (lib/api/report.c) on stderr; none without it.
# (dash leaves with _exit, which runs no exit handler: the program is true.)
run_cmd run --stats --library "$lib" -- true
expect_status "run --stats" "$status" 0
contains "--stats prints the statistics report" "$tmp/err" "^smpalloc [0-9.]+ statistics"
run_cmd run --library "$lib" -- true
if grep -Eq "^smpalloc [0-9.]+ statistics" "$tmp/err" && [[ ${SMPALLOC_OPTIONS:-} != *stats:1* ]]
then fail "a report without --stats"; else ok "no report without --stats"; fi

# The private directory of the mark is removed, whatever the outcome.
run_cmd run --library "$lib" -- sh -c 'echo "$SMPALLOC_LOADED_MARK"; exit 4'
mark=$(cat "$tmp/out")
if [ -n "$mark" ] && [ ! -e "$(dirname "$mark")" ]; then ok "the mark's directory is removed"
else fail "the mark's directory ${mark:-(no SMPALLOC_LOADED_MARK)} is left"; fi

# SIGTERM is passed on to the program; SIGINT is ignored while it runs (as system() does).
# The command starts with SIGINT at its default (a background job of a script has it ignored).
default_int=()
env --default-signal=INT true 2>/dev/null && default_int=(env --default-signal=INT)
${default_int[@]+"${default_int[@]}"} "$cmd" run --library "$lib" -- sh -c \
  "trap 'echo TERM; exit 42' TERM; trap 'echo INT' INT; echo \$\$ >'$tmp/ready.new'
   mv '$tmp/ready.new' '$tmp/ready'; while :; do sleep 0.05; done" >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 200); do [ -e "$tmp/ready" ] && break; sleep 0.05; done
kill -INT "$pid"; sleep 0.2
kill -TERM "$pid"
# A command that died of a signal itself, or did not pass it on, leaves the program running:
# after 10 s it is stopped.
for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
[ -s "$tmp/ready" ] && kill -KILL "$(cat "$tmp/ready")" 2>/dev/null
wait "$pid"
expect_status "SIGTERM passed on, SIGINT ignored (the program's trap exits 42)" "$?" 42
contains "the program got SIGTERM" "$tmp/out" "^TERM\$"
if grep -q INT "$tmp/out"; then fail "SIGINT was passed on"; else ok "SIGINT not passed on"; fi

# Any signal that would end the command quietly (here SIGUSR1, as timeout -s USR1 sends) goes to
# the program too: the command waits for it and removes its directory.
mkdir "$tmp/tmpdir"
TMPDIR=$tmp/tmpdir "$cmd" run --library "$lib" -- sh -c \
  "trap 'echo USR1; exit 43' USR1; echo \$\$ >'$tmp/ready1.new'
   mv '$tmp/ready1.new' '$tmp/ready1'; while :; do sleep 0.05; done" >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 200); do [ -e "$tmp/ready1" ] && break; sleep 0.05; done
kill -USR1 "$pid"
for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
[ -s "$tmp/ready1" ] && kill -KILL "$(cat "$tmp/ready1")" 2>/dev/null
wait "$pid"
expect_status "SIGUSR1 passed on (the program's trap exits 43)" "$?" 43
if [ -z "$(ls -A "$tmp/tmpdir")" ]; then ok "SIGUSR1: the private directory is removed"
else fail "SIGUSR1: left $(ls -A "$tmp/tmpdir")"; fi

# A static program never loads the library: exit 3 and a message.
printf '#include <stdlib.h>\nint main(void) { free(malloc(64)); return 0; }\n' >"$tmp/static.c"
if cc -static -o "$tmp/static" "$tmp/static.c" 2>"$tmp/cc.err"; then
  run_cmd run --library "$lib" -- "$tmp/static"
  expect_status "a static program" "$status" 3
  contains "a static program: message" "$tmp/err" \
    "^smpalloc run: .*/static did not load .*; it ran on its own allocator\$"
else
  echo "skip: no static libc (cc -static failed: $(head -1 "$tmp/cc.err")); the not-loaded check is untested"
fi

# --- compare: the scripts of the source tree, with the built library ---
SMPALLOC_BENCH_DIR=$src/bench "$cmd" compare --reps 1 --alloc glibc --library "$lib" -- true \
  >"$tmp/out" 2>"$tmp/err"
expect_status "compare --reps 1 --alloc glibc -- true" "$?" 0
contains "compare prints a table" "$tmp/out" "^ +allocator +time s"
contains "compare's table has smpalloc" "$tmp/out" "^ +smpalloc +[0-9.]+ +1\\.00"
contains "compare's table has glibc" "$tmp/out" "^ +glibc +[0-9.]+"
SMPALLOC_BENCH_DIR=$src/bench "$cmd" compare --target smpalloc --library "$lib" -- true \
  >"$tmp/out" 2>"$tmp/err"
expect_status "compare --target with a library" "$?" 2
SMPALLOC_BENCH_DIR=$src/bench "$cmd" compare --reps 1 >"$tmp/out" 2>"$tmp/err"
expect_status "compare without a command" "$?" 2
SMPALLOC_BENCH_DIR=$src/bench "$cmd" compare --help >"$tmp/out" 2>"$tmp/err"
expect_status "compare --help" "$?" 0
contains "compare --help lists compare.sh's options" "$tmp/out" "--reps N"

[ "$failed" = 0 ] && echo "test_command: all passed"
exit "$failed"
