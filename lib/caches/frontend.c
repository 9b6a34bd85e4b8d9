// Layer: caches. See frontend.h.
#include "debug.h"
#include "frontend.h"
#include "central.h"
#include "options.h"

_Atomic bool smp_frontend_percpu;
static char name[96] = "thread";

static void set_thread_name(const char *reason) {
  smp_text_t t;
  smp_text_init(&t, -1);
  smp_text_str(&t, "thread (");
  smp_text_str(&t, reason);
  smp_text_str(&t, ")");
  size_t n = t.len < sizeof name - 1 ? t.len : sizeof name - 1;
  __builtin_memcpy(name, t.buf, n);
  name[n] = 0;
}

void smp_frontend_select(void) {
  if (smp_options.frontend == SMP_FRONTEND_THREAD) {
    set_thread_name("SMPALLOC_OPTIONS=frontend:thread");
    return;
  }
  if (SMP_TSAN) { // ThreadSanitizer cannot follow rseq restarts
    set_thread_name("ThreadSanitizer build");
    return;
  }
  if (smp_options.debug) {
    set_thread_name("debug mode caches nothing");
    return;
  }
  const char *reason = NULL;
  if (!smp_cpucache_init(&reason)) {
    if (smp_options.frontend == SMP_FRONTEND_PERCPU)
      smp_debug_warn("SMPALLOC_OPTIONS=frontend:percpu not possible here", reason);
    set_thread_name(reason);
    return;
  }
  smp_store_release(&smp_frontend_percpu, true);
}

void *smp_frontend_alloc_slow(unsigned cls) {
  void *p = smp_frontend_is_percpu() ? smp_cpucache_alloc_slow(cls) : smp_tcache_alloc_slow(cls);
  if (SMP_ASAN && p) smp_asan_unpoison(p, smp_class_info[cls].size); // asan.h
  return p;
}

void *smp_frontend_alloc_nowait(unsigned cls) {
  void *p = smp_frontend_is_percpu() ? smp_cpucache_alloc_nowait(cls) : smp_tcache_alloc_nowait(cls);
  if (SMP_ASAN && p) smp_asan_unpoison(p, smp_class_info[cls].size);
  return p;
}

void smp_frontend_free_slow(void *p, unsigned cls) {
  if (smp_frontend_is_percpu())
    smp_cpucache_free_slow(p, cls);
  else
    smp_tcache_free_slow(p, cls);
}

bool smp_frontend_holds(unsigned cls, const void *p) {
  return smp_frontend_is_percpu() ? smp_cpucache_holds(cls, p) : smp_tcache_holds(cls, p);
}

void smp_frontend_flush(void) {
  if (smp_frontend_is_percpu())
    smp_cpucache_drain_all();
  else
    smp_tcache_flush_self();
  smp_central_transfer_drain(smp_central_default, false);
}

const char *smp_frontend_name(void) {
  return smp_frontend_is_percpu() ? smp_cpucache_name() : name;
}
