// Layer: platform (x86-64). The per-CPU cache critical sections, as rseq sequences.
// Each sequence: publish its descriptor in rseq_cs, read the cache index (mm_cid or cpu_id),
// locate the region (base + index << SMP_CPUCACHE_SHIFT), test the class header, move
// pointers, and commit with its last instruction, a single 16-bit store of the header field.
// If the thread is preempted, migrated or signalled before the commit, the kernel clears
// rseq_cs and moves it to the abort handler (after the RSEQ_SIG signature, in __rseq_failure),
// which counts the restart in the region it now runs on if that region is in use (class 0's
// current is 1 there; class 0 holds no blocks, its hits field takes the count; the increment
// is outside any critical section, so a count may be lost or land in another cache:
// statistics only) and jumps back to 0, before the descriptor is published again. Restarting
// inside the assembly keeps the fast path free of calls, so it needs no callee-saved registers.
// Descriptors live in __rseq_cs, pointers to them in __rseq_cs_ptr_array.
// Header of a class (16 bytes at region + hdr): u16 current @0, u16 end @4, u16 ~begin @6
// (begin stored inverted), u64 hits @8 (counted before the commit: a restart may count one
// operation twice). Slot i is at region + 8*i. Pop misses when current <= begin, push when
// current >= end, so limits {end 0, ~begin 0} (begin 0xffff) make every operation miss: the
// all-zero header of a fresh region is frozen (see cpucache.c).
// Loads: the limits first, then current, each with a load of its own width. The writers keep
// one invariant: outside a sequence on the header's own index, current is written only in the
// same 64-bit store that replaces frozen limits (region init, unfreeze); every other writer
// changes the limits alone (freeze, then a membarrier fence; the restore after a failed fence
// or a double-free search, to the exact limits before the freeze; set_end, in a sequence on
// the same index). x86 keeps loads in order and a 64-bit store is seen whole, so a sequence
// that sees the limits of a whole-header store also sees its current, and one that sees older
// limits sees frozen ones and misses. bench/fastpath.sh (a ctest) fails if malloc or free loses
// that order. (One 8-byte load of the header right after the previous call's 16-bit commit
// cannot be forwarded from the store buffer and waits for the store to retire: about 10 cycles
// per call.)
#ifndef SMP_RSEQ_X86_64_H
#define SMP_RSEQ_X86_64_H

#include "config.h"
#include "rseq.h"

// Enter: rseq_cs = &descriptor; then at 1: rax = region of this CPU's cache.
#define SMP_RSEQ_ENTER                                                                         \
  "0:\n\t"                                                                                     \
  "lea 3b(%%rip), %%rax\n\t"                                  /* rseq->rseq_cs = &desc */      \
  "mov %%rax, %%fs:(%[cs_off])\n\t"                                                            \
  "1:\n\t"                                                                                     \
  "movslq %%fs:(%[idx_off]), %%rax\n\t"                       /* idx = mm_cid or cpu_id */     \
  "shl $" SMP_RSEQ_STR(SMP_CPUCACHE_SHIFT) ", %%rax\n\t"                                      \
  "add %[base], %%rax\n\t"                                    /* region = base + idx<<S */

// Abort handler: signature (ud1 with RSEQ_SIG as displacement); restarts++ in the region of
// the cache the thread runs on now, if that region is in use (class 0's current is 1 there;
// others are read-only zeros); start again at 0.
#define SMP_RSEQ_ABORT                                                                         \
  "2:\n\t"                                                                                     \
  ".pushsection __rseq_failure, \"ax\"\n\t"                                                    \
  ".byte 0x0f, 0xb9, 0x3d\n\t"                                                                 \
  ".long 0x53053053\n\t"                                                                       \
  "4:\n\t"                                                                                     \
  "movslq %%fs:(%[idx_off]), %%rax\n\t"                                                        \
  "shl $" SMP_RSEQ_STR(SMP_CPUCACHE_SHIFT) ", %%rax\n\t"                                      \
  "add %[base], %%rax\n\t"                                                                     \
  "cmpw $0, (%%rax)\n\t"                                                                       \
  "je 7f\n\t"                                                                                  \
  "incq 8(%%rax)\n\t"                                                                          \
  "7:\n\t"                                                                                     \
  "jmp 0b\n\t"                                                                                 \
  ".popsection\n\t"

#define SMP_RSEQ_COUNT_HIT "incq 8(%%rax,%[hdr])\n\t" /* hits++ */

#define SMP_RSEQ_INPUTS                                                                        \
  [cs_off] "r"(smp_rseq_cs_offset), [idx_off] "r"(smp_rseq_index_offset), [base] "r"(base),    \
      [hdr] "r"(hdr)

// Pop one block of the class whose header is at offset hdr; NULL on a miss.
SMP_INLINE void *smp_rseq_pop(char *base, size_t hdr) {
  void *p;
  asm goto(SMP_RSEQ_DESCRIPTOR SMP_RSEQ_ENTER
           "movzwl 6(%%rax,%[hdr]), %%edx\n\t" // nb = ~begin (limits first)
           "movzwl (%%rax,%[hdr]), %%ecx\n\t"  // c = current
           "add %%ecx, %%edx\n\t"
           "cmp $0xffff, %%edx\n\t"
           "jbe %l[miss]\n\t"                  // if (c + ~begin <= 0xffff: c <= b) miss
           "mov -8(%%rax,%%rcx,8), %[p]\n\t"   // p = slot[c - 1]
           SMP_RSEQ_COUNT_HIT
           "dec %%ecx\n\t"
           "mov %%cx, (%%rax,%[hdr])\n\t"      // commit: current = c - 1
           SMP_RSEQ_ABORT
           : [p] "=&r"(p)
           : SMP_RSEQ_INPUTS
           : "rax", "rcx", "rdx", "memory", "cc"
           : miss);
  SMP_RSEQ_AFTER_GOTO();
  SMP_ASSUME(p != NULL); // slots hold blocks
  return p;
miss:
  SMP_RSEQ_AFTER_GOTO();
  return NULL;
}

// Push p onto the class whose header is at hdr; false on a miss (full or frozen).
SMP_INLINE bool smp_rseq_push(char *base, size_t hdr, void *p) {
  asm goto(SMP_RSEQ_DESCRIPTOR SMP_RSEQ_ENTER
           "movzwl 4(%%rax,%[hdr]), %%edx\n\t" // e = end (limits first)
           "movzwl (%%rax,%[hdr]), %%ecx\n\t"  // c = current
           "cmp %%edx, %%ecx\n\t"
           "jae %l[miss]\n\t"                  // if (c >= e) miss
           "mov %[p], (%%rax,%%rcx,8)\n\t"     // slot[c] = p
           SMP_RSEQ_COUNT_HIT
           "inc %%ecx\n\t"
           "mov %%cx, (%%rax,%[hdr])\n\t"      // commit: current = c + 1
           SMP_RSEQ_ABORT
           :
           : SMP_RSEQ_INPUTS, [p] "r"(p)
           : "rax", "rcx", "rdx", "memory", "cc"
           : miss);
  return true;
miss:
  return false;
}

// Push up to n (>= 1) blocks from src; returns how many went in (0: full or frozen).
SMP_INLINE unsigned smp_rseq_push_batch(char *base, size_t hdr, void *const *src, unsigned n) {
  uint64_t k, i, t;
  asm goto(SMP_RSEQ_DESCRIPTOR SMP_RSEQ_ENTER
           "movzwl 4(%%rax,%[hdr]), %%edx\n\t" // e = end (limits first)
           "movzwl (%%rax,%[hdr]), %%ecx\n\t"  // c = current
           "cmp %%edx, %%ecx\n\t"
           "jae %l[miss]\n\t"                  // if (c >= e) miss
           "sub %%ecx, %%edx\n\t"              // room = e - c
           "mov %q[n], %[k]\n\t"
           "cmp %q[k], %%rdx\n\t"
           "cmovb %%rdx, %[k]\n\t"             // k = min(n, room)
           "xor %k[i], %k[i]\n\t"
           "5:\n\t"                            // for (i = 0; i < k; i++)
           "mov (%[src],%[i],8), %[t]\n\t"
           "lea (%%rcx,%[i]), %%rdx\n\t"
           "mov %[t], (%%rax,%%rdx,8)\n\t"     //   slot[c + i] = src[i]
           "inc %[i]\n\t"
           "cmp %[k], %[i]\n\t"
           "jb 5b\n\t"
           "add %k[k], %%ecx\n\t"
           "mov %%cx, (%%rax,%[hdr])\n\t"      // commit: current = c + k
           SMP_RSEQ_ABORT
           : [k] "=&r"(k), [i] "=&r"(i), [t] "=&r"(t)
           : SMP_RSEQ_INPUTS, [src] "r"(src), [n] "r"((uint64_t)n)
           : "rax", "rcx", "rdx", "memory", "cc"
           : miss);
  SMP_RSEQ_AFTER_GOTO();
  return (unsigned)k;
miss:
  SMP_RSEQ_AFTER_GOTO();
  return 0;
}

// Pop up to n (>= 1) blocks into dst; returns how many (0: empty or frozen).
SMP_INLINE unsigned smp_rseq_pop_batch(char *base, size_t hdr, void **dst, unsigned n) {
  uint64_t k, i, t;
  asm goto(SMP_RSEQ_DESCRIPTOR SMP_RSEQ_ENTER
           "movzwl 6(%%rax,%[hdr]), %%edx\n\t" // nb = ~begin (limits first)
           "movzwl (%%rax,%[hdr]), %%ecx\n\t"  // c = current
           "add %%ecx, %%edx\n\t"
           "sub $0xffff, %%edx\n\t"            // have = c + ~begin - 0xffff = c - b
           "jbe %l[miss]\n\t"                  // if (c <= b) miss
           "mov %q[n], %[k]\n\t"
           "cmp %q[k], %%rdx\n\t"
           "cmovb %%rdx, %[k]\n\t"             // k = min(n, have)
           "sub %k[k], %%ecx\n\t"              // c -= k
           "xor %k[i], %k[i]\n\t"
           "5:\n\t"                            // for (i = 0; i < k; i++)
           "lea (%%rcx,%[i]), %%rdx\n\t"
           "mov (%%rax,%%rdx,8), %[t]\n\t"
           "mov %[t], (%[dst],%[i],8)\n\t"     //   dst[i] = slot[c + i]
           "inc %[i]\n\t"
           "cmp %[k], %[i]\n\t"
           "jb 5b\n\t"
           "mov %%cx, (%%rax,%[hdr])\n\t"      // commit: current = c
           SMP_RSEQ_ABORT
           : [k] "=&r"(k), [i] "=&r"(i), [t] "=&r"(t)
           : SMP_RSEQ_INPUTS, [dst] "r"(dst), [n] "r"((uint64_t)n)
           : "rax", "rcx", "rdx", "memory", "cc"
           : miss);
  SMP_RSEQ_AFTER_GOTO();
  return (unsigned)k;
miss:
  SMP_RSEQ_AFTER_GOTO();
  return 0;
}

// Set the class's end to new_end if this thread still runs on cache index expect and the
// class holds no block at or above new_end. Returns false otherwise.
SMP_INLINE bool smp_rseq_set_end(char *base, size_t hdr, int expect, unsigned new_end) {
  asm goto(SMP_RSEQ_DESCRIPTOR
           "0:\n\t"
           "lea 3b(%%rip), %%rax\n\t"
           "mov %%rax, %%fs:(%[cs_off])\n\t"
           "1:\n\t"
           "movslq %%fs:(%[idx_off]), %%rax\n\t"
           "cmp %[expect], %%eax\n\t"
           "jne %l[miss]\n\t"                  // moved to another cache: caller retries
           "shl $" SMP_RSEQ_STR(SMP_CPUCACHE_SHIFT) ", %%rax\n\t"
           "add %[base], %%rax\n\t"
           "movzwl (%%rax,%[hdr]), %%ecx\n\t"  // c = current
           "cmp %[end], %%ecx\n\t"
           "ja %l[miss]\n\t"                   // blocks above new_end: caller pops first
           "mov %w[end], 4(%%rax,%[hdr])\n\t"  // commit: end = new_end
           SMP_RSEQ_ABORT
           :
           : SMP_RSEQ_INPUTS, [expect] "r"(expect), [end] "r"(new_end)
           : "rax", "rcx", "memory", "cc"
           : miss);
  return true;
miss:
  return false;
}

#endif
