// Layer: caches. The front-end interface the api layer calls: an inline pop/push that returns
// a miss, and noinline refill/flush. Two front ends implement it: per-CPU caches on rseq
// (cpucache) and per-thread caches (tcache, the fallback where rseq is unavailable). Which one
// runs is decided once at start-up (smp_frontend_select) and never changes; until then every
// thread sees the tcache's empty boot cache, whose misses lead to start-up.
#ifndef SMP_FRONTEND_H
#define SMP_FRONTEND_H

#include "asan.h"
#include "cpucache.h"
#include "sizeclass.h"
#include "tcache.h"

// Written once at start-up (release, after everything the per-CPU path reads is set up) and
// read with acquire: a thread already running then sees the offsets it needs.
extern SMP_HIDDEN _Atomic bool smp_frontend_percpu;
SMP_INLINE bool smp_frontend_is_percpu(void) { return smp_load_acquire(&smp_frontend_percpu); }

SMP_INLINE void *smp_frontend_alloc_fast(unsigned cls) {
  void *p = SMP_LIKELY(smp_frontend_is_percpu()) ? smp_cpucache_alloc_fast(cls) : smp_tcache_alloc_fast(cls);
  if (SMP_ASAN && p) smp_asan_unpoison(p, smp_class_info[cls].size); // asan.h
  return p;
}
SMP_INLINE bool smp_frontend_free_fast(void *p, unsigned cls) {
  if (SMP_LIKELY(smp_frontend_is_percpu())) return smp_cpucache_free_fast(p, cls);
  return smp_tcache_free_fast(p, cls);
}
void *smp_frontend_alloc_slow(unsigned cls);
// A block after a miss without waiting for a lock or making a system call (SMP_NOWAIT), or NULL.
void *smp_frontend_alloc_nowait(unsigned cls);
void smp_frontend_free_slow(void *p, unsigned cls);
// Start-up: pick the front end from the option and what the machine allows.
void smp_frontend_select(void);
// True if block p of class cls is in a cache of the running front end (so it is free); false
// proves nothing. For the double-free confirmation (doublefree.h); slow: takes every cache lock.
bool smp_frontend_holds(unsigned cls, const void *p);
// Return cached blocks to the central lists: every CPU cache, or the calling thread's cache;
// then the transfer caches to their spans.
void smp_frontend_flush(void);
// "percpu (rseq, mm_cid)", "percpu (rseq, cpu_id)" or "thread (<reason>)".
const char *smp_frontend_name(void);

#endif
