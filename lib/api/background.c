// Layer: api. See background.h.
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include "background.h"
#include "heap.h"
#include "central.h"
#include "frontend.h"
#include "large.h"
#include "pageheap.h"

_Atomic int smp_background_state;

// One heap's pass. The page heap's calls are counted before the caches drain: the spans a
// drain empties are not the program's doing, and an idle heap gives their pages back in the
// same pass, with its classes' wholly free reserve spans. The default heap's transfer caches
// that no miss used since the previous pass go back to their spans too.
static void pass_heap(smp_heap_t *h, bool drain_caches) {
  smp_pageheap_t *ph = &h->pages;
  uint64_t calls = smp_pageheap_calls(ph);
  if (drain_caches) smp_cpucache_drain_idle();
  smp_central_transfer_drain(&h->central, true); // the transfer caches not used since
  bool idle = smp_pageheap_idle_since(ph, calls);
  if (idle) smp_central_trim(&h->central);
  smp_pageheap_background_pass(ph, idle);
  smp_large_pass(ph, idle); // cached huge mappings: aged, beyond the bound, or all if idle
}

// The other heaps (under the registry lock), those that may give pages back.
static void pass_other(smp_heap_t *h, void *arg) {
  (void)arg;
  if (!h->is_default && h->pages.may_purge) pass_heap(h, false);
}

static void *background_main(void *arg) {
  (void)arg;
  // A pass at once: from then on the slow paths leave the page heap's upkeep to this thread.
  for (;;) {
    pass_heap(SMP_HEAP_DEFAULT, smp_frontend_is_percpu());
    smp_heap_retire_deferred(); // destroyed heaps' memory
    smp_heap_each(pass_other, NULL, NULL);
    smp_pageheap_wait_pass();
  }
  return NULL;
}

void smp_background_start(void) {
  int expected = SMP_BG_NONE;
  if (!atomic_compare_exchange_strong(&smp_background_state, &expected, SMP_BG_STARTING))
    return; // running, failed, or being started (possibly by this thread: pthread_create allocates)
  pthread_attr_t attr;
  sigset_t all, old;
  pthread_t thread;
  int rc = pthread_attr_init(&attr);
  if (rc == 0) {
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    // The default stack (only the pages touched become resident; a small fixed size would
    // fail where the program's static TLS is large). Default scheduling, not the policy of
    // whichever thread happened to start it.
    pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); // the thread inherits: no signal is delivered to it
    rc = pthread_create(&thread, &attr, background_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
  }
  // A thread that cannot be created (limits, seccomp) is not retried: decay still runs on the
  // slow paths, and the statistics say the thread is not running.
  smp_store_release(&smp_background_state, rc == 0 ? SMP_BG_RUNNING : SMP_BG_FAILED);
}

void smp_background_forked(void) {
  // Running or being started by another thread: either way there is no thread in the child.
  if (smp_load_relaxed(&smp_background_state) != SMP_BG_FAILED)
    smp_store_relaxed(&smp_background_state, SMP_BG_NONE);
}
