#!/usr/bin/env bash
# The Debian packages, as a user gets them: build them (cpack, cmake/packaging.cmake) from a
# build configured for /usr, check them with lintian (no errors), install them with dpkg -i,
# then use the installed smpalloc the ways README says (the smpalloc command on python3, a CMake
# project with find_package, pkg-config, the man pages), and remove them again, whatever
# happened. Needs root (dpkg -i), as CI is; called by ci/test.sh.
# Usage: ci/packages.sh [build-dir]   (default build-packages)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-packages}
[ "$(id -u)" -eq 0 ] || { echo "ci/packages.sh: needs root to install packages" >&2; exit 1; }
# valgrind: its headers, so that the packaged library has memcheck's client requests.
ci/install-packages.sh cmake make gcc g++ pkg-config lintian man-db python3 liburcu-dev dpkg-dev \
  valgrind
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
  -DSMP_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j"$jobs" >/dev/null
rm -f "$build"/*.deb
(cd "$build" && cpack -G DEB >/dev/null)
debs=("$build"/*.deb)
ls -l "${debs[@]}"
# The packages' names, from the files (libsmpalloc<MAJOR> follows the version).
packages=()
for deb in "${debs[@]}"; do packages+=("$(dpkg-deb -f "$deb" Package)"); done

# lintian: errors fail, warnings are printed.
lint=$(lintian --tag-display-limit 0 "${debs[@]}" 2>&1 | grep -v '^running with root' || true)
[ -z "$lint" ] || echo "$lint"
if grep -q '^E:' <<<"$lint"; then echo "ci/packages.sh: lintian reports errors"; exit 1; fi

# A machine that has smpalloc's packages already keeps them: this check would replace them and
# then remove them.
for p in "${packages[@]}"; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    echo "ci/packages.sh: $p is installed on this machine; not replacing it (built and linted only)"
    exit 0
  fi
done
tmp=$(mktemp -d)
cleanup() {
  rm -rf "$tmp"
  dpkg --purge "${packages[@]}" >/dev/null ||
    { echo "ci/packages.sh: dpkg --purge ${packages[*]} failed: they are left installed"; exit 1; }
}
trap cleanup EXIT
dpkg -i "${debs[@]}" >/dev/null
fail() { echo "ci/packages.sh: $*"; exit 1; }

# The command, on an interpreter that knows nothing of smpalloc.
version=$(smpalloc version)
echo "installed: $version"
[ "$(smpalloc run -- python3 -c 'print(1)')" = 1 ] || fail "smpalloc run -- python3 failed"
smpalloc run --stats -- python3 -c 'print(1)' 2>"$tmp/stats" >/dev/null
grep -q "statistics" "$tmp/stats" || fail "smpalloc run --stats printed no statistics"
# A CMake project finds the package without being told where.
cmake -S tests/install/consumer -B "$tmp/consumer" -DSMPALLOC_MODE=package >/dev/null
cmake --build "$tmp/consumer" >/dev/null
"$tmp/consumer/linked_shared" replaced
"$tmp/consumer/linked_static" replaced
"$tmp/consumer/linked_api" separate
"$tmp/consumer/linked_api_static" separate
# pkg-config, as the .pc says.
cc -o "$tmp/pc" tests/install/linked.c $(pkg-config --cflags --libs smpalloc)
"$tmp/pc" replaced
# The man pages, each section.
for section in 1 3 7; do
  man -P cat "$section" smpalloc 2>/dev/null | grep -q "smpalloc" || fail "man $section smpalloc"
done
man -w smpalloc >/dev/null || fail "man smpalloc finds no page"
man -P cat smp_heap_create 2>/dev/null | grep -q "smp_heap_create" || fail "man smp_heap_create"
echo "ci/packages.sh: built, lintian-clean of errors, installed, used and removed: ${debs[*]##*/}"
