// Layer: heap. See heap.h.
#include <errno.h>
#include <string.h>

#include "asan.h"
#include "frontend.h"
#include "heap.h"
#include "large.h"
#include "options.h"
#include "os.h"
#include "sizeclass.h"
#include "span.h"

smp_heap_t smp_heap_default_obj = {
    .pages = {.lock = SMP_LOCK_INIT, .decay_due_ms = UINT64_MAX, .may_purge = true,
              .class_pages = true, .central = &smp_heap_default_obj.central,
              .owner = &smp_heap_default_obj},
    .central = {.cls = {[0 ... SMP_CLASS_COUNT - 1] = {.lock = SMP_LOCK_INIT}},
                .pages = &smp_heap_default_obj.pages, .transfer = &smp_transfer_default},
    .caches = {.lock = SMP_LOCK_INIT, .central = &smp_heap_default_obj.central},
    .state = SMP_HEAP_LIVE,
    .is_default = true,
    .name = "default",
};
smp_central_t *const smp_central_default = &smp_heap_default_obj.central;

static smp_lock_t registry_lock = SMP_LOCK_INIT;
static smp_heap_t *others;      // registry_lock: live heaps other than the default one
static _Atomic size_t others_count; // written under registry_lock; read relaxed without it
static smp_heap_t *spare;       // registry_lock: destroyed heap objects, linked through next
static void *quarantine[SMP_HEAP_QUARANTINE]; // registry_lock: retired chunks, a ring
static size_t quarantine_head, quarantine_len;
static smp_chunk_t *to_retire;  // registry_lock: chunks of destroyed heaps whose memory the
                                // background thread gives back (linked through next)

static void link_locked(smp_heap_t *h) {
  h->prev = NULL;
  h->next = others;
  if (others) others->prev = h;
  others = h;
  smp_store_relaxed(&others_count, smp_load_relaxed(&others_count) + 1);
}

static void unlink_locked(smp_heap_t *h) {
  if (h->prev) h->prev->next = h->next; else others = h->next;
  if (h->next) h->next->prev = h->prev;
  h->next = h->prev = NULL;
  smp_store_relaxed(&others_count, smp_load_relaxed(&others_count) - 1);
}

// A zeroed heap object named name, its parts set up; NULL if the OS has no memory.
static smp_heap_t *object_new_locked(const char *name, bool region, bool may_purge) {
  smp_heap_t *h = spare;
  bool reused = h != NULL;
  if (h) spare = h->next;
  else if ((h = smp_os_map(sizeof *h)) == NULL) return NULL;
  // A reused object keeps its caches' lock as it is: an exiting thread may still take it to
  // find its cache detached (hcache.c: release_way), after this heap's predecessor died.
  size_t lock_at = offsetof(smp_heap_t, caches) + offsetof(smp_hcache_set_t, lock);
  size_t lock_end = lock_at + sizeof(smp_lock_t);
  memset(h, 0, lock_at);
  memset((char *)h + lock_end, 0, sizeof *h - lock_end);
  smp_pageheap_init(&h->pages, region, may_purge, false);
  h->pages.owner = h;
  smp_central_init(&h->central, &h->pages);
  smp_hcache_init_set(&h->caches, &h->central, !reused);
  h->is_region = region;
  const char *n = name ? name : "heap";
  size_t len = strnlen(n, sizeof h->name - 1);
  memcpy(h->name, n, len);
  h->name[len] = 0;
  return h;
}

smp_heap_t *smp_heap_new(const char *name, size_t limit) {
  smp_lock_acquire(&registry_lock);
  smp_heap_t *h = object_new_locked(name, false, true);
  if (h) {
    h->pages.limit_pages = limit ? (limit + SMP_PAGE_SIZE - 1) >> SMP_PAGE_SHIFT : 0;
    smp_store_release(&h->state, SMP_HEAP_LIVE);
    link_locked(h);
  }
  smp_lock_release(&registry_lock);
  if (h == NULL) errno = ENOMEM;
  return h;
}

// Pages of the header of a region chunk of n pages whose header lies in its own first pages.
static size_t header_pages(size_t n) {
  return (SMP_CHUNK_HEADER_BYTES(n) + SMP_PAGE_SIZE - 1) / SMP_PAGE_SIZE;
}

// Whether [start, end) touches memory of ours that the program does not own: in our chunks,
// every page must lie in a large block (a region inside a block from malloc is fine). A region
// over a chunk header, a free page run or a small span would overwrite our metadata or hand out
// memory that is someone else's; free's paths also test the owned chunk before the region map,
// and would take a region block over a small span for that span's. Huge blocks are mappings of
// their own, outside every chunk, and need no check.
static bool over_our_memory(uintptr_t start, uintptr_t end) {
  for (uintptr_t a = start; a < end; a += SMP_PAGE_SIZE) {
    if (!smp_pagemap_owns((void *)a)) {
      a = smp_align_up(a + 1, SMP_CHUNK_SIZE) - SMP_PAGE_SIZE; // next chunk
      continue;
    }
    smp_chunk_t *c = smp_pagemap_chunk((void *)a);
    size_t page = smp_pagemap_page((void *)a);
    if (page < c->first) return true;
    smp_lock_acquire(&c->heap->lock); // span states are written under it
    smp_span_t *s = &c->spans[c->page_span[page]];
    bool in_block = s->state == SMP_SPAN_LARGE && s->page <= page &&
                    page < (size_t)s->page + s->npages;
    smp_lock_release(&c->heap->lock);
    if (!in_block) return true;
  }
  return false;
}

// Forget region chunk c (its pages go back to the caller).
static void region_chunk_forget(smp_chunk_t *c, void *arg) {
  (void)arg;
  // The region is its owner's again: none of our poison stays on it (asan.h).
  smp_asan_unpoison(c->base + ((size_t)c->first << SMP_PAGE_SHIFT),
                    (size_t)(c->end - c->first) << SMP_PAGE_SHIFT);
  smp_pagemap_region_remove(c, 0);
}

smp_heap_t *smp_heap_new_region(const char *name, void *base, size_t len, unsigned flags,
                                int *err) {
  *err = EINVAL;
  if (base == NULL || len < SMP_REGION_MIN ||
      (flags & ~(SMP_REGION_META_OUTSIDE | SMP_REGION_PURGE)) != 0 ||
      (uintptr_t)base + len < (uintptr_t)base || (uintptr_t)base + len > ((uintptr_t)1 << SMP_ADDRESS_BITS))
    return NULL;
  uintptr_t start = smp_align_up((uintptr_t)base, SMP_PAGE_SIZE);
  uintptr_t end = smp_align_down((uintptr_t)base + len, SMP_PAGE_SIZE);
  if (end <= start) return NULL;
  bool outside = flags & SMP_REGION_META_OUTSIDE;
  smp_lock_acquire(&registry_lock); // also keeps region registration out of a fork
  smp_heap_t *h = NULL;
  if (smp_pagemap_region_overlaps((void *)start, end - start) || over_our_memory(start, end))
    goto out;
  *err = ENOMEM;
  size_t pages = (end - start) >> SMP_PAGE_SHIFT, meta_len = 0;
  if (outside) { // one mapping for every header
    for (size_t done = 0; done < pages; done += SMP_CHUNK_PAGES) {
      size_t n = pages - done < SMP_CHUNK_PAGES ? pages - done : SMP_CHUNK_PAGES;
      meta_len += smp_align_up(SMP_CHUNK_HEADER_BYTES(n), SMP_CACHELINE);
    }
    meta_len = smp_align_up(meta_len, smp_os_page_size());
  }
  h = object_new_locked(name, true, flags & SMP_REGION_PURGE);
  if (h == NULL) goto out;
  h->region_flags = flags;
  char *meta = NULL;
  if (outside && (meta = smp_os_map(meta_len)) == NULL) goto fail;
  h->meta = meta;
  h->meta_len = meta_len;
  size_t usable = 0;
  for (size_t done = 0; done < pages; done += SMP_CHUNK_PAGES) {
    size_t n = pages - done < SMP_CHUNK_PAGES ? pages - done : SMP_CHUNK_PAGES;
    char *piece = (char *)start + (done << SMP_PAGE_SHIFT);
    size_t hp = outside ? 0 : header_pages(n);
    if (hp >= n) continue; // no room for a page after the header
    smp_chunk_t *c = outside ? (smp_chunk_t *)meta : (smp_chunk_t *)piece;
    if (outside) meta += smp_align_up(SMP_CHUNK_HEADER_BYTES(n), SMP_CACHELINE);
    memset(c, 0, SMP_CHUNK_HEADER_BYTES(n));
    c->base = piece;
    c->first = (uint16_t)hp;
    c->end = (uint16_t)n;
    c->heap = &h->pages;
    if (!smp_pagemap_region_add(c, 0)) goto fail;
    smp_pageheap_add_chunk(&h->pages, c);
    usable += n - hp;
  }
  if (usable == 0) goto fail;
  h->pages.limit_pages = 0;
  smp_store_release(&h->state, SMP_HEAP_LIVE);
  link_locked(h);
  *err = 0;
  goto out;
fail:
  smp_pageheap_release_all(&h->pages, region_chunk_forget, NULL);
  if (h->meta) smp_os_unmap(h->meta, h->meta_len);
  smp_store_release(&h->state, SMP_HEAP_DEAD);
  h->next = spare;
  spare = h;
  h = NULL;
out:
  smp_lock_release(&registry_lock);
  return h;
}

// Chunk c of a destroyed heap over the OS leaves the heap (registry lock held): no longer ours
// (the free paths never read it again) and retired (a free into it is reported); its memory is
// given back after the lock is released, by the destroying thread or, deferred, by the
// background thread (smp_heap_retire_deferred): freeing a GiB of pages costs the kernel tens of
// milliseconds, which the destroying thread then does not wait for.
static void os_chunk_retire(smp_chunk_t *c, void *arg) {
  smp_chunk_t **list = arg;
  smp_pagemap_set_owned(c, false);
  smp_pagemap_set_retired(c, true);
  c->next = *list;
  *list = c;
}

// Give the memory of the chunks on list back, keeping their addresses (registry lock not held).
static void retire_memory(smp_chunk_t *list) {
  for (smp_chunk_t *c = list, *next; c; c = next) {
    next = c->next; // read before the chunk's memory goes
    smp_asan_unpoison(c, SMP_CHUNK_SIZE);
    bool kept = smp_os_retire(c, SMP_CHUNK_SIZE);
    if (!kept) smp_os_unmap(c, SMP_CHUNK_SIZE);
    smp_lock_acquire(&registry_lock);
    if (!kept) {
      smp_pagemap_set_retired(c, false); // its addresses are not ours any more
    } else {
      if (quarantine_len == SMP_HEAP_QUARANTINE) { // the oldest leaves: its addresses may be reused
        void *old = quarantine[quarantine_head];
        quarantine_head = (quarantine_head + 1) % SMP_HEAP_QUARANTINE;
        quarantine_len--;
        smp_pagemap_set_retired(old, false);
        smp_os_unmap(old, SMP_CHUNK_SIZE);
      }
      quarantine[(quarantine_head + quarantine_len++) % SMP_HEAP_QUARANTINE] = c;
    }
    smp_lock_release(&registry_lock);
  }
}

void smp_heap_delete(smp_heap_t *h, bool deferred) {
  smp_lock_acquire(&registry_lock); // no pass or report is looking at h once it is unlinked
  unlink_locked(h);
  smp_store_release(&h->state, SMP_HEAP_DEAD);
  smp_hcache_detach_all(&h->caches);
  smp_large_release_heap(&h->pages);
  smp_chunk_t *chunks = NULL;
  smp_pageheap_release_all(&h->pages, h->is_region ? region_chunk_forget : os_chunk_retire,
                           &chunks);
  // debug:1 keeps what a thread racing the destroy could still read: the chunks stay mapped
  // (no longer owned, retired: a free there is reported), the region headers too, and the
  // object is never reused (it reads DEAD). Such a race is the program's bug, which debug mode
  // exists to report (heapapi.c: smp_heapapi_enter), not to turn into a fault.
  bool keep = smp_options.debug;
  if (h->meta && !keep) smp_os_unmap(h->meta, h->meta_len);
  if (!keep) {
    h->next = spare;
    spare = h;
  }
  if (keep) {
    chunks = NULL;
    deferred = false;
  } else if (deferred) { // the background thread's next pass, which starts now
    for (smp_chunk_t *c = chunks, *next; c; c = next) {
      next = c->next;
      c->next = to_retire;
      to_retire = c;
    }
    chunks = NULL;
  }
  smp_lock_release(&registry_lock);
  retire_memory(chunks);
  if (deferred) smp_pageheap_want_pass();
}

bool smp_heap_retired(const void *p) { return smp_pagemap_is_retired(p); }

bool smp_heap_each(void (*fn)(smp_heap_t *h, void *arg), void *arg, smp_gather_t *g) {
  bool locked = smp_lock_gather(&registry_lock, g);
  fn(SMP_HEAP_DEFAULT, arg); // static: never unlinked, no lock needed to reach it
  if (!locked) return false;
  for (smp_heap_t *h = others; h; h = h->next) fn(h, arg);
  smp_lock_release(&registry_lock);
  return true;
}

size_t smp_heap_count(void) { return smp_load_relaxed(&others_count) + 1; }

void smp_heap_retire_deferred(void) {
  smp_lock_acquire(&registry_lock);
  smp_chunk_t *chunks = to_retire;
  to_retire = NULL;
  smp_lock_release(&registry_lock);
  retire_memory(chunks);
}

static void lock_heap(smp_heap_t *h) {
  smp_lock_acquire(&h->caches.lock);
  smp_central_lock_all(&h->central);
  smp_pageheap_lock_fork(&h->pages);
}
static void unlock_heap(smp_heap_t *h) {
  smp_pageheap_unlock_fork(&h->pages);
  smp_central_unlock_all(&h->central);
  smp_lock_release(&h->caches.lock);
}

void smp_heap_lock_all(void) {
  smp_lock_acquire(&registry_lock);
  lock_heap(SMP_HEAP_DEFAULT);
  for (smp_heap_t *h = others; h; h = h->next) lock_heap(h);
}

void smp_heap_unlock_all(void) {
  for (smp_heap_t *h = others; h; h = h->next) unlock_heap(h);
  unlock_heap(SMP_HEAP_DEFAULT);
  smp_lock_release(&registry_lock);
}

void smp_heap_stats_fill(smp_heap_t *h, smp_stats_t *out, smp_heap_classes_t *classes,
                         smp_gather_t *g) {
  smp_pageheap_stats_t ps;
  smp_pageheap_stats(&h->pages, &ps, g);
  uint64_t cached_blocks[SMP_CLASS_COUNT];
  smp_hcache_cached(&h->caches, cached_blocks, g);
  uint64_t small_out = 0, central_free = 0, cached = 0; // out and free: not counted when
                                                        // statistics are compiled out
  for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) {
    size_t size = smp_class_info[c].size;
    int64_t held = (int64_t)(smp_counter_get(&h->caches.took[c]) - smp_counter_get(&h->caches.gave[c]));
    uint64_t held_blocks = held > 0 ? (uint64_t)held : 0;
    smp_central_class_stats_t ccs;
    smp_central_stats(&h->central, c, &ccs, g);
    uint64_t cap = (uint64_t)ccs.spans * smp_class_info[c].capacity;
    cached += cached_blocks[c] * size;
    if (SMP_STATS) {
      small_out += held_blocks * size;
      central_free += (cap > held_blocks ? cap - held_blocks : 0) * size;
    }
    if (classes) {
      classes->spans[c] = ccs.spans;
      classes->out[c] = held_blocks;
      classes->cached[c] = cached_blocks[c];
    }
  }
  size_t huge, cached_huge;
  size_t huge_count = smp_large_count_of(&h->pages, &huge, g);
  size_t cached_count = smp_large_cached_of(&h->pages, &cached_huge, g);
  out->in_use = (small_out > cached ? small_out - cached : 0) + ps.large_bytes + huge;
  uint64_t quarantined = 0;
  for (unsigned k = 0; k < 3; k++) quarantined += smp_load_relaxed(&h->quarantined_bytes[k]);
  out->in_use = out->in_use > quarantined ? out->in_use - quarantined : 0;
  out->cached = cached;
  out->free = central_free + ps.free_bytes;
  out->dirty = ps.free_dirty;
  out->mapped = ps.mapped + huge + cached_huge;
  out->resident = smp_pageheap_resident(&h->pages, g) + smp_large_resident_of(&h->pages, g);
  out->purged = ps.purged_bytes;
  out->purges = ps.purge_calls;
  out->mappings = h->is_region ? 0 : ps.chunks + huge_count + cached_count;
  out->chunks_unmapped = ps.chunks_unmapped;
  out->limit = h->is_region ? ps.mapped : ps.limit;
  out->held = ps.large_bytes + ps.small_bytes + ps.huge_bytes;
  out->failures = smp_load_relaxed(&h->failures);
  out->huge_cached = cached_huge;
}

// ---- visit ----
// fn runs with no lock held (it may allocate from other heaps, and a fork may come meanwhile):
// the live blocks are listed first, under the heap's locks, then visited. No other thread uses
// the heap (the contract), so the list stays true; the background thread may only give free
// pages back.

typedef struct ptr_set {
  uintptr_t *v;
  size_t n, cap, bytes;
} ptr_set_t;

static void set_add(void *b, void *arg) {
  ptr_set_t *ps = arg;
  if (ps->n < ps->cap) ps->v[ps->n++] = (uintptr_t)b;
}
static void set_count(void *b, void *arg) {
  (void)b;
  ((ptr_set_t *)arg)->cap++;
}
static bool set_map(ptr_set_t *ps, size_t entries) {
  ps->bytes = smp_align_up((entries ? entries : 1) * sizeof(uintptr_t), smp_os_page_size());
  ps->v = smp_os_map(ps->bytes);
  return ps->v != NULL;
}
static void set_unmap(ptr_set_t *ps) {
  if (ps->v) smp_os_unmap(ps->v, ps->bytes);
}

// Heapsort (no allocation: qsort may call malloc, which could refill a cache being listed).
static void sift(uintptr_t *v, size_t i, size_t n) {
  for (size_t c; (c = 2 * i + 1) < n; i = c) {
    if (c + 1 < n && v[c + 1] > v[c]) c++;
    if (v[i] >= v[c]) return;
    uintptr_t t = v[i]; v[i] = v[c]; v[c] = t;
  }
}
static void set_sort(ptr_set_t *ps) {
  uintptr_t *v = ps->v;
  for (size_t i = ps->n / 2; i-- > 0;) sift(v, i, ps->n);
  for (size_t n = ps->n; n > 1; n--) {
    uintptr_t t = v[0]; v[0] = v[n - 1]; v[n - 1] = t;
    sift(v, 0, n - 1);
  }
}
static bool set_has(const ptr_set_t *ps, uintptr_t b) {
  size_t lo = 0, hi = ps->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (ps->v[mid] < b) lo = mid + 1; else if (ps->v[mid] > b) hi = mid; else return true;
  }
  return false;
}

// The free blocks held by h's caches, sorted; false if out of memory.
static bool cached_blocks(smp_heap_t *h, ptr_set_t *cs) {
  if (h->is_default) { // per-CPU caches drained; other threads' caches read, as a heap's are
    smp_frontend_flush();
    smp_tcache_each_cached(set_count, cs);
    if (!set_map(cs, cs->cap)) return false;
    smp_tcache_each_cached(set_add, cs);
  } else {
    smp_lock_acquire(&h->caches.lock);
    smp_hcache_each_cached(&h->caches, set_count, cs);
    bool ok = set_map(cs, cs->cap);
    if (ok) smp_hcache_each_cached(&h->caches, set_add, cs);
    smp_lock_release(&h->caches.lock);
    if (!ok) return false;
  }
  set_sort(cs);
  return true;
}

// List (or with out NULL, count) h's live blocks in its chunks as (block, usable) pairs.
static size_t list_live_locked(smp_heap_t *h, const ptr_set_t *cs, uintptr_t *out, size_t cap) {
  size_t n = 0;
  for (smp_chunk_t *c = h->pages.chunks; c; c = c->next)
    for (size_t i = c->first; i < c->end;) {
      smp_span_t *s = &c->spans[i];
      if (s->state == SMP_SPAN_SMALL) {
        uint64_t bits[65536 / 64]; // capacity is 16 bits
        memset(bits, 0, ((size_t)s->capacity + 63) / 64 * sizeof bits[0]);
        size_t size = smp_class_info[s->sizeclass].size;
        char *start = smp_span_start(s);
        if (smp_central_free_blocks_locked(s, bits)) // else a corrupted list: the span is skipped
          for (size_t b = 0; b < s->capacity; b++) {
            uintptr_t p = (uintptr_t)(start + b * size);
            if ((bits[b / 64] >> (b % 64)) & 1 || set_has(cs, p)) continue;
            if (out && n < cap) out[2 * n] = p, out[2 * n + 1] = size;
            n++;
          }
      } else if (s->state == SMP_SPAN_LARGE) {
        if (out && n < cap) out[2 * n] = (uintptr_t)smp_span_start(s), out[2 * n + 1] = smp_span_bytes(s);
        n++;
      }
      i += s->npages ? s->npages : 1;
    }
  return n;
}

// held: fn runs with the locks held (see smp_heap_visit_blocks_held), else on a snapshot
// after they are released.
static int visit_blocks(smp_heap_t *h, int (*fn)(void *, size_t, void *), void *arg, bool held) {
  ptr_set_t cs = {0}, live = {0};
  if (!cached_blocks(h, &cs)) return ENOMEM;
  smp_central_lock_all(&h->central);
  smp_pageheap_lock_fork(&h->pages);
  size_t n = list_live_locked(h, &cs, NULL, 0);
  if (!held) {
    smp_pageheap_unlock_fork(&h->pages);
    smp_central_unlock_all(&h->central);
  }
  int r = ENOMEM;
  if (set_map(&live, 2 * n)) { // (held: a system call under the locks, for a tally)
    if (!held) {
      smp_central_lock_all(&h->central);
      smp_pageheap_lock_fork(&h->pages);
    }
    n = list_live_locked(h, &cs, live.v, n);
    if (!held) {
      smp_pageheap_unlock_fork(&h->pages);
      smp_central_unlock_all(&h->central);
    }
    r = 0;
    for (size_t i = 0; i < n && !r; i++) {
      smp_asan_unpoison((void *)live.v[2 * i], live.v[2 * i + 1]); // its usable bytes (asan.h)
      r = fn((void *)live.v[2 * i], live.v[2 * i + 1], arg);
    }
  }
  if (held) {
    smp_pageheap_unlock_fork(&h->pages);
    smp_central_unlock_all(&h->central);
  }
  if (r == 0) r = held ? smp_large_visit_huge_held(&h->pages, fn, arg) : smp_large_visit_huge(&h->pages, fn, arg);
  set_unmap(&live);
  set_unmap(&cs);
  return r;
}

int smp_heap_visit_blocks(smp_heap_t *h, int (*fn)(void *, size_t, void *), void *arg) {
  return visit_blocks(h, fn, arg, false);
}

int smp_heap_visit_blocks_held(smp_heap_t *h, int (*fn)(void *, size_t, void *), void *arg) {
  return visit_blocks(h, fn, arg, true);
}
