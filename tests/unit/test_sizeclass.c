// Unit tests of lib/sizeclass: the layout rule, the waste bound, span geometry, fast lookup.
#include <criterion/criterion.h>

#include "sizeclass.h"

static void setup(void) { smp_sizeclass_init(1 << 20); }

TestSuite(sizeclass, .init = setup);

// Brute force: the smallest class that holds n.
static unsigned brute_class(size_t n) {
  for (unsigned c = 1; c < SMP_CLASS_COUNT; c++)
    if (smp_class_info[c].size >= n) return c;
  return 0;
}

Test(sizeclass, lookup_matches_brute_force_for_every_size) {
  cr_assert_eq(smp_sizeclass_of(0), 1);
  for (size_t n = 1; n <= SMP_SMALL_MAX; n++)
    cr_assert_eq(smp_sizeclass_of(n), brute_class(n), "size %zu", n);
}

Test(sizeclass, waste_bound_holds_for_every_size) {
  size_t worst_n = 0;
  double worst = 0;
  for (size_t n = 1; n <= SMP_SMALL_MAX; n++) {
    size_t waste = smp_class_info[smp_sizeclass_of(n)].size - n;
    size_t bound = n / 8 > 16 ? n / 8 : 16;
    cr_assert_lt(waste, bound, "size %zu wastes %zu", n, waste);
    if (n > 128 && (double)waste / n > worst) worst = (double)waste / n, worst_n = n;
  }
  cr_assert_lt(worst, 0.125, "worst relative waste above 128 B: %f at %zu", worst, worst_n);
}

Test(sizeclass, classes_increase_and_are_16_byte_multiples) {
  cr_assert_eq(smp_class_info[SMP_CLASS_COUNT - 1].size, SMP_SMALL_MAX);
  for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) {
    cr_assert_eq(smp_class_info[c].size % 16, 0);
    if (c > 1) cr_assert_gt(smp_class_info[c].size, smp_class_info[c - 1].size);
  }
}

Test(sizeclass, span_geometry) {
  for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) {
    const smp_class_info_t *ci = &smp_class_info[c];
    size_t bytes = (size_t)ci->pages * SMP_PAGE_SIZE;
    cr_assert_leq((size_t)ci->capacity * ci->size, bytes);
    cr_assert_gt((size_t)(ci->capacity + 1) * ci->size, bytes, "capacity is maximal");
    cr_assert_leq(ci->capacity, 65535, "capacity fits the remote word's 16-bit count");
    cr_assert_geq(ci->capacity, 4);
    cr_assert_leq((bytes - (size_t)ci->capacity * ci->size) * 32, bytes, "tail waste <= 1/32");
    cr_assert_geq(ci->cache_cap, 1);
    cr_assert_leq(ci->cache_cap, 64);
    cr_assert_geq(ci->batch, 2, "a miss moves at least two blocks");
    cr_assert_leq(ci->batch, ci->cache_cap);
    // By bytes: a batch moves SMP_BATCH_BYTES (4 blocks of 16 KiB), unless 32 blocks are less.
    size_t want = SMP_BATCH_BYTES / ci->size;
    cr_assert_eq(ci->batch, want < 2 ? 2 : want > 32 ? 32 : want, "class %u (%u B)", c, ci->size);
    cr_assert_leq(ci->batch, 32, "the caches move at most 32 blocks at once (their arrays hold 64)");
  }
}

Test(sizeclass, block_boundary_test_agrees_with_modulo) {
  for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) {
    size_t size = smp_class_info[c].size, span = (size_t)smp_class_info[c].pages * SMP_PAGE_SIZE;
    for (size_t off = 0; off < span; off += 16)
      cr_assert_eq(smp_sizeclass_on_boundary(c, off), off % size == 0, "class %u off %zu", c, off);
  }
}

Test(sizeclass, powers_of_two_are_classes) {
  for (size_t a = 16; a <= SMP_SMALL_MAX; a *= 2)
    cr_assert_eq(smp_class_info[smp_sizeclass_of(a)].size, a);
}
