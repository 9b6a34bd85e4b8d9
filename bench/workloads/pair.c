// Workload: the cost of one malloc/free pair, the allocator's fast path, on each of T threads
// running the same independent loop (no block crosses threads). Cycles through a few sizes so
// the loop is not a single-class special case. Checks that malloc never fails and that the first
// and last byte of each block read back what was written (volatile accesses, so the compiler can
// neither drop the pair nor fold the check). One thread runs on the main thread, so its figure
// has no thread start-up in it. Prints ns per pair (the wall time over all pairs of all threads)
// and peak RSS.
// Usage: pair [threads=1] [pairs per thread=50000000] [max size=256]
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "workload.h"

enum { MAX_THREADS = 1024 }; // also turns the old "pair PAIRS" command line into a usage error

static long pairs;
static size_t max;

static void *run(void *arg) {
  static const size_t sizes[8] = {16, 24, 32, 48, 64, 100, 128, 256};
  unsigned id = (unsigned)(uintptr_t)arg;
  for (long i = 0; i < pairs; i++) {
    size_t n = sizes[i & 7] <= max ? sizes[i & 7] : max;
    volatile char *p = malloc(n);
    if (!p) {
      workload_fail("pair: thread %u: malloc(%zu) failed", id, n);
      return NULL;
    }
    char v = (char)(i ^ id);
    p[0] = v;
    p[n - 1] = v;
    if (p[0] != v || p[n - 1] != v) {
      workload_fail("pair: thread %u: block %p of %zu bytes does not read back", id, (void *)p, n);
      return NULL;
    }
    free((void *)p);
  }
  return NULL;
}

int main(int argc, char **argv) {
  unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 1;
  pairs = argc > 2 ? atol(argv[2]) : 50000000;
  max = argc > 3 ? (size_t)atol(argv[3]) : 256;
  pthread_t *t = malloc(threads * sizeof *t);
  if (threads < 1 || threads > MAX_THREADS || pairs < 1 || max < 1 || !t) {
    fprintf(stderr, "usage: pair [threads 1..%d] [pairs per thread >= 1] [max size >= 1]\n",
            MAX_THREADS);
    return 2;
  }
  double t0 = workload_now();
  if (threads == 1) {
    run(NULL);
  } else {
    for (unsigned i = 0; i < threads; i++)
      if (pthread_create(&t[i], NULL, run, (void *)(uintptr_t)i) != 0) return 2;
    for (unsigned i = 0; i < threads; i++) pthread_join(t[i], NULL);
  }
  double secs = workload_now() - t0;
  printf("pair threads=%u pairs=%ld time=%.3f s ns_per_pair=%.2f peak_rss=%ld KiB %s\n", threads,
         pairs, secs, secs * 1e9 / ((double)pairs * threads), workload_peak_rss_kib(),
         workload_failures() ? "FAILED" : "ok");
  free(t);
  return workload_failures() ? 1 : 0;
}
