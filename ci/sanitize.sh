#!/usr/bin/env bash
# One sanitizer build and its tests: ci/sanitize.sh thread|address|undefined [build-dir]
#   thread     ThreadSanitizer over the stress suite (tests labelled "stress"), plain, then
#              hardened. The per-thread front end runs, since ThreadSanitizer cannot follow rseq
#              restarts.
#   address    AddressSanitizer (with LeakSanitizer) over the unit, api, stress and fault tests,
#              plus the libFuzzer operation-sequence fuzzer on a copy of its corpus.
#   undefined  UndefinedBehaviorSanitizer over every test of the build.
# Built with clang (libFuzzer and the sanitizer runtimes come with it), -Werror as always; the
# undefined build compiles the benchmarks too, so all of the code is built by clang somewhere.
# Installs what is missing (Debian packages). Exits non-zero on any failure or report.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-}
case "$kind" in
  thread | address | undefined) ;;
  *) echo "usage: ci/sanitize.sh thread|address|undefined [build-dir]" >&2; exit 2 ;;
esac
build=${2:-build-$kind}

# llvm-14: its llvm-symbolizer names the frames of sanitizer reports (api_asan_poison's tests read
# "in main"); clang-14 only recommends it.
ci/install-packages.sh cmake make clang llvm-14 libclang-rt-14-dev pkg-config libcriterion-dev \
  liburcu-dev google-perftools binutils

jobs=$(nproc 2>/dev/null || echo 2)
CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSMP_SANITIZE="$kind" -DSMP_BUILD_BENCH="$([ "$kind" = undefined ] && echo ON || echo OFF)" >/dev/null
cmake --build "$build" -j"$jobs"

# Every report fails its test: the build uses -fno-sanitize-recover=all, and these make the
# runtimes stop at the first report with a non-zero status. Fork tests in the thread build add
# their own options (tests/stress/CMakeLists.txt).
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"
export ASAN_OPTIONS="detect_leaks=1 strict_string_checks=1 check_initialization_order=1"
export LSAN_OPTIONS="suppressions=$PWD/ci/lsan.supp print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1 print_stacktrace=1"

filter=()
[ "$kind" = thread ] && filter=(-L stress)
echo "ci/sanitize.sh: $kind: running tests"
ctest --test-dir "$build" --output-on-failure -j"$jobs" --timeout 600 "${filter[@]}"
# The stress tests again under ThreadSanitizer with hardening on (lib/api/harden.h): the
# quarantine's lock and in-flight count, and the start-up of the limits every request reads.
if [ "$kind" = thread ]; then
  echo "ci/sanitize.sh: thread: the stress tests with SMPALLOC_OPTIONS=junk:1,redzone:16,quarantine:1m"
  SMPALLOC_OPTIONS=junk:1,redzone:16,quarantine:1m ctest --test-dir "$build" --output-on-failure \
    -j"$jobs" --timeout 600 -L stress
fi
