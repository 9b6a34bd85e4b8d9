// Layer: page heap. The span module's descriptor: struct smp_span, its states, and the
// accessors that need only the descriptor (the ones that go through the chunk header,
// smp_span_chunk and smp_span_start, are in pagemap.h after the chunk layout they read).
// It belongs to the span module (objects layer: span.h, span.c, remote.h) but is declared here,
// in the page heap layer, because the page heap cannot do without it and a layer includes only
// the layers above it: a chunk header embeds one descriptor per page (pagemap.h needs the
// complete type), and the page heap allocates, splits and coalesces spans through it. Its
// fields say who writes them: the page heap (under its lock) the page-run fields and state; the
// owner of a small span (span.c, remote.c, central.c, under the class's central lock) the
// object fields; any thread the remote word (remote.h). One descriptor per page of a chunk,
// meaningful only at a span's first page.
#ifndef SMP_SPAN_DESC_H
#define SMP_SPAN_DESC_H

#include <stddef.h>
#include <stdint.h>

#include "compiler.h"
#include "config.h"

typedef struct smp_span smp_span_t;

enum smp_span_state {
  SMP_SPAN_NONE = 0, // descriptor not at the first page of a span
  SMP_SPAN_FREE,     // owned by the page heap
  SMP_SPAN_SMALL,    // blocks of one size class, owned by the central list of that class
  SMP_SPAN_LARGE,    // one large block
};

// One per page of a chunk; meaningful only at the first page of a span. 64 bytes, so spans
// never share a cache line and remote frees to one span do not disturb another.
struct smp_span {
  _Atomic uint64_t remote; // atomic: remote-free word, see remote.h (small spans only)
  union {
    struct {                  // SMALL spans
      void *free;             // central lock: local free list (encoded links)
      char *carve;            // central lock: next never-used block
    };
    struct {                  // FREE spans on the page heap's decay list (decay.c)
      smp_span_t *dirty_next; // page-heap lock: the next younger dirty span
      smp_span_t *dirty_prev; // page-heap lock: the next older one
    };
  };
  smp_span_t *next;        // page-heap lock (free lists) or central lock (partial list)
  smp_span_t *prev;        // as next
  uint64_t freed_ms;       // page-heap lock: when a dirty FREE span joined the decay list
  uint32_t carve_left;     // central lock: blocks not yet carved
  uint16_t npages;         // page-heap lock: length of the span in pages
  uint16_t capacity;       // set at carving: blocks in a small span
  uint8_t sizeclass;       // set at carving: 0 unless small
  uint8_t state;           // page-heap lock: enum smp_span_state
  uint8_t listed;          // central lock: on its class's partial list
  uint8_t zeroed;          // page-heap lock: a free span whose pages read as zero
  uint8_t purged;          // page-heap lock: a free span given back with MADV_FREE (not zeroed)
  uint8_t dirty;           // page-heap lock: a free span on the decay list
  uint16_t page;           // set with the span: its first page, the index of this descriptor
} SMP_CACHE_ALIGNED;

_Static_assert(sizeof(smp_span_t) == 64, "a span descriptor is one cache line");

SMP_INLINE size_t smp_span_first_page(const smp_span_t *s) { return s->page; }
SMP_INLINE size_t smp_span_bytes(const smp_span_t *s) { return (size_t)s->npages << SMP_PAGE_SHIFT; }

#endif
