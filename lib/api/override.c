// Layer: api. The malloc family under its standard names, for the replacing builds
// (libsmpalloc.so, libsmpalloc.a). Each entry point inlines alloc.h's fast path. The glibc
// __libc_* entry points are served too, so no pointer ever passes between two allocators.
// glibc-specific calls (mallinfo2, malloc_stats, malloc_info, malloc_trim, mallopt) report our
// heap.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "alloc.h"
#include "config.h"
#include "debug.h"
#include "heap.h"
#include "init.h"
#include "large.h"
#include "os.h"
#include "report.h"
#include "sizeclass.h"
#include "stats.h"

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

// ---- malloc_info: glibc's XML, our figures ----
// glibc's shape (malloc/malloc.c, __malloc_info), a <heap> per heap of ours in the order
// smp_stats_json lists them (nr 0 is the default heap):
//   <size from to total count>  a size class with free blocks: the request sizes it serves
//                               (from the class below's size + 1 to its own), count the free
//                               blocks (in caches and in spans; with SMP_STATS 0, caches only),
//                               total their bytes
//   <total type="fast">         the blocks in caches (the per-CPU or per-thread ones)
//   <total type="rest">         count: the free blocks in small spans; size: all free bytes
//                               (small spans and free page runs)
//   <system current/max>, <aspace total/mprotect>   mapped (we keep no peak: max is current)
// and after the heaps the sums, with <total type="mmap"> the huge blocks of every heap.

typedef struct xml_sums {
  uint64_t fast_count, fast_size, rest_count, rest_size, mapped;
} xml_sums_t;

typedef struct xml_arg {
  smp_text_t *t;
  smp_gather_t *g;
  unsigned nr;
  xml_sums_t all;
} xml_arg_t;

static smp_heap_classes_t xml_classes; // the report lock

static void xml_u64(smp_text_t *t, const char *before, uint64_t v) {
  smp_text_str(t, before);
  smp_text_u64(t, v, 0);
  smp_text_str(t, "\"");
}

// The <total> lines (with the huge blocks of every heap if huge is not NULL), then <system>
// and <aspace>.
static void xml_totals(smp_text_t *t, const xml_sums_t *x, const smp_large_stats_t *huge) {
  xml_u64(t, "<total type=\"fast\" count=\"", x->fast_count);
  xml_u64(t, " size=\"", x->fast_size);
  xml_u64(t, "/>\n<total type=\"rest\" count=\"", x->rest_count);
  xml_u64(t, " size=\"", x->rest_size);
  smp_text_str(t, "/>\n");
  if (huge) {
    xml_u64(t, "<total type=\"mmap\" count=\"", huge->huge_count);
    xml_u64(t, " size=\"", huge->huge_bytes);
    smp_text_str(t, "/>\n");
  }
  static const char *const lines[] = {"<system type=\"current\"", "<system type=\"max\"",
                                      "<aspace type=\"total\"", "<aspace type=\"mprotect\""};
  for (size_t i = 0; i < SMP_ARRAY_LEN(lines); i++) {
    smp_text_str(t, lines[i]);
    xml_u64(t, " size=\"", x->mapped);
    smp_text_str(t, "/>\n");
  }
}

static void xml_heap(smp_heap_t *h, void *arg) {
  xml_arg_t *a = arg;
  smp_text_t *t = a->t;
  smp_stats_t s;
  if (h->is_default) smp_report_stats_locked(&s, NULL, &xml_classes, a->g);
  else smp_heap_stats_fill(h, &s, &xml_classes, a->g);
  xml_sums_t x = {.rest_size = s.free, .mapped = s.mapped};
  xml_u64(t, "<heap nr=\"", a->nr++);
  smp_text_str(t, ">\n<sizes>\n");
  for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) {
    uint64_t size = smp_class_info[c].size, cached = xml_classes.cached[c];
    uint64_t cap = xml_classes.spans[c] * smp_class_info[c].capacity, out = xml_classes.out[c];
    uint64_t span_free = SMP_STATS && cap > out ? cap - out : 0;
    x.fast_count += cached;
    x.fast_size += cached * size;
    x.rest_count += span_free;
    if (cached + span_free == 0) continue;
    xml_u64(t, "  <size from=\"", c > 1 ? smp_class_info[c - 1].size + 1 : 1);
    xml_u64(t, " to=\"", size);
    xml_u64(t, " total=\"", (cached + span_free) * size);
    xml_u64(t, " count=\"", cached + span_free);
    smp_text_str(t, "/>\n");
  }
  smp_text_str(t, "</sizes>\n");
  xml_totals(t, &x, NULL);
  smp_text_str(t, "</heap>\n");
  a->all.fast_count += x.fast_count;
  a->all.fast_size += x.fast_size;
  a->all.rest_count += x.rest_count;
  a->all.rest_size += x.rest_size;
  a->all.mapped += x.mapped;
}

// The whole XML into mem (cap bytes); returns its length.
static size_t xml_render(char *mem, size_t cap) {
  smp_text_t t;
  smp_text_init_mem(&t, mem, cap);
  smp_gather_t g = {0};
  xml_arg_t a = {&t, &g, 0, {0}};
  smp_report_lock();
  smp_text_str(&t, "<malloc version=\"1\">\n");
  smp_heap_each(xml_heap, &a, &g);
  smp_large_stats_t ls;
  smp_large_stats(&ls, &g);
  xml_totals(&t, &a.all, &ls);
  smp_text_str(&t, "</malloc>\n");
  smp_report_unlock();
  smp_text_flush(&t);
  return t.total;
}

// Figures gathered without waiting for a lock that malloc or free may hold (report.h), written
// into memory of our own (mapped: not the heap being described) with the report lock held, and
// only then to fp, whose stdio may call malloc or block on a pipe while we hold nothing.
EXPORT int SMP_STD(malloc_info)(int options, FILE *fp) {
  if (options != 0) return EINVAL; // as glibc: the error is the result, errno untouched
  smp_init_ensure();
  int saved = errno;
  size_t cap = 64 * 1024, n = 0;
  char *mem = NULL;
  // A text too long for mem is rendered again into twice the length it had: it grows between
  // two renderings by a few digits at most, or a heap or two made meanwhile.
  for (int tries = 0; tries < 4; tries++) {
    mem = smp_os_map(cap);
    if (mem == NULL) break;
    n = xml_render(mem, cap);
    if (n < cap) break;
    smp_os_unmap(mem, cap);
    mem = NULL;
    cap = smp_align_up(2 * n, smp_os_page_size());
  }
  int rc = 0; // an error is the result, as glibc's EINVAL: ENOMEM, or EIO if fp refused the text
  if (mem == NULL) {
    rc = ENOMEM;
  } else {
    if (fwrite(mem, 1, n, fp) != n) rc = EIO;
    smp_os_unmap(mem, cap);
  }
  errno = saved;
  return rc;
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

// `smpalloc run` (tools/smpalloc.c) checks that the program really runs on this library, which
// a static or set-user-ID program, or one that resets LD_PRELOAD, does not: it names a file in
// SMPALLOC_LOADED_MARK (in a directory only it can write) and this constructor creates it. Only
// the replacing builds have it: the API-only library never marks.
__attribute__((constructor)) static void mark_loaded(void) {
  if (smp_os_secure()) return; // a set-user-ID program creates no file a caller names
  const char *path = smp_os_getenv("SMPALLOC_LOADED_MARK");
  if (path == NULL || *path == 0) return;
  int saved = errno;
  int fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd >= 0) close(fd);
  errno = saved;
}
