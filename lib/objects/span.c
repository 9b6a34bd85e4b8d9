// Layer: objects. See span.h.
#include "debug.h"
#include "remote.h"
#include "span.h"

uintptr_t smp_block_link_key;
uintptr_t smp_block_mark_key = 0x5eed5eed5eed5eedull | 1;
bool smp_span_carve_clears_trailer;

void smp_span_init_keys(uint64_t seed) {
  uint64_t a = seed * 0x9e3779b97f4a7c15ull, b = (seed ^ (seed >> 29)) * 0xbf58476d1ce4e5b9ull;
  smp_block_link_key = (uintptr_t)(a ^ (a >> 31));
  smp_block_mark_key = (uintptr_t)(b ^ (b >> 32)) | 1; // odd: a mark is never 0 nor a block
}

void smp_span_carve_init(smp_span_t *s, unsigned cls) {
  const smp_class_info_t *ci = &smp_class_info[cls];
  s->sizeclass = (uint8_t)cls;
  s->capacity = (uint16_t)ci->capacity;
  s->free = NULL;
  s->carve = smp_span_start(s);
  s->carve_left = ci->capacity;
  // The tail past the last block (a multiple of 16 bytes, maybe 0) starts at a block boundary
  // by the fast path's arithmetic; marking it "free" sends a free of it to the slow path's
  // complete check instead of into a cache.
  size_t used = (size_t)ci->capacity * ci->size;
  if (used < smp_span_bytes(s)) smp_block_mark(s->carve + used);
  s->listed = 0;
  smp_store_relaxed(&s->remote, smp_remote_word(NULL, 0, 0));
}

bool smp_span_is_block(const smp_span_t *s, const void *p) {
  const char *start = smp_span_start(s);
  size_t off = (size_t)((const char *)p - start);
  return (const char *)p >= start && off < (size_t)s->capacity * smp_class_info[s->sizeclass].size &&
         smp_sizeclass_on_boundary(s->sizeclass, off);
}

unsigned smp_span_pop(smp_span_t *s, void **out, unsigned n) {
  unsigned got = 0;
  void *b = s->free;
  while (got < n && b != NULL) {
    void *next = smp_block_link(b);
    if (SMP_UNLIKELY(next != NULL && !smp_span_is_block(s, next)))
      smp_debug_fatal("malloc", "free list corrupted (heap overflow?) after block", b);
    out[got++] = b;
    b = next;
  }
  s->free = b;
  if (got < n && s->carve_left) {
    size_t size = smp_class_info[s->sizeclass].size;
    unsigned k = n - got < s->carve_left ? n - got : s->carve_left;
    for (unsigned i = 0; i < k; i++) out[got++] = s->carve + i * size;
    if (SMP_UNLIKELY(smp_span_carve_clears_trailer))
      for (unsigned i = 1; i <= k; i++) ((uintptr_t *)(s->carve + i * size))[-1] = 0;
    s->carve += k * size;
    s->carve_left -= k;
  }
  return got;
}
