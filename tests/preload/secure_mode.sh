#!/usr/bin/env bash
# A set-user-ID program linked with libsmpalloc.so must not obey the caller's SMPALLOC_OPTIONS
# or SMPALLOC_LOADED_MARK: both name files it would create with its own privileges. As root, a
# copy of the library and of a program linked to it are made set-user-ID "nobody", so the kernel
# runs it in secure-execution mode (AT_SECURE); a file the caller named must not appear, though
# the directory lets nobody write it. The same program without the bit creates both files, so
# the check sees the variables work. Skipped (77) when not root or where set-user-ID is refused.
# Usage: secure_mode.sh LIBSMPALLOC_SO PROGRAM_SOURCE
set -euo pipefail
lib=$1 src=$2
[ "$(id -u)" -eq 0 ] || { echo "secure_mode: not root: skipped"; exit 77; }
id nobody >/dev/null 2>&1 || { echo "secure_mode: no user nobody: skipped"; exit 77; }
tmp=$(mktemp -d /tmp/smp-secure.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
cp "$(readlink -f "$lib")" "$tmp/libsmpalloc.so.0"
cc -O1 -o "$tmp/prog" "$src" -I"$(dirname "$src")/../../include" "$tmp/libsmpalloc.so.0" \
  -Wl,-rpath,"$tmp"
mkdir "$tmp/out" && chmod 777 "$tmp/out"
run() {
  rm -f "$tmp/out/"*
  # leaks:PATH writes its report there at exit (and changes the program's block sizes, so its
  # own check of them may fail: its status is not the question here).
  SMPALLOC_OPTIONS="${SMPALLOC_OPTIONS:+$SMPALLOC_OPTIONS,}leaks:$tmp/out/leaks" SMPALLOC_LOADED_MARK="$tmp/out/mark" \
    "$tmp/prog" replaced >/dev/null 2>&1 || true
}
run
[ -e "$tmp/out/leaks" ] && [ -e "$tmp/out/mark" ] ||
  { echo "secure_mode: without set-user-ID the options did not take: the check would prove nothing"; exit 1; }
chown nobody "$tmp/prog" && chmod 4755 "$tmp/prog"
run
if [ ! -u "$tmp/prog" ] || [ "$(stat -c %U "$tmp/prog")" != nobody ]; then
  echo "secure_mode: cannot make a set-user-ID program here: skipped"; exit 77
fi
status=0
for f in leaks mark; do
  if [ -e "$tmp/out/$f" ]; then echo "secure_mode: a set-user-ID program created $f"; status=1; fi
done
[ "$status" = 0 ] && echo "secure_mode: set-user-ID ignores SMPALLOC_OPTIONS and SMPALLOC_LOADED_MARK"
exit "$status"
