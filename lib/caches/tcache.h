// Layer: caches. The per-thread front end: per thread, per size class, a bounded stack of
// free block pointers. malloc pops, free pushes; a miss (empty or full) goes to the _slow
// functions, which move a batch to or from the central lists. No lock, no atomic RMW here.
// Lifecycle: a thread's cache pointer starts at a static, empty "boot" cache (every bin
// count 0, capacity 0) so the fast path needs no NULL test; the first miss creates the real
// cache. At thread exit the cache is flushed and the pointer set to the "dead" cache, which
// also misses on everything, so frees from later destructors go straight to the central lists.
// Counts and slots are written by the owning thread only and read by other threads: statistics,
// the fork child's adoption, and the double-free confirmation (smp_tcache_holds). Every count
// store is a release and every slot access an atomic one (on x86-64 and aarch64 the same plain
// moves, a store-release for the count on aarch64), so a reader that loads count with acquire
// sees slots [0, count) as the owner wrote them before that count. The cache registry (all
// live caches) is guarded by its own lock.
// Fork: the child adopts and flushes the caches of threads that do not exist in it. This is
// sound because at every instant a bin's slots [0, count) hold distinct free blocks that are
// nowhere else (see tcache.c for the order of stores that keeps this).
#ifndef SMP_TCACHE_H
#define SMP_TCACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "atomic.h"
#include "compiler.h"
#include "config.h"
#include "os.h"
#include "stats.h"

typedef struct smp_cache_bin {
  _Atomic uint32_t count;  // owner: blocks in slots (release store; others load acquire)
  uint32_t cap;            // owner: capacity of slots
  _Atomic(void *) *slots;  // owner: stack of free blocks, slots[count-1] is the top (relaxed)
} smp_cache_bin_t;

typedef struct smp_tcache smp_tcache_t;
struct smp_tcache {
  smp_cache_bin_t bins[SMP_CLASS_COUNT];
  smp_counter_t took[SMP_CLASS_COUNT]; // owner: blocks received from the central lists
  smp_counter_t gave[SMP_CLASS_COUNT]; // owner: blocks returned to the central lists
  smp_tcache_t *next, *prev;           // registry lock
  uint32_t kind;                       // enum below; set at creation
};

enum { SMP_TCACHE_BOOT, SMP_TCACHE_LIVE, SMP_TCACHE_DEAD };

extern SMP_HIDDEN __thread smp_tcache_t *smp_tcache_self SMP_TLS_IE;

// Fast path: a block of class cls or NULL on a miss.
SMP_INLINE void *smp_tcache_alloc_fast(unsigned cls) {
  smp_cache_bin_t *b = &smp_tcache_self->bins[cls];
  uint32_t c = smp_load_relaxed(&b->count);
  if (SMP_UNLIKELY(c == 0)) return NULL;
  smp_store_release(&b->count, c - 1);
  void *p = smp_load_relaxed(&b->slots[c - 1]);
  SMP_ASSUME(p != NULL);
  return p;
}

// Fast path: keep p (of class cls); false on a miss (bin full).
SMP_INLINE bool smp_tcache_free_fast(void *p, unsigned cls) {
  smp_cache_bin_t *b = &smp_tcache_self->bins[cls];
  uint32_t c = smp_load_relaxed(&b->count);
  if (SMP_UNLIKELY(c == b->cap)) return false;
  smp_store_relaxed(&b->slots[c], p);
  smp_store_release(&b->count, c + 1);
  return true;
}

// Slow paths: refill the bin and return one block (NULL: out of memory); flush part of the bin
// and keep p.
void *smp_tcache_alloc_slow(unsigned cls);
void smp_tcache_free_slow(void *p, unsigned cls);
// One block straight from the central lists, without waiting for a lock or any system call
// (SMP_NOWAIT after a miss); NULL if a lock is busy or memory would have to be mapped.
void *smp_tcache_alloc_nowait(unsigned cls);

// Thread-exit hook (pthread key destructor): flush and retire the calling thread's cache.
void smp_tcache_thread_exit(void *cache);
// Flush every bin of the calling thread's cache to the central lists (trim).
void smp_tcache_flush_self(void);
// True if block p (of class cls) is in the cache of some live thread: then it is free. Takes
// the registry lock; a false answer proves nothing (p may be in flight between a cache and the
// central lists).
bool smp_tcache_holds(unsigned cls, const void *p);

typedef struct smp_tcache_class_stats {
  uint64_t held;   // blocks taken from the central lists and not returned (caches + users)
  uint64_t cached; // of which sitting in caches
} smp_tcache_class_stats_t;
typedef struct smp_tcache_stats {
  smp_tcache_class_stats_t cls[SMP_CLASS_COUNT];
  uint64_t live, exited; // threads with a cache; caches retired so far
} smp_tcache_stats_t;
// Under the registry lock, taken as g says (os.h): given up, only the retired caches' figures.
void smp_tcache_stats(smp_tcache_stats_t *out, smp_gather_t *g);

// Call fn for every block in the caches of live threads (registry lock held: fn must not take it).
void smp_tcache_each_cached(void (*fn)(void *block, void *arg), void *arg);

void smp_tcache_lock_all(void);
void smp_tcache_unlock_all(void);
// In the child of fork (locks released): flush and retire the caches of other threads.
void smp_tcache_adopt_orphans(void);
// Set once at start-up: the pthread key whose destructor is smp_tcache_thread_exit.
void smp_tcache_set_exit_key(unsigned key);

#endif
