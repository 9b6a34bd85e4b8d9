#!/usr/bin/env bash
# Instructions on the hit paths of malloc and free (x86-64): counted in the disassembly of
# LIB (default build/libsmpalloc.so) from the function's entry to its first ret, which is the
# per-CPU cache hit for a request of at most 1 KiB (gcc lays the likely path out first).
# Usage: bench/fastpath.sh [LIB [MALLOC_MAX FREE_MAX]]   Prints "malloc N" and "free N"; with
# the maxima (the recorded counts, a ctest with gcc), fails if a path grew past its record.
# It also fails if a hit path reads the class header's current (movzwl (...)) before its
# limits (movzwl 0x6(...) for malloc's begin, 0x4(...) for free's end): the per-CPU sequences
# rely on that order (rseq_x86_64.h), and nothing else would notice it lost.
set -euo pipefail
lib=${1:-build/libsmpalloc.so}
declare -A max=([malloc]=${2:-} [free]=${3:-})
asm=$(objdump -d --no-show-raw-insn "$lib")
status=0
for f in malloc free; do
  n=$(awk -v f="<$f>:" '$2 == f {p = 1; next} p && /^$/ {exit}
                        p {n++; if ($2 == "ret") {print n; exit}}' <<<"$asm")
  echo "$f ${n:?no $f in $lib}"
  off=$([ "$f" = malloc ] && echo 0x6 || echo 0x4)
  # Only the loads inside the sequence count: after the store that publishes its descriptor
  # (mov %rax,%fs:(...)); loads before it read tables, not the header.
  order=$(awk -v f="<$f>:" -v lim="movzwl $off(" '$2 == f {p = 1; next} p && /^$/ {exit}
            p {n++; ins = $2 " " $3
               if (ins ~ /^mov %rax,%fs:\(/) seq = 1
               if (seq && !l && index(ins, lim) == 1) l = n
               if (seq && !c && ins ~ /^movzwl \(/) c = n
               if ($2 == "ret") exit}
            END {print (l && c && l < c) ? "ok" : "bad"}' <<<"$asm")
  if [ "$order" != ok ]; then
    echo "fastpath.sh: $f's hit path does not load the header's limits before current" >&2
    status=1
  fi
  if [ -n "${max[$f]}" ] && [ "$n" -gt "${max[$f]}" ]; then
    echo "fastpath.sh: $f's hit path grew from ${max[$f]} to $n instructions" >&2
    status=1
  fi
done
exit $status
