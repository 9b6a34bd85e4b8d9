// Unit tests of lib/large: page-run and huge blocks, alignment, usable sizes, in-place resize,
// mremap moves, the huge table under many blocks, and invalid-free reports.
#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>

#include "init.h"
#include "large.h"
#include "pageheap.h"
#include "central.h"
// The default heap's page heap, which these tests drive.
#define SMP_TEST_PH (smp_central_default->pages)

static void setup(void) { smp_init_ensure(); }
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
  smp_large_stats(&ls);
  cr_assert_eq(ls.huge_count, 1);
  cr_assert_eq(ls.huge_bytes, usable);
  smp_large_free(p, "t");
  smp_large_stats(&ls);
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
  smp_large_stats(&ls);
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
