// The heap API of smpalloc.h ("Heaps"): heaps of their own (smp_heap_create), heaps over memory
// the caller gives (smp_heap_create_in: anonymous memory, a MAP_SHARED memfd seen by a forked
// child, hugetlb pages), allocation flags (SMP_ZERO, SMP_ALIGN, SMP_NOWAIT, SMP_RESERVE,
// SMP_NOFAIL), limits, the OOM handler, the emergency reserve, visiting, destroying, and the
// version 2 statistics. Every test checks the header's contract: contents written and read
// back, errno values, where blocks lie, which heap a block belongs to.
// Linked against libsmpalloc.so, so malloc/free here are smpalloc's and a block of any heap is
// freed by plain free(). Criterion runs each test in its own process, so a test may install an
// OOM handler, set the reserve or fork without cleaning up. Misuse that must abort (a block of
// a destroyed heap freed, the default heap destroyed, an SMP_NOFAIL request that cannot be met)
// runs in heap_helper.c, whose stderr and signal are checked here as test_misuse.c does. The
// front end is the one SMPALLOC_OPTIONS asks for (tests/test_frontend.h), here and in the helper.
#define _GNU_SOURCE
#include "test_frontend.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api_util.h"
#include "smpalloc.h"

#ifndef HEAP_HELPER
#error "HEAP_HELPER must name the helper executable"
#endif

#define KiB ((size_t)1024)
#define MiB ((size_t)1024 * 1024)
#define HEAP_PAGE ((size_t)8192) // the 8 KiB pages of smp_heap_create_in's contract

// ---- helpers ------------------------------------------------------------------------------

static smp_stats_t heap_stats(smp_heap_t *h) {
  smp_stats_t s;
  memset(&s, 0, sizeof s);
  s.version = SMP_STATS_VERSION;
  s.size = sizeof s;
  int rc = smp_heap_stats_get(h, &s);
  cr_assert_eq(rc, 0, "smp_heap_stats_get returned %d", rc);
  cr_assert_geq(s.version, 2, "smp_heap_stats_get filled version %u", s.version);
  cr_assert_eq(s.size, sizeof s, "smp_heap_stats_get filled %u bytes, want %zu", s.size, sizeof s);
  return s;
}

static smp_stats_t process_stats(void) {
  smp_stats_t s;
  memset(&s, 0, sizeof s);
  s.version = SMP_STATS_VERSION;
  s.size = sizeof s;
  int rc = smp_stats_get(&s);
  cr_assert_eq(rc, 0, "smp_stats_get returned %d", rc);
  cr_assert_eq(s.size, sizeof s, "smp_stats_get filled %u bytes", s.size);
  return s;
}

static smp_heap_t *new_heap(const char *name, size_t limit) {
  errno = 0;
  smp_heap_t *h = smp_heap_create(name, limit);
  cr_assert_not_null(h, "smp_heap_create(%s, %zu) failed, errno %d", name, limit, errno);
  return h;
}

// Allocate size-byte blocks from h with flags until one fails or cap are live; the blocks go
// to out[], each filled with a pattern seeded by its index. Returns the count; *err is the
// failing call's errno (0 if cap was reached first).
static size_t fill_heap(smp_heap_t *h, size_t size, unsigned flags, void **out, size_t cap,
                        int *err) {
  size_t n = 0;
  *err = 0;
  while (n < cap) {
    errno = 0;
    void *p = smp_heap_malloc(h, size, flags);
    if (p == NULL) {
      *err = errno;
      break;
    }
    pattern_fill(p, size, (unsigned)n);
    out[n++] = p;
  }
  return n;
}

static size_t check_filled(void **blocks, size_t n, size_t size) {
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) bad += pattern_check(blocks[i], size, (unsigned)i) != size;
  return bad;
}

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
  return x < y ? -1 : x > y;
}

// Live blocks never overlap (sorts blocks).
static void assert_disjoint(void **blocks, size_t n) {
  qsort(blocks, n, sizeof blocks[0], cmp_ptr);
  for (size_t i = 0; i + 1 < n; i++)
    cr_assert_leq((uintptr_t)blocks[i] + smp_usable_size(blocks[i]), (uintptr_t)blocks[i + 1],
                  "blocks %p and %p overlap", blocks[i], blocks[i + 1]);
}

static size_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  cr_assert_not_null(f);
  unsigned long size = 0, resident = 0;
  cr_assert_eq(fscanf(f, "%lu %lu", &size, &resident), 2);
  fclose(f);
  return resident * (size_t)sysconf(_SC_PAGESIZE);
}


// The text malloc_stats() writes to fd 2, pointed at a memory file for the call.
static size_t capture_malloc_stats(char *buf, size_t cap) {
  int fd = memfd_create("heap-report", 0);
  cr_assert_geq(fd, 0);
  fflush(stderr);
  int saved = dup(STDERR_FILENO);
  cr_assert_geq(saved, 0);
  cr_assert_geq(dup2(fd, STDERR_FILENO), 0);
  malloc_stats();
  dup2(saved, STDERR_FILENO);
  close(saved);
  ssize_t n = pread(fd, buf, cap - 1, 0);
  close(fd);
  buf[n > 0 ? n : 0] = 0;
  return n > 0 ? (size_t)n : 0;
}

// Memory the caller owns for smp_heap_create_in: len bytes at base inside a private anonymous
// mapping with GUARD bytes on either side (base = map + GUARD + skew: any alignment).
#define GUARD ((size_t)64 * 1024)
typedef struct region {
  char *map, *base;
  size_t map_len, len;
} region_t;

static void region_map(region_t *r, size_t len, size_t skew) {
  r->map_len = len + skew + 2 * GUARD;
  r->map = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  cr_assert(r->map != MAP_FAILED, "mmap %zu bytes: errno %d", r->map_len, errno);
  r->base = r->map + GUARD + skew;
  r->len = len;
}

// The 8 KiB pages wholly inside the region: the only ones the heap may use.
static uintptr_t region_lo(const region_t *r) {
  return ((uintptr_t)r->base + HEAP_PAGE - 1) & ~(uintptr_t)(HEAP_PAGE - 1);
}
static uintptr_t region_hi(const region_t *r) {
  return ((uintptr_t)r->base + r->len) & ~(uintptr_t)(HEAP_PAGE - 1);
}
static bool in_region(const region_t *r, const void *p, size_t n) {
  return (uintptr_t)p >= region_lo(r) && (uintptr_t)p + n <= region_hi(r);
}

// The bytes of the mapping the heap must never write: the guards and the partial pages at
// either end of the region.
static void region_guard_fill(const region_t *r) {
  char *lo = (char *)region_lo(r), *hi = (char *)region_hi(r);
  pattern_fill(r->map, (size_t)(lo - r->map), 901);
  pattern_fill(hi, (size_t)(r->map + r->map_len - hi), 902);
}
static void region_guard_check(const region_t *r, const char *when) {
  char *lo = (char *)region_lo(r), *hi = (char *)region_hi(r);
  size_t below = (size_t)(lo - r->map), above = (size_t)(r->map + r->map_len - hi);
  size_t at = pattern_check(r->map, below, 901);
  cr_assert_eq(at, below, "%s: byte at region base%+td (outside the pages wholly inside) written",
               when, (r->map + at) - r->base);
  at = pattern_check(hi, above, 902);
  cr_assert_eq(at, above, "%s: byte at region end%+td (outside the pages wholly inside) written",
               when, (hi + at) - (r->base + r->len));
}

// ---- death tests (heap_helper.c) -----------------------------------------------------------

static run_result_t helper_run; // large; off the stack

// Run the helper's scenario; it must die by SIGABRT after a report line on stderr
// "smpalloc: <function>: ... <needle> ...". function: a substring the function must contain
// (NULL: any). check_ptr: the report's last 0x address is the pointer the helper announced.
static const char *expect_report(const char *scenario, const char *function, const char *needle,
                                 bool check_ptr) {
  run_result_t *r = &helper_run;
  char *argv[] = {(char *)HEAP_HELPER, (char *)scenario, NULL};
  cr_assert(run_program(HEAP_HELPER, argv, NULL, r), "cannot start %s", HEAP_HELPER);
  cr_log_info("%s: stdout=[%s] stderr=[%s]", scenario, r->out, r->err);
  cr_assert(strstr(r->out, ": front end ") != NULL && strstr(r->out, "FAIL") == NULL,
            "%s: the helper's front end check: [%s] (status 0x%x)", scenario, r->out, r->status);
  cr_assert(strstr(r->out, "survived") == NULL,
            "%s: the call returned instead of aborting (stdout [%s] stderr [%s])", scenario,
            r->out, r->err);
  cr_assert(!(WIFEXITED(r->status) && WEXITSTATUS(r->status) >= 90),
            "%s: the helper's set-up failed (status %d): [%s]", scenario, WEXITSTATUS(r->status),
            r->err);
  cr_assert(WIFSIGNALED(r->status), "%s: not killed by a signal (status 0x%x), stderr [%s]",
            scenario, r->status, r->err);
  cr_assert_eq(WTERMSIG(r->status), SIGABRT, "%s: killed by signal %d, want SIGABRT; stderr [%s]",
               scenario, WTERMSIG(r->status), r->err);

  const char *report = strstr(r->err, "smpalloc: ");
  cr_assert_not_null(report, "%s: no \"smpalloc: \" report on stderr: [%s]", scenario, r->err);
  const char *eol = strchr(report, '\n');
  cr_assert_not_null(eol, "%s: report line not terminated: [%s]", scenario, report);
  static char line[1024];
  size_t len = (size_t)(eol - report) < sizeof line - 1 ? (size_t)(eol - report) : sizeof line - 1;
  memcpy(line, report, len);
  line[len] = 0;
  const char *fn = line + strlen("smpalloc: ");
  const char *colon = strstr(fn, ": ");
  cr_assert_not_null(colon, "%s: report has no \"<function>: \": [%s]", scenario, line);
  cr_assert_gt(colon - fn, 0, "%s: empty function in [%s]", scenario, line);
  if (function) {
    char got[128] = {0};
    memcpy(got, fn, (size_t)(colon - fn) < sizeof got - 1 ? (size_t)(colon - fn) : sizeof got - 1);
    cr_assert(strstr(got, function) != NULL, "%s: report names function \"%s\", want \"%s\": [%s]",
              scenario, got, function, line);
  }
  cr_assert(strstr(colon, needle) != NULL, "%s: report lacks \"%s\": [%s]", scenario, needle, line);
  if (check_ptr) {
    const char *ptr_line = strstr(r->out, "ptr=");
    cr_assert_not_null(ptr_line, "%s: helper printed no pointer", scenario);
    unsigned long long want = strtoull(ptr_line + 4, NULL, 16);
    const char *hex = NULL;
    for (const char *h = strstr(line, " 0x"); h; h = strstr(h + 1, " 0x")) hex = h + 1;
    cr_assert_not_null(hex, "%s: report has no 0x address: [%s]", scenario, line);
    unsigned long long got = strtoull(hex, NULL, 16);
    cr_assert_eq(got, want, "%s: report names 0x%llx, the block is 0x%llx", scenario, got, want);
  }
  return r->out;
}

// ---- identity -----------------------------------------------------------------------------

Test(heap, frontend_is_the_one_asked_for) {
  cr_assert(test_frontend_check("test_heap", stderr), "see the FAIL line above");
}

Test(heap, helper_sanity) {
  char *argv[] = {(char *)HEAP_HELPER, (char *)"no_such_scenario", NULL};
  cr_assert(run_program(HEAP_HELPER, argv, NULL, &helper_run));
  cr_assert(WIFEXITED(helper_run.status) && WEXITSTATUS(helper_run.status) == 64,
            "status 0x%x stdout [%s] stderr [%s]", helper_run.status, helper_run.out,
            helper_run.err);
  cr_assert(strstr(helper_run.err, "smpalloc") == NULL, "library complained: %s", helper_run.err);
}

Test(heap, default_heap_and_names) {
  smp_heap_t *d = smp_heap_default();
  cr_assert_not_null(d);
  cr_assert_eq(smp_heap_default(), d, "smp_heap_default is not stable");
  cr_assert_str_eq(smp_heap_name(d), "default");

  smp_heap_t *h = new_heap("first", 0);
  cr_assert_neq(h, d);
  cr_assert_str_eq(smp_heap_name(h), "first");
  smp_heap_t *anon = new_heap(NULL, 0);
  cr_assert_str_eq(smp_heap_name(anon), "heap", "a NULL name gives \"heap\"");
  cr_assert_neq(anon, h);

  // The name is copied, and at most 31 bytes of it are kept.
  char name[64];
  snprintf(name, sizeof name, "%s", "0123456789abcdefghijklmnopqrstuvwxyzABCD"); // 40 bytes
  smp_heap_t *longer = new_heap(name, 0);
  memset(name, 'X', 40);
  const char *got = smp_heap_name(longer);
  cr_assert_str_eq(got, "0123456789abcdefghijklmnopqrstu", "a 40-byte name kept as \"%s\"", got);
  smp_heap_t *again = new_heap("first", 0); // names need not be unique
  cr_assert_neq(again, h);
  cr_assert_str_eq(smp_heap_name(again), "first");

  smp_heap_destroy(h);
  smp_heap_destroy(anon);
  smp_heap_destroy(longer);
  smp_heap_destroy(again);
  smp_heap_destroy(NULL); // ignored
  void *p = malloc(hide(100));
  cr_assert_not_null(p, "the allocator works after smp_heap_destroy(NULL)");
  cr_assert_eq(smp_heap_of(p), d);
  free(p);
}

// ---- allocation in a heap -----------------------------------------------------------------

static size_t next_size(size_t n) { return n < 1100 ? n + 1 : n + 1 + n / 97; }

Test(alloc, every_size_range_written_read_back) {
  enum { MAX = 2048 };
  static void *blocks[MAX];
  static size_t sizes[MAX];
  smp_heap_t *h = new_heap("sizes", 0);
  size_t count = 0;
  // Every small size 16 B .. 64 KiB (all sizes to 1100, then steps of ~1%), then large and huge.
  for (size_t n = 16; n <= 64 * KiB; n = next_size(n)) sizes[count++] = n;
  sizes[count++] = 64 * KiB;
  sizes[count++] = 100 * KiB;
  sizes[count++] = 1 * MiB;
  sizes[count++] = 8 * MiB;
  cr_assert_leq(count, (size_t)MAX);
  for (size_t i = 0; i < count; i++) {
    errno = 0;
    void *p = smp_heap_malloc(h, sizes[i], 0);
    cr_assert_not_null(p, "smp_heap_malloc(%zu) failed, errno %d", sizes[i], errno);
    cr_assert(is_aligned(p, 16), "smp_heap_malloc(%zu) = %p is not 16-aligned", sizes[i], p);
    cr_assert_geq(smp_usable_size(p), sizes[i], "usable size of a %zu-byte block", sizes[i]);
    cr_assert_eq(smp_heap_of(p), h, "smp_heap_of(a %zu-byte block of the heap)", sizes[i]);
    pattern_fill(p, sizes[i], (unsigned)i);
    blocks[i] = p;
  }
  for (size_t i = 0; i < count; i++)
    cr_assert_eq(pattern_check(blocks[i], sizes[i], (unsigned)i), sizes[i],
                 "the %zu-byte block lost its contents", sizes[i]);
  // Half freed by free, half by smp_free.
  for (size_t i = 0; i < count; i++) {
    if (i % 2) free(blocks[i]);
    else smp_free(blocks[i]);
  }
  smp_stats_t s = heap_stats(h);
  cr_assert_eq(s.in_use, 0, "in_use %llu after every block was freed",
               (unsigned long long)s.in_use);
  smp_heap_destroy(h);
}

Test(alloc, heap_of_default_blocks) {
  smp_heap_t *d = smp_heap_default();
  const size_t sizes[] = {16, 1000, 64 * KiB, 100 * KiB, 8 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    void *p = malloc(hide(sizes[i]));
    void *q = smp_malloc(sizes[i]);
    void *x = smp_mallocx(sizes[i], 0);
    void *y = smp_heap_malloc(NULL, sizes[i], 0);
    cr_assert(p && q && x && y, "size %zu", sizes[i]);
    cr_assert_eq(smp_heap_of(p), d, "malloc(%zu): smp_heap_of is not the default heap", sizes[i]);
    cr_assert_eq(smp_heap_of(q), d, "smp_malloc(%zu)", sizes[i]);
    cr_assert_eq(smp_heap_of(x), d, "smp_mallocx(%zu, 0)", sizes[i]);
    cr_assert_eq(smp_heap_of(y), d, "smp_heap_malloc(NULL, %zu, 0)", sizes[i]);
    free(p);
    free(q);
    smp_free(x);
    free(y);
  }
}

Test(alloc, heap_of_non_blocks_is_null) {
  smp_heap_t *h = new_heap("of", 0);
  cr_assert_null(smp_heap_of(NULL));
  char *s = smp_heap_malloc(h, 64, 0), *l = smp_heap_malloc(h, 200 * KiB, 0),
       *g = smp_heap_malloc(h, 8 * MiB, 0), *m = malloc(hide(64)), *ml = malloc(hide(200 * KiB));
  cr_assert(s && l && g && m && ml);
  // Interior pointers, of every kind of block, of a heap and of the default heap.
  cr_assert_null(smp_heap_of(s + 16));
  cr_assert_null(smp_heap_of(s + 8));
  cr_assert_null(smp_heap_of(s + 1));
  cr_assert_null(smp_heap_of(l + 16));
  cr_assert_null(smp_heap_of(l + 8 * KiB));
  cr_assert_null(smp_heap_of(l + 100 * KiB));
  cr_assert_null(smp_heap_of(g + 16));
  cr_assert_null(smp_heap_of(g + 4 * MiB));
  cr_assert_null(smp_heap_of(m + 16));
  cr_assert_null(smp_heap_of(ml + 8 * KiB));
  // Foreign memory: the stack, static data, a private mapping, address 1.
  char local[64];
  memset(local, 0, sizeof local);
  static char data[64];
  cr_assert_null(smp_heap_of(opaque(local)));
  cr_assert_null(smp_heap_of(opaque(data)));
  void *map = mmap(NULL, 1 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  cr_assert(map != MAP_FAILED);
  cr_assert_null(smp_heap_of(map));
  cr_assert_null(smp_heap_of((char *)map + 4096));
  cr_assert_null(smp_heap_of((void *)1));
  cr_assert_null(smp_heap_of((void *)(uintptr_t)0x10000));
  munmap(map, 1 * MiB);
  // The blocks themselves are still found, and nothing was reported.
  cr_assert_eq(smp_heap_of(s), h);
  cr_assert_eq(smp_heap_of(l), h);
  cr_assert_eq(smp_heap_of(g), h);
  free(s);
  free(l);
  free(g);
  free(m);
  free(ml);
  smp_heap_destroy(h);
}

Test(alloc, calloc_zeroes_and_checks_overflow) {
  smp_heap_t *h = new_heap("calloc", 0);
  const size_t sizes[] = {24, 1000, 5000, 60 * KiB, 200 * KiB, 3 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    // Dirty blocks of the class first, so that calloc must zero reused memory.
    void *dirty[16];
    for (int k = 0; k < 16; k++) {
      dirty[k] = smp_heap_malloc(h, n, 0);
      cr_assert_not_null(dirty[k]);
      memset(dirty[k], 0xa5, smp_usable_size(dirty[k]));
    }
    for (int k = 0; k < 16; k++) free(dirty[k]);
    for (int k = 0; k < 16; k++) {
      errno = 0;
      char *p = smp_heap_calloc(h, n / 8, 8, 0);
      cr_assert_not_null(p, "smp_heap_calloc(%zu, 8): errno %d", n / 8, errno);
      cr_assert_eq(smp_heap_of(p), h);
      cr_assert(all_zero(p, n / 8 * 8), "smp_heap_calloc(%zu, 8) is not zero", n / 8);
      dirty[k] = p;
    }
    for (int k = 0; k < 16; k++) free(dirty[k]);
  }
  // Aligned and zeroed.
  char *a = smp_heap_calloc(h, 10, 100, SMP_ALIGN(4096));
  cr_assert_not_null(a);
  cr_assert(is_aligned(a, 4096) && all_zero(a, 1000));
  free(a);
  // The product overflows: ENOMEM.
  errno = 0;
  cr_assert_null(smp_heap_calloc(h, hide(SIZE_MAX / 2 + 2), 2, 0));
  cr_assert_eq(errno, ENOMEM, "overflowing calloc: errno %d", errno);
  errno = 0;
  cr_assert_null(smp_heap_calloc(h, hide((size_t)1 << 33), (size_t)1 << 32, 0));
  cr_assert_eq(errno, ENOMEM, "overflowing calloc: errno %d", errno);
  smp_heap_destroy(h);
}

Test(alloc, realloc_keeps_contents_and_heap) {
  smp_heap_t *h = new_heap("realloc", 0);
  // Small -> large -> huge -> small, contents kept, the block stays in h.
  const size_t steps[] = {40,      3000,    60 * KiB,  100 * KiB, 700 * KiB,
                          3 * MiB, 9 * MiB, 200 * KiB, 100,       16};
  char *p = smp_heap_malloc(h, steps[0], 0);
  cr_assert_not_null(p);
  pattern_fill(p, steps[0], 7);
  size_t kept = steps[0];
  for (size_t i = 1; i < sizeof steps / sizeof steps[0]; i++) {
    errno = 0;
    char *q = smp_heap_realloc(h, p, steps[i], 0);
    cr_assert_not_null(q, "smp_heap_realloc to %zu: errno %d", steps[i], errno);
    size_t common = kept < steps[i] ? kept : steps[i];
    cr_assert_eq(pattern_check(q, common, 7), common, "realloc %zu -> %zu lost contents", kept,
                 steps[i]);
    cr_assert_eq(smp_heap_of(q), h, "realloc to %zu left the heap", steps[i]);
    cr_assert_geq(smp_usable_size(q), steps[i]);
    pattern_fill(q, steps[i], 7);
    kept = steps[i];
    p = q;
  }
  // smp_reallocx keeps the block in its own heap.
  char *q = smp_reallocx(p, 5000, 0);
  cr_assert_not_null(q);
  cr_assert_eq(smp_heap_of(q), h);
  cr_assert_eq(pattern_check(q, kept, 7), kept);
  // NULL p: an allocation in h.
  char *n = smp_heap_realloc(h, NULL, 777, 0);
  cr_assert_not_null(n);
  cr_assert_eq(smp_heap_of(n), h);
  // Size 0: freed, NULL returned.
  smp_stats_t before = heap_stats(h);
  cr_assert_null(smp_heap_realloc(h, n, 0, 0));
  smp_stats_t after = heap_stats(h);
  cr_assert_lt(after.in_use, before.in_use, "realloc to 0 did not free (in_use %llu -> %llu)",
               (unsigned long long)before.in_use, (unsigned long long)after.in_use);
  free(q);
  smp_heap_destroy(h);
}

Test(alloc, realloc_moves_between_heaps) {
  smp_heap_t *a = new_heap("from", 0), *b = new_heap("to", 0), *d = smp_heap_default();
  const size_t sizes[] = {100, 20 * KiB, 300 * KiB, 4 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    // default -> a
    char *p = malloc(hide(n));
    cr_assert_not_null(p);
    pattern_fill(p, n, (unsigned)i);
    char *q = smp_heap_realloc(a, p, n + 10, 0);
    cr_assert_not_null(q);
    cr_assert_eq(smp_heap_of(q), a, "a default block resized into heap a is not a's");
    cr_assert_eq(pattern_check(q, n, (unsigned)i), n);
    // a -> b, shrinking (a move, even though it could shrink in place)
    char *r = smp_heap_realloc(b, q, n / 2, 0);
    cr_assert_not_null(r);
    cr_assert_eq(smp_heap_of(r), b);
    cr_assert_eq(pattern_check(r, n / 2, (unsigned)i), n / 2);
    // b -> default (h NULL)
    char *s = smp_heap_realloc(NULL, r, n, 0);
    cr_assert_not_null(s);
    cr_assert_eq(smp_heap_of(s), d);
    cr_assert_eq(pattern_check(s, n / 2, (unsigned)i), n / 2);
    // plain realloc of a heap block
    char *t = smp_heap_malloc(a, n, 0);
    cr_assert_not_null(t);
    pattern_fill(t, n, 99);
    char *u = realloc(t, n * 2);
    cr_assert_not_null(u);
    cr_assert_eq(pattern_check(u, n, 99), n);
    free(u);
    free(s);
  }
  smp_stats_t sa = heap_stats(a), sb = heap_stats(b);
  cr_assert_eq(sa.in_use, 0, "heap a still has %llu bytes in use", (unsigned long long)sa.in_use);
  cr_assert_eq(sb.in_use, 0, "heap b still has %llu bytes in use", (unsigned long long)sb.in_use);
  smp_heap_destroy(a);
  smp_heap_destroy(b);
}

Test(alloc, realloc_zero_flag_and_align_flag) {
  smp_heap_t *h = new_heap("realloc-flags", 0);
  // Dirty the target classes, so that the zeroing is real.
  for (size_t n = 4000; n <= 200 * KiB; n *= 7) {
    void *d[8];
    for (int k = 0; k < 8; k++) {
      d[k] = smp_heap_malloc(h, n, 0);
      cr_assert_not_null(d[k]);
      memset(d[k], 0xee, smp_usable_size(d[k]));
    }
    for (int k = 0; k < 8; k++) free(d[k]);
  }
  const size_t to[] = {4000, 28000, 196000};
  for (size_t i = 0; i < 3; i++) {
    char *p = smp_heap_malloc(h, 100, 0);
    cr_assert_not_null(p);
    size_t old = smp_usable_size(p);
    pattern_fill(p, old, 3);
    char *q = smp_heap_realloc(h, p, to[i], SMP_ZERO);
    cr_assert_not_null(q);
    cr_assert_eq(pattern_check(q, old, 3), old, "SMP_ZERO realloc lost the old contents");
    cr_assert(all_zero(q + old, to[i] - old), "SMP_ZERO realloc to %zu: bytes past the old "
              "usable size (%zu) are not zero", to[i], old);
    free(q);
  }
  char *p = smp_heap_malloc(h, 100, 0);
  cr_assert_not_null(p);
  pattern_fill(p, 100, 4);
  char *q = smp_heap_realloc(h, p, 5000, SMP_ALIGN(4096));
  cr_assert_not_null(q);
  cr_assert(is_aligned(q, 4096), "realloc with SMP_ALIGN(4096) gave %p", q);
  cr_assert_eq(pattern_check(q, 100, 4), 100);
  char *r = smp_reallocx(q, 100 * KiB, SMP_ALIGN(64 * KiB) | SMP_ZERO);
  cr_assert_not_null(r);
  cr_assert(is_aligned(r, 64 * KiB), "smp_reallocx with SMP_ALIGN(64 KiB) gave %p", r);
  cr_assert_eq(smp_heap_of(r), h);
  cr_assert_eq(pattern_check(r, 100, 4), 100);
  free(r);
  smp_heap_destroy(h);
}

Test(alloc, realloc_failure_leaves_block) {
  smp_heap_t *h = new_heap("realloc-fail", 0);
  char *p = smp_heap_malloc(h, 3000, 0);
  cr_assert_not_null(p);
  pattern_fill(p, 3000, 11);
  errno = 0;
  cr_assert_null(smp_heap_realloc(h, p, hide(SIZE_MAX), 0));
  cr_assert_eq(errno, ENOMEM, "realloc to SIZE_MAX: errno %d", errno);
  errno = 0;
  cr_assert_null(smp_heap_realloc(h, p, 5000, SMP_ALIGN(24)));
  cr_assert_eq(errno, EINVAL, "realloc with SMP_ALIGN(24): errno %d", errno);
  errno = 0;
  cr_assert_null(smp_reallocx(p, 5000, 0x100000u));
  cr_assert_eq(errno, EINVAL, "smp_reallocx with an unknown flag: errno %d", errno);
  errno = 0;
  cr_assert_null(smp_heap_realloc(h, p, 5000, SMP_NOWAIT | SMP_NOFAIL));
  cr_assert_eq(errno, EINVAL, "realloc with SMP_NOWAIT | SMP_NOFAIL: errno %d", errno);
  cr_assert_eq(pattern_check(p, 3000, 11), 3000, "a failed realloc changed the block");
  cr_assert_eq(smp_heap_of(p), h);
  // A limited heap: growing past the limit fails and leaves the block as it was.
  smp_heap_t *lim = new_heap("realloc-lim", 256 * KiB);
  char *q = smp_heap_malloc(lim, 1000, 0);
  cr_assert_not_null(q);
  pattern_fill(q, 1000, 12);
  errno = 0;
  cr_assert_null(smp_heap_realloc(lim, q, 512 * KiB, 0));
  cr_assert_eq(errno, ENOMEM, "growing past the limit: errno %d", errno);
  cr_assert_null(smp_reallocx(q, 4 * MiB, 0));
  cr_assert_eq(pattern_check(q, 1000, 12), 1000);
  cr_assert_eq(smp_heap_of(q), lim);
  free(q);
  free(p);
  smp_heap_destroy(lim);
  smp_heap_destroy(h);
}

// ---- threads ------------------------------------------------------------------------------

typedef struct handoff {
  void **blocks;
  size_t *sizes;
  size_t count;
  size_t bad;
  smp_heap_t *heap;
} handoff_t;

static void *check_and_free(void *arg) {
  handoff_t *w = arg;
  for (size_t i = 0; i < w->count; i++) {
    w->bad += pattern_check(w->blocks[i], w->sizes[i], (unsigned)i) != w->sizes[i];
    if (i % 2) free(w->blocks[i]);
    else smp_free(w->blocks[i]);
  }
  return NULL;
}

static void *alloc_in_heap(void *arg) {
  handoff_t *w = arg;
  for (size_t i = 0; i < w->count; i++) {
    w->blocks[i] = smp_heap_malloc(w->heap, w->sizes[i], 0);
    if (w->blocks[i] == NULL) {
      w->bad++;
      continue;
    }
    pattern_fill(w->blocks[i], w->sizes[i], (unsigned)i);
  }
  return NULL;
}

Test(threads, blocks_freed_by_another_thread) {
  enum { N = 600 };
  static void *blocks[N];
  static size_t sizes[N];
  smp_heap_t *h = new_heap("cross-thread", 0);
  for (size_t i = 0; i < N; i++) {
    sizes[i] = i % 100 == 7 ? 100 * KiB : i == 301 ? 3 * MiB : 16 + (i * 97) % 9000;
    blocks[i] = smp_heap_malloc(h, sizes[i], 0);
    cr_assert_not_null(blocks[i]);
    pattern_fill(blocks[i], sizes[i], (unsigned)i);
  }
  handoff_t w = {blocks, sizes, N, 0, h};
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, check_and_free, &w), 0);
  cr_assert_eq(pthread_join(t, NULL), 0);
  cr_assert_eq(w.bad, 0, "%zu blocks lost their contents before the other thread freed them",
               w.bad);
  cr_assert_eq(heap_stats(h).in_use, 0, "blocks freed by another thread still count as in use");

  // The other way: a thread allocates from h, this one checks and frees.
  handoff_t a = {blocks, sizes, N, 0, h};
  cr_assert_eq(pthread_create(&t, NULL, alloc_in_heap, &a), 0);
  cr_assert_eq(pthread_join(t, NULL), 0);
  cr_assert_eq(a.bad, 0, "%zu allocations failed in the other thread", a.bad);
  for (size_t i = 0; i < N; i++) {
    cr_assert_eq(smp_heap_of(blocks[i]), h);
    cr_assert_eq(pattern_check(blocks[i], sizes[i], (unsigned)i), sizes[i]);
    free(blocks[i]);
  }
  cr_assert_eq(heap_stats(h).in_use, 0);
  smp_heap_destroy(h);
}

// Four threads allocate from one heap and free each other's blocks, concurrently.
enum { CHURN_THREADS = 4, CHURN_ROUNDS = 40, CHURN_BLOCKS = 128 };
static void *churn_slots[CHURN_THREADS][CHURN_BLOCKS];
static pthread_barrier_t churn_barrier;
static smp_heap_t *churn_heap;
static atomic_size_t churn_bad;

static void *churn(void *arg) {
  unsigned id = (unsigned)(uintptr_t)arg;
  for (unsigned round = 0; round < CHURN_ROUNDS; round++) {
    for (unsigned k = 0; k < CHURN_BLOCKS; k++) {
      size_t n = 16 + ((k * 131 + round * 17 + id * 7) % 4000);
      unsigned char *p = smp_heap_malloc(churn_heap, n, 0);
      if (p == NULL || smp_heap_of(p) != churn_heap) {
        atomic_fetch_add(&churn_bad, 1);
        churn_slots[id][k] = NULL;
        continue;
      }
      memset(p, (int)(id * 16 + k % 16), n);
      p[n - 1] = (unsigned char)id; // last byte: the owner
      churn_slots[id][k] = p;
    }
    pthread_barrier_wait(&churn_barrier);
    unsigned victim = (id + 1) % CHURN_THREADS; // free the next thread's blocks
    for (unsigned k = 0; k < CHURN_BLOCKS; k++) {
      unsigned char *p = churn_slots[victim][k];
      if (p == NULL) continue;
      if (p[0] != (unsigned char)(victim * 16 + k % 16)) atomic_fetch_add(&churn_bad, 1);
      free(p);
    }
    pthread_barrier_wait(&churn_barrier);
  }
  return NULL;
}

Test(threads, concurrent_alloc_and_cross_free) {
  churn_heap = new_heap("churn", 0);
  atomic_store(&churn_bad, 0);
  pthread_barrier_init(&churn_barrier, NULL, CHURN_THREADS);
  pthread_t t[CHURN_THREADS];
  for (unsigned i = 0; i < CHURN_THREADS; i++)
    cr_assert_eq(pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)i), 0);
  for (unsigned i = 0; i < CHURN_THREADS; i++) pthread_join(t[i], NULL);
  cr_assert_eq(atomic_load(&churn_bad), 0, "%zu blocks failed, came from the wrong heap or were "
               "overwritten", atomic_load(&churn_bad));
  cr_assert_eq(heap_stats(churn_heap).in_use, 0);
  smp_heap_destroy(churn_heap);
}

// A thread's cache holds freed blocks of h when h is destroyed: that thread must then get
// default-heap blocks from malloc, never memory of the destroyed heap.
static pthread_barrier_t cache_barrier;
static void *cache_blocks[200];
static size_t cache_bad;
static void *free_then_malloc(void *arg) {
  smp_heap_t *d = arg;
  for (int i = 0; i < 100; i++) free(cache_blocks[i]); // into this thread's cache
  pthread_barrier_wait(&cache_barrier);               // main destroys the heap
  pthread_barrier_wait(&cache_barrier);
  for (int i = 0; i < 200; i++) {
    cache_blocks[i] = malloc(hide(64));
    if (cache_blocks[i] == NULL || smp_heap_of(cache_blocks[i]) != d) cache_bad++;
    else memset(cache_blocks[i], 0x44, 64);
  }
  for (int i = 0; i < 200; i++) free(cache_blocks[i]);
  return NULL;
}

Test(threads, destroy_while_another_thread_caches_its_blocks) {
  smp_heap_t *h = new_heap("cached", 0);
  for (int i = 0; i < 100; i++) {
    cache_blocks[i] = smp_heap_malloc(h, 64, 0);
    cr_assert_not_null(cache_blocks[i]);
  }
  pthread_barrier_init(&cache_barrier, NULL, 2);
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, free_then_malloc, smp_heap_default()), 0);
  pthread_barrier_wait(&cache_barrier);
  smp_heap_destroy(h);
  pthread_barrier_wait(&cache_barrier);
  pthread_join(t, NULL);
  cr_assert_eq(cache_bad, 0, "%zu of 200 malloc(64) calls after the destroy gave no block or "
               "one that is not the default heap's", cache_bad);
}

// ---- flags --------------------------------------------------------------------------------

static void check_zero_flag(smp_heap_t *h, size_t n) {
  enum { K = 24 };
  void *d[K];
  for (int k = 0; k < K; k++) {
    d[k] = smp_heap_malloc(h, n, 0);
    cr_assert_not_null(d[k]);
    memset(d[k], 0xa5, smp_usable_size(d[k]));
  }
  for (int k = 0; k < K; k++) free(d[k]);
  for (int k = 0; k < K; k++) {
    errno = 0;
    d[k] = h ? smp_heap_malloc(h, n, SMP_ZERO) : smp_mallocx(n, SMP_ZERO);
    cr_assert_not_null(d[k], "SMP_ZERO %zu: errno %d", n, errno);
    cr_assert(all_zero(d[k], n), "a %zu-byte SMP_ZERO block (%s heap) is not zero", n,
              h ? smp_heap_name(h) : "default");
  }
  for (int k = 0; k < K; k++) free(d[k]);
}

Test(flags, zero_after_dirty_frees) {
  smp_heap_t *h = new_heap("zero", 0);
  const size_t sizes[] = {16, 64, 1000, 4096, 30000, 64 * KiB, 100 * KiB, 1 * MiB, 8 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    check_zero_flag(h, sizes[i]);
    check_zero_flag(NULL, sizes[i]); // the default heap through smp_mallocx
  }
  smp_heap_destroy(h);
}

Test(flags, align_every_power_of_two) {
  smp_heap_t *h = new_heap("align", 0);
  for (size_t a = 1; a <= 2 * MiB; a *= 2) {
    const size_t sizes[] = {1, 24, a, a + 1, 3 * a / 2 + 16};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
      size_t n = sizes[i];
      errno = 0;
      char *p = smp_heap_malloc(h, n, SMP_ALIGN(a));
      cr_assert_not_null(p, "SMP_ALIGN(%zu) size %zu: errno %d", a, n, errno);
      cr_assert(is_aligned(p, a < 16 ? 16 : a), "SMP_ALIGN(%zu) size %zu gave %p", a, n, p);
      cr_assert_eq(smp_heap_of(p), h);
      cr_assert_geq(smp_usable_size(p), n);
      pattern_fill(p, n, (unsigned)a);
      char *q = smp_mallocx(n, SMP_ALIGN(a) | SMP_ZERO);
      cr_assert_not_null(q, "smp_mallocx SMP_ALIGN(%zu) size %zu", a, n);
      cr_assert(is_aligned(q, a), "smp_mallocx SMP_ALIGN(%zu) gave %p", a, q);
      cr_assert(all_zero(q, n));
      cr_assert_eq(smp_heap_of(q), smp_heap_default());
      cr_assert_eq(pattern_check(p, n, (unsigned)a), n);
      free(p);
      free(q);
    }
  }
  smp_heap_destroy(h);
}

Test(flags, bad_flags_einval) {
  smp_heap_t *h = new_heap("bad-flags", 0);
  // Not powers of two (the macro marks them), and unknown bits.
  const unsigned bad[] = {SMP_ALIGN(24), SMP_ALIGN(0), SMP_ALIGN(3), SMP_ALIGN(4097),
                          0x10u, 0x20u, 0x40u, 0x80u, 1u << 14, 1u << 15, 1u << 20, 1u << 30,
                          0x80000000u, SMP_NOWAIT | SMP_NOFAIL,
                          SMP_NOWAIT | SMP_NOFAIL | SMP_ZERO};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    unsigned f = bad[i];
    errno = 0;
    cr_assert_null(smp_heap_malloc(h, 100, f), "smp_heap_malloc flags 0x%x", f);
    cr_assert_eq(errno, EINVAL, "smp_heap_malloc flags 0x%x: errno %d", f, errno);
    errno = 0;
    cr_assert_null(smp_heap_malloc(NULL, 100, f), "smp_heap_malloc(NULL) flags 0x%x", f);
    cr_assert_eq(errno, EINVAL, "smp_heap_malloc(NULL) flags 0x%x: errno %d", f, errno);
    errno = 0;
    cr_assert_null(smp_mallocx(100, f), "smp_mallocx flags 0x%x", f);
    cr_assert_eq(errno, EINVAL, "smp_mallocx flags 0x%x: errno %d", f, errno);
    errno = 0;
    cr_assert_null(smp_heap_calloc(h, 10, 10, f), "smp_heap_calloc flags 0x%x", f);
    cr_assert_eq(errno, EINVAL, "smp_heap_calloc flags 0x%x: errno %d", f, errno);
    errno = 0;
    cr_assert_null(smp_heap_realloc(h, NULL, 100, f), "smp_heap_realloc(NULL p) flags 0x%x", f);
    cr_assert_eq(errno, EINVAL, "smp_heap_realloc(NULL p) flags 0x%x: errno %d", f, errno);
    char *p = smp_heap_malloc(h, 100, 0);
    cr_assert_not_null(p);
    pattern_fill(p, 100, f);
    errno = 0;
    cr_assert_null(smp_reallocx(p, 200, f), "smp_reallocx flags 0x%x", f);
    cr_assert_eq(errno, EINVAL, "smp_reallocx flags 0x%x: errno %d", f, errno);
    cr_assert_eq(pattern_check(p, 100, f), 100);
    free(p);
  }
  smp_heap_destroy(h);
}

Test(flags, mallocx_zero_flags_is_malloc) {
  smp_heap_t *d = smp_heap_default();
  void *zero[8];
  for (int i = 0; i < 8; i++) {
    zero[i] = smp_mallocx(0, 0);
    cr_assert_not_null(zero[i], "smp_mallocx(0, 0) returned NULL");
    for (int k = 0; k < i; k++) cr_assert_neq(zero[i], zero[k], "smp_mallocx(0, 0) not unique");
  }
  for (int i = 0; i < 8; i++) free(zero[i]);
  for (size_t n = 1; n <= 8 * MiB; n = n * 3 + 5) {
    char *p = smp_mallocx(n, 0);
    cr_assert_not_null(p, "smp_mallocx(%zu, 0)", n);
    cr_assert(is_aligned(p, 16));
    cr_assert_geq(smp_usable_size(p), n);
    cr_assert_eq(smp_heap_of(p), d);
    pattern_fill(p, n, 5);
    char *q = realloc(p, n + 100); // an ordinary block: realloc and free take it
    cr_assert_not_null(q);
    cr_assert_eq(pattern_check(q, n, 5), n);
    free(q);
  }
  errno = 0;
  cr_assert_null(smp_mallocx(hide(SIZE_MAX), 0));
  cr_assert_eq(errno, ENOMEM, "smp_mallocx(SIZE_MAX, 0): errno %d", errno);
  errno = 0;
  cr_assert_null(smp_heap_malloc(NULL, hide(SIZE_MAX - 4096), 0));
  cr_assert_eq(errno, ENOMEM);
}

Test(flags, nowait_never_makes_a_huge_block) {
  smp_heap_t *h = new_heap("nowait", 0);
  errno = 0;
  cr_assert_null(smp_heap_malloc(h, 8 * MiB, SMP_NOWAIT), "SMP_NOWAIT gave a huge block");
  cr_assert_eq(errno, EAGAIN, "SMP_NOWAIT huge: errno %d, want EAGAIN", errno);
  errno = 0;
  cr_assert_null(smp_mallocx(8 * MiB, SMP_NOWAIT), "SMP_NOWAIT gave a huge block");
  cr_assert_eq(errno, EAGAIN, "smp_mallocx SMP_NOWAIT huge: errno %d, want EAGAIN", errno);
  // With memory at hand (a block of the class just freed, no other thread), it succeeds.
  void *p = smp_heap_malloc(h, 64, 0);
  cr_assert_not_null(p);
  free(p);
  errno = 0;
  void *q = smp_heap_malloc(h, 64, SMP_NOWAIT | SMP_ZERO);
  cr_assert_not_null(q, "SMP_NOWAIT with memory at hand: errno %d", errno);
  cr_assert(all_zero(q, 64));
  cr_assert_eq(smp_heap_of(q), h);
  free(q);
  smp_heap_destroy(h);
}

// ---- limits -------------------------------------------------------------------------------

enum { FILL_MAX = 8192 };
static void *filled[FILL_MAX];

Test(limit, one_mib_heap_gives_close_to_one_mib) {
  smp_heap_t *h = new_heap("lim", 1 * MiB);
  smp_stats_t s0 = heap_stats(h);
  cr_assert_eq(s0.limit, 1 * MiB, "stats limit %llu", (unsigned long long)s0.limit);
  cr_assert_eq(s0.failures, 0);
  int err;
  size_t n = fill_heap(h, 1024, 0, filled, FILL_MAX, &err);
  cr_log_info("1 MiB heap: %zu blocks of 1 KiB", n);
  cr_assert_lt(n, (size_t)FILL_MAX, "the 1 MiB heap gave %zu KiB and never refused", n);
  cr_assert_eq(err, ENOMEM, "the full heap failed with errno %d, want ENOMEM", err);
  cr_assert_geq(n * 1024, 900 * KiB, "a 1 MiB limit gave only %zu KiB of 1 KiB blocks", n);
  cr_assert_leq(n * 1024, 1 * MiB, "a 1 MiB limit gave %zu KiB of blocks", n);
  cr_assert_eq(check_filled(filled, n, 1024), 0);

  smp_stats_t s1 = heap_stats(h);
  cr_assert_eq(s1.limit, 1 * MiB);
  cr_assert_leq(s1.held, 1 * MiB, "held %llu over the limit", (unsigned long long)s1.held);
  cr_assert_geq(s1.held, n * 1024);
  cr_assert_geq(s1.in_use, n * 1024);
  cr_assert_leq(s1.in_use, s1.held);
  cr_assert_geq(s1.failures, 1, "the refused request is not counted");
  // Larger blocks are refused too; every refusal counts.
  errno = 0;
  cr_assert_null(smp_heap_malloc(h, 512 * KiB, 0));
  cr_assert_eq(errno, ENOMEM);
  errno = 0;
  cr_assert_null(smp_heap_malloc(h, 8 * MiB, 0));
  cr_assert_eq(errno, ENOMEM);
  smp_stats_t s2 = heap_stats(h);
  cr_assert_geq(s2.failures, s1.failures + 2, "failures %llu -> %llu after two more refusals",
                (unsigned long long)s1.failures, (unsigned long long)s2.failures);

  // Freeing some lets the same number of allocations succeed again.
  for (size_t i = n - 10; i < n; i++) free(filled[i]);
  for (size_t i = n - 10; i < n; i++) {
    errno = 0;
    filled[i] = smp_heap_malloc(h, 1024, 0);
    cr_assert_not_null(filled[i], "after 10 frees, allocation %zu failed (errno %d)", i - (n - 10),
                       errno);
    pattern_fill(filled[i], 1024, (unsigned)i);
  }
  cr_assert_eq(check_filled(filled, n, 1024), 0);

  // A raised limit gives room again, up to close to the new limit.
  cr_assert_eq(smp_heap_set_limit(h, 2 * MiB), 0);
  cr_assert_eq(heap_stats(h).limit, 2 * MiB);
  size_t more = fill_heap(h, 1024, 0, filled + n, FILL_MAX - n, &err);
  cr_assert_eq(err, ENOMEM);
  for (size_t i = 0; i < more; i++) // fill_heap seeded these from 0
    cr_assert_eq(pattern_check(filled[n + i], 1024, (unsigned)i), 1024);
  cr_log_info("raised to 2 MiB: %zu more blocks", more);
  cr_assert_geq((n + more) * 1024, 1843 * KiB, "a 2 MiB limit gave only %zu KiB", n + more);
  cr_assert_leq((n + more) * 1024, 2 * MiB);
  // No limit: a huge block fits.
  cr_assert_eq(smp_heap_set_limit(h, 0), 0);
  cr_assert_eq(heap_stats(h).limit, 0);
  void *big = smp_heap_malloc(h, 8 * MiB, 0);
  cr_assert_not_null(big, "no limit, yet an 8 MiB block was refused (errno %d)", errno);
  free(big);
  smp_heap_destroy(h);
}

Test(limit, large_and_huge_blocks_count) {
  smp_heap_t *h = new_heap("lim-large", 1 * MiB);
  errno = 0;
  cr_assert_null(smp_heap_malloc(h, 8 * MiB, 0), "an 8 MiB block in a 1 MiB heap");
  cr_assert_eq(errno, ENOMEM);
  errno = 0;
  cr_assert_null(smp_heap_malloc(h, 2 * MiB, 0), "a 2 MiB block in a 1 MiB heap");
  cr_assert_eq(errno, ENOMEM);
  int err;
  size_t n = fill_heap(h, 100 * KiB, 0, filled, 64, &err);
  cr_log_info("1 MiB heap: %zu blocks of 100 KiB", n);
  cr_assert_eq(err, ENOMEM);
  cr_assert_geq(n, 8, "a 1 MiB limit gave only %zu blocks of 100 KiB", n);
  cr_assert_leq(n, 10);
  cr_assert_eq(check_filled(filled, n, 100 * KiB), 0);
  for (size_t i = 0; i < n; i++) free(filled[i]);
  // The limit counts a huge mapping: 3 MiB under a 4 MiB limit, then not another.
  cr_assert_eq(smp_heap_set_limit(h, 4 * MiB), 0);
  void *g = smp_heap_malloc(h, 3 * MiB, 0);
  cr_assert_not_null(g, "3 MiB under a 4 MiB limit (errno %d)", errno);
  smp_stats_t s = heap_stats(h);
  cr_assert_geq(s.held, 3 * MiB, "held %llu does not count the huge block",
                (unsigned long long)s.held);
  errno = 0;
  cr_assert_null(smp_heap_malloc(h, 3 * MiB, 0), "a second 3 MiB block under a 4 MiB limit");
  cr_assert_eq(errno, ENOMEM);
  free(g);
  smp_heap_destroy(h);
}

Test(limit, lowered_below_held_refuses_new_memory) {
  smp_heap_t *h = new_heap("lowered", 0);
  void *p[20];
  for (int i = 0; i < 20; i++) {
    p[i] = smp_heap_malloc(h, 100 * KiB, 0);
    cr_assert_not_null(p[i]);
  }
  cr_assert_eq(smp_heap_set_limit(h, 256 * KiB), 0);
  errno = 0;
  cr_assert_null(smp_heap_malloc(h, 100 * KiB, 0), "a limit below what the heap holds let "
                 "a new large block through");
  cr_assert_eq(errno, ENOMEM);
  errno = 0;
  cr_assert_null(smp_heap_malloc(h, 4 * MiB, 0));
  cr_assert_eq(errno, ENOMEM);
  for (int i = 0; i < 20; i++) free(p[i]);
  smp_heap_destroy(h);
}

Test(limit, set_limit_einval) {
  cr_assert_eq(smp_heap_set_limit(smp_heap_default(), 1 * MiB), EINVAL);
  cr_assert_eq(smp_heap_set_limit(smp_heap_default(), 0), EINVAL);
  region_t r;
  region_map(&r, 1 * MiB, 0);
  smp_heap_t *h = smp_heap_create_in("region-lim", r.base, r.len, 0);
  cr_assert_not_null(h, "smp_heap_create_in: errno %d", errno);
  cr_assert_eq(smp_heap_set_limit(h, 512 * KiB), EINVAL);
  cr_assert_eq(smp_heap_set_limit(h, 0), EINVAL);
  smp_heap_destroy(h);
  // The default heap still has no limit.
  cr_assert_eq(heap_stats(smp_heap_default()).limit, 0);
}

// ---- region heaps -------------------------------------------------------------------------

// Allocate from a region heap until it is full: a mix of sizes, then 1 KiB blocks. Every block
// inside the pages wholly inside the region, none overlapping, contents kept; the full region
// refuses with ENOMEM at every size. Returns the bytes of blocks it gave.
static size_t fill_region(smp_heap_t *h, const region_t *r) {
  static const size_t mix[] = {16, 48, 100, 600, 3000, 20000, 64 * KiB, 100 * KiB, 300 * KiB};
  static void *blocks[FILL_MAX];
  static size_t sizes[FILL_MAX];
  size_t n = 0, bytes = 0;
  for (size_t i = 0; i < sizeof mix / sizeof mix[0]; i++) {
    void *p = smp_heap_malloc(h, mix[i], 0);
    cr_assert_not_null(p, "region heap: the first %zu-byte block failed (errno %d)", mix[i], errno);
    sizes[n] = mix[i];
    blocks[n++] = p;
  }
  for (;;) {
    cr_assert_lt(n, (size_t)FILL_MAX, "the region never filled");
    errno = 0;
    void *p = smp_heap_malloc(h, 1024, 0);
    if (p == NULL) {
      cr_assert_eq(errno, ENOMEM, "the full region failed with errno %d, want ENOMEM", errno);
      break;
    }
    sizes[n] = 1024;
    blocks[n++] = p;
  }
  for (size_t i = 0; i < n; i++) {
    cr_assert(in_region(r, blocks[i], smp_usable_size(blocks[i])),
              "block %p (%zu bytes) is not inside the region's pages [%p, %p)", blocks[i],
              sizes[i], (void *)region_lo(r), (void *)region_hi(r));
    cr_assert_eq(smp_heap_of(blocks[i]), h);
    pattern_fill(blocks[i], sizes[i], (unsigned)i);
    bytes += sizes[i];
  }
  for (size_t i = 0; i < n; i++)
    cr_assert_eq(pattern_check(blocks[i], sizes[i], (unsigned)i), sizes[i]);
  // Full: every size refused, nothing from other memory.
  const size_t more[] = {16, 1024, 9000, 100 * KiB, 3 * MiB, 8 * MiB};
  for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) {
    errno = 0;
    void *p = smp_heap_malloc(h, more[i], 0);
    if (p != NULL) {
      cr_assert(in_region(r, p, more[i]), "the full region heap gave a %zu-byte block %p outside "
                "its region", more[i], p);
      blocks[n] = p, sizes[n++] = more[i], bytes += more[i];
      continue;
    }
    cr_assert_eq(errno, ENOMEM, "%zu bytes from the full region: errno %d", more[i], errno);
  }
  static void *sorted[FILL_MAX];
  memcpy(sorted, blocks, n * sizeof blocks[0]);
  assert_disjoint(sorted, n);
  return bytes;
}

static void region_heap_case(unsigned flags, size_t len, size_t skew) {
  region_t r;
  region_map(&r, len, skew);
  memset(r.base, 0xab, r.len); // the region holds garbage, not zeros
  region_guard_fill(&r);
  errno = 0;
  smp_heap_t *h = smp_heap_create_in("region", r.base, r.len, flags);
  cr_assert_not_null(h, "smp_heap_create_in(base %p, len %zu, flags 0x%x): errno %d", r.base,
                     r.len, flags, errno);
  cr_assert_str_eq(smp_heap_name(h), "region");
  smp_stats_t s = heap_stats(h);
  size_t inside = (size_t)(region_hi(&r) - region_lo(&r));
  cr_log_info("region %zu bytes at %p, %zu in whole pages, flags 0x%x: limit %llu", r.len, r.base,
              inside, flags, (unsigned long long)s.limit);
  cr_assert_gt(s.limit, 0, "a region heap's limit is its usable bytes");
  cr_assert_leq(s.limit, inside, "usable bytes %llu beyond the %zu bytes in whole pages",
                (unsigned long long)s.limit, inside);
  if (flags & SMP_REGION_META_OUTSIDE)
    cr_assert_eq(s.limit, inside, "SMP_REGION_META_OUTSIDE: every whole page is for blocks, "
                 "yet usable bytes are %llu of %zu", (unsigned long long)s.limit, inside);
  // Zeroed blocks over a region full of garbage.
  char *z = smp_heap_malloc(h, 5000, SMP_ZERO), *c = smp_heap_calloc(h, 300, 10, 0);
  cr_assert(z && c);
  cr_assert(all_zero(z, 5000), "SMP_ZERO over region memory that was not zero");
  cr_assert(all_zero(c, 3000), "smp_heap_calloc over region memory that was not zero");
  cr_assert(in_region(&r, z, 5000) && in_region(&r, c, 3000));
  free(z);
  free(c);

  size_t bytes = fill_region(h, &r);
  s = heap_stats(h);
  cr_log_info("the region gave %zu bytes of blocks; held %llu, in_use %llu, failures %llu", bytes,
              (unsigned long long)s.held, (unsigned long long)s.in_use,
              (unsigned long long)s.failures);
  cr_assert_geq(s.failures, 1);
  cr_assert_leq(s.held, s.limit);
  cr_assert_geq((double)s.held, 0.9 * (double)s.limit, "the full region holds %llu bytes for "
                "blocks, of %llu usable", (unsigned long long)s.held, (unsigned long long)s.limit);
  cr_assert_geq((double)bytes, 0.7 * (double)s.limit, "the region gave %zu bytes of blocks, "
                "of %llu usable", bytes, (unsigned long long)s.limit);
  region_guard_check(&r, "after filling");
  smp_heap_destroy(h);
  region_guard_check(&r, "after destroy");
  // The memory is still the caller's: mapped and writable.
  memset(r.base, 0x11, r.len);
  munmap(r.map, r.map_len);
}

Test(region, fill_default_flags) { region_heap_case(0, 3 * MiB + 777, 123); }
Test(region, fill_meta_outside) { region_heap_case(SMP_REGION_META_OUTSIDE, 3 * MiB + 777, 123); }
Test(region, fill_page_aligned) { region_heap_case(0, 2 * MiB, 0); }
Test(region, fill_purge_flag) { region_heap_case(SMP_REGION_PURGE, 2 * MiB + 5, 4096 + 16); }

Test(region, huge_block_from_the_region) {
  region_t r;
  region_map(&r, 12 * MiB + 3, 40);
  smp_heap_t *h = smp_heap_create_in("region-huge", r.base, r.len, SMP_REGION_META_OUTSIDE);
  cr_assert_not_null(h);
  // Above the 2 MiB huge threshold, yet within one 4 MiB chunk.
  errno = 0;
  char *t = smp_heap_malloc(h, 3 * MiB, 0);
  cr_assert_not_null(t, "a 3 MiB block from an empty 12 MiB region: errno %d", errno);
  cr_assert(in_region(&r, t, 3 * MiB), "the 3 MiB block %p is not in the region", t);
  pattern_fill(t, 3 * MiB, 2);
  cr_assert_eq(pattern_check(t, 3 * MiB, 2), 3 * MiB);
  free(t);
  // A block is at most about 4 MiB (the region is cut into 4 MiB chunks): 8 MiB is ENOMEM.
  errno = 0;
  cr_assert_null(smp_heap_malloc(h, 8 * MiB, 0), "an 8 MiB block from a region heap");
  cr_assert_eq(errno, ENOMEM);
  char *p = smp_heap_malloc(h, 3 * MiB + 512 * KiB, 0);
  cr_assert_not_null(p, "a 3.5 MiB block from an empty 12 MiB region: errno %d", errno);
  cr_assert(in_region(&r, p, 3 * MiB + 512 * KiB));
  pattern_fill(p, 3 * MiB + 512 * KiB, 3);
  // Resized within the region.
  char *q = smp_heap_realloc(h, p, 2 * MiB, 0);
  cr_assert_not_null(q);
  cr_assert(in_region(&r, q, 2 * MiB));
  cr_assert_eq(pattern_check(q, 2 * MiB, 3), 2 * MiB);
  free(q);
  smp_heap_destroy(h);
  munmap(r.map, r.map_len);
}

Test(region, create_in_einval) {
  region_t r;
  region_map(&r, 4 * MiB, 0);
  const struct {
    void *base;
    size_t len;
    unsigned flags;
    const char *what;
  } bad[] = {
      {NULL, 1 * MiB, 0, "NULL base"},
      {NULL, 1 * MiB, SMP_REGION_META_OUTSIDE, "NULL base, meta outside"},
      {r.base, SMP_REGION_MIN - 1, 0, "SMP_REGION_MIN - 1 bytes"},
      {r.base, SMP_REGION_MIN - 1, SMP_REGION_META_OUTSIDE, "SMP_REGION_MIN - 1 bytes, outside"},
      {r.base, 0, 0, "0 bytes"},
      {r.base, 4096, 0, "4 KiB"},
      {r.base, 1 * MiB, 0x4u, "flag 0x4"},
      {r.base, 1 * MiB, 0x100u, "flag 0x100"},
      {r.base, 1 * MiB, 0x80000000u, "flag 0x80000000"},
      {r.base, 1 * MiB, SMP_REGION_META_OUTSIDE | SMP_REGION_PURGE | 0x8u, "flags 0xb"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    errno = 0;
    smp_heap_t *h = smp_heap_create_in("bad", bad[i].base, bad[i].len, bad[i].flags);
    cr_assert_null(h, "smp_heap_create_in accepted %s", bad[i].what);
    cr_assert_eq(errno, EINVAL, "smp_heap_create_in, %s: errno %d, want EINVAL", bad[i].what,
                 errno);
  }
  cr_assert_eq(process_stats().heaps, 1, "refused regions left heaps behind");
  munmap(r.map, r.map_len);
}

Test(region, smallest_region) {
  region_t r;
  region_map(&r, 4 * SMP_REGION_MIN, 0);
  char *aligned = (char *)region_lo(&r);
  // Meta outside: SMP_REGION_MIN bytes of whole pages are all for blocks.
  errno = 0;
  smp_heap_t *h = smp_heap_create_in("min", aligned, SMP_REGION_MIN, SMP_REGION_META_OUTSIDE);
  cr_assert_not_null(h, "a page-aligned SMP_REGION_MIN region with meta outside: errno %d", errno);
  cr_assert_eq(heap_stats(h).limit, SMP_REGION_MIN);
  void *p = smp_heap_malloc(h, 1024, 0);
  cr_assert_not_null(p);
  cr_assert((char *)p >= aligned && (char *)p + 1024 <= aligned + SMP_REGION_MIN);
  free(p);
  smp_heap_destroy(h);
  // Meta inside: accepted, or ENOMEM if no room is left after the metadata; never EINVAL.
  errno = 0;
  h = smp_heap_create_in("min-in", aligned, SMP_REGION_MIN, 0);
  if (h == NULL) {
    cr_assert_eq(errno, ENOMEM, "an SMP_REGION_MIN region: errno %d, want ENOMEM or a heap", errno);
  } else {
    void *q = smp_heap_malloc(h, 64, 0);
    if (q) cr_assert((char *)q >= aligned && (char *)q + 64 <= aligned + SMP_REGION_MIN);
    free(q);
    smp_heap_destroy(h);
  }
  munmap(r.map, r.map_len);
}

Test(region, overlapping_regions_einval) {
  region_t r;
  region_map(&r, 8 * MiB, 0);
  char *b = r.base + 1000;
  smp_heap_t *h = smp_heap_create_in("first", b, 2 * MiB, 0);
  cr_assert_not_null(h);
  const struct {
    void *base;
    size_t len;
    const char *what;
  } bad[] = {
      {b, 2 * MiB, "the same region"},
      {b + 1 * MiB, 2 * MiB, "overlapping its second half"},
      {b - 1 * MiB, 1 * MiB + 64 * KiB, "overlapping its first 64 KiB"},
      {b + 100 * KiB, 100 * KiB, "inside it"},
      {b - 1000, 4 * MiB, "around it"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    errno = 0;
    cr_assert_null(smp_heap_create_in("second", bad[i].base, bad[i].len, 0),
                   "a region %s was accepted", bad[i].what);
    cr_assert_eq(errno, EINVAL, "a region %s: errno %d, want EINVAL", bad[i].what, errno);
    errno = 0;
    cr_assert_null(smp_heap_create_in("second", bad[i].base, bad[i].len, SMP_REGION_META_OUTSIDE),
                   "a region %s was accepted (meta outside)", bad[i].what);
    cr_assert_eq(errno, EINVAL);
  }
  // Adjacent (not overlapping), even with a boundary inside an 8 KiB page: accepted.
  smp_heap_t *next = smp_heap_create_in("adjacent", b + 2 * MiB, 2 * MiB, 0);
  cr_assert_not_null(next, "the region right after the first one: errno %d", errno);
  void *p = smp_heap_malloc(h, 1000, 0), *q = smp_heap_malloc(next, 1000, 0);
  cr_assert(p && q);
  cr_assert((char *)p >= b && (char *)p + 1000 <= b + 2 * MiB);
  cr_assert((char *)q >= b + 2 * MiB && (char *)q + 1000 <= b + 4 * MiB);
  free(p);
  free(q);
  smp_heap_destroy(next);
  smp_heap_destroy(h);
  munmap(r.map, r.map_len);
}

// The allocator's own memory in use is no region: a chunk of the default heap or of another heap
// (its header, the page of a span of small blocks, its other pages, which the heap will carve
// blocks from).
static char *chunk_of(const void *p) {
  return (char *)((uintptr_t)p & ~(uintptr_t)(4 * MiB - 1)); // 4 MiB chunks (lib/base/config.h)
}

Test(region, allocator_memory_einval) {
  smp_heap_t *other = new_heap("other", 0);
  char *small = malloc(hide(64)), *hsmall = smp_heap_malloc(other, 64, 0);
  cr_assert(small && hsmall);
  char *page = (char *)((uintptr_t)small & ~(uintptr_t)(HEAP_PAGE - 1));
  char *hpage = (char *)((uintptr_t)hsmall & ~(uintptr_t)(HEAP_PAGE - 1));
  const struct {
    char *base;
    const char *what;
  } bad[] = {
      {page, "from the page of a small block of the default heap"},
      {small, "from a small block of the default heap"},
      {chunk_of(small), "at the default heap's chunk start"},
      {chunk_of(small) + 2 * MiB, "in the middle of a chunk of the default heap"},
      {hpage, "from the page of a small block of another heap"},
      {hsmall, "from a small block of another heap"},
      {chunk_of(hsmall), "at another heap's chunk start"},
      {chunk_of(hsmall) + 2 * MiB, "in the middle of a chunk of another heap"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    for (unsigned flags = 0; flags <= SMP_REGION_META_OUTSIDE; flags++) {
      errno = 0;
      smp_heap_t *h = smp_heap_create_in("in-use", bad[i].base, 256 * KiB, flags);
      cr_assert_null(h, "a region %s (%p, flags 0x%x) was accepted", bad[i].what,
                     (void *)bad[i].base, flags);
      cr_assert_eq(errno, EINVAL, "a region %s: errno %d, want EINVAL", bad[i].what, errno);
    }
  }
  free(small);
  free(hsmall);
  smp_heap_destroy(other);
}

// A large or huge block is the program's memory: whether a region may lie in one the header
// leaves open, but if it is accepted its heap works inside the block and the block can be
// freed after the heap is destroyed.
Test(region, inside_a_large_block) {
  const size_t sizes[] = {256 * KiB, 1 * MiB, 8 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    char *p = malloc(hide(sizes[i]));
    cr_assert_not_null(p);
    errno = 0;
    smp_heap_t *h = smp_heap_create_in("in-block", p, sizes[i], 0);
    if (h == NULL) {
      cr_assert_eq(errno, EINVAL, "a region in a %zu-byte block: errno %d", sizes[i], errno);
      cr_log_info("a region in a %zu-byte malloc block: EINVAL", sizes[i]);
    } else {
      cr_log_info("a region in a %zu-byte malloc block: accepted", sizes[i]);
      for (int k = 0; k < 20; k++) {
        char *q = smp_heap_malloc(h, 3000, 0);
        cr_assert_not_null(q);
        cr_assert(q >= p && q + 3000 <= p + sizes[i], "block %p outside the region", q);
        cr_assert_eq(smp_heap_of(q), h);
      }
      smp_heap_destroy(h);
    }
    cr_assert_eq(smp_heap_of(p), smp_heap_default());
    free(p);
  }
}

Test(region, reused_after_destroy) {
  region_t r;
  region_map(&r, 2 * MiB, 300);
  for (int round = 0; round < 4; round++) {
    unsigned flags = round % 2 ? SMP_REGION_META_OUTSIDE : 0;
    errno = 0;
    smp_heap_t *h = smp_heap_create_in("reuse", r.base, r.len, flags);
    cr_assert_not_null(h, "round %d: the region of a destroyed heap was refused (errno %d)",
                       round, errno);
    int err;
    size_t n = fill_heap(h, 4000, 0, filled, FILL_MAX, &err);
    cr_assert_eq(err, ENOMEM);
    cr_assert_gt(n, 300, "round %d: only %zu blocks", round, n);
    for (size_t i = 0; i < n; i++) cr_assert(in_region(&r, filled[i], 4000));
    cr_assert_eq(check_filled(filled, n, 4000), 0);
    // Blocks of the heap are left live: destroy frees them.
    smp_heap_destroy(h);
  }
  // Half of it, overlapping the old one: fine now.
  smp_heap_t *h = smp_heap_create_in("half", r.base + 1 * MiB, 1 * MiB, 0);
  cr_assert_not_null(h);
  smp_heap_destroy(h);
  munmap(r.map, r.map_len);
}

Test(region, unmapped_after_destroy) {
  region_t r;
  region_map(&r, 2 * MiB, 8);
  smp_heap_t *h = smp_heap_create_in("zebra-region-42", r.base, r.len, 0);
  cr_assert_not_null(h);
  for (int i = 0; i < 200; i++) cr_assert_not_null(smp_heap_malloc(h, (size_t)(16 + i * 50), 0));
  smp_heap_destroy(h);
  cr_assert_eq(munmap(r.map, r.map_len), 0);
  // Nothing of the allocator refers to the region any more.
  char *p = malloc(hide(1000));
  cr_assert_not_null(p);
  free(p);
  smp_trim();
  malloc_trim(0);
  static char text[256 * 1024];
  capture_malloc_stats(text, sizeof text);
  cr_assert(strstr(text, "zebra-region-42") == NULL, "malloc_stats still lists the destroyed heap");
  smp_stats_t s = process_stats();
  cr_assert_eq(s.heaps, 1);
}

static size_t resident_pages(void *base, size_t len) {
  size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  size_t n = len / pg;
  static unsigned char vec[65536];
  cr_assert_leq(n, sizeof vec);
  cr_assert_eq(mincore(base, len, vec), 0);
  size_t count = 0;
  for (size_t i = 0; i < n; i++) count += vec[i] & 1;
  return count;
}

// Without SMP_REGION_PURGE the allocator never madvises the region: every page the caller
// faulted in stays resident through frees and trims.
Test(region, never_purged_without_the_flag) {
  const unsigned modes[] = {0, SMP_REGION_META_OUTSIDE};
  for (int m = 0; m < 2; m++) {
    size_t len = 4 * MiB, pg = (size_t)sysconf(_SC_PAGESIZE);
    char *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(map != MAP_FAILED);
    memset(map, 0x5c, len);
    cr_assert_eq(resident_pages(map, len), len / pg);
    smp_heap_t *h = smp_heap_create_in("no-purge", map, len, modes[m]);
    cr_assert_not_null(h);
    int err;
    size_t n = fill_heap(h, 100 * KiB, 0, filled, FILL_MAX, &err);
    cr_assert_gt(n, 10);
    for (size_t i = 0; i < n; i++) free(filled[i]);
    n = fill_heap(h, 3000, 0, filled, FILL_MAX, &err);
    for (size_t i = 0; i < n; i++) free(filled[i]);
    smp_trim();
    malloc_trim(0);
    size_t res = resident_pages(map, len);
    cr_assert_eq(res, len / pg, "flags 0x%x: %zu of %zu pages of the region are no longer "
                 "resident: it was madvised without SMP_REGION_PURGE", modes[m], len / pg - res,
                 len / pg);
    smp_heap_destroy(h);
    cr_assert_eq(resident_pages(map, len), len / pg, "destroy madvised the region");
    munmap(map, len);
  }
}

// ---- a MAP_SHARED memfd region seen by a forked child --------------------------------------

enum { SHARED_STRINGS = 60 };
static size_t shared_off[SHARED_STRINGS], shared_big_off, shared_reply_off;

static void shared_string(char *buf, size_t cap, int i) {
  snprintf(buf, cap, "string %d from the parent, %.*s", i, i % 40 + 1,
           "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ");
}

static int shared_child(int fd, char *inherited, size_t map_len) {
  char *mine = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mine == MAP_FAILED) return 10;
  if (mine == inherited) return 11;
  char want[128];
  for (int i = 0; i < SHARED_STRINGS; i++) {
    shared_string(want, sizeof want, i);
    if (strcmp(mine + shared_off[i], want) != 0) return 20;
    if (strcmp(inherited + shared_off[i], want) != 0) return 21;
  }
  if (pattern_check(mine + shared_big_off, 100 * KiB, 77) != 100 * KiB) return 30;
  strcpy(mine + shared_reply_off, "the child read every string");
  munmap(mine, map_len);
  return 0;
}

static void shared_case(unsigned flags) {
  size_t map_len = 4 * MiB;
  int fd = memfd_create("smp-heap-shared", 0);
  cr_assert_geq(fd, 0, "memfd_create: errno %d", errno);
  cr_assert_eq(ftruncate(fd, (off_t)map_len), 0);
  char *map = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  cr_assert(map != MAP_FAILED);
  smp_heap_t *h = smp_heap_create_in("shared", map + 100, map_len - 200, flags);
  cr_assert_not_null(h, "a heap over a MAP_SHARED memfd: errno %d", errno);
  char buf[128];
  for (int i = 0; i < SHARED_STRINGS; i++) {
    shared_string(buf, sizeof buf, i);
    char *s = smp_heap_malloc(h, strlen(buf) + 1, 0);
    cr_assert_not_null(s);
    cr_assert(s >= map + 100 && s + strlen(buf) + 1 <= map + map_len - 100);
    strcpy(s, buf);
    shared_off[i] = (size_t)(s - map);
  }
  char *big = smp_heap_malloc(h, 100 * KiB, 0);
  char *reply = smp_heap_malloc(h, 64, SMP_ZERO);
  cr_assert(big && reply);
  pattern_fill(big, 100 * KiB, 77);
  shared_big_off = (size_t)(big - map);
  shared_reply_off = (size_t)(reply - map);
  fflush(NULL);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) _exit(shared_child(fd, map, map_len));
  int status;
  while (waitpid(pid, &status, 0) < 0) cr_assert_eq(errno, EINTR);
  cr_assert(WIFEXITED(status), "the child died (status 0x%x)", status);
  cr_assert_eq(WEXITSTATUS(status), 0, "the child's check failed with code %d (10/11: mapping, "
               "20: through its own mapping, 21: the inherited one, 30: the large block)",
               WEXITSTATUS(status));
  cr_assert_str_eq(reply, "the child read every string", "the child's reply did not arrive");
  // The parent's heap still works over the shared memory.
  for (int i = 0; i < SHARED_STRINGS; i++) {
    shared_string(buf, sizeof buf, i);
    cr_assert_str_eq(map + shared_off[i], buf);
    free(map + shared_off[i]);
  }
  free(big);
  free(reply);
  smp_heap_destroy(h);
  munmap(map, map_len);
  close(fd);
}

Test(shared, memfd_region_read_by_forked_child) { shared_case(0); }
Test(shared, memfd_region_meta_outside_read_by_forked_child) {
  shared_case(SMP_REGION_META_OUTSIDE);
}

// ---- hugetlb ------------------------------------------------------------------------------

Test(hugetlb, region_over_huge_pages) {
  size_t len = 4 * MiB;
  void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB,
                 -1, 0);
  if (m == MAP_FAILED)
    cr_skip_test("this machine has no hugetlb pages (mmap MAP_HUGETLB of 4 MiB: %s); "
                 "see /proc/sys/vm/nr_hugepages", strerror(errno));
  smp_heap_t *h = smp_heap_create_in("hugetlb", m, len, SMP_REGION_META_OUTSIDE);
  cr_assert_not_null(h, "a heap over hugetlb pages: errno %d", errno);
  void *blocks[64];
  for (int i = 0; i < 64; i++) {
    size_t n = (size_t)(i + 1) * 1000;
    blocks[i] = smp_heap_malloc(h, n, 0);
    cr_assert_not_null(blocks[i]);
    cr_assert((char *)blocks[i] >= (char *)m && (char *)blocks[i] + n <= (char *)m + len);
    pattern_fill(blocks[i], n, (unsigned)i);
  }
  for (int i = 0; i < 64; i++) {
    size_t n = (size_t)(i + 1) * 1000;
    cr_assert_eq(pattern_check(blocks[i], n, (unsigned)i), n);
    free(blocks[i]);
  }
  smp_heap_destroy(h);
  munmap(m, len);
}

// ---- visit --------------------------------------------------------------------------------

enum { VISIT_MAX = 4096 };
typedef struct visit_log {
  size_t calls, stop_after;
  int stop_value;
  void *blocks[VISIT_MAX];
  size_t usable[VISIT_MAX];
} visit_log_t;
static visit_log_t vlog;

static int record_block(void *block, size_t usable, void *arg) {
  visit_log_t *v = arg;
  if (v->calls < VISIT_MAX) {
    v->blocks[v->calls] = block;
    v->usable[v->calls] = usable;
  }
  v->calls++;
  if (usable) ((unsigned char *)block)[0] ^= 0xff; // fn may write the block
  return v->stop_after && v->calls == v->stop_after ? v->stop_value : 0;
}

static int never_called(void *block, size_t usable, void *arg) {
  (void)block, (void)usable;
  (*(size_t *)arg)++;
  return 1;
}

Test(visit, counts_sizes_and_contents) {
  enum { N = 300 };
  static void *live[N];
  static size_t sizes[N];
  smp_heap_t *h = new_heap("visited", 0);
  smp_heap_t *other = new_heap("not-visited", 0);
  size_t ocount = 0;
  cr_assert_eq(smp_heap_visit(h, never_called, &ocount), 0, "an empty heap");
  cr_assert_eq(ocount, 0, "fn called for an empty heap");
  for (size_t i = 0; i < N; i++) {
    sizes[i] = i == 0 ? 8 * MiB : i % 50 == 1 ? 100 * KiB : 1 + (i * 211) % 20000;
    live[i] = smp_heap_malloc(h, sizes[i], 0);
    cr_assert_not_null(live[i]);
    pattern_fill(live[i], sizes[i], (unsigned)i);
    void *o = smp_heap_malloc(other, 100, 0); // blocks of another heap: never visited
    cr_assert_not_null(o);
  }
  // Free every third block (these sit in caches or back in spans: not visited either way).
  size_t expect = 0;
  for (size_t i = 0; i < N; i++) {
    if (i % 3 == 2) {
      free(live[i]);
      live[i] = NULL;
    } else {
      expect++;
    }
  }
  memset(&vlog, 0, sizeof vlog);
  int rc = smp_heap_visit(h, record_block, &vlog);
  cr_assert_eq(rc, 0, "a full visit returns 0, got %d", rc);
  cr_assert_eq(vlog.calls, expect, "fn called %zu times for %zu live blocks", vlog.calls, expect);
  uint64_t sum = 0;
  for (size_t k = 0; k < vlog.calls; k++) {
    size_t i = 0;
    while (i < N && live[i] != vlog.blocks[k]) i++;
    cr_assert_lt(i, (size_t)N, "visited %p, which is not a live block of the heap",
                 vlog.blocks[k]);
    cr_assert_eq(vlog.usable[k], smp_usable_size(live[i]), "block %zu: usable %zu, want %zu", i,
                 vlog.usable[k], smp_usable_size(live[i]));
    cr_assert_geq(vlog.usable[k], sizes[i]);
    for (size_t j = 0; j < k; j++) cr_assert_neq(vlog.blocks[j], vlog.blocks[k], "visited twice");
    sum += vlog.usable[k];
  }
  // in_use is in bytes of blocks: what the visit saw, give or take a huge block's rounding.
  smp_stats_t s = heap_stats(h);
  cr_assert(s.in_use >= sum && s.in_use <= sum + 16 * KiB,
            "visited blocks total %llu bytes, stats in_use %llu", (unsigned long long)sum,
            (unsigned long long)s.in_use);
  // The writes of fn landed; the rest is intact.
  for (size_t i = 0; i < N; i++) {
    if (!live[i]) continue;
    unsigned char *p = live[i];
    cr_assert_eq(p[0], (unsigned char)(pattern_byte((unsigned)i, 0) ^ 0xff));
    p[0] ^= 0xff;
    cr_assert_eq(pattern_check(p, sizes[i], (unsigned)i), sizes[i]);
  }
  // Stop: the third call returns 7.
  memset(&vlog, 0, sizeof vlog);
  vlog.stop_after = 3;
  vlog.stop_value = 7;
  rc = smp_heap_visit(h, record_block, &vlog);
  cr_assert_eq(rc, 7, "the visit returned %d, not fn's 7", rc);
  cr_assert_eq(vlog.calls, 3, "fn called %zu times after it said stop on the third", vlog.calls);
  vlog.stop_after = 1;
  vlog.stop_value = -1;
  vlog.calls = 0;
  cr_assert_eq(smp_heap_visit(h, record_block, &vlog), -1);
  cr_assert_eq(vlog.calls, 1);
  // NULL fn.
  cr_assert_eq(smp_heap_visit(h, NULL, NULL), EINVAL);
  cr_assert_eq(smp_heap_visit(NULL, NULL, NULL), EINVAL);
  for (size_t i = 0; i < N; i++) free(live[i]);
  ocount = 0;
  cr_assert_eq(smp_heap_visit(h, never_called, &ocount), 0);
  cr_assert_eq(ocount, 0, "fn called for %zu blocks after all were freed", ocount);
  smp_heap_destroy(other); // its blocks die with it
  smp_heap_destroy(h);
}

static void *visit_target;
static int find_target(void *block, size_t usable, void *arg) {
  if (block == visit_target) *(size_t *)arg = usable;
  return 0;
}

Test(visit, default_heap_and_region_heap) {
  visit_target = malloc(hide(12345));
  cr_assert_not_null(visit_target);
  size_t found = 0;
  cr_assert_eq(smp_heap_visit(NULL, find_target, &found), 0);
  cr_assert_eq(found, smp_usable_size(visit_target), "visit(NULL) did not find a malloc block");
  found = 0;
  cr_assert_eq(smp_heap_visit(smp_heap_default(), find_target, &found), 0);
  cr_assert_eq(found, smp_usable_size(visit_target));
  free(visit_target);

  region_t r;
  region_map(&r, 1 * MiB, 1);
  smp_heap_t *h = smp_heap_create_in("visit-region", r.base, r.len, 0);
  cr_assert_not_null(h);
  visit_target = smp_heap_malloc(h, 3000, 0);
  void *more = smp_heap_malloc(h, 40, 0);
  cr_assert(visit_target && more);
  found = 0;
  memset(&vlog, 0, sizeof vlog);
  cr_assert_eq(smp_heap_visit(h, find_target, &found), 0);
  cr_assert_eq(found, smp_usable_size(visit_target));
  cr_assert_eq(smp_heap_visit(h, record_block, &vlog), 0);
  cr_assert_eq(vlog.calls, 2, "a region heap with 2 blocks: %zu visited", vlog.calls);
  free(visit_target);
  free(more);
  smp_heap_destroy(h);
  munmap(r.map, r.map_len);
}

// ---- destroy ------------------------------------------------------------------------------

Test(destroy, memory_returns_to_the_os) {
  smp_heap_t *h = new_heap("big", 0);
  smp_stats_t p0 = process_stats();
  size_t rss0 = rss_bytes();
  enum { SMALL = 16384, LARGE = 40 };
  static void *small[SMALL], *large[LARGE];
  for (int i = 0; i < SMALL; i++) { // 16 MiB of 1 KiB blocks
    small[i] = smp_heap_malloc(h, 1024, 0);
    cr_assert_not_null(small[i]);
    memset(small[i], 0x21, 1024);
  }
  for (int i = 0; i < LARGE; i++) { // 4 MiB of large blocks
    large[i] = smp_heap_malloc(h, 100 * KiB, 0);
    cr_assert_not_null(large[i]);
    memset(large[i], 0x22, 100 * KiB);
  }
  void *huge[2];
  for (int i = 0; i < 2; i++) { // 16 MiB of huge blocks
    huge[i] = smp_heap_malloc(h, 8 * MiB, 0);
    cr_assert_not_null(huge[i]);
    memset(huge[i], 0x23, 8 * MiB);
  }
  smp_stats_t hs = heap_stats(h);
  cr_assert_geq(hs.in_use, 36 * MiB, "heap in_use %llu", (unsigned long long)hs.in_use);
  cr_assert_geq(hs.mapped, 36 * MiB, "heap mapped %llu", (unsigned long long)hs.mapped);
  cr_assert_geq(hs.resident, 30 * MiB, "heap resident %llu", (unsigned long long)hs.resident);
  cr_assert_geq(hs.held, 36 * MiB, "heap held %llu", (unsigned long long)hs.held);
  size_t rss1 = rss_bytes();
  smp_stats_t p1 = process_stats();
  cr_assert_geq(rss1, rss0 + 30 * MiB, "RSS %zu -> %zu after touching 36 MiB", rss0, rss1);
  cr_assert_eq(p1.heaps, p0.heaps);

  smp_heap_destroy(h); // the blocks are freed with it
  // The memory goes back at once, or (when a background thread runs) by its next pass, which
  // the destroy starts at once: wait for it, up to 10 s (a loaded machine may be slow to run it).
  size_t rss2 = rss_bytes();
  for (int i = 0; i < 1000 && rss2 + (rss1 - rss0) * 9 / 10 > rss1; i++) {
    usleep(10 * 1000);
    rss2 = rss_bytes();
  }
  smp_stats_t p2 = process_stats();
  cr_log_info("RSS %zu -> %zu -> %zu KiB; process mapped %llu -> %llu -> %llu KiB, resident "
              "%llu -> %llu -> %llu KiB, heaps %llu -> %llu",
              rss0 / KiB, rss1 / KiB, rss2 / KiB, (unsigned long long)p0.mapped / KiB,
              (unsigned long long)p1.mapped / KiB, (unsigned long long)p2.mapped / KiB,
              (unsigned long long)p0.resident / KiB, (unsigned long long)p1.resident / KiB,
              (unsigned long long)p2.resident / KiB, (unsigned long long)p1.heaps,
              (unsigned long long)p2.heaps);
  cr_assert_leq(rss2 + (rss1 - rss0) * 9 / 10, rss1, "destroy gave back only %zd of %zu bytes "
                "of resident memory", (ssize_t)rss1 - (ssize_t)rss2, rss1 - rss0);
  // Other threads of the process (Criterion's, the background thread) may allocate meanwhile:
  // the default heap may map one chunk more, or touch a few pages, while 36 MiB go back.
  cr_assert_leq(p2.mapped, p1.mapped + 4 * MiB, "process mapped grew at destroy");
  cr_assert_leq(p2.resident, p1.resident + 1 * MiB, "process resident grew at destroy");
  cr_assert_eq(p2.heaps, p1.heaps - 1, "heaps %llu -> %llu at destroy",
               (unsigned long long)p1.heaps, (unsigned long long)p2.heaps);
}

Test(destroy, blocks_are_gone_and_heaps_recreated) {
  for (int round = 0; round < 20; round++) {
    smp_heap_t *h = new_heap("again", 0);
    void *s = smp_heap_malloc(h, 64, 0), *l = smp_heap_malloc(h, 200 * KiB, 0),
         *g = smp_heap_malloc(h, 3 * MiB, 0);
    cr_assert(s && l && g);
    for (int i = 0; i < 500; i++) cr_assert_not_null(smp_heap_malloc(h, (size_t)(i * 13 + 1), 0));
    smp_heap_destroy(h);
    // No allocation since: the old blocks are no blocks of ours (never reported).
    cr_assert_null(smp_heap_of(s), "round %d: a small block of a destroyed heap still has a heap",
                   round);
    cr_assert_null(smp_heap_of(l), "round %d: a large block of a destroyed heap", round);
    cr_assert_null(smp_heap_of(g), "round %d: a huge block of a destroyed heap", round);
  }
  cr_assert_eq(process_stats().heaps, 1);
}

Test(destroy, default_heap_aborts) {
  expect_report("destroy_default", NULL, "", false);
}
// "the caller must make sure no other thread uses h meanwhile (SMPALLOC_OPTIONS=debug:1 reports
// one that does)": the helper destroys a heap that another thread keeps using, with debug:1.
Test(destroy, debug_reports_destroy_while_in_use) {
  expect_report("destroy_in_use", NULL, "heap", false);
  const char *e = helper_run.err;
  // destroy sees the other thread's call, or that thread's next call (smp_heap_malloc or
  // free) sees the heap dead, or it frees a block of the destroyed heap.
  cr_assert(strstr(e, "smp_heap_destroy: heap in use by another thread") ||
                strstr(e, ": heap destroyed or invalid") ||
                strstr(e, "free: block of a destroyed heap"),
            "not one of the reports of a heap destroyed in use: [%s]", e);
}

Test(destroy, free_after_destroy_small) {
  expect_report("free_destroyed_small", "free", "destroyed heap", true);
}
Test(destroy, free_after_destroy_large) {
  expect_report("free_destroyed_large", "free", "destroyed heap", true);
}
Test(destroy, free_after_destroy_huge) {
  // Huge blocks are mappings of their own, kept inaccessible after destroy (the last 256).
  expect_report("free_destroyed_huge", "free", "destroyed heap", true);
}
Test(destroy, free_after_destroy_region) {
  // The region is the caller's again: a stale free of its block is an invalid pointer.
  expect_report("free_destroyed_region", "free", "invalid pointer", true);
}
Test(destroy, smp_free_after_destroy) {
  expect_report("smp_free_destroyed", "free", "destroyed heap", true);
}
Test(destroy, realloc_after_destroy) {
  expect_report("realloc_destroyed", "realloc", "destroyed heap", true);
}
Test(destroy, usable_size_after_destroy) {
  expect_report("usable_destroyed", "usable", "destroyed heap", true);
}

// ---- the OOM handler ----------------------------------------------------------------------

typedef struct oom_log {
  size_t calls, max_calls, depth, max_depth;
  size_t last_size;
  smp_heap_t *last_heap;
  void *last_arg;
  int answer;           // what the handler returns
  void **stash;         // blocks it may free, one per call
  size_t stash_count;
  bool allocate_inside; // make a request of the same heap from inside the handler
  void *inner;
  int inner_errno;
} oom_log_t;
static oom_log_t oom;

static int oom_handler(size_t size, smp_heap_t *h, void *arg) {
  oom.calls++;
  oom.depth++;
  if (oom.depth > oom.max_depth) oom.max_depth = oom.depth;
  oom.last_size = size;
  oom.last_heap = h;
  oom.last_arg = arg;
  int answer = oom.answer;
  if (oom.allocate_inside) {
    errno = 0;
    oom.inner = smp_heap_malloc(h, size, 0);
    oom.inner_errno = errno;
    void *d = malloc(hide(100)); // the default heap is fine
    if (d == NULL) answer = 0;
    free(d);
  }
  if (answer && oom.stash_count > 0) free(oom.stash[--oom.stash_count]);
  if (oom.max_calls && oom.calls >= oom.max_calls) answer = 0;
  oom.depth--;
  return answer;
}

// A 1 MiB heap filled with 1 KiB blocks (in filled[], *count of them), then with 16-byte ones
// (whatever pages the 1 KiB spans left): no request can get new pages.
static void *filled16[FILL_MAX];
static smp_heap_t *full_heap(const char *name, size_t *count) {
  smp_heap_t *h = new_heap(name, 1 * MiB);
  int err;
  *count = fill_heap(h, 1024, 0, filled, FILL_MAX, &err);
  cr_assert_eq(err, ENOMEM);
  fill_heap(h, 16, 0, filled16, FILL_MAX, &err);
  cr_assert_eq(err, ENOMEM);
  return h;
}

Test(oom, handler_frees_and_request_succeeds) {
  size_t n;
  smp_heap_t *h = full_heap("oom-retry", &n);
  static int tag;
  memset(&oom, 0, sizeof oom);
  oom.answer = 1;
  oom.stash = filled;
  oom.stash_count = n;
  oom.max_calls = 64;
  smp_set_oom_handler(oom_handler, &tag);
  errno = 0;
  void *p = smp_heap_malloc(h, 1024, 0);
  cr_assert_not_null(p, "the handler freed blocks and said retry, yet the request failed "
                     "(errno %d, %zu calls)", errno, oom.calls);
  cr_assert_geq(oom.calls, 1, "the handler was not called");
  cr_assert_eq(oom.last_size, 1024, "the handler was told size %zu", oom.last_size);
  cr_assert_eq(oom.last_heap, h, "the handler was told heap %p, want %p", oom.last_heap, h);
  cr_assert_eq(oom.last_arg, &tag);
  cr_assert_eq(smp_heap_of(p), h);
  memset(p, 1, 1024);
  // Full again; SMP_NOFAIL is served the same way.
  static void *refill[FILL_MAX];
  int err;
  smp_set_oom_handler(NULL, NULL);
  fill_heap(h, 1024, 0, refill, FILL_MAX, &err);
  cr_assert_eq(err, ENOMEM);
  smp_set_oom_handler(oom_handler, &tag);
  size_t calls = oom.calls;
  void *q = smp_heap_malloc(h, 1024, SMP_NOFAIL);
  cr_assert_not_null(q);
  cr_assert_gt(oom.calls, calls, "the handler was not asked for an SMP_NOFAIL request");
  free(p);
  free(q);
  smp_heap_destroy(h);
}

Test(oom, handler_declines) {
  size_t n;
  smp_heap_t *h = full_heap("oom-decline", &n);
  memset(&oom, 0, sizeof oom);
  oom.answer = 0;
  smp_set_oom_handler(oom_handler, NULL);
  const size_t sizes[] = {1024, 100, 100 * KiB, 8 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t before = oom.calls;
    errno = 0;
    cr_assert_null(smp_heap_malloc(h, sizes[i], 0));
    cr_assert_eq(errno, ENOMEM, "%zu bytes, the handler declined: errno %d", sizes[i], errno);
    cr_assert_eq(oom.calls, before + 1, "%zu bytes: the declining handler was called %zu times",
                 sizes[i], oom.calls - before);
    cr_assert_eq(oom.last_size, sizes[i]);
    cr_assert_eq(oom.last_heap, h);
    cr_assert_null(oom.last_arg);
  }
  // Also for calloc and realloc.
  size_t before = oom.calls;
  errno = 0;
  cr_assert_null(smp_heap_calloc(h, 64, 64, 0));
  cr_assert_eq(errno, ENOMEM);
  cr_assert_eq(oom.calls, before + 1);
  before = oom.calls;
  errno = 0;
  cr_assert_null(smp_heap_realloc(h, filled[0], 200 * KiB, 0));
  cr_assert_eq(errno, ENOMEM);
  cr_assert_eq(oom.calls, before + 1, "the handler is asked for a failing realloc");
  cr_assert_eq(pattern_check(filled[0], 1024, 0), 1024);
  // Removed: not called.
  smp_set_oom_handler(NULL, NULL);
  before = oom.calls;
  errno = 0;
  cr_assert_null(smp_heap_malloc(h, 1024, 0));
  cr_assert_eq(errno, ENOMEM);
  cr_assert_eq(oom.calls, before, "a removed handler was called");
  smp_heap_destroy(h);
}

Test(oom, not_called_for_nowait) {
  size_t n;
  smp_heap_t *h = full_heap("oom-nowait", &n);
  memset(&oom, 0, sizeof oom);
  oom.answer = 0;
  smp_set_oom_handler(oom_handler, NULL);
  const size_t sizes[] = {1024, 100 * KiB, 8 * MiB};
  for (size_t i = 0; i < 3; i++) {
    errno = 0;
    cr_assert_null(smp_heap_malloc(h, sizes[i], SMP_NOWAIT));
    cr_assert(errno == ENOMEM || errno == EAGAIN, "SMP_NOWAIT, full heap: errno %d", errno);
    errno = 0;
    cr_assert_null(smp_heap_malloc(h, sizes[i], SMP_NOWAIT | SMP_RESERVE));
    cr_assert(errno == ENOMEM || errno == EAGAIN);
  }
  cr_assert_eq(oom.calls, 0, "the OOM handler was called %zu times for SMP_NOWAIT", oom.calls);
  smp_heap_destroy(h);
}

Test(oom, request_inside_handler_does_not_recurse) {
  size_t n;
  smp_heap_t *h = full_heap("oom-inner", &n);
  memset(&oom, 0, sizeof oom);
  oom.answer = 0;
  oom.allocate_inside = true;
  smp_set_oom_handler(oom_handler, NULL);
  errno = 0;
  cr_assert_null(smp_heap_malloc(h, 1024, 0));
  cr_assert_eq(errno, ENOMEM);
  cr_assert_eq(oom.calls, 1, "the handler was called %zu times (its own failing request must "
               "not call it again)", oom.calls);
  cr_assert_eq(oom.max_depth, 1);
  cr_assert_null(oom.inner, "the request inside the handler succeeded in a full heap");
  cr_assert_eq(oom.inner_errno, ENOMEM);
  smp_heap_destroy(h);
}

Test(oom, region_full_calls_handler) {
  region_t r;
  region_map(&r, 1 * MiB, 0);
  smp_heap_t *h = smp_heap_create_in("oom-region", r.base, r.len, 0);
  cr_assert_not_null(h);
  int err;
  size_t n = fill_heap(h, 1024, 0, filled, FILL_MAX, &err);
  cr_assert_eq(err, ENOMEM);
  memset(&oom, 0, sizeof oom);
  oom.answer = 1;
  oom.stash = filled;
  oom.stash_count = n;
  oom.max_calls = 64;
  smp_set_oom_handler(oom_handler, NULL);
  void *p = smp_heap_malloc(h, 1024, 0);
  cr_assert_not_null(p, "the handler freed region blocks, yet the request failed");
  cr_assert(in_region(&r, p, 1024));
  cr_assert_geq(oom.calls, 1);
  cr_assert_eq(oom.last_heap, h);
  cr_assert_eq(oom.last_size, 1024);
  smp_heap_destroy(h);
  munmap(r.map, r.map_len);
}

Test(oom, default_heap_under_address_space_limit) {
  struct rlimit saved, low;
  cr_assert_eq(getrlimit(RLIMIT_AS, &saved), 0);
  memset(&oom, 0, sizeof oom);
  oom.answer = 0;
  smp_set_oom_handler(oom_handler, NULL);
  low = saved;
  low.rlim_cur = vm_size() + 64 * MiB;
  cr_assert_eq(setrlimit(RLIMIT_AS, &low), 0);
  errno = 0;
  void *p = smp_mallocx(hide(512 * MiB), SMP_ZERO);
  int e = errno;
  cr_assert_eq(setrlimit(RLIMIT_AS, &saved), 0);
  cr_assert_null(p, "512 MiB under a 64 MiB address-space margin");
  cr_assert_eq(e, ENOMEM);
  cr_assert_eq(oom.calls, 1, "the handler was called %zu times for smp_mallocx(512 MiB, "
               "SMP_ZERO)", oom.calls);
  cr_assert_eq(oom.last_size, 512 * MiB);
  cr_assert(oom.last_heap == smp_heap_default() || oom.last_heap == NULL,
            "the handler was told heap %p for a default-heap request", oom.last_heap);
  if (oom.last_heap == NULL) cr_log_warn("the handler got NULL, not smp_heap_default()");
}

// malloc is a request of the default heap like any other ("a request of any heap").
Test(oom, plain_malloc_calls_handler) {
  struct rlimit saved, low;
  cr_assert_eq(getrlimit(RLIMIT_AS, &saved), 0);
  memset(&oom, 0, sizeof oom);
  oom.answer = 0;
  smp_set_oom_handler(oom_handler, NULL);
  low = saved;
  low.rlim_cur = vm_size() + 64 * MiB;
  cr_assert_eq(setrlimit(RLIMIT_AS, &low), 0);
  errno = 0;
  void *p = malloc(hide(512 * MiB));
  int e = errno;
  size_t calls_malloc = oom.calls;
  void *q = smp_mallocx(hide(512 * MiB), 0);
  size_t calls_mallocx = oom.calls - calls_malloc;
  void *r = smp_heap_malloc(NULL, hide(512 * MiB), 0);
  size_t calls_heap = oom.calls - calls_malloc - calls_mallocx;
  cr_assert_eq(setrlimit(RLIMIT_AS, &saved), 0);
  cr_assert(p == NULL && q == NULL && r == NULL);
  cr_assert_eq(e, ENOMEM);
  cr_log_info("handler calls: malloc %zu, smp_mallocx(n, 0) %zu, smp_heap_malloc(NULL, n, 0) %zu",
              calls_malloc, calls_mallocx, calls_heap);
  cr_assert_eq(calls_malloc, 1, "the handler was called %zu times for malloc(512 MiB)",
               calls_malloc);
  cr_assert_eq(calls_mallocx, 1, "the handler was called %zu times for smp_mallocx(512 MiB, 0)",
               calls_mallocx);
  cr_assert_eq(calls_heap, 1, "the handler was called %zu times for smp_heap_malloc(NULL, "
               "512 MiB, 0)", calls_heap);
}

// ---- the reserve --------------------------------------------------------------------------

Test(reserve, draws_exhausts_and_releases) {
  cr_assert_eq(process_stats().reserve_size, 0, "a reserve exists before smp_reserve_set");
  cr_assert_eq(smp_reserve_set(256 * KiB), 0);
  smp_stats_t s = process_stats();
  cr_assert_eq(s.reserve_size, 256 * KiB, "reserve_size %llu", (unsigned long long)s.reserve_size);
  cr_assert_eq(s.reserve_in_use, 0);

  size_t n;
  smp_heap_t *h = full_heap("reserve", &n);
  // Without the flag the reserve is not touched.
  errno = 0;
  cr_assert_null(smp_heap_malloc(h, 1024, 0));
  cr_assert_eq(errno, ENOMEM);
  cr_assert_eq(process_stats().reserve_in_use, 0);
  // With it, the request succeeds.
  static void *rblocks[1024];
  size_t rn = 0;
  errno = 0;
  rblocks[rn] = smp_heap_malloc(h, 1024, SMP_RESERVE);
  cr_assert_not_null(rblocks[rn], "SMP_RESERVE in a full heap with a 256 KiB reserve: errno %d",
                     errno);
  pattern_fill(rblocks[rn], 1024, 0);
  rn++;
  s = process_stats();
  cr_assert_geq(s.reserve_in_use, 1024, "reserve_in_use %llu after an SMP_RESERVE block",
                (unsigned long long)s.reserve_in_use);
  // Until the reserve is exhausted.
  int err;
  rn += fill_heap(h, 1024, SMP_RESERVE, rblocks + rn, 1024 - rn, &err);
  cr_log_info("the 256 KiB reserve gave %zu blocks of 1 KiB", rn);
  cr_assert_lt(rn, (size_t)1024, "the reserve never ran out");
  cr_assert_eq(err, ENOMEM, "exhausted reserve: errno %d", err);
  cr_assert_leq(rn * 1024, 256 * KiB, "%zu KiB drawn from a 256 KiB reserve", rn);
  cr_assert_geq(rn * 1024, 128 * KiB, "only %zu KiB drawn from a 256 KiB reserve", rn);
  s = process_stats();
  cr_assert_geq(s.reserve_in_use, rn * 1024);
  cr_assert_leq(s.reserve_in_use, s.reserve_size);
  for (size_t i = 1; i < rn; i++) // fill_heap seeded these from 0 again
    cr_assert_eq(pattern_check(rblocks[i], 1024, (unsigned)(i - 1)), 1024);

  // Releasing or shrinking while reserve blocks are live: EBUSY, reserve kept.
  cr_assert_eq(smp_reserve_set(0), EBUSY);
  cr_assert_eq(smp_reserve_set(128 * KiB), EBUSY);
  cr_assert_eq(process_stats().reserve_size, 256 * KiB);
  for (size_t i = 0; i < rn; i++) free(rblocks[i]);
  s = process_stats();
  cr_assert_eq(s.reserve_in_use, 0, "reserve_in_use %llu after every reserve block was freed",
               (unsigned long long)s.reserve_in_use);
  cr_assert_eq(smp_reserve_set(0), 0);
  s = process_stats();
  cr_assert_eq(s.reserve_size, 0);
  cr_assert_eq(s.reserve_in_use, 0);
  // No reserve: SMP_RESERVE fails like any request.
  errno = 0;
  cr_assert_null(smp_heap_malloc(h, 1024, SMP_RESERVE));
  cr_assert_eq(errno, ENOMEM);
  smp_heap_destroy(h);
}

// "rounded up to 8 KiB pages, and to SMP_REGION_MIN at least"
Test(reserve, rounded_up_to_pages) {
  cr_assert_eq(smp_reserve_set(100 * KiB + 1), 0);
  cr_assert_eq(process_stats().reserve_size, 104 * KiB, "100 KiB + 1 byte gave a reserve of %llu",
               (unsigned long long)process_stats().reserve_size);
  cr_assert_eq(smp_reserve_set(8 * KiB), 0);
  cr_assert_eq(process_stats().reserve_size, SMP_REGION_MIN, "8 KiB gave a reserve of %llu",
               (unsigned long long)process_stats().reserve_size);
  cr_assert_eq(smp_reserve_set(1), 0);
  cr_assert_eq(process_stats().reserve_size, SMP_REGION_MIN, "1 byte gave a reserve of %llu",
               (unsigned long long)process_stats().reserve_size);
  cr_assert_eq(smp_reserve_set(0), 0);
  cr_assert_eq(process_stats().reserve_size, 0);
}

// "EBUSY (blocks of the reserve are live: it changes only while none is)"
Test(reserve, busy_while_blocks_are_live) {
  cr_assert_eq(smp_reserve_set(100 * KiB), 0);
  size_t n;
  smp_heap_t *h = full_heap("reserve-grow", &n);
  void *p = smp_heap_malloc(h, 1024, SMP_RESERVE);
  cr_assert_not_null(p);
  int rc = smp_reserve_set(512 * KiB);
  cr_assert_eq(rc, EBUSY, "changing the reserve while a block is live: %d", rc);
  cr_assert_eq(process_stats().reserve_size, 104 * KiB, "the old reserve stays");
  free(p);
  cr_assert_eq(smp_reserve_set(512 * KiB), 0, "once the block is freed");
  cr_assert_eq(process_stats().reserve_size, 512 * KiB);
  cr_assert_eq(smp_reserve_set(0), 0);
  cr_assert_eq(process_stats().reserve_size, 0);
  smp_heap_destroy(h);
}

Test(reserve, nofail_draws_on_reserve) {
  cr_assert_eq(smp_reserve_set(64 * KiB), 0);
  size_t n;
  smp_heap_t *h = full_heap("reserve-nofail", &n);
  memset(&oom, 0, sizeof oom);
  oom.answer = 0;
  smp_set_oom_handler(oom_handler, NULL);
  void *p = smp_heap_malloc(h, 1024, SMP_NOFAIL | SMP_ZERO);
  cr_assert_not_null(p); // or the process would have aborted
  cr_assert(all_zero(p, 1024));
  cr_assert_geq(oom.calls, 1, "SMP_NOFAIL asks the handler before the reserve");
  cr_assert_geq(process_stats().reserve_in_use, 1024);
  free(p);
  cr_assert_eq(process_stats().reserve_in_use, 0);
  smp_heap_destroy(h);
}

Test(reserve, freed_from_another_thread) {
  cr_assert_eq(smp_reserve_set(64 * KiB), 0);
  size_t n;
  smp_heap_t *h = full_heap("reserve-thread", &n);
  static void *rb[16];
  static size_t rs[16];
  for (int i = 0; i < 16; i++) {
    rs[i] = 500;
    rb[i] = smp_heap_malloc(h, 500, SMP_RESERVE);
    cr_assert_not_null(rb[i]);
    pattern_fill(rb[i], 500, (unsigned)i);
  }
  handoff_t w = {rb, rs, 16, 0, h};
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, check_and_free, &w), 0);
  pthread_join(t, NULL);
  cr_assert_eq(w.bad, 0);
  cr_assert_eq(process_stats().reserve_in_use, 0);
  cr_assert_eq(smp_reserve_set(0), 0);
  smp_heap_destroy(h);
}

// ---- SMP_NOFAIL that cannot be met: death tests -------------------------------------------

static void expect_out_of_memory(const char *scenario, size_t size) {
  const char *out = expect_report(scenario, NULL, "out of memory", false);
  cr_assert(strstr(out, "full\n") != NULL, "%s: the set-up did not complete: [%s]", scenario, out);
  cr_assert(strstr(out, "ptr=") == NULL, "%s: SMP_NOFAIL returned: [%s]", scenario, out);
  char want[64];
  snprintf(want, sizeof want, "oom size=%zu heap=ok", size);
  cr_assert(strstr(out, want) != NULL, "%s: the handler was not asked (\"%s\") before the abort: "
            "[%s]", scenario, want, out);
  cr_assert(strstr(out, "heap=wrong") == NULL, "%s: the handler was told the wrong heap: [%s]",
            scenario, out);
}

Test(nofail, limited_heap_aborts) { expect_out_of_memory("nofail_limit", 1024); }
Test(nofail, full_region_aborts) { expect_out_of_memory("nofail_region", 1024); }
Test(nofail, realloc_aborts) { expect_out_of_memory("nofail_realloc", 300 * KiB); }
Test(nofail, mallocx_aborts_when_the_os_refuses) {
  expect_out_of_memory("nofail_mallocx", 1024 * MiB);
}

// ---- statistics ---------------------------------------------------------------------------

Test(stats, heap_stats_track_blocks) {
  smp_heap_t *h = new_heap("counted", 3 * MiB);
  smp_stats_t s0 = heap_stats(h);
  cr_assert_eq(s0.in_use, 0, "a new heap has %llu bytes in use", (unsigned long long)s0.in_use);
  cr_assert_eq(s0.limit, 3 * MiB);
  cr_assert_eq(s0.failures, 0);
  void *d = malloc(hide(2 * MiB + 1)); // default-heap blocks do not count in h
  cr_assert_not_null(d);
  enum { N = 100 };
  void *p[N];
  size_t usable = 0, asked = 0;
  for (int i = 0; i < N; i++) {
    p[i] = smp_heap_malloc(h, 1000, 0);
    cr_assert_not_null(p[i]);
    usable += smp_usable_size(p[i]);
    asked += 1000;
  }
  void *g = smp_heap_malloc(h, 2 * MiB + 100, 0);
  cr_assert_not_null(g);
  usable += smp_usable_size(g);
  asked += 2 * MiB + 100;
  smp_stats_t s1 = heap_stats(h);
  // Bytes of blocks: at least what was asked, at most the usable sizes (a huge block's
  // rounding aside).
  cr_assert(s1.in_use >= asked && s1.in_use <= usable + 16 * KiB,
            "in_use %llu; asked %zu, usable sizes total %zu", (unsigned long long)s1.in_use,
            asked, usable);
  cr_assert_geq(s1.held, s1.in_use);
  cr_assert_leq(s1.held, 3 * MiB);
  cr_assert_geq(s1.mapped, 2 * MiB + 100);
  cr_assert_leq(s1.resident, s1.mapped);
  size_t freed = 0;
  for (int i = 0; i < N / 2; i++) {
    freed += smp_usable_size(p[i]);
    free(p[i]);
  }
  smp_stats_t s2 = heap_stats(h);
  cr_assert_eq(s1.in_use - s2.in_use, freed, "freeing %zu bytes of small blocks took in_use "
               "from %llu to %llu", freed, (unsigned long long)s1.in_use,
               (unsigned long long)s2.in_use);
  for (int i = N / 2; i < N; i++) free(p[i]);
  free(g);
  free(d);
  smp_stats_t s3 = heap_stats(h);
  cr_assert_eq(s3.in_use, 0);
  cr_assert_eq(s3.failures, 0, "no request failed, yet failures is %llu",
               (unsigned long long)s3.failures);
  smp_heap_destroy(h);

  // The default heap (NULL or smp_heap_default()).
  void *big = malloc(hide(1 * MiB));
  cr_assert_not_null(big);
  smp_stats_t dn = heap_stats(NULL), dd = heap_stats(smp_heap_default());
  cr_assert_geq(dn.in_use, 1 * MiB);
  cr_assert_geq(dd.in_use, 1 * MiB);
  cr_assert_eq(dn.limit, 0);
  free(big);
}

Test(stats, heap_stats_einval_and_versions) {
  smp_heap_t *h = new_heap("versions", 0);
  cr_assert_eq(smp_heap_stats_get(h, NULL), EINVAL);
  smp_stats_t bad = {.version = 0, .size = sizeof bad};
  cr_assert_eq(smp_heap_stats_get(h, &bad), EINVAL);
  bad = (smp_stats_t){.version = SMP_STATS_VERSION, .size = 4};
  cr_assert_eq(smp_heap_stats_get(h, &bad), EINVAL);
  // A version 1 caller: the fields from limit on are not written.
  void *p = smp_heap_malloc(h, 5000, 0);
  cr_assert_not_null(p);
  struct {
    smp_stats_t head;
  } old;
  memset(&old, 0x77, sizeof old);
  old.head.version = 1;
  old.head.size = (uint32_t)offsetof(smp_stats_t, limit);
  cr_assert_eq(smp_heap_stats_get(h, &old.head), 0);
  cr_assert_eq(old.head.size, offsetof(smp_stats_t, limit));
  cr_assert_geq(old.head.in_use, 5000);
  cr_assert_eq(old.head.limit, 0x7777777777777777ull, "limit written beyond the caller's size");
  cr_assert_eq(old.head.held, 0x7777777777777777ull);
  cr_assert_eq(old.head.failures, 0x7777777777777777ull);
  free(p);
  smp_heap_destroy(h);
}

Test(stats, heaps_counted) {
  smp_stats_t s0 = process_stats();
  cr_assert_eq(s0.heaps, 1, "heaps %llu with only the default heap", (unsigned long long)s0.heaps);
  smp_heap_t *a = new_heap("a", 0), *b = new_heap("b", 1 * MiB);
  region_t r;
  region_map(&r, 1 * MiB, 0);
  smp_heap_t *c = smp_heap_create_in("c", r.base, r.len, 0);
  cr_assert_not_null(c);
  cr_assert_eq(process_stats().heaps, 4);
  smp_heap_destroy(b);
  cr_assert_eq(process_stats().heaps, 3);
  smp_heap_destroy(c);
  smp_heap_destroy(a);
  cr_assert_eq(process_stats().heaps, 1);
  munmap(r.map, r.map_len);
}

Test(stats, malloc_stats_lists_heaps_by_name) {
  static char text[256 * 1024];
  smp_heap_t *a = new_heap("alpha-heap", 0), *b = new_heap("beta-heap-limited", 2 * MiB);
  region_t r;
  region_map(&r, 1 * MiB, 0);
  smp_heap_t *c = smp_heap_create_in("gamma-region", r.base, r.len, 0);
  cr_assert_not_null(c);
  void *pa = smp_heap_malloc(a, 100, 0), *pb = smp_heap_malloc(b, 100 * KiB, 0),
       *pc = smp_heap_malloc(c, 1000, 0);
  cr_assert(pa && pb && pc);
  size_t len = capture_malloc_stats(text, sizeof text);
  cr_assert_gt(len, 0, "malloc_stats printed nothing");
  cr_log_info("malloc_stats: [%s]", text);
  cr_assert(strstr(text, "alpha-heap") != NULL, "malloc_stats does not list heap alpha-heap");
  cr_assert(strstr(text, "beta-heap-limited") != NULL,
            "malloc_stats does not list beta-heap-limited");
  cr_assert(strstr(text, "gamma-region") != NULL, "malloc_stats does not list gamma-region");
  free(pa);
  free(pb);
  free(pc);
  smp_heap_destroy(b);
  capture_malloc_stats(text, sizeof text);
  cr_assert(strstr(text, "beta-heap-limited") == NULL, "a destroyed heap is still listed");
  cr_assert(strstr(text, "alpha-heap") != NULL && strstr(text, "gamma-region") != NULL);
  smp_heap_destroy(a);
  smp_heap_destroy(c);
  munmap(r.map, r.map_len);
}
