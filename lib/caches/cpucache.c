// Layer: caches. See cpucache.h for the region layout, ownership and the drain protocol.
// Counters: hits are counted in the headers by the critical sections, restarts by their abort
// handlers (class 0's header); misses are relaxed atomic adds on slow paths (they pace the idle
// scans and commit retries), and so are the blocks moved to and from the central lists, which
// are statistics only (stats.h: compiled out with SMP_STATS 0).
#include <string.h>

#include "atomic.h"
#include "central.h"
#include "cpucache.h"
#include "options.h"
#include "os.h"
#include "rseq.h"
#include "sizeclass.h"
#include "stats.h"

typedef struct cpu_hdr {
  _Atomic uint16_t current; // committed by the critical sections (16-bit store)
  uint16_t pad;
  _Atomic uint32_t limits;  // end | ~begin << 16; region lock (set_end: rseq on this index)
  _Atomic uint64_t hits;    // critical sections
} cpu_hdr_t;
_Static_assert(sizeof(cpu_hdr_t) == 16, "header layout is shared with the assembly");
_Static_assert(offsetof(cpu_hdr_t, limits) == 4, "end at 4, ~begin at 6");
_Static_assert(offsetof(cpu_hdr_t, hits) == 8, "hits at 8");

// end 0, begin 0xffff (stored as ~begin = 0): every operation misses. A fresh region's
// all-zero headers are frozen too, so its first whole-header store is published like an unfreeze.
#define FROZEN ((uint32_t)0)
#define FIRST_SLOT 256                    // slots after the 82 headers (16 bytes each)
// The outbox: a stack after the classes' (header 81) for blocks owned by another cache (see
// cpucache.h), of any class, with a fixed capacity outside the byte budget.
#define OUTBOX SMP_CPUCACHE_OUTBOX
#define STACKS (OUTBOX + 1)               // classes 1..80 and the outbox
#define OUTBOX_SLOTS 32
_Static_assert(STACKS * sizeof(cpu_hdr_t) <= FIRST_SLOT * 8, "headers fit");
_Static_assert(SMP_CPUCACHE_OUTBOX_HDR == OUTBOX * sizeof(cpu_hdr_t), "outbox header");

typedef struct cache_meta {
  bool used;                            // lock: region initialised
  bool commit_failed;                   // lock: the last attempt to make it writable failed
  size_t bytes;                         // lock: sum over classes of capacity * size
  uint16_t cap[STACKS];                 // lock: end - begin
  unsigned victim;                      // lock: next class to take capacity from
  size_t budget;                        // lock: bytes of capacity allowed (see adapt_locked)
  uint32_t steals;                      // lock: misses that took capacity since the last adapt
  bool overflowed[STACKS];              // lock: a free found the class full (since the last drain)
  uint64_t adapt_hits;                  // lock: hits seen by the last adapt
  uint64_t idle_hits;                   // lock: hits seen by the last idle scan
  _Atomic uint64_t misses;              // any thread, relaxed
  smp_counter_t took[SMP_CLASS_COUNT], gave[SMP_CLASS_COUNT]; // any thread
} cache_meta_t;

char *smp_cpucache_base;
uint16_t smp_cpucache_foreign_hdr[SMP_CLASS_COUNT];
static unsigned cache_count;       // indexes reserved
static cache_meta_t *metas;        // cache_count entries
// The region locks, packed apart from metas: scans and the fork handlers take every lock, and
// locks inside the metadata (1.5 KiB apart) made every reserved index's entry resident (256 of
// them where the kernel's cpumask has 256 bits), though only used indexes need theirs.
static smp_lock_t *locks;          // cache_count entries
static uint16_t first[STACKS], max_cap[STACKS], base_cap[STACKS];
static size_t budget; // cache_size: every cache's budget at first and after a drain
static bool by_mm_cid;
static smp_counter_t direct_took[SMP_CLASS_COUNT], direct_gave[SMP_CLASS_COUNT];

static cpu_hdr_t *hdr_of(unsigned index, unsigned cls) {
  return (cpu_hdr_t *)(smp_cpucache_base + ((size_t)index << SMP_CPUCACHE_SHIFT) +
                       smp_cpucache_hdr(cls));
}
static void **slot_of(unsigned index, unsigned i) {
  return (void **)(smp_cpucache_base + ((size_t)index << SMP_CPUCACHE_SHIFT)) + i;
}
static uint32_t limits(unsigned end, unsigned begin) {
  return (uint32_t)end | (uint32_t)(~begin & 0xffff) << 16;
}
static unsigned begin_of(uint32_t limits) { return ~(limits >> 16) & 0xffff; }
static unsigned batch(unsigned cls) { return smp_class_info[cls].batch; } // 2..32
static unsigned grow_step(unsigned cls) { return smp_class_info[cls].grow; } // 1..batch
// Blocks a miss moves besides the one it serves: a batch, but at most half the class's
// capacity cap, so that a refill leaves room for frees and a flush leaves blocks for mallocs
// (moving a whole cache each time, it went from empty to full and back on every other call).
static unsigned moved(unsigned cls, unsigned cap) {
  unsigned half = cap / 2, b = batch(cls) - 1;
  return half < b ? half : b;
}

// Statistics counters of blocks moved between cache index (or -1: no cache) and the central
// list of class cls.
static smp_counter_t *took_of(int index, unsigned cls) {
  return index < 0 ? &direct_took[cls] : &metas[index].took[cls];
}
static smp_counter_t *gave_of(int index, unsigned cls) {
  return index < 0 ? &direct_gave[cls] : &metas[index].gave[cls];
}

// Give n blocks of class cls back to the central lists, counted against index: from a miss
// path (a batch, which may stay in the transfer cache), or from a drain (to the spans).
static void give(int index, unsigned cls, void *const *blocks, unsigned n) {
  if (n == 0) return;
  smp_counter_add_shared(gave_of(index, cls), n);
  smp_central_give(smp_central_default, cls, blocks, n);
}
static void give_to_spans(int index, unsigned cls, void *const *blocks, unsigned n) {
  if (n == 0) return;
  smp_counter_add_shared(gave_of(index, cls), n);
  smp_central_flush(blocks, n);
}

// Give n blocks of any classes (an outbox's) back, each counted under its own class.
static void give_mixed(int index, void *const *blocks, unsigned n) {
  if (n == 0) return;
  for (unsigned i = 0; i < n; i++) smp_counter_add_shared(gave_of(index, smp_pagemap_class(blocks[i])), 1);
  smp_central_flush(blocks, n);
}

// Give back the blocks of stack c (a class, or the outbox) of a region being drained.
static void give_stack(int index, unsigned c, void *const *blocks, unsigned n) {
  if (c == OUTBOX) give_mixed(index, blocks, n);
  else give_to_spans(index, c, blocks, n);
}

bool smp_cpucache_init(const char **reason) {
  smp_rseq_info_t info;
  smp_rseq_init(&info);
  if (!info.usable) {
    *reason = info.reason;
    return false;
  }
  // Fixed slot ranges: up to 1 MiB of blocks per class (the default budget: one class may
  // take a whole cache), 8 to 1024 slots; any miss grows a class up to 64 KiB of blocks (4 to
  // 1024), and only allocation misses with room in the budget beyond (grow_locked).
  unsigned next = FIRST_SLOT;
  for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) {
    size_t m = SMP_CPUCACHE_CLASS_BYTES / smp_class_info[c].size;
    m = m < 8 ? 8 : m > 1024 ? 1024 : m;
    size_t b = SMP_CPUCACHE_BASE_BYTES / smp_class_info[c].size;
    b = b < 4 ? 4 : b > m ? m : b;
    first[c] = (uint16_t)next;
    max_cap[c] = (uint16_t)m;
    base_cap[c] = (uint16_t)b;
    next += (unsigned)m;
  }
  for (unsigned c = 1; c < SMP_CLASS_COUNT; c++)
    smp_cpucache_foreign_hdr[c] =
        (uint16_t)(c < SMP_OUTBOX_CLASSES ? SMP_CPUCACHE_OUTBOX_HDR : smp_cpucache_hdr(c));
  first[OUTBOX] = (uint16_t)next;
  max_cap[OUTBOX] = OUTBOX_SLOTS;
  next += OUTBOX_SLOTS;
  if (next > SMP_CPUCACHE_REGION / 8 || next > UINT16_MAX) { // ends are 16-bit
    *reason = "per-CPU region too small for the class layout";
    return false;
  }
  budget = smp_options.cache_size;
  by_mm_cid = info.mm_cid;
  // Two always-zero regions below index 0 catch indexes -1 and -2 (unregistered threads).
  size_t mem_bytes = ((size_t)info.indexes + 2) << SMP_CPUCACHE_SHIFT;
  size_t lock_bytes = smp_align_up(info.indexes * sizeof(smp_lock_t), SMP_CACHELINE);
  size_t meta_bytes =
      smp_align_up(lock_bytes + info.indexes * sizeof(cache_meta_t), smp_os_page_size());
  char *mem = smp_os_reserve(mem_bytes); // read-only zeros: every header frozen until used
  char *m = smp_os_map(meta_bytes);
  if (mem == NULL || m == NULL) {
    // Keep cache_count 0: the fork handlers walk metas[0, cache_count) whatever the front end.
    if (mem) smp_os_unmap(mem, mem_bytes);
    if (m) smp_os_unmap(m, meta_bytes);
    *reason = "no memory for the per-CPU regions";
    return false;
  }
  locks = (smp_lock_t *)m;
  metas = (cache_meta_t *)(m + lock_bytes);
  cache_count = info.indexes;
  for (unsigned i = 0; i < cache_count; i++) smp_lock_init(&locks[i]);
  smp_cpucache_base = mem + 2 * SMP_CPUCACHE_REGION;
  return true;
}

const char *smp_cpucache_name(void) {
  return by_mm_cid ? "percpu (rseq, mm_cid)" : "percpu (rseq, cpu_id)";
}

// First use of a region (lock held): it becomes writable (reserved read-only until now, so
// indexes never used cost no commit charge under vm.overcommit_memory=2), then every class
// starts with no capacity and grows when it misses. One 8-byte store per header, so a critical
// section sees either the all-zero (frozen) limits and misses, or the whole new header (the
// load order in rseq_x86_64.h). false if the region cannot be made writable: it stays frozen.
static bool region_init_locked(cache_meta_t *m, unsigned index) {
  if (!smp_os_commit(smp_cpucache_base + ((size_t)index << SMP_CPUCACHE_SHIFT),
                     SMP_CPUCACHE_REGION))
    return false;
  smp_store_relaxed(&hdr_of(index, 0)->current, 1); // in use: the rseq abort handler counts here
  for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) {
    m->cap[c] = 0;
    uint64_t h = first[c] | (uint64_t)limits(first[c], first[c]) << 32;
    smp_store_relaxed((_Atomic uint64_t *)hdr_of(index, c), h);
  }
  m->cap[OUTBOX] = OUTBOX_SLOTS;
  smp_store_relaxed((_Atomic uint64_t *)hdr_of(index, OUTBOX),
                    first[OUTBOX] | (uint64_t)limits(first[OUTBOX] + OUTBOX_SLOTS, first[OUTBOX]) << 32);
  m->bytes = 0;
  m->budget = budget;
  m->victim = 1;
  m->used = true;
  return true;
}

// Lower class v's capacity by up to want slots (lock held, thread on index). Blocks above the
// new end go back to the central lists first. Returns the slots freed.
static unsigned shrink_locked(cache_meta_t *m, int index, unsigned v, unsigned want) {
  unsigned cap = m->cap[v], take = want < cap ? want : cap;
  if (take == 0) return 0;
  size_t hdr = smp_cpucache_hdr(v);
  for (int tries = 0; tries < 4; tries++) {
    if (smp_rseq_set_end(smp_cpucache_base, hdr, index, first[v] + cap - take)) {
      m->cap[v] = (uint16_t)(cap - take);
      m->bytes -= take * smp_class_info[v].size;
      return take;
    }
    if (smp_rseq_current_index() != index) return 0; // moved: give up, the caller retries later
    void *out[64];
    give(index, v, out, smp_rseq_pop_batch(smp_cpucache_base, hdr, out, take));
  }
  return 0;
}

// Class cls missed on this index: grow it by its step, within the budget, taking capacity from
// other classes round-robin when needed, a step at a time (lock held). Beyond its base
// capacity (SMP_CPUCACHE_BASE_BYTES of blocks), a class grows only when an allocation found it
// empty (alloc_miss) after a free had found it full, and the budget has room: a program that
// allocates a batch and frees it (1000 blocks of 1 KiB: bench/micro batch_1000/1024 took 24.6
// ns per call, gperftools 4.5) then keeps the whole batch, while a class that only frees (a
// consumer), only allocates (a producer, or a program building its data: fragmentation's
// first phase, 4% slower when those classes grew) or would take the room of other busy
// classes stays at its base. Every miss growing a class to 1 MiB made prodcons 26% and
// mt_churn 4 600000 16384 44% slower: the consumer's cache held 1024 cold blocks, and 50 busy
// classes took capacity from each other.
static void grow_locked(cache_meta_t *m, int index, unsigned cls, bool alloc_miss) {
  unsigned cap = m->cap[cls];
  if (cap >= max_cap[cls]) return;
  unsigned add = grow_step(cls);
  if (cap + add > max_cap[cls]) add = max_cap[cls] - cap;
  size_t need = add * smp_class_info[cls].size;
  if (cap + add > base_cap[cls]) {
    if (cap >= base_cap[cls]) {
      if (!alloc_miss || !m->overflowed[cls] || m->bytes + need > m->budget) return;
    } else { // up to the base first
      add = base_cap[cls] - cap;
      need = add * smp_class_info[cls].size;
    }
  }
  if (m->bytes + need > m->budget) m->steals++;
  for (unsigned scanned = 0; m->bytes + need > m->budget && scanned < SMP_CLASS_COUNT;
       scanned++) {
    unsigned v = m->victim;
    m->victim = v + 1 < SMP_CLASS_COUNT ? v + 1 : 1;
    if (v == cls || m->cap[v] == 0) continue;
    unsigned want = (unsigned)((m->bytes + need - m->budget + smp_class_info[v].size - 1) /
                               smp_class_info[v].size);
    shrink_locked(m, index, v, want < grow_step(v) ? want : grow_step(v));
  }
  if (m->bytes + need > m->budget) return;
  if (smp_rseq_set_end(smp_cpucache_base, smp_cpucache_hdr(cls), index, first[cls] + cap + add)) {
    m->cap[cls] = (uint16_t)(cap + add);
    m->bytes += need;
  }
}

static size_t drain_indexes_locked(const unsigned *list, unsigned n);

// Every SMP_CPUCACHE_ADAPT_MISSES misses of a cache (lock held): if misses are frequent and
// more than a quarter of them had to take capacity from other classes, the classes in use do not fit the budget and
// the cache thrashes (each miss flushing another class's blocks): double the budget, up to
// SMP_CPUCACHE_GROWTH times cache_size. A drain (the cache went idle, or malloc_trim) puts
// it back to cache_size; the capacity above it is then taken back by later misses.
static void adapt_locked(cache_meta_t *m, unsigned index) {
  uint64_t hits = 0;
  for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) hits += smp_load_relaxed(&hdr_of(index, c)->hits);
  // Misses must also be frequent: one in nine calls or more. A cache that misses rarely gains
  // little from a larger budget, and its blocks would pin spans (server_churn's final RSS
  // doubled when every busy cache grew).
  bool frequent = hits - m->adapt_hits < 8 * (uint64_t)SMP_CPUCACHE_ADAPT_MISSES;
  if (frequent && m->steals > SMP_CPUCACHE_ADAPT_MISSES / 4 &&
      m->budget < budget * SMP_CPUCACHE_GROWTH)
    m->budget *= 2;
  m->steals = 0;
  m->adapt_hits = hits;
}

// Idle scans, and when the background thread last made one (0: never): while its passes come,
// application threads leave the scan and its membarrier to it.
static _Atomic uint64_t pass_scan_ms;
static smp_counter_t scans_background, scans_slow;

// Drain caches that hold blocks and whose hit count did not move since the last scan: no running
// thread uses them (with mm_cid, indexes above the current concurrency go quiet). An empty cache
// is skipped, so a drained one costs no further fence.
static void drain_idle_scan(void) {
  unsigned idle[64], n = 0;
  for (unsigned i = 0; i < cache_count && n < SMP_ARRAY_LEN(idle); i++) {
    cache_meta_t *m = &metas[i];
    smp_lock_acquire(&locks[i]);
    if (!m->used) {
      smp_lock_release(&locks[i]);
      continue;
    }
    uint64_t hits = 0;
    bool holds = false; // region lock held: limits are not frozen
    for (unsigned c = 1; c < STACKS; c++) {
      cpu_hdr_t *h = hdr_of(i, c);
      hits += smp_load_relaxed(&h->hits);
      holds |= smp_load_relaxed(&h->current) > begin_of(smp_load_relaxed(&h->limits));
    }
    if (hits == m->idle_hits && holds) {
      idle[n++] = i; // stays locked until drained
    } else {
      m->idle_hits = hits;
      smp_lock_release(&locks[i]);
    }
  }
  if (n) drain_indexes_locked(idle, n);
  for (unsigned k = 0; k < n; k++) smp_lock_release(&locks[idle[k]]);
}

void smp_cpucache_drain_idle(void) {
  smp_store_relaxed(&pass_scan_ms, smp_os_now_ms());
  smp_counter_add_shared(&scans_background, 1);
  drain_idle_scan();
}

// A slow path's turn (every 4096 misses of a cache): scan only if no pass did lately.
static void drain_idle_if_no_pass(void) {
  uint64_t last = smp_load_relaxed(&pass_scan_ms);
  if (last != 0 && smp_os_now_ms() - last < SMP_CPUCACHE_PASS_STALE_MS) return;
  smp_counter_add_shared(&scans_slow, 1);
  drain_idle_scan();
  smp_central_transfer_drain(smp_central_default, true); // no pass sends idle transfer caches back either
}

// Slow-path preamble: the index (registering the thread if needed), with the region ready and
// class cls grown if it can be (none if cls is 0; alloc_miss: an allocation found it empty);
// its capacity then goes to *cap (if cap is not NULL). Returns -1 (capacity 0) if this thread
// cannot use the per-CPU caches.
static int prepare(unsigned cls, bool alloc_miss, unsigned *cap) {
  if (cap) *cap = 0;
  int index = smp_rseq_current_index();
  if (index < 0) {
    if (!smp_rseq_register_thread()) return -1;
    index = smp_rseq_current_index();
  }
  if (index < 0 || (unsigned)index >= cache_count) return -1;
  cache_meta_t *m = &metas[index];
  uint64_t misses = smp_fetch_add_relaxed(&m->misses, 1);
  if ((misses & 4095) == 4095) drain_idle_if_no_pass();
  smp_lock_acquire(&locks[index]);
  if (!m->used) {
    // No memory for the region: calls go to the central lists directly, and the commit is
    // tried again once every 1024 misses, not on each (a failing mprotect is a system call).
    if ((m->commit_failed && (misses & 1023) != 0) || !region_init_locked(m, (unsigned)index)) {
      m->commit_failed = true;
      smp_lock_release(&locks[index]);
      return -1;
    }
  }
  if ((misses & (SMP_CPUCACHE_ADAPT_MISSES - 1)) == SMP_CPUCACHE_ADAPT_MISSES - 1)
    adapt_locked(m, (unsigned)index);
  if (cls) {
    if (!alloc_miss && m->cap[cls] != 0) m->overflowed[cls] = true; // full, not unsized
    grow_locked(m, index, cls, alloc_miss);
  }
  if (cap) *cap = m->cap[cls];
  smp_lock_release(&locks[index]);
  return index;
}

void *smp_cpucache_alloc_slow(unsigned cls) {
  unsigned cap;
  int index = prepare(cls, true, &cap);
  // The block asked for, and a batch for the cache, no more than half its capacity (an alloc
  // misses on an empty class): a class that could not grow takes one block, not a batch to
  // give back, and one filled to the brim would flush on the next free.
  unsigned want = 1 + moved(cls, cap);
  void *blocks[64];
  unsigned n = smp_central_refill_for(smp_central_default, cls, blocks, want, false,
                                     index >= 0 ? smp_owner_tag(index) : SMP_OWNER_NONE);
  if (n == 0) return NULL;
  smp_counter_add_shared(took_of(index, cls), n);
  void *p = blocks[--n];
  unsigned k = n ? smp_rseq_push_batch(smp_cpucache_base, smp_cpucache_hdr(cls), blocks, n)
                 : 0;
  give(index, cls, blocks + k, n - k); // no room (or the cache moved under us): the rest
  return p;
}

void *smp_cpucache_alloc_nowait(unsigned cls) {
  void *p;
  if (smp_central_refill(smp_central_default, cls, &p, 1, true) == 0) return NULL;
  smp_counter_add_shared(took_of(-1, cls), 1);
  return p;
}

// A block of another cache whose outbox push missed: the outbox is full (or frozen, or the
// region not yet in use). Its blocks go back to their spans as one batch, then p goes in.
static void outbox_flush(void *p) {
  int index = prepare(0, false, NULL);
  if (index >= 0) {
    void *out[OUTBOX_SLOTS];
    give_mixed(index, out, smp_rseq_pop_batch(smp_cpucache_base, SMP_CPUCACHE_OUTBOX_HDR, out,
                                              OUTBOX_SLOTS));
    if (smp_rseq_push(smp_cpucache_base, SMP_CPUCACHE_OUTBOX_HDR, p)) return;
  }
  give_mixed(index, &p, 1);
}

void smp_cpucache_free_slow(void *p, unsigned cls) {
  if (smp_cpucache_is_foreign(p, cls)) {
    outbox_flush(p);
    return;
  }
  unsigned cap;
  int index = prepare(cls, false, &cap);
  if (index >= 0) {
    if (smp_cpucache_free_fast(p, cls)) return; // it grew
    void *out[64];
    unsigned n = moved(cls, cap);
    give(index, cls, out,
         smp_rseq_pop_batch(smp_cpucache_base, smp_cpucache_hdr(cls), out, n ? n : 1));
    if (smp_cpucache_free_fast(p, cls)) return;
  }
  give(index, cls, &p, 1);
}

// Drain the listed regions (their locks held): freeze all, one fence, flush, unfreeze.
// Freeze classes [lo, hi) of the listed regions (their locks held): every operation on them
// misses from now on; a membarrier fence then makes sure none that saw them open is running.
static void freeze_locked(const unsigned *list, unsigned n, unsigned lo, unsigned hi) {
  for (unsigned k = 0; k < n; k++)
    for (unsigned c = lo; c < hi; c++) smp_store_relaxed(&hdr_of(list[k], c)->limits, FROZEN);
}

// Put back the exact limits a freeze of classes [lo, hi) replaced (only the region lock changes
// them), leaving current alone; release: reads of the slots made while frozen come first.
static void reopen_limits_locked(const unsigned *list, unsigned n, unsigned lo, unsigned hi) {
  for (unsigned k = 0; k < n; k++)
    for (unsigned c = lo; c < hi; c++)
      smp_store_release(&hdr_of(list[k], c)->limits,
                        limits(first[c] + metas[list[k]].cap[c], first[c]));
}

static size_t drain_indexes_locked(const unsigned *list, unsigned n) {
  freeze_locked(list, n, 1, STACKS);
  // After the fence no critical section that saw an unfrozen header is still running. If the
  // fence fails (a seccomp filter installed after start-up, ENOMEM), nothing is known about
  // sequences in flight: put the limits back and leave current and the slots alone.
  if (!smp_rseq_fence()) {
    reopen_limits_locked(list, n, 1, STACKS);
    return 0;
  }
  size_t drained = 0;
  for (unsigned k = 0; k < n; k++) {
    unsigned i = list[k];
    cache_meta_t *m = &metas[i];
    m->budget = budget;
    m->steals = 0;
    memset(m->overflowed, 0, sizeof m->overflowed);
    for (unsigned c = 1; c < STACKS; c++) {
      cpu_hdr_t *h = hdr_of(i, c);
      unsigned cur = smp_load_relaxed(&h->current);
      if (cur > first[c]) {
        unsigned cnt = cur - first[c];
        give_stack((int)i, c, slot_of(i, first[c]), cnt);
        drained += cnt;
      }
      uint64_t whole = first[c] | (uint64_t)limits(first[c] + m->cap[c], first[c]) << 32;
      // One store for current and limits; release, so the slot reads of the flush above are
      // done before a thread can see the cache open again and push into those slots.
      smp_store_release((_Atomic uint64_t *)h, whole);
    }
  }
  return drained;
}

// Calls fn(list, n, arg) for every used region, up to 256 at a time with their locks held (taken
// in ascending index, the lock order), and sums what it returns; with stop, the batches end at
// the first call that returns nonzero.
static size_t each_used_batch(size_t (*fn)(const unsigned *, unsigned, const void *),
                              const void *arg, bool stop) {
  unsigned list[256], n = 0;
  size_t sum = 0;
  for (unsigned i = 0; i < cache_count && !(stop && sum); i++) {
    smp_lock_acquire(&locks[i]);
    if (metas[i].used) list[n++] = i;
    else smp_lock_release(&locks[i]);
    if (n == SMP_ARRAY_LEN(list) || (i + 1 == cache_count && n)) {
      sum += fn(list, n, arg);
      for (unsigned k = 0; k < n; k++) smp_lock_release(&locks[list[k]]);
      n = 0;
    }
  }
  return sum;
}

static size_t drain_batch(const unsigned *list, unsigned n, const void *arg) {
  (void)arg;
  return drain_indexes_locked(list, n);
}

size_t smp_cpucache_drain_all(void) { return each_used_batch(drain_batch, NULL, false); }

typedef struct holds_query {
  unsigned cls;
  const void *p;
} holds_query_t;

// 1 if the block is in its class in one of the listed regions: the class frozen and fenced as a
// drain does, the slots read, the limits put back.
static bool stack_holds(unsigned index, unsigned c, const void *p) {
  unsigned cur = smp_load_relaxed(&hdr_of(index, c)->current);
  for (unsigned i = first[c]; i < cur; i++)
    if (*slot_of(index, i) == p) return true;
  return false;
}

static size_t holds_batch(const unsigned *list, unsigned n, const void *arg) {
  const holds_query_t *q = arg;
  freeze_locked(list, n, q->cls, q->cls + 1);
  freeze_locked(list, n, OUTBOX, STACKS);
  bool found = false;
  if (smp_rseq_fence()) // else sequences may be in flight: nothing can be known
    for (unsigned k = 0; k < n && !found; k++)
      found = stack_holds(list[k], q->cls, q->p) || stack_holds(list[k], OUTBOX, q->p);
  reopen_limits_locked(list, n, q->cls, q->cls + 1);
  reopen_limits_locked(list, n, OUTBOX, STACKS);
  return found;
}

bool smp_cpucache_holds(unsigned cls, const void *p) {
  holds_query_t q = {cls, p};
  return each_used_batch(holds_batch, &q, true) != 0;
}

void smp_cpucache_stats(smp_cpucache_stats_t *out, smp_gather_t *g) {
  memset(out, 0, sizeof *out);
  out->scans_background = smp_counter_get(&scans_background);
  out->scans_slow = smp_counter_get(&scans_slow);
  for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) {
    out->took[c] = smp_counter_get(&direct_took[c]);
    out->gave[c] = smp_counter_get(&direct_gave[c]);
  }
  for (unsigned i = 0; i < cache_count; i++) {
    cache_meta_t *m = &metas[i];
    if (!smp_lock_gather(&locks[i], g)) continue;
    if (m->used) {
      out->capacity_bytes += m->bytes;
      out->budget_bytes += m->budget;
      out->budgets_grown += m->budget > budget;
      uint16_t top = smp_load_relaxed(&hdr_of(i, OUTBOX)->current);
      out->outbox += top > first[OUTBOX] ? (unsigned)(top - first[OUTBOX]) : 0;
      for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) {
        uint16_t cur = smp_load_relaxed(&hdr_of(i, c)->current);
        out->cached[c] += cur > first[c] ? (unsigned)(cur - first[c]) : 0;
        out->took[c] += smp_counter_get(&m->took[c]);
        out->gave[c] += smp_counter_get(&m->gave[c]);
      }
    }
    smp_lock_release(&locks[i]);
  }
}

bool smp_cpucache_cache_stats(unsigned i, smp_cpucache_cache_stats_t *out, smp_gather_t *g) {
  if (i >= cache_count) return false;
  cache_meta_t *m = &metas[i];
  memset(out, 0, sizeof *out);
  if (!smp_lock_gather(&locks[i], g)) return true;
  if (m->used) {
    out->used = true;
    out->misses = smp_load_relaxed(&m->misses);
    out->restarts = smp_load_relaxed(&hdr_of(i, 0)->hits);
    out->capacity_bytes = m->bytes;
    out->budget_bytes = m->budget;
    for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) {
      cpu_hdr_t *h = hdr_of(i, c);
      uint16_t cur = smp_load_relaxed(&h->current);
      out->hits += smp_load_relaxed(&h->hits);
      out->cached_bytes += (cur > first[c] ? (uint64_t)(cur - first[c]) : 0) * smp_class_info[c].size;
    }
  }
  smp_lock_release(&locks[i]);
  return true;
}

void smp_cpucache_lock_all(void) {
  for (unsigned i = 0; i < cache_count; i++) smp_lock_acquire(&locks[i]);
}
void smp_cpucache_unlock_all(void) {
  for (unsigned i = 0; i < cache_count; i++) smp_lock_release(&locks[i]);
}

unsigned smp_cpucache_count(void) { return cache_count; }
