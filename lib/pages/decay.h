// Layer: page heap. Giving free pages back to the OS (decay.c): the decay list of dirty spans,
// decay by age (decay_ms), the dirty bound (dirty_pct) and what it learns, stranded pages, and
// each page heap's bookkeeping of the background thread's passes. The page heap's buckets,
// splitting, coalescing and chunks are pageheap.c's; decay.c gives spans back through its
// smp_pageheap_purge_span_locked and smp_pageheap_chunk_release_locked. All state is in
// smp_pageheap_t, under its lock: functions ending in _locked are called with it held, the
// others take it.
// The operations other layers call keep the page heap's prefix (smp_pageheap_decay, ...): they
// act on a page heap, and pageheap.h includes this header, so its users see one interface. The
// smp_decay_* functions are for pageheap.c only.
#ifndef SMP_DECAY_H
#define SMP_DECAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "span_desc.h"

typedef struct smp_pageheap smp_pageheap_t;

// An allowance a bound learns beyond its rule (pages, or bytes) and forgets again: it halves
// once per quarter decay_ms that passes without learning, so it follows the program's recent
// habit and falls back once the habit stops (learning is bounded by the caller's cap). The
// dirty bound keeps one (bound_extra, here) and so does the huge cache's byte bound
// (large.c). The owner's lock guards it.
typedef struct smp_pageheap_allowance {
  size_t extra;
  uint64_t halve_ms; // when it halves next (while extra is not 0)
} smp_pageheap_allowance_t;
// a's extra at now: halved as often as due.
size_t smp_pageheap_allowance_age(smp_pageheap_allowance_t *a, uint64_t now);
// a learns n more at now, up to cap in all.
void smp_pageheap_allowance_add(smp_pageheap_allowance_t *a, uint64_t now, size_t n, size_t cap);

// Give back the pages of free spans unused for longer than the decay time (option decay_ms),
// oldest first, in batches with the lock released between them, and enforce the dirty bound
// (dirty_pct); the page heap also does both itself on its slow paths (while background passes
// come, only the bound, within SMP_PAGEHEAP_SLOW_PURGE per pass). Returns the time
// (smp_os_now_ms) when the next dirty span comes of age, or UINT64_MAX.
uint64_t smp_pageheap_decay(smp_pageheap_t *ph);
// The background thread's period: a quarter of decay_ms, 10 ms to 1 s (1 s with decay off).
unsigned smp_pageheap_pass_ms(void);
// Page-heap calls so far (allocations, frees, grows, shrinks, charges of huge blocks): a
// background pass reads them when it begins, before it drains any cache (the spans a drain
// empties are not the program's).
uint64_t smp_pageheap_calls(smp_pageheap_t *ph);
// Whether the heap served no call between the end of the previous background pass, half a
// period (smp_pageheap_pass_ms) ago at least, and the moment calls was read: an idle program
// is not using its free pages (decay off: never idle).
bool smp_pageheap_idle_since(smp_pageheap_t *ph, uint64_t calls);
// One background pass: if idle, every dirty page goes back at once; then what
// smp_pageheap_decay does. While passes keep coming, the slow paths leave decay to them, and
// enforce the dirty bound only up to SMP_PAGEHEAP_SLOW_PURGE bytes per pass (the rest of a
// burst waits for the next pass). Returns what smp_pageheap_decay returns.
uint64_t smp_pageheap_background_pass(smp_pageheap_t *ph, bool idle);
// The background thread's sleep between passes: a period, or less when a heap wants a pass
// now (it is growing past stranded dirty pages).
void smp_pageheap_wait_pass(void);
// Wake the background thread for a pass now.
void smp_pageheap_want_pass(void);
// Bytes the slow paths give back for the dirty bound between two background passes at most.
#define SMP_PAGEHEAP_SLOW_PURGE ((size_t)128 << 20)

// For pageheap.c, under ph->lock. File dirty span s on the decay list with stamp t, or take it
// off (the caller keeps ph->dirty_pages).
void smp_decay_add_locked(smp_pageheap_t *ph, smp_span_t *s, uint64_t t);
void smp_decay_del_locked(smp_pageheap_t *ph, smp_span_t *s);
// The most dirty pages kept before a free purges (dirty_pct of the pages in use, at least a
// chunk's, plus what the bound learned).
size_t smp_decay_bound_locked(smp_pageheap_t *ph);
// An allocation takes npages clean pages (not a dirty span) at now: the bound learns from it.
void smp_decay_clean_alloc_locked(smp_pageheap_t *ph, uint64_t now, size_t npages);
// A slow path's share of the upkeep, after each allocation, free or shrink (counts the call).
void smp_decay_upkeep_locked(smp_pageheap_t *ph, uint64_t now);
// The heap just mapped a chunk of npages pages: give back (or have the next pass give back)
// dirty pages that were free already when it mapped the previous one.
void smp_decay_stranded_locked(smp_pageheap_t *ph, uint64_t now, size_t npages);

#endif
