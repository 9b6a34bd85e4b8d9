#!/usr/bin/env bash
# Compile the library for aarch64 with Debian's cross compiler (gcc-aarch64-linux-gnu) and link
# it into a shared object. This machine cannot run arm64 code: the check is that the aarch64
# rseq sequences (lib/platform/rseq_aarch64.h) and the rest of lib/ keep compiling, with the same
# warnings-as-errors as the native build.
set -euo pipefail
cd "$(dirname "$0")/.."
cc=${CROSS_CC:-aarch64-linux-gnu-gcc}
command -v "$cc" >/dev/null || { echo "cross-aarch64: $cc not installed (ci/test.sh installs it)"; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
flags=(-std=gnu11 -O2 -g -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -fPIC
       -fvisibility=hidden -fno-semantic-interposition -D_GNU_SOURCE -Iinclude)
for layer in lib/*/; do flags+=(-I"$layer"); done
flags+=(-DSMP_VERSION_STRING="\"$(ci/version.sh)\"")
# lib/api/rcu.c needs liburcu's headers, which the cross toolchain has only if arm64's
# liburcu-dev is installed (CMake leaves it out the same way).
urcu=1
echo '#include <urcu/flavor.h>' | "$cc" -E -x c - >/dev/null 2>&1 || urcu=0
for f in lib/*/*.c; do
  [ "$f" = lib/api/rcu.c ] && [ "$urcu" = 0 ] && continue
  "$cc" "${flags[@]}" -c "$f" -o "$out/$(basename "$f" .c).o"
done
"$cc" -shared -o "$out/libsmpalloc.so" "$out"/*.o -lpthread
# The per-CPU sequences must be there: descriptors in __rseq_cs, abort signatures in text.
aarch64-linux-gnu-readelf -SW "$out/libsmpalloc.so" > "$out/sections.txt"
aarch64-linux-gnu-objdump -d "$out/libsmpalloc.so" > "$out/code.txt"
grep -q __rseq_cs_ptr_array "$out/sections.txt"
grep -q "d428bc00" "$out/code.txt"
echo "cross-aarch64: lib/ builds for aarch64 ($(ls "$out"/*.o | wc -l) objects, rseq sections present)"
