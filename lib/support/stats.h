// Layer: cross-cutting. Statistics counters: what the report (report.c), smp_stats_get and
// malloc_stats show and nothing else reads. Each lives with its owner (a thread's cache, a
// per-CPU cache's metadata, a page heap, the double-free check) and is merged when read. The
// build switch SMP_STATS (config.h; CMake option SMP_STATS, default ON) set to 0 compiles every
// update out, the arguments type-checked but not evaluated, and every read gives 0; the report
// then says which figures are not counted instead of printing them.
// Here: the statistics of the caches, the double-free check and purging (blocks between the
// caches and the central lists, mark checks, idle scans, purges). Not here, counted in every
// build: counts that steer the allocator (a per-CPU cache's misses: the idle scan every 4096,
// the commit retry every 1024; its hits, counted by the rseq sequences and compared by the idle
// scan; a page heap's calls), and rare ones that cost nothing (a page heap's background
// passes, a heap's refused requests).
// Memory order: relaxed throughout. smp_counter_add is for one writer at a time (the counter's
// owner, or whoever holds the lock that guards it): a relaxed load and store, plain moves on
// every target, which ThreadSanitizer still sees as the benign race of a reader. Counters any
// thread bumps use smp_counter_add_shared (an atomic add).
#ifndef SMP_STATS_H
#define SMP_STATS_H

#include <stdint.h>

#include "atomic.h"
#include "config.h"

typedef _Atomic uint64_t smp_counter_t;

#if SMP_STATS
#define smp_counter_add(c, v) smp_store_relaxed((c), smp_load_relaxed(c) + (v))
#define smp_counter_add_shared(c, v) ((void)smp_fetch_add_relaxed((c), (v)))
#define smp_counter_get(c) smp_load_relaxed(c)
#else
#define smp_counter_add(c, v) ((void)sizeof(smp_load_relaxed(c) + (v)))
#define smp_counter_add_shared(c, v) ((void)sizeof(smp_load_relaxed(c) + (v)))
#define smp_counter_get(c) ((void)sizeof(smp_load_relaxed(c)), (uint64_t)0)
#endif

#endif
