// Workload: active false sharing (after Berger et al.'s cache-thrash, from Hoard). Each thread
// repeatedly allocates a small object, writes every byte of it many times and frees it. An
// allocator that serves concurrent threads' requests from one run of memory (a shared heap, or
// per-CPU caches filled from the same span) can give two threads objects on one cache line, and
// every write then pulls the line from the other CPU's cache. cache_scratch is the passive
// variant, where the sharing starts from objects main allocated.
// Checks, after each object's writes, that every byte holds its count of writes; each object is
// zeroed first, so a check cannot pass on stale contents.
// Prints writes per second (all threads) and peak RSS. The loop, the command line and the result
// line are false_sharing.h's, shared with cache_scratch.
// Usage: cache_thrash [threads=2] [objects per thread=5000] [object size=8]
//                     [writes per byte=50000]
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "false_sharing.h"
#include "workload.h"

static void *run(void *arg) {
  pthread_barrier_wait(&start);
  false_sharing_loop((unsigned)(uintptr_t)arg);
  return NULL;
}

int main(int argc, char **argv) {
  unsigned threads = false_sharing_args("cache_thrash", argc, argv);
  pthread_t *t = malloc(threads * sizeof *t);
  if (!t) return 2;
  pthread_barrier_init(&start, NULL, threads);
  double t0 = workload_now();
  for (unsigned i = 0; i < threads; i++)
    if (pthread_create(&t[i], NULL, run, (void *)(uintptr_t)i) != 0) return 2;
  for (unsigned i = 0; i < threads; i++) pthread_join(t[i], NULL);
  double secs = workload_now() - t0;
  pthread_barrier_destroy(&start);
  int status = false_sharing_report(threads, secs);
  free(t);
  return status;
}
