// Workload: thread-local churn (after Berger et al.'s threadtest). Each of T threads repeatedly
// allocates a working set of K small blocks, writes them, and frees them all; no block crosses
// threads. With many more threads than CPUs this measures the memory that caches keep per
// thread (or per CPU). Checks every block's tag before free.
// Usage: threadtest [threads=64] [rounds=2000] [K=256] [size=64]
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "workload.h"

static long rounds;
static unsigned k;
static size_t size;

static void *run(void *arg) {
  uintptr_t id = (uintptr_t)arg;
  void **set = malloc(k * sizeof *set);
  for (long r = 0; r < rounds; r++) {
    for (unsigned i = 0; i < k; i++) {
      size_t n = size + (i & 3) * 8;
      uintptr_t *p = malloc(n);
      if (p) p[0] = (uintptr_t)p ^ id;
      else workload_fail("threadtest: thread %u: malloc(%zu) failed", (unsigned)id, n);
      set[i] = p;
    }
    for (unsigned i = 0; i < k; i++) {
      uintptr_t *p = set[i];
      if (p && p[0] != ((uintptr_t)p ^ id))
        workload_fail("threadtest: thread %u: block %p corrupted", (unsigned)id, (void *)p);
      free(p);
    }
  }
  free(set);
  return NULL;
}

int main(int argc, char **argv) {
  unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 64;
  rounds = argc > 2 ? atol(argv[2]) : 2000;
  k = argc > 3 ? (unsigned)atoi(argv[3]) : 256;
  size = argc > 4 ? (size_t)atol(argv[4]) : 64;
  pthread_t *t = malloc(threads * sizeof *t);
  double t0 = workload_now();
  for (unsigned i = 0; i < threads; i++)
    if (pthread_create(&t[i], NULL, run, (void *)(uintptr_t)i) != 0) return 2;
  for (unsigned i = 0; i < threads; i++) pthread_join(t[i], NULL);
  double secs = workload_now() - t0;
  double ops = 2.0 * threads * (double)rounds * k;
  printf("threadtest threads=%u rounds=%ld k=%u size=%zu time=%.3f s mops=%.1f peak_rss=%ld KiB %s\n",
         threads, rounds, k, size, secs, ops / secs / 1e6, workload_peak_rss_kib(),
         workload_failures() ? "FAILED" : "ok");
  free(t);
  return workload_failures() ? 1 : 0;
}
