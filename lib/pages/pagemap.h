// Layer: page heap. Address -> chunk -> span lookup in O(1) (the descriptor: span_desc.h).
// Glossary: a *chunk* is an SMP_CHUNK_SIZE-aligned reservation whose first pages hold this
// header; a *page* is SMP_PAGE_SIZE bytes; a *span* is a run of pages of one chunk, either free
// (owned by the page heap), small (carved into blocks of one size class) or large (one block).
// Ownership: one bit per chunk of the address space says "this chunk is ours", so any pointer
// can be checked before its chunk header is read. Bits are set (page-heap lock) before a span
// of the chunk is handed out, so a relaxed load on the free path sees them; they are cleared
// only when a wholly free chunk is unmapped.
// Page map: page_span[i] is the first page of the span holding page i for every page of an
// in-use span and for the first and last page of a free span (interior entries of free spans
// are stale: a reader checks the descriptor's state and range, see smp_pagemap_span_checked);
// page_class[i] is the size class of a small span's pages and 0 everywhere else. Both are
// written under the page-heap lock before the span is published; readers on the free path need
// no lock (publication is by the hand-off of the pointer itself). Spans tile a chunk's pages.
// page_owner[i] is a hint, the owner tag of a small span of the default heap: the per-CPU cache
// (index & 0xff) that took the last batch of blocks from it (0 if none did, or the tag of an
// earlier span: a reader checks the class first). Written under the class's
// central lock, read by free's fast path without a lock (relaxed: any value is safe to read;
// it only decides which stack of the calling CPU's cache a block goes to).
#ifndef SMP_PAGEMAP_H
#define SMP_PAGEMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "atomic.h"
#include "compiler.h"
#include "config.h"
#include "span_desc.h"

typedef struct smp_chunk smp_chunk_t;

struct smp_pageheap;

struct smp_chunk {
  uint8_t page_class[SMP_CHUNK_PAGES];  // see file header
  _Atomic uint8_t page_owner[SMP_CHUNK_PAGES]; // see file header
  uint16_t page_span[SMP_CHUNK_PAGES];  // see file header
  smp_chunk_t *next;                    // page-heap lock: all chunks, for trim and stats
  smp_chunk_t *prev;                    // page-heap lock
  struct smp_pageheap *heap;            // set at creation: the page heap the chunk belongs to
  char *base;                           // set at creation: address of page 0
  uint32_t free_pages;                  // page-heap lock
  uint16_t first;                       // set at creation: first page after the header
  uint16_t end;                         // set at creation: pages in the chunk (from base)
  smp_span_t spans[SMP_CHUNK_PAGES] SMP_CACHE_ALIGNED; // only [first, end) are ever used
};

// Pages at the start of every chunk taken by the header.
#define SMP_CHUNK_HEADER_PAGES ((sizeof(smp_chunk_t) + SMP_PAGE_SIZE - 1) / SMP_PAGE_SIZE)
// Pages of a chunk from the OS after its header.
#define SMP_CHUNK_USABLE_PAGES (SMP_CHUNK_PAGES - SMP_CHUNK_HEADER_PAGES)
// Bytes of the header of a chunk whose spans array needs end entries (region chunks).
#define SMP_CHUNK_HEADER_BYTES(end) (offsetof(smp_chunk_t, spans) + (size_t)(end) * sizeof(smp_span_t))

#define SMP_PAGEMAP_WORDS (((size_t)1 << (SMP_ADDRESS_BITS - SMP_CHUNK_SHIFT)) / 64)
extern SMP_HIDDEN _Atomic uint64_t smp_pagemap_bits[SMP_PAGEMAP_WORDS];

// Fast path: is p inside a chunk of ours? Pointers outside the user address space are not.
SMP_INLINE bool smp_pagemap_owns(const void *p) {
  uintptr_t c = (uintptr_t)p >> SMP_CHUNK_SHIFT;
  if (SMP_UNLIKELY(c >= SMP_PAGEMAP_WORDS * 64)) return false;
  return (smp_load_relaxed(&smp_pagemap_bits[c / 64]) >> (c % 64)) & 1;
}

SMP_INLINE smp_chunk_t *smp_pagemap_chunk(const void *p) {
  return (smp_chunk_t *)((uintptr_t)p & ~(SMP_CHUNK_SIZE - 1));
}

SMP_INLINE size_t smp_pagemap_page(const void *p) {
  return ((uintptr_t)p & (SMP_CHUNK_SIZE - 1)) >> SMP_PAGE_SHIFT;
}

// Size class of the block at p (0 if p is not in a small span). Caller checked ownership.
SMP_INLINE unsigned smp_pagemap_class(const void *p) {
  return smp_pagemap_chunk(p)->page_class[smp_pagemap_page(p)];
}

// Owner tags (see the file header): a cache index's tag (its low byte: indexes 256 apart share
// one, a hint all the same), and, for refills, "no cache" (not a byte: never written or matched).
#define SMP_OWNER_NONE 0x100u
SMP_INLINE unsigned smp_owner_tag(int index) { return (unsigned)index & 0xffu; }
// The owner tag of the small span holding p (a hint). Caller checked ownership and the class.
SMP_INLINE unsigned smp_pagemap_owner(const void *p) {
  return smp_load_relaxed(&smp_pagemap_chunk(p)->page_owner[smp_pagemap_page(p)]);
}

// Offset of p from the start of its span. Caller checked that p is in an in-use span.
SMP_INLINE size_t smp_pagemap_span_offset(const void *p) {
  const smp_chunk_t *c = smp_pagemap_chunk(p);
  size_t first = c->page_span[smp_pagemap_page(p)];
  return ((uintptr_t)p & (SMP_CHUNK_SIZE - 1)) - (first << SMP_PAGE_SHIFT);
}

// The span holding p. Caller checked ownership and that p is in an in-use span.
SMP_INLINE smp_span_t *smp_pagemap_span(const void *p) {
  smp_chunk_t *c = smp_pagemap_chunk(p);
  return &c->spans[c->page_span[smp_pagemap_page(p)]];
}

// A descriptor's chunk from its index (a chunk header need not sit at its pages: see regions).
SMP_INLINE smp_chunk_t *smp_span_chunk(const smp_span_t *s) {
  return (smp_chunk_t *)((uintptr_t)(s - s->page) - offsetof(smp_chunk_t, spans));
}
SMP_INLINE char *smp_span_start(const smp_span_t *s) {
  return smp_span_chunk(s)->base + ((size_t)s->page << SMP_PAGE_SHIFT);
}

// Region chunks. A heap over memory the caller gives (smp_heap_create_in) cuts it into chunks
// of up to SMP_CHUNK_PAGES pages at any 8 KiB-aligned address, whose header lies at their
// first page or outside the region. Their pages are not in the ownership bitmap (the free fast
// path never reads their header); the region map names the chunk of each of their pages: a
// two-level table indexed by page number, whose leaves are mapped when a region is registered
// and never unmapped, written under the region lock and read without a lock (acquire).
// Slow paths: the chunk of p, a region's first (a region may lie inside a block of an owned
// chunk, which then holds no small blocks there), or NULL if p is in no chunk of ours.
smp_chunk_t *smp_pagemap_find(const void *p);
// Page index of p in chunk c.
SMP_INLINE size_t smp_chunk_page(const smp_chunk_t *c, const void *p) {
  return ((uintptr_t)p - (uintptr_t)c->base) >> SMP_PAGE_SHIFT;
}
// Name c as the chunk of its pages [c->first, c->end) (the header pages too when they lie in
// the region: from 0). false if one of them is named already or the table cannot grow.
bool smp_pagemap_region_add(smp_chunk_t *c, size_t from_page);
void smp_pagemap_region_remove(smp_chunk_t *c, size_t from_page);
// Whether any page in [base, base + len) is named by a region chunk.
bool smp_pagemap_region_overlaps(const void *base, size_t len);

// The in-use span holding p, or NULL if p lies in a free span, a header or no chunk of ours.
smp_span_t *smp_pagemap_span_checked(const void *p);
void smp_pagemap_set_owned(const smp_chunk_t *c, bool owned);
// Chunks of destroyed heaps whose address range is still reserved (no access): a free into one
// is certainly a block of a destroyed heap. Set and cleared by the heap layer.
void smp_pagemap_set_retired(const void *chunk, bool retired);
bool smp_pagemap_is_retired(const void *p);

#endif
