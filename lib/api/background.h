// Layer: api. The background thread (option background: auto, the default, starts it once the
// process has a second thread; 1 at the first slow path; 0 never). It wakes every quarter of the
// decay time (10 ms to 1 s; 1 s with decay off), or at once when the page heap grows past stranded
// dirty pages (smp_pageheap_wait_pass), drains the per-CPU caches that hold blocks nobody used
// since the last idle scan, and passes over every heap, the default one first: decay, the dirty
// bound, and every free page of a heap that served no call for a whole period
// (smp_pageheap_background_pass), and the same for the heap's cached huge mappings
// (smp_large_pass); it also gives back the memory of destroyed heaps
// (smp_heap_retire_deferred). Each page heap keeps its passes' bookkeeping and the page heap layer
// the wake-up event (decay.h): slow paths read the one to know whether passes still come, and
// signal the other from below this layer. Memory thus goes back while the process is idle, and the
// madvise calls run here instead of on the program's threads. It blocks every signal, never
// allocates, runs at the process's priority (at a lower one it would hold the page-heap lock while
// starved, and the program's threads would wait behind it; if it is slow all the same, the slow
// paths stand in after two periods), and is never joined: it ends with the process. A
// single-threaded process never gets one under auto: a thread it did not ask for would break
// unshare(CLONE_NEWUSER) and seccomp filters that forbid clone; there decay runs on the slow
// paths.
// State machine (smp_background_state): NONE -> STARTING by one CAS, won by the first slow path
// to see NONE with the option on (no allocator lock held: pthread_create allocates, and its
// nested calls see STARTING and go on); STARTING -> RUNNING or FAILED by a release store once
// pthread_create returns (FAILED is final: no retry). A fork child turns anything but FAILED back
// to NONE (the thread does not exist there) and the next slow path starts another: under 1 at
// once; under auto once the child has a second thread of its own (smp_os_multithreaded). Readers
// (statistics) load with acquire; the slow-path check is a relaxed load, as the CAS decides.
#ifndef SMP_BACKGROUND_H
#define SMP_BACKGROUND_H

#include "atomic.h"
#include "compiler.h"
#include "options.h"
#include "os.h"

enum smp_background_state { SMP_BG_NONE, SMP_BG_STARTING, SMP_BG_RUNNING, SMP_BG_FAILED };
extern SMP_HIDDEN _Atomic int smp_background_state;

void smp_background_start(void);

// Slow paths call this: start the thread if the option asks for it (auto: once the process
// is multithreaded) and it is not running.
SMP_INLINE void smp_background_ensure(void) {
  if (SMP_UNLIKELY(smp_options.background != SMP_BACKGROUND_OFF) &&
      SMP_UNLIKELY(smp_load_relaxed(&smp_background_state) == SMP_BG_NONE) &&
      (smp_options.background == SMP_BACKGROUND_ON || smp_os_multithreaded()))
    smp_background_start();
}

// Fork child: the thread did not survive the fork; let a later slow path start another (under
// auto, once the child has a second thread of its own).
void smp_background_forked(void);

#endif
