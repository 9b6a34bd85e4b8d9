// Layer: caches. See tcache.h. Ordering rule that makes fork adoption sound: an operation
// that moves blocks out of a bin stores the smaller count before the blocks are handed on; one
// that moves blocks in fills the slots before storing the larger count (release); and one that
// moves blocks within the bin (the flush of its oldest batch) first stores count 0, fenced
// before the moves, so the bin reads empty while slots below the old count hold copies. A child
// forked at any instant therefore sees each block either in the bin (below count) or outside
// it, never both and never twice; a block in flight is leaked in the child, never handed out
// twice.
#include <string.h>

#include "central.h"
#include "options.h"
#include "os.h"
#include "sizeclass.h"
#include "tcache.h"

static smp_tcache_t boot_cache = {.kind = SMP_TCACHE_BOOT};
static smp_tcache_t dead_cache = {.kind = SMP_TCACHE_DEAD};
__thread smp_tcache_t *smp_tcache_self SMP_TLS_IE = &boot_cache;

static smp_lock_t registry_lock = SMP_LOCK_INIT;
static smp_tcache_t *live;  // registry lock: caches of live threads
static smp_tcache_t *spare; // registry lock: retired caches, reused by new threads
static uint64_t live_count, exited_count;
// Blocks taken/returned by retired caches and by cache-less (dead or debug) operations.
static smp_counter_t retired_took[SMP_CLASS_COUNT], retired_gave[SMP_CLASS_COUNT];
static pthread_key_t exit_key;
static bool have_exit_key;

void smp_tcache_set_exit_key(unsigned key) {
  exit_key = (pthread_key_t)key;
  have_exit_key = true;
}

static size_t cache_bytes(void) {
  size_t slots = 0;
  for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) slots += smp_class_info[c].cache_cap;
  return smp_align_up(sizeof(smp_tcache_t) + slots * sizeof(void *), smp_os_page_size());
}

static void registry_link_locked(smp_tcache_t *tc) {
  tc->prev = NULL;
  tc->next = live;
  if (live) live->prev = tc;
  live = tc;
  live_count++;
}

static void registry_unlink_locked(smp_tcache_t *tc) {
  if (tc->prev) tc->prev->next = tc->next; else live = tc->next;
  if (tc->next) tc->next->prev = tc->prev;
  live_count--;
  exited_count++;
  for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) {
    smp_counter_add_shared(&retired_took[c], smp_counter_get(&tc->took[c]));
    smp_counter_add_shared(&retired_gave[c], smp_counter_get(&tc->gave[c]));
  }
  tc->next = spare;
  spare = tc;
}

// Create the calling thread's cache; NULL if the OS has no memory (the thread then runs
// without a cache until a later miss succeeds).
static smp_tcache_t *create(void) {
  smp_lock_acquire(&registry_lock);
  smp_tcache_t *tc = spare;
  if (tc) spare = tc->next;
  smp_lock_release(&registry_lock);
  if (tc == NULL && (tc = smp_os_map(cache_bytes())) == NULL) return NULL;
  memset(tc, 0, sizeof *tc);
  _Atomic(void *) *slot = (_Atomic(void *) *)(tc + 1);
  for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) {
    tc->bins[c].slots = slot;
    tc->bins[c].cap = smp_options.debug ? 0 : smp_class_info[c].cache_cap;
    slot += smp_class_info[c].cache_cap;
  }
  tc->kind = SMP_TCACHE_LIVE;
  smp_lock_acquire(&registry_lock);
  registry_link_locked(tc);
  smp_lock_release(&registry_lock);
  smp_tcache_self = tc;
  // May call calloc (glibc's second-level key table): our cache is already in place.
  if (have_exit_key) pthread_setspecific(exit_key, tc);
  return tc;
}

static smp_tcache_t *self_or_create(void) {
  smp_tcache_t *tc = smp_tcache_self;
  if (tc->kind == SMP_TCACHE_BOOT) tc = create();
  return tc;
}

void *smp_tcache_alloc_slow(unsigned cls) {
  smp_tcache_t *tc = self_or_create();
  if (tc == NULL || tc->bins[cls].cap == 0) { // dead thread, debug mode, or no cache memory
    void *p;
    if (smp_central_refill(smp_central_default, cls, &p, 1, false) == 0) return NULL;
    smp_counter_add_shared(&retired_took[cls], 1);
    return p;
  }
  smp_cache_bin_t *b = &tc->bins[cls];
  unsigned want = smp_class_info[cls].batch;
  void *got[64];
  unsigned n = smp_central_refill(smp_central_default, cls, got, want ? want : 1, false);
  if (n == 0) return NULL;
  smp_counter_add(&tc->took[cls], n);
  for (unsigned i = 0; i + 1 < n; i++) smp_store_relaxed(&b->slots[i], got[i]);
  smp_store_release(&b->count, n - 1);
  return got[n - 1];
}

void *smp_tcache_alloc_nowait(unsigned cls) {
  void *p;
  if (smp_central_refill(smp_central_default, cls, &p, 1, true) == 0) return NULL;
  smp_counter_add_shared(&retired_took[cls], 1);
  return p;
}

void smp_tcache_free_slow(void *p, unsigned cls) {
  smp_tcache_t *tc = self_or_create();
  if (tc == NULL || tc->bins[cls].cap == 0) {
    smp_central_flush(&p, 1);
    smp_counter_add_shared(&retired_gave[cls], 1);
    return;
  }
  smp_cache_bin_t *b = &tc->bins[cls];
  uint32_t count = smp_load_relaxed(&b->count);
  if (count == b->cap) { // flush the oldest batch (bottom of the stack), keep the hot top
    void *out[64];
    unsigned k = smp_class_info[cls].batch;
    for (unsigned i = 0; i < k; i++) out[i] = smp_load_relaxed(&b->slots[i]);
    smp_store_relaxed(&b->count, 0); // empty while the rest moves down (see the file header)
    smp_fence_release();
    for (unsigned i = k; i < count; i++)
      smp_store_relaxed(&b->slots[i - k], smp_load_relaxed(&b->slots[i]));
    count -= k;
    smp_store_release(&b->count, count);
    smp_counter_add(&tc->gave[cls], k);
    smp_central_give(smp_central_default, cls, out, k);
  }
  smp_store_relaxed(&b->slots[count], p);
  smp_store_release(&b->count, count + 1);
}

static void flush_all(smp_tcache_t *tc) {
  for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) {
    smp_cache_bin_t *b = &tc->bins[c];
    uint32_t n = smp_load_relaxed(&b->count);
    if (n == 0) continue;
    void *out[64];
    for (uint32_t i = 0; i < n; i++) out[i] = smp_load_relaxed(&b->slots[i]);
    smp_store_release(&b->count, 0);
    smp_counter_add(&tc->gave[c], n);
    smp_central_flush(out, n);
  }
}

void smp_tcache_flush_self(void) {
  smp_tcache_t *tc = smp_tcache_self;
  if (tc->kind == SMP_TCACHE_LIVE) flush_all(tc);
}

bool smp_tcache_holds(unsigned cls, const void *p) {
  bool found = false;
  smp_lock_acquire(&registry_lock);
  for (smp_tcache_t *tc = live; tc && !found; tc = tc->next) {
    smp_cache_bin_t *b = &tc->bins[cls];
    uint32_t n = smp_load_acquire(&b->count); // slots below it are as the owner left them
    for (uint32_t i = 0; i < n && !found; i++) found = smp_load_relaxed(&b->slots[i]) == p;
  }
  smp_lock_release(&registry_lock);
  return found;
}

void smp_tcache_thread_exit(void *cache) {
  smp_tcache_t *tc = cache;
  if (tc == NULL || tc->kind != SMP_TCACHE_LIVE) return;
  flush_all(tc);
  smp_tcache_self = &dead_cache;
  smp_lock_acquire(&registry_lock);
  registry_unlink_locked(tc);
  smp_lock_release(&registry_lock);
}

void smp_tcache_stats(smp_tcache_stats_t *out, smp_gather_t *g) {
  memset(out, 0, sizeof *out);
  // A retiring cache moves its counts to retired_* under the lock, so both are read under it
  // for a sum that counts each cache once; without it (given up), the retired ones alone.
  bool locked = smp_lock_gather(&registry_lock, g);
  for (unsigned c = 1; c < SMP_CLASS_COUNT; c++)
    out->cls[c].held = smp_counter_get(&retired_took[c]) - smp_counter_get(&retired_gave[c]);
  if (!locked) return;
  for (smp_tcache_t *tc = live; tc; tc = tc->next)
    for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) {
      out->cls[c].held += smp_counter_get(&tc->took[c]) - smp_counter_get(&tc->gave[c]);
      out->cls[c].cached += smp_load_relaxed(&tc->bins[c].count);
    }
  out->live = live_count;
  out->exited = exited_count;
  smp_lock_release(&registry_lock);
}

void smp_tcache_each_cached(void (*fn)(void *block, void *arg), void *arg) {
  smp_lock_acquire(&registry_lock);
  for (smp_tcache_t *tc = live; tc; tc = tc->next)
    for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) {
      smp_cache_bin_t *b = &tc->bins[c];
      uint32_t n = smp_load_acquire(&b->count);
      for (uint32_t i = 0; i < n; i++) fn(smp_load_relaxed(&b->slots[i]), arg);
    }
  smp_lock_release(&registry_lock);
}

void smp_tcache_lock_all(void) { smp_lock_acquire(&registry_lock); }
void smp_tcache_unlock_all(void) { smp_lock_release(&registry_lock); }

void smp_tcache_adopt_orphans(void) {
  smp_lock_acquire(&registry_lock);
  smp_tcache_t *self = smp_tcache_self;
  for (smp_tcache_t *tc = live, *next; tc; tc = next) {
    next = tc->next;
    if (tc == self) continue;
    flush_all(tc); // its thread does not exist in the child
    registry_unlink_locked(tc);
  }
  smp_lock_release(&registry_lock);
}
