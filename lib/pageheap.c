// Layer: page heap. See pageheap.h. All state below is guarded by smp_pageheap_lock.
// Free spans live in buckets[npages] (LIFO, doubly linked through next/prev); bit n of
// nonempty is set iff buckets[n] has a span. Invariants, checked by the unit tests:
//   - spans tile every chunk's pages after the header; no two free spans are adjacent;
//   - a free span's first and last page_span entries name its first page, its pages' classes
//     are 0, and it is in exactly the bucket of its length;
//   - counters (free_pages, dirty_pages, ...) equal the sums over the spans they describe.
#include <string.h>

#include "pageheap.h"

smp_lock_t smp_pageheap_lock = SMP_LOCK_INIT;

#define BUCKETS (SMP_CHUNK_PAGES + 1)
static smp_span_t *buckets[BUCKETS];
static uint64_t nonempty[(BUCKETS + 63) / 64];
static smp_chunk_t *chunks;
static size_t chunk_count, free_pages, dirty_pages, large_pages, large_count, small_pages;

#define USABLE_PAGES (SMP_CHUNK_PAGES - SMP_CHUNK_HEADER_PAGES)

static void map_pages(smp_span_t *s, size_t from, size_t to) {
  smp_chunk_t *c = smp_span_chunk(s);
  uint16_t first = (uint16_t)smp_span_first_page(s);
  for (size_t i = from; i < to; i++) c->page_span[i] = first;
}

static smp_span_t *span_at(smp_chunk_t *c, size_t first, size_t npages) {
  smp_span_t *s = &c->spans[first];
  memset(s, 0, sizeof *s);
  s->npages = (uint16_t)npages;
  return s;
}

static void bucket_insert(smp_span_t *s) {
  size_t n = s->npages, first = smp_span_first_page(s);
  smp_chunk_t *c = smp_span_chunk(s);
  s->state = SMP_SPAN_FREE;
  c->page_span[first] = (uint16_t)first;
  c->page_span[first + n - 1] = (uint16_t)first;
  s->prev = NULL;
  s->next = buckets[n];
  if (s->next) s->next->prev = s;
  buckets[n] = s;
  nonempty[n / 64] |= (uint64_t)1 << (n % 64);
  c->free_pages += (uint32_t)n;
  free_pages += n;
  if (!s->zeroed) dirty_pages += n;
}

static void bucket_remove(smp_span_t *s) {
  size_t n = s->npages;
  if (s->prev)
    s->prev->next = s->next;
  else
    buckets[n] = s->next;
  if (s->next) s->next->prev = s->prev;
  if (buckets[n] == NULL) nonempty[n / 64] &= ~((uint64_t)1 << (n % 64));
  smp_span_chunk(s)->free_pages -= (uint32_t)n;
  free_pages -= n;
  if (!s->zeroed) dirty_pages -= n;
  s->next = s->prev = NULL;
}

// Smallest non-empty bucket >= n, or NULL.
static smp_span_t *bucket_find(size_t n) {
  for (size_t w = n / 64; w < SMP_ARRAY_LEN(nonempty); w++) {
    uint64_t bits = nonempty[w];
    if (w == n / 64) bits &= ~(uint64_t)0 << (n % 64);
    if (bits) return buckets[w * 64 + (size_t)__builtin_ctzll(bits)];
  }
  return NULL;
}

static bool chunk_add_locked(void) {
  smp_chunk_t *c = smp_os_map_aligned(SMP_CHUNK_SIZE, SMP_CHUNK_SIZE);
  if (c == NULL) return false;
  c->next = chunks;
  if (chunks) chunks->prev = c;
  chunks = c;
  chunk_count++;
  smp_pagemap_set_owned(c, true);
  smp_span_t *s = span_at(c, SMP_CHUNK_HEADER_PAGES, USABLE_PAGES);
  s->zeroed = 1;
  bucket_insert(s);
  return true;
}

// Cut the first n pages off free span s (already out of its bucket); the rest goes back.
static void split_head(smp_span_t *s, size_t n) {
  if (s->npages == n) return;
  smp_span_t *rest = span_at(smp_span_chunk(s), smp_span_first_page(s) + n, s->npages - n);
  rest->zeroed = s->zeroed;
  s->npages = (uint16_t)n;
  bucket_insert(rest);
}

static void mark_in_use(smp_span_t *s) {
  s->state = SMP_SPAN_LARGE;
  size_t first = smp_span_first_page(s);
  map_pages(s, first, first + s->npages);
  large_pages += s->npages;
  large_count++;
}

smp_span_t *smp_pageheap_alloc(size_t npages, size_t align_pages, bool *zeroed) {
  size_t want = npages + align_pages - 1;
  if (npages == 0 || want > USABLE_PAGES) return NULL;
  smp_lock_acquire(&smp_pageheap_lock);
  smp_span_t *s = bucket_find(want);
  if (s == NULL && chunk_add_locked()) s = bucket_find(want);
  if (s == NULL) {
    smp_lock_release(&smp_pageheap_lock);
    return NULL;
  }
  bucket_remove(s);
  size_t first = smp_span_first_page(s);
  size_t skip = (align_pages - first % align_pages) % align_pages;
  if (skip) { // give the unaligned head back and continue with the rest
    split_head(s, skip);
    smp_span_t *rest = &smp_span_chunk(s)->spans[first + skip];
    bucket_remove(rest);
    bucket_insert(s);
    s = rest;
  }
  split_head(s, npages);
  bool z = s->zeroed;
  s->zeroed = 0;
  mark_in_use(s);
  smp_lock_release(&smp_pageheap_lock);
  *zeroed = z;
  return s;
}

// Coalesce a span that left use (or a freshly cut tail) with its free neighbours and file it.
static void free_locked(smp_span_t *s) {
  smp_chunk_t *c = smp_span_chunk(s);
  size_t first = smp_span_first_page(s);
  s->state = SMP_SPAN_FREE;
  if (first > SMP_CHUNK_HEADER_PAGES) {
    smp_span_t *p = &c->spans[c->page_span[first - 1]];
    if (p->state == SMP_SPAN_FREE && smp_span_first_page(p) + p->npages == first) {
      bucket_remove(p);
      p->npages = (uint16_t)(p->npages + s->npages);
      p->zeroed = p->zeroed && s->zeroed;
      s->state = SMP_SPAN_NONE;
      s = p;
      first = smp_span_first_page(s);
    }
  }
  size_t end = first + s->npages;
  if (end < SMP_CHUNK_PAGES) {
    smp_span_t *n = &c->spans[end];
    if (n->state == SMP_SPAN_FREE) {
      bucket_remove(n);
      s->npages = (uint16_t)(s->npages + n->npages);
      s->zeroed = s->zeroed && n->zeroed;
      n->state = SMP_SPAN_NONE;
    }
  }
  bucket_insert(s);
}

void smp_pageheap_set_class(smp_span_t *s, unsigned cls) {
  smp_lock_acquire(&smp_pageheap_lock);
  smp_chunk_t *c = smp_span_chunk(s);
  size_t first = smp_span_first_page(s);
  memset(&c->page_class[first], (int)cls, s->npages);
  if (cls) {
    s->state = SMP_SPAN_SMALL;
    large_pages -= s->npages, large_count--, small_pages += s->npages;
  } else {
    s->state = SMP_SPAN_LARGE;
    large_pages += s->npages, large_count++, small_pages -= s->npages;
  }
  smp_lock_release(&smp_pageheap_lock);
}

void smp_pageheap_free(smp_span_t *s) {
  smp_lock_acquire(&smp_pageheap_lock);
  if (s->state == SMP_SPAN_SMALL) {
    memset(&smp_span_chunk(s)->page_class[smp_span_first_page(s)], 0, s->npages);
    small_pages -= s->npages;
  } else {
    large_pages -= s->npages;
    large_count--;
  }
  s->zeroed = 0;
  free_locked(s);
  smp_lock_release(&smp_pageheap_lock);
}

bool smp_pageheap_grow(smp_span_t *s, size_t npages) {
  size_t first = smp_span_first_page(s), end = first + s->npages;
  if (npages <= s->npages) return true;
  if (first + npages > SMP_CHUNK_PAGES) return false;
  smp_chunk_t *c = smp_span_chunk(s);
  smp_lock_acquire(&smp_pageheap_lock);
  smp_span_t *n = &c->spans[end];
  bool ok = n->state == SMP_SPAN_FREE && s->npages + n->npages >= npages;
  if (ok) {
    bucket_remove(n);
    split_head(n, npages - s->npages);
    n->state = SMP_SPAN_NONE;
    large_pages += npages - s->npages;
    s->npages = (uint16_t)npages;
    map_pages(s, end, first + npages);
  }
  smp_lock_release(&smp_pageheap_lock);
  return ok;
}

void smp_pageheap_shrink(smp_span_t *s, size_t npages) {
  if (npages == 0 || npages >= s->npages) return;
  smp_lock_acquire(&smp_pageheap_lock);
  size_t first = smp_span_first_page(s);
  smp_span_t *tail = span_at(smp_span_chunk(s), first + npages, s->npages - npages);
  large_pages -= tail->npages;
  s->npages = (uint16_t)npages;
  free_locked(tail);
  smp_lock_release(&smp_pageheap_lock);
}

size_t smp_pageheap_trim(void) {
  size_t released = 0;
  smp_lock_acquire(&smp_pageheap_lock);
  for (size_t n = 1; n < BUCKETS; n++)
    for (smp_span_t *s = buckets[n]; s; s = s->next)
      if (!s->zeroed && smp_os_purge(smp_span_start(s), smp_span_bytes(s))) {
        s->zeroed = 1;
        dirty_pages -= n;
        released += smp_span_bytes(s);
      }
  for (smp_chunk_t *c = chunks, *next; c; c = next) {
    next = c->next;
    if (c->free_pages != USABLE_PAGES) continue;
    bucket_remove(&c->spans[SMP_CHUNK_HEADER_PAGES]);
    if (c->prev) c->prev->next = c->next; else chunks = c->next;
    if (c->next) c->next->prev = c->prev;
    chunk_count--;
    smp_pagemap_set_owned(c, false);
    smp_os_unmap(c, SMP_CHUNK_SIZE);
    released += SMP_CHUNK_HEADER_PAGES * SMP_PAGE_SIZE;
  }
  smp_lock_release(&smp_pageheap_lock);
  return released;
}

void smp_pageheap_stats(smp_pageheap_stats_t *out) {
  smp_lock_acquire(&smp_pageheap_lock);
  out->chunks = chunk_count;
  out->mapped = chunk_count * SMP_CHUNK_SIZE;
  out->free_bytes = free_pages * SMP_PAGE_SIZE;
  out->free_dirty = dirty_pages * SMP_PAGE_SIZE;
  out->large_bytes = large_pages * SMP_PAGE_SIZE;
  out->large_count = large_count;
  out->small_bytes = small_pages * SMP_PAGE_SIZE;
  smp_lock_release(&smp_pageheap_lock);
}
