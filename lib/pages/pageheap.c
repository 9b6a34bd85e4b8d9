// Layer: page heap. See pageheap.h. All state below is guarded by ph->lock.
// Free spans live in ph->buckets[set][npages] (LIFO, doubly linked through next/prev); bit n of
// ph->nonempty[set] is set iff ph->buckets[set][n] has a span. The set is DIRTY for a span whose pages
// may be resident, CLEAN for one that is zeroed or given back; allocation takes the smallest
// dirty span that fits before any clean one, so pages freed earlier are reused before pages
// that would be faulted in (and a clean allocation means no dirty span fitted).
// Invariants, checked by the unit tests:
//   - spans tile every chunk's pages after the header; no two free spans are adjacent;
//   - a free span's first and last page_span entries name its first page, its pages' classes
//     are 0, and it is in exactly the bucket of its length, in its set;
//   - counters (ph->free_pages, ph->dirty_pages, ...) equal the sums over the spans they describe.
// Giving free pages back (the decay list, the dirty bound, stranded pages, the background
// passes' bookkeeping) is decay.c's; it keeps a dirty span on its decay list while the span is
// in a dirty bucket (bucket_insert_at, bucket_remove) and gives spans back through
// smp_pageheap_purge_span_locked and smp_pageheap_chunk_release_locked.
#include <string.h>

#include "asan.h"
#include "assertion.h"
#include "options.h"
#include "pageheap.h"

#define BUCKETS SMP_PAGEHEAP_BUCKETS
enum { DIRTY_SET, CLEAN_SET, SETS };

static void map_pages(smp_span_t *s, size_t from, size_t to) {
  smp_chunk_t *c = smp_span_chunk(s);
  uint16_t first = (uint16_t)smp_span_first_page(s);
  for (size_t i = from; i < to; i++) c->page_span[i] = first;
}

static smp_span_t *span_at(smp_chunk_t *c, size_t first, size_t npages) {
  smp_span_t *s = &c->spans[first];
  memset(s, 0, sizeof *s);
  s->npages = (uint16_t)npages;
  s->page = (uint16_t)first;
  return s;
}

static unsigned set_of(const smp_span_t *s) { return s->zeroed || s->purged ? CLEAN_SET : DIRTY_SET; }

// File free span s in its bucket; a dirty one also on the decay list, stamped t.
static void bucket_insert_at(smp_pageheap_t *ph, smp_span_t *s, uint64_t t) {
  size_t n = s->npages, first = smp_span_first_page(s);
  unsigned set = set_of(s);
  smp_chunk_t *c = smp_span_chunk(s);
  s->state = SMP_SPAN_FREE;
  c->page_span[first] = (uint16_t)first;
  c->page_span[first + n - 1] = (uint16_t)first;
  s->prev = NULL;
  s->next = ph->buckets[set][n];
  if (s->next) s->next->prev = s;
  ph->buckets[set][n] = s;
  ph->nonempty[set][n / 64] |= (uint64_t)1 << (n % 64);
  c->free_pages += (uint32_t)n;
  ph->free_pages += n;
  if (!s->zeroed && !s->purged) {
    ph->dirty_pages += n;
    smp_decay_add_locked(ph, s, t);
  }
}

static void bucket_insert(smp_pageheap_t *ph, smp_span_t *s) { bucket_insert_at(ph, s, smp_os_now_ms()); }

// Take free span s out of its bucket (before its zeroed/purged flags change: they name the set).
static void bucket_remove(smp_pageheap_t *ph, smp_span_t *s) {
  size_t n = s->npages;
  unsigned set = set_of(s);
  SMP_ASSERT(s->state == SMP_SPAN_FREE && (s->prev != NULL || ph->buckets[set][n] == s));
  if (s->prev)
    s->prev->next = s->next;
  else
    ph->buckets[set][n] = s->next;
  if (s->next) s->next->prev = s->prev;
  if (ph->buckets[set][n] == NULL) ph->nonempty[set][n / 64] &= ~((uint64_t)1 << (n % 64));
  smp_span_chunk(s)->free_pages -= (uint32_t)n;
  ph->free_pages -= n;
  if (s->dirty) {
    ph->dirty_pages -= n;
    smp_decay_del_locked(ph, s);
  }
  s->next = s->prev = NULL;
}

// A span of at least n pages: the smallest dirty one, else the smallest clean one, else NULL.
static smp_span_t *bucket_find(smp_pageheap_t *ph, size_t n) {
  for (unsigned set = DIRTY_SET; set < SETS; set++)
    for (size_t w = n / 64; w < SMP_ARRAY_LEN(ph->nonempty[set]); w++) {
      uint64_t bits = ph->nonempty[set][w];
      if (w == n / 64) bits &= ~(uint64_t)0 << (n % 64);
      if (bits) {
        smp_span_t *s = ph->buckets[set][w * 64 + (size_t)__builtin_ctzll(bits)];
        SMP_ASSERT(s != NULL); // a bucket's nonempty bit is set iff it has a span
        return s;
      }
    }
  return NULL;
}

// File chunk c (its header set up) with all its pages as one free span.
static void chunk_link_locked(smp_pageheap_t *ph, smp_chunk_t *c, bool zeroed) {
  c->heap = ph;
  c->next = ph->chunks;
  c->prev = NULL;
  if (ph->chunks) ph->chunks->prev = c;
  ph->chunks = c;
  ph->chunk_count++;
  ph->usable_pages += (size_t)(c->end - c->first);
  smp_span_t *s = span_at(c, c->first, (size_t)(c->end - c->first));
  s->zeroed = zeroed;
  bucket_insert(ph, s);
}

static bool chunk_add_locked(smp_pageheap_t *ph) {
  if (ph->fixed) return false;
  smp_chunk_t *c = smp_os_map_aligned(SMP_CHUNK_SIZE, SMP_CHUNK_SIZE);
  if (c == NULL) return false;
  // Chunks are aligned to 4 MiB, so transparent huge pages can back them where the system
  // enables them; thp:0 opts out (every chunk then carries the same flag, so the kernel can
  // still merge neighbouring chunks into one mapping).
  if (!smp_options.thp) smp_os_no_hugepages(c, SMP_CHUNK_SIZE);
  c->base = (char *)c;
  c->first = SMP_CHUNK_HEADER_PAGES;
  c->end = SMP_CHUNK_PAGES;
  chunk_link_locked(ph, c, true);
  smp_pagemap_set_owned(c, true); // after the header is complete: the free path reads it
  return true;
}

// Cut the first n pages off free span s (already out of its bucket, freed at time t); the rest
// goes back, keeping its state and its place in the decay order.
static void split_head(smp_pageheap_t *ph, smp_span_t *s, size_t n, uint64_t t) {
  if (s->npages == n) return;
  smp_span_t *rest = span_at(smp_span_chunk(s), smp_span_first_page(s) + n, s->npages - n);
  rest->zeroed = s->zeroed;
  rest->purged = s->purged;
  s->npages = (uint16_t)n;
  bucket_insert_at(ph, rest, t);
}

static void mark_in_use(smp_pageheap_t *ph, smp_span_t *s) {
  s->state = SMP_SPAN_LARGE;
  size_t first = smp_span_first_page(s);
  map_pages(s, first, first + s->npages);
  ph->large_pages += s->npages;
  ph->large_count++;
}

static void set_class_locked(smp_pageheap_t *ph, smp_span_t *s, unsigned cls);

// smp_pageheap_alloc, and with cls != 0 the span turned SMALL of class cls in the same hold of
// the lock (a nowait caller cannot wait for it a second time).
static smp_span_t *alloc_span(smp_pageheap_t *ph, size_t npages, size_t align_pages,
                              bool *zeroed, bool nowait, unsigned cls) {
  size_t want = npages + align_pages - 1;
  if (npages == 0 || want > SMP_CHUNK_USABLE_PAGES) return NULL;
  if (nowait) {
    if (!smp_lock_try(&ph->lock)) return NULL;
  } else {
    smp_lock_acquire(&ph->lock);
  }
  smp_span_t *s = NULL;
  bool grew = false;
  if (ph->limit_pages == 0 ||
      ph->large_pages + ph->small_pages + ph->huge_pages + npages <= ph->limit_pages) {
    s = bucket_find(ph, want);
    if (s == NULL && !nowait && (grew = chunk_add_locked(ph))) s = bucket_find(ph, want);
  }
  if (s == NULL) {
    smp_lock_release(&ph->lock);
    return NULL;
  }
  uint64_t now = smp_os_now_ms(), t = s->dirty ? s->freed_ms : now;
  if (!s->dirty) smp_decay_clean_alloc_locked(ph, now, npages); // the dirty bound learns
  bucket_remove(ph, s);
  size_t first = smp_span_first_page(s);
  // Aligned by address: a region chunk's pages are only 8 KiB-aligned.
  size_t pn = ((uintptr_t)smp_span_chunk(s)->base >> SMP_PAGE_SHIFT) + first;
  size_t skip = (align_pages - pn % align_pages) % align_pages;
  if (skip) { // give the unaligned head back and continue with the rest
    split_head(ph, s, skip, t);
    smp_span_t *rest = &smp_span_chunk(s)->spans[first + skip];
    bucket_remove(ph, rest);
    bucket_insert_at(ph, s, t);
    s = rest;
  }
  split_head(ph, s, npages, t);
  bool z = s->zeroed;
  s->zeroed = 0;
  s->purged = 0;
  mark_in_use(ph, s);
  if (cls) set_class_locked(ph, s, cls);
  if (nowait) { // no madvise here: the upkeep waits for a call that may make system calls
    ph->heap_calls++;
  } else {
    if (grew) smp_decay_stranded_locked(ph, now, SMP_CHUNK_USABLE_PAGES);
    smp_decay_upkeep_locked(ph, now);
  }
  smp_lock_release(&ph->lock);
  *zeroed = z;
  // Its pages may hold blocks poisoned in an earlier life (asan.h): the span is the taker's.
  smp_asan_unpoison(smp_span_start(s), (size_t)npages << SMP_PAGE_SHIFT);
  return s;
}

// The state of free span a after it absorbed b: zeroed if both were, else given back (purged)
// if both were zeroed or purged, else dirty as a whole.
static void merge_state(smp_span_t *a, const smp_span_t *b) {
  bool clean = (a->zeroed || a->purged) && (b->zeroed || b->purged);
  a->zeroed = a->zeroed && b->zeroed;
  a->purged = clean && !a->zeroed;
}

// Give free span s's pages back (s is filed): with MADV_FREE if lazy and the kernel takes it
// (s is then purged, not zeroed), else MADV_DONTNEED (zeroed); re-filed in the clean set, off
// the decay list, counted. Bytes already given back lazily are not counted again. false if the
// kernel refused (s unchanged).
bool smp_pageheap_purge_span_locked(smp_pageheap_t *ph, smp_span_t *s, bool lazy) {
  bool ok = lazy && smp_os_purge_lazy(smp_span_start(s), smp_span_bytes(s));
  if (!ok) lazy = false, ok = smp_os_purge(smp_span_start(s), smp_span_bytes(s));
  if (!ok) return false;
  bucket_remove(ph, s);
  if (!s->purged) smp_counter_add(&ph->purged_bytes, smp_span_bytes(s));
  smp_counter_add(&ph->purge_calls, 1);
  // MADV_DONTNEED zeroes private anonymous pages only; a region may be shared memory.
  s->zeroed = !lazy && !ph->fixed;
  s->purged = lazy || ph->fixed;
  bucket_insert_at(ph, s, 0);
  return true;
}

// Coalesce a span that left use (or a freshly cut tail) with its free neighbours and file it.
static void free_locked(smp_pageheap_t *ph, smp_span_t *s) {
  smp_chunk_t *c = smp_span_chunk(s);
  size_t first = smp_span_first_page(s);
  s->state = SMP_SPAN_FREE;
  if (first > c->first) {
    smp_span_t *p = &c->spans[c->page_span[first - 1]];
    if (p->state == SMP_SPAN_FREE && smp_span_first_page(p) + p->npages == first) {
      bucket_remove(ph, p);
      p->npages = (uint16_t)(p->npages + s->npages);
      merge_state(p, s);
      s->state = SMP_SPAN_NONE;
      s = p;
      first = smp_span_first_page(s);
    }
  }
  size_t end = first + s->npages;
  if (end < c->end) {
    smp_span_t *n = &c->spans[end];
    if (n->state == SMP_SPAN_FREE) {
      bucket_remove(ph, n);
      s->npages = (uint16_t)(s->npages + n->npages);
      merge_state(s, n);
      n->state = SMP_SPAN_NONE;
    }
  }
  bucket_insert(ph, s);
}

smp_span_t *smp_pageheap_alloc(smp_pageheap_t *ph, size_t npages, size_t align_pages,
                               bool *zeroed, bool nowait) {
  return alloc_span(ph, npages, align_pages, zeroed, nowait, 0);
}

smp_span_t *smp_pageheap_alloc_small(smp_pageheap_t *ph, size_t npages, unsigned cls,
                                     bool nowait) {
  bool zeroed;
  return alloc_span(ph, npages, 1, &zeroed, nowait, cls);
}

void smp_pageheap_set_class(smp_span_t *s, unsigned cls) {
  smp_pageheap_t *ph = smp_span_chunk(s)->heap;
  smp_lock_acquire(&ph->lock);
  set_class_locked(ph, s, cls);
  smp_lock_release(&ph->lock);
}

static void set_class_locked(smp_pageheap_t *ph, smp_span_t *s, unsigned cls) {
  smp_chunk_t *c = smp_span_chunk(s);
  size_t first = smp_span_first_page(s);
  SMP_ASSERT(s->state == (cls ? SMP_SPAN_LARGE : SMP_SPAN_SMALL));
  if (ph->class_pages) memset(&c->page_class[first], (int)cls, s->npages);
  if (cls) {
    s->state = SMP_SPAN_SMALL;
    ph->large_pages -= s->npages, ph->large_count--, ph->small_pages += s->npages;
  } else {
    s->state = SMP_SPAN_LARGE;
    ph->large_pages += s->npages, ph->large_count++, ph->small_pages -= s->npages;
  }
}

void smp_pageheap_free(smp_span_t *s) {
  smp_pageheap_t *ph = smp_span_chunk(s)->heap;
  smp_lock_acquire(&ph->lock);
  SMP_ASSERT(s->state == SMP_SPAN_SMALL || s->state == SMP_SPAN_LARGE);
  if (s->state == SMP_SPAN_SMALL) {
    if (ph->class_pages) memset(&smp_span_chunk(s)->page_class[smp_span_first_page(s)], 0, s->npages);
    ph->small_pages -= s->npages;
  } else {
    ph->large_pages -= s->npages;
    ph->large_count--;
  }
  s->zeroed = 0;
  s->purged = 0;
  s->dirty = 0;
  free_locked(ph, s);
  smp_decay_upkeep_locked(ph, smp_os_now_ms());
  smp_lock_release(&ph->lock);
}

bool smp_pageheap_grow(smp_span_t *s, size_t npages) {
  smp_pageheap_t *ph = smp_span_chunk(s)->heap;
  size_t first = smp_span_first_page(s), end = first + s->npages;
  if (npages <= s->npages) return true;
  smp_chunk_t *c = smp_span_chunk(s);
  if (first + npages > c->end) return false;
  smp_lock_acquire(&ph->lock);
  smp_span_t *n = &c->spans[end];
  bool ok = n->state == SMP_SPAN_FREE && s->npages + n->npages >= npages &&
            (ph->limit_pages == 0 || ph->large_pages + ph->small_pages + ph->huge_pages +
                                             (npages - s->npages) <= ph->limit_pages);
  if (ok) {
    uint64_t t = n->dirty ? n->freed_ms : smp_os_now_ms();
    bucket_remove(ph, n);
    split_head(ph, n, npages - s->npages, t);
    n->state = SMP_SPAN_NONE;
    ph->large_pages += npages - s->npages;
    s->npages = (uint16_t)npages;
    map_pages(s, end, first + npages);
  }
  ph->heap_calls++;
  smp_lock_release(&ph->lock);
  // The pages it took may hold blocks poisoned in an earlier life (asan.h), as in alloc_span.
  if (ok) smp_asan_unpoison(c->base + (end << SMP_PAGE_SHIFT), (first + npages - end) << SMP_PAGE_SHIFT);
  return ok;
}

bool smp_pageheap_charge(smp_pageheap_t *ph, ptrdiff_t npages, bool nowait) {
  if (nowait) {
    if (!smp_lock_try(&ph->lock)) return false;
  } else {
    smp_lock_acquire(&ph->lock);
  }
  size_t held = ph->large_pages + ph->small_pages + ph->huge_pages;
  bool ok = npages <= 0 || ph->limit_pages == 0 || held + (size_t)npages <= ph->limit_pages;
  if (ok) ph->huge_pages += (size_t)npages;
  ph->heap_calls++; // a huge block's allocation or free: the heap is not idle
  smp_lock_release(&ph->lock);
  return ok;
}

size_t smp_pageheap_held(smp_pageheap_t *ph) {
  smp_lock_acquire(&ph->lock);
  size_t held = ph->large_pages + ph->small_pages + ph->huge_pages;
  smp_lock_release(&ph->lock);
  return held;
}

void smp_pageheap_set_limit(smp_pageheap_t *ph, size_t limit_pages) {
  smp_lock_acquire(&ph->lock);
  ph->limit_pages = limit_pages;
  smp_lock_release(&ph->lock);
}

void smp_pageheap_shrink(smp_span_t *s, size_t npages) {
  smp_pageheap_t *ph = smp_span_chunk(s)->heap;
  if (npages == 0 || npages >= s->npages) return;
  smp_lock_acquire(&ph->lock);
  size_t first = smp_span_first_page(s);
  smp_span_t *tail = span_at(smp_span_chunk(s), first + npages, s->npages - npages);
  ph->large_pages -= tail->npages;
  s->npages = (uint16_t)npages;
  free_locked(ph, tail);
  smp_decay_upkeep_locked(ph, smp_os_now_ms());
  smp_lock_release(&ph->lock);
}

// Unmap wholly free chunk c (its one free span is in a bucket).
static void chunk_unlink_locked(smp_pageheap_t *ph, smp_chunk_t *c) {
  if (c->prev) c->prev->next = c->next; else ph->chunks = c->next;
  if (c->next) c->next->prev = c->prev;
  ph->chunk_count--;
  ph->usable_pages -= (size_t)(c->end - c->first);
}

void smp_pageheap_chunk_release_locked(smp_pageheap_t *ph, smp_chunk_t *c) {
  bucket_remove(ph, &c->spans[SMP_CHUNK_HEADER_PAGES]);
  chunk_unlink_locked(ph, c);
  smp_counter_add(&ph->chunks_unmapped, 1);
  smp_pagemap_set_owned(c, false);
  smp_os_unmap(c, SMP_CHUNK_SIZE);
}

size_t smp_pageheap_trim(smp_pageheap_t *ph) {
  size_t released = 0;
  if (!ph->may_purge) return 0;
  smp_lock_acquire(&ph->lock);
  for (smp_chunk_t *c = ph->chunks, *next; c && !ph->fixed; c = next) {
    next = c->next;
    if (c->free_pages != SMP_CHUNK_USABLE_PAGES) continue;
    bool dirty = c->spans[SMP_CHUNK_HEADER_PAGES].dirty;
    smp_pageheap_chunk_release_locked(ph, c);
    released += dirty ? SMP_CHUNK_SIZE : SMP_CHUNK_HEADER_PAGES * SMP_PAGE_SIZE;
  }
  // Everything that may be resident, lazily given back (MADV_FREE) pages included. A purged
  // span is re-filed at the head of a clean bucket: behind the walk, which goes on from next.
  for (unsigned set = DIRTY_SET; set < SETS; set++)
    for (size_t n = 1; n < BUCKETS; n++)
      for (smp_span_t *s = ph->buckets[set][n], *next; s; s = next) {
        next = s->next;
        if (!s->zeroed && smp_pageheap_purge_span_locked(ph, s, false)) released += smp_span_bytes(s);
      }
  smp_lock_release(&ph->lock);
  return released;
}

size_t smp_pageheap_resident(smp_pageheap_t *ph, smp_gather_t *g) {
  size_t bytes = 0;
  if (!smp_lock_gather(&ph->lock, g)) return 0;
  for (smp_chunk_t *c = ph->chunks; c; c = c->next)
    bytes += smp_os_resident(c->base, (size_t)c->end << SMP_PAGE_SHIFT);
  smp_lock_release(&ph->lock);
  return bytes;
}

void smp_pageheap_stats(smp_pageheap_t *ph, smp_pageheap_stats_t *out, smp_gather_t *g) {
  *out = (smp_pageheap_stats_t){0};
  out->purged_bytes = smp_counter_get(&ph->purged_bytes);
  out->purge_calls = smp_counter_get(&ph->purge_calls);
  out->chunks_unmapped = smp_counter_get(&ph->chunks_unmapped);
  if (!smp_lock_gather(&ph->lock, g)) return;
  out->chunks = ph->chunk_count;
  out->mapped = ph->fixed ? ph->usable_pages * SMP_PAGE_SIZE : ph->chunk_count * SMP_CHUNK_SIZE;
  out->free_bytes = ph->free_pages * SMP_PAGE_SIZE;
  out->free_dirty = ph->dirty_pages * SMP_PAGE_SIZE;
  out->dirty_bound = ph->may_purge && smp_options.dirty_pct && smp_options.decay_ms
                        ? smp_decay_bound_locked(ph) * SMP_PAGE_SIZE : 0;
  out->large_bytes = ph->large_pages * SMP_PAGE_SIZE;
  out->large_count = ph->large_count;
  out->small_bytes = ph->small_pages * SMP_PAGE_SIZE;
  out->huge_bytes = ph->huge_pages * SMP_PAGE_SIZE;
  out->limit = ph->limit_pages * SMP_PAGE_SIZE;
  out->stranded_pending = ph->stranded_pending * SMP_PAGE_SIZE;
  out->passes = ph->passes;
  smp_lock_release(&ph->lock);
}

void smp_pageheap_init(smp_pageheap_t *ph, bool fixed, bool may_purge, bool class_pages) {
  smp_lock_init(&ph->lock);
  ph->decay_due_ms = UINT64_MAX;
  ph->fixed = fixed;
  ph->may_purge = may_purge;
  ph->class_pages = class_pages;
}

void smp_pageheap_add_chunk(smp_pageheap_t *ph, smp_chunk_t *c) {
  smp_lock_acquire(&ph->lock);
  chunk_link_locked(ph, c, false);
  smp_lock_release(&ph->lock);
}

void smp_pageheap_release_all(smp_pageheap_t *ph, void (*release)(smp_chunk_t *c, void *arg),
                              void *arg) {
  smp_lock_acquire(&ph->lock);
  smp_chunk_t *c = ph->chunks;
  ph->chunks = NULL;
  smp_lock_release(&ph->lock);
  for (smp_chunk_t *next; c; c = next) {
    next = c->next;
    release(c, arg);
  }
}

void smp_pageheap_lock_fork(smp_pageheap_t *ph) { smp_lock_acquire(&ph->lock); }
void smp_pageheap_unlock_fork(smp_pageheap_t *ph) { smp_lock_release(&ph->lock); }
