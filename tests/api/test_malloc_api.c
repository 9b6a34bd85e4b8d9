// Conformance of the C/POSIX/glibc malloc family as served by libsmpalloc.so (this program is
// linked against it, so malloc here IS smpalloc; the first test proves it). Where the standards
// leave a behaviour open, the expected result is glibc's, as noted at each such test.
// Criterion runs every test in its own process, so tests may lower rlimits, fork, or leave the
// heap in any state. The front end is the one SMPALLOC_OPTIONS asks for (tests/test_frontend.h),
// here and in the options helper, whose options come after the environment's.
#define _GNU_SOURCE
#include "test_frontend.h"

#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
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

#ifndef OPTIONS_HELPER
#error "OPTIONS_HELPER must name the helper executable"
#endif

// glibc exports these; the replacing build must serve them from its own heap.
extern void *__libc_malloc(size_t size);
extern void __libc_free(void *p);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t align, size_t size);
// C23; glibc 2.36 does not declare them.
extern void free_sized(void *p, size_t size);
extern void free_aligned_sized(void *p, size_t align, size_t size);

#define KiB ((size_t)1024)
#define MiB ((size_t)1024 * 1024)

static size_t page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

// The request sizes 0..70000: every size up to 1100, then steps growing with the size, and the
// edges of the small range.
static size_t next_size(size_t n) { return n < 1100 ? n + 1 : n + 1 + n / 97; }
static const size_t edge_sizes[] = {65535, 65536, 65537, 69632, 70000};

// ---- identity ---------------------------------------------------------------------------

Test(identity, malloc_is_smpalloc) {
#ifdef SMP_TESTING_TEST_NAMES
  void *sym = dlsym(RTLD_DEFAULT, "smp_test_malloc"); // the sanitizer owns "malloc"
#else
  void *sym = dlsym(RTLD_DEFAULT, "malloc");
#endif
  Dl_info info;
  cr_assert(sym != NULL && dladdr(sym, &info) != 0);
  cr_assert(strstr(info.dli_fname, "libsmpalloc") != NULL, "malloc comes from %s", info.dli_fname);

  char *p = malloc(100);
  cr_assert_not_null(p);
  // smp_usable_size aborts on a pointer that is not ours: reaching the next line proves it is.
  size_t n = smp_usable_size(p);
  cr_assert_geq(n, 100);
  cr_assert_eq(malloc_usable_size(p), n);
  smp_free(p);

  char *q = smp_malloc(5000);
  cr_assert_not_null(q);
  cr_assert_eq(malloc_usable_size(q), smp_usable_size(q));
  pattern_fill(q, 5000, 1);
  free(q);

  struct mallinfo2 m = mallinfo2();
  cr_assert_gt(m.arena + m.hblkhd, 0, "mallinfo2 reports no mapped memory");
}

Test(identity, frontend_is_the_one_asked_for) {
  cr_assert(test_frontend_check("test_malloc_api", stderr), "see the FAIL line above");
}

Test(identity, version) {
  const char *v = smp_version();
  cr_assert_not_null(v);
  unsigned a, b, c;
  char tail;
  cr_assert_eq(sscanf(v, "%u.%u.%u%c", &a, &b, &c, &tail), 3, "version \"%s\" is not X.Y.Z", v);
  // The build passes CMakeLists.txt's project VERSION; the library must report that one.
  cr_assert_str_eq(v, SMP_VERSION_STRING);
}

Test(identity, options_check_accepts_valid_lists) {
  char why[64] = "untouched";
  cr_assert_eq(smp_options_check("", why, sizeof why), 0);
  cr_assert_str_eq(why, "");
  cr_assert_eq(smp_options_check("stats,junk:1,cache_size:2m,frontend:thread,prof:/tmp/p,"
                                 "stats_signal:USR2,,quarantine:1m",
                                 why, sizeof why),
               0, "%s", why);
  cr_assert_eq(smp_options_check("junk:1", NULL, 0), 0);
}

Test(identity, options_check_names_the_first_bad_item) {
  char why[64];
  errno = 0;
  cr_assert_eq(smp_options_check("stats,nosuch:1,junk:maybe", why, sizeof why), -1);
  cr_assert_eq(errno, EINVAL);
  cr_assert_str_eq(why, "unknown option 'nosuch:1'");
  cr_assert_eq(smp_options_check("stats,junk:maybe", why, sizeof why), -1);
  cr_assert_str_eq(why, "bad value 'junk:maybe'");
  cr_assert_eq(smp_options_check("cache_size:2t", why, sizeof why), -1); // past its maximum
  cr_assert_eq(smp_options_check("cache_size", why, sizeof why), -1);    // not a boolean
  cr_assert_eq(smp_options_check("frontend:fast", why, sizeof why), -1);
  // A short buffer gets a cut, terminated text; none at all is fine too.
  char small[8];
  cr_assert_eq(smp_options_check("nosuch", small, sizeof small), -1);
  cr_assert_str_eq(small, "unknown");
  cr_assert_eq(smp_options_check("nosuch", NULL, 0), -1);
  errno = 0;
  cr_assert_eq(smp_options_check(NULL, why, sizeof why), -1);
  cr_assert_eq(errno, EINVAL);
}

// ---- alignment and uniqueness --------------------------------------------------------------

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
  return x < y ? -1 : x > y;
}

Test(alignment, every_block_16_aligned_and_disjoint) {
  enum { MAX = 4096 };
  static void *blocks[MAX];
  size_t count = 0;
  for (size_t n = 0; n <= 70000; n = next_size(n)) {
    cr_assert_lt(count, (size_t)MAX);
    char *p = malloc(n);
    cr_assert_not_null(p, "malloc(%zu)", n);
    cr_assert(is_aligned(p, 16), "malloc(%zu) = %p is not 16-aligned", n, (void *)p);
    if (n) p[0] = 1, p[n - 1] = 2;
    blocks[count++] = p;
  }
  for (size_t i = 0; i < sizeof edge_sizes / sizeof edge_sizes[0]; i++) {
    char *p = malloc(edge_sizes[i]);
    cr_assert(p != NULL && is_aligned(p, 16), "malloc(%zu)", edge_sizes[i]);
    blocks[count++] = p;
  }
  // Live blocks never overlap.
  qsort(blocks, count, sizeof blocks[0], cmp_ptr);
  for (size_t i = 0; i + 1 < count; i++)
    cr_assert_leq((uintptr_t)blocks[i] + malloc_usable_size(blocks[i]), (uintptr_t)blocks[i + 1],
                  "blocks %p and %p overlap", blocks[i], blocks[i + 1]);
  for (size_t i = 0; i < count; i++) free(blocks[i]);
}

Test(alignment, large_and_huge_blocks) {
  const size_t sizes[] = {100 * KiB, 3 * MiB, 64 * MiB};
  for (size_t i = 0; i < 3; i++) {
    char *p = malloc(sizes[i]);
    cr_assert_not_null(p, "malloc(%zu)", sizes[i]);
    cr_assert(is_aligned(p, 16), "malloc(%zu) = %p", sizes[i], (void *)p);
    cr_assert_geq(malloc_usable_size(p), sizes[i]);
    p[0] = 1;
    p[sizes[i] / 2] = 2;
    p[sizes[i] - 1] = 3;
    cr_assert(p[0] == 1 && p[sizes[i] / 2] == 2 && p[sizes[i] - 1] == 3);
    free(p);
  }
}

Test(alignment, malloc_zero_unique_and_freeable) {
  enum { N = 100 };
  void *p[N];
  for (int i = 0; i < N; i++) {
    p[i] = malloc(hide(0));
    cr_assert_not_null(p[i], "malloc(0) returned NULL");
    cr_assert(is_aligned(p[i], 16));
  }
  qsort(p, N, sizeof p[0], cmp_ptr);
  for (int i = 0; i + 1 < N; i++) cr_assert_neq(p[i], p[i + 1], "malloc(0) returned %p twice", p[i]);
  for (int i = 0; i < N; i++) free(p[i]);
  // And a freed malloc(0) block is a normal block again.
  void *q = malloc(0);
  cr_assert_not_null(q);
  free(q);
}

// ---- aligned allocation ---------------------------------------------------------------------

static const size_t align_sizes[] = {1, 100, 5000, 100000, 3 << 20};
#define MAX_ALIGN ((size_t)64 << 20)

typedef enum { USE_ALIGNED_ALLOC, USE_POSIX_MEMALIGN, USE_MEMALIGN } align_api_t;

static void *aligned_by(align_api_t api, size_t align, size_t size) {
  void *p = NULL;
  switch (api) {
  case USE_ALIGNED_ALLOC: return aligned_alloc(align, size);
  case USE_POSIX_MEMALIGN: return posix_memalign(&p, align, size) == 0 ? p : NULL;
  case USE_MEMALIGN: return memalign(align, size);
  }
  return NULL;
}

static void check_alignments(align_api_t api, size_t min_align) {
  unsigned seed = 0;
  for (size_t align = min_align; align <= MAX_ALIGN; align *= 2)
    for (size_t i = 0; i < sizeof align_sizes / sizeof align_sizes[0]; i++) {
      size_t size = align_sizes[i];
      char *p = aligned_by(api, align, size);
      cr_assert_not_null(p, "api %d align %zu size %zu: NULL", api, align, size);
      cr_assert(is_aligned(p, align), "api %d align %zu size %zu: %p", api, align, size, (void *)p);
      cr_assert(is_aligned(p, 16) || align < 16, "every block is 16-aligned");
      cr_assert_geq(malloc_usable_size(p), size);
      pattern_fill(p, size, ++seed);
      cr_assert_eq(pattern_check(p, size, seed), size);
      free(p);
    }
}

// C11 allows any power-of-two alignment; glibc accepts any size with it (not only multiples).
Test(aligned, aligned_alloc_all_powers_of_two, .timeout = 30) { check_alignments(USE_ALIGNED_ALLOC, 1); }
// POSIX requires a power of two that is a multiple of sizeof(void *).
Test(aligned, posix_memalign_all_powers_of_two, .timeout = 30) {
  check_alignments(USE_POSIX_MEMALIGN, sizeof(void *));
}
Test(aligned, memalign_all_powers_of_two, .timeout = 30) { check_alignments(USE_MEMALIGN, 1); }

Test(aligned, posix_memalign_einval) {
  const size_t bad[] = {0, 1, 2, 3, 24, sizeof(void *) / 2, 48, 100, 4097, SIZE_MAX};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    void *sentinel = (void *)(uintptr_t)0xdeadbeef0ull;
    void *p = sentinel;
    int rc = posix_memalign(&p, hide(bad[i]), 64);
    cr_assert_eq(rc, EINVAL, "posix_memalign(align %zu) = %d, want EINVAL", bad[i], rc);
    cr_assert_eq(p, sentinel, "posix_memalign(align %zu) changed *ptr on failure", bad[i]);
  }
}

// glibc (2.38 and later) and C17 DR 460: a non-power-of-two alignment fails with EINVAL.
Test(aligned, aligned_alloc_non_power_of_two_einval) {
  const size_t bad[] = {0, 3, 24, 48, 100, 4097, SIZE_MAX};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    errno = 0;
    void *p = aligned_alloc(hide(bad[i]), 64);
    cr_assert_null(p, "aligned_alloc(%zu, 64) = %p", bad[i], p);
    cr_assert_eq(errno, EINVAL, "aligned_alloc(%zu, 64): errno %d", bad[i], errno);
  }
}

// glibc: memalign rounds a non-power-of-two alignment up to the next power of two.
// glibc's header tells the compiler memalign's result is aligned to its argument (alloc_align),
// which no result can be for 0 or 3; the calls go through a plain pointer, which makes no such
// promise (UndefinedBehaviorSanitizer checks it).
static void *(*volatile const memalign_plain)(size_t, size_t) = memalign;
Test(aligned, memalign_rounds_alignment_up) {
  char *z = memalign_plain(hide(0), 100); // glibc: an alignment below 16 is plain malloc
  cr_assert(z != NULL && is_aligned(z, 16));
  free(z);
  const size_t odd[] = {3, 24, 48, 100, 3000, 5000};
  for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
    size_t want = 1;
    while (want < odd[i]) want *= 2;
    char *p = memalign_plain(hide(odd[i]), 200);
    cr_assert_not_null(p);
    cr_assert(is_aligned(p, want), "memalign(%zu) = %p, not %zu-aligned", odd[i], (void *)p, want);
    memset(p, 1, 200);
    free(p);
  }
}

Test(aligned, valloc_is_page_aligned) {
  const size_t sizes[] = {1, 100, 4096, 5000, 100000, 3 << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    char *p = valloc(sizes[i]);
    cr_assert_not_null(p);
    cr_assert(is_aligned(p, page_size()), "valloc(%zu) = %p", sizes[i], (void *)p);
    cr_assert_geq(malloc_usable_size(p), sizes[i]);
    memset(p, 7, sizes[i]);
    free(p);
  }
}

// pvalloc rounds the size up to a whole page, and pvalloc(0) gives one page (the man page and
// smpalloc; glibc 2.36 itself returns a minimum-size chunk for pvalloc(0)).
Test(aligned, pvalloc_rounds_to_page) {
  const size_t page = page_size();
  const size_t sizes[] = {0, 1, 100, 4095, 4096, 4097, 70000, 3 << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t want = sizes[i] ? (sizes[i] + page - 1) / page * page : page;
    char *p = pvalloc(hide(sizes[i]));
    cr_assert_not_null(p, "pvalloc(%zu)", sizes[i]);
    cr_assert(is_aligned(p, page), "pvalloc(%zu) = %p", sizes[i], (void *)p);
    size_t usable = malloc_usable_size(p);
    cr_assert_geq(usable, want, "pvalloc(%zu): usable %zu < %zu", sizes[i], usable, want);
    memset(p, 9, usable); // the whole rounded size (and more) is the caller's
    free(p);
  }
}

// ---- failures: NULL with errno ENOMEM, never an abort -------------------------------------

#define EXPECT_ENOMEM(expr)                                                                       \
  do {                                                                                         \
    errno = 0;                                                                                 \
    void *r_ = (expr);                                                                         \
    cr_assert_null(r_, "%s returned %p", #expr, r_);                                           \
    cr_assert_eq(errno, ENOMEM, "%s: errno %d, want ENOMEM", #expr, errno);                    \
  } while (0)

Test(failure, absurd_sizes_enomem) {
  EXPECT_ENOMEM(malloc(hide(SIZE_MAX)));
  EXPECT_ENOMEM(malloc(hide(SIZE_MAX / 2)));
  EXPECT_ENOMEM(malloc(hide(SIZE_MAX - 4096)));
  EXPECT_ENOMEM(calloc(hide(SIZE_MAX / 2 + 1), 2));
  EXPECT_ENOMEM(calloc(hide((size_t)1 << 40), (size_t)1 << 40));
  EXPECT_ENOMEM(calloc(1, hide(SIZE_MAX / 2)));
  EXPECT_ENOMEM(aligned_alloc(64, hide(SIZE_MAX)));
  EXPECT_ENOMEM(aligned_alloc(4096, hide(SIZE_MAX / 2)));
  EXPECT_ENOMEM(aligned_alloc(1 << 20, hide(SIZE_MAX - 4096)));
  EXPECT_ENOMEM(pvalloc(hide(SIZE_MAX)));
  EXPECT_ENOMEM(valloc(hide(SIZE_MAX)));
  EXPECT_ENOMEM(memalign(64, hide(SIZE_MAX)));
  EXPECT_ENOMEM(smp_malloc(hide(SIZE_MAX)));
  EXPECT_ENOMEM(smp_calloc(hide(SIZE_MAX / 2 + 1), 2));
  EXPECT_ENOMEM(smp_aligned_alloc(64, hide(SIZE_MAX)));
}

// An alignment larger than the address space can satisfy. glibc: ENOMEM for any power of two
// up to SIZE_MAX/2+1 (EINVAL only above that).
Test(failure, huge_alignment_enomem) {
  EXPECT_ENOMEM(memalign(hide((size_t)1 << 62), 16));
  EXPECT_ENOMEM(memalign(hide(SIZE_MAX / 2 + 1), 16));
  EXPECT_ENOMEM(aligned_alloc(hide((size_t)1 << 62), 16));
  EXPECT_ENOMEM(aligned_alloc(hide(SIZE_MAX / 2 + 1), 16));
  void *sentinel = (void *)(uintptr_t)0x1230, *p = sentinel;
  cr_assert_eq(posix_memalign(&p, hide((size_t)1 << 62), 16), ENOMEM);
  cr_assert_eq(p, sentinel);
  errno = 0;
  cr_assert_null(memalign_plain(hide(SIZE_MAX), 16)); // glibc: not a power of two above 2^63
  cr_assert_eq(errno, EINVAL);
}

Test(failure, posix_memalign_enomem_leaves_ptr) {
  void *sentinel = (void *)(uintptr_t)0xabcdef0, *p = sentinel;
  cr_assert_eq(posix_memalign(&p, 64, hide(SIZE_MAX)), ENOMEM);
  cr_assert_eq(p, sentinel);
  cr_assert_eq(posix_memalign(&p, 1 << 20, hide(SIZE_MAX / 2)), ENOMEM);
  cr_assert_eq(p, sentinel);
}

// realloc and reallocarray that cannot be met return NULL, set ENOMEM and leave the block
// intact, for a small, a large and a huge block.
static void check_resize_failure(size_t size, size_t bad_size) {
  char *p = malloc(size);
  cr_assert_not_null(p);
  pattern_fill(p, size, 77);
  errno = 0;
  void *q = realloc(opaque(p), hide(bad_size)); // opaque: p is deliberately used after
  cr_assert_null(q, "realloc(%zu-byte block, %zu) = %p", size, bad_size, q);
  cr_assert_eq(errno, ENOMEM, "realloc(%zu-byte block, %zu): errno %d", size, bad_size, errno);
  cr_assert_geq(malloc_usable_size(p), size, "the block shrank after a failed realloc");
  cr_assert_eq(pattern_check(p, size, 77), size, "the block changed after a failed realloc");
  errno = 0;
  q = reallocarray(opaque(p), hide(SIZE_MAX / 2), 4);
  cr_assert_null(q);
  cr_assert_eq(errno, ENOMEM);
  q = reallocarray(opaque(p), hide((size_t)1 << 33), (size_t)1 << 33);
  cr_assert_null(q);
  cr_assert_eq(pattern_check(p, size, 77), size, "the block changed after a failed reallocarray");
  // Still a live block: it can grow and be freed normally.
  p = realloc(p, size + 16);
  cr_assert_not_null(p);
  cr_assert_eq(pattern_check(p, size, 77), size);
  free(p);
}

Test(failure, realloc_sizemax_small) { check_resize_failure(64, SIZE_MAX); }
Test(failure, realloc_sizemax_large) { check_resize_failure(200 * KiB, SIZE_MAX); }
Test(failure, realloc_sizemax_huge) { check_resize_failure(3 * MiB, SIZE_MAX); }
Test(failure, realloc_half_address_space_small) { check_resize_failure(64, SIZE_MAX / 2); }
Test(failure, realloc_half_address_space_large) { check_resize_failure(200 * KiB, SIZE_MAX / 2); }
Test(failure, realloc_half_address_space_huge) { check_resize_failure(3 * MiB, SIZE_MAX / 2); }
Test(failure, realloc_near_sizemax_large) { check_resize_failure(200 * KiB, SIZE_MAX - 8000); }

// ---- exhausting the address space (RLIMIT_AS) ------------------------------------------


typedef struct node {
  struct node *next;
  size_t seq;
} node_t;

// How much of a block the pattern covers: the head and the tail (all of a small block).
static void exhaust_fill(node_t *n, size_t size, size_t seq) {
  size_t head = size < 512 ? size : 512;
  pattern_fill((char *)n + sizeof *n, head - sizeof *n, (unsigned)seq);
  if (size > 512) pattern_fill((char *)n + size - 256, 256, (unsigned)seq + 1);
}
static bool exhaust_check(const node_t *n, size_t size) {
  size_t head = size < 512 ? size : 512;
  if (pattern_check((const char *)n + sizeof *n, head - sizeof *n, (unsigned)n->seq) !=
      head - sizeof *n)
    return false;
  return size <= 512 ||
         pattern_check((const char *)n + size - 256, 256, (unsigned)n->seq + 1) == 256;
}

// Lower the soft address-space limit to what is mapped now plus room, allocate blocks of size
// until malloc fails, and check: errno ENOMEM, no crash, every earlier block intact, and after
// freeing refill blocks malloc works again. Assertions run after the limit is restored.
static void exhaust(size_t size, size_t room, size_t refill) {
  struct rlimit saved, low;
  cr_assert_eq(getrlimit(RLIMIT_AS, &saved), 0);
  low = saved;
  low.rlim_cur = vm_size() + room;
  cr_assert_eq(setrlimit(RLIMIT_AS, &low), 0);

  node_t *head = NULL;
  size_t count = 0, limit = (room / size) * 4 + 64;
  int err = 0;
  bool hit_null = false;
  while (count < limit) {
    errno = 0;
    node_t *n = malloc(size);
    if (n == NULL) {
      err = errno;
      hit_null = true;
      break;
    }
    n->next = head;
    n->seq = count++;
    exhaust_fill(n, size, n->seq);
    head = n;
  }
  size_t bad = 0;
  for (node_t *n = head; n; n = n->next) bad += !exhaust_check(n, size);
  // Free the newest refill blocks; the same number of allocations must then succeed.
  for (size_t i = 0; i < refill && head; i++) {
    node_t *next = head->next;
    free(head);
    head = next;
  }
  node_t *again = NULL;
  size_t again_ok = 0;
  for (size_t i = 0; i < refill; i++) {
    node_t *n = malloc(size);
    if (n == NULL) break;
    n->next = again;
    n->seq = 1000000 + i;
    exhaust_fill(n, size, n->seq);
    again = n;
    again_ok++;
  }
  for (node_t *n = again; n; n = n->next) bad += !exhaust_check(n, size);
  while (head) {
    node_t *next = head->next;
    free(head);
    head = next;
  }
  while (again) {
    node_t *next = again->next;
    free(again);
    again = next;
  }
  cr_assert_eq(setrlimit(RLIMIT_AS, &saved), 0);
  cr_log_info("size %zu: %zu blocks before malloc failed (errno %d)", size, count, err);

  cr_assert(hit_null, "size %zu: %zu blocks and no failure under the limit", size, count);
  cr_assert_eq(err, ENOMEM, "size %zu: malloc failed with errno %d, want ENOMEM", size, err);
  cr_assert_gt(count, 0, "size %zu: not a single block fitted", size);
  cr_assert_eq(bad, 0, "size %zu: %zu blocks lost their contents", size, bad);
  cr_assert_eq(again_ok, refill, "size %zu: after freeing %zu blocks only %zu allocations worked",
               size, refill, again_ok);
  // And with the limit gone, the heap is fully usable.
  void *p = malloc(size);
  cr_assert_not_null(p);
  free(p);
}

Test(exhaustion, small_blocks, .timeout = 30) { exhaust(64, 64 * MiB, 1000); }
Test(exhaustion, large_blocks, .timeout = 30) { exhaust(200 * KiB, 64 * MiB, 20); }
Test(exhaustion, huge_blocks, .timeout = 30) { exhaust(8 * MiB, 96 * MiB, 2); }

// ---- usable size --------------------------------------------------------------------------

static void check_usable(size_t n, unsigned seed) {
  // Three neighbours of the same size: the middle one is written over its whole usable size;
  // the other two must keep their patterns.
  char *a = malloc(n), *b = malloc(n), *c = malloc(n);
  cr_assert(a && b && c, "malloc(%zu)", n);
  size_t ua = malloc_usable_size(a), ub = malloc_usable_size(b), uc = malloc_usable_size(c);
  cr_assert(ua >= n && ub >= n && uc >= n, "malloc_usable_size < %zu", n);
  pattern_fill(a, ua, seed);
  pattern_fill(c, uc, seed + 1);
  memset(b, 0xab, ub);
  cr_assert_eq(pattern_check(a, ua, seed), ua, "size %zu: writing the usable size of %p hit %p",
               n, (void *)b, (void *)a);
  cr_assert_eq(pattern_check(c, uc, seed + 1), uc,
               "size %zu: writing the usable size of %p hit %p", n, (void *)b, (void *)c);
  free(a);
  free(b);
  free(c);
}

Test(usable, whole_usable_range_is_writable) {
  unsigned seed = 0;
  for (size_t n = 0; n <= 70000; n = next_size(n)) check_usable(n, seed += 2);
  for (size_t i = 0; i < sizeof edge_sizes / sizeof edge_sizes[0]; i++)
    check_usable(edge_sizes[i], seed += 2);
  check_usable(200 * KiB, seed += 2);
  check_usable(3 * MiB + 1, seed += 2);
  cr_assert_eq(malloc_usable_size(NULL), 0);
  cr_assert_eq(smp_usable_size(NULL), 0);
}

// ---- calloc -------------------------------------------------------------------------------

Test(calloc, small_reused_blocks_are_zeroed) {
  for (size_t n = 1; n <= 70000; n = next_size(n)) {
    char *d = malloc(n);
    cr_assert_not_null(d);
    memset(d, 0xff, n);
    free(d);
    char *z = calloc(1, n); // likely the dirty block just freed
    cr_assert_not_null(z);
    cr_assert(all_zero(z, n), "calloc(1, %zu) is not zeroed", n);
    free(z);
    z = calloc(n, 1);
    cr_assert(z != NULL && all_zero(z, n), "calloc(%zu, 1) is not zeroed", n);
    free(z);
  }
}

static void check_calloc_reuse(size_t size) {
  for (int round = 0; round < 3; round++) {
    char *d = malloc(size);
    cr_assert_not_null(d);
    memset(d, 0xee, size);
    free(d);
    char *z = calloc(size / 8, 8);
    cr_assert_not_null(z);
    cr_assert(all_zero(z, size), "calloc of %zu bytes after a dirty free is not zeroed", size);
    memset(z, 0xdd, size);
    free(z);
  }
}

Test(calloc, large_reused_block_zeroed) { check_calloc_reuse(200 * KiB); }
Test(calloc, huge_zeroed) { check_calloc_reuse(8 * MiB); }

Test(calloc, zero_counts_give_unique_blocks) {
  void *a = calloc(0, 10), *b = calloc(10, 0), *c = calloc(0, 0);
  cr_assert(a && b && c);
  cr_assert(a != b && b != c && a != c);
  free(a);
  free(b);
  free(c);
}

// ---- realloc ------------------------------------------------------------------------------

Test(realloc, null_acts_as_malloc) {
  char *p = realloc(NULL, 100);
  cr_assert_not_null(p);
  cr_assert_geq(malloc_usable_size(p), 100);
  memset(p, 1, 100);
  free(p);
  p = realloc(NULL, 0); // as malloc(0): a unique block
  cr_assert_not_null(p);
  free(p);
}

// glibc: realloc(p, 0) frees p and returns NULL (smpalloc.h documents the same).
Test(realloc, zero_size_frees) {
  enum { N = 1000 };
  static char *p[N];
  size_t before = mallinfo2().uordblks;
  for (int i = 0; i < N; i++) p[i] = malloc(1000);
  size_t held = mallinfo2().uordblks;
  cr_assert_geq(held, before + N * 1000);
  for (int i = 0; i < N; i++) cr_assert_null(realloc(p[i], hide(0)));
  size_t after = mallinfo2().uordblks;
  cr_assert_leq(after + N * 1000, held, "realloc(p, 0) did not free: in use %zu -> %zu", held,
                after);
  char *big = malloc(3 * MiB);
  cr_assert_null(realloc(big, hide(0)));
}

Test(realloc, contents_kept_across_size_ranges, .timeout = 30) {
  const size_t steps[] = {10,      100,    1000,    60000,   200 * KiB, 3 * MiB, 20 * MiB,
                          3 * MiB, 2 * MiB, 200 * KiB, 60000, 1000,      10,      17,
                          70000,   24 * MiB, 5,     0};
  char *p = malloc(steps[0]);
  cr_assert_not_null(p);
  pattern_fill(p, steps[0], 0);
  for (unsigned i = 1; steps[i]; i++) {
    size_t from = steps[i - 1], to = steps[i], keep = from < to ? from : to;
    char *q = realloc(p, to);
    cr_assert_not_null(q, "realloc %zu -> %zu", from, to);
    cr_assert(is_aligned(q, 16));
    cr_assert_geq(malloc_usable_size(q), to);
    size_t bad = pattern_check(q, keep, i - 1);
    cr_assert_eq(bad, keep, "realloc %zu -> %zu lost byte %zu", from, to, bad);
    pattern_fill(q, to, i);
    p = q;
  }
  free(p);
}

Test(realloc, small_shrink_in_place) {
  char *p = malloc(1000);
  cr_assert_not_null(p);
  pattern_fill(p, 1000, 3);
  cr_assert_eq(realloc(p, 990), p, "shrinking 1000 -> 990 moved the block");
  cr_assert_eq(realloc(p, 1000), p, "growing back within the usable size moved the block");
  cr_assert_eq(pattern_check(p, 990, 3), 990);
  char *q = malloc(64);
  cr_assert_eq(realloc(q, 60), q);
  free(p);
  free(q);
}

// A small block that grows moves to a quarter more than it had, so the next few appends of a
// string grown by realloc stay in place (lib/api/alloc.c, realloc_small).
Test(realloc, small_growth_leaves_room) {
  char *p = malloc(1000);
  cr_assert_not_null(p);
  size_t usable = malloc_usable_size(p);
  pattern_fill(p, 1000, 5);
  char *q = realloc(p, usable + 8);
  cr_assert_not_null(q);
  cr_assert_geq(malloc_usable_size(q), usable + usable / 4, "grown from %zu to only %zu", usable,
                malloc_usable_size(q));
  cr_assert_eq(pattern_check(q, 1000, 5), 1000);
  cr_assert_eq(realloc(q, usable + usable / 4), q, "the next appends stay in place");
  free(q);
}

Test(realloc, huge_grow_keeps_contents, .timeout = 30) {
  size_t size = 8 * MiB;
  char *p = malloc(size);
  cr_assert_not_null(p);
  pattern_fill(p, size, 11);
  // A neighbouring huge block makes in-place growth unlikely for one of the steps, so both
  // the in-place and the moving (mremap) paths run.
  char *blocker = malloc(8 * MiB);
  cr_assert_not_null(blocker);
  for (size_t to = 16 * MiB; to <= 128 * MiB; to *= 2) {
    char *q = realloc(p, to);
    cr_assert_not_null(q, "realloc huge -> %zu", to);
    size_t bad = pattern_check(q, size, 11);
    cr_assert_eq(bad, size, "realloc huge %zu -> %zu lost byte %zu", size, to, bad);
    cr_assert_geq(malloc_usable_size(q), to);
    q[to - 1] = 1;
    p = q;
  }
  char *q = realloc(p, 4 * MiB);
  cr_assert_not_null(q);
  cr_assert_eq(pattern_check(q, 4 * MiB, 11), 4 * MiB);
  free(q);
  free(blocker);
}

Test(realloc, large_grow_and_shrink_keep_contents) {
  char *p = malloc(100 * KiB);
  cr_assert_not_null(p);
  pattern_fill(p, 100 * KiB, 5);
  for (size_t to = 120 * KiB; to <= 1600 * KiB; to += 120 * KiB) {
    p = realloc(p, to);
    cr_assert_not_null(p);
    cr_assert_eq(pattern_check(p, 100 * KiB, 5), 100 * KiB, "grow to %zu", to);
  }
  p = realloc(p, 90 * KiB);
  cr_assert_not_null(p);
  cr_assert_eq(pattern_check(p, 90 * KiB, 5), 90 * KiB);
  free(p);
}

// ---- glibc extensions ---------------------------------------------------------------------

// Capture what fn writes to file descriptor 2 (the library writes with write(2), not stdio).
static size_t capture_stderr(void (*fn)(void), char *buf, size_t cap) {
  FILE *tmp = tmpfile();
  cr_assert_not_null(tmp);
  fflush(stderr);
  int saved = dup(STDERR_FILENO);
  cr_assert_geq(saved, 0);
  cr_assert_geq(dup2(fileno(tmp), STDERR_FILENO), 0);
  fn();
  dup2(saved, STDERR_FILENO);
  close(saved);
  rewind(tmp);
  size_t n = fread(buf, 1, cap - 1, tmp);
  buf[n] = 0;
  fclose(tmp);
  return n;
}

Test(glibc, malloc_stats_prints_summary) {
  static char buf[65536];
  void *p = malloc(1000); // something in use
  capture_stderr(malloc_stats, buf, sizeof buf);
  free(p);
  cr_assert(strstr(buf, "smpalloc") != NULL, "malloc_stats printed: [%s]", buf);
  cr_assert(strstr(buf, "frontend:") != NULL, "malloc_stats printed: [%s]", buf);
  capture_stderr(smp_stats_print, buf, sizeof buf);
  cr_assert(strstr(buf, "smpalloc") != NULL && strstr(buf, "frontend:") != NULL);
}

Test(glibc, malloc_trim_then_heap_works) {
  enum { N = 2000 };
  static char *p[N];
  for (int i = 0; i < N; i++) {
    p[i] = malloc((size_t)(i % 50) * 100 + (i % 7 == 0 ? 150 * KiB : 1));
    cr_assert_not_null(p[i]);
    memset(p[i], 0x77, malloc_usable_size(p[i]));
  }
  for (int i = 0; i < N; i++) free(p[i]);
  int rc = malloc_trim(0);
  cr_assert(rc == 0 || rc == 1, "malloc_trim returned %d", rc);
  rc = smp_trim();
  cr_assert(rc == 0 || rc == 1, "smp_trim returned %d", rc);
  // The heap still works, and memory given back reads as zero through calloc.
  for (int i = 0; i < N; i++) {
    size_t n = (size_t)(i % 50) * 100 + (i % 7 == 0 ? 150 * KiB : 1);
    p[i] = calloc(1, n);
    cr_assert_not_null(p[i]);
    cr_assert(all_zero(p[i], n), "calloc after trim: not zero (size %zu)", n);
    pattern_fill(p[i], n, (unsigned)i);
  }
  for (int i = 0; i < N; i++) {
    size_t n = (size_t)(i % 50) * 100 + (i % 7 == 0 ? 150 * KiB : 1);
    cr_assert_eq(pattern_check(p[i], n, (unsigned)i), n);
    free(p[i]);
  }
  rc = malloc_trim(0);
  cr_assert(rc == 0 || rc == 1, "malloc_trim returned %d", rc);
}

Test(glibc, mallinfo2_tracks_use) {
  enum { N = 1000 };
  static char *p[N];
  struct mallinfo2 before = mallinfo2();
  size_t total = 0;
  for (int i = 0; i < N; i++) {
    size_t n = i % 100 == 0 ? 300 * KiB : (size_t)(i % 40) * 100 + 1;
    p[i] = malloc(n);
    cr_assert_not_null(p[i]);
    total += n;
  }
  char *huge = malloc(5 * MiB);
  total += 5 * MiB;
  struct mallinfo2 during = mallinfo2();
  cr_assert_geq(during.uordblks, before.uordblks + total, "uordblks %zu -> %zu after %zu bytes",
                before.uordblks, during.uordblks, total);
  cr_assert_geq(during.hblkhd, 5 * MiB, "the huge block is not in hblkhd");
  cr_assert_geq(during.hblks, 1);
  cr_assert_geq(during.arena + during.hblkhd, during.uordblks, "more in use than mapped");
  for (int i = 0; i < N; i++) free(p[i]);
  free(huge);
  struct mallinfo2 after = mallinfo2();
  cr_assert_leq(after.uordblks + total, during.uordblks, "uordblks %zu -> %zu after freeing %zu",
                during.uordblks, after.uordblks, total);
  // The deprecated mallinfo agrees while the figures fit in an int.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  struct mallinfo m1 = mallinfo();
#pragma GCC diagnostic pop
  struct mallinfo2 m2 = mallinfo2();
  cr_assert_eq((size_t)m1.uordblks, m2.uordblks);
}

Test(glibc, libc_entry_points_share_the_heap) {
  char *p = __libc_malloc(100);
  cr_assert_not_null(p);
  cr_assert_geq(malloc_usable_size(p), 100);
  cr_assert_eq(smp_usable_size(p), malloc_usable_size(p));
  pattern_fill(p, 100, 4);
  p = __libc_realloc(p, 10000);
  cr_assert_not_null(p);
  cr_assert_eq(pattern_check(p, 100, 4), 100);
  cr_assert_geq(malloc_usable_size(p), 10000);
  free(p);

  char *z = __libc_calloc(100, 10);
  cr_assert_not_null(z);
  cr_assert(all_zero(z, 1000));
  cr_assert_geq(smp_usable_size(z), 1000);
  free(z);

  char *a = __libc_memalign(4096, 300);
  cr_assert(a != NULL && is_aligned(a, 4096));
  cr_assert_geq(malloc_usable_size(a), 300);
  free(a);

  char *m = malloc(50);
  cr_assert_not_null(m);
  __libc_free(m);
  __libc_free(NULL);
  cr_assert_null(__libc_realloc(__libc_malloc(10), 0));
}

Test(glibc, free_sized_with_correct_size) {
  const size_t sizes[] = {0, 1, 16, 100, 1000, 5000, 65536, 200 * KiB, 3 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    char *p = malloc(sizes[i]);
    cr_assert_not_null(p);
    memset(p, 1, sizes[i]);
    free_sized(p, sizes[i]);
    char *q = smp_malloc(sizes[i]);
    cr_assert_not_null(q);
    smp_free_sized(q, sizes[i]);
    char *a = aligned_alloc(256, sizes[i]);
    cr_assert_not_null(a);
    free_aligned_sized(a, 256, sizes[i]);
  }
  free_sized(NULL, 0);
  smp_free_sized(NULL, 100);
  // The heap is sound afterwards.
  char *p = malloc(100);
  cr_assert_not_null(p);
  free(p);
}

Test(glibc, smp_functions) {
  char *p = smp_calloc(100, 3);
  cr_assert(p != NULL && all_zero(p, 300));
  p = smp_realloc(p, 5000);
  cr_assert(p != NULL && all_zero(p, 300));
  smp_free(p);
  char *a = smp_aligned_alloc(1024, 10);
  cr_assert(a != NULL && is_aligned(a, 1024));
  smp_free(a);
  errno = 0;
  cr_assert_null(smp_aligned_alloc(24, 10));
  cr_assert_eq(errno, EINVAL);
  cr_assert_null(smp_realloc(smp_malloc(10), 0));
  smp_free(NULL);
}

// ---- processes and threads ------------------------------------------------------------------

static atomic_bool churn_stop;

static void *churn(void *arg) {
  unsigned seed = (unsigned)(uintptr_t)arg;
  enum { SLOTS = 64 };
  char *slot[SLOTS] = {0};
  while (!atomic_load_explicit(&churn_stop, memory_order_relaxed)) {
    seed = seed * 1103515245u + 12345u;
    unsigned i = (seed >> 8) % SLOTS;
    free(slot[i]);
    size_t n = (seed >> 16) % 8 == 0 ? 100 * KiB : (seed >> 12) % 2048 + 1;
    slot[i] = malloc(n);
    if (slot[i]) slot[i][0] = (char)i;
  }
  for (unsigned i = 0; i < SLOTS; i++) free(slot[i]);
  return NULL;
}

static int child_work(void) {
  alarm(10); // a deadlock in the child ends as SIGALRM, which the parent reports
  enum { LIVE = 128 };
  static char *live[LIVE];
  for (int i = 0; i < 10000; i++) {
    int k = i % LIVE;
    if (live[k]) {
      if ((unsigned char)live[k][0] != (unsigned)(k & 0xff)) return 3;
      free(live[k]);
    }
    size_t n = i % 97 == 0 ? 150 * KiB : (size_t)(i * 13) % 3000 + 1;
    live[k] = malloc(n);
    if (live[k] == NULL) return 2;
    memset(live[k], k & 0xff, n);
  }
  for (int k = 0; k < LIVE; k++) free(live[k]);
  return 0;
}

Test(process, fork_while_threads_allocate, .timeout = 60) {
  enum { THREADS = 4, FORKS = 20 };
  pthread_t t[THREADS];
  atomic_store(&churn_stop, false);
  for (int i = 0; i < THREADS; i++)
    cr_assert_eq(pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)(i + 1)), 0);
  int failures = 0, last_status = 0;
  for (int f = 0; f < FORKS; f++) {
    usleep(2000); // let the threads get into the middle of something
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) _exit(child_work());
    int status;
    while (waitpid(pid, &status, 0) < 0) cr_assert_eq(errno, EINTR);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failures++, last_status = status;
  }
  atomic_store(&churn_stop, true);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  cr_assert_eq(failures, 0, "%d of %d children failed; last status 0x%x (signal %d)", failures,
               FORKS, last_status, WIFSIGNALED(last_status) ? WTERMSIG(last_status) : 0);
}

// Figures of the malloc_stats report: bytes in thread caches, threads with a live cache and
// caches retired by thread exit.
typedef struct heap_figures {
  double cached;
  unsigned long live, exited;
  bool per_thread; // the per-thread front end runs (else per-CPU caches: no thread state)
} heap_figures_t;

static void read_figures(heap_figures_t *f) {
  static char buf[65536];
  capture_stderr(malloc_stats, buf, sizeof buf);
  const char *c = strstr(buf, "cached:");
  const char *t = strstr(buf, "threads:");
  cr_assert(c && t, "malloc_stats lacks cached:/threads: lines: [%s]", buf);
  const char *fe = strstr(buf, "frontend:");
  cr_assert(fe, "malloc_stats lacks the frontend: line");
  f->per_thread = strncmp(fe + strspn(fe + 9, " ") + 9, "thread", 6) == 0;
  char unit[8] = "";
  cr_assert_eq(sscanf(c, "cached: %lf %7s", &f->cached, unit), 2);
  double scale = !strcmp(unit, "KiB") ? 1024.0 : !strcmp(unit, "MiB") ? 1048576.0
               : !strcmp(unit, "GiB") ? 1073741824.0 : 1.0;
  f->cached *= scale;
  cr_assert_eq(sscanf(t, "threads: %lu with a cache, %lu exited", &f->live, &f->exited), 2,
               "cannot parse [%.80s]", t);
}

static void *use_and_exit(void *arg) {
  enum { N = 400 };
  char *p[N];
  unsigned salt = (unsigned)(uintptr_t)arg;
  for (int i = 0; i < N; i++) {
    p[i] = malloc((size_t)((i * 37 + salt) % 2000) + 1);
    if (p[i]) p[i][0] = 1;
  }
  for (int i = 0; i < N; i++) free(p[i]);
  return NULL;
}

Test(process, thread_exit_returns_cached_blocks, .timeout = 30) {
  enum { THREADS = 100, AT_ONCE = 4 };
  heap_figures_t before, after;
  read_figures(&before);
  size_t in_use_before = mallinfo2().uordblks;
  for (int i = 0; i < THREADS; i += AT_ONCE) {
    pthread_t t[AT_ONCE];
    for (int k = 0; k < AT_ONCE; k++)
      cr_assert_eq(pthread_create(&t[k], NULL, use_and_exit, (void *)(uintptr_t)(i + k)), 0);
    for (int k = 0; k < AT_ONCE; k++) pthread_join(t[k], NULL);
  }
  read_figures(&after);
  size_t in_use_after = mallinfo2().uordblks;
  cr_log_info("caches live %lu -> %lu, exited %lu -> %lu, cached %.0f -> %.0f bytes, in use %zu -> %zu",
              before.live, after.live, before.exited, after.exited, before.cached, after.cached,
              in_use_before, in_use_after);
  if (after.per_thread) {
    cr_assert_geq(after.exited, before.exited + THREADS, "exited caches %lu -> %lu",
                  before.exited, after.exited);
    cr_assert_leq(after.live, before.live, "live caches %lu -> %lu", before.live, after.live);
    cr_assert_leq(after.cached, before.cached + 64.0 * 1024,
                  "bytes in thread caches grew from %.0f to %.0f", before.cached, after.cached);
  } else {
    // Per-CPU caches outlive threads; they are bounded by the budget (1 MiB each by default).
    long cpus = sysconf(_SC_NPROCESSORS_CONF);
    cr_assert_eq(after.live, 0, "no thread caches exist in per-CPU mode");
    cr_assert_leq(after.cached, (double)cpus * 1024 * 1024, "per-CPU caches hold %.0f bytes",
                  after.cached);
  }
  cr_assert_leq(in_use_after, in_use_before + 64 * KiB, "in use %zu -> %zu", in_use_before,
                in_use_after);
}

// ---- SMPALLOC_OPTIONS -----------------------------------------------------------------------

// The helper runs with SMPALLOC_OPTIONS alone in its environment: the environment's value,
// then options (NULL: none of its own), as ctest composes them.
static void run_with_options(const char *options, run_result_t *r) {
  const char *outer = getenv("SMPALLOC_OPTIONS");
  char env[512];
  snprintf(env, sizeof env, "SMPALLOC_OPTIONS=%s%s%s", outer ? outer : "",
           outer && options ? "," : "", options ? options : "");
  char *envp[] = {env, NULL};
  char *argv[] = {(char *)OPTIONS_HELPER, NULL};
  cr_assert(run_program(OPTIONS_HELPER, argv, options || outer ? envp : (char *[]){NULL}, r),
            "cannot start %s", OPTIONS_HELPER);
  cr_log_info("%s: stdout [%s] stderr [%s]", env, r->out, r->err);
  cr_assert(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0,
            "%s: helper status 0x%x, stdout [%s] stderr [%s]", env, r->status, r->out, r->err);
  // "api_options_helper: front end ..." (the front end check), then "ok".
  cr_assert(strncmp(r->out, "api_options_helper: front end ", 30) == 0, "stdout [%s]", r->out);
  cr_assert_eq(count_lines(r->out, NULL), 2, "stdout [%s]", r->out);
  cr_assert(r->out_len >= 4 && strcmp(r->out + r->out_len - 4, "\nok\n") == 0, "stdout [%s]", r->out);
}

static run_result_t opt_run; // large; off the stack

// ---- smp_stats_get ------------------------------------------------------------------------

Test(stats, get_is_versioned_and_tracks_the_heap) {
  cr_assert_eq(smp_stats_get(NULL), EINVAL);
  smp_stats_t bad = {.version = 0, .size = sizeof bad};
  cr_assert_eq(smp_stats_get(&bad), EINVAL);
  bad = (smp_stats_t){.version = SMP_STATS_VERSION, .size = 4};
  cr_assert_eq(smp_stats_get(&bad), EINVAL);

  smp_stats_t s0 = {.version = SMP_STATS_VERSION, .size = sizeof s0};
  cr_assert_eq(smp_stats_get(&s0), 0);
  char *big = malloc(hide(8 * MiB)); // a huge block: its own mapping
  cr_assert_not_null(big);
  memset(big, 1, 8 * MiB);
  smp_stats_t s1 = {.version = SMP_STATS_VERSION, .size = sizeof s1};
  cr_assert_eq(smp_stats_get(&s1), 0);
  cr_assert_geq(s1.in_use, s0.in_use + 8 * MiB);
  cr_assert_geq(s1.mapped, s0.mapped + 8 * MiB);
  cr_assert_geq(s1.resident, s0.resident + 8 * MiB, "the touched block is resident");
  cr_assert_leq(s1.resident, s1.mapped);
  cr_assert_eq(s1.mappings, s0.mappings + 1);
  free(big);

  // An older caller's smaller struct: only the fields it knows are written.
  struct {
    smp_stats_t head;
    uint64_t guard;
  } small = {.head = {.version = 1, .size = (uint32_t)offsetof(smp_stats_t, cached)},
             .guard = 0x1234};
  small.head.cached = 77;
  char *live = malloc(hide(100));
  cr_assert_eq(smp_stats_get(&small.head), 0);
  cr_assert_eq(small.head.cached, 77, "a field beyond the caller's size was written");
  cr_assert_eq(small.head.size, offsetof(smp_stats_t, cached), "size says what was filled");
  cr_assert_eq(small.head.version, SMP_STATS_VERSION, "version is the library's");
  cr_assert_geq(small.head.in_use, 100);
  cr_assert_eq(small.guard, 0x1234);
  free(live);

  // A newer caller's larger struct: size comes back as what this library filled.
  struct {
    smp_stats_t head;
    uint64_t future;
  } newer = {.head = {.version = SMP_STATS_VERSION + 1, .size = (uint32_t)sizeof newer},
             .future = 99};
  cr_assert_eq(smp_stats_get(&newer.head), 0);
  cr_assert_eq(newer.head.size, sizeof(smp_stats_t));
  cr_assert_eq(newer.head.version, SMP_STATS_VERSION);
  cr_assert_eq(newer.future, 99, "a field this library does not know was written");
}

// Blocks a cache's miss gave to a transfer cache are free: in_use counts the live blocks only,
// and a trim (which sends the transfer caches back to their spans) does not move it.
Test(stats, blocks_in_transfer_caches_are_not_in_use) {
  enum { LIVE = 100, CHURN = 300, SIZE = 4096 };
  static void *live[LIVE], *churn[CHURN];
  for (int i = 0; i < LIVE; i++) cr_assert_not_null(live[i] = malloc(hide(SIZE)));
  for (int i = 0; i < CHURN; i++) cr_assert_not_null(churn[i] = malloc(hide(SIZE)));
  for (int i = 0; i < CHURN; i++) free(churn[i]);
  smp_stats_t s1 = {.version = SMP_STATS_VERSION, .size = sizeof s1};
  cr_assert_eq(smp_stats_get(&s1), 0);
  malloc_trim(0);
  smp_stats_t s2 = {.version = SMP_STATS_VERSION, .size = sizeof s2};
  cr_assert_eq(smp_stats_get(&s2), 0);
  cr_assert_geq(s1.in_use, (uint64_t)LIVE * SIZE, "the live blocks are in use");
  cr_assert_eq(s1.in_use, s2.in_use, "a trim moved in_use from %lu to %lu",
               (unsigned long)s1.in_use, (unsigned long)s2.in_use);
  for (int i = 0; i < LIVE; i++) free(live[i]);
}

// A freed huge block's mapping is kept for reuse: counted in huge_cached (version 3), mapped,
// resident and mappings, and as free in mallinfo2; malloc_trim gives it back.
Test(stats, freed_huge_block_is_cached_until_trim) {
  malloc_trim(0);
  char *big = malloc(hide(8 * MiB));
  cr_assert_not_null(big);
  memset(big, 1, 8 * MiB);
  smp_stats_t s0 = {.version = SMP_STATS_VERSION, .size = sizeof s0};
  cr_assert_eq(smp_stats_get(&s0), 0);
  struct mallinfo2 m0 = mallinfo2();
  free(big);
  smp_stats_t s1 = {.version = SMP_STATS_VERSION, .size = sizeof s1};
  cr_assert_eq(smp_stats_get(&s1), 0);
  struct mallinfo2 m1 = mallinfo2();
  cr_assert_geq(s1.version, 3);
  cr_assert_eq(s1.huge_cached, s0.huge_cached + 8 * MiB);
  cr_assert_eq(s1.mapped, s0.mapped, "the mapping is still there");
  cr_assert_eq(s1.mappings, s0.mappings);
  cr_assert_geq(s1.resident, 8 * MiB);
  cr_assert_leq(s1.in_use + 8 * MiB, s0.in_use);
  cr_assert_eq(m1.hblkhd + 8 * MiB, m0.hblkhd);
  cr_assert_eq(m1.fordblks, m0.fordblks + 8 * MiB, "cached: free memory of the heap");
  cr_assert_eq(malloc_trim(0), 1);
  smp_stats_t s2 = {.version = SMP_STATS_VERSION, .size = sizeof s2};
  cr_assert_eq(smp_stats_get(&s2), 0);
  cr_assert_eq(s2.huge_cached, 0);
  cr_assert_leq(s2.mapped + 8 * MiB, s1.mapped);
}

Test(options, none_prints_nothing) {
  run_with_options(NULL, &opt_run);
  cr_assert_eq(opt_run.err_len, 0, "stderr without options: [%s]", opt_run.err);
}

Test(options, stats_printed_at_exit) {
  run_with_options("stats:1", &opt_run);
  cr_assert(strstr(opt_run.err, "smpalloc") != NULL, "stderr: [%s]", opt_run.err);
  cr_assert(strstr(opt_run.err, "frontend:") != NULL, "stderr: [%s]", opt_run.err);
  cr_assert_eq(count_lines(opt_run.err, "warning"), 0, "stderr: [%s]", opt_run.err);
  // The bare name means true.
  run_with_options("stats", &opt_run);
  cr_assert(strstr(opt_run.err, "frontend:") != NULL, "stderr: [%s]", opt_run.err);
  run_with_options("cache_size:64k,stats:yes", &opt_run);
  cr_assert(strstr(opt_run.err, "frontend:") != NULL, "stderr: [%s]", opt_run.err);
  cr_assert_eq(count_lines(opt_run.err, "warning"), 0, "stderr: [%s]", opt_run.err);
}

Test(options, unknown_option_warns_once) {
  run_with_options("bogus:1", &opt_run);
  cr_assert_eq(count_lines(opt_run.err, NULL), 1, "want one line, got [%s]", opt_run.err);
  cr_assert_eq(count_lines(opt_run.err, "bogus"), 1, "stderr: [%s]", opt_run.err);
  cr_assert(strncmp(opt_run.err, "smpalloc: ", 10) == 0, "stderr: [%s]", opt_run.err);
  cr_assert(strstr(opt_run.err, "frontend:") == NULL, "statistics printed without stats");
}

Test(options, bad_value_warns) {
  run_with_options("stats:maybe", &opt_run);
  cr_assert_eq(count_lines(opt_run.err, NULL), 1, "want one line, got [%s]", opt_run.err);
  cr_assert_eq(count_lines(opt_run.err, "stats:maybe"), 1, "stderr: [%s]", opt_run.err);
  cr_assert(strstr(opt_run.err, "warning") != NULL, "stderr: [%s]", opt_run.err);
  cr_assert(strstr(opt_run.err, "frontend:") == NULL, "a rejected value turned stats on");
  // Out of range (the cache budget is at most 1 GiB) and malformed sizes are refused too.
  run_with_options("cache_size:2g", &opt_run);
  cr_assert_eq(count_lines(opt_run.err, "cache_size"), 1, "stderr: [%s]", opt_run.err);
  run_with_options("cache_size:12q,stats:1", &opt_run);
  cr_assert_eq(count_lines(opt_run.err, "cache_size:12q"), 1, "stderr: [%s]", opt_run.err);
  cr_assert(strstr(opt_run.err, "frontend:") != NULL, "the valid option after a bad one is lost");
}
