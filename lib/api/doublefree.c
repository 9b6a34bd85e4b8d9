// Layer: api. See doublefree.h for the argument. The counters are statistics (stats.h).
#include "central.h"
#include "doublefree.h"
#include "frontend.h"
#include "heap.h"
#include "stats.h"

static smp_counter_t suspicions, confirmed;

bool smp_doublefree_confirm(smp_span_t *s, unsigned cls, const void *p) {
  smp_counter_add_shared(&suspicions, 1);
  // Caches first, then the span: a block flushed from a cache between the two is missed, never
  // found twice. The cache locks are all released before the class lock is taken (lock order).
  smp_heap_t *h = smp_heap_of_chunk(smp_span_chunk(s));
  bool cached = h->is_default ? smp_frontend_holds(cls, p) : smp_hcache_holds(&h->caches, cls, p);
  bool found = cached || smp_central_holds(s, cls, p);
  if (found) smp_counter_add_shared(&confirmed, 1);
  return found;
}

void smp_doublefree_stats(smp_doublefree_stats_t *out) {
  out->suspicions = smp_counter_get(&suspicions);
  out->confirmed = smp_counter_get(&confirmed);
}
