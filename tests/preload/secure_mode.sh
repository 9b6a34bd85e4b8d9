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
# Does the kernel honour set-user-ID here? Not on a nosuid /tmp, nor under no_new_privs (some
# containers): a set-user-ID copy of id(1) must say it runs as nobody.
cp /usr/bin/id "$tmp/id" && chown nobody "$tmp/id" && chmod 4755 "$tmp/id"
if [ "$("$tmp/id" -u 2>/dev/null)" != "$(id -u nobody)" ]; then
  echo "secure_mode: set-user-ID programs do not change user here (nosuid, no_new_privs): skipped"
  exit 77
fi
# run: the program with leaks:PATH (a report written there at exit) and the mark asked for;
# its status and output in $tmp/out.status and $tmp/out.txt.
run() {
  rm -f "$tmp/out/"*
  SMPALLOC_OPTIONS="${SMPALLOC_OPTIONS:+$SMPALLOC_OPTIONS,}leaks:$tmp/out/leaks" \
    SMPALLOC_LOADED_MARK="$tmp/out/mark" "$tmp/prog" replaced >"$tmp/out.txt" 2>&1 &&
    echo 0 >"$tmp/out.status" || echo $? >"$tmp/out.status"
}
run # (leaks changes the block sizes the program checks, so its own status is not asked here)
[ -e "$tmp/out/leaks" ] && [ -e "$tmp/out/mark" ] ||
  { echo "secure_mode: without set-user-ID the options did not take: the check would prove nothing"; exit 1; }
chown nobody "$tmp/prog" && chmod 4755 "$tmp/prog"
run
# With its options ignored the program runs on plain smpalloc and must say so: a run that did
# not start would also leave no file.
if [ "$(cat "$tmp/out.status")" != 0 ] || ! grep -q "^linked (replaced): smpalloc .* ok" "$tmp/out.txt"; then
  echo "secure_mode: the set-user-ID program failed (status $(cat "$tmp/out.status")):"
  cat "$tmp/out.txt"
  exit 1
fi
status=0
for f in leaks mark; do
  if [ -e "$tmp/out/$f" ]; then echo "secure_mode: a set-user-ID program created $f"; status=1; fi
done
[ "$status" = 0 ] && echo "secure_mode: set-user-ID ignores SMPALLOC_OPTIONS and SMPALLOC_LOADED_MARK"
exit "$status"
