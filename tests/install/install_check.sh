#!/usr/bin/env bash
# Install the build into a scratch prefix, then build programs against it the three ways a
# user would: pkg-config + shared library, static library, and the API-only library; then the
# same through CMake: find_package on the installed prefix, add_subdirectory and FetchContent of
# the source tree (consumer/CMakeLists.txt), each linking smpalloc::smpalloc, ::static, ::api.
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
cc -O1 -o "$tmp/api" "$src/linked.c" $(pkgc --cflags --libs smpalloc-api) -Wl,-rpath,"$libdir"
"$tmp/api" separate

# The installed command, in a prefix other than the configured one, preloads the library
# installed beside it (and runs on no smpalloc library of its own).
if [ -x "$tmp/prefix/bin/smpalloc" ]; then
  preload=$(env -u SMPALLOC_LIBRARY "$tmp/prefix/bin/smpalloc" run -- sh -c 'echo "$LD_PRELOAD"')
  case $preload in
    "$tmp/prefix/"*) echo "installed command preloads $preload" ;;
    *) echo "install_check: the installed command preloaded '$preload', not the prefix's"; exit 1 ;;
  esac
  if readelf -d "$tmp/prefix/bin/smpalloc" | grep NEEDED | grep -q smpalloc; then
    echo "install_check: the command links an smpalloc library"; exit 1
  fi
fi
# CMake: the package, then the source tree used in place. The installed package files name no
# path of the build machine's (they would break on any other).
root=$(cd "$src/../.." && pwd)
if grep -rlF -e "$root" -e "$build" "$tmp/prefix" --include='*.cmake' --include='*.pc'; then
  echo "install_check: the files above name the source or build tree"; exit 1
fi
for mode in package subdirectory fetch; do
  cmake -S "$src/consumer" -B "$tmp/cmake-$mode" -DSMPALLOC_MODE=$mode \
    -DCMAKE_PREFIX_PATH="$tmp/prefix" -DSMPALLOC_SOURCE="$root" >"$tmp/cmake-$mode.log" 2>&1 ||
    { cat "$tmp/cmake-$mode.log"; echo "install_check: cmake ($mode) failed"; exit 1; }
  cmake --build "$tmp/cmake-$mode" -j"$(nproc)" >"$tmp/build-$mode.log" 2>&1 ||
    { tail -30 "$tmp/build-$mode.log"; echo "install_check: build ($mode) failed"; exit 1; }
  "$tmp/cmake-$mode/linked_shared" replaced
  "$tmp/cmake-$mode/linked_static" replaced
  "$tmp/cmake-$mode/linked_api" separate
  "$tmp/cmake-$mode/linked_api_static" separate
done
# A request for a version the package does not offer is refused (SameMajorVersion: 9.9 is
# another MAJOR, and newer).
if cmake -S "$src/consumer" -B "$tmp/cmake-old" -DSMPALLOC_MODE=package \
    -DCMAKE_PREFIX_PATH="$tmp/prefix" -DSMPALLOC_WANT=9.9 >/dev/null 2>&1; then
  echo "install_check: find_package(smpalloc 9.9) was accepted"; exit 1
fi
# cpack refuses a tree configured for another prefix than /usr, with the reason.
if [ -f "$build/CPackPrefixCheck.cmake" ] &&
   ! grep -q 'CMAKE_INSTALL_PREFIX:PATH=/usr$' "$build/CMakeCache.txt"; then
  out=$(cd "$build" && cpack -G DEB --config CPackConfig.cmake -B "$tmp/cpack" 2>&1) &&
    { echo "install_check: cpack made packages from a tree not configured for /usr"; exit 1; }
  grep -q "DCMAKE_INSTALL_PREFIX=/usr" <<<"$out" ||
    { echo "$out"; echo "install_check: cpack's refusal does not say why"; exit 1; }
fi
echo "install_check: ok"
