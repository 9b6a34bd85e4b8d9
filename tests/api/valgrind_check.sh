#!/usr/bin/env bash
# Runs valgrind_main under memcheck and checks that memcheck saw smpalloc's blocks: the read of
# a heap's block after free, and the leaks of a heap's block and a typed block, each with the
# function that allocated it. Usage: valgrind_check.sh VALGRIND PROGRAM
set -euo pipefail
valgrind=$1 prog=$2
out=$("$valgrind" --leak-check=full --show-leak-kinds=definite --num-callers=20 "$prog" 2>&1) || {
  echo "$out"; echo "valgrind_check: the run failed"; exit 1; }
fail=0
want() {
  if ! grep -qE -- "$1" <<<"$out"; then echo "valgrind_check: memcheck did not say: $1"; fail=1; fi
}
want '^done 0 '
want 'Invalid read of size 1'
want 'Address 0x[0-9a-f]+ is 10 bytes inside a block of size 64 free'"'"'d'
want '100 bytes in 1 blocks are definitely lost'
want '216 bytes in 1 blocks are definitely lost' # 200, and the typed block's 16-byte header
want 'by 0x[0-9A-F]+: vg_leak_heap_block'
want 'by 0x[0-9A-F]+: vg_leak_typed_block'
if grep -q 'blocks are definitely lost' <<<"$out" && [ "$(grep -c 'blocks are definitely lost' <<<"$out")" -ne 2 ]; then
  echo "valgrind_check: more than the two leaks"; fail=1
fi
[ $fail -eq 0 ] || { echo "$out"; exit 1; }
echo "valgrind_check: memcheck saw the read after free and both leaks"
