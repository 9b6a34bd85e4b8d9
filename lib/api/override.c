// Layer: api. The malloc family under its standard names, for the replacing builds
// (libsmpalloc.so, libsmpalloc.a). Each entry point inlines alloc.h's fast path. The glibc
// __libc_* entry points are served too, so no pointer ever passes between two allocators.
// glibc-specific calls (mallinfo2, malloc_stats, malloc_trim, mallopt) report our heap.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <unistd.h>

#include "alloc.h"
#include "config.h"
#include "init.h"
#include "os.h"
#include "report.h"

#define EXPORT SMP_EXPORT

// Sanitizer builds (SMP_SANITIZE=address|thread) cannot replace malloc: the sanitizer's runtime
// owns the standard names. There this file exports the same functions as smp_test_malloc,
// smp_test_free, ..., and tests/test_names.h maps the standard names onto them, so the tests
// run this very code under the sanitizer.
#if SMP_TEST_NAMES
#define SMP_STD(name) smp_test_##name
#else
#define SMP_STD(name) name
#endif

EXPORT SMP_HOT_ENTRY void *SMP_STD(malloc)(size_t size) { return smp_alloc_fast(size); }
EXPORT SMP_HOT_ENTRY void SMP_STD(free)(void *p) { smp_free_fast(p); }
EXPORT void *SMP_STD(calloc)(size_t count, size_t size) { return smp_alloc_calloc(count, size); }
EXPORT void *SMP_STD(realloc)(void *p, size_t size) { return smp_alloc_realloc(p, size, "realloc"); }

EXPORT void *SMP_STD(reallocarray)(void *p, size_t count, size_t size) {
  size_t n;
  if (__builtin_mul_overflow(count, size, &n)) {
    errno = ENOMEM;
    return NULL;
  }
  return smp_alloc_realloc(p, n, "reallocarray");
}

EXPORT void SMP_STD(free_sized)(void *p, size_t size) { smp_alloc_free_sized(p, size, "free_sized"); }
EXPORT void SMP_STD(free_aligned_sized)(void *p, size_t align, size_t size) {
  (void)align;
  smp_alloc_free_sized(p, size, "free_aligned_sized");
}

EXPORT void *SMP_STD(aligned_alloc)(size_t align, size_t size) {
  if (!smp_is_pow2(align)) {
    errno = EINVAL;
    return NULL;
  }
  return smp_alloc_aligned(align, size);
}

EXPORT int SMP_STD(posix_memalign)(void **out, size_t align, size_t size) {
  if (!smp_is_pow2(align) || align % sizeof(void *) != 0) return EINVAL;
  int saved = errno;
  void *p = smp_alloc_aligned(align, size);
  errno = saved; // posix_memalign reports through its result, not errno
  if (p == NULL) return ENOMEM;
  *out = p;
  return 0;
}

// glibc's memalign: a non-power-of-two alignment is rounded up to the next power of two.
EXPORT void *SMP_STD(memalign)(size_t align, size_t size) {
  if (align > SIZE_MAX / 2 + 1) {
    errno = EINVAL;
    return NULL;
  }
  if (!smp_is_pow2(align)) align = align <= 1 ? 1 : (size_t)1 << (64 - __builtin_clzll(align - 1));
  return smp_alloc_aligned(align, size);
}

EXPORT void *SMP_STD(valloc)(size_t size) { return smp_alloc_aligned(smp_os_page_size(), size); }

EXPORT void *SMP_STD(pvalloc)(size_t size) {
  size_t page = smp_os_page_size();
  if (size > SIZE_MAX - page) {
    errno = ENOMEM;
    return NULL;
  }
  size = size ? smp_align_up(size, page) : page;
  return smp_alloc_aligned(page, size);
}

EXPORT size_t SMP_STD(malloc_usable_size)(void *p) { return smp_alloc_usable(p, "malloc_usable_size"); }
EXPORT int SMP_STD(malloc_trim)(size_t pad) {
  (void)pad;
  return smp_alloc_trim();
}

EXPORT void SMP_STD(malloc_stats)(void) {
  smp_init_ensure();
  smp_report_print(STDERR_FILENO, NULL);
}

EXPORT struct mallinfo2 SMP_STD(mallinfo2)(void) {
  smp_init_ensure();
  smp_report_totals_t r;
  smp_report_totals(&r);
  struct mallinfo2 m = {0};
  m.arena = r.mapped - r.huge_in_use;
  m.hblks = r.huge_count;
  m.hblkhd = r.huge_in_use;
  m.uordblks = r.small_in_use + r.large_in_use + r.huge_in_use;
  m.fordblks = r.cached + r.central_free + r.pageheap_free + r.huge_cached;
  m.keepcost = 0;
  return m;
}

static int clamp_int(size_t v) { return v > INT32_MAX ? INT32_MAX : (int)v; }

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
EXPORT struct mallinfo SMP_STD(mallinfo)(void) {
  struct mallinfo2 m2 = SMP_STD(mallinfo2)();
  struct mallinfo m = {0};
  m.arena = clamp_int(m2.arena);
  m.hblks = clamp_int(m2.hblks);
  m.hblkhd = clamp_int(m2.hblkhd);
  m.uordblks = clamp_int(m2.uordblks);
  m.fordblks = clamp_int(m2.fordblks);
  return m;
}
#pragma GCC diagnostic pop

// Tuning knobs of glibc's allocator have no meaning here; accept them so callers carry on.
EXPORT int SMP_STD(mallopt)(int param, int value) {
  (void)param, (void)value;
  return 1;
}

EXPORT void *SMP_STD(__libc_malloc)(size_t size) { return smp_alloc_fast(size); }
EXPORT void SMP_STD(__libc_free)(void *p) { smp_free_fast(p); }
EXPORT void *SMP_STD(__libc_calloc)(size_t count, size_t size) { return smp_alloc_calloc(count, size); }
EXPORT void *SMP_STD(__libc_realloc)(void *p, size_t size) { return smp_alloc_realloc(p, size, "realloc"); }
EXPORT void *SMP_STD(__libc_memalign)(size_t align, size_t size) { return SMP_STD(memalign)(align, size); }
EXPORT void *SMP_STD(__libc_valloc)(size_t size) { return SMP_STD(valloc)(size); }
EXPORT void *SMP_STD(__libc_pvalloc)(size_t size) { return SMP_STD(pvalloc)(size); }
