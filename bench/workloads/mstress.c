// Workload: mixed sizes and lifetimes (the idea of mimalloc-bench's mstress, our own code). Sizes
// are log-uniform: 9 in 10 of 16..256 B, 9 in 100 of 256 B..8 KiB, 1 in 100 of 8 KiB..largest;
// every byte is written. Each operation of a thread allocates a short-lived block into a small
// ring (freeing the one there, allocated YOUNG operations earlier); one in KEEP also replaces a
// block of the thread's long-lived set, and one in PASS passes a new block to a slot shared by
// all threads, taking out what another thread left there: freed at once, or kept in the
// long-lived set, where it may stay for many rounds. The work runs in rounds: the threads are
// joined, and each next-round thread adopts a previous thread's long-lived set, so blocks
// outlive the threads that allocated them and are freed by threads that did not.
// Every block's address tag, size, last word and a middle byte are checked before it is freed,
// no block malloc returns may carry a live block's pattern (footprint_block_new_checked), and
// blocks freed are counted against blocks allocated (none may be lost).
// Prints operations per second and peak RSS.
// Usage: mstress [threads=2] [ops per thread per round=100000] [rounds=20]
//                [largest size=1048576]
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "footprint.h"
#include "workload.h"

enum { YOUNG = 64, KEPT = 2048, KEEP = 8, PASS = 16, SHARED = 1024 };
static const uint64_t KEY = 0xbf58476d1ce4e5b9ull; // one key: blocks move between threads

typedef struct worker {
  pthread_t tid;
  unsigned id;
  uint64_t seed;          // owner only, carried from round to round
  uint64_t *kept[KEPT];   // owner only: long-lived, adopted by the next round's thread
  size_t allocated, freed; // owner only, read after join
} worker_t;

static long ops;
static size_t largest;
static uint64_t *_Atomic shared[SHARED]; // passed blocks: any thread, exchange

static uint64_t *block_new(worker_t *w) {
  uint64_t r = workload_rand(&w->seed) % 100;
  size_t n = r < 90 ? footprint_size_log(&w->seed, 16, 256)
             : r < 99 ? footprint_size_log(&w->seed, 256, 8192)
                      : footprint_size_log(&w->seed, 8192, largest);
  int live = 0;
  uint64_t *p = footprint_block_new_checked(n, KEY, 1, &live);
  if (!p) workload_fail("mstress: thread %u: malloc(%zu) failed", w->id, n);
  else w->allocated++;
  if (live) workload_fail("mstress: thread %u: malloc returned %p, a block still live", w->id,
                          (void *)p);
  return p;
}

// w is the worker freeing p, or NULL for main at the end (which counts in *freed).
static void check_free(worker_t *w, uint64_t *p, size_t *freed) {
  if (!p) return;
  if (!footprint_block_ok(p, KEY, 1)) {
    if (w) workload_fail("mstress: thread %u: block %p corrupted", w->id, (void *)p);
    else workload_fail("mstress: main, at the end: block %p corrupted", (void *)p);
  }
  footprint_block_free(p);
  (*freed)++;
}

static void *run(void *arg) {
  worker_t *w = arg;
  uint64_t *young[YOUNG] = {0};
  for (long i = 0; i < ops; i++) {
    uint64_t r = workload_rand(&w->seed);
    unsigned y = (unsigned)(i % YOUNG);
    check_free(w, young[y], &w->freed);
    young[y] = block_new(w);
    if ((r >> 8) % KEEP == 0) {
      unsigned k = (unsigned)((r >> 16) % KEPT);
      check_free(w, w->kept[k], &w->freed);
      w->kept[k] = block_new(w);
    }
    if ((r >> 32) % PASS == 0) {
      uint64_t *got = atomic_exchange(&shared[(r >> 40) % SHARED], block_new(w));
      if ((r >> 56) % 2 == 0) {
        check_free(w, got, &w->freed);
      } else if (got) { // it joins our long-lived set
        unsigned k = (unsigned)((r >> 20) % KEPT);
        check_free(w, w->kept[k], &w->freed);
        w->kept[k] = got;
      }
    }
  }
  for (unsigned y = 0; y < YOUNG; y++) check_free(w, young[y], &w->freed);
  return NULL;
}

int main(int argc, char **argv) {
  unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 2;
  ops = argc > 2 ? atol(argv[2]) : 100000;
  long rounds = argc > 3 ? atol(argv[3]) : 20;
  largest = argc > 4 ? (size_t)atol(argv[4]) : 1048576;
  if (threads < 1 || ops < 1 || rounds < 1 || largest <= 8192) {
    fprintf(stderr, "usage: mstress [threads] [ops per thread per round] [rounds] "
                    "[largest size > 8192]\n");
    return 2;
  }
  worker_t *w = calloc(threads, sizeof *w);
  if (!w) return 2;
  for (unsigned i = 0; i < threads; i++) w[i].id = i, w[i].seed = 0x94d049bb133111ebull * (i + 1);
  double t0 = workload_now();
  for (long round = 0; round < rounds; round++) {
    for (unsigned i = 0; i < threads; i++)
      if (pthread_create(&w[i].tid, NULL, run, &w[i]) != 0) return 2;
    for (unsigned i = 0; i < threads; i++) pthread_join(w[i].tid, NULL);
    // Each long-lived set moves one worker on: the next round's threads free other threads'.
    uint64_t *first[KEPT];
    memcpy(first, w[0].kept, sizeof first);
    for (unsigned i = 0; i + 1 < threads; i++) memcpy(w[i].kept, w[i + 1].kept, sizeof first);
    memcpy(w[threads - 1].kept, first, sizeof first);
  }
  double secs = workload_now() - t0;
  size_t allocated = 0, freed = 0;
  for (unsigned i = 0; i < threads; i++) {
    for (unsigned k = 0; k < KEPT; k++) check_free(NULL, w[i].kept[k], &freed);
    allocated += w[i].allocated, freed += w[i].freed;
  }
  for (unsigned k = 0; k < SHARED; k++) check_free(NULL, atomic_load(&shared[k]), &freed);
  if (freed != allocated)
    workload_fail("mstress: %zu blocks allocated but %zu freed", allocated, freed);
  long failures = workload_failures();
  double total = (double)threads * (double)ops * (double)rounds;
  printf("mstress threads=%u rounds=%ld ops=%.0f largest=%zu allocated=%zu time=%.3f s mops=%.2f "
         "peak_rss=%ld KiB %s\n",
         threads, rounds, total, largest, allocated, secs, total / secs / 1e6,
         workload_peak_rss_kib(), failures ? "FAILED" : "ok");
  free(w);
  return failures ? 1 : 0;
}
