// Malloc types (smpalloc.h, "Malloc types"): typed blocks of every kind (small, large, huge,
// aligned, in other heaps and regions), freed by smp_free_type and by plain free/realloc; the
// per-type counters exact at quiescence under cross-thread traffic; high-water marks; limits;
// zero-on-free seen through a second mapping of the memory; type mismatches and misuse (run in
// types_helper.c, whose report and signal are checked); the report of a type still holding
// blocks when the shared object that defined it is unloaded (types_plugin.c).
// Linked against libsmpalloc.so: malloc/free here are smpalloc's.
#define _GNU_SOURCE
#include "test_frontend.h"

#include <criterion/criterion.h>
#include <dlfcn.h>
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
#include <unistd.h>

#include "api_util.h"
#include "test_hardened.h"
#include "smpalloc.h"

#ifndef TYPES_HELPER
#error "TYPES_HELPER must name the helper executable"
#endif
#ifndef TYPES_PLUGIN
#error "TYPES_PLUGIN must name the plugin"
#endif

#define KiB ((size_t)1024)
#define MiB ((size_t)1024 * 1024)

SMP_TYPE_DEFINE(M_CONN, "conn", "client connections");
SMP_TYPE_DEFINE(M_BUF, "buf", "request buffers");
SMP_TYPE_DEFINE(M_LIMITED, "limited", "a type with a limit");
SMP_TYPE_DEFINE(M_CROSS, "cross", "blocks freed by other threads");
SMP_TYPE_DEFINE(M_PEAK, "peak", "high-water mark");
SMP_TYPE_DEFINE_FLAGS(M_SECRET, "secret", "keys, cleared when freed", SMP_TYPE_ZERO_ON_FREE);
SMP_TYPE_DEFINE(M_NEVER, "never", "never used");
SMP_TYPE_DEFINE_FLAGS(M_OWN, "own", "objects kept in pages of their own", SMP_TYPE_OWN_HEAP);
SMP_TYPE_DEFINE_FLAGS(M_OWN_SECRET, "own_secret", "own pages, cleared when freed",
                      SMP_TYPE_OWN_HEAP | SMP_TYPE_ZERO_ON_FREE);
SMP_TYPE_DEFINE_FLAGS(M_OWN_LIMITED, "own_limited", "own pages, with a limit", SMP_TYPE_OWN_HEAP);

static smp_type_stats_t stats_of(smp_type_t *t) {
  smp_type_stats_t s = {.version = SMP_TYPE_STATS_VERSION, .size = sizeof s};
  cr_assert_eq(smp_type_stats_get(t, &s), 0);
  return s;
}

// A heap visit's callback: checks the usable size of the blocks it is told to look for.
typedef struct seen {
  void *want[4];
  size_t usable[4];
  int found;
} seen_t;
static int see_block(void *p, size_t usable, void *arg) {
  seen_t *s = arg;
  for (int i = 0; i < 4; i++)
    if (p == s->want[i]) {
      cr_assert_eq(usable, s->usable[i], "block %d: visit says %zu, smp_usable_size %zu", i, usable,
                   s->usable[i]);
      s->found++;
    }
  return 0;
}
Test(types, frontend_is_the_one_asked_for) {
  cr_assert(test_frontend_check("test_types", stderr), "see the FAIL line above");
}

// Blocks of every kind are typed, usable as asked, aligned, and found back from the pointer.
Test(types, every_kind_of_block_is_typed) {
  struct { size_t size; unsigned flags; size_t align; } kinds[] = {
      {1, 0, 16}, {48, 0, 16}, {1000, 0, 16}, {5000, 0, 16}, {65536 - 16, 0, 16},
      {65536, 0, 16}, {300 * KiB, SMP_ZERO, 16}, {3 * MiB, 0, 16}, {100, SMP_ALIGN(64), 64},
      {100, SMP_ALIGN(4096), 4096}, {70 * KiB, SMP_ALIGN(8192), 8192},
      {3 * MiB, SMP_ALIGN(65536), 65536}, {0, 0, 16}};
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    unsigned char *p = smp_malloc_type(kinds[i].size, M_CONN, kinds[i].flags);
    cr_assert_not_null(p, "size %zu", kinds[i].size);
    cr_assert_eq((uintptr_t)p % kinds[i].align, 0, "size %zu: %p not aligned to %zu", kinds[i].size,
                 (void *)p, kinds[i].align);
    cr_assert_eq(smp_type_of(p), M_CONN, "size %zu", kinds[i].size);
    cr_assert_eq(smp_heap_of(p), smp_heap_default());
    size_t usable = smp_usable_size(p);
    cr_assert_geq(usable, kinds[i].size);
    cr_assert_eq(malloc_usable_size(p), usable);
    if (kinds[i].flags & SMP_ZERO)
      for (size_t j = 0; j < kinds[i].size; j++) cr_assert_eq(p[j], 0);
    pattern_fill(p, usable, (unsigned)i);
    smp_type_stats_t s = stats_of(M_CONN);
    cr_assert_eq(s.blocks, 1);
    cr_assert_eq(s.in_use, usable, "size %zu: in_use %lu, usable %zu", kinds[i].size,
                 (unsigned long)s.in_use, usable);
    for (size_t j = 0; j < usable; j++) cr_assert_eq(p[j], pattern_byte((unsigned)i, j));
    if (i % 2) smp_free_type(p, M_CONN);
    else free(p);
    s = stats_of(M_CONN);
    cr_assert_eq(s.blocks, 0);
    cr_assert_eq(s.in_use, 0);
    cr_assert_eq(s.requests, i + 1);
    cr_assert_eq(s.frees, i + 1);
  }
  smp_type_stats_t s = stats_of(M_CONN);
  cr_assert_neq(s.classes[0] | s.classes[1], 0, "the size classes used are recorded");
  cr_assert_geq(s.large, 5, "large and huge requests counted: %lu", (unsigned long)s.large);
  cr_assert_str_eq(s.name, "conn");
  cr_assert_str_eq(s.description, "client connections");
  cr_assert_eq(s.loaded, 1);
}

// Huge typed blocks aligned to 2 MiB beside untyped huge blocks of the same alignment: the
// pointer (2 MiB past the block) is more aligned than the block, and other huge blocks start at
// addresses below it; every one must still be found (the review's F1: half were not).
Test(types, aligned_huge_blocks_are_found) {
  enum { N = 64 };
  void *typed[N], *plain[N];
  for (int i = 0; i < N; i++) {
    typed[i] = smp_malloc_type(100, M_CONN, SMP_ALIGN(2 * MiB));
    plain[i] = smp_mallocx(2 * MiB, SMP_ALIGN(2 * MiB));
    cr_assert_not_null(typed[i]);
    cr_assert_not_null(plain[i]);
  }
  for (int i = 0; i < N; i++) {
    cr_assert_eq(smp_type_of(typed[i]), M_CONN, "block %d at %p", i, typed[i]);
    cr_assert_eq(smp_heap_of(typed[i]), smp_heap_default());
    free(typed[i]);
    free(plain[i]);
  }
  cr_assert_eq(stats_of(M_CONN).blocks, 0);
}

// smp_type_of on untyped block starts that follow a free 16-byte block (the last of the span
// before): never a report (the review's F2 took them for freed typed pointers).
static int by_address(const void *a, const void *b) {
  char *x = *(char *const *)a, *y = *(char *const *)b;
  return x < y ? -1 : x > y;
}
Test(types, block_after_a_free_16_byte_block_is_untyped) {
  free(smp_malloc_type(10, M_CONN, 0)); // types in use
  enum { N = 200000 };
  static char *small[N], *other[N];
  int no = 0, checked = 0;
  for (int i = 0; i < N; i++) {
    small[i] = malloc(16);
    if (i % 50 == 0) other[no++] = malloc(i % 100 == 0 ? 100000 : 1000);
  }
  qsort(small, N, sizeof small[0], by_address);
  for (int j = 0; j < no; j++) {
    char *want = other[j] - 16;
    char **hit = bsearch(&want, small, N, sizeof small[0], by_address);
    if (hit == NULL) continue;
    free(*hit);
    *hit = NULL;
    cr_assert_null(smp_type_of(other[j]));
    cr_assert_geq(smp_usable_size(other[j]), 1000);
    checked++;
  }
  cr_log_info("%d blocks checked after a free 16-byte block", checked);
  cr_assert_gt(checked, 0, "the layout was not reached: the test proves nothing");
  for (int i = 0; i < N; i++) free(small[i]);
  for (int j = 0; j < no; j++) free(other[j]);
}

// A type's blocks are still freed by smp_free_type after its definition was unregistered (a
// destructor that runs after the type's own, at exit: the review's F3).
Test(types, free_after_unregister) {
  void *p = smp_malloc_type(100, M_CONN, 0), *q = smp_malloc_type(5000, M_CONN, 0);
  uint64_t before = stats_of(M_CONN).blocks;
  smp_type_unregister(M_CONN);
  q = smp_realloc_type(q, 9000, M_CONN, 0);
  cr_assert_not_null(q);
  smp_free_type(p, M_CONN);
  smp_free_type(q, M_CONN);
  cr_assert_eq(stats_of(M_CONN).blocks, before - 2);
}

// A freed typed block leaves no header behind: an untyped block later placed at the same
// address is not taken for a typed one by a visit or a destroy (the review's F4).
Test(types, freed_headers_are_gone) {
  smp_heap_t *h = smp_heap_create("reuse", 0);
  void *t1 = smp_heap_malloc_type(h, 100000, M_BUF, 0);  // large: its free writes no mark
  void *t2 = smp_heap_malloc_type(h, 100, M_BUF, SMP_ALIGN(64)); // header past the mark
  char *b1 = (char *)t1 - 16, *b2 = (char *)t2 - 64;
  free(t1);
  free(t2);
  void *u1 = smp_heap_malloc(h, 100000, 0), *u2 = smp_heap_malloc(h, 164, SMP_ALIGN(64));
  cr_assert_eq(u1, (void *)b1, "the large block was not reused: the test proves nothing");
  cr_assert_eq(u2, (void *)b2, "the aligned block was not reused: the test proves nothing");
  cr_assert_null(smp_type_of(u1));
  cr_assert_null(smp_type_of(u2));
  seen_t s = {.want = {u1, u2}, .usable = {smp_usable_size(u1), smp_usable_size(u2)}};
  cr_assert_eq(smp_heap_visit(h, see_block, &s), 0);
  cr_assert_eq(s.found, 2, "the visit saw %d of the 2 untyped blocks at their starts", s.found);
  smp_type_stats_t before = stats_of(M_BUF);
  smp_heap_destroy(h);
  smp_type_stats_t after = stats_of(M_BUF);
  cr_assert_eq(after.frees, before.frees, "destroy counted untyped blocks as frees of buf");
  cr_assert_eq(after.in_use, before.in_use);
}

// A limit set after threads freed blocks of the type (credit they had not published) is exact.
static void *free_many(void *arg) {
  void **blocks = arg;
  for (int i = 0; i < 60; i++) free(blocks[i]);
  return NULL;
}
Test(types, limit_set_after_traffic_is_exact) {
  void *blocks[60];
  for (int i = 0; i < 60; i++) blocks[i] = smp_malloc_type(1000, M_LIMITED, 0); // 60 KB
  pthread_t t;
  pthread_create(&t, NULL, free_many, blocks); // its frees stay its credit until it exits:
  pthread_join(t, NULL);                       // here they are published at its exit, so
  void *more[60];                              // also keep a live thread's credit
  for (int i = 0; i < 60; i++) more[i] = smp_malloc_type(1000, M_LIMITED, 0);
  for (int i = 0; i < 60; i++) free(more[i]); // this thread's credit: 60 KB unpublished
  cr_assert_eq(stats_of(M_LIMITED).in_use, 0);
  cr_assert_eq(smp_type_set_limit(M_LIMITED, 32 * KiB), 0);
  void *p = smp_malloc_type(1000, M_LIMITED, 0);
  cr_assert_not_null(p, "nothing in use, a 32 KiB limit, a 1000-byte block refused");
  int n = 1;
  while (smp_malloc_type(1000, M_LIMITED, 0)) n++;
  cr_assert_eq(n, 32 * KiB / 1008, "%d blocks under a 32 KiB limit", n);
}

Test(types, nowait_and_bad_types) {
  smp_type_t bogus = {0};
  char buffer[256] = {0};
  bogus.entry = buffer; // not a type: magic 0
  errno = 0;
  cr_assert_null(smp_malloc_type(10, &bogus, 0));
  cr_assert_eq(errno, EINVAL);
  for (size_t i = 0; i < sizeof buffer; i++) cr_assert_eq(buffer[i], 0, "wrote into a non-type");
  cr_assert_null(smp_heap_malloc_type(NULL, 10, NULL, 0));
  cr_assert_eq(errno, EINVAL);
  cr_assert_null(smp_malloc_type(10, M_NEVER, SMP_NOWAIT), "registering takes a lock");
  cr_assert_eq(errno, EAGAIN);
  free(smp_malloc_type(10, M_NEVER, 0));
  void *p = smp_malloc_type(10, M_NEVER, SMP_NOWAIT); // registered, record made: may go on
  cr_assert_not_null(p);
  free(p);
  cr_assert_null(smp_malloc_type(10, M_NEVER, 0x40000000u), "unknown flag");
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(stats_of(M_NEVER).failures, 0, "EINVAL is not a refusal");
}

Test(types, untyped_blocks_have_no_type) {
  void *p = malloc(100), *q = smp_malloc(5 * MiB), *r = smp_heap_malloc(NULL, 70 * KiB, 0);
  cr_assert_null(smp_type_of(p));
  cr_assert_null(smp_type_of(q));
  cr_assert_null(smp_type_of(r));
  cr_assert_null(smp_type_of(NULL));
  free(p);
  free(q);
  free(r);
  smp_type_stats_t s = stats_of(M_NEVER);
  cr_assert_eq(s.requests + s.blocks + s.in_use, 0, "a type never used reads as zeros");
  cr_assert_str_eq(s.name, "never");
}

// realloc (plain and typed) keeps the type and the contents, and the counters follow the block.
Test(types, realloc_keeps_the_type) {
  char *p = smp_malloc_type(40, M_BUF, 0);
  pattern_fill(p, 40, 7);
  for (size_t size = 80; size < 8 * MiB; size *= 3) {
    p = (size / 80) % 2 ? realloc(p, size) : smp_realloc_type(p, size, M_BUF, 0);
    cr_assert_not_null(p);
    cr_assert_eq(smp_type_of(p), M_BUF, "size %zu", size);
    for (size_t j = 0; j < 40; j++) cr_assert_eq((unsigned char)p[j], pattern_byte(7, j));
    smp_type_stats_t s = stats_of(M_BUF);
    cr_assert_eq(s.blocks, 1);
    cr_assert_eq(s.in_use, smp_usable_size(p), "size %zu", size);
  }
  p = smp_realloc_type(p, 24, M_BUF, 0); // shrinks into a small class: moves
  cr_assert_eq(smp_type_of(p), M_BUF);
  cr_assert_eq(stats_of(M_BUF).in_use, smp_usable_size(p));
  cr_assert_null(realloc(p, 0)); // frees, as glibc does
  cr_assert_eq(stats_of(M_BUF).blocks, 0);
  cr_assert_eq(stats_of(M_BUF).in_use, 0);
  void *q = smp_realloc_type(NULL, 100, M_BUF, SMP_ZERO);
  cr_assert_eq(smp_type_of(q), M_BUF);
  smp_free_type(q, M_BUF);
}

Test(types, other_heaps_and_regions) {
  smp_heap_t *h = smp_heap_create("typed", 0);
  size_t len = 8 * MiB;
  void *region = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  cr_assert_neq(region, MAP_FAILED);
  smp_heap_t *r = smp_heap_create_in("region", region, len, 0);
  cr_assert_not_null(h);
  cr_assert_not_null(r);
  smp_heap_t *heaps[] = {h, r};
  for (int i = 0; i < 2; i++) {
    void *a = smp_heap_malloc_type(heaps[i], 64, M_BUF, 0);
    void *b = smp_heap_malloc_type(heaps[i], 100 * KiB, M_BUF, SMP_ZERO);
    cr_assert_eq(smp_heap_of(a), heaps[i]);
    cr_assert_eq(smp_heap_of(b), heaps[i]);
    cr_assert_eq(smp_type_of(a), M_BUF);
    cr_assert_eq(smp_type_of(b), M_BUF);
    a = smp_heap_realloc(heaps[i], a, 5000, 0);
    cr_assert_eq(smp_type_of(a), M_BUF, "smp_heap_realloc keeps the type");
    cr_assert_eq(smp_heap_of(a), heaps[i]);
    cr_assert_eq(stats_of(M_BUF).blocks, 2);
    free(a);
    smp_free_type(b, M_BUF);
    cr_assert_eq(stats_of(M_BUF).blocks, 0);
    cr_assert_eq(stats_of(M_BUF).in_use, 0);
  }
  // A typed block moved to another heap keeps its type.
  void *c = smp_malloc_type(64, M_BUF, 0);
  c = smp_heap_realloc(h, c, 64, 0);
  cr_assert_eq(smp_heap_of(c), h);
  cr_assert_eq(smp_type_of(c), M_BUF);
  free(c);
  cr_assert_eq(stats_of(M_BUF).in_use, 0);
  smp_heap_destroy(h);
  smp_heap_destroy(r);
}

// A heap visit sees typed blocks as the program holds them: the pointer and usable size that
// smp_usable_size gives, not the block behind the header.
Test(types, heap_visit_sees_the_typed_pointers) {
  smp_heap_t *h = smp_heap_create("visited", 0);
  seen_t s = {.want = {smp_heap_malloc_type(h, 100, M_BUF, 0),
                       smp_heap_malloc_type(h, 100, M_BUF, SMP_ALIGN(256)),
                       smp_heap_malloc_type(h, 200 * KiB, M_BUF, 0), smp_heap_malloc(h, 100, 0)}};
  for (int i = 0; i < 4; i++) s.usable[i] = smp_usable_size(s.want[i]);
  cr_assert_eq(smp_heap_visit(h, see_block, &s), 0);
  cr_assert_eq(s.found, 4, "visited %d of the 4 blocks at their pointers", s.found);
  smp_type_stats_t before = stats_of(M_BUF);
  cr_assert_eq(before.blocks, 3);
  smp_heap_destroy(h); // frees its blocks: the typed ones count as freed
  smp_type_stats_t after = stats_of(M_BUF);
  cr_assert_eq(after.blocks, 0);
  cr_assert_eq(after.in_use, 0);
  cr_assert_eq(after.frees, before.frees + 3);
}

// ---- counters under threads ---------------------------------------------------------------

#define THREADS 4
#define ROUNDS 200
#define BATCH 64

typedef struct exchange {
  pthread_mutex_t lock;
  void *slots[THREADS][BATCH];
  int full[THREADS];
} exchange_t;
static exchange_t xchg = {.lock = PTHREAD_MUTEX_INITIALIZER};
static _Atomic uint64_t requests_total;

// Each thread allocates batches of typed blocks of varied sizes, checks their contents, frees
// half itself (alternately by smp_free_type and plain free) and hands the other half to the
// next thread, which frees them.
static void *cross_worker(void *arg) {
  int me = (int)(intptr_t)arg;
  for (int round = 0; round < ROUNDS; round++) {
    void *mine[BATCH];
    for (int i = 0; i < BATCH; i++) {
      size_t size = 16 + (size_t)((round * 131 + i * 17 + me * 7) % 3000);
      if (i == 0 && round % 50 == 0) size = 100 * KiB;
      mine[i] = smp_malloc_type(size, M_CROSS, 0);
      cr_assert_not_null(mine[i]);
      memset(mine[i], me + 1, size);
      *(size_t *)mine[i] = size;
      atomic_fetch_add(&requests_total, 1);
    }
    for (int i = 0; i < BATCH; i++) {
      unsigned char *p = mine[i];
      size_t size = *(size_t *)p;
      for (size_t j = sizeof(size_t); j < size; j += 97) cr_assert_eq(p[j], me + 1);
    }
    for (int i = 0; i < BATCH / 2; i++) {
      if (i % 2) smp_free_type(mine[i], M_CROSS);
      else free(mine[i]);
    }
    int next = (me + 1) % THREADS;
    pthread_mutex_lock(&xchg.lock);
    void *theirs[BATCH];
    int had = xchg.full[me];
    if (had) memcpy(theirs, xchg.slots[me], sizeof theirs);
    xchg.full[me] = 0;
    if (!xchg.full[next]) {
      memcpy(xchg.slots[next], &mine[BATCH / 2], (BATCH / 2) * sizeof(void *));
      xchg.full[next] = BATCH / 2;
    } else {
      for (int i = BATCH / 2; i < BATCH; i++) smp_free_type(mine[i], M_CROSS);
    }
    pthread_mutex_unlock(&xchg.lock);
    for (int i = 0; i < had; i++) {
      if (i % 2) free(theirs[i]);
      else smp_free_type(theirs[i], M_CROSS);
    }
  }
  return NULL;
}

Test(types, counters_exact_at_quiescence) {
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++)
    cr_assert_eq(pthread_create(&t[i], NULL, cross_worker, (void *)(intptr_t)i), 0);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  smp_type_stats_t s = stats_of(M_CROSS);
  uint64_t left = 0, left_bytes = 0;
  for (int i = 0; i < THREADS; i++)
    for (int j = 0; j < xchg.full[i]; j++) {
      left++;
      left_bytes += smp_usable_size(xchg.slots[i][j]);
    }
  cr_assert_eq(s.requests, (uint64_t)THREADS * ROUNDS * BATCH);
  cr_assert_eq(s.requests, atomic_load(&requests_total));
  cr_assert_eq(s.blocks, left, "blocks in use %lu, handed over and not freed %lu",
               (unsigned long)s.blocks, (unsigned long)left);
  cr_assert_eq(s.in_use, left_bytes);
  cr_assert_eq(s.frees, s.requests - left);
  cr_assert_geq(s.high_water, 100 * KiB);
  for (int i = 0; i < THREADS; i++)
    for (int j = 0; j < xchg.full[i]; j++) free(xchg.slots[i][j]);
  s = stats_of(M_CROSS);
  cr_assert_eq(s.blocks, 0);
  cr_assert_eq(s.in_use, 0);
  cr_assert_eq(s.failures, 0);
}

// SMP_TYPE_OWN_HEAP: blocks of every kind cost what the same plain request costs (no header),
// are found typed, belong to the default heap as far as smp_heap_of goes, keep their type and
// their layout through realloc, and leave the counters exact however they are freed: by
// smp_free_type, free, smp_free, realloc to 0, and by another thread.
// in_use of the heap named name in smp_stats_json (the test fails if it is not listed).
static uint64_t json_heap_in_use(const char *name) {
  static char json[1 << 17];
  cr_assert_lt(smp_stats_json(json, sizeof json), (int)sizeof json);
  char key[64];
  snprintf(key, sizeof key, "{\"name\":\"%s\",", name);
  const char *h = strstr(json, key);
  cr_assert_not_null(h, "no heap %s in the statistics", name);
  const char *u = strstr(h, "\"in_use\":");
  cr_assert_not_null(u);
  return strtoull(u + 9, NULL, 10);
}

#define OWN_KINDS 9
static const size_t own_sizes[OWN_KINDS] = {1, 16, 64, 100, 1000, 4096, 64 * KiB + 1, MiB, 3 * MiB};
static void *own_free_worker(void *arg) {
  void **blocks = arg;
  for (int i = 0; i < OWN_KINDS; i++) free(blocks[i]);
  return NULL;
}

Test(types, own_heap_blocks_carry_no_header) {
  void *own[OWN_KINDS];
  uint64_t bytes = 0;
  for (int i = 0; i < OWN_KINDS; i++) {
    size_t n = own_sizes[i];
    void *plain = malloc(n);
    own[i] = smp_malloc_type(n, M_OWN, 0);
    cr_assert_not_null(own[i]);
    cr_assert_eq((uintptr_t)own[i] % 16, 0);
    cr_assert_eq(smp_usable_size(own[i]), malloc_usable_size(plain),
                 "%zu bytes: %zu usable in the type's heap, %zu as a plain block", n,
                 smp_usable_size(own[i]), malloc_usable_size(plain));
    free(plain);
    cr_assert_eq(smp_type_of(own[i]), M_OWN, "%zu bytes", n);
    cr_assert_eq(smp_heap_of(own[i]), smp_heap_default(), "%zu bytes", n);
    pattern_fill(own[i], n, (unsigned)i);
    bytes += smp_usable_size(own[i]);
  }
  smp_type_stats_t s = stats_of(M_OWN);
  cr_assert_eq(s.blocks, OWN_KINDS);
  cr_assert_eq(s.in_use, bytes);
  cr_assert_eq(s.flags, SMP_TYPE_OWN_HEAP);
  // A visit of the default heap sees them, with their usable sizes.
  seen_t v = {.want = {own[2], own[4], own[6], own[8]}};
  for (int i = 0; i < 4; i++) v.usable[i] = smp_usable_size(v.want[i]);
  cr_assert_eq(smp_heap_visit(NULL, see_block, &v), 0);
  cr_assert_eq(v.found, 4);
  // Aligned and zeroed requests.
  char *a = smp_malloc_type(200, M_OWN, SMP_ALIGN(4096) | SMP_ZERO);
  cr_assert_eq((uintptr_t)a % 4096, 0);
  for (int j = 0; j < 200; j++) cr_assert_eq(a[j], 0);
  cr_assert_eq(smp_type_of(a), M_OWN);
  // realloc in every direction keeps the type and the contents.
  char *r = smp_malloc_type(40, M_OWN, 0);
  pattern_fill(r, 40, 9);
  for (size_t size = 80; size < 8 * MiB; size *= 5) {
    r = (size / 80) % 2 ? realloc(r, size) : smp_realloc_type(r, size, M_OWN, 0);
    cr_assert_not_null(r);
    cr_assert_eq(smp_type_of(r), M_OWN, "size %zu", size);
    for (size_t j = 0; j < 40; j++) cr_assert_eq((unsigned char)r[j], pattern_byte(9, j));
  }
  r = smp_realloc_type(r, 24, M_OWN, 0);
  cr_assert_eq(smp_type_of(r), M_OWN);
  // The default heap's realloc keeps a block that still fits where it is (its heap is part of
  // the default heap), as the plain and typed calls do.
  if (!test_hardened()) cr_assert_eq(smp_heap_realloc(NULL, r, 20, 0), r);
  cr_assert_eq(stats_of(M_OWN).in_use, bytes + smp_usable_size(a) + smp_usable_size(r));
  cr_assert_null(realloc(r, 0));
  smp_free_type(a, M_OWN);
  for (int i = 0; i < OWN_KINDS; i++)
    cr_assert_eq(pattern_check(own[i], own_sizes[i], (unsigned)i), own_sizes[i], "block %d", i);
  // Freed three ways here, and by another thread.
  smp_free_type(own[0], M_OWN);
  free(own[1]);
  smp_free(own[2]);
  for (int i = 0; i < 3; i++) own[i] = smp_malloc_type(own_sizes[i], M_OWN, 0);
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, own_free_worker, own), 0);
  pthread_join(t, NULL);
  s = stats_of(M_OWN);
  cr_assert_eq(s.blocks, 0);
  cr_assert_eq(s.in_use, 0);
  cr_assert_eq(s.requests, s.frees);
  cr_assert_geq(s.requests, OWN_KINDS + 3 + 2);
  // An untyped block is not taken for one of the type's.
  void *u = malloc(64);
  cr_assert_null(smp_type_of(u));
  free(u);
  // What the blocks cost: the type's heap, "type own" in the statistics, holds 256 * 64 bytes
  // in use for 256 blocks of 64 bytes (a header would make each a block of 80).
  if (!test_hardened()) {
    void *held[256];
    for (int i = 0; i < 256; i++) held[i] = smp_malloc_type(64, M_OWN, 0);
    cr_assert_eq(json_heap_in_use("type own"), 256 * 64);
    for (int i = 0; i < 256; i++) smp_free_type(held[i], M_OWN);
  }
}

// A type with its own heap and a limit: a request past the limit fails and leaves the
// counters as they were (the block it got goes back uncounted), so what fits still fits.
Test(types, own_heap_limit_refuses_exactly) {
  cr_assert_eq(smp_type_set_limit(M_OWN_LIMITED, 64 * KiB), 0);
  void *a = smp_malloc_type(40 * KiB, M_OWN_LIMITED, 0);
  cr_assert_not_null(a);
  errno = 0;
  cr_assert_null(smp_malloc_type(40 * KiB, M_OWN_LIMITED, 0));
  cr_assert_eq(errno, ENOMEM);
  cr_assert_null(smp_malloc_type(100 * KiB, M_OWN_LIMITED, 0));
  smp_type_stats_t s = stats_of(M_OWN_LIMITED);
  cr_assert_eq(s.in_use, smp_usable_size(a));
  cr_assert_eq(s.failures, 2);
  smp_free_type(a, M_OWN_LIMITED);
  cr_assert_eq(stats_of(M_OWN_LIMITED).in_use, 0);
  void *b = smp_malloc_type(60 * KiB, M_OWN_LIMITED, 0);
  cr_assert_not_null(b, "60 KiB under a 64 KiB limit with nothing else in use");
  free(b);
  cr_assert_eq(stats_of(M_OWN_LIMITED).in_use, 0);
  cr_assert_eq(stats_of(M_OWN_LIMITED).blocks, 0);
}

// A type with its own heap and zero-on-free: a freed block, handed out again (the same class
// gives the block just freed), reads as zero past the words the free lists may write.
Test(types, own_heap_zero_on_free_clears_the_block) {
  int reused = 0;
  for (size_t n = 64; n <= 256 * KiB; n *= 8) {
    char *p = smp_malloc_type(n, M_OWN_SECRET, 0);
    memset(p, 0x5a, n);
    smp_free_type(p, M_OWN_SECRET);
    char *q = smp_malloc_type(n, M_OWN_SECRET, 0); // the block just freed, unless hardened
    if (q == p) {
      reused++;
      for (size_t j = 16; j < n; j++) // words 0-1 of a small block may hold list links
        cr_assert_eq(q[j], 0, "%zu bytes: byte %zu not cleared", n, j);
    }
    smp_free_type(q, M_OWN_SECRET);
  }
  if (!test_hardened()) cr_assert_eq(reused, 5, "a freed block came back %d times in 5", reused);
  cr_assert_eq(stats_of(M_OWN_SECRET).in_use, 0);
}

// The high-water mark is the peak: threads each hold N blocks at once (behind a barrier), then
// free them, then allocate and free one at a time (which never raises it again).
static pthread_barrier_t peak_barrier;
static void *peak_worker(void *arg) {
  (void)arg;
  void *held[256];
  for (int i = 0; i < 256; i++) held[i] = smp_malloc_type(100, M_PEAK, 0); // usable 112
  pthread_barrier_wait(&peak_barrier);
  for (int i = 0; i < 256; i++) smp_free_type(held[i], M_PEAK);
  pthread_barrier_wait(&peak_barrier);
  for (int i = 0; i < 10000; i++) free(smp_malloc_type(100, M_PEAK, 0));
  return NULL;
}

Test(types, high_water_mark_is_the_peak) {
  pthread_t t[THREADS];
  pthread_barrier_init(&peak_barrier, NULL, THREADS);
  for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, peak_worker, NULL);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  smp_type_stats_t s = stats_of(M_PEAK);
  cr_assert_eq(s.in_use, 0);
  cr_assert_eq(s.high_water, (uint64_t)THREADS * 256 * 112, "high water %lu, peak %lu",
               (unsigned long)s.high_water, (unsigned long)THREADS * 256 * 112);
  cr_assert_eq(s.requests, (uint64_t)THREADS * (256 + 10000));
}

Test(types, limits_fail_with_enomem) {
  cr_assert_eq(smp_type_set_limit(M_LIMITED, 64 * KiB), 0);
  void *held[200];
  int n = 0;
  for (; n < 200; n++) {
    errno = 0;
    held[n] = smp_malloc_type(1000, M_LIMITED, 0); // usable 1008
    if (held[n] == NULL) break;
  }
  cr_assert_eq(errno, ENOMEM);
  cr_assert_eq(n, 64 * KiB / 1008, "%d blocks fit under the limit", n);
  smp_type_stats_t s = stats_of(M_LIMITED);
  cr_assert_leq(s.in_use, 64 * KiB);
  cr_assert_eq(s.failures, 1);
  cr_assert_eq(s.limit, 64 * KiB);
  cr_assert_null(smp_malloc_type(1 * MiB, M_LIMITED, 0), "a large block over the limit fails");
  cr_assert_eq(errno, ENOMEM);
  cr_assert_eq(stats_of(M_LIMITED).failures, 2);
  free(held[0]); // room for one again
  held[0] = smp_malloc_type(1000, M_LIMITED, 0);
  cr_assert_not_null(held[0]);
  cr_assert_eq(smp_type_set_limit(M_LIMITED, 0), 0);
  void *more = smp_malloc_type(1 * MiB, M_LIMITED, 0);
  cr_assert_not_null(more, "no limit any more");
  free(more);
  for (int i = 0; i < n; i++) free(held[i]);
  cr_assert_eq(stats_of(M_LIMITED).in_use, 0);
  cr_assert_eq(smp_type_set_limit(NULL, 1), EINVAL);
}

// Zero-on-free, seen through a second mapping of the memory: a region heap over a memfd mapped
// twice; the freed secret reads as zeros through the other mapping.
Test(types, zero_on_free_clears_the_block) {
  size_t len = 4 * MiB;
  int fd = memfd_create("types", 0);
  cr_assert_geq(fd, 0);
  cr_assert_eq(ftruncate(fd, (off_t)len), 0);
  char *a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  char *b = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
  cr_assert_neq(a, MAP_FAILED);
  cr_assert_neq(b, MAP_FAILED);
  smp_heap_t *h = smp_heap_create_in("secrets", a, len, 0);
  cr_assert_not_null(h);
  const char secret[] = "correct horse battery staple";
  char *plain = smp_heap_malloc_type(h, 200, M_BUF, 0);   // not cleared: the control
  char *key = smp_heap_malloc_type(h, 200, M_SECRET, 0);
  char *big = smp_heap_malloc_type(h, 90 * KiB, M_SECRET, 0);
  char *typed_free = smp_heap_malloc_type(h, 200, M_SECRET, 0);
  char *blocks[] = {plain, key, big, typed_free};
  for (int i = 0; i < 4; i++) {
    cr_assert_not_null(blocks[i]);
    for (size_t off = 0; off + sizeof secret <= smp_usable_size(blocks[i]); off += sizeof secret)
      memcpy(blocks[i] + off, secret, sizeof secret);
  }
  size_t usable[4];
  for (int i = 0; i < 4; i++) usable[i] = smp_usable_size(blocks[i]);
  free(plain);
  free(key);
  free(big);
  smp_free_type(typed_free, M_SECRET);
  const char *seen = b + (plain - a);
  cr_assert(memmem(seen, usable[0], secret, sizeof secret) != NULL,
            "control: an untyped-flag block keeps its bytes (else this test proves nothing)");
  for (int i = 1; i < 4; i++) {
    seen = b + (blocks[i] - a);
    for (size_t j = 0; j < usable[i]; j++)
      cr_assert_eq(seen[j], 0, "block %d: byte %zu of %zu still holds the secret", i, j, usable[i]);
  }
  // A secret still allocated when its region heap is destroyed is cleared too: the region
  // goes back to its owner.
  char *left = smp_heap_malloc_type(h, 300, M_SECRET, 0);
  memcpy(left, secret, sizeof secret);
  smp_heap_destroy(h);
  for (size_t j = 0; j < 300; j++)
    cr_assert_eq(b[(left - a) + (ptrdiff_t)j], 0, "byte %zu of the secret left at destroy", j);
}

// Types walked in registration order, with their statistics; a non-zero return stops the walk.
static int count_types(const smp_type_t *t, const smp_type_stats_t *s, void *arg) {
  int *n = arg;
  cr_assert_str_eq(t->name, s->name);
  if (strcmp(t->name, "stop") == 0) return 42;
  (*n)++;
  return 0;
}
SMP_TYPE_DEFINE(M_A, "a", "first");
SMP_TYPE_DEFINE(M_STOP, "stop", "stops the walk");
Test(types, foreach_walks_every_type) {
  free(smp_malloc_type(1, M_A, 0));
  free(smp_malloc_type(1, M_BUF, 0));
  int n = 0;
  cr_assert_eq(smp_type_foreach(count_types, &n), 0);
  cr_assert_eq(n, 2);
  free(smp_malloc_type(1, M_STOP, 0));
  n = 0;
  cr_assert_eq(smp_type_foreach(count_types, &n), 42);
  cr_assert_eq(smp_type_foreach(NULL, NULL), EINVAL);
  smp_type_stats_t bad = {.version = 0, .size = sizeof bad};
  cr_assert_eq(smp_type_stats_get(M_A, &bad), EINVAL);
  smp_type_t fake = {0};
  smp_type_stats_t s = {.version = SMP_TYPE_STATS_VERSION, .size = sizeof s};
  cr_assert_eq(smp_type_stats_get(&fake, &s), EINVAL);
  errno = 0;
  cr_assert_null(smp_malloc_type(10, &fake, 0));
  cr_assert_eq(errno, EINVAL);
}

// ---- misuse and unloading, in a helper process ----------------------------------------------

static run_result_t *run_helper(const char *scenario) {
  static run_result_t r;
  char *argv[] = {(char *)TYPES_HELPER, (char *)scenario, (char *)TYPES_PLUGIN, NULL};
  cr_assert(run_program(TYPES_HELPER, argv, NULL, &r), "cannot start %s", TYPES_HELPER);
  cr_log_info("%s: stdout=[%s] stderr=[%s]", scenario, r.out, r.err);
  return &r;
}

static void expect_report(const char *scenario, const char *report) {
  run_result_t *r = run_helper(scenario);
  cr_assert(strstr(r->out, "survived") == NULL, "%s: misuse accepted (stderr: %s)", scenario, r->err);
  cr_assert(WIFSIGNALED(r->status) && WTERMSIG(r->status) == SIGABRT, "%s: status 0x%x", scenario,
            r->status);
  cr_assert(strstr(r->err, report) != NULL, "%s: want [%s] on stderr: [%s]", scenario, report, r->err);
  const char *ptr = strstr(r->out, "ptr=");
  cr_assert_not_null(ptr);
  char want[64];
  snprintf(want, sizeof want, "0x%llx", strtoull(ptr + 4, NULL, 16));
  cr_assert(strstr(r->err, want) != NULL, "%s: report does not name %s: [%s]", scenario, want, r->err);
}

Test(types, free_as_the_wrong_type_aborts) {
  expect_report("wrong_type", "smpalloc: smp_free_type: block of type conn, not of type buf ");
}
Test(types, free_of_an_untyped_block_as_typed_aborts) {
  expect_report("untyped", "smpalloc: smp_free_type: block of type (untyped), not of type conn ");
}
Test(types, realloc_as_the_wrong_type_aborts) {
  expect_report("realloc_wrong_type", "smpalloc: smp_realloc_type: block of type conn, not of type buf ");
}
Test(types, double_free_of_a_typed_block_aborts) { expect_report("double_free", "double free"); }
Test(types, double_free_after_reuse_aborts) {
  expect_report("double_free_aligned_reused", "smpalloc: free: invalid pointer ");
}
Test(types, interior_pointer_of_a_typed_block_aborts) {
  expect_report("interior", "smpalloc: free: invalid pointer ");
}
Test(types, own_heap_misuse_aborts) {
  expect_report("own_double_free", "smpalloc: smp_free_type: double free ");
  expect_report("own_double_free_plain", "smpalloc: free: double free ");
  expect_report("own_wrong_type", "smpalloc: smp_free_type: block of type own, not of type buf ");
  expect_report("own_untyped", "smpalloc: smp_free_type: block of type (untyped), not of type own ");
  expect_report("own_interior", "smpalloc: free: invalid pointer ");
  expect_report("own_type_of_freed", "smpalloc: smp_type_of: double free ");
}

Test(types, unloaded_type_with_blocks_is_reported) {
  run_result_t *r = run_helper("unload");
  cr_assert(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0, "status 0x%x, stdout [%s]", r->status,
            r->out);
  cr_assert(strstr(r->err, "smpalloc: type plugin: 3 blocks, ") != NULL, "stderr: [%s]", r->err);
  cr_assert(strstr(r->err, " still allocated\n") != NULL, "stderr: [%s]", r->err);
  cr_assert(strstr(r->err, "type plugin_clean") == NULL, "a type with nothing left is not reported");
  cr_assert(strstr(r->out, "after unload: blocks 3 loaded 0 name plugin") != NULL, "[%s]", r->out);
  cr_assert(strstr(r->out, "reloaded: same entry, blocks 0") != NULL, "[%s]", r->out);
}

Test(types, type_with_blocks_at_exit_is_reported) {
  run_result_t *r = run_helper("exit_with_blocks");
  cr_assert(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0);
  cr_assert(strstr(r->err, "smpalloc: type conn: 2 blocks, 208 B still allocated\n") != NULL,
            "stderr: [%s]", r->err);
}
