// Layer: caches. See hcache.h. Retired caches (their thread exited, or their heap was destroyed
// and the thread reclaimed them) wait on a spare list for reuse; their memory is never unmapped.
#include <pthread.h>
#include <string.h>

#include "hcache.h"
#include "options.h"
#include "os.h"
#include "sizeclass.h"

__thread smp_hcache_t *smp_hcache_ways[SMP_HCACHE_WAYS] SMP_TLS_IE;

static smp_lock_t spare_lock = SMP_LOCK_INIT;
static smp_hcache_t *spare; // spare_lock: linked through next
static pthread_key_t exit_key;
static bool have_exit_key;
static __thread bool exit_key_set SMP_TLS_IE;
static __thread bool exited SMP_TLS_IE; // thread exit flushed the caches: later frees go direct

void smp_hcache_set_exit_key(unsigned key) {
  exit_key = (pthread_key_t)key;
  have_exit_key = true;
}

void smp_hcache_init_set(smp_hcache_set_t *set, smp_central_t *central, bool init_lock) {
  if (init_lock) smp_lock_init(&set->lock);
  set->central = central;
}

static unsigned refill_batch(unsigned cls) {
  unsigned b = smp_class_info[cls].batch;
  return b == 0 ? 1 : b > SMP_HCACHE_CAP / 2 ? SMP_HCACHE_CAP / 2 : b;
}

// Give the blocks in slots [from, to) of class cls back; count already stored as from.
static void flush_range(smp_hcache_set_t *set, smp_hcache_t *hc, unsigned cls, uint32_t from,
                        uint32_t to) {
  void *out[SMP_HCACHE_CAP];
  for (uint32_t i = from; i < to; i++) out[i - from] = smp_load_relaxed(&hc->slots[cls][i]);
  smp_counter_add_shared(&set->gave[cls], to - from);
  smp_central_flush(out, to - from);
}

static void flush_all_locked(smp_hcache_set_t *set, smp_hcache_t *hc) {
  for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) {
    uint32_t n = smp_load_relaxed(&hc->count[c]);
    if (n == 0) continue;
    smp_store_release(&hc->count[c], 0);
    flush_range(set, hc, c, 0, n);
  }
}

static void unlink_locked(smp_hcache_set_t *set, smp_hcache_t *hc) {
  if (hc->prev) hc->prev->next = hc->next; else set->list = hc->next;
  if (hc->next) hc->next->prev = hc->prev;
  hc->next = hc->prev = NULL;
}

static void retire(smp_hcache_t *hc) {
  smp_lock_acquire(&spare_lock);
  hc->next = spare;
  spare = hc;
  smp_lock_release(&spare_lock);
}

// Flush and unlink hc unless its heap detached it first; then it is the caller's to retire.
static void release_way(smp_hcache_t *hc) {
  smp_hcache_set_t *set = smp_load_acquire(&hc->set); // NULL: detach is done with hc
  if (set != NULL) {
    smp_lock_acquire(&set->lock);
    if (smp_load_relaxed(&hc->set) == set) { // not detached meanwhile
      flush_all_locked(set, hc);
      unlink_locked(set, hc);
      smp_store_relaxed(&hc->set, NULL);
    }
    smp_lock_release(&set->lock);
  }
  retire(hc);
}

static __thread unsigned next_victim SMP_TLS_IE; // the way a fifth heap takes next
static __thread uint64_t misses SMP_TLS_IE;       // this thread's lookups that found no cache
static __thread uint64_t born[SMP_HCACHE_WAYS] SMP_TLS_IE; // misses when each way was filled

// A way for a new cache: an empty one, a detached one (reclaimed), or the oldest (flushed);
// SMP_HCACHE_WAYS if the oldest was filled fewer than SMP_HCACHE_KEEP misses ago. A thread
// that works with more heaps at once than it has ways (a server with a heap per connection)
// would otherwise flush a cache and fill another at every call; it goes to the heap's central
// lists directly instead, and the ways change at most once per KEEP / WAYS misses.
static unsigned free_way(void) {
  for (unsigned i = 0; i < SMP_HCACHE_WAYS; i++)
    if (smp_hcache_ways[i] == NULL) return i;
  for (unsigned i = 0; i < SMP_HCACHE_WAYS; i++)
    if (smp_load_acquire(&smp_hcache_ways[i]->set) == NULL) { // see smp_hcache_detach_all
      retire(smp_hcache_ways[i]);
      smp_hcache_ways[i] = NULL;
      return i;
    }
  // All four in use: the oldest goes (ways fill in order, and victims rotate: first in, first
  // out), unless it is too young.
  unsigned oldest = next_victim % SMP_HCACHE_WAYS;
  if (misses - born[oldest] < SMP_HCACHE_KEEP) return SMP_HCACHE_WAYS;
  next_victim++;
  release_way(smp_hcache_ways[oldest]);
  smp_hcache_ways[oldest] = NULL;
  return oldest;
}

// The calling thread's cache of set, created if needed (not with nowait: it may map memory).
static smp_hcache_t *find_or_create(smp_hcache_set_t *set, bool nowait) {
  smp_hcache_t *hc = smp_hcache_find(set);
  if (hc || nowait || exited || smp_options.debug) return hc; // debug mode caches nothing
  misses++;
  unsigned way = free_way();
  if (way == SMP_HCACHE_WAYS) return NULL; // too many heaps at once: this call goes direct
  smp_lock_acquire(&spare_lock);
  hc = spare;
  if (hc) spare = hc->next;
  smp_lock_release(&spare_lock);
  if (hc == NULL && (hc = smp_os_map(sizeof *hc)) == NULL) return NULL;
  memset(hc->count, 0, sizeof hc->count); // the slots above a count are never read
  hc->prev = NULL;
  smp_lock_acquire(&set->lock);
  hc->next = set->list;
  if (set->list) set->list->prev = hc;
  set->list = hc;
  smp_store_relaxed(&hc->set, set);
  smp_lock_release(&set->lock);
  smp_hcache_ways[way] = hc;
  born[way] = misses;
  if (have_exit_key && !exit_key_set) {
    exit_key_set = true;
    pthread_setspecific(exit_key, (void *)1); // may call calloc: the cache is in place
  }
  return hc;
}

void *smp_hcache_alloc_slow(smp_hcache_set_t *set, unsigned cls, bool nowait) {
  smp_hcache_t *hc = find_or_create(set, nowait);
  void *got[SMP_HCACHE_CAP];
  unsigned want = hc ? refill_batch(cls) : 1;
  unsigned n = smp_central_refill(set->central, cls, got, want, nowait);
  if (n == 0) return NULL;
  smp_counter_add_shared(&set->took[cls], n);
  if (hc) {
    uint32_t c = smp_load_relaxed(&hc->count[cls]); // 0: this is a miss
    for (unsigned i = 0; i + 1 < n; i++) smp_store_relaxed(&hc->slots[cls][c + i], got[i]);
    smp_store_release(&hc->count[cls], c + n - 1);
  }
  if (SMP_ASAN) smp_asan_unpoison(got[n - 1], smp_class_info[cls].size); // asan.h
  return got[n - 1];
}

void smp_hcache_free_slow(smp_hcache_set_t *set, void *p, unsigned cls) {
  smp_hcache_t *hc = find_or_create(set, false);
  if (hc == NULL) {
    smp_counter_add_shared(&set->gave[cls], 1);
    smp_central_flush(&p, 1);
    return;
  }
  uint32_t c = smp_load_relaxed(&hc->count[cls]);
  if (c == SMP_HCACHE_CAP) { // flush the upper half (the smaller count first: see hcache.h)
    c = SMP_HCACHE_CAP / 2;
    smp_store_release(&hc->count[cls], c);
    flush_range(set, hc, cls, c, SMP_HCACHE_CAP);
  }
  smp_store_relaxed(&hc->slots[cls][c], p);
  smp_store_release(&hc->count[cls], c + 1);
}

bool smp_hcache_holds(smp_hcache_set_t *set, unsigned cls, const void *p) {
  bool found = false;
  smp_lock_acquire(&set->lock);
  for (smp_hcache_t *hc = set->list; hc && !found; hc = hc->next) {
    uint32_t n = smp_load_acquire(&hc->count[cls]);
    for (uint32_t i = 0; i < n && !found; i++) found = smp_load_relaxed(&hc->slots[cls][i]) == p;
  }
  smp_lock_release(&set->lock);
  return found;
}

void smp_hcache_each_cached(smp_hcache_set_t *set, void (*fn)(void *block, void *arg), void *arg) {
  for (smp_hcache_t *hc = set->list; hc; hc = hc->next)
    for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) {
      uint32_t n = smp_load_acquire(&hc->count[c]);
      for (uint32_t i = 0; i < n; i++) fn(smp_load_relaxed(&hc->slots[c][i]), arg);
    }
}

void smp_hcache_cached(smp_hcache_set_t *set, uint64_t blocks[SMP_CLASS_COUNT], smp_gather_t *g) {
  for (unsigned c = 0; c < SMP_CLASS_COUNT; c++) blocks[c] = 0;
  if (!smp_lock_gather(&set->lock, g)) return;
  for (smp_hcache_t *hc = set->list; hc; hc = hc->next)
    for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) blocks[c] += smp_load_acquire(&hc->count[c]);
  smp_lock_release(&set->lock);
}

void smp_hcache_flush_self(smp_hcache_set_t *set) {
  smp_hcache_t *hc = smp_hcache_find(set);
  if (hc == NULL) return;
  smp_lock_acquire(&set->lock);
  if (smp_load_relaxed(&hc->set) == set) flush_all_locked(set, hc);
  smp_lock_release(&set->lock);
}

void smp_hcache_detach_all(smp_hcache_set_t *set) {
  smp_lock_acquire(&set->lock);
  for (smp_hcache_t *hc = set->list, *next; hc; hc = next) {
    next = hc->next; // read before the release: then hc is its owner's, who may reuse it
    smp_store_release(&hc->set, NULL);
  }
  set->list = NULL;
  smp_lock_release(&set->lock);
}

void smp_hcache_thread_exit(void *unused) {
  (void)unused;
  exited = true;
  for (unsigned i = 0; i < SMP_HCACHE_WAYS; i++) {
    smp_hcache_t *hc = smp_hcache_ways[i];
    smp_hcache_ways[i] = NULL;
    if (hc) release_way(hc);
  }
}

void smp_hcache_lock_fork(void) { smp_lock_acquire(&spare_lock); }
void smp_hcache_unlock_fork(void) { smp_lock_release(&spare_lock); }
