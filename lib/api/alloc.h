// Layer: api. The inline fast paths of malloc and free, shared by the smp_ API (alloc.c), the
// malloc-family overrides (override.c) and the C++ operators (override_new.cc), so each entry
// point inlines them instead of jumping through another function.
// malloc: size -> class (one table load up to 1 KiB), pop from the front end, clear the free
// mark. free: chunk bit -> page class -> block-boundary test (one multiply) -> free-mark
// test -> set mark -> push.
// Everything else (misses, large blocks, errors, start-up) is in the noinline slow functions.
#ifndef SMP_ALLOC_H
#define SMP_ALLOC_H

#include <stdbool.h>
#include <stddef.h>

#include "compiler.h"

#ifdef __cplusplus
extern "C" {
#endif

// Out-of-line malloc/free with the fast paths inlined, for C++ (which cannot include the C11
// atomics the inline versions use).
void *smp_alloc_malloc(size_t size);
void smp_alloc_free(void *p);

struct smp_heap;
SMP_NOINLINE void *smp_alloc_small_slow(unsigned cls);
SMP_NOINLINE void *smp_alloc_large_slow(size_t size, size_t align, bool zero);
// malloc's request of size bytes past its hit path's limits: smp_alloc_large_slow's, or under
// the profiler alone or in fill mode (harden.h) a small one's route with one test.
SMP_NOINLINE void *smp_alloc_malloc_slow(size_t size);
SMP_NOINLINE void smp_free_slow(void *p, const char *function);
struct smp_chunk;
// For p in chunk c of a heap over the OS other than the default one: its class if p starts a
// block of a small span there and holds no free mark (the complete path confirms or clears a
// suspicion), else 0. (A region never lies over a small span of ours: heap.c.)
unsigned smp_alloc_other_small_class(const struct smp_chunk *c, const void *p);
// Free such a block of class cls: its free mark, then into the calling thread's cache of its heap.
void smp_alloc_other_small_free(struct smp_chunk *c, void *p, unsigned cls);
// Free p as a block of its heap (no typed or hardened pointer: the caller looked for those).
void smp_alloc_free_block(void *p, const char *function);
// Free p, no typed pointer (the caller looked for one): a hardened block's pointer, or a
// block of its heap.
void smp_alloc_free_untyped(void *p, const char *function);
// size bytes aligned to align (a power of two) from heap h, with every round heap_alloc makes
// (handler, errors); hardened when hardening is on, or when sampled (the caller asked prof).
// For the slow paths of malloc.
void *smp_heapapi_alloc(struct smp_heap *h, size_t size, size_t align, bool zero, bool sampled);
void *smp_alloc_calloc(size_t count, size_t size);
void *smp_alloc_realloc(void *p, size_t size, const char *function);
// align must be a power of two; NULL with errno ENOMEM on failure.
void *smp_alloc_aligned(size_t align, size_t size);
size_t smp_alloc_usable(const void *p, const char *function);
void smp_alloc_free_sized(void *p, size_t size, const char *function);
int smp_alloc_trim(void);
// Validate p (a live block of ours, else a report) and return its heap, its usable size and
// whether it is a small block.
struct smp_heap *smp_alloc_block_info(const void *p, const char *function, size_t *usable,
                                      bool *small);
// The block of any heap whose bytes hold p (p may lie past its start): its start and size, and
// (small, if not NULL) whether it is a block of a small span; or false. Never reports, never
// reads the block; a block freed meanwhile may still be found.
bool smp_alloc_block_around(const void *p, char **start, size_t *bytes, bool *small);
// The heap of p, or NULL if p is not a block of ours (never reports; for smp_heap_of).
struct smp_heap *smp_alloc_heap_of(const void *p);
// A default-heap request of the malloc family failed for lack of memory: count it, and retry
// while the OOM handler asks (heapapi.c). The block (unmarked), or NULL.
void *smp_heapapi_default_failed(size_t size, size_t align, bool zero);
// Fork: the reserve's lock (after the report's, before the per-CPU caches').
void smp_heapapi_lock_fork(void);
void smp_heapapi_unlock_fork(void);
// debug:1: a call into heap h (not the default one) begins (reports a destroyed heap) and ends.
void smp_heapapi_enter(struct smp_heap *h, const char *function);
void smp_heapapi_leave(struct smp_heap *h);
// smp_heap_realloc (h NULL: p's own heap); function names the caller in reports.
void *smp_alloc_heap_realloc(struct smp_heap *h, void *p, size_t size, unsigned flags,
                             const char *function);

#ifdef __cplusplus
}
#else
#include "asan.h"
#include "frontend.h"
#include "harden.h"
#include "pagemap.h"
#include "sizeclass.h"
#include "span.h"

// malloc hands out block p of usable bytes for size bytes: in AddressSanitizer builds its slack is
// poisoned, unless hardening is on (its fills and canaries own the slack and the freed bytes,
// and its tests read a freed block's pattern on purpose).
SMP_INLINE void smp_alloc_asan_handout(void *p, size_t size, size_t usable) {
  if (SMP_ASAN && !smp_harden_on) smp_asan_handout(p, size, usable);
}

SMP_INLINE void *smp_alloc_class(unsigned cls) {
  void *p = smp_frontend_alloc_fast(cls);
  if (SMP_LIKELY(p != NULL)) {
    smp_block_unmark(p);
    return p;
  }
  return smp_alloc_small_slow(cls);
}

// The sizes the hit paths serve: up to table_max through the class table, up to small_max
// through smp_sizeclass_of_large, and typed requests (types.c) up to typed_max. Hardening
// (harden.h) sets all three to 0 at start-up (all but table_max with zero_free alone), so that
// every request takes a slow path (a compare with a variable is one instruction, as one with
// a constant is).
typedef struct smp_alloc_limits {
  size_t table_max, small_max, typed_max;
} smp_alloc_limits_t;
extern SMP_HIDDEN smp_alloc_limits_t smp_alloc_limits;
// Start-up (init.c) writes the limits while a thread racing it may read them in a
// hit path: the read sees the old or the new word (aligned words are read whole on every
// target), and either is safe: the old limit sends the request to the front end as before
// start-up, whose boot cache misses into the slow path that waits for start-up, or, once the
// per-CPU caches are live, to a plain block, which every free path takes. ThreadSanitizer
// builds read them as relaxed atomics (an instruction more) so that it knows the race is meant.
#if SMP_TSAN
#define SMP_ALLOC_LIMIT(field) __atomic_load_n(&smp_alloc_limits.field, __ATOMIC_RELAXED)
#else
#define SMP_ALLOC_LIMIT(field) (smp_alloc_limits.field)
#endif

SMP_INLINE void *smp_alloc_fast(size_t size) {
  if (SMP_LIKELY(size <= SMP_ALLOC_LIMIT(table_max))) {
    unsigned cls = smp_class_table[(size + 15) >> 4];
    void *p = smp_alloc_class(cls);
    smp_alloc_asan_handout(p, size, smp_class_info[cls].size); // its slack poisoned (asan.h)
    return p;
  }
  if (SMP_LIKELY(size <= SMP_ALLOC_LIMIT(small_max))) {
    unsigned cls = smp_sizeclass_of_large(size);
    void *p = smp_alloc_class(cls);
    smp_alloc_asan_handout(p, size, smp_class_info[cls].size);
    return p;
  }
  return smp_alloc_malloc_slow(size);
}

// realloc keeps a small block of usable bytes for size bytes if they fit and are not less than
// half of it, or if a new block would be of the same class anyway.
SMP_INLINE bool smp_alloc_realloc_keeps(size_t size, size_t usable) {
  return size <= usable && (size >= usable / 2 || size > SMP_SMALL_MAX ||
                            smp_class_info[smp_sizeclass_of(size)].size == usable);
}

// The magic free's hit-path test divides by (sizeclass.h's smp_class_magic): a copy set at
// start-up, all zeros in fill mode (harden.h), where every block fails the test, so that each
// free reaches the slow path that fills it. Zeros until start-up too (no block exists yet).
extern SMP_HIDDEN uint64_t smp_alloc_hit_magic[SMP_CLASS_COUNT];

// Set last at start-up (release) when the profiler is on alone (no fill, no hardened blocks):
// malloc's slow entry then takes the profiler's route for small requests before anything else.
extern SMP_HIDDEN _Atomic bool smp_alloc_prof_route;

// The class of p if p is a small block of the default heap (owned, in a page with a class, on a
// block boundary by magic) that holds no free mark, else 0.
SMP_INLINE size_t smp_alloc_small_class_with(const void *p, const uint64_t *magic) {
  if (SMP_LIKELY(smp_pagemap_owns(p))) {
    size_t cls = smp_pagemap_class(p); // size_t: gcc zero-extends it once, not once per use
    // Class 0 (not a small block) fails the boundary test too: its magic is 0. Said to the
    // compiler, so that a caller's test of the result folds into this one.
    if (SMP_LIKELY(smp_sizeclass_on_boundary_by(magic[cls], smp_pagemap_span_offset(p)) &&
                   !smp_block_is_marked(p))) {
      SMP_ASSUME(cls != 0);
      return cls;
    }
  }
  return 0;
}

// Free's hit-path test: the class of p if p is a small block of the default heap that holds no
// free mark, else 0 (NULL, other heaps' blocks, typed pointers, interior pointers and suspects:
// the slow paths validate those; in fill mode, every block).
SMP_INLINE size_t smp_alloc_small_class_fast(const void *p) {
  return smp_alloc_small_class_with(p, smp_alloc_hit_magic);
}

// The same test with the true magic, fill mode or not (for blocks the slow paths give back).
SMP_INLINE size_t smp_alloc_small_class_of(const void *p) {
  return smp_alloc_small_class_with(p, smp_class_magic);
}

// Small block p of class cls is given back by the program: its free mark (span.h), and in
// AddressSanitizer builds its poison (asan.h).
SMP_INLINE void smp_alloc_mark_freed(void *p, size_t cls) {
  smp_block_mark(p);
  if (SMP_ASAN && !smp_harden_on) smp_asan_freed(p, smp_class_info[cls].size); // as above
}

SMP_INLINE void smp_free_fast(void *p) {
  size_t cls = smp_alloc_small_class_fast(p);
  if (SMP_LIKELY(cls != 0)) {
    smp_alloc_mark_freed(p, cls);
    if (SMP_LIKELY(smp_frontend_free_fast(p, cls))) return;
    smp_frontend_free_slow(p, cls);
    return;
  }
  smp_free_slow(p, "free");
}

#endif // __cplusplus

#endif
