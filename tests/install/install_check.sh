#!/usr/bin/env bash
# Install the build into a scratch prefix, then build programs against it the three ways a
# user would: pkg-config + shared library, static library, and the API-only library.
set -euo pipefail
build=$1
src=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
pc="$tmp/prefix/lib/pkgconfig"
[ -d "$pc" ] || pc=$(dirname "$(find "$tmp/prefix" -name smpalloc.pc | head -1)")
test -f "$pc/smpalloc.pc" || { echo "smpalloc.pc not installed"; exit 1; }
test -f "$tmp/prefix/include/smpalloc.h" || { echo "smpalloc.h not installed"; exit 1; }
export PKG_CONFIG_PATH="$pc"
# The .pc names the configured prefix; --define-prefix relocates it to where it was installed.
pkgc() { pkg-config --define-prefix "$@"; }
libdir=$(pkgc --variable=libdir smpalloc)

# Shared, via pkg-config: malloc in the program is smpalloc.
cc -O1 -o "$tmp/linked" "$src/linked.c" $(pkgc --cflags --libs smpalloc) -Wl,-rpath,"$libdir"
"$tmp/linked" replaced
# Static: the archive replaces malloc too.
cc -O1 -o "$tmp/static" "$src/linked.c" $(pkgc --cflags smpalloc) "$libdir/libsmpalloc.a" \
  -lpthread
"$tmp/static" replaced
# API only: smp_ functions next to glibc's malloc.
cc -O1 -o "$tmp/api" "$src/linked.c" $(pkgc --cflags smpalloc) -L"$libdir" -lsmpalloc_api \
  -Wl,-rpath,"$libdir"
"$tmp/api" separate
echo "install_check: ok"
