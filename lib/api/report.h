// Layer: api. The statistics report: gathers the counters of every layer and prints them.
#ifndef SMP_REPORT_H
#define SMP_REPORT_H

#include <stddef.h>
#include <stdint.h>

struct smp_stats;

typedef struct smp_report_totals {
  size_t small_in_use, small_blocks; // bytes and blocks held by users
  size_t cached;                     // bytes in front-end caches
  size_t central_free;               // bytes free in small spans
  size_t large_in_use, large_count;  // page-heap blocks
  size_t huge_in_use, huge_count;    // dedicated mappings
  size_t huge_cached, huge_cached_count; // mappings of freed huge blocks kept for reuse
  size_t mapped;                     // chunks + huge mappings + cached huge mappings
  size_t pageheap_free, pageheap_dirty, pageheap_dirty_bound;
  uint64_t purged, purges, chunks, chunks_unmapped, passes; // see smp_pageheap_stats_t
  uint64_t threads;                                  // threads with a cache
  size_t held;                                       // pages held for blocks, huge mappings
} smp_report_totals_t;

void smp_report_totals(smp_report_totals_t *out);
// The public statistics (include/smpalloc.h); out->size says how much of *out to fill.
void smp_report_stats(struct smp_stats *out);
void smp_report_print(int fd);
// Fork support: the report lock comes before every other allocator lock.
void smp_report_lock(void);
void smp_report_unlock(void);
// The emergency reserve's size and bytes in use (heapapi.c).
void smp_heapapi_reserve_stats(uint64_t *size, uint64_t *in_use);

#endif
