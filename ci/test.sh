#!/usr/bin/env bash
# The test command: installs what is missing (Debian packages), builds, runs every test.
# Exits non-zero on any failure. Usage: ci/test.sh [build-dir]
# Then the sanitizer builds (ci/sanitize.sh): ThreadSanitizer over the stress suite,
# AddressSanitizer and UndefinedBehaviorSanitizer over the tests, and a short libFuzzer run.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-ci}

# Debian packages the build and the tests need.
ci/install-packages.sh cmake make gcc g++ pkg-config libcriterion-dev python3 sqlite3 xz-utils liburcu-dev redis-tools \
  google-perftools binutils valgrind groff-base mandoc \
  coreutils gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu

jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" -j"$jobs"
# The whole suite runs twice: with the front end chosen at start-up (per-CPU caches where rseq
# works, as on Debian 12's kernel and glibc), then with the per-thread caches forced. Tests
# append their own options to SMPALLOC_OPTIONS, and every program checks that it runs on the
# front end the result asks for (tests/test_frontend.h), so pass 2 cannot silently rerun pass 1.
echo "ci/test.sh: pass 1 of 4: default front end"
ctest --test-dir "$build" --output-on-failure -j"$jobs" --timeout 900
echo "ci/test.sh: pass 2 of 4: SMPALLOC_OPTIONS=frontend:thread"
SMPALLOC_OPTIONS=frontend:thread ctest --test-dir "$build" --output-on-failure -j"$jobs" \
  --timeout 900 -E '^(build_aarch64|build_switches|install_and_link|abi_exports|man_pages)$'
# Pass 3: the stress, preload and fuzz tests hardened (lib/api/harden.h): no check may report a
# valid program. (The unit tests of the API check what hardening changes by design: sizes,
# in-place realloc, reuse order.)
echo "ci/test.sh: pass 3 of 4: SMPALLOC_OPTIONS=junk:1,redzone:16,quarantine:1m (stress, preload, fuzz)"
SMPALLOC_OPTIONS=junk:1,redzone:16,quarantine:1m ctest --test-dir "$build" --output-on-failure \
  -j"$jobs" --timeout 900 -L '^(stress|preload|fuzz)$'
# Pass 4: the same with junk alone, fill mode (harden.h): malloc's small blocks stay plain blocks,
# filled and checked on the slow paths every malloc and free then takes.
echo "ci/test.sh: pass 4 of 4: SMPALLOC_OPTIONS=junk:1 (stress, preload, fuzz)"
SMPALLOC_OPTIONS=junk:1 ctest --test-dir "$build" --output-on-failure \
  -j"$jobs" --timeout 900 -L '^(stress|preload|fuzz)$'

# The Debian packages: built, lintian, installed with dpkg -i, used, removed (needs root).
if [ "$(id -u)" -eq 0 ]; then
  echo "ci/test.sh: Debian packages"
  ci/packages.sh "$build-packages"
else
  echo "ci/test.sh: Debian packages skipped: ci/packages.sh installs them, which needs root"
fi

for kind in thread address undefined; do
  echo "ci/test.sh: sanitizer build: $kind"
  ci/sanitize.sh "$kind" "$build-$kind"
done
echo "ci/test.sh: all passed"
