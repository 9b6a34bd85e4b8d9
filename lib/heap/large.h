// Layer: heap. Blocks above the largest size class (or with alignment the classes cannot give).
// Large: up to SMP_HUGE_THRESHOLD, a page run from the page heap (usable size = whole pages).
// Huge: above it, a dedicated mapping, recorded in an open-addressing table keyed by address,
// under its own lock (huge calls are rare and already pay for a system call). A freed huge
// block's mapping is kept for reuse by its heap, within bounds (option huge_cache, dirty_pct)
// and for up to decay_ms (large.c, "The cache of freed huge mappings").
#ifndef SMP_LARGE_H
#define SMP_LARGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pageheap.h"

// A block of heap ph of at least n bytes aligned to align (power of two), zero-filled if zero;
// NULL if the OS has no memory, the heap is at its limit, a region heap has no run that long
// (regions have no huge blocks) or, with nowait, the block would need a lock wait or a system
// call (errno is left to the caller). Huge blocks count against their heap's limit. A huge
// block may reuse a cached mapping of ph's up to a quarter larger than asked: its usable size
// is still n in whole OS pages, the rest is its slack (mapped and charged, not usable).
void *smp_large_alloc(smp_pageheap_t *ph, size_t n, size_t align, bool zero, bool nowait);
// The page heap of the huge block at p, or NULL if p starts none.
smp_pageheap_t *smp_large_huge_heap(const void *p);
// The statistics of the huge table below (smp_large_resident_of, _cached_of, _count_of,
// smp_large_stats) read it under its lock, taken as g says (os.h): given up, they give 0.
// Bytes of ph's huge blocks and cached huge mappings resident in memory (mincore: statistics
// only).
size_t smp_large_resident_of(smp_pageheap_t *ph, smp_gather_t *g);
// ph's cached huge mappings (freed blocks kept for reuse), and in *bytes (if not NULL) their
// bytes. They are not charged to ph's limit.
size_t smp_large_cached_of(smp_pageheap_t *ph, size_t *bytes, smp_gather_t *g);
// Unmap every cached huge mapping of ph (trim); returns the bytes given back.
size_t smp_large_trim(smp_pageheap_t *ph);
// The background thread's pass over ph's cached huge mappings: unmap those unused for decay_ms
// and those beyond its bound, or, if the heap is idle (smp_pageheap_idle_since), all of them.
void smp_large_pass(smp_pageheap_t *ph, bool idle);
// ph's huge blocks, and in *bytes (if not NULL) the bytes mapped for them, slack included (in
// OS pages; the limit charges them in 8 KiB pages).
size_t smp_large_count_of(smp_pageheap_t *ph, size_t *bytes, smp_gather_t *g);
// Give back every huge block of ph (heap destruction): each mapping becomes an inaccessible
// reservation, kept for a while so that a later free of the block is reported as a block of a
// destroyed heap (the last 256 such blocks, up to 64 GiB of addresses). ph's cached mappings
// are unmapped.
void smp_large_release_heap(smp_pageheap_t *ph);
// Call fn for each huge block of ph, on a snapshot and without the lock; returns what fn
// returned to stop, 0, or ENOMEM.
int smp_large_visit_huge(smp_pageheap_t *ph, int (*fn)(void *, size_t, void *), void *arg);
// The same with the lock held while fn runs (fn must neither allocate nor free), so no block
// is unmapped under it; for the allocator's own tallies while the program runs.
int smp_large_visit_huge_held(smp_pageheap_t *ph, int (*fn)(void *, size_t, void *), void *arg);
// Free a block not in a small span; reports and aborts if p is not a live large/huge block (a
// huge block already freed, whose mapping is cached, is reported as a double free).
void smp_large_free(void *p, const char *function);
// Usable size of a large/huge block; reports and aborts if p is not one.
size_t smp_large_usable(const void *p, const char *function);
// Resize p in place (shrink, or grow: into a huge block's slack without a system call); true if
// p now holds at least n bytes.
bool smp_large_resize(void *p, size_t n);
// Move a huge block to hold n bytes, with mremap; NULL if not possible.
void *smp_large_remap(void *p, size_t n);

// Huge blocks of every heap and the bytes mapped for them; the cached mappings of every heap
// and their bytes; counts since start-up of new mappings made for huge blocks, of huge blocks
// that reused a cached mapping, and of cached bytes given back (unmapped).
typedef struct smp_large_stats {
  size_t huge_count, huge_bytes;
  size_t cached_count, cached_bytes;
  uint64_t maps, reuses, cache_released;
} smp_large_stats_t;
// Fill *out (under the huge table's lock).
void smp_large_stats(smp_large_stats_t *out, smp_gather_t *g);

// Fork: take and release the huge table's lock (after every page heap's).
void smp_large_lock_all(void);
void smp_large_unlock_all(void);

#endif
