// Layer: api. The optional background thread (option background:1). It wakes every quarter of
// the decay time (between 10 ms and 1 s), gives back the free pages that came of age
// (smp_pageheap_decay) and drains the per-CPU caches no thread used since its last pass, so
// memory goes back to the OS even when the process has gone idle.
// It is started lazily, on a slow path with no allocator lock held (pthread_create allocates),
// once the heap is initialised; a forked child starts its own the same way. It blocks every
// signal, never allocates, and is never joined: it ends with the process.
#ifndef SMP_BACKGROUND_H
#define SMP_BACKGROUND_H

#include <stdbool.h>

#include "atomic.h"
#include "compiler.h"
#include "options.h"

enum smp_background_state { SMP_BG_NONE, SMP_BG_STARTING, SMP_BG_RUNNING, SMP_BG_FAILED };
extern SMP_HIDDEN _Atomic int smp_background_state;

void smp_background_start(void);

// Slow paths call this: start the thread if the option asks for it and it is not running.
SMP_INLINE void smp_background_ensure(void) {
  if (SMP_UNLIKELY(smp_options.background) &&
      SMP_UNLIKELY(smp_load_relaxed(&smp_background_state) == SMP_BG_NONE))
    smp_background_start();
}

// Fork child: the thread did not survive the fork; let the next slow path start another.
void smp_background_forked(void);

// Passes the thread has made (statistics and tests).
uint64_t smp_background_passes(void);

#endif
