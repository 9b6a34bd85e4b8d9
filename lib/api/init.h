// Layer: api. Process and thread lifecycle: start-up, thread exit, fork.
// Start-up runs on the first slow path (or the library constructor, whichever comes first)
// and allocates nothing until the heap is usable: options come from environ directly, keys
// from AT_RANDOM. Only then are the pthread key (thread exit) and the fork handlers set up,
// since pthread_atfork may itself call malloc.
// Fork: prepare takes every allocator lock (statistics report, per-CPU caches, central lists,
// page heap, huge table, cache registry); parent and child release them; the child then flushes
// the caches of threads that it does not have.
// Start-up state (smp_init_state): 0 -> 1 by a CAS that one caller wins; the winner sets up the
// heap and stores 2 with release; every other caller waits until it loads 2 with acquire, and
// the fast check (smp_init_ensure) is that acquire load, so whoever sees 2 sees the options,
// class table and keys the winner wrote. stress_init races threads through it.
#ifndef SMP_INIT_H
#define SMP_INIT_H

#include "atomic.h"
#include "compiler.h"

extern SMP_HIDDEN _Atomic int smp_init_state; // 0 not started, 1 running, 2 done

void smp_init_slow(void);

SMP_INLINE void smp_init_ensure(void) {
  if (SMP_UNLIKELY(smp_load_acquire(&smp_init_state) != 2)) smp_init_slow();
}

#endif
