// Unit tests of lib/cpucache (the per-CPU front end) through its interface, with a fake cache
// index: the index offset is pointed at a thread-local variable the test sets, so one thread
// can play "CPU 0", then "CPU 1", then an unregistered thread (-1). The critical sections stay
// real rseq sequences (descriptor in the real area), so they run as in production.
// Single-threaded on purpose: two threads sharing a fake index would not be serialised.
#include "test_frontend.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/rseq.h>

#include "cpucache.h"
#include "frontend.h"
#include "init.h"
#include "os.h"
#include "options.h"
#include "rseq.h"
#include "sizeclass.h"

static __thread int32_t fake_index;

static void use_index(int32_t i) {
  fake_index = i;
  smp_rseq_index_offset = (char *)&fake_index - (char *)__builtin_thread_pointer();
}

static void setup(void) {
  smp_init_ensure();
  if (!smp_frontend_is_percpu()) cr_skip_test("per-CPU caches unavailable here: %s", smp_frontend_name());
  use_index(0);
}
TestSuite(cpucache, .init = setup);

static void *alloc(unsigned cls) {
  void *p = smp_cpucache_alloc_fast(cls);
  return p ? p : smp_cpucache_alloc_slow(cls);
}
static void release(void *p, unsigned cls) {
  if (!smp_cpucache_free_fast(p, cls)) smp_cpucache_free_slow(p, cls);
}
static uint64_t cached(unsigned cls) {
  static smp_cpucache_stats_t st;
  smp_cpucache_stats(&st, NULL);
  return st.cached[cls];
}

Test(cpucache, an_empty_cache_misses_then_grows_and_hits) {
  unsigned cls = 4;
  cr_assert_null(smp_cpucache_alloc_fast(cls), "a fresh region has no capacity");
  void *p = smp_cpucache_alloc_slow(cls);
  cr_assert_not_null(p);
  void *q = smp_cpucache_alloc_fast(cls);
  cr_assert_not_null(q, "the refill filled the grown capacity");
  cr_assert(smp_cpucache_free_fast(q, cls));
  cr_assert_eq(smp_cpucache_alloc_fast(cls), q, "LIFO: the block freed last comes back first");
  release(q, cls);
  release(p, cls);
}

Test(cpucache, each_index_has_its_own_cache) {
  unsigned cls = 6;
  void *a = alloc(cls);
  release(a, cls);
  cr_assert_gt(cached(cls), 0);
  use_index(1); // "migrate" to CPU 1
  void *b = alloc(cls);
  cr_assert_neq(a, b, "cache 1 does not see cache 0's blocks");
  release(b, cls);
  use_index(0);
  cr_assert_eq(smp_cpucache_alloc_fast(cls), a, "cache 0 still holds its block");
  release(a, cls);
  smp_cpucache_cache_stats_t v;
  cr_assert(smp_cpucache_cache_stats(0, &v, NULL));
  cr_assert(v.used);
  cr_assert_gt(v.hits, 0, "cache 0 counted hits");
  cr_assert_gt(v.misses, 0, "and misses");
}

Test(cpucache, an_unregistered_thread_misses_and_falls_back) {
  use_index(-1);
  cr_assert_null(smp_cpucache_alloc_fast(3), "index -1 lands on the always-empty region");
  void *p = smp_cpucache_alloc_slow(3);
  cr_assert_not_null(p, "the slow path serves it from the central lists");
  cr_assert_not(smp_cpucache_free_fast(p, 3));
  smp_cpucache_free_slow(p, 3);
  use_index(-2);
  cr_assert_null(smp_cpucache_alloc_fast(3), "so does -2 (registration failed)");
  use_index(0);
}

Test(cpucache, capacity_stays_within_the_budget) {
  enum { N = 600 };
  static void *p[N];
  for (int round = 0; round < 3; round++)
    for (unsigned cls = 1; cls < SMP_CLASS_COUNT; cls += 3) {
      for (int i = 0; i < N; i++) p[i] = alloc(cls);
      for (int i = 0; i < N; i++) release(p[i], cls);
    }
  smp_cpucache_stats_t st;
  smp_cpucache_stats(&st, NULL);
  cr_assert_leq(st.capacity_bytes, st.budget_bytes, "capacity %lu > budget %lu",
                (unsigned long)st.capacity_bytes, (unsigned long)st.budget_bytes);
  cr_assert_leq(st.budget_bytes, smp_options.cache_size * SMP_CPUCACHE_GROWTH);
  uint64_t bytes = 0;
  for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) bytes += st.cached[c] * smp_class_info[c].size;
  cr_assert_leq(bytes, st.budget_bytes, "cached %lu > budget %lu", (unsigned long)bytes,
                (unsigned long)st.budget_bytes);
  cr_assert_gt(bytes, smp_options.cache_size / 4, "the budget is used, not wasted");
}

// Many busy classes of large blocks, more than the budget holds, with few hits between the
// misses: each miss takes capacity from another class. The cache then doubles its budget
// (step by step, up to SMP_CPUCACHE_GROWTH times cache_size), and a drain puts it back.
Test(cpucache, a_thrashing_cache_grows_its_budget_and_a_drain_resets_it) {
  use_index(3);
  smp_cpucache_stats_t st;
  smp_cpucache_stats(&st, NULL);
  cr_assert_eq(st.budgets_grown, 0);
  void *p[4];
  for (int round = 0; round < 200; round++)
    for (unsigned cls = 41; cls < 73; cls++) { // 2304 B to 32 KiB
      for (int i = 0; i < 4; i++) p[i] = alloc(cls);
      for (int i = 0; i < 4; i++) release(p[i], cls);
    }
  smp_cpucache_stats(&st, NULL);
  cr_assert_eq(st.budgets_grown, 1, "cache 3 thrashed: its budget grew");
  cr_assert_gt(st.capacity_bytes, smp_options.cache_size, "and its capacity with it");
  cr_assert_leq(st.budget_bytes, smp_options.cache_size * (SMP_CPUCACHE_GROWTH + 1));
  smp_cpucache_drain_all();
  smp_cpucache_stats(&st, NULL);
  cr_assert_eq(st.budgets_grown, 0, "the drain put it back to cache_size");
  use_index(0);
}

// A miss moves at most half the class's capacity: a refill leaves room for frees and a flush
// leaves blocks for mallocs (2 KiB blocks: batch 32, capacity 32; moving 31 at once, the class
// went from empty to full and back every other call).
Test(cpucache, a_miss_moves_at_most_half_the_capacity) {
  unsigned cls = 40;
  cr_assert_eq(smp_class_info[cls].size, 2048);
  use_index(5);
  smp_cpucache_stats_t st0, st1;
  smp_cpucache_stats(&st0, NULL);
  enum { N = 100, MAX_SLOTS = 1024 }; // a class's slot range is at most 1024 (cpucache.c)
  static void *p[2 * MAX_SLOTS + 1];
  for (int round = 0; round < 4; round++) {
    for (int i = 0; i < N; i++) p[i] = alloc(cls);
    for (int i = 0; i < N; i++) release(p[i], cls);
  }
  smp_cpucache_stats(&st1, NULL);
  uint64_t cap = (st1.capacity_bytes - st0.capacity_bytes) / 2048;
  cr_assert_geq(cap, 8, "the class grew (capacity %lu)", (unsigned long)cap);
  cr_assert_leq(cap, MAX_SLOTS);
  smp_cpucache_drain_all();
  void *q = alloc(cls);
  cr_assert_leq(cached(cls), cap / 2, "a refill of an empty class filled half (%lu of %lu)",
                (unsigned long)cached(cls), (unsigned long)cap);
  release(q, cls);
  // Hold 2 * cap blocks with the cache empty, give back cap of them (the class is then full),
  // then one more: that free flushes, and keeps at least half.
  for (uint64_t i = 0; i < 2 * cap; i++) p[i] = alloc(cls);
  smp_cpucache_drain_all();
  for (uint64_t i = 0; i < cap; i++) release(p[i], cls);
  cr_assert_eq(cached(cls), cap);
  release(p[cap], cls);
  cr_assert_geq(cached(cls), cap / 2, "a flush of a full class kept half (%lu of %lu)",
                (unsigned long)cached(cls), (unsigned long)cap);
  for (uint64_t i = cap + 1; i < 2 * cap; i++) release(p[i], cls);
  use_index(0);
}

// Capacity of cache index i, in blocks of size bytes.
static uint64_t capacity_of(unsigned i, size_t size) {
  smp_cpucache_cache_stats_t cs;
  cr_assert(smp_cpucache_cache_stats(i, &cs, NULL));
  return cs.capacity_bytes / size;
}

// Any miss grows a class up to its base (SMP_CPUCACHE_BASE_BYTES of blocks); beyond it, only
// allocation misses of a class that a free found full grow it, and only with room in the
// budget. A producer (allocates only) and a consumer (frees only) stay at their base; a batch
// of 300 allocated and freed again and again ends up held whole; a class beyond its base never
// takes capacity from another one.
Test(cpucache, a_class_grows_past_its_base_only_on_allocation_misses_with_room) {
  unsigned cls = 40; // 2048 bytes: base 32 blocks, at most 512
  size_t size = smp_class_info[cls].size;
  unsigned base = (unsigned)(SMP_CPUCACHE_BASE_BYTES / size);
  cr_assert_eq(size, 2048);
  enum { N = 300 };
  static void *p[N];
  // A consumer: the blocks come from index 7, index 6 only frees them.
  use_index(7);
  for (int i = 0; i < N; i++) p[i] = alloc(cls);
  uint64_t made = capacity_of(7, size);
  cr_assert(made >= 8 && made <= base, "a producer's class stays within its base: %lu of %u",
            (unsigned long)made, base);
  use_index(6);
  for (int i = 0; i < N; i++) release(p[i], cls);
  uint64_t cap = capacity_of(6, size);
  cr_assert(cap >= 8 && cap <= base, "a consumer's class stays within its base: %lu of %u",
            (unsigned long)cap, base);
  // A batch allocated and freed on index 6: the allocation misses grow it past the base.
  for (int round = 0; round < 40; round++) {
    for (int i = 0; i < N; i++) p[i] = alloc(cls);
    for (int i = 0; i < N; i++) release(p[i], cls);
  }
  cap = capacity_of(6, size);
  cr_assert(cap >= N && cap <= 512, "the batch fits: capacity %lu", (unsigned long)cap);
  // Index 8: class 56 (8 KiB) holds most of a batch of 100 (at least 512 KiB of the 1 MiB
  // budget), then class 40's batches may grow it past its base only into the room left: class
  // 56 keeps its blocks.
  use_index(8);
  unsigned big = 56;
  cr_assert_eq(smp_class_info[big].size, 8192);
  static void *q[100];
  for (int round = 0; round < 20; round++) {
    for (int i = 0; i < 100; i++) q[i] = alloc(big);
    for (int i = 0; i < 100; i++) release(q[i], big);
  }
  uint64_t held = cached(big); // only index 8 ever cached class 56
  cr_assert_geq(held, 64, "class 56 holds most of its batch: %lu", (unsigned long)held);
  uint64_t before = cached(cls);
  for (int round = 0; round < 40; round++) {
    for (int i = 0; i < N; i++) p[i] = alloc(cls);
    for (int i = 0; i < N; i++) release(p[i], cls);
  }
  cr_assert_eq(cached(big), held, "class 56 lost blocks to class 40: %lu of %lu",
               (unsigned long)cached(big), (unsigned long)held);
  cr_assert_gt(cached(cls), before + base, "class 40 grew past its base into the room left");
  smp_cpucache_cache_stats_t cs;
  cr_assert(smp_cpucache_cache_stats(8, &cs, NULL));
  cr_assert_leq(cs.capacity_bytes, cs.budget_bytes);
  cr_assert_eq(cs.budget_bytes, smp_options.cache_size, "no steal, so no budget growth");
  use_index(0);
}

// A drain forgets which classes overflowed: a class that a free found full, drained, then only
// allocated from, stays at its base (its capacity is kept through the drain).
Test(cpucache, a_drain_forgets_which_classes_overflowed) {
  unsigned cls = 40; // 2048 bytes: base 32 blocks
  size_t size = smp_class_info[cls].size;
  unsigned base = (unsigned)(SMP_CPUCACHE_BASE_BYTES / size);
  enum { N = 300 };
  static void *p[N];
  use_index(9);
  for (int i = 0; i < 40; i++) p[i] = alloc(cls);  // grows to its base
  for (int i = 0; i < 40; i++) release(p[i], cls); // and overflows
  cr_assert_eq(capacity_of(9, size), base);
  smp_cpucache_drain_all();
  for (int i = 0; i < N; i++) p[i] = alloc(cls); // allocation misses only
  uint64_t cap = capacity_of(9, size);
  cr_assert_leq(cap, base, "grew past its base after the drain: %lu of %u", (unsigned long)cap,
                base);
  for (int i = 0; i < N; i++) release(p[i], cls);
  use_index(0);
}

// The same classes with many hits between misses: the budget stays.
Test(cpucache, a_cache_that_misses_rarely_keeps_its_budget) {
  use_index(4);
  void *p[4];
  for (int round = 0; round < 200; round++)
    for (unsigned cls = 41; cls < 73; cls++) {
      for (int i = 0; i < 4; i++) p[i] = alloc(cls);
      for (int i = 0; i < 4; i++) release(p[i], cls);
      for (int k = 0; k < 40; k++) release(alloc(cls), cls); // hits
    }
  smp_cpucache_stats_t st;
  smp_cpucache_stats(&st, NULL);
  cr_assert_eq(st.budgets_grown, 0);
  use_index(0);
}

// A block of a class under SMP_OUTBOX_CLASSES freed on a CPU other than the one that took
// it from its span goes to that CPU's outbox, not to its class stack: the next malloc there
// gets another block (cache_scratch's false sharing), and the double-free search finds it.
Test(cpucache, a_small_block_freed_on_another_cpu_goes_to_the_outbox) {
  unsigned cls = 1;
  cr_assert_lt(cls, SMP_OUTBOX_CLASSES);
  void *a = alloc(cls); // cache 0 took its batch: cache 0 owns the span
  use_index(1);
  smp_cpucache_stats_t st0, st1;
  smp_cpucache_stats(&st0, NULL);
  release(a, cls);
  smp_cpucache_stats(&st1, NULL);
  cr_assert_eq(st1.outbox, st0.outbox + 1, "in cache 1's outbox");
  cr_assert_eq(st1.cached[cls], st0.cached[cls], "not on a class stack");
  cr_assert(smp_cpucache_holds(cls, a), "the double-free search finds it in the outbox");
  void *b = alloc(cls);
  cr_assert_neq(b, a, "cache 1 does not hand cache 0's block out again");
  release(b, cls);
  smp_cpucache_drain_all();
  smp_cpucache_stats(&st1, NULL);
  cr_assert_eq(st1.outbox, 0, "a drain empties the outboxes");
  cr_assert_eq(st1.took[cls], st1.gave[cls], "and every block went back");
  use_index(0);
}

// The cache that takes a batch from a span owns it: its own blocks freed on it stay there.
Test(cpucache, a_small_block_freed_on_its_own_cpu_stays_there) {
  unsigned cls = 3;
  use_index(2);
  void *a = alloc(cls);
  smp_cpucache_stats_t st0, st1;
  smp_cpucache_stats(&st0, NULL);
  release(a, cls);
  smp_cpucache_stats(&st1, NULL);
  cr_assert_eq(st1.outbox, st0.outbox, "not in the outbox");
  cr_assert_eq(alloc(cls), a, "handed out again at once");
  release(a, cls);
  use_index(0);
}

// A full outbox goes back to the spans as one batch; none of its blocks reach a class stack.
Test(cpucache, a_full_outbox_goes_back_to_the_spans) {
  unsigned cls = 2;
  enum { N = 100 };
  static void *p[N];
  for (int i = 0; i < N; i++) p[i] = alloc(cls);
  use_index(1);
  smp_cpucache_stats_t st0, st1;
  smp_cpucache_stats(&st0, NULL);
  for (int i = 0; i < N; i++) release(p[i], cls);
  smp_cpucache_stats(&st1, NULL);
  cr_assert_leq(st1.outbox, 32, "the outbox is bounded (%lu)", (unsigned long)st1.outbox);
  cr_assert_eq(st1.cached[cls], st0.cached[cls]);
  cr_assert_eq(st1.gave[cls] - st0.gave[cls] + st1.outbox - st0.outbox, N,
               "every block went back to its span or waits in the outbox");
  use_index(0);
}

// Blocks of 64 bytes and more do not share cache lines (but at their ends): one freed on
// another CPU stays there and is handed out again at once, saving the trip home.
Test(cpucache, a_larger_block_freed_on_another_cpu_stays_there) {
  unsigned cls = SMP_OUTBOX_CLASSES;
  cr_assert_geq(smp_class_info[cls].size, 64);
  void *a = alloc(cls);
  use_index(1);
  smp_cpucache_stats_t st0, st1;
  smp_cpucache_stats(&st0, NULL);
  release(a, cls);
  smp_cpucache_stats(&st1, NULL);
  cr_assert_eq(st1.outbox, st0.outbox);
  cr_assert_eq(alloc(cls), a, "cache 1 reuses it");
  release(a, cls);
  use_index(0);
}

Test(cpucache, drain_returns_every_block_and_the_cache_works_after) {
  unsigned cls = 9;
  void *p[40];
  for (int i = 0; i < 40; i++) p[i] = alloc(cls);
  for (int i = 0; i < 40; i++) release(p[i], cls);
  use_index(1);
  for (int i = 0; i < 40; i++) p[i] = alloc(cls);
  for (int i = 0; i < 40; i++) release(p[i], cls);
  use_index(0);
  smp_cpucache_stats_t st;
  smp_cpucache_stats(&st, NULL);
  cr_assert_gt(st.cached[cls], 0);
  size_t n = smp_cpucache_drain_all();
  cr_assert_geq(n, st.cached[cls]);
  cr_assert_eq(cached(cls), 0, "nothing left in any cache");
  smp_cpucache_stats(&st, NULL);
  cr_assert_eq(st.took[cls], st.gave[cls], "every block taken from the central lists went back");
  void *q = alloc(cls);
  cr_assert_not_null(q, "the drained cache is usable again");
  cr_assert(smp_cpucache_free_fast(q, cls), "with its capacity kept");
}

Test(cpucache, blocks_are_accounted_for) {
  unsigned cls = 12;
  void *p[100];
  for (int i = 0; i < 100; i++) p[i] = alloc(cls);
  smp_cpucache_stats_t st;
  smp_cpucache_stats(&st, NULL);
  cr_assert_eq(st.took[cls] - st.gave[cls] - st.cached[cls], 100, "100 blocks are with the user");
  for (int i = 0; i < 100; i++) release(p[i], cls);
  smp_cpucache_stats(&st, NULL);
  cr_assert_eq(st.took[cls] - st.gave[cls], st.cached[cls]);
}

// Where glibc registered rseq and nothing forces the per-thread caches, the per-CPU front end
// must be the one running (a silent fallback would hide a broken rseq path).
Test(frontend, percpu_runs_where_glibc_registered_rseq) {
  smp_init_ensure();
  const char *opt = getenv("SMPALLOC_OPTIONS");
  if (test_frontend_wanted(opt) == TEST_FRONTEND_THREAD)
    cr_skip_test("per-thread front end forced by SMPALLOC_OPTIONS=%s", opt ? opt : "");
  if (__rseq_size == 0) cr_skip_test("glibc registered no rseq area here");
  cr_assert(smp_frontend_is_percpu(), "front end: %s", smp_frontend_name());
  cr_assert(strncmp(smp_frontend_name(), "percpu (rseq, ", 14) == 0, "%s", smp_frontend_name());
}

// The regions are reserved read-only (not charged against the commit limit under
// vm.overcommit_memory=2: the kernel charges writable private mappings) and each becomes
// writable when its index is first used: here indexes 0 and 1, so /proc/self/maps shows
// exactly two writable regions in the reservation, whatever the number of possible CPUs.
Test(cpucache, only_used_regions_are_writable) {
  for (int32_t i = 0; i < 2; i++) {
    use_index(i);
    release(alloc(3), 3);
  }
  use_index(0);
  uintptr_t lo = (uintptr_t)smp_cpucache_base - 2 * SMP_CPUCACHE_REGION;
  uintptr_t hi = (uintptr_t)smp_cpucache_base + (uintptr_t)smp_cpucache_count() * SMP_CPUCACHE_REGION;
  FILE *f = fopen("/proc/self/maps", "r");
  cr_assert_not_null(f);
  char line[512], perms[8];
  size_t writable = 0, readable = 0;
  unsigned long a, b;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "%lx-%lx %7s", &a, &b, perms) == 3 && a < hi && b > lo) {
      size_t bytes = (b < hi ? b : hi) - (a > lo ? a : lo);
      if (perms[1] == 'w') writable += bytes; else if (perms[0] == 'r') readable += bytes;
    }
  fclose(f);
  cr_assert_eq(writable, 2 * SMP_CPUCACHE_REGION, "writable: %zu KiB", writable >> 10);
  cr_assert_eq(readable, hi - lo - 2 * SMP_CPUCACHE_REGION, "read-only: %zu KiB", readable >> 10);
}

// smp_cpucache_holds: finds a cached block in any index's cache, never a block with its user,
// and leaves the caches working with their capacity (the limits it froze are put back).
Test(cpucache, holds_finds_cached_blocks_and_restores_the_cache) {
  unsigned cls = 11;
  void *a = alloc(cls), *live = alloc(cls);
  release(a, cls);
  use_index(1);
  void *b = alloc(cls);
  release(b, cls);
  use_index(0);
  cr_assert(smp_cpucache_holds(cls, a), "in cache 0");
  cr_assert(smp_cpucache_holds(cls, b), "in cache 1");
  cr_assert_not(smp_cpucache_holds(cls, live), "with its user");
  cr_assert_eq(smp_cpucache_alloc_fast(cls), a, "cache 0 hits again: its limits are back");
  cr_assert(smp_cpucache_free_fast(a, cls), "and takes blocks");
  release(live, cls);
}

// A class whose batch is more than it can hold (64 KiB blocks: at most 16 per cache, while
// cache_size:1g makes every batch 32) refills only what fits plus the block asked for, instead
// of a batch it gives straight back. Run with SMPALLOC_OPTIONS=cache_size:1g
// (unit_cpucache_bigbatch); skipped where the batch fits.
Test(cpucache, a_miss_refills_no_more_than_the_class_holds) {
  unsigned cls = SMP_CLASS_COUNT - 1;
  if (smp_class_info[cls].batch <= 5) cr_skip_test("needs SMPALLOC_OPTIONS=cache_size:1g");
  smp_cpucache_stats_t st0, st1;
  smp_cpucache_stats(&st0, NULL);
  enum { N = 40 };
  void *p[N];
  for (int i = 0; i < N; i++) p[i] = alloc(cls);
  smp_cpucache_stats(&st1, NULL);
  cr_assert_eq(st1.gave[cls] - st0.gave[cls], 0, "no block given straight back (%lu were)",
               (unsigned long)(st1.gave[cls] - st0.gave[cls]));
  unsigned holds = (unsigned)(SMP_CPUCACHE_CLASS_BYTES / smp_class_info[cls].size); // 16
  cr_assert_leq(st1.took[cls] - st0.took[cls], N + holds, "no more taken than used and cached");
  for (int i = 0; i < N; i++) release(p[i], cls);
}

// The idle scan (freeze, membarrier, drain) runs on application threads every 4096 misses only
// while no background pass came for SMP_CPUCACHE_PASS_STALE_MS. The clock is the test's.
static uint64_t fake_ms = 1000000;
static uint64_t fake_now(void) { return fake_ms; }

static void miss_many(unsigned n) {
  unsigned cls = 20;
  for (unsigned i = 0; i < n; i++) smp_cpucache_free_slow(smp_cpucache_alloc_slow(cls), cls);
}

Test(cpucache, slow_paths_leave_the_idle_scan_to_background_passes) {
  smp_os_clock_set(fake_now);
  smp_cpucache_stats_t st0, st1;
  smp_cpucache_stats(&st0, NULL);
  miss_many(8192);
  smp_cpucache_stats(&st1, NULL);
  cr_assert_geq(st1.scans_slow, st0.scans_slow + 2, "no pass ever: the slow paths scan");
  smp_cpucache_drain_idle(); // a background pass
  smp_cpucache_stats(&st0, NULL);
  cr_assert_eq(st0.scans_background, st1.scans_background + 1);
  fake_ms += SMP_CPUCACHE_PASS_STALE_MS - 1;
  miss_many(8192);
  smp_cpucache_stats(&st1, NULL);
  cr_assert_eq(st1.scans_slow, st0.scans_slow, "a recent pass: the slow paths leave it to them");
  fake_ms += 1; // the pass is now stale: the background thread stopped passing
  miss_many(8192);
  smp_cpucache_stats(&st0, NULL);
  cr_assert_geq(st0.scans_slow, st1.scans_slow + 2, "no pass for a while: the slow paths scan");
  smp_os_clock_set(NULL);
}
