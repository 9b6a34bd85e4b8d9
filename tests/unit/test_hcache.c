// Unit tests of lib/caches/hcache: the per-thread caches of heaps other than the default one.
// Refill and hits, the bound of a class and the flush of half of it, the double-free search of
// the caches (holds), the listing of cached blocks, detaching at heap destruction, the four
// ways per thread, thread exit, and SMP_NOWAIT (no cache is created, one block is taken).
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>

#include "central.h"
#include "hcache.h"
#include "heap.h"
#include "options.h"
#include "sizeclass.h"
#include "span.h"

static void setup(void) {
  smp_options_parse(getenv("SMPALLOC_OPTIONS"));
  smp_sizeclass_init(smp_options.cache_size);
  smp_span_init_keys(7);
}
TestSuite(hcache, .init = setup);

enum { CLS = 4 }; // 64-byte blocks

static uint32_t count(smp_hcache_set_t *set, unsigned cls) {
  smp_hcache_t *hc = smp_hcache_find(set);
  return hc ? smp_load_relaxed(&hc->count[cls]) : 0;
}

static void count_block(void *b, void *arg) {
  (void)b;
  (*(unsigned *)arg)++;
}

Test(hcache, a_miss_refills_and_hits_follow) {
  smp_heap_t *h = smp_heap_new("unit", 0);
  smp_hcache_set_t *set = &h->caches;
  cr_assert_null(smp_hcache_find(set), "no cache before the first miss");
  cr_assert_null(smp_hcache_alloc_fast(set, CLS));
  void *p = smp_hcache_alloc_slow(set, CLS, false);
  cr_assert_not_null(p);
  uint32_t n = count(set, CLS);
  cr_assert_gt(n, 0, "the refill left blocks in the cache");
  cr_assert_leq(n, SMP_HCACHE_CAP / 2);
  for (uint32_t i = 0; i < n; i++) {
    void *q = smp_hcache_alloc_fast(set, CLS);
    cr_assert_not_null(q);
    cr_assert_neq(q, p);
    cr_assert_eq(smp_heap_of_chunk(smp_span_chunk(smp_pagemap_span_checked(q))), h);
  }
  cr_assert_null(smp_hcache_alloc_fast(set, CLS), "empty again after the hits");
  smp_heap_delete(h, false);
}

Test(hcache, a_full_class_flushes_half_and_keeps_the_block) {
  smp_heap_t *h = smp_heap_new("unit", 0);
  smp_hcache_set_t *set = &h->caches;
  void *b[SMP_HCACHE_CAP + 1];
  for (unsigned i = 0; i <= SMP_HCACHE_CAP; i++) {
    b[i] = smp_hcache_alloc_fast(set, CLS);
    if (b[i] == NULL) b[i] = smp_hcache_alloc_slow(set, CLS, false);
    cr_assert_not_null(b[i]);
  }
  void *extra[SMP_HCACHE_CAP];
  unsigned extras = 0; // what the refills left in the cache: taken out, so it is empty
  while ((extra[extras] = smp_hcache_alloc_fast(set, CLS)) != NULL) extras++;
  cr_assert_eq(count(set, CLS), 0);
  uint64_t gave = smp_load_relaxed(&set->gave[CLS]);
  for (unsigned i = 0; i < SMP_HCACHE_CAP; i++) {
    smp_block_mark(b[i]);
    cr_assert(smp_hcache_free_fast(set, b[i], CLS), "push %u fits", i);
  }
  smp_block_mark(b[SMP_HCACHE_CAP]);
  cr_assert_not(smp_hcache_free_fast(set, b[SMP_HCACHE_CAP], CLS), "a full class misses");
  smp_hcache_free_slow(set, b[SMP_HCACHE_CAP], CLS);
  cr_assert_eq(count(set, CLS), SMP_HCACHE_CAP / 2 + 1);
  cr_assert_eq(smp_load_relaxed(&set->gave[CLS]), gave + SMP_HCACHE_CAP / 2);
  cr_assert_eq(smp_hcache_alloc_fast(set, CLS), b[SMP_HCACHE_CAP], "the newest block is on top");
  smp_heap_delete(h, false);
}

Test(hcache, holds_finds_cached_blocks_only) {
  smp_heap_t *h = smp_heap_new("unit", 0);
  smp_hcache_set_t *set = &h->caches;
  void *live = smp_hcache_alloc_slow(set, CLS, false);
  void *freed = smp_hcache_alloc_fast(set, CLS);
  if (freed == NULL) freed = smp_hcache_alloc_slow(set, CLS, false);
  smp_block_mark(freed);
  cr_assert(smp_hcache_free_fast(set, freed, CLS));
  cr_assert(smp_hcache_holds(set, CLS, freed), "a cached block is found");
  cr_assert_not(smp_hcache_holds(set, CLS, live), "a live block is not");
  cr_assert_not(smp_hcache_holds(set, CLS + 1, freed), "nor a block under another class");
  unsigned n = 0;
  smp_lock_acquire(&set->lock);
  smp_hcache_each_cached(set, count_block, &n);
  smp_lock_release(&set->lock);
  cr_assert_eq(n, count(set, CLS), "each_cached lists exactly the cached blocks");
  smp_heap_delete(h, false);
}

Test(hcache, destruction_detaches_the_cache) {
  smp_heap_t *h = smp_heap_new("unit", 0);
  smp_hcache_set_t *set = &h->caches;
  cr_assert_not_null(smp_hcache_alloc_slow(set, CLS, false));
  smp_hcache_t *hc = smp_hcache_find(set);
  cr_assert_not_null(hc);
  smp_hcache_detach_all(set);
  cr_assert_null(smp_load_relaxed(&hc->set));
  cr_assert_null(smp_hcache_find(set), "a detached cache is never found again");
  cr_assert_null(smp_hcache_alloc_fast(set, CLS));
  cr_assert_null(set->list);
  smp_heap_delete(h, false);
}

// A fifth heap right after four goes to its central lists directly (a thread that rotates over
// many heaps would otherwise flush a way at every call: 198 ns a pair over 25 heaps, 98 ns
// direct); once the oldest way has seen SMP_HCACHE_KEEP misses, a fifth heap takes it, flushed.
Test(hcache, a_fifth_heap_goes_direct_then_evicts_the_oldest_way) {
  smp_heap_t *h[SMP_HCACHE_WAYS + 1];
  for (unsigned i = 0; i <= SMP_HCACHE_WAYS; i++) {
    h[i] = smp_heap_new("unit", 0);
    cr_assert_not_null(smp_hcache_alloc_slow(&h[i]->caches, CLS, false));
  }
  smp_hcache_set_t *fifth = &h[SMP_HCACHE_WAYS]->caches;
  cr_assert_null(smp_hcache_find(fifth), "a fifth heap at once gets no way");
  cr_assert_eq(smp_load_relaxed(&fifth->took[CLS]), 1, "its block came alone, from its lists");
  for (unsigned i = 0; i < SMP_HCACHE_WAYS; i++)
    cr_assert_not_null(smp_hcache_find(&h[i]->caches), "heap %u keeps its way", i);
  for (unsigned k = 0; k < SMP_HCACHE_KEEP && smp_hcache_find(fifth) == NULL; k++)
    cr_assert_not_null(smp_hcache_alloc_slow(fifth, CLS, false));
  cr_assert_not_null(smp_hcache_find(fifth), "after %u misses the fifth heap has a way",
                     SMP_HCACHE_KEEP);
  cr_assert_null(smp_hcache_find(&h[0]->caches), "the oldest way went");
  unsigned found = 0;
  for (unsigned i = 0; i <= SMP_HCACHE_WAYS; i++) found += smp_hcache_find(&h[i]->caches) != NULL;
  cr_assert_eq(found, SMP_HCACHE_WAYS, "a thread keeps %u heaps' caches", SMP_HCACHE_WAYS);
  smp_hcache_set_t *first = &h[0]->caches; // evicted: its blocks went back, none is cached
  cr_assert_eq(smp_load_relaxed(&first->took[CLS]) - smp_load_relaxed(&first->gave[CLS]), 1);
  for (unsigned i = 0; i <= SMP_HCACHE_WAYS; i++) smp_heap_delete(h[i], false);
}

static void *exiting_thread(void *arg) {
  smp_hcache_set_t *set = arg;
  void *p = smp_hcache_alloc_slow(set, CLS, false);
  smp_block_mark(p);
  if (!smp_hcache_free_fast(set, p, CLS)) smp_hcache_free_slow(set, p, CLS);
  smp_hcache_thread_exit(NULL); // what the pthread key's destructor does
  return NULL;
}

Test(hcache, thread_exit_returns_every_cached_block) {
  smp_heap_t *h = smp_heap_new("unit", 0);
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, exiting_thread, &h->caches), 0);
  pthread_join(t, NULL);
  smp_hcache_set_t *set = &h->caches;
  cr_assert_eq(smp_load_relaxed(&set->took[CLS]), smp_load_relaxed(&set->gave[CLS]));
  cr_assert_null(set->list, "the exited thread's cache left the heap's list");
  smp_heap_delete(h, false);
}

Test(hcache, nowait_creates_no_cache) {
  smp_heap_t *h = smp_heap_new("unit", 0);
  smp_hcache_set_t *set = &h->caches;
  // A fresh heap has no pages, and NOWAIT may not map any: nothing.
  cr_assert_null(smp_hcache_alloc_slow(set, CLS, true));
  void *b; // a span of the class, then
  cr_assert_eq(smp_central_refill(&h->central, CLS, &b, 1, false), 1);
  smp_block_mark(b);
  smp_central_flush(&b, 1);
  void *p = smp_hcache_alloc_slow(set, CLS, true);
  cr_assert_null(smp_hcache_find(set), "SMP_NOWAIT may not map a cache");
  cr_assert_not_null(p, "one block straight from the central lists");
  cr_assert_eq(smp_load_relaxed(&set->took[CLS]), 1);
  smp_heap_delete(h, false);
}
