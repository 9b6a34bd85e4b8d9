// Layer: page heap. The chunk-ownership bitmap and the checked span lookup (see pagemap.h).
// The bitmap covers the whole user address space, one bit per chunk: 4 MiB of zero-filled
// BSS that the kernel backs only where chunks exist (one 4 KiB page per 128 GiB of chunks).
#include "pagemap.h"

_Atomic uint64_t smp_pagemap_bits[SMP_PAGEMAP_WORDS];

void smp_pagemap_set_owned(const smp_chunk_t *c, bool owned) {
  uintptr_t i = (uintptr_t)c >> SMP_CHUNK_SHIFT;
  uint64_t bit = (uint64_t)1 << (i % 64);
  if (owned)
    atomic_fetch_or_explicit(&smp_pagemap_bits[i / 64], bit, memory_order_relaxed);
  else
    atomic_fetch_and_explicit(&smp_pagemap_bits[i / 64], ~bit, memory_order_relaxed);
}

smp_span_t *smp_pagemap_span_checked(const void *p) {
  smp_chunk_t *c = smp_pagemap_chunk(p);
  size_t page = smp_pagemap_page(p);
  if (page < SMP_CHUNK_HEADER_PAGES) return NULL;
  size_t first = c->page_span[page];
  if (first < SMP_CHUNK_HEADER_PAGES || first > page) return NULL;
  smp_span_t *s = &c->spans[first];
  // Interior entries of free spans may name a descriptor that no longer starts a span (state
  // NONE) or a span that no longer covers this page: both mean "not in use".
  if (s->state != SMP_SPAN_SMALL && s->state != SMP_SPAN_LARGE) return NULL;
  if (page >= first + s->npages) return NULL;
  return s;
}
