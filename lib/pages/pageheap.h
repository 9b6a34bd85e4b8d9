// Layer: page heap. Spans of pages carved from chunks, under one lock.
// Allocation takes the smallest free run that fits, dirty runs (pages maybe resident) before
// clean ones (exact-size buckets with a bitmap of non-empty buckets), splitting the rest back;
// freeing coalesces with free neighbours in the same chunk. Free pages go back to the OS when
// they have been unused for decay_ms (wholly free chunks are then unmapped), beyond a bound on
// dirty pages, when the heap grows past dirty pages it could not use, and all of them on
// smp_pageheap_trim.
// Lock order: a central-list lock may be held when the page-heap lock is taken, never the
// reverse. Every function here takes the lock itself unless its name ends in _locked.
#ifndef SMP_PAGEHEAP_H
#define SMP_PAGEHEAP_H

#include <stdbool.h>
#include <stddef.h>

#include "os.h"
#include "pagemap.h"

extern SMP_HIDDEN smp_lock_t smp_pageheap_lock;

// A span of npages pages whose start is aligned to align_pages pages (a power of two), in state
// SMP_SPAN_LARGE with page_class 0, or NULL when the OS has no more memory. *zeroed says
// whether all its bytes read as zero.
smp_span_t *smp_pageheap_alloc(size_t npages, size_t align_pages, bool *zeroed);
// Give a span back (any state); its pages become free and coalesce with free neighbours.
void smp_pageheap_free(smp_span_t *span);
// Turn a LARGE span into a SMALL one of class cls (sets the page classes), or back (cls 0).
void smp_pageheap_set_class(smp_span_t *span, unsigned cls);
// Grow a span in place to npages if the pages after it are free; false otherwise.
bool smp_pageheap_grow(smp_span_t *span, size_t npages);
// Shrink a span in place to npages (>= 1), freeing its tail.
void smp_pageheap_shrink(smp_span_t *span, size_t npages);
// Return the physical memory of every free span to the OS and unmap wholly free chunks.
// Returns the number of bytes released.
size_t smp_pageheap_trim(void);
// Give back the pages of free spans unused for longer than the decay time (option decay_ms),
// oldest first, in batches with the lock released between them, and enforce the dirty bound
// (dirty_pct); the page heap also does both itself on its slow paths (while background passes
// come, only the bound, within SMP_PAGEHEAP_SLOW_PURGE per pass). Returns the time
// (smp_os_now_ms) when the next dirty span comes of age, or UINT64_MAX.
uint64_t smp_pageheap_decay(void);
// The background thread's period: a quarter of decay_ms, 10 ms to 1 s (1 s with decay off).
unsigned smp_pageheap_pass_ms(void);
// Page-heap calls so far (allocations, frees, grows, shrinks): a background pass reads them
// when it begins, before it drains any cache (the spans a drain empties are not the program's).
uint64_t smp_pageheap_calls(void);
// Whether the heap served no call between the end of the previous background pass, half a
// period (smp_pageheap_pass_ms) ago at least, and the moment calls was read: an idle program
// is not using its free pages (decay off: never idle).
bool smp_pageheap_idle_since(uint64_t calls);
// One background pass: if idle, every dirty page goes back at once; then what
// smp_pageheap_decay does. While passes keep coming, the slow paths leave decay to them, and
// enforce the dirty bound only up to SMP_PAGEHEAP_SLOW_PURGE bytes per pass (the rest of a
// burst waits for the next pass). Returns what smp_pageheap_decay returns.
uint64_t smp_pageheap_background_pass(bool idle);
// The background thread's sleep between passes: a period, or less when the heap wants a pass
// now (it is growing past stranded dirty pages).
void smp_pageheap_wait_pass(void);
// Bytes the slow paths give back for the dirty bound between two background passes at most.
#define SMP_PAGEHEAP_SLOW_PURGE ((size_t)128 << 20)
// Bytes of the chunks resident in memory (mincore over every chunk: for statistics only).
size_t smp_pageheap_resident(void);

typedef struct smp_pageheap_stats {
  size_t chunks;      // chunks mapped
  size_t mapped;      // bytes mapped for chunks
  size_t free_bytes;  // bytes in free spans
  size_t free_dirty;  // of which may be resident
  size_t dirty_bound; // the most bytes free_dirty may reach before a free purges (0: no bound)
  size_t large_bytes; // bytes in large spans
  size_t large_count; // large spans
  size_t small_bytes; // bytes in small spans
  uint64_t purged_bytes;    // bytes given back to the OS so far (decay and trim)
  uint64_t purge_calls;     // madvise calls that did so
  uint64_t chunks_unmapped; // chunks unmapped so far
  size_t stranded_pending;  // stranded bytes signalled for the next background pass to give back
  uint64_t passes;          // background passes made so far
} smp_pageheap_stats_t;
void smp_pageheap_stats(smp_pageheap_stats_t *out);


#endif
