// Layer: caches. The front end of the heaps other than the default one (smp_heap_create): per
// thread, per heap (up to SMP_HCACHE_WAYS heaps at once), per size class, a small stack of free
// blocks. A thread that works with more heaps at once goes to their central lists directly for
// the others, and changes a way (flushing its cache) at most once per SMP_HCACHE_KEEP / WAYS
// lookups that missed. The default heap keeps its own front end (frontend.h), and its hit paths never look
// here: blocks of other heaps carry page class 0, so free's fast path sends them to the slow
// path, which pushes them into the calling thread's cache of their heap.
// Ownership: a cache belongs to its thread (the only one that pushes and pops) and sits on its
// heap's list (set->lock). Counts are stored release after the slots are written, and a pop
// stores the smaller count before the block is handed on, so a reader holding set->lock that
// loads a count with acquire sees slots below it as the owner left them (the double-free
// confirmation, statistics). Heap destruction detaches every cache under set->lock: it reads
// the cache's list link, then stores its set NULL with release and never touches it again; the
// owner loads set with acquire before it reuses a detached cache (its link writes come after).
// The owner's lookups only compare set with the heap they look for. A thread's exit flushes its
// caches under their sets' locks, so a flush never runs after the destruction detached it.
// Lock order: set->lock -> central lists -> page heap.
#ifndef SMP_HCACHE_H
#define SMP_HCACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "asan.h"
#include "atomic.h"
#include "central.h"
#include "compiler.h"
#include "config.h"
#include "os.h"
#include "sizeclass.h"
#include "stats.h"

#define SMP_HCACHE_WAYS 4
#define SMP_HCACHE_CAP 16
#define SMP_HCACHE_KEEP 64 // a way filled fewer of its thread's misses ago is not evicted

typedef struct smp_hcache_set smp_hcache_set_t;
typedef struct smp_hcache smp_hcache_t;
struct smp_hcache {
  _Atomic(smp_hcache_set_t *) set;           // set->lock (owner reads relaxed); NULL: detached
  smp_hcache_t *next, *prev;                 // set->lock: the heap's caches
  _Atomic uint32_t count[SMP_CLASS_COUNT];   // owner: release stores
  _Atomic(void *) slots[SMP_CLASS_COUNT][SMP_HCACHE_CAP]; // owner: relaxed
};

// One heap's caches.
struct smp_hcache_set {
  smp_lock_t lock;
  smp_hcache_t *list;                          // lock
  smp_central_t *central;                      // set at init
  smp_counter_t took[SMP_CLASS_COUNT];         // blocks from the central lists (any thread)
  smp_counter_t gave[SMP_CLASS_COUNT];         // blocks back to them (any thread)
};

extern SMP_HIDDEN __thread smp_hcache_t *smp_hcache_ways[SMP_HCACHE_WAYS] SMP_TLS_IE;

// The calling thread's cache of set, or NULL.
SMP_INLINE smp_hcache_t *smp_hcache_find(const smp_hcache_set_t *set) {
  for (unsigned i = 0; i < SMP_HCACHE_WAYS; i++) {
    smp_hcache_t *hc = smp_hcache_ways[i];
    if (hc && smp_load_relaxed(&hc->set) == set) return hc;
  }
  return NULL;
}

// Fast path: a block of class cls or NULL on a miss.
SMP_INLINE void *smp_hcache_alloc_fast(const smp_hcache_set_t *set, unsigned cls) {
  smp_hcache_t *hc = smp_hcache_find(set);
  if (SMP_UNLIKELY(hc == NULL)) return NULL;
  uint32_t c = smp_load_relaxed(&hc->count[cls]);
  if (SMP_UNLIKELY(c == 0)) return NULL;
  smp_store_release(&hc->count[cls], c - 1);
  void *p = smp_load_relaxed(&hc->slots[cls][c - 1]);
  if (SMP_ASAN) smp_asan_unpoison(p, smp_class_info[cls].size); // asan.h
  return p;
}

// Fast path: keep p (of class cls); false on a miss.
SMP_INLINE bool smp_hcache_free_fast(const smp_hcache_set_t *set, void *p, unsigned cls) {
  smp_hcache_t *hc = smp_hcache_find(set);
  if (SMP_UNLIKELY(hc == NULL)) return false;
  uint32_t c = smp_load_relaxed(&hc->count[cls]);
  if (SMP_UNLIKELY(c == SMP_HCACHE_CAP)) return false;
  smp_store_relaxed(&hc->slots[cls][c], p);
  smp_store_release(&hc->count[cls], c + 1);
  return true;
}

// Set up set over central; init_lock false for a set whose lock must stay as it is (reuse).
void smp_hcache_init_set(smp_hcache_set_t *set, smp_central_t *central, bool init_lock);
// Refill the calling thread's cache of set (creating it unless nowait) and return a block, or
// NULL (out of memory; with nowait also a busy lock). nowait: no lock wait, no system call.
void *smp_hcache_alloc_slow(smp_hcache_set_t *set, unsigned cls, bool nowait);
// Keep p in the calling thread's cache of set (flushing half of a full class), or flush it.
void smp_hcache_free_slow(smp_hcache_set_t *set, void *p, unsigned cls);
// True if p (of class cls) is in some thread's cache of set: then it is free. Takes set->lock;
// a false answer proves nothing.
bool smp_hcache_holds(smp_hcache_set_t *set, unsigned cls, const void *p);
// Call fn for every block in the caches of set (set->lock held: fn must not take it).
void smp_hcache_each_cached(smp_hcache_set_t *set, void (*fn)(void *block, void *arg), void *arg);
// Blocks of each class in the caches of set, into blocks[] (statistics), read under set->lock
// taken as g says (os.h): given up, all 0.
void smp_hcache_cached(smp_hcache_set_t *set, uint64_t blocks[SMP_CLASS_COUNT], smp_gather_t *g);
// Flush the calling thread's cache of set to the central lists (trim).
void smp_hcache_flush_self(smp_hcache_set_t *set);
// Heap destruction: detach every cache of set; their blocks are forgotten, not flushed.
void smp_hcache_detach_all(smp_hcache_set_t *set);
// Thread exit (pthread key destructor; value unused): flush and retire the thread's caches.
void smp_hcache_thread_exit(void *unused);
// Fork: the spare list's lock (a leaf), taken last and released first.
void smp_hcache_lock_fork(void);
void smp_hcache_unlock_fork(void);
// Set once at start-up: the pthread key whose destructor is smp_hcache_thread_exit.
void smp_hcache_set_exit_key(unsigned key);

#endif
