// Workload: threads churn a working set of small blocks, and hand a fraction of them to the
// next thread, which frees them (remote frees). Calls plain malloc/free so any allocator can be
// preloaded. Prints ops/s and this process's peak RSS; checks each block's tag before free.
// Usage: mt_churn [threads=4] [seconds-ish ops per thread=2000000] [max size=512]
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "workload.h"

enum { SLOTS = 4096, RING = 1024 };

typedef struct worker {
  pthread_t tid;
  unsigned id;
  long ops;
  size_t max_size;
  struct worker *next;        // receives our hand-offs
  void *_Atomic ring[RING];   // blocks handed to this worker, freed by it
} worker_t;

static void *block_new(size_t n, uint64_t tag) {
  uint64_t *p = malloc(n < 16 ? 16 : n);
  if (p) p[0] = tag, p[1] = n;
  return p;
}

static int block_ok(uint64_t *p, uint64_t tag) { return p[0] == tag; }

static void *run(void *arg) {
  worker_t *w = arg;
  uint64_t seed = 0x9e3779b97f4a7c15ull * (w->id + 1);
  void *slot[SLOTS] = {0};
  for (long i = 0; i < w->ops; i++) {
    uint64_t r = workload_rand(&seed);
    unsigned k = (unsigned)(r % SLOTS);
    if (slot[k]) {
      if (!block_ok(slot[k], (uintptr_t)slot[k] ^ w->id))
        workload_fail("mt_churn: thread %u: block %p corrupted", w->id, slot[k]);
      if ((r >> 32) % 8 == 0) { // hand to the next worker instead of freeing
        unsigned j = (unsigned)((r >> 40) % RING);
        void *old = atomic_exchange(&w->next->ring[j], slot[k]);
        if (old) free(old); // ours, not taken yet: a local free
        void *mine = atomic_exchange(&w->ring[j], NULL);
        if (mine) free(mine); // allocated by the previous worker: a remote free
      } else {
        free(slot[k]);
      }
    }
    size_t n = 1 + (size_t)((r >> 16) % w->max_size);
    slot[k] = block_new(n, 0);
    if (slot[k]) ((uint64_t *)slot[k])[0] = (uintptr_t)slot[k] ^ w->id;
    else workload_fail("mt_churn: thread %u: malloc(%zu) failed", w->id, n);
  }
  for (unsigned k = 0; k < SLOTS; k++) free(slot[k]);
  return NULL;
}

int main(int argc, char **argv) {
  unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 4;
  long ops = argc > 2 ? atol(argv[2]) : 2000000;
  size_t max_size = argc > 3 ? (size_t)atol(argv[3]) : 512;
  worker_t *w = calloc(threads, sizeof *w);
  double t0 = workload_now();
  for (unsigned i = 0; i < threads; i++) {
    w[i].id = i;
    w[i].ops = ops;
    w[i].max_size = max_size;
    w[i].next = &w[(i + 1) % threads];
  }
  for (unsigned i = 0; i < threads; i++)
    if (pthread_create(&w[i].tid, NULL, run, &w[i]) != 0) return 2;
  for (unsigned i = 0; i < threads; i++) pthread_join(w[i].tid, NULL);
  for (unsigned i = 0; i < threads; i++)
    for (unsigned k = 0; k < RING; k++) free(atomic_load(&w[i].ring[k]));
  double secs = workload_now() - t0;
  long hwm = workload_peak_rss_kib();
  long failures = workload_failures();
  printf("mt_churn threads=%u ops=%ld max=%zu time=%.3f s mops=%.2f peak_rss=%ld KiB %s\n",
         threads, ops * threads, max_size, secs, (double)ops * threads / secs / 1e6, hwm,
         failures ? "FAILED" : "ok");
  free(w);
  return failures ? 1 : 0;
}
