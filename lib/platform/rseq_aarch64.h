// Layer: platform (aarch64). The per-CPU cache critical sections of rseq_x86_64.h, for arm64,
// with the same region and header layout and the same contract (see that file's header),
// except that the header is read with one 8-byte load: arm64 may reorder two loads, so the
// limits-then-current order that x86 relies on would not hold here.
// This machine cannot run it: CI compiles it with Debian's gcc-aarch64-linux-gnu to keep it
// building, and it has been reviewed against the kernel's rseq selftests, not executed.
// Abort handlers are preceded by RSEQ_SIG for arm64 (0xd428bc00, "brk #0x45e0"); like the
// x86-64 ones they count the restart in class 0's hits field (if the region is in use: class
// 0's current is 1) and start again at 0.
#ifndef SMP_RSEQ_AARCH64_H
#define SMP_RSEQ_AARCH64_H

#include "config.h"
#include "rseq.h"

// rseq->rseq_cs = &descriptor; at 1: r = region of this CPU's cache.
#define SMP_RSEQ_ENTER                                                                         \
  "mrs %[tp], tpidr_el0\n\t"                                                                   \
  "0:\n\t"                                                                                     \
  "adrp %[r], 3b\n\t"                                                                          \
  "add %[r], %[r], :lo12:3b\n\t"                                                               \
  "str %[r], [%[tp], %[cs_off]]\n\t"                                                           \
  "1:\n\t"                                                                                     \
  "ldrsw %[r], [%[tp], %[idx_off]]\n\t"                          /* idx = mm_cid or cpu_id */  \
  "add %[r], %[base], %[r], lsl #" SMP_RSEQ_STR(SMP_CPUCACHE_SHIFT) "\n\t"

#define SMP_RSEQ_ABORT                                                                         \
  "2:\n\t"                                                                                     \
  ".pushsection __rseq_failure, \"ax\"\n\t"                                                    \
  ".inst 0xd428bc00\n\t"                                                                       \
  "4:\n\t"                                                                                     \
  "ldrsw %[r], [%[tp], %[idx_off]]\n\t"                                                        \
  "add %[r], %[base], %[r], lsl #" SMP_RSEQ_STR(SMP_CPUCACHE_SHIFT) "\n\t"                    \
  "ldrh %w[c], [%[r]]\n\t"                  /* region in use? (class 0's current is 1) */      \
  "cbz %w[c], 7f\n\t"                                                                          \
  "ldr %[c], [%[r], #8]\n\t"                                                                   \
  "add %[c], %[c], #1\n\t"                                                                     \
  "str %[c], [%[r], #8]\n\t"                                                                   \
  "7:\n\t"                                                                                     \
  "b 0b\n\t"                                                                                   \
  ".popsection\n\t"

#define SMP_RSEQ_INPUTS                                                                        \
  [cs_off] "r"(smp_rseq_cs_offset), [idx_off] "r"(smp_rseq_index_offset), [base] "r"(base),    \
      [hdr] "r"(hdr)

// hits++ for the class header at r + hdr (uses h and t as scratch).
#define SMP_RSEQ_HIT                                                                           \
  "add %[t], %[r], %[hdr]\n\t"                                                                 \
  "ldr %[h], [%[t], #8]\n\t"                                                                   \
  "add %[h], %[h], #1\n\t"                                                                     \
  "str %[h], [%[t], #8]\n\t"

SMP_INLINE void *smp_rseq_pop(char *base, size_t hdr) {
  void *p;
  uint64_t tp, r, h, c, t;
  asm goto(SMP_RSEQ_DESCRIPTOR SMP_RSEQ_ENTER
           "ldr %[h], [%[r], %[hdr]]\n\t"      // one load: a consistent header
           "and %[c], %[h], #0xffff\n\t"       // c = current
           "lsr %[h], %[h], #48\n\t"
           "eor %[h], %[h], #0xffff\n\t"       // b = begin (stored inverted)
           "cmp %[c], %[h]\n\t"
           "b.ls %l[miss]\n\t"                 // if (c <= b) miss
           "sub %[c], %[c], #1\n\t"
           "ldr %[p], [%[r], %[c], lsl #3]\n\t" // p = slot[c - 1]
           SMP_RSEQ_HIT
           "strh %w[c], [%[r], %[hdr]]\n\t"    // commit: current = c - 1
           SMP_RSEQ_ABORT
           : [p] "=&r"(p), [tp] "=&r"(tp), [r] "=&r"(r), [h] "=&r"(h), [c] "=&r"(c), [t] "=&r"(t)
           : SMP_RSEQ_INPUTS
           : "memory", "cc"
           : miss);
  SMP_RSEQ_AFTER_GOTO();
  SMP_ASSUME(p != NULL); // slots hold blocks
  return p;
miss:
  SMP_RSEQ_AFTER_GOTO();
  return NULL;
}

SMP_INLINE bool smp_rseq_push(char *base, size_t hdr, void *p) {
  uint64_t tp, r, h, c, t;
  asm goto(SMP_RSEQ_DESCRIPTOR SMP_RSEQ_ENTER
           "ldr %[h], [%[r], %[hdr]]\n\t"
           "and %[c], %[h], #0xffff\n\t"       // c = current
           "ubfx %[h], %[h], #32, #16\n\t"     // e = end
           "cmp %[c], %[h]\n\t"
           "b.hs %l[miss]\n\t"                 // if (c >= e) miss
           "str %[p], [%[r], %[c], lsl #3]\n\t" // slot[c] = p
           SMP_RSEQ_HIT
           "add %[c], %[c], #1\n\t"
           "strh %w[c], [%[r], %[hdr]]\n\t"    // commit: current = c + 1
           SMP_RSEQ_ABORT
           : [tp] "=&r"(tp), [r] "=&r"(r), [h] "=&r"(h), [c] "=&r"(c), [t] "=&r"(t)
           : SMP_RSEQ_INPUTS, [p] "r"(p)
           : "memory", "cc"
           : miss);
  return true;
miss:
  return false;
}

SMP_INLINE unsigned smp_rseq_push_batch(char *base, size_t hdr, void *const *src, unsigned n) {
  uint64_t tp, r, h, c, k, i, t;
  asm goto(SMP_RSEQ_DESCRIPTOR SMP_RSEQ_ENTER
           "ldr %[h], [%[r], %[hdr]]\n\t"
           "and %[c], %[h], #0xffff\n\t"       // c = current
           "ubfx %[h], %[h], #32, #16\n\t"     // e = end
           "cmp %[c], %[h]\n\t"
           "b.hs %l[miss]\n\t"
           "sub %[h], %[h], %[c]\n\t"          // room = e - c
           "cmp %[h], %[n]\n\t"
           "csel %[k], %[h], %[n], lo\n\t"     // k = min(room, n)
           "mov %[i], #0\n\t"
           "5:\n\t"
           "ldr %[t], [%[src], %[i], lsl #3]\n\t"
           "add %[h], %[c], %[i]\n\t"
           "str %[t], [%[r], %[h], lsl #3]\n\t" // slot[c + i] = src[i]
           "add %[i], %[i], #1\n\t"
           "cmp %[i], %[k]\n\t"
           "b.lo 5b\n\t"
           "add %[c], %[c], %[k]\n\t"
           "strh %w[c], [%[r], %[hdr]]\n\t"    // commit: current = c + k
           SMP_RSEQ_ABORT
           : [tp] "=&r"(tp), [r] "=&r"(r), [h] "=&r"(h), [c] "=&r"(c), [k] "=&r"(k),
             [i] "=&r"(i), [t] "=&r"(t)
           : SMP_RSEQ_INPUTS, [src] "r"(src), [n] "r"((uint64_t)n)
           : "memory", "cc"
           : miss);
  SMP_RSEQ_AFTER_GOTO();
  return (unsigned)k;
miss:
  SMP_RSEQ_AFTER_GOTO();
  return 0;
}

SMP_INLINE unsigned smp_rseq_pop_batch(char *base, size_t hdr, void **dst, unsigned n) {
  uint64_t tp, r, h, c, k, i, t;
  asm goto(SMP_RSEQ_DESCRIPTOR SMP_RSEQ_ENTER
           "ldr %[h], [%[r], %[hdr]]\n\t"
           "and %[c], %[h], #0xffff\n\t"       // c = current
           "lsr %[h], %[h], #48\n\t"
           "eor %[h], %[h], #0xffff\n\t"       // b = begin (stored inverted)
           "cmp %[c], %[h]\n\t"
           "b.ls %l[miss]\n\t"
           "sub %[h], %[c], %[h]\n\t"          // have = c - b
           "cmp %[h], %[n]\n\t"
           "csel %[k], %[h], %[n], lo\n\t"     // k = min(have, n)
           "sub %[c], %[c], %[k]\n\t"          // c -= k
           "mov %[i], #0\n\t"
           "5:\n\t"
           "add %[h], %[c], %[i]\n\t"
           "ldr %[t], [%[r], %[h], lsl #3]\n\t"
           "str %[t], [%[dst], %[i], lsl #3]\n\t" // dst[i] = slot[c + i]
           "add %[i], %[i], #1\n\t"
           "cmp %[i], %[k]\n\t"
           "b.lo 5b\n\t"
           "strh %w[c], [%[r], %[hdr]]\n\t"    // commit: current = c
           SMP_RSEQ_ABORT
           : [tp] "=&r"(tp), [r] "=&r"(r), [h] "=&r"(h), [c] "=&r"(c), [k] "=&r"(k),
             [i] "=&r"(i), [t] "=&r"(t)
           : SMP_RSEQ_INPUTS, [dst] "r"(dst), [n] "r"((uint64_t)n)
           : "memory", "cc"
           : miss);
  SMP_RSEQ_AFTER_GOTO();
  return (unsigned)k;
miss:
  SMP_RSEQ_AFTER_GOTO();
  return 0;
}

SMP_INLINE bool smp_rseq_set_end(char *base, size_t hdr, int expect, unsigned new_end) {
  uint64_t tp, r, c, t;
  asm goto(SMP_RSEQ_DESCRIPTOR
           "mrs %[tp], tpidr_el0\n\t"
           "0:\n\t"
           "adrp %[r], 3b\n\t"
           "add %[r], %[r], :lo12:3b\n\t"
           "str %[r], [%[tp], %[cs_off]]\n\t"
           "1:\n\t"
           "ldrsw %[r], [%[tp], %[idx_off]]\n\t"
           "cmp %w[r], %w[expect]\n\t"
           "b.ne %l[miss]\n\t"                 // moved to another cache
           "add %[r], %[base], %[r], lsl #" SMP_RSEQ_STR(SMP_CPUCACHE_SHIFT) "\n\t"
           "ldrh %w[c], [%[r], %[hdr]]\n\t"    // c = current
           "cmp %w[c], %w[end]\n\t"
           "b.hi %l[miss]\n\t"                 // blocks above new_end
           "add %[t], %[r], %[hdr]\n\t"
           "strh %w[end], [%[t], #4]\n\t"      // commit: end = new_end
           SMP_RSEQ_ABORT
           : [tp] "=&r"(tp), [r] "=&r"(r), [c] "=&r"(c), [t] "=&r"(t)
           : SMP_RSEQ_INPUTS, [expect] "r"(expect), [end] "r"(new_end)
           : "memory", "cc"
           : miss);
  return true;
miss:
  return false;
}

#endif
