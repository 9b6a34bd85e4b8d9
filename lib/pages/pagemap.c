// Layer: page heap. The chunk-ownership bitmap, the region map and the checked span lookup (see
// pagemap.h). The bitmap covers the whole user address space, one bit per chunk: 4 MiB of
// zero-filled BSS that the kernel backs only where chunks exist (one 4 KiB page per 128 GiB of
// chunks); the retired bitmap, of the same shape, marks destroyed heaps' reserved chunks.
// Region map: top[page >> LEAF_BITS] -> leaf of 2^LEAF_BITS chunk pointers, one per 8 KiB page.
// Leaves are mapped on demand (mostly untouched: only the pages of entries written become
// resident) and never unmapped, so a reader that loaded a leaf pointer may always read it.
// Entries are written under region_lock, with release stores after the chunk's header is
// complete, and read with acquire loads; an entry is cleared before its chunk's memory is
// handed back to the caller, and reading a stale one is the caller's bug (a free racing with
// the destruction of its heap).
#include "os.h"
#include "pagemap.h"

_Atomic uint64_t smp_pagemap_bits[SMP_PAGEMAP_WORDS];
static _Atomic uint64_t retired_bits[SMP_PAGEMAP_WORDS];

#define LEAF_BITS 18
#define PAGE_BITS (SMP_ADDRESS_BITS - SMP_PAGE_SHIFT)
typedef _Atomic(smp_chunk_t *) leaf_entry_t;
static _Atomic(leaf_entry_t *) top[(size_t)1 << (PAGE_BITS - LEAF_BITS)];
static _Atomic size_t region_pages; // pages named by region chunks (0: no lookup needed)
static smp_lock_t region_lock = SMP_LOCK_INIT;

static void bit_set(_Atomic uint64_t *bits, const void *chunk, bool on) {
  uintptr_t i = (uintptr_t)chunk >> SMP_CHUNK_SHIFT;
  uint64_t bit = (uint64_t)1 << (i % 64);
  if (on)
    atomic_fetch_or_explicit(&bits[i / 64], bit, memory_order_relaxed);
  else
    atomic_fetch_and_explicit(&bits[i / 64], ~bit, memory_order_relaxed);
}

void smp_pagemap_set_owned(const smp_chunk_t *c, bool owned) { bit_set(smp_pagemap_bits, c, owned); }
void smp_pagemap_set_retired(const void *chunk, bool retired) { bit_set(retired_bits, chunk, retired); }

bool smp_pagemap_is_retired(const void *p) {
  uintptr_t c = (uintptr_t)p >> SMP_CHUNK_SHIFT;
  if (c >= SMP_PAGEMAP_WORDS * 64) return false;
  return (smp_load_relaxed(&retired_bits[c / 64]) >> (c % 64)) & 1;
}

// The entry of page number pn, or NULL if its leaf does not exist (and create is false).
static leaf_entry_t *entry_of(uintptr_t pn, bool create) {
  if (pn >> PAGE_BITS) return NULL;
  _Atomic(leaf_entry_t *) *slot = &top[pn >> LEAF_BITS];
  leaf_entry_t *leaf = smp_load_acquire(slot);
  if (leaf == NULL && create) { // region_lock held
    leaf = smp_os_map(sizeof(leaf_entry_t) << LEAF_BITS);
    if (leaf == NULL) return NULL;
    smp_store_release(slot, leaf);
  }
  return leaf ? &leaf[pn & (((uintptr_t)1 << LEAF_BITS) - 1)] : NULL;
}

static smp_chunk_t *region_find(const void *p) {
  leaf_entry_t *e = entry_of((uintptr_t)p >> SMP_PAGE_SHIFT, false);
  return e ? smp_load_acquire(e) : NULL;
}

bool smp_pagemap_region_overlaps(const void *base, size_t len) {
  uintptr_t from = (uintptr_t)base >> SMP_PAGE_SHIFT;
  uintptr_t to = ((uintptr_t)base + len + SMP_PAGE_SIZE - 1) >> SMP_PAGE_SHIFT;
  for (uintptr_t pn = from; pn < to; pn++) {
    leaf_entry_t *e = entry_of(pn, false);
    if (e && smp_load_acquire(e)) return true;
  }
  return false;
}

static void name_pages(smp_chunk_t *c, size_t from_page, smp_chunk_t *value) {
  uintptr_t pn0 = (uintptr_t)c->base >> SMP_PAGE_SHIFT;
  for (size_t i = from_page; i < c->end; i++) smp_store_release(entry_of(pn0 + i, false), value);
}

bool smp_pagemap_region_add(smp_chunk_t *c, size_t from_page) {
  uintptr_t pn0 = (uintptr_t)c->base >> SMP_PAGE_SHIFT;
  smp_lock_acquire(&region_lock);
  for (size_t i = from_page; i < c->end; i++) {
    leaf_entry_t *e = entry_of(pn0 + i, true);
    if (e == NULL || smp_load_relaxed(e) != NULL) {
      smp_lock_release(&region_lock);
      return false;
    }
  }
  name_pages(c, from_page, c);
  smp_fetch_add_relaxed(&region_pages, c->end - from_page);
  smp_lock_release(&region_lock);
  return true;
}

void smp_pagemap_region_remove(smp_chunk_t *c, size_t from_page) {
  smp_lock_acquire(&region_lock);
  name_pages(c, from_page, NULL);
  atomic_fetch_sub_explicit(&region_pages, c->end - from_page, memory_order_relaxed);
  smp_lock_release(&region_lock);
}

smp_chunk_t *smp_pagemap_find(const void *p) {
  if (smp_load_relaxed(&region_pages) != 0) {
    smp_chunk_t *c = region_find(p);
    if (c) return c;
  }
  return smp_pagemap_owns(p) ? smp_pagemap_chunk(p) : NULL;
}

smp_span_t *smp_pagemap_span_checked(const void *p) {
  smp_chunk_t *c = smp_pagemap_find(p);
  if (c == NULL) return NULL;
  size_t page = smp_chunk_page(c, p);
  if (page < c->first || page >= c->end) return NULL;
  size_t first = c->page_span[page];
  if (first < c->first || first > page) return NULL;
  smp_span_t *s = &c->spans[first];
  // Interior entries of free spans may name a descriptor that no longer starts a span (state
  // NONE) or a span that no longer covers this page: both mean "not in use".
  if (s->state != SMP_SPAN_SMALL && s->state != SMP_SPAN_LARGE) return NULL;
  if (page >= first + s->npages) return NULL;
  return s;
}
