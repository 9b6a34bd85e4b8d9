#!/usr/bin/env bash
# Print the project's version, MAJOR.MINOR.PATCH, from its one source: project(VERSION) in
# CMakeLists.txt. For the scripts that compile lib/ without CMake (ci/cross-aarch64.sh,
# ci/build-switches.sh), which pass it as SMP_VERSION_STRING as CMake does.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n 's/^project(smpalloc VERSION \([0-9]*\.[0-9]*\.[0-9]*\).*/\1/p' "$root/CMakeLists.txt")
[ -n "$version" ] || { echo "ci/version.sh: no project(smpalloc VERSION X.Y.Z) in CMakeLists.txt" >&2; exit 1; }
echo "$version"
