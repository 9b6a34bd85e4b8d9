// Unit tests of lib/large: page-run and huge blocks, alignment, usable sizes, in-place resize,
// mremap moves, the huge table under many blocks, and invalid-free reports; the cache of freed
// huge mappings (suite huge_cache): reuse, split, growth, coalescing, zeroing, its bounds, age,
// trim, idle passes, heaps' limits and destruction, and double frees of cached blocks. Time is
// the test's own clock (it steps only when a test says so).
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>

#include "smpalloc.h"
#include "heap.h"
#include "init.h"
#include "large.h"
#include "options.h"
#include "os.h"
#include "pageheap.h"
#include "central.h"
// The default heap's page heap, which these tests drive.
#define SMP_TEST_PH (smp_central_default->pages)

static uint64_t now_ms = 1000000; // the test's clock: only advance() moves it
static uint64_t test_clock(void) { return now_ms; }
static void advance(uint64_t ms) { now_ms += ms; }

static void setup(void) {
  smp_init_ensure();
  smp_os_clock_set(test_clock);
}
TestSuite(large, .init = setup);

Test(large, page_run_blocks_are_whole_pages) {
  void *p = smp_large_alloc(SMP_TEST_PH, 100000, 16, false, false);
  cr_assert_not_null(p);
  cr_assert(smp_pagemap_owns(p));
  size_t usable = smp_large_usable(p, "t");
  cr_assert_eq(usable, 13 * SMP_PAGE_SIZE);
  memset(p, 0x5a, usable);
  smp_large_free(p, "t");
}

Test(large, huge_blocks_are_dedicated_mappings) {
  size_t n = SMP_HUGE_THRESHOLD + 12345;
  char *p = smp_large_alloc(SMP_TEST_PH, n, 16, false, false);
  cr_assert_not_null(p);
  cr_assert_not(smp_pagemap_owns(p), "huge blocks live outside the chunks");
  size_t usable = smp_large_usable(p, "t");
  cr_assert_geq(usable, n);
  cr_assert_lt(usable, n + 4096);
  memset(p, 1, usable);
  smp_large_stats_t ls;
  smp_large_stats(&ls, NULL);
  cr_assert_eq(ls.huge_count, 1);
  cr_assert_eq(ls.huge_bytes, usable);
  smp_large_free(p, "t");
  smp_large_stats(&ls, NULL);
  cr_assert_eq(ls.huge_count, 0);
}

Test(large, alignments_up_to_256_mib) {
  for (size_t align = 4096; align <= ((size_t)256 << 20); align *= 4) {
    size_t sizes[] = {1, 70000, SMP_HUGE_THRESHOLD + 1};
    for (int i = 0; i < 3; i++) {
      char *p = smp_large_alloc(SMP_TEST_PH, sizes[i], align, false, false);
      cr_assert_not_null(p, "align %zu size %zu", align, sizes[i]);
      cr_assert_eq((uintptr_t)p % align, 0, "align %zu size %zu", align, sizes[i]);
      p[0] = 1;
      p[sizes[i] - 1] = 2;
      smp_large_free(p, "t");
    }
  }
}

Test(large, zeroed_on_request_even_after_reuse) {
  char *p = smp_large_alloc(SMP_TEST_PH, 200000, 16, false, false);
  memset(p, 0xff, 200000);
  smp_large_free(p, "t");
  char *q = smp_large_alloc(SMP_TEST_PH, 200000, 16, true, false);
  for (size_t i = 0; i < 200000; i++) cr_assert_eq(q[i], 0, "byte %zu", i);
  smp_large_free(q, "t");
}

Test(large, resize_in_place) {
  char *p = smp_large_alloc(SMP_TEST_PH, 80000, 16, false, false);
  cr_assert(smp_large_resize(p, 300000), "the pages after a fresh run are free");
  cr_assert_geq(smp_large_usable(p, "t"), 300000);
  memset(p, 3, 300000);
  cr_assert(smp_large_resize(p, 70000));
  cr_assert_eq(smp_large_usable(p, "t"), 9 * SMP_PAGE_SIZE);
  smp_large_free(p, "t");

  size_t n = SMP_HUGE_THRESHOLD * 2;
  char *h = smp_large_alloc(SMP_TEST_PH, n, 16, false, false);
  memset(h, 7, n);
  cr_assert(smp_large_resize(h, n / 2), "huge blocks shrink in place");
  cr_assert_eq(smp_large_usable(h, "t"), n / 2);
  char *moved = smp_large_remap(h, n * 4);
  cr_assert_not_null(moved);
  cr_assert_eq(smp_large_usable(moved, "t"), n * 4);
  for (size_t i = 0; i < n / 2; i += 4096) cr_assert_eq(moved[i], 7);
  smp_large_free(moved, "t");
}

Test(large, many_huge_blocks_exercise_the_table) {
  enum { N = 700 };
  static char *p[N];
  for (int i = 0; i < N; i++) {
    p[i] = smp_large_alloc(SMP_TEST_PH, SMP_HUGE_THRESHOLD + (size_t)i * 4096, 16, false, false);
    cr_assert_not_null(p[i]);
    p[i][0] = (char)i;
  }
  for (int i = 0; i < N; i += 2) smp_large_free(p[i], "t");
  for (int i = 1; i < N; i += 2) {
    cr_assert_eq(p[i][0], (char)i);
    cr_assert_eq(smp_large_usable(p[i], "t"), SMP_HUGE_THRESHOLD + (size_t)i * 4096);
  }
  for (int i = 1; i < N; i += 2) smp_large_free(p[i], "t");
  smp_large_stats_t ls;
  smp_large_stats(&ls, NULL);
  cr_assert_eq(ls.huge_count, 0);
}

Test(large, failure_returns_null) {
  cr_assert_null(smp_large_alloc(SMP_TEST_PH, SIZE_MAX, 16, false, false));
  cr_assert_null(smp_large_alloc(SMP_TEST_PH, SIZE_MAX - 4096, 16, false, false));
  cr_assert_null(smp_large_alloc(SMP_TEST_PH, (size_t)1 << 62, 16, false, false));
}

Test(large, double_free_of_a_page_run_aborts, .signal = SIGABRT) {
  void *p = smp_large_alloc(SMP_TEST_PH, 100000, 16, false, false);
  smp_large_free(p, "t");
  smp_large_free(p, "t");
}

Test(large, interior_pointer_aborts, .signal = SIGABRT) {
  char *p = smp_large_alloc(SMP_TEST_PH, 100000, 16, false, false);
  smp_large_free(p + SMP_PAGE_SIZE, "t");
}

Test(large, unknown_mapping_aborts, .signal = SIGABRT) {
  void *m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  smp_large_free(m, "t");
}

// ---- the cache of freed huge mappings ----

#define MIB ((size_t)1 << 20)

// The options these tests are about, whatever SMPALLOC_OPTIONS says.
static void cache_setup(void) {
  setup();
  smp_options.huge_cache = 16;
  smp_options.decay_ms = 1000;
  smp_options.dirty_pct = 100;
  smp_options.debug = false;
}
TestSuite(huge_cache, .init = cache_setup);

static smp_large_stats_t large_stats(void) {
  smp_large_stats_t ls;
  smp_large_stats(&ls, NULL);
  return ls;
}

// Whether any page of [p, p + n) is still mapped (msync fails with ENOMEM where none is).
static bool mapped(void *p, size_t n) {
  return msync(p, n, MS_ASYNC) == 0 || errno != ENOMEM;
}

static char *huge_touched(smp_pageheap_t *ph, size_t n, int byte) {
  char *p = smp_large_alloc(ph, n, 16, false, false);
  cr_assert_not_null(p);
  memset(p, byte, n);
  return p;
}

// The next huge block of the same size takes the freed mapping: no new mapping, and its pages
// are the ones the freed block had faulted in (the old code mapped afresh: nothing resident).
Test(huge_cache, a_freed_mapping_is_reused) {
  size_t n = 8 * MIB;
  char *p = huge_touched(SMP_TEST_PH, n, 0x5a);
  smp_large_free(p, "t");
  smp_large_stats_t s0 = large_stats();
  cr_assert_eq(s0.cached_count, 1);
  cr_assert_eq(s0.cached_bytes, n);
  cr_assert_eq(s0.huge_count, 0, "a cached mapping is no block");
  char *q = smp_large_alloc(SMP_TEST_PH, n, 16, false, false);
  smp_large_stats_t s1 = large_stats();
  cr_assert_eq(q, p);
  cr_assert_eq(s1.maps, s0.maps, "no new mapping");
  cr_assert_eq(s1.reuses, s0.reuses + 1);
  cr_assert_eq(s1.cached_count, 0);
  cr_assert_eq(smp_os_resident(q, n), n, "the reused pages are resident: no page fault");
  smp_large_free(q, "t");
}

Test(huge_cache, calloc_of_a_reused_mapping_is_zero) {
  size_t n = 6 * MIB + 12345;
  char *p = huge_touched(SMP_TEST_PH, n, 0xff);
  smp_large_free(p, "t");
  uint64_t reuses = large_stats().reuses;
  char *q = smp_large_alloc(SMP_TEST_PH, n, 16, true, false);
  cr_assert_eq(q, p);
  cr_assert_eq(large_stats().reuses, reuses + 1, "the freed mapping was reused");
  for (size_t i = 0; i < n; i++)
    if (q[i] != 0)
      cr_assert_fail("byte %zu of a zeroed reused block is 0x%02x", i, (unsigned char)q[i]);
  smp_large_free(q, "t");
}

// A range much larger than the request is split (the block is no more than it asked, the rest
// stays cached); one at most a quarter larger is taken whole, its excess the block's slack
// (not usable, but realloc grows into it); a smaller one (three quarters at least) is grown
// with mremap, its pages kept.
Test(huge_cache, reuse_splits_takes_whole_or_grows) {
  size_t n = 24 * MIB;
  char *p = huge_touched(SMP_TEST_PH, n, 1);
  smp_large_free(p, "t");
  char *a = smp_large_alloc(SMP_TEST_PH, 5 * MIB, 16, false, false);
  cr_assert_eq(a, p, "the head of the range");
  cr_assert_eq(smp_large_usable(a, "t"), 5 * MIB, "a split block is what it asked for");
  smp_large_stats_t s = large_stats();
  cr_assert_eq(s.cached_bytes, 19 * MIB, "the rest stays cached");
  char *b = smp_large_alloc(SMP_TEST_PH, 16 * MIB, 16, false, false);
  cr_assert_eq(b, p + 5 * MIB, "19 MiB for 16 MiB: taken whole");
  cr_assert_eq(smp_large_usable(b, "t"), 16 * MIB, "the usable size is what it asked for");
  s = large_stats();
  cr_assert_eq(s.cached_count, 0);
  cr_assert_eq(s.huge_bytes, 24 * MIB, "a's 5 MiB, b's 16 MiB and 3 MiB of slack are mapped");
  cr_assert(smp_large_resize(b, 18 * MIB + 1), "growth into the slack");
  cr_assert_eq(smp_large_usable(b, "t"), 18 * MIB + 4096);
  cr_assert_eq(large_stats().huge_bytes, 24 * MIB, "no new mapping");
  smp_large_free(b, "t");
  smp_large_stats_t s0 = large_stats();
  char *c = smp_large_alloc(SMP_TEST_PH, 22 * MIB, 16, false, false);
  smp_large_stats_t s1 = large_stats();
  cr_assert_not_null(c);
  cr_assert_eq(s1.maps, s0.maps, "19 MiB grown to 22 MiB: no new mapping");
  cr_assert_eq(s1.reuses, s0.reuses + 1);
  cr_assert_eq(smp_large_usable(c, "t"), 22 * MIB);
  cr_assert_eq(smp_os_resident(c, 19 * MIB), 19 * MIB, "the grown range's pages moved along");
  memset(c, 2, 22 * MIB);
  smp_large_free(c, "t");
  smp_large_free(a, "t");
}

// Blocks cut from one range coalesce back into it when freed.
Test(huge_cache, freed_neighbours_coalesce) {
  char *p = huge_touched(SMP_TEST_PH, 16 * MIB, 1);
  smp_large_free(p, "t");
  char *b = smp_large_alloc(SMP_TEST_PH, 6 * MIB, 16, false, false);
  char *c = smp_large_alloc(SMP_TEST_PH, 6 * MIB, 16, false, false);
  cr_assert_eq(b, p);
  cr_assert_eq(c, p + 6 * MIB);
  smp_large_free(b, "t");
  cr_assert_eq(large_stats().cached_count, 2, "[0, 6) and [12, 16) MiB, apart");
  smp_large_free(c, "t");
  smp_large_stats_t s = large_stats();
  cr_assert_eq(s.cached_count, 1, "one range again");
  cr_assert_eq(s.cached_bytes, 16 * MIB);
  char *d = smp_large_alloc(SMP_TEST_PH, 16 * MIB, 16, false, false);
  cr_assert_eq(d, p);
  smp_large_free(d, "t");
}

// Bounds: at most huge_cache ranges per heap, and bytes up to dirty_pct of the pages the heap
// holds for blocks (at least 32 MiB), the oldest going first. Ten blocks of 3 MiB are cut from
// one 32 MiB range (its last 2 MiB stay cached), and every other one is freed: six ranges that
// cannot coalesce.
Test(huge_cache, the_cache_is_bounded) {
  enum { N = 10 };
  char *x = huge_touched(SMP_TEST_PH, 32 * MIB, 3);
  smp_large_free(x, "t");
  char *a[N];
  for (int i = 0; i < N; i++) {
    a[i] = smp_large_alloc(SMP_TEST_PH, 3 * MIB, 16, false, false);
    cr_assert_eq(a[i], x + (size_t)i * 3 * MIB, "cut from the cached range");
  }
  smp_options.huge_cache = 4;
  for (int i = 0; i < N; i += 2) smp_large_free(a[i], "t");
  smp_large_stats_t s = large_stats();
  cr_assert_eq(s.cached_count, 4, "%zu ranges cached, the bound is 4", s.cached_count);
  cr_assert_eq(s.cached_bytes, 12 * MIB);
  cr_assert_not(mapped(x + 30 * MIB, 2 * MIB), "the oldest range went back");
  cr_assert_not(mapped(a[0], 3 * MIB), "and the next oldest");
  for (int i = 2; i < N; i += 2) cr_assert(mapped(a[i], 3 * MIB));

  smp_options.huge_cache = 16;
  char *big[4];
  for (int i = 0; i < 4; i++) big[i] = huge_touched(SMP_TEST_PH, 12 * MIB, 4);
  for (int i = 0; i < 4; i++) smp_large_free(big[i], "t");
  size_t held = smp_pageheap_held(SMP_TEST_PH) * SMP_PAGE_SIZE;
  cr_assert_eq(held, 15 * MIB, "the five live blocks, under the bound's floor");
  s = large_stats();
  cr_assert_gt(s.cached_bytes, 12 * MIB);
  cr_assert_leq(s.cached_bytes, 32 * MIB, "%zu MiB cached, the bound is 32 MiB",
                s.cached_bytes / MIB);
  for (int i = 1; i < N; i += 2) smp_large_free(a[i], "t");
}

// The byte bound learns: a block mapped afresh soon after the bound cut the cache means the
// cut gave back what the program needed again, so the bound allows that much more, up to what
// the cuts gave back (here the 8 MiB a round needs, not all 20 it mapped); the allowance
// halves every quarter decay_ms.
static void two_blocks_round(int byte) {
  char *c = huge_touched(SMP_TEST_PH, 20 * MIB, byte), *d = huge_touched(SMP_TEST_PH, 20 * MIB, byte);
  smp_large_free(c, "t");
  smp_large_free(d, "t");
}

Test(huge_cache, the_byte_bound_learns_what_the_program_maps_again) {
  two_blocks_round(1);
  cr_assert_eq(large_stats().cached_bytes, 32 * MIB, "no block live: the floor, 32 MiB");
  smp_large_stats_t s0 = large_stats();
  two_blocks_round(2);
  cr_assert_eq(large_stats().maps, s0.maps + 1, "the 12 MiB left is too small: one new mapping");
  cr_assert_eq(large_stats().cached_bytes, 40 * MIB,
               "%zu MiB cached: the bound learned the 8 MiB its cut gave back, not all 20 mapped",
               large_stats().cached_bytes / MIB);
  smp_large_stats_t s1 = large_stats();
  for (int round = 0; round < 4; round++) two_blocks_round(3);
  cr_assert_eq(large_stats().maps, s1.maps, "the 40 MiB kept is what a round needs: no mapping");
  cr_assert_eq(large_stats().cached_bytes, 40 * MIB);
  advance(600); // two quarters of decay_ms past the learning: a quarter of it is left
  smp_large_free(huge_touched(SMP_TEST_PH, 20 * MIB, 5), "t");
  cr_assert_eq(large_stats().cached_bytes, 34 * MIB, "%zu MiB cached: 32 + 8/4",
               large_stats().cached_bytes / MIB);
}

// A range unused for decay_ms goes back, on a huge call or on a background pass; an idle
// heap's ranges all go back on its pass; trim gives back all of them.
Test(huge_cache, aged_idle_and_trimmed_ranges_go_back) {
  char *p = huge_touched(SMP_TEST_PH, 8 * MIB, 1);
  smp_large_free(p, "t");
  advance(999);
  smp_large_pass(SMP_TEST_PH, false);
  cr_assert_eq(large_stats().cached_count, 1, "younger than decay_ms: kept");
  char *q = huge_touched(SMP_TEST_PH, 12 * MIB, 2); // a new mapping: 8 MiB is too small to grow
  cr_assert_neq(q, p);
  advance(1);
  smp_large_free(q, "t"); // the huge call gives back p's range, which came of age
  smp_large_stats_t s = large_stats();
  cr_assert_eq(s.cached_count, 1);
  cr_assert_eq(s.cached_bytes, 12 * MIB);
  cr_assert_not(mapped(p, 8 * MIB), "the aged range is unmapped");
  advance(1000);
  smp_large_pass(SMP_TEST_PH, false);
  cr_assert_eq(large_stats().cached_count, 0, "the pass gives back what came of age");
  cr_assert_not(mapped(q, 12 * MIB));

  p = huge_touched(SMP_TEST_PH, 8 * MIB, 1);
  smp_large_free(p, "t");
  smp_large_pass(SMP_TEST_PH, true);
  cr_assert_eq(large_stats().cached_count, 0, "an idle heap keeps nothing");
  p = huge_touched(SMP_TEST_PH, 8 * MIB, 1);
  smp_large_free(p, "t");
  cr_assert_eq(smp_trim(), 1, "trim released the cached range");
  cr_assert_eq(large_stats().cached_count, 0);
  cr_assert_not(mapped(p, 8 * MIB));
}

// A heap's limit counts its blocks, not its cached ranges; a reused range is charged again.
// Destroying the heap unmaps its cached ranges. A heap's ranges are its own.
Test(huge_cache, heaps_limits_and_destruction) {
  smp_heap_t *h = smp_heap_create("huge", 40 * MIB);
  cr_assert_not_null(h);
  smp_pageheap_t *ph = &h->pages;
  char *p = huge_touched(ph, 30 * MIB, 1);
  smp_large_free(p, "t");
  smp_stats_t st = {.version = SMP_STATS_VERSION, .size = sizeof st};
  cr_assert_eq(smp_heap_stats_get(h, &st), 0);
  cr_assert_eq(st.held, 0, "a cached range is not held for a block");
  cr_assert_eq(st.huge_cached, 30 * MIB);
  cr_assert_eq(st.in_use, 0);
  size_t cached;
  cr_assert_eq(smp_large_cached_of(ph, &cached, NULL), 1);
  cr_assert_eq(cached, 30 * MIB);
  char *d = smp_large_alloc(SMP_TEST_PH, 30 * MIB, 16, false, false);
  cr_assert_neq(d, p, "the default heap does not take another heap's range");
  smp_large_free(d, "t");
  smp_large_trim(SMP_TEST_PH);
  char *q = smp_large_alloc(ph, 35 * MIB, 16, false, false);
  cr_assert_not_null(q, "30 MiB cached do not count against the 40 MiB limit");
  cr_assert_eq(smp_heap_stats_get(h, &st), 0);
  cr_assert_eq(st.held, 35 * MIB, "the reused range is charged");
  cr_assert_null(smp_large_alloc(ph, 6 * MIB, 16, false, false), "the limit holds");
  smp_large_free(q, "t");
  cr_assert_eq(smp_large_cached_of(ph, NULL, NULL), 1);
  smp_heap_destroy(h);
  cr_assert_eq(large_stats().cached_count, 0, "destroy gave the heap's cached range back");
  cr_assert_not(mapped(q, 35 * MIB));
}

// No cache: with huge_cache 0 or debug:1, a free unmaps at once.
Test(huge_cache, off_unmaps_at_once) {
  for (int mode = 0; mode < 2; mode++) {
    smp_options.huge_cache = mode == 0 ? 0 : 16;
    smp_options.debug = mode == 1;
    char *p = huge_touched(SMP_TEST_PH, 8 * MIB, 1);
    smp_large_free(p, "t");
    cr_assert_eq(large_stats().cached_count, 0);
    cr_assert_not(mapped(p, 8 * MIB));
  }
}

// A cached range is no block: freeing its address again is reported, whether it starts the
// range or lies inside one it coalesced into.
Test(huge_cache, double_free_of_a_cached_block_aborts, .signal = SIGABRT) {
  char *p = huge_touched(SMP_TEST_PH, 8 * MIB, 1);
  smp_large_free(p, "t");
  smp_large_free(p, "t");
}

Test(huge_cache, double_free_inside_a_coalesced_range_aborts, .signal = SIGABRT) {
  char *p = huge_touched(SMP_TEST_PH, 16 * MIB, 1);
  smp_large_free(p, "t");
  char *b = smp_large_alloc(SMP_TEST_PH, 6 * MIB, 16, false, false);
  char *c = smp_large_alloc(SMP_TEST_PH, 6 * MIB, 16, false, false);
  smp_large_free(b, "t");
  smp_large_free(c, "t"); // one range from p again
  smp_large_free(c, "t");
}
