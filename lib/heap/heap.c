// Layer: heap. See heap.h.
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"
#include "heap.h"
#include "large.h"
#include "os.h"
#include "sizeclass.h"
#include "span.h"

smp_heap_t smp_heap_default_obj = {
    .pages = {.lock = SMP_LOCK_INIT, .decay_due_ms = UINT64_MAX, .may_purge = true,
              .class_pages = true, .central = &smp_heap_default_obj.central,
              .owner = &smp_heap_default_obj},
    .central = {.cls = {[0 ... SMP_CLASS_COUNT - 1] = {.lock = SMP_LOCK_INIT}},
                .pages = &smp_heap_default_obj.pages},
    .caches = {.lock = SMP_LOCK_INIT, .central = &smp_heap_default_obj.central},
    .state = SMP_HEAP_LIVE,
    .is_default = true,
    .name = "default",
};
smp_central_t *const smp_central_default = &smp_heap_default_obj.central;

static smp_lock_t registry_lock = SMP_LOCK_INIT;
static smp_heap_t *others;      // registry_lock: live heaps other than the default one
static size_t others_count;     // registry_lock
static smp_heap_t *spare;       // registry_lock: destroyed heap objects, linked through next
static void *quarantine[SMP_HEAP_QUARANTINE]; // registry_lock: retired chunks, a ring
static size_t quarantine_head, quarantine_len;

static void link_locked(smp_heap_t *h) {
  h->prev = NULL;
  h->next = others;
  if (others) others->prev = h;
  others = h;
  others_count++;
}

static void unlink_locked(smp_heap_t *h) {
  if (h->prev) h->prev->next = h->next; else others = h->next;
  if (h->next) h->next->prev = h->prev;
  h->next = h->prev = NULL;
  others_count--;
}

// A zeroed heap object named name, its parts set up; NULL if the OS has no memory.
static smp_heap_t *object_new_locked(const char *name, bool region, bool may_purge) {
  smp_heap_t *h = spare;
  if (h) spare = h->next;
  else if ((h = smp_os_map(sizeof *h)) == NULL) return NULL;
  memset(h, 0, sizeof *h);
  smp_pageheap_init(&h->pages, region, may_purge, false);
  h->pages.owner = h;
  smp_central_init(&h->central, &h->pages);
  smp_hcache_init_set(&h->caches, &h->central);
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

// Retire chunk c of a destroyed heap over the OS (registry lock held): see heap.h.
static void os_chunk_retire(smp_chunk_t *c, void *arg) {
  (void)arg;
  smp_pagemap_set_owned(c, false);
  if (!smp_os_retire(c, SMP_CHUNK_SIZE)) {
    smp_os_unmap(c, SMP_CHUNK_SIZE);
    return;
  }
  if (quarantine_len == SMP_HEAP_QUARANTINE) { // the oldest leaves: its addresses may be reused
    void *old = quarantine[quarantine_head];
    quarantine_head = (quarantine_head + 1) % SMP_HEAP_QUARANTINE;
    quarantine_len--;
    smp_pagemap_set_retired(old, false);
    smp_os_unmap(old, SMP_CHUNK_SIZE);
  }
  quarantine[(quarantine_head + quarantine_len++) % SMP_HEAP_QUARANTINE] = c;
  smp_pagemap_set_retired(c, true);
}

void smp_heap_delete(smp_heap_t *h) {
  smp_lock_acquire(&registry_lock); // no pass or report is looking at h once it is unlinked
  unlink_locked(h);
  smp_store_release(&h->state, SMP_HEAP_DEAD);
  smp_hcache_detach_all(&h->caches);
  smp_large_release_heap(&h->pages);
  smp_pageheap_release_all(&h->pages, h->is_region ? region_chunk_forget : os_chunk_retire, NULL);
  if (h->meta) smp_os_unmap(h->meta, h->meta_len);
  h->next = spare;
  spare = h;
  smp_lock_release(&registry_lock);
}

bool smp_heap_retired(const void *p) { return smp_pagemap_is_retired(p); }

void smp_heap_each(void (*fn)(smp_heap_t *h, void *arg), void *arg) {
  smp_lock_acquire(&registry_lock);
  fn(SMP_HEAP_DEFAULT, arg);
  for (smp_heap_t *h = others; h; h = h->next) fn(h, arg);
  smp_lock_release(&registry_lock);
}

size_t smp_heap_count(void) {
  smp_lock_acquire(&registry_lock);
  size_t n = others_count + 1;
  smp_lock_release(&registry_lock);
  return n;
}

void smp_heap_pass_others(void) {
  smp_lock_acquire(&registry_lock);
  for (smp_heap_t *h = others; h; h = h->next) {
    if (!h->pages.may_purge) continue;
    uint64_t calls = smp_pageheap_calls(&h->pages);
    bool idle = smp_pageheap_idle_since(&h->pages, calls);
    if (idle) smp_central_trim(&h->central);
    smp_pageheap_background_pass(&h->pages, idle);
  }
  smp_lock_release(&registry_lock);
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

void smp_heap_stats_fill(smp_heap_t *h, smp_stats_t *out) {
  smp_pageheap_stats_t ps;
  smp_pageheap_stats(&h->pages, &ps);
  uint64_t small_out = 0, central_free = 0;
  for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) {
    size_t size = smp_class_info[c].size;
    int64_t held = (int64_t)(smp_load_relaxed(&h->caches.took[c]) - smp_load_relaxed(&h->caches.gave[c]));
    uint64_t held_blocks = held > 0 ? (uint64_t)held : 0;
    smp_central_class_stats_t ccs;
    smp_central_stats(&h->central, c, &ccs);
    uint64_t cap = (uint64_t)ccs.spans * smp_class_info[c].capacity;
    small_out += held_blocks * size;
    central_free += (cap > held_blocks ? cap - held_blocks : 0) * size;
  }
  uint64_t cached = smp_hcache_cached_bytes(&h->caches);
  out->in_use = (small_out > cached ? small_out - cached : 0) + ps.large_bytes + ps.huge_bytes;
  out->cached = cached;
  out->free = central_free + ps.free_bytes;
  out->dirty = ps.free_dirty;
  out->mapped = ps.mapped + ps.huge_bytes;
  out->resident = smp_pageheap_resident(&h->pages) + smp_large_resident_of(&h->pages);
  out->purged = ps.purged_bytes;
  out->purges = ps.purge_calls;
  out->mappings = h->is_region ? 0 : ps.chunks + smp_large_count_of(&h->pages);
  out->chunks_unmapped = ps.chunks_unmapped;
  out->limit = h->is_region ? ps.mapped : ps.limit;
  out->held = ps.large_bytes + ps.small_bytes + ps.huge_bytes;
  out->failures = smp_load_relaxed(&h->failures);
}

// ---- visit ----

typedef struct cached_set {
  uintptr_t *v;
  size_t n, cap;
} cached_set_t;

static void cached_add(void *b, void *arg) {
  cached_set_t *cs = arg;
  if (cs->n < cs->cap) cs->v[cs->n++] = (uintptr_t)b;
}
static void cached_count(void *b, void *arg) {
  (void)b;
  ((cached_set_t *)arg)->cap++;
}
static int cmp_uptr(const void *a, const void *b) {
  uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
  return x < y ? -1 : x > y;
}
static bool cached_has(const cached_set_t *cs, uintptr_t b) {
  size_t lo = 0, hi = cs->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (cs->v[mid] < b) lo = mid + 1; else if (cs->v[mid] > b) hi = mid; else return true;
  }
  return false;
}

// Every block of a small span of h that is neither free in it nor cached.
static int visit_small(smp_span_t *s, const cached_set_t *cs, int (*fn)(void *, size_t, void *),
                       void *arg) {
  uint64_t bits[(65536 / 16 + 63) / 64] = {0}; // a span holds at most 4096 blocks of 16 bytes
  if (!smp_central_free_blocks_locked(s, bits)) return 0; // a corrupted list: skip the span
  size_t size = smp_class_info[s->sizeclass].size;
  char *start = smp_span_start(s);
  for (size_t i = 0; i < s->capacity; i++) {
    if ((bits[i / 64] >> (i % 64)) & 1) continue;
    char *b = start + i * size;
    if (cached_has(cs, (uintptr_t)b)) continue;
    int r = fn(b, size, arg);
    if (r) return r;
  }
  return 0;
}

int smp_heap_visit_blocks(smp_heap_t *h, int (*fn)(void *, size_t, void *), void *arg) {
  // The cached blocks are free: collect them first, sorted, to leave them out.
  // The default heap's front end: the per-CPU caches (and the calling thread's) are drained;
  // other threads' caches (per-thread front end) are read, as a heap's caches are.
  cached_set_t cs = {0};
  if (h->is_default) {
    smp_frontend_flush();
    smp_tcache_each_cached(cached_count, &cs);
  } else {
    smp_lock_acquire(&h->caches.lock);
    smp_hcache_each_cached(&h->caches, cached_count, &cs);
  }
  size_t bytes = smp_align_up((cs.cap ? cs.cap : 1) * sizeof(uintptr_t), smp_os_page_size());
  cs.v = smp_os_map(bytes);
  if (cs.v != NULL && h->is_default) smp_tcache_each_cached(cached_add, &cs);
  if (cs.v != NULL && !h->is_default) smp_hcache_each_cached(&h->caches, cached_add, &cs);
  if (!h->is_default) smp_lock_release(&h->caches.lock);
  if (cs.v == NULL) return ENOMEM;
  qsort(cs.v, cs.n, sizeof *cs.v, cmp_uptr);
  int r = 0;
  smp_central_lock_all(&h->central);
  smp_pageheap_lock_fork(&h->pages);
  for (smp_chunk_t *c = h->pages.chunks; c && !r; c = c->next)
    for (size_t i = c->first; i < c->end && !r;) {
      smp_span_t *s = &c->spans[i];
      if (s->state == SMP_SPAN_SMALL)
        r = visit_small(s, &cs, fn, arg);
      else if (s->state == SMP_SPAN_LARGE)
        r = fn(smp_span_start(s), smp_span_bytes(s), arg);
      i += s->npages ? s->npages : 1;
    }
  smp_pageheap_unlock_fork(&h->pages);
  smp_central_unlock_all(&h->central);
  smp_os_unmap(cs.v, bytes);
  if (r == 0) r = smp_large_visit_huge(&h->pages, fn, arg);
  return r;
}
