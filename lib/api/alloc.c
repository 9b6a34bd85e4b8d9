// Layer: api. The smp_ entry points and the slow paths behind alloc.h's fast paths.
// Error contract: a request that cannot be met returns NULL with errno ENOMEM (EINVAL for a
// bad alignment); a pointer that is not a live block of ours is reported and aborts.
#include <errno.h>
#include <string.h>

#include "smpalloc.h"
#include "alloc.h"
#include "background.h"
#include "debug.h"
#include "doublefree.h"
#include "init.h"
#include "large.h"
#include "pageheap.h"
#include "central.h"
#include "harden.h"
#include "heap.h"
#include "options.h"
#include "prof.h"
#include "report.h"
#include "types.h"

smp_alloc_limits_t smp_alloc_limits = {1024, SMP_SMALL_MAX, SMP_SMALL_MAX - 16};
uint64_t smp_alloc_hit_magic[SMP_CLASS_COUNT];

// The upkeep every slow path of malloc does first.
static void slow_path_upkeep(void) {
  smp_init_ensure();
  smp_background_ensure();
  if (SMP_UNLIKELY(smp_load_relaxed(&smp_report_signal_pending))) smp_report_signal_retry();
  if (SMP_UNLIKELY(smp_load_relaxed(&smp_prof_dump_pending))) smp_prof_dump_signalled();
}

// A block of class cls from the front end after its hit path missed (its refill), or NULL
// (errno ENOMEM) once the OOM handler gives up.
static void *class_refill(unsigned cls) {
  void *p = smp_frontend_alloc_slow(cls);
  if (SMP_UNLIKELY(p == NULL)) { // the OOM handler may free memory and ask for another try
    p = smp_heapapi_default_failed(smp_class_info[cls].size, SMP_MIN_ALIGN, false);
    if (p == NULL) errno = ENOMEM;
    return p;
  }
  smp_block_unmark(p);
  return p;
}

SMP_NOINLINE void *smp_alloc_small_slow(unsigned cls) {
  slow_path_upkeep();
  // With every block hardened, only two requests reach here (harden.h): one of 0 bytes, through
  // the 16-byte class whose caches no hardened block fills, and the process's first, made
  // before start-up set the limits. Each gets all its class's bytes.
  if (SMP_UNLIKELY(smp_harden_all))
    return smp_heapapi_alloc(SMP_HEAP_DEFAULT, smp_class_info[cls].size, SMP_MIN_ALIGN, false, false);
  return class_refill(cls);
}

// The profiler alone, or fill mode (harden.h): the small requests of malloc, sent here by the
// limits. One the profiler samples becomes a hardened block; the others are plain blocks of the
// front end, as its hit path would have served them, filled in fill mode. The route a request
// takes when nothing is sampled, filled or missed holds nothing across a call (no register is
// saved), and everything else is a tail call: under prof alone it is the profiler's whole cost.

static SMP_NOINLINE void *alloc_sampled(size_t size) {
  slow_path_upkeep();
  return smp_heapapi_alloc(SMP_HEAP_DEFAULT, size, SMP_MIN_ALIGN, false, true);
}

// p, a plain block of class cls just handed out: filled (fill mode).
static SMP_NOINLINE void *plain_finish(void *p, unsigned cls) {
  smp_harden_fill_alloc(p, smp_class_info[cls].size, "malloc");
  return p;
}

static SMP_NOINLINE void *plain_refill(unsigned cls) {
  slow_path_upkeep();
  void *p = class_refill(cls);
  return p && smp_harden_fill ? plain_finish(p, cls) : p;
}

// The front end's block for a request of size bytes (a pop, or its refill), filled in fill
// mode (fill_mode false: the caller knows it is off).
SMP_INLINE void *plain_pop_as(size_t size, bool fill_mode) {
  unsigned cls = smp_sizeclass_of(size);
  void *p = smp_frontend_alloc_fast(cls);
  if (SMP_ASAN) { // filled first, then its slack poisoned (asan.h)
    if (p == NULL) {
      p = plain_refill(cls);
    } else {
      smp_block_unmark(p);
      if (smp_harden_fill) plain_finish(p, cls);
    }
    smp_alloc_asan_handout(p, size, smp_class_info[cls].size);
    return p;
  }
  if (SMP_UNLIKELY(p == NULL)) return plain_refill(cls);
  smp_block_unmark(p);
  if (fill_mode && SMP_UNLIKELY(smp_harden_fill)) return plain_finish(p, cls);
  return p;
}
SMP_INLINE void *plain_pop(size_t size) { return plain_pop_as(size, true); }
static SMP_NOINLINE void *plain_pop_outlined(size_t size) { return plain_pop(size); }

// The profiler's count reached 0 (smp_prof_sample's slow part).
static SMP_NOINLINE void *alloc_counted(size_t size) {
  if (smp_prof_sample_slow(size)) return alloc_sampled(size);
  return plain_pop_outlined(size);
}

SMP_INLINE void *alloc_small_plain(size_t size) {
  if (SMP_UNLIKELY(smp_prof_on) && !smp_prof_count(size)) return alloc_counted(size);
  return plain_pop(size);
}

// Every mode but the plain one, for what the route above does not take (large requests, and
// every request with every block hardened): a hardened block, or one prof may sample.
static SMP_NOINLINE void *alloc_hardened(size_t size, size_t align, bool zero) {
  slow_path_upkeep();
  return smp_heapapi_alloc(SMP_HEAP_DEFAULT, size, align, zero, false);
}

static SMP_NOINLINE void *alloc_large(size_t size, size_t align, bool zero) {
  slow_path_upkeep();
  void *p = smp_large_alloc(&SMP_HEAP_DEFAULT->pages, size, align, zero, false);
  if (p == NULL) p = smp_heapapi_default_failed(size, align, zero);
  if (p == NULL) errno = ENOMEM;
  return p;
}

// Hardened or profiled, only a tail call more. Start-up first: the flags are set there, and a
// thread may come here before it is done (its acquire orders them).
SMP_NOINLINE void *smp_alloc_large_slow(size_t size, size_t align, bool zero) {
  smp_init_ensure();
  if (SMP_UNLIKELY(smp_harden_on)) return alloc_hardened(size, align, zero);
  return alloc_large(size, align, zero);
}

_Atomic bool smp_alloc_prof_route;

SMP_NOINLINE void *smp_alloc_malloc_slow(size_t size) {
  // The profiler alone, a request up to the class table's limit: the route above on one test,
  // before start-up's (the flag is stored last at start-up, with release). Nothing to fill:
  // the countdown, then the pop; 10 instructions fewer than the way through the flags below
  // (threadtest under prof: 1.47x -> 1.10x the plain time, papers/results.md).
  if (SMP_LIKELY(smp_load_acquire(&smp_alloc_prof_route)) && size <= 1024) {
    if (SMP_UNLIKELY(!smp_prof_count(size))) return alloc_counted(size);
    return plain_pop_as(size, false);
  }
  smp_init_ensure();
  if (SMP_UNLIKELY(smp_harden_plain_small) && size <= SMP_SMALL_MAX) return alloc_small_plain(size);
  return smp_alloc_large_slow(size, SMP_MIN_ALIGN, false);
}

// p lies in a page of a small span (not yet validated as a block start).
static bool in_small_span(const void *p) { return smp_pagemap_owns(p) && smp_pagemap_class(p) != 0; }

// The small block at p, validated: its class, or a report and abort. A block that holds its
// free mark is reported only if doublefree.c confirms it is free; else it is live.
static unsigned small_class_checked(const void *p, const char *function) {
  unsigned cls = smp_pagemap_class(p);
  smp_span_t *s = smp_pagemap_span_checked(p);
  if (s == NULL || s->state != SMP_SPAN_SMALL || !smp_span_is_block(s, p)) {
    smp_types_report_freed(p, function); // a typed block's pointer, freed before
    smp_debug_fatal(function, "invalid pointer", p);
  }
  if (smp_block_is_marked(p) && smp_doublefree_confirm(s, cls, p))
    smp_debug_fatal(function, "double free", p);
  return cls;
}

// Free p, in chunk c of a heap other than the default one: a small block goes to the calling
// thread's cache of that heap, anything else to smp_large_free (which reports a bad pointer).
static void other_heap_free(smp_chunk_t *c, void *p, const char *function) {
  smp_span_t *s = smp_pagemap_span_checked(p);
  if (s && s->state == SMP_SPAN_SMALL) {
    unsigned cls = s->sizeclass;
    if (!smp_span_is_block(s, p)) smp_debug_fatal(function, "invalid pointer", p);
    if (smp_block_is_marked(p) && smp_doublefree_confirm(s, cls, p))
      smp_debug_fatal(function, "double free", p);
    smp_alloc_mark_freed(p, cls);
    smp_hcache_set_t *set = &smp_heap_of_chunk(c)->caches;
    if (!smp_hcache_free_fast(set, p, cls)) smp_hcache_free_slow(set, p, cls);
    return;
  }
  smp_large_free(p, function);
}

unsigned smp_alloc_other_small_class(const smp_chunk_t *c, const void *p) {
  size_t page = smp_pagemap_page(p);
  size_t first = c->page_span[page];
  const smp_span_t *s = &c->spans[first];
  // A header page names descriptor 0, which is never a span (state NONE); a stale entry of a
  // free span may name any descriptor: the span must be SMALL and cover the page (page - first
  // wraps around when page < first).
  if (s->state != SMP_SPAN_SMALL || page - first >= s->npages) return 0;
  unsigned cls = s->sizeclass;
  if (!smp_sizeclass_on_boundary(cls, smp_pagemap_span_offset(p)) || smp_block_is_marked(p))
    return 0;
  return cls;
}

void smp_alloc_other_small_free(smp_chunk_t *c, void *p, unsigned cls) {
  smp_alloc_mark_freed(p, cls);
  smp_hcache_set_t *set = &smp_heap_of_chunk(c)->caches;
  if (!smp_hcache_free_fast(set, p, cls)) smp_hcache_free_slow(set, p, cls);
}

// The common free of a small block of a heap over the OS (not the default heap, whose blocks
// take free's fast path, nor a region heap): into the calling thread's cache of its heap. false
// for anything else, or a block that holds its free mark (the complete path confirms or clears
// the suspicion). A region never lies over a small span of ours (heap.c), so p is that span's.
SMP_INLINE bool other_heap_free_fast(smp_chunk_t *c, void *p) {
  unsigned cls = smp_alloc_other_small_class(c, p);
  if (cls == 0) return false;
  smp_alloc_other_small_free(c, p, cls);
  return true;
}

// Fill mode (harden.h), whose free's hit path takes no block: a plain small block of the default
// heap that holds no free mark is filled and pushed as the hit path would have pushed it. false
// for anything else (the complete path confirms a suspected double free).
static bool free_plain_filled(void *p) {
  size_t cls = smp_alloc_small_class_of(p); // the hit path's test, with the true magic
  if (cls == 0) return false;
  smp_harden_fill_free(p, smp_class_info[cls].size);
  smp_alloc_mark_freed(p, cls);
  if (!smp_frontend_free_fast(p, cls)) smp_frontend_free_slow(p, cls);
  return true;
}

// Everything free's fast path and the heap-cache branch below leave.
static SMP_NOINLINE void free_slow_rest(void *p, const char *function) {
  if (p == NULL) return;
  smp_init_ensure();
  smp_typed_block_t tb;
  if (smp_types_find(p, &tb)) { // past its header, or a block of its type's own heap
    smp_types_free_block(&tb, function);
    return;
  }
  smp_alloc_free_untyped(p, function);
}

void smp_alloc_free_untyped(void *p, const char *function) {
  if (SMP_UNLIKELY(smp_harden_on)) {
    // debug:1 checks that p's heap is live before reading it, as other_heap_free's caller does.
    smp_chunk_t *c = smp_options.debug ? smp_pagemap_find(p) : NULL;
    smp_heap_t *h = c && !smp_heap_of_chunk(c)->is_default ? smp_heap_of_chunk(c) : NULL;
    if (h) smp_heapapi_enter(h, function);
    smp_hardened_t hb;
    bool found = smp_harden_find(p, &hb); // never a block start either
    if (found) smp_harden_free(&hb, function);
    if (h) smp_heapapi_leave(h);
    if (found) return;
  }
  smp_alloc_free_block(p, function);
}

void smp_alloc_free_block(void *p, const char *function) {
  if (in_small_span(p)) { // the default heap's small blocks (no other heap sets page classes)
    unsigned cls = small_class_checked(p, function); // misaligned, interior or double free
    if (smp_harden_fill) smp_harden_fill_free(p, smp_class_info[cls].size);
    smp_alloc_mark_freed(p, cls);
    smp_frontend_free_slow(p, cls);
    return;
  }
  smp_chunk_t *c = smp_pagemap_find(p);
  if (c && !smp_heap_of_chunk(c)->is_default) {
    smp_heap_t *h = smp_heap_of_chunk(c);
    if (smp_options.debug) smp_heapapi_enter(h, function);
    other_heap_free(c, p, function);
    if (smp_options.debug) smp_heapapi_leave(h);
    return;
  }
  if (c == NULL && smp_heap_retired(p)) smp_debug_fatal(function, "block of a destroyed heap", p);
  smp_large_free(p, function);
}

// The common case first, in a function of its own so that it pays none of the rest's register
// saves: a small block of a heap over the OS, into the thread's cache of that heap.
SMP_NOINLINE void smp_free_slow(void *p, const char *function) {
  if (SMP_LIKELY(smp_pagemap_owns(p))) {
    smp_chunk_t *c = smp_pagemap_chunk(p);
    if (!c->heap->class_pages && !smp_options.debug && !smp_harden_on &&
        (c->heap->slow_frees ? smp_types_own_free_fast(c, p) : other_heap_free_fast(c, p)))
      return;
    if (SMP_UNLIKELY(smp_harden_fill) && free_plain_filled(p)) return;
  }
  free_slow_rest(p, function);
}

// The huge block whose mapping starts at b, if any: its usable size.
static bool huge_at(const void *b, size_t *usable) {
  if (smp_large_huge_heap(b) == NULL) return false;
  *usable = smp_large_usable(b, "smp_alloc_block_around");
  return true;
}

bool smp_alloc_block_around(const void *p, char **start, size_t *bytes, bool *small) {
  char *b;
  size_t size;
  bool in_small = false;
  if (smp_pagemap_find(p)) {
    smp_span_t *s = smp_pagemap_span_checked(p);
    if (s == NULL) return false;
    char *first = smp_span_start(s);
    if (s->state == SMP_SPAN_SMALL) {
      size = smp_class_info[s->sizeclass].size;
      size_t in = (size_t)((const char *)p - first);
      if ((const char *)p < first || in >= (size_t)s->capacity * size) return false;
      b = first + in / size * size;
      in_small = true;
    } else if (s->state == SMP_SPAN_LARGE) {
      b = first;
      size = smp_span_bytes(s);
    } else {
      return false;
    }
  } else { // a huge mapping starts at a page boundary below p
    size_t page = smp_os_page_size(), in = (uintptr_t)p & (page - 1);
    if (in) {
      b = (char *)p - in;
      if (!huge_at(b, &size)) return false;
    } else { // aligned to a page or more: p itself, else p - 2^k for an alignment 2^k
      if (smp_large_huge_heap(p)) {
        b = (char *)p;
        size = smp_large_usable(p, "smp_alloc_block_around");
      } else {
        // Nearest first: the first huge block found below p is the only one that can hold p
        // (a farther one holding p would hold that block too).
        // (p - 2^k with k one past p's alignment too: a typed block inside a hardened one
        // lies twice its alignment into its mapping.)
        unsigned top = (unsigned)__builtin_ctzll((uintptr_t)p) + 1;
        b = NULL;
        for (unsigned k = (unsigned)__builtin_ctzll(page); k <= top && k < SMP_ADDRESS_BITS; k++) {
          char *c = (char *)p - ((size_t)1 << k);
          if (huge_at(c, &size)) {
            b = c;
            break;
          }
        }
        if (b == NULL) return false;
      }
    }
  }
  if ((size_t)((const char *)p - b) >= size) return false;
  *start = b;
  *bytes = size;
  if (small) *small = in_small;
  return true;
}

smp_heap_t *smp_alloc_block_info(const void *p, const char *function, size_t *usable,
                                 bool *small) {
  if (in_small_span(p)) {
    *small = true;
    *usable = smp_class_info[small_class_checked(p, function)].size;
    return SMP_HEAP_DEFAULT;
  }
  smp_chunk_t *c = smp_pagemap_find(p);
  *small = false;
  if (c && !smp_heap_of_chunk(c)->is_default) {
    smp_span_t *s = smp_pagemap_span_checked(p);
    if (s && s->state == SMP_SPAN_SMALL) {
      if (!smp_span_is_block(s, p) ||
          (smp_block_is_marked(p) && smp_doublefree_confirm(s, s->sizeclass, p)))
        smp_debug_fatal(function, "invalid pointer", p);
      *small = true;
      *usable = smp_class_info[s->sizeclass].size;
      return smp_heap_of_chunk(c);
    }
  }
  if (c == NULL && smp_heap_retired(p)) smp_debug_fatal(function, "block of a destroyed heap", p);
  *usable = smp_large_usable(p, function);
  if (c) return smp_heap_of_chunk(c);
  smp_pageheap_t *ph = smp_large_huge_heap(p);
  return ph ? (smp_heap_t *)ph->owner : SMP_HEAP_DEFAULT;
}

void *smp_alloc_calloc(size_t count, size_t size) {
  size_t n;
  if (SMP_UNLIKELY(__builtin_mul_overflow(count, size, &n))) {
    errno = ENOMEM;
    return NULL;
  }
  if (SMP_LIKELY(n <= SMP_SMALL_MAX)) {
    void *p = smp_alloc_fast(n);
    if (SMP_LIKELY(p != NULL)) memset(p, 0, n);
    return p;
  }
  return smp_alloc_large_slow(n, SMP_MIN_ALIGN, true);
}

void *smp_alloc_aligned(size_t align, size_t size) {
  if (align <= SMP_MIN_ALIGN) return smp_alloc_fast(size);
  smp_init_ensure();
  if (SMP_UNLIKELY(smp_harden_on)) return smp_heapapi_alloc(SMP_HEAP_DEFAULT, size, align, false, false);
  if (size <= SMP_SMALL_MAX && align <= SMP_PAGE_SIZE) {
    unsigned cls = smp_sizeclass_aligned(size, align);
    if (cls < SMP_CLASS_COUNT) return smp_alloc_class(cls);
  }
  return smp_alloc_large_slow(size, align, false);
}

static size_t usable_of(const void *p, const char *function);

size_t smp_alloc_usable(const void *p, const char *function) {
  size_t n = usable_of(p, function);
  if (SMP_ASAN && n) smp_asan_unpoison(p, n); // the program may use all of it (asan.h)
  return n;
}

static size_t usable_of(const void *p, const char *function) {
  if (p == NULL) return 0;
  smp_typed_block_t tb;
  if (smp_types_find(p, &tb)) return tb.usable;
  smp_hardened_t hb;
  if (SMP_UNLIKELY(smp_harden_find(p, &hb))) {
    if (hb.quarantined) smp_debug_fatal(function, "use after free (block in quarantine)", p);
    return hb.size;
  }
  if (in_small_span(p))
    return smp_class_info[small_class_checked(p, function)].size;
  size_t usable;
  bool small;
  smp_alloc_block_info(p, function, &usable, &small);
  return usable;
}

// Move p to a new block of size bytes, copying keep bytes; p survives a failure.
static void *realloc_move(void *p, size_t size, size_t keep) {
  void *q = smp_alloc_fast(size);
  if (q == NULL) return NULL;
  memcpy(q, p, keep < size ? keep : size);
  smp_free_fast(p);
  return q;
}

// A small block that grows moves to at least a quarter more than it had (within the small
// classes), so a string or array grown a few bytes at a time moves once per quarter, not at
// every class boundary (realloc_strings, which appends 1 to 1024 bytes per call: 0.111 s
// against 0.118).
static void *realloc_small(void *p, size_t size, size_t usable) {
  if (smp_alloc_realloc_keeps(size, usable)) {
    smp_alloc_asan_handout(p, size, usable); // the new slack (asan.h)
    return p;
  }
  size_t room = usable + usable / 4;
  if (size > usable && size < room && room <= SMP_SMALL_MAX) return realloc_move(p, room, usable);
  return realloc_move(p, size, usable);
}

void *smp_alloc_realloc(void *p, size_t size, const char *function) {
  // AddressSanitizer builds: the old block's slack may be copied or kept, so it is unpoisoned
  // as malloc_usable_size unpoisons it (asan.h).
  if (SMP_ASAN && p != NULL) smp_alloc_usable(p, function);
  // The common case first, with free's hit-path test (a typed pointer never passes it).
  size_t cls = size != 0 ? smp_alloc_small_class_fast(p) : 0;
  if (SMP_LIKELY(cls != 0)) return realloc_small(p, size, smp_class_info[cls].size);
  if (p == NULL) return smp_alloc_fast(size);
  smp_typed_block_t tb;
  if (smp_types_find(p, &tb)) return smp_types_realloc_block(&tb, p, size, NULL, 0, function);
  if (SMP_UNLIKELY(smp_harden_on)) {
    // Fill mode's plain blocks (free's hit-path test takes none) as without it; a block that
    // holds its free mark goes the complete way, which confirms or clears the suspicion.
    if (smp_harden_fill && size != 0 && (cls = smp_alloc_small_class_of(p)) != 0)
      return realloc_small(p, size, smp_class_info[cls].size);
    return smp_alloc_heap_realloc(NULL, p, size, 0, function);
  }
  if (size == 0) { // glibc's behaviour: free and return NULL
    smp_free_fast(p);
    return NULL;
  }
  if (!in_small_span(p) && smp_alloc_heap_of(p) != SMP_HEAP_DEFAULT) // stays in its heap
    return smp_alloc_heap_realloc(NULL, p, size, 0, function);
  size_t usable = smp_alloc_usable(p, function); // validates p
  if (in_small_span(p)) return realloc_small(p, size, usable); // held its free mark: live
  // Large or huge: shrinking into the small classes moves (and frees whole pages).
  if (size <= SMP_SMALL_MAX && size < usable / 2) return realloc_move(p, size, usable);
  if (smp_large_resize(p, size)) return p;
  void *q = smp_large_remap(p, size); // huge: let the kernel move the pages, no copy
  if (q != NULL) return q;
  q = realloc_move(p, size, usable);
  if (q == NULL) errno = ENOMEM;
  return q;
}

void smp_alloc_free_sized(void *p, size_t size, const char *function) {
  if (p == NULL) return;
  if (SMP_UNLIKELY(smp_harden_on)) {
    // A hardened block knows the size it was asked for, which is also all malloc_usable_size
    // gives: a larger size is not the block's. (A smaller one may be: a request of 0 bytes, or
    // the process's first, gets its class's bytes, see smp_alloc_small_slow.)
    smp_hardened_t hb;
    if (smp_harden_find(p, &hb) && !hb.quarantined && size > hb.size)
      smp_debug_fatal(function, "size does not match block", p);
  }
  if (smp_pagemap_owns(p)) {
    unsigned cls = smp_pagemap_class(p);
    bool fits = cls ? (size <= SMP_SMALL_MAX && size <= smp_class_info[cls].size)
                    : size <= smp_alloc_usable(p, function);
    if (SMP_UNLIKELY(!fits)) smp_debug_fatal(function, "size does not match block", p);
  }
  smp_free_fast(p);
}

static void trim_heap(smp_heap_t *h, void *arg) {
  size_t *released = arg;
  if (!h->is_default) smp_hcache_flush_self(&h->caches);
  *released += smp_central_trim(&h->central);
  *released += smp_pageheap_trim(&h->pages);
  *released += smp_large_trim(&h->pages); // freed huge blocks' mappings kept for reuse
}

int smp_alloc_trim(void) {
  smp_init_ensure();
  if (smp_harden_on) smp_harden_drain();
  size_t released = 0;
  smp_frontend_flush(); // per-CPU region locks come before the heap registry's (fork order)
  smp_heap_each(trim_heap, &released, NULL);
  return released > 0;
}

void *smp_alloc_malloc(size_t size) { return smp_alloc_fast(size); }
void smp_alloc_free(void *p) { smp_free_fast(p); }

// ---- public API ----

SMP_EXPORT void *smp_malloc(size_t size) { return smp_alloc_fast(size); }
SMP_EXPORT void smp_free(void *ptr) { smp_free_fast(ptr); }
SMP_EXPORT void smp_free_sized(void *ptr, size_t size) {
  smp_alloc_free_sized(ptr, size, "smp_free_sized");
}
SMP_EXPORT void *smp_calloc(size_t count, size_t size) { return smp_alloc_calloc(count, size); }
SMP_EXPORT void *smp_realloc(void *ptr, size_t size) {
  return smp_alloc_realloc(ptr, size, "realloc");
}
SMP_EXPORT void *smp_aligned_alloc(size_t alignment, size_t size) {
  if (!smp_is_pow2(alignment)) {
    errno = EINVAL;
    return NULL;
  }
  return smp_alloc_aligned(alignment, size);
}
SMP_EXPORT size_t smp_usable_size(const void *ptr) { return smp_alloc_usable(ptr, "malloc_usable_size"); }
SMP_EXPORT int smp_trim(void) { return smp_alloc_trim(); }
SMP_EXPORT void smp_stats_print(void) {
  smp_init_ensure();
  smp_report_print(2, NULL);
}
SMP_EXPORT int smp_stats_get(smp_stats_t *stats) {
  if (stats == NULL || stats->version == 0 ||
      stats->size < offsetof(smp_stats_t, in_use) + sizeof stats->in_use)
    return EINVAL;
  smp_init_ensure();
  smp_report_stats(stats);
  return 0;
}
SMP_EXPORT const char *smp_version(void) { return SMP_VERSION_STRING; }
SMP_EXPORT int smp_options_check(const char *options, char *why, size_t why_len) {
  if (smp_options_valid(options, why, why_len)) return 0;
  errno = EINVAL;
  return -1;
}
