// Layer: api. The sampling heap profiler (SMPALLOC_OPTIONS prof, prof_sample, prof_signal).
//
// Allocations are sampled by bytes, as tcmalloc and jemalloc do: each thread counts down the
// bytes it allocates, and the request that takes the count below zero is sampled, the next
// count drawn from an exponential distribution of mean prof_sample bytes. So every byte is
// sampled with the same probability, a block of s bytes with probability 1 - exp(-s/R), and
// dividing by that probability makes the estimate of each stack's bytes unbiased.
//
// A sampled request becomes a hardened block (harden.h) whose header records its stack; the
// others are plain blocks. So free's hit path still takes every block that was not sampled,
// and a sampled one reaches the slow path, which finds its header (the profile of live memory
// is then a visit of the heaps for hardened blocks, nothing else to keep up to date). malloc's
// hit path cannot count bytes without instructions of its own, so with prof on every request
// takes the slow path (smp_alloc_limits, as hardening does), where malloc's small requests take
// a lean route (alloc.c: smp_alloc_malloc_slow, alloc_small_plain): the countdown, then the
// front end's pop; that is the profiler's cost. In fill mode (harden.h) the requests hardened
// anyway are sampled the same way, and only the sampled ones record a stack.
//
// Profiles: the legacy heap-profile text that google-pprof reads ("heap_v2/<R>": pprof
// divides by the sampling probability itself), and folded stacks for flame graphs with the
// estimate already divided. Written at exit, when prof_signal arrives (at the next slow path
// of malloc that does its upkeep, a refill or a sample: the handler only sets a flag), and by
// smp_prof_dump.
#ifndef SMP_PROF_H
#define SMP_PROF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

// Set once at start-up: prof is on.
extern SMP_HIDDEN bool smp_prof_on;
// A signal asked for a profile (the slow paths of malloc write it).
extern SMP_HIDDEN _Atomic bool smp_prof_dump_pending;

// Start-up, after the options: install prof_signal's handler.
void smp_prof_init(void);
// Per thread: bytes left before the next sample (0 before the thread's first request).
extern __thread int64_t smp_prof_until_sample SMP_TLS_IE;
// The request that took the count to 0 or below: whether it is sampled (not the thread's
// first request, which draws its first gap), and the next gap drawn.
bool smp_prof_sample_slow(size_t size);
// Count a request of size bytes against the calling thread's gap: true if it stays short of
// the next sample (not sampled), false if smp_prof_sample_slow must decide.
SMP_INLINE bool smp_prof_count(size_t size) {
  return SMP_LIKELY(size <= ((size_t)1 << 62)) &&
         (smp_prof_until_sample -= (int64_t)(size + (size == 0))) > 0;
}
// Whether the calling thread's request of size bytes is sampled.
SMP_INLINE bool smp_prof_sample(size_t size) {
  return !smp_prof_count(size) && smp_prof_sample_slow(size);
}
// Write the profile now (prof_signal's, from a slow path).
void smp_prof_dump_signalled(void);
// Fork child: the thread that forked draws its own samples from now on.
void smp_prof_forked(void);
// Exit: the profile of what is left.
void smp_prof_at_exit(void);

#endif
