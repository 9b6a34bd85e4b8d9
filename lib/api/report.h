// Layer: api. The statistics report: gathers the counters of every layer and prints them.
// A gather (os.h) says how the locks of what is read are taken: NULL waits for each (exact
// figures, what smp_stats_get and malloc_stats use); a gather never waits for one that malloc
// or free may hold, and leaves out what a busy one guards (smp_stats_json, malloc_info, the
// stats signal's report).
#ifndef SMP_REPORT_H
#define SMP_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "heap.h"
#include "os.h"

struct smp_stats;

typedef struct smp_report_totals {
  size_t small_in_use, small_blocks; // bytes and blocks held by users
  size_t cached;                     // bytes in front-end caches
  size_t central_free;               // bytes free in small spans
  size_t large_in_use, large_count;  // page-heap blocks
  size_t huge_in_use, huge_count;    // dedicated mappings
  size_t quarantined, quarantined_blocks; // freed, held by hardening's quarantine (harden.h)
  size_t huge_cached, huge_cached_count; // mappings of freed huge blocks kept for reuse
  size_t mapped;                     // chunks + huge mappings + cached huge mappings
  size_t pageheap_free, pageheap_dirty, pageheap_dirty_bound;
  uint64_t purged, purges, chunks, chunks_unmapped, passes; // see smp_pageheap_stats_t
  uint64_t threads, threads_exited;                  // threads with a cache; caches retired
  uint64_t outbox;                                   // blocks in the per-CPU caches' outboxes
  size_t held;                                       // pages held for blocks, huge mappings
} smp_report_totals_t;

// The default heap's totals (every lock waited for).
void smp_report_totals(smp_report_totals_t *out);
// The public statistics (include/smpalloc.h); out->size says how much of *out to fill.
void smp_report_stats(struct smp_stats *out);
// The report lock guards the tables a gathering fills (per class: too big for a small stack).
// Neither malloc nor free takes it; the fork handler takes it before every other allocator lock.
void smp_report_lock(void);
void smp_report_unlock(void);
// With the report lock held: every field of the default heap's smp_stats_t (version and size
// say all of it), and its totals and per-class figures into *totals and *classes if not NULL,
// locks taken as g says.
void smp_report_stats_locked(struct smp_stats *out, smp_report_totals_t *totals,
                             smp_heap_classes_t *classes, smp_gather_t *g);
// The text report (malloc_stats) to fd, locks taken as g says; with a gather, a report lock
// still busy after it (another thread reporting, or the one a signal interrupted) gives a
// one-line "skipped" instead, and locks given up are counted on a "busy:" line.
void smp_report_print(int fd, smp_gather_t *g);
// Install the stats signal's handler (start-up; nothing without the option stats_signal).
void smp_report_signal_install(void);
// Nonzero while the handler of stats_signal still has to be installed (start-up could not:
// tries left); the slow paths of malloc then call smp_report_signal_retry.
extern _Atomic unsigned smp_report_signal_pending;
void smp_report_signal_retry(void);
// The emergency reserve's size and bytes in use (heapapi.c), locks taken as g says.
void smp_heapapi_reserve_stats(uint64_t *size, uint64_t *in_use, smp_gather_t *g);

#endif
