// Layer: platform. Restartable sequences: which rseq area this thread uses, how caches are
// indexed, and the fence that stops critical sections on other CPUs. The critical sections
// themselves are in rseq_x86_64.h / rseq_aarch64.h, the only inline assembly of the project;
// this header picks the one for the target, so the caches include only rseq.h.
// The area: glibc (2.35+) registers one per thread at thread pointer + __rseq_offset; we use
// it when __rseq_size > 0. Where glibc did not register (older glibc, or not at all) and the
// user did not disable rseq with GLIBC_TUNABLES=glibc.pthread.rseq=0, we register our own
// TLS area per thread with the same signature (RSEQ_SIG). We never write the kernel-owned
// fields (cpu_id_start, cpu_id, node_id, mm_cid); we write only rseq_cs.
// Index: mm_cid (Linux 6.3+, AT_RSEQ_FEATURE_SIZE >= 28), a dense id below the number of
// threads running at once and the CPUs allowed, else cpu_id. An unregistered or failed area
// reads -1 or -2 there; the cache layer maps those to an always-missing region, so the fast
// path needs no registration test.
#ifndef SMP_RSEQ_H
#define SMP_RSEQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

// The kernel's struct rseq (include/uapi/linux/rseq.h), as far as we use it.
typedef struct smp_rseq_area {
  uint32_t cpu_id_start; // kernel-owned
  uint32_t cpu_id;       // kernel-owned; -1 before registration, -2 if it failed
  uint64_t rseq_cs;      // ours: the active critical-section descriptor, or 0
  uint32_t flags;        // ours, always 0
  uint32_t node_id;      // kernel-owned (6.3+)
  uint32_t mm_cid;       // kernel-owned (6.3+)
  uint32_t pad;
} __attribute__((aligned(32))) smp_rseq_area_t;

_Static_assert(offsetof(smp_rseq_area_t, cpu_id) == 4, "rseq ABI");
_Static_assert(offsetof(smp_rseq_area_t, rseq_cs) == 8, "rseq ABI");
_Static_assert(offsetof(smp_rseq_area_t, mm_cid) == 24, "rseq ABI");
_Static_assert(sizeof(smp_rseq_area_t) == 32, "rseq ABI: original registration size");

// Thread-pointer-relative offsets, fixed at start-up (the same for every thread).
extern SMP_HIDDEN ptrdiff_t smp_rseq_cs_offset;    // of the rseq_cs field
extern SMP_HIDDEN ptrdiff_t smp_rseq_index_offset; // of mm_cid or cpu_id

typedef struct smp_rseq_info {
  bool usable;        // per-CPU caches can run
  bool mm_cid;        // indexed by mm_cid (else cpu_id)
  unsigned indexes;   // cache indexes to reserve: above every possible CPU number (and mm_cid)
  const char *reason; // why not usable
} smp_rseq_info_t;

// The descriptor of a critical section, the same on every architecture: label 3 in __rseq_cs
// (version 0, flags 0, start 1, length 2 - 1, abort 4), and a pointer to it in
// __rseq_cs_ptr_array. Labels 0-4 are the ones the sequences in rseq_<arch>.h define.
#define SMP_RSEQ_STR1(x) #x
#define SMP_RSEQ_STR(x) SMP_RSEQ_STR1(x)
#define SMP_RSEQ_DESCRIPTOR                                                                    \
  ".pushsection __rseq_cs, \"aw\"\n\t"                                                         \
  ".balign 32\n\t"                                                                             \
  "3:\n\t"                                                                                     \
  ".long 0, 0\n\t"                                                                             \
  ".quad 1f, (2f - 1f), 4f\n\t"                                                                \
  ".popsection\n\t"                                                                            \
  ".pushsection __rseq_cs_ptr_array, \"aw\"\n\t"                                               \
  ".balign 8\n\t"                                                                              \
  ".quad 3b\n\t"                                                                               \
  ".popsection\n\t"

// An asm goto with outputs is followed, on its fall-through path and at its label, by this
// empty asm (as librseq does for the asm goto bugs of gcc and clang). Without it gcc 12.2 built
// smp_malloc wrongly at -O1 with AddressSanitizer (the fuzz build): the miss label's NULL was
// set before the sequence, whose output then overwrote it, so a miss returned a stale register.
#define SMP_RSEQ_AFTER_GOTO() asm volatile("" ::: "memory")

// Decide once, at start-up; registers the calling thread if we own the areas.
void smp_rseq_init(smp_rseq_info_t *out);
// Make sure the calling thread's area is registered (own-area mode); false if it cannot be.
bool smp_rseq_register_thread(void);
// Abort or complete every critical section in flight on every CPU running our threads.
bool smp_rseq_fence(void);

// The cache index the calling thread runs on now (mm_cid or cpu_id; -1/-2 if its area is not
// registered): a read of the kernel-owned field at thread pointer + smp_rseq_index_offset.
// Outside a critical section it is a hint: the thread may move as soon as it is read.
SMP_INLINE int smp_rseq_current_index(void) {
  return *(volatile int32_t *)((char *)__builtin_thread_pointer() + smp_rseq_index_offset);
}

// The low byte of the same field, read as cheaply as the target allows (one instruction on
// x86-64): a hint for choices outside the critical sections, such as owner tags (pagemap.h).
SMP_INLINE unsigned smp_rseq_current_index_hint(void) {
#if defined(__x86_64__)
  unsigned v;
  __asm__ volatile("movzbl %%fs:(%1), %0" : "=r"(v) : "r"(smp_rseq_index_offset));
  return v;
#else
  return (unsigned)smp_rseq_current_index() & 0xffu;
#endif
}

// The critical sections for the target: smp_rseq_pop, smp_rseq_push, their batch forms and
// smp_rseq_set_end (each architecture's file includes this one for the declarations above).
#if defined(__x86_64__)
#include "rseq_x86_64.h"
#elif defined(__aarch64__)
#include "rseq_aarch64.h"
#endif

#endif
