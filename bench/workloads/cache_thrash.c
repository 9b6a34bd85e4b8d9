// Workload: active false sharing (after Berger et al.'s cache-thrash, from Hoard). Each thread
// repeatedly allocates a small object, writes every byte of it many times and frees it. An
// allocator that serves concurrent threads' requests from one run of memory (a shared heap, or
// per-CPU caches filled from the same span) can give two threads objects on one cache line, and
// every write then pulls the line from the other CPU's cache. cache_scratch is the passive
// variant, where the sharing starts from objects main allocated.
// Checks, after each object's writes, that every byte holds its count of writes; each object is
// zeroed first, so a check cannot pass on stale contents.
// Prints writes per second (all threads) and peak RSS.
// Usage: cache_thrash [threads=2] [objects per thread=5000] [object size=8]
//                     [writes per byte=50000]
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "workload.h"

static long objects, writes;
static size_t size;
static pthread_barrier_t start;

static void *run(void *arg) {
  unsigned id = (unsigned)(uintptr_t)arg;
  pthread_barrier_wait(&start);
  for (long i = 0; i < objects; i++) {
    volatile unsigned char *p = malloc(size);
    if (!p) {
      workload_fail("cache_thrash: thread %u: malloc(%zu) failed", id, size);
      return NULL;
    }
    for (size_t k = 0; k < size; k++) p[k] = 0;
    for (long r = 0; r < writes; r++)
      for (size_t k = 0; k < size; k++) p[k]++;
    for (size_t k = 0; k < size; k++) {
      if (p[k] != (unsigned char)writes) {
        workload_fail("cache_thrash: thread %u: byte %zu of %p is %#x after %ld writes", id, k,
                      (void *)p, p[k], writes);
        break;
      }
    }
    free((void *)p);
  }
  return NULL;
}

int main(int argc, char **argv) {
  unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 2;
  objects = argc > 2 ? atol(argv[2]) : 5000;
  size = argc > 3 ? (size_t)atol(argv[3]) : 8;
  writes = argc > 4 ? atol(argv[4]) : 50000;
  if (threads < 1 || objects < 1 || size < 1 || writes < 1) {
    fprintf(stderr, "usage: cache_thrash [threads] [objects per thread] [object size] "
                    "[writes per byte]\n");
    return 2;
  }
  pthread_t *t = malloc(threads * sizeof *t);
  if (!t) return 2;
  pthread_barrier_init(&start, NULL, threads);
  double t0 = workload_now();
  for (unsigned i = 0; i < threads; i++)
    if (pthread_create(&t[i], NULL, run, (void *)(uintptr_t)i) != 0) return 2;
  for (unsigned i = 0; i < threads; i++) pthread_join(t[i], NULL);
  double secs = workload_now() - t0;
  pthread_barrier_destroy(&start);
  long failures = workload_failures();
  double total = (double)threads * (double)objects * (double)writes * (double)size;
  printf("cache_thrash threads=%u objects=%ld size=%zu writes=%ld time=%.3f s mwrites=%.1f "
         "peak_rss=%ld KiB %s\n",
         threads, objects * threads, size, writes, secs, total / secs / 1e6,
         workload_peak_rss_kib(), failures ? "FAILED" : "ok");
  free(t);
  return failures ? 1 : 0;
}
