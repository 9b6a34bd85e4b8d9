// Layer: caches. The front-end interface the api layer calls: one fast pair (inline, returns a
// miss) and one slow pair (refill/flush) per front end. Today the per-thread cache serves every
// thread; the per-CPU (rseq) front end plugs in here with the same four operations, selected
// once at start-up.
#ifndef SMP_FRONTEND_H
#define SMP_FRONTEND_H

#include "tcache.h"

SMP_INLINE void *smp_frontend_alloc_fast(unsigned cls) { return smp_tcache_alloc_fast(cls); }
SMP_INLINE bool smp_frontend_free_fast(void *p, unsigned cls) { return smp_tcache_free_fast(p, cls); }
SMP_INLINE void *smp_frontend_alloc_slow(unsigned cls) { return smp_tcache_alloc_slow(cls); }
SMP_INLINE void smp_frontend_free_slow(void *p, unsigned cls) { smp_tcache_free_slow(p, cls); }
SMP_INLINE void smp_frontend_flush_self(void) { smp_tcache_flush_self(); }
SMP_INLINE const char *smp_frontend_name(void) { return "thread (per-CPU front end not built)"; }

#endif
