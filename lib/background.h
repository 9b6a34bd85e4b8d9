// Layer: api. The optional background thread (option background:1). It wakes every quarter of
// the decay time (10 ms to 1 s; 1 s with decay off), gives back the free pages that came of age
// (smp_pageheap_decay) and drains the per-CPU caches that hold blocks nobody used since the
// last idle scan, so memory goes back to the OS even when the process has gone idle. It blocks
// every signal, never allocates, and is never joined: it ends with the process.
// State machine (smp_background_state): NONE -> STARTING by one CAS, won by the first slow path
// to see NONE with the option on (no allocator lock held: pthread_create allocates, and its
// nested calls see STARTING and go on); STARTING -> RUNNING or FAILED by a release store once
// pthread_create returns (FAILED is final: no retry). A fork child turns anything but FAILED back
// to NONE (the thread does not exist there) and the next slow path starts another. Readers
// (statistics) load with acquire; the slow-path check is a relaxed load, as the CAS decides.
#ifndef SMP_BACKGROUND_H
#define SMP_BACKGROUND_H

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

#endif
