// Layer: page heap. Spans of pages carved from chunks, under one lock.
// Allocation takes the smallest free run that fits, dirty runs (pages maybe resident) before
// clean ones (exact-size buckets with a bitmap of non-empty buckets), splitting the rest back;
// freeing coalesces with free neighbours in the same chunk. Free pages go back to the OS when
// they have been unused for decay_ms (wholly free chunks are then unmapped), beyond a bound on
// dirty pages, when the heap grows past dirty pages it could not use (decay.h, decay.c), and
// all of them on smp_pageheap_trim.
// Every heap (smp_heap_t) has its own page heap, an instance of smp_pageheap_t; chunks name it.
// Lock order: a central-list lock may be held when the page-heap lock is taken, never the
// reverse. Every function here takes the lock itself unless its name ends in _locked.
#ifndef SMP_PAGEHEAP_H
#define SMP_PAGEHEAP_H

#include <stdbool.h>
#include <stddef.h>

#include "decay.h" // the other half of the interface: giving pages back
#include "os.h"
#include "pagemap.h"
#include "stats.h"

#define SMP_PAGEHEAP_BUCKETS (SMP_CHUNK_PAGES + 1)

// One page heap: the pages of one smp_heap_t. All fields are guarded by lock unless marked.
typedef struct smp_pageheap smp_pageheap_t;
struct smp_pageheap {
  smp_lock_t lock;
  smp_span_t *buckets[2][SMP_PAGEHEAP_BUCKETS]; // free spans by length: [dirty, clean]
  uint64_t nonempty[2][(SMP_PAGEHEAP_BUCKETS + 63) / 64];
  smp_chunk_t *chunks;
  size_t chunk_count, usable_pages; // chunks, and their pages after the headers
  size_t free_pages, dirty_pages, large_pages, large_count, small_pages;
  size_t huge_pages;                // huge mappings charged to this heap (limit)
  smp_span_t *dirty_oldest, *dirty_youngest; // the decay list
  uint64_t decay_due_ms;            // when the oldest dirty span comes of age
  smp_counter_t purged_bytes, purge_calls, chunks_unmapped; // statistics
  smp_pageheap_allowance_t bound_extra; // pages the dirty bound allows beyond dirty_pct
  uint64_t bound_purged_ms;         // when the bound last gave pages back (0: never)
  uint64_t heap_calls, pass_calls, pass_end_ms, passes; // background passes (see decay.c)
  size_t stranded_pending;          // stranded pages the next pass gives back
  uint64_t grew_ms, stranded_before;
  size_t slow_purge_left;           // pages the slow paths may still purge before the next pass
  // The huge cache's byte bound learns as the dirty bound does (large.c; guarded by its
  // huge_lock, not by lock): bytes allowed beyond dirty_pct, when that bound last gave bytes
  // back (0: never), and how many a new mapping may still win back.
  smp_pageheap_allowance_t huge_bound_extra;
  size_t huge_bound_cut_bytes;
  uint64_t huge_bound_cut_ms;
  // Set at creation (limit_pages also by smp_pageheap_set_limit, under the lock):
  size_t limit_pages;               // pages held for blocks at most (0: no limit)
  bool fixed;                       // a region: never maps or unmaps chunks
  bool may_purge;                   // may give pages back with madvise
  bool class_pages;                 // writes page_class: its small blocks are the front end's
  bool slow_frees;                  // frees take the complete path (a malloc type's own heap,
                                    // types.c: the type counts them); set before its first block
  struct smp_central *central;      // the size classes over these pages
  void *owner;                      // the smp_heap_t
};

// Set up ph (zeroed by the caller) for a heap that grows from the OS (fixed false) or over
// region chunks added with smp_pageheap_add_chunk (fixed true).
void smp_pageheap_init(smp_pageheap_t *ph, bool fixed, bool may_purge, bool class_pages);
// Region heaps: give ph the chunk c, whose pages [c->first, c->end) become one free span.
void smp_pageheap_add_chunk(smp_pageheap_t *ph, smp_chunk_t *c);
// Return every chunk (callback per chunk, page-heap lock not held) and leave ph empty: for
// heap destruction, when nothing else uses ph.
void smp_pageheap_release_all(smp_pageheap_t *ph, void (*release)(smp_chunk_t *c, void *arg),
                              void *arg);

// A span of npages pages whose start is aligned to align_pages pages (a power of two), in state
// SMP_SPAN_LARGE with page_class 0, or NULL when the OS has no more memory, the heap is at its
// limit, or (nowait) the lock is busy or the heap would have to grow. *zeroed says whether all
// its bytes read as zero. nowait: no system call, no lock wait.
smp_span_t *smp_pageheap_alloc(smp_pageheap_t *ph, size_t npages, size_t align_pages,
                               bool *zeroed, bool nowait);
// A SMALL span of class cls (page classes set if the heap keeps them), npages long; otherwise
// as smp_pageheap_alloc (one hold of the lock, so a nowait caller never waits twice).
smp_span_t *smp_pageheap_alloc_small(smp_pageheap_t *ph, size_t npages, unsigned cls, bool nowait);
// Give a span back (SMALL or LARGE); its pages become free and coalesce with free neighbours.
void smp_pageheap_free(smp_span_t *span);
// Turn a LARGE span into a SMALL one of class cls (sets the page classes), or back (cls 0).
void smp_pageheap_set_class(smp_span_t *span, unsigned cls);
// Grow a span in place to npages if the pages after it are free; false otherwise.
bool smp_pageheap_grow(smp_span_t *span, size_t npages);
// Shrink a span in place to npages (>= 1), freeing its tail.
void smp_pageheap_shrink(smp_span_t *span, size_t npages);
// Charge (or with a negative count, uncharge) huge mappings of npages OS-independent pages to
// the limit; false (nothing charged) if that would pass the limit, or (nowait) the lock is busy.
// Counts as a call of the heap (smp_pageheap_calls): a heap busy with huge blocks is not idle.
bool smp_pageheap_charge(smp_pageheap_t *ph, ptrdiff_t npages, bool nowait);
// Pages ph holds for blocks now (small spans, large runs, huge mappings): what its limit counts.
size_t smp_pageheap_held(smp_pageheap_t *ph);
void smp_pageheap_set_limit(smp_pageheap_t *ph, size_t limit_pages);
// Return the physical memory of every free span to the OS and unmap wholly free chunks.
// Returns the number of bytes released.
size_t smp_pageheap_trim(smp_pageheap_t *ph);
// Bytes of the chunks resident in memory (mincore over every chunk: for statistics only), under
// the lock taken as g says (os.h): given up, 0.
size_t smp_pageheap_resident(smp_pageheap_t *ph, smp_gather_t *g);

typedef struct smp_pageheap_stats {
  size_t chunks;      // chunks mapped
  size_t mapped;      // bytes mapped for chunks
  size_t free_bytes;  // bytes in free spans
  size_t free_dirty;  // of which may be resident
  size_t dirty_bound; // the most bytes free_dirty may reach before a free purges (0: no bound)
  size_t large_bytes; // bytes in large spans
  size_t large_count; // large spans
  size_t small_bytes; // bytes in small spans
  size_t huge_bytes;  // bytes of huge mappings charged to the heap
  size_t limit;       // the limit in bytes (0: none)
  uint64_t purged_bytes;    // bytes given back to the OS so far (decay and trim)
  uint64_t purge_calls;     // madvise calls that did so
  uint64_t chunks_unmapped; // chunks unmapped so far
  size_t stranded_pending;  // stranded bytes signalled for the next background pass to give back
  uint64_t passes;          // background passes made so far
} smp_pageheap_stats_t;
// Under the lock, taken as g says (os.h): given up, the counters (purged_bytes, purge_calls,
// chunks_unmapped, read without it) and 0 for the rest.
void smp_pageheap_stats(smp_pageheap_t *ph, smp_pageheap_stats_t *out, smp_gather_t *g);

// For decay.c, under ph->lock: give free span s's pages back and re-file it in the clean set
// (lazy: MADV_FREE where the kernel takes it); false if the kernel refused (s unchanged).
bool smp_pageheap_purge_span_locked(smp_pageheap_t *ph, smp_span_t *s, bool lazy);
// Unmap wholly free chunk c (its one free span is in a bucket).
void smp_pageheap_chunk_release_locked(smp_pageheap_t *ph, smp_chunk_t *c);

// Fork: take and release ph's lock around fork.
void smp_pageheap_lock_fork(smp_pageheap_t *ph);
void smp_pageheap_unlock_fork(smp_pageheap_t *ph);

#endif
