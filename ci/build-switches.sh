#!/usr/bin/env bash
# Compile lib/ with each build switch that CI's builds leave at its default: SMP_STATS=0 (the
# statistics counters compiled out) and SMP_ASSERTS=1 (the internal assertions on), with the
# warnings-as-errors of the real build, so neither configuration rots unnoticed. The
# behaviour of those builds is not tested here (an SMP_STATS=0 library has no counters for the
# statistics tests to check); a full build is `cmake -DSMP_STATS=OFF` or `-DSMP_ASSERTS=ON`.
set -euo pipefail
cd "$(dirname "$0")/.."
cc=${CC:-cc}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
flags=(-std=gnu11 -O1 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -fPIC
       -fvisibility=hidden -D_GNU_SOURCE -Iinclude)
for layer in lib/*/; do flags+=(-I"$layer"); done
flags+=(-DSMP_VERSION_STRING="\"$(ci/version.sh)\"")
for switch in SMP_STATS=0 SMP_ASSERTS=1; do
  for f in lib/*/*.c; do
    "$cc" "${flags[@]}" -D"$switch" -c "$f" -o "$out/$(basename "$f" .c).o"
  done
  echo "build-switches: lib/ compiles with -D$switch ($(ls "$out"/*.o | wc -l) objects)"
done
