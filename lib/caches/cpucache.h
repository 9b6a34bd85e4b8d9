// Layer: caches. The per-CPU front end: per cache index (mm_cid or CPU), per size class, a
// bounded stack of block pointers in a region of SMP_CPUCACHE_REGION bytes, popped and pushed
// by one rseq critical section each (rseq_x86_64.h): no lock, no atomic read-modify-write.
// Region layout: class c's 16-byte header at offset 16*c ({current, end, ~begin, hits}; class
// 0 holds no blocks and its hits field counts rseq restarts), then slots; class c owns the
// fixed slot range [begin_c, begin_c + max_c) and uses [begin_c, end_c). Header 81 is the
// outbox's (blocks of other caches, below), whose 32 slots follow the classes'.
// Regions are reserved for every possible index but only touched ones become resident; with
// mm_cid, a process that runs on 2 CPUs touches 2 regions. Indexes -1 and -2 (thread not
// registered) land on two always-zero regions below the first, where every operation misses.
// Ownership: the fast paths of the threads running on a region's index (serialised by rseq);
// slow paths of those threads (batch push/pop, also rseq); the region lock for everything that
// is not a single-store commit: capacity changes (set_end, only by a thread on that index),
// initialisation and draining. Capacity: a byte budget per cache (cache_size); a class that
// misses grows by a step (half its share of the budget), taking capacity from other classes
// round-robin when over budget, up to its base (SMP_CPUCACHE_BASE_BYTES of blocks); past the
// base, up to SMP_CPUCACHE_CLASS_BYTES, only on allocation misses of a class a free also found
// full, into room left in the budget (grow_locked); a miss moves up to a batch (sized by bytes)
// within capacity.
// Drain (trim, idle caches): under the region lock, freeze every header ({end 0, begin 0xffff}:
// all operations miss), fence with membarrier(PRIVATE_EXPEDITED_RSEQ) so no sequence that saw
// the old header is still running, then read current, flush the slots, and unfreeze (the
// double-free search freezes one class, only reads, and puts its exact limits back).
// Lock order: region locks in ascending index (drains hold several), then a central-list lock,
// then the page-heap lock; never the reverse.
#ifndef SMP_CPUCACHE_H
#define SMP_CPUCACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "compiler.h"
#include "config.h"
#include "os.h"
#include "pagemap.h"
#include "rseq.h"

extern SMP_HIDDEN char *smp_cpucache_base; // region of index 0; written once at start-up

SMP_INLINE size_t smp_cpucache_hdr(unsigned cls) { return (size_t)cls * 16; }

SMP_INLINE void *smp_cpucache_alloc_fast(unsigned cls) {
  return smp_rseq_pop(smp_cpucache_base, smp_cpucache_hdr(cls));
}
// The outbox: a stack of its own in each region (header 81) for blocks that another cache
// owns (pagemap.h's owner tag: the cache that took the last batch from their span). A block
// freed on a CPU other than its owner's does not go to that CPU's class stack, where the next
// malloc would hand it out again, next to blocks the owner still uses on the same cache line
// (cache_scratch: 13x slower); it waits in the outbox, and a full outbox goes back to the
// spans as one batch, from which the owner's refills (preferring spans it owns) take them.
// Only classes below SMP_OUTBOX_CLASSES (config.h: blocks under 64 bytes, several to a cache
// line) are sent home: a block freed on another CPU is otherwise reused there at once, which
// saves every central-list trip that sending it home costs (see design.md, "Outboxes").
// The tag is read outside the sequence, so it is a hint: a thread that moves between the read
// and the push puts the block on the other stack of the cache it reaches, which is harmless.
#define SMP_CPUCACHE_OUTBOX SMP_CLASS_COUNT
#define SMP_CPUCACHE_OUTBOX_HDR ((size_t)SMP_CPUCACHE_OUTBOX * 16)

// Per class, the header a block goes to when its owner is another cache: the outbox for the
// classes below SMP_OUTBOX_CLASSES, the class's own header for the others (a table, so that
// free's hit path chooses with a compare and a conditional move, without a branch).
extern SMP_HIDDEN uint16_t smp_cpucache_foreign_hdr[SMP_CLASS_COUNT];

// The header block p of class cls (small, default heap) is pushed onto by the calling CPU.
SMP_INLINE size_t smp_cpucache_push_hdr(const void *p, unsigned cls) {
  size_t own = smp_cpucache_hdr(cls), away = smp_cpucache_foreign_hdr[cls];
  return smp_pagemap_owner(p) == smp_owner_tag(smp_rseq_current_index_hint()) ? own : away;
}

// Whether block p of class cls goes to the outbox (see above).
SMP_INLINE bool smp_cpucache_is_foreign(const void *p, unsigned cls) {
  return smp_cpucache_push_hdr(p, cls) == SMP_CPUCACHE_OUTBOX_HDR;
}

SMP_INLINE bool smp_cpucache_free_fast(void *p, unsigned cls) {
  return smp_rseq_push(smp_cpucache_base, smp_cpucache_push_hdr(p, cls), p);
}

// Start-up: reserve the regions; false (and the reason) if per-CPU caches cannot run.
bool smp_cpucache_init(const char **reason);
void *smp_cpucache_alloc_slow(unsigned cls);
void smp_cpucache_free_slow(void *p, unsigned cls);
// One block straight from the central lists, without waiting for a lock or any system call
// (SMP_NOWAIT after a miss: the slow path could take a region lock or fence); NULL if a lock is
// busy or memory would have to be mapped.
void *smp_cpucache_alloc_nowait(unsigned cls);
// True if block p (of class cls) sits in some CPU's cache: then it is free. Takes every region
// lock, freezes class cls in all used regions and fences (as a drain does) so no critical
// section is in flight while the slots are read, then restores the limits. A false answer
// proves nothing (p may be in flight, or the fence failed).
bool smp_cpucache_holds(unsigned cls, const void *p);
// Drain every cache to the central lists; returns blocks drained.
size_t smp_cpucache_drain_all(void);
// The background thread's pass: drain the caches that no thread used since the previous scan
// (see cpucache.c). While passes come, the slow paths leave the scan (and its membarrier) to
// them; after SMP_CPUCACHE_PASS_STALE_MS without one, a slow path scans every 4096 misses.
void smp_cpucache_drain_idle(void);
#define SMP_CPUCACHE_PASS_STALE_MS 2000
// A cache whose misses often take capacity from its other classes doubles its byte budget,
// judged every SMP_CPUCACHE_ADAPT_MISSES misses, up to SMP_CPUCACHE_GROWTH x cache_size.
#define SMP_CPUCACHE_ADAPT_MISSES 1024
#define SMP_CPUCACHE_GROWTH 4
// A name for statistics: "percpu (rseq, mm_cid)" or "percpu (rseq, cpu_id)".
const char *smp_cpucache_name(void);
// Caches reserved: one per possible CPU (offline ones included; a thread never gets their index).
unsigned smp_cpucache_count(void);

typedef struct smp_cpucache_stats {
  uint64_t capacity_bytes;         // sum of the capacities in use
  uint64_t budget_bytes;           // sum of the budgets of the caches in use
  uint32_t budgets_grown;          // caches in use whose budget is above cache_size
  uint64_t outbox;                 // blocks in the outboxes (any class; not in cached)
  uint64_t scans_background;       // idle scans by the background thread's passes
  uint64_t scans_slow;             // idle scans by slow paths (no pass for a while)
  uint64_t took[SMP_CLASS_COUNT];  // blocks from the central lists
  uint64_t gave[SMP_CLASS_COUNT];  // blocks to the central lists
  uint64_t cached[SMP_CLASS_COUNT];
} smp_cpucache_stats_t;
// Each cache is read under its region lock, taken as g says (os.h): a cache whose lock is given
// up is left out.
void smp_cpucache_stats(smp_cpucache_stats_t *out, smp_gather_t *g);
// One cache's figures, for the report.
typedef struct smp_cpucache_cache_stats {
  bool used;                  // the cache was used (else, or if its lock was given up, all 0)
  uint64_t hits, misses, restarts;
  uint64_t cached_bytes;      // in its class stacks (not its outbox)
  uint64_t capacity_bytes;    // its stacks' capacity, and the budget capacity may grow to
  uint64_t budget_bytes;
} smp_cpucache_cache_stats_t;
// Index i's figures, read under its region lock taken as g says; false past the last index.
bool smp_cpucache_cache_stats(unsigned i, smp_cpucache_cache_stats_t *out, smp_gather_t *g);

void smp_cpucache_lock_all(void);
void smp_cpucache_unlock_all(void);

#endif
