// Layer: api. See background.h.
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include "background.h"
#include "frontend.h"
#include "pageheap.h"

_Atomic int smp_background_state;

static void *background_main(void *arg) {
  (void)arg;
  // A quarter of the decay time, 10 ms to 1 s; with decay off only idle caches are left to
  // drain, once a second.
  uint64_t period = smp_options.decay_ms ? smp_options.decay_ms / 4 : 1000;
  if (period < 10) period = 10;
  if (period > 1000) period = 1000;
  for (;;) {
    struct timespec ts = {(time_t)(period / 1000), (long)(period % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0) {
    }
    smp_pageheap_decay();
    if (smp_frontend_is_percpu()) smp_cpucache_drain_idle();
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
