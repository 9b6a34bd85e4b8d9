#!/usr/bin/env bash
# The ABI check: the shared libraries export exactly the names in exports.txt (the malloc family,
# the C++ operators and the smp_ API; libsmpalloc_api.so only the smp_ ones), so an accidental
# export fails here. Also the soname follows the project version (README, "Versions and the
# ABI": libsmpalloc.so.MAJOR, the file libsmpalloc.so.MAJOR.MINOR.PATCH).
# Usage: abi_check.sh BUILD_DIR VERSION HAVE_URCU(0|1)
set -euo pipefail
build=$1 version=$2 have_urcu=$3
list=$(dirname "$0")/exports.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Expected names: comments and blank lines out; "rcu" names only with liburcu.
awk -v urcu="$have_urcu" '/^#/ || NF == 0 { next } $2 == "rcu" && urcu != 1 { next } { print $1 }' \
  "$list" | sort > "$tmp/full"
grep '^smp_' "$tmp/full" > "$tmp/api" || true
major=${version%%.*}
status=0
for pair in "libsmpalloc.so:full" "libsmpalloc_api.so:api"; do
  lib=$build/${pair%%:*} want=$tmp/${pair##*:}
  nm -D --defined-only "$lib" | awk '{ print $NF }' | sort > "$tmp/have"
  if ! diff -u --label expected --label "${pair%%:*}" "$want" "$tmp/have"; then
    echo "abi_check: ${pair%%:*} exports differ from $list (+: exported, not listed)"
    status=1
  fi
  soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
  if [ "$soname" != "${pair%%:*}.$major" ]; then
    echo "abi_check: ${pair%%:*} has soname '$soname', expected ${pair%%:*}.$major"
    status=1
  fi
  real=$(readlink -f "$lib")
  if [ "$(basename "$real")" != "${pair%%:*}.$version" ]; then
    echo "abi_check: ${pair%%:*} is $(basename "$real"), expected ${pair%%:*}.$version"
    status=1
  fi
done
[ "$status" = 0 ] && echo "abi_check: $(wc -l < "$tmp/full") names, $(wc -l < "$tmp/api") in the API library, sonames .$major"
exit "$status"
