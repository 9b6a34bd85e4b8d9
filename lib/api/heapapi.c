// Layer: api. The heap API of smpalloc.h ("Heaps"): allocation with flags in any heap, the
// out-of-memory handler and the emergency reserve. A request runs in rounds: the heap (its
// cache, its central lists, its page heap), then, for lack of memory, the OOM handler (which may
// ask for another round), then for SMP_RESERVE/SMP_NOFAIL the reserve, then failure or, for
// SMP_NOFAIL, a report. SMP_NOWAIT requests take only what needs no lock wait and no system
// call (trylocks, no chunk growth, no huge mapping, no upkeep purge, no background start) and
// never call the handler. The reserve is a region heap over pre-faulted memory.
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "smpalloc.h"
#include "alloc.h"
#include "background.h"
#include "debug.h"
#include "harden.h"
#include "heap.h"
#include "prof.h"
#include "init.h"
#include "large.h"
#include "options.h"
#include "report.h"
#include "types.h"

#define ALIGN_SHIFT 8
#define KNOWN_FLAGS (SMP_ZERO | SMP_NOWAIT | SMP_RESERVE | SMP_NOFAIL | (63u << ALIGN_SHIFT))

// The handler and its argument, published together: each install fills a new pair (from a
// small ring: a handler is installed a few times in a program's life; a reader that loaded a
// pair eight installs ago could see it rewritten) and stores the pointer to it with release.
typedef struct oom_pair {
  int (*fn)(size_t, smp_heap_t *, void *);
  void *arg;
} oom_pair_t;
static oom_pair_t oom_pairs[8];
static unsigned oom_next;            // oom_lock
static smp_lock_t oom_lock = SMP_LOCK_INIT;
static oom_pair_t *_Atomic oom_current; // release store, acquire load
static __thread bool in_oom_handler SMP_TLS_IE;

static smp_lock_t reserve_lock = SMP_LOCK_INIT;
static smp_heap_t *_Atomic reserve; // reserve_lock (written); read acquire
static size_t reserve_len;          // reserve_lock

static bool flags_valid(unsigned flags) {
  return (flags & ~KNOWN_FLAGS) == 0 && (flags & (SMP_NOWAIT | SMP_NOFAIL)) != (SMP_NOWAIT | SMP_NOFAIL);
}
static size_t align_of(unsigned flags) {
  unsigned lg = (flags >> ALIGN_SHIFT) & 63;
  return lg > 4 ? (size_t)1 << lg : SMP_MIN_ALIGN;
}

static void check_live(const smp_heap_t *h, const char *function) {
  if (SMP_UNLIKELY(smp_load_acquire(&h->state) != SMP_HEAP_LIVE))
    smp_debug_fatal(function, "heap destroyed or invalid", h);
}

// debug:1 catches a heap destroyed while another thread uses it. Every call into a heap other
// than the default one counts itself in users around its work, and then checks that the heap
// is live; destroy marks the heap dead, then checks that users is 0. Both pairs are seq_cst
// (a store or increment, then a load), so at least one side sees the other: either the call
// sees DEAD or destroy sees the call (Dekker). Outside debug mode none of this runs.
void smp_heapapi_enter(smp_heap_t *h, const char *function) {
  atomic_fetch_add(&h->users, 1);
  check_live(h, function);
}
void smp_heapapi_leave(smp_heap_t *h) { atomic_fetch_sub(&h->users, 1); }

// A block of class cls from heap h (NULL: out of memory or, with nowait, it would wait).
static void *class_alloc(smp_heap_t *h, unsigned cls, bool nowait) {
  if (h->is_default) {
    void *p = smp_frontend_alloc_fast(cls);
    if (p) return p;
    if (nowait) return smp_frontend_alloc_nowait(cls);
    smp_background_ensure();
    return smp_frontend_alloc_slow(cls);
  }
  void *p = smp_hcache_alloc_fast(&h->caches, cls);
  return p ? p : smp_hcache_alloc_slow(&h->caches, cls, nowait);
}

// One round: size bytes aligned to align from h, or NULL.
static void *alloc_once(smp_heap_t *h, size_t size, size_t align, bool zero, bool nowait) {
  if (size <= SMP_SMALL_MAX && align <= SMP_PAGE_SIZE) {
    unsigned cls = smp_sizeclass_aligned(size, align);
    if (cls < SMP_CLASS_COUNT) {
      void *p = class_alloc(h, cls, nowait);
      if (p == NULL) return NULL;
      smp_block_unmark(p);
      if (zero) memset(p, 0, smp_class_info[cls].size); // all of it: realloc may keep it
      return p;
    }
  }
  return smp_large_alloc(&h->pages, size, align, zero, nowait);
}

static bool oom_retry(size_t size, smp_heap_t *h) {
  oom_pair_t *pair = smp_load_acquire(&oom_current);
  if (pair == NULL || in_oom_handler) return false;
  in_oom_handler = true; // a request inside the handler that fails does not call it again
  int again = pair->fn(size, h->type_entry ? SMP_HEAP_DEFAULT : h, pair->arg); // see smp_heap_of
  in_oom_handler = false;
  return again != 0;
}

static void *reserve_alloc(size_t size, size_t align, bool zero, bool nowait) {
  smp_heap_t *r = smp_load_acquire(&reserve);
  return r ? alloc_once(r, size, align, zero, nowait) : NULL;
}

SMP_NORETURN static void out_of_memory(const char *function, size_t size, const smp_heap_t *h) {
  smp_text_t t;
  smp_text_init(&t, 2);
  smp_text_str(&t, "smpalloc: ");
  smp_text_str(&t, function);
  smp_text_str(&t, ": out of memory: ");
  smp_text_u64(&t, size, 0);
  smp_text_str(&t, " bytes from heap \"");
  smp_text_str(&t, h->name);
  smp_text_str(&t, "\" with SMP_NOFAIL (the handler and the reserve could not help)\n");
  smp_text_flush(&t);
  abort();
}

void *smp_heapapi_default_failed(size_t size, size_t align, bool zero) {
  smp_heap_t *h = SMP_HEAP_DEFAULT;
  smp_fetch_add_relaxed(&h->failures, 1);
  while (oom_retry(size, h)) {
    void *p = alloc_once(h, size, align, zero, false);
    if (p) return p;
  }
  return NULL;
}

// sampled: prof sampled the request already (smp_heapapi_alloc's caller asked it).
static void *heap_alloc_as(smp_heap_t *h, size_t size, unsigned flags, const char *function,
                           bool sampled) {
  if (!flags_valid(flags)) {
    errno = EINVAL;
    return NULL;
  }
  smp_init_ensure();
  bool debug = smp_options.debug && !h->is_default;
  if (debug) smp_heapapi_enter(h, function); else check_live(h, function);
  size_t align = align_of(flags);
  bool zero = flags & SMP_ZERO, nowait = flags & SMP_NOWAIT;
  size_t asked = size;
  // A hardened block (every one, every one but malloc's small ones in fill mode, or one prof
  // samples): room for its header and canary. Its stack is recorded if every block's is, or
  // if prof sampled it (in fill mode the others are hardened without one: the profile counts
  // only samples).
  bool sample = SMP_UNLIKELY(smp_harden_on) && !smp_harden_all &&
                (sampled || (smp_prof_on && smp_prof_sample(asked)));
  bool harden = SMP_UNLIKELY(smp_harden_on) && (smp_harden_all || smp_harden_fill || sample);
  if (harden) {
    if (!smp_harden_block_size(asked, align, &size)) size = SIZE_MAX; // fails below
    // A small block is cleared by finish, after its free pattern is checked; a large one by
    // its heap, which knows when its pages are fresh (a sparse calloc stays sparse).
    zero = zero && size > SMP_SMALL_MAX;
  }
  void *p;
  if ((p = alloc_once(h, size, align, zero, nowait)) == NULL && !nowait) {
    smp_fetch_add_relaxed(&h->failures, 1); // one per request, however often it is retried
    // Hardened, the quarantine's blocks (and those the handler freed into it) go back first.
    if (smp_harden_on) {
      smp_harden_drain();
      p = alloc_once(h, size, align, zero, false);
    }
    while (p == NULL && oom_retry(asked, h)) {
      if (smp_harden_on) smp_harden_drain();
      p = alloc_once(h, size, align, zero, false);
    }
  }
  if (p == NULL && (flags & (SMP_RESERVE | SMP_NOFAIL))) p = reserve_alloc(size, align, zero, nowait);
  if (p == NULL && (flags & SMP_NOFAIL)) out_of_memory(function, asked, h);
  if (p == NULL) errno = nowait ? EAGAIN : ENOMEM;
  if (p && harden)
    p = smp_harden_finish(p, asked, align, flags & SMP_ZERO, zero, smp_harden_all || sample, function);
  if (debug) smp_heapapi_leave(h);
  return p;
}

static void *heap_alloc(smp_heap_t *h, size_t size, unsigned flags, const char *function) {
  return heap_alloc_as(h, size, flags, function, false);
}

void *smp_heapapi_alloc(smp_heap_t *h, size_t size, size_t align, bool zero, bool sampled) {
  unsigned flags = (zero ? SMP_ZERO : 0) |
                   (align > SMP_MIN_ALIGN ? (unsigned)__builtin_ctzll(align) << ALIGN_SHIFT : 0);
  return heap_alloc_as(h, size, flags, "malloc", sampled);
}

SMP_EXPORT void *smp_heap_malloc(smp_heap_t *h, size_t size, unsigned flags) {
  if (h == NULL || h == SMP_HEAP_DEFAULT) {
    if (SMP_LIKELY(flags == 0)) return smp_alloc_fast(size);
    return heap_alloc(SMP_HEAP_DEFAULT, size, flags, "smp_heap_malloc");
  }
  // debug:1 has no heap caches: a miss. Hardened, small_max is 0 and the 16-byte class a
  // request of 0 bytes pops is one no hardened block uses (harden.h): a miss too.
  if (SMP_LIKELY(flags == 0 && size <= SMP_ALLOC_LIMIT(small_max))) {
    void *p = smp_hcache_alloc_fast(&h->caches, smp_sizeclass_of(size));
    if (SMP_LIKELY(p != NULL)) {
      smp_block_unmark(p);
      return p;
    }
  }
  return heap_alloc(h, size, flags, "smp_heap_malloc");
}

SMP_EXPORT void *smp_heap_calloc(smp_heap_t *h, size_t count, size_t size, unsigned flags) {
  size_t n;
  if (__builtin_mul_overflow(count, size, &n)) {
    if (flags & SMP_NOFAIL) out_of_memory("smp_heap_calloc", SIZE_MAX, h ? h : SMP_HEAP_DEFAULT);
    errno = ENOMEM;
    return NULL;
  }
  return heap_alloc(h ? h : SMP_HEAP_DEFAULT, n, flags | SMP_ZERO, "smp_heap_calloc");
}

SMP_EXPORT void *smp_mallocx(size_t size, unsigned flags) {
  if (SMP_LIKELY(flags == 0)) return smp_alloc_fast(size);
  return heap_alloc(SMP_HEAP_DEFAULT, size, flags, "smp_mallocx");
}

smp_heap_t *smp_alloc_heap_of(const void *p) {
  if (p == NULL) return NULL;
  smp_typed_block_t tb;
  if (smp_types_find(p, &tb)) p = tb.block;
  smp_hardened_t hb;
  if (smp_harden_find(p, &hb)) p = hb.start;
  smp_chunk_t *c = smp_pagemap_find(p);
  if (c) {
    smp_span_t *s = smp_pagemap_span_checked(p);
    if (s == NULL) return NULL;
    bool start = s->state == SMP_SPAN_SMALL ? smp_span_is_block(s, p) : smp_span_start(s) == p;
    return start ? smp_heap_of_chunk(c) : NULL;
  }
  smp_pageheap_t *ph = smp_large_huge_heap(p);
  return ph ? (smp_heap_t *)ph->owner : NULL;
}

// smp_heap_realloc with SMP_NOWAIT: only what needs no lock and no system call, a small block
// that stays where it is (its class holds size, it is aligned as asked, it stays in its heap);
// anything else (a move, a large or huge block, size 0, a block to be checked for a double
// free) is EAGAIN with p untouched. Lookups here read the chunk map and descriptor only.
static void *realloc_nowait(smp_heap_t *h, void *p, size_t size, unsigned flags) {
  smp_span_t *s = smp_pagemap_span_checked(p);
  if (s && s->state == SMP_SPAN_SMALL && smp_span_is_block(s, p) && !smp_block_is_marked(p)) {
    smp_heap_t *from = smp_heap_of_chunk(smp_span_chunk(s));
    size_t usable = smp_class_info[s->sizeclass].size;
    if ((h == NULL || h == from) && size != 0 && size <= usable &&
        ((uintptr_t)p & (align_of(flags) - 1)) == 0) {
      smp_asan_unpoison(p, usable); // its slack is the program's now (asan.h)
      return p;
    }
  }
  errno = EAGAIN;
  return NULL;
}

// A hardened block is checked (canary, state), then resized where it lies if it fits there
// (in its heap, aligned as asked), else moved.
static void *harden_realloc(const smp_hardened_t *hb, smp_heap_t *h, size_t size, unsigned flags,
                            const char *function) {
  if (hb->quarantined) smp_harden_free(hb, function); // reports the block freed before
  if (size == 0) {
    smp_harden_free(hb, function);
    return NULL;
  }
  if ((h == NULL || h == smp_alloc_heap_of(hb->start)) &&
      ((uintptr_t)hb->user & (align_of(flags) - 1)) == 0 &&
      smp_harden_resize(hb, size, flags & SMP_ZERO, function))
    return hb->user;
  void *q = heap_alloc(h ? h : smp_alloc_heap_of(hb->start), size, flags & ~SMP_ZERO, function);
  if (q == NULL) return NULL;
  memcpy(q, hb->user, hb->size < size ? hb->size : size);
  if ((flags & SMP_ZERO) && size > hb->size) memset((char *)q + hb->size, 0, size - hb->size);
  smp_harden_free(hb, function);
  return q;
}

void *smp_alloc_heap_realloc(smp_heap_t *h, void *p, size_t size, unsigned flags,
                             const char *function) {
  if (!flags_valid(flags)) {
    errno = EINVAL;
    return NULL;
  }
  if (p == NULL) return heap_alloc(h ? h : SMP_HEAP_DEFAULT, size, flags, function);
  smp_init_ensure();
  if (flags & SMP_NOWAIT) {
    // A hardened block in a chunk resizes where it lies without a lock or a system call (its
    // header and canary move); one that does not fit cannot move without waiting. (A huge
    // block's lookup takes a lock: it fails below, as any huge block does.)
    smp_hardened_t hb;
    if (SMP_UNLIKELY(smp_harden_on) && smp_pagemap_find(p) && smp_harden_find(p, &hb)) {
      if (hb.quarantined) smp_harden_check(&hb, function); // reports the block freed before
      if (size != 0 && (h == NULL || h == smp_heap_of_chunk(smp_pagemap_find(hb.start))) &&
          ((uintptr_t)hb.user & (align_of(flags) - 1)) == 0 &&
          smp_harden_resize(&hb, size, flags & SMP_ZERO, function))
        return hb.user;
      errno = EAGAIN;
      return NULL;
    }
    return realloc_nowait(h, p, size, flags);
  }
  smp_typed_block_t tb;
  if (smp_types_find(p, &tb)) return smp_types_realloc_block(&tb, p, size, h, flags, function);
  smp_hardened_t hb;
  if (SMP_UNLIKELY(smp_harden_find(p, &hb))) return harden_realloc(&hb, h, size, flags, function);
  size_t usable;
  bool small;
  smp_heap_t *from = smp_alloc_block_info(p, function, &usable, &small); // validates p
  smp_asan_unpoison(p, usable); // its slack may be kept, zeroed or copied (asan.h)
  if (size == 0) {
    smp_free_fast(p);
    return NULL;
  }
  smp_heap_t *to = h ? h : from;
  check_live(to, function);
  size_t align = align_of(flags);
  bool zero = flags & SMP_ZERO;
  if (from == to && ((uintptr_t)p & (align - 1)) == 0) {
    if (small) {
      if (smp_alloc_realloc_keeps(size, usable)) return p;
    } else if (!(size <= SMP_SMALL_MAX && size < usable / 2)) {
      if (smp_large_resize(p, size)) {
        if (zero && size > usable) memset((char *)p + usable, 0, size - usable);
        return p;
      }
      void *q = align <= smp_os_page_size() ? smp_large_remap(p, size) : NULL; // huge: mremap
      if (q) {
        if (zero && size > usable) memset((char *)q + usable, 0, size - usable);
        return q;
      }
    }
  }
  void *q = heap_alloc(to, size, flags & ~SMP_ZERO, function);
  if (q == NULL) return NULL;
  memcpy(q, p, usable < size ? usable : size);
  if (zero && size > usable) memset((char *)q + usable, 0, size - usable);
  smp_free_fast(p);
  return q;
}

SMP_EXPORT void *smp_heap_realloc(smp_heap_t *h, void *p, size_t size, unsigned flags) {
  return smp_alloc_heap_realloc(h ? h : SMP_HEAP_DEFAULT, p, size, flags, "smp_heap_realloc");
}

SMP_EXPORT void *smp_reallocx(void *p, size_t size, unsigned flags) {
  return smp_alloc_heap_realloc(NULL, p, size, flags, "smp_reallocx");
}

SMP_EXPORT smp_heap_t *smp_heap_create(const char *name, size_t limit) {
  smp_init_ensure();
  return smp_heap_new(name, limit);
}

SMP_EXPORT smp_heap_t *smp_heap_create_in(const char *name, void *base, size_t len, unsigned flags) {
  smp_init_ensure();
  int err;
  smp_heap_t *h = smp_heap_new_region(name, base, len, flags, &err);
  if (h == NULL) errno = err;
  return h;
}

SMP_EXPORT void smp_heap_destroy(smp_heap_t *h) {
  if (h == NULL) return;
  if (h == SMP_HEAP_DEFAULT || smp_load_relaxed(&reserve) == h)
    smp_debug_fatal("smp_heap_destroy", "the default heap and the reserve cannot be destroyed", h);
  check_live(h, "smp_heap_destroy");
  smp_harden_heap_dying(h); // first: no eviction gives a block back to it from now on
  if (smp_options.debug) {
    smp_store_release(&h->state, SMP_HEAP_DEAD); // then users: see smp_heapapi_enter
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load(&h->users) != 0)
      smp_debug_fatal("smp_heap_destroy", "heap in use by another thread", h);
  }
  smp_types_heap_gone(h);
  smp_harden_heap_gone(h); // after the types': their visit reads the headers this clears
  smp_heap_delete(h, smp_load_acquire(&smp_background_state) == SMP_BG_RUNNING);
}

// A visit's callback sees a typed block as the program does: its pointer, past the header.
typedef struct visit_call {
  int (*fn)(void *, size_t, void *);
  void *arg;
} visit_call_t;
// Hardened, it sees a live hardened block's pointer and size, and no block in the quarantine.
static int visit_typed(void *block, size_t usable, void *arg) {
  visit_call_t *v = arg;
  if (smp_harden_on) {
    char *hardened;
    size_t size;
    if (smp_harden_user_of(block, usable, &hardened, &size))
      block = hardened, usable = size;
    else if (smp_harden_all) // then quarantined
      return 0;
  }
  void *user;
  size_t user_usable;
  if (smp_types_user_of(block, usable, &user, &user_usable)) return v->fn(user, user_usable, v->arg);
  return v->fn(block, usable, v->arg);
}

SMP_EXPORT int smp_heap_visit(smp_heap_t *h, int (*fn)(void *, size_t, void *), void *arg) {
  if (fn == NULL) return EINVAL;
  smp_init_ensure();
  h = h ? h : SMP_HEAP_DEFAULT;
  check_live(h, "smp_heap_visit");
  if (!smp_load_acquire(&smp_types_used) && !smp_harden_on) return smp_heap_visit_blocks(h, fn, arg);
  visit_call_t v = {fn, arg};
  if (smp_harden_on) smp_harden_visit_begin();
  int r = smp_heap_visit_blocks(h, visit_typed, &v);
  // The default heap's blocks include its types' own heaps' (smpalloc.h, SMP_TYPE_OWN_HEAP).
  if (r == 0 && h == SMP_HEAP_DEFAULT) r = smp_types_visit_own_heaps(visit_typed, &v);
  if (smp_harden_on) smp_harden_visit_end();
  return r;
}

SMP_EXPORT smp_heap_t *smp_heap_of(const void *p) {
  smp_init_ensure();
  smp_heap_t *h = smp_alloc_heap_of(p);
  return h && h->type_entry ? SMP_HEAP_DEFAULT : h; // a type's own heap is the default's part
}

SMP_EXPORT smp_heap_t *smp_heap_default(void) { return SMP_HEAP_DEFAULT; }

SMP_EXPORT const char *smp_heap_name(const smp_heap_t *h) { return (h ? h : SMP_HEAP_DEFAULT)->name; }

SMP_EXPORT int smp_heap_set_limit(smp_heap_t *h, size_t limit) {
  if (h == NULL || h == SMP_HEAP_DEFAULT || h->is_region) return EINVAL;
  check_live(h, "smp_heap_set_limit");
  smp_pageheap_set_limit(&h->pages, limit ? (limit + SMP_PAGE_SIZE - 1) >> SMP_PAGE_SHIFT : 0);
  return 0;
}

// The version 1 fields must be asked for at least (as smp_stats_get).
static bool stats_request_valid(const smp_stats_t *s) {
  return s != NULL && s->version != 0 && s->size >= offsetof(smp_stats_t, in_use) + sizeof s->in_use;
}

SMP_EXPORT int smp_heap_stats_get(smp_heap_t *h, smp_stats_t *out) {
  if (!stats_request_valid(out)) return EINVAL;
  smp_init_ensure();
  if (h == NULL || h == SMP_HEAP_DEFAULT) return smp_stats_get(out);
  check_live(h, "smp_heap_stats_get");
  uint32_t filled = out->size < sizeof(smp_stats_t) ? out->size : (uint32_t)sizeof(smp_stats_t);
  smp_stats_t s = {.version = SMP_STATS_VERSION, .size = filled};
  smp_heap_stats_fill(h, &s, NULL, NULL);
  s.percpu = 0;
  s.cpus = smp_os_cpus_allowed();
  memcpy(out, &s, filled);
  return 0;
}

void smp_heapapi_reserve_stats(uint64_t *size, uint64_t *in_use, smp_gather_t *g) {
  *size = *in_use = 0;
  if (!smp_lock_gather(&reserve_lock, g)) return;
  smp_heap_t *r = smp_load_relaxed(&reserve);
  *size = r ? reserve_len : 0;
  if (r) {
    smp_stats_t s = {0};
    smp_heap_stats_fill(r, &s, NULL, g);
    *in_use = s.in_use;
  }
  smp_lock_release(&reserve_lock);
}

SMP_EXPORT int smp_reserve_set(size_t bytes) {
  smp_init_ensure();
  if (bytes > ((size_t)1 << SMP_ADDRESS_BITS)) return ENOMEM;
  bytes = smp_align_up(bytes < SMP_REGION_MIN && bytes ? SMP_REGION_MIN : bytes, SMP_PAGE_SIZE);
  smp_lock_acquire(&reserve_lock);
  smp_heap_t *old = smp_load_relaxed(&reserve);
  int err = 0;
  if (old) {
    smp_stats_t s = {0};
    smp_heap_stats_fill(old, &s, NULL, NULL);
    if (s.in_use) err = EBUSY;
  }
  // A replaced reserve is not destroyed: a thread may have loaded it just before and be drawing
  // on it, and its cached blocks may still be freed. It stays, no longer drawn on; its memory
  // is a few pre-faulted pages that a program sets once or twice.
  void *mem = NULL;
  smp_heap_t *r = NULL;
  if (err == 0 && bytes) {
    mem = smp_os_map_populated(bytes);
    if (mem == NULL) err = ENOMEM;
    else if ((r = smp_heap_new_region("reserve", mem, bytes, SMP_REGION_META_OUTSIDE, &err)) == NULL)
      smp_os_unmap(mem, bytes);
  }
  if (err == 0) {
    smp_store_release(&reserve, r);
    reserve_len = r ? bytes : 0;
  }
  smp_lock_release(&reserve_lock);
  return err;
}

void smp_heapapi_lock_fork(void) { smp_lock_acquire(&reserve_lock); }
void smp_heapapi_unlock_fork(void) { smp_lock_release(&reserve_lock); }

SMP_EXPORT void smp_set_oom_handler(int (*fn)(size_t, smp_heap_t *, void *), void *arg) {
  smp_lock_acquire(&oom_lock);
  oom_pair_t *pair = NULL;
  if (fn) {
    pair = &oom_pairs[oom_next++ % SMP_ARRAY_LEN(oom_pairs)];
    pair->fn = fn;
    pair->arg = arg;
  }
  smp_store_release(&oom_current, pair);
  smp_lock_release(&oom_lock);
}
