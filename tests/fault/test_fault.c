// The allocator under an OS that refuses memory: lib/platform/os.h's fault plan (SMP_FAULT_INJECT build)
// makes mmap, mremap and madvise fail, by count or at random. Every scenario asserts that faults
// were really injected (so none passes vacuously), that each NULL came with ENOMEM, that no
// block already handed out lost a byte (live blocks carry a pattern and are checked after each
// round), and that once the OS recovers the heap works again and is consistent: with every
// block freed, smp_trim leaves no chunk, span or huge mapping behind.
// Runs twice (tests/fault/CMakeLists.txt): with the default front end (per-CPU caches when
// rseq works) and with per-thread caches forced; scenarios about one front end skip on the
// other. Counts of calls, faults and NULLs are printed to stderr (ctest -V shows them). The
// front end is the one SMPALLOC_OPTIONS asks for (tests/test_frontend.h).
#include "test_frontend.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cpucache.h"
#include "frontend.h"
#include "init.h"
#include "large.h"
#include "options.h"
#include "os.h"
#include "pageheap.h"
#include "sizeclass.h"
#include "smpalloc.h"
#include "central.h"
// The default heap's page heap, which these tests drive.
#define SMP_TEST_PH (smp_central_default->pages)

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define MAP (1u << SMP_OS_FAULT_MAP)
#define REMAP (1u << SMP_OS_FAULT_REMAP)
#define PURGE (1u << SMP_OS_FAULT_PURGE)
#define ALWAYS 1000000u

// ---- patterns: byte j of a block is byte j%8 of seed ^ (j/8)*K, whatever the block's size ----

static const uint64_t K = 0x9e3779b97f4a7c15ull;

static void fill(void *p, size_t n, uint64_t seed) {
  uint64_t *w = p;
  size_t nw = n / 8;
  for (size_t i = 0; i < nw; i++) w[i] = seed ^ (i * K);
  uint64_t last = seed ^ (nw * K);
  memcpy((char *)p + nw * 8, &last, n - nw * 8);
}

// True if the first n bytes of p still hold fill(p, >= n, seed).
static bool intact(const void *p, size_t n, uint64_t seed) {
  const uint64_t *w = p;
  size_t nw = n / 8;
  for (size_t i = 0; i < nw; i++)
    if (w[i] != (seed ^ (i * K))) return false;
  uint64_t last = seed ^ (nw * K);
  return memcmp((const char *)p + nw * 8, &last, n - nw * 8) == 0;
}

static bool all_zero(const void *p, size_t n) {
  const uint64_t *w = p;
  for (size_t i = 0; i < n / 8; i++)
    if (w[i]) return false;
  for (size_t i = n / 8 * 8; i < n; i++)
    if (((const char *)p)[i]) return false;
  return true;
}

// ---- the live set of one test thread (bookkeeping in libc's heap, not ours) ----

typedef struct block {
  char *p;
  size_t n;
  uint64_t seed;
} block_t;

static block_t *live;
static size_t nlive, live_cap;
static uint64_t next_seed = 1;

static block_t *keep(void *p, size_t n) {
  cr_assert_not_null(p);
  if (nlive == live_cap) {
    live_cap = live_cap ? live_cap * 2 : 1024;
    live = realloc(live, live_cap * sizeof *live);
    cr_assert_not_null(live);
  }
  block_t *b = &live[nlive++];
  *b = (block_t){p, n, next_seed++ * K};
  fill(p, n, b->seed);
  return b;
}

static void verify_live(const char *when) {
  for (size_t i = 0; i < nlive; i++)
    cr_assert(intact(live[i].p, live[i].n, live[i].seed), "%s: live block %p (%zu bytes) damaged",
              when, (void *)live[i].p, live[i].n);
}

static void release_live(void) {
  verify_live("before release");
  for (size_t i = 0; i < nlive; i++) smp_free(live[i].p);
  nlive = 0;
}

// ---- the fault plan ----

static void plan(unsigned kinds, uint64_t nth, uint32_t per_million) {
  smp_os_fault_set(kinds, nth, per_million, 0x1234567u);
}

static smp_os_fault_counts_t counts(void) {
  smp_os_fault_counts_t c;
  smp_os_fault_counts(&c);
  return c;
}

static void print_counts(const char *scenario, smp_os_fault_counts_t c, uint64_t nulls) {
  fprintf(stderr,
          "fault: %-34s map %llu/%llu  remap %llu/%llu  purge %llu/%llu (faults/calls)  "
          "unmaps %llu  NULLs %llu\n",
          scenario, (unsigned long long)c.faults[SMP_OS_FAULT_MAP],
          (unsigned long long)c.calls[SMP_OS_FAULT_MAP],
          (unsigned long long)c.faults[SMP_OS_FAULT_REMAP],
          (unsigned long long)c.calls[SMP_OS_FAULT_REMAP],
          (unsigned long long)c.faults[SMP_OS_FAULT_PURGE],
          (unsigned long long)c.calls[SMP_OS_FAULT_PURGE], (unsigned long long)c.unmaps,
          (unsigned long long)nulls);
}

static uint64_t nulls_seen; // NULLs checked by EXPECT_ENOMEM in the current scenario

// The call must fail as the API promises when the OS refuses: NULL with errno ENOMEM.
#define EXPECT_ENOMEM(call)                                                                    \
  do {                                                                                         \
    errno = 0;                                                                                 \
    void *r_ = (call);                                                                         \
    cr_assert_null(r_, "%s returned %p although the OS refuses", #call, r_);                   \
    cr_assert_eq(errno, ENOMEM, "%s: errno %d, not ENOMEM", #call, errno);                     \
    nulls_seen++;                                                                              \
  } while (0)

// ---- heap state ----

// With every block freed: trim, and nothing may be left (no chunk, span or huge mapping).
static void assert_heap_empty(const char *when) {
  smp_trim();
  smp_pageheap_stats_t ps;
  smp_pageheap_stats(SMP_TEST_PH, &ps, NULL);
  smp_large_stats_t ls;
  smp_large_stats(&ls, NULL);
  cr_assert_eq(ps.large_count, 0, "%s: %zu large spans still in use", when, ps.large_count);
  cr_assert_eq(ps.small_bytes, 0, "%s: %zu bytes of small spans left", when, ps.small_bytes);
  cr_assert_eq(ls.huge_count, 0, "%s: %zu huge blocks left", when, ls.huge_count);
  cr_assert_eq(ps.chunks, 0, "%s: %zu chunks not returned by trim", when, ps.chunks);
  cr_assert_eq(ps.free_bytes, 0, "%s: free pages without a chunk", when);
}

// The OS works again: every kind of allocation succeeds, holds its contents, and afterwards
// the heap is empty again.
static void assert_recovered(const char *when) {
  plan(0, 0, 0);
  release_live();
  assert_heap_empty(when);
  static const size_t sizes[] = {1, 16, 100, 1000, 5000, 65536, 65537, 300 * KiB, 2 * MiB,
                                 2 * MiB + 1, 9 * MiB};
  for (size_t i = 0; i < SMP_ARRAY_LEN(sizes); i++) {
    size_t n = sizes[i];
    keep(smp_malloc(n), n);
    char *z = smp_calloc(1, n);
    cr_assert(z && all_zero(z, n), "%s: calloc(%zu) after recovery", when, n);
    keep(z, n);
    keep(smp_aligned_alloc(4096, n), n);
    block_t *b = keep(smp_malloc(n), n);
    char *q = smp_realloc(b->p, 2 * n + 1);
    cr_assert_not_null(q, "%s: realloc(%zu) after recovery", when, 2 * n + 1);
    cr_assert(intact(q, n, b->seed));
    b->p = q;
  }
  verify_live(when);
  release_live();
  assert_heap_empty(when);
}

static void setup(void) {
  smp_init_ensure();
  plan(0, 0, 0);
  nulls_seen = 0;
}
TestSuite(fault, .init = setup, .timeout = 60);

// Exhaustion relies on no cache of another CPU holding blocks: stay on one CPU.
static void pin_to_one_cpu(void) {
  int cpu = sched_getcpu();
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set);
}

// ---- the switch itself ----

Test(fault, switch_counts_calls_and_fires_as_planned) {
  void *h = smp_malloc(3 * MiB); // also creates the huge table
  cr_assert_not_null(h);
  smp_free(h);
  smp_trim(); // its mapping, kept for reuse, goes: the blocks below are new mappings

  plan(0, 0, 0);
  keep(smp_malloc(3 * MiB), 3 * MiB);
  smp_os_fault_counts_t c = counts();
  cr_assert_eq(c.calls[SMP_OS_FAULT_MAP], 1);
  cr_assert_eq(c.faults[SMP_OS_FAULT_MAP], 0, "no plan, no faults");

  plan(MAP, 2, 0); // the second map from now fails, once
  keep(smp_malloc(3 * MiB), 3 * MiB);
  EXPECT_ENOMEM(smp_malloc(3 * MiB));
  keep(smp_malloc(3 * MiB), 3 * MiB);
  c = counts();
  print_counts("nth=2", c, nulls_seen);
  cr_assert_eq(c.calls[SMP_OS_FAULT_MAP], 3);
  cr_assert_eq(c.faults[SMP_OS_FAULT_MAP], 1);

  plan(REMAP | PURGE, 1, 0); // maps are not in the plan
  keep(smp_malloc(3 * MiB), 3 * MiB);
  cr_assert_eq(counts().faults[SMP_OS_FAULT_MAP], 0);

  plan(MAP, 0, ALWAYS / 2); // half of the maps fail, at random
  size_t cache = smp_options.huge_cache;
  smp_options.huge_cache = 0; // each malloc below maps (none reuses the previous one's mapping)
  unsigned failed = 0;
  for (int i = 0; i < 200; i++) {
    errno = 0;
    void *p = smp_malloc(2 * MiB + 4096);
    if (p == NULL) {
      cr_assert_eq(errno, ENOMEM);
      failed++;
    } else {
      smp_free(p);
    }
  }
  smp_options.huge_cache = cache;
  c = counts();
  print_counts("rate=50%", c, failed);
  cr_assert_eq(c.faults[SMP_OS_FAULT_MAP], failed, "every failed huge malloc is one fault");
  cr_assert(failed > 50 && failed < 150, "%u of 200 failed at 50%%", failed);
  verify_live("after the switch tests");
  assert_recovered("after the switch tests");
}

// ---- (a) every allocating entry point fails cleanly when the OS refuses ----

// With every map refused: take every free page of the page heap and every block any cache or
// span still has, so that each further allocation needs the OS.
static void exhaust_heap(void) {
  static const size_t runs[] = {2 * MiB, 256 * KiB, 65537};
  for (size_t i = 0; i < SMP_ARRAY_LEN(runs); i++)
    for (void *p; (p = smp_malloc(runs[i])) != NULL;) keep(p, runs[i]);
  for (void *p; (p = smp_aligned_alloc(2 * SMP_PAGE_SIZE, SMP_PAGE_SIZE)) != NULL;)
    keep(p, SMP_PAGE_SIZE);
  // Small classes from the largest span down: class 1 (one-page spans) takes the last pages.
  // Passes repeat after flushing the front end (blocks another cache index held go back to
  // the central lists) until one finds nothing.
  size_t got = 1;
  for (int pass = 0; pass < 8 && got; pass++) {
    smp_frontend_flush();
    got = 0;
    for (unsigned cls = SMP_CLASS_COUNT - 1; cls >= 1; cls--) {
      size_t n = smp_class_info[cls].size;
      for (void *p; (p = smp_malloc(n)) != NULL; got++) keep(p, n);
    }
  }
  cr_assert_eq(got, 0, "the heap keeps producing blocks with every map refused");
}

Test(fault, every_api_fails_with_enomem_when_the_os_refuses) {
  pin_to_one_cpu();
  // Blocks to resize later (live[] may move as it grows: keep indexes, not pointers).
  enum { HUGE, SMALL, MID, PAGE };
  keep(smp_malloc(3 * MiB), 3 * MiB);
  keep(smp_malloc(24), 24);
  keep(smp_malloc(5000), 5000);
  keep(smp_aligned_alloc(2 * SMP_PAGE_SIZE, SMP_PAGE_SIZE), SMP_PAGE_SIZE); // a one-page run

  plan(SMP_OS_FAULT_ALL, 0, ALWAYS);
  exhaust_heap();
  block_t *huge = &live[HUGE], *small = &live[SMALL], *mid = &live[MID], *page = &live[PAGE];
  smp_pageheap_stats_t ps;
  smp_pageheap_stats(SMP_TEST_PH, &ps, NULL);
  cr_assert_eq(ps.free_bytes, 0, "the page heap is exhausted (%zu bytes left)", ps.free_bytes);
  fprintf(stderr, "fault: heap exhausted with %zu blocks in %zu chunks\n", nlive, ps.chunks);
  verify_live("after exhausting the heap");

  static const size_t small_sizes[] = {0, 1, 16, 17, 100, 128, 129, 1000, 1024, 1025, 5000,
                                       32768, 65536};
  for (size_t i = 0; i < SMP_ARRAY_LEN(small_sizes); i++) {
    size_t n = small_sizes[i];
    EXPECT_ENOMEM(smp_malloc(n));
    EXPECT_ENOMEM(smp_calloc(1, n ? n : 1));
    EXPECT_ENOMEM(smp_realloc(NULL, n ? n : 1));
  }
  static const size_t big_sizes[] = {65537, 100000, SMP_HUGE_THRESHOLD, SMP_HUGE_THRESHOLD + 1,
                                     8 * MiB, 64 * MiB};
  for (size_t i = 0; i < SMP_ARRAY_LEN(big_sizes); i++) {
    size_t n = big_sizes[i];
    EXPECT_ENOMEM(smp_malloc(n));
    EXPECT_ENOMEM(smp_calloc(1, n));
    EXPECT_ENOMEM(smp_calloc(n / 8, 8));
    EXPECT_ENOMEM(smp_aligned_alloc(16, n));
  }
  static const size_t aligns[][2] = {{32, 32},          {64, 100},        {256, 256},
                                     {4096, 4096},      {8192, 8192},     {16384, 100},
                                     {65536, 65536},    {MiB, MiB},       {4 * MiB, 4 * MiB},
                                     {64 * MiB, 16},    {4096, 3 * MiB}};
  for (size_t i = 0; i < SMP_ARRAY_LEN(aligns); i++)
    EXPECT_ENOMEM(smp_aligned_alloc(aligns[i][0], aligns[i][1]));

  // realloc: growth of small, large and huge blocks fails and leaves each block as it was.
  size_t small_usable = smp_usable_size(small->p);
  EXPECT_ENOMEM(smp_realloc(small->p, 200));
  EXPECT_ENOMEM(smp_realloc(small->p, 100000));
  EXPECT_ENOMEM(smp_realloc(small->p, 3 * MiB));
  cr_assert_eq(smp_usable_size(small->p), small_usable);
  EXPECT_ENOMEM(smp_realloc(mid->p, 20000));
  EXPECT_ENOMEM(smp_realloc(mid->p, 500)); // a shrink that must move (less than half) fails too
  EXPECT_ENOMEM(smp_realloc(page->p, 3 * SMP_PAGE_SIZE)); // its neighbours are in use
  EXPECT_ENOMEM(smp_realloc(page->p, 100)); // large -> small moves
  EXPECT_ENOMEM(smp_realloc(page->p, 3 * MiB));
  cr_assert_eq(smp_usable_size(page->p), SMP_PAGE_SIZE);
  size_t huge_usable = smp_usable_size(huge->p);
  EXPECT_ENOMEM(smp_realloc(huge->p, 6 * MiB)); // mremap in place, mremap moving, mmap: all refused
  EXPECT_ENOMEM(smp_realloc(huge->p, 100));
  cr_assert_eq(smp_usable_size(huge->p), huge_usable);
  verify_live("after the refused calls");

  // What needs nothing from the OS still works: shrinking in place, and free + malloc reuse.
  char *q = smp_realloc(huge->p, 2 * MiB + 8192);
  cr_assert_eq(q, huge->p, "a huge block shrinks in place (munmap of the tail)");
  huge->n = 2 * MiB + 8192;
  cr_assert_eq(smp_realloc(small->p, 20), small->p);
  small->n = 20;
  smp_free(mid->p);
  mid->p = smp_malloc(mid->n);
  cr_assert_not_null(mid->p, "a freed block is reused without the OS");
  fill(mid->p, mid->n, mid->seed);
  verify_live("after the in-place operations");

  smp_os_fault_counts_t c = counts();
  print_counts("every API, OS refusing", c, nulls_seen);
  cr_assert_gt(c.faults[SMP_OS_FAULT_MAP], 0);
  cr_assert_gt(c.faults[SMP_OS_FAULT_REMAP], 0);
  assert_recovered("after exhaustion");
}

// ---- huge blocks: realloc growth when mremap is refused ----

Test(fault, huge_realloc_moves_or_fails_cleanly_when_mremap_fails) {
  block_t *h = keep(smp_malloc(3 * MiB), 3 * MiB);

  plan(REMAP, 1, 0); // growth in place refused once: mremap may still move it
  char *q = smp_realloc(h->p, 12 * MiB);
  smp_os_fault_counts_t c = counts();
  print_counts("huge grow, in-place mremap fails", c, 0);
  cr_assert_not_null(q);
  cr_assert_eq(c.faults[SMP_OS_FAULT_REMAP], 1);
  cr_assert_eq(c.calls[SMP_OS_FAULT_REMAP], 2, "in place, then moving");
  cr_assert(intact(q, h->n, h->seed));
  cr_assert_geq(smp_usable_size(q), 12 * MiB);
  h->p = q;
  fill(q, h->n = 12 * MiB, h->seed);

  plan(REMAP, 0, ALWAYS); // every mremap refused: copied to a fresh mapping
  q = smp_realloc(h->p, 20 * MiB);
  c = counts();
  print_counts("huge grow, all mremaps fail", c, 0);
  cr_assert_not_null(q);
  cr_assert_neq(q, h->p, "could only move by copying");
  cr_assert_eq(c.faults[SMP_OS_FAULT_REMAP], 2);
  cr_assert_geq(c.calls[SMP_OS_FAULT_MAP], 1);
  cr_assert(intact(q, h->n, h->seed));
  h->p = q;
  fill(q, h->n = 20 * MiB, h->seed);

  plan(REMAP | MAP, 0, ALWAYS); // nothing possible: NULL, block untouched
  EXPECT_ENOMEM(smp_realloc(h->p, 40 * MiB));
  c = counts();
  print_counts("huge grow, mremap and mmap fail", c, nulls_seen);
  cr_assert_geq(c.faults[SMP_OS_FAULT_MAP], 1);
  cr_assert_eq(smp_usable_size(h->p), 20 * MiB);
  verify_live("after a refused huge growth");

  q = smp_realloc(h->p, 5 * MiB); // shrinking needs no new memory
  cr_assert_eq(q, h->p);
  h->n = 5 * MiB;
  cr_assert_eq(smp_usable_size(q), 5 * MiB);
  q = smp_realloc(h->p, 1 * MiB); // still a dedicated mapping, shrunk in place
  cr_assert_eq(q, h->p);
  h->n = 1 * MiB;
  verify_live("after huge shrinks under faults");

  // An aligned huge block cannot be moved by mremap (alignment): copied, or refused cleanly.
  plan(0, 0, 0);
  block_t *a = keep(smp_aligned_alloc(4 * MiB, 3 * MiB), 3 * MiB);
  cr_assert_eq((uintptr_t)a->p % (4 * MiB), 0);
  plan(REMAP, 0, ALWAYS);
  q = smp_realloc(a->p, 6 * MiB);
  cr_assert_not_null(q);
  cr_assert(intact(q, a->n, a->seed));
  a->p = q;
  plan(REMAP | MAP, 0, ALWAYS);
  EXPECT_ENOMEM(smp_realloc(a->p, 12 * MiB));
  cr_assert_gt(counts().faults[SMP_OS_FAULT_MAP], 0);
  verify_live("after aligned huge growth");
  assert_recovered("after huge reallocs");
}

// ---- huge blocks: the cache of freed mappings under refusals ----

Test(fault, huge_cache_reuse_needs_no_mmap_and_survives_refusals) {
  block_t *h = keep(smp_malloc(8 * MiB), 8 * MiB);
  char *old = h->p;
  release_live(); // its mapping is kept for reuse
  smp_large_stats_t ls;
  smp_large_stats(&ls, NULL);
  cr_assert_eq(ls.cached_count, 1);

  plan(REMAP, 1, 0); // growing the cached 8 MiB to 10 MiB is refused: a new mapping instead
  h = keep(smp_malloc(10 * MiB), 10 * MiB);
  smp_os_fault_counts_t c = counts();
  print_counts("huge cache, growth refused", c, 0);
  cr_assert_eq(c.faults[SMP_OS_FAULT_REMAP], 1);
  cr_assert_eq(c.calls[SMP_OS_FAULT_MAP], 1);
  cr_assert_neq(h->p, old);
  smp_large_stats(&ls, NULL);
  cr_assert_eq(ls.cached_count, 1, "the range the growth could not use stays cached");

  plan(MAP | REMAP, 0, ALWAYS); // no new memory at all: the cached range still serves
  block_t *r = keep(smp_malloc(8 * MiB), 8 * MiB);
  cr_assert_eq(r->p, old, "reused without a system call that could fail");
  EXPECT_ENOMEM(smp_malloc(30 * MiB)); // nothing cached fits, and mmap is refused
  c = counts();
  print_counts("huge cache, mmap refused", c, nulls_seen);
  cr_assert_gt(c.faults[SMP_OS_FAULT_MAP], 0);
  verify_live("after refusals with a huge cache");
  assert_recovered("after the huge cache");
}

// ---- huge blocks: the address table cannot grow ----

Test(fault, huge_table_growth_failure_loses_nothing) {
  enum { N = 128 }; // the table starts with 256 slots and grows before it is half full
  for (int i = 0; i < N; i++) {
    char *p = smp_malloc(SMP_HUGE_THRESHOLD + 1);
    cr_assert_not_null(p);
    keep(p, 64); // pattern on the first bytes only: 128 x 2 MiB stays cheap
  }
  smp_large_stats_t ls;
  smp_large_stats(&ls, NULL);
  cr_assert_eq(ls.huge_count, N);

  // Growing h[0] needs a table slot for the moved block; reserving it maps a new table.
  plan(MAP | REMAP, 0, ALWAYS);
  EXPECT_ENOMEM(smp_realloc(live[0].p, 8 * MiB));
  smp_os_fault_counts_t c = counts();
  print_counts("huge table full, realloc", c, nulls_seen);
  cr_assert_eq(c.calls[SMP_OS_FAULT_REMAP], 1, "the moving mremap waits for a table slot");
  cr_assert_eq(c.faults[SMP_OS_FAULT_MAP], 2, "table growth, then the fresh mapping");

  plan(MAP, 2, 0); // block mapped, then the table growth for its entry refused
  EXPECT_ENOMEM(smp_malloc(3 * MiB));
  c = counts();
  print_counts("huge table full, malloc", c, nulls_seen);
  cr_assert_eq(c.calls[SMP_OS_FAULT_MAP], 2);
  cr_assert_eq(c.faults[SMP_OS_FAULT_MAP], 1);
  cr_assert_eq(c.unmaps, 1, "the block that could not be recorded is unmapped");
  smp_large_stats(&ls, NULL);
  cr_assert_eq(ls.huge_count, N);
  verify_live("after table growth failures");

  plan(0, 0, 0);
  keep(smp_malloc(3 * MiB), 3 * MiB);
  smp_large_stats(&ls, NULL);
  cr_assert_eq(ls.huge_count, N + 1);
  assert_recovered("after the huge table");
}

// ---- (d) failed purges: pages stay dirty, calloc still zeroes, nothing is lost ----

Test(fault, failed_purges_keep_pages_dirty_and_calloc_zero) {
  enum { BLOCKS = 12 };
  const size_t n = 200 * KiB;
  assert_heap_empty("start");
  keep(smp_malloc(100000), 100000); // keeps the chunk mapped through trims
  char *old[BLOCKS];
  for (int i = 0; i < BLOCKS; i++) {
    old[i] = smp_malloc(n);
    cr_assert_not_null(old[i]);
    memset(old[i], 0xa5, smp_usable_size(old[i]));
  }
  for (int i = 0; i < 200; i++) keep(smp_malloc(1000), 1000);
  for (int i = 0; i < BLOCKS; i++) smp_free(old[i]);
  smp_trim(); // flushes caches: now only purges are left for the next trim
  smp_pageheap_stats_t s0, s1;
  smp_pageheap_stats(SMP_TEST_PH, &s0, NULL);
  cr_assert_eq(s0.chunks, 1);
  cr_assert_eq(s0.free_dirty, 0, "this trim purged (control: purging works)");

  // Dirty them again, then trim with every madvise refused.
  for (int i = 0; i < BLOCKS; i++) {
    old[i] = smp_malloc(n);
    memset(old[i], 0xa5, smp_usable_size(old[i]));
  }
  for (int i = 0; i < BLOCKS; i++) smp_free(old[i]);
  plan(PURGE, 0, ALWAYS);
  smp_pageheap_stats(SMP_TEST_PH, &s0, NULL);
  cr_assert_geq(s0.free_dirty, BLOCKS * n, "the freed runs are dirty");
  smp_trim();
  smp_pageheap_stats(SMP_TEST_PH, &s1, NULL);
  smp_os_fault_counts_t c = counts();
  print_counts("trim, every purge fails", c, 0);
  cr_assert_gt(c.faults[SMP_OS_FAULT_PURGE], 0);
  cr_assert_eq(c.faults[SMP_OS_FAULT_PURGE], c.calls[SMP_OS_FAULT_PURGE]);
  cr_assert_eq(s1.free_dirty, s0.free_dirty, "a refused purge leaves its pages counted dirty");
  cr_assert_eq(s1.free_bytes, s0.free_bytes, "no free page lost");
  cr_assert_eq(s1.chunks, 1);

  // calloc on those pages must still zero them, and they must be the reused dirty pages.
  unsigned reused = 0;
  char *z[BLOCKS];
  for (int i = 0; i < BLOCKS; i++) {
    z[i] = smp_calloc(1, n);
    cr_assert_not_null(z[i]);
    cr_assert(all_zero(z[i], n), "calloc block %d over unpurged pages is not zero", i);
    for (int j = 0; j < BLOCKS; j++) reused += z[i] < old[j] + n && old[j] < z[i] + n;
  }
  cr_assert_gt(reused, 0, "calloc reused the dirty pages (else this proves nothing)");
  smp_pageheap_stats(SMP_TEST_PH, &s1, NULL);
  cr_assert_eq(s1.chunks, 1, "the free pages were all still usable: no new chunk");
  for (int i = 0; i < BLOCKS; i++) memset(z[i], 0x5a, n);

  // Only some purges fail (every other block freed: separate dirty runs): calloc is right for
  // purged and unpurged runs alike.
  for (int i = 0; i < BLOCKS; i += 2) smp_free(z[i]);
  plan(PURGE, 2, 0);
  smp_trim();
  c = counts();
  print_counts("trim, second purge fails", c, 0);
  cr_assert_geq(c.calls[SMP_OS_FAULT_PURGE], 2);
  cr_assert_eq(c.faults[SMP_OS_FAULT_PURGE], 1);
  for (int i = 0; i < BLOCKS; i += 2) {
    z[i] = smp_calloc(n / KiB, KiB);
    cr_assert(z[i] && all_zero(z[i], n), "calloc block %d after a partial purge", i);
  }
  for (int i = 0; i < BLOCKS; i++) smp_free(z[i]);

  plan(0, 0, 0);
  smp_trim();
  smp_pageheap_stats(SMP_TEST_PH, &s1, NULL);
  cr_assert_eq(s1.free_dirty, 0, "the purges the OS refused succeed once it recovers");
  cr_assert_eq(s1.chunks, 1);
  assert_recovered("after failed purges");
}

// ---- a thread whose cache cannot be mapped (per-thread front end) ----

typedef struct cacheless {
  pthread_barrier_t *all_started;
  uint64_t ops, nulls, bad_errno, damaged;
} cacheless_t;

static void *cacheless_thread(void *arg) {
  cacheless_t *t = arg;
  uint64_t seed = (uint64_t)(uintptr_t)t * K;
  void *first = smp_malloc(64); // the first miss creates the thread's cache
  if (first == NULL) t->nulls++, t->bad_errno += errno != ENOMEM;
  if (t->all_started) pthread_barrier_wait(t->all_started);
  char *p[32] = {0};
  size_t n[32] = {0};
  for (int i = 0; i < 3000; i++) {
    int k = i % 32;
    if (p[k]) {
      t->damaged += !intact(p[k], n[k], seed + (uint64_t)k);
      smp_free(p[k]);
    }
    n[k] = 1 + (size_t)((i * 7919) % 3000);
    errno = 0;
    p[k] = smp_malloc(n[k]);
    t->ops++;
    if (p[k] == NULL) {
      t->nulls++;
      t->bad_errno += errno != ENOMEM;
    } else {
      fill(p[k], n[k], seed + (uint64_t)k);
    }
  }
  for (int k = 0; k < 32; k++)
    if (p[k]) {
      t->damaged += !intact(p[k], n[k], seed + (uint64_t)k);
      smp_free(p[k]);
    }
  smp_free(first);
  return NULL;
}

Test(fault, thread_without_cache_memory_still_allocates) {
  if (smp_frontend_is_percpu())
    cr_skip_test("per-CPU front end: threads map no cache (see the fault_tcache run)");
  keep(smp_malloc(64), 64); // a chunk with room exists: spans need no mapping

  plan(MAP, 1, 0); // the new thread's cache mapping fails once
  cacheless_t one = {0};
  pthread_t t;
  pthread_create(&t, NULL, cacheless_thread, &one);
  pthread_join(t, NULL);
  smp_os_fault_counts_t c = counts();
  print_counts("thread cache map fails once", c, one.nulls);
  cr_assert_eq(c.faults[SMP_OS_FAULT_MAP], 1);
  cr_assert_eq(one.nulls + one.damaged + one.bad_errno, 0);

  // Every map refused; three threads at once, so at most one reuses the retired cache.
  enum { T = 3 };
  plan(MAP, 0, ALWAYS);
  pthread_barrier_t b;
  pthread_barrier_init(&b, NULL, T);
  cacheless_t many[T] = {{0}};
  pthread_t ts[T];
  for (int i = 0; i < T; i++) {
    many[i].all_started = &b;
    pthread_create(&ts[i], NULL, cacheless_thread, &many[i]);
  }
  uint64_t nulls = 0;
  for (int i = 0; i < T; i++) {
    pthread_join(ts[i], NULL);
    nulls += many[i].nulls;
    cr_assert_eq(many[i].damaged, 0);
    cr_assert_eq(many[i].bad_errno, 0, "a NULL without ENOMEM");
  }
  pthread_barrier_destroy(&b);
  c = counts();
  print_counts("thread cache maps all fail", c, nulls);
  cr_assert_geq(c.faults[SMP_OS_FAULT_MAP], T - 1, "the threads ran without a cache");
  verify_live("after cache-less threads");
  assert_recovered("after cache-less threads");
}

Test(fault, frontend_is_the_one_asked_for) {
  cr_assert(test_frontend_check("test_fault", stderr), "see the FAIL line above");
}

// ---- the per-CPU caches' start-up when the OS refuses their regions ----

Test(fault, percpu_startup_failure_leaves_a_working_heap_and_fork) {
  if (smp_frontend_is_percpu())
    cr_skip_test("per-CPU caches run here: their start-up cannot be replayed (fault_tcache)");
  // This process runs on per-thread caches; replay the per-CPU start-up with the first, then
  // the second of its two mappings refused. It must report failure, unmap what it mapped, and
  // leave nothing that a later fork (which takes every per-CPU lock) trips over.
  for (uint64_t nth = 1; nth <= 2; nth++) {
    plan(MAP, nth, 0);
    const char *reason = NULL;
    bool ok = smp_cpucache_init(&reason);
    smp_os_fault_counts_t c = counts();
    if (c.calls[SMP_OS_FAULT_MAP] == 0) cr_skip_test("no rseq here: %s", reason);
    print_counts(nth == 1 ? "per-CPU start-up, 1st map fails" : "per-CPU start-up, 2nd map fails",
                 c, 0);
    cr_assert_not(ok);
    cr_assert_eq(c.faults[SMP_OS_FAULT_MAP], 1);
    cr_assert_eq(c.unmaps, c.calls[SMP_OS_FAULT_MAP] - 1, "the mapping that succeeded is returned");
    plan(0, 0, 0);
    keep(smp_malloc(100), 100);
    pid_t pid = fork();
    if (pid == 0) {
      void *p = smp_malloc(100);
      _exit(p ? 0 : 1);
    }
    cr_assert_gt(pid, 0);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
  }
  assert_recovered("after per-CPU start-up failures");
}

// ---- the per-CPU caches' fence refused: errno of malloc and free ----

static void *use_another_index(void *arg) {
  pthread_barrier_t *b = arg;
  pthread_barrier_wait(b);
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  do { // keep running while the main thread runs too: the two get different cache indexes
    for (int i = 0; i < 1000; i++) smp_free(smp_malloc(16 + (size_t)i % 512));
    clock_gettime(CLOCK_MONOTONIC, &t);
  } while ((t.tv_sec - t0.tv_sec) * 1000000000ll + (t.tv_nsec - t0.tv_nsec) < 50000000);
  pthread_barrier_wait(b);
  return NULL;
}

// Caches with at least one block cached or one hit.
static unsigned cache_indexes_used(void) {
  unsigned used = 0;
  smp_cpucache_cache_stats_t v;
  for (unsigned i = 0; smp_cpucache_cache_stats(i, &v, NULL); i++)
    used += v.hits + v.misses + v.cached_bytes != 0;
  return used;
}

Test(fault, refused_cache_fence_leaves_errno_alone) {
  if (!smp_frontend_is_percpu()) cr_skip_test("per-thread caches need no fence");
  // A second cache index is used, then goes idle: the slow path's periodic idle scan drains
  // it, and the drain's membarrier fence is refused (seccomp) from then on.
  for (int tries = 0; tries < 20 && cache_indexes_used() < 2; tries++) {
    pthread_barrier_t b;
    pthread_barrier_init(&b, NULL, 2);
    pthread_t t;
    pthread_create(&t, NULL, use_another_index, &b);
    use_another_index(&b);
    pthread_join(t, NULL);
    pthread_barrier_destroy(&b);
  }
  if (cache_indexes_used() < 2) cr_skip_test("the two threads never ran at once");
  pin_to_one_cpu(); // so the other index stays idle (before the fix in smp_rseq_fence, a few
                    // of the calls below returned with errno EPERM from the refused fence)
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_membarrier, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
  struct sock_fprog prog = {.len = SMP_ARRAY_LEN(f), .filter = f};
  cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
  cr_assert_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0);
  cr_assert_neq(syscall(__NR_membarrier, 0, 0, 0), 0, "membarrier is refused now");

  enum { N = 300000 }; // about 10000 refills of 32 blocks: two idle scans at least
  void **p = malloc(N * sizeof *p);
  unsigned changed = 0;
  for (int i = 0; i < N; i++) {
    errno = EDOM;
    p[i] = smp_malloc(16);
    cr_assert_not_null(p[i]);
    changed += errno != EDOM;
  }
  for (int i = 0; i < N; i++) {
    errno = EDOM;
    smp_free(p[i]);
    changed += errno != EDOM;
  }
  free(p);
  cr_assert_eq(changed, 0, "%u successful mallocs/frees changed errno", changed);
}

// ---- a per-CPU cache region that cannot be made writable ----

typedef struct {
  pthread_barrier_t *start;
  _Atomic int *stop;
  uint64_t ops, nulls;
} churner_t;

static void *churn_until_stopped(void *arg) {
  churner_t *c = arg;
  pthread_barrier_wait(c->start);
  while (!atomic_load(c->stop))
    for (int i = 0; i < 1000; i++, c->ops++) {
      void *p = smp_malloc(16 + (size_t)i % 512);
      c->nulls += p == NULL;
      smp_free(p);
    }
  return NULL;
}

Test(fault, refused_region_commit_is_tried_again_rarely) {
  if (!smp_frontend_is_percpu()) cr_skip_test("per-thread caches have no per-CPU regions");
  smp_cpucache_cache_stats_t v;
  unsigned used = 0, regions = 0;
  for (unsigned i = 0; smp_cpucache_cache_stats(i, &v, NULL); i++) regions++, used += v.misses != 0;
  if (used == regions) cr_skip_test("every cache region is in use already");
  for (int i = 0; i < 64; i++) smp_free(smp_malloc(16 + (size_t)i * 8)); // spans exist: no chunk maps
  // Every commit refused; two threads at once, so one of them runs on an index whose region
  // was never used. Its calls go to the central lists; the commit is tried once every 1024
  // of its misses, not on each (before, every call of that thread made a failing mprotect).
  plan(MAP, 0, ALWAYS);
  pthread_barrier_t b;
  pthread_barrier_init(&b, NULL, 3);
  _Atomic int stop = 0;
  churner_t c[2] = {{.start = &b, .stop = &stop}, {.start = &b, .stop = &stop}};
  pthread_t t[2];
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, churn_until_stopped, &c[i]);
  pthread_barrier_wait(&b);
  usleep(100 * 1000);
  atomic_store(&stop, 1);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  pthread_barrier_destroy(&b);
  smp_os_fault_counts_t k = counts();
  plan(0, 0, 0);
  uint64_t ops = c[0].ops + c[1].ops;
  print_counts("region commit refused", k, c[0].nulls + c[1].nulls);
  fprintf(stderr, "  %llu operations\n", (unsigned long long)ops);
  if (k.faults[SMP_OS_FAULT_MAP] == 0) cr_skip_test("the two threads never ran at once");
  cr_assert_eq(c[0].nulls + c[1].nulls, 0, "a region that cannot be committed costs no NULL");
  cr_assert_geq(ops, 100000);
  // Each operation on that index misses twice (malloc and free), whatever its share of them.
  cr_assert_leq(k.calls[SMP_OS_FAULT_MAP], 2 * ops / 1024 + 8,
                "%llu commit attempts for %llu operations",
                (unsigned long long)k.calls[SMP_OS_FAULT_MAP], (unsigned long long)ops);
  verify_live("after a refused region commit");
}

// ---- (e) many threads, mixed sizes, 5% of OS calls failing ----

enum { THREADS = 4, SLOTS = 128, MAILBOXES = 64 };
#define RUN_NS 2000000000ll      // at least this long...
#define RUN_MAX_NS 8000000000ll  // ...and longer, up to this, until every kind saw MIN_CALLS
#define MIN_CALLS 200            // so that at 5% a kind with no fault is a 1-in-30000 event
#define BUDGET (48 * MiB) // live bytes per thread

typedef struct msg {
  char *p;
  size_t n;
  uint64_t seed;
} msg_t;

static _Atomic(msg_t *) mailbox[MAILBOXES];
static _Atomic bool stop;
static _Atomic uint64_t total_ops, total_nulls, total_bad_errno, total_damaged, total_not_zero,
    total_threads_spawned, total_errno_changed;

typedef struct worker {
  int id;
  uint64_t rng;
  block_t slot[SLOTS];
  size_t bytes;
  block_t resized; // worker 3: a huge block resized again and again (mremap's traffic)
} worker_t;

static uint64_t rnd(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static size_t pick_size(uint64_t *s) {
  uint64_t r = rnd(s) % 100;
  if (r < 70) return 1 + rnd(s) % 1024;
  if (r < 92) return 1025 + rnd(s) % (64 * KiB - 1024);
  if (r < 99) return 64 * KiB + 1 + rnd(s) % (2 * MiB - 64 * KiB);
  return 2 * MiB + 1 + rnd(s) % (6 * MiB);
}

// Set before each call: a NULL must come with ENOMEM, a success must leave errno alone (the OS
// wrappers keep the kernel's errno out of the caller's way even when they fail).
#define ERRNO_BEFORE EDOM

static void count_null(void) {
  atomic_fetch_add(&total_nulls, 1);
  if (errno != ENOMEM) atomic_fetch_add(&total_bad_errno, 1);
}

static void count_success(void) {
  if (errno != ERRNO_BEFORE) atomic_fetch_add(&total_errno_changed, 1);
}

static void check_block(const block_t *b) {
  if (!intact(b->p, b->n, b->seed)) atomic_fetch_add(&total_damaged, 1);
}

static void *short_thread(void *arg) {
  uint64_t s = (uint64_t)(uintptr_t)arg | 1;
  block_t b[8] = {{0}};
  for (int i = 0; i < 64; i++) {
    block_t *x = &b[i % 8];
    if (x->p) {
      check_block(x);
      smp_free(x->p);
    }
    x->n = 1 + rnd(&s) % 4096;
    x->seed = rnd(&s);
    errno = ERRNO_BEFORE;
    x->p = smp_malloc(x->n);
    if (x->p == NULL) {
      count_null();
      continue;
    }
    count_success();
    fill(x->p, x->n, x->seed);
  }
  for (int i = 0; i < 8; i++)
    if (b[i].p) {
      check_block(&b[i]);
      smp_free(b[i].p);
    }
  return NULL;
}

static void worker_alloc(worker_t *w, block_t *b) {
  size_t n = pick_size(&w->rng);
  if (w->bytes + n > BUDGET) return;
  uint64_t r = rnd(&w->rng) % 100;
  size_t align = (size_t)16 << (rnd(&w->rng) % 17); // 16 B .. 1 MiB
  errno = ERRNO_BEFORE;
  char *p;
  if (r < 50) {
    p = smp_malloc(n);
  } else if (r < 70) {
    p = smp_calloc(1, n);
    if (p && !all_zero(p, n)) atomic_fetch_add(&total_not_zero, 1);
  } else if (r < 85) {
    p = smp_aligned_alloc(align, n);
    if (p && (uintptr_t)p % align) atomic_fetch_add(&total_damaged, 1);
  } else {
    p = smp_realloc(NULL, n);
  }
  if (p == NULL) {
    count_null();
    return;
  }
  count_success();
  *b = (block_t){p, n, rnd(&w->rng)};
  fill(p, n, b->seed);
  w->bytes += n;
}

static void worker_use(worker_t *w, block_t *b) {
  check_block(b);
  uint64_t r = rnd(&w->rng) % 100;
  if (r < 40) {
    smp_free(b->p);
    w->bytes -= b->n;
    b->p = NULL;
  } else if (r < 80) {
    size_t n = rnd(&w->rng) % 4 ? pick_size(&w->rng) : b->n * 2 + 1;
    if (w->bytes - b->n + n > BUDGET) n = b->n / 2 + 1;
    errno = ERRNO_BEFORE;
    char *q = smp_realloc(b->p, n);
    if (q == NULL) {
      count_null();
      check_block(b); // the old block survives a failed realloc
      return;
    }
    count_success();
    if (!intact(q, n < b->n ? n : b->n, b->seed)) atomic_fetch_add(&total_damaged, 1);
    w->bytes += n - b->n;
    *b = (block_t){q, n, rnd(&w->rng)};
    fill(q, n, b->seed);
  } else { // hand it to whichever thread looks in this mailbox next
    msg_t *m = malloc(sizeof *m);
    *m = (msg_t){b->p, b->n, b->seed};
    msg_t *old = atomic_exchange(&mailbox[rnd(&w->rng) % MAILBOXES], m);
    w->bytes -= b->n;
    b->p = NULL;
    if (old) {
      if (!intact(old->p, old->n, old->seed)) atomic_fetch_add(&total_damaged, 1);
      smp_free(old->p);
      free(old);
    }
  }
}

// Huge blocks carry the pattern only in the first 64 bytes of each 4 KiB page (mremap and
// copies move whole pages), so resizing one is cheap enough to do often.
static void sparse(char *p, size_t n, uint64_t seed, bool write, bool *ok) {
  uint64_t *w = (uint64_t *)p;
  for (size_t page = 0; page * 4096 < n; page++)
    for (size_t i = page * 512; i < page * 512 + 8 && (i + 1) * 8 <= n; i++) {
      if (write)
        w[i] = seed ^ (i * K);
      else if (w[i] != (seed ^ (i * K)))
        *ok = false;
    }
}

static void worker_resize_huge(worker_t *w) {
  block_t *b = &w->resized;
  size_t n = 2 * MiB + 1 + rnd(&w->rng) % (6 * MiB);
  bool ok = true;
  errno = ERRNO_BEFORE;
  if (b->p == NULL || rnd(&w->rng) % 4 == 0) { // a fresh mapping now and then
    if (b->p) {
      sparse(b->p, b->n, b->seed, false, &ok);
      smp_free(b->p);
      b->p = NULL;
    }
    char *p = smp_malloc(n);
    if (p == NULL) {
      count_null();
    } else {
      count_success();
      *b = (block_t){p, n, rnd(&w->rng)};
      sparse(p, n, b->seed, true, NULL);
    }
  } else {
    char *q = smp_realloc(b->p, n);
    if (q == NULL) {
      count_null();
      sparse(b->p, b->n, b->seed, false, &ok); // untouched by the failure
    } else {
      count_success();
      sparse(q, n < b->n ? n : b->n, b->seed, false, &ok);
      *b = (block_t){q, n, rnd(&w->rng)};
      sparse(q, n, b->seed, true, NULL);
    }
  }
  if (!ok) atomic_fetch_add(&total_damaged, 1);
}

static void *worker_main(void *arg) {
  worker_t *w = arg;
  uint64_t ops = 0;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    block_t *b = &w->slot[rnd(&w->rng) % SLOTS];
    if (b->p == NULL)
      worker_alloc(w, b);
    else
      worker_use(w, b);
    ops++;
    if (w->id == 0 && ops % 512 == 0) smp_trim(); // purges, drains, chunk unmaps
    if (w->id == 3 && ops % 4 == 0) worker_resize_huge(w);
    if (w->id == 1 && ops % 256 == 0) {           // threads come and go (cache creation)
      pthread_t t;
      if (pthread_create(&t, NULL, short_thread, (void *)(uintptr_t)(ops * K)) == 0) {
        pthread_join(t, NULL);
        atomic_fetch_add(&total_threads_spawned, 1);
      }
    }
  }
  for (int i = 0; i < SLOTS; i++)
    if (w->slot[i].p) {
      check_block(&w->slot[i]);
      smp_free(w->slot[i].p);
    }
  if (w->resized.p) {
    bool ok = true;
    sparse(w->resized.p, w->resized.n, w->resized.seed, false, &ok);
    if (!ok) atomic_fetch_add(&total_damaged, 1);
    smp_free(w->resized.p);
  }
  atomic_fetch_add(&total_ops, ops);
  return NULL;
}

Test(fault, random_faults_under_many_threads) {
  plan(SMP_OS_FAULT_ALL, 0, ALWAYS / 20); // 5% of maps, remaps and purges fail
  static worker_t w[THREADS];
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++) {
    w[i] = (worker_t){.id = i, .rng = (uint64_t)(i + 1) * K};
    cr_assert_eq(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
  }
  struct timespec start, now, tick = {0, 10000000};
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    nanosleep(&tick, NULL);
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long ns = (now.tv_sec - start.tv_sec) * 1000000000ll + (now.tv_nsec - start.tv_nsec);
    smp_os_fault_counts_t c = counts();
    bool enough = atomic_load(&total_nulls) > 0;
    for (int k = 0; k < SMP_OS_FAULT_KINDS; k++) enough &= c.calls[k] >= MIN_CALLS;
    if (ns >= RUN_MAX_NS || (ns >= RUN_NS && enough)) break;
  }
  atomic_store(&stop, true);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  smp_os_fault_counts_t c = counts();
  plan(0, 0, 0);
  for (int i = 0; i < MAILBOXES; i++) {
    msg_t *m = atomic_exchange(&mailbox[i], NULL);
    if (m) {
      if (!intact(m->p, m->n, m->seed)) atomic_fetch_add(&total_damaged, 1);
      smp_free(m->p);
      free(m);
    }
  }
  print_counts("4 threads, 5% of OS calls fail", c, total_nulls);
  fprintf(stderr, "fault: random run (%s): %llu operations, %llu short-lived threads\n",
          smp_frontend_name(), (unsigned long long)total_ops,
          (unsigned long long)total_threads_spawned);
  cr_assert_eq(total_damaged, 0, "blocks damaged or misaligned");
  cr_assert_eq(total_not_zero, 0, "calloc returned non-zero bytes");
  cr_assert_eq(total_bad_errno, 0, "a NULL without ENOMEM");
  cr_assert_eq(total_errno_changed, 0, "a successful call changed errno");
  cr_assert_gt(total_ops, 1000);
  cr_assert_gt(c.faults[SMP_OS_FAULT_MAP], 0);
  cr_assert_gt(c.faults[SMP_OS_FAULT_REMAP], 0);
  cr_assert_gt(c.faults[SMP_OS_FAULT_PURGE], 0);
  cr_assert_gt(total_nulls, 0, "some faults reached the caller as ENOMEM");
  assert_recovered("after the random run");
}
